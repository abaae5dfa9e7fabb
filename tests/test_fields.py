"""The chemical-field solver (``simulation.engine.fields``) against analytical and direct solutions.

Solver tolerances here are far below the asserted accuracy: ``solve_field`` stops when no site
changes by more than ``tolerance`` in one iteration, which leaves an error of about
tolerance / (1 - contraction per iteration), i.e. ~10-30x the tolerance for these problems.
"""

import math

import numba
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
from scipy.special import k0

from simulation.engine.fields import DEFAULT_OVER_RELAXATION, field_total, solve_field

needs_jit = pytest.mark.skipif(numba.config.DISABLE_JIT,
                               reason="too slow in pure Python (NUMBA_DISABLE_JIT=1)")

ZERO_FLUX = -1.0  # edge_value meaning "no flux across the lattice edge"
OXYGEN_VESSEL_MMHG = 38.0


def steady_state_point_source(r_um, rate, diffusion, decay):
    """Steady field around a point source in an infinite plane with first-order decay.

    c(r) = rate / (2 pi D) K0(r / L), L = sqrt(D / decay). r_um: distance (um); rate: production
    (amount/min); diffusion: D (um^2/min); decay: 1/min. Returns amount per um^2. On the lattice
    this is the field of ``source_per_min = rate / spacing_um**2`` at one site.
    """
    return rate / (2.0 * math.pi * diffusion) * k0(np.asarray(r_um) / math.sqrt(diffusion / decay))


def steady_state_point_source_3d(r_um, rate, diffusion, decay):
    """As ``steady_state_point_source`` in infinite 3D space: rate / (4 pi D r) exp(-r / L).

    Returns amount per um^3; on the lattice, ``source_per_min = rate / spacing_um**3`` at one site.
    """
    r_um = np.asarray(r_um, dtype=np.float64)
    return rate / (4.0 * math.pi * diffusion * r_um) * np.exp(-r_um / math.sqrt(diffusion / decay))


def solve(c, shape, spacing_um=15.0, diffusion=1000.0, decay=0.0, uptake=None, source=None,
          fixed=None, fixed_value=0.0, edge_value=ZERO_FLUX, dt_min=math.inf, tolerance=1e-13,
          max_iterations=100_000, over_relaxation=DEFAULT_OVER_RELAXATION):
    """``solve_field`` with zero uptake, source and fixed sites unless given; returns iterations."""
    n_sites = c.shape[0]
    zeros = np.zeros(n_sites)
    return solve_field(c, shape, spacing_um, diffusion, decay,
                       zeros if uptake is None else uptake, zeros if source is None else source,
                       np.zeros(n_sites, np.uint8) if fixed is None else fixed, fixed_value,
                       edge_value, dt_min, tolerance, max_iterations, over_relaxation)


def direct_solution(c_old, shape, spacing_um, diffusion, decay, uptake, source, fixed, fixed_value,
                    edge_value, dt_min):
    """The naive twin of ``solve_field``: assemble the backward-Euler system and solve it directly."""
    nz, ny, nx = shape
    n_sites = nz * ny * nx
    coupling = diffusion / spacing_um ** 2
    inv_dt = 0.0 if math.isinf(dt_min) else 1.0 / dt_min
    matrix = scipy.sparse.lil_matrix((n_sites, n_sites))
    rhs = np.empty(n_sites)
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                s = x + nx * (y + ny * z)
                if fixed[s]:
                    matrix[s, s] = 1.0
                    rhs[s] = fixed_value
                    continue
                matrix[s, s] = inv_dt + decay + uptake[s]
                rhs[s] = inv_dt * c_old[s] + source[s]
                for axis_length, position, stride in ((nx, x, 1), (ny, y, nx), (nz, z, nx * ny)):
                    if axis_length == 1:
                        continue  # not a spatial dimension
                    for step in (-1, 1):
                        if 0 <= position + step < axis_length:
                            matrix[s, s] += coupling
                            matrix[s, s + step * stride] -= coupling
                        elif edge_value >= 0.0:
                            matrix[s, s] += coupling
                            rhs[s] += coupling * edge_value
    return scipy.sparse.linalg.spsolve(matrix.tocsr(), rhs)


