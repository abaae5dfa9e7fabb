"""Parameter sweeps: a sweep file -> design points x base scenarios x replicates -> runs on disk.

A sweep file (YAML, validated like scenario files) names base scenario files, ``overrides``
applied to every base, ``parameters`` (dotted config key paths) and a ``design`` saying which
values they take: ``grid`` (full factorial of explicit lists), ``zip`` (lists walked together),
``latin_hypercube`` / ``random`` (n seeded samples over ranges), ``sobol`` (Saltelli/Sobol
sampling, SALib) or ``morris`` (elementary effects, SALib).

Every (point, base, replicate) is resolved to a validated ``ScenarioConfig`` before anything
runs, so a bad value fails up front, naming the sweep file and the key path. Each run gets an id,
the first 16 hex digits of the sha256 of the canonical JSON of its resolved config and seed, and
its summary row is written, as it arrives, to ``DIR/runs/<run id>.parquet`` (temp file +
``os.replace``). Rerunning a sweep on the same folder skips runs whose file exists, so an
interrupted sweep resumes and ends with the same table as an uninterrupted one. A run that raises
is recorded (``runs/<run id>.error.json``; retried on the next rerun) and the sweep goes on.

``load_sweep_table(DIR)`` returns the tidy table: one row per run, parameter columns + summary
columns.
Backends (local process pool, Dask distributed) live in ``simulation.execution.pool``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import platform
import sys
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from itertools import product
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np
import pandas as pd
import yaml
from pydantic import Discriminator, Field, Tag, ValidationError, model_validator
from scipy.stats import qmc
from tqdm import tqdm

from ..biology.scenario import receptor_logics
from ..config import (
    SEED_MAX,
    ConfigError,
    Overrides,
    Problems,
    ScenarioConfig,
    StrictModel,
    apply_overrides,
    describe_error,
    display_path,
    file_kind,
    is_study,
    is_sweep,
    is_trial,
    load_with_extends,
    override_list,
    parse_override,
    read_yaml,
    validate,
    whole_number,
    yaml_value,
)
from ..execution.extras import require
from ..execution.pool import make_backend
from ..execution.runner import RunSpec, run_one
from ..io.files import atomic_write, clean_temporaries, write_text
from ..io.provenance import versions

try:  # the sweep extra; sweeps call require("sweep", ...) before using it
    import pyarrow as pa
    import pyarrow.parquet as pq
    from SALib.sample import morris as morris_sample
    from SALib.sample import sobol as sobol_sample
except ImportError:
    pa = pq = morris_sample = sobol_sample = None

#: summary columns of a run (the ``summary.csv`` contract of docs/outputs.md)
SUMMARY_COLUMNS = (
    "scenario", "tumor_type", "replicate", "seed", "response", "cleared",
    "baseline_tumor_cells", "nadir_tumor_cells", "nadir_day", "final_tumor_cells", "final_day",
    "clearance_day", "final_antigen_negative_fraction", "car_t_peak", "car_t_peak_day",
    "car_t_final", "cancer_killed", "normal_killed", "normal_antigen_positive_remaining_fraction",
    "car_t_infused", "car_t_not_placed",
)
#: columns of the run index (besides one column per parameter, named by its dotted key)
INDEX_COLUMNS = ("run_id", "point_id", "base", "base_file", "replicate", "seed")
RUN_ID_LENGTH = 16
MAX_ERROR_LINES = 10


# ---------------------------------------------------------------------------------------------
# the sweep file
# ---------------------------------------------------------------------------------------------
class ValueRange(StrictModel):
    """A continuous range a sampled design draws a parameter from."""

    low: float = Field(description="Lowest value.")
    high: float = Field(description="Highest value.")
    log: bool = Field(False, description="Sample uniformly in log10 space (needs low > 0).")
    integer: bool = Field(False, description="Round samples to whole numbers (e.g. max_kills).")

    @model_validator(mode="after")
    def _ordered(self) -> ValueRange:
        if not self.low < self.high:
            raise Problems([(("low",), f"must be below high ({self.high:g})", self.low)])
        if self.log and self.low <= 0:
            raise Problems([(("low",), "must be > 0 with log: true", self.low)])
        return self


Scalar = Union[bool, int, float, str]
ValueList = Annotated[list[Scalar], Field(min_length=1)]
#: a parameter: a list of values (grid, zip) or a range (sampled designs); a mapping is a range
ParameterSpec = Annotated[
    Union[Annotated[ValueList, Tag("values")], Annotated[ValueRange, Tag("range")]],
    Discriminator(lambda v: "range" if isinstance(v, (dict, ValueRange)) else "values"),
]


class GridDesign(StrictModel):
    """Full factorial of the parameters' value lists."""

    method: Literal["grid"]


