"""Responder / non-responder blood kinetics beside a label (analysis.response_kinetics)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simulation.analysis.response_kinetics import compare_with_label, kinetics_by_response


def _cohort(n: int = 400, seed: int = 2) -> pd.DataFrame:
    """Responders (CR) expand 2x more per baseline cell and peak on day 10 (non-responders
    day 20), with log-normal spread; half of each group has twice the tumour burden."""
    rng = np.random.default_rng(seed)
    cr = np.arange(n) % 4 != 0  # 75 % responders
    spread = np.exp(0.3 * rng.standard_normal(n))
    return pd.DataFrame({
        "best_response": np.where(cr, "CR", "PD"),
        "car_t_cmax": np.where(cr, 2.0, 1.0) * spread,
        "car_t_auc_0_28": np.where(cr, 20.0, 10.0) * spread,
        "car_t_tmax_day": np.where(cr, 10.0, 20.0) + rng.integers(-2, 3, n),
        "car_t_half_life_day": np.where(cr, 16.0, 3.0) * spread,
        "clinical.body_tumor_cells": np.where(np.arange(n) % 8 < 4, 1e11, 2e11)})


def _label(factor: float) -> pd.DataFrame:
    """A label made from the cohort's own typical values, counts times ``factor`` (cells in
    the body: x 1.41e11, the geometric mean burden)."""
    body = np.sqrt(1e11 * 2e11)
    rows = [("cmax", "responders", "geometric mean", 2.0 * body * factor),
            ("cmax", "non-responders", "geometric mean", 1.0 * body * factor),
            ("tmax", "responders", "median", 10.0), ("tmax", "non-responders", "median", 20.0),
            ("half_life", "responders", "geometric mean", 16.0)]
    return pd.DataFrame([{"quantity": q, "stratum": s, "statistic": st, "value": v,
                          "n": 50, "unit": "u"} for q, s, st, v in rows])


def test_the_label_made_from_the_cohort_is_recovered_with_its_scale_factor():
    cohort = _cohort()
    table, info = compare_with_label(cohort, np.ones(len(cohort)), _label(1e-7), draws=200)
    assert info["factor"] == pytest.approx(1e-7, rel=0.1)  # 0.3 log-sd over 100-300 patients
    low, high = info["factor_interval"]
    assert low < 1e-7 < high
    by = table.set_index(["quantity", "stratum"])
    assert by.loc[("tmax", "responders"), "model"] == pytest.approx(10.0, abs=1.0)
    assert by.loc[("tmax", "non-responders"), "model"] == pytest.approx(20.0, abs=1.0)
    ratio = by.loc[("cmax", "responders / non-responders")]
    assert ratio["label"] == pytest.approx(2.0) and ratio["model"] == pytest.approx(2.0, rel=0.1)
    assert ratio["model_low"] < 2.0 < ratio["model_high"]
    assert ("half_life", "responders / non-responders") not in by.index  # no NR value given


def test_weights_move_the_statistics_toward_the_patients_they_favour():
    """Weighting responders with a late peak (> 10 days) up moves their median Tmax up."""
    cohort = _cohort()
    late = (cohort["best_response"] == "CR") & (cohort["car_t_tmax_day"] > 10)
    weights = np.where(late, 5.0, 1.0)
    plain = kinetics_by_response(cohort, np.ones(len(cohort)))
    weighted = kinetics_by_response(cohort, weights / weights.sum())
    assert weighted[("tmax", "responders")] > plain[("tmax", "responders")]
    assert weighted[("tmax", "non-responders")] == plain[("tmax", "non-responders")]
