"""Virtual clinical trials: a trial file -> N patients -> a sweep -> trial readouts.

A trial file (YAML) names a patient scenario (``base``, with a ``clinical:`` block: lattice,
then systemic follow-up and endpoints), its CAR-T ``product`` (a product file,
``study.product``: what the product brings, apart from the disease), the number of
``patients``, a ``seed``, and the ``properties`` of the disease and host that differ between
patients, each a distribution with its literature ``source`` (``study.properties``; the
product's join them). Patient i gets one value of every property (drawn from a generator seeded with the
trial seed and the property's name, so adding a property does not redraw the others) and the
simulation seed ``seed + i``. The cohort is a ``zip`` sweep over those values
(``study.sweep.plan_sweep``): local process pool or Dask, one Parquet row per patient, and a
rerun resumes. Then ``trial.md`` (readouts with 95 % intervals beside the published values in
the file's ``published:``), ``trial.png``, ``waterfall.png`` and ``patients.csv``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import Field, ValidationError, model_validator

from ..analysis.drivers import OUTCOMES, response_drivers
from ..analysis.outcomes import wilson_interval
from ..analysis.trial import (CONFIDENCE, DAYS_PER_MONTH, READOUT_NAMES, Readout,
                              expansion_by_response, readout_table, trial_readouts)
from ..config import (SEED_MAX, TRIAL_KEYS, ConfigError, Problems, StrictModel,
                      apply_overrides, describe_error, display_path, file_kind, is_trial,
                      read_yaml, yaml_value)
from ..execution.extras import require
from ..io.files import write_text
from ..io.provenance import code_fingerprint, package_version
from ..viz.style import write_figure
from ..viz.trial_plots import plot_trial, plot_trial_waterfall
from .product import with_product
from .properties import PropertyDistribution, plain_number, property_rng
from .sweep import (Plan, SweepFile, SweepOutcome, load_sweep_table, plan_sweep, run_point,
                    run_sweep)


class PublishedValue(StrictModel):
    """A published trial readout, to set beside the simulated one."""

    value: float = Field(description="Published value (fraction for rates, months, % higher).")
    low: float | None = Field(None, description="Lower end of its 95 % interval, if given.")
    high: float | None = Field(None, description="Upper end of its 95 % interval, if given.")
    n: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Patients the published share counts (its Wilson interval where "
        "the paper gives none).")
    source: Annotated[str, Field(min_length=1)]
    missing: str = Field("", description="The mechanism the model lacks, where it cannot "
                         "reach the value.")


class UnmodelledReadout(PublishedValue):
    """A published readout the model does not produce (no death, no neurotoxicity, ...):
    shown in the comparison table beside the readouts it does, with the mechanism it lacks."""

    label: Annotated[str, Field(min_length=1)] = Field(
        description="What the readout is, as the table shows it (overall survival at 12 "
        "months).")
    unit: str = Field("%", description="'%' for a share of patients (value a fraction), else "
                      "the unit of value (days, months).")
    missing: Annotated[str, Field(min_length=1)] = Field(
        description="Why the model cannot produce it: the mechanism or output it lacks.")


class PublishedPredictor(StrictModel):
    """What a trial (or its translational analyses) found of one patient property and
    response, to set beside the virtual cohort's association (``analysis.drivers``)."""

    direction: Literal["positive", "negative", "none"] = Field(
        description="More of the property, more response (positive), less (negative), or no "
        "association found (none).")
    outcome: Literal[tuple(OUTCOMES)] = Field(
        "complete_response", description="The outcome the finding concerns: complete_response, "
        "responded (any response) or durable_response (responding and progression-free at "
        "readout_months).")
    finding: Annotated[str, Field(min_length=1)] = Field(
        description="The finding in a few words (which measure).")
    source: Annotated[str, Field(min_length=1)]


PositiveMonths = Annotated[float, Field(gt=0, le=120)]


