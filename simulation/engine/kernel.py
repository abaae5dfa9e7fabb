"""Numba lattice kernels: arrays in, arrays out. No Mesa, YAML or plotting here.

The lattice is a flat structured array ``cells`` of ``nz * ny * nx`` sites (``nz == 1`` in 2D),
one 16-byte record per site (``constants.CELL_DTYPE``); site index ``s = x + nx * (y + ny * z)``.
One record array instead of one array per field keeps numba's per-array reference counting out
of the per-cell helpers (measured: 11 ns vs 51 ns per visited cell). Neighbourhoods are offset tables (``constants.neighbour_offsets``),
so the same code serves 2D and 3D. Boundaries are closed: a site at the edge has fewer neighbours.

Update scheme
-------------
A *sweep* visits every site once, row class by row class. A row is the sites sharing (y, z); rows
whose (y, z) agree modulo 3 form a class (3 classes in 2D, 9 in 3D). Two rows of one class are
at least 3 apart, so the radius-1 neighbourhoods their cells read and write never overlap: the
rows of one class can run on different threads (``prange``) with no effect on the result. Within
a row, sites are visited in sequence, in a direction drawn per row and sweep; classes run in an
order drawn per sweep. Every random number is ``rng.uniform(seed, sweep, site, purpose)``, so the
outcome is bit-identical for any number of threads, and rows are read contiguously in memory.

A cell that moved or was born in the current sweep carries ``stamp == sweep & 0xFFFF`` and is not
visited again in that sweep. Each time step is ``n_move_substeps`` migration sweeps followed by one
interaction sweep (death, killing, exhaustion, division).
"""

import math

import numpy as np
from numba import njit, prange

from . import constants as C
from .constants import (
    CANCER,
    CAR_T,
    EFFECTOR,
    EMPTY,
    EXHAUSTED,
    F_CHEMOKINE,
    F_OXYGEN,
    F_SUPPRESSION,
    MEMORY,
    N_CENSUS,
    N_CELL_TYPES,
    N_EVENTS,
    NECROTIC,
    NO_HEADING,
    NORMAL,
    TIMER_MAX,
    TISSUE_STROMA,
    TISSUE_VESSEL,
)
from .rng import randint, uniform


