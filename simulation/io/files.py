"""Atomic files: a reader never sees a half-written file, whatever stops the writer.

Every output of cartsim (tables, figures, checkpoints, Parquet runs of a sweep) is written to a
hidden temporary name next to its target and renamed into place; ``clean_temporaries`` removes
what an interrupted writer left.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: the sub-folders of an output folder whose temporaries ``clean_temporaries`` also removes
WORK_FOLDERS = ("runs", "checkpoints")


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
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def clean_temporaries(folder: Path) -> None:
    """Remove temporary files an interrupted ``atomic_write`` may have left in ``folder``."""
    for sub in (folder, *(folder / name for name in WORK_FOLDERS)):
        if sub.is_dir():
            for leftover in sub.glob(".*.tmp*"):
                with contextlib.suppress(OSError):
                    leftover.unlink()
