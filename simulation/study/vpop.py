"""Calibrating a cohort without re-simulating it: ``cartsim fit VPOP.yaml``.

A virtual-population file (YAML; paths relative to it) names a trial, the published readouts
to match, and the pool of plausible patients to simulate once::

    name: eliana_vpop
    model: ../trials/b_all_eliana.yaml        # the trial: patient scenario, properties
    data: ../data/eliana_readouts.csv         # readout, value, low/high or n, among, source
    pool:
      patients: 600                           # simulated once (resumable; local pool or Dask)
      seed: 1001
      properties:                             # plausible ranges, replacing the trial's
        clinical.crs_susceptibility: {distribution: loguniform, low: 0.05, high: 20, source: ...}
    margin: 0.5                               # target the central half of each interval
    cohort: 200                               # patients drawn by weight for the report
    check: true                               # ... and simulated again with new seeds

The pool is the trial with its ``pool`` values (``study.trial``: one Parquet row per patient
in ``OUT/pool/``, so a rerun simulates nothing it has). Each readout of ``data`` that is a
share of patients (``analysis.trial.readout_shares``) must then land inside the central
``margin`` of its published 95 % interval (the published one; else a Wilson interval on the
published ``n``); a published median of a patient quantity in a stratum (``among``) is the
share of the stratum at or below it, one half (``PublishedReadout``).
``analysis.vpop.prevalence_weights`` gives the weights closest to the pool that do so, taking
the readouts in the table's order (one that cannot be met with those before it is named). The outputs: ``weights.csv`` (one row per pool patient: properties, outcomes,
weight), ``report.md`` (each readout before/after with its band, the effective sample size,
how the weights move each property), ``vpop.png`` and ``cohort/`` (``cohort`` patients drawn
from the pool by weight with the draw ``seed``: the trial's own ``trial.md``, ``trial.png``,
``waterfall.png``, ``patients.csv``; at most the effective sample size, so its intervals are
not narrower than the weights can carry). With ``check: true`` that cohort is simulated again
with seeds the pool never used (``check_<plan id>/``, resumable): an out-of-sample test of the
weights, whose readouts sit beside the drawn cohort's in ``report.md``.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import Field

from ..analysis.calibration import weighted_quantiles
from ..analysis.outcomes import wilson_interval
from ..analysis.response_kinetics import STRATA, strata
from ..analysis.trial import (SHARE_READOUTS, Readout, proportion, readout_shares,
                              trial_readouts)
from ..analysis.vpop import (Band, Weighting, median_interval, prevalence_weights,
                             property_shifts, resample, weighted_share)
from ..config import (SEED_MAX, ConfigError, StrictModel, display_path, validate,
                      validate_model_file)
from ..execution.extras import require
from ..io.files import write_text
from ..viz.style import write_figure
from ..viz.vpop_plots import plot_vpop
from .properties import PropertyDistribution
from .sweep import Plan, SweepOutcome, load_sweep_table, plan_sweep, run_id, run_sweep
from .trial import PublishedValue, TrialFile, comparison_rows, read_trial_data, write_cohort

#: the output files of a virtual-population fit
WEIGHTS, REPORT, FIGURE, POOL, COHORT, CHECK = ("weights.csv", "report.md", "vpop.png",
                                                "pool", "cohort", "check")
#: columns of the data table (the rest, e.g. ``source``, are for the reader)
DATA_COLUMNS = ("readout", "value", "low", "high", "n", "among")
#: the patient quantities a published median may name (``analysis.clinical``)
MEDIAN_LABELS = {"car_t_tmax_day": "CAR-T peak day (Tmax)",
                 "car_t_half_life_day": "CAR-T post-peak half-life (days)",
                 "response_day": "day of first response", "crs_score": "CRS score"}
MEDIAN_COLUMNS = tuple(MEDIAN_LABELS)


class PoolSettings(StrictModel):
    """The plausible patients simulated once."""

    patients: Annotated[int, Field(ge=10, le=100_000)] = Field(
        1000, description="Patients in the pool.")
    seed: Annotated[int, Field(ge=0, le=SEED_MAX - 100_000)] = Field(
        1000, description="The pool's trial seed (patient i: seed + i).")
    properties: dict[str, PropertyDistribution] = Field(
        default_factory=dict, description="Scenario key -> the pool's distribution (plausible "
        "range), replacing the trial's or adding a property.")


class VirtualPopulationFile(StrictModel):
    """A virtual-population calibration: a trial, published readouts, a pool, the weighting."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str = ""
    model: Annotated[str, Field(min_length=1)] = Field(
        description="The trial file, relative to this file.")
    data: Annotated[str, Field(min_length=1)] = Field(
        description="CSV of published readouts (readout, value, low and high or n, source).")
    pool: PoolSettings
    margin: Annotated[float, Field(gt=0, le=1)] = Field(
        0.5, description="Share of each published interval (around the value) the weighted "
        "pool must reach: 1 = the whole 95 % interval.")
    cohort: Annotated[int, Field(ge=10, le=100_000)] = Field(
        200, description="Patients drawn by weight into the reported cohort (at most the "
        "effective sample size).")
    seed: Annotated[int, Field(ge=0, le=SEED_MAX)] = Field(
        1, description="Seed of that draw.")
    check: bool = Field(
        False, description="Simulate the drawn cohort again with seeds the pool never used "
        "(OUT/check_<plan>/): readouts of patients whose outcomes the weights never saw.")


