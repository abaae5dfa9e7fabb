"""Unit tests of the microenvironment, tissue and phenotype rules of the kernel, one per rule:
hypoxia (slower division, necrosis, weaker killing), necrotic clearance, antigen loss at
division, suppression (kill rate and exhaustion), memory CAR-T (conversion, no killing,
reactivation), stroma and vessels in migration, chemotaxis, exit to and entry from the blood.

Every test runs on a 2D lattice and on a 3D one three layers deep (``lattice_dimensions``)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_lattice, motility_arrays, place, site_of
from simulation.engine import constants as C
from simulation.engine import kernel
from simulation.engine.constants import (
    CANCER,
    CAR_T,
    EFFECTOR,
    EMPTY,
    EXHAUSTED,
    F_CHEMOKINE,
    F_OXYGEN,
    F_SUPPRESSION,
    MEMORY,
    NECROTIC,
    NORMAL,
    TISSUE_STROMA,
    TISSUE_VESSEL,
)
from test_kernel_rules import (
    HALF_MAX,
    HIGH_ANTIGEN,
    HUGE_KILL_RATE,
    SEED,
    interact,
    migrate,
    quiet_params,
)

pytestmark = pytest.mark.usefixtures("lattice_dimensions")

# oxygen thresholds used below (mmHg), ordered as the config demands
HYPOXIA = {"proliferation_o2_mmhg": 10.0, "necrosis_o2_mmhg": 5.0, "necrosis_max_o2_mmhg": 2.5}


def isolated_sites(lattice, spacing=3):
    """(x, y) of sites ``spacing`` apart, so their cells never touch each other's neighbours."""
    nz, ny, nx = lattice.shape
    return [(x, y) for x in range(1, nx - 1, spacing) for y in range(1, ny - 1, spacing)]


# ---- hypoxia ------------------------------------------------------------------------------
def test_severe_hypoxia_makes_cancer_cells_necrotic_and_normoxia_never():
    lat = make_lattice(9, 9)
    hypoxic = place(lat, 2, 2, CANCER, 5000.0)
    normoxic = place(lat, 6, 6, CANCER, 5000.0)
    lat.fields[F_OXYGEN, hypoxic] = 1.0  # below necrosis_max: maximal rate
    params = quiet_params({**HYPOXIA, "necrosis_max_rate_per_min": 1e6})
    events = interact(lat, params)
    assert lat.cells["cell_type"][hypoxic] == NECROTIC
    assert lat.cells["antigen"][hypoxic] == 0.0  # debris is no CAR-T target
    assert lat.cells["cell_type"][normoxic] == CANCER
    assert events[C.E_CANCER_NECROSED] == 1


def test_necrosis_rate_rises_linearly_between_the_two_thresholds():
    """At 3.75 mmHg (halfway between 5 and 2.5) the necrosis rate is half the maximum.

    2000 cells with p = 1 - exp(-0.5 * r * dt) = 0.3935 at r * dt = 1: binomial sd 0.011, so
    0.05 is > 4 sd from both the right value and the full-rate value 0.632.
    """
    lat = make_lattice(90, 90)
    sites = [place(lat, x, y, CANCER, 5000.0) for x, y in isolated_sites(lat, 2)][:2000]
    lat.fields[F_OXYGEN, sites] = 3.75
    params = quiet_params({**HYPOXIA, "necrosis_max_rate_per_min": 1.0 / 6.0,
                           "dt_min": 6.0})
    events = interact(lat, params)
    assert events[C.E_CANCER_NECROSED] / len(sites) == pytest.approx(1 - np.exp(-0.5), abs=0.05)


def test_hypoxia_slows_division_linearly_to_zero_at_the_necrosis_threshold():
    """Division probability at 7.5 mmHg is half of that at >= 10 mmHg, and 0 at 5 mmHg.

    ~1600 isolated cells per case with p_divide 0.4: sd of the fraction ~0.012; tolerance 0.05.
    """
    fractions = {}
    for oxygen in (38.0, 7.5, 5.0):
        lat = make_lattice(120, 120)
        sites = [place(lat, x, y, CANCER, 5000.0) for x, y in isolated_sites(lat)]
        lat.fields[F_OXYGEN] = oxygen
        events = interact(lat, quiet_params({**HYPOXIA, "cancer_divide_p": 0.4}))
        fractions[oxygen] = events[C.E_CANCER_BORN] / len(sites)
    assert fractions[38.0] == pytest.approx(0.4, abs=0.05)
    assert fractions[7.5] == pytest.approx(0.2, abs=0.05)
    assert fractions[5.0] == 0.0


