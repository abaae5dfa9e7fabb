"""YAML scenarios -> validated, typed config objects.

Every physical quantity carries its unit in its key (``cycle_time_h``, ``speed_um_per_min``,
``death_rate_per_day``); ``simulation.scenario`` converts them once into per-step numbers.
Unknown keys, wrong types and out-of-range values are errors that name the file and the key path.

Two kinds of file:

* a **scenario** (one tumour, one CAR-T product, one dosing plan), and
* a **study**: ``scenarios: [a.yaml, b.yaml]`` run side by side with shared seeds and replicates.

Both may say ``extends: other.yaml``; mappings merge key by key, anything else is replaced.
"""

from __future__ import annotations

import copy
import difflib
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SEED_MAX = 2**63 - 1


class ConfigError(Exception):
    """A problem with a config file; ``str()`` is the one-line message shown to the user."""


class _Strict(BaseModel):
    """Base: unknown keys are errors, NaN/inf are rejected, no type coercion.

    Strict mode: ``true`` or ``"30"`` where a number belongs is an error, not 1.0 or 30.0
    (integers are still accepted where a float is expected).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_default=True,
                              strict=True)


PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class AntigenDistribution(_Strict):
    """Target antigen per cell: log-normal among antigen-positive cells plus a negative fraction."""

    mean_molecules_per_cell: NonNegativeFloat = Field(
        description="Mean antigen density of antigen-positive cells (molecules/cell); 0 = none."
    )
    cv: Annotated[float, Field(ge=0, le=10)] = Field(
        0.5, description="Coefficient of variation of the log-normal density (dimensionless)."
    )
    negative_fraction: Fraction = Field(
        0.0, description="Fraction of cells with no antigen at all."
    )
    inheritance_cv: Annotated[float, Field(ge=0, le=2)] = Field(
        0.1, description="CV of the log-normal factor a daughter's density differs by from its "
        "mother's (dimensionless); antigen-negative mothers have negative daughters."
    )


class LatticeConfig(_Strict):
    """The simulated tissue section: a 2D square lattice, one cell per site."""

    width: Annotated[int, Field(ge=3, le=16384)] = Field(200, description="Sites along x.")
    height: Annotated[int, Field(ge=3, le=16384)] = Field(200, description="Sites along y.")
    spacing_um: PositiveFloat = Field(15.0, description="Site spacing = cell diameter (um).")
    neighbourhood: Literal["moore", "von_neumann"] = Field(
        "moore", description="moore: 8 neighbours; von_neumann: 4."
    )


class TimeConfig(_Strict):
    """Clock of a run."""

    dt_min: Annotated[float, Field(gt=0, le=60)] = Field(6.0, description="Time step (min).")
    duration_days: Annotated[float, Field(gt=0, le=3650)] = Field(
        42.0, description="Simulated time after t = 0 (days)."
    )
    record_every_h: PositiveFloat = Field(12.0, description="Census interval (h).")
    stop_when_cleared: bool = Field(
        True, description="End a run as soon as no cancer cell is left."
    )


class TumorConfig(_Strict):
    """Cancer cells."""

    layout: Literal["dispersed", "compact"] = Field(
        description="dispersed: scattered at random (blood cancers); compact: one contiguous "
        "mass in the lattice centre (solid tumours)."
    )
    initial_cells: Annotated[int, Field(ge=1)] = Field(description="Cancer cells at t = 0.")
    cycle_time_h: PositiveFloat = Field(
        description="Doubling time of a cell with a free neighbour (h): it divides at rate "
        "ln2 / cycle_time_h."
    )
    death_rate_per_day: NonNegativeFloat = Field(0.0, description="Apoptosis rate (1/day).")
    speed_um_per_min: NonNegativeFloat = Field(
        0.0, description="Random-walk speed (um/min); 0 = sessile."
    )
    antigen: AntigenDistribution


class NormalPopulation(_Strict):
    """A healthy cell population filling part of the space the tumour leaves."""

    name: str = Field(description="Label, e.g. 'normal B cells'.")
    density: Fraction = Field(description="Fraction of non-tumour sites this population occupies.")
    speed_um_per_min: NonNegativeFloat = Field(0.0, description="Random-walk speed (um/min).")
    antigen: AntigenDistribution = Field(
        default_factory=lambda: AntigenDistribution(mean_molecules_per_cell=0.0),
        description="Antigen on these healthy cells (on-target, off-tumour toxicity if > 0).",
    )


class CarTConfig(_Strict):
    """The CAR-T product: how its cells move, recognise, kill, divide, exhaust and die."""

    speed_um_per_min: NonNegativeFloat = Field(5.0, description="Migration speed (um/min).")
    persistence_time_min: NonNegativeFloat = Field(
        10.0, description="Time over which a CAR-T keeps its direction (min)."
    )
    kill_rate_per_h: PositiveFloat = Field(
        4.0, description="Kill rate of an effector bound to a target at saturating antigen (1/h)."
    )
    antigen_half_max_molecules_per_cell: PositiveFloat = Field(
        2000.0, description="Antigen density giving half the maximal kill rate (molecules/cell); "
        "lower CAR affinity raises it. Targets at or above it hold the CAR-T in a synapse.",
    )
    hill_coefficient: Annotated[float, Field(ge=0.5, le=10)] = Field(
        2.0, description="Steepness of kill probability vs antigen density (dimensionless)."
    )
    max_kills: Annotated[int, Field(ge=1, le=255)] = Field(
        10, description="Kills after which an effector becomes exhausted."
    )
    max_divisions: Annotated[int, Field(ge=0, le=255)] = Field(
        10, description="Divisions a CAR-T lineage can make."
    )
    division_time_h: PositiveFloat = Field(
        12.0, description="Doubling time while activated (h): division rate ln2 / division_time_h."
    )
    activation_duration_h: PositiveFloat = Field(
        24.0, description="How long a kill keeps a CAR-T activated (proliferating) (h)."
    )
    exhaustion_after_engaged_h: PositiveFloat = Field(
        20.0, description="Cumulative time in synapses after which a CAR-T is exhausted (h)."
    )
    exhausted_kill_factor: Fraction = Field(
        0.2, description="Kill rate of an exhausted CAR-T relative to an effector."
    )
    effector_half_life_days: PositiveFloat = Field(
        4.5, description="Half-life of an effector CAR-T (days)."
    )
    exhausted_half_life_days: PositiveFloat = Field(
        1.0, description="Half-life of an exhausted CAR-T (days)."
    )


class Dose(_Strict):
    """One infusion: a number of CAR-T, or an effector-to-target ratio at infusion time."""

    day: NonNegativeFloat = Field(description="Infusion time (days after t = 0).")
    cells: Annotated[int, Field(ge=1)] | None = Field(None, description="CAR-T infused.")
    effector_to_target: PositiveFloat | None = Field(
        None, description="CAR-T per cancer cell present at infusion (dimensionless)."
    )

    @model_validator(mode="after")
    def _one_amount(self) -> Dose:
        if (self.cells is None) == (self.effector_to_target is None):
            raise ValueError("give exactly one of 'cells' or 'effector_to_target'")
        return self


class DosingConfig(_Strict):
    """Where and when CAR-T enter the lattice."""

    arrival: Literal["anywhere", "margin"] = Field(
        description="anywhere: free sites at random (blood); margin: free sites within "
        "margin_width_um of the tumour edge (solid)."
    )
    margin_width_um: PositiveFloat = Field(
        60.0, description="Width of the band outside the tumour where CAR-T arrive (um)."
    )
    doses: list[Dose] = Field(min_length=1, description="Infusions, in any order.")


class ScenarioConfig(_Strict):
    """One tumour treated with one CAR-T product."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")] = Field(
        description="Scenario label used in tables and file names."
    )
    description: str = ""
    tumor_type: Literal["blood", "solid"]
    seed: Annotated[int, Field(ge=0, le=SEED_MAX)] = Field(
        0, description="Seed of replicate 0; replicate r uses seed + r."
    )
    replicates: Annotated[int, Field(ge=1, le=100000)] = 3
    lattice: LatticeConfig = Field(default_factory=LatticeConfig)
    time: TimeConfig = Field(default_factory=TimeConfig)
    tumor: TumorConfig
    normal: list[NormalPopulation] = Field(default_factory=list)
    car_t: CarTConfig = Field(default_factory=CarTConfig)
    dosing: DosingConfig

    @field_validator("normal")
    @classmethod
    def _densities_fit(cls, populations: list[NormalPopulation]) -> list[NormalPopulation]:
        total = sum(p.density for p in populations)
        if total > 1.0 + 1e-12:
            raise ValueError(f"densities add up to {total:g}, more than 1")
        return populations

    @model_validator(mode="after")
    def _tumour_fits(self) -> ScenarioConfig:
        sites = self.lattice.width * self.lattice.height
        if self.tumor.initial_cells > sites // 2:
            raise ValueError(
                f"tumor.initial_cells ({self.tumor.initial_cells}) must be at most half of the "
                f"{sites} lattice sites"
            )
        return self


