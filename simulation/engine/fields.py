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
over 100 um (~0.1 min) is far below the model time step. Either way one linear system is solved,
warm-started from the current field, by geometric multigrid: V-cycles of red-black Gauss-Seidel
smoothing, the residual averaged onto 2x-coarser grids down to a few sites per side, and each
coarse correction interpolated back (bi/trilinearly). One V-cycle cuts the error ~10-fold
whatever the lattice size, where plain red-black SOR needed tens of sweeps per hourly update on
the shipped scenarios (docs/performance.md). A lattice with an odd side cannot be coarsened
evenly: it is solved by red-black SOR. A sweep follows the red sites with the black ones a row
(3D: a layer) behind, in one pass over memory; every site sees the values of the textbook
two-pass sweep, so the result does not depend on the number of threads. A uniform correction
of the free sites (``_balance``) keeps the step's global mass balance exact.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Over-relaxation factor for SOR (the coarsest multigrid grid, and lattices that cannot be
# coarsened). The best factor is 2 / (1 + sqrt(1 - rho^2)), rho the Jacobi
# spectral radius; measured on 200x200 lattices of 15 um sites: oxygen (D = 1e5 um^2/min, uptake
# 10/min on half the sites, quasi-steady) needs 106 iterations at 1.85, 114 at 1.8, 164 at 1.9;
# a chemokine (D = 1e3 um^2/min, 6 min steps) 59 at 1.8, 75 at 1.85, 64 at 1.7.
DEFAULT_OVER_RELAXATION = 1.8


@njit(cache=True, nogil=True)
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
    tolerance: the accuracy wanted (conc). Stop once ``ERROR_PER_CHANGE`` times the largest
        change of the last V-cycle is below it (the error left after a cycle measured at most
        0.16 of that change on the shipped fields). Without coarse grids (an odd side): stop
        once no site changes by more than this in one SOR sweep, which leaves an error of
        about tolerance / (1 - rate), rate the per-sweep contraction (7-100x the tolerance).
    max_iterations: cap on V-cycles (SOR sweeps without coarse grids); reaching it means the
        tolerance was not met. over_relaxation: SOR factor in (0, 2) for the coarsest grid
        (or the only one); the multigrid smoothing itself is Gauss-Seidel.

    Before returning, and without coarse grids whenever the largest change has fallen tenfold,
    all free sites are shifted by one common amount that makes the residuals sum to zero
    (``_balance``), so the step's global balance (change of the total = production - losses +
    flux in from held sites and edges) holds to round-off whatever the tolerance.

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
    if diffusion_um2_per_min < 0.0 or decay_per_min < 0.0 or _any_below(uptake_per_min, 0.0):
        raise ValueError("solve_field: diffusion, decay and uptake must be >= 0")

    inv_dt_per_min = 1.0 / dt_min  # 0.0 for dt_min = inf: the quasi-steady state
    loss_per_min = inv_dt_per_min + decay_per_min
    coupling_per_min = diffusion_um2_per_min / spacing_um ** 2
    # right-hand side of the per-site equation: c_old / dt + source (conc/min)
    known_per_min = np.empty(n_sites)
    for s in range(n_sites):
        if fixed[s]:
            c[s] = fixed_value
        known_per_min[s] = source_per_min[s] + inv_dt_per_min * c[s]

    hierarchy = _coarse_levels(shape, coupling_per_min, loss_per_min, uptake_per_min, fixed,
                               edge_value)
    # error left per unit of a cycle's largest change (one SOR sweep when there is no coarse grid)
    multigrid = hierarchy[0].shape[0] > 1
    error_per_change = ERROR_PER_CHANGE if multigrid else 1.0
    row_buffer, (has_uptake, has_fixed, _, _), _, stiffness_per_min = hierarchy[7:]
    change_at_last_balance = math.inf  # conc
    for iteration in range(1, max_iterations + 1):
        largest_change = _v_cycle(c, known_per_min, shape, coupling_per_min, loss_per_min,
                                  uptake_per_min, fixed, edge_value, over_relaxation, hierarchy)
        converged = error_per_change * largest_change < tolerance
        if converged or (not multigrid and largest_change < 0.1 * change_at_last_balance):
            shift = _balance(c, known_per_min, shape, coupling_per_min, loss_per_min,
                             uptake_per_min, fixed, edge_value, has_uptake, has_fixed,
                             stiffness_per_min, row_buffer)
            change_at_last_balance = largest_change
            if converged and abs(shift) < tolerance:
                return iteration
    _balance(c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min, fixed,
             edge_value, has_uptake, has_fixed, stiffness_per_min, row_buffer)
    return max_iterations