def test_hypoxia_weakens_car_t_killing_down_to_the_hypoxic_factor():
    lat = make_lattice(9, 9)
    t = place(lat, 4, 4, CAR_T)
    c = place(lat, 5, 4, CANCER, HIGH_ANTIGEN)
    lat.fields[F_OXYGEN] = 5.0  # at the necrosis threshold: factor = hypoxic kill factor
    params = quiet_params({**HYPOXIA, "car_t_kill_rate_per_min": HUGE_KILL_RATE,
                           "car_t_hypoxic_kill_factor": 0.0})
    for sweep in range(20):
        interact(lat, params, sweep=sweep)
    assert lat.cells["cell_type"][c] == CANCER
    lat.fields[F_OXYGEN] = 38.0
    interact(lat, params, sweep=20)
    assert lat.cells["cell_type"][c] == EMPTY and lat.cells["kills"][t] == 1


def test_necrotic_debris_is_cleared_at_its_rate_only():
    lat = make_lattice(9, 9)
    debris = place(lat, 4, 4, NECROTIC)
    events = interact(lat, quiet_params({"necrotic_clearance_p": 0.0}))
    assert lat.cells["cell_type"][debris] == NECROTIC and events[C.E_NECROTIC_CLEARED] == 0
    events = interact(lat, quiet_params({"necrotic_clearance_p": 1.0}), sweep=1)
    assert lat.cells["cell_type"][debris] == EMPTY and events[C.E_NECROTIC_CLEARED] == 1


# ---- antigen loss -------------------------------------------------------------------------
@pytest.mark.parametrize("loss, negative", [(1.0, True), (0.0, False)])
def test_antigen_loss_at_division(loss, negative):
    lat = make_lattice(30, 30)
    for x, y in isolated_sites(lat):
        place(lat, x, y, CANCER, 5000.0)
    events = interact(lat, quiet_params({"cancer_divide_p": 1.0, "antigen_loss_p": loss}))
    cancer = lat.cells["cell_type"] == CANCER
    n_negative = int(np.count_nonzero(cancer & (lat.cells["antigen"] == 0.0)))
    assert events[C.E_CANCER_BORN] > 0
    assert n_negative == (events[C.E_CANCER_BORN] if negative else 0)


# ---- suppression ----------------------------------------------------------------------------
def test_suppression_at_its_half_effect_halves_the_kill_rate():
    """Kill probability per step at S = S_half is 1 - exp(-k/2 dt): ~1600 isolated pairs,
    sd ~0.012, tolerance 0.05 (the unsuppressed value 0.632 is > 10 sd away)."""
    lat = make_lattice(120, 120)
    pairs = [(place(lat, x, y, CAR_T), place(lat, x + 1, y, CANCER, 1e9))
             for x, y in isolated_sites(lat) if x + 1 < 119]
    lat.fields[F_SUPPRESSION] = 20.0
    params = quiet_params({"car_t_kill_rate_per_min": 1.0 / 6.0, "dt_min": 6.0,
                           "suppression_half_effect": 20.0})
    events = interact(lat, params)
    assert events[C.E_CANCER_KILLED] / len(pairs) == pytest.approx(1 - np.exp(-0.5), abs=0.05)


def test_suppression_shortens_the_engagement_time_to_exhaustion():
    """With S = S_half a CAR-T exhausts after half the engaged steps (5 of 10)."""
    lat = make_lattice(9, 9)
    t = place(lat, 4, 4, CAR_T)
    place(lat, 5, 4, CANCER, HIGH_ANTIGEN)
    lat.fields[F_SUPPRESSION] = 20.0
    params = quiet_params({"exhaustion_engaged_steps": 10, "suppression_half_effect": 20.0})
    for sweep in range(4):
        interact(lat, params, sweep=sweep)
    assert lat.cells["car_t_state"][t] == EFFECTOR
    interact(lat, params, sweep=4)
    assert lat.cells["car_t_state"][t] == EXHAUSTED and lat.cells["engaged"][t] == 5


# ---- memory -------------------------------------------------------------------------------
def test_idle_effector_becomes_memory_but_a_bound_or_activated_one_does_not():
    lat = make_lattice(12, 12)
    idle = place(lat, 1, 1, CAR_T)
    bound = place(lat, 6, 6, CAR_T)
    place(lat, 7, 6, NORMAL, HIGH_ANTIGEN)
    activated = place(lat, 10, 1, CAR_T, activation=5)
    exhausted = place(lat, 1, 10, CAR_T, car_t_state=EXHAUSTED)
    events = interact(lat, quiet_params({"car_t_memory_p": 1.0}))
    states = lat.cells["car_t_state"]
    assert states[idle] == MEMORY
    assert states[bound] == EFFECTOR and states[activated] == EFFECTOR
    assert states[exhausted] == EXHAUSTED
    assert events[C.E_CAR_T_BECAME_MEMORY] == 1