def random_problem(shape, seed):
    """(c, uptake, source, fixed) of a random problem: c and source ~ U(0, 1), uptake ~ U(0, 2)/min,
    1 site in 10 held fixed."""
    rng = np.random.default_rng(seed)
    n_sites = shape[0] * shape[1] * shape[2]
    fixed = (rng.random(n_sites) < 0.1).astype(np.uint8)
    return rng.random(n_sites), 2.0 * rng.random(n_sites), rng.random(n_sites), fixed


# ---------------------------------------------------------------------------------------------
# the naive twin: every feature at once, on small lattices
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 9, 12), (5, 6, 7), (1, 1, 10)])
@pytest.mark.parametrize("edge_value", [ZERO_FLUX, 0.0, 2.5])
@pytest.mark.parametrize("dt_min", [6.0, math.inf])
def test_matches_direct_sparse_solve(shape, edge_value, dt_min):
    c, uptake, source, fixed = random_problem(shape, seed=sum(shape))
    expected = direct_solution(c, shape, 15.0, 1000.0, 0.05, uptake, source, fixed, 3.0,
                               edge_value, dt_min)
    iterations = solve(c, shape, 15.0, 1000.0, 0.05, uptake, source, fixed, 3.0, edge_value,
                       dt_min)
    assert iterations < 100_000
    # values are O(1); tolerance 1e-13 leaves errors ~1e-12, so 1e-9 fails only on a wrong system
    np.testing.assert_allclose(c, expected, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# 1. decay of a uniform field
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("diffusion", [0.0, 1000.0])
def test_uniform_field_decays_as_backward_euler(diffusion):
    shape, decay, dt_min, n_steps = (1, 6, 7), 0.05, 3.0, 10
    c = np.full(42, 7.0)
    for _ in range(n_steps):
        assert solve(c, shape, diffusion=diffusion, decay=decay, dt_min=dt_min,
                     tolerance=1e-13, max_iterations=10_000) < 10_000
    # exact to round-off: each step solves (c_new - c_old) / dt = -decay c_new; the Laplacian of
    # a uniform field is zero. Stopping at changes < 1e-13 on values ~5 leaves ~1e-13 relative.
    np.testing.assert_allclose(c, 7.0 / (1.0 + decay * dt_min) ** n_steps, rtol=1e-12)


def test_backward_euler_decay_converges_at_first_order():
    decay, duration_min = 0.05, 20.0  # decay * duration = 1
    errors = []
    for n_steps in (20, 40, 80):
        c = np.ones(8)
        for _ in range(n_steps):
            solve(c, (1, 1, 8), decay=decay, dt_min=duration_min / n_steps, tolerance=1e-13)
        errors.append(abs(c[0] - math.exp(-decay * duration_min)))
    # error = e^-1 (decay dt / 2)(1 + O(decay dt)) * decay T: halving dt halves it, up to an
    # O(decay dt) = O(0.05) correction to the ratio
    assert errors[0] / errors[1] == pytest.approx(2.0, abs=0.1)
    assert errors[1] / errors[2] == pytest.approx(2.0, abs=0.05)


# ---------------------------------------------------------------------------------------------
# 2. and 6. point sources against the continuum solutions
# ---------------------------------------------------------------------------------------------
@needs_jit
def test_point_source_2d_matches_k0():
    n, spacing_um, diffusion, rate = 201, 10.0, 1000.0, 1.0
    length_sites = 5  # diffusion length L = 50 um; the edge is 100 sites = 20 L away
    decay = diffusion / (length_sites * spacing_um) ** 2
    centre = n // 2
    source = np.zeros(n * n)
    source[centre + n * centre] = rate / spacing_um ** 2  # amount/min spread over one site
    c = np.zeros(n * n)
    solve(c, (1, n, n), spacing_um, diffusion, decay, source=source, edge_value=0.0,
          tolerance=1e-14)
    grid = c.reshape(n, n)
    for r_sites in range(2 * length_sites, 5 * length_sites + 1, length_sites):
        axis = grid[centre, centre + r_sites]
        diagonal_sites = round(r_sites / math.sqrt(2))
        diagonal = grid[centre + diagonal_sites, centre + diagonal_sites]
        # discretisation error (lattice Green's function, discrete decay length): measured <= 0.7%
        # between 2 and 5 diffusion lengths, on the axis and the diagonal
        assert axis == pytest.approx(steady_state_point_source(
            r_sites * spacing_um, rate, diffusion, decay), rel=0.02)
        assert diagonal == pytest.approx(steady_state_point_source(
            diagonal_sites * math.sqrt(2) * spacing_um, rate, diffusion, decay), rel=0.02)


@needs_jit
def test_point_source_3d_matches_yukawa():
    n, spacing_um, diffusion, rate = 41, 10.0, 1000.0, 1.0
    length_sites = 5  # the edge is 20 sites = 4 L away; its effect at r <= 12 sites is < 1e-3
    decay = diffusion / (length_sites * spacing_um) ** 2
    centre = n // 2
    source = np.zeros(n ** 3)
    source[centre + n * (centre + n * centre)] = rate / spacing_um ** 3
    c = np.zeros(n ** 3)
    solve(c, (n, n, n), spacing_um, diffusion, decay, source=source, edge_value=0.0,
          tolerance=1e-16)
    grid = c.reshape(n, n, n)
    # the 3D lattice Green's function deviates from 1/r by O((h/r)^2): measured 1.9% on the axis
    # at 6 sites and 1.5-1.9% on the diagonal at 5-12 sites; 4% at 4 sites, 11% at 2 sites
    for r_sites in (6, 8, 10, 12):
        assert grid[centre, centre, centre + r_sites] == pytest.approx(
            steady_state_point_source_3d(r_sites * spacing_um, rate, diffusion, decay), rel=0.03)
        d = round(r_sites / math.sqrt(3))
        assert grid[centre + d, centre + d, centre + d] == pytest.approx(
            steady_state_point_source_3d(d * math.sqrt(3) * spacing_um, rate, diffusion, decay),
            rel=0.03)


# ---------------------------------------------------------------------------------------------
# 3. mass balance
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 30, 40), (6, 7, 8)])
@pytest.mark.parametrize("diffusion", [1e3, 1e5])
def test_one_step_mass_balance(shape, diffusion):
    spacing_um, decay, dt_min = 15.0, 0.02, 6.0
    c, uptake, source, _ = random_problem(shape, seed=3)
    c_old = c.copy()
    # a loose tolerance: the balance must hold whatever the convergence of the local errors
    solve(c, shape, spacing_um, diffusion, decay, uptake, source, dt_min=dt_min, tolerance=1e-4)
    site_measure = spacing_um ** 2 if shape[0] == 1 else spacing_um ** 3
    produced = dt_min * np.sum(source - (decay + uptake) * c) * site_measure
    change = field_total(c, spacing_um, shape[0]) - field_total(c_old, spacing_um, shape[0])
    # zero-flux edges: diffusion only moves substance around, and the final uniform correction
    # makes the residuals sum to zero, so the balance holds to round-off (terms ~D/h^2 * c ~ 500,
    # summed over ~1000 sites: ~1e-11 relative to the change); without the correction the error
    # is ~1e-2 relative at D = 1e5 and tolerance 1e-4
    assert change == pytest.approx(produced, rel=1e-9)
    assert abs(change) > 1e-3 * abs(field_total(c_old, spacing_um, shape[0]))


