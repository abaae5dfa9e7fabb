"""Numba lattice kernels: arrays in, arrays out. No Mesa, YAML or plotting here.

The lattice is a flat structured array ``cells`` of ``nz * ny * nx`` sites (``nz == 1`` in 2D),
one 16-byte record per site (``constants.CELL_DTYPE``); site index ``s = x + nx * (y + ny * z)``.
One record array instead of one array per field keeps numba's per-array reference counting out
of the per-cell helpers (measured: 11 ns vs 51 ns per visited cell). What only some scenarios
use (antigen slots 1-2, the AND-gate priming timer) is in a second record array ``extra``
(``constants.CELL_EXTRA_DTYPE``), empty otherwise, so the sweeps stream 16 bytes per site.
Neighbourhoods are offset tables (``constants.neighbour_offsets``), so the same code serves 2D
and 3D. Boundaries are closed: a site at the edge has fewer neighbours.

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
from .lattice import Lattice
from .rng import randint, uniform

#: numba's parallel options for the sweep: its explicit ``prange`` over rows and nothing else.
#: The other passes (fusing array expressions, parallel reductions and array constructors) find
#: nothing to gain here and cost compile time on a machine's first run.
PRANGE_ONLY = {"prange": True, "fusion": False, "numpy": False, "reduction": False,
               "setitem": False, "comprehension": False, "inplace_binop": False,
               "stencil": False}


# ---------------------------------------------------------------------------------------------
# geometry helpers
# ---------------------------------------------------------------------------------------------
@njit(cache=True)
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
def is_free(j, cells, tissue):
    """True if a cell may be placed on site ``j``: empty, and not a vessel."""
    return cells[j].cell_type == EMPTY and tissue[j] != TISSUE_VESSEL


@njit(cache=True)
def count_free_neighbours(site, position, cells, tissue, shape, offsets):
    """Number of free sites (``is_free``) around ``site`` at ``position`` (x, y, z)."""
    x, y, z = position
    n_free = 0
    for k in range(offsets.shape[0]):
        j = neighbour_from(site, x, y, z, k, shape, offsets)
        if j >= 0 and is_free(j, cells, tissue):
            n_free += 1
    return n_free


@njit(cache=True)
def pick_free_neighbour(site, position, cells, tissue, shape, offsets, seed, sweep, purpose):
    """A uniformly chosen free neighbour of ``site`` at ``position``, or -1 when it has none."""
    x, y, z = position
    n_free = count_free_neighbours(site, position, cells, tissue, shape, offsets)
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
def next_to_vessel(site, position, tissue, shape, offsets):
    """True if a neighbour of ``site`` at ``position`` is a vessel site."""
    x, y, z = position
    for k in range(offsets.shape[0]):
        j = neighbour_from(site, x, y, z, k, shape, offsets)
        if j >= 0 and tissue[j] == TISSUE_VESSEL:
            return True
    return False


@njit(cache=True)
def class_order(seed, sweep, n_classes):
    """A permutation of the row classes for this sweep (Fisher-Yates on counter draws)."""
    order = np.empty(n_classes, dtype=np.int64)
    for i in range(n_classes):
        order[i] = i
    for i in range(n_classes - 1, 0, -1):
        j = randint(seed, sweep, i, C.RNG_SWEEP_ORDER, i + 1)
        order[i], order[j] = order[j], order[i]
    return order


@njit(cache=True)
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
@njit(cache=True)
def antigen_response(antigen, half_max, hill):
    """Fraction of the maximal kill rate at target antigen density (molecules/cell): Hill function.

    ``a^n / (a^n + K^n)``, written as ``1 / (1 + (K/a)^n)`` so it cannot overflow at saturation.
    Zero antigen gives exactly zero, so antigen-negative targets are never killed.
    """
    if antigen <= 0.0:
        return 0.0
    return 1.0 / (1.0 + (half_max / antigen) ** hill)


@njit(cache=True)
def is_target(cell):
    """Cancer and normal cells are potential CAR-T targets (if they carry antigen)."""
    return cell == CANCER or cell == NORMAL


@njit(cache=True, inline="always")
def antigen_at(cells, extra, j, slot):
    """Density of antigen ``slot`` (0-2) on the cell at site ``j`` (molecules/cell): slot 0 is
    in ``cells``, slots 1 and 2 in ``extra`` (which a scenario with one antigen leaves empty,
    and never asks for)."""
    if slot == 0:
        return cells[j].antigen
    if slot == 1:
        return extra[j].antigen_b
    return extra[j].antigen_c


@njit(cache=True, inline="always")
def vetoed(cells, extra, j, params):
    """True if an inhibitory CAR (NOT logic) vetoes attacking the cell at ``j``: its antigen
    ``params.veto_slot`` is at or above ``params.veto_half_max``."""
    slot = params.veto_slot
    return slot != C.NO_RECEPTOR and antigen_at(cells, extra, j, slot) >= params.veto_half_max


@njit(cache=True, inline="always")
def recognised(cells, extra, j, params, logic):
    """True if a killing receptor binds the cell at ``j`` (its antigen at or above that
    receptor's half-max density) and no inhibitory CAR vetoes it: a synapse forms.

    ``logic`` None: the CAR has one killing receptor and no inhibitory one, and only that
    is compiled (``receptor_logic``)."""
    hit = antigen_at(cells, extra, j, params.kill_slot) >= params.antigen_half_max
    if logic is None:
        return hit
    slot = params.second_kill_slot
    if not hit and slot != C.NO_RECEPTOR:
        hit = antigen_at(cells, extra, j, slot) >= params.second_half_max
    slot = params.third_kill_slot
    if not hit and slot != C.NO_RECEPTOR:
        hit = antigen_at(cells, extra, j, slot) >= params.third_half_max
    return hit and not vetoed(cells, extra, j, params)


@njit(cache=True, inline="always")
def kill_response(cells, extra, j, params, logic):
    """Fraction of the maximal kill rate against the cell at ``j``.

    One killing receptor: ``antigen_response`` of its antigen. Several (OR logic): each
    triggers independently, so the response is ``1 - prod(1 - r_k)``. 0 if vetoed.
    ``logic`` None: one killing receptor and no inhibitory one (``receptor_logic``).
    """
    if logic is None:
        return antigen_response(antigen_at(cells, extra, j, params.kill_slot),
                                params.antigen_half_max, params.hill_coefficient)
    if vetoed(cells, extra, j, params):
        return 0.0
    hill = params.hill_coefficient
    response = antigen_response(antigen_at(cells, extra, j, params.kill_slot),
                                params.antigen_half_max, hill)
    slot = params.second_kill_slot
    if slot != C.NO_RECEPTOR:
        miss = (1.0 - response) * (1.0 - antigen_response(
            antigen_at(cells, extra, j, slot), params.second_half_max, hill))
        slot = params.third_kill_slot
        if slot != C.NO_RECEPTOR:
            miss *= 1.0 - antigen_response(antigen_at(cells, extra, j, slot), params.third_half_max,
                                           hill)
        response = 1.0 - miss
    return response


@njit(cache=True, inline="always")
def target_score(cells, extra, j, params, logic):
    """How strongly a CAR-T is drawn to the neighbour at ``j`` (0: not a target).

    A CAR with one killing receptor and no inhibitory CAR ranks targets by the density of its
    antigen (molecules/cell); with several receptors or a veto, by ``kill_response``.
    """
    if logic is not None and (params.second_kill_slot != C.NO_RECEPTOR
                              or params.veto_slot != C.NO_RECEPTOR):
        return kill_response(cells, extra, j, params, logic)
    return antigen_at(cells, extra, j, params.kill_slot)


@njit(cache=True)
def best_target(site, position, cells, extra, shape, offsets, params, seed, sweep, logic):
    """The neighbour with the highest ``target_score``, or -1 if none scores above 0.

    CAR-T bind the target that gives the strongest signal; ties are broken uniformly at random.
    """
    x, y, z = position
    n_off = offsets.shape[0]
    best_score = 0.0
    n_best = 0
    for k in range(n_off):
        j = neighbour_from(site, x, y, z, k, shape, offsets)
        if j >= 0 and is_target(cells[j].cell_type):
            score = target_score(cells, extra, j, params, logic)
            if score > best_score:
                best_score = score
                n_best = 1
            elif score == best_score and score > 0.0:
                n_best += 1
    if n_best == 0:
        return -1
    chosen = randint(seed, sweep, site, C.RNG_TARGET, n_best) if n_best > 1 else 0
    for k in range(n_off):
        j = neighbour_from(site, x, y, z, k, shape, offsets)
        if (j >= 0 and is_target(cells[j].cell_type)
                and target_score(cells, extra, j, params, logic) == best_score):
            if chosen == 0:
                return j
            chosen -= 1
    return -1


@njit(cache=True)
def has_recognised_neighbour(site, position, cells, extra, shape, offsets, params, logic):
    """True if a neighbour is ``recognised`` by the CAR-T at ``site`` (a synapse)."""
    x, y, z = position
    for k in range(offsets.shape[0]):
        j = neighbour_from(site, x, y, z, k, shape, offsets)
        if j >= 0 and is_target(cells[j].cell_type) and recognised(cells, extra, j, params,
                                                                  logic):
            return True
    return False


@njit(cache=True)
def has_helper_neighbour(site, position, cells, shape, offsets):
    """True if a CD4 CAR-T (class bit ``constants.SUBSET_CD4``) is next to ``site``: help."""
    x, y, z = position
    for k in range(offsets.shape[0]):
        j = neighbour_from(site, x, y, z, k, shape, offsets)
        if j >= 0 and cells[j].cell_type == CAR_T and cells[j].car_class & C.SUBSET_CD4:
            return True
    return False


@njit(cache=True)
def has_priming_neighbour(site, position, cells, extra, shape, offsets, params):
    """True if a neighbour carries the priming antigen (``params.prime_slot``) at or above
    ``params.prime_half_max``: a SynNotch receptor is engaged."""
    x, y, z = position
    slot = params.prime_slot
    for k in range(offsets.shape[0]):
        j = neighbour_from(site, x, y, z, k, shape, offsets)
        if (j >= 0 and is_target(cells[j].cell_type)
                and antigen_at(cells, extra, j, slot) >= params.prime_half_max):
            return True
    return False


@njit(cache=True, inline="always")
def car_expressed(site, position, cells, extra, shape, offsets, params, logic):
    """Update the AND-gate priming timer of the CAR-T at ``site``; True if its CAR is expressed.

    A CAR without a priming receptor is always expressed. With one (AND logic), contact with
    the priming antigen (re)sets ``primed`` to ``params.priming_steps``; away from it the timer
    runs down one per time step and the CAR is expressed while it is above 0.
    """
    if logic is None:
        return True
    if params.prime_slot == C.NO_RECEPTOR:
        return True
    if has_priming_neighbour(site, position, cells, extra, shape, offsets, params):
        extra[site].primed = params.priming_steps
    elif extra[site].primed > 0:
        extra[site].primed -= 1
    return extra[site].primed > 0


@njit(cache=True)
def standard_normal(seed, sweep, site, purpose, purpose_2):
    """A N(0, 1) draw by Box-Muller from the counter-based uniforms of two purposes."""
    u1 = 1.0 - uniform(seed, sweep, site, purpose)  # in (0, 1]
    u2 = uniform(seed, sweep, site, purpose_2)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@njit(cache=True)
def inherited_antigen(mother, loss_p, sigma, seed, sweep, site, loss_purpose, noise_purpose,
                      noise_purpose_2):
    """A daughter's density of one antigen given its mother's (molecules/cell).

    Lost (0) with probability ``loss_p``; else the mother's times a log-normal factor of mean 1
    and log-sd ``sigma``, so the population mean is kept. Negative mothers have negative
    daughters. Each antigen slot draws with its own purposes.
    """
    if mother <= 0.0:
        return 0.0
    if uniform(seed, sweep, site, loss_purpose) < loss_p:
        return 0.0
    if sigma > 0.0:
        normal = standard_normal(seed, sweep, site, noise_purpose, noise_purpose_2)
        return mother * math.exp(sigma * normal - 0.5 * sigma * sigma)
    return mother


@njit(cache=True)
def ramp(value, low, high):
    """0 at or below ``low``, 1 at or above ``high``, linear in between (``low < high``)."""
    if value <= low:
        return 0.0
    if value >= high:
        return 1.0
    return (value - low) / (high - low)


@njit(cache=True)
def suppression_factor(level, half_effect):
    """Remaining fraction of CAR-T function under a suppressive factor: ``1 / (1 + S / S_half)``."""
    if half_effect <= 0.0 or level <= 0.0:
        return 1.0
    return 1.0 / (1.0 + level / half_effect)


@njit(cache=True)
def uphill_direction(site, position, field, shape, offsets):
    """Index of the neighbour with the highest field value above the site's own, or -1."""
    x, y, z = position
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
def move_cell(src, dst, cells, extra, stamp_now):
    """Move every per-cell value from ``src`` to the empty site ``dst``; ``src`` becomes empty."""
    cells[dst] = cells[src]
    if extra.shape[0] > 0:
        extra[dst] = extra[src]
    cells[dst].stamp = stamp_now
    clear_site(src, cells, extra)


@njit(cache=True)
def clear_site(site, cells, extra):
    """Make ``site`` empty and zero its per-cell values."""
    cells[site].cell_type = EMPTY
    cells[site].antigen = 0.0
    cells[site].car_t_state = EFFECTOR
    cells[site].kills = 0
    cells[site].divisions = 0
    cells[site].heading = NO_HEADING
    cells[site].engaged = 0
    cells[site].activation = 0
    cells[site].car_class = 0
    if extra.shape[0] > 0:
        extra[site].antigen_b = 0.0
        extra[site].antigen_c = 0.0
        extra[site].primed = 0


# ---------------------------------------------------------------------------------------------
# migration sweep
# ---------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def migrate_cell(site, position, cells, extra, tissue, fields, shape, offsets, move_p, persist_p,
                 params, seed, sweep, targets_left, logic):
    """One migration attempt of the cell at ``site`` (at ``position``, its (x, y, z), which the
    sweep knows without dividing); returns its site afterwards.

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
    if cell == CAR_T and targets_left and (
            params.prime_slot == C.NO_RECEPTOR or extra[site].primed > 0) and (
            has_recognised_neighbour(site, position, cells, extra, shape, offsets, params,
                                     logic)):
        return site
    n_off = offsets.shape[0]
    direction = cells[site].heading
    if direction == NO_HEADING or uniform(seed, sweep, site, C.RNG_HEADING) >= persist_p[cell]:
        direction = -1
        if (cell == CAR_T and params.chemotaxis_bias > 0.0  # (no draw spent on a zero bias)
                and uniform(seed, sweep, site, C.RNG_CHEMOTAXIS) < params.chemotaxis_bias):
            direction = uphill_direction(site, position, fields[F_CHEMOKINE], shape, offsets)
        if direction < 0:
            direction = randint(seed, sweep, site, C.RNG_HEADING_PICK, n_off)
    dst = neighbour_from(site, position[0], position[1], position[2], direction, shape, offsets)
    if dst < 0 or not is_free(dst, cells, tissue) or (
            tissue[dst] == TISSUE_STROMA
            and uniform(seed, sweep, site, C.RNG_STROMA) >= params.stroma_crossing_p):
        cells[site].heading = NO_HEADING  # blocked: turn at the next attempt
        return site
    cells[site].heading = direction
    move_cell(site, dst, cells, extra, sweep & 0xFFFF)
    return dst


# ---------------------------------------------------------------------------------------------
# interaction sweep: death, killing, exhaustion, division
# ---------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def cancer_cell_update(site, position, cells, extra, tissue, fields, shape, offsets, params, seed,
                       sweep, events, row, logic):
    """Necrosis, apoptosis or division into a free neighbour (contact inhibition); returns the
    daughter's site, or -1.

    Severe hypoxia (oxygen below ``params.necrosis_o2_mmhg``) turns the cell necrotic at a rate
    rising linearly to its maximum at ``params.necrosis_max_o2_mmhg``. Otherwise one draw
    decides: ``u < p_death``: the cell dies; ``p_death <= u < p_death + p_divide * f(O2)``: it
    divides if it has room, where ``f`` falls linearly from 1 at ``params.proliferation_o2_mmhg``
    to 0 at the necrosis threshold. The probabilities split ``1 - exp(-(death + birth) dt)`` by
    rate (competing hazards). A daughter inherits the antigen with log-normal noise, or is born
    antigen-negative with probability ``params.antigen_loss_p``. Counts go to ``events[row]``.
    ``logic`` None: the cells carry one antigen (``receptor_logic``).
    """
    oxygen = fields[F_OXYGEN, site]
    necrosis_o2 = params.necrosis_o2_mmhg
    if oxygen < necrosis_o2:
        severity = 1.0 - ramp(oxygen, params.necrosis_max_o2_mmhg, necrosis_o2)
        necrosis_p = 1.0 - math.exp(-severity * params.necrosis_max_rate_per_min * params.dt_min)
        if uniform(seed, sweep, site, C.RNG_NECROSIS) < necrosis_p:
            clear_site(site, cells, extra)
            cells[site].cell_type = NECROTIC
            cells[site].stamp = sweep & 0xFFFF
            events[row, C.E_CANCER_NECROSED] += 1
            return -1
    u = uniform(seed, sweep, site, C.RNG_DEATH)
    death_p = params.cancer_death_p
    if u < death_p:
        clear_site(site, cells, extra)
        events[row, C.E_CANCER_DIED] += 1
        return -1
    divide_p = params.cancer_divide_p * ramp(oxygen, necrosis_o2, params.proliferation_o2_mmhg)
    if u >= death_p + divide_p:
        return -1
    daughter = pick_free_neighbour(site, position, cells, tissue, shape, offsets, seed, sweep,
                                   C.RNG_DIVIDE_SITE)
    if daughter < 0:
        return -1  # contact inhibition: no room, no division
    cells[daughter].cell_type = CANCER
    linked_loss_p = params.linked_antigen_loss_p
    if linked_loss_p > 0.0 and uniform(seed, sweep, site, C.RNG_LINKED_ANTIGEN_LOSS) < (
            linked_loss_p):
        return daughter_born(daughter, cells, sweep, events, row)  # born without any antigen
    cells[daughter].antigen = inherited_antigen(
        cells[site].antigen, params.antigen_loss_p, params.antigen_inheritance_sigma, seed, sweep,
        site, C.RNG_ANTIGEN_LOSS, C.RNG_ANTIGEN_NOISE, C.RNG_ANTIGEN_NOISE_2)
    if logic is not None:  # further antigens: pruned from the plain kernel
        if params.n_antigens > 1:
            extra[daughter].antigen_b = inherited_antigen(
                extra[site].antigen_b, params.antigen_b_loss_p,
                params.antigen_b_inheritance_sigma, seed, sweep, site, C.RNG_ANTIGEN_B_LOSS,
                C.RNG_ANTIGEN_B_NOISE, C.RNG_ANTIGEN_B_NOISE_2)
        if params.n_antigens > 2:
            extra[daughter].antigen_c = inherited_antigen(
                extra[site].antigen_c, params.antigen_c_loss_p,
                params.antigen_c_inheritance_sigma, seed, sweep, site, C.RNG_ANTIGEN_C_LOSS,
                C.RNG_ANTIGEN_C_NOISE, C.RNG_ANTIGEN_C_NOISE_2)
    return daughter_born(daughter, cells, sweep, events, row)


@njit(cache=True)
def daughter_born(daughter, cells, sweep, events, row):
    """Finish a cancer daughter at ``daughter`` (its antigens set): no heading, acted in this
    sweep, counted; returns its site."""
    cells[daughter].heading = NO_HEADING
    cells[daughter].stamp = sweep & 0xFFFF
    events[row, C.E_CANCER_BORN] += 1
    return daughter


@njit(cache=True)
def car_t_update(site, position, cells, extra, tissue, fields, shape, offsets, params, seed, sweep,
                 events, row, targets_left, logic):
    """One time step of a CAR-T: death, memory, kill attempt, exhaustion, division, exit to blood.

    The CAR-T attacks its ``best_target`` if its CAR is expressed (``car_expressed``: always,
    unless an AND-gate waits for priming). Memory cells do not kill; meeting a ``recognised``
    target makes them activated effectors with a fresh division budget. An effector bound to
    nothing and not activated becomes memory with probability ``params.car_t_memory_p``. A
    CAR-T arms in synapses: until it has spent ``params.arming_steps`` bound to targets it kills
    at ``params.resting_kill_factor`` of its rate, and its time to exhaustion counts from then;
    a daughter inherits its mother's arming, not her exhaustion. The
    kill rate falls with hypoxia (to ``params.car_t_hypoxic_kill_factor`` at the necrosis
    threshold) and with the suppressive factor (``suppression_factor`` of the level times
    ``params.suppression_sensitivity``), which also shortens the engagement time to exhaustion;
    an armoured product kills ``params.armoured_kill_factor`` times faster. An unbound effector
    or memory cell next to a vessel enters the blood with probability
    ``params.intravasation_p`` (the caller adds it to the blood pool). An activated CD8 CAR-T
    that needs help (``params.needs_help``) divides with ``params.unhelped_divide_p`` unless a
    CD4 CAR-T is next to it. Counts go to ``events[row]``. Returns the site of a daughter born
    now, or -1. ``logic`` None: one antigen, one killing receptor, no AND or NOT gate and no
    help (``receptor_logic``): only that is compiled.
    """
    state = cells[site].car_t_state
    if state == EXHAUSTED:
        death_p = params.car_t_exhausted_death_p
    elif state == MEMORY:
        death_p = params.car_t_memory_death_p
    else:
        death_p = params.car_t_effector_death_p
    if uniform(seed, sweep, site, C.RNG_DEATH) < death_p:
        clear_site(site, cells, extra)
        events[row, C.E_CAR_T_DIED] += 1
        return -1

    target = -1
    # (the priming timer runs down even with no target left: car_expressed first)
    if car_expressed(site, position, cells, extra, shape, offsets, params, logic) and targets_left:
        target = best_target(site, position, cells, extra, shape, offsets, params, seed, sweep,
                             logic)
    bound = target >= 0 and recognised(cells, extra, target, params, logic)
    if state == MEMORY:
        if not bound:
            leave_for_blood(site, position, cells, extra, tissue, shape, offsets, params, seed,
                            sweep, events, row, C.E_MEMORY_TO_BLOOD)
            return -1
        state = EFFECTOR
        cells[site].car_t_state = EFFECTOR
        cells[site].kills = 0
        cells[site].engaged = 0
        cells[site].divisions = 0
        cells[site].activation = params.activation_steps
        events[row, C.E_MEMORY_REACTIVATED] += 1

    exhausted = state == EXHAUSTED
    suppression = suppression_factor(fields[F_SUPPRESSION, site] * params.suppression_sensitivity,
                                     params.suppression_half_effect)
    if target >= 0:
        if bound and cells[site].engaged < TIMER_MAX:
            cells[site].engaged += 1
        hypoxic = params.car_t_hypoxic_kill_factor
        oxygen_factor = hypoxic + (1.0 - hypoxic) * ramp(
            fields[F_OXYGEN, site], params.necrosis_o2_mmhg, params.proliferation_o2_mmhg)
        rate = (params.car_t_kill_rate_per_min * oxygen_factor * suppression
                * kill_response(cells, extra, target, params, logic)
                * params.armoured_kill_factor)
        if exhausted:
            rate *= params.exhausted_kill_factor
        if cells[site].engaged < params.arming_steps:  # not armed yet
            rate *= params.resting_kill_factor
        if uniform(seed, sweep, site, C.RNG_KILL) < 1.0 - math.exp(-rate * params.dt_min):
            killed = C.E_CANCER_KILLED if cells[target].cell_type == CANCER else C.E_NORMAL_KILLED
            events[row, killed] += 1
            clear_site(target, cells, extra)
            cells[target].stamp = sweep & 0xFFFF
            if cells[site].kills < 255:
                cells[site].kills += 1
            cells[site].activation = params.activation_steps
    if not exhausted and (
        cells[site].kills >= params.max_kills
        or cells[site].engaged >= params.exhaustion_engaged_steps * suppression
        + params.arming_steps
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
        leave_for_blood(site, position, cells, extra, tissue, shape, offsets, params, seed,
                        sweep, events, row, C.E_EFFECTOR_TO_BLOOD)
        return -1
    cells[site].activation -= 1
    if exhausted or cells[site].divisions >= params.max_divisions:
        return -1
    divide_p = params.car_t_divide_p
    if logic is not None and params.needs_help and not has_helper_neighbour(
            site, position, cells, shape, offsets):
        divide_p = params.unhelped_divide_p
    if uniform(seed, sweep, site, C.RNG_DIVIDE) >= divide_p:
        return -1
    daughter = pick_free_neighbour(site, position, cells, tissue, shape, offsets, seed, sweep,
                                   C.RNG_DIVIDE_SITE)
    if daughter < 0:
        return -1
    cells[site].divisions += 1
    cells[daughter].cell_type = CAR_T
    cells[daughter].car_t_state = EFFECTOR
    cells[daughter].kills = 0
    cells[daughter].divisions = cells[site].divisions
    cells[daughter].heading = NO_HEADING
    cells[daughter].engaged = min(cells[site].engaged, params.arming_steps)
    cells[daughter].activation = cells[site].activation
    cells[daughter].car_class = cells[site].car_class
    if logic is not None and extra.shape[0] > 0:
        extra[daughter].primed = extra[site].primed
    cells[daughter].stamp = sweep & 0xFFFF
    events[row, C.E_CAR_T_BORN] += 1
    return daughter


@njit(cache=True)
def leave_for_blood(site, position, cells, extra, tissue, shape, offsets, params, seed, sweep,
                    events, row, event):
    """Remove the CAR-T at ``site`` into the blood with probability ``params.intravasation_p`` if a
    vessel is next to it; ``events[row, event]`` counts it for the blood pool, and so does the
    per-class slot (``constants.E_CLASS_TO_BLOOD``) if ``events`` has those slots."""
    exit_p = params.intravasation_p
    if exit_p <= 0.0 or not next_to_vessel(site, position, tissue, shape, offsets):
        return
    if uniform(seed, sweep, site, C.RNG_INTRAVASATION) < exit_p:
        if events.shape[1] > N_EVENTS:
            memory = 1 if event == C.E_MEMORY_TO_BLOOD else 0
            events[row, C.E_CLASS_TO_BLOOD + 2 * cells[site].car_class + memory] += 1
        clear_site(site, cells, extra)
        cells[site].stamp = sweep & 0xFFFF
        events[row, event] += 1


@njit(cache=True, inline="always")
def necrotic_update(site, cells, extra, params, seed, sweep, events, row):
    """Necrotic debris is cleared (the site becomes empty) with ``params.necrotic_clearance_p``."""
    if uniform(seed, sweep, site, C.RNG_DEATH) < params.necrotic_clearance_p:
        clear_site(site, cells, extra)
        cells[site].stamp = sweep & 0xFFFF
        events[row, C.E_NECROTIC_CLEARED] += 1


@njit(cache=True, parallel=PRANGE_ONLY)
def sweep_lattice(cells, extra, tissue, fields, shape, offsets, move_p, persist_p, params, seed,
                  sweep, events, interaction, motile_rows, targets_left, logic):
    """Visit every cell once, row class by row class, rows of a class in parallel.

    ``interaction=False``: a migration sweep (each motile cell gets one migration attempt).
    ``interaction=True``: cancer cells die, turn necrotic or divide; CAR-T die, kill, exhaust,
    divide, turn memory or leave for the blood; necrotic debris is cleared; normal cells are
    passive targets (no turnover within the simulated weeks). ``tissue`` is the fixed site
    structure (``TISSUE_*``), ``fields`` the (N_FIELDS, n_sites) field values the cells sense,
    ``params`` the array of ``constants.KERNEL_PARAMS_DTYPE`` records the per-cell helpers read
    by field name: a CAR-T reads ``params[car_class]`` (its product and subset), every other
    cell ``params[0]``. Event counts are kept per row, then summed, so they too
    are independent of threads.

    ``motile_rows`` (uint8 per row ``y + ny * z``) is nonzero for every row that may hold a
    motile cell (``move_p > 0``; ``mark_motile_rows``). A migration sweep skips the other rows,
    which hold nothing it would touch (sessile tissue is most of a solid tumour), and marks the
    row a cell moves into. An interaction sweep visits every row anyway: it sets each row's mark
    to whether the row held a motile cell, and marks the row of each motile daughter.

    ``logic`` (``receptor_logic``): None compiles the sweep for plain CARs only (one antigen,
    one killing receptor, no AND or NOT gate, no help), True for every scenario.
    """
    nz, ny, nx = shape
    stamp_now = sweep & 0xFFFF
    n_classes = n_row_classes(shape)
    order = class_order(seed, sweep, n_classes)
    step_z = 3 if nz > 1 else 1
    step_y = 3 if ny > 1 else 1
    rows_y_max = (ny + step_y - 1) // step_y
    rows_z_max = (nz + step_z - 1) // step_z
    row_events = np.zeros((rows_z_max * rows_y_max, events.shape[0]), dtype=np.int64)
    for c in range(n_classes):
        cz, cy = class_origin(order[c], shape)
        rows_y = (ny - cy + step_y - 1) // step_y
        rows_z = (nz - cz + step_z - 1) // step_z
        for r in prange(rows_z * rows_y):
            z = cz + step_z * (r // rows_y)
            y = cy + step_y * (r % rows_y)
            row_index = y + ny * z
            # the parallel loop's counter is typed uint64 in one compiled copy of the body and
            # int64 in the other; a fixed type spares compiling car_t_update twice (~4 s)
            slot = np.int64(r)
            if not interaction and motile_rows[row_index] == 0:
                continue
            row = nx * row_index
            backwards = uniform(seed, sweep, row, C.RNG_ROW_DIRECTION) < 0.5
            p = params[0]  # bound in the row: a parallel loop cannot capture a record
            # one loop per kind of sweep: a flag tested per site made the sweeps ~10 % slower
            # (and literal flags compile this function twice)
            if not interaction:
                for i in range(nx):
                    x = nx - 1 - i if backwards else i
                    site = row + x
                    # skip sessile cells (EMPTY too: its move probability is 0) and cells that
                    # already moved in this sweep
                    if move_p[cells[site].cell_type] <= 0.0 or cells[site].stamp == stamp_now:
                        continue
                    cells[site].stamp = stamp_now
                    # a CAR-T reads its class's record (its receptors); other cells have class 0
                    moved_to = migrate_cell(site, (x, y, z), cells, extra, tissue, fields, shape,
                                            offsets, move_p, persist_p,
                                            params[cells[site].car_class], seed, sweep,
                                            targets_left, logic)
                    if not row <= moved_to < row + nx:
                        motile_rows[moved_to // nx] = 1  # it left the row
                continue
            row_has_motile = False
            for i in range(nx):
                x = nx - 1 - i if backwards else i
                site = row + x
                cell = cells[site].cell_type
                motile = move_p[cell] > 0.0
                row_has_motile = row_has_motile or motile
                # skip empty sites, normal cells (passive) and cells born in this sweep
                if cell == EMPTY or cell == NORMAL or cells[site].stamp == stamp_now:
                    continue
                cells[site].stamp = stamp_now
                position = (x, y, z)
                moved_to = -1  # the site a motile daughter was born on
                if cell == CANCER:
                    moved_to = cancer_cell_update(site, position, cells, extra, tissue, fields,
                                                  shape, offsets, p, seed, sweep, row_events,
                                                  slot, logic)
                elif cell == CAR_T:
                    moved_to = car_t_update(site, position, cells, extra, tissue, fields, shape,
                                            offsets, params[cells[site].car_class], seed, sweep,
                                            row_events, slot, targets_left, logic)
                else:
                    necrotic_update(site, cells, extra, p, seed, sweep, row_events, slot)
                if motile and moved_to >= 0 and not row <= moved_to < row + nx:
                    motile_rows[moved_to // nx] = 1  # it left the row
            motile_rows[row_index] = row_has_motile
    # summed in a loop: numpy's sum along an axis costs ~2 s of compile time here
    for slot in range(row_events.shape[0]):
        for event in range(events.shape[0]):
            events[event] += row_events[slot, event]


@njit(cache=True)
def migration_sweep(cells, extra, tissue, fields, shape, offsets, move_p, persist_p, params,
                    seed, sweep):
    """Give every motile cell one migration attempt (every row scanned), compiled for every
    scenario (``logic`` True)."""
    sweep_lattice(cells, extra, tissue, fields, shape, offsets, move_p, persist_p, params, seed,
                  sweep, np.zeros(N_EVENTS, dtype=np.int64), False,
                  np.ones(shape[0] * shape[1], dtype=np.uint8), holds_target(cells), True)


@njit(cache=True)
def interaction_sweep(cells, extra, tissue, fields, shape, offsets, params, seed, sweep, events):
    """Death, killing, exhaustion and division for every cell; counts go to ``events``
    (compiled for every scenario: ``logic`` True)."""
    no_motion = np.zeros(N_CELL_TYPES)
    sweep_lattice(cells, extra, tissue, fields, shape, offsets, no_motion, no_motion, params,
                  seed, sweep, events, True, np.zeros(shape[0] * shape[1], dtype=np.uint8),
                  holds_target(cells), True)


@njit(cache=True)
def holds_target(cells):
    """True if any site holds a cancer or normal cell (a potential CAR-T target); stops at the
    first, so a lattice with tissue in it costs a few sites, a cleared dish one pass."""
    for site in range(cells.shape[0]):
        if is_target(cells[site].cell_type):
            return True
    return False


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


#: ``advance``'s ``logic`` when the caller leaves it to ``advance``
UNKNOWN = object()


def receptor_logic(params: np.ndarray, extra: np.ndarray) -> bool | None:
    """What the kernels compile for a scenario: None when every CAR-T class (``params``) is a
    plain CAR on cells with one antigen (``extra`` empty: one killing receptor, no priming or
    inhibitory receptor, no need of CD4 help), True otherwise.

    numba compiles a kernel once per type of this argument, and with None prunes the branches
    of several antigens and receptor logic before typing them: the scenarios most users run
    compile a smaller kernel on a machine's first run, and a scenario with receptor logic
    compiles its own kernel when it first needs it. Both kernels give a plain CAR the same
    results (tests/test_invariants.py). About 10 us: ``advance`` takes it from a caller that
    steps one scenario many times."""
    receptors = ("second_kill_slot", "third_kill_slot", "prime_slot", "veto_slot")
    if (extra.shape[0] == 0 and all((params[name] == C.NO_RECEPTOR).all() for name in receptors)
            and not params["needs_help"].any() and (params["n_antigens"] <= 1).all()):
        return None
    return True


def advance(lattice: Lattice, params: np.ndarray, move_p: np.ndarray, persist_p: np.ndarray,
            seed: int, first_sweep: int, n_steps: int, n_move_substeps: int,
            events: np.ndarray, motile_rows: np.ndarray, logic: bool | None = UNKNOWN) -> int:
    """Advance ``lattice`` (its cells and extra records, in place) ``n_steps`` time steps;
    returns the next free sweep number. The public entry of the lattice kernel: it checks the
    arrays, then runs the compiled ``advance_kernel`` on them.

    Each step is ``n_move_substeps`` migration sweeps and one interaction sweep; sweep numbers
    run on from ``first_sweep`` and key every random draw (``seed``). ``params``: one
    ``KERNEL_PARAMS_DTYPE`` record per CAR-T class (per-step probabilities); ``move_p`` and
    ``persist_p``: per cell type, the probability of a move per migration sweep and of keeping
    the heading. ``events`` (int64, at least ``N_EVENTS``) accumulates counts; ``motile_rows``
    (uint8, one per row) marks the rows that may hold a motile cell (``sweep_lattice``).
    The fields are held fixed over the call (the caller updates them between time steps).
    ``logic``: ``receptor_logic(params, lattice.extra)``, worked out here unless given.
    """
    if lattice.cells.dtype != C.CELL_DTYPE or lattice.extra.dtype != C.CELL_EXTRA_DTYPE:
        raise TypeError("advance: the lattice's records are not CELL_DTYPE / CELL_EXTRA_DTYPE")
    if params.dtype != C.KERNEL_PARAMS_DTYPE or params.ndim != 1 or len(params) == 0:
        raise TypeError("advance: params must be a 1-D KERNEL_PARAMS_DTYPE array (a record "
                        "per CAR-T class)")
    if move_p.shape != (N_CELL_TYPES,) or persist_p.shape != (N_CELL_TYPES,):
        raise ValueError(f"advance: move_p and persist_p need one value per cell type "
                         f"({N_CELL_TYPES})")
    if events.dtype != np.int64 or len(events) < N_EVENTS:
        raise ValueError(f"advance: events must be int64 with at least {N_EVENTS} counters")
    if motile_rows.dtype != np.uint8 or len(motile_rows) != lattice.shape[0] * lattice.shape[1]:
        raise ValueError("advance: motile_rows must be uint8, one per row of the lattice")
    if n_steps < 0 or n_move_substeps < 0:
        raise ValueError(f"advance: n_steps and n_move_substeps must be >= 0 (got {n_steps}, "
                         f"{n_move_substeps})")
    return advance_kernel(lattice.cells, lattice.extra, lattice.tissue, lattice.fields,
                          lattice.shape, lattice.offsets, move_p, persist_p, params, seed,
                          first_sweep, n_steps, n_move_substeps, events, motile_rows,
                          receptor_logic(params, lattice.extra) if logic is UNKNOWN else logic)


@njit(cache=True)
def advance_kernel(cells, extra, tissue, fields, shape, offsets, move_p, persist_p, params,
                   seed, first_sweep, n_steps, n_move_substeps, events, motile_rows, logic):
    """``advance`` on the lattice's arrays (checked there); ``logic`` from ``receptor_logic``."""
    sweep = first_sweep
    for _ in range(n_steps):
        # no cancer or normal cell anywhere (a cleared dish): CAR-T skip their target scans,
        # which would find nothing (no draw is spent in them); none can appear within a step
        targets_left = holds_target(cells)
        for substep in range(n_move_substeps + 1):
            # one call site with a computed flag: numba compiles a function once per distinct
            # literal argument, and this one (parallel, everything inlined) takes ~10 s
            interaction = substep == n_move_substeps
            sweep_lattice(cells, extra, tissue, fields, shape, offsets, move_p, persist_p,
                          params, seed, sweep, events, interaction, motile_rows, targets_left,
                          logic)
            sweep += 1
    return sweep


