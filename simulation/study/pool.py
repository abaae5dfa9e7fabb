"""Where sweep runs execute: this process, a local process pool, or a Dask cluster.

Every backend has the same shape: a context manager with ``map_unordered(fn, items)`` that
yields ``fn(item)`` for each item as it completes. The sweep writes each result to disk as it
arrives, so no backend holds more than the results in flight.

* ``SerialBackend``: in this process (``--workers 1``).
* ``LocalBackend``: ``ProcessPoolExecutor`` with the *spawn* start method (a process that has
  run a parallel numba kernel holds a thread pool that must not be forked). The kernels are
  compiled once in the parent first, by running a tiny model, so the spawned workers load them
  from numba's on-disk cache instead of each compiling them.
* ``DaskBackend``: a ``distributed.Client`` (given, or connected to ``--scheduler tcp://...``).
  Results come back to the client, which writes them: workers need no shared file system.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from .runner import warm_up


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


class LocalBackend:
    """A spawn-context process pool of ``workers`` processes on this machine."""

    name = "local"

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._saved: str | None = None

    def __enter__(self) -> LocalBackend:
        warm_up()
        # each worker's kernels get an equal share of the cores (results do not depend on it)
        cores = os.cpu_count() or 1
        self._saved = os.environ.get("NUMBA_NUM_THREADS")
        os.environ["NUMBA_NUM_THREADS"] = str(max(1, cores // self.workers))
        self._pool = ProcessPoolExecutor(max_workers=self.workers,
                                         mp_context=multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        assert self._pool is not None
        # on Ctrl-C or an error: drop queued runs, do not wait for them
        self._pool.shutdown(wait=exc_type is None, cancel_futures=exc_type is not None)
        if self._saved is None:
            os.environ.pop("NUMBA_NUM_THREADS", None)
        else:
            os.environ["NUMBA_NUM_THREADS"] = self._saved

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any],
                      on_error: OnError | None = None) -> Iterator[Any]:
        assert self._pool is not None
        futures = {self._pool.submit(fn, item): item for item in items}
        for future in as_completed(futures):
            yield _result(future, futures[future], on_error)


class DaskBackend:
    """Runs items as Dask futures on a ``distributed`` cluster."""

    name = "dask"

    def __init__(self, client: Any = None, scheduler: str | None = None) -> None:
        self._given = client
        self._scheduler = scheduler
        self.client = client

    def __enter__(self) -> DaskBackend:
        if self.client is None:
            from distributed import Client

            self.client = Client(self._scheduler)
        self.client.run(warm_up)  # compile / load the kernels on every worker up front
        return self

    def __exit__(self, *exc: object) -> None:
        if self._given is None and self.client is not None:
            self.client.close()

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info().get("workers", {}))

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any],
                      on_error: OnError | None = None) -> Iterator[Any]:
        from distributed import as_completed as dask_completed

        futures = {self.client.submit(fn, item, pure=False): item for item in items}
        try:
            for future in dask_completed(list(futures)):
                yield _result(future, futures[future], on_error)
                future.release()
        finally:
            self.client.cancel([f for f in futures if not f.done()])


OnError = Callable[[Any, BaseException], Any]


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
                 n_runs: int | None = None):
    """The backend for these options: Dask if a client or scheduler is given, else local."""
    if client is not None or scheduler is not None:
        return DaskBackend(client=client, scheduler=scheduler)
    cores = os.cpu_count() or 1
    workers = max(1, min(workers or cores, n_runs or cores))
    return SerialBackend() if workers == 1 else LocalBackend(workers)
