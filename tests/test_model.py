"""The Mesa model around the kernels: running, data collection, overrides, seeds, motility."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import make_lattice, minimal_scenario_dict, numpy_census, place, site_of, xy_of
from simulation.engine import kernel
from simulation.config import ConfigError, ScenarioConfig
from simulation.engine.constants import (
    CANCER,
    CAR_T,
    CENSUS_NAMES,
    CENSUS_TUMOR_CELLS,
    KERNEL_PARAMS_DTYPE,
    N_SUBSETS,
    neutral_kernel_parameters,
    NORMAL,
    mean_step_length,
)
from simulation.model import REPORTED_COLUMNS, CarTModel
from simulation.biology.scenario import kernel_parameters, motility


def dataframe(model: CarTModel) -> pd.DataFrame:
    return model.datacollector.get_model_vars_dataframe()


@pytest.fixture
def finished_model(tiny_scenario_dict) -> CarTModel:
    model = CarTModel(tiny_scenario_dict, seed=3)
    model.run()
    return model


def test_model_runs_to_the_end(finished_model):
    model = finished_model
    assert model.running is False
    assert model.time_min == pytest.approx(2.0 * 1440.0)
    assert model.step_index == round(2.0 * 1440.0 / 6.0)
    steps_before = model.step_index
    model.step()  # stepping a finished model does nothing
    assert model.step_index == steps_before


def test_dataframe_has_reported_columns_and_increasing_time(finished_model):
    df = dataframe(finished_model)
    assert tuple(df.columns) == REPORTED_COLUMNS
    times = df["time_days"].to_numpy()
    assert times[0] == 0.0
    assert np.all(np.diff(times) > 0)
    assert times[-1] == pytest.approx(2.0)
    # one census at t = 0 and one every 6 h over 2 days
    assert len(df) == 1 + 2 * 24 // 6
    assert np.allclose(np.diff(times), 0.25)
    assert np.all(df["cumulative_car_t_infused"] == 8)
    assert np.all(np.diff(df["cumulative_cancer_killed"]) >= 0)


def test_census_matches_numpy_counts_of_the_lattice(finished_model):
    model = finished_model
    half_max = model.params[0]["antigen_half_max"]
    expected = numpy_census(model.lattice.cells, half_max)
    assert [model.counts[name] for name in CENSUS_NAMES] == expected.tolist()
    last = dataframe(model).iloc[-1]
    assert [int(last[name]) for name in CENSUS_NAMES] == expected.tolist()
    # the event-based tumour count agrees with the lattice
    assert model.tumor_cells == expected[CENSUS_TUMOR_CELLS]
    assert model.counts["cumulative_cancer_killed"] == model.event_totals["cancer_killed"]


def test_initial_lattice_matches_the_scenario(tiny_scenario_dict):
    model = CarTModel(tiny_scenario_dict, seed=1)
    kinds = model.lattice.cells["cell_type"]
    assert np.count_nonzero(kinds == CANCER) == 40
    assert np.count_nonzero(kinds == CAR_T) == 8  # the day-0 dose is placed at t = 0
    assert np.count_nonzero(kinds == NORMAL) == round(0.1 * (400 - 40))
    assert model.counts["tumor_cells"] == 40
    assert model.counts["car_t_cells"] == 8


def test_keyword_overrides_with_double_underscore(tiny_scenario_dict):
    model = CarTModel(tiny_scenario_dict, seed=0, car_t__max_kills=3,
                      tumor__antigen__cv=0.25, time__dt_min=3.0)
    assert model.config.car_t.max_kills == 3
    assert model.params[0]["max_kills"] == 3
    assert model.config.tumor.antigen.cv == 0.25
    assert model.dt_min == 3.0
    assert model.config.tumor.cycle_time_h == 24.0  # untouched


def test_keyword_override_of_a_list_item_and_string(tiny_scenario_dict):
    model = CarTModel(tiny_scenario_dict, seed=0, dosing__doses__0__cells=5,
                      tumor__layout="compact")
    assert model.config.dosing.doses[0].cells == 5
    assert model.config.tumor.layout == "compact"
    assert model.car_t_infused == 5


def test_keyword_overrides_do_not_leak_into_the_callers_dict(tiny_scenario_dict):
    original = copy.deepcopy(tiny_scenario_dict)
    CarTModel(tiny_scenario_dict, seed=0, car_t__max_kills=3)
    assert tiny_scenario_dict == original
    assert CarTModel(tiny_scenario_dict, seed=0).config.car_t.max_kills == 10


def test_model_from_config_object_and_yaml_path(tiny_scenario_dict, tmp_path):
    cfg = ScenarioConfig.model_validate(tiny_scenario_dict)
    from_cfg = CarTModel(cfg, seed=2)
    assert from_cfg.config is cfg
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_scenario_dict), encoding="utf-8")
    from_path = CarTModel(path, seed=2, car_t__max_divisions=1)
    assert from_path.config.car_t.max_divisions == 1
    assert np.array_equal(from_cfg.lattice.cells, CarTModel(str(path), seed=2).lattice.cells)


def test_same_seed_gives_identical_runs(tiny_scenario_dict):
    a = CarTModel(tiny_scenario_dict, seed=7)
    b = CarTModel(copy.deepcopy(tiny_scenario_dict), seed=7)
    a.run()
    b.run()
    pd.testing.assert_frame_equal(dataframe(a), dataframe(b))
    assert np.array_equal(a.lattice.cells, b.lattice.cells)
    assert np.array_equal(a.events, b.events)


def test_different_seeds_give_different_runs(tiny_scenario_dict):
    a = CarTModel(tiny_scenario_dict, seed=7)
    b = CarTModel(copy.deepcopy(tiny_scenario_dict), seed=8)
    assert not np.array_equal(a.lattice.cells["cell_type"], b.lattice.cells["cell_type"])
    a.run()
    b.run()
    assert not dataframe(a).equals(dataframe(b))
    assert not np.array_equal(a.events, b.events)


def test_stop_when_cleared_ends_run_early():
    data = minimal_scenario_dict()
    data["time"] = {"duration_days": 5.0, "stop_when_cleared": True, "record_every_h": 24.0}
    data["tumor"]["antigen"] = {"mean_molecules_per_cell": 50000.0, "cv": 0.1}
    data["car_t"] = {"kill_rate_per_h": 600.0}
    data["dosing"] = {"route": "anywhere", "doses": [{"day": 0, "cells": 150}]}
    model = CarTModel(data, seed=0)
    model.run()
    assert model.running is False
    assert model.tumor_cells == 0
    assert np.count_nonzero(model.lattice.cells["cell_type"] == CANCER) == 0
    assert model.time_min < 5.0 * 1440.0
    df = dataframe(model)
    assert df["tumor_cells"].iloc[-1] == 0
    assert df["time_days"].iloc[-1] == pytest.approx(model.time_min / 1440.0)


def test_later_dose_is_infused_on_its_day(tiny_scenario_dict):
    tiny_scenario_dict["dosing"]["doses"] = [{"day": 1.0, "cells": 6}]
    model = CarTModel(tiny_scenario_dict, seed=4)
    assert model.car_t_infused == 0
    assert np.count_nonzero(model.lattice.cells["cell_type"] == CAR_T) == 0
    model.run()
    df = dataframe(model)
    before = df[df["time_days"] < 1.0 - 1e-9]
    after = df[df["time_days"] > 1.0 + 1e-9]
    assert len(before) > 0 and len(after) > 0
    assert np.all(before["car_t_cells"] == 0)
    assert np.all(before["cumulative_car_t_infused"] == 0)
    assert np.all(after["cumulative_car_t_infused"] == 6)


# ---------------------------------------------------------------------------------------------
# motility: the configured speed is reproduced at any time step
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("neighbourhood", ["moore", "von_neumann"])
@pytest.mark.parametrize("dt_min", [0.5, 1.0, 2.5, 6.0, 13.0, 30.0, 60.0])
def test_motility_reproduces_configured_speeds(neighbourhood, dt_min):
    data = minimal_scenario_dict()
    data["lattice"].update(neighbourhood=neighbourhood, spacing_um=12.0)
    data["time"] = {"dt_min": dt_min}
    data["tumor"]["speed_um_per_min"] = 0.7
    data["normal"] = [{"name": "slow", "density": 0.1, "speed_um_per_min": 0.3},
                      {"name": "fast", "density": 0.1, "speed_um_per_min": 2.0},
                      {"name": "absent", "density": 0.0, "speed_um_per_min": 50.0}]
    data["car_t"] = {"speed_um_per_min": 7.5, "persistence_time_min": 10.0}
    cfg = ScenarioConfig.model_validate(data)
    lattice = make_lattice(20, 20, neighbourhood, spacing_um=12.0)
    mot = motility(cfg, lattice)
    step_um = mean_step_length(lattice.offsets) * 12.0
    moves_per_step = mot.move_p * mot.n_substeps
    speeds = moves_per_step * step_um / dt_min
    assert speeds[CAR_T] == pytest.approx(7.5, abs=1e-9)
    assert speeds[CANCER] == pytest.approx(0.7, abs=1e-9)
    assert speeds[NORMAL] == pytest.approx(2.0, abs=1e-9)  # fastest present population
    assert speeds[0] == 0.0
    assert np.all(mot.move_p <= 1.0) and np.all(mot.move_p >= 0.0)
    # the fewest sub-steps that keep every move probability <= 1
    assert mot.n_substeps == max(1, int(np.ceil(moves_per_step.max() - 1e-12)))
    assert mot.n_substeps == 1 or moves_per_step.max() / (mot.n_substeps - 1) > 1.0
    expected_persist = np.exp(-(step_um / 7.5) / 10.0)
    assert mot.persist_p[CAR_T] == pytest.approx(expected_persist, rel=1e-12)
    assert mot.persist_p[CANCER] == 0.0


def test_kernel_parameters_convert_physical_units_once():
    data = minimal_scenario_dict()
    data["time"] = {"dt_min": 4.0}
    data["tumor"].update(cycle_time_h=30.0, death_rate_per_day=0.2)
    data["car_t"] = {"kill_rate_per_h": 3.0, "activation_duration_h": 10.0,
                     "exhaustion_after_engaged_h": 2.0, "effector_half_life_days": 2.0,
                     "max_kills": 7}
    cfg = ScenarioConfig.model_validate(data)
    params = kernel_parameters(cfg)
    assert params.dtype == KERNEL_PARAMS_DTYPE and params.shape == (N_SUBSETS,)  # one product
    p = params[0]
    assert p["car_t_kill_rate_per_min"] == pytest.approx(3.0 / 60.0)
    assert p["activation_steps"] == 150  # 10 h / 4 min
    assert p["exhaustion_engaged_steps"] == 30
    assert p["max_kills"] == 7
    assert p["dt_min"] == 4.0
    # constant hazards: p = 1 - exp(-rate * dt), with rate = ln 2 / half-life or doubling time
    # cancer birth and death compete: P(any) = 1 - exp(-(b + d) dt), split in proportion b : d
    birth, death = np.log(2) / (30 * 60), 0.2 / 1440
    any_event = 1 - np.exp(-(birth + death) * 4)
    assert p["cancer_divide_p"] == pytest.approx(any_event * birth / (birth + death))
    assert p["cancer_death_p"] == pytest.approx(any_event * death / (birth + death))
    assert p["cancer_divide_p"] + p["cancer_death_p"] <= 1.0
    assert p["car_t_effector_death_p"] == pytest.approx(1 - np.exp(-np.log(2) / (2 * 1440) * 4))


def test_timer_longer_than_uint16_is_a_config_error():
    data = minimal_scenario_dict()
    data["time"] = {"dt_min": 0.01}
    # 24 h is 144000 steps > 65535; the engaged timer (0.1 h = 600 steps) still fits
    data["car_t"] = {"activation_duration_h": 24.0, "exhaustion_after_engaged_h": 0.1}
    with pytest.raises(ConfigError,
                       match=r"car_t\.activation_duration_h: 24 h is 144000 time steps"):
        kernel_parameters(ScenarioConfig.model_validate(data))


def test_mean_step_length_of_neighbourhoods():
    assert mean_step_length(make_lattice(3, 3, "von_neumann").offsets) == 1.0
    assert mean_step_length(make_lattice(3, 3, "moore").offsets) == pytest.approx(
        (4 + 4 * np.sqrt(2)) / 8)


def test_empirical_car_t_speed_matches_config_over_five_seeds():
    """A lone CAR-T in free space covers speed * time of path on average (5 seeds pooled)."""
    data = minimal_scenario_dict()
    data["car_t"] = {"speed_um_per_min": 5.0, "persistence_time_min": 10.0}
    cfg = ScenarioConfig.model_validate(data)
    width = 30
    centre = site_of(make_lattice(width, width), width // 2, width // 2)
    empty_record = make_lattice(3, 3).cells[0].copy()
    params = neutral_kernel_parameters()
    params[0]["antigen_half_max"] = 2000.0
    path_um, minutes = 0.0, 0.0
    for seed in range(5):
        lat = make_lattice(width, width, spacing_um=cfg.lattice.spacing_um)
        mot = motility(cfg, lat)
        assert mot.n_substeps == 2 and 0.5 < mot.move_p[CAR_T] < 1.0
        place(lat, width // 2, width // 2, CAR_T)
        sweep = 0
        for _ in range(STEPS_PER_SEED):
            for _ in range(mot.n_substeps):
                (before,) = np.flatnonzero(lat.cells["cell_type"] == CAR_T)
                kernel.migration_sweep(lat.cells, lat.extra, lat.tissue, lat.fields, lat.shape, lat.offsets, mot.move_p,
                                       mot.persist_p, params, seed, sweep)
                sweep += 1
                (after,) = np.flatnonzero(lat.cells["cell_type"] == CAR_T)
                (x0, y0), (x1, y1) = xy_of(lat, before), xy_of(lat, after)
                path_um += np.hypot(x1 - x0, y1 - y0) * cfg.lattice.spacing_um
                if min(x1, y1) < 3 or max(x1, y1) > width - 4:
                    # put it back in the middle (heading kept) so walls never block a move
                    record = lat.cells[after].copy()
                    lat.cells[after] = empty_record
                    lat.cells[centre] = record
            minutes += cfg.time.dt_min
    speed = path_um / minutes
    # one seed's 600-step speed has a relative sd of ~1.8 % (measured over 200 seeds; persistence
    # correlates successive step lengths), so the 5-seed pool has ~0.8 % and 4 % is 5 sd. A
    # conversion that forgot the longer diagonal moves would be 21 % fast.
    assert speed == pytest.approx(5.0, rel=0.04)


STEPS_PER_SEED = 600


def test_keyword_override_with_small_float_reads_back_as_a_number(tiny_scenario_dict):
    # 1e-05 written as JSON text would read back from YAML as the string "1e-05"
    model = CarTModel(tiny_scenario_dict, seed=1, car_t__kill_rate_per_h=1e-5)
    assert model.config.car_t.kill_rate_per_h == 1e-5


def test_no_rule_draws_from_mesas_generators(tiny_scenario_dict):
    """Every random number comes from ``engine.rng`` or a set-up generator seeded from the
    seed, so a checkpoint need not (and does not) save Mesa's ``random`` and ``rng``."""
    model = CarTModel(tiny_scenario_dict, seed=4)
    before = (model.random.getstate(), model.rng.bit_generator.state)
    model.run()
    assert (model.random.getstate(), model.rng.bit_generator.state) == before
    assert not {"random_state", "rng_state"} & set(model.checkpoint_state())
