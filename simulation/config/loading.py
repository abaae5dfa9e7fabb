"""Loading scenario and study files: read, merge ``extends``, apply overrides, validate.

A study lists scenario files (``scenarios``) or a killing-assay design (``assay``) expanded
into scenarios (``assay_design``); a lone scenario file loads as a study of one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from .assay_design import expand_assay
from .checks import validate
from .errors import ConfigError
from .overrides import Overrides, apply_overrides, override_list, yaml_value
from .scaling import check_scale, scale_scenario
from .schema import SEED_MAX, AssayConfig, ScenarioConfig, Study, StudyConfig
from .yaml_reader import display_path, load_with_extends, read_yaml


def is_study(data: dict[str, Any]) -> bool:
    """A mapping with a ``scenarios`` or ``assay`` key is a study; anything else is a scenario."""
    return "scenarios" in data or "assay" in data


#: keys only a sweep file has (``cartsim sweep``; ``simulation.study.sweep``)
SWEEP_KEYS = frozenset({"base", "parameters"})


#: keys only a fit file has (``cartsim fit``; ``simulation.study.fit``)
FIT_KEYS = frozenset({"model", "data"})


def is_fit(data: dict[str, Any]) -> bool:
    """A mapping that names a fit's ``model`` or ``data`` is a fit file."""
    return bool(FIT_KEYS & set(data))


def is_virtual_population(data: dict[str, Any]) -> bool:
    """A fit file with a ``pool`` of plausible patients is a virtual-population calibration
    (``simulation.study.vpop``)."""
    return is_fit(data) and "pool" in data


def is_sweep(data: dict[str, Any]) -> bool:
    """A mapping that names a sweep's ``base`` or ``parameters`` (and is no fit) is a sweep."""
    return bool(SWEEP_KEYS & set(data)) and not is_fit(data)


#: keys only a virtual-trial file has (simulation/study/trial.py)
TRIAL_KEYS = frozenset({"patients", "properties", "published", "not_modelled"})


def is_trial(data: dict[str, Any]) -> bool:
    """A mapping with a trial's ``patients``, ``properties``, ``published`` or ``not_modelled``
    is a trial file."""
    return bool(TRIAL_KEYS & set(data))


#: keys only a CAR-T product file has (configs/products/; simulation/study/product.py)
PRODUCT_KEYS = frozenset({"values", "varies"})


def is_product(data: dict[str, Any]) -> bool:
    """A mapping with a product's ``values`` or ``varies`` (and no trial key) is a CAR-T
    product file."""
    return bool(PRODUCT_KEYS & set(data)) and not is_trial(data)


def file_kind(data: dict[str, Any]) -> str:
    """What a config file is, from its top-level keys: "trial", "product", "virtual
    population", "fit", "sweep", "study" or "scenario"."""
    if is_trial(data):
        return "trial"
    if is_product(data):
        return "product"
    if is_virtual_population(data):
        return "virtual population"
    if is_fit(data):
        return "fit"
    return "sweep" if is_sweep(data) else "study" if is_study(data) else "scenario"


def _not_a_sweep(path: Path, data: dict[str, Any]) -> None:
    if is_product(data):
        shown = display_path(path)
        raise ConfigError(f"{shown}: is a CAR-T product file; give it to a trial with `cartsim "
                          f"trial TRIAL.yaml --product {shown}`")
    if is_trial(data):
        shown = display_path(path)
        raise ConfigError(f"{shown}: is a trial file; run it with `cartsim trial {shown} --out "
                          "DIR`")
    if is_fit(data):
        shown = display_path(path)
        keys = " and ".join(sorted(FIT_KEYS & set(data)))
        raise ConfigError(f"{shown}: is a fit file (it has {keys}); run it with `cartsim fit "
                          f"{shown}`")
    if is_sweep(data):
        shown = display_path(path)
        keys = " and ".join(sorted(SWEEP_KEYS & set(data)))
        raise ConfigError(f"{shown}: is a sweep file (it has {keys}); run it with `cartsim "
                          f"sweep {shown} --out DIR`")


def base_file_gaps(path: str | Path) -> list[str] | None:
    """The required keys a scenario file leaves to the files that extend it, when those are its
    only problems (a base file such as configs/base.yaml); None for a complete scenario, for one
    with any other problem, and when no config in its folder tree extends it."""
    path = Path(path)
    data = load_with_extends(path)
    if is_study(data) or is_sweep(data):
        return None
    try:
        ScenarioConfig.model_validate(data)
    except ValidationError as err:
        problems = err.errors(include_url=False)
        if all(problem["type"] == "missing" for problem in problems) and _extended(path):
            return [".".join(map(str, problem["loc"])) for problem in problems]
    return None


def _extended(path: Path) -> list[Path]:
    """The YAML files in ``path``'s folder tree whose ``extends`` names ``path``."""
    target = path.resolve()
    found = []
    for candidate in sorted(path.parent.rglob("*.yaml")):
        try:
            parent = read_yaml(candidate, display_path(candidate)).get("extends")
        except ConfigError:
            continue
        if isinstance(parent, str) and (candidate.parent / parent).resolve() == target:
            found.append(candidate)
    return found


