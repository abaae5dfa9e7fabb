"""Virtual-population calibration: weight a simulated pool of plausible patients so the
cohort's readouts match published ones, without simulating anyone again.

The method is prevalence weighting (Allen, Rieger & Musante 2016 CPT Pharmacometrics Syst
Pharmacol 5:140, who select plausible patients into a virtual population; the weights here are
the continuous form of that selection). Each published readout that is a share of patients
(``analysis.trial.readout_shares``: CR, EFS at 12 months, CRS grade >= 3, ...) gives a band
``[low, high]`` that the weighted share must reach. Among all weightings that do so, the one
closest to the pool (least Kullback-Leibler divergence from equal weights: the fewest
assumptions beyond the data) is

    w_i  proportional to  exp(sum_j mu_j a_ij),   mu >= 0,

where ``a_ij`` is patient i's term in constraint j (``sum_i w_i a_ij >= 0``; a share among
counted patients, ``sum w c (v - low) >= 0`` and ``sum w c (high - v) >= 0``, is two such
linear constraints). ``mu`` minimises the convex dual ``log sum_i exp(a_i . mu)`` on
``mu >= 0`` (scipy L-BFGS-B with its exact gradient, the weighted mean of ``a``). Bands count
in the order given: one that no weighting of the pool reaches, alone or together with the
bands before it (linear programming, scipy ``linprog``), is left out and named: the pool lacks
the patients (or the model the mechanism) to produce it.

The effective sample size ``1 / sum w^2`` (weights summing to one; Kish) says how many
independent patients the weighted pool is worth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special

from .calibration import weighted_quantiles

#: a weighting is refused when the dual's multipliers pass this size (weights then differ by
#: more than e^50: the band is reached only at the edge of what the pool can do)
MU_LIMIT = 50.0
#: the least weight (relative to an equal share) a feasible weighting may give a patient
MIN_WEIGHT = 1e-6


@dataclass(frozen=True)
class Band:
    """A readout the weighted pool must reach: its share between ``low`` and ``high``."""

    name: str
    low: float
    high: float


@dataclass(frozen=True)
class Weighting:
    """The weights of a pool (summing to one) and what they reached."""

    weights: np.ndarray
    bands: list[Band]  # the bands the weights meet
    unreachable: dict[str, str]  # readout -> why no weighting of the pool reaches its band

    @property
    def effective_size(self) -> float:
        """Kish's effective sample size, ``1 / sum(w^2)``."""
        return float(1.0 / np.sum(self.weights**2))


def weighted_share(value: np.ndarray, counted: np.ndarray, weights: np.ndarray) -> float:
    """Share of true ``value`` among ``counted`` patients, each with its weight (NaN if no
    counted patient has weight)."""
    total = float(np.sum(weights[counted]))
    return float(np.sum(weights[counted & value]) / total) if total > 0 else math.nan


def _constraints(value: np.ndarray, counted: np.ndarray, band: Band) -> np.ndarray:
    """The two columns of ``a`` (patients x 2) that put a share inside ``band``."""
    share = value.astype(float)
    return np.stack([counted * (share - band.low), counted * (band.high - share)], axis=1)


def _feasible(terms: np.ndarray) -> bool:
    """True if some weights summing to one, each at least ``MIN_WEIGHT`` of an equal share,
    meet every constraint ``a^T w >= 0`` (strictly positive weights: the least-divergent
    ones then exist with finite multipliers)."""
    n = terms.shape[0]
    result = optimize.linprog(np.zeros(n), A_ub=-terms.T, b_ub=np.zeros(terms.shape[1]),
                              A_eq=np.ones((1, n)), b_eq=[1.0],
                              bounds=(MIN_WEIGHT / n, None), method="highs")
    return result.status == 0


def _why_unreachable(value: np.ndarray, counted: np.ndarray, band: Band) -> str:
    """Why no weighting reaches ``band`` alone (empty if one does)."""
    if not counted.any():
        return "no patient of the pool is counted by it"
    lowest = 0.0 if (~value[counted]).any() else 1.0
    highest = 1.0 if value[counted].any() else 0.0
    if highest < band.low:
        return f"every counted patient of the pool is a 'no' (the band starts at {band.low:.2f})"
    if lowest > band.high:
        return f"every counted patient of the pool is a 'yes' (the band ends at {band.high:.2f})"
    return ""


