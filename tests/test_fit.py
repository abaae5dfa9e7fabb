"""``cartsim fit``: recovery of known parameters, resume after SIGKILL, bad data files.

The fits run on tests/data/fit_assay.yaml (a 40 x 40 dish, 3 days, two E:T ratios and a
control: ~0.2 s per particle) in this process (one worker), so each test stays within about a
minute on one core. The recovery test makes its data with the model itself at a known kill
rate, so it holds whatever the simulated numbers are (e.g. after a solver change).
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import simulation
from simulation.analysis.calibration import (Observations, simulated_values,
                                             weighted_quantiles)
from simulation.cli import main
from simulation.config import ConfigError, load_study
from simulation.study.fit import load_fit

DATA = Path(__file__).parent / "data"
MODEL = DATA / "fit_assay.yaml"
KEY = "car_t.kill_rate_per_h"
TRUTH = 0.25
PRIOR = {"low": 0.02, "high": 2.0, "scale": "log"}


def synthetic_data(path: Path, replicates: int = 4, seed: int = 100) -> Path:
    """% of control of the treated wells every 12 h, mean of ``replicates`` runs at TRUTH."""
    result = simulation.run(MODEL, replicates=replicates, seed=seed, set={KEY: TRUTH},
                            workers=1, progress=False)
    table = result.assay
    table = table[(table["effector_to_target"] > 0) & (table["time_h"] > 0)
                  & (table["time_h"] % 12 == 0)]
    data = table.groupby(["effector_to_target", "time_h"], as_index=False)[
        "percent_of_control"].mean()
    data.to_csv(path, index=False)
    return path


def write_fit(folder: Path, data: str = "data.csv", **changes) -> Path:
    fit = {"name": "recovery", "model": str(MODEL), "data": data,
           "parameters": {KEY: PRIOR}, "population_size": 30, "generations": 3,
           "predictive_draws": 4, "seed": 2, **changes}
    path = folder / "fit.yaml"
    path.write_text(yaml.safe_dump(fit), encoding="utf-8")
    return path


def test_a_fit_recovers_the_kill_rate_it_was_simulated_with(tmp_path):
    synthetic_data(tmp_path / "data.csv")
    result = simulation.fit(write_fit(tmp_path), out=tmp_path / "out", workers=1, quiet=True)
    row = result.intervals().iloc[0]
    # the truth lies in the 90 % credible interval ...
    assert row["low"] <= TRUTH <= row["high"], row
    # ... and the data taught something: the interval is at most half the prior's (in log10;
    # after 3 generations of 30 particles it was 0.12 of it on fit seeds 2 and 3, the data pin
    # the rate to within ~+-30 %: half leaves room for an unlucky generation). ~210
    # simulations, ~50 s on one idle core
    assert row["width_vs_prior"] < 0.5, row
    out = result.folder
    for name in ("posterior.csv", "fitted.yaml", "posterior.png", "fit.png", "history.db",
                 "report.md", "fit.json"):
        assert (out / name).is_file(), name
    posterior = pd.read_csv(out / "posterior.csv")
    assert list(posterior.columns) == [KEY, "weight", "generation"]
    assert sorted(posterior["generation"].unique()) == [0, 1, 2]
    assert (posterior.groupby("generation").size() == 30).all()
    assert np.allclose(posterior.groupby("generation")["weight"].sum(), 1.0)
    # fitted.yaml runs: the study with the posterior median in every well
    fitted = load_study(out / "fitted.yaml")
    assert all(s.car_t.kill_rate_per_h == pytest.approx(row["median"])
               for s in fitted.scenarios)
    report = (out / "report.md").read_text(encoding="utf-8")
    assert report.count("\n| 0 |") == 1 and "\n| 2 |" in report
    assert f"`{KEY}`" in report and "acceptance rate" in report and "ESS" in report
    # the same fit again: nothing left to run, the same posterior
    again = simulation.fit(write_fit(tmp_path), out=tmp_path / "out", workers=1, quiet=True)
    pd.testing.assert_frame_equal(again.particles, result.particles)


def _generations(db: Path) -> list[int]:
    if not db.exists():
        return []
    try:
        with closing(sqlite3.connect(db)) as connection:
            return [t for (t,) in connection.execute("SELECT t FROM populations WHERE t >= 0")]
    except sqlite3.Error:  # created but not yet written
        return []


def test_a_fit_killed_with_sigkill_continues_from_its_last_generation(tmp_path):
    synthetic_data(tmp_path / "data.csv", replicates=1)
    fit = write_fit(tmp_path, population_size=10, generations=2, predictive_draws=2)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "simulation", "fit", str(fit), "--out", str(out),
               "--workers", "1", "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 900  # a guard against a hang, not a timing test
    while not _generations(out / "history.db"):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    kept = _generations(out / "history.db")
    assert kept == [0], kept  # killed in generation 1
    assert not (out / "posterior.csv").exists()
    with closing(sqlite3.connect(out / "history.db")) as connection:
        first = list(connection.execute("SELECT t, epsilon, nr_samples FROM populations "
                                        "WHERE t = 0"))
    done = subprocess.run(command[:-1], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"continuing {out / 'history.db'} after generation 0" in done.stdout
    assert _generations(out / "history.db") == [0, 1]
    with closing(sqlite3.connect(out / "history.db")) as connection:  # generation 0 kept
        assert list(connection.execute("SELECT t, epsilon, nr_samples FROM populations "
                                       "WHERE t = 0")) == first
    assert sorted(pd.read_csv(out / "posterior.csv")["generation"].unique()) == [0, 1]


GOOD = "effector_to_target,time_h,percent_of_control\n0.125,24,50\n0.05,48,80\n"
BAD_DATA = {
    "no observed column": ("effector_to_target,time_h,lysis\n0.125,24,50\n",
                           "needs exactly one observed column named as a simulated output"),
    "no time column": ("effector_to_target,percent_of_control\n0.125,50\n",
                       "a time column (time_h or time_days) is missing"),
    "unmatched condition": (GOOD + "0.3,24,40\n",
                            "1 row(s) match no simulated condition (line 4: "
                            "effector_to_target=0.3)"),
    "NaN value": ("effector_to_target,time_h,percent_of_control\n0.125,24,\n",
                  "column percent_of_control: not a finite number on line(s) 2"),
    "negative time": ("effector_to_target,time_h,percent_of_control\n0.125,-5,50\n",
                      "column time_h: must be >= 0 (line(s) 2)"),
    "after the run": ("effector_to_target,time_days,percent_of_control\n0.125,9,50\n",
                      "column time_days: line(s) 2 lie outside the simulated time"),
    "ambiguous": ("time_h,percent_of_control\n24,50\n",
                  "line(s) 2: match several simulated scenarios"),
    "sd not positive": (GOOD.replace("percent_of_control", "percent_of_control,sd")
                        .replace("50\n", "50,0\n").replace("80\n", "80,1\n"),
                        "column sd: must be > 0 (line(s) 2)"),
    "empty": ("effector_to_target,time_h,percent_of_control\n", "no observations"),
    "value outside its interval": (GOOD.replace("percent_of_control", "percent_of_control,low,"
                                                "high").replace("50\n", "50,55,70\n")
                                   .replace("80\n", "80,70,90\n"),
                                   "columns low, high: the value must lie inside [low, high] "
                                   "(line(s) 2)"),
    "half an interval": (GOOD.replace("percent_of_control", "percent_of_control,low")
                         .replace("50\n", "50,40\n").replace("80\n", "80,70\n"),
                         "column low: give both low and high"),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_a_bad_data_file_is_one_line_naming_the_file(tmp_path, case, capsys):
    text, expected = BAD_DATA[case]
    (tmp_path / "data.csv").write_text(text, encoding="utf-8")
    fit = write_fit(tmp_path)
    assert main(["fit", str(fit), "--out", str(tmp_path / "out"), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cartsim: error: ") and "data.csv: " in lines[0], err
    assert expected in lines[0], err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


BAD_FIT = {
    "unknown parameter": ({"parameters": {"car_t.kill_rate": PRIOR}},
                          "parameters.car_t.kill_rate: "),
    "prior out of order": ({"parameters": {KEY: {"low": 2.0, "high": 0.1}}},
                           "parameters.car_t.kill_rate_per_h.low: must be below high"),
    "value the model refuses": ({"parameters": {KEY: {"low": -1.0, "high": 1.0}}},
                                "parameters.car_t.kill_rate_per_h: "),
    "missing data file": ({"data": "nowhere.csv"}, "nowhere.csv: file not found"),
    "sd distance without sd": ({"distance": "sd"}, "distance: sd needs an sd column"),
    "distance not importable": ({"distance": "no_such_module:f"},
                                "distance: cannot import no_such_module:f"),
}


@pytest.mark.parametrize("case", sorted(BAD_FIT))
def test_a_bad_fit_file_names_the_file_and_key(tmp_path, case):
    (tmp_path / "data.csv").write_text(GOOD, encoding="utf-8")
    changes, expected = BAD_FIT[case]
    with pytest.raises(ConfigError) as error:
        load_fit(write_fit(tmp_path, **changes))
    message = str(error.value)
    assert "fit.yaml: " in message or case == "missing data file", message
    assert expected in message, message
    assert len(message.splitlines()) == 1, message


def test_a_fit_folder_of_another_fit_is_refused(tmp_path):
    (tmp_path / "data.csv").write_text(GOOD, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "fit.json").write_text('{"fit": "another"}', encoding="utf-8")
    with pytest.raises(ConfigError, match="holds another fit"):
        simulation.fit(write_fit(tmp_path), out=out, workers=1, quiet=True)


def test_simulated_values_interpolate_in_time_and_average_replicates():
    table = pd.DataFrame({"line": [2, 3], "scenario": ["a", "a"], "time_h": [6.0, 12.0],
                          "value": [0.0, 0.0], "sd": [np.nan, np.nan]})
    observations = Observations(table=table, column="tumor_cells", source="timeseries",
                                conditions=(), time_column="time_h")
    timeseries = pd.DataFrame({"scenario": "a", "replicate": [0, 0, 1, 1],
                               "time_days": [0.0, 0.5, 0.0, 0.5],
                               "tumor_cells": [100, 200, 100, 400]})
    values = simulated_values(observations, timeseries, pd.DataFrame(), None)
    # replicate 0: 150 at 6 h, 200 at 12 h; replicate 1: 250, 400; means 200 and 300
    assert values.tolist() == [200.0, 300.0]


def test_weighted_quantiles_follow_the_weights():
    assert weighted_quantiles([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [0.5]) == [2.0]
    assert weighted_quantiles([1.0, 2.0, 3.0], [0.0, 0.0, 1.0], [0.1, 0.9]) == [3.0, 3.0]


def test_a_fit_runs_its_simulations_on_a_dask_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    synthetic_data(tmp_path / "data.csv", replicates=1)
    fit = write_fit(tmp_path, population_size=10, generations=1, predictive_draws=2)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        result = simulation.fit(fit, out=tmp_path / "out", client=client, quiet=True)
    assert result.populations["accepted"].tolist() == [10]
    assert result.predictive["draw"].nunique() == 2
    assert (tmp_path / "out" / "fit.png").is_file()


def test_without_the_fit_extra_cartsim_fit_names_it(tmp_path):
    """pyABC missing (its import blocked): one line saying what to install, no traceback."""
    blocked = ("import sys; sys.modules.update(pyabc=None); "
               "from simulation.cli import main; sys.exit(main(sys.argv[1:]))")
    fit = Path(__file__).parent.parent / "configs" / "fits" / "killing_assay_synthetic.yaml"
    done = subprocess.run([sys.executable, "-c", blocked, "fit", str(fit), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert 'needs pyabc' in done.stderr and 'pip install "cartsim[fit]"' in done.stderr
    assert not (tmp_path / "out").exists()


def largest_difference(simulated: dict, observed: dict) -> float:
    """A user's own distance (``distance: "test_fit:largest_difference"``)."""
    return max(abs(simulated[key] - observed[key]) for key in observed)


