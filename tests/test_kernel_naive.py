"""Slow, obvious pure-Python references for small kernel helpers and the counter-based rng."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from conftest import make_lattice, neighbour_of
from simulation.engine import kernel
from simulation.engine import rng
from simulation.engine.constants import (
    CANCER,
    CAR_T,
    EMPTY,
    NORMAL,
    RNG_ANTIGEN_NOISE,
    RNG_ANTIGEN_NOISE_2,
    RNG_DEATH,
    RNG_DIVIDE,
    RNG_HEADING_PICK,
    RNG_KILL,
    RNG_MOVE,
)

# ---------------------------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------------------------
MASK64 = (1 << 64) - 1


def ref_antigen_response(antigen: float, half_max: float, hill: float) -> float:
    """Hill function a^n / (K^n + a^n), written in the overflow-free form 1 / (1 + (K/a)^n)."""
    if antigen <= 0:
        return 0.0
    return 1.0 / (1.0 + (half_max / antigen) ** hill)


def ref_neighbour_site(site: int, k: int, width: int, height: int, offsets) -> int:
    x, y = site % width, site // width
    dx, dy = int(offsets[k][0]), int(offsets[k][1])
    if 0 <= x + dx < width and 0 <= y + dy < height:
        return (y + dy) * width + (x + dx)
    return -1


def ref_count_free(site: int, kinds, width: int, height: int, offsets) -> int:
    return sum(
        1
        for k in range(len(offsets))
        if (j := ref_neighbour_site(site, k, width, height, offsets)) >= 0 and kinds[j] == EMPTY
    )


def _splitmix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def ref_uniform(seed: int, sweep: int, site: int, purpose: int) -> float:
    """rng.uniform in arbitrary-precision Python integers, reduced mod 2**64 by hand."""
    key = (seed * 0x9E3779B97F4A7C15 + sweep * 0xD1B54A32D192ED03
           + site * 0xAEF17502108EF2D9 + purpose * 0xF1357AEA2E62A9C5) & MASK64
    return (_splitmix64(_splitmix64(key)) >> 11) / 2.0**53


# ---------------------------------------------------------------------------------------------
# antigen_response
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hill", [0.5, 1.0, 2.0, 3.7, 10.0])
@pytest.mark.parametrize("half_max", [1.0, 250.0, 2000.0, 1e5])
def test_antigen_response_matches_reference(hill, half_max):
    for antigen in [0.0, -1.0, 1e-3, 1.0, 0.5 * half_max, half_max, 2 * half_max, 1e4, 1e7]:
        got = kernel.antigen_response(antigen, half_max, hill)
        assert got == pytest.approx(ref_antigen_response(antigen, half_max, hill),
                                    rel=1e-12, abs=1e-300)


def test_antigen_response_saturates_to_one_without_overflow():
    # both inputs are valid: antigen is float32 (max 3.4e38); half-max is any positive float
    assert kernel.antigen_response(1e38, 1.0, 10.0) == pytest.approx(1.0)
    assert kernel.antigen_response(1e6, 1e-30, 10.0) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# neighbour_from / count_free_neighbours
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("neighbourhood,n_neighbours", [("moore", 8), ("von_neumann", 4)])
def test_neighbour_matches_reference_everywhere(neighbourhood, n_neighbours):
    width, height = 5, 4
    lat = make_lattice(width, height, neighbourhood)
    assert lat.offsets.shape == (n_neighbours, 3)
    assert np.all(lat.offsets[:, 2] == 0)
    for site, k in itertools.product(range(lat.n_sites), range(n_neighbours)):
        assert neighbour_of(lat, site, k) == ref_neighbour_site(
            site, k, width, height, lat.offsets), (site, k)


@pytest.mark.parametrize("neighbourhood", ["moore", "von_neumann"])
def test_in_lattice_neighbour_counts_follow_closed_boundaries(neighbourhood):
    lat = make_lattice(6, 5, neighbourhood)
    n = lat.offsets.shape[0]
    counts = np.array([
        sum(neighbour_of(lat, s, k) >= 0 for k in range(n))
        for s in range(lat.n_sites)
    ]).reshape(5, 6)
    expected_corner, expected_edge = (3, 5) if neighbourhood == "moore" else (2, 3)
    assert counts[0, 0] == counts[0, -1] == counts[-1, 0] == counts[-1, -1] == expected_corner
    assert counts[0, 2] == counts[2, 0] == expected_edge
    assert np.all(counts[1:-1, 1:-1] == n)


@pytest.mark.parametrize("neighbourhood", ["moore", "von_neumann"])
@pytest.mark.parametrize("fill", [0.0, 0.3, 0.7, 1.0])
def test_count_free_neighbours_matches_reference(neighbourhood, fill):
    width, height = 7, 6
    lat = make_lattice(width, height, neighbourhood)
    gen = np.random.default_rng(int(fill * 10) + len(neighbourhood))
    occupied = gen.random(lat.n_sites) < fill
    lat.cells["cell_type"] = np.where(occupied, gen.choice([CANCER, NORMAL, CAR_T],
                                                           lat.n_sites), EMPTY)
    kinds = lat.cells["cell_type"].tolist()
    for site in range(lat.n_sites):
        assert kernel.count_free_neighbours(site, kernel.site_position(site, lat.shape), lat.cells, lat.tissue, lat.shape, lat.offsets) == (
            ref_count_free(site, kinds, width, height, lat.offsets)), site


# ---------------------------------------------------------------------------------------------
# counter-based rng
# ---------------------------------------------------------------------------------------------
def test_uniform_matches_pure_python_splitmix_reference():
    keys = [(0, 0, 0, 0), (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1),
            (2**63 - 1, 65535, 40_000, 10), (123456789, 98765, 4321, 7), (7, 2**40, 3, 2)]
    for key in keys:
        assert rng.uniform(*key) == ref_uniform(*key), key


def test_uniform_mean_of_100k_draws_is_one_half():
    draws = rng.uniform_array(2024, 17, 100_000, RNG_MOVE)
    # sd of one U(0,1) draw is 1/sqrt(12) = 0.289, so sd of the mean of 1e5 draws is
    # 0.289 / sqrt(1e5) ~ 0.0009; 0.005 is more than 5 sd.
    assert abs(draws.mean() - 0.5) < 0.005
    assert draws.min() >= 0.0 and draws.max() < 1.0


def test_uniform_histogram_is_flat():
    draws = rng.uniform_array(99, 3, 100_000, RNG_KILL)
    counts, _ = np.histogram(draws, bins=10, range=(0.0, 1.0))
    # each bin ~ Binomial(1e5, 0.1): sd = sqrt(1e5 * 0.1 * 0.9) ~ 95; 500 is > 5 sd
    assert np.all(np.abs(counts - 10_000) < 500), counts


def test_uniform_streams_of_different_purposes_are_uncorrelated():
    a = rng.uniform_array(5, 0, 100_000, RNG_DEATH)
    b = rng.uniform_array(5, 0, 100_000, RNG_DIVIDE)
    c = rng.uniform_array(6, 0, 100_000, RNG_DEATH)  # neighbouring seed
    # sd of a sample correlation of independent variables ~ 1/sqrt(n) = 0.0032; 0.02 > 6 sd
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.02
    assert abs(np.corrcoef(a, c)[0, 1]) < 0.02
    # neighbouring sites within one stream are not correlated either
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 0.02


def test_uniform_differs_across_purpose_site_sweep_and_seed():
    base = rng.uniform(11, 22, 33, 4)
    assert rng.uniform(11, 22, 33, 5) != base
    assert rng.uniform(11, 22, 34, 4) != base
    assert rng.uniform(11, 23, 33, 4) != base
    assert rng.uniform(12, 22, 33, 4) != base
    grid = [rng.uniform(1, sweep, site, purpose)
            for sweep in range(5) for site in range(40) for purpose in range(11)]
    assert len(set(grid)) == len(grid)  # 2200 draws, no repeats


def test_uniform_is_identical_for_identical_keys():
    assert rng.uniform(3, 4, 5, 6) == rng.uniform(3, 4, 5, 6)
    first = rng.uniform_array(8, 9, 1000, RNG_HEADING_PICK)
    second = rng.uniform_array(8, 9, 1000, RNG_HEADING_PICK)
    assert np.array_equal(first, second)
    assert first[10] == rng.uniform(8, 9, 10, RNG_HEADING_PICK)


def test_randint_is_uniform_over_its_range_and_in_bounds():
    n = 8
    values = np.array([rng.randint(1, 2, site, RNG_HEADING_PICK, n) for site in range(40_000)])
    assert values.min() == 0 and values.max() == n - 1
    counts = np.bincount(values, minlength=n)
    # Binomial(4e4, 1/8): sd ~ 66; 350 is > 5 sd
    assert np.all(np.abs(counts - 5000) < 350), counts


def test_standard_normal_has_zero_mean_unit_variance():
    z = np.array([kernel.standard_normal(4, 5, site, RNG_ANTIGEN_NOISE, RNG_ANTIGEN_NOISE_2)
                  for site in range(40_000)])
    # sd of the mean 1/sqrt(4e4) = 0.005; of the variance ~ sqrt(2/4e4) = 0.007
    assert abs(z.mean()) < 0.03
    assert abs(z.var() - 1.0) < 0.04
    assert np.all(np.isfinite(z))
    assert math.isclose(np.mean(np.abs(z) < 1.0), 0.6827, abs_tol=0.02)


# ---------------------------------------------------------------------------------------------
# row classes of the sweep order
# ---------------------------------------------------------------------------------------------
def test_row_classes_partition_the_lattice_into_independent_sets():
    lat = make_lattice(10, 8)
    n = kernel.n_row_classes(lat.shape)
    assert n == 3
    seen = []
    for row_class in range(n):
        cz, cy = kernel.class_origin(row_class, lat.shape)
        assert cz == 0
        rows = list(range(cy, 8, 3))
        # two rows of one class are >= 3 apart: the radius-1 neighbourhoods of their cells
        # (rows y-1..y+1) never overlap, so the rows can be processed on different threads
        for y1, y2 in itertools.combinations(rows, 2):
            assert abs(y1 - y2) >= 3
        seen.extend((x, y) for y in rows for x in range(10))
    assert sorted(seen) == sorted((x, y) for y in range(8) for x in range(10))


def test_row_classes_in_3d_cover_every_row_once():
    shape = (5, 4, 6)
    n = kernel.n_row_classes(shape)
    assert n == 9
    rows = [(z, y) for c in range(n) for z in range(kernel.class_origin(c, shape)[0], 5, 3)
            for y in range(kernel.class_origin(c, shape)[1], 4, 3)]
    assert sorted(rows) == sorted((z, y) for z in range(5) for y in range(4))


def test_class_order_is_a_random_permutation():
    firsts = set()
    for sweep in range(200):
        order = kernel.class_order(77, sweep, 9)
        assert sorted(order.tolist()) == list(range(9))
        firsts.add(int(order[0]))
    assert firsts == set(range(9))
    assert np.array_equal(kernel.class_order(77, 5, 9), kernel.class_order(77, 5, 9))
