"""cartsim: agent-based simulation of CAR-T cell therapy against blood and solid tumours.

Data flow: YAML (``config``) -> initial lattice, kernel parameters, dosing (``scenario``) ->
Mesa model (``model``) stepping numba kernels (``kernel``) -> tables (``results``) ->
plots (``plotting``) and output folders (``outputs``); ``cli`` ties them together.
"""

from .config import ConfigError, ScenarioConfig, Study, load_scenario, load_study
from .model import CarTModel

__all__ = ["CarTModel", "ConfigError", "ScenarioConfig", "Study", "load_scenario", "load_study"]