class TrialFile(StrictModel):
    """A virtual trial: a patient scenario, N patients, their varying properties."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str = ""
    base: Annotated[str, Field(min_length=1)] = Field(
        description="Patient scenario (with a clinical: block), relative to the trial file.")
    product: str | None = Field(
        None, description="CAR-T product file (configs/products/), relative to the trial "
        "file: its values join overrides, its varying keys properties (study.product).")
    patients: Annotated[int, Field(ge=2, le=100_000)] = 200
    seed: Annotated[int, Field(ge=0, le=SEED_MAX - 100_000)] = 0
    overrides: dict[str, Any] = Field(default_factory=dict,
                                      description="Dotted key -> value for every patient.")
    properties: dict[str, PropertyDistribution] = Field(
        default_factory=dict, description="Dotted scenario key -> its distribution.")
    published: dict[Literal[READOUT_NAMES], PublishedValue] = Field(
        default_factory=dict, description="Readout -> the published value.")
    not_modelled: dict[Annotated[str, Field(pattern=r"^[a-z0-9_]+$")], UnmodelledReadout] = (
        Field(default_factory=dict, description="Published readouts the model does not "
              "produce (name -> value, label, source and the missing mechanism)."))
    predictors: dict[str, PublishedPredictor] = Field(
        default_factory=dict, description="Property (a key of properties) -> what the trial "
        "published of its association with response.")
    readout_months: PositiveMonths = 12.0

    @model_validator(mode="after")
    def _keys_name_properties(self) -> TrialFile:
        known = f"(its properties: {', '.join(self.properties) or 'none'})"
        problems = [(("predictors", key), f"names no property of the trial {known}", None)
                    for key in self.predictors if key not in self.properties]
        for key, spec in self.properties.items():
            if spec.per is None:
                continue
            target = self.properties.get(spec.per)
            if target is None:
                problems.append((("properties", key, "per"), f"names no property of the trial "
                                 f"{known}", spec.per))
            elif target.per is not None:
                problems.append((("properties", key, "per"), f"names a property that is itself "
                                 f"per {target.per}: divide by a drawn property", spec.per))
        if problems:
            raise Problems(problems)
        return self

    def sweep(self) -> SweepFile:
        """The cohort as a zip sweep: one point per patient, with its own seed (a property
        ``per`` another is drawn after it, divided by its values)."""
        drawn = {key: spec.draw(property_rng(self.seed, key), self.patients)
                 for key, spec in self.properties.items() if spec.per is None}
        drawn.update({key: spec.draw(property_rng(self.seed, key), self.patients,
                                     drawn[spec.per])
                      for key, spec in self.properties.items() if spec.per is not None})
        values = {key: [plain_number(v) for v in drawn[key]] for key in self.properties}
        values["seed"] = [self.seed + i for i in range(self.patients)]
        return SweepFile(name=self.name, description=self.description, base=self.base,
                         overrides=self.overrides, parameters=values,
                         design={"method": "zip"}, replicates=1, seed=self.seed)


def read_trial_data(path: str | Path, product: str | Path | None = None) -> dict[str, Any]:
    """The mapping of a trial file with its CAR-T product joined (``study.product``), not
    yet validated; ConfigError if it is no trial. ``product`` (a path) replaces the product
    the file names."""
    path = Path(path)
    shown = display_path(path)
    data = read_yaml(path, shown)
    if not is_trial(data):
        keys = ", ".join(f"`{key}`" for key in sorted(TRIAL_KEYS))
        raise ConfigError(f"{shown}: is a {file_kind(data)} file, not a trial (a trial names "
                          f"one of {keys})")
    own = path.parent / data["product"] if isinstance(data.get("product"), str) else None
    chosen = Path(product) if product is not None else own
    if chosen is None:
        return data
    swapped = own is None or chosen.resolve() != own.resolve()
    return with_product(data, shown, chosen, swapped)


def read_trial_file(path: str | Path, patients: int | None = None,
                    product: str | Path | None = None, seed: int | None = None) -> TrialFile:
    """Read and validate a trial file (with ``product`` instead of its own, ``patients`` and
    ``seed`` instead of the file's, if given: another seed draws another cohort, named
    ``<trial>_seed<seed>``); errors name the file and key path."""
    shown = display_path(Path(path))
    data = read_trial_data(path, product)
    if patients is not None:
        data = {**data, "patients": patients}
    if seed is not None and seed != data.get("seed", TrialFile.model_fields["seed"].default):
        data = {**data, "seed": seed, "name": f"{data.get('name', 'trial')}_seed{seed}"}
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
              quiet: bool = True, product: str | Path | None = None,
              seed: int | None = None) -> TrialResult:
    """Run (or resume) a trial into ``out`` (default ``results/<trial name>``) and write its
    readouts; ``patients`` replaces the file's number, ``seed`` its seed (another cohort,
    named ``<trial>_seed<seed>``), ``product`` (a product file) the file's CAR-T product
    (the cohort is then named ``<trial>_<product>``)."""
    require("sweep", "cartsim trial")
    require("trial", "cartsim trial")
    path = Path(path)
    trial = read_trial_file(path, patients, product, seed)
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
    units = {r.name: r.unit for r in readouts}
    published = {k: (v.value, *(published_interval(v, units[k]) or (None, None)))
                 for k, v in trial.published.items()}
    write_text(out / "patients.csv", patients.drop(columns=["error"], errors="ignore").to_csv(
        index=False, float_format="%.6g"))
    write_text(out / "trial.md", trial_markdown(trial, patients, readouts, outcome))
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


def format_readout(readout: Readout) -> str:
    """A readout's value and its interval: ``55 % [48 %, 61 %]``."""
    return f"{format_value(readout.value, readout.unit)} {format_interval(readout)}"


