"""The diffusing fields of a run: what the cells put in and take out, and when to re-solve.

Cells and fields are coupled by operator splitting: the lattice advances with the fields held
fixed, and every ``microenvironment.update_interval_min`` the fields are re-solved (backward
Euler over the interval, oxygen quasi-steady) from the cells present then. The numerics live in
``simulation.engine.fields``; this module turns cell content into uptake and source arrays.

Field      | source / sink                                     | boundary
---------- | ------------------------------------------------- | ----------------------------------
oxygen     | held at ``vessel_mmhg`` on vessel sites; uptake    | ``edge_mmhg`` beyond the edge
           | by cancer, normal and CAR-T cells                  | (null: closed)
chemokine  | secreted by cancer cells                          | 0 beyond the edge (drained)
suppression| secreted by cancer cells, more where cytokine is  | 0 beyond the edge
cytokine   | secreted by activated CAR-T                       | 0 beyond the edge
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from ..config import FieldConfig, ScenarioConfig
from ..engine.constants import (
    CANCER,
    CAR_T,
    F_CHEMOKINE,
    F_CYTOKINE,
    F_OXYGEN,
    F_SUPPRESSION,
    FIELD_NAMES,
    N_CELL_TYPES,
    N_FIELDS,
    NORMAL,
    TISSUE_VESSEL,
)
from ..engine.fields import field_total, solve_field
from ..engine.lattice import NORMOXIA_MMHG, Lattice

#: solver accuracy, relative to the field's scale (``solve_field``'s tolerance). Updates every
#: ``update_interval_min`` start from the previous fields and land within 1e-3 of the scale of a
#: converged solve (test_biology_model); the steady state at t = 0 and a field's first solve
#: from zero are solved tighter.
RELATIVE_TOLERANCE = 1e-3
STEADY_STATE_RELATIVE_TOLERANCE = 1e-6
#: cap on V-cycles (on SOR sweeps for a lattice with an odd side, which cannot be coarsened)
MAX_ITERATIONS = 2000
#: smallest field scale (concentration units): a field decayed to ~1e-300 (cytokine once no CAR-T
#: is active) is converged when its changes are below 1e-15, not below its own denormal size
SCALE_FLOOR = 1e-12
#: SOR factor of the coarsest multigrid grid (and of lattices that cannot be coarsened)
OVER_RELAXATION = 1.8


@njit(cache=True)
def cell_field_terms(cells, fields, oxygen_uptake_by_type, chemokine_secretion,
                     suppression_secretion, suppression_induction, cytokine_secretion, uptake,
                     source):
    """Fill ``uptake`` (N_FIELDS, n_sites; 1/min) and ``source`` (N_FIELDS, n_sites; a.u./min)
    from the cells on each site: oxygen uptake by cell type, chemokine and suppressive factor
    from cancer cells (the latter raised by ``1 + suppression_induction * cytokine``), cytokine
    from activated CAR-T."""
    for site in range(cells.shape[0]):
        cell = cells[site].cell_type
        uptake[F_OXYGEN, site] = oxygen_uptake_by_type[cell]
        if cell == CANCER:
            source[F_CHEMOKINE, site] = chemokine_secretion
            source[F_SUPPRESSION, site] = suppression_secretion * (
                1.0 + suppression_induction * fields[F_CYTOKINE, site])
        else:
            source[F_CHEMOKINE, site] = 0.0
            source[F_SUPPRESSION, site] = 0.0
        if cell == CAR_T and cells[site].activation > 0:
            source[F_CYTOKINE, site] = cytokine_secretion
        else:
            source[F_CYTOKINE, site] = 0.0


class Microenvironment:
    """The enabled fields of one run, their sources and sinks, and their update clock."""

    def __init__(self, cfg: ScenarioConfig, lattice: Lattice) -> None:
        env = cfg.microenvironment
        self.interval_min = env.update_interval_min
        self.configs: dict[int, FieldConfig] = {
            F_OXYGEN: env.oxygen, F_CHEMOKINE: env.chemokine,
            F_SUPPRESSION: env.suppression, F_CYTOKINE: env.cytokine,
        }
        self.enabled = [index for index, field in self.configs.items() if field.enabled]
        oxygen = env.oxygen
        self.oxygen_uptake_by_type = np.zeros(N_CELL_TYPES)
        self.oxygen_uptake_by_type[CANCER] = oxygen.cancer_uptake_per_min
        self.oxygen_uptake_by_type[NORMAL] = oxygen.normal_uptake_per_min
        self.oxygen_uptake_by_type[CAR_T] = oxygen.car_t_uptake_per_min
        self.edge_value = np.zeros(N_FIELDS)
        self.edge_value[F_OXYGEN] = -1.0 if oxygen.edge_mmhg is None else oxygen.edge_mmhg
        self.vessels = (lattice.tissue == TISSUE_VESSEL).astype(np.uint8)
        self.no_fixed = np.zeros(lattice.n_sites, dtype=np.uint8)
        self.uptake = np.zeros((N_FIELDS, lattice.n_sites))
        self.source = np.zeros((N_FIELDS, lattice.n_sites))
        self.next_update_min = 0.0
        self.cytokine_scale = (env.cytokine.secretion_per_activated_car_t_per_min
                               / max(env.cytokine.decay_per_min, 1e-300))
        # an IL-12-armoured product secretes more per activated cell (the index's scale stays
        # the unarmoured product's, so the CRS index rises with the armour)
        il12 = cfg.car_t.armour.il12
        self.cytokine_secretion = env.cytokine.secretion_per_activated_car_t_per_min * (
            1.0 if il12 is None else il12.cytokine_secretion_factor)
        self._cfg = cfg

    def _terms(self, lattice: Lattice) -> None:
        env = self._cfg.microenvironment
        cell_field_terms(lattice.cells, lattice.fields, self.oxygen_uptake_by_type,
                         env.chemokine.secretion_per_cancer_cell_per_min,
                         env.suppression.secretion_per_cancer_cell_per_min,
                         env.suppression.cytokine_induction,
                         self.cytokine_secretion, self.uptake, self.source)

    def field_scale(self, lattice: Lattice, index: int) -> float:
        """The concentration the solver's tolerance is relative to.

        Oxygen: vessel pO2 (or normoxia, if higher), in mmHg. The others: their present
        maximum; while a field is still zero everywhere (t = 0, or cytokine before the first
        activation), the highest level its sources can hold, max(source) / (decay + 8 D / L^2)
        with L the lattice's largest extent (um; 8 D / L^2: the loss of a slab drained at both
        ends). Relative to zero, no tolerance could be met. Never below ``SCALE_FLOOR``.
        """
        if index == F_OXYGEN:
            return max(self._cfg.microenvironment.oxygen.vessel_mmhg, NORMOXIA_MMHG)
        present = float(np.max(lattice.fields[index]))
        if present == 0.0:
            field = self.configs[index]
            extent_um = max(lattice.shape) * lattice.spacing_um
            loss_per_min = (field.decay_per_min
                            + 8.0 * field.diffusion_um2_per_min / extent_um ** 2)
            present = float(np.max(self.source[index])) / loss_per_min
        return max(present, SCALE_FLOOR)

    def solve(self, lattice: Lattice, dt_min: float,
              relative_tolerance: float = RELATIVE_TOLERANCE, threads: int = 1) -> None:
        """Re-solve every enabled field from the cells now, over ``dt_min`` minutes of backward
        Euler (``math.inf``: steady state; oxygen is always quasi-steady), to
        ``relative_tolerance`` times ``field_scale`` (``STEADY_STATE_RELATIVE_TOLERANCE`` for a
        field still zero everywhere). Warns (RuntimeWarning) when a field stops at
        ``MAX_ITERATIONS`` before that.

        The fields are independent within one update (their sources were fixed above), so with
        ``threads`` > 1 they are solved side by side (the solver releases the GIL); each solve
        is the same sequential computation either way, so the fields do not depend on it.
        """
        self._terms(lattice)
        relative = {index: self._relative_tolerance(lattice, index, relative_tolerance)
                    for index in self.enabled}
        solves = [self._solve_arguments(lattice, index, dt_min, relative[index])
                  for index in self.enabled]
        if threads > 1 and len(solves) > 1:
            with ThreadPoolExecutor(min(threads, len(solves))) as pool:
                iterations = list(pool.map(lambda arguments: solve_field(*arguments), solves))
        else:
            iterations = [solve_field(*arguments) for arguments in solves]
        for index, used in zip(self.enabled, iterations):
            if used >= MAX_ITERATIONS:  # one text per field and tolerance: shown once
                warnings.warn(f"field {FIELD_NAMES[index]!r} not converged to its tolerance "
                              f"({relative[index]:g} x its scale) in {MAX_ITERATIONS} "
                              "iterations", RuntimeWarning, stacklevel=2)

    @staticmethod
    def _relative_tolerance(lattice: Lattice, index: int, relative_tolerance: float) -> float:
        """Field ``index``'s tolerance relative to its scale: ``relative_tolerance``, or the
        strict ``STEADY_STATE_RELATIVE_TOLERANCE`` while it is still zero (its first solve)."""
        from_zero = not lattice.fields[index].any()
        return STEADY_STATE_RELATIVE_TOLERANCE if from_zero else relative_tolerance

    def _solve_arguments(self, lattice: Lattice, index: int, dt_min: float,
                         relative: float) -> tuple:
        """The arguments of ``solve_field`` for field ``index``, to ``relative`` times its
        scale (``field_scale``, from the field as it is now)."""
        field = self.configs[index]
        oxygen = self._cfg.microenvironment.oxygen
        is_oxygen = index == F_OXYGEN
        return (lattice.fields[index], lattice.shape, lattice.spacing_um,
                field.diffusion_um2_per_min, field.decay_per_min, self.uptake[index],
                self.source[index], self.vessels if is_oxygen else self.no_fixed,
                oxygen.vessel_mmhg if is_oxygen else 0.0, self.edge_value[index],
                math.inf if is_oxygen else dt_min,
                relative * self.field_scale(lattice, index), MAX_ITERATIONS, OVER_RELAXATION)

    def initialise(self, lattice: Lattice, threads: int = 1) -> None:
        """Fields at t = 0: the steady state of the initial cells (a tumour that has been there
        for a while); the cytokine starts at zero because no CAR-T is activated yet."""
        if self.enabled:
            self.solve(lattice, math.inf, STEADY_STATE_RELATIVE_TOLERANCE, threads)
        self.next_update_min = self.interval_min

    def update_due(self, lattice: Lattice, time_min: float, threads: int = 1) -> bool:
        """Re-solve the fields if ``time_min`` reached the next update time; True if it did."""
        if not self.enabled or time_min < self.next_update_min - 1e-9:
            return False
        self.solve(lattice, self.interval_min, threads=threads)
        self.next_update_min += self.interval_min
        return True

    def crs_index(self, lattice: Lattice) -> float:
        """Cytokine on the lattice in units of one activated CAR-T's steady-state output.

        ``total / (secretion / decay)``: how many CAR-T, activated for long enough, would hold
        this much cytokine. IL-6 rate constants are not published (docs/parameters.md), so the index
        is read for timing and relative size, not as a concentration.
        """
        if F_CYTOKINE not in self.enabled:
            return 0.0
        area_um2 = lattice.spacing_um ** (2 if lattice.shape[0] == 1 else 3)
        total = field_total(lattice.fields[F_CYTOKINE], lattice.spacing_um, lattice.shape[0])
        return float(total / area_um2 / self.cytokine_scale)

