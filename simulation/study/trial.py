"""Virtual clinical trials: a trial file -> N patients -> a sweep -> trial readouts.

A trial file (YAML) names a patient scenario (``base``, with a ``clinical:`` block: lattice,
then systemic follow-up and endpoints), the number of ``patients``, a ``seed``, and the
``properties`` that differ between patients, each a distribution with its literature
``source``. Patient i gets one value of every property (drawn from a generator seeded with the
trial seed and the property's name, so adding a property does not redraw the others) and the
simulation seed ``seed + i``. The cohort is a ``zip`` sweep over those values
(``study.sweep.plan_sweep``): local process pool or Dask, one Parquet row per patient, and a
rerun resumes. Then ``trial.md`` (readouts with 95 % intervals beside the published values in
the file's ``published:``), ``trial.png``, ``waterfall.png`` and ``patients.csv``.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, model_validator

from ..analysis.trial import (READOUT_NAMES, Readout, expansion_by_response, readout_table,
                              trial_readouts)
from ..config import (SEED_MAX, ConfigError, Problems, StrictModel, apply_overrides,
                      describe_error, display_path, file_kind, is_trial, read_yaml, yaml_value)
from ..execution.extras import require
from ..io.files import write_text
from ..viz.style import write_figure
from ..viz.trial_plots import plot_trial, plot_trial_waterfall
from .sweep import (Plan, SweepFile, SweepOutcome, load_sweep_table, plan_sweep, run_point,
                    run_sweep)


class PropertyDistribution(StrictModel):
    """How one patient property varies across the cohort."""

    distribution: Literal["lognormal", "normal", "uniform", "loguniform"] = Field(
        description="lognormal: median, sigma (of ln); normal: mean, sd; uniform / loguniform: "
        "low, high.")
    median: float | None = Field(None, gt=0)
    sigma: float | None = Field(None, ge=0)
    mean: float | None = None
    sd: float | None = Field(None, ge=0)
    low: float | None = Field(None, description="Lower bound (uniform draws; else a clip).")
    high: float | None = Field(None, description="Upper bound (uniform draws; else a clip).")
    integer: bool = Field(False, description="Round to whole numbers.")
    source: Annotated[str, Field(min_length=1)] = Field(
        description="Literature source of the distribution.")

    @model_validator(mode="after")
    def _parameters(self) -> PropertyDistribution:
        needs = {"lognormal": ("median", "sigma"), "normal": ("mean", "sd"),
                 "uniform": ("low", "high"), "loguniform": ("low", "high")}[self.distribution]
        missing = [key for key in needs if getattr(self, key) is None]
        if missing:
            raise Problems([((key,), f"is needed by distribution {self.distribution}", None)
                            for key in missing])
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise Problems([(("low",), f"must be below high ({self.high:g})", self.low)])
        if self.distribution == "loguniform" and self.low <= 0:
            raise Problems([(("low",), "must be > 0 for loguniform", self.low)])
        return self

    def describe(self) -> str:
        """``lognormal(median=80, sigma=0.4) in [30, 300], whole numbers``."""
        keys = {"lognormal": ("median", "sigma"), "normal": ("mean", "sd"),
                "uniform": ("low", "high"), "loguniform": ("low", "high")}[self.distribution]
        text = f"{self.distribution}({', '.join(f'{k}={getattr(self, k):g}' for k in keys)})"
        if self.distribution in ("lognormal", "normal") and (self.low, self.high) != (None, None):
            text += f" in [{_bound(self.low)}, {_bound(self.high)}]"
        return text + (", whole numbers" if self.integer else "")

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` values."""
        if self.distribution == "lognormal":
            values = self.median * np.exp(self.sigma * rng.standard_normal(n))
        elif self.distribution == "normal":
            values = self.mean + self.sd * rng.standard_normal(n)
        elif self.distribution == "uniform":
            values = rng.uniform(self.low, self.high, n)
        else:
            values = np.exp(rng.uniform(math.log(self.low), math.log(self.high), n))
        values = np.clip(values, self.low, self.high)
        return np.round(values) if self.integer else values


class PublishedValue(StrictModel):
    """A published trial readout, to set beside the simulated one."""

    value: float = Field(description="Published value (fraction for rates, months, % higher).")
    low: float | None = Field(None, description="Lower end of its 95 % interval, if given.")
    high: float | None = Field(None, description="Upper end of its 95 % interval, if given.")
    source: Annotated[str, Field(min_length=1)]
    missing: str = Field("", description="The mechanism the model lacks, where it cannot "
                         "reach the value.")


PositiveMonths = Annotated[float, Field(gt=0, le=120)]


