"""The cartsim rules written with plain Mesa agents: the obvious alternative to the numba kernel.

Idiomatic mesa 3 code, as a Mesa user would write it: one ``CellAgent`` per cell on an
``OrthogonalMooreGrid`` with capacity 1, ``model.agents.shuffle_do("step")``. It reads the same
per-step probabilities as the kernel (``simulation.biology.scenario``) and applies the same rules: cancer
apoptosis and division into a free neighbour; CAR-T death, persistent random walk blocked by
occupied cells, synapse hold, kill of the strongest-antigen neighbour with a Hill-function
probability, exhaustion, activated division. It is used only by ``benchmarks/run.py`` to time
the same work; the kernel, not this file, is the simulator.
"""

from __future__ import annotations

import math

import mesa
from mesa.discrete_space import CellAgent, OrthogonalMooreGrid

from simulation.config import ScenarioConfig
from simulation.engine.constants import (
    CANCER,
    CAR_T,
    NORMAL,
)
from simulation.biology.scenario import build_lattice, kernel_parameters, motility


class TissueCell(CellAgent):
    """A cancer or normal cell with an antigen density (molecules/cell)."""

    def __init__(self, model: MesaReferenceModel, antigen: float, is_cancer: bool) -> None:
        super().__init__(model)
        self.antigen = antigen
        self.is_cancer = is_cancer

    def step(self) -> None:
        """Cancer cells die or divide into a free neighbour; normal cells are passive."""
        if not self.is_cancer:
            return
        p = self.model.params
        u = self.random.random()
        if u < p["cancer_death_p"]:
            self.remove()
            return
        if u < p["cancer_death_p"] + p["cancer_divide_p"]:
            free = [c for c in self.cell.neighborhood if c.is_empty]
            if free:
                daughter = TissueCell(self.model, self.antigen, True)
                daughter.cell = self.random.choice(free)


class CarTCell(CellAgent):
    """A CAR-T cell: walks, binds, kills, exhausts, divides, dies."""

    def __init__(self, model: MesaReferenceModel) -> None:
        super().__init__(model)
        self.exhausted = False
        self.kills = 0
        self.divisions = 0
        self.engaged_steps = 0
        self.activation_steps = 0
        self.heading = None

    def _targets(self) -> list[TissueCell]:
        return [a for c in self.cell.neighborhood for a in c.agents
                if isinstance(a, TissueCell) and a.antigen > 0]

    def move(self) -> None:
        """Persistent random walk; a synapse with a recognised target holds the cell."""
        m = self.model
        if any(t.antigen >= m.params["antigen_half_max"] for t in self._targets()):
            return
        for _ in range(m.n_substeps):
            if self.random.random() >= m.move_p:
                continue
            if self.heading is None or self.random.random() >= m.persist_p:
                self.heading = self.random.choice(m.directions)
            x, y = self.cell.coordinate
            target = (x + self.heading[0], y + self.heading[1])
            if m.on_grid(target) and m.grid[target].is_empty:
                self.cell = m.grid[target]
            else:
                self.heading = None

    def step(self) -> None:
        """Death, kill attempt, exhaustion, activated division."""
        p = self.model.params
        self.move()
        death_p = p["car_t_exhausted_death_p"] if self.exhausted else p["car_t_effector_death_p"]
        if self.random.random() < death_p:
            self.remove()
            return
        targets = self._targets()
        if targets:
            target = max(targets, key=lambda t: t.antigen)
            if target.antigen >= p["antigen_half_max"]:
                self.engaged_steps += 1
            ratio = (p["antigen_half_max"] / target.antigen) ** p["hill_coefficient"]
            rate = p["car_t_kill_rate_per_min"] / (1.0 + ratio)
            if self.exhausted:
                rate *= p["exhausted_kill_factor"]
            if self.engaged_steps < p["arming_steps"]:
                rate *= p["resting_kill_factor"]
            if self.random.random() < 1.0 - math.exp(-rate * p["dt_min"]):
                target.remove()
                self.kills += 1
                self.activation_steps = p["activation_steps"]
        if not self.exhausted and (self.kills >= p["max_kills"]
                                   or self.engaged_steps >= p["exhaustion_engaged_steps"]
                                   + p["arming_steps"]):
            self.exhausted = True
        if self.activation_steps == 0:
            return
        self.activation_steps -= 1
        if self.exhausted or self.divisions >= p["max_divisions"]:
            return
        if self.random.random() < p["car_t_divide_p"]:
            free = [c for c in self.cell.neighborhood if c.is_empty]
            if free:
                self.divisions += 1
                daughter = CarTCell(self.model)
                daughter.divisions = self.divisions
                daughter.activation_steps = self.activation_steps
                daughter.engaged_steps = min(self.engaged_steps, p["arming_steps"])
                daughter.cell = self.random.choice(free)


class MesaReferenceModel(mesa.Model):
    """Plain-Mesa twin of ``CarTModel`` for benchmarking (same initial lattice and rates)."""

    def __init__(self, scenario: ScenarioConfig, seed: int = 0, n_car_t: int = 0) -> None:
        super().__init__(rng=seed)
        lattice = build_lattice(scenario, seed)
        self.params = kernel_parameters(scenario)[0]  # the record: fields read by name
        mot = motility(scenario, lattice)
        self.move_p = float(mot.move_p[CAR_T])
        self.persist_p = float(mot.persist_p[CAR_T])
        self.n_substeps = mot.n_substeps
        self.directions = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if dx or dy]
        nz, ny, nx = lattice.shape
        self.width, self.height = nx, ny
        self.grid = OrthogonalMooreGrid((nx, ny), torus=False, capacity=1, random=self.random)
        types = lattice.cells["cell_type"]
        antigen = lattice.cells["antigen"]
        for site in range(lattice.n_sites):
            if types[site] in (CANCER, NORMAL):
                agent = TissueCell(self, float(antigen[site]), bool(types[site] == CANCER))
                agent.cell = self.grid[(site % nx, site // nx)]
        empties = [c for c in self.grid.all_cells if c.is_empty]
        for cell in self.random.sample(empties, min(n_car_t, len(empties))):
            CarTCell(self).cell = cell

    def on_grid(self, coordinate: tuple[int, int]) -> bool:
        """True if ``coordinate`` lies on the (non-toroidal) grid."""
        return 0 <= coordinate[0] < self.width and 0 <= coordinate[1] < self.height

    def step(self) -> None:
        """Every agent acts once, in random order."""
        self.agents.shuffle_do("step")
