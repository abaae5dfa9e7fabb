"""Validation, and checks across keys: can this scenario run at all, on this machine?

``validate`` turns a mapping into a config (schema errors become message lines); a scenario then
goes through ``scenario_problems``, which sees what the schema cannot see key by key, and
``memory_problem``, which compares the estimated memory of its runs with this machine's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..engine.constants import (CELL_DTYPE, CELL_EXTRA_DTYPE, N_FIELDS, TIMER_MAX,
                                mean_step_length, neighbour_offsets)
from ..engine.units import MIN_PER_H, minutes_to_steps
from .errors import ConfigError, describe_error, problem_line
from .overrides import blame_overrides
from .schema import ScenarioConfig
from .yaml_reader import display_path, read_yaml

#: more migration sweeps per time step than this means a speed in the wrong unit
MAX_MOVES_PER_STEP = 1000
#: interpreter, numpy/numba/pandas/matplotlib and the compiled kernels: ~210 MB measured
RUN_OVERHEAD_BYTES = 256 * 2**20
#: set-up temporaries per site at the peak of building a run, on top of the 16-byte record:
#: a compact tumour sorts every site by its distance from the centre, margin arrival runs a
#: distance transform (measured on 3000x3000 lattices: 60 bytes/site in all for gbm_solid,
#: 25 for b_all_cd19, records included)
SETUP_BYTES_PER_SITE_COMPACT = 48
SETUP_BYTES_PER_SITE_DISPERSED = 16
#: per-site state of a run: the cell record, the tissue code, the fields (float64 each) and
#: the field solver's work arrays (uptake and source, float64, plus the fixed-site mask)
STATE_BYTES_PER_SITE = CELL_DTYPE.itemsize + 1 + 8 * N_FIELDS + 17


def validate(data: dict[str, Any], model: type[BaseModel], source: str,
             overrides: Sequence[str] = ()) -> Any:
    """Validate a mapping against ``model``; errors become one ConfigError naming ``source``,
    or the ``--set`` override (of ``overrides``, already applied to ``data``) that set the
    key (``overrides.blame_overrides``).

    A scenario is also checked for what the schema cannot see key by key
    (``scenario_problems``: timers, speeds, doses after the end, memory).
    """
    try:
        validated = model.model_validate(data)
        if isinstance(validated, ScenarioConfig):
            check_scenario(validated, source)
    except ValidationError as err:
        lines = [f"{source}: {line}" for e in err.errors(include_url=False)
                 for line in describe_error(e, model)]
        raise ConfigError(blame_overrides("\n".join(lines), source, overrides)) from None
    except ConfigError as err:
        raise ConfigError(blame_overrides(str(err), source, overrides)) from None
    return validated


def estimate_memory_bytes(cfg: ScenarioConfig, parallel_runs: int = 1) -> int:
    """Peak memory of ``parallel_runs`` simultaneous runs of ``cfg`` (bytes).

    Per run: ``sites * (STATE_BYTES_PER_SITE + set-up temporaries) + RUN_OVERHEAD_BYTES``; worker
    processes each hold a run, and the parent process holds one more overhead.
    """
    sites = cfg.lattice.n_sites
    compact = cfg.tumor.layout == "compact" or any(
        (d.route or cfg.dosing.route) == "intratumoral" for d in cfg.dosing.doses)
    setup = SETUP_BYTES_PER_SITE_COMPACT if compact else SETUP_BYTES_PER_SITE_DISPERSED
    extra = CELL_EXTRA_DTYPE.itemsize if cfg.needs_extra_records else 0
    per_run = sites * (STATE_BYTES_PER_SITE + extra + setup) + RUN_OVERHEAD_BYTES
    return parallel_runs * per_run + (RUN_OVERHEAD_BYTES if parallel_runs > 1 else 0)


def physical_memory_bytes() -> int | None:
    """This machine's physical memory, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _gb(n_bytes: float) -> str:
    gib = n_bytes / 2**30
    return f"{gib:.0f} GB" if gib >= 100 else f"{gib:.1f} GB"


def memory_problem(cfg: ScenarioConfig, parallel_runs: int = 1) -> str | None:
    """Why ``parallel_runs`` runs of ``cfg`` cannot fit in this machine's memory, or None."""
    have = physical_memory_bytes()
    need = estimate_memory_bytes(cfg, parallel_runs)
    if have is None or need <= have:
        return None
    lattice = f"{cfg.lattice.label} lattice"
    if parallel_runs == 1:
        return f"a {lattice} needs ~{_gb(need)}, more than this machine's {_gb(have)}"
    fit = max(n for n in range(1, parallel_runs + 1)
              if n == 1 or estimate_memory_bytes(cfg, n) <= have)
    return (f"{parallel_runs} parallel runs of a {lattice} need ~{_gb(need)}, more than this "
            f"machine's {_gb(have)}; use --workers {fit}")


