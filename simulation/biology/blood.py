"""The blood compartment: a well-mixed pool of CAR-T that intravenous doses enter.

Blood CAR-T are counted, not placed: effector and memory cells of each CAR-T class (product and
subset), each dying at its class's half-life,
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
from ..engine.units import MIN_PER_H, probability_per_step


class BloodPool:
    """CAR-T in the blood of one run: ``effector`` and ``memory`` counts per CAR-T class
    (``engine.constants``: product and subset), each class with its own half-lives."""

    def __init__(self, cfg: ScenarioConfig, lattice: Lattice, params: np.ndarray) -> None:
        dt = cfg.time.dt_min
        n_classes = params.shape[0]
        self.effector = np.zeros(n_classes, dtype=np.int64)
        self.memory = np.zeros(n_classes, dtype=np.int64)
        self.volume_ul = cfg.blood.volume_ul
        self.leave_p = probability_per_step(cfg.blood.extravasation_rate_per_h / MIN_PER_H, dt)
        # the kernel's per-class probabilities: blood and tissue cells age alike
        self.effector_death_p = params["car_t_effector_death_p"].copy()
        self.memory_death_p = params["car_t_memory_death_p"].copy()
        self.memory_p = params["car_t_memory_p"].copy()
        self.vessel_sites = np.flatnonzero(lattice.tissue == TISSUE_VESSEL)

    @property
    def cells(self) -> int:
        """CAR-T in the blood now."""
        return int(self.effector.sum() + self.memory.sum())

    @property
    def per_ul(self) -> float:
        """CAR-T per uL of blood (the clinical read-out)."""
        return self.cells / self.volume_ul

    def step(self, lattice: Lattice, rng: np.random.Generator, seed: int, sweep: int,
             motile_rows: np.ndarray) -> None:
        """One time step: deaths, effector -> memory, then extravasation into the lattice,
        class by class (classes with no cells in the blood draw nothing).

        ``rng`` is this step's own generator (so a resumed run draws the same numbers);
        ``sweep`` is the lattice sweep about to run, which keys the placement draws;
        ``motile_rows`` gets the rows of placed cells marked (``kernel.sweep_lattice``).
        """
        first_cell = 0  # numbers the placed cells of one step across classes and states
        lat = lattice
        for k in range(self.effector.shape[0]):
            if k > 0 and self.effector[k] == 0 and self.memory[k] == 0:
                continue
            effector, memory = int(self.effector[k]), int(self.memory[k])
            effector -= int(rng.binomial(effector, self.effector_death_p[k]))
            memory -= int(rng.binomial(memory, self.memory_death_p[k]))
            converted = int(rng.binomial(effector, self.memory_p[k]))
            effector -= converted
            memory += converted
            leaving_effector = int(rng.binomial(effector, self.leave_p))
            leaving_memory = int(rng.binomial(memory, self.leave_p))
            effector -= kernel.extravasate(lat.cells, lat.extra, lat.tissue, lat.shape,
                                           lat.offsets, self.vessel_sites, leaving_effector,
                                           first_cell, EFFECTOR, k, seed, sweep, motile_rows)
            memory -= kernel.extravasate(lat.cells, lat.extra, lat.tissue, lat.shape,
                                         lat.offsets, self.vessel_sites, leaving_memory,
                                         first_cell + leaving_effector, MEMORY, k, seed, sweep,
                                         motile_rows)
            first_cell += leaving_effector + leaving_memory
            self.effector[k], self.memory[k] = effector, memory

    def state(self) -> dict[str, list[int]]:
        """The counts per class, for checkpoints."""
        return {"effector": self.effector.tolist(), "memory": self.memory.tolist()}

    def restore(self, state: dict[str, list[int] | int]) -> None:
        """Set the counts from ``state()`` (or from a format-3/4 checkpoint's single counts,
        which are class 0's)."""
        for name in ("effector", "memory"):
            counts = np.atleast_1d(np.asarray(state[name], dtype=np.int64))
            target = getattr(self, name)
            target[:] = 0
            target[:counts.size] = counts
