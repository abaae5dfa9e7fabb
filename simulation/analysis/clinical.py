"""Trial endpoints of one patient, read from its time series as the trials read them.

The burden is the tumour count relative to baseline (the last census at or before the first
dose), whole body: the lattice in the first weeks, the systemic model after it
(``biology/systemic.py``). Thresholds come from the scenario's ``clinical.endpoints``:

* **best response** up to ``response_window_days``: CR at or below
  ``complete_response_fraction`` (B-ALL: < 5 % blasts, CR/CRi), PR at or below
  ``partial_response_fraction``, PD if the disease progressed first, SD otherwise;
  **MRD-negative**: below ``mrd_fraction`` (10^-4, flow cytometry);
* **progression / relapse**: the first census at which the burden is at or above
  ``relapse_fraction`` and at least ``progression_from_nadir`` x its nadir so far (B-ALL:
  >= 5 % blasts after remission; Lugano: >= 50 % above nadir); the baseline counts as a nadir,
  so growth without response is progression too. A relapse is **antigen-negative** when most
  relapsing cells carry no antigen (``relapse_antigen``: positive / negative / none);
* **PFS**: infusion to progression; **EFS**: progression, or no response (an event at the
  end of the response window, when treatment failure is known); **RFS**: complete response
  to relapse; **duration of response**: first response to progression. No death is modelled:
  patients without an event are censored at their last census;
* **B-cell aplasia**: normal B cells below ``b_cell_recovery_fraction`` of their number
  before treatment; its end is the first census back above it;
* **CRS grade** 0-4: the peak CRS index per baseline cancer cell times the patient's
  ``crs_susceptibility``, against ``crs_grade_thresholds`` (grade g from the g-th threshold);
* **CAR-T expansion**: Cmax, Tmax and AUC0-28 of all CAR-T (lattice + blood pool) per baseline
  cancer cell, days after the first dose (AUC by the trapezoid rule, cells/cell x days), and
  the **post-peak half-life** (days): ln 2 over the slope of a least-squares line through
  ln(CAR-T) in the ``CONTRACTION_DAYS`` after the peak (the contraction phase, where the
  label's T1/2 is read: Kymriah USPI section 12.3); NaN if CAR-T do not fall there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..config.schema import ClinicalConfig

#: AUC window of CAR-T expansion (days after infusion; Mueller 2018 report AUC0-28)
AUC_DAYS = 28.0
#: the window after the CAR-T peak over which the post-peak half-life is fitted (days)
CONTRACTION_DAYS = 56.0
#: best-response classes (Lugano / RECIST names)
BEST_RESPONSES = ("CR", "PR", "SD", "PD")


def crs_grade(score: float, thresholds: Sequence[float]) -> int:
    """CRS grade 0-4: how many of the four ascending ``thresholds`` ``score`` reaches."""
    return int(np.searchsorted(np.asarray(thresholds, dtype=float), score, side="right"))


def expansion(days: np.ndarray, car_t: np.ndarray, window_days: float = AUC_DAYS
              ) -> tuple[float, float, float]:
    """(Cmax, Tmax in days, AUC over [0, window_days] by the trapezoid rule) of a CAR-T curve
    sampled at ``days`` (days after infusion, ascending)."""
    inside = days <= window_days + 1e-9
    t, c = days[inside], car_t[inside]
    peak = int(np.argmax(c))
    return float(c[peak]), float(t[peak]), float(np.trapezoid(c, t))


def post_peak_half_life(days: np.ndarray, car_t: np.ndarray, peak_day: float,
                        window_days: float = CONTRACTION_DAYS) -> float:
    """Half-life (days) of the CAR-T decline in the ``window_days`` after ``peak_day``: ln 2
    over minus the slope of a least-squares line through ln(car_t) (censuses with CAR-T > 0;
    at least three); NaN with fewer censuses or no decline."""
    inside = (days >= peak_day - 1e-9) & (days <= peak_day + window_days + 1e-9) & (car_t > 0)
    if np.count_nonzero(inside) < 3:
        return float("nan")
    slope = np.polyfit(days[inside], np.log(car_t[inside]), 1)[0]
    return float(np.log(2.0) / -slope) if slope < 0 else float("nan")


def progression_index(burden: np.ndarray, relapse_fraction: float, from_nadir: float
                      ) -> int | None:
    """Index of the first census that progresses (see module docstring), or None."""
    nadir = np.minimum.accumulate(burden)
    hit = np.flatnonzero((burden >= relapse_fraction) & (burden >= from_nadir * nadir)
                         & (burden > 0))
    return int(hit[0]) if hit.size else None


def _first(days: np.ndarray, mask: np.ndarray) -> float | None:
    hit = np.flatnonzero(mask)
    return float(days[hit[0]]) if hit.size else None


def patient_outcome(series: pd.DataFrame, clinical: ClinicalConfig,
                    first_dose_day: float) -> dict:
    """Trial endpoints of one run (see module docstring); times in days after the first dose."""
    ends = clinical.endpoints
    before = series[series["time_days"] <= first_dose_day + 1e-9]
    baseline = float(before["tumor_cells"].iloc[-1]) or 1.0
    after = series[series["time_days"] >= first_dose_day - 1e-9]
    days = after["time_days"].to_numpy(dtype=float) - first_dose_day
    burden = after["tumor_cells"].to_numpy(dtype=float) / baseline
    window = days <= ends.response_window_days + 1e-9
    progressed_at = progression_index(burden, ends.relapse_fraction, ends.progression_from_nadir)
    cr_day = _first(days, window & (burden <= ends.complete_response_fraction))
    response_day = _first(days, window & (burden <= ends.partial_response_fraction))
    if (progressed_at is not None and response_day is not None
            and days[progressed_at] < response_day):
        response_day = cr_day = None  # progressed before any response: no response
    if cr_day is not None:
        best = "CR"
    elif response_day is not None:
        best = "PR"
    else:
        best = "PD" if progressed_at is not None and window[progressed_at] else "SD"
    end = float(days[-1])
    progression_day = float(days[progressed_at]) if progressed_at is not None else None
    negative = after["tumor_antigen_negative"].to_numpy(dtype=float)
    relapse_antigen = "none"  # a string column in every patient's row (Parquet types)
    if progression_day is not None and response_day is not None:
        share = negative[progressed_at] / (burden[progressed_at] * baseline)
        relapse_antigen = "negative" if share >= 0.5 else "positive"
    responded = response_day is not None
    failure_day = min(ends.response_window_days, end)
    car_t = ((after["car_t_cells"] + after["car_t_blood"]).to_numpy(dtype=float) / baseline)
    cmax, tmax, auc = expansion(days, car_t)
    b_cells = after["normal_antigen_positive"].to_numpy(dtype=float)
    b_before = float(series["normal_antigen_positive"].iloc[0])
    aplasia_onset = (_first(days, b_cells < ends.b_cell_recovery_fraction * b_before)
                     if b_before else None)
    recovery_day = (_first(days, (days > aplasia_onset)
                           & (b_cells >= ends.b_cell_recovery_fraction * b_before))
                    if aplasia_onset is not None else None)
    crs_score = clinical.crs_susceptibility * float(series["crs_index"].max()) / baseline
    return {
        "best_response": best,
        "responded": responded,
        "response_day": response_day,
        "cr_day": cr_day,
        "mrd_negative": bool(np.any(window & (burden < ends.mrd_fraction))),
        "progressed": progression_day is not None,
        "progression_day": progression_day,
        "relapse_antigen": relapse_antigen,
        "pfs_day": progression_day if progression_day is not None else end,
        "efs_event": progression_day is not None or not responded,
        "efs_day": (failure_day if not responded else
                    progression_day if progression_day is not None else end),
        "rfs_day": (None if cr_day is None else
                    (progression_day if progression_day is not None else end) - cr_day),
        "dor_day": (None if not responded else
                    (progression_day if progression_day is not None else end) - response_day),
        "b_cell_aplasia": aplasia_onset is not None,
        "b_cell_recovery_day": recovery_day,
        "b_cell_aplasia_day": (None if aplasia_onset is None else
                               (recovery_day if recovery_day is not None else end)
                               - aplasia_onset),
        "crs_score": crs_score,
        "crs_grade": crs_grade(crs_score, clinical.crs_grade_thresholds),
        "car_t_cmax": cmax,
        "car_t_tmax_day": tmax,
        "car_t_auc_0_28": auc,
        "car_t_half_life_day": post_peak_half_life(days, car_t, tmax),
        "burden_nadir": float(burden[window].min()),
        "burden_final": float(burden[-1]),
        "follow_up_days": end,
        "cured": bool(burden[-1] == 0.0),
    }
