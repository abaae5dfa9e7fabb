"""Bit-identical results for any number of kernel threads (row classes run in parallel)."""

import os
import subprocess
import sys

import numba
import numpy as np
import pytest

from simulation import CarTModel

pytestmark = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                                reason="needs at least 2 numba threads")


@pytest.mark.parametrize("config", ["b_all_cd19", "gbm_solid"])
def test_one_and_two_threads_give_identical_lattices_and_tables(config_dir, config):
    # a lattice large enough that both threads get many rows of every row class
    overrides = dict(lattice__width=90, lattice__height=90, tumor__initial_cells=2400,
                     time__duration_days=2.0)
    models = [CarTModel(config_dir / f"{config}.yaml", seed=5, threads=n, **overrides)
              for n in (1, 2)]
    for model in models:
        model.run()
    one, two = models
    assert one.threads == 1 and two.threads == 2
    assert np.array_equal(one.lattice.cells, two.lattice.cells)
    assert np.array_equal(one.events, two.events)
    assert one.datacollector.get_model_vars_dataframe().equals(
        two.datacollector.get_model_vars_dataframe())
    # and the run did something worth comparing
    assert one.events.sum() > 100


def test_default_thread_count_grows_with_lattice_size(monkeypatch):
    from simulation.model import SITES_PER_THREAD, default_threads

    monkeypatch.delenv("CARTSIM_THREADS", raising=False)  # the suite's own cap (conftest.py)
    assert default_threads(SITES_PER_THREAD - 1) == 1
    assert default_threads(2 * SITES_PER_THREAD) == min(2, numba.config.NUMBA_NUM_THREADS)


def test_fields_are_solved_side_by_side_only_on_large_lattices():
    from simulation.model import FIELD_SITES_PER_THREAD, field_threads

    assert field_threads(200 * 200, threads=2) == 1
    assert field_threads(2 * FIELD_SITES_PER_THREAD, threads=2) == 2
    assert field_threads(2 * FIELD_SITES_PER_THREAD, threads=1) == 1  # never above the model's


def test_a_model_uses_two_kernel_threads_and_one_field_thread_on_a_small_dish(config_dir,
                                                                              monkeypatch):
    monkeypatch.delenv("CARTSIM_THREADS", raising=False)  # the suite's own cap (conftest.py)
    model = CarTModel(config_dir / "killing_assay.yaml", seed=1)
    assert model.threads == min(2, numba.config.NUMBA_NUM_THREADS)
    assert model.field_threads == 1


def test_a_thread_limit_caps_the_default_in_its_block_only(config_dir, monkeypatch):
    from simulation.model import SITES_PER_THREAD, default_threads, kernel_threads_at_most

    monkeypatch.delenv("CARTSIM_THREADS", raising=False)
    with kernel_threads_at_most(1):
        assert default_threads(100 * SITES_PER_THREAD) == 1
        assert CarTModel(config_dir / "killing_assay.yaml", seed=1).threads == 1
    assert default_threads(100 * SITES_PER_THREAD) == min(100, numba.config.NUMBA_NUM_THREADS)


def test_the_threads_variable_caps_the_default_and_nothing_else(monkeypatch):
    from simulation.model import SITES_PER_THREAD, default_threads

    monkeypatch.setenv("CARTSIM_THREADS", "1")
    assert default_threads(100 * SITES_PER_THREAD) == 1
    monkeypatch.setenv("CARTSIM_THREADS", "")  # empty: as unset
    assert default_threads(100 * SITES_PER_THREAD) == min(100, numba.config.NUMBA_NUM_THREADS)


@pytest.mark.parametrize("value", ["not a number", "0", "-2", "1.5", "²"])
def test_a_bad_threads_variable_is_a_clear_error_naming_it(value, monkeypatch):
    from simulation.config import ConfigError
    from simulation.model import SITES_PER_THREAD, default_threads

    monkeypatch.setenv("CARTSIM_THREADS", value)
    with pytest.raises(ConfigError, match="CARTSIM_THREADS.*whole number"):
        default_threads(100 * SITES_PER_THREAD)


def test_the_cli_stops_on_a_bad_threads_variable_before_writing_anything(config_dir, tmp_path):
    env = {**os.environ, "CARTSIM_THREADS": "two"}
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "simulation", "run",
                           str(config_dir / "killing_assay.yaml"), "--out", str(out)],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert "CARTSIM_THREADS" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()
