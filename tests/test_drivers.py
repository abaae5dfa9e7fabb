"""What decides response (analysis.drivers): rank correlations of patient properties with
complete, any and durable response, their intervals, and the trial.md section that sets them
beside the published predictors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulation.analysis.drivers import outcome_flags, rank_correlation, response_drivers
from simulation.study.trial import PublishedPredictor, TrialFile, driver_rows


def cohort(n: int, seed: int) -> pd.DataFrame:
    """``n`` patients whose response follows ``divisions`` (and noise) and not ``burden``."""
    rng = np.random.default_rng(seed)
    divisions = rng.integers(1, 20, n)
    responded = divisions + rng.normal(0, 4, n) > 10
    return pd.DataFrame({
        "divisions": divisions.astype(float), "burden": rng.lognormal(25, 1, n),
        "responded": responded, "best_response": np.where(responded, "CR", "PD"),
        "progressed": ~responded | (rng.random(n) < 0.3),
        "pfs_day": rng.uniform(30, 400, n)})


def test_a_property_that_decides_response_has_a_strong_positive_rank_correlation():
    table = response_drivers(cohort(300, 0), ["burden", "divisions"], 365.0)
    top = table.iloc[0]
    assert top["property"] == "divisions" and top["n"] == 300
    assert 0.5 < top["complete_response_low"] < top["complete_response"]
    # reversed, the same strength the other way
    flipped = cohort(300, 0).assign(divisions=lambda d: -d["divisions"])
    assert response_drivers(flipped, ["divisions"], 365.0)["complete_response"][0] == (
        pytest.approx(-top["complete_response"]))


def test_the_interval_matches_bonetts_own_implementation():
    """The worked example of ci.spear in Bonett's R package statpsych (Bonett & Wright 2000):
    rho 0.8699639, 95 % interval 0.5840951 to 0.9638297."""
    y = np.array([21, 4, 9, 12, 35, 18, 10, 22, 24, 1, 6, 8, 13, 16, 19], dtype=float)
    x = np.array([67, 28, 30, 28, 52, 40, 25, 37, 44, 10, 14, 20, 28, 40, 51], dtype=float)
    assert rank_correlation(x, y) == pytest.approx((0.8699639, 0.5840951, 0.9638297), abs=1e-7)


def test_the_interval_of_an_unrelated_property_covers_zero_at_about_its_level():
    """Coverage over 60 cohorts of 200: 95 % expected; the binomial sd of the coverage is
    ~2.8 %, so >= 85 % fails only for an interval that is too narrow (or biased)."""
    covered = [row["complete_response_low"] <= 0 <= row["complete_response_high"]
               for seed in range(60)
               for _, row in response_drivers(cohort(200, seed), ["burden"], 365.0).iterrows()]
    assert np.mean(covered) >= 0.85


def test_durable_response_is_a_response_without_progression_by_the_readout():
    patients = pd.DataFrame({"responded": [True, True, True, False],
                             "best_response": ["CR", "PR", "CR", "PD"],
                             "progressed": [False, True, True, True],
                             "pfs_day": [400.0, 200.0, 380.0, 30.0]})
    flags = outcome_flags(patients, 365.0)
    assert flags["durable_response"].tolist() == [True, False, True, False]
    assert flags["complete_response"].tolist() == [True, False, True, False]


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(-1e6, 1e6), min_size=4, max_size=60),
       data=st.data())
def test_a_rank_correlation_lies_in_its_interval_and_in_minus_one_to_one(values, data):
    outcome = np.array(data.draw(st.lists(st.booleans(), min_size=len(values),
                                          max_size=len(values))))
    rho, low, high = rank_correlation(np.array(values), outcome)
    if math.isnan(rho):  # a constant property or outcome has no correlation
        assert np.ptp(values) == 0 or outcome.all() or not outcome.any()
    else:
        assert -1 <= low <= rho <= high <= 1


def test_trial_md_says_whether_the_cohort_shows_the_published_direction():
    patients = cohort(200, 1)
    trial = TrialFile.model_validate({
        "name": "t", "base": "p.yaml",
        "properties": {key: {"distribution": "uniform", "low": 0, "high": 1, "source": "s"}
                       for key in ("divisions", "burden")},
        "predictors": {"divisions": {"direction": "negative", "finding": "f", "source": "s"},
                       "burden": {"direction": "none", "finding": "g", "source": "s"}}})
    rows = {row.split("|")[1].strip(): row for row in driver_rows(trial, patients)
            if row.startswith("| `")}
    assert rows["`divisions`"].rstrip(" |").endswith("**no** (positive)")
    assert rows["`burden`"].rstrip(" |").endswith("yes")
    assert isinstance(trial.predictors["burden"], PublishedPredictor)