class ZipDesign(StrictModel):
    """Point i takes the i-th value of every parameter's list (lists of equal length)."""

    method: Literal["zip"]


class LatinHypercubeDesign(StrictModel):
    """``n`` points, a Latin hypercube over the parameters' ranges (scipy.stats.qmc, seeded)."""

    method: Literal["latin_hypercube"]
    n: Annotated[int, Field(ge=1, le=1_000_000)]


class RandomDesign(StrictModel):
    """``n`` points drawn independently and uniformly over the ranges (seeded)."""

    method: Literal["random"]
    n: Annotated[int, Field(ge=1, le=1_000_000)]


class SobolDesign(StrictModel):
    """Saltelli/Sobol sampling (SALib): n * (D + 2) points, n * (2D + 2) with second order."""

    method: Literal["sobol"]
    n: Annotated[int, Field(ge=2, le=1_048_576)] = Field(
        description="Base samples N; a power of 2 (Sobol sequence balance).")
    second_order: bool = Field(False, description="Also estimate second-order indices.")

    @model_validator(mode="after")
    def _power_of_two(self) -> SobolDesign:
        if self.n & (self.n - 1):
            raise Problems([(("n",), "must be a power of 2", self.n)])
        return self


class MorrisDesign(StrictModel):
    """Morris elementary effects (SALib): ``trajectories`` * (D + 1) points on a level grid."""

    method: Literal["morris"]
    trajectories: Annotated[int, Field(ge=2, le=100_000)]
    levels: Annotated[int, Field(ge=2, le=100)] = 4

    @model_validator(mode="after")
    def _even_levels(self) -> MorrisDesign:
        if self.levels % 2:
            raise Problems([(("levels",), "must be even", self.levels)])
        return self


Design = Annotated[
    Union[GridDesign, ZipDesign, LatinHypercubeDesign, RandomDesign, SobolDesign, MorrisDesign],
    Field(discriminator="method"),
]
SAMPLED = ("latin_hypercube", "random", "sobol", "morris")


