"""One test per biological / lattice rule, on tiny lattices, calling the numba kernels directly.

Every test runs twice (``lattice_dimensions``): on a 2D lattice, and on a 3D one three layers
deep with the cells in its middle layer (26 neighbours instead of 8).
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import (
    make_lattice,
    motility_arrays,
    neighbour_of,
    new_events,
    numpy_census,
    params_with,
    place,
    site_of,
    sites_of_type,
    xyz_of,
)
from simulation.engine import kernel
from simulation.engine.constants import (
    CANCER,
    CAR_T,
    E_CANCER_BORN,
    E_CANCER_DIED,
    E_CANCER_KILLED,
    E_CAR_T_BORN,
    E_CAR_T_DIED,
    E_CAR_T_EXHAUSTED,
    E_NORMAL_KILLED,
    EFFECTOR,
    EMPTY,
    EXHAUSTED,
    MEMORY,
    NECROTIC,
    NO_HEADING,
    NORMAL,
    N_EVENTS,
)

HALF_MAX = 2000.0
HIGH_ANTIGEN = 10 * HALF_MAX  # response 100/101 at hill 2
HUGE_KILL_RATE = 1e6  # per min: kill probability 1 - exp(-~1e6 * dt) == 1.0 in float64
SEED = 12345

pytestmark = pytest.mark.usefixtures("lattice_dimensions")


def quiet_params(overrides: dict[str, float] | None = None) -> np.ndarray:
    """Default parameters with every stochastic event switched off (then ``overrides``, by field
    name, applied)."""
    base = {
        "car_t_kill_rate_per_min": 0.0,
        "antigen_half_max": HALF_MAX,
        "hill_coefficient": 2.0,
        "max_kills": 10,
        "max_divisions": 10,
        "exhaustion_engaged_steps": 10_000,
        "activation_steps": 40,
        "dt_min": 6.0,
        "car_t_divide_p": 0.0,
        "car_t_effector_death_p": 0.0,
        "car_t_exhausted_death_p": 0.0,
        "cancer_divide_p": 0.0,
        "cancer_death_p": 0.0,
        "antigen_inheritance_sigma": 0.0,
        "exhausted_kill_factor": 0.2,
        "car_t_memory_p": 0.0,
    }
    base.update(overrides or {})
    return params_with(base)


def interact(lattice, params, sweep=0, events=None, seed=SEED):
    """One interaction sweep; returns the event vector."""
    events = new_events() if events is None else events
    kernel.interaction_sweep(lattice.cells, lattice.extra, lattice.tissue, lattice.fields, lattice.shape, lattice.offsets, params, seed, sweep,
                             events)
    return events


def migrate(lattice, params, move_p, persist_p, sweep=0, seed=SEED):
    kernel.migration_sweep(lattice.cells, lattice.extra, lattice.tissue, lattice.fields, lattice.shape, lattice.offsets, move_p, persist_p,
                           params, seed, sweep)


def surround(lattice, x, y, cell_type=NORMAL, antigen=0.0, skip=()):
    """Occupy every in-lattice neighbour of (x, y) (in its layer and, in 3D, the layers above
    and below) except the (dx, dy) offsets in ``skip`` (skipped in every layer)."""
    nz, ny, nx = lattice.shape
    z = nz // 2
    filled = []
    for dx, dy, dz in lattice.offsets:
        if (dx, dy) in skip:
            continue
        xx, yy, zz = x + dx, y + dy, z + dz
        if 0 <= xx < nx and 0 <= yy < ny and 0 <= zz < nz:
            filled.append(place(lattice, xx, yy, cell_type, antigen, z=zz))
    return filled


# ---------------------------------------------------------------------------------------------
# killing
# ---------------------------------------------------------------------------------------------
def test_car_t_kills_adjacent_antigen_positive_cancer_cell_and_counts_it():
    lat = make_lattice(9, 9)
    t = place(lat, 4, 4, CAR_T)
    c = place(lat, 5, 4, CANCER, HIGH_ANTIGEN)
    params = quiet_params({"car_t_kill_rate_per_min": HUGE_KILL_RATE, "activation_steps": 40})

    events = interact(lat, params)

    assert lat.cells["cell_type"][c] == EMPTY
    assert lat.cells["antigen"][c] == 0.0
    assert lat.cells["kills"][t] == 1
    assert events[E_CANCER_KILLED] == 1
    assert events[E_NORMAL_KILLED] == 0
    # a kill activates the CAR-T (timer set, then one step of it used in the same update)
    assert lat.cells["activation"][t] == 40 - 1
    # antigen >= half-max: the contact counts as one engaged step
    assert lat.cells["engaged"][t] == 1
    assert lat.cells["car_t_state"][t] == EFFECTOR


def test_antigen_negative_target_is_never_killed_even_at_huge_kill_rate():
    lat = make_lattice(7, 7)
    t = place(lat, 3, 3, CAR_T)
    c = place(lat, 4, 3, CANCER, 0.0)
    n = place(lat, 2, 3, NORMAL, 0.0)
    params = quiet_params({"car_t_kill_rate_per_min": HUGE_KILL_RATE})
    events = new_events()
    for sweep in range(300):
        interact(lat, params, sweep=sweep, events=events)
    assert lat.cells["cell_type"][c] == CANCER
    assert lat.cells["cell_type"][n] == NORMAL
    assert lat.cells["kills"][t] == 0
    assert lat.cells["engaged"][t] == 0
    assert events.tolist() == [0] * N_EVENTS


def test_car_t_prefers_positive_target_over_negative_one():
    lat = make_lattice(7, 7)
    place(lat, 3, 3, CAR_T)
    neg = place(lat, 2, 3, CANCER, 0.0)
    pos = place(lat, 4, 3, CANCER, HIGH_ANTIGEN)
    events = interact(lat, quiet_params({"car_t_kill_rate_per_min": HUGE_KILL_RATE}))
    assert lat.cells["cell_type"][pos] == EMPTY
    assert lat.cells["cell_type"][neg] == CANCER
    assert events[E_CANCER_KILLED] == 1


def test_normal_cell_carrying_antigen_is_killed_and_counted_as_normal_kill():
    lat = make_lattice(7, 7)
    t = place(lat, 3, 3, CAR_T)
    n = place(lat, 3, 4, NORMAL, HIGH_ANTIGEN)
    events = interact(lat, quiet_params({"car_t_kill_rate_per_min": HUGE_KILL_RATE}))
    assert lat.cells["cell_type"][n] == EMPTY
    assert events[E_NORMAL_KILLED] == 1
    assert events[E_CANCER_KILLED] == 0
    assert lat.cells["kills"][t] == 1


def test_zero_kill_rate_never_kills_positive_target():
    lat = make_lattice(7, 7)
    place(lat, 3, 3, CAR_T)
    c = place(lat, 4, 4, CANCER, HIGH_ANTIGEN)
    events = new_events()
    for sweep in range(50):
        interact(lat, quiet_params({"car_t_kill_rate_per_min": 0.0}), sweep=sweep, events=events)
    assert lat.cells["cell_type"][c] == CANCER
    assert events[E_CANCER_KILLED] == 0


def test_exhausted_car_t_with_zero_kill_factor_does_not_kill():
    lat = make_lattice(7, 7)
    place(lat, 3, 3, CAR_T, car_t_state=EXHAUSTED)
    c = place(lat, 4, 3, CANCER, HIGH_ANTIGEN)
    params = quiet_params({"car_t_kill_rate_per_min": HUGE_KILL_RATE,
                           "exhausted_kill_factor": 0.0})
    events = new_events()
    for sweep in range(50):
        interact(lat, params, sweep=sweep, events=events)
    assert lat.cells["cell_type"][c] == CANCER
    assert events[E_CANCER_KILLED] == 0


def test_best_target_picks_the_neighbour_with_most_antigen():
    lat = make_lattice(7, 7)
    t = place(lat, 3, 3, CAR_T)
    place(lat, 2, 2, CANCER, 100.0)
    best = place(lat, 4, 4, NORMAL, 5000.0)
    place(lat, 3, 2, CANCER, 300.0)
    place(lat, 2, 3, CAR_T)  # CAR-T are not targets
    picked = {kernel.best_target(t, kernel.site_position(t, lat.shape), lat.cells, lat.extra, lat.shape, lat.offsets, quiet_params()[0], SEED, sweep, None)
              for sweep in range(64)}
    assert picked == {best}


def test_best_target_returns_minus_one_without_antigen_positive_neighbour():
    lat = make_lattice(7, 7)
    t = place(lat, 3, 3, CAR_T)
    place(lat, 2, 2, CANCER, 0.0)
    place(lat, 4, 4, NORMAL, 0.0)
    place(lat, 5, 5, CANCER, 9000.0)  # not a neighbour
    for sweep in range(16):
        assert kernel.best_target(t, kernel.site_position(t, lat.shape), lat.cells, lat.extra, lat.shape, lat.offsets, quiet_params()[0], SEED, sweep, None) == -1


def test_best_target_breaks_ties_randomly_between_equal_neighbours():
    lat = make_lattice(7, 7)
    t = place(lat, 3, 3, CAR_T)
    a = place(lat, 2, 3, CANCER, 3000.0)
    b = place(lat, 4, 3, CANCER, 3000.0)
    picked = [kernel.best_target(t, kernel.site_position(t, lat.shape), lat.cells, lat.extra, lat.shape, lat.offsets, quiet_params()[0], SEED, s, None) for s in range(200)]
    assert set(picked) == {a, b}


# ---------------------------------------------------------------------------------------------
# antigen response
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hill", [0.5, 1.0, 2.0, 4.5, 10.0])
def test_antigen_response_zero_half_and_monotonic(hill):
    half = 2000.0
    assert kernel.antigen_response(0.0, half, hill) == 0.0
    assert kernel.antigen_response(-5.0, half, hill) == 0.0
    assert kernel.antigen_response(half, half, hill) == pytest.approx(0.5, abs=1e-15)
    grid = np.geomspace(1.0, 1e6, 200)
    values = np.array([kernel.antigen_response(a, half, hill) for a in grid])
    assert np.all(np.diff(values) >= 0)  # monotonic (float64 saturates at 1.0 for steep hills)
    resolved = (values > 0) & (values < 1 - 1e-9)
    assert resolved.sum() > 20
    assert np.all(np.diff(values[resolved]) > 0)  # strictly increasing where not saturated
    assert np.all((values > 0) & (values <= 1))
    assert values[0] < 0.5 < values[-1]


# ---------------------------------------------------------------------------------------------
# cancer division, contact inhibition, death
# ---------------------------------------------------------------------------------------------
def test_fully_surrounded_cancer_cell_never_divides():
    lat = make_lattice(7, 7)
    c = place(lat, 3, 3, CANCER, 1000.0)
    surround(lat, 3, 3)
    params = quiet_params({"cancer_divide_p": 1.0})
    before = lat.cells.copy()
    events = new_events()
    for sweep in range(100):
        interact(lat, params, sweep=sweep, events=events)
    assert events[E_CANCER_BORN] == 0
    assert np.array_equal(lat.cells["cell_type"], before["cell_type"])
    assert lat.cells["cell_type"][c] == CANCER


def test_corner_cancer_cell_with_occupied_neighbours_never_divides():
    lat = make_lattice(5, 5)
    place(lat, 0, 0, CANCER, 1000.0)
    # closed boundary: a corner has 3 neighbours in 2D, 3 + 2 x 4 in a block three layers deep
    assert len(surround(lat, 0, 0)) == (3 if lat.shape[0] == 1 else 11)
    events = new_events()
    for sweep in range(100):
        interact(lat, quiet_params({"cancer_divide_p": 1.0}), sweep=sweep, events=events)
    assert events[E_CANCER_BORN] == 0
    assert len(sites_of_type(lat, CANCER)) == 1


def test_cancer_cell_with_one_free_neighbour_divides_into_it():
    lat = make_lattice(7, 7)
    c = place(lat, 3, 3, CANCER, 1234.0)
    surround(lat, 3, 3, skip={(1, 1)})
    free = site_of(lat, 4, 4)
    events = interact(lat, quiet_params({"cancer_divide_p": 1.0}))
    assert events[E_CANCER_BORN] == 1
    assert lat.cells["cell_type"][free] == CANCER
    assert lat.cells["cell_type"][c] == CANCER
    # sigma = 0: the daughter inherits the mother's antigen exactly
    assert lat.cells["antigen"][free] == np.float32(1234.0)
    assert lat.cells["heading"][free] == NO_HEADING


def test_cancer_daughter_antigen_varies_with_inheritance_noise():
    daughters = []
    for sweep in range(20):
        lat = make_lattice(5, 5)
        place(lat, 2, 2, CANCER, 1000.0)
        events = interact(lat, quiet_params({"cancer_divide_p": 1.0,
                                             "antigen_inheritance_sigma": 0.3}), sweep=sweep)
        assert events[E_CANCER_BORN] == 1
        cancer = sites_of_type(lat, CANCER)
        assert len(cancer) == 2
        daughters.append(lat.cells["antigen"][cancer[cancer != site_of(lat, 2, 2)][0]])
    daughters = np.array(daughters)
    assert np.all(daughters > 0)
    assert len(np.unique(daughters)) == len(daughters)


def test_lone_cancer_cell_with_divide_p_one_divides_every_sweep_until_crowded():
    lat = make_lattice(5, 5)
    place(lat, 2, 2, CANCER, 500.0)
    events = interact(lat, quiet_params({"cancer_divide_p": 1.0}), sweep=0)
    assert events[E_CANCER_BORN] == 1
    assert len(sites_of_type(lat, CANCER)) == 2


def test_cancer_death_with_p_one_empties_site():
    lat = make_lattice(5, 5)
    c = place(lat, 2, 2, CANCER, 500.0)
    events = interact(lat, quiet_params({"cancer_death_p": 1.0, "cancer_divide_p": 1.0}))
    assert lat.cells["cell_type"][c] == EMPTY
    assert lat.cells["antigen"][c] == 0.0
    assert events[E_CANCER_DIED] == 1
    assert events[E_CANCER_BORN] == 0  # dead cells do not divide


# ---------------------------------------------------------------------------------------------
# CAR-T exhaustion, division, death
# ---------------------------------------------------------------------------------------------
def test_car_t_reaching_max_kills_becomes_exhausted():
    lat = make_lattice(7, 7)
    t = place(lat, 3, 3, CAR_T, kills=2)
    place(lat, 4, 3, CANCER, HIGH_ANTIGEN)
    events = interact(lat, quiet_params({"car_t_kill_rate_per_min": HUGE_KILL_RATE,
                                         "max_kills": 3}))
    assert lat.cells["kills"][t] == 3
    assert lat.cells["car_t_state"][t] == EXHAUSTED
    assert events[E_CAR_T_EXHAUSTED] == 1
    assert events[E_CANCER_KILLED] == 1


def test_car_t_below_max_kills_stays_effector():
    lat = make_lattice(7, 7)
    t = place(lat, 3, 3, CAR_T, kills=1)
    place(lat, 4, 3, CANCER, HIGH_ANTIGEN)
    events = interact(lat, quiet_params({"car_t_kill_rate_per_min": HUGE_KILL_RATE,
                                         "max_kills": 3}))
    assert lat.cells["kills"][t] == 2
    assert lat.cells["car_t_state"][t] == EFFECTOR
    assert events[E_CAR_T_EXHAUSTED] == 0


def test_car_t_engaged_for_threshold_steps_becomes_exhausted():
    lat = make_lattice(7, 7)
    t = place(lat, 3, 3, CAR_T)
    place(lat, 4, 3, CANCER, HALF_MAX)  # recognised (>= half-max) but never killed
    params = quiet_params({"car_t_kill_rate_per_min": 0.0, "exhaustion_engaged_steps": 5})
    events = new_events()
    states = []
    for sweep in range(7):
        interact(lat, params, sweep=sweep, events=events)
        states.append(int(lat.cells["car_t_state"][t]))
    assert states == [EFFECTOR] * 4 + [EXHAUSTED] * 3
    assert events[E_CAR_T_EXHAUSTED] == 1
    assert lat.cells["engaged"][t] == 7


def test_exhausted_car_t_without_activation_does_not_divide():
    lat = make_lattice(7, 7)
    t = place(lat, 3, 3, CAR_T, car_t_state=EXHAUSTED, activation=0)
    events = new_events()
    for sweep in range(50):
        interact(lat, quiet_params({"car_t_divide_p": 1.0}), sweep=sweep, events=events)
    assert events[E_CAR_T_BORN] == 0
    assert sites_of_type(lat, CAR_T).tolist() == [t]


def test_exhausted_car_t_with_activation_does_not_divide_but_uses_timer():
    lat = make_lattice(7, 7)
    t = place(lat, 3, 3, CAR_T, car_t_state=EXHAUSTED, activation=5)
    events = new_events()
    for sweep in range(3):
        interact(lat, quiet_params({"car_t_divide_p": 1.0}), sweep=sweep, events=events)
    assert events[E_CAR_T_BORN] == 0
    assert lat.cells["activation"][t] == 2


def test_effector_car_t_without_activation_does_not_divide():
    lat = make_lattice(7, 7)
    place(lat, 3, 3, CAR_T, activation=0)
    events = new_events()
    for sweep in range(50):
        interact(lat, quiet_params({"car_t_divide_p": 1.0}), sweep=sweep, events=events)
    assert events[E_CAR_T_BORN] == 0
    assert len(sites_of_type(lat, CAR_T)) == 1


def test_activated_car_t_divides_and_daughter_inherits_division_count():
    lat = make_lattice(7, 7)
    t = place(lat, 3, 3, CAR_T, activation=5, divisions=2, kills=4, engaged=7)
    events = interact(lat, quiet_params({"car_t_divide_p": 1.0, "max_divisions": 10}))
    assert events[E_CAR_T_BORN] == 1
    car_t = sites_of_type(lat, CAR_T)
    assert len(car_t) == 2
    daughter = int(car_t[car_t != t][0])
    offset = np.subtract(xyz_of(lat, daughter), xyz_of(lat, t))
    assert np.abs(offset).max() == 1  # born into a neighbouring site
    assert lat.cells["divisions"][t] == 3
    assert lat.cells["divisions"][daughter] == lat.cells["divisions"][t]
    assert lat.cells["activation"][t] == 4
    assert lat.cells["activation"][daughter] == 4
    assert lat.cells["kills"][daughter] == 0
    assert lat.cells["engaged"][daughter] == 0
    assert lat.cells["car_t_state"][daughter] == EFFECTOR
    assert lat.cells["kills"][t] == 4  # the mother keeps her history


def test_car_t_at_max_divisions_does_not_divide():
    lat = make_lattice(7, 7)
    place(lat, 3, 3, CAR_T, activation=50, divisions=4)
    events = new_events()
    for sweep in range(20):
        interact(lat, quiet_params({"car_t_divide_p": 1.0, "max_divisions": 4}), sweep=sweep,
                 events=events)
    assert events[E_CAR_T_BORN] == 0


def test_surrounded_activated_car_t_does_not_divide():
    lat = make_lattice(7, 7)
    place(lat, 3, 3, CAR_T, activation=50)
    surround(lat, 3, 3)
    events = new_events()
    for sweep in range(20):
        interact(lat, quiet_params({"car_t_divide_p": 1.0}), sweep=sweep, events=events)
    assert events[E_CAR_T_BORN] == 0


def test_car_t_death_with_p_one_empties_site():
    lat = make_lattice(7, 7)
    t = place(lat, 3, 3, CAR_T, kills=3, divisions=2, activation=9, engaged=4, heading=2)
    c = place(lat, 4, 3, CANCER, HIGH_ANTIGEN)
    events = interact(lat, quiet_params({"car_t_effector_death_p": 1.0,
                                         "car_t_kill_rate_per_min": HUGE_KILL_RATE}))
    rec = lat.cells[t]
    assert rec["cell_type"] == EMPTY
    assert (rec["kills"], rec["divisions"], rec["activation"], rec["engaged"]) == (0, 0, 0, 0)
    assert rec["heading"] == NO_HEADING
    assert events[E_CAR_T_DIED] == 1
    assert lat.cells["cell_type"][c] == CANCER  # a dead CAR-T does not kill
    assert events[E_CANCER_KILLED] == 0


def test_exhausted_and_effector_car_t_use_their_own_death_probability():
    lat = make_lattice(9, 9)
    eff = place(lat, 1, 1, CAR_T, car_t_state=EFFECTOR)
    exh = place(lat, 6, 6, CAR_T, car_t_state=EXHAUSTED)
    events = interact(lat, quiet_params({"car_t_effector_death_p": 0.0,
                                         "car_t_exhausted_death_p": 1.0}))
    assert lat.cells["cell_type"][eff] == CAR_T
    assert lat.cells["cell_type"][exh] == EMPTY
    assert events[E_CAR_T_DIED] == 1


# ---------------------------------------------------------------------------------------------
# migration
# ---------------------------------------------------------------------------------------------
def test_lone_car_t_moves_exactly_one_site_per_migration_sweep():
    lat = make_lattice(21, 21)
    place(lat, 10, 10, CAR_T)
    move_p, persist_p = motility_arrays(car_t=1.0)
    params = quiet_params()
    nz, ny, nx = lat.shape
    n_moves = 0
    for sweep in range(300):
        (before,) = sites_of_type(lat, CAR_T)
        migrate(lat, params, move_p, persist_p, sweep=sweep)
        after = sites_of_type(lat, CAR_T)
        assert len(after) == 1
        start, end = np.array(xyz_of(lat, before)), np.array(xyz_of(lat, after[0]))
        step = int(np.abs(end - start).max())
        interior = (1 <= start[0] <= nx - 2 and 1 <= start[1] <= ny - 2
                    and (nz == 1 or 1 <= start[2] <= nz - 2))
        if interior:  # every direction is free: with move_p = 1 it must move
            assert step == 1
            heading = lat.cells["heading"][after[0]]
            assert tuple(lat.offsets[heading]) == tuple(end - start)
        else:
            assert step in (0, 1)
        n_moves += step
    assert n_moves >= 200


def test_car_t_never_moves_onto_occupied_sites():
    lat0 = make_lattice(7, 7)
    place(lat0, 3, 3, CAR_T)
    blocked = {(-1, -1), (0, -1), (1, 0), (-1, 1)}
    for dx, dy in blocked:
        place(lat0, 3 + dx, 3 + dy, NORMAL, 0.0)
    z = lat0.shape[0] // 2  # blocked only in the cell's own layer: in 3D, above and below are free
    free = {site_of(lat0, 3 + dx, 3 + dy, z + dz) for dx, dy, dz in lat0.offsets
            if (dx, dy) not in blocked or dz != 0}
    start = site_of(lat0, 3, 3)
    move_p, persist_p = motility_arrays(car_t=1.0)
    params = quiet_params()
    ends = []
    for sweep in range(200):
        lat = lat0.copy()
        migrate(lat, params, move_p, persist_p, sweep=sweep)
        assert np.array_equal(lat.cells["cell_type"] == NORMAL, lat0.cells["cell_type"] == NORMAL)
        (end,) = sites_of_type(lat, CAR_T)
        assert end in free | {start}
        ends.append(int(end))
    assert set(ends) == free | {start}  # every free neighbour reached, and blocked tries stay


def test_fully_surrounded_car_t_stays_put():
    lat = make_lattice(7, 7)
    t = place(lat, 3, 3, CAR_T)
    surround(lat, 3, 3, NORMAL, 0.0)
    move_p, persist_p = motility_arrays(car_t=1.0)
    for sweep in range(100):
        migrate(lat, quiet_params(), move_p, persist_p, sweep=sweep)
        assert sites_of_type(lat, CAR_T).tolist() == [t]
    assert lat.cells["heading"][t] == NO_HEADING


def test_car_t_in_synapse_with_recognised_target_does_not_move():
    lat = make_lattice(7, 7)
    t = place(lat, 3, 3, CAR_T)
    place(lat, 4, 3, CANCER, HALF_MAX)  # exactly half-max counts as recognised
    move_p, persist_p = motility_arrays(car_t=1.0)
    for sweep in range(100):
        migrate(lat, quiet_params(), move_p, persist_p, sweep=sweep)
        assert sites_of_type(lat, CAR_T).tolist() == [t]


def test_car_t_next_to_low_antigen_target_keeps_moving():
    lat = make_lattice(7, 7)
    t = place(lat, 3, 3, CAR_T)
    place(lat, 4, 3, CANCER, 0.5 * HALF_MAX)
    move_p, persist_p = motility_arrays(car_t=1.0)
    migrate(lat, quiet_params(), move_p, persist_p, sweep=0)
    assert sites_of_type(lat, CAR_T).tolist() != [t]


def test_cells_with_zero_move_probability_do_not_move():
    lat = make_lattice(9, 9)
    place(lat, 2, 2, CANCER, 100.0)
    place(lat, 6, 6, NORMAL, 0.0)
    place(lat, 4, 4, CAR_T)
    before = lat.cells["cell_type"].copy()
    move_p, persist_p = motility_arrays(car_t=0.0, cancer=0.0, normal=0.0)
    for sweep in range(30):
        migrate(lat, quiet_params(), move_p, persist_p, sweep=sweep)
    assert np.array_equal(lat.cells["cell_type"], before)


# ---------------------------------------------------------------------------------------------
# geometry and boundaries
# ---------------------------------------------------------------------------------------------
def test_neighbour_is_minus_one_off_lattice():
    lat = make_lattice(5, 4)
    corner = site_of(lat, 0, 0)
    far = site_of(lat, 4, 3)
    z = lat.shape[0] // 2  # the middle layer: in 3D, the layers above and below exist
    for k, (dx, dy, dz) in enumerate(lat.offsets):
        got = neighbour_of(lat, corner, k)
        if dx < 0 or dy < 0:
            assert got == -1
        else:
            assert got == site_of(lat, dx, dy, z + dz)
        got = neighbour_of(lat, far, k)
        if dx > 0 or dy > 0:
            assert got == -1
        else:
            assert got == site_of(lat, 4 + dx, 3 + dy, z + dz)


def test_row_end_neighbour_does_not_wrap_to_next_row():
    lat = make_lattice(5, 4)
    end_of_row = site_of(lat, 4, 1)
    right = [k for k, (dx, dy, dz) in enumerate(lat.offsets) if (dx, dy, dz) == (1, 0, 0)][0]
    assert neighbour_of(lat, end_of_row, right) == -1


def test_cells_never_leave_closed_lattice():
    lat = make_lattice(4, 3)
    for x, y in [(0, 0), (3, 0), (0, 2), (3, 2), (1, 1)]:
        place(lat, x, y, CAR_T)
    place(lat, 2, 1, CANCER, 50.0)
    move_p, persist_p = motility_arrays(car_t=1.0, cancer=1.0, persist_car_t=0.9)
    params = quiet_params()
    for sweep in range(300):
        migrate(lat, params, move_p, persist_p, sweep=sweep)
        assert len(sites_of_type(lat, CAR_T)) == 5
        assert len(sites_of_type(lat, CANCER)) == 1
    assert lat.cells.shape == (12 * lat.shape[0],)


def test_pick_free_neighbour_chooses_only_free_sites_and_all_of_them():
    lat = make_lattice(5, 5)
    centre = site_of(lat, 2, 2)
    place(lat, 2, 2, CANCER, 1.0)
    skip = {(-1, 0), (1, 1), (0, -1)}
    surround(lat, 2, 2, skip=skip)
    z = lat.shape[0] // 2  # in 3D the skipped (dx, dy) are free in the layers above and below too
    free = {site_of(lat, 2 + dx, 2 + dy, z + dz) for dx, dy, dz in lat.offsets if (dx, dy) in skip}
    picks = [kernel.pick_free_neighbour(centre, kernel.site_position(centre, lat.shape), lat.cells, lat.tissue, lat.shape, lat.offsets, SEED, s, 4)
             for s in range(200)]
    assert set(picks) == free
    surround(lat, 2, 2)
    assert kernel.pick_free_neighbour(centre, kernel.site_position(centre, lat.shape), lat.cells, lat.tissue, lat.shape, lat.offsets, SEED, 0, 4) == -1


# ---------------------------------------------------------------------------------------------
# census and advance
# ---------------------------------------------------------------------------------------------
def test_census_counts_each_category():
    lat = make_lattice(6, 6)
    place(lat, 0, 0, CANCER, 0.0)
    place(lat, 1, 0, CANCER, 500.0)
    place(lat, 2, 0, CANCER, HALF_MAX)
    place(lat, 3, 0, CANCER, 5000.0)
    place(lat, 0, 1, NORMAL, 0.0)
    place(lat, 1, 1, NORMAL, 10.0)
    place(lat, 0, 2, CAR_T, car_t_state=EFFECTOR)
    place(lat, 1, 2, CAR_T, car_t_state=EXHAUSTED)
    place(lat, 2, 2, CAR_T, car_t_state=EXHAUSTED)
    place(lat, 3, 2, CAR_T, car_t_state=MEMORY)
    place(lat, 4, 4, NECROTIC)
    got = kernel.census(lat.cells, lat.extra, params_with({"antigen_half_max": HALF_MAX}))
    # tumour: total, high (>= half-max), low, negative; normal: total, positive; CAR-T: total,
    # effector, exhausted, memory; necrotic
    assert got.tolist() == [4, 2, 1, 1, 2, 1, 4, 1, 2, 1, 1]
    assert np.array_equal(got, numpy_census(lat.cells, HALF_MAX))


def test_advance_equals_migration_sweeps_then_interaction_sweep_per_step():
    lat = make_lattice(12, 12)
    rng = np.random.default_rng(3)
    kinds = rng.choice([EMPTY, CANCER, NORMAL, CAR_T], size=lat.n_sites, p=[0.5, 0.2, 0.1, 0.2])
    lat.cells["cell_type"] = kinds
    lat.cells["antigen"] = np.where((kinds == CANCER) | (kinds == NORMAL),
                                    rng.uniform(0, 3 * HALF_MAX, lat.n_sites), 0.0)
    params = quiet_params({"car_t_kill_rate_per_min": 0.05, "cancer_divide_p": 0.3,
                           "car_t_divide_p": 0.5, "car_t_effector_death_p": 0.05,
                           "antigen_inheritance_sigma": 0.2})
    move_p, persist_p = motility_arrays(car_t=0.8, cancer=0.2, normal=0.1, persist_car_t=0.5)
    manual = lat.copy()
    events = new_events()
    motile_rows = np.zeros(lat.shape[0] * lat.shape[1], dtype=np.uint8)
    kernel.mark_motile_rows(lat.cells, lat.shape, move_p, motile_rows)
    # advance skips the rows without motile cells in its migration sweeps; the manual twin
    # below scans every row: the two must agree exactly
    nxt = kernel.advance(lat, params, move_p, persist_p, SEED, 7, 5, 3, events, motile_rows)
    assert nxt == 7 + 5 * (3 + 1)

    manual_events = new_events()
    sweep = 7
    for _ in range(5):
        for _ in range(3):
            migrate(manual, params, move_p, persist_p, sweep=sweep)
            sweep += 1
        interact(manual, params, sweep=sweep, events=manual_events)
        sweep += 1
    assert sweep == nxt
    assert np.array_equal(lat.cells, manual.cells)
    assert np.array_equal(events, manual_events)
    assert events.sum() > 0  # something happened, so the comparison is not vacuous


def test_holds_target_sees_any_cancer_or_normal_cell_and_nothing_else():
    lat = make_lattice(6, 6)
    assert not kernel.holds_target(lat.cells)
    place(lat, 2, 2, CAR_T)
    assert not kernel.holds_target(lat.cells)  # CAR-T are not targets
    place(lat, 5, 5, NORMAL, 0.0)  # the last site: found, whatever its antigen
    assert kernel.holds_target(lat.cells)
    lat.cells["cell_type"][-1] = EMPTY
    place(lat, 0, 0, CANCER, 0.0)
    assert kernel.holds_target(lat.cells)


def test_target_scans_skipped_on_a_lattice_without_targets_change_nothing():
    # a cleared dish: only CAR-T, effectors and memory cells; advance skips their target scans
    # (holds_target is False); sweeps forced to scan must give the same lattice, bit for bit
    lat = make_lattice(16, 16)
    rng = np.random.default_rng(5)
    kinds = rng.choice([EMPTY, CAR_T], size=lat.n_sites, p=[0.5, 0.5])
    lat.cells["cell_type"] = kinds
    lat.cells["car_t_state"] = np.where(kinds == CAR_T, rng.choice([EFFECTOR, MEMORY],
                                                                   size=lat.n_sites), EFFECTOR)
    lat.cells["activation"] = np.where(kinds == CAR_T, rng.integers(0, 3, size=lat.n_sites), 0)
    params = quiet_params({"car_t_divide_p": 0.3, "car_t_effector_death_p": 0.02,
                           "car_t_memory_p": 0.2})
    move_p, persist_p = motility_arrays(car_t=0.8, persist_car_t=0.5)
    forced = lat.copy()
    rows = np.ones(lat.shape[0] * lat.shape[1], dtype=np.uint8)
    events, forced_events = new_events(), new_events()
    assert not kernel.holds_target(lat.cells)
    kernel.advance(lat, params, move_p, persist_p, SEED, 0, 6, 2, events, rows.copy())
    sweep = 0
    for _ in range(6):
        for substep in range(3):
            kernel.sweep_lattice(forced.cells, forced.extra, forced.tissue, forced.fields,
                                 forced.shape, forced.offsets, move_p, persist_p, params, SEED,
                                 sweep, forced_events, substep == 2, rows.copy(), True,
                                 kernel.receptor_logic(params, forced.extra))
            sweep += 1
    assert np.array_equal(lat.cells, forced.cells)
    assert np.array_equal(events, forced_events)
    assert events[E_CAR_T_BORN] > 0 and (lat.cells["cell_type"] == CAR_T).sum() > 0


def test_advance_checks_its_arrays_before_the_compiled_kernel_sees_them():
    lat = make_lattice(6, 6)
    params = quiet_params()
    move_p, persist_p = motility_arrays(car_t=0.5)
    rows = np.zeros(lat.shape[0] * lat.shape[1], dtype=np.uint8)
    assert kernel.advance(lat, params, move_p, persist_p, SEED, 0, 1, 1, new_events(), rows) == 2
    with pytest.raises(TypeError, match="KERNEL_PARAMS_DTYPE"):
        kernel.advance(lat, np.zeros(1), move_p, persist_p, SEED, 0, 1, 1, new_events(), rows)
    with pytest.raises(ValueError, match="one per row"):
        kernel.advance(lat, params, move_p, persist_p, SEED, 0, 1, 1, new_events(), rows[:-1])
    with pytest.raises(ValueError, match="one value per cell type"):
        kernel.advance(lat, params, move_p[:2], persist_p, SEED, 0, 1, 1, new_events(), rows)
    with pytest.raises(ValueError, match="int64"):
        kernel.advance(lat, params, move_p, persist_p, SEED, 0, 1, 1, np.zeros(2), rows)
