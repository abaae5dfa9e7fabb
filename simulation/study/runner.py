"""Runs -> tidy tables: one time-series row per census, one summary row per run.

``run_study`` runs every (scenario, replicate) of a study, in worker processes when there are
several, and returns the two tables sorted by scenario order and replicate, so the output does
not depend on the number of workers or on which run finished first.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import ScenarioConfig, Study
from ..model import REPORTED_COLUMNS, CarTModel

ID_COLUMNS = ("scenario", "tumor_type", "replicate", "seed")

#: response thresholds on the tumour cell count relative to baseline (RECIST-like)
PARTIAL_RESPONSE_FRACTION = 0.7  # best count <= 70 % of baseline: >= 30 % shrinkage
PROGRESSION_FRACTION = 1.2  # final count >= 120 % of baseline without a partial response
#: complete response: the nadir is below the minimal-residual-disease detection limit of flow
#: cytometry, 1 cancer cell in 10^4 (0.01 %); counts below it are undetectable in a patient
MRD_DETECTION_FRACTION = 1e-4
#: relapse: after a CR or PR the count regrows to >= 120 % of the nadir (RECIST progression)
#: and by at least this many cells (or 0.1 % of baseline, if more), so that one surviving cell
#: dividing is not a relapse
RELAPSE_MIN_INCREASE_CELLS = 10
RELAPSE_MIN_INCREASE_FRACTION = 1e-3


@dataclass(frozen=True)
class RunSpec:
    """One simulation: a scenario, its replicate number and seed."""

    scenario: ScenarioConfig
    scenario_index: int
    replicate: int
    seed: int
    threads: int | None = None  # kernel threads; None: CarTModel's default


def run_specs(study: Study, threads: int | None = None) -> list[RunSpec]:
    """All runs of a study; replicate r of every scenario uses seed ``study.seed + r``."""
    return [
        RunSpec(scenario, i, r, study.seed + r, threads)
        for i, scenario in enumerate(study.scenarios)
        for r in range(study.replicates)
    ]


def run_one(spec: RunSpec) -> tuple[pd.DataFrame, dict]:
    """Run one simulation to its end; return its time series and its summary row."""
    model = CarTModel(spec.scenario, seed=spec.seed, threads=spec.threads)
    model.run()
    return run_tables(model, spec)


def run_tables(model: CarTModel, spec: RunSpec) -> tuple[pd.DataFrame, dict]:
    """The time series and summary row of a finished run of ``spec`` (``model``)."""
    series = model.datacollector.get_model_vars_dataframe().reset_index(drop=True)
    series = series[list(REPORTED_COLUMNS)]
    ids = {
        "scenario": spec.scenario.name,
        "tumor_type": spec.scenario.tumor_type,
        "replicate": spec.replicate,
        "seed": spec.seed,
    }
    for position, (key, value) in enumerate(ids.items()):
        series.insert(position, key, value)
    first_dose_day = min((d.day for d in spec.scenario.dosing.doses), default=0.0)
    summary = {**ids, **summarise_run(series, first_dose_day)}
    summary["car_t_infused"] = model.car_t_infused
    summary["car_t_not_placed"] = model.car_t_not_placed
    return series, summary


def classify_response(baseline: int, best: int, final: int) -> str:
    """RECIST-like best response from tumour cell counts.

    CR: the best (nadir) count is below the MRD detection limit (``MRD_DETECTION_FRACTION`` of
    baseline; 0 cells for baselines under 10^4). PR: best count <= 70 % of baseline. PD: no PR
    and the final count >= 120 % of baseline. SD otherwise.
    """
    if best < MRD_DETECTION_FRACTION * baseline or best == 0:
        return "CR"
    if best <= PARTIAL_RESPONSE_FRACTION * baseline:
        return "PR"
    if final >= PROGRESSION_FRACTION * baseline:
        return "PD"
    return "SD"


def find_relapse(counts: pd.Series, times: pd.Series, baseline: int) -> float | None:
    """Day of relapse, or None: the first census after the nadir at which a responding tumour
    (nadir <= 70 % of baseline) has regrown to >= 120 % of the nadir and by at least
    ``RELAPSE_MIN_INCREASE_CELLS`` (or ``RELAPSE_MIN_INCREASE_FRACTION`` of baseline)."""
    nadir_at = int(np.argmin(counts.to_numpy()))
    nadir = int(counts.iloc[nadir_at])
    if nadir > PARTIAL_RESPONSE_FRACTION * baseline:
        return None
    rise = max(RELAPSE_MIN_INCREASE_CELLS, RELAPSE_MIN_INCREASE_FRACTION * baseline)
    later = counts.iloc[nadir_at:]
    regrown = later[(later >= PROGRESSION_FRACTION * nadir) & (later >= nadir + rise)]
    return float(times.loc[regrown.index[0]]) if len(regrown) else None


def _peak(series: pd.DataFrame, column: str) -> tuple[float, float]:
    """(largest value of ``column``, day of its first occurrence)."""
    row = series.loc[series[column].idxmax()]
    return float(row[column]), float(row["time_days"])


def summarise_run(series: pd.DataFrame, first_dose_day: float) -> dict:
    """Outcome of one run from its time series (baseline = last census at or before dosing)."""
    before = series[series["time_days"] <= first_dose_day + 1e-9]
    baseline = int(before["tumor_cells"].iloc[-1])
    after = series[series["time_days"] >= first_dose_day - 1e-9]
    nadir_row = after.loc[after["tumor_cells"].idxmin()]
    final = int(series["tumor_cells"].iloc[-1])
    cleared_rows = after[after["tumor_cells"] == 0]
    relapse_day = find_relapse(after["tumor_cells"], after["time_days"], baseline)
    car_t_peak, car_t_peak_day = _peak(series, "car_t_cells")
    # the census at an intravenous infusion holds the dose itself; the clinical peak is later
    expansion = series[series["time_days"] > first_dose_day + 1e-9]
    blood_peak, blood_peak_day = _peak(expansion if len(expansion) else series,
                                       "car_t_blood_per_ul")
    crs_peak, crs_peak_day = _peak(series, "crs_index")
    final_negative = (float(series["tumor_antigen_negative"].iloc[-1]) / final if final
                      else None)
    return {
        "response": classify_response(baseline, int(nadir_row["tumor_cells"]), final),
        "cleared": final == 0,
        "baseline_tumor_cells": baseline,
        "nadir_tumor_cells": int(nadir_row["tumor_cells"]),
        "nadir_day": float(nadir_row["time_days"]),
        "final_tumor_cells": final,
        "final_day": float(series["time_days"].iloc[-1]),
        "clearance_day": float(cleared_rows["time_days"].iloc[0]) if len(cleared_rows) else None,
        "relapse": relapse_day is not None,
        "relapse_day": relapse_day,
        "relapse_antigen_negative_fraction": final_negative if relapse_day is not None else None,
        "initial_antigen_negative_fraction": (
            float(series["tumor_antigen_negative"].iloc[0]) / int(series["tumor_cells"].iloc[0])
            if int(series["tumor_cells"].iloc[0]) else None),
        "final_antigen_negative_fraction": final_negative,
        "car_t_peak": int(car_t_peak),
        "car_t_peak_day": car_t_peak_day,
        "car_t_final": int(series["car_t_cells"].iloc[-1]),
        "car_t_blood_peak_per_ul": blood_peak,
        "car_t_blood_peak_day": blood_peak_day,
        "car_t_blood_final_per_ul": float(series["car_t_blood_per_ul"].iloc[-1]),
        "crs_index_peak": crs_peak,
        "crs_peak_day": crs_peak_day,
        "car_t_max_infiltration_depth_um": float(series["car_t_infiltration_depth_um"].max()),
        "cancer_killed": int(series["cumulative_cancer_killed"].iloc[-1]),
        "normal_killed": int(series["cumulative_normal_killed"].iloc[-1]),
        "normal_antigen_positive_remaining_fraction": _remaining(
            series["normal_antigen_positive"]),
        "necrotic_cells_final": int(series["necrotic_cells"].iloc[-1]),
    }


def _remaining(counts: pd.Series) -> float | None:
    start = int(counts.iloc[0])
    return float(counts.iloc[-1]) / start if start else None


def warm_up() -> None:
    """Load (or compile and cache) the kernels once, before worker processes start."""
    tiny = ScenarioConfig.model_validate({
        "name": "warm_up", "tumor_type": "solid",
        "lattice": {"width": 9, "height": 9}, "time": {"duration_days": 0.01},
        "tumor": {"layout": "compact", "initial_cells": 4, "cycle_time_h": 24.0,
                  "antigen": {"mean_molecules_per_cell": 1000.0}},
        "tissue": {"vessel_density": 0.1},
        "microenvironment": {name: {"enabled": True} for name in
                             ("oxygen", "chemokine", "suppression", "cytokine")},
        "dosing": {"route": "intravenous", "doses": [{"day": 0, "cells": 2}]},
    })
    CarTModel(tiny, seed=0).run()


def run_study(study: Study, workers: int | None = None, threads: int | None = None,
              on_done: Callable[[RunSpec], None] | None = None
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run every replicate of every scenario; return (timeseries, summary) tables.

    ``workers`` processes (default: all cores, at most one per run) run the simulations, each
    kernel with ``threads`` threads (default: CarTModel's choice for the lattice, at most the
    cores divided among the workers). The tables are identical for any ``workers`` and
    ``threads``. ``on_done`` is called after each run.
    """
    cores = os.cpu_count() or 1
    n_runs = len(study.scenarios) * study.replicates
    workers = max(1, min(workers or cores, n_runs))
    specs = run_specs(study, threads)
    warm_up()  # compile (or load from the on-disk cache) once, before workers start
    results: dict[tuple[int, int], tuple[pd.DataFrame, dict]] = {}
    if workers == 1:
        for spec in specs:
            results[(spec.scenario_index, spec.replicate)] = run_one(spec)
            if on_done:
                on_done(spec)
    else:
        # spawn, not fork: a process that has run a parallel kernel holds a thread pool
        # (OpenMP/TBB) that must not be forked; spawned workers load the cached kernels
        with environment(NUMBA_NUM_THREADS=str(max(1, cores // workers))), ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(run_one, spec): spec for spec in specs}
            for future in as_completed(futures):
                spec = futures[future]
                results[(spec.scenario_index, spec.replicate)] = future.result()
                if on_done:
                    on_done(spec)
    ordered = [results[key] for key in sorted(results)]
    timeseries = pd.concat([series for series, _ in ordered], ignore_index=True)
    summary = pd.DataFrame([row for _, row in ordered])
    return timeseries, summary


@contextmanager
def environment(**variables: str) -> Iterator[None]:
    """Set environment variables for the processes started inside the block (e.g. workers)."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load(folder: str | Path) -> pd.DataFrame:
    """The tidy table of a finished or partial sweep folder (``cartsim sweep --out DIR``).

    One row per run: parameter columns plus summary columns (see ``simulation.study.sweep.load``).
    """
    from .sweep import load as load_sweep

    return load_sweep(folder)
