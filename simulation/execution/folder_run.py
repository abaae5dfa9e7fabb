"""A study run into a resumable output folder: the one path of ``cartsim run``, ``cartsim
resume`` and ``Result.save``.

``start`` creates the folder (``simulation.io.rundir``) and runs the study into it;
``resume`` continues an interrupted folder; both go through ``execute`` (the missing runs, in
the pool, with progress bars), which ends in ``complete``: the folder locked, its manifest
written, its runs filled in, then ``publish.finish`` (tables, figures, work files removed).
``Result.save`` fills the same folder from tables already in memory through ``complete``.
Ctrl-C or SIGTERM (``signals_as_interrupt``) leaves the folder consistent and marked
incomplete; ``interrupted`` says how to go on. ``start``, ``resume`` and ``execute`` return
the process exit code (0, 1 on a disk error, 128 + the signal when interrupted).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis.outcomes import response_counts
from ..config import ConfigError, Study, check_memory
from ..engine.jit import announce_compilation
from ..io.files import clean_temporaries, write_text
from ..io.provenance import code_fingerprint
from ..io.rundir import (MANIFEST_FILE, RunDir, create, default_output_dir, finished_manifest,
                         new_manifest, read_manifest, remove_leftovers, run_name)
from .publish import finish
from .runner import RunSpec, run_into_folder, run_specs, study_progress


def start(study: Study, config: str, overrides: list[str], out: Path | None = None,
          workers: int | None = None, checkpoint_every_h: float | None = None,
          scale: float | None = None, force: bool = False, quiet: bool = False) -> int:
    """Create the output folder ``out`` (default: ``results/<study name>[-N]``) for ``study``,
    read from ``config`` with ``overrides`` (``--set``) at ``scale``, and run every run into
    it; each running simulation is checkpointed every ``checkpoint_every_h`` simulated hours.
    An existing folder is refused unless ``force``."""
    check_parallel_memory(study, workers, config)
    out = Path(out) if out is not None else default_output_dir(study.name)
    manifest = new_manifest(study, config, overrides, datetime.now(timezone.utc),
                            checkpoint_every_h, scale)
    settings = {"checkpoint_every_h": checkpoint_every_h}
    with signals_as_interrupt() as received:
        try:
            rundir, _ = create(out, study, settings, manifest, force=force)
        except KeyboardInterrupt:  # DIR exists (and is resumable) only if the rename happened
            folder = RunDir(out)
            names = [run_name(s.name, r) for s in study.scenarios for r in range(study.replicates)]
            return interrupted(folder if folder.is_incomplete() else None, received, names,
                               settings)
        return execute(rundir, study, manifest, workers, quiet, received)


def resume(path: Path, workers: int | None = None, checkpoint_every_h: float | None = None,
           force: bool = False, quiet: bool = False) -> int:
    """Continue the interrupted output folder ``path``: finished runs are kept, checkpointed
    ones continue, the rest run. ``checkpoint_every_h`` (simulated hours; default: as at the
    start). A folder started by other code is refused unless ``force``."""
    folder = RunDir(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such folder")
    if not folder.is_incomplete():
        if (path / "summary.csv").exists() and (path / MANIFEST_FILE).exists():
            remove_leftovers(folder)  # of a run stopped while it cleaned up
            print(f"cartsim: {path} is complete; nothing to resume", file=sys.stderr)
            return 0
        raise ConfigError(f"{path}: not a folder written by cartsim run (no INCOMPLETE "
                          "marker, no results)")
    marker = folder.read_marker()
    every = checkpoint_every_h if checkpoint_every_h is not None else marker.get(
        "checkpoint_every_h")
    study = folder.load_study()
    manifest = read_manifest(folder)
    if manifest.get("code_fingerprint") != code_fingerprint() and not force:
        raise ConfigError(
            f"{path}: the simulation code changed since this study started (cartsim "
            f"{manifest.get('versions', {}).get('cartsim', '?')}, code "
            f"{manifest.get('code_fingerprint')}; now code {code_fingerprint()}); resuming "
            "would mix results of both; pass --force to resume anyway, or start over with "
            "`cartsim run ... --force`")
    check_parallel_memory(study, workers, str(path))
    manifest = {**manifest, "code_fingerprint": code_fingerprint(), "checkpoint_every_h": every,
                "resumed_utc": [*manifest.get("resumed_utc", []),
                                datetime.now(timezone.utc).isoformat(timespec="seconds")]}
    with signals_as_interrupt() as received:
        return execute(folder, study, manifest, workers, quiet, received)


def execute(rundir: RunDir, study: Study, manifest: dict[str, Any], workers: int | None,
            quiet: bool, received: list[int]) -> int:
    """Run the missing runs of ``study`` into ``rundir``, then write the results; print the
    response counts, or how to go on after an interruption or a disk error."""
    specs = run_specs(study)
    names = [spec.name for spec in specs]
    every = manifest.get("checkpoint_every_h")
    replaces = rundir.read_marker().get("replaces")  # an old folder --force moved aside
    settings = {"checkpoint_every_h": every, **({"replaces": replaces} if replaces else {})}
    started = datetime.fromisoformat(manifest["started_utc"])
    clock = time.perf_counter()

    def run_missing() -> None:
        finished, checkpointed, _ = rundir.status(names)
        if finished or checkpointed:
            print(f"cartsim: resuming {rundir.path}: {len(finished)} of {len(names)} runs "
                  f"finished, {len(checkpointed)} continue from a checkpoint", file=sys.stderr)
        announce_compilation()  # before the progress bars, not inside them
        with study_progress(study.name, specs, finished, disable=quiet) as bars:
            run_into_folder(rundir, specs, workers, every,
                            lambda spec: rundir.write_marker(names, settings), bars)

    def with_wall_time() -> dict[str, Any]:
        wall = (datetime.now(timezone.utc) - started).total_seconds()
        return finished_manifest(manifest, wall)

    try:
        _, summary = complete(rundir, specs, manifest, run_missing, with_wall_time)
    except KeyboardInterrupt:
        return interrupted(rundir, received, names, settings)
    except OSError as err:  # disk full, permissions: the folder stays resumable
        print(f"cartsim: error: {err}\ncartsim: {rundir.path} is incomplete; after fixing this, "
              f"continue with: cartsim resume {rundir.path}", file=sys.stderr)
        return 1
    except Exception:
        if rundir.is_incomplete():  # a bug or a crashed worker: the traceback follows
            print(f"cartsim: failed; {rundir.path} is incomplete (finished runs are kept); "
                  f"after fixing the problem, continue with: cartsim resume {rundir.path}",
                  file=sys.stderr)
        raise
    print(f"{len(specs)} runs in {time.perf_counter() - clock:.1f} s -> {rundir.path}")
    print(response_counts(summary).to_string())
    return 0


def complete(rundir: RunDir, specs: list[RunSpec], manifest: dict[str, Any],
             fill: Callable[[], None],
             final_manifest: Callable[[], dict[str, Any]] | None = None
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """With ``rundir`` locked: clear temporary files, write ``manifest``, ``fill`` the folder's
    ``runs/`` (run them, or store tables held in memory), then ``publish.finish`` it with
    ``final_manifest()`` (default: ``manifest``). Returns (timeseries, summary)."""
    with rundir.lock():
        clean_temporaries(rundir.path)
        write_text(rundir.path / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
        fill()
        return finish(rundir, specs, final_manifest() if final_manifest else manifest)


def interrupted(rundir: RunDir | None, received: list[int], names: list[str] | None = None,
                settings: dict | None = None) -> int:
    """Ctrl-C (or SIGTERM): the folder is consistent; say how to go on. Returns 128 + the
    signal's number."""
    code = 128 + (received[-1] if received else signal.SIGINT)
    if rundir is None:
        print("cartsim: interrupted; no output folder was written", file=sys.stderr)
        return code
    if not rundir.is_incomplete():  # stopped while removing its work files: results are there
        print(f"cartsim: interrupted; {rundir.path} is complete", file=sys.stderr)
        return code
    with contextlib.suppress(Exception):
        rundir.write_marker(names, settings)
    finished, checkpointed, _ = rundir.status(names or [])
    print(f"cartsim: interrupted; {rundir.path} is incomplete ({len(finished)} of {len(names)} "
          f"runs finished, {len(checkpointed)} checkpointed); continue with: "
          f"cartsim resume {rundir.path}", file=sys.stderr)
    return code


@contextlib.contextmanager
def signals_as_interrupt():
    """SIGTERM (e.g. a batch scheduler's time limit) stops a run the way Ctrl-C does; yields
    the list of signals received."""
    received: list[int] = []

    def handler(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield received
        return
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_parallel_memory(study: Study, workers: int | None, source: str) -> None:
    """Refuse up front (ConfigError) if the runs that would run side by side do not fit in
    memory; ``source`` names the config file (or folder) in the message."""
    n_runs = len(study.scenarios) * study.replicates
    parallel = max(1, min(workers or os.cpu_count() or 1, n_runs))
    for i, scenario in enumerate(study.scenarios):
        check_memory(scenario, study.sources[i] if i < len(study.sources) else source, parallel)
