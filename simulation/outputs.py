"""Output folders: written whole into a temporary sibling, then renamed into place.

A run never leaves a half-written folder under the name the user asked for, and never replaces
an existing folder unless told to (``force``), in which case the old one is removed only after
the new one is complete.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Iterator

import yaml

from .config import Study

DEPENDENCIES = ("numpy", "numba", "llvmlite", "mesa", "pydantic", "pandas", "matplotlib",
                "pyyaml", "scipy", "tqdm")


class OutputExistsError(Exception):
    """The output folder exists and ``force`` was not given."""


def package_version() -> str:
    """Installed version of cartsim (or 'unknown' when run from a source tree)."""
    try:
        return metadata.version("cartsim")
    except metadata.PackageNotFoundError:
        return "unknown"


def versions() -> dict[str, str]:
    """Versions of Python, cartsim and its dependencies."""
    found = {"python": platform.python_version(), "cartsim": package_version()}
    for name in DEPENDENCIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def default_output_dir(name: str, root: Path = Path("results")) -> Path:
    """``results/<name>``, or the first free ``results/<name>-N``: never an existing folder."""
    candidate = root / name
    n = 2
    while candidate.exists():
        candidate = root / f"{name}-{n}"
        n += 1
    return candidate


@contextmanager
def atomic_output_dir(target: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success it becomes ``target`` in one rename.

    On any error (or Ctrl-C) the temporary folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    if target.exists() and not force:
        raise OutputExistsError(
            f"{target}: already exists; choose another --out or pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield staging
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, retired / target.name)
            os.replace(staging, target)
            shutil.rmtree(retired)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def resolved_config(study: Study) -> dict:
    """The fully resolved study: every scenario with every key, as plain data."""
    return {
        "name": study.name,
        "description": study.description,
        "seed": study.seed,
        "replicates": study.replicates,
        "scenarios": [s.model_dump(mode="json") for s in study.scenarios],
    }


def write_config_and_manifest(folder: Path, study: Study, config_path: str,
                              overrides: list[str], started: datetime, n_runs: int) -> None:
    """``config.resolved.yaml`` and ``manifest.json`` (seeds, versions, command, timing)."""
    write_text_atomic(folder / "config.resolved.yaml",
                      yaml.safe_dump(resolved_config(study), sort_keys=False))
    finished = datetime.now(timezone.utc)
    manifest = {
        "config_file": config_path,
        "overrides": overrides,
        "seeds": [study.seed + r for r in range(study.replicates)],
        "replicates": study.replicates,
        "scenarios": [s.name for s in study.scenarios],
        "runs": n_runs,
        "versions": versions(),
        "command": sys.argv,
        "platform": platform.platform(),
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": finished.isoformat(timespec="seconds"),
        "wall_time_s": round((finished - started).total_seconds(), 2),
    }
    write_text_atomic(folder / "manifest.json", json.dumps(manifest, indent=2) + "\n")