@dataclass(frozen=True)
class PublishedReadout:
    """One row of the data table: a published share of patients with its 95 % interval, or a
    published median of a patient quantity among a stratum (``among``), which the weighting
    targets as the share of that stratum at or below it: half, within the 95 % interval of
    a share of one half on the published ``n`` patients."""

    name: str  # a share readout (``analysis.trial.SHARE_READOUTS``) or a quantity's column
    value: float
    low: float
    high: float
    source: str
    among: str = ""  # a median: "responders", "non-responders" or "all"

    @property
    def key(self) -> str:
        """The readout's name in the weighting: its name, or ``<column> median (<among>)``."""
        return f"{self.name} median ({self.among})" if self.among else self.name

    @property
    def share(self) -> float:
        """The share of patients the weighting targets (one half for a median)."""
        return 0.5 if self.among else self.value

    def band(self, margin: float) -> Band:
        """The central ``margin`` of the interval, around the targeted share."""
        return Band(self.key, self.share - margin * (self.share - self.low),
                    self.share + margin * (self.high - self.share))


@dataclass(frozen=True)
class VirtualPopulationSpec:
    """A checked virtual-population file."""

    file: VirtualPopulationFile
    source: str  # the file as messages show it
    model: Path
    pool: TrialFile
    plan: Plan  # the pool's runs, every patient validated
    published: list[PublishedReadout]


