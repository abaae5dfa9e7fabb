"""The CAR design space: several antigens per cell, OR / AND / NOT receptor logic, armour.

Kernel rules on hand-built lattices (every other event switched off), the conversion of the
YAML switches into kernel parameters, the per-antigen census, the error messages of bad
designs, and bit-identity (threads, checkpoints) on the shipped design scenarios.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
from conftest import (
    TINY_SCENARIO,
    finish_identically,
    make_lattice,
    new_events,
    params_with,
    place,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from simulation import CarTModel
from simulation.biology.observables import antigen_columns, phenotype_label
from simulation.biology.scenario import kernel_parameters
from simulation.config import ConfigError, ScenarioConfig, load_scenario, validate
from simulation.engine import kernel
from simulation.engine.constants import (
    CANCER,
    CAR_T,
    CENSUS_NAMES,
    E_CANCER_KILLED,
    E_NORMAL_KILLED,
    F_SUPPRESSION,
    NO_RECEPTOR,
    NORMAL,
)
from simulation.io import checkpoints
from simulation.model import REPORTED_COLUMNS

HALF_MAX = 2000.0
HIGH = 10 * HALF_MAX
HUGE_KILL_RATE = 1e6  # per min: kill probability 1 - exp(-1e6 * dt) == 1.0 in float64
SEED = 7


def quiet(**overrides: float) -> np.ndarray:
    """Kernel parameters with every stochastic event off except what ``overrides`` set."""
    base = {"car_t_kill_rate_per_min": 0.0, "antigen_half_max": HALF_MAX,
            "hill_coefficient": 2.0, "max_kills": 200, "max_divisions": 0,
            "exhaustion_engaged_steps": 10_000, "activation_steps": 40, "dt_min": 6.0,
            "car_t_divide_p": 0.0, "car_t_effector_death_p": 0.0,
            "car_t_exhausted_death_p": 0.0, "cancer_divide_p": 0.0, "cancer_death_p": 0.0,
            "antigen_inheritance_sigma": 0.0, "exhausted_kill_factor": 0.2,
            "car_t_memory_p": 0.0, "n_antigens": 3, "suppression_half_effect": 20.0}
    base.update(overrides)
    return params_with(base)


def interact(lat, params, sweep=0):
    events = new_events()
    kernel.interaction_sweep(lat.cells, lat.extra, lat.tissue, lat.fields, lat.shape,
                             lat.offsets, params, SEED, sweep, events)
    return events


def target_with(lat, x, y, cell_type=CANCER, a=0.0, b=0.0, c=0.0) -> int:
    """A target at (x, y) carrying antigen slots 0, 1, 2 at densities a, b, c."""
    site = place(lat, x, y, cell_type, a)
    lat.extra[site]["antigen_b"] = b
    lat.extra[site]["antigen_c"] = c
    return site


# ---------------------------------------------------------------------------------------------
# OR: several killing receptors
# ---------------------------------------------------------------------------------------------
def test_single_car_never_kills_a_cell_carrying_only_another_antigen():
    lat = make_lattice(5, 5, extra=True)
    place(lat, 2, 2, CAR_T)
    target = target_with(lat, 2, 1, b=HIGH)
    events = interact(lat, quiet(car_t_kill_rate_per_min=HUGE_KILL_RATE))
    assert events[E_CANCER_KILLED] == 0 and lat.cells["cell_type"][target] == CANCER


def test_or_car_kills_a_cell_carrying_only_its_second_antigen():
    lat = make_lattice(5, 5, extra=True)
    place(lat, 2, 2, CAR_T)
    target = target_with(lat, 2, 1, b=HIGH)
    params = quiet(car_t_kill_rate_per_min=HUGE_KILL_RATE, second_kill_slot=1,
                   second_half_max=HALF_MAX)
    events = interact(lat, params)
    assert events[E_CANCER_KILLED] == 1 and lat.cells["cell_type"][target] != CANCER


def test_or_response_is_the_chance_that_either_receptor_triggers():
    lat = make_lattice(3, 3, extra=True)
    site = target_with(lat, 1, 1, a=1000.0, b=3000.0, c=500.0)
    params = quiet(second_kill_slot=1, second_half_max=1500.0, third_kill_slot=2,
                   third_half_max=800.0)[0]
    responses = [kernel.antigen_response(a, k, 2.0)
                 for a, k in ((1000.0, HALF_MAX), (3000.0, 1500.0), (500.0, 800.0))]
    expected = 1.0 - np.prod([1.0 - r for r in responses])
    assert kernel.kill_response(lat.cells, lat.extra, site, params, True) == pytest.approx(expected)
    single = quiet()[0]
    # a plain CAR: the kernel compiled for every scenario and the one for plain CARs agree
    assert kernel.kill_response(lat.cells, lat.extra, site, single, True) == responses[0]
    assert kernel.kill_response(lat.cells, lat.extra, site, single, None) == responses[0]


def test_or_car_binds_the_target_with_the_strongest_combined_signal():
    lat = make_lattice(5, 5, extra=True)
    car_t = place(lat, 2, 2, CAR_T)
    target_with(lat, 1, 2, a=HIGH)  # one antigen high
    both = target_with(lat, 3, 2, a=HIGH, b=HIGH)  # both high: a stronger OR signal
    params = quiet(second_kill_slot=1, second_half_max=HALF_MAX)[0]
    picked = {kernel.best_target(car_t, kernel.site_position(car_t, lat.shape), lat.cells, lat.extra, lat.shape, lat.offsets, params,
                                 SEED, sweep, True) for sweep in range(32)}
    assert picked == {both}


# ---------------------------------------------------------------------------------------------
# NOT: an inhibitory CAR
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("veto_density, killed", [(HIGH, 0), (0.5 * HALF_MAX, 1)])
def test_inhibitory_car_spares_targets_carrying_its_antigen_above_half_max(veto_density,
                                                                           killed):
    lat = make_lattice(5, 5, extra=True)
    place(lat, 2, 2, CAR_T)
    target_with(lat, 2, 1, cell_type=NORMAL, a=HIGH, c=veto_density)
    params = quiet(car_t_kill_rate_per_min=HUGE_KILL_RATE, veto_slot=2,
                   veto_half_max=HALF_MAX)
    events = interact(lat, params)
    assert events[E_NORMAL_KILLED] == killed


# ---------------------------------------------------------------------------------------------
# AND: a priming (SynNotch) receptor
# ---------------------------------------------------------------------------------------------
def and_gate(**overrides):
    return quiet(car_t_kill_rate_per_min=HUGE_KILL_RATE, kill_slot=1, prime_slot=0,
                 prime_half_max=HALF_MAX, priming_steps=3, **overrides)


def test_unprimed_and_gate_never_kills_a_cell_carrying_only_the_car_antigen():
    lat = make_lattice(5, 5, extra=True)
    car_t = place(lat, 2, 2, CAR_T)
    target_with(lat, 2, 1, b=HIGH)
    for sweep in range(5):
        assert interact(lat, and_gate(), sweep)[E_CANCER_KILLED] == 0
    assert lat.extra["primed"][car_t] == 0


def test_priming_antigen_nearby_lets_the_and_gate_kill_a_cell_lacking_it():
    lat = make_lattice(5, 5, extra=True)
    car_t = place(lat, 2, 2, CAR_T)
    target = target_with(lat, 2, 1, b=HIGH)  # CAR antigen only
    target_with(lat, 2, 3, a=HIGH)  # priming antigen only: primes, is not a CAR target
    events = interact(lat, and_gate())
    assert events[E_CANCER_KILLED] == 1 and lat.cells["cell_type"][target] != CANCER
    assert lat.extra["primed"][car_t] == 3


def test_priming_wears_off_one_step_at_a_time_away_from_the_priming_antigen():
    lat = make_lattice(7, 7, extra=True)
    car_t = place(lat, 3, 3, CAR_T)
    lat.extra["primed"][car_t] = 3  # primed (priming_steps = 3) at its last contact
    params = and_gate()
    target = target_with(lat, 3, 2, b=HIGH)
    lat.cells["cell_type"][target] = 0  # no target in the first step: only the timer runs
    interact(lat, params, sweep=0)
    assert lat.extra["primed"][car_t] == 2
    lat.cells["cell_type"][target] = CANCER  # still expressed in this step: it kills
    assert interact(lat, params, sweep=1)[E_CANCER_KILLED] == 1
    assert lat.extra["primed"][car_t] == 1
    target_with(lat, 4, 3, b=HIGH)
    # the timer reaches 0 in this step: 3 steps of CAR expression after the last contact
    assert interact(lat, params, sweep=2)[E_CANCER_KILLED] == 0
    assert lat.extra["primed"][car_t] == 0


# ---------------------------------------------------------------------------------------------
# antigens of daughters, and cells that move carry their extra record
# ---------------------------------------------------------------------------------------------
def divide_once(lat, **overrides):
    interact(lat, quiet(cancer_divide_p=1.0, **overrides))
    cancer = np.flatnonzero(lat.cells["cell_type"] == CANCER)
    assert cancer.size == 2
    return cancer


def test_daughters_inherit_every_antigen_slot():
    lat = make_lattice(3, 3, extra=True)
    target_with(lat, 1, 1, a=1000.0, b=2000.0, c=3000.0)
    cancer = divide_once(lat)
    assert lat.cells["antigen"][cancer].tolist() == [1000.0, 1000.0]
    assert lat.extra["antigen_b"][cancer].tolist() == [2000.0, 2000.0]
    assert lat.extra["antigen_c"][cancer].tolist() == [3000.0, 3000.0]


def test_each_antigen_is_lost_on_its_own():
    lat = make_lattice(3, 3, extra=True)
    mother = target_with(lat, 1, 1, a=1000.0, b=2000.0, c=3000.0)
    cancer = divide_once(lat, antigen_b_loss_p=1.0)
    daughter = cancer[cancer != mother][0]
    assert lat.extra[daughter]["antigen_b"] == 0.0
    assert lat.cells[daughter]["antigen"] == 1000.0 and lat.extra[daughter]["antigen_c"] == 3000.0


def test_linked_loss_removes_every_antigen_at_once():
    lat = make_lattice(3, 3, extra=True)
    mother = target_with(lat, 1, 1, a=1000.0, b=2000.0, c=3000.0)
    cancer = divide_once(lat, linked_antigen_loss_p=1.0)
    daughter = cancer[cancer != mother][0]
    assert lat.cells[daughter]["antigen"] == 0.0
    assert lat.extra[daughter][["antigen_b", "antigen_c"]].tolist() == (0.0, 0.0)
    assert lat.extra[mother]["antigen_c"] == 3000.0


def test_a_moving_cell_takes_its_extra_record_along():
    lat = make_lattice(3, 1, extra=True)
    site = target_with(lat, 0, 0, a=1.0, b=2.0, c=3.0)
    move_p = np.zeros(5)
    move_p[CANCER] = 1.0
    for sweep in range(20):
        kernel.migration_sweep(lat.cells, lat.extra, lat.tissue, lat.fields, lat.shape,
                               lat.offsets, move_p, np.zeros(5), quiet(), SEED, sweep)
        if lat.cells["cell_type"][site] != CANCER:
            break
    now = int(np.flatnonzero(lat.cells["cell_type"] == CANCER)[0])
    assert now != site
    assert lat.extra[now][["antigen_b", "antigen_c"]].tolist() == (2.0, 3.0)
    assert lat.extra[site][["antigen_b", "antigen_c"]].tolist() == (0.0, 0.0)


# ---------------------------------------------------------------------------------------------
# armour
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sensitivity, killed", [(1.0, 0), (0.0, 1)])
def test_suppression_resistant_car_t_kill_under_overwhelming_suppression(sensitivity, killed):
    lat = make_lattice(5, 5, extra=True)
    car_t = place(lat, 2, 2, CAR_T)
    target_with(lat, 2, 1, a=HIGH)
    # suppression factor 1 / (1 + 1e15 / 20): the kill probability per step is ~1e-7
    lat.fields[F_SUPPRESSION, car_t] = 1e15
    params = quiet(car_t_kill_rate_per_min=HUGE_KILL_RATE,
                   suppression_sensitivity=sensitivity)
    assert interact(lat, params)[E_CANCER_KILLED] == killed


def scenario(**car_t) -> ScenarioConfig:
    data = copy.deepcopy(TINY_SCENARIO)
    data["car_t"].update(car_t)
    data["microenvironment"] = {"suppression": {"checkpoint_share": 0.3}}
    return ScenarioConfig.model_validate(data)


@pytest.mark.parametrize("armour, sensitivity, kill_factor", [
    ({}, 1.0, 1.0),
    ({"tgf_beta_resistance": 1.0}, 0.3, 1.0),  # the checkpoint part is left
    ({"pd1_knockout": True}, 0.7, 1.0),  # the TGF-beta part is left
    ({"tgf_beta_resistance": 1.0, "pd1_knockout": True}, 0.0, 1.0),
    ({"il12": {}}, 0.5, 1.5),  # the documented IL-12 defaults
])
def test_armour_becomes_a_suppression_sensitivity_and_a_kill_factor(armour, sensitivity,
                                                                    kill_factor):
    params = kernel_parameters(scenario(armour=armour))[0]
    assert params["suppression_sensitivity"] == pytest.approx(sensitivity, abs=1e-12)
    assert params["armoured_kill_factor"] == kill_factor


def test_il12_armour_raises_the_crs_index_of_the_same_run():
    def peak(**car_t):
        data = copy.deepcopy(TINY_SCENARIO)
        data["car_t"].update(car_t)
        data["microenvironment"] = {"cytokine": {"enabled": True}}
        model = CarTModel(data, seed=3)
        model.run()
        return max(model.datacollector.model_vars["crs_index"])

    plain = peak()
    armoured = peak(armour={"il12": {"kill_rate_factor": 1.0, "suppression_resistance": 0.0,
                                     "cytokine_secretion_factor": 3.0}})
    # same kills (no other effect switched on), three times the secretion per activated cell
    assert plain > 0 and armoured == pytest.approx(3.0 * plain, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# YAML -> kernel parameters and lattice
# ---------------------------------------------------------------------------------------------
def named(antigens: dict, receptors: list | None = None, normal: list | None = None) -> dict:
    data = copy.deepcopy(TINY_SCENARIO)
    data["tumor"].pop("antigen")
    data["tumor"]["antigens"] = antigens
    if receptors is not None:
        data["car_t"]["receptors"] = receptors
    if normal is not None:
        data["normal"] = normal
    return data


TWO = {"CD19": {"mean_molecules_per_cell": 8000.0, "negative_fraction": 0.3},
       "CD22": {"mean_molecules_per_cell": 3000.0, "negative_fraction": 0.5}}


def test_receptors_become_antigen_slots_and_half_max_densities():
    cfg = ScenarioConfig.model_validate(named(
        {**TWO, "EGFRvIII": {"mean_molecules_per_cell": 1.0}},
        [{"antigen": "CD22", "half_max_molecules_per_cell": 900.0}, {"antigen": "CD19"},
         {"antigen": "EGFRvIII", "role": "prime"}]))
    p = kernel_parameters(cfg)[0]
    assert (p["kill_slot"], p["antigen_half_max"]) == (1, 900.0)
    assert (p["second_kill_slot"], p["second_half_max"]) == (0, 2000.0)  # car_t default
    assert p["third_kill_slot"] == NO_RECEPTOR and p["veto_slot"] == NO_RECEPTOR
    assert (p["prime_slot"], p["n_antigens"]) == (2, 3)
    assert p["priming_steps"] == 120  # 12 h at 6 min


def test_single_antigen_scenarios_keep_one_car_and_no_extra_records():
    cfg = ScenarioConfig.model_validate(copy.deepcopy(TINY_SCENARIO))
    p = kernel_parameters(cfg)[0]
    assert (p["kill_slot"], p["second_kill_slot"], p["prime_slot"]) == (0, NO_RECEPTOR,
                                                                        NO_RECEPTOR)
    model = CarTModel(cfg, seed=1)
    assert model.lattice.extra.size == 0 and model.columns == REPORTED_COLUMNS


def test_independent_antigens_combine_into_subclones():
    cfg = ScenarioConfig.model_validate(named(TWO))
    cfg = cfg.model_copy(update={"tumor": cfg.tumor.model_copy(update={"initial_cells": 190})})
    model = CarTModel(cfg, seed=2)
    counts = model.counts
    n = counts["tumor_cells"]
    assert sum(counts[f"tumor_expressing_{phenotype_label(['CD19', 'CD22'], m)}"]
               for m in range(4)) == n
    # 30 % and 50 % negative drawn independently: 15 % double-negative (binomial, n = 190:
    # sd 2.6 points, so 4 sd either side)
    assert counts["tumor_expressing_none"] / n == pytest.approx(0.15, abs=0.105)
    assert counts["tumor_antigen_negative_CD19"] / n == pytest.approx(0.3, abs=0.135)


def test_normal_cells_carry_named_antigens_only_when_given():
    cfg = ScenarioConfig.model_validate(named(TWO, normal=[
        {"name": "b_cells", "density": 0.2, "antigens": {"CD22": {"mean_molecules_per_cell":
                                                                   2000.0}}},
        {"name": "others", "density": 0.2}]))
    model = CarTModel(cfg, seed=3)
    assert model.counts["normal_antigen_positive_CD22"] > 0
    assert model.counts["normal_antigen_positive_CD19"] == 0


# ---------------------------------------------------------------------------------------------
# the census
# ---------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, CANCER, NORMAL, CAR_T]),
                          st.sampled_from([0.0, 500.0, 2000.0, 9000.0]),
                          st.sampled_from([0.0, 500.0, 2000.0, 9000.0]),
                          st.sampled_from([0.0, 3000.0])), min_size=1, max_size=60))
def test_or_car_census_splits_tumour_cells_by_what_the_car_sees(cells):
    lat = make_lattice(len(cells), 1, extra=True)
    for x, (kind, a, b, c) in enumerate(cells):
        if kind:
            target_with(lat, x, 0, cell_type=kind, a=a, b=b, c=c)
    params = quiet(second_kill_slot=1, second_half_max=1000.0, veto_slot=2,
                   veto_half_max=HALF_MAX)
    got = dict(zip(CENSUS_NAMES, kernel.census(lat.cells, lat.extra, params)))
    cancer = [(a, b, c) for kind, a, b, c in cells if kind == CANCER]
    negative = sum(a == 0 and b == 0 for a, b, _ in cancer)
    high = sum((a >= HALF_MAX or b >= 1000.0) and c < HALF_MAX for a, b, c in cancer)
    assert got["tumor_antigen_negative"] == negative
    assert got["tumor_antigen_high"] == high
    assert got["tumor_antigen_low"] == len(cancer) - negative - high
    phenotypes = kernel.antigen_phenotypes(lat.cells, lat.extra, 3)
    assert phenotypes[0].sum() == len(cancer)
    assert phenotypes[0, 0] == sum(a == 0 and b == 0 and c == 0 for a, b, c in cancer)


def test_antigen_columns_name_each_antigen_and_each_phenotype():
    assert antigen_columns(["antigen"]) == []
    columns = antigen_columns(["CD19", "CD22"])
    assert columns[:4] == ["tumor_antigen_negative_CD19", "tumor_antigen_negative_CD22",
                           "normal_antigen_positive_CD19", "normal_antigen_positive_CD22"]
    assert columns[4:] == ["tumor_expressing_none", "tumor_expressing_CD19",
                           "tumor_expressing_CD22", "tumor_expressing_CD19+CD22"]


# ---------------------------------------------------------------------------------------------
# bad designs: the file and the key path, no traceback
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, message", [
    (lambda d: d["tumor"].update(antigens=TWO), "tumor.antigen: give either"),
    (lambda d: d["car_t"].update(receptors=[{"antigen": "CD20"}]),
     "car_t.receptors[0].antigen: unknown antigen"),
    (lambda d: d["car_t"].update(receptors=[{"antigen": "antigen", "role": "prime"}]),
     "needs 1 to 3 receptors with role kill"),
    (lambda d: d["car_t"].update(receptors=[{"antigen": "antigen"}, {"antigen": "antigen"}]),
     "two kill receptors bind the same antigen"),
    (lambda d: d["car_t"].update(receptors=[{"antigen": "antigen", "role": "maybe"}]),
     "car_t.receptors[0].role"),
    (lambda d: d["normal"][0].update(antigens={"CD22": {"mean_molecules_per_cell": 1.0}}),
     "normal[0].antigens: needs named tumour antigens"),
    (lambda d: d["car_t"].update(armour={"tgf_beta_resistance": 1.5}),
     "car_t.armour.tgf_beta_resistance"),
])
def test_bad_designs_name_the_key(change, message):
    data = copy.deepcopy(TINY_SCENARIO)
    change(data)
    with pytest.raises(ConfigError, match="^design.yaml: .*" + message.replace("[", r"\[")
                       .replace("]", r"\]").replace(".", r"\.")):
        validate(data, ScenarioConfig, "design.yaml")


def test_more_than_three_antigens_is_refused():
    antigens = {name: {"mean_molecules_per_cell": 1.0} for name in ("A", "B", "C")}
    normal = [{"name": "x", "density": 0.1, "antigens": {"D": {"mean_molecules_per_cell": 1.0}}}]
    with pytest.raises(ConfigError, match="names 4 antigens"):
        validate(named(antigens, normal=normal), ScenarioConfig, "design.yaml")


def test_cli_reports_a_bad_receptor_without_traceback(tmp_path, config_dir):
    path = tmp_path / "bad.yaml"
    path.write_text(f"extends: {config_dir / 'car_design' / 'b_all_or_cd19_cd22.yaml'}\n"
                    "car_t:\n  receptors:\n    - {antigen: CD33}\n")
    result = subprocess.run([sys.executable, "-m", "simulation", "validate", str(path)],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "car_t.receptors[0].antigen: unknown antigen; the scenario has CD19, CD22" in (
        result.stderr)
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------
# bit-identity with the new records: checkpoints and the shipped design scenarios
# ---------------------------------------------------------------------------------------------
def and_gate_scenario() -> dict:
    data = named({"EGFRvIII": {"mean_molecules_per_cell": 9000.0, "negative_fraction": 0.5},
                  "EphA2": {"mean_molecules_per_cell": 8000.0}},
                 [{"antigen": "EGFRvIII", "role": "prime"}, {"antigen": "EphA2"}],
                 [{"name": "tissue", "density": 0.2, "speed_um_per_min": 1.0,
                   "antigens": {"EphA2": {"mean_molecules_per_cell": 8000.0}}}])
    data["car_t"]["kill_rate_per_h"] = 4.0
    return data


@pytest.mark.parametrize("old_format", [False, True])
def test_and_gate_run_restored_from_a_checkpoint_finishes_identically(tmp_path, old_format):
    original = CarTModel(and_gate_scenario(), seed=4)
    for _ in range(130):
        original.step()
    assert original.lattice.extra["primed"].any()  # priming is part of the saved state
    state = original.checkpoint_state()
    checkpoints.save_checkpoint(state, tmp_path / "c.npz")
    restored = CarTModel.from_checkpoint(checkpoints.load_checkpoint(tmp_path / "c.npz"))
    finish_identically(original, restored)
    if old_format:  # a format-3 checkpoint (no extra records) of a one-antigen run
        single = CarTModel(copy.deepcopy(TINY_SCENARIO), seed=4)
        for _ in range(50):
            single.step()
        state = single.checkpoint_state()
        del state["extra"]
        state["format"] = 3
        finish_identically(single, CarTModel.from_checkpoint(state))


def test_extra_records_that_do_not_fit_the_config_are_refused():
    model = CarTModel(and_gate_scenario(), seed=4)
    state = model.checkpoint_state()
    state["extra"] = state["extra"][:-1]
    with pytest.raises(ValueError, match="does not match its config"):
        CarTModel.from_checkpoint(state)


@pytest.mark.parametrize("path", ["car_design/b_all_or_cd19_cd22.yaml",
                                  "car_design/gbm_synnotch_and.yaml"])
def test_design_scenarios_give_the_same_run_on_one_and_two_threads(config_dir, path):
    overrides = dict(lattice__width=60, lattice__height=60, tumor__initial_cells=1000,
                     time__duration_days=2.0)
    one, two = (CarTModel(config_dir / path, seed=5, threads=n, **overrides) for n in (1, 2))
    one.run()
    two.run()
    assert np.array_equal(one.lattice.cells, two.lattice.cells)
    assert np.array_equal(one.lattice.extra, two.lattice.extra)
    assert one.datacollector.get_model_vars_dataframe().equals(
        two.datacollector.get_model_vars_dataframe())
    assert one.events[E_CANCER_KILLED] > 0


def test_shipped_design_scenarios_load(config_dir):
    names = {}
    for path in sorted((config_dir / "car_design").glob("*.yaml")):
        if "scenarios:" not in path.read_text():
            names[path.stem] = load_scenario(path).antigen_names
    assert names["b_all_or_cd19_cd22"] == ["CD19", "CD22"]
    assert names["gbm_synnotch_and"] == ["EGFRvIII", "EphA2"]
    assert names["gbm_dntgfbr"] == ["antigen"]
    assert load_scenario(config_dir / "car_design" / "gbm_synnotch_and.yaml").needs_extra_records
