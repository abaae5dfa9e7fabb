"""Sweeps: sweep-file validation, designs, on-disk results, resume after SIGKILL, failures,
report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from simulation.execution import runner
from simulation.study import sweep
from simulation.study.trial_sweep import resolve_trial_sweep
from simulation.cli import main
from simulation.config import ConfigError
from simulation.study import report
from simulation.study.report import (
    SmallSampleWarning,
    axis_label,
    plot_response,
    plot_sobol,
    sobol_indices,
    wilson_interval,
    write_report,
)

DATA = Path(__file__).parent / "data"
SWEEPS = DATA / "sweeps"
GRID = SWEEPS / "grid_small.yaml"
GRID_RUNS = 2 * 2 * 2 * 2


def cartsim(capsys, *args) -> tuple[int, str, str]:
    """``cartsim ARGS`` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_sweep(folder: Path, text: str, name: str = "x.yaml") -> Path:
    """A sweep file in ``folder`` whose bases are the small test scenarios."""
    path = folder / name
    path.write_text(text.replace("DATA", str(DATA)), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _no_open_figures():
    """Figures left open by earlier test files must not push the report's past matplotlib's
    20-figure warning (an error under this suite's filterwarnings)."""
    import matplotlib.pyplot as plt

    plt.close("all")
    yield


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    """The small grid sweep, run once in this process (the pool backends: test_sweep_dask.py)."""
    out = tmp_path_factory.mktemp("sweep") / "grid"
    outcome = sweep.run_sweep(GRID, out, workers=1)
    assert outcome.done == GRID_RUNS and not outcome.failed
    return out


# ---- designs ----------------------------------------------------------------------------------
def _spec(parameters: dict, design: dict, **extra) -> sweep.SweepFile:
    return sweep.SweepFile.model_validate({"name": "t", "base": "b.yaml",
                                           "parameters": parameters, "design": design, **extra})


def test_grid_is_full_factorial_and_zip_walks_lists_together():
    grid = sweep.design_points(_spec({"a": [1, 2, 3], "b.c": [0.5, 1.5]}, {"method": "grid"}))
    assert len(grid) == 6 and grid[0] == {"a": 1, "b.c": 0.5} and grid[-1] == {"a": 3, "b.c": 1.5}
    zipped = sweep.design_points(_spec({"a": [1, 2], "b": [10, 20]}, {"method": "zip"}))
    assert zipped == [{"a": 1, "b": 10}, {"a": 2, "b": 20}]


@pytest.mark.parametrize("design, expected", [
    ({"method": "latin_hypercube", "n": 7}, 7),
    ({"method": "random", "n": 5}, 5),
    ({"method": "sobol", "n": 8}, 8 * (2 + 2)),
    ({"method": "sobol", "n": 8, "second_order": True}, 8 * (2 * 2 + 2)),
    ({"method": "morris", "trajectories": 3}, 3 * (2 + 1)),
])
def test_sampled_designs_are_seeded_and_stay_in_range(design, expected):
    params = {"x": {"low": 10.0, "high": 1000.0, "log": True},
              "k": {"low": 1, "high": 20, "integer": True}}
    points = sweep.design_points(_spec(params, design, seed=4))
    assert len(points) == expected
    assert points == sweep.design_points(_spec(params, design, seed=4))
    assert points != sweep.design_points(_spec(params, design, seed=5))
    xs = np.array([p["x"] for p in points])
    assert ((xs >= 10.0 - 1e-9) & (xs <= 1000.0 + 1e-9)).all()
    assert all(isinstance(p["k"], int) and 1 <= p["k"] <= 20 for p in points)
    if design["method"] == "latin_hypercube":  # one sample per stratum (in log10 space)
        strata = np.floor((np.log10(xs) - 1.0) / 2.0 * expected).astype(int)
        assert sorted(strata) == list(range(expected))


def test_values_survive_the_yaml_round_trip():
    for value in (1e-05, 0.1, 3, 2.5e9, True, "compact"):
        assert yaml.safe_load(sweep.yaml_value(value)) == value


# ---- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize("body, message", [
    ("parameters: {car_t.max_kills: [0, 5]}\ndesign: {method: grid}",
     "x.yaml: parameters.car_t.max_kills: must be >= 1 (got 0)"),
    ("parameters: {car_t.max_kill: [5]}\ndesign: {method: grid}",
     "x.yaml: parameters.car_t.max_kill: unknown key (did you mean 'max_kills'?)"),
    ("parameters: {dosing.doses.3.day: [1.0]}\ndesign: {method: grid}",
     "x.yaml: parameters.dosing.doses.3.day: '3' is not an index of a list of 1"),
    ("overrides: {time.dt_min: -1}\nparameters: {car_t.max_kills: [5]}\ndesign: {method: grid}",
     "x.yaml: overrides.time.dt_min: must be > 0 (got -1)"),
    ("parameters: {car_t.max_kills: [5]}\ndesign: {method: sobol, n: 6}",
     "x.yaml: design.n: must be a power of 2 (got 6)"),
    ("parameters: {a: [1, 2], b: [1]}\ndesign: {method: zip}",
     "x.yaml: parameters: design zip needs lists of equal length (got {'a': 2, 'b': 1})"),
    ("parameters: {a: [1]}\ndesign: {method: latin_hypercube, n: 3}",
     "x.yaml: parameters.a: design latin_hypercube needs a range"),
    ("parameters: {a: {low: 2, high: 1}}\ndesign: {method: random, n: 3}",
     "x.yaml: parameters.a.low: must be below high (1) (got 2"),
    ("parameters: {a: {low: 1, hi: 2}}\ndesign: {method: random, n: 3}",
     "x.yaml: parameters.a.hi: unknown key"),
    ("parameters: {car_t.max_kills: [5]}\ndesign: {method: grid}\nrecord: [responce]",
     "x.yaml: record: unknown column(s) ['responce']"),
    ("parameters: {car_t.max_kills: [5]}\ndesign: {method: grid, n: 3}",
     "x.yaml: design.n: unknown key"),
])
def test_bad_sweep_fails_up_front_naming_file_and_key(tmp_path, body, message):
    path = write_sweep(tmp_path, f"name: x\nbase: [DATA/small_blood.yaml]\n{body}\n")
    with pytest.raises(ConfigError) as err:
        sweep.resolve(path)
    assert message in str(err.value)


