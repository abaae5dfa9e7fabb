"""Scenario builder: a validated config -> initial lattice, kernel parameters and dosing plan.

This is the one place where physical units become per-step numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt

from .config import AntigenDistribution, ConfigError, ScenarioConfig, check_scenario
from .constants import (
    CANCER,
    CAR_T,
    EMPTY,
    K_ACTIVATION_STEPS,
    K_ANTIGEN_HALF_MAX,
    K_ANTIGEN_INHERITANCE_SIGMA,
    K_CANCER_DEATH_P,
    K_CANCER_DIVIDE_P,
    K_CAR_T_DIVIDE_P,
    K_CAR_T_EFFECTOR_DEATH_P,
    K_CAR_T_EXHAUSTED_DEATH_P,
    K_CAR_T_KILL_RATE_PER_MIN,
    K_DT_MIN,
    K_EXHAUSTED_KILL_FACTOR,
    K_EXHAUSTION_ENGAGED_STEPS,
    K_HILL_COEFFICIENT,
    K_MAX_DIVISIONS,
    K_MAX_KILLS,
    N_CELL_TYPES,
    N_KERNEL_PARAMS,
    NORMAL,
    TIMER_MAX,
    mean_step_length,
)
from .lattice import Lattice
from .units import (
    MIN_PER_DAY,
    MIN_PER_H,
    lognormal_sigma,
    minutes_to_steps,
    probability_per_step,
    rate_from_half_life,
)

# purposes of the numpy generators used outside the kernel (initial layout, infusions)
_LAYOUT_STREAM = 1
_INFUSION_STREAM = 2


def setup_rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    """An independent numpy generator for one set-up purpose of one run."""
    return np.random.default_rng([seed, stream, index])


# ---------------------------------------------------------------------------------------------
# kernel parameters
# ---------------------------------------------------------------------------------------------
def _timer_steps(hours: float, dt_min: float, key: str) -> int:
    steps = minutes_to_steps(hours * MIN_PER_H, dt_min)
    if steps > TIMER_MAX:
        raise ConfigError(
            f"{key}: {hours:g} h is {steps} time steps, more than the {TIMER_MAX} a timer holds; "
            "raise time.dt_min"
        )
    return steps


def kernel_parameters(cfg: ScenarioConfig) -> np.ndarray:
    """The float64 parameter vector the kernels read (indices in ``constants.K_*``)."""
    dt = cfg.time.dt_min
    car_t = cfg.car_t
    tumor = cfg.tumor
    params = np.zeros(N_KERNEL_PARAMS, dtype=np.float64)
    params[K_CAR_T_KILL_RATE_PER_MIN] = car_t.kill_rate_per_h / MIN_PER_H
    params[K_EXHAUSTED_KILL_FACTOR] = car_t.exhausted_kill_factor
    params[K_ANTIGEN_HALF_MAX] = car_t.antigen_half_max_molecules_per_cell
    params[K_HILL_COEFFICIENT] = car_t.hill_coefficient
    params[K_MAX_KILLS] = car_t.max_kills
    params[K_MAX_DIVISIONS] = car_t.max_divisions
    params[K_EXHAUSTION_ENGAGED_STEPS] = _timer_steps(
        car_t.exhaustion_after_engaged_h, dt, "car_t.exhaustion_after_engaged_h")
    params[K_ACTIVATION_STEPS] = _timer_steps(
        car_t.activation_duration_h, dt, "car_t.activation_duration_h")
    params[K_DT_MIN] = dt
    params[K_CAR_T_DIVIDE_P] = probability_per_step(
        rate_from_half_life(car_t.division_time_h * MIN_PER_H), dt)
    params[K_CAR_T_EFFECTOR_DEATH_P] = probability_per_step(
        rate_from_half_life(car_t.effector_half_life_days * MIN_PER_DAY), dt)
    params[K_CAR_T_EXHAUSTED_DEATH_P] = probability_per_step(
        rate_from_half_life(car_t.exhausted_half_life_days * MIN_PER_DAY), dt)
    # competing hazards: P(any event in dt) = 1 - exp(-(birth + death) dt), split by rate
    birth = rate_from_half_life(tumor.cycle_time_h * MIN_PER_H)
    death = tumor.death_rate_per_day / MIN_PER_DAY
    any_event = probability_per_step(birth + death, dt)
    params[K_CANCER_DIVIDE_P] = any_event * birth / (birth + death)
    params[K_CANCER_DEATH_P] = any_event * death / (birth + death)
    params[K_ANTIGEN_INHERITANCE_SIGMA] = lognormal_sigma(tumor.antigen.inheritance_cv)
    return params


@dataclass(frozen=True)
class Motility:
    """Per-cell-type move and persistence probabilities per migration sweep."""

    move_p: np.ndarray  # (N_CELL_TYPES,) probability of a move attempt per migration sweep
    persist_p: np.ndarray  # (N_CELL_TYPES,) probability of keeping the heading at a move
    n_substeps: int  # migration sweeps per time step


def motility(cfg: ScenarioConfig, lattice: Lattice) -> Motility:
    """Map speeds (um/min) to moves per migration sweep so the mean speed is exact at any dt.

    A move covers ``mean_step_length`` spacings on average (diagonals are longer), so a cell of
    speed v makes ``v / (spacing * mean_step_length)`` moves per minute. A time step holds enough
    migration sweeps that each needs at most one move: the move probability per sweep is then
    the expected number of moves, which keeps the mean speed independent of ``dt``.
    Persistence: the heading survives a move with probability ``exp(-t_move / tau)``.
    """
    dt = cfg.time.dt_min
    step_um = lattice.spacing_um * mean_step_length(lattice.offsets)
    speeds = np.zeros(N_CELL_TYPES)
    persistence = np.zeros(N_CELL_TYPES)
    speeds[CAR_T] = cfg.car_t.speed_um_per_min
    persistence[CAR_T] = cfg.car_t.persistence_time_min
    speeds[CANCER] = cfg.tumor.speed_um_per_min
    # one speed for all normal populations: the fastest (they share one cell-type code)
    speeds[NORMAL] = max((p.speed_um_per_min for p in cfg.normal if p.density > 0), default=0.0)
    moves_per_step = speeds * dt / step_um
    n_substeps = max(1, math.ceil(moves_per_step.max() - 1e-12))
    move_p = moves_per_step / n_substeps
    persist_p = np.zeros(N_CELL_TYPES)
    moving = (speeds > 0) & (persistence > 0)
    with np.errstate(over="ignore"):  # a vanishing speed: infinite interval, no persistence
        move_interval_min = step_um / np.where(speeds > 0, speeds, 1.0)
        persist_p[moving] = np.exp(-move_interval_min[moving] / persistence[moving])
    return Motility(move_p=move_p, persist_p=persist_p, n_substeps=n_substeps)


# ---------------------------------------------------------------------------------------------
# initial lattice
# ---------------------------------------------------------------------------------------------
def draw_antigen(dist: AntigenDistribution, n: int, rng: np.random.Generator) -> np.ndarray:
    """Antigen densities (molecules/cell) for ``n`` cells from a log-normal + negative fraction."""
    if n == 0 or dist.mean_molecules_per_cell <= 0:
        return np.zeros(n, dtype=np.float32)
    sigma = lognormal_sigma(dist.cv)
    mu = math.log(dist.mean_molecules_per_cell) - 0.5 * sigma * sigma
    values = rng.lognormal(mu, sigma, size=n)
    values[rng.random(n) < dist.negative_fraction] = 0.0
    return values.astype(np.float32)


def _compact_sites(lattice: Lattice, n: int) -> np.ndarray:
    """The ``n`` sites closest to the lattice centre (a disc), ties in site order."""
    nz, ny, nx = lattice.shape
    sites = np.arange(lattice.n_sites)
    xy = lattice.site_coordinates(sites).astype(np.float64)
    d2 = (xy[:, 0] - (nx - 1) / 2.0) ** 2 + (xy[:, 1] - (ny - 1) / 2.0) ** 2
    return np.sort(sites[np.argsort(d2, kind="stable")[:n]])


def build_lattice(cfg: ScenarioConfig, seed: int) -> Lattice:
    """The lattice at t = 0: tumour (dispersed or compact), then normal populations around it.

    A scenario that cannot run (e.g. a lattice larger than this machine's memory) is refused
    with a ConfigError before anything is allocated.
    """
    check_scenario(cfg)
    lat = cfg.lattice
    lattice = Lattice.empty(lat.width, lat.height, lat.spacing_um, lat.neighbourhood)
    rng = setup_rng(seed, _LAYOUT_STREAM)
    n_tumor = cfg.tumor.initial_cells
    if cfg.tumor.layout == "compact":
        tumor_sites = _compact_sites(lattice, n_tumor)
    else:
        tumor_sites = rng.choice(lattice.n_sites, size=n_tumor, replace=False)
    lattice.field("cell_type")[tumor_sites] = CANCER
    lattice.field("antigen")[tumor_sites] = draw_antigen(cfg.tumor.antigen, n_tumor, rng)

    free = np.flatnonzero(lattice.field("cell_type") == EMPTY)
    rng.shuffle(free)
    start = 0
    for population in cfg.normal:
        n = int(round(population.density * free.size))
        sites = free[start:start + n]
        start += n
        lattice.field("cell_type")[sites] = NORMAL
        lattice.field("antigen")[sites] = draw_antigen(population.antigen, n, rng)
    return lattice


# ---------------------------------------------------------------------------------------------
# dosing
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Infusion:
    """One scheduled infusion, in model time."""

    time_min: float
    cells: int | None
    effector_to_target: float | None

    def n_cells(self, tumor_cells: int) -> int:
        """CAR-T to infuse given the cancer cells present now."""
        if self.cells is not None:
            return self.cells
        return max(1, round(self.effector_to_target * tumor_cells))


def dosing_plan(cfg: ScenarioConfig) -> list[Infusion]:
    """The infusions of a scenario, sorted by time."""
    plan = [Infusion(d.day * MIN_PER_DAY, d.cells, d.effector_to_target) for d in cfg.dosing.doses]
    return sorted(plan, key=lambda inf: inf.time_min)


def arrival_sites(lattice: Lattice, cfg: ScenarioConfig) -> np.ndarray:
    """Free sites where infused CAR-T may arrive (whole lattice, or the tumour margin band)."""
    free = lattice.field("cell_type") == EMPTY
    if cfg.dosing.arrival == "anywhere":
        return np.flatnonzero(free)
    nz, ny, nx = lattice.shape
    not_tumor = lattice.grid("cell_type") != CANCER
    if not_tumor.all():
        return np.flatnonzero(free)  # no tumour left: nothing to aim at
    distance_um = distance_transform_edt(not_tumor).ravel() * lattice.spacing_um
    return np.flatnonzero(free & (distance_um <= cfg.dosing.margin_width_um))


def infuse(lattice: Lattice, sites: np.ndarray, n_cells: int, rng: np.random.Generator,
           stamp: int) -> int:
    """Place up to ``n_cells`` fresh effector CAR-T on distinct ``sites``; returns how many fit."""
    n_placed = min(n_cells, sites.size)
    chosen = rng.choice(sites, size=n_placed, replace=False)
    lattice.field("cell_type")[chosen] = CAR_T
    lattice.field("stamp")[chosen] = stamp
    return n_placed