def test_memory_cell_does_not_kill_antigen_below_its_threshold():
    lat = make_lattice(9, 9)
    m = place(lat, 4, 4, CAR_T, car_t_state=MEMORY)
    c = place(lat, 5, 4, CANCER, 0.5 * HALF_MAX)  # recognisable, but no synapse
    params = quiet_params({"car_t_kill_rate_per_min": HUGE_KILL_RATE})
    for sweep in range(10):
        interact(lat, params, sweep=sweep)
    assert lat.cells["cell_type"][c] == CANCER
    assert lat.cells["car_t_state"][m] == MEMORY


def test_memory_cell_meeting_antigen_becomes_an_activated_effector_with_fresh_budgets():
    lat = make_lattice(9, 9)
    m = place(lat, 4, 4, CAR_T, car_t_state=MEMORY, kills=7, divisions=9, engaged=30)
    c = place(lat, 5, 4, CANCER, HIGH_ANTIGEN)
    params = quiet_params({"car_t_kill_rate_per_min": HUGE_KILL_RATE})
    events = interact(lat, params)
    assert lat.cells["car_t_state"][m] == EFFECTOR
    assert events[C.E_MEMORY_REACTIVATED] == 1
    # reactivated in this step, then it kills in the same update with a fresh budget
    assert lat.cells["cell_type"][c] == EMPTY and lat.cells["kills"][m] == 1
    assert lat.cells["divisions"][m] == 0
    assert lat.cells["activation"][m] == params[0]["activation_steps"] - 1


# ---- stroma, vessels, chemotaxis ----------------------------------------------------------------
@pytest.mark.parametrize("crossing, enters", [(0.0, False), (1.0, True)])
def test_stroma_blocks_or_admits_car_t(crossing, enters):
    lat = make_lattice(9, 9)
    t = place(lat, 4, 4, CAR_T)
    lat.tissue[:] = TISSUE_STROMA
    lat.tissue[t] = 0
    move_p, persist_p = motility_arrays(car_t=1.0)
    params = quiet_params({"stroma_crossing_p": crossing})
    migrate(lat, params, move_p, persist_p)
    assert (lat.cells["cell_type"][t] == EMPTY) == enters


def test_no_cell_moves_or_divides_onto_a_vessel():
    lat = make_lattice(5, 5)
    t = place(lat, 2, 2, CAR_T)
    c = place(lat, 0, 0, CANCER, 5000.0)
    lat.tissue[:] = TISSUE_VESSEL
    lat.tissue[[t, c]] = 0
    move_p, persist_p = motility_arrays(car_t=1.0)
    for sweep in range(20):
        migrate(lat, quiet_params(), move_p, persist_p, sweep=2 * sweep)
        interact(lat, quiet_params({"cancer_divide_p": 1.0}), sweep=2 * sweep + 1)
    assert lat.cells["cell_type"][t] == CAR_T and lat.cells["cell_type"][c] == CANCER
    assert np.count_nonzero(lat.cells["cell_type"]) == 2


def test_full_chemotactic_bias_moves_car_t_up_the_gradient():
    lat = make_lattice(30, 5)
    t = place(lat, 2, 2, CAR_T)
    nx = lat.shape[2]
    lat.fields[F_CHEMOKINE] = np.tile(np.arange(nx, dtype=float), lat.shape[0] * lat.shape[1])
    move_p, persist_p = motility_arrays(car_t=1.0)
    params = quiet_params({"chemotaxis_bias": 1.0})
    for sweep in range(10):
        migrate(lat, params, move_p, persist_p, sweep=sweep)
    now = int(np.flatnonzero(lat.cells["cell_type"] == CAR_T)[0])
    assert now % nx == 2 + 10  # one site up the gradient per move, every move
    assert t != now


# ---- blood exchange ----------------------------------------------------------------------------
def test_unbound_car_t_next_to_a_vessel_leaves_for_the_blood():
    lat = make_lattice(12, 12)
    lat.tissue[site_of(lat, 1, 2)] = TISSUE_VESSEL
    lat.tissue[site_of(lat, 9, 9)] = TISSUE_VESSEL
    leaver = place(lat, 1, 1, CAR_T)
    bound = place(lat, 8, 8, CAR_T)  # next to a vessel but in a synapse
    place(lat, 7, 7, CANCER, HIGH_ANTIGEN)
    far = place(lat, 5, 1, CAR_T)
    events = interact(lat, quiet_params({"intravasation_p": 1.0}))
    kinds = lat.cells["cell_type"]
    assert kinds[leaver] == EMPTY and kinds[bound] == CAR_T and kinds[far] == CAR_T
    assert events[C.E_EFFECTOR_TO_BLOOD] == 1


