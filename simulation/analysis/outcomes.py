"""Outcome rules: one pure home for what a run's numbers mean clinically.

RECIST-like response classes, minimal residual disease, relapse, progression events,
Kaplan-Meier estimates and Wilson intervals of response rates, computed from the tidy tables
(``timeseries``, ``summary``). The runner's summary rows, the plots, the reports and the
literature checks all read these rules and their thresholds from here, so a threshold is
written once.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

#: response thresholds on the tumour cell count relative to baseline (RECIST-like)
PARTIAL_RESPONSE_FRACTION = 0.7  # best count <= 70 % of baseline: >= 30 % shrinkage
#: progression (RECIST): a count >= 120 % of its reference: the baseline for a tumour that never
#: responded, the nadir so far for relapse and progression-free time
PROGRESSION_FRACTION = 1.2
#: complete response: the nadir is below the minimal-residual-disease detection limit of flow
#: cytometry, 1 cancer cell in 10^4 (0.01 %); counts below it are undetectable in a patient
MRD_DETECTION_FRACTION = 1e-4
#: relapse: after a CR or PR the count regrows to >= 120 % of the nadir (RECIST progression)
#: and by at least this many cells (or 0.1 % of baseline, if more), so that one surviving cell
#: dividing is not a relapse
RELAPSE_MIN_INCREASE_CELLS = 10
RELAPSE_MIN_INCREASE_FRACTION = 1e-3
#: response classes in display order
RESPONSES = ("CR", "PR", "SD", "PD")
#: the same thresholds as % change from baseline, as waterfall plots draw them
PR_THRESHOLD_PERCENT = round(100.0 * (PARTIAL_RESPONSE_FRACTION - 1.0), 6)  # -30 %
PD_THRESHOLD_PERCENT = round(100.0 * (PROGRESSION_FRACTION - 1.0), 6)  # +20 %


def classify_response(baseline: int, best: int, final: int) -> str:
    """RECIST-like best response from tumour cell counts.

    CR: the best (nadir) count is below the MRD detection limit (``MRD_DETECTION_FRACTION`` of
    baseline; 0 cells for baselines under 10^4). PR: best count <= 70 % of baseline. PD: no PR
    and the final count >= 120 % of baseline. SD otherwise.
    """
    if best < MRD_DETECTION_FRACTION * baseline or best == 0:
        return "CR"
    if best <= PARTIAL_RESPONSE_FRACTION * baseline:
        return "PR"
    if final >= PROGRESSION_FRACTION * baseline:
        return "PD"
    return "SD"


def minimum_regrowth(baseline: float) -> float:
    """Cells a count must add to its nadir to count as regrowth (relapse, progression):
    ``RELAPSE_MIN_INCREASE_CELLS``, or ``RELAPSE_MIN_INCREASE_FRACTION`` of baseline if more."""
    return max(RELAPSE_MIN_INCREASE_CELLS, RELAPSE_MIN_INCREASE_FRACTION * baseline)


def find_relapse(counts: pd.Series, times: pd.Series, baseline: int) -> float | None:
    """Day of relapse, or None: the first census after the nadir at which a responding tumour
    (nadir <= 70 % of baseline) has regrown to >= 120 % of the nadir and by at least
    ``RELAPSE_MIN_INCREASE_CELLS`` (or ``RELAPSE_MIN_INCREASE_FRACTION`` of baseline)."""
    nadir_at = int(np.argmin(counts.to_numpy()))
    nadir = int(counts.iloc[nadir_at])
    if nadir > PARTIAL_RESPONSE_FRACTION * baseline:
        return None
    rise = minimum_regrowth(baseline)
    later = counts.iloc[nadir_at:]
    regrown = later[(later >= PROGRESSION_FRACTION * nadir) & (later >= nadir + rise)]
    return float(times.loc[regrown.index[0]]) if len(regrown) else None


def _peak(series: pd.DataFrame, column: str) -> tuple[float, float]:
    """(largest value of ``column``, day of its first occurrence)."""
    row = series.loc[series[column].idxmax()]
    return float(row[column]), float(row["time_days"])


def summarise_run(series: pd.DataFrame, first_dose_day: float) -> dict:
    """Outcome of one run from its time series (baseline = last census at or before dosing).

    A value that does not exist for the run (no clearance, no relapse, no cancer cell left
    to count a fraction of) is NaN, as ``summary.csv`` reads back: a table of these rows has
    the same float columns whether it is built in memory or read from disk."""
    before = series[series["time_days"] <= first_dose_day + 1e-9]
    baseline = int(before["tumor_cells"].iloc[-1])
    after = series[series["time_days"] >= first_dose_day - 1e-9]
    nadir_row = after.loc[after["tumor_cells"].idxmin()]
    final = int(series["tumor_cells"].iloc[-1])
    cleared_rows = after[after["tumor_cells"] == 0]
    relapse_day = find_relapse(after["tumor_cells"], after["time_days"], baseline)
    car_t_peak, car_t_peak_day = _peak(series, "car_t_cells")
    # the census at an intravenous infusion holds the dose itself; the clinical peak is later
    expansion = series[series["time_days"] > first_dose_day + 1e-9]
    blood_peak, blood_peak_day = _peak(expansion if len(expansion) else series,
                                       "car_t_blood_per_ul")
    crs_peak, crs_peak_day = _peak(series, "crs_index")
    final_negative = (float(series["tumor_antigen_negative"].iloc[-1]) / final if final
                      else np.nan)
    return {
        "response": classify_response(baseline, int(nadir_row["tumor_cells"]), final),
        "cleared": final == 0,
        "baseline_tumor_cells": baseline,
        "nadir_tumor_cells": int(nadir_row["tumor_cells"]),
        "nadir_day": float(nadir_row["time_days"]),
        "final_tumor_cells": final,
        "final_day": float(series["time_days"].iloc[-1]),
        "clearance_day": (float(cleared_rows["time_days"].iloc[0]) if len(cleared_rows)
                          else np.nan),
        "relapse": relapse_day is not None,
        "relapse_day": relapse_day if relapse_day is not None else np.nan,
        "relapse_antigen_negative_fraction": (final_negative if relapse_day is not None
                                              else np.nan),
        "initial_antigen_negative_fraction": (
            float(series["tumor_antigen_negative"].iloc[0]) / int(series["tumor_cells"].iloc[0])
            if int(series["tumor_cells"].iloc[0]) else np.nan),
        "final_antigen_negative_fraction": final_negative,
        "car_t_peak": int(car_t_peak),
        "car_t_peak_day": car_t_peak_day,
        "car_t_final": int(series["car_t_cells"].iloc[-1]),
        "car_t_blood_peak_per_ul": blood_peak,
        "car_t_blood_peak_day": blood_peak_day,
        "car_t_blood_final_per_ul": float(series["car_t_blood_per_ul"].iloc[-1]),
        "crs_index_peak": crs_peak,
        "crs_peak_day": crs_peak_day,
        "car_t_max_infiltration_depth_um": float(series["car_t_infiltration_depth_um"].max()),
        "cancer_killed": int(series["cumulative_cancer_killed"].iloc[-1]),
        "normal_killed": int(series["cumulative_normal_killed"].iloc[-1]),
        "normal_antigen_positive_remaining_fraction": _remaining(
            series["normal_antigen_positive"]),
        "necrotic_cells_final": int(series["necrotic_cells"].iloc[-1]),
    }


def _remaining(counts: pd.Series) -> float:
    """The last of ``counts`` as a fraction of the first (NaN if the first is 0)."""
    start = int(counts.iloc[0])
    return float(counts.iloc[-1]) / start if start else np.nan


def progression_day(run: pd.DataFrame, summary_row: pd.Series) -> float | None:
    """Day a run progressed: its relapse day, or for a tumour that never responded the first
    census at >= ``PROGRESSION_FRACTION`` of baseline; None for a cured run or one that has not
    (yet) progressed.
    """
    if summary_row["cleared"]:
        return None
    if summary_row["relapse"]:
        return float(summary_row["relapse_day"])
    if summary_row["response"] in ("CR", "PR"):
        return None  # still in response at the end of the run
    grown = run[run["tumor_cells"] >= PROGRESSION_FRACTION * summary_row["baseline_tumor_cells"]]
    return float(grown["time_days"].iloc[0]) if len(grown) else None


def response_counts(summary: pd.DataFrame) -> pd.DataFrame:
    """Runs per scenario and response class (CR, PR, SD, PD), zeros included."""
    counts = pd.crosstab(summary["scenario"], summary["response"])
    for response in RESPONSES:
        if response not in counts:
            counts[response] = 0
    order = list(dict.fromkeys(summary["scenario"]))  # as they first appear
    return counts.loc[order, list(RESPONSES)].astype(np.int64)


def best_percent_change(summary: pd.DataFrame) -> pd.Series:
    """Best (lowest) % change of the tumour count from baseline, per run (-100 = cleared)."""
    baseline = summary["baseline_tumor_cells"].astype(float)
    return 100.0 * (summary["nadir_tumor_cells"] - baseline) / baseline


def progression_events(timeseries: pd.DataFrame, first_dose_day: float = 0.0,
                       fraction: float = PROGRESSION_FRACTION) -> pd.DataFrame:
    """Progression-free time of every run, for a Kaplan-Meier curve.

    From ``first_dose_day`` on, a run progresses at the first census where its tumour count is
    at least ``fraction`` x its nadir so far (the baseline counts as a nadir, so growth to 120 %
    of baseline without any response is progression too) and has regrown from that nadir by
    ``minimum_regrowth`` cells, as a relapse must (one surviving cell dividing is no
    progression). Runs that never
    progress are censored at their end of follow-up: their last census, or, for a cleared
    tumour (which cannot regrow), the last census of any run of the scenario.

    Returns one row per run: ``scenario, replicate, time_days`` (days since first dose),
    ``progressed`` (bool).
    """
    rows = []
    for scenario, runs in timeseries.groupby("scenario", sort=False):
        follow_up_end = float(runs["time_days"].max())
        for replicate, run in runs.groupby("replicate", sort=True):
            run = run.sort_values("time_days")
            after = run[run["time_days"] >= first_dose_day - 1e-9]
            counts = after["tumor_cells"].to_numpy(dtype=float)
            times = after["time_days"].to_numpy(dtype=float)
            nadir = np.minimum.accumulate(counts)
            rise = minimum_regrowth(counts[0]) if counts.size else 0.0
            hit = np.flatnonzero((counts >= fraction * nadir) & (counts >= nadir + rise))
            if hit.size:
                time, progressed = times[hit[0]], True
            else:
                cleared = counts.size > 0 and counts[-1] == 0
                time, progressed = (follow_up_end if cleared else times[-1]), False
            rows.append({"scenario": scenario, "replicate": replicate,
                         "time_days": time - first_dose_day, "progressed": progressed})
    return pd.DataFrame(rows, columns=["scenario", "replicate", "time_days", "progressed"])


def wilson_interval(successes: Sequence[int] | np.ndarray, n: Sequence[int] | np.ndarray,
                    confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of binomial proportions, e.g. complete responses of n runs (NaN
    where n = 0), by ``scipy.stats.binomtest(...).proportion_ci(method="wilson")``."""
    successes = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    low, high = np.full(n.shape, np.nan), np.full(n.shape, np.nan)
    for i in np.flatnonzero(n > 0):
        interval = stats.binomtest(int(successes.flat[i]), int(n.flat[i])).proportion_ci(
            confidence_level=confidence, method="wilson")
        low.flat[i], high.flat[i] = interval.low, interval.high
    return low, high