def read_published(path: Path, shown: str) -> list[PublishedReadout]:
    """The data table: one published readout per row. A share (``readout`` one of
    ``SHARE_READOUTS``) takes its 95 % interval from ``low`` and ``high``, else the Wilson
    interval of ``value`` on ``n`` patients. A median (``among`` given: responders,
    non-responders or all; ``readout`` a patient column of ``MEDIAN_COLUMNS``) needs ``n``.
    Errors name the file, the line and the column."""
    if not path.is_file():
        raise ConfigError(f"{shown}: file not found")
    table = pd.read_csv(path, comment="#", skipinitialspace=True)
    problems = [f"needs a column {c} (columns given: {', '.join(table.columns)})"
                for c in DATA_COLUMNS[:2] if c not in table.columns]
    if problems:
        raise ConfigError("\n".join(f"{shown}: {p}" for p in problems))
    rows = []
    for line, row in zip(range(2, len(table) + 2), table.to_dict("records"), strict=True):
        name, value = str(row["readout"]).strip(), float(row["value"])
        among = row.get("among", "")
        among = "" if not isinstance(among, str) else among.strip()
        where = f"{shown}: line {line}: {name}"
        low, high = (float(row.get(key, math.nan)) for key in ("low", "high"))
        count = float(row.get("n", math.nan))
        if among:
            if among not in STRATA or name not in MEDIAN_COLUMNS:
                raise ConfigError(f"{where}: a median needs among: one of {', '.join(STRATA)} "
                                  f"(got {among!r}) and a readout among "
                                  f"{', '.join(MEDIAN_COLUMNS)}")
            low = high = math.nan  # a published range is no interval of the median
        elif name not in SHARE_READOUTS:
            raise ConfigError(f"{where}: not a share of patients, so no weighting targets it "
                              f"(shares: {', '.join(SHARE_READOUTS)}; or a median of "
                              f"{', '.join(MEDIAN_COLUMNS)} with an `among` column)")
        if math.isnan(low) or math.isnan(high):
            if math.isnan(count) or count < 1:
                raise ConfigError(f"{where} needs low and high (its 95 % interval) or n (its "
                                  "patients)")
            if among:
                low, high = median_interval(count)
            else:
                lows, highs = wilson_interval([round(value * count)], [round(count)], 0.95)
                low, high = float(lows[0]), float(highs[0])
        if not among and not 0 <= low <= value <= high <= 1:
            raise ConfigError(f"{where}: needs 0 <= low <= value <= high <= 1 (a share; got "
                              f"{low:g}, {value:g}, {high:g})")
        rows.append(PublishedReadout(name, value, low, high, str(row.get("source", "")),
                                     among))
    return rows


def load_virtual_population(path: str | Path) -> VirtualPopulationSpec:
    """Read and check a virtual-population file, its trial, its data (nothing runs)."""
    path = Path(path)
    vpop, shown, model = validate_model_file(path, VirtualPopulationFile)
    trial = read_trial_data(model)
    properties = {**trial.get("properties", {}),
                  **{k: v.model_dump(exclude_none=True) for k, v in vpop.pool.properties.items()}}
    pool = validate({**trial, "name": f"{vpop.name}_pool", "patients": vpop.pool.patients,
                     "seed": vpop.pool.seed, "properties": properties}, TrialFile, shown)
    plan = plan_sweep(model, pool.sweep())  # every pool patient a valid scenario
    data = path.parent / vpop.data
    published = read_published(data, display_path(data))
    return VirtualPopulationSpec(vpop, shown, model, pool, plan, published)


@dataclass
class VirtualPopulationResult:
    """A finished virtual-population calibration."""

    spec: VirtualPopulationSpec
    folder: Path
    pool: pd.DataFrame  # one row per finished pool patient
    weighting: Weighting
    readouts: pd.DataFrame  # one row per published readout: pool, weighted, band, cohort
    shifts: pd.DataFrame  # analysis.vpop.property_shifts
    cohort: pd.DataFrame  # the patients drawn by weight
    outcome: SweepOutcome
    seconds: float
    fresh: pd.DataFrame | None = None  # the drawn cohort simulated again (``check``)
    check_folder: Path | None = None  # where it was simulated

    @property
    def weights(self) -> np.ndarray:
        return self.weighting.weights