class TrialFile(StrictModel):
    """A virtual trial: a patient scenario, N patients, their varying properties."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str = ""
    base: Annotated[str, Field(min_length=1)] = Field(
        description="Patient scenario (with a clinical: block), relative to the trial file.")
    patients: Annotated[int, Field(ge=2, le=100_000)] = 200
    seed: Annotated[int, Field(ge=0, le=SEED_MAX - 100_000)] = 0
    overrides: dict[str, Any] = Field(default_factory=dict,
                                      description="Dotted key -> value for every patient.")
    properties: dict[str, PropertyDistribution] = Field(
        default_factory=dict, description="Dotted scenario key -> its distribution.")
    published: dict[Literal[READOUT_NAMES], PublishedValue] = Field(
        default_factory=dict, description="Readout -> the published value.")
    readout_months: PositiveMonths = 12.0

    def sweep(self) -> SweepFile:
        """The cohort as a zip sweep: one point per patient, with its own seed."""
        values = {key: [_plain(v) for v in spec.draw(_property_rng(self.seed, key),
                                                       self.patients)]
                  for key, spec in self.properties.items()}
        values["seed"] = [self.seed + i for i in range(self.patients)]
        return SweepFile(name=self.name, description=self.description, base=self.base,
                         overrides=self.overrides, parameters=values,
                         design={"method": "zip"}, replicates=1, seed=self.seed)


def _property_rng(seed: int, key: str) -> np.random.Generator:
    """The generator of one property: the trial seed and the key's name."""
    return np.random.default_rng([seed, int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)])


def _bound(value: float | None) -> str:
    return "-inf" if value is None else f"{value:g}"


def _plain(value: float) -> int | float:
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)


def read_trial_data(path: str | Path) -> dict[str, Any]:
    """The mapping of a trial file, not yet validated; ConfigError if it is no trial."""
    path = Path(path)
    shown = display_path(path)
    data = read_yaml(path, shown)
    if not is_trial(data):
        raise ConfigError(f"{shown}: is a {file_kind(data)} file, not a trial (a trial names "
                          "`patients`, `properties` or `published`)")
    return data


def read_trial_file(path: str | Path, patients: int | None = None) -> TrialFile:
    """Read and validate a trial file; errors name the file and key path."""
    shown = display_path(Path(path))
    data = read_trial_data(path)
    if patients is not None:
        data = {**data, "patients": patients}
    try:
        return TrialFile.model_validate(data)
    except ValidationError as err:
        lines = [f"{shown}: {line}" for e in err.errors(include_url=False)
                 for line in describe_error(e, TrialFile)]
        raise ConfigError("\n".join(lines)) from None


# ---------------------------------------------------------------------------------------------
# a trial as a model: its keys set from a sweep point or a fit particle
# ---------------------------------------------------------------------------------------------
def set_trial_values(data: dict[str, Any], values: Mapping[str, Any]
                     ) -> tuple[dict[str, Any], dict[str, str]]:
    """The trial file's mapping ``data`` with dotted ``values`` set, and a problem for each key
    that names nothing settable.

    A key of the trial file itself is set there: ``patients``, ``seed``, ``readout_months``,
    ``overrides.<scenario key>`` or one field of a property's distribution,
    ``properties.<scenario key>.<field>`` (``properties.car_t.max_divisions.median``). Any
    other key is a key of the patient scenario, set for every patient: it joins ``overrides``
    (a property's key is refused there: its value varies between patients).
    """
    data = copy.deepcopy(data)
    problems: dict[str, str] = {}
    for key, value in values.items():
        properties = data.get("properties") or {}  # afresh: apply_overrides makes a new one
        head, _, rest = key.partition(".")
        if head == "properties":
            name = next((p for p in properties if rest.startswith(f"{p}.")), None)
            if name is None:
                problems[key] = (f"names the whole property {rest}: set one field of its "
                                 f"distribution, e.g. properties.{rest}.median"
                                 if rest in properties else
                                 f"the trial has no property {rest.rpartition('.')[0] or rest}"
                                 f" (its properties: {', '.join(properties) or 'none'})")
            else:
                properties[name] = {**properties[name], rest[len(name) + 1:]: value}
        elif head == "overrides" and rest or head not in TrialFile.model_fields:
            scenario_key = rest if head == "overrides" else key
            if scenario_key in properties:
                problems[key] = (f"varies between the trial's patients (properties."
                                 f"{scenario_key}): set its distribution instead, e.g. "
                                 f"properties.{scenario_key}.median")
            data["overrides"] = {**(data.get("overrides") or {}), scenario_key: value}
        else:
            try:
                data = apply_overrides(data, [f"{key}={yaml_value(value)}"])
            except ConfigError as err:
                problems[key] = str(err).partition(": ")[2]
    return data, problems