#: edge value meaning no flux across the edge (coarse grids: held edges are sinks instead)
ZERO_FLUX = -1.0
#: multigrid: coarsen by 2 along every axis longer than 1 until no axis is longer than this
COARSEST_SIDE = 4
#: red-black sweeps before and after the coarse-grid correction, and on the coarsest grid
PRE_SWEEPS = 1
POST_SWEEPS = 1
COARSEST_SWEEPS = 8
COARSEST_MAX_ROUNDS = 50
COARSEST_REDUCTION = 1e-2
#: largest error left after a V-cycle per unit of the cycle's largest change: measured 0.06-0.16
#: on the four fields of gbm_solid (hourly updates, 512^2, against a solve to 1e-7 of the scale)
ERROR_PER_CHANGE = 0.25
#: relaxation factor of the smoothing sweeps (Gauss-Seidel: SOR smooths worse)
SMOOTHING_RELAXATION = 1.0


@njit(cache=True)
def _coarse_side(n):
    """Sites along an axis of ``n`` sites after one coarsening (an axis of 1 stays 1)."""
    return (n + 1) // 2 if n > 1 else 1


@njit(cache=True)
def _halves_evenly(sides):
    """True if every axis longer than 1 has an even number of sites (each coarse site then
    covers a full 2 x 2 (x 2) block; half blocks at an odd edge would upset the coarse
    operator)."""
    for n in sides:
        if n > 1 and n % 2 == 1:
            return False
    return True


@njit(cache=True)
def _any_above(values, threshold):
    """True if any of ``values`` exceeds ``threshold``. A loop without an early exit, which
    LLVM vectorises: as fast as numpy's ``max`` here, and unlike it cheap to compile (each of
    numpy's reductions costs ~0.2 s of a machine's first run)."""
    found = False
    for value in values:
        found |= value > threshold
    return found


@njit(cache=True)
def _largest_magnitude(values):
    """The largest ``abs`` of ``values`` (``max(values.max(), -values.min())``, NaN if one
    is), in one loop: numpy's two reductions cost ~0.6 s of a machine's first run."""
    largest = 0.0
    for value in values:
        size = abs(value)
        if size != size:
            return size
        if size > largest:
            largest = size
    return largest


@njit(cache=True)
def _any_below(values, threshold):
    """True if any of ``values`` lies below ``threshold`` (as ``_any_above``)."""
    found = False
    for value in values:
        found |= value < threshold
    return found


@njit(cache=True)
def _coarse_levels(shape, coupling_per_min, loss_per_min, uptake_per_min, fixed, edge_value):
    """The coarse grids of the multigrid cycle, each halving every axis longer than 1.

    Coarsening stops at ``COARSEST_SIDE`` or at the first odd axis. A coarse site stands for the
    2 x 2 (x 2) block of sites below it, with the same stencil on twice the spacing (coupling
    / 4, rediscretised) and the block's mean sink: a free site's uptake plus ``coupling`` per
    held neighbour (a held site pins the error to 0, which drains its neighbours like an
    uptake of one coupling per link). Coarse grids have zero-flux edges and no held sites; a
    held lattice edge becomes a sink of their edge sites (``_add_edge_sinks``).

    Returns (level shapes (n_levels, 3), coupling per level (1/min), start of each coarse
    level in the flat arrays, sink (1/min), error, right-hand side (flat, levels 1..), an
    all-free ``fixed`` for coarse grids, a row of scratch, whether the fine grid has any
    uptake and any held site and the coarse grids any sink and any held site, the sweep
    counts (pre, post, coarsest, 1), the fine grid's ``_drain``). Level 0 is the fine
    grid itself.
    """
    nz, ny, nx = shape
    n_levels = 1
    sides = np.array([nz, ny, nx])
    while max(sides[0], sides[1], sides[2]) > COARSEST_SIDE and _halves_evenly(sides):
        sides = np.array([_coarse_side(sides[0]), _coarse_side(sides[1]), _coarse_side(sides[2])])
        n_levels += 1
    shapes = np.empty((n_levels, 3), dtype=np.int64)
    # element by element: a row assigned from a tuple compiles numpy's shape-mismatch error
    # path, strings included (~3 s of a cold start)
    shapes[0, 0] = nz
    shapes[0, 1] = ny
    shapes[0, 2] = nx
    couplings = np.empty(n_levels)
    couplings[0] = coupling_per_min
    starts = np.zeros(n_levels + 1, dtype=np.int64)
    for level in range(1, n_levels):
        for axis in range(3):
            shapes[level, axis] = _coarse_side(shapes[level - 1, axis])
        couplings[level] = couplings[level - 1] / 4.0
        starts[level + 1] = (starts[level]
                             + shapes[level, 0] * shapes[level, 1] * shapes[level, 2])
    n_coarse = starts[n_levels]
    sink = np.zeros(n_coarse)
    row_buffer = np.zeros(nx)
    has_uptake = _any_above(uptake_per_min, 0.0)
    has_fixed = _any_above(fixed, 0)
    level_1 = sink[starts[1]:starts[2]] if n_levels > 1 else np.zeros(0)
    stiffness_per_min = _drain(uptake_per_min, fixed, shape, coupling_per_min, loss_per_min,
                               edge_value, has_uptake, has_fixed, level_1,
                               _shape_of(shapes, min(1, n_levels - 1)))
    for level in range(2, n_levels):
        _restrict(sink[starts[level - 1]:starts[level]], _shape_of(shapes, level - 1),
                  sink[starts[level]:starts[level + 1]], _shape_of(shapes, level))
    if edge_value >= 0.0:
        for level in range(1, n_levels):
            _add_edge_sinks(sink[starts[level]:starts[level + 1]], _shape_of(shapes, level),
                            level, coupling_per_min)
    no_fixed = np.zeros(max(n_coarse, 1), dtype=np.uint8)
    # flags and counts as values computed here: numba compiles a callee once per distinct
    # literal argument, so constants passed directly would multiply the compile time
    flags = (has_uptake, has_fixed, _any_above(sink, 0.0), _any_above(no_fixed, 0))
    sweeps = np.array([PRE_SWEEPS, POST_SWEEPS, COARSEST_SWEEPS, 1])
    return (shapes, couplings, starts, sink, np.zeros(n_coarse), np.zeros(n_coarse), no_fixed,
            row_buffer, flags, sweeps, stiffness_per_min)


