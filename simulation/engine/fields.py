"""Diffusing chemical fields (oxygen, chemokines) on the lattice: a numba reaction-diffusion solver.

One field holds one concentration per lattice site, a flat float64 array indexed like the cells
(site ``s = x + nx * (y + ny * z)``, ``nz == 1`` in 2D). Per site it obeys

    dc/dt = D * laplacian(c) - (decay + uptake[s]) * c + source[s]

with the 5-point (2D) or 7-point (3D) Laplacian on the square lattice of spacing h. An axis of
length 1 is not a spatial dimension: it contributes no neighbours (so ``shape = (1, 1, nx)`` is a
1-D problem). Sites with ``fixed[s]`` set (blood vessels) are held at ``fixed_value``. Beyond the
lattice edge the field is held at ``edge_value`` (ghost sites one spacing outside the edge) when
``edge_value >= 0``, and no flux crosses the edge when ``edge_value < 0`` (a closed dish).

Time stepping is backward Euler over ``dt_min`` (stable at any step); ``dt_min = math.inf`` asks
for the quasi-steady state (the time derivative dropped), meant for oxygen, whose diffusion time
over 100 um (~0.1 min) is far below the model time step. Either way one linear system is solved by
red-black Gauss-Seidel with over-relaxation (SOR), warm-started from the current field. A site's
5/7-point neighbours all have the other colour, so within one colour every update reads only
values that colour does not write: the rows run in parallel (``prange``) and the result is
bit-identical for any number of threads (reductions go through per-row partial results). A
uniform correction of the free sites (``_balance``) keeps the step's global mass balance exact.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# Over-relaxation factor for SOR. The best factor is 2 / (1 + sqrt(1 - rho^2)), rho the Jacobi
# spectral radius; measured on 200x200 lattices of 15 um sites: oxygen (D = 1e5 um^2/min, uptake
# 10/min on half the sites, quasi-steady) needs 106 iterations at 1.85, 114 at 1.8, 164 at 1.9;
# a chemokine (D = 1e3 um^2/min, 6 min steps) 59 at 1.8, 75 at 1.85, 64 at 1.7.
DEFAULT_OVER_RELAXATION = 1.8


@njit(cache=True, parallel=True)
def solve_field(c, shape, spacing_um, diffusion_um2_per_min, decay_per_min, uptake_per_min,
                source_per_min, fixed, fixed_value, edge_value, dt_min, tolerance, max_iterations,
                over_relaxation):
    """Advance field ``c`` by one backward-Euler step of ``dt_min``, in place; return iterations.

    c: (n_sites,) float64 concentration (any unit, "conc"), c_old on entry and c_new on exit.
    shape: (nz, ny, nx) ints, nz == 1 in 2D. spacing_um: site spacing (um).
    diffusion_um2_per_min: D (um^2/min). decay_per_min: uniform first-order decay (1/min).
    uptake_per_min: (n_sites,) float64 first-order consumption rate per site (1/min, >= 0).
    source_per_min: (n_sites,) float64 production per site (conc/min).
    fixed: (n_sites,) uint8, nonzero where c is held at fixed_value (conc).
    edge_value: conc held outside the lattice edge, or < 0 for a zero-flux edge.
    dt_min: time step (min) > 0; math.inf solves for the quasi-steady state.
    tolerance: stop once no site changes by more than this in one iteration (conc). The error
        left is about tolerance / (1 - rate), rate the per-iteration contraction: measured 7x
        the tolerance for oxygen (quasi-steady, D = 1e5 um^2/min, uptake 10/min, h = 15 um),
        1x for a chemokine stepped by dt = 6 min (D = 1e3), 25-100x when D dt / h^2 > 100 with
        little decay; ask for 10-100x less than the accuracy you need.
    max_iterations: cap on iterations (one iteration updates both colours); reaching it means
        the tolerance was not met. over_relaxation: SOR factor in (0, 2), 1 is Gauss-Seidel.

    Whenever the largest change has fallen tenfold, and before returning, all free sites are
    shifted by one common amount that makes the residuals sum to zero (``_balance``), so the
    step's global balance (change of the total = production - losses + flux in from held sites
    and edges) holds to round-off whatever the tolerance.

    A quasi-steady solve with zero-flux edges, no fixed site and no decay or uptake has no unique
    solution (only the source balance); the iteration then drifts instead of converging.
    """
    nz, ny, nx = shape
    n_sites = nz * ny * nx
    if (c.shape[0] != n_sites or uptake_per_min.shape[0] != n_sites
            or source_per_min.shape[0] != n_sites or fixed.shape[0] != n_sites):
        raise ValueError("solve_field: c, uptake, source and fixed must have nz*ny*nx sites")
    if not dt_min > 0.0:
        raise ValueError("solve_field: dt_min must be > 0 (math.inf for the quasi-steady state)")
    if not (0.0 < over_relaxation < 2.0):
        raise ValueError("solve_field: over_relaxation must lie in (0, 2)")
    if diffusion_um2_per_min < 0.0 or decay_per_min < 0.0 or np.min(uptake_per_min) < 0.0:
        raise ValueError("solve_field: diffusion, decay and uptake must be >= 0")

    inv_dt_per_min = 1.0 / dt_min  # 0.0 for dt_min = inf: the quasi-steady state
    loss_per_min = inv_dt_per_min + decay_per_min
    coupling_per_min = diffusion_um2_per_min / spacing_um ** 2
    # right-hand side of the per-site equation: c_old / dt + source (conc/min)
    known_per_min = np.empty(n_sites)
    for s in prange(n_sites):
        if fixed[s]:
            c[s] = fixed_value
        known_per_min[s] = source_per_min[s] + inv_dt_per_min * c[s]

    n_rows = ny * nz
    largest_change_in_row = np.zeros(n_rows)
    residual_in_row = np.zeros(n_rows)
    stiffness_in_row = np.zeros(n_rows)
    change_at_last_balance = math.inf  # conc
    for iteration in range(1, max_iterations + 1):
        largest_change_in_row[:] = 0.0
        for colour in range(2):
            _relax_colour(c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min,
                          fixed, edge_value, colour, over_relaxation, largest_change_in_row)
        largest_change = largest_change_in_row.max()
        if largest_change < tolerance or largest_change < 0.1 * change_at_last_balance:
            shift = _balance(c, known_per_min, shape, coupling_per_min, loss_per_min,
                             uptake_per_min, fixed, edge_value, residual_in_row, stiffness_in_row)
            change_at_last_balance = largest_change
            if largest_change < tolerance and abs(shift) < tolerance:
                return iteration
    _balance(c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min, fixed,
             edge_value, residual_in_row, stiffness_in_row)
    return max_iterations


@njit(cache=True, inline="always")
def _row_geometry(row, shape, edge_is_held):
    """Neighbours of row ``row = y + ny * z`` along y and z (an axis of length 1 has none).

    Returns (y, z, below_y, above_y, below_z, above_z, n_ghosts): whether the row has a lattice
    row below/above it in y and z, and how many of its y/z neighbours are held edge ghosts.
    """
    nz, ny, nx = shape
    y = row % ny
    z = row // ny
    below_y = y > 0
    above_y = y < ny - 1
    below_z = z > 0
    above_z = z < nz - 1
    n_ghosts = 0
    if edge_is_held:
        n_inside = int(below_y) + int(above_y) + int(below_z) + int(above_z)
        n_ghosts = 2 * (int(ny > 1) + int(nz > 1)) - n_inside
    return y, z, below_y, above_y, below_z, above_z, n_ghosts


@njit(cache=True, inline="always")
def _neighbour_sum(values, s, x, nx, layer, below_y, above_y, below_z, above_z, n_ghosts_yz,
                   edge_is_held, ghost_value):
    """(sum of ``values`` over the neighbours of site ``s``, number of neighbours).

    Held edge ghosts count as neighbours of value ``ghost_value``; ``x`` is the column of ``s``,
    ``layer = nx * ny``, the y/z flags and ghost count come from ``_row_geometry``.
    """
    total = n_ghosts_yz * ghost_value
    n_neighbours = n_ghosts_yz
    if below_y:
        total += values[s - nx]
        n_neighbours += 1
    if above_y:
        total += values[s + nx]
        n_neighbours += 1
    if below_z:
        total += values[s - layer]
        n_neighbours += 1
    if above_z:
        total += values[s + layer]
        n_neighbours += 1
    if nx > 1:
        if x > 0:
            total += values[s - 1]
            n_neighbours += 1
        elif edge_is_held:
            total += ghost_value
            n_neighbours += 1
        if x < nx - 1:
            total += values[s + 1]
            n_neighbours += 1
        elif edge_is_held:
            total += ghost_value
            n_neighbours += 1
    return total, n_neighbours


@njit(cache=True, parallel=True)
def _relax_colour(c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min, fixed,
                  edge_value, colour, over_relaxation, largest_change_in_row):
    """One SOR pass over the sites with ``(x + y + z) % 2 == colour``, rows in parallel.

    Solves site by site  (loss + uptake[s] + coupling * n) c[s] = known[s] + coupling * sum(c_nb),
    n the number of neighbours (ghost sites included). coupling_per_min: D / h^2 (1/min);
    loss_per_min: 1/dt + decay (1/min). Raises largest_change_in_row[row] to the largest |change|
    of this pass in that row (conc); row = y + ny * z.
    """
    nz, ny, nx = shape
    edge_is_held = edge_value >= 0.0
    for row in prange(ny * nz):
        y, z, below_y, above_y, below_z, above_z, n_ghosts = _row_geometry(row, shape,
                                                                            edge_is_held)
        largest_change = largest_change_in_row[row]
        for x in range((y + z + colour) % 2, nx, 2):
            s = x + nx * row
            if fixed[s]:
                continue
            neighbour_sum, n_neighbours = _neighbour_sum(
                c, s, x, nx, nx * ny, below_y, above_y, below_z, above_z, n_ghosts, edge_is_held,
                edge_value)
            diagonal = loss_per_min + uptake_per_min[s] + coupling_per_min * n_neighbours
            if diagonal <= 0.0:
                continue  # an isolated site with no loss: any value solves its equation
            solved = (known_per_min[s] + coupling_per_min * neighbour_sum) / diagonal
            change = over_relaxation * (solved - c[s])
            c[s] += change
            largest_change = max(largest_change, abs(change))
        largest_change_in_row[row] = largest_change


@njit(cache=True, parallel=True)
def _balance(c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min, fixed,
             edge_value, residual_in_row, stiffness_in_row):
    """Shift every free site by one amount so that the residuals of the system sum to zero.

    A zero residual sum is the step's global balance: the change of the total equals the
    production minus the losses and the flux into held sites and edges, over dt. This is the
    Galerkin correction along the constant vector (it never increases the error in the energy
    norm), and it fixes the slowest mode of a closed dish (its mean), which SOR alone corrects
    only at a rate ~ (1/dt + decay) / (D / h^2) per iteration. Arguments as ``_relax_colour``;
    the row arrays are scratch. Returns the shift (conc), 0 when the system is singular.
    """
    nz, ny, nx = shape
    edge_is_held = edge_value >= 0.0
    for row in prange(ny * nz):
        y, z, below_y, above_y, below_z, above_z, n_ghosts = _row_geometry(row, shape,
                                                                            edge_is_held)
        residual = 0.0  # conc/min
        stiffness = 0.0  # 1/min: the row's part of 1_free . A 1_free
        for x in range(nx):
            s = x + nx * row
            if fixed[s]:
                continue
            neighbour_sum, n_neighbours = _neighbour_sum(
                c, s, x, nx, nx * ny, below_y, above_y, below_z, above_z, n_ghosts, edge_is_held,
                edge_value)
            held_neighbours, _ = _neighbour_sum(
                fixed, s, x, nx, nx * ny, below_y, above_y, below_z, above_z, n_ghosts,
                edge_is_held, 1.0)
            sink_per_min = loss_per_min + uptake_per_min[s]
            residual += (known_per_min[s] + coupling_per_min * neighbour_sum
                         - (sink_per_min + coupling_per_min * n_neighbours) * c[s])
            stiffness += sink_per_min + coupling_per_min * held_neighbours
        residual_in_row[row] = residual
        stiffness_in_row[row] = stiffness
    stiffness_total = _sum_in_order(stiffness_in_row)
    if stiffness_total <= 0.0:
        return 0.0
    shift = _sum_in_order(residual_in_row) / stiffness_total
    for s in prange(c.shape[0]):
        if not fixed[s]:
            c[s] += shift
    return shift


@njit(cache=True)
def _sum_in_order(values):
    """Sum of ``values`` added first to last, so the same for any number of threads.

    (In a ``parallel=True`` function numba splits ``values.sum()`` among the threads.)
    """
    total = 0.0
    for value in values:
        total += value
    return total


@njit(cache=True)
def field_total(c, spacing_um, nz):
    """Amount of substance in field ``c``: sum(c) times the site area (2D) or volume (3D).

    c: (n_sites,) concentration per um^2 (2D, nz == 1) or per um^3 (3D); spacing_um: um.
    Returns the amount (conc * um^2 in 2D, conc * um^3 in 3D).
    """
    site_measure = spacing_um ** 2 if nz == 1 else spacing_um ** 3
    return c.sum() * site_measure
