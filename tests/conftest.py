"""Shared helpers and fixtures for the ``simulation`` test suite.

Helpers are plain functions (import them with ``from conftest import ...``; pytest puts this
directory on ``sys.path``) so that hypothesis tests can use them without function-scoped fixtures.
"""

from __future__ import annotations

import atexit
import copy
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Keep numba's on-disk cache and Python byte code out of the package directory (the tests must
# not write under simulation/). One fresh cache folder per test session: kernels called from
# the tests with varying argument types get several specialisations, and a cache filled by
# sessions that compiled them in different orders (pytest-randomly shuffles the tests) can
# mix native symbol names and crash the interpreter (numba issue #10128; seen here twice).
# Subprocesses of the session (CLI tests) inherit the folder through the environment. Each
# pytest-xdist worker is a session of its own: it replaces the folder it inherited from the
# controller (marked by CARTSIM_TESTS_NUMBA_CACHE), while a NUMBA_CACHE_DIR the user set is kept.
if os.environ.get("NUMBA_CACHE_DIR") in (None, os.environ.get("CARTSIM_TESTS_NUMBA_CACHE")):
    _numba_cache = tempfile.mkdtemp(prefix="cartsim-tests-numba-")
    os.environ["NUMBA_CACHE_DIR"] = os.environ["CARTSIM_TESTS_NUMBA_CACHE"] = _numba_cache
    atexit.register(shutil.rmtree, _numba_cache, ignore_errors=True)