@njit(cache=True)
def extravasate(cells, extra, tissue, shape, offsets, vessel_sites, n_cells, first_cell, state,
                car_class, seed, sweep, motile_rows):
    """Place up to ``n_cells`` CAR-T of ``state`` and ``car_class`` from the blood next to
    random vessel sites.

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
        vx, vy, vz = site_position(vessel, shape)
        n_free = count_free_neighbours(vessel, (vx, vy, vz), cells, tissue, shape, offsets)
        if n_free == 0:
            continue
        chosen = randint(seed, sweep, i, C.RNG_EXTRAVASATION_SITE, n_free)
        for k in range(offsets.shape[0]):
            j = neighbour_from(vessel, vx, vy, vz, k, shape, offsets)
            if j >= 0 and is_free(j, cells, tissue):
                if chosen == 0:
                    clear_site(j, cells, extra)
                    cells[j].cell_type = CAR_T
                    cells[j].car_t_state = state
                    cells[j].car_class = car_class
                    cells[j].stamp = (sweep - 1) & 0xFFFF
                    motile_rows[j // shape[2]] = 1
                    placed += 1
                    break
                chosen -= 1
    return placed


def census(cells: np.ndarray, extra: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Counts of the lattice content, in the order of ``constants.CENSUS_NAMES`` (slots
    ``constants.CENSUS_*``).

    A cancer cell is antigen-high, -low or -negative by ``products_antigen_class`` (as the
    scenario's products see it); a normal cell is antigen-positive if it carries any antigen a
    product's killing receptors bind.
    """
    return census_kernel(cells, extra, params, receptor_logic(params, extra))