class SweepFile(StrictModel):
    """A sweep: base scenarios, overrides, parameters, a design, replicates, seed."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str = ""
    base: Union[str, Annotated[list[str], Field(min_length=1)]] = Field(
        description="Base scenario file(s), relative to the sweep file.")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Dotted key -> value, applied to every base.")
    parameters: Annotated[dict[str, ParameterSpec], Field(min_length=1)] = Field(
        description="Dotted key -> list of values (grid, zip) or {low, high, log} range.")
    design: Design
    replicates: Annotated[int, Field(ge=1, le=100_000)] = 1
    seed: Annotated[int, Field(ge=0, le=SEED_MAX)] = Field(
        0, description="Replicate r of every point runs with seed + r; also seeds the sampling.")
    record: list[str] | None = Field(
        None, description="Summary columns to keep (default: all).")

    @model_validator(mode="after")
    def _consistent(self) -> SweepFile:
        method = self.design.method
        problems = []
        for key, spec in self.parameters.items():
            if method in SAMPLED and not isinstance(spec, ValueRange):
                problems.append((("parameters", key), f"design {method} needs a range "
                                 "{low, high, log}, not a list of values", None))
            if method not in SAMPLED and isinstance(spec, ValueRange):
                problems.append((("parameters", key), f"design {method} needs a list of "
                                 "values, not a range", None))
        if method == "zip":
            lengths = {key: len(values) for key, values in self.parameters.items()}
            if len(set(lengths.values())) > 1:
                problems.append((("parameters",), "design zip needs lists of equal length",
                                 lengths))
        unknown = [c for c in self.record or () if c not in SUMMARY_COLUMNS]
        if unknown:
            problems.append((("record",), f"unknown column(s) {unknown}; known: "
                             f"{', '.join(SUMMARY_COLUMNS)}", None))
        if problems:
            raise Problems(problems)
        return self

    @property
    def bases(self) -> list[str]:
        return [self.base] if isinstance(self.base, str) else list(self.base)


# ---------------------------------------------------------------------------------------------
# design points
# ---------------------------------------------------------------------------------------------
def salib_problem(sweep: SweepFile) -> dict:
    """The SALib problem of a sampled design (log ranges in log10 units)."""
    bounds = []
    for spec in sweep.parameters.values():
        assert isinstance(spec, ValueRange)
        bounds.append([math.log10(spec.low), math.log10(spec.high)] if spec.log
                      else [spec.low, spec.high])
    return {"num_vars": len(bounds), "names": list(sweep.parameters), "bounds": bounds}


def design_points(sweep: SweepFile) -> list[dict[str, Any]]:
    """The parameter values of every design point, in design order."""
    keys = list(sweep.parameters)
    design = sweep.design
    if design.method == "grid":
        return [dict(zip(keys, combo)) for combo in product(*sweep.parameters.values())]
    if design.method == "zip":
        return [dict(zip(keys, combo)) for combo in zip(*sweep.parameters.values())]
    problem = salib_problem(sweep)
    bounds = np.array(problem["bounds"], dtype=float)
    if design.method in ("latin_hypercube", "random"):
        if design.method == "latin_hypercube":
            unit = qmc.LatinHypercube(d=len(keys), seed=sweep.seed).random(design.n)
        else:
            unit = np.random.default_rng(sweep.seed).random((design.n, len(keys)))
        samples = bounds[:, 0] + unit * (bounds[:, 1] - bounds[:, 0])
    elif design.method == "sobol":
        samples = sobol_sample.sample(problem, design.n, calc_second_order=design.second_order,
                                      seed=sweep.seed)
    else:
        samples = morris_sample.sample(problem, design.trajectories, num_levels=design.levels,
                                       seed=sweep.seed)
    points = []
    for row in samples:
        point = {}
        for key, value in zip(keys, row):
            spec = sweep.parameters[key]
            value = 10.0 ** float(value) if spec.log else float(value)
            point[key] = int(round(value)) if spec.integer else value
        points.append(point)
    return points


def design_matrix(sweep: SweepFile, table: pd.DataFrame) -> np.ndarray:
    """Parameter values of ``table``'s rows in SALib units (log10 for log ranges)."""
    columns = []
    for key, spec in sweep.parameters.items():
        values = table[key].to_numpy(dtype=float)
        columns.append(np.log10(values) if spec.log else values)
    return np.column_stack(columns)