def test_a_users_own_distance_decides_the_acceptance(tmp_path):
    synthetic_data(tmp_path / "data.csv", replicates=1)
    fit = write_fit(tmp_path, population_size=10, generations=2, predictive_draws=2,
                    distance="test_fit:largest_difference")
    result = simulation.fit(fit, out=tmp_path / "out", workers=1, quiet=True)
    # the tolerance is in the user's units (% of control): a median of largest differences
    tolerances = result.populations["tolerance"]
    assert 0 < tolerances.iloc[1] <= tolerances.iloc[0] <= 100


def test_fit_figure_shows_reported_intervals_and_a_band_over_draws_on_their_own_clocks():
    """fit.png: data with a reported interval (low, high) draw it; predictive draws sampled at
    different times (a patient hands over to the systemic model on its own day) are put on one
    grid first, so the median has a value at every time either draw has (no sawtooth of
    single-draw quantiles); values over four decades get a log axis."""
    from simulation.viz.calibration import plot_fit
    table = pd.DataFrame({"line": [2, 3], "scenario": ["p", "p"], "time_h": [168.0, 2160.0],
                          "value": [27.5, 0.1], "sd": [np.nan, np.nan], "low": [16.5, 0.01],
                          "high": [57.5, 0.4]})
    observations = Observations(table=table, column="car_t_blood_per_ul", source="timeseries",
                                conditions=(), time_column="time_days")
    predictive = pd.DataFrame({"draw": [0, 0, 0, 1, 1, 1], "scenario": ["p"] * 6,
                               "time_h": [0.0, 240.0, 2160.0, 0.0, 120.0, 2160.0],
                               "value": [1.0, 10.0, 0.1, 1.0, 20.0, 0.2]})
    fig = plot_fit(observations, predictive)
    ax = fig.axes[0]
    median = next(line for line in ax.get_lines() if line.get_label().endswith("median"))
    assert list(median.get_xdata()) == [0.0, 5.0, 10.0, 90.0]  # days: both draws' times
    assert np.isfinite(median.get_ydata()).all()
    assert ax.get_yscale() == "log"
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert "data, reported interval" in labels
