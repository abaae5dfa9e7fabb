"""Lattice snapshots (.npz) and animations: what is saved, and a GIF with one frame each."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT
from PIL import Image

from simulation import CarTModel
from simulation.engine.constants import (
    CANCER,
    CAR_T,
    EFFECTOR,
    EMPTY,
    EXHAUSTED,
    MEMORY,
    NECROTIC,
    NORMAL,
    TISSUE_OPEN,
    TISSUE_STROMA,
    TISSUE_VESSEL,
)
from simulation.viz.lattice_plots import SITE_CLASSES
from simulation.viz.animation import animate
from simulation import load_scenario
from simulation.execution.runner import RunSpec, record_snapshots, run_one
from simulation.io.snapshots import (
    SITE_CANCER_HIGH,
    SITE_CAR_T_EFFECTOR,
    SITE_CAR_T_EXHAUSTED,
    SITE_CAR_T_MEMORY,
    SITE_EMPTY,
    SITE_NECROTIC,
    SITE_NORMAL_NEGATIVE,
    SITE_STROMA,
    SITE_VESSEL,
    SNAPSHOT_FIELDS,
    lattice_snapshot,
    load_snapshot,
    quantise_field,
    save_snapshot,
    site_classes,
    snapshot_field,
    snapshot_files,
)

SMALL_SOLID = REPO_ROOT / "tests" / "data" / "small_solid.yaml"



@pytest.fixture(autouse=True)
def _close_figures():
    """Figures are returned open (for notebooks); close them so they do not pile up."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")

@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("snaps")
    model = CarTModel(SMALL_SOLID, seed=2, time__duration_days=2.0)
    record_snapshots(model, folder, every_h=12.0)
    return folder


def test_recorded_snapshots_are_a_runs_snapshots(snapshot_dir):
    """``cartsim animate --record`` and a run with ``time.snapshot_every_h`` share one cadence
    (``runner.step_to_end``): the same steps, the same pictures."""
    scenario = load_scenario(SMALL_SOLID, ["time.duration_days=2", "time.snapshot_every_h=12"])
    _, _, pictures = run_one(RunSpec(scenario, 0, 0, 2))
    recorded = [load_snapshot(path) for path in snapshot_files(snapshot_dir)]
    assert [int(p["step"]) for p in pictures] == [int(p["step"]) for p in recorded]
    assert all(np.array_equal(p["cell_type"], r["cell_type"]) for p, r in zip(pictures, recorded))


def test_snapshots_every_interval_with_compact_uint8_arrays(snapshot_dir):
    files = snapshot_files(snapshot_dir)
    assert len(files) == 5  # t = 0, 12, 24, 36, 48 h
    snap = load_snapshot(files[-1])
    for name in ("cell_type", "antigen_class", "car_t_state"):
        assert snap[name].dtype == np.uint8 and snap[name].shape == (40, 40)
    assert float(snap["time_days"]) == pytest.approx(2.0)
    assert int(snap["tumor_cells"]) == np.count_nonzero(snap["cell_type"] == CANCER)
    assert int(snap["car_t_cells"]) > 0
    assert set(np.unique(snap["cell_type"])) <= {EMPTY, CANCER, NORMAL, CAR_T, NECROTIC}
    assert set(np.unique(snap["antigen_class"][snap["cell_type"] == CANCER])) == {0, 1, 2}
    assert snap["tissue"].dtype == np.uint8 and snap["tissue"].shape == (40, 40)
    for name in SNAPSHOT_FIELDS:
        assert snap[f"{name}_u8"].dtype == np.uint8 and snap[f"{name}_u8"].shape == (40, 40)
    assert files[-1].stat().st_size < 20_000


def test_snapshot_matches_the_model_lattice():
    model = CarTModel(SMALL_SOLID, seed=2)
    from simulation.io.snapshots import lattice_snapshot

    snap = lattice_snapshot(model)
    np.testing.assert_array_equal(snap["cell_type"], model.lattice.grid("cell_type"))
    antigen = model.lattice.grid("antigen")
    half_max = model.config.car_t.antigen_half_max_molecules_per_cell
    np.testing.assert_array_equal(snap["antigen_class"] == 2, antigen >= half_max)
    np.testing.assert_array_equal(snap["antigen_class"] == 0, antigen == 0)
    np.testing.assert_array_equal(snap["tissue"], model.lattice.grid("tissue"))


def test_site_classes_cover_every_combination():
    """One site of every class, in legend order (codes 0..n-1)."""
    cell = np.array([EMPTY, CANCER, CANCER, CANCER, NORMAL, NORMAL, CAR_T, CAR_T, CAR_T,
                     NECROTIC, EMPTY, EMPTY], np.uint8)
    antigen = np.array([0, 2, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0], np.uint8)
    state = np.array([0, 0, 0, 0, 0, 0, EFFECTOR, EXHAUSTED, MEMORY, 0, 0, 0], np.uint8)
    tissue = np.array([TISSUE_OPEN] * 10 + [TISSUE_STROMA, TISSUE_VESSEL], np.uint8)
    assert site_classes(cell, antigen, state, tissue).tolist() == [c.code for c in SITE_CLASSES]


