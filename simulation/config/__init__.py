"""YAML scenarios -> validated, typed config objects.

Two kinds of file:

* a **scenario** (one tumour, one CAR-T product, one dosing plan), and
* a **study**: ``scenarios: [a.yaml, b.yaml]`` run side by side with shared seeds and replicates.

Both may say ``extends: other.yaml``; mappings merge key by key, anything else is replaced.
Unknown keys, wrong types and out-of-range values are errors that name the file and the key path.

Modules, each importing only those above it:

* ``errors``: ``ConfigError``, ``Problems`` and the ``file: key.path: problem`` messages;
* ``mappings``: deep merging of mappings (``extends``, products starting from ``car_t``);
* ``schema``: the pydantic models (``ScenarioConfig``, ``StudyConfig``, ...) and their limits;
* ``yaml_reader``: the safe YAML reader, ``extends`` merging, paths as messages show them;
* ``overrides``: ``--set key.path=value`` overrides;
* ``checks``: ``validate``, the checks across keys and the memory estimate;
* ``assay_design``: a killing-assay design expanded into scenarios;
* ``loading``: ``load_scenario``, ``load_study``, ``json_schema``.
"""

from .assay_design import WELL_KEYS, et_label, expand_assay
from .checks import check_memory, check_scenario, validate, validate_model_file
from .errors import ConfigError, Problems, describe_error
from .loading import (TRIAL_KEYS, base_file_gaps, file_kind, is_product, is_study, is_sweep,
                      is_trial, is_virtual_population, json_schema, load_scenario, load_study,
                      whole_number)
from .overrides import Overrides, apply_overrides, override_list, parse_override, yaml_value
from .schema import (
    MAIN_PRODUCT,
    SEED_MAX,
    AntigenDistribution,
    CarTConfig,
    AssayConfig,
    FieldConfig,
    ScenarioConfig,
    StrictModel,
    Study,
    StudyConfig,
)
from .yaml_reader import display_path, load_with_extends, read_yaml

__all__ = [
    "MAIN_PRODUCT", "SEED_MAX", "WELL_KEYS", "AntigenDistribution", "AssayConfig", "CarTConfig", "ConfigError", "FieldConfig",
    "Overrides", "Problems", "ScenarioConfig", "StrictModel", "Study", "StudyConfig", "TRIAL_KEYS",
    "apply_overrides", "base_file_gaps", "check_memory", "check_scenario", "describe_error",
    "display_path", "et_label", "expand_assay", "file_kind", "is_product", "is_study", "is_sweep", "is_trial",
    "is_virtual_population", "json_schema", "load_scenario", "load_study", "load_with_extends",
    "override_list", "parse_override", "read_yaml", "validate", "validate_model_file",
    "whole_number", "yaml_value",
]
