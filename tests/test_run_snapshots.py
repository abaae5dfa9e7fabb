"""Spatial state over time from an ordinary run: ``time.snapshot_every_h`` keeps lattice
snapshots of every run (in the output folder, or in memory as ``Result.snapshots``), and
``cartsim animate`` / ``cartsim export-vtk`` work on the finished folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import simulation
from simulation.cli import main
from simulation.io.volume import read_vti

STUDY = Path(__file__).parent / "data" / "small_study.yaml"
OPTIONS = {"replicates": 2, "days": 2, "seed": 3}
SNAPSHOTS = {"time.snapshot_every_h": 18}  # 2 days: t = 0, 18 h, 36 h and the end (48 h)
RUNS = ("small_blood_r0", "small_blood_r1", "small_solid_r0", "small_solid_r1")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("snapshots") / "run"
    assert main(["run", str(STUDY), "--out", str(out), "--quiet", "--replicates", "2",
                 "--days", "2", "--seed", "3", "--set", "time.snapshot_every_h=18"]) == 0
    return out


@pytest.fixture(scope="module")
def in_memory():
    return simulation.run(STUDY, **OPTIONS, set=SNAPSHOTS, progress=False)


def test_every_run_keeps_snapshots_at_t0_every_interval_and_the_end(folder):
    for run in RUNS:
        files = sorted(p.name for p in (folder / "snapshots" / run).iterdir())
        # dt 6 min: 18 h = 180 steps; the end (2 days) at step 480
        assert files == [f"snapshot_{step:08d}.npz" for step in (0, 180, 360, 480)], run


def test_snapshots_change_no_number_of_the_tables(folder, in_memory):
    plain = simulation.run(STUDY, **OPTIONS, progress=False)
    pd.testing.assert_frame_equal(plain.timeseries, in_memory.timeseries)
    pd.testing.assert_frame_equal(plain.summary, in_memory.summary)
    assert plain.snapshots == {}


def test_result_snapshots_are_datasets_with_named_dims_equal_in_memory_and_on_disk(
        folder, in_memory):
    loaded = simulation.load(folder).snapshots
    assert sorted(loaded) == sorted(in_memory.snapshots) == list(RUNS)
    ds = in_memory.snapshots["small_solid_r0"]
    assert ds.site_class.dims == ("time_days", "y", "x")
    assert list(ds.time_days.values) == [0.0, 0.75, 1.5, 2.0]
    assert ds.x.attrs["units"] == "um" and ds.x.values[1] == pytest.approx(15.0)  # spacing
    assert ds.oxygen.attrs["units"] == "mmHg" and "quantised" in ds.oxygen.attrs
    # the census at the same time counts the same cancer cells as the picture
    series = in_memory.timeseries.query("scenario == 'small_solid' and replicate == 0")
    census = series.set_index("time_days")["tumor_cells"]
    assert ds.tumor_cells.sel(time_days=1.5).item() == census.loc[1.5]
    assert int((ds.cell_type.sel(time_days=2.0) == 1).sum()) == ds.tumor_cells[-1].item()
    for name in ds.data_vars:
        np.testing.assert_array_equal(ds[name].values,
                                      loaded["small_solid_r0"][name].values, err_msg=name)


def test_saved_result_has_the_snapshots_of_the_cli_folder(tmp_path, folder, in_memory):
    saved = in_memory.save(tmp_path / "saved")
    assert sorted(p.name for p in (saved / "snapshots").iterdir()) == list(RUNS)
    fig = in_memory.plot_snapshot("small_solid_r1", day=1.0)  # nearest: 0.75 (of 0.75, 1.5)
    titles = " ".join([fig._suptitle.get_text() if fig._suptitle else ""]
                      + [ax.get_title() for ax in fig.axes])
    assert "day 0.8" in titles and "small_solid" in titles, titles
    with pytest.raises(KeyError, match="runs with snapshots: small_blood_r0"):
        in_memory.plot_snapshot("no_such_run")


def test_animate_and_export_vtk_work_on_the_finished_folder(folder, capsys):
    assert main(["animate", str(folder), "--format", "gif"]) == 0
    assert (folder / "small_blood_r0.gif").stat().st_size > 1000
    assert (folder / "small_solid_r0.gif").stat().st_size > 1000
    assert not (folder / "small_solid_r1.gif").exists()  # replicate 0 unless --run
    assert main(["export-vtk", str(folder), "--run", "small_solid_r1"]) == 0
    pvd = (folder / "vtk" / "small_solid_r1.pvd").read_text()
    assert pvd.count("<DataSet") == 4 and 'timestep="1.5"' in pvd
    volume = read_vti(folder / "vtk" / "small_solid_r1" / "snapshot_00000480.vti")
    picture = simulation.load(folder).snapshots["small_solid_r1"].isel(time_days=-1)
    np.testing.assert_array_equal(volume["site_class"][0], picture.site_class.values)


def test_animate_a_folder_without_snapshots_says_how_to_get_them(tmp_path, capsys):
    out = tmp_path / "plain"
    assert main(["run", str(STUDY), "--out", str(out), "--quiet", "--replicates", "1",
                 "--days", "0.5"]) == 0
    assert main(["animate", str(out)]) == 2
    assert "--set time.snapshot_every_h=12" in capsys.readouterr().err
