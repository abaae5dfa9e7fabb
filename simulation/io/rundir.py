"""Resumable output folders: ``cartsim run`` writes into DIR as it goes, ``cartsim resume`` ends it.

Layout while a study runs (every file is written to a temporary name and renamed into place,
so a crash, Ctrl-C or ``kill -9`` never leaves a truncated file)::

    DIR/INCOMPLETE                      JSON: which runs are missing, how to resume
    DIR/config.resolved.yaml            the study as it runs (what ``resume`` reads)
    DIR/manifest.json                   seeds, versions, command; rewritten at the end
    DIR/runs/<scenario>_r<k>.csv        a finished run's census rows ...
    DIR/runs/<scenario>_r<k>.json       ... and its summary row (written last: the run is done)
    DIR/runs/<scenario>_r0.final.npz    3D scenarios: the final lattice of replicate 0
    DIR/snapshots/<scenario>_r<k>/      lattice snapshots (time.snapshot_every_h), kept
    DIR/checkpoints/<scenario>_r<k>.npz latest checkpoint of a running run (--checkpoint-every)
    DIR/.lock                           held by the process writing DIR

This module stores and reads back; it runs nothing and draws nothing. The runner
(``simulation.execution.runner``) stores each finished run with ``RunDir.store_run``; when
every run is done, ``simulation.execution.publish.finish`` assembles the tables and figures
from ``runs/`` (via ``read_tables``, in scenario/replicate order), rewrites ``manifest.json``
and removes the marker, ``runs/`` and ``checkpoints/`` (``remove_leftovers``): a complete DIR
holds exactly the output contract. Checkpoint files are ``simulation.io.checkpoints``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ..config import ConfigError, ScenarioConfig, Study, validate
from ..biology.observables import ANTIGEN_COLUMN_PREFIXES
from ..engine.constants import CENSUS_NAMES
from .files import WORK_FOLDERS, atomic_write, clean_temporaries, write_text
from .provenance import code_fingerprint, resolved_config, versions

MARKER = "INCOMPLETE"
CONFIG_FILE = "config.resolved.yaml"
SNAPSHOTS_DIR = "snapshots"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".lock"
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


class OutputExistsError(Exception):
    """The output folder exists and ``force`` was not given."""


def default_output_dir(name: str, root: Path = Path("results")) -> Path:
    """``results/<name>``, or the first free ``results/<name>-N``: never an existing folder."""
    candidate = root / name
    n = 2
    while candidate.exists():
        candidate = root / f"{name}-{n}"
        n += 1
    return candidate


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

    def snapshot_folder(self, name: str) -> Path:
        """Lattice snapshots of run ``name`` (``time.snapshot_every_h``; stays in DIR)."""
        return self.path / SNAPSHOTS_DIR / name

    def snapshot_folders(self) -> dict[str, Path]:
        """Run name -> its folder of snapshots, for the runs that have one."""
        root = self.path / SNAPSHOTS_DIR
        return {folder.name: folder for folder in sorted(root.iterdir())} if root.is_dir() else {}

    def checkpoint(self, name: str) -> Path:
        return self.path / "checkpoints" / f"{name}.npz"

    def store_run(self, name: str, series: pd.DataFrame, summary: dict[str, Any]) -> None:
        """Write a finished run's census rows, then its summary row (from then on the run
        counts as finished), and drop its checkpoint."""
        csv_path, json_path = self.run_files(name)
        atomic_write(csv_path, lambda tmp: series.to_csv(tmp, index=False))
        write_text(json_path, json.dumps(summary) + "\n")  # last: now the run is finished
        with contextlib.suppress(FileNotFoundError):
            self.checkpoint(name).unlink()

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
        for sub in WORK_FOLDERS:
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


def read_tables(rundir: RunDir, names: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(timeseries, summary) of the finished runs ``names`` (``run_name``), in that order."""
    frames, rows = [], []
    for name in names:
        csv_path, json_path = rundir.run_files(name)
        frames.append(read_timeseries(csv_path))
        rows.append(json.loads(json_path.read_text(encoding="utf-8")))
    return pd.concat(frames, ignore_index=True), pd.DataFrame(rows)


def read_timeseries(path: Path) -> pd.DataFrame:
    """Census rows written with ``to_csv`` (a run's, or a folder's ``timeseries.csv``), read
    back exactly: integer columns as int64, floats parsed by Python's ``float()``, which reads
    the repr that ``to_csv`` wrote exactly on any pandas version."""
    try:
        table = pd.read_csv(path, dtype=SERIES_DTYPES, keep_default_na=False,
                            converters={column: float for column in SERIES_FLOATS})
    except ValueError:  # a trial patient's systemic follow-up: fractions of cells, blanks
        labels = {column: kind for column, kind in SERIES_DTYPES.items() if kind is str}
        numbers = [column for column in SERIES_DTYPES if column not in labels]
        table = pd.read_csv(path, dtype=labels, keep_default_na=False,
                            converters={column: _float_or_nan
                                        for column in (*SERIES_FLOATS, *numbers)})
    for column in table.columns:  # per-antigen counts: blank where a scenario lacks them
        if column.startswith(ANTIGEN_COLUMN_PREFIXES) and table[column].dtype == object:
            table[column] = pd.to_numeric(table[column].replace("", np.nan))
    return table


def _float_or_nan(text: str) -> float:
    """A number ``to_csv`` wrote (its repr, read back exactly), NaN where it wrote a blank."""
    return float(text) if text else math.nan


def remove_leftovers(rundir: RunDir) -> None:
    """Remove the work files of a complete folder (``runs/``, ``checkpoints/``, lock, temps)."""
    clean_temporaries(rundir.path)
    for sub in WORK_FOLDERS:
        shutil.rmtree(rundir.path / sub, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (rundir.path / LOCK_FILE).unlink()  # a holder keeps its lock until it lets go


def new_manifest(study: Study, config_path: str, overrides: list[str], started: datetime,
                 checkpoint_every_h: float | None, scale: float | None = None
                 ) -> dict[str, Any]:
    """``manifest.json`` of a study that starts now (timing is filled in at the end);
    ``scale``: the --scale the config was run at (None: as written)."""
    return {
        "config_file": config_path,
        "overrides": overrides,
        "scale": scale,
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