@njit(cache=True)
def _drain(uptake_per_min, fixed, shape, coupling_per_min, loss_per_min, edge_value, has_uptake,
           has_fixed, coarse_sink, coarse_shape):
    """What the free sites drain from a unit field: returns the sum over free sites of loss +
    uptake + coupling per held neighbour or held edge ghost (1/min), by which a uniform shift
    of the free sites changes the residual sum (``_balance``), and fills ``coarse_sink``
    (empty: no coarse grid) with the block means of uptake + coupling per held neighbour
    (free sites; held sites count 0; ``_coarse_levels``). Held sites are visited once each to
    count their links, so the cost is one pass over ``uptake``, ``fixed`` and ``coarse_sink``.
    """
    nz, ny, nx = shape
    cz, cy, cx = coarse_shape
    n_sites = nz * ny * nx
    coarsen = coarse_sink.shape[0] > 0
    block = (2 if nz > 1 else 1) * (2 if ny > 1 else 1) * (2 if nx > 1 else 1)
    ghost_links = 0  # held edge ghosts next to free sites
    if edge_value >= 0.0:
        for n in (nz, ny, nx):
            if n > 1:
                ghost_links += 2 * (n_sites // n)
    total = n_sites * loss_per_min
    if coarsen:
        coarse_sink[:] = 0.0
    if has_uptake:
        for row in range(ny * nz):
            coarse_row = _parent(nx * row, shape, coarse_shape)
            for x in range(nx):
                s = x + nx * row
                if has_fixed and fixed[s]:
                    continue
                total += uptake_per_min[s]
                if coarsen:
                    coarse_sink[coarse_row + (x // 2 if nx > 1 else 0)] += (uptake_per_min[s]
                                                                            / block)
    if has_fixed:
        layer = nx * ny
        for s in range(n_sites):
            if not fixed[s]:
                continue
            total -= loss_per_min
            x = s % nx
            y = (s // nx) % ny
            z = s // layer
            for axis_length, position, stride in ((nx, x, 1), (ny, y, nx), (nz, z, layer)):
                if axis_length == 1:
                    continue
                for direction in (-1, 1):
                    if not 0 <= position + direction < axis_length:
                        if edge_value >= 0.0:
                            ghost_links -= 1  # this ghost borders a held site, not a free one
                        continue
                    j = s + direction * stride
                    if fixed[j]:
                        continue
                    total += coupling_per_min
                    if coarsen:
                        coarse_sink[_parent(j, shape, coarse_shape)] += coupling_per_min / block
    return total + coupling_per_min * ghost_links


@njit(cache=True, inline="always")
def _parent(s, shape, coarse_shape):
    """The coarse site whose 2 x 2 (x 2) block holds fine site ``s``."""
    nz, ny, nx = shape
    cz, cy, cx = coarse_shape
    x = s % nx
    y = (s // nx) % ny
    z = s // (nx * ny)
    return ((x // 2 if nx > 1 else 0) + cx * ((y // 2 if ny > 1 else 0)
                                              + cy * (z // 2 if nz > 1 else 0)))


@njit(cache=True)
def _add_edge_sinks(sink, shape, level, coupling_per_min):
    """Add to the sink of every edge site of coarse level ``level`` what a held edge drains.

    The error is 0 one fine spacing h beyond the fine edge, so (2^level + 1) / 2 fine spacings
    from a coarse edge centre: the flux D e / distance through the site's face (2^level h wide),
    per site of (2^level h)^2, is e * coupling / ((2^level + 1) / 2 * 2^level) per face.
    """
    nz, ny, nx = shape
    per_face = coupling_per_min / ((2.0 ** level + 1.0) / 2.0 * 2.0 ** level)
    for row in range(ny * nz):
        y, z, below_y, above_y, below_z, above_z, n_ghosts = _row_geometry(row, shape, True)
        for x in range(nx):
            n_faces = n_ghosts + int(nx > 1) * (int(x == 0) + int(x == nx - 1))
            sink[x + nx * row] += per_face * n_faces


@njit(cache=True, inline="always")
def _shape_of(shapes, level):
    """Row ``level`` of the level shapes as a (nz, ny, nx) tuple."""
    return (shapes[level, 0], shapes[level, 1], shapes[level, 2])


@njit(cache=True)
def _v_cycle(c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min, fixed,
             edge_value, over_relaxation, hierarchy):
    """One multigrid V-cycle on the fine field ``c``; returns a bound on its largest change.

    Red-black smoothing on each grid, the residual averaged onto the next coarser grid (the
    coarse error equation starts from zero), the coarsest grid solved by SOR rounds
    (``_solve_coarsest``), each correction interpolated back onto the free sites of the finer
    grid (``_prolong_add``) and smoothed again. Without a coarse grid: one SOR sweep. The bound
    adds the largest change of every fine sweep and of the fine correction (conc).
    """
    (shapes, couplings, starts, sink, error, rhs, no_fixed, row_buffer, flags, sweeps,
     _) = hierarchy
    has_uptake, has_fixed, coarse_has_sink, coarse_has_fixed = flags
    pre_sweeps, post_sweeps, coarsest_sweeps, one_sweep = sweeps
    smoothing = SMOOTHING_RELAXATION
    n_levels = shapes.shape[0]
    if n_levels == 1:  # no coarse grid: one plain SOR sweep
        return _smooth(c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min,
                       fixed, edge_value, over_relaxation, one_sweep, has_uptake, has_fixed)
    change = _smooth(c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min,
                     fixed, edge_value, smoothing, pre_sweeps, has_uptake, has_fixed)
    _restrict_residual(c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min,
                       fixed, edge_value, has_uptake, has_fixed, rhs[starts[1]:starts[2]],
                       _shape_of(shapes, 1), row_buffer)
    for level in range(1, n_levels):
        lo, hi = starts[level], starts[level + 1]
        level_shape = _shape_of(shapes, level)
        error[lo:hi] = 0.0
        if level == n_levels - 1:
            _solve_coarsest(error[lo:hi], rhs[lo:hi], level_shape, couplings[level],
                            loss_per_min, sink[lo:hi], no_fixed[:hi - lo], ZERO_FLUX,
                            over_relaxation, row_buffer, coarsest_sweeps, coarse_has_sink,
                            coarse_has_fixed)
        else:
            _smooth(error[lo:hi], rhs[lo:hi], level_shape, couplings[level], loss_per_min,
                    sink[lo:hi], no_fixed[:hi - lo], ZERO_FLUX, smoothing, pre_sweeps,
                    coarse_has_sink, coarse_has_fixed)
            _restrict_residual(error[lo:hi], rhs[lo:hi], level_shape, couplings[level],
                               loss_per_min, sink[lo:hi], no_fixed[:hi - lo], ZERO_FLUX,
                               coarse_has_sink, coarse_has_fixed, rhs[hi:starts[level + 2]],
                               _shape_of(shapes, level + 1), row_buffer)
    for level in range(n_levels - 2, 0, -1):
        lo, hi = starts[level], starts[level + 1]
        level_shape = _shape_of(shapes, level)
        _prolong_add(error[hi:starts[level + 2]], _shape_of(shapes, level + 1), error[lo:hi],
                     level_shape, no_fixed[:hi - lo], _edge_weight(level, edge_value))
        _smooth(error[lo:hi], rhs[lo:hi], level_shape, couplings[level], loss_per_min,
                sink[lo:hi], no_fixed[:hi - lo], ZERO_FLUX, smoothing, post_sweeps,
                coarse_has_sink, coarse_has_fixed)
    correction = error[starts[1]:starts[2]]
    change += _largest_magnitude(correction)
    _prolong_add(correction, _shape_of(shapes, 1), c, shape, fixed, _edge_weight(0, edge_value))
    return change + _smooth(c, known_per_min, shape, coupling_per_min, loss_per_min,
                            uptake_per_min, fixed, edge_value, smoothing, post_sweeps,
                            has_uptake, has_fixed)


@njit(cache=True)
def _solve_coarsest(c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min,
                    fixed, edge_value, over_relaxation, row_buffer, n_sweeps, has_uptake,
                    has_fixed):
    """Solve the coarsest grid (zero-flux edges, no held sites): rounds of ``n_sweeps`` SOR
    sweeps, each followed by a balancing shift (``_balance``: the mean, which sweeps barely
    move when decay is weak and the edges closed), until a round changes the grid
    ``COARSEST_REDUCTION`` times less than the first did, or ``COARSEST_MAX_ROUNDS`` rounds."""
    stiffness_per_min = c.shape[0] * loss_per_min + uptake_per_min.sum()
    first_change = 0.0
    for round_index in range(COARSEST_MAX_ROUNDS):
        change = _smooth(c, known_per_min, shape, coupling_per_min, loss_per_min,
                         uptake_per_min, fixed, edge_value, over_relaxation, n_sweeps,
                         has_uptake, has_fixed)
        change += abs(_balance(c, known_per_min, shape, coupling_per_min, loss_per_min,
                               uptake_per_min, fixed, edge_value, has_uptake, has_fixed,
                               stiffness_per_min, row_buffer))
        if round_index == 0:
            first_change = change
        elif change <= COARSEST_REDUCTION * first_change:
            return


@njit(cache=True)
def _smooth(c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min, fixed,
            edge_value, over_relaxation, n_sweeps, has_uptake, has_fixed):
    """``n_sweeps`` red-black sweeps (``_row_pass``); returns the sum of each sweep's largest
    change (conc).

    One sweep updates the red sites (``(x + y + z) % 2 == 0``) and then the black ones. A black
    row needs only its red neighbour rows (one row on either side, one layer of ``ny`` rows
    in 3D), so the black pass follows the red one a row (a layer) behind, in one pass over
    memory; every site sees exactly the values it would see in two separate passes, so the
    result is that of the textbook sweep, and the same for any number of threads.
    ``has_uptake``/``has_fixed`` False: ``uptake_per_min``/``fixed`` are all zero (not read).
    """
    nz, ny, nx = shape
    n_rows = ny * nz
    lag = ny if nz > 1 else 1
    no_residual = np.empty(0)
    total_change = 0.0
    for _ in range(n_sweeps):
        largest_change = 0.0
        for step in range(n_rows + lag):
            if step < n_rows:  # red sites of row ``step``
                row = step
                largest_change = max(largest_change, _row_pass(
                    c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min,
                    fixed, edge_value, row, (row % ny + row // ny) % 2, over_relaxation,
                    has_uptake, has_fixed, no_residual))
            if step >= lag:  # black sites of the row ``lag`` behind
                row = step - lag
                largest_change = max(largest_change, _row_pass(
                    c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min,
                    fixed, edge_value, row, (row % ny + row // ny + 1) % 2, over_relaxation,
                    has_uptake, has_fixed, no_residual))
        total_change += largest_change
    return total_change


@njit(cache=True)
def _restrict_residual(c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min,
                       fixed, edge_value, has_uptake, has_fixed, coarse, coarse_shape,
                       row_buffer):
    """``coarse[S]``: the mean over the block under coarse site ``S`` of what each site's
    equation misses (the residual, conc/min; 0 on held sites), computed a fine row at a time
    into ``row_buffer`` (>= nx entries) and never stored whole. Other arguments as
    ``_row_pass``; every axis longer than 1 is even (full blocks)."""
    nz, ny, nx = shape
    cz, cy, cx = coarse_shape
    block = (2 if nz > 1 else 1) * (2 if ny > 1 else 1) * (2 if nx > 1 else 1)
    for coarse_row in range(cy * cz):
        coarse_row_start = cx * coarse_row
        coarse[coarse_row_start:coarse_row_start + cx] = 0.0
        for z in range(2 * (coarse_row // cy), 2 * (coarse_row // cy) + (2 if nz > 1 else 1)):
            for y in range(2 * (coarse_row % cy), 2 * (coarse_row % cy) + (2 if ny > 1 else 1)):
                _row_pass(c, known_per_min, shape, coupling_per_min, loss_per_min,
                          uptake_per_min, fixed, edge_value, y + ny * z, y % 2, 1.0, has_uptake,
                          has_fixed, row_buffer)
                for x in range(nx):
                    coarse[coarse_row_start + x // 2] += row_buffer[x]
        for X in range(cx):
            coarse[coarse_row_start + X] /= block


@njit(cache=True, inline="always")
def _edge_weight(level, edge_value):
    """Interpolation weight of an edge site's own coarse site, from level ``level + 1`` to
    ``level``: 1 at a zero-flux edge; at a held edge the error is 0 one fine spacing beyond the
    fine edge site, and linear interpolation between that point and the coarse centre
    ((2^(level+1) - 1) / 2 fine spacings inside) gives (2^level + 1) / (2^(level+1) + 1)."""
    if edge_value < 0.0:
        return 1.0
    return (2.0 ** level + 1.0) / (2.0 ** (level + 1) + 1.0)


@njit(cache=True, inline="always")
def _coarse_neighbours(i, n, edge_weight):
    """Linear interpolation from the coarse grid to fine index ``i`` along an axis of ``n`` sites
    (n even, or 1): (own coarse site, next coarse site, weight of own, weight of next).

    Coarse site I covers fine 2I and 2I + 1, so a fine site lies a quarter of the coarse
    spacing from its own coarse centre: 3/4 of its own and 1/4 of the next one on its side.
    At the grid's edge there is no next site and the site takes ``edge_weight`` of its own
    (``_edge_weight``). An axis of 1 stays 1.
    """
    if n == 1:
        return 0, 0, 1.0, 0.0
    own = i // 2
    other = own - 1 if i % 2 == 0 else own + 1
    if other < 0 or other >= n // 2:
        return own, own, edge_weight, 0.0
    return own, other, 0.75, 0.25


@njit(cache=True)
def _restrict(fine, fine_shape, coarse, coarse_shape):
    """``coarse[S]``: the mean of ``fine`` over the 2 x 2 (x 2) block under coarse site ``S``
    (an axis of 1 contributes its one site)."""
    nz, ny, nx = fine_shape
    cz, cy, cx = coarse_shape
    for coarse_row in range(cy * cz):
        y0 = 2 * (coarse_row % cy) if ny > 1 else 0
        z0 = 2 * (coarse_row // cy) if nz > 1 else 0
        for X in range(cx):
            x0 = 2 * X if nx > 1 else 0
            total = 0.0
            n_children = 0
            for z in range(z0, min(z0 + 2, nz)):
                for y in range(y0, min(y0 + 2, ny)):
                    for x in range(x0, min(x0 + 2, nx)):
                        total += fine[x + nx * (y + ny * z)]
                        n_children += 1
            coarse[X + cx * coarse_row] = total / n_children


@njit(cache=True)
def _prolong_add(coarse, coarse_shape, fine, fine_shape, fixed, edge_weight):
    """Add the coarse correction, interpolated (bi/trilinearly, ``_coarse_neighbours``) to the
    fine sites, to every free fine site; ``edge_weight`` as ``_coarse_neighbours``.

    Per fine row, the coarse rows it draws on (up to 2 in 2D, 4 in 3D) and their weights are
    worked out once; coarse sites are indexed by unsigned integers (``_relax_inside``)."""
    nz, ny, nx = fine_shape
    cz, cy, cx = coarse_shape
    term_start = np.zeros(4, dtype=np.uint64)  # start of each coarse row drawn on
    term_weight = np.zeros(4)  # its weight (y and z)
    for row in range(ny * nz):
        y = row % ny
        z = row // ny
        y_own, y_next, y_own_weight, y_next_weight = _coarse_neighbours(y, ny, edge_weight)
        z_own, z_next, z_own_weight, z_next_weight = _coarse_neighbours(z, nz, edge_weight)
        n_terms = 0
        for kz in range(2):
            zz = z_next if kz else z_own
            weight_z = z_next_weight if kz else z_own_weight
            if weight_z == 0.0:
                continue  # 2D, or the grid's edge
            for ky in range(2):
                weight_zy = weight_z * (y_next_weight if ky else y_own_weight)
                if weight_zy == 0.0:
                    continue
                term_start[n_terms] = cx * ((y_next if ky else y_own) + cy * zz)
                term_weight[n_terms] = weight_zy
                n_terms += 1
        row_start = np.uint64(nx * row)
        x_step = 1
        if nx > 2 and (n_terms == 2 or n_terms == 4):  # 2D/3D off the y (and z) edges
            _prolong_row_inside(coarse, term_start, term_weight, n_terms == 4,
                                fine[nx * row:nx * row + nx], fixed[nx * row:nx * row + nx])
            x_step = nx - 1  # the two edge sites are left
        for x in range(0, nx, x_step):
            s = row_start + np.uint64(x)
            if fixed[s]:
                continue
            x_own, x_next, x_own_weight, x_next_weight = _coarse_neighbours(x, nx, edge_weight)
            own = np.uint64(x_own)
            other = np.uint64(x_next)
            value = 0.0
            for term in range(n_terms):
                start = term_start[term]
                value += term_weight[term] * (x_own_weight * coarse[start + own]
                                              + x_next_weight * coarse[start + other])
            fine[s] += value


@njit(cache=True)
def _prolong_row_inside(coarse, term_start, term_weight, four_rows, line, held):
    """``_prolong_add`` for the sites 1 <= x < nx - 1 of the fine row ``line`` (``held``: its
    ``fixed``) from two coarse rows (2D) or four (3D) starting at ``term_start`` (uint64)
    with weights ``term_weight``: the same sums in the same order, written out and indexed by
    unsigned integers (``_relax_inside``)."""
    first, second, third, fourth = term_start[0], term_start[1], term_start[2], term_start[3]
    weight_1, weight_2, weight_3, weight_4 = (term_weight[0], term_weight[1], term_weight[2],
                                              term_weight[3])
    for x in range(1, line.shape[0] - 1):
        if held[x]:
            continue
        own = np.uint64(x >> 1)
        other = own + np.uint64(1) if x & 1 else own - np.uint64(1)
        value = 0.0
        value += weight_1 * _along_x(coarse, first, own, other)
        value += weight_2 * _along_x(coarse, second, own, other)
        if four_rows:
            value += weight_3 * _along_x(coarse, third, own, other)
            value += weight_4 * _along_x(coarse, fourth, own, other)
        line[x] += value


@njit(cache=True, inline="always")
def _along_x(coarse, start, own, other):
    """Linear interpolation along x inside a coarse row starting at ``start``: 3/4 of the fine
    site's own coarse site, 1/4 of the next one on its side (``_coarse_neighbours``)."""
    return 0.75 * coarse[start + own] + 0.25 * coarse[start + other]


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


@njit(cache=True)
def _row_pass(c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min, fixed,
              edge_value, row, first_x, over_relaxation, has_uptake, has_fixed, residual):
    """Visit the sites of row ``row = y + ny z`` of the system

        (loss + uptake[s] + coupling * n) c[s] - coupling * sum(c_nb) = known[s],

    n the number of neighbours (held edge ghosts included). coupling_per_min: D / h^2 (1/min);
    loss_per_min: 1/dt + decay (1/min); ``has_uptake``/``has_fixed`` False: ``uptake_per_min``
    /``fixed`` are all zero and not read. With ``residual`` empty: SOR-update the free sites
    ``first_x, first_x + 2, ...`` (one colour) and return the largest |change| (conc).
    Otherwise: store in ``residual[x]`` what the equation of every site x misses (conc/min;
    0 on held sites) and return 0 (``first_x`` is not used).

    A row with lattice rows on every side (2D/3D) sends its sites off the x edges through
    ``_relax_inside``/``_residual_inside`` (no edge tests: the sweeps' hot loop); every other
    site goes through ``_edge_sites``. Both add the same neighbours in the same order, so the
    split does not change a bit of the result.
    """
    nz, ny, nx = shape
    relax = residual.shape[0] == 0
    x_step = 2 if relax else 1
    x_first = first_x if relax else 0
    y, z, below_y, above_y, below_z, above_z, n_ghosts = _row_geometry(row, shape,
                                                                       edge_value >= 0.0)
    full_row = ny > 1 and below_y and above_y and (nz == 1 or (below_z and above_z))
    if not full_row or nx < 3:
        return _edge_sites(c, known_per_min, shape, coupling_per_min, loss_per_min,
                           uptake_per_min, fixed, edge_value, row, x_first, nx, x_step,
                           over_relaxation, has_uptake, has_fixed, residual)
    largest_change = 0.0
    if x_first == 0:
        largest_change = _edge_sites(c, known_per_min, shape, coupling_per_min, loss_per_min,
                                     uptake_per_min, fixed, edge_value, row, 0, 1, x_step,
                                     over_relaxation, has_uptake, has_fixed, residual)
    inside_first = x_first if x_first > 0 else x_step
    if relax:
        largest_change = max(largest_change, _relax_inside(
            c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min, fixed,
            row, inside_first, over_relaxation, has_uptake, has_fixed))
    else:
        _residual_inside(c, known_per_min, shape, coupling_per_min, loss_per_min,
                         uptake_per_min, fixed, row, has_uptake, has_fixed, residual)
    if (nx - 1 - x_first) % x_step == 0:
        largest_change = max(largest_change, _edge_sites(
            c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min, fixed,
            edge_value, row, nx - 1, nx, x_step, over_relaxation, has_uptake, has_fixed,
            residual))
    return largest_change


@njit(cache=True, inline="always")
def _inside_neighbour_sum(c, s, row_step, layer, three_d):
    """Sum of ``c`` over the 4 (3D: 6) lattice neighbours of site ``s`` (uint64) off every edge,
    in the order of ``_edge_sites``: y, (z,) x. ``row_step``/``layer``: nx and nx * ny (uint64).
    Inlined, so the array costs no reference count per site."""
    neighbour_sum = c[s - row_step] + c[s + row_step]
    if three_d:
        neighbour_sum += c[s - layer]
        neighbour_sum += c[s + layer]
    neighbour_sum += c[s - np.uint64(1)]
    neighbour_sum += c[s + np.uint64(1)]
    return neighbour_sum


@njit(cache=True, inline="always")
def _relax_inside(c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min,
                  fixed, row, x_first, over_relaxation, has_uptake, has_fixed):
    """SOR-update the free sites ``x_first, x_first + 2, ... < nx - 1`` (x_first >= 1) of a
    row with lattice rows on every side (``_row_pass``); returns the largest |change| (conc).

    Sites are indexed by unsigned integers: numba tests every signed index for a negative
    (wrap-around) value, which the compiler cannot drop for ``c[s - nx]`` with a computed
    ``s``; the residual ran 4-8x slower with signed indices (measured on 1024^2). The
    neighbour sum's helper is inlined: a call that takes an array costs a reference-count
    update per site outside ``parallel=True`` code (measured 5x slower).
    """
    nz, ny, nx = shape
    row_step = np.uint64(nx)
    layer = np.uint64(nx * ny)
    diagonal_inside = loss_per_min + coupling_per_min * (4 if nz == 1 else 6)
    largest_change = 0.0
    for site in range(nx * row + x_first, nx * row + nx - 1, 2):
        s = np.uint64(site)
        if has_fixed and fixed[s]:
            continue
        neighbour_sum = _inside_neighbour_sum(c, s, row_step, layer, nz > 1)
        diagonal = diagonal_inside + uptake_per_min[s] if has_uptake else diagonal_inside
        if diagonal > 0.0:  # (an isolated site with no loss: any value solves its equation)
            change = over_relaxation * ((known_per_min[s] + coupling_per_min * neighbour_sum)
                                        / diagonal - c[s])
            c[s] += change
            largest_change = max(largest_change, abs(change))
    return largest_change


@njit(cache=True, inline="always")
def _residual_inside(c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min,
                     fixed, row, has_uptake, has_fixed, residual):
    """``residual[x]`` for the sites ``1 <= x < nx - 1`` of a row with lattice rows on every
    side (``_row_pass``; 0 on held sites); unsigned indices as ``_relax_inside``."""
    nz, ny, nx = shape
    row_step = np.uint64(nx)
    layer = np.uint64(nx * ny)
    row_start = np.uint64(nx * row)
    diagonal_inside = loss_per_min + coupling_per_min * (4 if nz == 1 else 6)
    for x in range(1, nx - 1):
        s = row_start + np.uint64(x)
        neighbour_sum = _inside_neighbour_sum(c, s, row_step, layer, nz > 1)
        diagonal = diagonal_inside + uptake_per_min[s] if has_uptake else diagonal_inside
        residual[x] = known_per_min[s] + coupling_per_min * neighbour_sum - diagonal * c[s]
    if has_fixed:
        for x in range(1, nx - 1):
            if fixed[row_start + np.uint64(x)]:
                residual[x] = 0.0


@njit(cache=True, inline="always")
def _edge_sites(c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min, fixed,
                edge_value, row, x_first, x_end, x_step, over_relaxation, has_uptake, has_fixed,
                residual):
    """``_row_pass`` for the sites ``x_first, x_first + x_step, ... < x_end`` of row ``row``,
    any of which may lie on the lattice edge (neighbours beyond it are held ghosts or none)."""
    nz, ny, nx = shape
    layer = nx * ny
    edge_is_held = edge_value >= 0.0
    relax = residual.shape[0] == 0
    y, z, below_y, above_y, below_z, above_z, n_ghosts = _row_geometry(row, shape, edge_is_held)
    largest_change = 0.0
    for x in range(x_first, x_end, x_step):
        s = x + nx * row
        if has_fixed and fixed[s]:
            if not relax:
                residual[x] = 0.0
            continue
        neighbour_sum = n_ghosts * edge_value
        n_neighbours = n_ghosts
        if below_y:
            neighbour_sum += c[s - nx]
            n_neighbours += 1
        if above_y:
            neighbour_sum += c[s + nx]
            n_neighbours += 1
        if below_z:
            neighbour_sum += c[s - layer]
            n_neighbours += 1
        if above_z:
            neighbour_sum += c[s + layer]
            n_neighbours += 1
        if nx > 1:
            if x > 0:
                neighbour_sum += c[s - 1]
                n_neighbours += 1
            elif edge_is_held:
                neighbour_sum += edge_value
                n_neighbours += 1
            if x < nx - 1:
                neighbour_sum += c[s + 1]
                n_neighbours += 1
            elif edge_is_held:
                neighbour_sum += edge_value
                n_neighbours += 1
        diagonal = loss_per_min + coupling_per_min * n_neighbours
        if has_uptake:
            diagonal += uptake_per_min[s]
        inflow_per_min = known_per_min[s] + coupling_per_min * neighbour_sum
        if not relax:
            residual[x] = inflow_per_min - diagonal * c[s]
        elif diagonal > 0.0:  # (an isolated site with no loss: any value solves its equation)
            change = over_relaxation * (inflow_per_min / diagonal - c[s])
            c[s] += change
            largest_change = max(largest_change, abs(change))
    return largest_change


@njit(cache=True)
def _balance(c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min, fixed,
             edge_value, has_uptake, has_fixed, stiffness_per_min, row_buffer):
    """Shift every free site by one amount so that the residuals of the system sum to zero.

    A zero residual sum is the step's global balance: the change of the total equals the
    production minus the losses and the flux into held sites and edges, over dt. This is the
    Galerkin correction along the constant vector (it never increases the error in the energy
    norm), and it fixes the slowest mode of a closed dish (its mean), which SOR alone corrects
    only at a rate ~ (1/dt + decay) / (D / h^2) per iteration. ``stiffness_per_min``: what a
    unit shift changes the residual sum by (``_drain``); ``row_buffer``: nx of scratch;
    other arguments as ``_row_pass``. Rows are added in order, so the sum is reproducible.
    Returns the shift (conc), 0 when the system is singular.
    """
    if stiffness_per_min <= 0.0:
        return 0.0
    nz, ny, nx = shape
    residual_sum = 0.0  # conc/min
    for row in range(ny * nz):
        # (first_x is not read for a residual; a computed value, since numba compiles a
        # callee once more for a literal argument)
        _row_pass(c, known_per_min, shape, coupling_per_min, loss_per_min, uptake_per_min, fixed,
                  edge_value, row, row % 2, 1.0, has_uptake, has_fixed, row_buffer)
        for x in range(nx):
            residual_sum += row_buffer[x]
    shift = residual_sum / stiffness_per_min
    for s in range(c.shape[0]):
        if not (has_fixed and fixed[s]):
            c[s] += shift
    return shift


@njit(cache=True)
def field_total(c, spacing_um, nz):
    """Amount of substance in field ``c``: sum(c) times the site area (2D) or volume (3D).

    c: (n_sites,) concentration per um^2 (2D, nz == 1) or per um^3 (3D); spacing_um: um.
    Returns the amount (conc * um^2 in 2D, conc * um^3 in 3D).
    """
    site_measure = spacing_um ** 2 if nz == 1 else spacing_um ** 3
    return c.sum() * site_measure
