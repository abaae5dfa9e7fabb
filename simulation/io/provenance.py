"""Provenance of an output: the resolved config, versions and the code fingerprint.

Every output folder's manifest carries them (``simulation.io.rundir``), so a result says which
inputs and which code made it, and ``cartsim resume`` can refuse to mix two versions of the code.
"""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: `cartsim --version` reads this module without the config
    from ..config import Study

DEPENDENCIES = ("numpy", "numba", "llvmlite", "mesa", "pydantic", "pandas", "matplotlib",
                "pyyaml", "scipy", "tqdm")
#: the package's presentation layers, relative to the package folder: they draw and parse
#: commands, and cannot change a number in a table. Every other module can (the config's
#: defaults, the engine, the biology, the model, outcome rules, the runner, the files it reads
#: back), so ``code_fingerprint`` hashes all of them, found by walking the package folder.
PRESENTATION = ("viz", "commands.py", "cli.py", "__main__.py")
#: the folder of the ``simulation`` package
PACKAGE = Path(__file__).resolve().parent.parent


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


def resolved_config(study: Study) -> dict:
    """The fully resolved study: every scenario with every key, as plain data."""
    return {
        "name": study.name,
        "description": study.description,
        "seed": study.seed,
        "replicates": study.replicates,
        "scenarios": [s.model_dump(mode="json") for s in study.scenarios],
    }


def numeric_modules(package: Path = PACKAGE) -> list[Path]:
    """Every ``.py`` file of the package outside ``PRESENTATION``, in a fixed order."""
    return sorted(path for path in package.rglob("*.py")
                  if path.relative_to(package).parts[0] not in PRESENTATION)


def code_fingerprint(package: Path = PACKAGE) -> str:
    """sha256 (16 hex digits) of the source of every module that can change the numbers
    (``numeric_modules``): their paths relative to the package and their bytes."""
    digest = hashlib.sha256()
    for path in numeric_modules(package):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