# ---------------------------------------------------------------------------------------------
# resolving every run before any starts
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One planned run: a resolved scenario, its seed and where it sits in the design."""

    run_id: str
    point_id: int
    base: str
    base_file: str
    replicate: int
    seed: int
    values: dict[str, Any]
    scenario: ScenarioConfig = field(repr=False)

    def index_row(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "point_id": self.point_id, "base": self.base,
                "base_file": self.base_file, "replicate": self.replicate, "seed": self.seed,
                **self.values}


@dataclass
class Plan:
    """A validated sweep and all its runs, in (point, base, replicate) order."""

    path: Path
    sweep: SweepFile
    runs: list[Run]
    bases: dict[str, dict]  # base file -> resolved base scenario (with overrides), as data

    @property
    def unique_runs(self) -> list[Run]:
        """Runs with distinct ids (two identical points run once)."""
        seen: dict[str, Run] = {}
        for run in self.runs:
            seen.setdefault(run.run_id, run)
        return list(seen.values())

    @property
    def plan_id(self) -> str:
        digest = hashlib.sha256("\n".join(r.run_id for r in self.runs).encode())
        return digest.hexdigest()[:RUN_ID_LENGTH]


def run_id(scenario: ScenarioConfig, seed: int) -> str:
    """First 16 hex digits of sha256 over the canonical JSON of the resolved config and seed."""
    canonical = json.dumps({"config": scenario.model_dump(mode="json"), "seed": seed},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:RUN_ID_LENGTH]


def _assignment(key: str, value: Any) -> str:
    return f"{key}={yaml_value(value)}"


def _normalise_loc(loc: str) -> str:
    """``dosing.doses[0].day`` -> ``dosing.doses.0.day`` (the dotted form of sweep keys)."""
    return loc.replace("[", ".").replace("]", "")


class _Problems:
    """Collects distinct error lines; raises one ConfigError naming the sweep file."""

    def __init__(self, shown: str) -> None:
        self.shown = shown
        self.lines: dict[str, None] = {}

    def add(self, line: str) -> None:
        self.lines.setdefault(f"{self.shown}: {line}", None)

    def raise_if_any(self) -> None:
        if not self.lines:
            return
        lines = list(self.lines)
        extra = len(lines) - MAX_ERROR_LINES
        lines = lines[:MAX_ERROR_LINES] + ([f"{self.shown}: ... and {extra} more"]
                                           if extra > 0 else [])
        raise ConfigError("\n".join(lines))


def sweep_json_schema() -> dict[str, Any]:
    """JSON Schema of a sweep file, for editor autocompletion of YAML."""
    schema = SweepFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "cartsim sweep"
    return schema


def read_sweep_file(path: str | Path) -> SweepFile:
    """Read and validate a sweep file (not its runs); errors name the file and key path."""
    path = Path(path)
    shown = display_path(path)
    data = read_yaml(path, shown)
    if not is_sweep(data) or is_trial(data):
        command = "trial" if is_trial(data) else "run"
        raise ConfigError(f"{shown}: is a {file_kind(data)} file, not a sweep (a sweep names "
                          f"`base` and `parameters`); run it with `cartsim {command} {shown}`")
    try:
        return SweepFile.model_validate(data)
    except ValidationError as err:
        lines = [f"{shown}: {line}" for e in err.errors(include_url=False)
                 for line in describe_error({**e, "loc": _untagged(e["loc"])}, SweepFile)]
        raise ConfigError("\n".join(lines)) from None


_DESIGN_TAGS = ("grid", "zip", *SAMPLED)


def _untagged(loc: tuple) -> tuple:
    """An error location without pydantic's union tags (``design.sobol.n`` -> ``design.n``)."""
    loc = tuple(loc)
    if len(loc) > 2 and loc[0] == "parameters" and loc[2] in ("values", "range"):
        return (*loc[:2], *loc[3:])
    if len(loc) > 1 and loc[0] == "design" and loc[1] in _DESIGN_TAGS:
        return (loc[0], *loc[2:])
    return loc


def resolve(path: str | Path, overrides: Overrides = None, replicates: int | None = None,
            days: float | None = None) -> Plan:
    """Validate a sweep file and resolve every run to a validated ScenarioConfig.

    ``overrides`` (``{"key.path": value}`` or ``["key.path=value"]``) join the sweep's own
    ``overrides``, ``days`` sets ``time.duration_days`` and ``replicates`` replaces the sweep's:
    the options of ``cartsim sweep``. Raises one ConfigError listing every distinct problem,
    e.g. ``sweeps/x.yaml: parameters.car_t.max_kills: must be >= 1 (got 0) [base b.yaml,
    point 3]``.
    """
    require("sweep", "a sweep")
    path = Path(path)
    sweep = with_options(read_sweep_file(path), display_path(path), overrides, replicates,
                          days)
    return plan_sweep(path, sweep)