def test_cli_exits_2_on_a_bad_value_and_writes_nothing(tmp_path, capsys):
    path = write_sweep(tmp_path, "name: x\nbase: [DATA/small_blood.yaml, DATA/small_solid.yaml]\n"
                       "parameters: {car_t.max_kills: [5, 300]}\ndesign: {method: grid}\n")
    code, _, err = cartsim(capsys, "sweep", path, "--out", tmp_path / "out", "--quiet")
    assert code == 2
    assert "x.yaml: parameters.car_t.max_kills: must be <= 255 (got 300)" in err
    assert "[base " in err and "point 1]" in err
    assert not (tmp_path / "out").exists()
    assert cartsim(capsys, "report", tmp_path)[0] == 2


# ---- outputs ----------------------------------------------------------------------------------
def test_sweep_writes_one_parquet_per_run_index_and_manifest(grid_run):
    runs = sorted((grid_run / "runs").glob("*.parquet"))
    assert len(runs) == GRID_RUNS
    assert all(len(p.stem) == 16 and int(p.stem, 16) >= 0 for p in runs)
    assert not list(grid_run.rglob(".*.tmp*"))
    index = pd.read_parquet(grid_run / "index.parquet")
    assert list(index.columns[:6]) == list(sweep.INDEX_COLUMNS)
    assert {"car_t.max_kills", "dosing.doses.0.effector_to_target", "status", "error"} <= set(
        index.columns)
    assert (index["status"] == "done").all()
    manifest = json.loads((grid_run / "manifest.json").read_text())
    assert manifest["seeds"] == [5, 6] and manifest["runs"] == GRID_RUNS
    assert manifest["design"] == {"method": "grid"}
    assert {"pyarrow", "SALib", "numba", "mesa"} <= set(manifest["versions"])
    resolved = yaml.safe_load((grid_run / "sweep.resolved.yaml").read_text())
    assert set(resolved["bases"]) == {"../small_blood.yaml", "../small_solid.yaml"}


def test_run_id_is_the_hash_of_resolved_config_and_seed(grid_run):
    plan = sweep.resolve(GRID)
    run = plan.runs[0]
    assert run.run_id == sweep.run_id(run.scenario, run.seed)
    assert run.scenario.car_t.max_kills == 2 and run.seed == 5
    assert len({r.run_id for r in plan.runs}) == GRID_RUNS


