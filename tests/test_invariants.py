"""Property tests: invariants of ``kernel.advance`` on random small lattices and parameters, and
of ``CarTModel`` runs of random small scenarios, checked after every step."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_lattice, new_events, numpy_census
from simulation.engine import constants as C
from simulation.engine import kernel
from simulation.engine.constants import (
    CANCER,
    CAR_T,
    CENSUS_NAMES,
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
    F_CHEMOKINE,
    F_OXYGEN,
    F_SUPPRESSION,
    neutral_kernel_parameters,
    N_CELL_TYPES,
    MEMORY,
    NECROTIC,
    NO_HEADING,
    NORMAL,
    TISSUE_STROMA,
    TISSUE_VESSEL,
)
from simulation.model import CarTModel

SETTINGS = settings(max_examples=25, deadline=None)
probability = st.floats(0.0, 1.0, allow_nan=False)


@dataclass
class Case:
    lattice: object
    params: np.ndarray
    move_p: np.ndarray
    persist_p: np.ndarray
    seed: int
    first_sweep: int
    n_steps: int
    n_substeps: int

    def run(self, cells=None, first_sweep=None, n_steps=None):
        """Advance a copy of the initial cells; returns (cells, events, next sweep)."""
        cells = self.lattice.cells.copy() if cells is None else cells
        events = new_events()
        nz, ny, _ = self.lattice.shape
        motile_rows = np.zeros(nz * ny, dtype=np.uint8)
        kernel.mark_motile_rows(cells, self.lattice.shape, self.move_p, motile_rows)
        nxt = kernel.advance(replace(self.lattice, cells=cells), self.params, self.move_p,
                             self.persist_p, self.seed,
                             self.first_sweep if first_sweep is None else first_sweep,
                             self.n_steps if n_steps is None else n_steps, self.n_substeps,
                             events, motile_rows)
        return cells, events, nxt


@st.composite
def cases(draw):
    width = draw(st.integers(10, 25))
    height = draw(st.integers(10, 25))
    depth = draw(st.none() | st.integers(3, 6))  # None: a 2D lattice
    lat = make_lattice(width, height, draw(st.sampled_from(["moore", "von_neumann"])),
                       depth=depth)

    params = neutral_kernel_parameters()
    record = params[0]  # a view: setting its fields fills ``params``
    record["car_t_kill_rate_per_min"] = draw(st.floats(0.0, 5.0))
    record["exhausted_kill_factor"] = draw(probability)
    record["antigen_half_max"] = draw(st.floats(100.0, 5000.0))
    record["hill_coefficient"] = draw(st.floats(0.5, 10.0))
    max_kills = draw(st.integers(1, 255))
    max_divisions = draw(st.integers(0, 255))
    engaged_steps = draw(st.integers(1, 300))
    record["max_kills"] = max_kills
    record["max_divisions"] = max_divisions
    record["exhaustion_engaged_steps"] = engaged_steps
    record["activation_steps"] = draw(st.integers(1, 500))
    record["dt_min"] = draw(st.floats(0.1, 60.0))
    record["car_t_divide_p"] = draw(probability)
    record["car_t_effector_death_p"] = draw(probability)
    record["car_t_exhausted_death_p"] = draw(probability)
    record["cancer_divide_p"] = draw(probability)
    record["cancer_death_p"] = draw(st.floats(0.0, 0.3) | st.just(0.0))
    record["antigen_inheritance_sigma"] = draw(st.just(0.0) | st.floats(0.0, 1.5))
    # microenvironment rules (thresholds ordered like the config demands)
    necrosis_max = draw(st.floats(0.0, 4.0))
    record["necrosis_max_o2_mmhg"] = necrosis_max
    record["necrosis_o2_mmhg"] = necrosis_max + draw(st.floats(0.5, 5.0))
    record["proliferation_o2_mmhg"] = record["necrosis_o2_mmhg"] + draw(st.floats(0.5, 10.0))
    record["necrosis_max_rate_per_min"] = draw(st.just(0.0) | st.floats(0.0, 1.0))
    record["necrotic_clearance_p"] = draw(probability)
    record["car_t_hypoxic_kill_factor"] = draw(probability)
    record["suppression_half_effect"] = draw(st.just(0.0) | st.floats(0.1, 50.0))
    record["car_t_memory_p"] = draw(probability)
    record["car_t_memory_death_p"] = draw(probability)
    record["chemotaxis_bias"] = draw(probability)
    record["stroma_crossing_p"] = draw(probability)
    record["intravasation_p"] = draw(probability)
    record["antigen_loss_p"] = draw(st.just(0.0) | probability)

    move_p = np.zeros(N_CELL_TYPES)
    persist_p = np.zeros(N_CELL_TYPES)
    for kind in (CANCER, NORMAL, CAR_T):
        move_p[kind] = draw(probability)
        persist_p[kind] = draw(probability)

    # layout: random placements drawn from a hypothesis-chosen numpy seed
    gen = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    fractions = [draw(st.floats(0.0, 0.4)), draw(st.floats(0.0, 0.3)), draw(st.floats(0.0, 0.2))]
    p = np.array([max(0.0, 1.0 - sum(fractions)), *fractions])
    kinds = gen.choice([EMPTY, CANCER, NORMAL, CAR_T], size=lat.n_sites, p=p / p.sum())
    n = lat.n_sites
    # fixed structure and fields: vessels on empty sites only, stroma anywhere, random fields
    lat.tissue[gen.random(n) < draw(st.floats(0.0, 0.2))] = TISSUE_STROMA
    vessel = (kinds == EMPTY) & (gen.random(n) < draw(st.floats(0.0, 0.1)))
    lat.tissue[vessel] = TISSUE_VESSEL
    kinds[(kinds == EMPTY) & ~vessel & (gen.random(n) < draw(st.floats(0.0, 0.1)))] = NECROTIC
    lat.fields[F_OXYGEN] = gen.uniform(0.0, 40.0, n)
    lat.fields[F_SUPPRESSION] = gen.uniform(0.0, 50.0, n) * (gen.random() < 0.7)
    lat.fields[F_CHEMOKINE] = gen.uniform(0.0, 100.0, n)
    cells = lat.cells
    cells["cell_type"] = kinds
    target = (kinds == CANCER) | (kinds == NORMAL)
    antigen = gen.lognormal(np.log(2000.0), 1.0, n) * (gen.random(n) > 0.3)
    cells["antigen"] = np.where(target, antigen, 0.0)
    car_t = kinds == CAR_T
    exhausted = car_t & (gen.random(n) < 0.3)
    memory = car_t & ~exhausted & (gen.random(n) < 0.2)
    cells["car_t_state"] = np.where(exhausted, EXHAUSTED, np.where(memory, MEMORY, EFFECTOR))
    effector = car_t & ~exhausted  # memory cells keep the counters of the effector they were
    cells["kills"] = np.where(effector, gen.integers(0, max_kills, n),
                              np.where(exhausted, gen.integers(0, 256, n), 0))
    cells["engaged"] = np.where(effector, gen.integers(0, engaged_steps, n),
                                np.where(exhausted, gen.integers(0, 1000, n), 0))
    cells["divisions"] = np.where(car_t, gen.integers(0, max_divisions + 1, n), 0)
    cells["activation"] = np.where(car_t, gen.integers(0, 50, n) * (gen.random(n) < 0.5), 0)

    return Case(lattice=lat, params=params, move_p=move_p, persist_p=persist_p,
                seed=draw(st.integers(0, 2**63 - 1)), first_sweep=draw(st.integers(0, 5000)),
                n_steps=draw(st.integers(1, 6)), n_substeps=draw(st.integers(1, 3)))


def count(cells, kind):
    return int(np.count_nonzero(cells["cell_type"] == kind))


@SETTINGS
@given(cases())
def test_census_equals_numpy_counts(case):
    cells, _, _ = case.run()
    half_max = case.params[0]["antigen_half_max"]
    assert np.array_equal(kernel.census(cells, case.lattice.extra, case.params), numpy_census(cells, half_max))


@SETTINGS
@given(cases())
def test_population_counts_match_event_counters(case):
    before = case.lattice.cells
    cells, events, nxt = case.run()
    assert nxt == case.first_sweep + case.n_steps * (case.n_substeps + 1)
    assert np.all(events >= 0)
    assert count(cells, CANCER) == (count(before, CANCER) + events[E_CANCER_BORN]
                                    - events[E_CANCER_DIED] - events[E_CANCER_KILLED]
                                    - events[C.E_CANCER_NECROSED])
    assert count(cells, CAR_T) == (count(before, CAR_T) + events[E_CAR_T_BORN]
                                   - events[E_CAR_T_DIED] - events[C.E_EFFECTOR_TO_BLOOD]
                                   - events[C.E_MEMORY_TO_BLOOD])
    assert count(cells, NORMAL) == count(before, NORMAL) - events[E_NORMAL_KILLED]
    assert count(cells, NECROTIC) == (count(before, NECROTIC) + events[C.E_CANCER_NECROSED]
                                      - events[C.E_NECROTIC_CLEARED])
    # vessels never hold a cell; the fixed structure and the fields are not changed by cells
    assert np.all(cells["cell_type"][case.lattice.tissue == TISSUE_VESSEL] == EMPTY)
    exhausted_before = int(np.count_nonzero((before["cell_type"] == CAR_T)
                                            & (before["car_t_state"] == EXHAUSTED)))
    exhausted_now = int(np.count_nonzero((cells["cell_type"] == CAR_T)
                                         & (cells["car_t_state"] == EXHAUSTED)))
    assert exhausted_now <= exhausted_before + events[E_CAR_T_EXHAUSTED]


@SETTINGS
@given(cases())
def test_car_t_state_limits_hold(case):
    cells, _, _ = case.run()
    car_t = cells["cell_type"] == CAR_T
    states = cells["car_t_state"][car_t]
    assert set(np.unique(states).tolist()) <= {EFFECTOR, EXHAUSTED, MEMORY}
    effector = car_t & (cells["car_t_state"] == EFFECTOR)
    # kills saturate at 255, so the exhaustion rule is the meaningful bound: a CAR-T that reached
    # max_kills (or the engaged-time limit) is exhausted, so effectors are strictly below both
    assert np.all(cells["kills"][effector] < case.params[0]["max_kills"])
    assert np.all(cells["engaged"][effector] < case.params[0]["exhaustion_engaged_steps"])
    assert np.all(cells["divisions"][car_t] <= case.params[0]["max_divisions"])
    assert np.all(cells["antigen"][car_t] == 0.0)


@SETTINGS
@given(cases())
def test_empty_sites_are_clean_and_antigen_is_finite(case):
    cells, _, _ = case.run()
    empty = cells["cell_type"] == EMPTY
    assert set(np.unique(cells["cell_type"]).tolist()) <= {EMPTY, CANCER, NORMAL, CAR_T,
                                                          NECROTIC}
    assert np.all(cells["antigen"][empty | (cells["cell_type"] == NECROTIC)] == 0.0)
    for name in ("kills", "divisions", "engaged", "activation", "car_t_state"):
        assert np.all(cells[name][empty] == 0), name
        # per-CAR-T fields never leak onto cancer or normal cells
        assert np.all(cells[name][~empty & (cells["cell_type"] != CAR_T)] == 0), name
    assert np.all(cells["heading"][empty] == NO_HEADING)
    n_dirs = case.lattice.offsets.shape[0]
    heading = cells["heading"]
    assert np.all((heading == NO_HEADING) | (heading < n_dirs))
    assert np.all(np.isfinite(cells["antigen"]))
    assert np.all(cells["antigen"] >= 0.0)


@SETTINGS
@given(cases())
def test_antigen_values_come_from_the_initial_populations(case):
    before = case.lattice.cells
    cells, events, _ = case.run()
    # normal cells only move or die: their antigen values are a sub-multiset of the initial ones
    normal_before = np.sort(before["antigen"][before["cell_type"] == NORMAL])
    normal_now = np.sort(cells["antigen"][cells["cell_type"] == NORMAL])
    remaining = list(normal_before)
    for value in normal_now:
        remaining.remove(value)  # raises if a value was never there
    # antigen-negative cancer cells are invisible to CAR-T and their daughters stay negative
    def negative(c):
        return int(np.count_nonzero((c["cell_type"] == CANCER) & (c["antigen"] == 0)))

    record = case.params[0]
    if record["cancer_death_p"] == 0.0 and record["necrosis_max_rate_per_min"] == 0:
        assert negative(cells) >= negative(before)
    if record["antigen_inheritance_sigma"] == 0.0:
        # daughters copy the antigen, or lose it (antigen loss on division)
        initial = set(before["antigen"][before["cell_type"] == CANCER].tolist()) | {0.0}
        assert set(cells["antigen"][cells["cell_type"] == CANCER].tolist()) <= initial


@SETTINGS
@given(cases())
def test_advance_is_deterministic(case):
    snapshot = case.lattice.cells.copy()
    first, events_1, next_1 = case.run()
    assert np.array_equal(case.lattice.cells, snapshot)  # run() worked on a copy
    second, events_2, next_2 = case.run()
    assert np.array_equal(first, second)
    assert np.array_equal(events_1, events_2)
    assert next_1 == next_2


@SETTINGS
@given(cases())
def test_the_kernel_for_plain_cars_equals_the_kernel_for_every_scenario(case):
    """``kernel.receptor_logic`` None compiles the sweep without the branches of several
    antigens and receptor logic; on a plain CAR (every case here) the kernel that keeps them
    (True) must give the same cells, events and census, draw for draw."""
    assert kernel.receptor_logic(case.params, case.lattice.extra) is None
    results = []
    for logic in (None, True):
        cells = case.lattice.cells.copy()
        events = new_events()
        motile_rows = np.zeros(case.lattice.shape[0] * case.lattice.shape[1], dtype=np.uint8)
        kernel.mark_motile_rows(cells, case.lattice.shape, case.move_p, motile_rows)
        lat = case.lattice
        kernel.advance_kernel(cells, lat.extra, lat.tissue, lat.fields, lat.shape, lat.offsets,
                              case.move_p, case.persist_p, case.params, case.seed,
                              case.first_sweep, case.n_steps, case.n_substeps, events,
                              motile_rows, logic)
        results.append((cells, events, kernel.census_kernel(cells, lat.extra, case.params, logic)))
    (plain, plain_events, plain_census), (general, general_events, general_census) = results
    assert np.array_equal(plain, general)
    assert np.array_equal(plain_events, general_events)
    assert np.array_equal(plain_census, general_census)


@SETTINGS
@given(cases(), st.integers(0, 6))
def test_advance_in_chunks_equals_advance_at_once(case, split):
    split = min(split, case.n_steps)
    whole, events_whole, next_whole = case.run()
    part, events_a, mid = case.run(n_steps=split)
    part, events_b, end = case.run(cells=part, first_sweep=mid, n_steps=case.n_steps - split)
    assert end == next_whole
    assert np.array_equal(part, whole)
    assert np.array_equal(events_a + events_b, events_whole)


# ---------------------------------------------------------------------------------------------
# the same invariants through CarTModel: random small scenarios, checked after every step
# ---------------------------------------------------------------------------------------------
MODEL_SETTINGS = settings(max_examples=50, deadline=None)
unit = st.floats(0.0, 1.0)


@st.composite
def scenarios(draw) -> dict:
    """A random valid scenario small enough to step 50-80 times in well under a second, on a
    2D lattice or a shallow 3D block."""
    width, height = draw(st.integers(8, 30)), draw(st.integers(8, 30))
    depth = draw(st.none() | st.integers(3, 5))  # None: a 2D lattice
    shape = {} if depth is None else {"dimensions": 3, "depth": depth}
    dt = draw(st.floats(1.0, 30.0))
    n_steps = draw(st.integers(50, 80))
    duration_days = n_steps * dt / 1440.0
    antigen = st.fixed_dictionaries({
        "mean_molecules_per_cell": st.just(0.0) | st.floats(1.0, 50000.0),
        "cv": st.floats(0.0, 2.0), "negative_fraction": unit,
        "inheritance_cv": st.floats(0.0, 1.0)})
    n_normal = draw(st.integers(0, 2))
    densities = [draw(st.floats(0.0, 0.45)) for _ in range(n_normal)]
    vessels = draw(st.just(0.0) | st.floats(0.01, 0.1))
    routes = ["anywhere", "intratumoral"] + (["intravenous"] if vessels > 0 else [])
    dose = st.fixed_dictionaries({"day": st.floats(0.0, duration_days * 0.99)}).flatmap(
        lambda d: st.one_of(st.integers(1, 60).map(lambda n: {**d, "cells": n}),
                            st.floats(0.01, 2.0).map(lambda r: {**d, "effector_to_target": r})))
    return {
        "name": "random", "tumor_type": draw(st.sampled_from(["blood", "solid"])),
        "lattice": {"width": width, "height": height, "spacing_um": draw(st.floats(5.0, 30.0)),
                    "neighbourhood": draw(st.sampled_from(["moore", "von_neumann"])), **shape},
        "time": {"dt_min": dt, "duration_days": duration_days,
                 "record_every_h": draw(st.floats(0.1, 12.0)), "stop_when_cleared": False},
        "tumor": {"layout": draw(st.sampled_from(["dispersed", "compact"])),
                  "initial_cells": draw(st.integers(1, width * height // 3)),
                  "cycle_time_h": draw(st.floats(2.0, 100.0)),
                  "death_rate_per_day": draw(st.floats(0.0, 2.0)),
                  "speed_um_per_min": draw(st.just(0.0) | st.floats(0.0, 5.0)),
                  "antigen": draw(antigen)},
        "normal": [{"name": f"n{i}", "density": d, "speed_um_per_min": draw(st.floats(0.0, 5.0)),
                    "antigen": draw(antigen)} for i, d in enumerate(densities)],
        "car_t": {"speed_um_per_min": draw(st.floats(0.0, 20.0)),
                  "persistence_time_min": draw(st.floats(0.0, 30.0)),
                  "kill_rate_per_h": draw(st.floats(0.1, 600.0)),
                  "antigen_half_max_molecules_per_cell": draw(st.floats(100.0, 20000.0)),
                  "hill_coefficient": draw(st.floats(0.5, 4.0)),
                  "max_kills": draw(st.integers(1, 20)),
                  "max_divisions": draw(st.integers(0, 15)),
                  "division_time_h": draw(st.floats(0.5, 48.0)),
                  "activation_duration_h": draw(st.floats(0.5, 48.0)),
                  "exhaustion_after_engaged_h": draw(st.floats(0.5, 100.0)),
                  "exhausted_kill_factor": draw(unit),
                  "effector_half_life_days": draw(st.floats(0.1, 10.0)),
                  "exhausted_half_life_days": draw(st.floats(0.1, 10.0))},
        "tissue": {"vessel_density": vessels, "tumor_vessel_density": draw(st.floats(0.0, 0.1)),
                   "stroma": {"capsule_width_um": draw(st.floats(0.0, 40.0)),
                              "fibre_density": draw(st.floats(0.0, 0.2)),
                              "crossing_probability": draw(unit)}},
        "microenvironment": {name: {"enabled": draw(st.booleans())} for name in
                             ("oxygen", "chemokine", "suppression", "cytokine")},
        "blood": {"extravasation_rate_per_h": draw(st.floats(0.0, 10.0)),
                  "intravasation_rate_per_h": draw(st.floats(0.0, 10.0))},
        "dosing": {"route": draw(st.sampled_from(routes)),
                   "margin_width_um": draw(st.floats(10.0, 100.0)),
                   "doses": draw(st.lists(dose, min_size=1, max_size=3))},
    }


def check_model_invariants(model, initial_normal: int) -> None:
    """Everything that must hold between two steps of any run."""
    cells = model.lattice.cells
    kind = cells["cell_type"]
    nz, ny, nx = model.lattice.shape
    cfg = model.config
    assert cells.shape == (nx * ny * nz,) and (nz, ny, nx) == cfg.lattice.shape
    assert set(np.unique(kind).tolist()) <= {EMPTY, CANCER, NORMAL, CAR_T, NECROTIC}
    # no cell lost or duplicated (one cell per site; a write outside the lattice would show up
    # here as a cell missing from its count): counts equal the event bookkeeping
    e = model.events
    assert np.all(e >= 0)
    assert count(cells, CANCER) == model.tumor_cells
    # CAR-T: on the lattice or in the blood; blood deaths are not kernel events, so with a blood
    # pool in use the books only bound the count (also when the vessel draw laid no vessel on a
    # tiny lattice: an intravenous dose then waits in the blood)
    made = model.car_t_infused + e[E_CAR_T_BORN] - e[E_CAR_T_DIED]
    intravenous = any(infusion.route == "intravenous" for infusion in model.plan)
    if model.blood.vessel_sites.size == 0 and not intravenous:
        assert count(cells, CAR_T) == made and model.blood.cells == 0
    else:
        assert count(cells, CAR_T) + model.blood.cells <= made
    assert np.all(kind[model.lattice.tissue == TISSUE_VESSEL] == EMPTY)
    assert count(cells, NORMAL) == initial_normal - e[E_NORMAL_KILLED]
    # the last census, as collected, equals the arrays whenever one was just taken
    if model.counts and model.counts["time_days"] == model.time_min / 1440.0:
        census = numpy_census(cells, model.params[0]["antigen_half_max"])
        assert [model.counts[n] for n in CENSUS_NAMES] == census.tolist()
        last = model.datacollector.get_model_vars_dataframe().iloc[-1]
        assert [int(last[n]) for n in CENSUS_NAMES] == census.tolist()
    # antigen: finite, non-negative, only on targets
    antigen = cells["antigen"]
    assert np.all(np.isfinite(antigen)) and np.all(antigen >= 0.0)
    assert np.all(antigen[(kind == EMPTY) | (kind == CAR_T) | (kind == NECROTIC)] == 0.0)
    # per-cell counters within their bounds
    car_t = kind == CAR_T
    effector = car_t & (cells["car_t_state"] == EFFECTOR)
    assert set(np.unique(cells["car_t_state"][car_t]).tolist()) <= {EFFECTOR, EXHAUSTED, MEMORY}
    assert np.all(cells["kills"][effector] < model.params[0]["max_kills"])
    assert np.all(cells["engaged"][effector] < model.params[0]["exhaustion_engaged_steps"])
    assert np.all(cells["divisions"][car_t] <= model.params[0]["max_divisions"])
    assert np.all(cells["activation"][car_t] <= model.params[0]["activation_steps"])
    for name in ("kills", "divisions", "engaged", "activation", "car_t_state"):
        assert np.all(cells[name][~car_t] == 0), name
    heading = cells["heading"]
    assert np.all((heading == NO_HEADING) | (heading < model.lattice.offsets.shape[0]))
    assert np.all(heading[kind == EMPTY] == NO_HEADING)
    # the clock
    assert model.time_min == model.step_index * model.dt_min
    assert model.sweep == model.step_index * (model.motility.n_substeps + 1)


@MODEL_SETTINGS
@given(scenarios(), st.integers(0, 2**32))
def test_model_invariants_hold_after_every_step_of_random_scenarios(scenario, seed):
    model = CarTModel(scenario, seed=seed)
    initial_normal = count(model.lattice.cells, NORMAL)
    check_model_invariants(model, initial_normal)
    events_before = model.events.copy()
    while model.running:
        model.step()
        check_model_invariants(model, initial_normal)
        assert np.all(model.events >= events_before)  # cumulative counters never go back
        events_before = model.events.copy()
    assert model.step_index >= 50
    df = model.datacollector.get_model_vars_dataframe()
    assert (df["car_t_cells"] == df["car_t_effector"] + df["car_t_exhausted"]
            + df["car_t_memory"]).all()
    assert df["time_days"].is_monotonic_increasing
    for column in ("cumulative_cancer_killed", "cumulative_normal_killed",
                   "cumulative_car_t_infused"):
        assert df[column].is_monotonic_increasing, column