def test_extravasation_places_cells_next_to_vessels_only_and_reproducibly():
    lat = make_lattice(20, 20)
    vessels = np.array([site_of(lat, 5, 5), site_of(lat, 15, 15)])
    lat.tissue[vessels] = TISSUE_VESSEL
    first = lat.copy()
    motile_rows = np.zeros(lat.shape[0] * lat.shape[1], dtype=np.uint8)
    placed = kernel.extravasate(first.cells, first.extra, first.tissue, first.shape, first.offsets, vessels,
                                12, 0, MEMORY, 0, SEED, 7, motile_rows)
    second = lat.copy()
    kernel.extravasate(second.cells, second.extra, second.tissue, second.shape, second.offsets, vessels, 12, 0,
                       MEMORY, 0, SEED, 7, np.zeros(lat.shape[0] * lat.shape[1], dtype=np.uint8))
    assert np.array_equal(first.cells, second.cells)
    car_t = np.flatnonzero(first.cells["cell_type"] == CAR_T)
    assert placed == car_t.size == 12
    assert np.all(first.cells["car_t_state"][car_t] == MEMORY)
    position = first.site_coordinates(car_t)
    vessel_positions = first.site_coordinates(vessels)
    near = np.minimum(np.abs(position - vessel_positions[0]).max(axis=1),
                      np.abs(position - vessel_positions[1]).max(axis=1))
    assert np.all(near == 1)
    # the rows of the placed cells are marked for the next migration sweep, and only they
    assert np.array_equal(np.flatnonzero(motile_rows), np.unique(car_t // lat.shape[2]))


def test_extravasation_turns_cells_back_at_a_vessel_with_no_free_neighbour():
    lat = make_lattice(3, 3)
    vessel = site_of(lat, 1, 1)
    lat.tissue[vessel] = TISSUE_VESSEL
    lat.cells["cell_type"][np.arange(lat.n_sites) != vessel] = NORMAL
    placed = kernel.extravasate(lat.cells, lat.extra, lat.tissue, lat.shape, lat.offsets,
                                np.array([vessel]), 5, 0, EFFECTOR, 0, SEED, 0,
                                np.zeros(lat.shape[0] * lat.shape[1], dtype=np.uint8))
    assert placed == 0
    assert np.count_nonzero(lat.cells["cell_type"] == CAR_T) == 0


# ---- arming: time in synapses before full killing ------------------------------------------
@pytest.mark.parametrize("engaged, expected", [(0, 1 - np.exp(-0.25)), (9, 1 - np.exp(-1.0))])
def test_a_car_t_kills_at_the_resting_factor_until_armed(engaged, expected):
    """Kill probability per step is 1 - exp(-k f dt): f = 0.25 while the CAR-T has spent fewer
    than ``arming_steps`` (10) steps in synapses (this step counts: 0 -> 1, 9 -> 10 = armed),
    1 once armed. ~1600 isolated pairs, sd ~0.012, tolerance 0.05 (0.22 and 0.63 are > 30 sd
    apart)."""
    lat = make_lattice(120, 120)
    pairs = [(place(lat, x, y, CAR_T), place(lat, x + 1, y, CANCER, 1e9))
             for x, y in isolated_sites(lat) if x + 1 < 119]
    lat.cells["engaged"][[car_t for car_t, _ in pairs]] = engaged
    params = quiet_params({"car_t_kill_rate_per_min": 1.0 / 6.0, "dt_min": 6.0,
                           "arming_steps": 10, "resting_kill_factor": 0.25})
    events = interact(lat, params)
    assert events[C.E_CANCER_KILLED] / len(pairs) == pytest.approx(expected, abs=0.05)


def test_exhaustion_counts_from_arming():
    """With 5 steps of arming and 3 to exhaustion, a bound CAR-T that cannot kill is exhausted
    after its 8th step in synapse, not its 3rd."""
    lat = make_lattice(9, 9)
    t = place(lat, 4, 4, CAR_T)
    place(lat, 5, 4, CANCER, HIGH_ANTIGEN)
    params = quiet_params({"car_t_kill_rate_per_min": 0.0, "arming_steps": 5,
                           "exhaustion_engaged_steps": 3})
    states = []
    for sweep in range(8):
        interact(lat, params, sweep=sweep)
        states.append(int(lat.cells["car_t_state"][t]))
    assert states == [EFFECTOR] * 7 + [EXHAUSTED]


def test_a_daughter_inherits_arming_but_not_exhaustion_progress():
    lat = make_lattice(9, 9)
    t = place(lat, 4, 4, CAR_T)
    lat.cells["engaged"][t] = 50
    lat.cells["activation"][t] = 10
    params = quiet_params({"car_t_divide_p": 1.0, "arming_steps": 20})
    events = interact(lat, params)
    daughters = np.flatnonzero((lat.cells["cell_type"] == CAR_T) & (np.arange(lat.cells.size) != t))
    assert events[C.E_CAR_T_BORN] == 1 and lat.cells["engaged"][daughters].tolist() == [20]
