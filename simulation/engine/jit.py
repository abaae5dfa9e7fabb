"""The first run on a machine compiles the kernels (numba); say so the moment it starts.

Compiled kernels go to numba's on-disk cache (``cache=True``): later processes load them in a
fraction of a second. The first process on a machine, or after an upgrade of cartsim or numba,
compiles them instead, which takes tens of seconds on a laptop; ``announce_compilation`` tells
the user before that silence begins (``CarTModel`` calls it before it touches a kernel).
"""

from __future__ import annotations

import sys
from typing import TextIO

import numba

from . import fields, kernel

#: the kernels a model calls from Python; each carries its callees in its compiled code
ENTRY_POINTS = (kernel.advance, kernel.census, kernel.extravasate, fields.solve_field,
                fields.field_total)
MESSAGE = ("cartsim: compiling the simulation kernels, once per machine (about 20-60 s); "
           "later runs load them from numba's cache")

_announced = False


def kernels_cached() -> bool:
    """True if every entry point is compiled in this process already or has a fresh entry in
    numba's on-disk cache (the next call loads it instead of compiling)."""
    for dispatcher in ENTRY_POINTS:
        if dispatcher.signatures:
            continue
        try:
            # numba keeps no public API for this: an empty or stale index means compiling
            if not dispatcher._cache._cache_file._load_index():
                return False
        except (AttributeError, OSError, EOFError, ValueError):
            return False
    return True


def announce_compilation(stream: TextIO | None = None) -> bool:
    """Print ``MESSAGE`` (to stderr by default) if the kernels are about to compile; once per
    process. Returns whether it printed."""
    global _announced
    if _announced or numba.config.DISABLE_JIT or kernels_cached():
        return False
    _announced = True
    print(MESSAGE, file=stream or sys.stderr, flush=True)
    return True