# ---------------------------------------------------------------------------------------------
# geometry helpers
# ---------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def site_position(site, shape):
    """(x, y, z) of ``site``: computed once per neighbourhood scan (integer division is slow)."""
    nz, ny, nx = shape
    return site % nx, (site // nx) % ny, site // (nx * ny)


@njit(cache=True, inline="always")
def neighbour_from(site, x, y, z, k, shape, offsets):
    """Index of neighbour ``k`` of ``site`` at (x, y, z), or -1 when it lies outside the
    lattice; additions and comparisons only."""
    nz, ny, nx = shape
    dx = offsets[k, 0]
    dy = offsets[k, 1]
    dz = offsets[k, 2]
    if not (0 <= x + dx < nx and 0 <= y + dy < ny and 0 <= z + dz < nz):
        return -1
    return site + dx + nx * (dy + ny * dz)


@njit(cache=True, inline="always")
def neighbour_site(site, k, shape, offsets):
    """Index of neighbour ``k`` of ``site``, or -1 when it lies outside the lattice."""
    x, y, z = site_position(site, shape)
    return neighbour_from(site, x, y, z, k, shape, offsets)


@njit(cache=True, inline="always")
def is_free(j, cells, tissue):
    """True if a cell may be placed on site ``j``: empty, and not a vessel."""
    return cells[j].cell_type == EMPTY and tissue[j] != TISSUE_VESSEL


@njit(cache=True)
def count_free_neighbours(site, cells, tissue, shape, offsets):
    """Number of free sites (``is_free``) around ``site``."""
    x, y, z = site_position(site, shape)
    n_free = 0
    for k in range(offsets.shape[0]):
        j = neighbour_from(site, x, y, z, k, shape, offsets)
        if j >= 0 and is_free(j, cells, tissue):
            n_free += 1
    return n_free


@njit(cache=True)
def pick_free_neighbour(site, cells, tissue, shape, offsets, seed, sweep, purpose):
    """A uniformly chosen free neighbour of ``site``, or -1 when it has none."""
    x, y, z = site_position(site, shape)
    n_free = count_free_neighbours(site, cells, tissue, shape, offsets)
    if n_free == 0:
        return -1
    chosen = randint(seed, sweep, site, purpose, n_free)
    for k in range(offsets.shape[0]):
        j = neighbour_from(site, x, y, z, k, shape, offsets)
        if j >= 0 and is_free(j, cells, tissue):
            if chosen == 0:
                return j
            chosen -= 1
    return -1


@njit(cache=True)
def next_to_vessel(site, tissue, shape, offsets):
    """True if a neighbour of ``site`` is a vessel site."""
    x, y, z = site_position(site, shape)
    for k in range(offsets.shape[0]):
        j = neighbour_from(site, x, y, z, k, shape, offsets)
        if j >= 0 and tissue[j] == TISSUE_VESSEL:
            return True
    return False


@njit(cache=True)
def class_order(seed, sweep, n_classes):
    """A permutation of the row classes for this sweep (Fisher-Yates on counter draws)."""
    order = np.arange(n_classes)
    for i in range(n_classes - 1, 0, -1):
        j = randint(seed, sweep, i, C.RNG_SWEEP_ORDER, i + 1)
        order[i], order[j] = order[j], order[i]
    return order


@njit(cache=True, inline="always")
def class_origin(row_class, shape):
    """(cz, cy): the first row of row class ``row_class`` (an axis of length 1 has one class)."""
    nz, ny, nx = shape
    n_y = 3 if ny > 1 else 1
    return row_class // n_y, row_class % n_y


@njit(cache=True)
def n_row_classes(shape):
    """Number of row classes: 3 per axis (y, z) longer than one site."""
    nz, ny, nx = shape
    return (3 if ny > 1 else 1) * (3 if nz > 1 else 1)


# ---------------------------------------------------------------------------------------------
# biology helpers
# ---------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def antigen_response(antigen, half_max, hill):
    """Fraction of the maximal kill rate at target antigen density (molecules/cell): Hill function.

    ``a^n / (a^n + K^n)``, written as ``1 / (1 + (K/a)^n)`` so it cannot overflow at saturation.
    Zero antigen gives exactly zero, so antigen-negative targets are never killed.
    """
    if antigen <= 0.0:
        return 0.0
    return 1.0 / (1.0 + (half_max / antigen) ** hill)


@njit(cache=True, inline="always")
def is_target(cell):
    """Cancer and normal cells are potential CAR-T targets (if they carry antigen)."""
    return cell == CANCER or cell == NORMAL


@njit(cache=True)
def best_target(site, cells, shape, offsets, seed, sweep):
    """The neighbour with the most antigen, or -1 if none carries antigen.

    CAR-T bind the target that gives the strongest signal; ties are broken uniformly at random.
    """
    x, y, z = site_position(site, shape)
    n_off = offsets.shape[0]
    best_antigen = 0.0
    n_best = 0
    for k in range(n_off):
        j = neighbour_from(site, x, y, z, k, shape, offsets)
        if j >= 0 and is_target(cells[j].cell_type):
            a = cells[j].antigen
            if a > best_antigen:
                best_antigen = a
                n_best = 1
            elif a == best_antigen and a > 0.0:
                n_best += 1
    if n_best == 0:
        return -1
    chosen = randint(seed, sweep, site, C.RNG_TARGET, n_best) if n_best > 1 else 0
    for k in range(n_off):
        j = neighbour_from(site, x, y, z, k, shape, offsets)
        if j >= 0 and is_target(cells[j].cell_type) and cells[j].antigen == best_antigen:
            if chosen == 0:
                return j
            chosen -= 1
    return -1


@njit(cache=True)
def has_recognised_neighbour(site, cells, shape, offsets, half_max):
    """True if a neighbour carries antigen at or above the CAR's half-maximal density (a synapse)."""
    x, y, z = site_position(site, shape)
    for k in range(offsets.shape[0]):
        j = neighbour_from(site, x, y, z, k, shape, offsets)
        if j >= 0 and is_target(cells[j].cell_type) and cells[j].antigen >= half_max:
            return True
    return False


@njit(cache=True)
def standard_normal(seed, sweep, site):
    """A N(0, 1) draw by Box-Muller from two counter-based uniforms."""
    u1 = 1.0 - uniform(seed, sweep, site, C.RNG_ANTIGEN_NOISE)  # in (0, 1]
    u2 = uniform(seed, sweep, site, C.RNG_ANTIGEN_NOISE_2)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@njit(cache=True, inline="always")
def ramp(value, low, high):
    """0 at or below ``low``, 1 at or above ``high``, linear in between (``low < high``)."""
    if value <= low:
        return 0.0
    if value >= high:
        return 1.0
    return (value - low) / (high - low)


@njit(cache=True, inline="always")
def suppression_factor(level, half_effect):
    """Remaining fraction of CAR-T function under a suppressive factor: ``1 / (1 + S / S_half)``."""
    if half_effect <= 0.0 or level <= 0.0:
        return 1.0
    return 1.0 / (1.0 + level / half_effect)


@njit(cache=True)
def uphill_direction(site, field, shape, offsets):
    """Index of the neighbour with the highest field value above the site's own, or -1."""
    x, y, z = site_position(site, shape)
    best = -1
    best_value = field[site]
    for k in range(offsets.shape[0]):
        j = neighbour_from(site, x, y, z, k, shape, offsets)
        if j >= 0 and field[j] > best_value:
            best_value = field[j]
            best = k
    return best


# ---------------------------------------------------------------------------------------------
# cell bookkeeping
# ---------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def move_cell(src, dst, cells, stamp_now):
    """Move every per-cell value from ``src`` to the empty site ``dst``; ``src`` becomes empty."""
    cells[dst] = cells[src]
    cells[dst].stamp = stamp_now
    clear_site(src, cells)


@njit(cache=True, inline="always")
def clear_site(site, cells):
    """Make ``site`` empty and zero its per-cell values."""
    cells[site].cell_type = EMPTY
    cells[site].antigen = 0.0
    cells[site].car_t_state = EFFECTOR
    cells[site].kills = 0
    cells[site].divisions = 0
    cells[site].heading = NO_HEADING
    cells[site].engaged = 0
    cells[site].activation = 0


# ---------------------------------------------------------------------------------------------
# migration sweep
# ---------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def migrate_cell(site, cells, tissue, fields, shape, offsets, move_p, persist_p, params, seed,
                 sweep):
    """One migration attempt of the cell at ``site``; returns its site afterwards.

    A motile cell moves with probability ``move_p[type]`` per sweep to the neighbour along its
    heading (kept with probability ``persist_p[type]``, else redrawn; a CAR-T redraws up the
    chemokine gradient with probability ``params.chemotaxis_bias``). Occupied, vessel or
    off-lattice targets block the move and make the cell turn; a stroma site is entered with
    probability ``params.stroma_crossing_p``. A CAR-T in contact with a recognised target
    (antigen >= half-max) holds its synapse and does not move.
    """
    cell = cells[site].cell_type
    if move_p[cell] <= 0.0:
        return site
    # the cheap draw first: the outcome is the same in either order (no side effects)
    if uniform(seed, sweep, site, C.RNG_MOVE) >= move_p[cell]:
        return site
    if cell == CAR_T and has_recognised_neighbour(
        site, cells, shape, offsets, params.antigen_half_max
    ):
        return site
    n_off = offsets.shape[0]
    direction = cells[site].heading
    if direction == NO_HEADING or uniform(seed, sweep, site, C.RNG_HEADING) >= persist_p[cell]:
        direction = -1
        if (cell == CAR_T
                and uniform(seed, sweep, site, C.RNG_CHEMOTAXIS) < params.chemotaxis_bias):
            direction = uphill_direction(site, fields[F_CHEMOKINE], shape, offsets)
        if direction < 0:
            direction = randint(seed, sweep, site, C.RNG_HEADING_PICK, n_off)
    dst = neighbour_site(site, direction, shape, offsets)
    if dst < 0 or not is_free(dst, cells, tissue) or (
            tissue[dst] == TISSUE_STROMA
            and uniform(seed, sweep, site, C.RNG_STROMA) >= params.stroma_crossing_p):
        cells[site].heading = NO_HEADING  # blocked: turn at the next attempt
        return site
    cells[site].heading = direction
    move_cell(site, dst, cells, sweep & 0xFFFF)
    return dst


