"""CAR-T blood kinetics of responders vs non-responders, as a drug label tabulates them, for a
(weighted) virtual cohort: Cmax and AUC0-28 (geometric means), Tmax (median), post-peak
half-life (geometric mean), each per stratum, with bootstrap intervals, and the scale factor
that maps the model's CAR-T count onto the label's qPCR unit.

The label's unit (transgene copies per ug of blood DNA) has no exact conversion from cells
(it needs the white-cell count, the DNA per cell and the copies per CAR-T cell), so one
factor, ``copies/ug per CAR-T cell in the body``, is fitted: the least-squares line through
ln(label) - ln(model) over Cmax and AUC0-28 of both strata (a flat prior on its logarithm).
The model's CAR-T count of a patient is all CAR-T (lattice + blood) per baseline cancer cell
(``analysis.clinical``) times the patient's ``clinical.body_tumor_cells``: cells in the body,
whose blood concentration the label measures. Tmax, half-life and every ratio between strata
need no factor: they are the test.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .vpop import resample

#: quantity -> (patient column, statistic), in the label's order
QUANTITIES = {"cmax": ("car_t_cmax", "geometric mean"), "tmax": ("car_t_tmax_day", "median"),
              "auc_0_28": ("car_t_auc_0_28", "geometric mean"),
              "half_life": ("car_t_half_life_day", "geometric mean")}
#: quantities in CAR-T counts (scaled to the body; compared through the scale factor)
COUNTS = ("cmax", "auc_0_28")
STRATA = ("responders", "non-responders", "all")
#: the patient column that scales a count per baseline cancer cell to cells in the body
BODY_CELLS = "clinical.body_tumor_cells"
#: two-sided level of the bootstrap intervals
LEVEL = 0.9


def _statistic(values: np.ndarray, weights: np.ndarray, statistic: str) -> float:
    keep = np.isfinite(values) & (weights > 0) & ((values > 0) | (statistic == "median"))
    values, weights = values[keep], weights[keep]
    if not weights.sum():
        return math.nan
    if statistic == "median":
        order = np.argsort(values, kind="stable")
        cumulative = np.cumsum(weights[order]) / weights.sum()
        return float(values[order][np.searchsorted(cumulative, 0.5)])
    return float(np.exp(np.sum(weights * np.log(values)) / weights.sum()))


def strata(patients: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each stratum of ``STRATA`` as a boolean array over the patients: responders are the
    complete responses (CR/CRi, as the label splits them)."""
    responded = (patients["best_response"] == "CR").to_numpy()
    return {"responders": responded, "non-responders": ~responded,
            "all": np.ones(len(patients), dtype=bool)}


def stratum_values(patients: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each quantity per patient, counts in cells in the body (see module docstring)."""
    body = patients[BODY_CELLS].to_numpy(dtype=float)
    return {q: patients[column].to_numpy(dtype=float) * (body if q in COUNTS else 1.0)
            for q, (column, _) in QUANTITIES.items()}


def kinetics_by_response(patients: pd.DataFrame, weights: np.ndarray) -> dict[tuple[str, str],
                                                                             float]:
    """(quantity, stratum) -> the weighted statistic of ``QUANTITIES``."""
    values, groups = stratum_values(patients), strata(patients)
    return {(q, s): _statistic(values[q][mask], weights[mask], QUANTITIES[q][1])
            for q in QUANTITIES for s, mask in groups.items()}


def scale_factor(model: dict[tuple[str, str], float], label: pd.DataFrame) -> float:
    """Label units per model unit: exp of the mean of ln(label / model) over the counts."""
    logs = [math.log(row.value / model[(row.quantity, row.stratum)])
            for row in label.itertuples() if row.quantity in COUNTS
            and model[(row.quantity, row.stratum)] > 0]
    return math.exp(float(np.mean(logs))) if logs else math.nan


def compare_with_label(patients: pd.DataFrame, weights: np.ndarray, label: pd.DataFrame,
                       draws: int = 400, seed: int = 1) -> tuple[pd.DataFrame, dict]:
    """One row per label row: the model's value (counts in label units through the fitted
    scale factor) with its ``LEVEL`` bootstrap interval (``draws`` cohorts of the effective
    sample size drawn by weight; each refits the factor), and one row per quantity for the
    responders / non-responders ratio. Also the factor with its interval."""
    weights = np.asarray(weights, dtype=float) / np.sum(weights)
    size = max(2, math.floor(1.0 / np.sum(weights**2)))
    point = kinetics_by_response(patients, weights)
    factor = scale_factor(point, label)
    boot_stats, boot_factors = [], []
    equal = np.ones(size)
    for k in range(draws):
        chosen = patients.iloc[resample(weights, size, seed + k)].reset_index(drop=True)
        stats = kinetics_by_response(chosen, equal)
        boot_stats.append(stats)
        boot_factors.append(scale_factor(stats, label))
    tails = (100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2)

    def interval(samples: list[float]) -> tuple[float, float]:
        finite = np.asarray(samples, dtype=float)
        finite = finite[np.isfinite(finite)]
        return tuple(np.percentile(finite, tails)) if finite.size else (math.nan, math.nan)

    rows = []
    for row in label.itertuples():
        key = (row.quantity, row.stratum)
        unit = factor if row.quantity in COUNTS else 1.0
        low, high = interval([s[key] * (f if row.quantity in COUNTS else 1.0)
                              for s, f in zip(boot_stats, boot_factors, strict=True)])
        rows.append({"quantity": row.quantity, "stratum": row.stratum,
                     "statistic": row.statistic, "label": row.value, "unit": row.unit,
                     "label_n": row.n, "model": point[key] * unit, "model_low": low,
                     "model_high": high})
    published = label.set_index(["quantity", "stratum"])["value"]
    for quantity in QUANTITIES:
        if (quantity, STRATA[0]) not in published or (quantity, STRATA[1]) not in published:
            continue
        low, high = interval([s[(quantity, STRATA[0])] / s[(quantity, STRATA[1])]
                              for s in boot_stats])
        rows.append({"quantity": quantity, "stratum": "responders / non-responders",
                     "statistic": "ratio", "label": published[(quantity, STRATA[0])]
                     / published[(quantity, STRATA[1])], "unit": "x", "label_n": math.nan,
                     "model": point[(quantity, STRATA[0])] / point[(quantity, STRATA[1])],
                     "model_low": low, "model_high": high})
    patients_per_stratum = {s: int(np.count_nonzero(mask & (weights > 0)))
                            for s, mask in strata(patients).items()}
    return pd.DataFrame(rows), {"factor": factor, "factor_interval": interval(boot_factors),
                                "effective_size": size, "patients": patients_per_stratum,
                                "weighted_share": {s: float(weights[m].sum())
                                                   for s, m in strata(patients).items()}}
