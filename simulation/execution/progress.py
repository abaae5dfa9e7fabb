"""Progress of a study in simulated days: one bar for the whole study, one per run in flight.

The process that steps a simulation calls ``report(run, day)`` (``runner`` does, every
``REPORT_EVERY_DAYS`` of simulated time); ``report`` hands it to this process's sink, set by
``StudyProgress`` in the parent and by the pool's worker initialiser in spawned workers (into a
queue that a thread forwards to the parent's). A thread in the parent drains them into the bars
(``tqdm.auto``: text on a terminal, widgets in Jupyter). Without a sink ``report`` does
nothing, so a run stepped anywhere else costs one comparison per report.
"""

from __future__ import annotations

import multiprocessing
import queue
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from tqdm.auto import tqdm

#: simulated days between two reports of a run (six hours: 4 reports per simulated day)
REPORT_EVERY_DAYS = 0.25

_sink: Callable[[tuple[str, float]], Any] | None = None


def set_sink(sink: Callable[[tuple[str, float]], Any] | None) -> None:
    """Where ``report`` sends ``(run name, simulated day)`` in this process (None: nowhere)."""
    global _sink
    _sink = sink


def report(run: str, day: float) -> None:
    """Run ``run`` has reached simulated ``day`` (days since its start)."""
    if _sink is not None:
        _sink((run, day))


class StudyProgress:
    """Bars of a study's runs, in simulated days: the study as a whole (``desc``) and each run
    while it runs. ``runs`` maps each run's name to its length in days; ``finished`` names the
    runs done before this started (a resumed folder). Use as a context manager; worker
    processes report into ``worker_queue()`` (made on first use: a study run in this process
    needs no inter-process queue)."""

    def __init__(self, runs: dict[str, float], desc: str, finished: Iterable[str] = (),
                 disable: bool = False) -> None:
        self._length = dict(runs)
        self._reached = {name: self._length[name] for name in finished}
        self._done = len(self._reached)
        self._disable = disable
        self._lock = threading.Lock()
        self._bars: dict[str, Any] = {}
        self._positions: dict[str, int] = {}  # terminal line of each run's bar, below the study's
        self._overall = tqdm(total=sum(self._length.values()),
                             initial=sum(self._reached.values()), desc=desc,
                             unit="day", disable=disable, file=sys.stderr, dynamic_ncols=True,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} "
                             "simulated days [{elapsed}<{remaining}{postfix}]")
        self._overall.set_postfix_str(self._runs_done())
        self._reports: queue.SimpleQueue = queue.SimpleQueue()  # reports made in this process
        self._workers: Any = None  # the spawn-context queue of worker processes, once asked for
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> StudyProgress:
        if not self._disable:
            set_sink(self._reports.put)
            self._start(self._reports, self._show)
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._disable:
            set_sink(None)
            if self._workers is not None:  # its last reports forwarded before the end below
                self._workers.put(None)
                self._threads[1].join(timeout=5)
                self._workers.close()
                self._workers.join_thread()
            self._reports.put(None)
            self._threads[0].join(timeout=5)
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._overall.close()

    def worker_queue(self) -> Any:
        """The queue worker processes report into (``pool``'s initialiser sets it as their
        sink), or None when the bars are disabled."""
        if self._disable:
            return None
        if self._workers is None:
            self._workers = multiprocessing.get_context("spawn").Queue()
            self._start(self._workers, self._reports.put)  # into this process's reports
        return self._workers

    def _start(self, source: Any, handle: Callable[[tuple[str, float]], Any]) -> None:
        def drain() -> None:
            while (item := source.get()) is not None:
                handle(item)

        thread = threading.Thread(target=drain, daemon=True, name="cartsim-progress")
        thread.start()
        self._threads.append(thread)

    @property
    def days_done(self) -> float:
        """Simulated days the study's runs have reached, together."""
        with self._lock:
            return sum(self._reached.values())

    def run_finished(self, run: str) -> None:
        """``run`` is done (also when it stopped before its last day, or ran elsewhere)."""
        with self._lock:
            self._advance(run, self._length[run])
            bar = self._bars.pop(run, None)
            if bar is not None:
                del self._positions[run]
                bar.close()
            self._done += 1
            self._overall.set_postfix_str(self._runs_done())

    def _show(self, item: tuple[str, float]) -> None:
        run, day = item
        with self._lock:
            if run in self._length:  # a report older than run_finished moves nothing
                self._advance(run, min(day, self._length[run]))

    def _advance(self, run: str, day: float) -> None:
        step = day - self._reached.get(run, 0.0)
        if step <= 0:
            return
        self._reached[run] = day
        self._overall.update(step)
        if day < self._length[run]:
            self._run_bar(run).update(step)

    def _run_bar(self, run: str) -> Any:
        if run not in self._bars:
            position = min(set(range(1, len(self._bars) + 2)) - set(self._positions.values()))
            self._positions[run] = position
            self._bars[run] = tqdm(total=self._length[run], desc=f"  {run}", unit="day",
                                   position=position, leave=False, disable=self._disable,
                                   file=sys.stderr, dynamic_ncols=True,
                                   bar_format="{desc}: {bar} {n:.1f}/{total:g} days")
        return self._bars[run]

    def _runs_done(self) -> str:
        return f"runs {self._done}/{len(self._length)}"