@pytest.mark.parametrize("diffusion", [1e3, 1e5])
def test_pure_diffusion_conserves_total(diffusion):
    shape = (1, 30, 40)
    c = np.random.default_rng(4).random(1200)
    total = field_total(c, 15.0, 1)
    for _ in range(50):
        solve(c, shape, diffusion=diffusion, dt_min=6.0, tolerance=1e-6)
    # round-off only (~1e-13 per step, see the test above), over 50 steps; SOR alone at this
    # tolerance loses ~1e-4 of the total per step at D = 1e5
    assert field_total(c, 15.0, 1) == pytest.approx(total, rel=1e-10)
    assert np.ptp(c) < 0.5  # it did diffuse: the initial spread was ~1


def test_field_total_uses_site_area_in_2d_and_volume_in_3d():
    c = np.full(24, 2.0)
    assert field_total(c, 10.0, 1) == 24 * 2.0 * 100.0
    assert field_total(c, 10.0, 2) == 24 * 2.0 * 1000.0


# ---------------------------------------------------------------------------------------------
# 4. Dirichlet sites and edges
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dt_min", [6.0, math.inf])
def test_fixed_sites_hold_their_value_exactly(dt_min):
    shape = (1, 20, 25)
    c, uptake, source, fixed = random_problem(shape, seed=5)
    solve(c, shape, 15.0, 1e5, 0.1, 10.0 * uptake, source, fixed, OXYGEN_VESSEL_MMHG,
          edge_value=ZERO_FLUX, dt_min=dt_min)
    assert fixed.sum() > 10
    assert np.all(c[fixed == 1] == OXYGEN_VESSEL_MMHG)
    assert np.all(c[fixed == 0] < OXYGEN_VESSEL_MMHG)  # consumed away from the vessels


