"""Virtual trials: the systemic follow-up, patient endpoints, trial readouts, `cartsim trial`
end to end (resume, files), and a trial patient as the model of `cartsim sweep`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulation.analysis.clinical import (CONTRACTION_DAYS, crs_grade, expansion,
                                          patient_outcome, post_peak_half_life)
from simulation.analysis.trial import median_time, proportion, survival_at
from simulation.biology.systemic import SystemicRates, SystemicState, advance
from simulation.cli import main
from simulation.config import ConfigError, load_scenario
from simulation.model import CarTModel
from simulation.study import sweep
from simulation.study.trial import PropertyDistribution, read_trial_file, run_trial

DATA = Path(__file__).parent / "data"
PATIENT = DATA / "small_patient.yaml"
TRIAL = DATA / "small_trial.yaml"
TRIALS = Path(__file__).parent.parent / "configs" / "trials"


def rates(**clinical) -> SystemicRates:
    """Systemic rates of the small patient with ``clinical`` keys replaced."""
    cfg = load_scenario(PATIENT, [f"clinical.{k}={v}" for k, v in clinical.items()])
    return SystemicRates.from_config(cfg)


def state(**values) -> SystemicState:
    start = {"day": 10.0, "positive": 1e-6, "negative": 0.0, "effector": 0.0, "memory": 0.05,
             "b_cells": 0.0}
    return SystemicState(**{**start, **values})


# ---- the systemic model ------------------------------------------------------------------------
def test_persisting_car_t_cure_residual_disease_and_keep_b_cell_aplasia():
    r = rates(car_t_functional_days="null", car_t_kill_rate_per_day=0.5)
    end = advance(state(), r, 350.0)
    assert end.positive == 0.0  # below one cell of the body: extinct
    assert end.b_cells < 0.1  # aplasia: clearance outpaces marrow output


def test_lost_car_t_let_b_cells_recover_and_antigen_positive_disease_relapse():
    r = rates(car_t_functional_days=20.0)
    end = advance(state(), r, 350.0)
    assert end.effector + end.memory < 1e-12
    assert end.b_cells > 0.5  # marrow output refills B cells once CAR-T are gone
    assert end.positive > 0.05  # the residue regrew: an antigen-positive relapse


def test_antigen_negative_cells_grow_at_the_net_rate_whatever_the_car_t():
    r = rates(car_t_functional_days="null")
    end = advance(state(negative=1e-9, positive=0.0), r, 100.0)
    # exponential: the logistic brake is < 1e-6 while the burden stays < 1e-6 of capacity
    assert end.negative == pytest.approx(1e-9 * math.exp(r.growth_per_day * 100.0), rel=1e-5)


@settings(max_examples=25, deadline=None)
@given(days=st.floats(1.0, 200.0), chunks=st.integers(1, 20))
def test_advancing_in_chunks_of_whole_steps_gives_the_same_state(days, chunks):
    """Property: the solution does not depend on how the follow-up is cut into censuses."""
    r = rates(car_t_functional_days=60.0)
    steps = max(1, round(days / 0.1))
    whole = advance(state(positive=1e-3, effector=0.5), r, steps * 0.1)
    cut = state(positive=1e-3, effector=0.5)
    per_chunk, rest = divmod(steps, chunks)
    for chunk_steps in [per_chunk + (k < rest) for k in range(chunks)]:
        if chunk_steps:
            cut = advance(cut, r, chunk_steps * 0.1)
    for name in ("positive", "negative", "effector", "memory", "b_cells"):
        assert getattr(cut, name) == pytest.approx(getattr(whole, name), rel=1e-9, abs=1e-300)


def test_a_clinical_run_continues_on_the_systemic_model_to_the_end():
    model = CarTModel(PATIENT, seed=1, threads=1)
    model.run()
    series = model.datacollector.get_model_vars_dataframe()
    assert series["time_days"].iloc[-1] == pytest.approx(120.0)
    lattice_end = model.lattice_end_min / (24 * 60)
    assert lattice_end == 8.0
    later = series[series["time_days"] > lattice_end + 1e-9]
    assert len(later) >= (120 - 8) / 2 - 1  # one census every record_every_days = 2
    assert np.isnan(later["car_t_infiltration_depth_um"]).all()  # no lattice after hand-over


# ---- patient endpoints --------------------------------------------------------------------------
def series(days, tumour, negative=None, car_t=None, b_cells=None, crs=None) -> pd.DataFrame:
    n = len(days)
    return pd.DataFrame({
        "time_days": days, "tumor_cells": tumour,
        "tumor_antigen_negative": negative if negative is not None else [0.0] * n,
        "car_t_cells": car_t if car_t is not None else [0.0] * n, "car_t_blood": [0.0] * n,
        "normal_antigen_positive": b_cells if b_cells is not None else [100.0] * n,
        "crs_index": crs if crs is not None else [0.0] * n})


def clinical(**endpoints):
    cfg = load_scenario(PATIENT, [f"clinical.endpoints.{k}={v}" for k, v in endpoints.items()])
    return cfg.clinical


def test_cr_then_antigen_negative_relapse_with_b_cell_recovery():
    days = [0, 10, 20, 30, 100, 200]
    out = patient_outcome(series(days, [1000, 10, 0, 0.05, 30, 800],
                                 negative=[0, 0, 0, 0.05, 29, 790],
                                 b_cells=[100, 0, 0, 0, 5, 50]), clinical(), 0.0)
    assert out["best_response"] == "CR" and out["cr_day"] == 10 and out["mrd_negative"]
    assert out["progression_day"] == 200  # 80 % >= 5 % of baseline (30/1000 = 3 % is not)
    assert out["relapse_antigen"] == "negative"
    assert out["rfs_day"] == 190 and out["dor_day"] == 190  # from CR (day 10)
    assert out["b_cell_aplasia"] and out["b_cell_recovery_day"] == 200


def test_no_response_is_progressive_disease_and_an_event_free_survival_event():
    out = patient_outcome(series([0, 10, 20, 30], [1000, 900, 1400, 1900]), clinical(), 0.0)
    assert out["best_response"] == "PD" and out["progression_day"] == 20
    assert not out["responded"] and out["efs_event"] and out["efs_day"] == 30


def test_recist_stable_disease_is_no_progression_within_the_response_window():
    """RECIST thresholds on a volume: PD at 1.728 x the nadir (diameters +20 %); without a
    response, SD if no progression came within the window (the gastric trial: 8 weeks)."""
    burden = series([0, 20, 40, 60, 80], [1000, 950, 1100, 1500, 2000])
    recist = {"partial_response_fraction": 0.343, "progression_from_nadir": 1.728,
              "relapse_fraction": 0.01}
    assert patient_outcome(burden, clinical(**recist), 0.0)["best_response"] == "PD"
    eight_weeks = patient_outcome(burden, clinical(**recist, response_window_days=56), 0.0)
    assert eight_weeks["best_response"] == "SD" and eight_weeks["progression_day"] == 80
    assert not eight_weeks["responded"]


def test_crs_grade_counts_thresholds_reached_and_expansion_metrics_are_exact():
    thresholds = [0.2, 0.3, 0.4, 0.8]
    assert [crs_grade(s, thresholds) for s in (0.0, 0.2, 0.35, 0.4, 5.0)] == [0, 1, 2, 3, 4]
    days = np.array([0.0, 7.0, 14.0, 28.0, 35.0])
    cmax, tmax, auc = expansion(days, np.array([0.0, 2.0, 1.0, 0.0, 9.0]))
    assert (cmax, tmax) == (2.0, 7.0)  # the day-35 value is outside 0-28
    assert auc == pytest.approx(7.0 + 10.5 + 7.0)  # trapezoids


def test_post_peak_half_life_fits_the_decline_in_the_weeks_after_the_peak():
    """A peak on day 6, then a fall with a 10-day half-life for 8 weeks, then a plateau the
    window leaves out: 10 days. No fall, or too few censuses after the peak: NaN."""
    days = np.arange(0.0, 120.0)
    car_t = np.where(days <= 6, 2.0 ** (days - 6), 2.0 ** (-(days - 6) / 10))
    car_t[days > 6 + CONTRACTION_DAYS] = car_t[days <= 6 + CONTRACTION_DAYS][-1]
    assert post_peak_half_life(days, car_t, 6.0) == pytest.approx(10.0, rel=1e-9)
    assert math.isnan(post_peak_half_life(days, np.ones_like(days), 6.0))
    assert math.isnan(post_peak_half_life(days[:8], car_t[:8], 6.0))


# ---- trial readouts -----------------------------------------------------------------------------
def test_readouts_match_hand_computed_kaplan_meier_and_wilson_values():
    days = pd.Series([1.0, 2.0, 3.0, 4.0])
    events = pd.Series([True, True, False, True])
    at = survival_at("x", "x", days, events, 2.5)
    assert at.value == pytest.approx(0.5) and at.low < 0.5 < at.high
    assert survival_at("x", "x", days, events, 4.0).value == 0.0  # 0.5 * (1 - 1/1)
    median = median_time("m", "m", days * 30.4375, events)
    assert median.value == pytest.approx(2.0)  # months
    rate = proportion("r", "r", pd.Series([True] * 8 + [False] * 2))
    assert rate.value == 0.8 and rate.low == pytest.approx(0.4902, abs=1e-3)


def test_disease_control_counts_stable_disease_and_median_pfs_is_the_kaplan_meier_median():
    from simulation.analysis.trial import readout_shares, trial_readouts

    cohort = _cohort(6, 4).assign(best_response=["CR", "PR", "PR", "CR", "PR", "PR",
                                                 "SD", "SD", "PD", "PD"])
    readouts = {r.name: r for r in trial_readouts(cohort)}
    assert readouts["dcr"].value == 0.8 and readouts["dcr"].n == 10
    yes, counted = readout_shares(cohort)["dcr"]
    assert yes.sum() / counted.sum() == 0.8  # the vpop's share agrees
    expected = median_time("m", "m", cohort["pfs_day"], cohort["progressed"]).value
    assert readouts["pfs_median"].value == expected and readouts["pfs_median"].unit == "months"


def test_six_month_landmarks_are_kaplan_meier_at_six_months_and_agree_with_the_shares():
    from simulation.analysis.trial import DAYS_PER_MONTH, readout_shares, trial_readouts

    # everyone's status at 6 months known: an event before it or followed past it. EFS: the
    # 4 non-responders fail at day 90, responders 0 and 3 relapse at 140 and 150 days after
    # responding at day 20; the others are followed past 6 months (rfs = dor = 200-300 days)
    cohort = _cohort(6, 4).assign(
        rfs_day=[140.0, 200.0, 250.0, 150.0, 280.0, 300.0, np.nan, np.nan, np.nan, np.nan],
        efs_day=[160.0, 220.0, 270.0, 170.0, 300.0, 320.0, 90.0, 90.0, 90.0, 90.0],
        efs_event=lambda c: c["progressed"])  # non-response or relapse
    cohort["dor_day"] = cohort["rfs_day"]
    six = 6 * DAYS_PER_MONTH
    readouts = {r.name: r for r in trial_readouts(cohort)}
    for name, days, events, among in (
            ("efs_6m", "efs_day", "efs_event", None),
            ("rfs_6m", "rfs_day", "progressed", cohort["best_response"] == "CR"),
            ("dor_6m", "dor_day", "progressed", cohort["responded"])):
        chosen = cohort if among is None else cohort[among]
        expected = survival_at(name, name, chosen[days], chosen[events], six)
        assert readouts[name].value == pytest.approx(expected.value)
        assert readouts[name].n == len(chosen)
        yes, counted = readout_shares(cohort)[name]
        # no one is censored before 6 months, so the vpop's share is the Kaplan-Meier value
        assert yes[counted].mean() == pytest.approx(expected.value)
    assert readouts["efs_6m"].value == pytest.approx(0.4)  # 4 non-responders, 2 relapses
    assert readouts["rfs_6m"].value == pytest.approx(4 / 6)


def test_published_readouts_the_model_does_not_produce_show_with_their_mechanism(tmp_path):
    from simulation.analysis.trial import trial_readouts
    from simulation.study.trial import comparison_rows, missing_mechanisms

    path = tmp_path / "t.yaml"
    path.write_text(f"name: t\nbase: {PATIENT}\nnot_modelled:\n  os_12m: {{label: overall "
                    "survival at 12 months, value: 0.76, n: 75, source: Maude 2018, missing: "
                    "no death}\n", encoding="utf-8")
    trial = read_trial_file(path)
    rows = comparison_rows(trial, trial_readouts(_cohort(6, 4)))
    row = next(r for r in rows if r.startswith("| overall survival at 12 months"))
    assert "| not modelled |" in row and "76 % [" in row and "n = 75" in row
    assert "inside" not in row and "outside" not in row
    assert missing_mechanisms(trial, []) == [
        "- **overall survival at 12 months** (not modelled): no death"]
    path.write_text(f"name: t\nbase: {PATIENT}\nnot_modelled:\n  os_12m: {{label: os, "
                    "value: 0.76, source: s}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"t.yaml: not_modelled.os_12m.missing"):
        read_trial_file(path)


def test_property_draws_are_seeded_per_key_and_clipped():
    spec = PropertyDistribution(distribution="lognormal", median=10.0, sigma=0.5, low=5.0,
                                high=30.0, source="s")
    values = spec.draw(np.random.default_rng(0), 4000)
    assert values.min() >= 5.0 and values.max() <= 30.0
    # the median of 4000 lognormal draws: standard error ~ 1.25 sigma / sqrt(n) = 1 %; 5 % is 5 SE
    assert np.median(values) == pytest.approx(10.0, rel=0.05)
    trial = read_trial_file(TRIAL)
    extended = trial.model_copy(update={"properties": {
        **trial.properties, "tumor.cycle_time_h": spec}})
    drawn, more = trial.sweep().parameters, extended.sweep().parameters
    assert all(drawn[key] == more[key] for key in drawn)  # a new property redraws nothing
    assert drawn["seed"] == [3, 4, 5, 6, 7, 8]


@pytest.mark.parametrize("body, message", [
    ("properties: {car_t.max_kills: {distribution: lognormal, median: 5.0, source: s}}",
     "properties.car_t.max_kills.sigma: is needed by distribution lognormal"),
    ("properties: {car_t.max_kills: {distribution: uniform, low: 1.0, high: 5.0}}",
     "properties.car_t.max_kills.source"),
    ("patients: 1", "patients"),
])
def test_bad_trial_file_names_file_and_key(tmp_path, capsys, body, message):
    path = tmp_path / "t.yaml"
    path.write_text(f"name: t\nbase: {PATIENT}\n{body}\n", encoding="utf-8")
    assert main(["trial", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"t.yaml: {message}" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_base_without_clinical_block_is_refused(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(f"name: t\nbase: {DATA / 'small_blood.yaml'}\npatients: 2\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError, match="has no clinical: block"):
        run_trial(path, tmp_path / "out")


# ---- end to end ---------------------------------------------------------------------------------
def _cohort(responders: int, non_responders: int) -> pd.DataFrame:
    """A synthetic patient table (the columns ``patients.csv`` has): responders in CR who
    expand, non-responders in PD who do not."""
    n = responders + non_responders
    responded = np.arange(n) < responders
    return pd.DataFrame({
        "patient": range(n), "tumor_type": "blood", "responded": responded,
        "best_response": np.where(responded, "CR", "PD"), "mrd_negative": responded,
        "progressed": ~responded | (np.arange(n) % 3 == 0), "relapse_antigen": "positive",
        "pfs_day": np.linspace(60.0, 365.0, n), "efs_day": np.linspace(60.0, 365.0, n),
        "efs_event": ~responded, "rfs_day": np.linspace(30.0, 330.0, n),
        "dor_day": np.linspace(30.0, 330.0, n), "b_cell_aplasia": responded,
        "b_cell_aplasia_day": 10.0, "b_cell_recovery_day": np.nan,
        "crs_grade": np.arange(n) % 5,
        "car_t_cmax": np.where(responded, 2.0, 0.1) * (1 + 0.1 * np.arange(n)),
        "car_t_auc_0_28": np.where(responded, 20.0, 1.0) * (1 + 0.1 * np.arange(n)),
        "car_t_tmax_day": 7.0, "baseline_tumor_cells": 1000,
        "burden_nadir": np.where(responded, 0.0, 0.9),
        "burden_final": np.where(responded, 0.0, 3.0)})


def test_trial_figure_draws_small_groups_as_points_units_apart_and_published_intervals():
    from simulation.analysis.trial import trial_readouts
    from simulation.viz.trial_plots import plot_trial

    patients = _cohort(18, 2)
    fig = plot_trial(patients, trial_readouts(patients), "t",
                     published={"cr_rate": (0.81, 0.71, 0.89), "crs_any": 0.77,
                                "efs": (0.5, 0.35, 0.62)})
    expansion = [ax for ax in fig.axes if "R vs NR" in ax.get_title()]
    assert len(expansion) == 2  # Cmax and AUC0-28: two units, two axes
    assert "Cmax" in expansion[0].get_ylabel() and "x days" in expansion[1].get_ylabel()
    for ax in expansion:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["R\nn = 18", "NR\nn = 2"]
        boxes = [line for line in ax.lines if line.get_gid() != "median"]
        medians = [line for line in ax.lines if line.get_gid() == "median"]
        assert boxes and len(medians) == 1  # the 18 as a box, the 2 as points and a median
    rates = fig.axes[0]
    published_bars = [c for c in rates.containers if hasattr(c, "has_yerr")]
    assert len(published_bars) == 2  # the simulated CIs and the published CR interval
    survival = fig.axes[1]
    assert any(c for c in survival.containers if hasattr(c, "has_yerr"))  # EFS's interval


def test_trial_md_gives_responders_and_non_responders_their_own_n():
    from simulation.analysis.trial import trial_readouts
    from simulation.study.trial import comparison_rows

    trial = read_trial_file(TRIAL)
    rows = comparison_rows(trial, trial_readouts(_cohort(18, 2)))
    cmax = next(row for row in rows if row.startswith("| CAR-T Cmax, responders vs not"))
    assert "| 18 vs 2 |" in cmax
    assert next(row for row in rows if row.startswith("| complete response")).count("| 20 |")
    # no non-responder to compare: no value, and no "outside" read into the missing value
    lone = comparison_rows(trial, trial_readouts(_cohort(20, 0)))
    assert not any("outside" in row for row in lone if "responders vs not" in row)


def test_a_readout_is_inside_the_published_interval_else_a_wilson_one_on_the_published_n():
    from simulation.analysis.trial import Readout
    from simulation.study.trial import PublishedValue, agreement, published_interval

    def readout(value, low=math.nan, high=math.nan):
        return Readout("cr_rate", "CR", value, low, high, 100)

    given = PublishedValue(value=0.81, low=0.71, high=0.89, n=75, source="s")
    assert published_interval(given, "%") == (0.71, 0.89)  # the paper's own interval wins
    assert agreement(readout(0.72), given) == "inside"
    assert agreement(readout(0.70), given) == "outside"
    # 15 of 16: Wilson 95 % interval 71.7-98.9 %
    counted = PublishedValue(value=0.9375, n=16, source="s")
    low, high = published_interval(counted, "%")
    assert (low, high) == (pytest.approx(0.717, abs=1e-3), pytest.approx(0.989, abs=1e-3))
    assert agreement(readout(0.45, 0.35, 0.55), counted) == "outside"
    # neither interval nor n (a ratio): the published value against the simulated interval
    bare = PublishedValue(value=0.74, source="s")
    assert published_interval(bare, "%") is None
    assert agreement(readout(1.0, 0.5, 2.0), bare) == "inside*"
    assert agreement(readout(17.9, 13.7, 23.3), bare) == "outside*"
    assert agreement(readout(math.nan), given) == "" and agreement(readout(0.8), None) == ""


def test_cartsim_trial_writes_readouts_and_figures_and_resumes(tmp_path, capsys):
    out = tmp_path / "trial"
    assert main(["trial", str(TRIAL), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "6 patients (0 already done, 6 done now, 0 failed)" in printed
    patients = pd.read_csv(out / "patients.csv")
    assert len(patients) == 6 and patients["seed"].tolist() == [3, 4, 5, 6, 7, 8]
    assert set(patients["best_response"]) <= {"CR", "PR", "SD", "PD"}
    assert patients["crs_grade"].between(0, 4).all()
    text = (out / "trial.md").read_text(encoding="utf-8")
    assert "| complete response (CR/CRi) |" in text and "ELIANA (Maude 2018)" in text
    for png in ("trial.png", "waterfall.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = (out / "patients.csv").read_bytes()
    assert main(["trial", str(TRIAL), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert "6 already done, 0 done now" in capsys.readouterr().out
    assert (out / "patients.csv").read_bytes() == first


def test_a_trial_patient_is_a_sweep_model_with_trial_endpoints(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\nbase: {PATIENT}\nparameters:\n  car_t.max_divisions: [1, 10]\n"
                    "design: {method: grid}\n", encoding="utf-8")
    sweep.run_sweep(path, tmp_path / "out", workers=1)
    table = sweep.load_sweep_table(tmp_path / "out")
    assert {"best_response", "crs_grade", "progression_day", "car_t_auc_0_28"} <= set(table)
    assert len(table) == 2 and (table["status"] == "done").all()


@pytest.mark.parametrize("path", sorted(TRIALS.glob("*_*.yaml")), ids=lambda p: p.stem)
def test_shipped_trials_and_patients_validate(path):
    if path.stem.endswith("_patient"):
        assert load_scenario(path).clinical is not None
    else:
        trial = read_trial_file(path)
        assert trial.patients == 200 and all(p.source for p in trial.properties.values())
        plan = sweep.plan_sweep(path, trial.model_copy(update={"patients": 3}).sweep())
        assert len(plan.unique_runs) == 3


def test_each_command_names_the_one_that_runs_a_trial_file(tmp_path, capsys):
    trial = TRIALS / "b_all_eliana.yaml"
    assert main(["validate", str(trial)]) == 0
    assert "ok: trial b_all_eliana: 200 patients" in capsys.readouterr().out
    for command in ("run", "sweep"):
        assert main([command, str(trial), "--out", str(tmp_path / command)]) == 2
        err = capsys.readouterr().err
        assert "is a trial file" in err and "`cartsim trial " in err, err


def test_a_trial_patient_runs_as_a_plain_scenario(tmp_path):
    """`cartsim run` on a patient file (configs/trials/*_patient.yaml): the systemic follow-up
    counts cells in fractions, and the folder's tables still read back (it once failed on
    reading its own runs/ back as whole numbers)."""
    out = tmp_path / "patient"
    assert main(["run", str(PATIENT), "--out", str(out), "--quiet"]) == 0
    table = pd.read_csv(out / "timeseries.csv")
    follow_up = table[table["time_days"] > 8.0]
    assert len(follow_up) > 10 and follow_up["time_days"].max() == 120.0
    assert (follow_up["tumor_cells"] % 1 != 0).any()  # fractions of a cell: systemic model
    assert not (out / "INCOMPLETE").exists()


def test_a_scenario_read_as_a_trial_names_the_keys_a_trial_has():
    with pytest.raises(ConfigError) as err:
        read_trial_file(TRIALS.parent / "b_all_cd19.yaml")
    message = str(err.value)
    assert "b_all_cd19.yaml: is a scenario file, not a trial" in message
    assert all(f"`{key}`" in message for key in ("not_modelled", "patients", "properties",
                                                   "published"))
