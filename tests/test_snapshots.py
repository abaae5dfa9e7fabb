"""Lattice snapshots (.npz) and animations: what is saved, and a GIF with one frame each."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT
from PIL import Image

from simulation import CarTModel
from simulation.constants import CANCER, CAR_T, EMPTY, NORMAL
from simulation.plotting import SITE_CLASSES
from simulation.snapshots import (
    animate,
    load_snapshot,
    record_snapshots,
    site_classes,
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


def test_snapshots_every_interval_with_compact_uint8_arrays(snapshot_dir):
    files = snapshot_files(snapshot_dir)
    assert len(files) == 5  # t = 0, 12, 24, 36, 48 h
    snap = load_snapshot(files[-1])
    for name in ("cell_type", "antigen_class", "car_t_state"):
        assert snap[name].dtype == np.uint8 and snap[name].shape == (40, 40)
    assert float(snap["time_days"]) == pytest.approx(2.0)
    assert int(snap["tumor_cells"]) == np.count_nonzero(snap["cell_type"] == CANCER)
    assert int(snap["car_t_cells"]) > 0
    assert set(np.unique(snap["cell_type"])) <= {EMPTY, CANCER, NORMAL, CAR_T}
    assert set(np.unique(snap["antigen_class"][snap["cell_type"] == CANCER])) == {0, 1, 2}
    assert files[-1].stat().st_size < 20_000


def test_snapshot_matches_the_model_lattice():
    model = CarTModel(SMALL_SOLID, seed=2)
    from simulation.snapshots import lattice_snapshot

    snap = lattice_snapshot(model)
    np.testing.assert_array_equal(snap["cell_type"], model.lattice.grid("cell_type"))
    antigen = model.lattice.grid("antigen")
    half_max = model.config.car_t.antigen_half_max_molecules_per_cell
    np.testing.assert_array_equal(snap["antigen_class"] == 2, antigen >= half_max)
    np.testing.assert_array_equal(snap["antigen_class"] == 0, antigen == 0)


def test_site_classes_cover_every_combination():
    cell = np.array([EMPTY, CANCER, CANCER, CANCER, NORMAL, NORMAL, CAR_T, CAR_T], np.uint8)
    antigen = np.array([0, 2, 1, 0, 2, 0, 0, 0], np.uint8)
    state = np.array([0, 0, 0, 0, 0, 0, 0, 1], np.uint8)
    assert site_classes(cell, antigen, state).tolist() == [c.code for c in SITE_CLASSES]


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