def scenario_problems(cfg: ScenarioConfig) -> list[tuple[tuple, str, Any]]:
    """``(location, message, value)`` for every reason a valid-looking scenario cannot run."""
    problems: list[tuple[tuple, str, Any]] = []
    dt = cfg.time.dt_min
    for key in ("activation_duration_h", "exhaustion_after_engaged_h"):
        # a CAR-T's synapse timer runs through its arming time, then to exhaustion
        hours = getattr(cfg.car_t, key) + (
            cfg.car_t.arming_time_h if key == "exhaustion_after_engaged_h" else 0.0)
        steps = minutes_to_steps(hours * MIN_PER_H, dt)
        if steps > TIMER_MAX:
            problems.append((("car_t", key), f"{hours:g} h is {steps} time steps of {dt:g} min, "
                             f"more than the {TIMER_MAX} a timer holds; raise time.dt_min", None))
    offsets = neighbour_offsets(cfg.lattice.dimensions, cfg.lattice.neighbourhood)
    move_um = cfg.lattice.spacing_um * mean_step_length(offsets)
    speeds = [(("car_t", "speed_um_per_min"), cfg.car_t.speed_um_per_min),
              (("tumor", "speed_um_per_min"), cfg.tumor.speed_um_per_min)]
    speeds += [(("normal", i, "speed_um_per_min"), p.speed_um_per_min)
               for i, p in enumerate(cfg.normal) if p.density > 0]
    for loc, speed in speeds:
        moves = speed * dt / move_um
        if moves > MAX_MOVES_PER_STEP:
            problems.append((loc, f"{speed:g} um/min is {moves:.3g} moves per {dt:g}-min time "
                             f"step on a {cfg.lattice.spacing_um:g}-um lattice, more than "
                             f"{MAX_MOVES_PER_STEP}; check the unit (um per minute)", None))
    for i, dose in enumerate(cfg.dosing.doses):
        route = dose.route or cfg.dosing.route
        if route == "intravenous" and not cfg.tissue.has_vessels:
            loc = ("dosing", "doses", i, "route") if dose.route else ("dosing", "route")
            problems.append((loc, "intravenous doses enter the tissue at vessels, and "
                             "tissue.vessel_density is 0; add vessels or choose 'intratumoral' "
                             "or 'anywhere'", route))
            break
    if cfg.dosing.lymphodepletion is not None:
        names = [p.name for p in cfg.normal]
        for i, name in enumerate(cfg.dosing.lymphodepletion.populations):
            if name not in names:
                problems.append((("dosing", "lymphodepletion", "populations", i),
                                 f"no normal population is called {name!r} (have {names})",
                                 None))
    end_days = cfg.time.duration_days
    for i, dose in enumerate(cfg.dosing.doses):
        if dose.day >= end_days:
            problems.append((("dosing", "doses", i, "day"), "must be before the end of the run "
                             f"(time.duration_days: {end_days:g})", dose.day))
    memory = memory_problem(cfg)
    if memory:
        problems.append((("lattice", "width"), memory, None))
    return problems


def check_scenario(cfg: ScenarioConfig, source: str | None = None) -> None:
    """Raise a ConfigError (one line per problem) if ``scenario_problems`` finds any."""
    problems = scenario_problems(cfg)
    if problems:
        prefix = f"{source}: " if source else ""
        raise ConfigError("\n".join(prefix + problem_line(*p) for p in problems))


def check_memory(cfg: ScenarioConfig, source: str | None, parallel_runs: int) -> None:
    """Raise a ConfigError if ``parallel_runs`` simultaneous runs of ``cfg`` do not fit."""
    memory = memory_problem(cfg, parallel_runs)
    if memory:
        prefix = f"{source}: " if source else ""
        raise ConfigError(prefix + problem_line(("lattice", "width"), memory))


def validate_model_file(path: str | Path, model: type[BaseModel]) -> tuple[Any, str, Path]:
    """Read and validate a file that names a ``model:`` file relative to it (a fit, a virtual
    population): (the validated file, its path as messages show it, the model's path);
    ConfigError naming the file if it, or its model, is missing or invalid."""
    path = Path(path)
    shown = display_path(path)
    if not path.is_file():
        raise ConfigError(f"{shown}: no such file")
    validated = validate(read_yaml(path, shown), model, shown)
    model_path = path.parent / validated.model
    if not model_path.is_file():
        raise ConfigError(f"{shown}: model: file not found: {display_path(model_path)}")
    return validated, shown, model_path
