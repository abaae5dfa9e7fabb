"""Output-folder helpers: default names, the resolved config, versions for the manifest.

The folder itself (written as the study runs, resumable) is ``simulation.rundir``.
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

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


def resolved_config(study: Study) -> dict:
    """The fully resolved study: every scenario with every key, as plain data."""
    return {
        "name": study.name,
        "description": study.description,
        "seed": study.seed,
        "replicates": study.replicates,
        "scenarios": [s.model_dump(mode="json") for s in study.scenarios],
    }