def test_without_sinks_the_steady_state_is_the_fixed_value():
    shape = (1, 20, 25)
    c, _, _, fixed = random_problem(shape, seed=6)
    solve(c, shape, fixed=fixed, fixed_value=OXYGEN_VESSEL_MMHG, tolerance=1e-12)
    # zero-flux edges, no decay: 38 everywhere is the only solution; error ~1e-11 mmHg
    np.testing.assert_allclose(c, OXYGEN_VESSEL_MMHG, rtol=1e-10)


@pytest.mark.parametrize("shape", [(1, 20, 25), (5, 6, 7)])
def test_without_sinks_the_steady_state_is_the_edge_value(shape):
    c = np.random.default_rng(7).random(shape[0] * shape[1] * shape[2])
    solve(c, shape, edge_value=2.5, tolerance=1e-12)
    np.testing.assert_allclose(c, 2.5, rtol=1e-10)  # error ~1e-11 on values 2.5


# ---------------------------------------------------------------------------------------------
# 5. one-dimensional steady profiles with uniform uptake
# ---------------------------------------------------------------------------------------------
def discrete_decay_rate_per_site(uptake_per_min, diffusion, spacing_um):
    """mu with cosh(mu) = 1 + uptake h^2 / (2 D): c_i = cosh(mu i) solves the discrete equation."""
    return math.acosh(1.0 + uptake_per_min * spacing_um ** 2 / (2.0 * diffusion))


def test_steady_profile_between_held_edges():
    nx, spacing_um, diffusion, length_sites = 61, 15.0, 1e5, 6
    uptake_per_min = diffusion / (length_sites * spacing_um) ** 2
    c = np.zeros(nx)
    solve(c, (1, 1, nx), spacing_um, diffusion, uptake=np.full(nx, uptake_per_min),
          edge_value=OXYGEN_VESSEL_MMHG, tolerance=1e-12)
    middle = (nx - 1) / 2  # the held ghost sites sit at x = -1 and x = nx: middle + 1 away
    x = np.arange(nx) - middle
    mu = discrete_decay_rate_per_site(uptake_per_min, diffusion, spacing_um)
    # the discrete problem's exact solution; values down to ~0.26 mmHg, errors ~1e-11 mmHg
    np.testing.assert_allclose(c, OXYGEN_VESSEL_MMHG * np.cosh(mu * x) / np.cosh(mu * (middle + 1)),
                               rtol=1e-9)
    # the continuum solution: the discrete decay length is short by 1/(24 L^2) relative, which
    # over 31 sites from the edge to the middle is 31 / (24 * 6^3) = 0.6%
    continuum = np.cosh(x / length_sites) / np.cosh((middle + 1) / length_sites)
    np.testing.assert_allclose(c, OXYGEN_VESSEL_MMHG * continuum, rtol=0.02)