def published_interval(published: PublishedValue, unit: str) -> tuple[float, float] | None:
    """The published 95 % interval: the paper's, else a Wilson interval on its ``n`` for a
    share; None when there is neither."""
    if published.low is not None and published.high is not None:
        return published.low, published.high
    if unit == "%" and published.n is not None:
        low, high = wilson_interval([round(published.value * published.n)], [published.n],
                                    CONFIDENCE)
        return float(low[0]), float(high[0])
    return None


def agreement(readout: Readout, published: PublishedValue | None) -> str:
    """Whether a readout lands on its published value: "inside" or "outside" the published
    95 % interval (``published_interval``); where there is none, "inside*" or "outside*":
    whether the published value lies in the simulated interval; "" without a published value
    or without a simulated one (e.g. no non-responder to compare)."""
    if published is None or math.isnan(readout.value):
        return ""
    interval = published_interval(published, readout.unit)
    if interval is not None:
        return "inside" if interval[0] <= readout.value <= interval[1] else "outside"
    if math.isnan(readout.low):
        return ""
    return "inside*" if readout.low <= published.value <= readout.high else "outside*"


def format_agreement(readout: Readout, published: PublishedValue | None) -> str:
    """``agreement`` as a table shows it: a miss in bold."""
    verdict = agreement(readout, published)
    return f"**{verdict}**" if verdict.startswith("outside") else verdict


def format_n(readout: Readout) -> str:
    """The patients a readout counts: "20", or per group for a comparison of two groups:
    "18 vs 2"."""
    return f"{readout.n_groups[0]} vs {readout.n_groups[1]}" if readout.n_groups else str(
        readout.n)


#: the footnote of ``comparison_rows``' agreement column
AGREEMENT_NOTE = ("inside/outside: the simulated value against the published 95 % interval "
                  "(the paper's, else a Wilson interval on the published n); inside*/outside*, "
                  "where the paper gives neither: the published value against the simulated "
                  "interval.")


def comparison_rows(trial: TrialFile, readouts: list[Readout]) -> list[str]:
    """Markdown table rows: readout, simulated (95 % CI), n (per group for responders vs
    not), published (95 % interval, n), whether the simulated value lands inside it
    (``agreement``), source."""
    rows = ["| readout | simulated (95 % CI) | n | published (95 % CI) | inside? | source |",
            "|---|---|---|---|---|---|"]
    for r in readouts:
        ref = trial.published.get(r.name)
        rows.append(f"| {r.label} | {format_readout(r)} | {format_n(r)} | "
                    f"{format_published(ref, r.unit)} | {format_agreement(r, ref)} | "
                    f"{ref.source if ref else ''} |")
    rows += [f"| {ref.label} | not modelled | | {format_published(ref, ref.unit)} | | "
             f"{ref.source} |" for ref in trial.not_modelled.values()]
    return rows


def format_published(ref: PublishedValue | None, unit: str) -> str:
    """A published value with its 95 % interval (``published_interval``) and n:
    ``81 % [71 %, 89 %], n = 75``; "" for none."""
    if ref is None:
        return ""
    shown = format_value(ref.value, unit)
    interval = published_interval(ref, unit)
    if interval is not None:
        shown += f" [{format_value(interval[0], unit)}, {format_value(interval[1], unit)}]"
    return shown + (f", n = {ref.n}" if ref.n is not None else "")


def missing_mechanisms(trial: TrialFile, readouts: list[Readout]) -> list[str]:
    """One line per readout outside its published value (``agreement``) that names the
    mechanism the model misses, then one per published readout it does not produce."""
    lines = []
    for r in readouts:
        ref = trial.published.get(r.name)
        if ref is not None and ref.missing and agreement(r, ref).startswith("outside"):
            lines.append(f"- **{r.label}**: {ref.missing}")
    return lines + [f"- **{ref.label}** (not modelled): {ref.missing}"
                    for ref in trial.not_modelled.values()]


