"""Sweep backends: the local process pool and a real Dask LocalCluster give identical tables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simulation.execution.pool import kernel_thread_shares
from simulation.study import sweep

distributed = pytest.importorskip("distributed")

GRID = Path(__file__).parent / "data" / "sweeps" / "grid_small.yaml"


def test_dask_local_cluster_equals_local_process_pool(tmp_path):
    local = sweep.run_sweep(GRID, tmp_path / "local", workers=2)
    assert local.done == local.total and not local.failed
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        # two single-threaded workers on this host: each run gets half of its cores
        assert list(kernel_thread_shares(client).values()) == [max(1, os.cpu_count() // 2)] * 2
        dask = sweep.run_sweep(GRID, tmp_path / "dask", client=client)
    assert dask.done == dask.total == local.total and not dask.failed
    local_table = sweep.load_sweep_table(tmp_path / "local")
    dask_table = sweep.load_sweep_table(tmp_path / "dask")
    assert local_table.equals(dask_table)  # same rows, same order, same values
    assert list(local_table["run_id"]) == [r.run_id for r in sweep.resolve(GRID).runs]
