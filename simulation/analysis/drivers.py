"""What decides response in a virtual cohort: each patient property's association with
complete response, any response and durable response.

The association is Spearman's rank correlation between the property's values and the outcome
(a point-biserial rank correlation for a yes/no outcome): free of the property's scale, so a
lognormal tumour burden and a whole number of divisions compare on one axis. Its 95 % interval
is the Fisher z interval with Bonett and Wright's variance for Spearman's rho,
(1 + rho^2 / 2) / (n - 3) (Bonett & Wright 2000 Psychometrika 65:23; the formula read in
Bonett's own implementation, ``ci.spear`` of the R package statpsych), to set beside the
associations trials publish (e.g. baseline tumour burden and durable response after axi-cel,
Locke 2020 Blood Adv).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .trial import CONFIDENCE, status_at

#: outcomes of ``response_drivers``: column name -> what it marks, per patient
OUTCOMES = {"complete_response": "complete response", "responded": "any response",
            "durable_response": "durable response"}


def outcome_flags(patients: pd.DataFrame, at_days: float) -> dict[str, np.ndarray]:
    """Per patient: complete response (best response CR), any response (CR or PR) and a
    durable response (a response with no progression seen by ``at_days`` days: the shipped
    patients are followed for 12 months or more)."""
    responded = patients["responded"].to_numpy(dtype=bool)
    progression_free, _ = status_at(patients["pfs_day"], patients["progressed"], at_days)
    return {"complete_response": (patients["best_response"] == "CR").to_numpy(),
            "responded": responded, "durable_response": responded & progression_free}


def rank_correlation(values: np.ndarray, outcome: np.ndarray) -> tuple[float, float, float]:
    """Spearman's rho of ``values`` with ``outcome`` and its ``CONFIDENCE`` interval (Fisher z,
    Bonett-Wright variance); NaNs where either does not vary or n < 4."""
    n = len(values)
    if n < 4 or np.ptp(values) == 0 or np.ptp(outcome.astype(float)) == 0:
        return math.nan, math.nan, math.nan
    rho = float(stats.spearmanr(values, outcome.astype(float)).statistic)
    half_width = stats.norm.ppf(0.5 + CONFIDENCE / 2) * math.sqrt((1 + rho**2 / 2) / (n - 3))
    z = math.atanh(min(max(rho, -0.999999), 0.999999))
    return rho, math.tanh(z - half_width), math.tanh(z + half_width)


def response_drivers(patients: pd.DataFrame, properties: Sequence[str], at_days: float
                     ) -> pd.DataFrame:
    """One row per property (a column of ``patients``): its rank correlation with each of
    ``OUTCOMES`` (durable: up to ``at_days`` days) and the interval (``<outcome>``,
    ``<outcome>_low``, ``<outcome>_high``), and ``n``; sorted by the strength of the
    association with complete response."""
    flags = outcome_flags(patients, at_days)
    rows = []
    for key in properties:
        values = patients[key].to_numpy(dtype=float)
        row: dict[str, object] = {"property": key, "n": len(values)}
        for outcome, flag in flags.items():
            rho, low, high = rank_correlation(values, flag)
            row.update({outcome: rho, f"{outcome}_low": low, f"{outcome}_high": high})
        rows.append(row)
    table = pd.DataFrame(rows, columns=["property", "n", *[
        f"{o}{s}" for o in OUTCOMES for s in ("", "_low", "_high")]])
    order = table["complete_response"].abs().fillna(-1).sort_values(ascending=False).index
    return table.loc[order].reset_index(drop=True)