class StudyConfig(_Strict):
    """Several scenarios run side by side with the same replicate seeds."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str = ""
    scenarios: list[str] = Field(min_length=1, description="Scenario files, relative to this file.")
    seed: Annotated[int, Field(ge=0, le=SEED_MAX)] = 0
    replicates: Annotated[int, Field(ge=1, le=100000)] = 3


class Study(BaseModel):
    """A resolved study: validated scenarios plus the shared seed and replicate count."""

    name: str
    description: str = ""
    seed: int
    replicates: int
    scenarios: list[ScenarioConfig]


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------
def _read_yaml(path: Path, shown: str) -> dict[str, Any]:
    """Parse one YAML file safely into a mapping, or raise a ConfigError naming the file."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{shown}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown}: is a directory, not a YAML file") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{shown}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{shown}: cannot read ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"{shown}: YAML error{where}: {problem}") from None
    if data is None:
        raise ConfigError(f"{shown}: file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{shown}: top level must be a mapping of keys, got {type(data).__name__}")
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"{shown}: {key!r}: keys must be text")
    return data


def _merge(base: dict, override: dict) -> dict:
    """Deep-merge ``override`` onto ``base``: mappings merge, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _load_with_extends(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A file's mapping with its ``extends:`` chain merged in (base first)."""
    shown = _display(path)
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(_display(p) for p in (*chain, resolved))
        raise ConfigError(f"{shown}: extends: cycle ({cycle})")
    data = _read_yaml(path, shown)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{shown}: extends: must be a file name (got {parent!r})")
    parent_path = path.parent / parent
    if not parent_path.is_file():
        raise ConfigError(f"{shown}: extends: file not found: {_display(parent_path)}")
    return _merge(_load_with_extends(parent_path, (*chain, resolved)), data)