def prevalence_weights(shares: dict[str, tuple[np.ndarray, np.ndarray]], bands: list[Band]
                       ) -> Weighting:
    """Least-divergent weights of the pool (see the module docstring) whose weighted share of
    each band's readout lies in the band. ``shares``: readout -> (value, counted), boolean
    arrays over the pool's patients. Bands count in their order: a band no weighting reaches
    alone, or none together with the bands kept before it, is left out and named in
    ``unreachable`` (the pool lacks the patients, or the model the mechanism, to produce
    it)."""
    n = len(next(iter(shares.values()))[0])
    unreachable: dict[str, str] = {}
    kept: list[Band] = []
    columns: list[np.ndarray] = []
    for band in bands:
        why = _why_unreachable(*shares[band.name], band)
        if why:
            unreachable[band.name] = why
            continue
        candidate = _constraints(*shares[band.name], band)
        if columns and not _feasible(np.concatenate([*columns, candidate], axis=1)):
            unreachable[band.name] = ("no weighting of the pool reaches it together with "
                                      + ", ".join(b.name for b in kept))
            continue
        kept.append(band)
        columns.append(candidate)
    if not kept:
        return Weighting(np.full(n, 1.0 / n), [], unreachable)
    terms = np.concatenate(columns, axis=1)
    scale = np.maximum(np.abs(terms).max(axis=0), 1e-12)  # constraints on a common scale
    scaled = terms / scale

    def dual(mu: np.ndarray) -> tuple[float, np.ndarray]:
        logits = scaled @ mu
        weights = special.softmax(logits)
        return float(special.logsumexp(logits)), scaled.T @ weights

    start = np.zeros(scaled.shape[1])
    result = optimize.minimize(dual, start, jac=True, method="L-BFGS-B",
                               bounds=[(0.0, None)] * len(start),
                               options={"maxiter": 10_000, "ftol": 1e-15, "gtol": 1e-10})
    if not np.all(np.isfinite(result.x)) or result.x.max(initial=0.0) > MU_LIMIT:
        raise ValueError("the weights diverge: the bands are met only at the edge of what the "
                         "pool can do; widen the pool's properties or add patients")
    weights = special.softmax(scaled @ result.x)
    return Weighting(weights, kept, unreachable)


def property_shifts(properties: pd.DataFrame, weights: np.ndarray) -> pd.DataFrame:
    """How the weights move each patient property: the pool's and the weighted median and
    10-90 % range, and the shift of the weighted mean in units of the pool's standard
    deviation (on a log scale for positive properties spanning > 10x), largest first."""
    rows = []
    for key in properties.columns:
        values = properties[key].to_numpy(dtype=float)
        positive = bool(np.all(values > 0))
        spread = values.max() / values.min() if positive else 1.0
        scale = np.log10(values) if positive and spread > 10 else values
        sd = float(np.std(scale))
        shift = (float(np.sum(weights * scale)) - float(np.mean(scale))) / sd if sd else 0.0
        equal = np.full(len(values), 1.0 / len(values))
        pool = weighted_quantiles(values, equal, (0.1, 0.5, 0.9))
        weighted = weighted_quantiles(values, weights, (0.1, 0.5, 0.9))
        rows.append({"property": key, "pool_median": pool[1], "pool_p10": pool[0],
                     "pool_p90": pool[2], "weighted_median": weighted[1],
                     "weighted_p10": weighted[0], "weighted_p90": weighted[2],
                     "shift_sd": shift, "log_scale": positive and spread > 10})
    table = pd.DataFrame(rows)
    return table.reindex(table["shift_sd"].abs().sort_values(ascending=False).index
                         ).reset_index(drop=True)


def median_interval(n: float, z: float = 1.959964) -> tuple[float, float]:
    """The 95 % Wilson interval of a share of one half seen in ``n`` patients: where, in the
    population, the share below a median published from ``n`` patients can lie (symmetric
    about one half: 0.5 +- z sqrt(1/(4n) + z^2/(4n^2)) / (1 + z^2/n))."""
    half = z * math.sqrt(1 / (4 * n) + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return 0.5 - half, 0.5 + half


def resample(weights: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of ``size`` patients drawn from the pool with probabilities ``weights`` (with
    replacement; numpy's generator seeded with ``seed``)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(len(weights), size=size, replace=True, p=weights))
