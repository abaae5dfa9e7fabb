"""The one place cartsim starts processes: where runs execute, for studies and sweeps alike.

Every backend has the same shape: a context manager with ``map_unordered(fn, items)`` that
yields ``fn(item)`` for each item as it completes. Callers store each result as it arrives
(``simulation.execution.runner``: a run's files; ``simulation.study.sweep``: a Parquet file), so no
backend holds more than the results in flight, and an interruption loses only unfinished runs.

* ``SerialBackend``: in this process (one worker). Also the default for a small study: starting
  worker processes costs more than it saves below ``POOL_MIN_WORK_S`` of estimated work.
* ``LocalBackend``: ``ProcessPoolExecutor`` with the *spawn* start method (a process that has
  run a parallel numba kernel holds a thread pool that must not be forked). The kernels the
  runs call are compiled once in the parent first (``warm_up``: those of plain CARs, those of
  receptor logic, or both), so the spawned workers load them from
  numba's on-disk cache instead of each compiling them; each worker's kernels get an equal
  share of the cores (results do not depend on it). Workers leave Ctrl-C to the parent, which
  stops them, and exit when the parent is killed. Workers do not import the user's script
  (``__main__``): they run only cartsim's functions, so a script without an
  ``if __name__ == "__main__":`` guard works, and its top-level code does not run again in
  every worker.
* ``DaskBackend``: a ``distributed.Client`` (given, or connected to ``--scheduler tcp://...``).
  Results come back to the client, which writes them: workers need no shared file system.
  Each run's kernels take its host's cores divided among the runs the host's workers run at
  once (``kernel_thread_shares``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from ..config import ScenarioConfig
from ..model import CarTModel, kernel_threads_at_most
from .extras import require
from .progress import set_sink

#: seconds between a worker's checks that its parent is still alive
PARENT_WATCH_S = 0.5

OnError = Callable[[Any, BaseException], Any]

#: lattice site-updates (sites x steps) per second of one process, fields included: the shipped
#: glioblastoma (200 x 200, four fields) ran 2 x 10 days at 0.8-1.4e7 on a 2-core machine (the
#: kernels alone: 3e7); the slowest scenario sets it, so the estimate errs towards the pool
SITE_UPDATES_PER_S = 1e7
#: below this many seconds of estimated work (serial) a study runs in this process: two spawned
#: workers take ~3.5 s to start, import cartsim and load the kernels (measured on 2 cores; four
#: 50x50, 3-day runs took 3.4 s in a pool and 0.3 s in this process)
POOL_MIN_WORK_S = 10.0


#: the warm-up scenarios' four cancer cells, without their antigens
TINY_TUMOR = {"layout": "compact", "initial_cells": 4, "cycle_time_h": 24.0}
#: a tiny scenario that calls every kernel a model calls: plain CARs (``receptor_logic`` None)
WARM_UP = {
    "name": "warm_up", "tumor_type": "solid",
    "lattice": {"width": 9, "height": 9}, "time": {"duration_days": 0.01},
    "tumor": {**TINY_TUMOR, "antigen": {"mean_molecules_per_cell": 1000.0}},
    "tissue": {"vessel_density": 0.1},
    "microenvironment": {name: {"enabled": True} for name in
                         ("oxygen", "chemokine", "suppression", "cytokine")},
    "dosing": {"route": "intravenous", "doses": [{"day": 0, "cells": 2}]},
}
#: what makes it a scenario with receptor logic (``receptor_logic`` True): two antigens, an
#: OR CAR
RECEPTOR_LOGIC = {
    "tumor": {**TINY_TUMOR, "antigens": {"A": {"mean_molecules_per_cell": 1000.0},
                                         "B": {"mean_molecules_per_cell": 1000.0}}},
    "car_t": {"receptors": [{"antigen": "A"}, {"antigen": "B"}]},
}


def warm_up(logics: Iterable[bool | None] = (None,)) -> None:
    """Load (or compile and cache) the kernels once, before worker processes start: those of
    plain CARs and, if ``logics`` holds True, those of receptor logic
    (``biology.scenario.receptor_logic``: the kernels the runs will call)."""
    for logic in sorted(set(logics), key=lambda value: value is not None):
        tiny = {**WARM_UP, **(RECEPTOR_LOGIC if logic else {})}
        CarTModel(ScenarioConfig.model_validate(tiny), seed=0).run()


class SerialBackend:
    """Runs each item in this process, in order."""

    name = "serial"
    workers = 1

    def __enter__(self) -> SerialBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any],
                      on_error: OnError | None = None) -> Iterator[Any]:
        for item in items:
            yield fn(item)


def _worker_init(parent: int, reports: Any = None) -> None:
    """Workers leave Ctrl-C to the parent, which stops them (no traceback from every worker),
    exit when the parent is gone (kill -9): nothing would collect their results, and report
    their runs' progress into the parent's queue ``reports`` (``progress``), if given."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if reports is not None:
        set_sink(reports.put)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_WATCH_S)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="cartsim-parent-watch").start()