def test_load_gives_one_tidy_row_per_run_equal_to_direct_runs(grid_run):
    table = sweep.load_sweep_table(grid_run)
    assert len(table) == GRID_RUNS and table["run_id"].is_unique
    assert list(table["point_id"]) == sorted(table["point_id"])
    assert set(table["base"]) == {"small_blood", "small_solid"}
    assert {"response", "cleared", "car_t_peak", "final_tumor_cells"} <= set(table.columns)
    # a run of the sweep is exactly runner.run_one on its resolved scenario
    plan = sweep.resolve(GRID)
    run = plan.runs[5]
    _, summary, _ = runner.run_one(runner.RunSpec(run.scenario, 0, run.replicate, run.seed))
    row = table.set_index("run_id").loc[run.run_id]
    for key in ("response", "final_tumor_cells", "car_t_peak", "cancer_killed"):
        assert row[key] == summary[key], key


def test_rerun_skips_finished_runs_and_other_sweeps_are_refused(grid_run, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in (grid_run / "runs").iterdir()}
    outcome = sweep.run_sweep(GRID, grid_run, workers=2)
    assert outcome.skipped == GRID_RUNS and outcome.done == 0
    assert before == {p.name: p.stat().st_mtime_ns for p in (grid_run / "runs").iterdir()}
    other = write_sweep(tmp_path, "name: y\nbase: DATA/small_blood.yaml\n"
                        "parameters: {car_t.max_kills: [3]}\ndesign: {method: grid}\n")
    with pytest.raises(ConfigError, match="holds a different sweep"):
        sweep.run_sweep(other, grid_run, workers=1)


def finished_run_files(out: Path) -> list[Path]:
    """The run files a sweep has finished; the writer's hidden ``.<id>.tmp.parquet`` is not one."""
    return [p for p in (out / "runs").glob("*.parquet") if not p.name.startswith(".")]


def test_resume_after_sigkill_equals_uninterrupted_sweep(grid_run, tmp_path, capsys):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "simulation", "sweep", str(GRID), "--out",
                             str(out), "--workers", "1", "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while len(finished_run_files(out)) < 3:
            assert proc.poll() is None, "sweep ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    partial = len(finished_run_files(out))
    assert 3 <= partial < GRID_RUNS
    interrupted = sweep.load_sweep_table(out)
    assert (interrupted["status"] == "pending").sum() == GRID_RUNS - partial
    (out / "runs" / ".0123456789abcdef.tmp.parquet").write_bytes(b"half a row")  # a cut write
    code, stdout, stderr = cartsim(capsys, "sweep", GRID, "--out", out, "--quiet",
                                   "--workers", "1")
    assert code == 0, stderr
    assert f"{partial} already done" in stdout
    assert not list(out.rglob(".*.tmp*")), "a half-written file of the killed run was left"
    resumed = sweep.load_sweep_table(out).sort_values("run_id", ignore_index=True)
    uninterrupted = sweep.load_sweep_table(grid_run).sort_values("run_id", ignore_index=True)
    assert resumed.equals(uninterrupted)


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch, capsys):
    real = runner.run_one

    def flaky(spec):
        if spec.seed == 6 and spec.scenario.name == "small_solid":
            raise RuntimeError("boom: injected failure")
        return real(spec)

    monkeypatch.setattr(sweep, "run_one", flaky)
    out = tmp_path / "flaky"
    outcome = sweep.run_sweep(GRID, out, workers=1)  # in this process: the patch applies
    assert len(outcome.failed) == 4 and outcome.done == GRID_RUNS - 4
    assert "4 of 16 runs failed" in sweep.failure_summary(outcome)
    assert "RuntimeError: boom: injected failure" in sweep.failure_summary(outcome)
    table = sweep.load_sweep_table(out)
    failed = table[table["status"] == "failed"]
    assert len(failed) == 4 and set(failed["seed"]) == {6} and set(failed["base"]) == {
        "small_solid"}
    assert failed["error"].str.contains("RuntimeError: boom").all()
    assert failed["response"].isna().all()
    index = pd.read_parquet(out / "index.parquet")
    assert (index["status"] == "failed").sum() == 4
    # the next run retries only the failed runs
    monkeypatch.setattr(sweep, "run_one", real)
    again = sweep.run_sweep(GRID, out, workers=1)
    assert again.skipped == GRID_RUNS - 4 and again.done == 4 and not again.failed
    assert (sweep.load_sweep_table(out)["status"] == "done").all()
    assert not list((out / "runs").glob("*.error.json"))


