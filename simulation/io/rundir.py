"""Resumable output folders: ``cartsim run`` writes into DIR as it goes, ``cartsim resume`` ends it.

Layout while a study runs (every file is written to a temporary name and renamed into place,
so a crash, Ctrl-C or ``kill -9`` never leaves a truncated file)::

    DIR/INCOMPLETE                      JSON: which runs are missing, how to resume
    DIR/config.resolved.yaml            the study as it runs (what ``resume`` reads)
    DIR/manifest.json                   seeds, versions, command; rewritten at the end
    DIR/runs/<scenario>_r<k>.csv        a finished run's census rows ...
    DIR/runs/<scenario>_r<k>.json       ... and its summary row (written last: the run is done)
    DIR/runs/<scenario>_r0.final.npz    3D scenarios: the final lattice of replicate 0
    DIR/checkpoints/<scenario>_r<k>.npz latest checkpoint of a running run (--checkpoint-every)
    DIR/.lock                           held by the process writing DIR

When every run is done, ``timeseries.csv``, ``summary.csv``, ``burden.png`` (plus
``blood_kinetics.png``, for a killing assay ``assay.*``, for a 3D scenario
``<scenario>_final.{npz,vti}`` and ``<scenario>_final_{slices,projection}.png``) are assembled
from ``runs/`` in scenario/replicate order, ``manifest.json`` is rewritten, and the marker,
``runs/`` and ``checkpoints/`` are removed: a complete DIR holds exactly the output contract.
Tables always come from the per-run files, so a resumed study gives the same bytes as one that
ran straight through (runs are deterministic, and a checkpoint restores a run bit for bit).

A checkpoint is an ``.npz`` file (no pickle: loading one cannot run code) holding the lattice
records, the event counters and a JSON document with the rest of ``CarTModel.checkpoint_state``.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ..config import ConfigError, ScenarioConfig, Study, validate
from ..engine.constants import CENSUS_NAMES
from .provenance import OutputExistsError, code_fingerprint, resolved_config, versions
from ..engine.units import MIN_PER_H

MARKER = "INCOMPLETE"
CONFIG_FILE = "config.resolved.yaml"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".lock"
RESULT_FILES = ("timeseries.csv", "summary.csv", "burden.png")
#: column dtypes of a run's census rows (``runs/*.csv`` are read back exactly; time_days is
#: parsed by ``float``)
SERIES_DTYPES = {"scenario": str, "tumor_type": str, "replicate": np.int64, "seed": np.int64,
                 **{name: np.int64 for name in CENSUS_NAMES},
                 "cumulative_cancer_killed": np.int64, "cumulative_normal_killed": np.int64,
                 "cumulative_car_t_infused": np.int64, "car_t_blood": np.int64}
#: float columns, parsed with Python's float() so the repr to_csv wrote reads back exactly
SERIES_FLOATS = ("time_days", "car_t_blood_per_ul", "crs_index", "car_t_infiltration_depth_um",
                 "car_t_in_tumor_fraction", "tumor_hypoxic_fraction")


class FolderBusyError(ConfigError):
    """Another cartsim process is writing the folder."""


# ---------------------------------------------------------------------------------------------
# atomic files
# ---------------------------------------------------------------------------------------------
def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp)`` for a temporary file next to ``path``, flush it, rename it to ``path``.

    The temporary name keeps the suffix (``.x.tmp.png``) so writers that pick a format by
    suffix still work; leftovers of an interrupted write are removed by ``clean_temporaries``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        write(tmp)
        with open(tmp, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def clean_temporaries(folder: Path) -> None:
    """Remove temporary files an interrupted ``atomic_write`` may have left in ``folder``."""
    for sub in (folder, folder / "runs", folder / "checkpoints"):
        if sub.is_dir():
            for leftover in sub.glob(".*.tmp*"):
                with contextlib.suppress(OSError):
                    leftover.unlink()


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------
#: checkpoint entries stored as arrays in the .npz (the rest goes to its JSON ``meta``)
CHECKPOINT_ARRAYS = ("cells", "events", "fields")


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``CarTModel.checkpoint_state()`` to ``path`` (.npz, atomically)."""
    meta = {k: v for k, v in state.items() if k not in CHECKPOINT_ARRAYS}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as stream:
            np.savez(stream, **{name: state[name] for name in CHECKPOINT_ARRAYS},
                     meta=np.array(json.dumps(meta)))

    atomic_write(path, write)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The state saved by ``save_checkpoint`` (ValueError if the file is not one)."""
    try:
        with open(path, "rb") as stream, np.load(stream, allow_pickle=False) as data:
            state = json.loads(str(data["meta"][()]))
            for name in CHECKPOINT_ARRAYS:
                state[name] = data[name].copy()
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable checkpoint ({err})") from None
    return state


# ---------------------------------------------------------------------------------------------
# the folder
# ---------------------------------------------------------------------------------------------
def run_name(scenario: str, replicate: int) -> str:
    """File stem of one run: ``<scenario>_r<replicate>``."""
    return f"{scenario}_r{replicate}"


@dataclass
class RunDir:
    """An output folder of ``cartsim run`` (see the module docstring for its layout)."""

    path: Path

    @property
    def marker(self) -> Path:
        return self.path / MARKER

    def run_files(self, name: str) -> tuple[Path, Path]:
        """(census rows .csv, summary row .json) of run ``name``."""
        return self.path / "runs" / f"{name}.csv", self.path / "runs" / f"{name}.json"

    def final_snapshot(self, name: str) -> Path:
        """The lattice at the end of run ``name`` (3D runs of replicate 0 only)."""
        return self.path / "runs" / f"{name}.final.npz"

    def checkpoint(self, name: str) -> Path:
        return self.path / "checkpoints" / f"{name}.npz"

    def is_finished(self, name: str) -> bool:
        return self.run_files(name)[1].exists()

    def is_incomplete(self) -> bool:
        return self.marker.exists()

    def read_marker(self) -> dict[str, Any]:
        try:
            return json.loads(self.marker.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ConfigError(f"{self.marker}: unreadable ({err})") from None

    def status(self, names: list[str]) -> tuple[list[str], list[str], list[str]]:
        """(finished, checkpointed, not started) run names."""
        finished = [n for n in names if self.is_finished(n)]
        checkpointed = [n for n in names if not self.is_finished(n) and self.checkpoint(n).exists()]
        rest = [n for n in names if n not in finished and n not in checkpointed]
        return finished, checkpointed, rest

    def write_marker(self, names: list[str], settings: dict[str, Any],
                     shown: Path | None = None) -> None:
        """(Re)write the marker: runs finished, checkpointed, missing; how to resume."""
        finished, checkpointed, rest = self.status(names)
        write_text(self.marker, json.dumps({
            "status": "incomplete",
            "resume": f"cartsim resume {shown or self.path}",
            "runs": len(names),
            "finished": finished,
            "missing": checkpointed + rest,
            "checkpointed": checkpointed,
            **settings,
        }, indent=2) + "\n")

    def load_study(self) -> Study:
        """The study recorded in ``config.resolved.yaml`` (validated again)."""
        path = self.path / CONFIG_FILE
        shown = str(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            scenarios = [validate(s, ScenarioConfig, f"{shown}: scenarios[{i}]")
                         for i, s in enumerate(data["scenarios"])]
            return Study(name=data["name"], description=data["description"],
                         seed=data["seed"], replicates=data["replicates"], scenarios=scenarios,
                         sources=[f"{shown}: scenarios[{i}]" for i in range(len(scenarios))])
        except ConfigError:
            raise
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{shown}: cannot read the study to resume ({err})") from None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``DIR/.lock`` (flock, released even on kill -9) while writing the folder."""
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking
            yield
            return
        path = self.path / LOCK_FILE
        with open(path, "a+") as stream:
            try:
                fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                stream.seek(0)
                holder = stream.read().strip() or "?"
                raise FolderBusyError(f"{self.path}: another cartsim process (pid {holder}) is "
                                      "writing this folder") from None
            stream.seek(0)
            stream.truncate()
            stream.write(str(os.getpid()))
            stream.flush()
            try:
                yield
            finally:
                fcntl.flock(stream.fileno(), fcntl.LOCK_UN)