#: two-sided confidence level of the Kaplan-Meier band (log-log / exponential Greenwood interval)
KM_CONFIDENCE = 0.95


def kaplan_meier(times: Sequence[float], events: Sequence[bool],
                 confidence: float = KM_CONFIDENCE) -> pd.DataFrame:
    """Kaplan-Meier estimate of the survival function S(t) = P(T > t), by ``scipy.stats.ecdf``.

    ``events[i]`` is true if ``times[i]`` is an event (progression), false if censored. At a
    time with both, events are counted before censorings (the usual convention). Returns one
    row per distinct time, starting with t = 0: ``time, at_risk, events, censored, survival``
    and ``survival_ci_low``/``survival_ci_high``, the pointwise ``confidence`` interval of
    S(t) (log-log transform, as R's ``survfit(conf.type="log-log")`` and lifelines; it stays in
    [0, 1]). The interval is NaN where it is undefined: before the first event (S = 1, no
    variance) and where S = 0.
    """
    times = np.asarray(times, dtype=float)
    events = np.asarray(events, dtype=bool)
    if times.shape != events.shape:
        raise ValueError("times and events must have the same length")
    distinct = np.unique(np.append(times, 0.0))
    at_risk = np.array([np.count_nonzero(times >= t) for t in distinct])
    n_events = np.array([np.count_nonzero(events & (times == t)) for t in distinct])
    n_censored = np.array([np.count_nonzero(~events & (times == t)) for t in distinct])
    survival = np.ones(distinct.size)
    low = np.full(distinct.size, np.nan)
    high = np.full(distinct.size, np.nan)
    if events.any():
        estimate = stats.ecdf(stats.CensoredData(uncensored=times[events],
                                                 right=times[~events])).sf
        with warnings.catch_warnings():  # NaN where S is 0: "undefined at some observations"
            warnings.filterwarnings("ignore", "The confidence interval is undefined",
                                    RuntimeWarning)
            interval = estimate.confidence_interval(confidence, method="log-log")
        # S(t) and its interval are step functions: their values at every distinct time
        survival = estimate.evaluate(distinct)
        low, high = interval.low.evaluate(distinct), interval.high.evaluate(distinct)
        before_first_event = distinct < times[events].min()
        low[before_first_event] = high[before_first_event] = np.nan
    return pd.DataFrame({"time": distinct, "at_risk": at_risk, "events": n_events,
                         "censored": n_censored, "survival": survival,
                         "survival_ci_low": low, "survival_ci_high": high})


def response_breakdown(rows: pd.DataFrame) -> str:
    """Runs per best-response class of ``rows`` (summary rows): "CR 0 · PR 0 · SD 2 · PD 0 of
    n = 2" (classes ``outcomes.RESPONSES``), and where some relapsed after their response
    (column ``relapse``): "CR 0 · PR 3 · SD 0 · PD 0 of n = 3, 3 relapsed"."""
    counts = {r: int((rows["response"] == r).sum()) for r in RESPONSES}
    text = " · ".join(f"{r} {counts[r]}" for r in RESPONSES) + f" of n = {len(rows)}"
    relapsed = int(rows["relapse"].astype(bool).sum()) if "relapse" in rows else 0
    return text + (f", {relapsed} relapsed" if relapsed else "")


def final_percent_change(summary: pd.DataFrame) -> pd.Series:
    """% change of the tumour count from baseline at the end of each run."""
    baseline = summary["baseline_tumor_cells"].astype(float)
    return 100.0 * (summary["final_tumor_cells"] - baseline) / baseline
