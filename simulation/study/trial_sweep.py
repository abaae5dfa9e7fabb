"""Sweeps over a virtual trial: every design point is a whole cohort, read as its readouts.

A sweep file whose ``base`` is a trial file (``configs/trials/*.yaml``) varies keys of that
trial: its own (``patients``, ``seed``, ``readout_months``, one field of a property's
distribution: ``properties.car_t.max_divisions.median``) or keys of the patient scenario, set
for every patient (``car_t.kill_rate_per_h``: they join the trial's ``overrides``;
``study.trial.set_trial_values``). Each point is the trial with its values, drawn into patients
exactly as ``cartsim trial`` draws them (``TrialFile.sweep`` -> ``sweep.plan_sweep``), so a
point's patients have the run ids ``cartsim trial`` would give them.

The patients of all points form one sweep plan, run by ``sweep.run_sweep`` on its one worker
pool (no pool inside a point): one Parquet file per patient, so a rerun skips finished patients
and finished points, and points that share patients (``patients: [20, 40]``: the first 20 are
the same) run them once. Then ``readouts.csv``: one row per point with its parameter values,
the patients planned, finished and failed, and every readout of ``analysis.trial
.trial_readouts`` with its 95 % interval (``analysis.trial.readout_columns``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis.trial import readout_columns, trial_readouts
from ..config import ConfigError, Overrides, display_path, is_trial, read_yaml, yaml_value
from ..io.files import write_text
from .sweep import (Plan, SweepFile, SweepOutcome, design_points, load_sweep_table, plan_sweep,
                    read_sweep_file, run_sweep, with_options)
from .trial import TrialFile, read_trial_data, trial_with_values

#: the table of a trial sweep's points, in its folder
READOUTS_FILE = "readouts.csv"
#: the index column of a trial sweep's patients: the patient's number in its cohort
PATIENT_COLUMN = "patient"


@dataclass
class TrialSweepPlan:
    """A sweep over a trial: its points' values, each point's cohort (a validated trial) and
    the patients of all points as one sweep ``plan`` (``Run.point_id``: the sweep point;
    ``Run.values``: ``patient`` and the patient's drawn properties)."""

    path: Path
    trial_path: Path
    points: list[dict[str, Any]]
    cohorts: list[TrialFile]
    plan: Plan

    @property
    def sweep(self) -> SweepFile:
        return self.plan.sweep


def trial_base(path: Path, sweep: SweepFile) -> Path | None:
    """The trial file a sweep varies, or None if its bases are scenarios."""
    trials = [base for base in sweep.bases if _is_trial_file(path.parent / base)]
    if trials and len(sweep.bases) > 1:
        raise ConfigError(f"{display_path(path)}: base: a sweep over a trial has that trial as "
                          f"its one base (got {', '.join(sweep.bases)})")
    return path.parent / trials[0] if trials else None


def _is_trial_file(path: Path) -> bool:
    try:
        return is_trial(read_yaml(path, display_path(path)))
    except ConfigError:  # missing or unreadable: plan_sweep reports it as a base
        return False


def resolve_trial_sweep(path: str | Path, overrides: Overrides = None,
                        replicates: int | None = None, days: float | None = None
                        ) -> TrialSweepPlan | None:
    """The sweep of ``path`` resolved to every point's cohort, with the options of ``cartsim
    sweep`` (``sweep.resolve``), or None if its base is no trial file."""
    path = Path(path)
    sweep = with_options(read_sweep_file(path), display_path(path), overrides, replicates, days)
    return plan_trial_sweep(path, sweep) if trial_base(path, sweep) is not None else None


def plan_trial_sweep(path: Path, sweep: SweepFile) -> TrialSweepPlan:
    """Every point of ``sweep`` (read from ``path``; its base a trial file) as a cohort, and
    every patient of every cohort validated; a ConfigError naming ``path`` and the key path
    otherwise."""
    shown = display_path(path)
    trial_path = trial_base(path, sweep)
    problems = [f"{shown}: {key}: {problem}" for key, problem in (
        ("replicates", "a point of a sweep over a trial is a whole cohort; for several cohorts "
         "per point vary the trial's seed (parameters: {seed: [1, 100001]}, design grid)"
         if sweep.replicates != 1 else ""),
        ("record", "a sweep over a trial keeps every patient column its readouts need"
         if sweep.record is not None else "")) if problem]
    if problems:
        raise ConfigError("\n".join(problems))
    data = read_trial_data(trial_path)
    points = design_points(sweep)
    cohorts, runs, bases = [], [], {}
    for point_id, values in enumerate(points):
        context = f" [point {point_id}]" if len(points) > 1 else ""
        cohort = trial_with_values(data, {"overrides": sweep.overrides, "parameters": values},
                                   shown, context)
        try:
            patients = plan_sweep(trial_path, cohort.sweep())
        except ConfigError as err:
            where = ", ".join(f"{key}={yaml_value(value)}" for key, value in values.items())
            raise ConfigError("\n".join(f"{shown}: point {point_id} ({where}): {line}"
                                        for line in str(err).splitlines())) from None
        cohorts.append(cohort)
        bases = bases or patients.bases
        runs += [dataclasses.replace(run, point_id=point_id, values={
            PATIENT_COLUMN: run.point_id, **{k: v for k, v in run.values.items() if k != "seed"}})
            for run in patients.runs]
    return TrialSweepPlan(path, trial_path, points, cohorts, Plan(path, sweep, runs, bases))


def run_trial_sweep(path: str | Path, out: str | Path, workers: int | None = None,
                    scheduler: str | None = None, client: Any = None, quiet: bool = True,
                    plan: TrialSweepPlan | None = None) -> tuple[SweepOutcome, pd.DataFrame]:
    """Run (or resume) the patients of every point not yet in ``out`` (``sweep.run_sweep``:
    one pool for all), then write ``readouts.csv``; return the outcome and that table."""
    plan = plan if plan is not None else resolve_trial_sweep(path)
    if plan is None:
        raise ConfigError(f"{display_path(Path(path))}: base: is no trial file (run a sweep "
                          "over scenarios with study.sweep.run_sweep)")
    outcome = run_sweep(path, out, workers=workers, scheduler=scheduler, client=client,
                        quiet=quiet, plan=plan.plan)
    return outcome, write_readouts(Path(out), plan)


def write_readouts(out: Path, plan: TrialSweepPlan) -> pd.DataFrame:
    """``out/readouts.csv`` from the patients finished in ``out``: one row per point."""
    table = readouts_by_point(load_sweep_table(out), plan)
    write_text(out / READOUTS_FILE, table.to_csv(index=False, float_format="%.6g"))
    return table


def readouts_by_point(patients: pd.DataFrame, plan: TrialSweepPlan) -> pd.DataFrame:
    """One row per point: ``point_id``, its parameter values, ``patients`` (planned),
    ``patients_done``, ``patients_failed`` and the readouts of its finished patients (all NaN
    while none has finished)."""
    rows = []
    for point_id, (values, cohort) in enumerate(zip(plan.points, plan.cohorts, strict=True)):
        mine = patients[patients["point_id"] == point_id]
        done = mine[mine["status"] == "done"]
        readouts = trial_readouts(done, cohort.readout_months) if len(done) else None
        rows.append({"point_id": point_id, **values, "patients": cohort.patients,
                     "patients_done": len(done),
                     "patients_failed": int((mine["status"] == "failed").sum()),
                     **readout_columns(readouts)})
    return pd.DataFrame(rows)