def plan_sweep(path: Path, sweep: SweepFile) -> Plan:
    """Resolve every run of ``sweep`` (read from ``path``, or built in code, e.g. by a trial:
    base files are relative to ``path``); errors name ``path``. A parameter named ``seed``
    sets its points' seed (replicate r: seed + r) instead of the sweep's."""
    shown = display_path(path)
    problems = _Problems(shown)
    points = design_points(sweep)
    override_texts = {key: _assignment(key, value) for key, value in sweep.overrides.items()}
    runs: list[Run] = []
    bases: dict[str, dict] = {}
    scenarios: dict[tuple[int, str], ScenarioConfig] = {}
    for base_file in sweep.bases:
        base_path = path.parent / base_file
        base_shown = display_path(base_path)
        try:
            data = load_with_extends(base_path)
        except ConfigError as err:
            problems.add(f"base: {err}")
            continue
        if is_study(data):
            problems.add(f"base: {base_shown} is a study; list its scenario files instead")
            continue
        if is_trial(data):
            problems.add(f"base: {base_shown} is a trial file: a sweep over a trial is the one "
                         "base of its sweep (`cartsim sweep`; study.trial_sweep)")
            continue
        for key, text in override_texts.items():
            try:
                data = apply_overrides(data, [text])
            except ConfigError as err:
                problems.add(f"overrides.{key}: {_strip_set(str(err), text)} [base {base_shown}]")
        bases[base_file] = data
        for point_id, values in enumerate(points):
            point_data = data
            try:
                point_data = apply_overrides(
                    data, [_assignment(k, v) for k, v in values.items()])
            except ConfigError as err:
                key = next((k for k in values if str(err).startswith(f"--set {k}=")), "?")
                text = _strip_set(str(err), _assignment(key, values.get(key)))
                problems.add(f"parameters.{key}: {text} [base {base_shown}]")
                continue
            scenario = _validate_scenario(point_data, sweep, problems, base_shown, point_id,
                                          values)
            if scenario is not None:
                scenarios[(point_id, base_file)] = scenario
    problems.raise_if_any()
    names = {}
    for base_file in sweep.bases:
        name = scenarios[(0, base_file)].name
        if name in names.values():
            problems.add(f"base: two bases have the scenario name {name!r}")
        names[base_file] = name
    problems.raise_if_any()
    for point_id, values in enumerate(points):
        for base_file in sweep.bases:
            scenario = scenarios[(point_id, base_file)]
            for replicate in range(sweep.replicates):
                seed = int(values.get("seed", sweep.seed)) + replicate
                resolved = scenario.model_copy(update={"seed": seed, "replicates": 1})
                runs.append(Run(run_id(resolved, seed), point_id, scenario.name, base_file,
                                replicate, seed, dict(values), resolved))
    return Plan(path, sweep, runs, bases)


def with_options(sweep: SweepFile, shown: str, overrides: Overrides, replicates: int | None,
                  days: float | None) -> SweepFile:
    """The sweep with the command line's ``--set``, ``--days`` and ``--replicates``."""
    extra = {".".join(parts): value
             for parts, value in map(parse_override, override_list(overrides))}
    if days is not None:
        extra["time.duration_days"] = days
    update: dict[str, Any] = {"overrides": {**sweep.overrides, **extra}} if extra else {}
    if replicates is not None:
        update["replicates"] = whole_number(replicates, "replicates", 1, shown)
    return sweep.model_copy(update=update) if update else sweep


def _strip_set(message: str, text: str) -> str:
    return message.removeprefix(f"--set {text}: ")


def _validate_scenario(data: dict, sweep: SweepFile, problems: _Problems, base_shown: str,
                       point_id: int, values: dict) -> ScenarioConfig | None:
    marker = "\x00"
    try:
        return validate(data, ScenarioConfig, marker)
    except ConfigError as err:
        for line in str(err).split("\n"):
            detail = line.removeprefix(f"{marker}: ")
            loc, _, message = detail.partition(": ")
            dotted = _normalise_loc(loc)
            if dotted in values:
                problems.add(f"parameters.{dotted}: {message} [base {base_shown}, point "
                             f"{point_id}]")
            elif dotted in sweep.overrides:
                problems.add(f"overrides.{dotted}: {message} [base {base_shown}]")
            else:
                problems.add(f"base {base_shown}: {detail}")
    return None


# ---------------------------------------------------------------------------------------------
# executing one run (in a worker) and storing it (in the parent)
# ---------------------------------------------------------------------------------------------
def run_point(run: Run) -> dict[str, Any]:
    """Run one simulation; return {'run_id', 'status', 'summary' | 'error', 'seconds'}.

    Never raises: an exception becomes status 'failed' with its text (the sweep goes on).
    """
    start = time.perf_counter()
    try:
        _, summary, _ = run_one(RunSpec(run.scenario, 0, run.replicate, run.seed, threads=None))
        result = {"status": "done", "summary": summary}
    except Exception as err:  # noqa: BLE001 - a failing run is data, not a crash
        text = "".join(traceback.format_exception_only(type(err), err)).strip()
        tb = traceback.extract_tb(err.__traceback__)
        where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
        result = {"status": "failed", "error": f"{text}{where}"}
    result["run_id"] = run.run_id
    result["seconds"] = time.perf_counter() - start
    return result