# ---------------------------------------------------------------------------------------------
# interaction sweep: death, killing, exhaustion, division
# ---------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def cancer_cell_update(site, cells, tissue, fields, shape, offsets, params, seed, sweep, events,
                       row):
    """Necrosis, apoptosis or division into a free neighbour (contact inhibition); returns the
    daughter's site, or -1.

    Severe hypoxia (oxygen below ``params.necrosis_o2_mmhg``) turns the cell necrotic at a rate
    rising linearly to its maximum at ``params.necrosis_max_o2_mmhg``. Otherwise one draw
    decides: ``u < p_death``: the cell dies; ``p_death <= u < p_death + p_divide * f(O2)``: it
    divides if it has room, where ``f`` falls linearly from 1 at ``params.proliferation_o2_mmhg``
    to 0 at the necrosis threshold. The probabilities split ``1 - exp(-(death + birth) dt)`` by
    rate (competing hazards). A daughter inherits the antigen with log-normal noise, or is born
    antigen-negative with probability ``params.antigen_loss_p``. Counts go to ``events[row]``.
    """
    oxygen = fields[F_OXYGEN, site]
    necrosis_o2 = params.necrosis_o2_mmhg
    if oxygen < necrosis_o2:
        severity = 1.0 - ramp(oxygen, params.necrosis_max_o2_mmhg, necrosis_o2)
        necrosis_p = 1.0 - math.exp(-severity * params.necrosis_max_rate_per_min * params.dt_min)
        if uniform(seed, sweep, site, C.RNG_NECROSIS) < necrosis_p:
            clear_site(site, cells)
            cells[site].cell_type = NECROTIC
            cells[site].stamp = sweep & 0xFFFF
            events[row, C.E_CANCER_NECROSED] += 1
            return -1
    u = uniform(seed, sweep, site, C.RNG_DEATH)
    death_p = params.cancer_death_p
    if u < death_p:
        clear_site(site, cells)
        events[row, C.E_CANCER_DIED] += 1
        return -1
    divide_p = params.cancer_divide_p * ramp(oxygen, necrosis_o2, params.proliferation_o2_mmhg)
    if u >= death_p + divide_p:
        return -1
    daughter = pick_free_neighbour(site, cells, tissue, shape, offsets, seed, sweep,
                                   C.RNG_DIVIDE_SITE)
    if daughter < 0:
        return -1  # contact inhibition: no room, no division
    cells[daughter].cell_type = CANCER
    sigma = params.antigen_inheritance_sigma
    inherited = cells[site].antigen
    if (inherited > 0.0
            and uniform(seed, sweep, site, C.RNG_ANTIGEN_LOSS) < params.antigen_loss_p):
        inherited = 0.0
    elif sigma > 0.0 and inherited > 0.0:
        # log-normal noise with mean 1, so the population mean is kept
        inherited *= math.exp(sigma * standard_normal(seed, sweep, site) - 0.5 * sigma * sigma)
    cells[daughter].antigen = inherited
    cells[daughter].heading = NO_HEADING
    cells[daughter].stamp = sweep & 0xFFFF
    events[row, C.E_CANCER_BORN] += 1
    return daughter