@njit(cache=True)
def census_kernel(cells, extra, params, logic):
    """``census``, compiled for ``logic`` (``receptor_logic``)."""
    counts = np.zeros(N_CENSUS, dtype=np.int64)
    for site in range(cells.shape[0]):
        cell = cells[site].cell_type
        if cell == CANCER:
            counts[C.CENSUS_TUMOR_CELLS] += 1
            antigen_class = products_antigen_class(cells, extra, site, params, logic)
            if antigen_class == C.ANTIGEN_NEGATIVE:
                counts[C.CENSUS_TUMOR_ANTIGEN_NEGATIVE] += 1
            elif antigen_class == C.ANTIGEN_HIGH:
                counts[C.CENSUS_TUMOR_ANTIGEN_HIGH] += 1
            else:
                counts[C.CENSUS_TUMOR_ANTIGEN_LOW] += 1
        elif cell == NORMAL:
            counts[C.CENSUS_NORMAL_CELLS] += 1
            if products_antigen_class(cells, extra, site, params, logic) != C.ANTIGEN_NEGATIVE:
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


@njit(cache=True)
def products_antigen_class(cells, extra, j, params, logic):
    """The antigen of the cell at ``j`` as the scenario's products see it: the highest
    ``car_antigen_class`` over the products' records (``params[0]``, ``params[N_SUBSETS]``,
    ...; a product's subsets share its receptors). High if some product recognises it,
    negative if it carries no antigen any product binds."""
    best = C.ANTIGEN_NEGATIVE
    for k in range(0, params.shape[0], C.N_SUBSETS):
        best = max(best, car_antigen_class(cells, extra, j, params[k], logic))
    return best