def lost_run(run: Run, err: BaseException) -> dict[str, Any]:
    """The result of a run whose worker died before returning (crash, killed, lost)."""
    text = "".join(traceback.format_exception_only(type(err), err)).strip()
    return {"run_id": run.run_id, "status": "failed", "seconds": math.nan,
            "error": f"worker lost: {text}"}


def _write_parquet(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False, engine="pyarrow"))


def run_file(out: Path, run_id_: str) -> Path:
    return Path(out) / "runs" / f"{run_id_}.parquet"


def error_file(out: Path, run_id_: str) -> Path:
    return Path(out) / "runs" / f"{run_id_}.error.json"


def store(out: Path, result: dict[str, Any], record: list[str] | None) -> None:
    """Write one finished run: its summary row as Parquet, or its error as JSON."""
    rid = result["run_id"]
    if result["status"] == "done":
        summary = result["summary"]
        columns = record if record is not None else list(summary)
        row = {"run_id": rid}
        for column in columns:
            value = summary.get(column)
            row[column] = math.nan if value is None else value
        _write_parquet(run_file(out, rid), pd.DataFrame([row]))
        stale = error_file(out, rid)
        if stale.exists():
            stale.unlink()
    else:
        write_text(error_file(out, rid), json.dumps(
            {"run_id": rid, "error": result["error"]}, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------------------------
@dataclass
class SweepOutcome:
    out: Path
    total: int
    skipped: int
    done: int
    failed: dict[str, str]  # run id -> error
    seconds: float

    @property
    def runs_per_minute(self) -> float:
        ran = self.done + len(self.failed)
        return 60.0 * ran / self.seconds if self.seconds > 0 else float("nan")


def _versions() -> dict[str, str]:
    found = versions()
    for name in ("pyarrow", "SALib", "dask", "distributed"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _check_folder(out: Path, plan: Plan) -> None:
    manifest = out / "manifest.json"
    if manifest.exists():
        try:
            previous = json.loads(manifest.read_text(encoding="utf-8")).get("plan_id")
        except (OSError, ValueError):
            previous = None
        if previous != plan.plan_id:
            raise ConfigError(f"{out}: holds a different sweep (plan {previous}, this sweep "
                              f"{plan.plan_id}); choose another --out")
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: exists and is not a sweep folder; choose another --out")


def _write_plan(out: Path, plan: Plan, started: datetime, extra: dict | None = None) -> None:
    """index.parquet, sweep.resolved.yaml and manifest.json (statuses as of now)."""
    index = pd.DataFrame([run.index_row() for run in plan.runs])
    index["status"], index["error"] = _statuses(out, index["run_id"])
    _write_parquet(out / "index.parquet", index)
    resolved = {
        "sweep": plan.sweep.model_dump(mode="json"),
        "sweep_file": str(plan.path),
        "bases": {name: _resolved_base(data, name) for name, data in plan.bases.items()},
    }
    write_text(out / "sweep.resolved.yaml", yaml.safe_dump(resolved, sort_keys=False))
    manifest = {
        "sweep": plan.sweep.name,
        "sweep_file": str(plan.path),
        "plan_id": plan.plan_id,
        "design": plan.sweep.design.model_dump(mode="json"),
        "parameters": list(plan.sweep.parameters),
        "bases": plan.sweep.bases,
        "points": len({r.point_id for r in plan.runs}),
        "replicates": plan.sweep.replicates,
        "seeds": [plan.sweep.seed + r for r in range(plan.sweep.replicates)],
        "runs": len(plan.unique_runs),
        "versions": _versions(),
        "command": sys.argv,
        "platform": platform.platform(),
        "started_utc": started.isoformat(timespec="seconds"),
        **(extra or {}),
    }
    write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")


def _resolved_base(data: dict, name: str) -> dict:
    """A base scenario with the overrides applied, every key filled in where it validates."""
    try:
        return validate(data, ScenarioConfig, name).model_dump(mode="json")
    except ConfigError:  # valid only once the parameters are set: keep it as written
        return data


def _statuses(out: Path, run_ids: Iterable[str]) -> tuple[list[str], list[str | None]]:
    statuses, errors = [], []
    for rid in run_ids:
        if run_file(out, rid).exists():
            statuses.append("done")
            errors.append(None)
        elif error_file(out, rid).exists():
            statuses.append("failed")
            errors.append(json.loads(error_file(out, rid).read_text(encoding="utf-8"))["error"])
        else:
            statuses.append("pending")
            errors.append(None)
    return statuses, errors


def run_sweep(path: str | Path, out: str | Path, workers: int | None = None,
              scheduler: str | None = None, client: Any = None, quiet: bool = True,
              plan: Plan | None = None) -> SweepOutcome:
    """Resolve a sweep, run every run not yet on disk, write results as they arrive.

    Backend: ``client`` (a ``distributed.Client``) or ``scheduler`` (``tcp://host:port``) run on
    Dask; otherwise a local process pool of ``workers`` processes (default: all cores; 1 runs in
    this process).
    """
    plan = plan if plan is not None else resolve(path)
    out = Path(out)
    _check_folder(out, plan)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    clean_temporaries(out)  # half-written files of a killed writer
    started = datetime.now(timezone.utc)
    _write_plan(out, plan, started)
    unique = plan.unique_runs
    todo = [run for run in unique if not run_file(out, run.run_id).exists()]
    skipped = len(unique) - len(todo)
    failed: dict[str, str] = {}
    done = 0
    record = plan.sweep.record
    with contextlib.ExitStack() as stack:
        if todo:  # start the backend (compiles / loads the kernels) before the clock starts
            backend = stack.enter_context(make_backend(
                workers=workers, scheduler=scheduler, client=client, n_runs=len(todo),
                logics=receptor_logics(run.scenario for run in todo)))
        clock = time.perf_counter()
        bar = stack.enter_context(tqdm(
            total=len(unique), initial=skipped, unit="run", desc=plan.sweep.name,
            disable=quiet, file=sys.stderr, dynamic_ncols=True))
        bar.set_postfix(failed=0)
        for result in (backend.map_unordered(run_point, todo, on_error=lost_run) if todo else ()):
            store(out, result, record)
            if result["status"] == "done":
                done += 1
            else:
                failed[result["run_id"]] = result["error"]
                bar.set_postfix(failed=len(failed))
            bar.update(1)
        seconds = time.perf_counter() - clock
    finished = datetime.now(timezone.utc)
    _write_plan(out, plan, started, {
        "finished_utc": finished.isoformat(timespec="seconds"),
        "wall_time_s": round(seconds, 2),
        "skipped_existing": skipped, "done": done, "failed": len(failed),
    })
    return SweepOutcome(out, len(unique), skipped, done, failed, seconds)


def failure_summary(outcome: SweepOutcome, plan: Plan | None = None, limit: int = 10) -> str:
    """Lines describing failed runs (empty when none failed)."""
    if not outcome.failed:
        return ""
    by_error: dict[str, list[str]] = {}
    for rid, error in outcome.failed.items():
        by_error.setdefault(error.splitlines()[-1] if error else "?", []).append(rid)
    lines = [f"{len(outcome.failed)} of {outcome.total} runs failed "
             f"(status=failed in index.parquet; rerun the command to retry them):"]
    for error, rids in list(by_error.items())[:limit]:
        lines.append(f"  {len(rids)} x {error}  (e.g. runs/{rids[0]}.error.json)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# loading results
# ---------------------------------------------------------------------------------------------
def load_sweep_table(out: str | Path) -> pd.DataFrame:
    """A sweep folder -> one row per planned run: index columns, parameters, status, summary.

    Run order is the design order (point, base, replicate). Status is taken from the files in
    ``runs/`` (done / failed / pending), so a folder left by an interrupted sweep loads too.
    """
    require("sweep", "reading a sweep folder")
    out = Path(out)
    index_path = out / "index.parquet"
    if not index_path.exists():
        raise FileNotFoundError(f"{out}: no index.parquet (not a sweep folder?)")
    index = pd.read_parquet(index_path, engine="pyarrow")
    index["status"], index["error"] = _statuses(out, index["run_id"])
    files = [run_file(out, rid) for rid in dict.fromkeys(index["run_id"])
             if run_file(out, rid).exists()]
    if not files:
        return index
    runs = pa.concat_tables([pq.read_table(f) for f in files],
                            promote_options="permissive").to_pandas()
    overlap = [c for c in runs.columns if c in index.columns and c != "run_id"]
    runs = runs.drop(columns=overlap)
    return index.merge(runs, on="run_id", how="left", validate="many_to_one")