@njit(cache=True)
def car_t_update(site, cells, tissue, fields, shape, offsets, params, seed, sweep, events, row):
    """One time step of a CAR-T: death, memory, kill attempt, exhaustion, division, exit to blood.

    Memory cells do not kill; meeting a recognised target (antigen >= half-max) makes them
    activated effectors with a fresh division budget. An effector bound to nothing and not
    activated becomes memory with probability ``params.car_t_memory_p``. The kill rate falls with
    hypoxia (to ``params.car_t_hypoxic_kill_factor`` at the necrosis threshold) and with the
    suppressive factor (``suppression_factor``), which also shortens the engagement time to
    exhaustion. An unbound effector or memory cell next to a vessel enters the blood with
    probability ``params.intravasation_p`` (the caller adds it to the blood pool). Counts go to
    ``events[row]``. Returns the site of a daughter born now, or -1.
    """
    state = cells[site].car_t_state
    if state == EXHAUSTED:
        death_p = params.car_t_exhausted_death_p
    elif state == MEMORY:
        death_p = params.car_t_memory_death_p
    else:
        death_p = params.car_t_effector_death_p
    if uniform(seed, sweep, site, C.RNG_DEATH) < death_p:
        clear_site(site, cells)
        events[row, C.E_CAR_T_DIED] += 1
        return -1

    half_max = params.antigen_half_max
    target = best_target(site, cells, shape, offsets, seed, sweep)
    bound = target >= 0 and cells[target].antigen >= half_max
    if state == MEMORY:
        if not bound:
            leave_for_blood(site, cells, tissue, shape, offsets, params, seed, sweep, events,
                            row, C.E_MEMORY_TO_BLOOD)
            return -1
        state = EFFECTOR
        cells[site].car_t_state = EFFECTOR
        cells[site].kills = 0
        cells[site].engaged = 0
        cells[site].divisions = 0
        cells[site].activation = params.activation_steps
        events[row, C.E_MEMORY_REACTIVATED] += 1

    exhausted = state == EXHAUSTED
    suppression = suppression_factor(fields[F_SUPPRESSION, site], params.suppression_half_effect)
    if target >= 0:
        if bound and cells[site].engaged < TIMER_MAX:
            cells[site].engaged += 1
        hypoxic = params.car_t_hypoxic_kill_factor
        oxygen_factor = hypoxic + (1.0 - hypoxic) * ramp(
            fields[F_OXYGEN, site], params.necrosis_o2_mmhg, params.proliferation_o2_mmhg)
        rate = params.car_t_kill_rate_per_min * oxygen_factor * suppression * antigen_response(
            cells[target].antigen, half_max, params.hill_coefficient
        )
        if exhausted:
            rate *= params.exhausted_kill_factor
        if uniform(seed, sweep, site, C.RNG_KILL) < 1.0 - math.exp(-rate * params.dt_min):
            killed = C.E_CANCER_KILLED if cells[target].cell_type == CANCER else C.E_NORMAL_KILLED
            events[row, killed] += 1
            clear_site(target, cells)
            cells[target].stamp = sweep & 0xFFFF
            if cells[site].kills < 255:
                cells[site].kills += 1
            cells[site].activation = params.activation_steps
    if not exhausted and (
        cells[site].kills >= params.max_kills
        or cells[site].engaged >= params.exhaustion_engaged_steps * suppression
    ):
        cells[site].car_t_state = EXHAUSTED
        events[row, C.E_CAR_T_EXHAUSTED] += 1
        exhausted = True

    if cells[site].activation == 0:
        if exhausted or bound:
            return -1
        if uniform(seed, sweep, site, C.RNG_MEMORY) < params.car_t_memory_p:
            cells[site].car_t_state = MEMORY
            events[row, C.E_CAR_T_BECAME_MEMORY] += 1
            return -1
        leave_for_blood(site, cells, tissue, shape, offsets, params, seed, sweep, events, row,
                        C.E_EFFECTOR_TO_BLOOD)
        return -1
    cells[site].activation -= 1
    if exhausted or cells[site].divisions >= params.max_divisions:
        return -1
    if uniform(seed, sweep, site, C.RNG_DIVIDE) >= params.car_t_divide_p:
        return -1
    daughter = pick_free_neighbour(site, cells, tissue, shape, offsets, seed, sweep,
                                   C.RNG_DIVIDE_SITE)
    if daughter < 0:
        return -1
    cells[site].divisions += 1
    cells[daughter].cell_type = CAR_T
    cells[daughter].car_t_state = EFFECTOR
    cells[daughter].kills = 0
    cells[daughter].divisions = cells[site].divisions
    cells[daughter].heading = NO_HEADING
    cells[daughter].engaged = 0
    cells[daughter].activation = cells[site].activation
    cells[daughter].stamp = sweep & 0xFFFF
    events[row, C.E_CAR_T_BORN] += 1
    return daughter