@njit(cache=True, inline="always")
def car_antigen_class(cells, extra, j, params, logic):
    """The antigen of the cell at ``j`` as the CAR sees it: ``constants.ANTIGEN_NEGATIVE``
    (none of its killing receptors' antigens), ``ANTIGEN_HIGH`` (``recognised``) or
    ``ANTIGEN_LOW`` (in between)."""
    if not carries_car_antigen(cells, extra, j, params, logic):
        return C.ANTIGEN_NEGATIVE
    return C.ANTIGEN_HIGH if recognised(cells, extra, j, params, logic) else C.ANTIGEN_LOW


@njit(cache=True, inline="always")
def carries_car_antigen(cells, extra, j, params, logic):
    """True if the cell at ``j`` carries any antigen a killing receptor of the CAR binds."""
    if antigen_at(cells, extra, j, params.kill_slot) > 0.0:
        return True
    if logic is None:
        return False
    slot = params.second_kill_slot
    if slot != C.NO_RECEPTOR and antigen_at(cells, extra, j, slot) > 0.0:
        return True
    slot = params.third_kill_slot
    return slot != C.NO_RECEPTOR and antigen_at(cells, extra, j, slot) > 0.0


@njit(cache=True)
def antigen_phenotypes(cells, extra, n_antigens):
    """Cancer (row 0) and normal (row 1) cells by the set of antigens they carry: column
    ``mask`` counts cells carrying exactly the slots whose bits are set in ``mask``
    (bit k: antigen slot k > 0), for the first ``n_antigens`` slots."""
    counts = np.zeros((2, 1 << n_antigens), dtype=np.int64)
    for site in range(cells.shape[0]):
        cell = cells[site].cell_type
        if cell != CANCER and cell != NORMAL:
            continue
        mask = 0
        for slot in range(n_antigens):
            if antigen_at(cells, extra, site, slot) > 0.0:
                mask |= 1 << slot
        counts[0 if cell == CANCER else 1, mask] += 1
    return counts


@njit(cache=True)
def car_t_by_class(cells, n_classes):
    """CAR-T on the lattice per class (``car_class``, 0 to ``n_classes - 1``)."""
    counts = np.zeros(n_classes, dtype=np.int64)
    for site in range(cells.shape[0]):
        if cells[site].cell_type == CAR_T:
            counts[cells[site].car_class] += 1
    return counts


def antigen_classes(cells: np.ndarray, extra: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Per site, ``products_antigen_class`` as uint8; ``ANTIGEN_NEGATIVE`` on empty sites."""
    return antigen_classes_kernel(cells, extra, params, receptor_logic(params, extra))


@njit(cache=True)
def antigen_classes_kernel(cells, extra, params, logic):
    """``antigen_classes``, compiled for ``logic`` (``receptor_logic``)."""
    classes = np.zeros(cells.shape[0], dtype=np.uint8)
    for site in range(cells.shape[0]):
        classes[site] = products_antigen_class(cells, extra, site, params, logic)
    return classes


#: the compiled functions the model calls, through ``advance`` or directly; each carries its
#: callees in its compiled code (``engine.jit`` checks numba's cache for them)
COMPILED_ENTRY_POINTS = (advance_kernel, census_kernel, extravasate)