# pytest-xdist runs its workers side by side: each model would take every core by default
# (model.default_threads), and OpenMP threads waiting for a core made the suite ~2x slower on 2
# cores. Each worker's models (and the CLI processes it starts) get its share unless a test
# asks for threads itself (test_threads.py does).
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    os.environ.setdefault("CARTSIM_THREADS", str(max(
        1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))
# hypothesis' example database and constants cache, likewise outside the work tree
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", "/tmp/cartsim-tests-hypothesis")
sys.dont_write_bytecode = True

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from simulation.config import ScenarioConfig  # noqa: E402
from simulation.engine.constants import (  # noqa: E402
    CANCER,
    CAR_T,
    CENSUS_NAMES,
    EFFECTOR,
    EXHAUSTED,
    MEMORY,
    NECROTIC,
    N_CELL_TYPES,
    N_CENSUS,
    N_EVENTS,
    NORMAL,
)
from simulation.engine import kernel  # noqa: E402
from simulation.engine.lattice import Lattice  # noqa: E402
from simulation.biology.scenario import Motility, kernel_parameters, motility  # noqa: E402

# hypothesis must not write an example database into the work tree; CI (.ci/run sets
# CARTSIM_TESTS_DERANDOMIZE=1) draws the same examples on every run, so a red CI is
# reproducible and a rare example found by chance cannot block a landing; a local run keeps
# exploring new examples
settings.register_profile("cartsim", database=None, deadline=None,
                          derandomize=os.environ.get("CARTSIM_TESTS_DERANDOMIZE") == "1")
settings.load_profile("cartsim")

CONFIG_DIR = REPO_ROOT / "configs"
SPACING_UM = 15.0

# A valid scenario mapping small enough to run in well under a second.
TINY_SCENARIO = {
    "name": "tiny",
    "description": "test scenario",
    "tumor_type": "blood",
    "seed": 0,
    "replicates": 1,
    "lattice": {"width": 20, "height": 20, "spacing_um": SPACING_UM, "neighbourhood": "moore"},
    "time": {"dt_min": 6.0, "duration_days": 2.0, "record_every_h": 6.0,
             "stop_when_cleared": False},
    "tumor": {
        "layout": "dispersed",
        "initial_cells": 40,
        "cycle_time_h": 24.0,
        "death_rate_per_day": 0.05,
        "speed_um_per_min": 1.0,
        "antigen": {"mean_molecules_per_cell": 5000.0, "cv": 0.5, "negative_fraction": 0.2,
                    "inheritance_cv": 0.1},
    },
    "normal": [
        {"name": "bystanders", "density": 0.1, "speed_um_per_min": 1.0},
    ],
    "car_t": {"kill_rate_per_h": 1.0},
    "dosing": {"route": "anywhere", "doses": [{"day": 0, "cells": 8}]},
}

# The smallest valid scenario: only the required keys, everything else default.
MINIMAL_SCENARIO = {
    "name": "minimal",
    "tumor_type": "solid",
    "lattice": {"width": 20, "height": 20},
    "tumor": {
        "layout": "compact",
        "initial_cells": 10,
        "cycle_time_h": 30.0,
        "antigen": {"mean_molecules_per_cell": 4000.0},
    },
    "dosing": {"route": "intratumoral", "doses": [{"day": 0, "effector_to_target": 0.5}]},
}


def minimal_scenario_dict() -> dict:
    """A fresh copy of the minimal valid scenario mapping."""
    return copy.deepcopy(MINIMAL_SCENARIO)


def minimal_config() -> ScenarioConfig:
    """The minimal valid scenario as a validated ``ScenarioConfig``."""
    return ScenarioConfig.model_validate(minimal_scenario_dict())


#: the lattice ``make_lattice`` builds: 2D, or (3) a block three sites deep whose middle layer
#: holds the (x, y) of ``site_of``, so a test written in x and y runs unchanged on a 3D
#: lattice, with neighbours above and below. Set per test by the ``lattice_dimensions`` fixture.
LATTICE = {"dimensions": 2}


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def lattice_dimensions(request) -> int:
    """Run a test on a 2D lattice and again on a 3D one (``LATTICE``)."""
    LATTICE["dimensions"] = request.param
    yield request.param
    LATTICE["dimensions"] = 2


def make_lattice(width: int, height: int, neighbourhood: str = "moore",
                 spacing_um: float = SPACING_UM, depth: int | None = None,
                 extra: bool = False) -> Lattice:
    """An empty lattice built with ``Lattice.empty``: 2D, or 3D when ``depth`` is given or
    ``LATTICE`` asks for 3D (then three layers deep); with ``extra`` records if asked."""
    if depth is None and LATTICE["dimensions"] == 3:
        depth = 3
    return Lattice.empty(width, height, spacing_um, neighbourhood, depth=depth, extra=extra)


def site_of(lattice: Lattice, x: int, y: int, z: int | None = None) -> int:
    """Flat site index of (x, y, z); z defaults to the middle layer (0 in 2D)."""
    nz, ny, nx = lattice.shape
    z = nz // 2 if z is None else z
    assert 0 <= x < nx and 0 <= y < ny and 0 <= z < nz, (x, y, z, lattice.shape)
    return x + nx * (y + ny * z)


def xy_of(lattice: Lattice, site: int) -> tuple[int, int]:
    """(x, y) coordinates of a flat site index (its layer dropped on a 3D lattice)."""
    nx, ny = lattice.shape[2], lattice.shape[1]
    return int(site % nx), int((site // nx) % ny)


def xyz_of(lattice: Lattice, site: int) -> tuple[int, int, int]:
    """(x, y, z) coordinates of a flat site index (z = 0 in 2D)."""
    nx, ny = lattice.shape[2], lattice.shape[1]
    return int(site % nx), int((site // nx) % ny), int(site // (nx * ny))


def place(lattice: Lattice, x: int, y: int, cell_type: int, antigen: float = 0.0,
          z: int | None = None, **fields) -> int:
    """Put a cell of ``cell_type`` at (x, y, z) (``site_of``), set ``antigen`` and any other
    record fields. Returns the flat site index. Field names are those of
    ``constants.CELL_DTYPE``.
    """
    site = site_of(lattice, x, y, z)
    record = lattice.cells[site:site + 1]  # a view, so writes land in the lattice
    record["cell_type"] = cell_type
    record["antigen"] = antigen
    for name, value in fields.items():
        if name not in lattice.cells.dtype.names:
            raise KeyError(f"unknown cell field {name!r}")
        record[name] = value
    return site


def sites_of_type(lattice: Lattice, cell_type: int) -> np.ndarray:
    """Flat indices of the sites holding ``cell_type``."""
    return np.flatnonzero(lattice.cells["cell_type"] == cell_type)


def neighbour_of(lattice: Lattice, site: int, k: int) -> int:
    """``kernel.neighbour_from`` for ``site`` (its position worked out): neighbour ``k``, or -1
    off the lattice."""
    return kernel.neighbour_from(site, *kernel.site_position(site, lattice.shape), k,
                                 lattice.shape, lattice.offsets)


def default_kernel_setup(lattice: Lattice | None = None,
                         config: ScenarioConfig | None = None) -> tuple[np.ndarray, Motility]:
    """(kernel parameters, Motility) of a minimal valid scenario on ``lattice``."""
    cfg = config if config is not None else minimal_config()
    if lattice is None:
        lattice = make_lattice(cfg.lattice.width, cfg.lattice.height,
                               cfg.lattice.neighbourhood, cfg.lattice.spacing_um)
    return kernel_parameters(cfg).copy(), motility(cfg, lattice)


def params_with(overrides: dict[str, float] | None = None, base: np.ndarray | None = None
                ) -> np.ndarray:
    """A copy of ``base`` (default: the minimal scenario's kernel parameters) with
    ``{field name: value}`` set (fields of ``constants.KERNEL_PARAMS_DTYPE``)."""
    params = (base if base is not None else default_kernel_setup()[0]).copy()
    for name, value in (overrides or {}).items():
        params[0][name] = value
    return params


def motility_arrays(car_t: float = 0.0, cancer: float = 0.0, normal: float = 0.0,
                    persist_car_t: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(move_p, persist_p) arrays indexed by cell type."""
    move_p = np.zeros(N_CELL_TYPES, dtype=np.float64)
    persist_p = np.zeros(N_CELL_TYPES, dtype=np.float64)
    move_p[CAR_T] = car_t
    move_p[CANCER] = cancer
    move_p[NORMAL] = normal
    persist_p[CAR_T] = persist_car_t
    return move_p, persist_p


def finish_identically(original, restored) -> None:
    """Run two models (a run and its copy restored from a checkpoint) to their end and assert
    the same cell and extra records, blood pool and census rows."""
    original.run()
    restored.run()
    assert np.array_equal(restored.lattice.cells, original.lattice.cells)
    assert np.array_equal(restored.lattice.extra, original.lattice.extra)
    assert restored.blood.state() == original.blood.state()
    pd.testing.assert_frame_equal(restored.datacollector.get_model_vars_dataframe(),
                                  original.datacollector.get_model_vars_dataframe())


def new_events() -> np.ndarray:
    """A zeroed event-counter vector."""
    return np.zeros(N_EVENTS, dtype=np.int64)


def numpy_census(cells: np.ndarray, half_max: float) -> np.ndarray:
    """The census vector (order of ``CENSUS_NAMES``) computed with plain numpy."""
    kind = cells["cell_type"]
    antigen = cells["antigen"].astype(np.float64)
    cancer = kind == CANCER
    normal = kind == NORMAL
    car_t = kind == CAR_T
    values = {
        "tumor_cells": cancer.sum(),
        "tumor_antigen_high": (cancer & (antigen >= half_max)).sum(),
        "tumor_antigen_low": (cancer & (antigen > 0) & (antigen < half_max)).sum(),
        "tumor_antigen_negative": (cancer & (antigen <= 0)).sum(),
        "normal_cells": normal.sum(),
        "normal_antigen_positive": (normal & (antigen > 0)).sum(),
        "car_t_cells": car_t.sum(),
        "car_t_effector": (car_t & (cells["car_t_state"] == EFFECTOR)).sum(),
        "car_t_exhausted": (car_t & (cells["car_t_state"] == EXHAUSTED)).sum(),
        "car_t_memory": (car_t & (cells["car_t_state"] == MEMORY)).sum(),
        "necrotic_cells": (kind == NECROTIC).sum(),
    }
    assert len(values) == N_CENSUS
    return np.array([values[name] for name in CENSUS_NAMES], dtype=np.int64)


@pytest.fixture
def tiny_scenario_dict() -> dict:
    """A valid scenario mapping: 20x20 lattice, 2 days, 40 tumour cells, one dose of 8 CAR-T."""
    return copy.deepcopy(TINY_SCENARIO)


@pytest.fixture
def config_dir() -> Path:
    """The repository's configs/ directory."""
    return CONFIG_DIR
