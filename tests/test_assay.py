"""The in-vitro killing assay: study expansion, readout tables, biology (fact 3) and the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import CONFIG_DIR
from simulation.analysis.assay import (
    TABLE_COLUMNS,
    assay_endpoints,
    assay_table,
    controls,
    is_assay,
    well_condition,
)
from simulation.config import ConfigError, ScenarioConfig, et_label, load_study, validate
from simulation.io.provenance import resolved_config
from simulation.execution.runner import run_study
from simulation.io.rundir import RunDir

DATA = Path(__file__).parent / "data"
SMALL_ASSAY = DATA / "small_assay.yaml"
DISH = str(CONFIG_DIR / "killing_assay.yaml")


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def assay_study(tmp_path: Path, assay: dict | None = None, **keys) -> Path:
    """A study file in ``tmp_path`` whose assay runs the real dish of configs/."""
    block = {"scenario": DISH, "effector_to_target": [1.0, 0.25]} | (assay or {})
    return write_yaml(tmp_path / "study.yaml",
                      {"name": "assay_test", "assay": block, "seed": 5, "replicates": 2} | keys)


def study_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_study(path)
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# expansion
# ---------------------------------------------------------------------------------------------
def test_example_study_expands_into_wells_and_controls():
    study = load_study(CONFIG_DIR / "killing_assay_et.yaml")
    names = [s.name for s in study.scenarios]
    assert names == [f"killing_assay_ag{ag}_{well}" for ag in (10000, 1000)
                     for well in ("control", "et1-1", "et1-4", "et1-8", "et1-20")]
    targets = 10_000
    for scenario in study.scenarios:
        assert scenario.tumor_type == "in_vitro"
        assert scenario.tumor.initial_cells == targets
        assert (scenario.seed, scenario.replicates) == (study.seed, study.replicates) == (1, 4)
        assert scenario.dosing.route == "anywhere"
        assert scenario.time.stop_when_cleared is False
    cells = {s.name: [d.cells for d in s.dosing.doses] for s in study.scenarios}
    assert cells["killing_assay_ag10000_control"] == cells["killing_assay_ag1000_control"] == []
    assert cells["killing_assay_ag1000_et1-1"] == [10_000]
    assert cells["killing_assay_ag10000_et1-4"] == [2_500]
    assert cells["killing_assay_ag10000_et1-8"] == [1_250]
    assert cells["killing_assay_ag10000_et1-20"] == [500]
    assert all(d.day == 0.0 for s in study.scenarios for d in s.dosing.doses)
    antigen = [s.tumor.antigen.mean_molecules_per_cell for s in study.scenarios]
    assert antigen == [10_000.0] * 5 + [1_000.0] * 5
    # each treated well is paired with the control of its antigen level
    assert controls(study.scenarios) == {
        s.name: s.name.rsplit("_", 1)[0] + "_control"
        for s in study.scenarios if not s.name.endswith("control")}
    assert is_assay(study.scenarios)


def test_expansion_defaults_overrides_and_add_day(tmp_path):
    path = assay_study(tmp_path, {"effector_to_target": [0.125, 2.0], "add_day": 0.5})
    study = load_study(path, ["tumor.initial_cells=900", "lattice.width=60",
                              "lattice.height=60"])
    assert [s.name for s in study.scenarios] == [
        "killing_assay_ag10000_control", "killing_assay_ag10000_et1-8",
        "killing_assay_ag10000_et2-1"]
    eighth, double = study.scenarios[1], study.scenarios[2]
    assert [d.cells for d in eighth.dosing.doses] == [113]  # 112.5 rounds half up
    assert [d.cells for d in double.dosing.doses] == [1800]
    assert {d.day for s in study.scenarios for d in s.dosing.doses} == {0.5}
    # the scenario's own antigen when the assay gives none
    assert {s.tumor.antigen.mean_molecules_per_cell for s in study.scenarios} == {10_000.0}
    assert well_condition(eighth) == {"antigen_molecules_per_cell": 10_000.0,
                                      "effector_to_target": 113 / 900, "add_day": 0.5}
    assert et_label(113 / 900) == "1:8" and et_label(2.0) == "2:1" and et_label(0.3) == "1:3.33"


def test_expanded_study_survives_the_resolved_config(tmp_path):
    """A resumed run rebuilds the study from config.resolved.yaml: same scenarios, same
    pairing of wells and controls."""
    study = load_study(CONFIG_DIR / "killing_assay_et.yaml")
    (tmp_path / "config.resolved.yaml").write_text(yaml.safe_dump(resolved_config(study)))
    again = RunDir(tmp_path).load_study()
    assert again.scenarios == study.scenarios
    assert controls(again.scenarios) == controls(study.scenarios)


@pytest.mark.parametrize("keys, where, expected", [
    ({"scenarios": ["a.yaml"]}, "assay", "not both"),
    ({"assay": None}, "scenarios", "required key is missing (or give 'assay'"),
])
def test_study_needs_scenarios_or_assay(tmp_path, keys, where, expected):
    path = assay_study(tmp_path)
    data = yaml.safe_load(path.read_text()) | keys
    data = {k: v for k, v in data.items() if v is not None}
    message = study_error(write_yaml(path, data))
    assert "study.yaml: " + where + ": " in message and expected in message


@pytest.mark.parametrize("assay, expected", [
    ({"effector_to_target": [1.0, 0.0]}, "assay.effector_to_target[1]: must be > 0 (got 0.0)"),
    ({"effector_to_target": [-0.25]}, "assay.effector_to_target[0]: must be > 0"),
    ({"effector_to_target": [1000.0]}, "assay.effector_to_target[0]: must be <= 100"),
    ({"effector_to_target": []}, "assay.effector_to_target: must have at least 1 item"),
    ({"effector_to_target": [0.25, 0.5, 0.25]},
     "assay.effector_to_target: values must differ (0.25 given more than once)"),
    ({"effector_to_target": ["1:4"]}, "assay.effector_to_target[0]: "),
    ({"effector_to_target": [1.0e-5]},
     "assay.effector_to_target[0]: 1e-05 x 10000 targets plated is less than one CAR-T"),
    ({"effector_to_target": [5.0]}, "assay.effector_to_target[0]: 50000 CAR-T do not fit"),
    ({"antigen_molecules_per_cell": [-1.0]}, "assay.antigen_molecules_per_cell[0]: must be >= 0"),
    ({"add_day": 4.0}, "assay.add_day: must be before the end of the run"),
    ({"scenario": "nowhere.yaml"}, "assay.scenario: file not found"),
    ({"ratio": [1.0]}, "assay.ratio: unknown key"),
])
def test_bad_assay_names_the_file_and_key(tmp_path, assay, expected):
    message = study_error(assay_study(tmp_path, assay))
    assert f"study.yaml: {expected}" in message, message


def test_assay_of_a_study_file_is_refused(tmp_path):
    message = study_error(assay_study(tmp_path, {"scenario": str(CONFIG_DIR /
                                                                "killing_assay_et.yaml")}))
    assert "assay.scenario:" in message and "is a study" in message


# ---------------------------------------------------------------------------------------------
# readout on hand-made tables
# ---------------------------------------------------------------------------------------------
def _wells(tmp_path) -> list[ScenarioConfig]:
    return load_study(assay_study(tmp_path, {"effector_to_target": [1.0, 0.25]},
                                  replicates=2)).scenarios


def _series(scenario: str, seed: int, replicate: int, tumour: list[int], killed: list[int],
            added: int, hours: float = 24.0) -> pd.DataFrame:
    n = len(tumour)
    return pd.DataFrame({
        "scenario": scenario, "tumor_type": "in_vitro", "replicate": replicate, "seed": seed,
        "time_days": np.arange(n) * hours / 24.0, "tumor_cells": tumour,
        "cumulative_cancer_killed": killed, "cumulative_car_t_infused": [added] * n})


def test_percent_of_control_and_kills_per_car_t(tmp_path):
    control, one, quarter = _wells(tmp_path)
    ts = pd.concat([
        _series(control.name, 5, 0, [100, 200, 400, 800], [0] * 4, 0),
        _series(control.name, 6, 1, [100, 210, 390, 700], [0] * 4, 0),
        _series(one.name, 5, 0, [100, 20, 0, 0], [0, 150, 190, 190], 100),
        _series(one.name, 6, 1, [100, 10], [0, 160], 100),  # cleared and stopped at 24 h
        _series(quarter.name, 5, 0, [100, 150, 200, 400], [0, 50, 150, 250], 25),
        _series(quarter.name, 6, 1, [100, 105, 195, 350], [0, 60, 120, 260], 25),
    ], ignore_index=True)
    table = assay_table([control, one, quarter], ts)
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert len(table) == 3 * 2 * 4  # the stopped run is carried to the control's last census
    own = table[table["scenario"] == control.name]
    assert (own["percent_of_control"] == 100.0).all()  # exactly, not approximately
    assert (own["effector_to_target"] == 0.0).all() and own["kills_per_car_t"].isna().all()
    q = table[(table["scenario"] == quarter.name) & (table["replicate"] == 0)]
    assert q["percent_of_control"].tolist() == [100.0, 75.0, 50.0, 50.0]
    assert q["kills_per_car_t"].tolist() == [0.0, 2.0, 6.0, 10.0]
    assert q["time_h"].tolist() == [0.0, 24.0, 48.0, 72.0]
    stopped = table[(table["scenario"] == one.name) & (table["replicate"] == 1)]
    assert stopped["tumor_cells"].tolist() == [100, 10, 10, 10]
    assert stopped["control_tumor_cells"].tolist() == [100, 210, 390, 700]
    assert set(table["effector_to_target"]) == {0.0, 1.0, 0.25}

    ends = assay_endpoints(table).set_index("scenario")
    assert ends.loc[quarter.name, "percent_of_control_48h_median"] == pytest.approx(
        np.median([50.0, 100 * 195 / 390]))
    assert ends.loc[quarter.name, "percent_of_control_72h_q75"] == pytest.approx(
        np.quantile([50.0, 50.0], 0.75))
    assert ends.loc[quarter.name, "kills_per_car_t_end_median"] == pytest.approx(
        np.median([10.0, 260 / 25]))
    assert ends.loc[control.name, "percent_of_control_72h_median"] == 100.0
    assert ends.loc[one.name, "replicates"] == 2 and ends.loc[one.name, "end_h"] == 72.0
    # between censuses the endpoint is interpolated (replicate 0: 75 -> 50 %, replicate 1:
    # 50 -> 50 %); beyond the last census it is missing
    mid = assay_endpoints(table, hours=(36.0, 96.0)).set_index("scenario")
    assert mid.loc[quarter.name, "percent_of_control_36h_median"] == pytest.approx(
        np.median([62.5, 50.0]))
    assert np.isnan(mid.loc[quarter.name, "percent_of_control_96h_median"])


def test_conditions_come_from_configs_not_names(tmp_path):
    wells = _wells(tmp_path)
    renamed = [s.model_copy(update={"name": f"well_{i}"}) for i, s in enumerate(wells)]
    ts = pd.concat([_series(s.name, 5, 0, [100, 90 - 10 * i], [0, 10 * i], 10 * i)
                    for i, s in enumerate(renamed)], ignore_index=True)
    table = assay_table(renamed, ts)
    assert table.groupby("scenario")["effector_to_target"].first().to_dict() == {
        "well_0": 0.0, "well_1": 1.0, "well_2": 0.25}
    # a treated well without an untreated twin (other antigen) has no control
    other = renamed[1].model_copy(update={"tumor": renamed[1].tumor.model_copy(update={
        "antigen": renamed[1].tumor.antigen.model_copy(
            update={"mean_molecules_per_cell": 5.0})})})
    assert controls([renamed[0], other]) == {}
    assert not is_assay([renamed[0], other])


# ---------------------------------------------------------------------------------------------
# biology: fact 3 (killing rises with E:T, kills per CAR-T rise as E:T falls) and fact 4
# ---------------------------------------------------------------------------------------------
RATIOS = [1.0, 0.25, 0.125, 0.05]  # 1:1, 1:4, 1:8, 1:20


@pytest.fixture(scope="module")
def small_dish_assay(tmp_path_factory):
    """The real dish on a 60x60 lattice (900 targets, 25 % of the sites, as in the full dish)
    for 3 days, both antigen levels, 5 seeds: 50 runs, ~20 s on one core."""
    folder = tmp_path_factory.mktemp("dish")
    write_yaml(folder / "dish.yaml", {"extends": DISH, "name": "dish",
                                      "lattice": {"width": 60, "height": 60},
                                      "time": {"duration_days": 3.0},
                                      "tumor": {"initial_cells": 900}})
    study = load_study(write_yaml(folder / "study.yaml", {
        "name": "dish_assay", "seed": 11, "replicates": 5,
        "assay": {"scenario": "dish.yaml", "effector_to_target": RATIOS,
                  "antigen_molecules_per_cell": [10_000.0, 1_000.0]}}))
    timeseries, _ = run_study(study, workers=1)
    table = assay_table(study.scenarios, timeseries)
    return table, assay_endpoints(table)


def _by_ratio(endpoints: pd.DataFrame, antigen: float, column: str) -> list[float]:
    """``column`` of the treated wells at ``antigen``, from 1:20 up to 1:1 (the E:T of a
    well is its CAR-T over 900 targets: 1:8 is 113/900)."""
    rows = endpoints[(endpoints["antigen_molecules_per_cell"] == antigen)
                     & (endpoints["effector_to_target"] > 0)].sort_values("effector_to_target")
    assert [et_label(r) for r in rows["effector_to_target"]] == ["1:20", "1:8", "1:4", "1:1"]
    return rows[column].tolist()


def test_killing_increases_monotonically_with_et(small_dish_assay):
    """Fact 3, % of control at 72 h: strictly lower at every higher E:T in the median.

    At 1,000 CD19/cell (below the CAR half-max) no well is cleared by 72 h, so the order must be
    strict: in the seeds measured the medians are ~82, 56, 32 and 4 % and the replicate ranges
    do not even overlap (IQRs 2-6 points wide), so only a real change in killing can fail this.
    At 10,000/cell 1:1, 1:4 and (nearly) 1:8 clear the well, and 0 % cannot fall further: there
    the medians must not rise with E:T, 1:20 must be far above 1:1, and the area under the
    0-72 h curve (which keeps falling while clearance gets faster) must fall strictly.
    """
    _, endpoints = small_dish_assay
    low = _by_ratio(endpoints, 1_000.0, "percent_of_control_72h_median")
    assert all(a > b for a, b in zip(low, low[1:])), low
    high = _by_ratio(endpoints, 10_000.0, "percent_of_control_72h_median")
    assert all(a >= b for a, b in zip(high, high[1:])), high
    assert high[0] > 20.0 and high[-1] == 0.0, high  # 1:20 partial (~40 %), 1:1 cleared


def test_area_under_the_killing_curve_falls_with_et(small_dish_assay):
    table, _ = small_dish_assay
    treated = table[(table["effector_to_target"] > 0) & (table["time_h"] <= 72.0)]
    areas = {}
    for (antigen, ratio, _), run in treated.groupby(
            ["antigen_molecules_per_cell", "effector_to_target", "replicate"]):
        run = run.sort_values("time_h")
        area = np.trapezoid(run["percent_of_control"], run["time_h"])
        areas.setdefault((antigen, ratio), []).append(area)
    for antigen in (10_000.0, 1_000.0):
        medians = [np.median(area) for (level, _), area in sorted(areas.items())
                   if level == antigen]
        assert all(a > b for a, b in zip(medians, medians[1:])), (antigen, medians)


def test_kills_per_car_t_rise_as_et_falls(small_dish_assay):
    """Fact 3: at high E:T targets run out before the CAR-T do (~1 kill each at 1:1), at low
    E:T each CAR-T and its progeny kill many. Measured medians at 10,000/cell: 1.5, 8.1, 19,
    24 per CAR-T from 1:1 to 1:20 (IQRs under 1 kill wide except 1:20, 23-28), so strict order
    of the medians is a safe demand. At 1,000/cell, below the CAR's half-max, CAR-T arm only on
    the rare targets above it (cv 0.5) and kill 1.4, 4.9, 6.0, 5.6 (IQRs 1-3 kills wide, so the
    lower ratios are not ordered): fewer than at 10,000 at every E:T but 1:1."""
    _, endpoints = small_dish_assay
    kills = _by_ratio(endpoints, 10_000.0, "kills_per_car_t_end_median")
    assert all(a > b for a, b in zip(kills, kills[1:])), kills
    low = _by_ratio(endpoints, 1_000.0, "kills_per_car_t_end_median")
    assert all(k_low < k for k_low, k in zip(low[:-1], kills[:-1])), (low, kills)
    for per_car_t in (kills[-1], low[-1]):
        assert per_car_t < 2.5, "at 1:1 targets run out: about one kill per CAR-T"


def test_low_antigen_is_killed_less(small_dish_assay):
    """Fact 4: below the CAR threshold (1,000 vs 10,000 CD19/cell) more targets survive at
    every E:T (the medians differ by 4-50 points at 72 h)."""
    _, endpoints = small_dish_assay
    low = _by_ratio(endpoints, 1_000.0, "percent_of_control_72h_median")
    high = _by_ratio(endpoints, 10_000.0, "percent_of_control_72h_median")
    assert all(lo > hi for lo, hi in zip(low, high)), (low, high)


def test_control_wells_are_exactly_one_hundred_percent(small_dish_assay):
    table, _ = small_dish_assay
    control = table[table["effector_to_target"] == 0.0]
    assert len(control) == 2 * 5 * 19  # 2 antigen levels, 5 seeds, censuses 0-72 h every 4 h
    assert (control["percent_of_control"] == 100.0).all()
    treated = table[table["effector_to_target"] > 0]
    assert treated["percent_of_control"].between(0.0, 100.0 * 1.2).all()


# ---------------------------------------------------------------------------------------------
# end to end: cartsim run on a small assay study
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def assay_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("assay_cli") / "run"
    result = subprocess.run([sys.executable, "-m", "simulation", "run", str(SMALL_ASSAY),
                             "--out", str(out), "--quiet", "--workers", "1"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return out


def test_cartsim_run_writes_the_assay_files(assay_run):
    for name in ("assay.csv", "assay_endpoints.csv", "assay.png", "timeseries.csv"):
        assert (assay_run / name).stat().st_size > 0, name
    table = pd.read_csv(assay_run / "assay.csv")
    assert list(table.columns) == list(TABLE_COLUMNS)
    # 2 antigen levels x (control + 2 E:T) x 2 replicates x 19 censuses (3 days every 4 h)
    assert len(table) == 2 * 3 * 2 * 19
    assert table["percent_of_control"].between(0.0, 300.0).all()
    assert (table.loc[table["effector_to_target"] == 0, "percent_of_control"] == 100.0).all()
    assert sorted(table["seed"].unique()) == [3, 4]
    treated = table[table["effector_to_target"] > 0]
    assert (treated["car_t_added"] == np.where(treated["effector_to_target"] == 1.0, 400,
                                               50)).all()
    assert (treated["kills_per_car_t"] == treated["cancer_killed"] / treated["car_t_added"]).all()

    endpoints = pd.read_csv(assay_run / "assay_endpoints.csv")
    assert len(endpoints) == 6 and (endpoints["replicates"] == 2).all()
    for column in ("percent_of_control_48h_median", "percent_of_control_72h_median"):
        assert endpoints[column].between(0.0, 300.0).all(), column
    for h in (48, 72):
        stats = endpoints[[f"percent_of_control_{h}h_{s}" for s in ("q25", "median", "q75")]]
        assert (stats.diff(axis=1).iloc[:, 1:] >= 0).all().all()
    killed = endpoints[endpoints["effector_to_target"] > 0]
    assert (killed["kills_per_car_t_end_median"] > 0).all()


def test_assay_png_is_a_real_figure(assay_run):
    import matplotlib.image

    image = matplotlib.image.imread(assay_run / "assay.png")
    height, width = image.shape[:2]
    assert 300 <= height <= 2000 and 500 <= width <= 3000
    assert image[..., :3].std() > 0.05, "not a blank image"


def test_non_assay_study_writes_no_assay_files(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "simulation", "run",
                             str(DATA / "small_dish.yaml"), "--out", str(out), "--quiet",
                             "--workers", "1", "--replicates", "1", "--days", "0.5"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert (out / "summary.csv").exists()
    assert not (out / "assay.csv").exists(), "a lone dish has no control: no assay readout"


# ---------------------------------------------------------------------------------------------
# the example sweep uses the assay dish
# ---------------------------------------------------------------------------------------------
def test_killing_et_ratio_sweep_runs_on_the_dish():
    from simulation.study.sweep import resolve

    plan = resolve(CONFIG_DIR / "sweeps" / "killing_et_ratio.yaml")  # validates every run
    assert len(plan.runs) == 8 * 4
    assert {run.base for run in plan.runs} == {"killing_assay"}
    dish = validate(plan.bases["../killing_assay.yaml"], ScenarioConfig, "base")
    assert dish.tumor_type == "in_vitro" and dish.dosing.route == "anywhere"
    assert dish.tumor.initial_cells / (dish.lattice.width * dish.lattice.height) == 0.25