# ---- report -----------------------------------------------------------------------------------
def test_wilson_interval_and_axis_labels():
    low, high = wilson_interval(np.array([0, 5, 10]), np.array([10, 10, 10]))
    assert low[0] == 0 and high[2] == 1
    assert low[1] == pytest.approx(0.2366, abs=1e-4) and high[1] == pytest.approx(0.7634, abs=1e-4)
    # scipy's Wilson interval (binomtest) is the score formula the report used to write out
    successes = np.array([0, 1, 2, 3, 7, 10, 0])
    n = np.array([10, 3, 7, 3, 9, 10, 0])
    low, high = wilson_interval(successes, n)
    z = 1.959963984540054
    with np.errstate(invalid="ignore", divide="ignore"):
        p = successes / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    np.testing.assert_allclose(low[:-1], np.clip(centre - half, 0, 1)[:-1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(high[:-1], np.clip(centre + half, 0, 1)[:-1], rtol=0, atol=1e-15)
    assert np.isnan(low[-1]) and np.isnan(high[-1])  # no runs: no interval
    assert axis_label("tumor.antigen.mean_molecules_per_cell") == \
        "tumour antigen mean (molecules/cell)"
    assert axis_label("car_t.speed_um_per_min") == "CAR-T speed (µm/min)"
    assert "E:T" in axis_label("dosing.doses.0.effector_to_target")


def test_report_writes_response_probabilities_and_heatmap(grid_run, tmp_path, capsys):
    code, _, stderr = cartsim(capsys, "report", grid_run, "--out", tmp_path / "report")
    assert code == 0, stderr
    prob = pd.read_csv(tmp_path / "report" / "response_probability.csv")
    assert len(prob) == 4 * 2 and (prob["runs"] == 2).all()
    assert ((prob["cr_ci95_low"] <= prob["cr_probability"])
            & (prob["cr_probability"] <= prob["cr_ci95_high"])).all()
    table = sweep.load_sweep_table(grid_run)
    expected = table.groupby(["point_id", "base"])["response"].apply(lambda r: (r == "CR").mean())
    got = prob.set_index(["point_id", "base"])["cr_probability"]
    assert np.allclose(got.loc[expected.index].to_numpy(), expected.to_numpy())
    assert (tmp_path / "report" / "response_probability.png").stat().st_size > 10_000


def _drawn(monkeypatch) -> list:
    """The figures the report saves, kept open for inspection."""
    figures = []
    monkeypatch.setattr(report, "_save", lambda fig, path: figures.append(fig) or path)
    return figures


def test_heatmap_cells_give_n_and_the_wilson_interval(grid_run, monkeypatch):
    prob = report.response_probability(sweep.load_sweep_table(grid_run),
                                       list(sweep.read_sweep_file(GRID).parameters))
    figures = _drawn(monkeypatch)
    plot_response(prob, list(sweep.read_sweep_file(GRID).parameters), grid_run / "x.png")
    fig = figures[0]
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    row = prob.iloc[0]
    expected = (f"{row['complete_responses']}/{row['runs']} = {row['cr_probability']:.2f}\n"
                f"[{row['cr_ci95_low']:.2f}, {row['cr_ci95_high']:.2f}]")
    assert expected in texts and len(texts) == len(prob)
    assert "n = 2 runs per cell" in fig.get_suptitle() and "Wilson 95% CI" in fig.get_suptitle()


def _sobol_table() -> pd.DataFrame:
    return pd.DataFrame({"base": "b", "output": "cr_probability", "parameter": ["x", "y"],
                         "S1": [1.9, -0.3], "S1_conf": [0.8, 0.9], "ST": [1.2, 0.1],
                         "ST_conf": [1.0, 0.4]})


def test_sobol_plot_warns_on_a_small_base_sample(tmp_path, monkeypatch):
    figures = _drawn(monkeypatch)
    with pytest.warns(SmallSampleWarning, match=r"N = 8 base samples \(< 128\)"):
        plot_sobol(_sobol_table(), tmp_path / "s.png", base_samples=8)
    assert "WARNING" in figures[0].get_suptitle() and "N = 8" in figures[0].get_suptitle()
    bars = [c for c in figures[0].axes[0].containers if hasattr(c, "errorbar")]
    assert len(bars) == 2 and all(c.errorbar is not None for c in bars)  # S1, ST with CIs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_sobol(_sobol_table(), tmp_path / "s.png", base_samples=256)
    assert "WARNING" not in figures[1].get_suptitle()


@pytest.mark.parametrize("name, csv, columns", [
    ("sobol_small", "sobol_indices.csv", {"S1", "S1_conf", "ST", "ST_conf"}),
    ("morris_small", "morris_indices.csv", {"mu_star", "mu_star_conf", "sigma"}),
])
def test_sensitivity_designs_report_indices(tmp_path, name, csv, columns):
    out = tmp_path / name
    outcome = sweep.run_sweep(SWEEPS / f"{name}.yaml", out, workers=1)
    assert not outcome.failed
    with warnings.catch_warnings(record=True) as caught:  # sobol_small: N = 4 base samples
        warnings.simplefilter("always")
        written = write_report(out)
    small = [w for w in caught if issubclass(w.category, SmallSampleWarning)]
    assert len(small) == (name == "sobol_small")
    indices = pd.read_csv(out / "report" / csv)
    assert columns <= set(indices.columns)
    assert set(indices["parameter"]) == set(sweep.read_sweep_file(SWEEPS / f"{name}.yaml").parameters)
    assert out / "report" / csv.replace(".csv", ".png") in written


def test_a_lost_worker_fails_its_run_not_the_sweep():
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from simulation.execution.pool import _result

    plan = sweep.resolve(GRID)
    future = Future()
    future.set_exception(BrokenProcessPool("a worker died"))
    result = _result(future, plan.runs[0], sweep.lost_run)
    assert result["status"] == "failed" and result["run_id"] == plan.runs[0].run_id
    assert result["error"].startswith("worker lost: ")
    assert "BrokenProcessPool: a worker died" in result["error"]
    with pytest.raises(BrokenProcessPool):
        _result(future, plan.runs[0], None)


SHIPPED_SWEEPS = sorted((Path(__file__).parent.parent / "configs" / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED_SWEEPS, ids=lambda p: p.stem)
def test_every_shipped_sweep_resolves_to_valid_runs(path):
    # validates the scenario of every run (a sweep over a trial: of every point's patients)
    cohorts = resolve_trial_sweep(path)
    plan = cohorts.plan if cohorts is not None else sweep.resolve(path)
    assert plan.sweep.name == path.stem
    assert len(plan.unique_runs) >= 32


def test_sweep_takes_the_options_of_run_and_a_default_folder(tmp_path, monkeypatch, capsys):
    """--replicates, --days and --set change the plan (recorded in sweep.resolved.yaml); the
    folder defaults to results/<sweep name>, where the same command resumes and other options
    are refused."""
    monkeypatch.chdir(tmp_path)
    options = ["--replicates", "1", "--days", "2", "--set", "car_t.speed_um_per_min=4",
               "--workers", "1", "--quiet"]
    assert main(["sweep", str(GRID), *options]) == 0
    out = tmp_path / "results" / "grid_small"
    resolved = yaml.safe_load((out / "sweep.resolved.yaml").read_text())["sweep"]
    assert resolved["replicates"] == 1
    assert resolved["overrides"] == {"time.duration_days": 2.0, "time.record_every_h": 12,
                                     "car_t.speed_um_per_min": 4}
    table = sweep.load_sweep_table(out)
    assert len(table) == 8 and (table["status"] == "done").all()
    assert (table["final_day"] == 2.0).all()
    assert "8 runs (0 already done, 8 done now" in capsys.readouterr().out
    assert main(["sweep", str(GRID), *options]) == 0
    assert "8 runs (8 already done, 0 done now" in capsys.readouterr().out
    assert main(["sweep", str(GRID), "--workers", "1", "--quiet"]) == 2
    assert "holds a different sweep" in capsys.readouterr().err
    assert main(["sweep", str(GRID), "--replicates", "0"]) == 2
    assert "grid_small.yaml: replicates: must be >= 1 (got 0)" in capsys.readouterr().err


def test_sobol_indices_of_an_output_that_never_varies_are_empty_and_say_why():
    """A zero-variance output has no variance to share out; it was written as S1 = ST = 0."""
    design = _spec({"x": {"low": 1.0, "high": 2.0}, "k": {"low": 1.0, "high": 3.0}},
                   {"method": "sobol", "n": 8}, seed=2)
    points = len(sweep.design_points(design))
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"status": "done", "base": "b", "point_id": range(points),
                          "response": "PD",  # never a CR: cr_probability is 0 everywhere
                          "final_tumor_cells": rng.integers(1, 100, points),
                          "baseline_tumor_cells": 100})
    indices = sobol_indices(table, design)
    constant = indices[indices["output"] == "cr_probability"]
    assert constant[["S1", "S1_conf", "ST", "ST_conf"]].isna().all().all()
    assert (constant["note"] == "the same value (0) at every design point: no variance to "
                                "attribute, so no index").all()
    varying = indices[indices["output"] == "final_tumor_fraction"]
    assert varying[["S1", "ST"]].notna().all().all() and (varying["note"] == "").all()