@njit(cache=True, inline="always")
def leave_for_blood(site, cells, tissue, shape, offsets, params, seed, sweep, events, row,
                    event):
    """Remove the CAR-T at ``site`` into the blood with probability ``params.intravasation_p`` if a
    vessel is next to it; ``events[row, event]`` counts it for the blood pool."""
    exit_p = params.intravasation_p
    if exit_p <= 0.0 or not next_to_vessel(site, tissue, shape, offsets):
        return
    if uniform(seed, sweep, site, C.RNG_INTRAVASATION) < exit_p:
        clear_site(site, cells)
        cells[site].stamp = sweep & 0xFFFF
        events[row, event] += 1


@njit(cache=True, inline="always")
def necrotic_update(site, cells, params, seed, sweep, events, row):
    """Necrotic debris is cleared (the site becomes empty) with ``params.necrotic_clearance_p``."""
    if uniform(seed, sweep, site, C.RNG_DEATH) < params.necrotic_clearance_p:
        clear_site(site, cells)
        cells[site].stamp = sweep & 0xFFFF
        events[row, C.E_NECROTIC_CLEARED] += 1


@njit(cache=True, parallel=True)
def sweep_lattice(cells, tissue, fields, shape, offsets, move_p, persist_p, params, seed, sweep,
                  events, interaction, motile_rows):
    """Visit every cell once, row class by row class, rows of a class in parallel.

    ``interaction=False``: a migration sweep (each motile cell gets one migration attempt).
    ``interaction=True``: cancer cells die, turn necrotic or divide; CAR-T die, kill, exhaust,
    divide, turn memory or leave for the blood; necrotic debris is cleared; normal cells are
    passive targets (no turnover within the simulated weeks). ``tissue`` is the fixed site
    structure (``TISSUE_*``), ``fields`` the (N_FIELDS, n_sites) field values the cells sense,
    ``params`` the one-element array of ``constants.KERNEL_PARAMS_DTYPE`` whose record the
    per-cell helpers read by field name. Event counts are kept per row, then summed, so they too
    are independent of threads.

    ``motile_rows`` (uint8 per row ``y + ny * z``) is nonzero for every row that may hold a
    motile cell (``move_p > 0``; ``mark_motile_rows``). A migration sweep skips the other rows,
    which hold nothing it would touch (sessile tissue is most of a solid tumour), and marks the
    row a cell moves into. An interaction sweep visits every row anyway: it sets each row's mark
    to whether the row held a motile cell, and marks the row of each motile daughter.
    """
    nz, ny, nx = shape
    stamp_now = sweep & 0xFFFF
    n_classes = n_row_classes(shape)
    order = class_order(seed, sweep, n_classes)
    step_z = 3 if nz > 1 else 1
    step_y = 3 if ny > 1 else 1
    rows_y_max = (ny + step_y - 1) // step_y
    rows_z_max = (nz + step_z - 1) // step_z
    row_events = np.zeros((rows_z_max * rows_y_max, N_EVENTS), dtype=np.int64)
    for c in range(n_classes):
        cz, cy = class_origin(order[c], shape)
        rows_y = (ny - cy + step_y - 1) // step_y
        rows_z = (nz - cz + step_z - 1) // step_z
        for r in prange(rows_z * rows_y):
            z = cz + step_z * (r // rows_y)
            y = cy + step_y * (r % rows_y)
            row_index = y + ny * z
            if not interaction and motile_rows[row_index] == 0:
                continue
            row = nx * row_index
            backwards = uniform(seed, sweep, row, C.RNG_ROW_DIRECTION) < 0.5
            p = params[0]  # bound in the row: a parallel loop cannot capture a record
            row_has_motile = False
            for i in range(nx):
                site = row + (nx - 1 - i if backwards else i)
                cell = cells[site].cell_type
                motile = move_p[cell] > 0.0
                row_has_motile = row_has_motile or motile
                # skip sites with nothing to do in this sweep: empty sites, normal cells
                # (passive) in interaction sweeps, sessile cells in migration sweeps (the
                # move probability of EMPTY is 0), and cells that already acted in this sweep
                if interaction:
                    if cell == EMPTY or cell == NORMAL:
                        continue
                elif not motile:
                    continue
                if cells[site].stamp == stamp_now:
                    continue
                cells[site].stamp = stamp_now
                moved_to = -1  # the site a motile cell moved to or was born on
                if not interaction:
                    moved_to = migrate_cell(site, cells, tissue, fields, shape, offsets, move_p,
                                            persist_p, p, seed, sweep)
                elif cell == CANCER:
                    moved_to = cancer_cell_update(site, cells, tissue, fields, shape, offsets, p,
                                                  seed, sweep, row_events, r)
                elif cell == CAR_T:
                    moved_to = car_t_update(site, cells, tissue, fields, shape, offsets, p, seed,
                                            sweep, row_events, r)
                else:
                    necrotic_update(site, cells, p, seed, sweep, row_events, r)
                if motile and moved_to >= 0 and moved_to // nx != row_index:
                    motile_rows[moved_to // nx] = 1
            if interaction:
                motile_rows[row_index] = row_has_motile
    events += row_events.sum(axis=0)


@njit(cache=True)
def migration_sweep(cells, tissue, fields, shape, offsets, move_p, persist_p, params, seed, sweep):
    """Give every motile cell one migration attempt (every row scanned)."""
    sweep_lattice(cells, tissue, fields, shape, offsets, move_p, persist_p, params, seed, sweep,
                  np.zeros(N_EVENTS, dtype=np.int64), False,
                  np.ones(shape[0] * shape[1], dtype=np.uint8))


@njit(cache=True)
def interaction_sweep(cells, tissue, fields, shape, offsets, params, seed, sweep, events):
    """Death, killing, exhaustion and division for every cell; counts go to ``events``."""
    no_motion = np.zeros(N_CELL_TYPES)
    sweep_lattice(cells, tissue, fields, shape, offsets, no_motion, no_motion, params, seed,
                  sweep, events, True, np.zeros(shape[0] * shape[1], dtype=np.uint8))


@njit(cache=True)
def mark_motile_rows(cells, shape, move_p, motile_rows):
    """Set ``motile_rows[y + ny * z]`` to whether that row holds a motile cell (``move_p > 0``).

    Call after cells were placed or replaced outside the kernel's sweeps (set-up, infusions,
    restored checkpoints); the sweeps and ``extravasate`` keep the marks up to date.
    """
    nz, ny, nx = shape
    for row_index in range(ny * nz):
        motile_rows[row_index] = 0
        for site in range(nx * row_index, nx * (row_index + 1)):
            if move_p[cells[site].cell_type] > 0.0:
                motile_rows[row_index] = 1
                break


@njit(cache=True)
def advance(cells, tissue, fields, shape, offsets, move_p, persist_p, params, seed, first_sweep,
            n_steps, n_move_substeps, events, motile_rows):
    """Advance the lattice ``n_steps`` time steps; returns the next free sweep number.

    Each step is ``n_move_substeps`` migration sweeps and one interaction sweep; sweep numbers
    run on from ``first_sweep`` and key every random draw. ``events`` accumulates counts;
    ``motile_rows`` marks the rows that may hold a motile cell (``sweep_lattice``).
    Fields are held fixed over the call (the caller updates them between time steps).
    """
    sweep = first_sweep
    for _ in range(n_steps):
        for _sub in range(n_move_substeps):
            sweep_lattice(cells, tissue, fields, shape, offsets, move_p, persist_p, params, seed,
                          sweep, events, False, motile_rows)
            sweep += 1
        sweep_lattice(cells, tissue, fields, shape, offsets, move_p, persist_p, params, seed,
                      sweep, events, True, motile_rows)
        sweep += 1
    return sweep


@njit(cache=True)
def extravasate(cells, tissue, shape, offsets, vessel_sites, n_cells, first_cell, state, seed,
                sweep, motile_rows):
    """Place up to ``n_cells`` CAR-T of ``state`` from the blood next to random vessel sites.

    Cell ``i`` (numbered from ``first_cell``, so several calls in one step draw independently)
    picks a vessel uniformly from ``vessel_sites`` and a free neighbour of it; a vessel with no
    free neighbour turns the cell back (it stays in the blood). Returns how many left the
    blood. Draws are keyed by (seed, sweep, cell number) with their own purposes, so they never
    repeat a lattice draw. New cells carry the stamp of ``sweep - 1``: they act in ``sweep``;
    their rows are marked in ``motile_rows`` (``sweep_lattice``).
    """
    placed = 0
    n_vessels = vessel_sites.shape[0]
    if n_vessels == 0:
        return 0
    for i in range(first_cell, first_cell + n_cells):
        vessel = vessel_sites[randint(seed, sweep, i, C.RNG_EXTRAVASATION, n_vessels)]
        n_free = count_free_neighbours(vessel, cells, tissue, shape, offsets)
        if n_free == 0:
            continue
        vx, vy, vz = site_position(vessel, shape)
        chosen = randint(seed, sweep, i, C.RNG_EXTRAVASATION_SITE, n_free)
        for k in range(offsets.shape[0]):
            j = neighbour_from(vessel, vx, vy, vz, k, shape, offsets)
            if j >= 0 and is_free(j, cells, tissue):
                if chosen == 0:
                    clear_site(j, cells)
                    cells[j].cell_type = CAR_T
                    cells[j].car_t_state = state
                    cells[j].stamp = (sweep - 1) & 0xFFFF
                    motile_rows[j // shape[2]] = 1
                    placed += 1
                    break
                chosen -= 1
    return placed


@njit(cache=True)
def census(cells, antigen_half_max):
    """Counts of the lattice content, in the order of ``constants.CENSUS_NAMES`` (slots
    ``constants.CENSUS_*``); ``antigen_half_max`` in molecules/cell splits high from low."""
    counts = np.zeros(N_CENSUS, dtype=np.int64)
    for site in range(cells.shape[0]):
        cell = cells[site].cell_type
        if cell == CANCER:
            counts[C.CENSUS_TUMOR_CELLS] += 1
            a = cells[site].antigen
            if a <= 0.0:
                counts[C.CENSUS_TUMOR_ANTIGEN_NEGATIVE] += 1
            elif a < antigen_half_max:
                counts[C.CENSUS_TUMOR_ANTIGEN_LOW] += 1
            else:
                counts[C.CENSUS_TUMOR_ANTIGEN_HIGH] += 1
        elif cell == NORMAL:
            counts[C.CENSUS_NORMAL_CELLS] += 1
            if cells[site].antigen > 0.0:
                counts[C.CENSUS_NORMAL_ANTIGEN_POSITIVE] += 1
        elif cell == CAR_T:
            counts[C.CENSUS_CAR_T_CELLS] += 1
            state = cells[site].car_t_state
            if state == EFFECTOR:
                counts[C.CENSUS_CAR_T_EFFECTOR] += 1
            elif state == EXHAUSTED:
                counts[C.CENSUS_CAR_T_EXHAUSTED] += 1
            else:
                counts[C.CENSUS_CAR_T_MEMORY] += 1
        elif cell == NECROTIC:
            counts[C.CENSUS_NECROTIC_CELLS] += 1
    return counts