def calibrate(config: str | Path, out: str | Path | None = None, workers: int | None = None,
              scheduler: str | None = None, client: Any = None, quiet: bool = True
              ) -> VirtualPopulationResult:
    """Simulate (or finish) the pool of ``config`` into ``out/pool`` (default
    ``results/<name>``), weight it to the published readouts and write the outputs."""
    require("sweep", "cartsim fit (virtual population)")
    require("trial", "cartsim fit (virtual population)")
    started = time.perf_counter()
    spec = load_virtual_population(config)
    folder = Path(out) if out is not None else Path("results") / spec.file.name
    if folder.exists() and any(folder.iterdir()) and not (folder / POOL).is_dir():
        raise ConfigError(f"{folder}: exists and is not a virtual-population folder (no "
                          f"{POOL}/); give another --out")
    outcome = run_sweep(spec.model, folder / POOL, workers=workers, scheduler=scheduler,
                        client=client, quiet=quiet, plan=spec.plan)
    table = load_sweep_table(folder / POOL)
    pool = table[table["status"] == "done"].reset_index(drop=True)
    pool.insert(0, "patient", pool["point_id"])
    shares = targeted_shares(spec.published, pool, spec.pool.readout_months)
    bands = [p.band(spec.file.margin) for p in spec.published]
    try:
        weighting = prevalence_weights(shares, bands)
    except ValueError as err:
        raise ConfigError(f"{spec.source}: {err}") from None
    size = max(2, min(spec.file.cohort, math.floor(weighting.effective_size)))
    cohort = pool.iloc[resample(weighting.weights, size, spec.file.seed)].reset_index(drop=True)
    fresh = check_folder = None
    if spec.file.check:  # its own folder per drawn cohort: new weights, a new check
        check = fresh_plan(spec.plan, cohort, spec.pool.patients, f"{spec.file.name}_check")
        check_folder = folder / f"{CHECK}_{check.plan_id}"
        run_sweep(spec.model, check_folder, workers=workers, scheduler=scheduler,
                  client=client, quiet=quiet, plan=check)
        table = load_sweep_table(check_folder)
        fresh = table[table["status"] == "done"].reset_index(drop=True)
        fresh.insert(0, "patient", fresh["point_id"])
    readouts = _readout_table(spec, pool, shares, weighting, cohort, fresh)
    shifts = property_shifts(pool[list(spec.pool.properties)], weighting.weights)
    result = VirtualPopulationResult(spec, folder, pool, weighting, readouts, shifts, cohort,
                                     outcome, time.perf_counter() - started, fresh,
                                     check_folder)
    write_outputs(result)
    return result


def fresh_plan(plan: Plan, cohort: pd.DataFrame, offset: int, name: str) -> Plan:
    """The drawn ``cohort`` as runs of its own: each drawn patient's scenario with a seed the
    pool never used (its pool seed + ``offset`` x how many times it was drawn so far; the pool's
    seeds span fewer than ``offset``), one point per drawn patient."""
    by_id = {run.run_id: run for run in plan.runs}
    copies: Counter[str] = Counter()
    runs = []
    for point, drawn in enumerate(cohort["run_id"]):
        copies[drawn] += 1
        pooled = by_id[drawn]
        seed = pooled.seed + offset * copies[drawn]
        values = {**pooled.values, **({"seed": seed} if "seed" in pooled.values else {})}
        runs.append(replace(pooled, run_id=run_id(pooled.scenario, seed), point_id=point,
                            seed=seed, values=values))  # a trial's seed is a value too
    return replace(plan, sweep=plan.sweep.model_copy(update={"name": name}), runs=runs)


