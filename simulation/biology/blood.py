"""The blood compartment: a well-mixed pool of CAR-T that intravenous doses enter.

Blood CAR-T are counted, not placed: effector and memory cells, each dying at its half-life,
effectors turning memory at the same rate as in the tissue. Every time step a binomial share
``1 - exp(-extravasation_rate * dt)`` of the pool leaves for the tissue next to random vessel
sites (``kernel.extravasate``); cells next to a vessel return at ``intravasation_rate`` (inside
the kernel, counted in its events). What the clinic measures, CAR-T per uL of blood, is the pool
divided by ``blood.volume_ul``.
"""

from __future__ import annotations

import numpy as np

from ..engine import kernel
from ..config import ScenarioConfig
from ..engine.constants import EFFECTOR, MEMORY, TISSUE_VESSEL
from ..engine.lattice import Lattice
from ..engine.units import MIN_PER_DAY, MIN_PER_H, probability_per_step, rate_from_half_life


class BloodPool:
    """CAR-T in the blood of one run: ``effector`` and ``memory`` counts."""

    def __init__(self, cfg: ScenarioConfig, lattice: Lattice) -> None:
        dt = cfg.time.dt_min
        car_t = cfg.car_t
        self.effector = 0
        self.memory = 0
        self.volume_ul = cfg.blood.volume_ul
        self.leave_p = probability_per_step(cfg.blood.extravasation_rate_per_h / MIN_PER_H, dt)
        self.effector_death_p = probability_per_step(
            rate_from_half_life(car_t.effector_half_life_days * MIN_PER_DAY), dt)
        self.memory_death_p = probability_per_step(
            rate_from_half_life(car_t.memory_half_life_days * MIN_PER_DAY), dt)
        self.memory_p = probability_per_step(car_t.memory_conversion_rate_per_day / MIN_PER_DAY,
                                             dt)
        self.vessel_sites = np.flatnonzero(lattice.tissue == TISSUE_VESSEL)

    @property
    def cells(self) -> int:
        """CAR-T in the blood now."""
        return self.effector + self.memory

    @property
    def per_ul(self) -> float:
        """CAR-T per uL of blood (the clinical read-out)."""
        return self.cells / self.volume_ul

    def step(self, lattice: Lattice, rng: np.random.Generator, seed: int, sweep: int,
             motile_rows: np.ndarray) -> None:
        """One time step: deaths, effector -> memory, then extravasation into the lattice.

        ``rng`` is this step's own generator (so a resumed run draws the same numbers);
        ``sweep`` is the lattice sweep about to run, which keys the placement draws;
        ``motile_rows`` gets the rows of placed cells marked (``kernel.sweep_lattice``).
        """
        self.effector -= int(rng.binomial(self.effector, self.effector_death_p))
        self.memory -= int(rng.binomial(self.memory, self.memory_death_p))
        converted = int(rng.binomial(self.effector, self.memory_p))
        self.effector -= converted
        self.memory += converted
        leaving_effector = int(rng.binomial(self.effector, self.leave_p))
        leaving_memory = int(rng.binomial(self.memory, self.leave_p))
        lat = lattice
        self.effector -= kernel.extravasate(lat.cells, lat.extra, lat.tissue, lat.shape,
                                            lat.offsets, self.vessel_sites, leaving_effector, 0,
                                            EFFECTOR, seed, sweep, motile_rows)
        self.memory -= kernel.extravasate(lat.cells, lat.extra, lat.tissue, lat.shape,
                                          lat.offsets, self.vessel_sites, leaving_memory,
                                          leaving_effector, MEMORY, seed, sweep, motile_rows)

    def state(self) -> dict[str, int]:
        """The counts, for checkpoints."""
        return {"effector": self.effector, "memory": self.memory}

    def restore(self, state: dict[str, int]) -> None:
        """Set the counts from ``state()``."""
        self.effector = int(state["effector"])
        self.memory = int(state["memory"])