def _direction(low: float, high: float) -> str:
    """The direction an interval of a correlation shows: positive, negative or none."""
    return "" if math.isnan(low) else "positive" if low > 0 else "negative" if high < 0 else "none"


def driver_rows(trial: TrialFile, patients: pd.DataFrame) -> list[str]:
    """The "What decides response" section: each property's rank correlation with complete,
    any and durable response (``analysis.drivers``), beside what the trial published of it:
    whether the cohort's interval for that outcome shows the published direction."""
    if len(patients) < 4:
        return []
    drivers = response_drivers(patients, [key for key in trial.properties
                                          if key in patients.columns],
                               trial.readout_months * DAYS_PER_MONTH)
    rows = ["## What decides response", "",
            f"Spearman rank correlation of each patient property with complete response, any "
            f"response and durable response (responding and progression-free at "
            f"{trial.readout_months:g} months) over the {len(patients)} patients, 95 % "
            "interval (Fisher z, Bonett-Wright variance); beside it the published association "
            "and whether the cohort's interval for the same outcome shows its direction.", "",
            "| property | complete response | any response | durable response | published | "
            "agrees? |", "|---|---|---|---|---|---|"]
    for row in drivers.itertuples(index=False):
        found = trial.predictors.get(row.property)
        shown, agrees = "", ""
        if found is not None:
            shown = (f"{found.direction} ({OUTCOMES[found.outcome]}): {found.finding} "
                     f"({found.source})")
            seen = _direction(getattr(row, f"{found.outcome}_low"),
                              getattr(row, f"{found.outcome}_high"))
            agrees = "" if not seen else "yes" if seen == found.direction else f"**no** ({seen})"
        rows.append(f"| `{row.property}` | "
                    f"{' | '.join(_correlation(row, outcome) for outcome in OUTCOMES)} | "
                    f"{shown} | {agrees} |")
    return [*rows, ""]


def _correlation(row: Any, outcome: str) -> str:
    value = getattr(row, outcome)
    if math.isnan(value):
        return "n/a"
    return (f"{value:+.2f} [{getattr(row, f'{outcome}_low'):+.2f}, "
            f"{getattr(row, f'{outcome}_high'):+.2f}]")


def trial_markdown(trial: TrialFile, patients: pd.DataFrame, readouts: list[Readout],
                   outcome: SweepOutcome | None) -> str:
    """The trial summary: cohort, readouts beside the published values, CRS grades."""
    grades = patients["crs_grade"].value_counts().sort_index()
    lines = [f"# Virtual trial {trial.name}", "", trial.description, "",
             f"{len(patients)} of {trial.patients} patients finished; seed {trial.seed}; "
             f"follow-up {patients['follow_up_days'].max():.0f} days after infusion."
             if len(patients) else "No patient finished yet.", ""]
    if trial.product:
        lines += [f"CAR-T product: {trial.product}.", ""]
    lines += [f"Made by cartsim {package_version()} (code {code_fingerprint()[:12]}).", ""]
    if outcome is not None:
        lines += [f"Run time: {outcome.seconds:.0f} s for {outcome.done} patients "
                  f"({outcome.skipped} already done).", ""]
    lines += ["## Readouts", "", "n: the patients a readout counts; responders vs not: "
              f"responders vs non-responders. {AGREEMENT_NOTE}", "",
              *comparison_rows(trial, readouts), ""]
    gaps = missing_mechanisms(trial, readouts)
    if gaps:
        lines += ["## Where the model misses a published value", "", *gaps, ""]
    lines += ["## CAR-T expansion (per baseline cancer cell, days 0-28)", "",
              "| group | n | Cmax (geometric mean) | Tmax (median, days) | AUC0-28 (geometric "
              "mean, x days) |", "|---|---|---|---|---|",
              *[f"| {row.group} | {row.n} | {row.cmax_geometric_mean:.3g} | "
                f"{row.tmax_median_days:.1f} | {row.auc_0_28_geometric_mean:.3g} |"
                for row in expansion_by_response(patients).itertuples()], ""]
    lines += driver_rows(trial, patients)
    lines += ["## CRS grades", "", "| grade | patients |", "|---|---|",
              *[f"| {g} | {n} |" for g, n in grades.items()], "",
              "## Patient properties", "", "| key | distribution | source |", "|---|---|---|"]
    for key, spec in trial.properties.items():
        lines.append(f"| `{key}` | {spec.describe()} | {spec.source} |")
    return "\n".join(lines) + "\n"