def load_scenario(path: str | Path, overrides: Overrides = None) -> ScenarioConfig:
    """Load, merge ``extends``, apply overrides (``["key.path=value"]`` as ``--set`` takes
    them, or ``{"key.path": value}``) and validate one scenario file."""
    path = Path(path)
    overrides = override_list(overrides)
    data = apply_overrides(load_with_extends(path), overrides)
    _not_a_sweep(path, data)
    if is_study(data):
        raise ConfigError(f"{display_path(path)}: is a study (has 'scenarios' or 'assay'), not "
                          "a scenario")
    return validate(data, ScenarioConfig, display_path(path), overrides)


#: keys a study shares with a scenario: a file with nothing else is taken for a study
_STUDY_ONLY_KEYS = frozenset({"name", "description", "seed", "replicates"})


def load_study(path: str | Path, overrides: Overrides = None, *,
               replicates: int | None = None, days: float | None = None,
               seed: int | None = None, scale: float | None = None) -> Study:
    """Load a study or a single scenario file as a Study (a lone scenario is a study of one).

    ``overrides`` (``["key.path=value"]`` as ``--set`` takes them, or ``{"key.path": value}``)
    apply to every scenario; a
    scenario's own ``seed``/``replicates`` give way to the study's. ``days`` sets every
    scenario's ``time.duration_days`` (after ``overrides``); ``replicates`` and ``seed`` (of
    replicate 0; replicate r runs with ``seed + r``) replace the study's: the options of the
    same names of ``cartsim run``. ``scale`` puts every scenario on a lattice with ~``scale``
    times the sites, its cell counts scaled with them (``scaling.scale_scenario``).
    """
    path = Path(path)
    shown = display_path(path)
    overrides = override_list(overrides)
    if days is not None:
        overrides.append(f"time.duration_days={yaml_value(days)}")
    study = _load_study_file(path, overrides)
    updates = {key: whole_number(value, key, minimum, shown) for key, value, minimum
               in (("seed", seed, 0), ("replicates", replicates, 1)) if value is not None}
    if scale is not None:
        factor = check_scale(scale, shown)
        updates["scenarios"] = [scale_scenario(scenario, factor, source) for scenario, source
                                in zip(study.scenarios, study.sources, strict=True)]
    return study.model_copy(update=updates) if updates else study


def whole_number(value: Any, key: str, minimum: int, shown: str) -> int:
    """``value`` of the option ``key`` (``--seed``, ``--replicates``) if it is an integer >=
    ``minimum`` (and a valid seed), else a ConfigError naming the file ``shown`` and the key."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{shown}: {key}: must be a whole number (got {value!r})")
    if not minimum <= value <= SEED_MAX:
        raise ConfigError(f"{shown}: {key}: must be >= {minimum} (got {value})")
    return value


def _load_study_file(path: Path, overrides: list[str]) -> Study:
    """The study in ``path`` with ``overrides`` applied to every scenario."""
    data = load_with_extends(path)
    _not_a_sweep(path, data)
    if not is_study(data) and set(data) <= _STUDY_ONLY_KEYS:
        validate(data, StudyConfig, display_path(path))  # a study missing 'scenarios' or 'assay'
    if not is_study(data):
        scenario = load_scenario(path, overrides)
        return Study(
            name=scenario.name,
            description=scenario.description,
            seed=scenario.seed,
            replicates=scenario.replicates,
            scenarios=[scenario],
            sources=[display_path(path)],
        )
    shown = display_path(path)
    study = validate(data, StudyConfig, shown)
    if study.assay is not None:
        scenarios, sources = _assay_scenarios(study.assay, path, overrides)
        key = "assay"
    else:
        scenarios, sources = _listed_scenarios(study.scenarios, path, overrides)
        key = "scenarios"
    scenarios = [s.model_copy(update={"seed": study.seed, "replicates": study.replicates})
                 for s in scenarios]
    names = [s.name for s in scenarios]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"{shown}: {key}: duplicate scenario names {duplicated}")
    return Study(name=study.name, description=study.description, seed=study.seed,
                 replicates=study.replicates, scenarios=scenarios, sources=sources)


def _listed_scenarios(entries: list[str], path: Path, overrides: list[str] | None
                      ) -> tuple[list[ScenarioConfig], list[str]]:
    """The scenario files a study lists (relative to the study file ``path``), and their
    sources."""
    shown = display_path(path)
    scenarios = []
    for i, entry in enumerate(entries):
        entry_path = path.parent / entry
        if not entry_path.exists():
            raise ConfigError(f"{shown}: scenarios[{i}]: file not found: "
                              f"{display_path(entry_path)}")
        scenarios.append(load_scenario(entry_path, overrides))
    return scenarios, [display_path(path.parent / entry) for entry in entries]


def _assay_scenarios(assay: AssayConfig, path: Path, overrides: list[str]
                     ) -> tuple[list[ScenarioConfig], list[str]]:
    """The scenarios of a killing-assay design (``assay_design.expand_assay``): the dish file
    with ``extends`` and the ``--set`` overrides applied, then one scenario per condition."""
    shown = display_path(path)
    dish_path = path.parent / assay.scenario
    dish_shown = display_path(dish_path)
    if not dish_path.exists():
        raise ConfigError(f"{shown}: assay.scenario: file not found: {dish_shown}")
    dish = apply_overrides(load_with_extends(dish_path), overrides)
    if is_study(dish):
        raise ConfigError(f"{shown}: assay.scenario: {dish_shown} is a study; give a scenario "
                          "file")
    scenarios = expand_assay(assay, dish, dish_shown, shown)
    return scenarios, [dish_shown] * len(scenarios)


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
