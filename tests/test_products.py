"""Product composition (CD4:CD8, memory-like cells) and several products in one patient.

Kernel rules on hand-built lattices (a CAR-T reads the parameter record of its class; CD4 help;
daughters keep their class; per-class exits to and entries from the blood), the conversion of
``car_t.composition`` and ``products`` into class records and infusions, the blood pool per
class, the census columns per product and subset, the error messages of bad products, and
bit-identity (threads, checkpoints, old checkpoint formats) on the shipped scenarios.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from conftest import (CONFIG_DIR, TINY_SCENARIO, finish_identically, make_lattice, new_events,
                      place)
from hypothesis import given, settings
from hypothesis import strategies as st

from simulation import CarTModel
from simulation.biology.scenario import Infusion, dosing_plan, kernel_parameters, subset_shares
from simulation.config import (ConfigError, ScenarioConfig, apply_overrides, load_scenario,
                               validate)
from simulation.config import schema
from simulation.engine import constants as C
from simulation.engine import kernel
from simulation.engine.constants import (
    CANCER,
    CAR_T,
    E_CANCER_KILLED,
    EFFECTOR,
    MEMORY,
    N_EVENT_SLOTS,
    N_SUBSETS,
    SUBSET_CD4,
    SUBSET_MEMORY_LIKE,
    TISSUE_VESSEL,
)
from simulation.biology.observables import SUBSET_COLUMNS
from simulation.io import checkpoints
from test_car_design import HIGH, HUGE_KILL_RATE
from test_car_design import quiet as quiet_record
from simulation.viz.antigen_plots import plot_antigen_composition
from simulation.viz.product_plots import has_product_series, plot_car_t_products

SEED = 11


def quiet(n_classes: int = N_SUBSETS, **overrides: float) -> np.ndarray:
    """``n_classes`` copies of ``test_car_design.quiet``'s record (every stochastic event off
    except what ``overrides`` set)."""
    return np.repeat(quiet_record(**overrides)[:1], n_classes)


def interact(lat, params, events=None, sweep=0):
    events = new_events() if events is None else events
    kernel.interaction_sweep(lat.cells, lat.extra, lat.tissue, lat.fields, lat.shape,
                             lat.offsets, params, SEED, sweep, events)
    return events


def car_t_of_class(lat, x, y, car_class, state=EFFECTOR):
    site = place(lat, x, y, CAR_T)
    lat.cells["car_class"][site] = car_class
    lat.cells["car_t_state"][site] = state
    return site


# ---------------------------------------------------------------------------------------------
# kernel rules
# ---------------------------------------------------------------------------------------------
def test_a_car_t_kills_with_the_parameters_of_its_own_class():
    lat = make_lattice(9, 5)
    params = quiet(car_t_kill_rate_per_min=HUGE_KILL_RATE)
    params[1]["car_t_kill_rate_per_min"] = 0.0  # class 1 cannot kill
    killer = car_t_of_class(lat, 2, 2, 0)
    idle = car_t_of_class(lat, 6, 2, 1)
    near_killer = place(lat, 2, 1, CANCER, HIGH)
    near_idle = place(lat, 6, 1, CANCER, HIGH)
    events = interact(lat, params)
    assert events[E_CANCER_KILLED] == 1
    assert lat.cells["cell_type"][near_killer] != CANCER
    assert lat.cells["cell_type"][near_idle] == CANCER
    assert lat.cells["car_class"][idle] == 1 and lat.cells["car_class"][killer] == 0


def test_a_product_recognises_only_the_antigen_of_its_own_receptor():
    """Pooled products: the CD22 product (class 4) kills a cell carrying only antigen slot 1;
    the CD19 product (class 0) next to an identical cell does not."""
    lat = make_lattice(9, 5, extra=True)
    params = quiet(2 * N_SUBSETS, car_t_kill_rate_per_min=HUGE_KILL_RATE, n_antigens=2)
    params[N_SUBSETS:]["kill_slot"] = 1
    car_t_of_class(lat, 2, 2, 0)
    car_t_of_class(lat, 6, 2, N_SUBSETS)
    spared = place(lat, 2, 1, CANCER)
    killed = place(lat, 6, 1, CANCER)
    lat.extra["antigen_b"][[spared, killed]] = HIGH
    interact(lat, params)
    assert lat.cells["cell_type"][spared] == CANCER
    assert lat.cells["cell_type"][killed] != CANCER


@pytest.mark.parametrize("helper_class, divides", [(None, False), (SUBSET_CD4, True),
                                                   (0, False)])
def test_an_unhelped_cd8_car_t_divides_at_its_unhelped_rate(helper_class, divides):
    """A CD8 cell that needs help divides with certainty next to a CD4 CAR-T and never
    without one (unhelped probability 0); another CD8 CAR-T is no help."""
    lat = make_lattice(7, 7)
    params = quiet(max_divisions=5, car_t_divide_p=1.0, unhelped_divide_p=0.0, needs_help=1)
    params[SUBSET_CD4]["needs_help"] = 0
    params[SUBSET_CD4]["car_t_divide_p"] = 0.0  # the helper itself does not divide
    cd8 = car_t_of_class(lat, 3, 3, 0)
    lat.cells["activation"][cd8] = 10
    if helper_class is not None:
        car_t_of_class(lat, 4, 3, helper_class)
    events = interact(lat, params)
    assert (events[C.E_CAR_T_BORN] == 1) == divides


def test_daughters_keep_their_mothers_class():
    lat = make_lattice(7, 7)
    params = quiet(max_divisions=5, car_t_divide_p=1.0)
    mother = car_t_of_class(lat, 3, 3, SUBSET_CD4 | SUBSET_MEMORY_LIKE)
    lat.cells["activation"][mother] = 10
    interact(lat, params)
    car_t = np.flatnonzero(lat.cells["cell_type"] == CAR_T)
    assert car_t.size == 2
    assert set(lat.cells["car_class"][car_t]) == {SUBSET_CD4 | SUBSET_MEMORY_LIKE}


def test_car_t_leaving_for_the_blood_are_counted_per_class_and_the_site_is_cleared():
    lat = make_lattice(9, 5)
    lat.tissue[[0, 8]] = TISSUE_VESSEL  # (0, 0) and (8, 0)
    params = quiet(2 * N_SUBSETS, intravasation_p=1.0, activation_steps=0)
    effector = car_t_of_class(lat, 1, 1, 5)
    memory = car_t_of_class(lat, 7, 1, 2, state=MEMORY)
    events = np.zeros(N_EVENT_SLOTS, dtype=np.int64)
    interact(lat, params, events)
    per_class = events[C.E_CLASS_TO_BLOOD:].reshape(-1, 2)
    assert per_class[5, 0] == 1 and per_class[2, 1] == 1 and per_class.sum() == 2
    assert events[C.E_EFFECTOR_TO_BLOOD] == 1 and events[C.E_MEMORY_TO_BLOOD] == 1
    assert lat.cells["car_class"][[effector, memory]].tolist() == [0, 0]


def test_census_reads_a_cell_as_the_product_that_sees_it_best():
    """A blast carrying only CD22 (slot 1) is antigen-negative to a CD19 product alone and
    recognised once a CD22 product is in the scenario; a healthy cell carrying only CD22 is
    antigen-positive only then."""
    lat = make_lattice(5, 5, extra=True)
    blast = place(lat, 1, 1, CANCER)
    healthy = place(lat, 3, 3, C.NORMAL)
    lat.extra["antigen_b"][[blast, healthy]] = HIGH
    one = quiet(n_antigens=2)
    two = quiet(2 * N_SUBSETS, n_antigens=2)
    two[N_SUBSETS:]["kill_slot"] = 1
    counts = {name: dict(zip(C.CENSUS_NAMES, kernel.census(lat.cells, lat.extra, params)))
              for name, params in (("cd19", one), ("pooled", two))}
    assert counts["cd19"]["tumor_antigen_negative"] == 1
    assert counts["pooled"]["tumor_antigen_high"] == 1
    assert counts["cd19"]["normal_antigen_positive"] == 0
    assert counts["pooled"]["normal_antigen_positive"] == 1
    classes = kernel.antigen_classes(lat.cells, lat.extra, two)
    assert classes[blast] == C.ANTIGEN_HIGH and classes[0] == C.ANTIGEN_NEGATIVE


def test_cells_entering_from_the_blood_carry_their_class():
    lat = make_lattice(9, 9)
    vessel = 4 + 9 * 4
    lat.tissue[vessel] = TISSUE_VESSEL
    placed = kernel.extravasate(lat.cells, lat.extra, lat.tissue, lat.shape, lat.offsets,
                                np.array([vessel]), 3, 0, EFFECTOR, 6, SEED, 0,
                                np.zeros(9, dtype=np.uint8))
    car_t = np.flatnonzero(lat.cells["cell_type"] == CAR_T)
    assert placed == car_t.size == 3
    assert np.all(lat.cells["car_class"][car_t] == 6)
    assert kernel.car_t_by_class(lat.cells, 8).tolist() == [0] * 6 + [3, 0]


# ---------------------------------------------------------------------------------------------
# YAML -> class records and infusions
# ---------------------------------------------------------------------------------------------
def composed(cd4=0.5, memory_like=0.25, **extra) -> dict:
    data = copy.deepcopy(TINY_SCENARIO)
    data["car_t"]["composition"] = {"cd4_fraction": cd4, "memory_like_fraction": memory_like,
                                    **extra}
    return data


def test_composition_becomes_per_subset_records():
    cfg = validate(composed(), ScenarioConfig, "c.yaml")
    params = kernel_parameters(cfg)
    mix = cfg.car_t.composition
    cd8, cd4 = params[0], params[SUBSET_CD4]
    cd8_memory = params[SUBSET_MEMORY_LIKE]
    assert params.shape == (N_SUBSETS,)
    assert cd4["car_t_kill_rate_per_min"] == pytest.approx(
        mix.cd4_kill_rate_factor * cd8["car_t_kill_rate_per_min"])
    assert cd8["needs_help"] == 1 and cd4["needs_help"] == 0
    assert cd8["unhelped_divide_p"] < cd8["car_t_divide_p"] == cd4["unhelped_divide_p"]
    assert cd8_memory["max_divisions"] == cd8["max_divisions"] + mix.memory_like_extra_divisions
    # a longer half-life is a lower death probability per step
    assert cd8_memory["car_t_effector_death_p"] < cd8["car_t_effector_death_p"]
    assert cd4["car_t_effector_death_p"] < cd8["car_t_effector_death_p"]


def test_without_a_composition_every_subset_record_is_the_product():
    params = kernel_parameters(validate(copy.deepcopy(TINY_SCENARIO), ScenarioConfig, "t.yaml"))
    assert all(params[k] == params[0] for k in range(1, N_SUBSETS))
    assert params[0]["needs_help"] == 0


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 10**7), cd4=st.floats(0, 1), memory_like=st.floats(0, 1))
def test_infused_cells_split_into_subsets_without_loss(n, cd4, memory_like):
    cfg = validate(composed(cd4, memory_like), ScenarioConfig, "c.yaml")
    shares = subset_shares(cfg.car_t)
    counts = Infusion(0.0, n, None, "anywhere", 0, shares).class_counts(n)
    assert counts.sum() == n and np.all(counts >= 0)
    # largest remainders: every class within one cell of its exact share
    assert np.all(np.abs(counts - np.asarray(shares) * n) < 1.0 + 1e-9)


def test_products_start_from_car_t_and_doses_pick_them():
    data = copy.deepcopy(TINY_SCENARIO)
    data["car_t"]["kill_rate_per_h"] = 7.0
    data["products"] = {"second": {"max_kills": 3}}
    data["dosing"]["doses"] = [{"day": 0, "cells": 8}, {"day": 1, "cells": 4,
                                                        "product": "second"}]
    cfg = validate(data, ScenarioConfig, "p.yaml")
    assert cfg.products["second"].kill_rate_per_h == 7.0  # inherited
    assert cfg.products["second"].max_kills == 3
    assert [i.product for i in dosing_plan(cfg)] == [0, 1]
    params = kernel_parameters(cfg)
    assert params.shape == (2 * N_SUBSETS,)
    assert params[N_SUBSETS]["max_kills"] == 3 and params[0]["max_kills"] != 3


@pytest.mark.parametrize("change, message", [
    (lambda d: d["dosing"]["doses"][0].update(product="cd22"),
     "dosing.doses[0].product: unknown product; the scenario has main"),
    (lambda d: d.update(products={"main": {}}), "products.main: 'main' names car_t"),
    (lambda d: d.update(products={f"p{i}": {} for i in range(4)}),
     "products: at most 3 products besides car_t, got 4"),
    (lambda d: d.update(products={"fast": {"speed_um_per_min": 20.0}}),
     "products.fast.speed_um_per_min: all products move alike"),
    (lambda d: d.update(products={"bad": {"kill_rate_per_hh": 1.0}}),
     "products.bad.kill_rate_per_hh"),
    (lambda d: d.update(products={"x": {"receptors": [{"antigen": "CD20"}]}}),
     "products.x.receptors[0].antigen: unknown antigen"),
    (lambda d: d["car_t"].update(composition={"cd4_fraction": 1.5}),
     "car_t.composition.cd4_fraction"),
    (lambda d: d["car_t"].update(composition={"memory_like_extra_divisions": -1}),
     "car_t.composition.memory_like_extra_divisions"),
])
def test_bad_products_name_the_key(change, message):
    data = copy.deepcopy(TINY_SCENARIO)
    change(data)
    escaped = message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")
    with pytest.raises(ConfigError, match="^products.yaml: .*" + escaped):
        validate(data, ScenarioConfig, "products.yaml")


def test_overrides_start_an_omitted_composition():
    """A resolved config holds ``composition: null``; ``--set car_t.composition.x=...`` (and
    the model's ``car_t__composition__x=...``) starts the block instead of failing."""
    data = validate(copy.deepcopy(TINY_SCENARIO), ScenarioConfig, "t.yaml").model_dump()
    changed = apply_overrides(data, ["car_t.composition.cd4_fraction=0.25"])
    assert changed["car_t"]["composition"] == {"cd4_fraction": 0.25}
    assert data["car_t"]["composition"] is None  # the input is not changed
    model = CarTModel(validate(data, ScenarioConfig, "t.yaml"), seed=1,
                      car_t__composition__memory_like_fraction=0.5)
    assert model.config.car_t.composition.memory_like_fraction == 0.5
    assert model.config.car_t.composition.cd4_fraction == 0.5  # the schema default


def test_schema_and_engine_agree_on_the_number_of_products():
    assert schema.MAX_PRODUCTS == C.MAX_PRODUCTS
    assert C.MAX_CAR_CLASSES <= C.COUNTER_MAX + 1  # a class fits the uint8 car_class field


# ---------------------------------------------------------------------------------------------
# runs: census columns, blood pool, bit-identity
# ---------------------------------------------------------------------------------------------
def small(config_dir, path, days=6.0, **more):
    return CarTModel(config_dir / path, seed=3, lattice__width=60, lattice__height=60,
                     tumor__initial_cells=800, time__duration_days=days, **more)


def test_pooled_products_are_counted_per_product_in_lattice_and_blood(config_dir):
    model = small(config_dir, "car_design/b_all_pooled_cd19_cd22.yaml")
    assert model.blood.effector[0] == model.blood.effector[N_SUBSETS] > 0  # half the dose each
    model.run()
    table = model.datacollector.get_model_vars_dataframe()
    total = table["car_t_cells"] + table["car_t_blood"]
    assert (table["product_main_car_t"] + table["product_cd22_car_t"]).equals(total)
    assert table["product_cd22_car_t"].iloc[-1] > 0
    cells = model.lattice.cells
    car_t = cells["cell_type"] == CAR_T
    assert np.all(cells["car_class"][~car_t] == 0)  # only CAR-T carry a class
    assert np.all(cells["car_class"][car_t] < model.params.shape[0])
    # the CD22 product alone kills CD19-negative blasts: they fall
    negative = table["tumor_antigen_negative_CD19"]
    assert negative.iloc[-1] < negative.iloc[0]


def test_subset_columns_add_up_and_cd4_help_changes_the_run(config_dir):
    models = {name: small(config_dir, f"car_design/{name}.yaml", days=10.0)
              for name in ("b_all_cd8_only", "b_all_cd4_cd8")}
    tables = {}
    for name, model in models.items():
        model.run()
        tables[name] = model.datacollector.get_model_vars_dataframe()
    for table in tables.values():
        total = table["car_t_cells"] + table["car_t_blood"]
        assert (table["car_t_cd4"] + table["car_t_cd8"]).equals(total)
        assert (table["car_t_memory_like"] == 0).all()
    assert (tables["b_all_cd8_only"]["car_t_cd4"] == 0).all()
    assert tables["b_all_cd4_cd8"]["car_t_cd4"].iloc[-1] > 0


def test_blood_pool_cells_die_at_their_class_half_life():
    """200,000 memory-like CD4 and 200,000 plain CD8 effectors in the blood, 10 steps with no
    exit: deaths match each class's probability per step. At p ~ 1e-3 per step ~2,000 deaths
    are expected per class (binomial sd ~2 %), so 30 % is > 10 sd and still far below the
    factor 4 between the two classes' half-lives."""
    cfg = validate(composed(), ScenarioConfig, "c.yaml")
    model = CarTModel(cfg, seed=1)
    blood = model.blood
    blood.leave_p = 0.0
    blood.memory_p[:] = 0.0
    blood.effector[:] = 0
    long_lived = SUBSET_CD4 | SUBSET_MEMORY_LIKE
    blood.effector[[0, long_lived]] = 200_000
    rng = np.random.default_rng(0)
    deaths = np.zeros(N_SUBSETS)
    for _ in range(10):
        before = blood.effector.copy()
        blood.step(model.lattice, rng, 1, 0, model.motile_rows)
        deaths += before - blood.effector
        blood.effector[[0, long_lived]] = 200_000
    expected = 10 * 200_000 * model.params["car_t_effector_death_p"]
    assert deaths[0] == pytest.approx(expected[0], rel=0.3)
    assert deaths[long_lived] == pytest.approx(expected[long_lived], rel=0.3)
    assert deaths[long_lived] < deaths[0] / 2


@pytest.mark.parametrize("path", ["car_design/b_all_pooled_cd19_cd22.yaml",
                                  "car_design/b_all_memory_enriched.yaml"])
def test_product_scenarios_give_the_same_run_on_one_and_two_threads(config_dir, path):
    one, two = (small(config_dir, path, days=2.0, threads=n) for n in (1, 2))
    one.run()
    two.run()
    assert np.array_equal(one.lattice.cells, two.lattice.cells)
    assert one.datacollector.get_model_vars_dataframe().equals(
        two.datacollector.get_model_vars_dataframe())


def test_sequential_product_run_restored_from_a_checkpoint_finishes_identically(tmp_path,
                                                                                 config_dir):
    original = small(config_dir, "car_design/b_all_sequential_cd19_cd22.yaml", days=15.0,
                     time__dt_min=30.0)
    while original.time_min < 14.5 * 24 * 60:  # past the day-14 CD22 infusion
        original.step()
    cd22 = kernel.car_t_by_class(original.lattice.cells, 2 * N_SUBSETS)[N_SUBSETS:].sum()
    assert original.blood.cells > 0 and cd22 > 0  # both products are part of the state
    checkpoints.save_checkpoint(original.checkpoint_state(), tmp_path / "c.npz")
    restored = CarTModel.from_checkpoint(checkpoints.load_checkpoint(tmp_path / "c.npz"))
    finish_identically(original, restored)


def test_a_format_4_checkpoint_still_restores_and_finishes_identically():
    """Format 4: one blood count per state, 13 event counters, ``car_class`` named ``spare``."""
    model = CarTModel(copy.deepcopy(TINY_SCENARIO), seed=4)
    for _ in range(40):
        model.step()
    state = model.checkpoint_state()
    state["format"] = 4
    state["blood"] = {"effector": int(model.blood.effector[0]),
                      "memory": int(model.blood.memory[0])}
    state["events"] = state["events"][:C.N_EVENTS]
    names = ["spare" if n == "car_class" else n for n in state["cells"].dtype.names]
    old_dtype = np.dtype({"names": names, "formats": [state["cells"].dtype.fields[n][0]
                          for n in state["cells"].dtype.names],
                          "offsets": [state["cells"].dtype.fields[n][1]
                                      for n in state["cells"].dtype.names],
                          "itemsize": state["cells"].dtype.itemsize})
    state["cells"] = state["cells"].view(old_dtype)
    finish_identically(model, CarTModel.from_checkpoint(state))


def test_shipped_product_scenarios_load(config_dir):
    pooled = load_scenario(config_dir / "car_design" / "b_all_pooled_cd19_cd22.yaml")
    assert list(pooled.product_configs) == ["main", "cd22"]
    assert pooled.products["cd22"].receptors[0].antigen == "CD22"
    enriched = load_scenario(config_dir / "car_design" / "b_all_memory_enriched.yaml")
    assert enriched.car_t.composition.cd4_fraction == 0.5
    assert enriched.car_t.composition.memory_like_fraction == 0.5


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def product_tables():
    """Time series of 2 replicates each of the pooled-product and the memory-enriched B-ALL
    (small, 4 days), as a study's timeseries.csv has them."""
    tables = []
    for path in ("car_design/b_all_pooled_cd19_cd22.yaml", "car_design/b_all_memory_enriched.yaml"):
        for replicate in range(2):
            model = CarTModel(CONFIG_DIR / path, seed=3 + replicate, lattice__width=50,
                              lattice__height=50, tumor__initial_cells=600,
                              time__duration_days=4.0)
            model.run()
            table = model.datacollector.get_model_vars_dataframe()
            tables.append(table.assign(scenario=model.config.name, replicate=replicate))
    return pd.concat(tables, ignore_index=True)


def test_product_plot_draws_each_product_and_subset_with_n_and_a_log_scale(product_tables,
                                                                           tmp_path):
    fig = plot_car_t_products(product_tables, tmp_path / "products.png",
                              treatments={"b_all_pooled_cd19_cd22": "CD19 + CD22 CAR-T"})
    assert (tmp_path / "products.png").stat().st_size > 10_000
    pooled, enriched = fig.axes[:2]
    # the arm says which products it got, where the caller names them
    assert pooled.get_title() == "b_all_pooled_cd19_cd22 (n = 2 runs)\nCD19 + CD22 CAR-T"
    assert [line.get_label() for line in pooled.get_lines() if line.get_gid() != "infusion"
            and not line.get_label().startswith("_")] == ["product main", "product cd22"]
    labels = {line.get_label() for line in enriched.get_lines()}
    assert {"cd4 cells", "cd8 cells", "memory-like cells"} <= labels
    assert pooled.get_yscale() == "symlog" and "tissue and blood" in pooled.get_ylabel()
    # the medians drawn are the data's: the last CD22 product median of the pooled runs
    cd22 = next(line for line in pooled.get_lines() if line.get_label() == "product cd22")
    last = product_tables[product_tables["scenario"] == "b_all_pooled_cd19_cd22"].groupby(
        "replicate")["product_cd22_car_t"].last().median()
    assert cd22.get_ydata()[-1] == pytest.approx(last)


def test_antigen_composition_plot_stacks_the_phenotypes_of_the_pooled_run(product_tables):
    fig = plot_antigen_composition(product_tables)
    cells, share = fig.axes[0], fig.axes[1]
    assert cells.get_title() == "b_all_pooled_cd19_cd22 (n = 2 runs; means)"
    # one statistic throughout: the layers are means, so is the line at their top
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "tumour: mean of the 2 runs" in labels and "tumour: range over the 2 runs" in labels
    assert not any("median" in label for label in labels)
    # one stacked layer per phenotype (none, CD19, CD22, CD19+CD22) on both axes
    assert len(cells.collections) >= 4 and len(share.collections) == 4
    assert share.get_ylim() == (0, 100)


def test_plots_refuse_tables_without_products(product_tables):
    plain = product_tables.drop(columns=[c for c in product_tables.columns
                                         if c.startswith("product_") or c in SUBSET_COLUMNS])
    with pytest.raises(ValueError, match="no scenario has several products"):
        plot_car_t_products(plain)
    assert has_product_series(product_tables) and not has_product_series(plain)