def test_new_classes_necrosis_memory_stroma_vessel():
    cell = np.array([NECROTIC, NECROTIC, CAR_T, CAR_T, EMPTY, CANCER, CAR_T, NORMAL, EMPTY],
                    np.uint8)
    antigen = np.array([0, 2, 2, 0, 0, 2, 0, 0, 0], np.uint8)
    state = np.array([0, 0, MEMORY, MEMORY, 0, 0, EFFECTOR, 0, 0], np.uint8)
    tissue = np.array([TISSUE_OPEN, TISSUE_STROMA, TISSUE_OPEN, TISSUE_STROMA, TISSUE_STROMA,
                       TISSUE_STROMA, TISSUE_STROMA, TISSUE_STROMA, TISSUE_VESSEL], np.uint8)
    assert site_classes(cell, antigen, state, tissue).tolist() == [
        SITE_NECROTIC, SITE_NECROTIC,  # debris, whatever antigen was recorded, also on stroma
        SITE_CAR_T_MEMORY, SITE_CAR_T_MEMORY,  # memory CAR-T, on open tissue and on stroma
        SITE_STROMA,  # an empty stroma site shows as stroma
        SITE_CANCER_HIGH, SITE_CAR_T_EFFECTOR, SITE_NORMAL_NEGATIVE,  # a cell on stroma: cell
        SITE_VESSEL]
    # without tissue (old snapshots): open tissue everywhere
    assert site_classes(cell[:3], antigen[:3], state[:3]).tolist() == [
        SITE_NECROTIC, SITE_NECROTIC, SITE_CAR_T_MEMORY]
    assert site_classes(np.array([EMPTY]), np.array([0]), np.array([0])).tolist() == [SITE_EMPTY]
    assert SITE_CAR_T_EXHAUSTED == site_classes(np.array([CAR_T]), np.array([2]),
                                                np.array([EXHAUSTED]))[0]


def test_quantised_field_round_trip():
    values = np.linspace(0.0, 38.0, 400).reshape(20, 20)
    codes, top = quantise_field(values)
    assert codes.dtype == np.uint8 and codes.max() == 255 and top == 38.0
    decoded = snapshot_field({"oxygen_u8": codes, "oxygen_max": top}, "oxygen")
    assert np.abs(decoded - values).max() <= 38.0 / 255 / 2 + 1e-5
    zeros, zero_top = quantise_field(np.zeros((3, 3)))
    assert zero_top == 0.0 and not zeros.any()
    assert not snapshot_field({"suppression_u8": zeros, "suppression_max": zero_top},
                              "suppression").any()


def test_snapshot_round_trip_with_tissue_and_fields(tmp_path):
    model = CarTModel(SMALL_SOLID, seed=2)
    for _ in range(20):
        model.step()
    path = save_snapshot(lattice_snapshot(model), tmp_path / "snapshot_00000020.npz")
    loaded = load_snapshot(path)
    np.testing.assert_array_equal(loaded["tissue"], model.lattice.grid("tissue"))
    assert {TISSUE_STROMA, TISSUE_VESSEL} <= set(np.unique(loaded["tissue"]))
    for name in SNAPSHOT_FIELDS:  # both on in small_solid: not flat
        exact = model.lattice.grid(name)
        assert exact.max() > exact.min()
        step = exact.max() / 255
        np.testing.assert_allclose(snapshot_field(loaded, name), exact, rtol=0, atol=step)
    assert float(loaded["necrosis_threshold_mmhg"]) == (
        model.config.microenvironment.oxygen.necrosis_threshold_mmhg)
    assert path.stat().st_size < 20_000


def _old_format_snapshot(step: int) -> dict:
    """A snapshot as written before tissue and fields were saved."""
    cell_type = np.zeros((12, 10), np.uint8)
    cell_type[3:6, 2:5] = CANCER
    cell_type[8, 8] = CAR_T
    return {"cell_type": cell_type, "antigen_class": np.full((12, 10), 2, np.uint8),
            "car_t_state": np.zeros((12, 10), np.uint8), "time_days": np.float64(step / 2),
            "step": np.int64(step), "tumor_cells": np.int64(9), "car_t_cells": np.int64(1),
            "spacing_um": np.float64(15.0), "scenario": np.str_("old")}


def test_old_format_snapshots_load_draw_and_animate(tmp_path):
    for step in (0, 1):
        save_snapshot(_old_format_snapshot(step), tmp_path / f"snapshot_{step:08d}.npz")
    loaded = load_snapshot(snapshot_files(tmp_path)[0])
    assert "tissue" not in loaded
    assert all(snapshot_field(loaded, name) is None for name in SNAPSHOT_FIELDS)
    from simulation.viz.lattice_plots import _snapshot_classes, plot_snapshot_with_fields

    classes = _snapshot_classes(loaded)
    assert classes[4, 3] == SITE_CANCER_HIGH and classes[8, 8] == SITE_CAR_T_EFFECTOR
    assert classes[0, 0] == SITE_EMPTY
    fig = plot_snapshot_with_fields(loaded, tmp_path / "fields.png")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert sum("not in this snapshot" in t for t in texts) == len(SNAPSHOT_FIELDS)
    out = animate(tmp_path, tmp_path / "old.gif", fmt="gif")
    with Image.open(out) as gif:
        assert gif.n_frames == 2


def test_gif_has_one_frame_per_snapshot(snapshot_dir, tmp_path):
    out = animate(snapshot_dir, tmp_path / "run.gif", fmt="gif", fps=4)
    with Image.open(out) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == len(snapshot_files(snapshot_dir))


def test_cli_animate_records_then_writes_a_gif(tmp_path):
    folder = tmp_path / "snaps"
    result = subprocess.run(
        [sys.executable, "-m", "simulation", "animate", str(folder), "--record", str(SMALL_SOLID),
         "--set", "time.duration_days=1", "--every-h", "12", "--format", "gif"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with Image.open(folder / "animation.gif") as gif:
        assert gif.n_frames == 3


def test_cli_animate_empty_folder_is_an_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "simulation", "animate", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "no snapshot_*.npz files" in result.stderr
