"""A virtual trial as the model of `cartsim sweep` and `cartsim fit`: every sweep point and
every fit particle is a whole cohort, read as its readouts (ORR, CR rate, PFS, CRS, ...).

The cohorts are 2-3 patients of tests/data/small_trial.yaml (a 40 x 40 lattice for 8 days, then
the systemic follow-up to day 120: ~0.2 s per patient once the kernels are compiled), run in
this process (one worker).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

import simulation
from simulation.cli import main
from simulation.config import ConfigError
from simulation.study.fit import load_fit
from simulation.study.sweep import plan_sweep
from simulation.study.trial import read_trial_file
from simulation.study.trial_sweep import READOUTS_FILE, resolve_trial_sweep

DATA = Path(__file__).parent / "data"
TRIAL = DATA / "small_trial.yaml"
DIVISIONS = "properties.car_t.max_divisions.high"  # the trial draws uniform(1, high)
RATES = ("orr", "cr_rate", "mrd_negative_rate", "pfs", "crs_any", "crs_grade3")


def write_sweep(folder: Path, parameters: dict, **changes) -> Path:
    sweep = {"name": "cohorts", "base": str(TRIAL), "overrides": {"patients": 3},
             "parameters": parameters, "design": {"method": "grid"}, **changes}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False), encoding="utf-8")
    return path


# ---- cartsim sweep over a trial ----------------------------------------------------------------
def test_a_sweep_over_a_trial_has_one_row_of_cohort_readouts_per_point_and_resumes(
        tmp_path, capsys):
    sweep, out = write_sweep(tmp_path, {DIVISIONS: [2, 12]}), tmp_path / "out"
    command = ["sweep", str(sweep), "--out", str(out), "--workers", "1", "--quiet"]
    assert main(command) == 0
    assert "6 runs (0 already done, 6 done now, 0 failed)" in capsys.readouterr().out
    table = pd.read_csv(out / READOUTS_FILE)
    assert table["point_id"].tolist() == [0, 1] and table[DIVISIONS].tolist() == [2, 12]
    assert (table["patients_done"] == 3).all() and (table["patients_failed"] == 0).all()
    for name in RATES:  # valid probabilities inside their intervals
        assert table[name].between(0, 1).all(), name
        assert (table[f"{name}_low"] <= table[name]).all() and \
            (table[name] <= table[f"{name}_high"]).all(), name
    # the same patients (seeds, draws of the same quantiles), CAR-T that can divide at most
    # twice against up to 12 times: no patient clears with 1-2 divisions, and some with more
    assert table.loc[0, "cr_rate"] < table.loc[1, "cr_rate"]
    assert table.loc[0, "orr"] <= table.loc[1, "orr"]
    first = (out / READOUTS_FILE).read_bytes()
    assert main(["report", str(out)]) == 2  # its table is readouts.csv, not a CR heatmap
    assert f"{out}: a sweep over a trial" in capsys.readouterr().err
    # a rerun finds every patient done; a patient whose file is lost is the only one rerun
    assert main(command) == 0
    assert "6 already done, 0 done now" in capsys.readouterr().out
    assert (out / READOUTS_FILE).read_bytes() == first
    sorted((out / "runs").glob("*.parquet"))[0].unlink()
    assert main(command) == 0
    assert "5 already done, 1 done now" in capsys.readouterr().out
    assert (out / READOUTS_FILE).read_bytes() == first


def test_trial_sweep_points_are_the_cohorts_cartsim_trial_draws(tmp_path):
    """patients, scenario keys set for every patient, and patients shared between points."""
    plan = resolve_trial_sweep(write_sweep(tmp_path, {"patients": [2, 3],
                                                      "car_t.max_kills": [1, 7]}))
    assert [c.patients for c in plan.cohorts] == [2, 2, 3, 3]
    alone = plan_sweep(TRIAL, read_trial_file(TRIAL, patients=3).model_copy(
        update={"overrides": {"car_t.max_kills": 7}}).sweep())
    last = [run for run in plan.plan.runs if run.point_id == 3]
    assert [run.run_id for run in last] == [run.run_id for run in alone.runs]
    assert all(run.scenario.car_t.max_kills == 7 for run in last)
    # the 2-patient cohorts are the first two patients of the 3-patient ones: 3 + 3 runs
    assert len(plan.plan.unique_runs) == 6 and len(plan.plan.runs) == 10


BAD_SWEEPS = {
    "no such property": ({"properties.car_t.max_division.median": [2.0]},
                         "parameters.properties.car_t.max_division.median: the trial has no "
                         "property car_t.max_division"),
    "no such field": ({"properties.car_t.max_divisions.medain": [2.0]},
                      "parameters.properties.car_t.max_divisions.medain: unknown key"),
    "bad trial value": ({"patients": [3, 1]},
                        "parameters.patients: must be >= 2 (got 1) [point 1]"),
    "a property as a scenario key": ({"car_t.max_divisions": [3]},
                                     "parameters.car_t.max_divisions: varies between the "
                                     "trial's patients"),
    "unknown scenario key": ({"car_t.max_kill": [3]},
                             "point 0 (car_t.max_kill=3): "),
}


@pytest.mark.parametrize("case", sorted(BAD_SWEEPS))
def test_a_bad_sweep_over_a_trial_names_file_and_key(tmp_path, capsys, case):
    parameters, expected = BAD_SWEEPS[case]
    sweep = write_sweep(tmp_path, parameters)
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"sweep.yaml: {expected}" in err, err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
    if case == "unknown scenario key":
        assert "car_t.max_kill: unknown key (did you mean 'max_kills'?)" in err, err


def test_replicates_of_a_trial_sweep_point_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="sweep.yaml: replicates: a point of a sweep over a "
                       "trial is a whole cohort"):
        resolve_trial_sweep(write_sweep(tmp_path, {"patients": [2]}, replicates=2))


# ---- cartsim fit to a trial's readouts ----------------------------------------------------------
READOUTS = "readout,value,sd,source\ncr_rate,0.5,0.25,test\norr,0.5,0.25,test\n"


def write_fit(folder: Path, data: str = READOUTS, **changes) -> Path:
    (folder / "data.csv").write_text(data, encoding="utf-8")
    fit = {"name": "cohort_fit", "model": str(TRIAL), "data": "data.csv",
           "set": {"patients": 2}, "parameters": {DIVISIONS: {"low": 2.0, "high": 12.0}},
           "population_size": 10, "generations": 1, "distance": "sd", "predictive_draws": 2,
           "seed": 4, **changes}
    path = folder / "fit.yaml"
    path.write_text(yaml.safe_dump(fit), encoding="utf-8")
    return path


def test_a_fit_to_cohort_readouts_runs_a_cohort_per_particle(tmp_path):
    result = simulation.fit(write_fit(tmp_path), out=tmp_path / "out", workers=1, quiet=True)
    posterior = pd.read_csv(tmp_path / "out" / "posterior.csv")
    assert list(posterior.columns) == [DIVISIONS, "weight", "generation"]
    assert len(posterior) == 10 and posterior[DIVISIONS].between(2.0, 12.0).all()
    predictive = result.predictive  # two cohorts: the observed readouts of each, as rates
    assert sorted(predictive["line"].unique()) == [2, 3] and len(predictive) == 4
    assert predictive["value"].between(0, 1).all()
    # fitted.yaml is the trial at the posterior median, runnable from the fit folder
    fitted = tmp_path / "out" / "fitted.yaml"
    trial = read_trial_file(fitted)
    assert trial.patients == 2 and trial.properties["car_t.max_divisions"].high == \
        pytest.approx(result.medians()[DIVISIONS])
    assert len(plan_sweep(fitted, trial.sweep()).runs) == 2
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "2 observed readouts (cr_rate, orr) of a cohort per particle" in report


BAD_TRIAL_FITS = {
    "unknown readout": ({"data": "readout,value\ncr,0.58\n"},
                        "data.csv: column readout: unknown readout(s) cr on line(s) 2; known: "),
    "no value column": ({"data": "readout,rate\ncr_rate,0.58\n"},
                        "data.csv: needs a column value"),
    "unknown trial key": ({"parameters": {"properties.nope.median": {"low": 1, "high": 2}}},
                          "fit.yaml: parameters.properties.nope.median: the trial has no "
                          "property nope"),
    "prior bound the trial refuses": ({"parameters": {"patients": {"low": 1, "high": 4,
                                                                   "integer": True}}},
                                      "fit.yaml: parameters.patients: must be >= 2"),
    "scale": ({"scale": 0.5}, "fit.yaml: scale: a trial's patients run on the lattice"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRIAL_FITS))
def test_a_bad_trial_fit_names_file_and_key(tmp_path, capsys, case):
    changes, expected = BAD_TRIAL_FITS[case]
    fit = write_fit(tmp_path, **changes)
    with pytest.raises(ConfigError, match=None) as error:
        load_fit(fit)
    assert expected in str(error.value), error.value
    assert main(["fit", str(fit), "--out", str(tmp_path / "out"), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and not (tmp_path / "out").exists()


def test_the_shipped_trial_fit_validates(capsys):
    fit = Path(__file__).parent.parent / "configs" / "fits" / "lbcl_zuma1_cohort.yaml"
    assert main(["validate", str(fit)]) == 0
    assert "2 readouts cr_rate, orr of a cohort per particle" in capsys.readouterr().out