def targeted_shares(published: list[PublishedReadout], patients: pd.DataFrame,
                    at_months: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(yes, counted) over ``patients`` for each published readout, by its ``key``: a share
    readout as ``analysis.trial.readout_shares`` gives it; a median as the patients of its
    stratum (with a value) at or below the published median."""
    shares = (readout_shares(patients, at_months) if any(not p.among for p in published)
              else {})
    groups = strata(patients)
    result = {}
    for p in published:
        if p.among:
            values = patients[p.name].to_numpy(dtype=float)
            result[p.key] = (values <= p.value, groups[p.among] & np.isfinite(values))
        else:
            result[p.key] = shares[p.name]
    return result


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    keep = np.isfinite(values) & (weights > 0)
    return (weighted_quantiles(values[keep], weights[keep], (0.5,))[0] if keep.any()
            else math.nan)


def _readout_table(spec: VirtualPopulationSpec, pool: pd.DataFrame, shares: dict,
                   weighting: Weighting, cohort: pd.DataFrame,
                   fresh: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per published readout: the published interval, the band, the pool's share
    before and after weighting, the drawn cohort's share with its Wilson interval (and the
    same cohort simulated again with new seeds, ``fresh``); for a median also the medians
    themselves."""
    drawn = targeted_shares(spec.published, cohort, spec.pool.readout_months)
    again = (targeted_shares(spec.published, fresh, spec.pool.readout_months)
             if fresh is not None else None)
    labels = {r.name: r.label for r in trial_readouts(cohort, spec.pool.readout_months)}
    equal = np.full(len(weighting.weights), 1.0 / len(weighting.weights))
    rows = []
    for published in spec.published:
        band = published.band(spec.file.margin)
        value, counted = shares[published.key]
        cohort_yes, cohort_counted = drawn[published.key]
        drawn_share = proportion(published.key, "", cohort_yes, cohort_counted)
        n = drawn_share.n
        row = {"readout": published.key, "median": bool(published.among),
               "label": (f"{MEDIAN_LABELS[published.name]}, {published.among}: at or below "
                         f"the median" if published.among else labels[published.name]),
               "published": published.share, "published_low": published.low,
               "published_high": published.high, "band_low": band.low,
               "band_high": band.high, "pool": weighted_share(value, counted, equal),
               "weighted": weighted_share(value, counted, weighting.weights),
               "cohort": drawn_share.value, "cohort_low": drawn_share.low,
               "cohort_high": drawn_share.high, "cohort_n": n,
               "reached": published.key not in weighting.unreachable,
               "source": published.source}
        if again is not None:
            fresh_share = proportion(published.key, "", *again[published.key])
            row.update({"fresh": fresh_share.value, "fresh_low": fresh_share.low,
                        "fresh_high": fresh_share.high, "fresh_n": fresh_share.n})
        if published.among:  # the medians themselves, in the quantity's unit
            values = pool[published.name].to_numpy(dtype=float)
            in_cohort = cohort[published.name].to_numpy(dtype=float)
            row.update({
                "median_published": published.value,
                "median_pool": _weighted_median(values[counted], equal[counted]),
                "median_weighted": _weighted_median(values[counted],
                                                    weighting.weights[counted]),
                "median_cohort": float(np.median(in_cohort[cohort_counted]))
                if n else math.nan})
        rows.append(row)
    return pd.DataFrame(rows)


def write_outputs(result: VirtualPopulationResult) -> None:
    """weights.csv, report.md, vpop.png and the drawn cohort's trial files."""
    spec, folder = result.spec, result.folder
    keys = list(spec.pool.properties)
    table = result.pool[["patient", "run_id", "seed", *keys, "best_response", "crs_grade",
                         "car_t_cmax", "car_t_auc_0_28", "car_t_tmax_day"]].copy()
    table["weight"] = result.weights
    write_text(folder / WEIGHTS, table.to_csv(index=False, float_format="%.6g"))
    published = {p.name: PublishedValue(value=p.value, low=p.low, high=p.high, source=p.source)
                 for p in spec.published if not p.among}
    cohort_trial = spec.pool.model_copy(update={
        "name": f"{spec.file.name}_cohort", "patients": len(result.cohort),
        "published": {**spec.pool.published, **published}})
    (folder / COHORT).mkdir(exist_ok=True)
    drawn = write_cohort(folder / COHORT, cohort_trial, result.cohort)
    if result.fresh is not None:
        write_cohort(result.check_folder, cohort_trial.model_copy(
            update={"name": f"{spec.file.name}_check"}), result.fresh)
    write_figure(folder / FIGURE, lambda tmp: plot_vpop(
        result.readouts, result.shifts, result.pool[keys], result.weights,
        result.weighting.effective_size, spec.file.name, tmp))
    write_text(folder / REPORT, report_text(result, cohort_trial, drawn.readouts))


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.0f} %"