class LocalBackend:
    """A spawn-context process pool of ``workers`` processes on this machine."""

    name = "local"

    def __init__(self, workers: int, reports: Callable[[], Any] | None = None,
                 logics: Iterable[bool | None] = (None,)) -> None:
        self.workers = workers
        self._reports = reports  # gives the queue workers report progress into
        self._logics = tuple(logics)  # the kernels the items will run (``warm_up``)
        self._pool: ProcessPoolExecutor | None = None
        self._saved: str | None = None

    def __enter__(self) -> LocalBackend:
        warm_up(self._logics)
        # workers start as items are submitted, so the variable stays set until __exit__
        cores = os.cpu_count() or 1
        self._saved = os.environ.get("NUMBA_NUM_THREADS")
        os.environ["NUMBA_NUM_THREADS"] = str(max(1, cores // self.workers))
        reports = self._reports() if self._reports else None
        self._pool = ProcessPoolExecutor(max_workers=self.workers, initializer=_worker_init,
                                         initargs=(os.getpid(), reports),
                                         mp_context=multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        assert self._pool is not None
        if exc_type is None:
            self._pool.shutdown(wait=True)
        else:  # Ctrl-C or an error: drop queued items and stop the workers now
            _stop(self._pool)
        if self._saved is None:
            os.environ.pop("NUMBA_NUM_THREADS", None)
        else:
            os.environ["NUMBA_NUM_THREADS"] = self._saved

    @contextlib.contextmanager
    def executor(self) -> Iterator[ProcessPoolExecutor]:
        """The pool as a ``concurrent.futures`` executor, for a library that submits to one
        itself (pyABC's ``ConcurrentFutureSampler``, ``simulation.study.fit``); the user's
        script stays out of the workers it starts meanwhile."""
        assert self._pool is not None
        with _main_script_hidden():
            yield self._pool

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any],
                      on_error: OnError | None = None) -> Iterator[Any]:
        assert self._pool is not None
        with _main_script_hidden():  # the pool starts its workers as items are submitted
            futures = {self._pool.submit(fn, item): item for item in items}
        remaining = set(futures)
        while remaining:
            done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for future in done:
                yield _result(future, futures[future], on_error)


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Start spawned processes without importing the user's script in them.

    A spawned process runs the parent's ``__main__`` file again (as ``__mp_main__``) so that
    functions defined there can be unpickled; a script without an ``if __name__ ==
    "__main__":`` guard then fails with "An attempt has been made to start a new process
    before the current process has finished its bootstrapping phase". Workers here run only
    cartsim's own functions, so ``multiprocessing.spawn`` is left without the script's path
    while they start.
    """
    main = sys.modules["__main__"]
    path = getattr(main, "__file__", None)
    if path is None or getattr(main.__spec__, "name", None) is not None:  # REPL, notebook, -m
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and stop the workers now (their files are atomic)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # gone after shutdown
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(timeout=5)


class DaskBackend:
    """Runs items as Dask futures on a ``distributed`` cluster."""

    name = "dask"

    def __init__(self, client: Any = None, scheduler: str | None = None,
                 logics: Iterable[bool | None] = (None,)) -> None:
        self._given = client
        self._scheduler = scheduler
        self.client = client
        self._logics = tuple(logics)  # the kernels the items will run (``warm_up``)
        self._threads: dict[str, int] = {}  # kernel threads per run, by worker address

    def __enter__(self) -> DaskBackend:
        if self.client is None:
            require("cluster", "--scheduler (a Dask cluster)")
            # lazy: dask.distributed is heavy, optional, and only a cluster run needs it
            from distributed import Client

            self.client = Client(self._scheduler)
        # compile / load the kernels on every worker up front
        self.client.run(warm_up, self._logics)
        self._threads = kernel_thread_shares(self.client)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._given is None and self.client is not None:
            self.client.close()

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info().get("workers", {}))

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any],
                      on_error: OnError | None = None) -> Iterator[Any]:
        # lazy: see __enter__
        from distributed import as_completed as dask_completed

        futures = {self.client.submit(_sharing_cores, fn, item, self._threads, pure=False): item
                   for item in items}
        try:
            for future in dask_completed(list(futures)):
                yield _result(future, futures[future], on_error)
                future.release()
        finally:
            self.client.cancel([f for f in futures if not f.done()])


def kernel_thread_shares(client: Any) -> dict[str, int]:
    """Kernel threads per run on each worker of ``client`` (address -> threads): its host's
    cores divided among the runs the host's workers run at once (their task threads), so
    that runs side by side do not oversubscribe the cores."""
    workers = client.scheduler_info().get("workers", {})
    cores = client.run(os.cpu_count)
    at_once: dict[str, int] = {}
    for info in workers.values():
        at_once[info["host"]] = at_once.get(info["host"], 0) + info["nthreads"]
    return {address: max(1, (cores.get(address) or 1) // at_once[info["host"]])
            for address, info in workers.items()}


def _sharing_cores(fn: Callable[[Any], Any], item: Any, threads: dict[str, int]) -> Any:
    """``fn(item)`` on a Dask worker, its models taking at most the worker's share of the
    cores (``kernel_thread_shares``; one thread on a worker that joined later)."""
    from distributed import get_worker  # lazy: see DaskBackend.__enter__

    with kernel_threads_at_most(threads.get(get_worker().address, 1)):
        return fn(item)


def _result(future: Any, item: Any, on_error: OnError | None) -> Any:
    """``future.result()``; if the task itself died (worker crashed, KilledWorker), the value of
    ``on_error(item, exception)`` instead, when given."""
    try:
        return future.result()
    except Exception as err:  # noqa: BLE001 - a lost worker fails its run, not the sweep
        if on_error is None:
            raise
        return on_error(item, err)


def make_backend(workers: int | None = None, scheduler: str | None = None, client: Any = None,
                 n_runs: int | None = None, site_updates: float | None = None,
                 reports: Callable[[], Any] | None = None,
                 logics: Iterable[bool | None] = (None,)):
    """The backend for these options: Dask if a client or scheduler is given, else ``workers``
    local processes (default: one per core, at most one per run, and this process alone when
    the runs' ``site_updates`` (lattice sites x steps, summed) are under ``POOL_MIN_WORK_S`` of
    work; one worker means this process). Local workers report their runs' progress into the
    queue ``reports()`` gives (``progress.StudyProgress.worker_queue``). ``logics``: the
    kernels the runs call (``biology.scenario.receptor_logic``), compiled once up front."""
    if client is not None or scheduler is not None:
        return DaskBackend(client=client, scheduler=scheduler, logics=logics)
    if workers is None and site_updates is not None \
            and site_updates / SITE_UPDATES_PER_S < POOL_MIN_WORK_S:
        return SerialBackend()
    cores = os.cpu_count() or 1
    workers = max(1, min(workers or cores, n_runs or cores))
    return SerialBackend() if workers == 1 else LocalBackend(workers, reports, logics)