def test_steady_profile_from_a_held_column_into_a_closed_strip():
    ny, nx, spacing_um, diffusion, length_sites = 5, 40, 15.0, 1e5, 8
    uptake_per_min = diffusion / (length_sites * spacing_um) ** 2
    fixed = np.zeros((ny, nx), np.uint8)
    fixed[:, 0] = 1  # a vessel along x = 0
    c = np.zeros(ny * nx)
    solve(c, (1, ny, nx), spacing_um, diffusion, uptake=np.full(ny * nx, uptake_per_min),
          fixed=fixed.ravel(), fixed_value=OXYGEN_VESSEL_MMHG, edge_value=ZERO_FLUX,
          tolerance=1e-12)
    wall = nx - 0.5  # zero flux through the face half a spacing beyond the last site
    x = np.arange(nx)
    mu = discrete_decay_rate_per_site(uptake_per_min, diffusion, spacing_um)
    profile = c.reshape(ny, nx)
    expected = OXYGEN_VESSEL_MMHG * np.cosh(mu * (wall - x)) / np.cosh(mu * wall)
    for row in profile:
        np.testing.assert_allclose(row, expected, rtol=1e-9)  # exact discrete, values >= 0.8
    continuum = np.cosh((wall - x) / length_sites) / np.cosh(wall / length_sites)
    # discrete decay length short by 1/(24 * 8^2): 40 / (24 * 8^3) = 0.3% at the far wall
    np.testing.assert_allclose(profile[0], OXYGEN_VESSEL_MMHG * continuum, rtol=0.02)


# ---------------------------------------------------------------------------------------------
# 7. thread-count independence
# ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 numba threads")
@pytest.mark.parametrize("shape", [(1, 64, 70), (12, 13, 14)])
@pytest.mark.parametrize("max_iterations", [7, 100_000])
def test_one_and_two_threads_give_identical_fields(shape, max_iterations):
    c_start, uptake, source, fixed = random_problem(shape, seed=8)
    results = []
    threads_before = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            c = c_start.copy()
            iterations = solve(c, shape, 15.0, 1e4, 0.1, uptake, source, fixed, 3.0,
                               edge_value=1.0, tolerance=1e-12, max_iterations=max_iterations)
            results.append((iterations, c))
    finally:
        numba.set_num_threads(threads_before)
    (iterations_1, c_1), (iterations_2, c_2) = results
    assert iterations_1 == iterations_2
    assert np.array_equal(c_1, c_2)
    assert not np.array_equal(c_1, c_start)


# ---------------------------------------------------------------------------------------------
# 8. stability at extreme steps
# ---------------------------------------------------------------------------------------------
def test_huge_step_and_diffusion_mix_a_closed_dish():
    shape = (1, 40, 40)
    c = OXYGEN_VESSEL_MMHG * np.random.default_rng(9).random(1600)
    mean = c.mean()
    iterations = solve(c, shape, 15.0, diffusion=1e5, dt_min=1e6, tolerance=1e-9)
    assert iterations < 100_000
    assert np.all(np.isfinite(c))
    # backward Euler damps the slowest non-uniform mode (D/h^2 (pi/40)^2 = 2.7/min) by
    # 1 / (1 + 2.7e6): the rest of the initial spread of ~38 mmHg is < 1e-5 mmHg. The mean mode
    # has condition number ~ dt D/h^2 ~ 4e8, so round-off moves the mean by ~1e-7 relative.
    np.testing.assert_allclose(c, mean, rtol=1e-6)


def test_huge_step_equals_the_steady_state():
    shape = (1, 40, 40)
    c, uptake, source, fixed = random_problem(shape, seed=10)
    steady = c.copy()
    solve(steady, shape, 15.0, 1e5, 0.1, 10.0 * uptake, source, fixed, OXYGEN_VESSEL_MMHG,
          edge_value=0.0)
    solve(c, shape, 15.0, 1e5, 0.1, 10.0 * uptake, source, fixed, OXYGEN_VESSEL_MMHG,
          edge_value=0.0, dt_min=1e6)
    assert np.all(np.isfinite(c))
    # 1/dt = 1e-6/min against losses >= 0.1/min: differs from the steady state by < 1e-5 relative
    np.testing.assert_allclose(c, steady, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [dict(dt_min=0.0), dict(dt_min=-1.0), dict(over_relaxation=2.0),
                                 dict(decay=-0.1), dict(uptake=-np.ones(12)),
                                 dict(source=np.zeros(11))])
def test_bad_arguments_raise(bad):
    with pytest.raises(ValueError):
        solve(np.zeros(12), (1, 3, 4), **bad)
