"""The systemic follow-up: a patient's whole body as a pool-level ODE after the lattice phase.

The lattice resolves the first weeks (expansion, killing, CRS); months of follow-up on it would
cost ~10^5 steps per patient. After the hand-over (``clinical.lattice_days``, or as soon as the
lattice holds no cancer cell) the patient is five numbers, each relative to the baseline
tumour so that they do not depend on the lattice size:

* ``positive``, ``negative``: antigen-positive and antigen-negative cancer cells (fraction of
  the baseline burden). Both grow at the scenario's net rate, logistically capped at
  ``clinical.max_burden_fraction``; CAR-T clear antigen-positive cells at
  ``k(E) = car_t_kill_rate_per_day * E / (E + car_t_half_max_ratio)``. Disease below one cell
  of ``body_tumor_cells`` is extinct.
* ``effector``, ``memory``: CAR-T per baseline cancer cell (in-vivo E:T). Effectors die at
  their half-life and turn memory as on the lattice; memory cells die at
  ``car_t.memory_half_life_days``. From ``clinical.car_t_functional_days`` on (the patient's
  functional persistence: rejection, exhaustion) all die at ``car_t.exhausted_half_life_days``.
  When they fade, ``k(E)`` falls below the tumour's growth rate and any surviving
  antigen-positive cells regrow: a CD19-positive relapse after loss of CAR-T.
* ``b_cells``: normal B cells (fraction of their number before treatment), refilled by the
  marrow at ``b_cell_recovery_rate_per_day`` and cleared by the same ``k(E)``: B-cell aplasia
  lasts as long as functional CAR-T do.

Each step is solved exactly for its frozen rates (exponentials), so the result does not
depend on the step for steps much shorter than the rates' time scales (0.1 day here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..config import ScenarioConfig
from ..engine.units import MIN_PER_DAY, MIN_PER_H, rate_from_half_life

#: integration step of the systemic model (days); its fastest rate is ~1/day
STEP_DAYS = 0.1


@dataclass(frozen=True)
class SystemicState:
    """A patient on ``day`` (after t = 0): cancer cells and CAR-T per baseline cancer cell, B
    cells as a fraction of their number before treatment."""

    day: float
    positive: float
    negative: float
    effector: float
    memory: float
    b_cells: float


@dataclass(frozen=True)
class SystemicRates:
    """The per-day rates of the systemic model, from a scenario."""

    growth_per_day: float  # net growth of cancer cells (birth - apoptosis)
    capacity: float  # burden (fraction of baseline) where growth stops
    extinct_below: float  # one cell, as a fraction of the baseline burden
    kill_per_day: float
    half_max_ratio: float
    effector_death_per_day: float
    memory_death_per_day: float
    memory_conversion_per_day: float
    b_cell_recovery_per_day: float
    functional_until_day: float  # CAR-T stop working on this day (inf: never)
    lost_death_per_day: float  # death rate of CAR-T after that day

    @classmethod
    def from_config(cls, cfg: ScenarioConfig) -> SystemicRates:
        clinical = cfg.clinical
        assert clinical is not None
        birth = rate_from_half_life(cfg.tumor.cycle_time_h * MIN_PER_H) * MIN_PER_DAY
        car_t = cfg.car_t
        return cls(
            growth_per_day=birth - cfg.tumor.death_rate_per_day,
            capacity=clinical.max_burden_fraction,
            extinct_below=1.0 / clinical.body_tumor_cells,
            kill_per_day=clinical.car_t_kill_rate_per_day,
            half_max_ratio=clinical.car_t_half_max_ratio,
            effector_death_per_day=rate_from_half_life(car_t.effector_half_life_days),
            memory_death_per_day=rate_from_half_life(car_t.memory_half_life_days),
            memory_conversion_per_day=car_t.memory_conversion_rate_per_day,
            b_cell_recovery_per_day=clinical.b_cell_recovery_rate_per_day,
            functional_until_day=(math.inf if clinical.car_t_functional_days is None
                                  else clinical.car_t_functional_days),
            lost_death_per_day=rate_from_half_life(car_t.exhausted_half_life_days),
        )

    def kill(self, state: SystemicState) -> float:
        """Rate at which CAR-T clear an antigen-positive cell (1/day): saturating in the
        CAR-T, and shared among the antigen-positive cancer cells (a bulky residue dilutes it)."""
        car_t = state.effector + state.memory
        return self.kill_per_day * car_t / (car_t + self.half_max_ratio + state.positive)


def advance(state: SystemicState, rates: SystemicRates, days: float) -> SystemicState:
    """``state`` after ``days`` days, in steps of at most ``STEP_DAYS``."""
    steps = max(1, math.ceil(days / STEP_DAYS - 1e-9))
    dt = days / steps
    for _ in range(steps):
        state = _step(state, rates, dt)
    return state


def _step(s: SystemicState, r: SystemicRates, dt: float) -> SystemicState:
    kill = r.kill(s)
    growth = r.growth_per_day * max(0.0, 1.0 - (s.positive + s.negative) / r.capacity)
    positive = s.positive * math.exp((growth - kill) * dt)
    negative = s.negative * math.exp(growth * dt)
    if s.day >= r.functional_until_day - 1e-9:  # CAR-T lost: all die, none turn memory
        effector = s.effector * math.exp(-r.lost_death_per_day * dt)
        memory = s.memory * math.exp(-r.lost_death_per_day * dt)
    else:
        leave = r.effector_death_per_day + r.memory_conversion_per_day
        effector = s.effector * math.exp(-leave * dt)
        converted = (s.effector - effector) * r.memory_conversion_per_day / leave
        memory = s.memory * math.exp(-r.memory_death_per_day * dt) + converted
    balance = r.b_cell_recovery_per_day + kill
    steady = r.b_cell_recovery_per_day / balance if balance else s.b_cells
    b_cells = steady + (s.b_cells - steady) * math.exp(-balance * dt)
    return replace(s, day=s.day + dt, positive=_alive(positive, r), negative=_alive(negative, r),
                   effector=effector, memory=memory, b_cells=b_cells)


def _alive(fraction: float, rates: SystemicRates) -> float:
    """``fraction``, or 0 once it is less than one cell of the whole body (extinct)."""
    return fraction if fraction >= rates.extinct_below else 0.0
