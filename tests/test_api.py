"""The one-call Python API: ``simulation.run`` / ``simulation.load`` / ``Result``.

A result from Python holds exactly the tables ``cartsim run`` writes for the same options, its
``save`` writes the same folder byte for byte, and ``load`` opens every kind of output folder
(run, killing assay, sweep) into the same kind of object.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

import simulation
from simulation.cli import main
from simulation.config import ConfigError, load_study
from simulation.io.rundir import OutputExistsError

DATA = Path(__file__).parent / "data"
STUDY = DATA / "small_study.yaml"
OPTIONS = {"replicates": 2, "days": 3, "seed": 5}
CLI_OPTIONS = ["--replicates", "2", "--days", "3", "--seed", "5", "--set", "car_t.max_kills=5"]


@pytest.fixture(scope="module")
def cli_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["run", str(STUDY), "--out", str(out), "--quiet", "--workers", "1",
                 *CLI_OPTIONS]) == 0
    return out


@pytest.fixture(scope="module")
def result() -> simulation.Result:
    return simulation.run(STUDY, set={"car_t.max_kills": 5}, workers=1, **OPTIONS)


def test_run_gives_the_tables_of_the_cli_with_the_same_options(result, cli_folder):
    assert result.kind == "run" and result.assay is None
    assert result.study.replicates == 2 and result.study.seed == 5
    assert {s.car_t.max_kills for s in result.study.scenarios} == {5}
    assert result.timeseries["time_days"].max() == 3.0
    assert result.timeseries.to_csv(index=False) == (cli_folder / "timeseries.csv").read_text()
    assert result.summary.to_csv(index=False) == (cli_folder / "summary.csv").read_text()


def test_overrides_as_a_list_of_set_strings_are_the_same_run(result):
    again = simulation.run(STUDY, set=["car_t.max_kills=5"], workers=1, **OPTIONS)
    pd.testing.assert_frame_equal(again.summary, result.summary)


def test_save_writes_the_folder_cartsim_run_writes(result, cli_folder, tmp_path):
    saved = result.save(tmp_path / "saved")
    assert result.folder == saved
    assert sorted(p.name for p in saved.iterdir()) == sorted(p.name for p in cli_folder.iterdir())
    for name in ("timeseries.csv", "summary.csv", "config.resolved.yaml", "burden.png",
                 "blood_kinetics.png"):
        assert (saved / name).read_bytes() == (cli_folder / name).read_bytes(), name
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["config_file"] == str(STUDY) and manifest["seeds"] == [5, 6]
    assert manifest["overrides"] == ["car_t.max_kills=5"] and manifest["wall_time_s"] > 0
    with pytest.raises(OutputExistsError, match="already exists"):
        result.save(saved)
    # a loaded folder saves to the same files again
    copy = simulation.load(cli_folder).save(tmp_path / "copy")
    for name in ("timeseries.csv", "summary.csv", "manifest.json", "burden.png"):
        assert (copy / name).read_bytes() == (cli_folder / name).read_bytes(), name


def test_load_reads_back_exactly_what_was_written(result, cli_folder):
    loaded = simulation.load(cli_folder)
    assert loaded.kind == "run" and loaded.folder == cli_folder
    pd.testing.assert_frame_equal(loaded.timeseries, result.timeseries)
    # the summary too, dtypes and all: a value a run does not have (no relapse, no clearance)
    # is NaN in memory as it is when read from summary.csv, never an object column of None
    assert result.summary["relapse_day"].isna().any()
    assert result.summary.equals(loaded.summary)
    assert (result.summary.dtypes == loaded.summary.dtypes).all()
    assert loaded.study.scenarios == result.study.scenarios


def test_figures_come_from_the_result(result, tmp_path):
    for method in ("plot", "plot_car_t_kinetics", "plot_blood_kinetics", "plot_waterfall",
                   "plot_progression_free", "plot_response_rates"):
        path = tmp_path / f"{method}.png"
        fig = getattr(result, method)(path)
        assert isinstance(fig, plt.Figure) and path.stat().st_size > 10_000, method
        plt.close(fig)
    assert result.response_counts().loc["small_blood"].sum() == 2
    with pytest.raises(ValueError, match="not a killing assay"):
        result.plot_killing_assay()


def test_a_killing_assay_result_and_folder(tmp_path):
    out = tmp_path / "assay"
    assert main(["run", str(DATA / "small_assay.yaml"), "--out", str(out), "--quiet",
                 "--workers", "1"]) == 0
    ran = simulation.run(DATA / "small_assay.yaml", workers=1)
    loaded = simulation.load(out)
    assert ran.kind == loaded.kind == "assay"
    assert ran.assay.to_csv(index=False) == (out / "assay.csv").read_text()
    pd.testing.assert_frame_equal(loaded.assay, pd.read_csv(out / "assay.csv"))
    plt.close(loaded.plot_killing_assay(tmp_path / "assay.png"))
    assert (tmp_path / "assay.png").stat().st_size > 10_000
    # its plot() is the folder's burden.png: wells by antigen and E:T, no clinical response
    wells = ran.plot()
    text = " ".join([wells._suptitle.get_text() if wells._suptitle else ""]
                    + [ax.get_title() for ax in wells.axes]
                    + [t.get_text() for legend in wells.legends for t in legend.get_texts()]
                    + [t.get_text() for ax in wells.axes if ax.get_legend()
                       for t in ax.get_legend().get_texts()])
    assert "Killing assay wells" in text and "E:T" in text and "CR" not in text, text
    plt.close(wells)


def test_a_sweep_folder_loads_as_a_result_of_summary_rows(tmp_path):
    out = tmp_path / "sweep"
    assert main(["sweep", str(DATA / "sweeps" / "grid_small.yaml"), "--out", str(out),
                 "--workers", "1", "--quiet"]) == 0
    loaded = simulation.load(out)
    assert loaded.kind == "sweep" and loaded.timeseries is None and loaded.study is None
    assert len(loaded.summary) == 16 and (loaded.summary["status"] == "done").all()
    assert {"car_t.max_kills", "response"} <= set(loaded.summary.columns)
    with pytest.raises(ValueError, match="no time series"):
        loaded.plot()


def test_folders_that_are_not_results_are_clear_errors(result, tmp_path, cli_folder):
    with pytest.raises(ConfigError, match="no such folder"):
        simulation.load(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    with pytest.raises(ConfigError, match="not a cartsim output folder"):
        simulation.load(tmp_path / "other")
    incomplete = tmp_path / "incomplete"
    shutil.copytree(cli_folder, incomplete)
    (incomplete / "INCOMPLETE").write_text("{}")
    with pytest.raises(ConfigError, match="cartsim resume"):
        simulation.load(incomplete)


def test_bad_options_name_the_file_and_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"small_study\.yaml: replicates: must be >= 1"):
        load_study(STUDY, replicates=0)
    with pytest.raises(ConfigError, match=r"seed: must be a whole number"):
        load_study(STUDY, seed=1.5)
    with pytest.raises(ConfigError, match=r"car_t\.max_kils"):
        simulation.run(STUDY, set={"car_t.max_kils": 5}, **OPTIONS)
    with pytest.raises(ConfigError, match="not the string"):
        simulation.run(STUDY, set="car_t.max_kills=5")
