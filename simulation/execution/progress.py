"""Progress of a study in simulated days: one bar for the whole study, one per run in flight.

The process that steps a simulation calls ``report(run, day)`` (``runner`` does, every
``REPORT_EVERY_DAYS`` of simulated time); ``report`` hands it to this process's sink, set by
``StudyProgress`` in the parent and by the pool's worker initialiser in spawned workers (into a
queue that a thread forwards to the parent's). A thread in the parent drains them into the bars
(``tqdm.auto``: text on a terminal, widgets in Jupyter). When stderr is neither a terminal nor
Jupyter (a log file, a pipe, a batch job) the study prints plain lines instead, one each
``PLAIN_STEP_PERCENT`` of its simulated days, and no bar per run. The estimate of the time left
starts at the first report of simulated time, so the one-time kernel compile (15-45 s, before
any run reports) does not count as slow progress. Without a sink ``report`` does nothing, so a
run stepped anywhere else costs one comparison per report.
"""

from __future__ import annotations

import multiprocessing
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from tqdm import std as tqdm_std
from tqdm.auto import tqdm
from tqdm.autonotebook import tqdm as tqdm_for_this_front_end

#: simulated days between two reports of a run (six hours: 4 reports per simulated day)
REPORT_EVERY_DAYS = 0.25
#: without a terminal: one line per this many percent of the study's simulated days
PLAIN_STEP_PERCENT = 10

_sink: Callable[[tuple[str, float]], Any] | None = None


def set_sink(sink: Callable[[tuple[str, float]], Any] | None) -> None:
    """Where ``report`` sends ``(run name, simulated day)`` in this process (None: nowhere)."""
    global _sink
    _sink = sink


def report(run: str, day: float) -> None:
    """Run ``run`` has reached simulated ``day`` (days since its start)."""
    if _sink is not None:
        _sink((run, day))


def draws_bars(stream: Any) -> bool:
    """Whether progress on ``stream`` can be bars: a terminal, or Jupyter's widgets
    (``tqdm.auto`` chose its notebook bar); else plain lines."""
    return tqdm_for_this_front_end is not tqdm_std.tqdm or stream.isatty()


class PlainProgress:
    """The study's progress as plain lines (for a log file or a pipe), with the calls of the
    tqdm bar that ``StudyProgress`` makes: one line each ``PLAIN_STEP_PERCENT`` % of ``total``
    simulated days and one at the end, with the wall time and the time left."""

    def __init__(self, total: float, initial: float, desc: str, file: Any) -> None:
        self.total, self.n, self._desc, self._file = total, initial, desc, file
        self._postfix = ""
        self._started = time.monotonic()
        self._clock: tuple[float, float] | None = None  # (wall time, days) of the first progress
        self._shown = self._step(initial)  # the last step printed
        self._printed: tuple[float, str] = (initial, "")  # days and postfix of the last line

    def _step(self, days: float) -> int:
        return int(100 * days / self.total // PLAIN_STEP_PERCENT) if self.total else 0

    def start_clock(self) -> None:
        """Estimate the time left from here on (the first progress: compiling is over)."""
        self._clock = (time.monotonic(), self.n)

    def update(self, days: float) -> None:
        self.n += days
        if self._step(self.n) > self._shown:
            self._shown = self._step(self.n)
            self._print()

    def set_postfix_str(self, text: str) -> None:
        self._postfix = text

    def close(self) -> None:
        """A last line, unless the last one already says where the study stopped."""
        if (self.n, self._postfix) != self._printed:
            self._print()

    def _print(self) -> None:
        self._printed = (self.n, self._postfix)
        now = time.monotonic()
        left = ""
        if self._clock is not None and self.n > self._clock[1] and self.n < self.total:
            rate = (self.n - self._clock[1]) / (now - self._clock[0])
            left = f", ~{tqdm.format_interval((self.total - self.n) / rate)} left"
        percent = 100 * self.n / self.total if self.total else 100
        print(f"{self._desc}: {percent:3.0f}% {self.n:.1f}/{self.total:.1f} simulated days, "
              f"{self._postfix} [{tqdm.format_interval(now - self._started)} elapsed{left}]",
              file=self._file, flush=True)


class StudyProgress:
    """Bars of a study's runs, in simulated days: the study as a whole (``desc``) and each run
    while it runs. ``runs`` maps each run's name to its length in days; ``finished`` names the
    runs done before this started (a resumed folder). Use as a context manager; worker
    processes report into ``worker_queue()`` (made on first use: a study run in this process
    needs no inter-process queue). ``bars``: draw bars (default: ``draws_bars(sys.stderr)``),
    else plain lines (``PlainProgress``)."""

    def __init__(self, runs: dict[str, float], desc: str, finished: Iterable[str] = (),
                 disable: bool = False, bars: bool | None = None) -> None:
        self._length = dict(runs)
        self._reached = {name: self._length[name] for name in finished}
        self._done = len(self._reached)
        self._disable = disable
        self._lock = threading.Lock()
        self._bars: dict[str, Any] = {}
        self._positions: dict[str, int] = {}  # terminal line of each run's bar, below the study's
        self._bars_drawn = draws_bars(sys.stderr) if bars is None else bars
        self._clock_started = False  # the estimate of the time left starts at the first report
        if self._bars_drawn or disable:
            # smoothing 0: the rate is the mean since the clock started (``_advance``)
            self._overall = tqdm(total=sum(self._length.values()),
                                 initial=sum(self._reached.values()), desc=desc, unit="day",
                                 disable=disable, file=sys.stderr, dynamic_ncols=True,
                                 smoothing=0, bar_format="{desc}: {percentage:3.0f}%|{bar}| "
                                 "{n:.1f}/{total:.1f} simulated days "
                                 "[{elapsed}<{remaining}{postfix}]")
        else:
            self._overall = PlainProgress(sum(self._length.values()),
                                          sum(self._reached.values()), desc, sys.stderr)
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
            self._done += 1  # counted before the study's line moves (a plain line shows it)
            self._overall.set_postfix_str(self._runs_done())
            self._advance(run, self._length[run])
            bar = self._bars.pop(run, None)
            if bar is not None:
                del self._positions[run]
                bar.close()

    def _show(self, item: tuple[str, float]) -> None:
        run, day = item
        with self._lock:
            if run in self._length:  # a report older than run_finished moves nothing
                self._advance(run, min(day, self._length[run]))

    def _advance(self, run: str, day: float) -> None:
        step = day - self._reached.get(run, 0.0)
        if step <= 0:
            return
        if not self._clock_started:
            self._start_clock()
        self._reached[run] = day
        self._overall.update(step)
        if day < self._length[run] and self._bars_drawn:
            self._run_bar(run).update(step)

    def _start_clock(self) -> None:
        """Time from here on counts towards the rate: the compile before the first progress
        (and the time the pool took to start) would make the estimate hours too long."""
        self._clock_started = True
        if isinstance(self._overall, PlainProgress):
            self._overall.start_clock()
        else:
            self._overall.start_t = self._overall.last_print_t = time.time()
            self._overall.initial = self._overall.n

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
