"""Kinetics of a CAR-T time course: expansion, peak, contraction and persistence, and the
contraction half-life with its confidence interval (per median course and per replicate).

Pure functions of times (days) and values (cells, or cells per uL); the figures
(``simulation.viz.time_courses``) mark what these functions find.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats


#: a rise after the post-infusion trough counts as expansion if it at least doubles the trough
EXPANSION_FOLD = 2.0
#: persistence: the log-linear decline after the contraction is at least this many times slower
PERSISTENCE_SLOWDOWN = 2.0
#: fewest time points on each side of the contraction/persistence break: this many, and this
#: share of the positive points after the peak (noise in a short tail is not persistence)
_MIN_PHASE_POINTS = 3
_MIN_PHASE_SHARE = 0.2
#: the two-segment fit must leave at most this share of a single line's squared error
_KNEE_ERROR_SHARE = 0.5


@dataclass(frozen=True)
class KineticPhases:
    """Phases of one CAR-T time course, as indices into its time points.

    Expansion runs from ``start`` to ``peak`` (Cmax at Tmax), contraction from ``peak`` to
    ``persistence`` (or the end), persistence from ``persistence`` to the end (None: not
    reached). ``half_life_days``: of the contraction, from a log-linear fit, and
    ``half_life_ci_days`` its 95 % confidence interval; both None unless the fit is meaningful
    (``contraction_half_life``).
    """

    start: int
    peak: int
    persistence: int | None
    half_life_days: float | None
    half_life_ci_days: tuple[float, float] | None = None


def kinetic_phases(time_days: Sequence[float], values: Sequence[float], floor: float = 0.0
                   ) -> KineticPhases | None:
    """Expansion, peak, contraction and persistence of a CAR-T time course (None if never > 0).

    The peak is the expansion peak (clinical Cmax): if the values fall after the first positive
    one (the infused cells leaving the blood) and then rise ``EXPANSION_FOLD``-fold above that
    trough, the highest value after the trough, else the highest value. Persistence starts at
    the break of a two-segment log-linear fit to the positive values after the peak that
    minimises the squared error, if the later segment declines ``PERSISTENCE_SLOWDOWN`` times
    more slowly than the earlier one (or not at all), each segment holds at least a fifth of
    the points, and the break at least halves the squared error of one straight line. The
    contraction half-life is fitted to the values above ``floor`` (``contraction_half_life``).
    """
    t = np.asarray(time_days, dtype=float)
    v = np.asarray(values, dtype=float)
    positive = np.flatnonzero(v > 0)
    if positive.size == 0:
        return None
    start = int(positive[0])
    peak = start + int(np.argmax(v[start:]))
    rises = np.flatnonzero(np.diff(v[start:]) > 0)
    if rises.size:
        trough = start + int(rises[0])
        expansion_peak = trough + int(np.argmax(v[trough:]))
        if v[expansion_peak] > EXPANSION_FOLD * v[trough]:
            start, peak = trough, expansion_peak
    persistence = _persistence_start(t, v, peak)
    end = len(t) if persistence is None else persistence + 1
    fit = contraction_half_life(t[peak:end], v[peak:end], floor)
    return KineticPhases(start, peak, persistence, *(fit if fit else (None, None)))


def _persistence_start(t: np.ndarray, v: np.ndarray, peak: int) -> int | None:
    """Index where the decline after ``peak`` slows into persistence (see ``kinetic_phases``)."""
    after = peak + np.flatnonzero(v[peak:] > 0)
    min_points = max(_MIN_PHASE_POINTS, int(np.ceil(_MIN_PHASE_SHARE * after.size)))
    if after.size < 2 * min_points:
        return None
    times, logs = t[after], np.log(v[after])

    def fit(part: slice) -> tuple[float, float]:  # (slope per day, squared error)
        coefficients = np.polyfit(times[part], logs[part], 1)
        return coefficients[0], float(((np.polyval(coefficients, times[part]) - logs[part])
                                       ** 2).sum())

    best = (_KNEE_ERROR_SHARE * fit(slice(None))[1], None)
    for k in range(min_points - 1, after.size - min_points + 1):
        (contraction, error_1), (later, error_2) = fit(slice(0, k + 1)), fit(slice(k, None))
        if (contraction < 0 and later > contraction / PERSISTENCE_SLOWDOWN
                and error_1 + error_2 < best[0]):
            best = (error_1 + error_2, int(after[k]))
    return best[1]


#: phases (peak, half-life) are read from a median course only if its peak holds at least
#: this many of the measurement's smallest steps (cells): the counting noise, ~1/sqrt(count),
#: is then at most ~22 %; below it the day and height of the highest point are chance
PEAK_MIN_QUANTA = 20.0


def replicate_half_lives(runs: pd.DataFrame, column: str, quantum: float) -> np.ndarray:
    """The contraction half-life (days) of each replicate's own course of ``column``
    (``kinetic_phases``: from its own peak, fitted above ``HALF_LIFE_MIN_QUANTA`` x
    ``quantum``), for the replicates where that fit is meaningful."""
    wide = runs.pivot_table(index="time_days", columns="replicate", values=column)
    wide = wide.sort_index().ffill()
    t = wide.index.to_numpy(dtype=float)
    half_lives = []
    for replicate in wide.columns:
        phases = kinetic_phases(t, wide[replicate].to_numpy(dtype=float),
                                HALF_LIFE_MIN_QUANTA * quantum)
        if phases is not None and phases.half_life_days is not None:
            half_lives.append(phases.half_life_days)
    return np.array(half_lives)


def half_life_interval(half_lives: np.ndarray) -> tuple[float, tuple[float, float] | None]:
    """(geometric mean of replicate half-lives, its ``HALF_LIFE_CONFIDENCE`` t-interval over
    the replicates, on the log scale, or None from fewer than 2). The replicates are the
    independent units: an interval from the time points of one median curve would treat
    autocorrelated censuses as independent and come out far too narrow."""
    logs = np.log(np.asarray(half_lives, dtype=float))
    centre = float(np.exp(logs.mean()))
    if logs.size < 2:
        return centre, None
    margin = (stats.t.ppf(0.5 + HALF_LIFE_CONFIDENCE / 2, logs.size - 1)
              * logs.std(ddof=1) / np.sqrt(logs.size))
    return centre, (float(np.exp(logs.mean() - margin)), float(np.exp(logs.mean() + margin)))


#: a contraction half-life is fitted only to medians at least this many times the smallest
#: step of the measurement (one cell, or one cell per blood volume): at a few cells the
#: counting noise (Poisson, ~1/sqrt(count)) is as large as the decline being measured
HALF_LIFE_MIN_QUANTA = 5.0


def count_quantum(values: pd.Series) -> float:
    """The smallest step of a count-derived column (one scenario's: one cell, or one cell per
    its blood volume): the smallest of its positive values and of the gaps between them
    (0 if it has none)."""
    positive = np.unique(values[values > 0].to_numpy(dtype=float))
    if not positive.size:
        return 0.0
    gaps = np.diff(positive)
    gaps = gaps[gaps > 1e-9 * positive[-1]]  # not float rounding of equal counts
    return float(min(positive[0], gaps.min(initial=np.inf)))


#: fewest medians a contraction half-life is fitted to
HALF_LIFE_MIN_POINTS = 5
#: two-sided confidence level of the half-life interval
HALF_LIFE_CONFIDENCE = 0.95


def contraction_half_life(t: np.ndarray, values: np.ndarray, floor: float = 0.0
                          ) -> tuple[float, tuple[float, float]] | None:
    """(half-life in days, its ``HALF_LIFE_CONFIDENCE`` interval) of an exponential decline
    fitted to the values above ``floor`` (and above 0) after the peak, or None unless the fit
    means something: at least ``HALF_LIFE_MIN_POINTS`` such values, the last below 80 % of the
    first, and a log-linear slope (``scipy.stats.linregress``) whose t-interval lies entirely
    below 0 (a significant decline; the interval of the half-life is ln 2 / -slope at its
    ends)."""
    t = np.asarray(t, dtype=float)
    values = np.asarray(values, dtype=float)
    keep = values > max(floor, 0.0)
    if keep.sum() < HALF_LIFE_MIN_POINTS or values[keep][-1] >= 0.8 * values[keep][0]:
        return None
    fit = stats.linregress(t[keep], np.log(values[keep]))
    margin = stats.t.ppf(0.5 + HALF_LIFE_CONFIDENCE / 2, keep.sum() - 2) * fit.stderr
    steepest, shallowest = fit.slope - margin, fit.slope + margin
    if not shallowest < 0:
        return None
    return float(np.log(2) / -fit.slope), (float(np.log(2) / -steepest),
                                           float(np.log(2) / -shallowest))