def trial_with_values(data: dict[str, Any], sections: Mapping[str, Mapping[str, Any]],
                      shown: str, context: str = "") -> TrialFile:
    """The trial of the mapping ``data`` with the values of each section set in turn
    (``set_trial_values``; ``{"overrides": {...}, "parameters": {...}}``), validated. Every
    problem is one line naming the file ``shown`` and the section's key path
    (``sweep.yaml: parameters.properties.car_t.max_divisions.median: must be > 0 (got -1)``),
    followed by ``context`` (`` [point 3]``)."""
    lines: list[str] = []
    for section, values in sections.items():
        data, problems = set_trial_values(data, values)
        lines += [f"{section}.{key}: {problem}" for key, problem in problems.items()]
    if not lines:
        try:
            return TrialFile.model_validate(data)
        except ValidationError as err:
            found = [line for e in err.errors(include_url=False)
                     for line in describe_error(e, TrialFile)]
        for line in found:
            section = next((name for name, values in reversed(sections.items())  # the last wins
                            if any(line.startswith(f"{key}:") or line.startswith(f"{key}.")
                                   for key in values)), None)
            lines.append(f"{section}.{line}" if section else f"the trial then has {line}")
    raise ConfigError("\n".join(f"{shown}: {line}{context}" for line in dict.fromkeys(lines)))


def run_cohort(path: Path, trial: TrialFile) -> pd.DataFrame:
    """Every patient of ``trial`` (read from ``path``: its base is relative to it) simulated in
    this process, one after the other: one summary row per patient, endpoints included (a fit's
    particle: a whole cohort in one worker, no folder, no pool of its own)."""
    plan = plan_sweep(path, trial.sweep())
    results = [run_point(run) for run in plan.unique_runs]
    failed = [result["error"] for result in results if result["status"] != "done"]
    if failed:
        raise RuntimeError(f"{display_path(path)}: {len(failed)} of {len(results)} patients "
                           f"failed; the first: {failed[0]}")
    return pd.DataFrame([result["summary"] for result in results])


@dataclass
class TrialResult:
    """A finished (or partly finished) trial folder."""

    out: Path
    trial: TrialFile
    patients: pd.DataFrame  # one row per finished patient
    readouts: list[Readout]
    outcome: SweepOutcome | None = None

    @property
    def table(self) -> pd.DataFrame:
        return readout_table(self.readouts)


def run_trial(path: str | Path, out: str | Path | None = None, workers: int | None = None,
              scheduler: str | None = None, patients: int | None = None,
              quiet: bool = True) -> TrialResult:
    """Run (or resume) a trial into ``out`` (default ``results/<trial name>``) and write its
    readouts; ``patients`` replaces the file's number."""
    require("sweep", "cartsim trial")
    require("trial", "cartsim trial")
    path = Path(path)
    trial = read_trial_file(path, patients)
    plan = plan_sweep(path, trial.sweep())
    _check_patient_scenario(path, plan)
    out = Path(out) if out is not None else Path("results") / trial.name
    outcome = run_sweep(path, out, workers=workers, scheduler=scheduler, quiet=quiet, plan=plan)
    return write_trial(out, trial, outcome)


def _check_patient_scenario(path: Path, plan: Plan) -> None:
    if plan.runs[0].scenario.clinical is None:
        raise ConfigError(f"{display_path(path)}: base: {plan.sweep.bases[0]} has no clinical: "
                          "block (a trial's patients need endpoints and follow-up)")


def write_trial(out: Path, trial: TrialFile, outcome: SweepOutcome | None = None
                ) -> TrialResult:
    """Readouts of the patients finished in ``out``: patients.csv, trial.md, trial.png,
    waterfall.png."""
    table = load_sweep_table(out)
    patients = table[table["status"] == "done"].reset_index(drop=True)
    patients.insert(0, "patient", patients["point_id"])
    return write_cohort(out, trial, patients, outcome)


def write_cohort(out: Path, trial: TrialFile, patients: pd.DataFrame,
                 outcome: SweepOutcome | None = None) -> TrialResult:
    """The readouts of the cohort ``patients`` (one row per patient) into ``out``:
    patients.csv, trial.md, trial.png, waterfall.png."""
    readouts = trial_readouts(patients, trial.readout_months)
    write_text(out / "patients.csv", patients.drop(columns=["error"], errors="ignore").to_csv(
        index=False, float_format="%.6g"))
    write_text(out / "trial.md", trial_markdown(trial, patients, readouts, outcome))
    published = {k: (v.value, v.low, v.high) for k, v in trial.published.items()}
    write_figure(out / "trial.png", lambda tmp: plot_trial(
        patients, readouts, trial.name, tmp, published, trial.readout_months))
    write_figure(out / "waterfall.png",
                 lambda tmp: plot_trial_waterfall(patients, trial.name, tmp))
    return TrialResult(out, trial, patients, readouts, outcome)