def report_text(result: VirtualPopulationResult, cohort_trial: TrialFile,
                drawn: list[Readout]) -> str:
    """report.md: the readouts before/after, the weights, the properties they move, and
    ``drawn``, every readout of the drawn cohort."""
    spec, weighting = result.spec, result.weighting
    n = len(result.pool)
    lines = [f"# Virtual population {spec.file.name}", "",
             *([spec.file.description, ""] if spec.file.description else []),
             f"Pool: {n} of {spec.pool.patients} patients of `{display_path(spec.model)}` "
             f"(seed {spec.pool.seed}); {result.outcome.done} simulated now, "
             f"{result.outcome.skipped} from the cached pool; {result.seconds:.0f} s in all.",
             "", f"Weights: effective sample size {weighting.effective_size:.0f} of {n} "
             f"({100 * weighting.effective_size / n:.0f} %); largest weight "
             f"{weighting.weights.max() * n:.1f}x an equal share. Each band is the central "
             f"{100 * spec.file.margin:.0f} % of the published 95 % interval.", "",
             "## Readouts before and after weighting", "",
             "A share of patients as published; a published median as the share of its "
             "stratum at or below it (one half, within the 95 % interval of a half on the "
             "published n), the medians themselves beside it. Inside: the drawn cohort's share "
             "lies inside the published 95 % interval (for a median: the interval of a half)."
             + (" Fresh seeds: the drawn cohort simulated again with seeds the pool never "
                "used (its outcomes unseen by the weights; "
                f"`{CHECK}_*/trial.md`)." if result.fresh is not None else ""), "",
             "| readout | published (95 % CI) | band | pool | weighted | drawn cohort (95 % CI,"
             " n) | inside |" + (" fresh seeds (95 % CI, n) | inside |" if result.fresh
                                 is not None else ""),
             "|---|---|---|---|---|---|---|" + ("---|---|" if result.fresh is not None
                                               else "")]
    for row in result.readouts.itertuples():
        inside = row.published_low <= row.cohort <= row.published_high
        again = ("" if result.fresh is None else
                 f" {_percent(row.fresh)} [{_percent(row.fresh_low)}, "
                 f"{_percent(row.fresh_high)}], {row.fresh_n} | "
                 f"{'yes' if row.published_low <= row.fresh <= row.published_high else 'no'} |")
        medians = ("" if not row.median else
                   f" (medians: published {row.median_published:.3g}, pool "
                   f"{row.median_pool:.3g}, weighted {row.median_weighted:.3g}, cohort "
                   f"{row.median_cohort:.3g})")
        lines.append(
            f"| {row.label}{medians} | {_percent(row.published)} [{_percent(row.published_low)},"
            f" {_percent(row.published_high)}] | {_percent(row.band_low)}-"
            f"{_percent(row.band_high)} | {_percent(row.pool)} | {_percent(row.weighted)} | "
            f"{_percent(row.cohort)} [{_percent(row.cohort_low)}, {_percent(row.cohort_high)}]"
            f", {row.cohort_n} | {'yes' if inside else 'no'} |{again}")
    if weighting.unreachable:
        lines += ["", "Not reached by any weighting of the pool:", "",
                  *[f"- **{name}**: {why}" for name, why in weighting.unreachable.items()]]
    lines += ["", "## What the weights move", "",
              "Each pool property's median and 10-90 % range before and after weighting; "
              "shift: the weighted mean's move in pool standard deviations (of log10 where a "
              "property spans more than 10x).", "",
              "| property | pool median [10-90 %] | weighted median [10-90 %] | shift (SD) |",
              "|---|---|---|---|"]
    for row in result.shifts.itertuples():
        lines.append(f"| `{row.property}` | {row.pool_median:.3g} [{row.pool_p10:.3g}, "
                     f"{row.pool_p90:.3g}] | {row.weighted_median:.3g} [{row.weighted_p10:.3g},"
                     f" {row.weighted_p90:.3g}] | {round(row.shift_sd, 2) + 0.0:+.2f} |")
    lines += ["", f"## The drawn cohort ({len(result.cohort)} patients, draw seed "
              f"{spec.file.seed}; all readouts in `cohort/trial.md`)", "",
              *comparison_rows(cohort_trial, drawn),
              "", "![virtual population](vpop.png)", ""]
    return "\n".join(lines)