def _display(path: Path) -> str:
    """The path as the user would type it: relative to the working directory when possible."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'tumor.cycle_time_h=30'`` -> (['tumor', 'cycle_time_h'], 30); the value is YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected key.path=value")
    key, _, raw = text.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"--set {text}: empty key path")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"--set {text}: value is not valid YAML") from None
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return ``data`` with each ``key.path=value`` set (list items by index: ``doses.0.day``)."""
    data = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = data
        for part in parts[:-1]:
            node = _child(node, part, text, create=True)
        last = parts[-1]
        if isinstance(node, list):
            node[_index(node, last, text)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {text}: {'.'.join(parts[:-1])} is not a mapping")
    return data


def _index(node: list, part: str, text: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {text}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


def _child(node: Any, part: str, text: str, create: bool) -> Any:
    if isinstance(node, list):
        node = node[_index(node, part, text)]
        return node
    if not isinstance(node, dict):
        raise ConfigError(f"--set {text}: cannot descend into {part!r}")
    if part not in node and create:
        node[part] = {}
    return node[part]


def _format_location(loc: tuple) -> str:
    path = ""
    for item in loc:
        if isinstance(item, int):
            path += f"[{item}]"
        else:
            path += ("." if path else "") + str(item)
    return path or "(top level)"


_CONSTRAINT_MESSAGES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "too_short": "must have at least {min_length} item(s)",
    "string_too_short": "must not be empty",
    "finite_number": "must be a finite number",
}


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that holds the key at ``loc`` (to suggest spellings)."""
    current: Any = model
    for item in loc:
        if isinstance(item, int):
            continue
        field = getattr(current, "model_fields", {}).get(item)
        if field is None:
            return None
        annotation = field.annotation
        current = _unwrap_model(annotation)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def _describe(error: dict, model: type[BaseModel]) -> str:
    loc = tuple(error["loc"])
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        holder = _model_at(model, loc[:-1])
        known = list(holder.model_fields) if holder else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        allowed = f"; allowed: {', '.join(known)}" if known and not close else ""
        return f"{_format_location(loc)}: unknown key{hint}{allowed}"
    if kind == "missing":
        return f"{_format_location(loc)}: required key is missing"
    if kind in _CONSTRAINT_MESSAGES:
        bounds = {k: (f"{v:g}" if isinstance(v, float) else v)
                  for k, v in error.get("ctx", {}).items()}
        message = _CONSTRAINT_MESSAGES[kind].format(**bounds)
    elif kind == "literal_error":
        message = f"must be one of {error['ctx']['expected']}"
    else:
        message = error["msg"].removeprefix("Value error, ")
        message = message[0].lower() + message[1:] if message else message
    shown = _short_repr(value)
    return f"{_format_location(loc)}: {message} (got {shown})"


def _short_repr(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate(data: dict[str, Any], model: type[BaseModel], source: str) -> Any:
    """Validate a mapping against ``model``; errors become one ConfigError naming ``source``."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        lines = [f"{source}: {_describe(e, model)}" for e in err.errors(include_url=False)]
        raise ConfigError("\n".join(lines)) from None


def is_study(data: dict[str, Any]) -> bool:
    """A mapping with a ``scenarios`` key is a study; anything else is a scenario."""
    return "scenarios" in data


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> ScenarioConfig:
    """Load, merge ``extends``, apply ``--set`` overrides and validate one scenario file."""
    path = Path(path)
    data = apply_overrides(_load_with_extends(path), overrides or [])
    if is_study(data):
        raise ConfigError(f"{_display(path)}: is a study (has 'scenarios'), not a scenario")
    return validate(data, ScenarioConfig, _display(path))


def load_study(path: str | Path, overrides: list[str] | None = None) -> Study:
    """Load a study or a single scenario file as a Study (a lone scenario is a study of one).

    ``overrides`` apply to every scenario; a scenario's own ``seed``/``replicates`` give way to
    the study's.
    """
    path = Path(path)
    data = _load_with_extends(path)
    if not is_study(data):
        scenario = load_scenario(path, overrides)
        return Study(
            name=scenario.name,
            description=scenario.description,
            seed=scenario.seed,
            replicates=scenario.replicates,
            scenarios=[scenario],
        )
    study = validate(data, StudyConfig, _display(path))
    scenarios = []
    for entry in study.scenarios:
        scenario = load_scenario(path.parent / entry, overrides)
        scenarios.append(scenario.model_copy(update={"seed": study.seed,
                                                     "replicates": study.replicates}))
    names = [s.name for s in scenarios]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"{_display(path)}: scenarios: duplicate scenario names {duplicated}")
    return Study(name=study.name, description=study.description, seed=study.seed,
                 replicates=study.replicates, scenarios=scenarios)


def json_schema(kind: Literal["scenario", "study"] = "scenario") -> dict[str, Any]:
    """JSON Schema of a scenario or study file, for editor autocompletion of YAML."""
    model = ScenarioConfig if kind == "scenario" else StudyConfig
    schema = model.model_json_schema()
    schema["properties"]["extends"] = {
        "type": "string",
        "description": "Another config file (relative path) whose keys this one overrides.",
    }
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"cartsim {kind}"
    return schema
