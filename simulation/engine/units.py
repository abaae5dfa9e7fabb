"""Unit conversions. Internally time is in minutes and length in lattice spacings."""

import math

MIN_PER_H = 60.0
MIN_PER_DAY = 1440.0


def probability_per_step(rate_per_min: float, dt_min: float) -> float:
    """Probability that a Poisson event of ``rate_per_min`` (1/min) happens within ``dt_min`` (min).

    ``1 - exp(-rate * dt)``: exact for a constant hazard, so results do not depend on ``dt``
    the way ``rate * dt`` would.
    """
    return -math.expm1(-rate_per_min * dt_min)


def rate_from_half_life(half_life_min: float) -> float:
    """First-order rate (1/min) of a process with the given half-life or doubling time (min)."""
    return math.log(2.0) / half_life_min


def minutes_to_steps(duration_min: float, dt_min: float) -> int:
    """Whole time steps closest to ``duration_min`` (at least 1)."""
    return max(1, round(duration_min / dt_min))


def lognormal_sigma(cv: float) -> float:
    """Shape sigma of a log-normal with coefficient of variation ``cv``."""
    return math.sqrt(math.log1p(cv * cv))