def looks_like_output(path: Path) -> bool:
    """True for a folder ``cartsim run`` wrote (complete or not), or an empty one."""
    if not path.is_dir():
        return False
    return (not any(path.iterdir()) or (path / MARKER).exists()
            or (path / MANIFEST_FILE).exists() or (path / CONFIG_FILE).exists())


def create(path: Path, study: Study, settings: dict[str, Any], manifest: dict[str, Any],
           force: bool = False) -> tuple[RunDir, Path | None]:
    """Make DIR with ``config.resolved.yaml``, ``manifest.json`` and the marker, atomically.

    The three files are written into a hidden sibling that is then renamed to ``path``, so DIR
    either does not exist or can be resumed. An existing DIR is refused unless ``force``; with
    ``force`` it is moved aside (``.<name>.replaced-*``) and deleted only when the new study is
    complete. Returns the folder and the moved-aside old one (or None).
    """
    path = Path(path)
    replaced = None
    if path.exists():
        folder = RunDir(path)
        if not force:
            if folder.is_incomplete():
                raise OutputExistsError(
                    f"{path}: already exists and is incomplete (an interrupted run); continue "
                    f"it with `cartsim resume {path}`, or pass --force to start it over")
            raise OutputExistsError(
                f"{path}: already exists; choose another --out or pass --force to replace it")
        if not looks_like_output(path):
            raise OutputExistsError(f"{path}: exists and is not a cartsim output folder; "
                                    "refusing to replace it, even with --force")
        if folder.is_incomplete():
            with folder.lock():  # refuse to pull a folder from under a running cartsim
                pass
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        for sub in ("runs", "checkpoints"):
            (staging / sub).mkdir()
        write_text(staging / CONFIG_FILE, yaml.safe_dump(resolved_config(study), sort_keys=False))
        write_text(staging / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
        names = [run_name(s.name, r) for s in study.scenarios for r in range(study.replicates)]
        if path.exists():
            replaced = Path(tempfile.mkdtemp(prefix=f".{path.name}.replaced-", dir=path.parent))
            os.replace(path, replaced / path.name)
            settings = {**settings, "replaces": str(replaced)}
        RunDir(staging).write_marker(names, settings, shown=path)
        try:
            os.replace(staging, path)
        except OSError:
            if path.exists():  # another cartsim created it in the meantime
                raise OutputExistsError(f"{path}: already exists; choose another --out") from None
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if replaced is not None and not path.exists():  # put the old folder back
            os.replace(replaced / path.name, path)
            shutil.rmtree(replaced, ignore_errors=True)
        raise
    return RunDir(path), replaced


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------
def run_to_files(folder: str, spec, checkpoint_every_h: float | None) -> str:
    """Run (or continue from its checkpoint) one simulation; store its rows; return its name.

    Module-level so worker processes can run it. A checkpoint that cannot be read, or that
    belongs to another config or seed, is ignored (the run starts over) with a warning.
    """
    from ..model import CarTModel
    from ..study.runner import run_tables

    rundir = RunDir(Path(folder))
    name = run_name(spec.scenario.name, spec.replicate)
    checkpoint = rundir.checkpoint(name)
    model = None
    if checkpoint.exists():
        try:
            state = load_checkpoint(checkpoint)
            if (ScenarioConfig.model_validate(state["config"]) != spec.scenario
                    or int(state["seed"]) != spec.seed):
                raise ValueError(f"{checkpoint}: written for another config or seed")
            model = CarTModel.from_checkpoint(state, threads=spec.threads)
        except (ValueError, KeyError, TypeError, ConfigError) as err:
            print(f"cartsim: warning: {err}; run {name} starts over", file=sys.stderr)
            model = None
    if model is None:
        model = CarTModel(spec.scenario, seed=spec.seed, threads=spec.threads)
    every = None
    if checkpoint_every_h:
        every = max(1, round(checkpoint_every_h * MIN_PER_H / model.dt_min))
    while model.running:
        model.step()
        if every and model.running and model.step_index % every == 0:
            save_checkpoint(model.checkpoint_state(), checkpoint)
    series, summary = run_tables(model, spec)
    if model.lattice.dimensions == 3 and spec.replicate == 0:
        from .snapshots import lattice_snapshot, save_snapshot

        snapshot = lattice_snapshot(model)
        atomic_write(rundir.final_snapshot(name), lambda tmp: save_snapshot(snapshot, tmp))
    csv_path, json_path = rundir.run_files(name)
    atomic_write(csv_path, lambda tmp: series.to_csv(tmp, index=False))
    write_text(json_path, json.dumps(summary) + "\n")  # last: from now on the run is finished
    with contextlib.suppress(FileNotFoundError):
        checkpoint.unlink()
    return name


def _worker_init(parent: int) -> None:
    """Workers leave Ctrl-C to the parent, which stops them (no traceback from every worker),
    and exit when the parent is gone (kill -9): nothing would collect their results."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="cartsim-parent-watch").start()


def execute(rundir: RunDir, specs: list, workers: int, checkpoint_every_h: float | None,
            on_done: Callable[[Any], None] | None = None) -> None:
    """Run every spec whose rows are not in ``rundir`` yet, in ``workers`` processes."""
    from ..study.runner import environment, warm_up

    pending = [s for s in specs if not rundir.is_finished(run_name(s.scenario.name, s.replicate))]
    if not pending:
        return
    warm_up()  # compile (or load from the on-disk cache) once, before workers start
    workers = max(1, min(workers, len(pending)))
    folder = str(rundir.path)
    if workers == 1:
        for spec in pending:
            run_to_files(folder, spec, checkpoint_every_h)
            if on_done:
                on_done(spec)
        return
    cores = os.cpu_count() or 1
    # spawn, not fork: a process that ran a parallel kernel holds a thread pool that must not
    # be forked; spawned workers (started as runs are submitted, so the variable stays set)
    # load the cached kernels and share the cores
    with environment(NUMBA_NUM_THREADS=str(max(1, cores // workers))):
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init,
                                   initargs=(os.getpid(),),
                                   mp_context=multiprocessing.get_context("spawn"))
        try:
            futures = {pool.submit(run_to_files, folder, spec, checkpoint_every_h): spec
                       for spec in pending}
            remaining = set(futures)
            while remaining:
                done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()
                    if on_done:
                        on_done(futures[future])
        except BaseException:
            _stop(pool)
            raise
        pool.shutdown(wait=True)


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


def read_tables(rundir: RunDir, specs: list) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(timeseries, summary) from ``runs/``, in the order of ``specs``."""
    frames, rows = [], []
    for spec in specs:
        csv_path, json_path = rundir.run_files(run_name(spec.scenario.name, spec.replicate))
        # Python's float() parses the repr that to_csv wrote exactly, on any pandas version
        frames.append(pd.read_csv(csv_path, dtype=SERIES_DTYPES, keep_default_na=False,
                                  converters={name: float for name in SERIES_FLOATS}))
        rows.append(json.loads(json_path.read_text(encoding="utf-8")))
    return pd.concat(frames, ignore_index=True), pd.DataFrame(rows)


def finish(rundir: RunDir, specs: list, manifest: dict[str, Any]) -> tuple[pd.DataFrame,
                                                                            pd.DataFrame]:
    """Write the result files, then remove the marker, ``runs/`` and ``checkpoints/``.

    Runs whose CAR-T went through the blood also get ``blood_kinetics.png`` (CAR-T per uL).
    A 3D scenario also gets its first replicate's final lattice (``volume_outputs``).
    A killing assay (in-vitro wells beside untreated controls, ``simulation.analysis.assay``) also gets
    ``assay.csv`` (% of control and kills per CAR-T over time), ``assay_endpoints.csv`` (median
    and IQR at 48 h, 72 h and the end) and ``assay.png``.
    """
    import matplotlib.pyplot as plt

    from ..analysis.assay import assay_endpoints, assay_table, is_assay
    from ..viz.plotting import plot_blood_kinetics, plot_burden, plot_killing_assay

    timeseries, summary = read_tables(rundir, specs)
    atomic_write(rundir.path / "timeseries.csv", lambda tmp: timeseries.to_csv(tmp, index=False))
    atomic_write(rundir.path / "summary.csv", lambda tmp: summary.to_csv(tmp, index=False))
    figures: list = []
    atomic_write(rundir.path / "burden.png",
                 lambda tmp: figures.append(plot_burden(timeseries, summary, tmp)))
    if timeseries["car_t_blood_per_ul"].max() > 0:  # some CAR-T went through the blood
        atomic_write(rundir.path / "blood_kinetics.png",
                     lambda tmp: figures.append(plot_blood_kinetics(timeseries, summary, tmp)))
    scenarios = list({spec.scenario.name: spec.scenario for spec in specs}.values())
    if is_assay(scenarios):  # in-vitro wells beside their untreated controls
        table = assay_table(scenarios, timeseries)
        atomic_write(rundir.path / "assay.csv", lambda tmp: table.to_csv(tmp, index=False))
        atomic_write(rundir.path / "assay_endpoints.csv",
                     lambda tmp: assay_endpoints(table).to_csv(tmp, index=False))
        atomic_write(rundir.path / "assay.png",
                     lambda tmp: figures.append(plot_killing_assay(table, tmp)))
    for spec in specs:
        if spec.replicate == 0 and spec.scenario.lattice.dimensions == 3:
            figures += volume_outputs(rundir, spec.scenario.name)
    for fig in figures:
        plt.close(fig)
    write_text(rundir.path / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
    marker = rundir.read_marker()
    rundir.marker.unlink()  # the folder is complete from here on
    if marker.get("replaces"):
        shutil.rmtree(marker["replaces"], ignore_errors=True)
    remove_leftovers(rundir)
    return timeseries, summary


def volume_outputs(rundir: RunDir, scenario: str) -> list:
    """The final lattice of a 3D scenario's replicate 0 as ``<scenario>_final.npz`` (a
    snapshot), ``_final.vti`` (ParaView), ``_final_slices.png`` (orthogonal slices through the
    tumour) and ``_final_projection.png`` (maximum-intensity projection). Returns the figures."""
    from ..viz.plotting import plot_max_projection, plot_orthogonal_slices
    from .snapshots import load_snapshot
    from .volume import write_vti

    stored = rundir.final_snapshot(run_name(scenario, 0))
    snapshot = load_snapshot(stored)
    stem = rundir.path / f"{scenario}_final"
    figures: list = []
    atomic_write(stem.with_suffix(".vti"), lambda tmp: write_vti(snapshot, tmp))
    atomic_write(stem.with_name(stem.name + "_slices.png"),
                 lambda tmp: figures.append(plot_orthogonal_slices(snapshot, tmp)))
    atomic_write(stem.with_name(stem.name + "_projection.png"),
                 lambda tmp: figures.append(plot_max_projection(snapshot, tmp)))
    atomic_write(stem.with_suffix(".npz"), lambda tmp: shutil.copyfile(stored, tmp))
    return figures


def remove_leftovers(rundir: RunDir) -> None:
    """Remove the work files of a complete folder (``runs/``, ``checkpoints/``, lock, temps)."""
    clean_temporaries(rundir.path)
    for sub in ("runs", "checkpoints"):
        shutil.rmtree(rundir.path / sub, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (rundir.path / LOCK_FILE).unlink()  # a holder keeps its lock until it lets go


def new_manifest(study: Study, config_path: str, overrides: list[str], started: datetime,
                 checkpoint_every_h: float | None) -> dict[str, Any]:
    """``manifest.json`` of a study that starts now (timing is filled in at the end)."""
    return {
        "config_file": config_path,
        "overrides": overrides,
        "seeds": [study.seed + r for r in range(study.replicates)],
        "replicates": study.replicates,
        "scenarios": [s.name for s in study.scenarios],
        "runs": len(study.scenarios) * study.replicates,
        "versions": versions(),
        "code_fingerprint": code_fingerprint(),
        "checkpoint_every_h": checkpoint_every_h,
        "command": sys.argv,
        "platform": platform.platform(),
        "started_utc": started.isoformat(timespec="seconds"),
        "resumed_utc": [],
        "finished_utc": None,
        "wall_time_s": None,
    }


def finished_manifest(manifest: dict[str, Any], wall_time_s: float) -> dict[str, Any]:
    finished = datetime.now(timezone.utc)
    return {**manifest, "finished_utc": finished.isoformat(timespec="seconds"),
            "wall_time_s": round(wall_time_s, 2)}


def read_manifest(rundir: RunDir) -> dict[str, Any]:
    try:
        return json.loads((rundir.path / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{rundir.path / MANIFEST_FILE}: unreadable ({err})") from None


def positive_hours(value: float | None, option: str = "--checkpoint-every") -> float | None:
    """``value`` if it is a positive, finite number of hours (or None), else a ConfigError."""
    if value is None:
        return None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{option}: must be a positive number of simulated hours "
                          f"(got {value:g})")
    return float(value)
