"""Trial readouts of a virtual cohort: one row per patient (``analysis.clinical`` endpoints)
-> rates with Wilson intervals, Kaplan-Meier estimates with confidence intervals (lifelines),
relapse composition, CRS grades and CAR-T expansion in responders vs non-responders.

Every readout is a ``Readout``: a value with its 95 % interval and the patients it counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .outcomes import wilson_interval

try:  # the trial extra; `cartsim trial` calls require("trial", ...) first
    from lifelines import KaplanMeierFitter
    from lifelines.utils import median_survival_times
except ImportError:
    KaplanMeierFitter = median_survival_times = None

#: days in a month and a year, as trial reports count them
DAYS_PER_MONTH = 365.25 / 12
#: two-sided confidence level of every interval
CONFIDENCE = 0.95
#: CRS grades 0-4
CRS_GRADES = (0, 1, 2, 3, 4)
#: the readouts of ``trial_readouts``, in its order
READOUT_NAMES = ("orr", "dcr", "cr_rate", "mrd_negative_rate", "pfs", "pfs_median", "efs_6m",
                 "efs", "rfs_6m", "rfs", "dor_6m", "dor_median", "relapse_positive",
                 "relapse_negative", "crs_any", "crs_grade3", "b_cell_aplasia_6m",
                 "cmax_responders", "auc_responders")
#: the readouts that are a share of patients (``readout_shares``), in its order
SHARE_READOUTS = ("orr", "dcr", "cr_rate", "mrd_negative_rate", "pfs", "efs_6m", "efs",
                  "rfs_6m", "rfs", "dor_6m", "relapse_positive", "relapse_negative", "crs_any",
                  "crs_grade3", "b_cell_aplasia_6m")
#: the early landmark of EFS, RFS, duration of response and B-cell aplasia (months), where
#: trials report them beside the main readout (ELIANA: EFS and RFS at 6 months; CT041: the
#: 6-month duration-of-response rate)
EARLY_MONTHS = 6
#: the columns of one readout in ``readout_columns``, after its name
READOUT_COLUMN_SUFFIXES = ("", "_low", "_high", "_n")


@dataclass(frozen=True)
class Readout:
    """A trial readout: ``value`` with its ``CONFIDENCE`` interval over ``n`` patients; a
    comparison of two groups (responders vs not) also gives each group's patients,
    ``n_groups``."""

    name: str
    label: str
    value: float
    low: float
    high: float
    n: int
    unit: str = "%"  # "%": value is a fraction shown as a percentage; else shown as is
    n_groups: tuple[int, int] | None = None


def proportion(name: str, label: str, successes: pd.Series, of: pd.Series | None = None
               ) -> Readout:
    """Share of true ``successes`` among the rows where ``of`` is true (default: all)."""
    chosen = successes if of is None else successes[of.astype(bool)]
    n, k = len(chosen), int(chosen.astype(bool).sum())
    low, high = wilson_interval([k], [n], CONFIDENCE)
    return Readout(name, label, k / n if n else math.nan, float(low[0]), float(high[0]), n)


def kaplan_meier_fit(days: pd.Series, events: pd.Series, label: str) -> KaplanMeierFitter:
    """lifelines Kaplan-Meier fit (exponential Greenwood, i.e. log-log, 95 % band)."""
    return KaplanMeierFitter(alpha=1 - CONFIDENCE).fit(
        days.to_numpy(dtype=float), events.to_numpy(dtype=bool), label=label)


def survival_at(name: str, label: str, days: pd.Series, events: pd.Series, at_days: float
                ) -> Readout:
    """Kaplan-Meier survival at ``at_days`` with its pointwise interval."""
    if not len(days):
        return Readout(name, label, math.nan, math.nan, math.nan, 0)
    fit = kaplan_meier_fit(days, events, label)
    band = fit.confidence_interval_survival_function_
    at = band.index.searchsorted(at_days, side="right") - 1
    value = float(fit.survival_function_at_times(at_days).iloc[0])
    return Readout(name, label, value, float(band.iloc[at, 0]), float(band.iloc[at, 1]),
                   len(days))


def median_time(name: str, label: str, days: pd.Series, events: pd.Series) -> Readout:
    """Kaplan-Meier median time (months) with its interval (inf: not reached)."""
    if not len(days):
        return Readout(name, label, math.nan, math.nan, math.nan, 0, "months")
    fit = kaplan_meier_fit(days / DAYS_PER_MONTH, events, label)
    band = median_survival_times(fit.confidence_interval_)
    return Readout(name, label, float(fit.median_survival_time_), float(band.iloc[0, 0]),
                   float(band.iloc[0, 1]), len(days), "months")


def ratio_of_geometric_means(name: str, label: str, values: pd.Series, group: pd.Series
                             ) -> Readout:
    """Geometric mean of ``values`` where ``group`` over where not, as % higher (74 = 1.74x),
    with the Welch t interval of the difference of log means (NaN unless each group has 2
    patients); ``n_groups``: the patients in and out of ``group``."""
    logs = np.log(values.to_numpy(dtype=float).clip(min=1e-300))
    a, b = logs[group.to_numpy(dtype=bool)], logs[~group.to_numpy(dtype=bool)]
    if len(a) < 2 or len(b) < 2:
        return Readout(name, label, math.nan, math.nan, math.nan, len(logs),
                       n_groups=(len(a), len(b)))
    test = stats.ttest_ind(a, b, equal_var=False)
    interval = test.confidence_interval(CONFIDENCE)
    return Readout(name, label, math.expm1(a.mean() - b.mean()), math.expm1(interval.low),
                   math.expm1(interval.high), len(logs), n_groups=(len(a), len(b)))


def trial_readouts(patients: pd.DataFrame, at_months: float = 12.0) -> list[Readout]:
    """Every readout of a cohort (one row per patient, ``analysis.clinical`` columns)."""
    p = patients
    at = at_months * DAYS_PER_MONTH
    months = f"{at_months:g}"
    responders = p["responded"].astype(bool)
    relapsed = p["progressed"].astype(bool) & responders
    cr = p["best_response"] == "CR"
    aplastic = p["b_cell_aplasia"].astype(bool)
    early = EARLY_MONTHS * DAYS_PER_MONTH
    return [
        proportion("orr", "overall response (CR + PR)", responders),
        proportion("dcr", "disease control (CR + PR + SD)", p["best_response"] != "PD"),
        proportion("cr_rate", "complete response (CR/CRi)", cr),
        proportion("mrd_negative_rate", "MRD-negative (< 1e-4) response", p["mrd_negative"]),
        survival_at("pfs", f"progression-free at {months} months", p["pfs_day"],
                    p["progressed"], at),
        median_time("pfs_median", "median progression-free survival", p["pfs_day"],
                    p["progressed"]),
        survival_at("efs_6m", f"event-free at {EARLY_MONTHS} months", p["efs_day"],
                    p["efs_event"], early),
        survival_at("efs", f"event-free at {months} months", p["efs_day"], p["efs_event"], at),
        survival_at("rfs_6m", f"relapse-free at {EARLY_MONTHS} months (CR patients, from CR)",
                    p.loc[cr, "rfs_day"], p.loc[cr, "progressed"], early),
        survival_at("rfs", f"relapse-free at {months} months (CR patients, from CR)",
                    p.loc[cr, "rfs_day"], p.loc[cr, "progressed"], at),
        survival_at("dor_6m", f"in response {EARLY_MONTHS} months after first response "
                    "(responders)", p.loc[responders, "dor_day"],
                    p.loc[responders, "progressed"], early),
        median_time("dor_median", "median duration of response", p.loc[responders, "dor_day"],
                    p.loc[responders, "progressed"]),
        proportion("relapse_positive", "relapses antigen-positive",
                   p["relapse_antigen"] == "positive", relapsed),
        proportion("relapse_negative", "relapses antigen-negative",
                   p["relapse_antigen"] == "negative", relapsed),
        proportion("crs_any", "CRS any grade", p["crs_grade"] >= 1),
        proportion("crs_grade3", "CRS grade >= 3", p["crs_grade"] >= 3),
        survival_at("b_cell_aplasia_6m", "B-cell aplasia continuing at 6 months",
                    p.loc[aplastic, "b_cell_aplasia_day"],
                    p.loc[aplastic, "b_cell_recovery_day"].notna(), early),
        ratio_of_geometric_means("cmax_responders", "CAR-T Cmax, responders vs not (% higher)",
                                 p["car_t_cmax"], responders),
        ratio_of_geometric_means("auc_responders", "CAR-T AUC0-28, responders vs not "
                                 "(% higher)", p["car_t_auc_0_28"], responders),
    ]


def status_at(days: pd.Series, events: pd.Series, at_days: float,
              among: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(event-free at ``at_days``, status known there and the patient ``among`` those the
    readout counts, default all): known when the event came first or the patient was followed
    to ``at_days``. ``days`` may be NaN outside ``among``."""
    day = days.fillna(0.0).to_numpy(dtype=float)
    event = events.to_numpy(dtype=bool) & (day <= at_days)
    known = event | (day >= at_days)
    return ~event, known if among is None else known & among


