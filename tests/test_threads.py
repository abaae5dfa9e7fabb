"""Bit-identical results for any number of kernel threads (row classes run in parallel)."""

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


def test_default_thread_count_grows_with_lattice_size():
    from simulation.model import SITES_PER_THREAD, default_threads

    assert default_threads(10_000) == 1
    assert default_threads(2 * SITES_PER_THREAD) == min(2, numba.config.NUMBA_NUM_THREADS)
