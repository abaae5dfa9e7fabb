"""Counter-based random numbers: a uniform draw is a pure function of (seed, sweep, site, purpose).

No generator state is carried between draws, so the numbers a site sees do not depend on the order
in which sites are visited or on how many threads share the work (the PhysiCell PR #427 lesson).
The mixer is SplitMix64's finaliser (Steele et al. 2014), applied to a key that combines the four
counters with odd 64-bit multipliers.
"""

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL_SWEEP = np.uint64(0xD1B54A32D192ED03)
_MUL_SITE = np.uint64(0xAEF17502108EF2D9)
_MUL_PURPOSE = np.uint64(0xF1357AEA2E62A9C5)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


@njit(cache=True, inline="always")
def _splitmix64(z):
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
def uniform(seed, sweep, site, purpose):
    """Uniform float in [0, 1) for this (seed, sweep, site, purpose); all four are integers >= 0."""
    key = (
        np.uint64(seed) * _GOLDEN
        + np.uint64(sweep) * _MUL_SWEEP
        + np.uint64(site) * _MUL_SITE
        + np.uint64(purpose) * _MUL_PURPOSE
    )
    return float(_splitmix64(_splitmix64(key)) >> _S11) * _TO_UNIT


@njit(cache=True)
def randint(seed, sweep, site, purpose, n):
    """Integer in [0, n) for this (seed, sweep, site, purpose)."""
    k = int(uniform(seed, sweep, site, purpose) * n)
    return k if k < n else n - 1


@njit(cache=True)
def uniform_array(seed, sweep, n_sites, purpose):
    """Draws for sites 0..n_sites-1 in one array (used by tests and statistics checks)."""
    out = np.empty(n_sites, dtype=np.float64)
    for site in range(n_sites):
        out[site] = uniform(seed, sweep, site, purpose)
    return out