def readout_shares(patients: pd.DataFrame, at_months: float = 12.0
                   ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The readouts of ``trial_readouts`` that are a share of patients, as (yes, counted):
    boolean arrays over the patients, the share being ``yes`` among ``counted`` (a weighted
    share is linear in the weights: ``analysis.vpop``). A survival at ``at_months`` counts the
    patients whose status there is known (an event first, or followed that long): the
    Kaplan-Meier estimate when no one is censored earlier, as in a patient scenario that
    follows everyone to the readout."""
    p = patients
    at, early = at_months * DAYS_PER_MONTH, EARLY_MONTHS * DAYS_PER_MONTH
    everyone = np.ones(len(p), dtype=bool)
    responders = p["responded"].to_numpy(dtype=bool)
    progressed = p["progressed"]
    relapsed = progressed.to_numpy(dtype=bool) & responders
    cr = (p["best_response"] == "CR").to_numpy()
    aplastic = p["b_cell_aplasia"].to_numpy(dtype=bool)
    return {
        "orr": (responders, everyone),
        "dcr": ((p["best_response"] != "PD").to_numpy(), everyone), "cr_rate": (cr, everyone),
        "mrd_negative_rate": (p["mrd_negative"].to_numpy(dtype=bool), everyone),
        "pfs": status_at(p["pfs_day"], progressed, at),
        "efs_6m": status_at(p["efs_day"], p["efs_event"], early),
        "efs": status_at(p["efs_day"], p["efs_event"], at),
        "rfs_6m": status_at(p["rfs_day"], progressed, early, cr),
        "rfs": status_at(p["rfs_day"], progressed, at, cr),
        "dor_6m": status_at(p["dor_day"], progressed, early, responders),
        "relapse_positive": ((p["relapse_antigen"] == "positive").to_numpy(), relapsed),
        "relapse_negative": ((p["relapse_antigen"] == "negative").to_numpy(), relapsed),
        "crs_any": ((p["crs_grade"] >= 1).to_numpy(), everyone),
        "crs_grade3": ((p["crs_grade"] >= 3).to_numpy(), everyone),
        "b_cell_aplasia_6m": status_at(p["b_cell_aplasia_day"],
                                       p["b_cell_recovery_day"].notna(), early, aplastic),
    }


def readout_columns(readouts: list[Readout] | None) -> dict[str, float]:
    """Readouts as one flat row (a point of a trial sweep): ``<name>`` (the value: a fraction
    for rates, months for durations, 0.74 for 74 % higher), ``<name>_low`` and ``<name>_high``
    (its 95 % interval; NaN where it has none) and ``<name>_n`` (the patients it counts).
    ``None`` (no patient finished): every column NaN."""
    if readouts is None:
        return {f"{name}{suffix}": math.nan for name in READOUT_NAMES
                for suffix in READOUT_COLUMN_SUFFIXES}
    row: dict[str, float] = {}
    for r in readouts:
        row.update({r.name: r.value, f"{r.name}_low": r.low, f"{r.name}_high": r.high,
                    f"{r.name}_n": r.n})
    return row


def readout_table(readouts: list[Readout]) -> pd.DataFrame:
    """The readouts as a table (one row each)."""
    return pd.DataFrame([r.__dict__ for r in readouts])


def crs_grade_counts(patients: pd.DataFrame) -> pd.Series:
    """Patients per CRS grade 0-4 (zeros included)."""
    return patients["crs_grade"].value_counts().reindex(CRS_GRADES, fill_value=0)


def expansion_by_response(patients: pd.DataFrame) -> pd.DataFrame:
    """CAR-T expansion of responders and non-responders: n, geometric mean Cmax and AUC0-28
    (CAR-T per baseline cancer cell; x days), median Tmax (days)."""
    rows = []
    for label, group in (("responders", patients["responded"].astype(bool)),
                         ("non-responders", ~patients["responded"].astype(bool))):
        chosen = patients[group]
        rows.append({"group": label, "n": len(chosen),
                     "cmax_geometric_mean": _geometric_mean(chosen["car_t_cmax"]),
                     "tmax_median_days": float(chosen["car_t_tmax_day"].median()),
                     "auc_0_28_geometric_mean": _geometric_mean(chosen["car_t_auc_0_28"])})
    return pd.DataFrame(rows)


def _geometric_mean(values: pd.Series) -> float:
    positive = values.to_numpy(dtype=float)
    positive = positive[positive > 0]
    return float(np.exp(np.log(positive).mean())) if positive.size else math.nan