def format_value(value: float, unit: str) -> str:
    """A readout value as the table shows it (percent for rates)."""
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "not reached"
    return f"{100 * value:.0f} %" if unit == "%" else f"{value:.1f} {unit}"


def format_interval(readout: Readout) -> str:
    """``[low, high]`` of a readout, in its unit."""
    if math.isnan(readout.low) and math.isnan(readout.high):
        return ""
    return (f"[{format_value(readout.low, readout.unit)}, "
            f"{format_value(readout.high, readout.unit)}]")


def _outside(readout: Readout, published: PublishedValue | None) -> bool:
    """True if ``published`` lies outside the readout's interval (False without one: a
    readout with no value, e.g. no non-responder to compare, is not a miss)."""
    return (published is not None and not math.isnan(readout.low)
            and not readout.low <= published.value <= readout.high)


def format_n(readout: Readout) -> str:
    """The patients a readout counts: "20", or per group for a comparison of two groups:
    "18 vs 2"."""
    return f"{readout.n_groups[0]} vs {readout.n_groups[1]}" if readout.n_groups else str(
        readout.n)


def comparison_rows(trial: TrialFile, readouts: list[Readout]) -> list[str]:
    """Markdown table rows: readout, simulated (95 % CI), n (per group for responders vs
    not), published, source, gap note."""
    rows = ["| readout | simulated (95 % CI) | n | published (95 % CI) | source |",
            "|---|---|---|---|---|"]
    for r in readouts:
        ref = trial.published.get(r.name)
        published = format_value(ref.value, r.unit) if ref else ""
        if ref is not None and ref.low is not None and ref.high is not None:
            published += f" [{format_value(ref.low, r.unit)}, {format_value(ref.high, r.unit)}]"
        flag = " (outside CI)" if _outside(r, ref) else ""
        rows.append(f"| {r.label} | {format_value(r.value, r.unit)} {format_interval(r)} | "
                    f"{format_n(r)} | {published}{flag} | {ref.source if ref else ''} |")
    return rows


def missing_mechanisms(trial: TrialFile, readouts: list[Readout]) -> list[str]:
    """One line per published value outside the simulated CI that names what is missing."""
    lines = []
    for r in readouts:
        ref = trial.published.get(r.name)
        if ref is not None and ref.missing and _outside(r, ref):
            lines.append(f"- **{r.label}**: {ref.missing}")
    return lines


def trial_markdown(trial: TrialFile, patients: pd.DataFrame, readouts: list[Readout],
                   outcome: SweepOutcome | None) -> str:
    """The trial summary: cohort, readouts beside the published values, CRS grades."""
    grades = patients["crs_grade"].value_counts().sort_index()
    lines = [f"# Virtual trial {trial.name}", "", trial.description, "",
             f"{len(patients)} of {trial.patients} patients finished; seed {trial.seed}; "
             f"follow-up {patients['follow_up_days'].max():.0f} days after infusion."
             if len(patients) else "No patient finished yet.", ""]
    if outcome is not None:
        lines += [f"Run time: {outcome.seconds:.0f} s for {outcome.done} patients "
                  f"({outcome.skipped} already done).", ""]
    lines += ["## Readouts", "", "n: the patients a readout counts; responders vs not: "
              "responders vs non-responders.", "", *comparison_rows(trial, readouts), ""]
    gaps = missing_mechanisms(trial, readouts)
    if gaps:
        lines += ["## Where the model misses a published value", "", *gaps, ""]
    lines += ["## CAR-T expansion (per baseline cancer cell, days 0-28)", "",
              "| group | n | Cmax (geometric mean) | Tmax (median, days) | AUC0-28 (geometric "
              "mean, x days) |", "|---|---|---|---|---|",
              *[f"| {row.group} | {row.n} | {row.cmax_geometric_mean:.3g} | "
                f"{row.tmax_median_days:.1f} | {row.auc_0_28_geometric_mean:.3g} |"
                for row in expansion_by_response(patients).itertuples()], ""]
    lines += ["## CRS grades", "", "| grade | patients |", "|---|---|",
              *[f"| {g} | {n} |" for g, n in grades.items()], "",
              "## Patient properties", "", "| key | distribution | source |", "|---|---|---|"]
    for key, spec in trial.properties.items():
        lines.append(f"| `{key}` | {spec.describe()} | {spec.source} |")
    return "\n".join(lines) + "\n"
