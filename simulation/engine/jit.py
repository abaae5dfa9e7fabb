"""The first run on a machine compiles the kernels (numba); say so the moment it starts.

Compiled kernels go to numba's on-disk cache (``cache=True``): later processes load them in a
fraction of a second. The first process on a machine, or after an upgrade of cartsim or numba,
compiles them instead, which takes tens of seconds on a laptop; ``announce_compilation`` tells
the user before that silence begins (``CarTModel`` calls it before it touches a kernel).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TextIO

import numba
import numpy as np

from . import fields, kernel

#: the kernels a model calls from Python; each carries its callees in its compiled code
ENTRY_POINTS = (*kernel.COMPILED_ENTRY_POINTS, fields.solve_field, fields.field_total)
MESSAGE = ("cartsim: compiling the simulation kernels, once per machine (20-60 s, by the "
           "machine); later runs load them from numba's cache")

_announced = False


def kernels_cached() -> bool:
    """True if every entry point is compiled in this process already or has a fresh entry in
    numba's on-disk cache (the next call loads it instead of compiling)."""
    return all(_cached(dispatcher) for dispatcher in ENTRY_POINTS)


def _cached(dispatcher) -> bool:
    """True if ``dispatcher`` is compiled in this process or has a fresh on-disk cache entry."""
    if dispatcher.signatures:
        return True
    try:
        # numba keeps no public API for this: an empty or stale index means compiling
        return bool(dispatcher._cache._cache_file._load_index())
    except (AttributeError, OSError, EOFError, ValueError):
        return False


def compile_field_solver() -> None:
    """Compile (and cache) the field solver for the argument types the model passes, by a
    tiny solve; ``compile_field_solver_in_background`` runs this in a second process."""
    n_sites = 16
    no_source = np.zeros(n_sites)
    field = np.zeros(n_sites)
    fields.solve_field(field, (1, 4, 4), 15.0, 1000.0, 0.01, no_source, no_source,
                       np.zeros(n_sites, dtype=np.uint8), 0.0, -1.0, 60.0, 1e-6, 10, 1.8)
    fields.field_total(field, 15.0, 1)


def compile_field_solver_in_background() -> subprocess.Popen | None:
    """Start ``compile_field_solver`` in a new process when the field solver must compile and
    a second core can do it, so that the first model on a machine compiles the lattice kernel
    and the field solver at the same time (each is about half of the wait); the caller
    compiles the kernel and then waits for the process (whose cache entry it then loads).
    None when there is nothing to gain."""
    if (numba.config.DISABLE_JIT or (os.cpu_count() or 1) < 2
            or _cached(fields.solve_field)):
        return None
    program = "from simulation.engine.jit import compile_field_solver; compile_field_solver()"
    return subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def announce_compilation(stream: TextIO | None = None) -> bool:
    """Print ``MESSAGE`` (to stderr by default) if the kernels are about to compile; once per
    process. Returns whether it printed."""
    global _announced
    if _announced or numba.config.DISABLE_JIT or kernels_cached():
        return False
    _announced = True
    print(MESSAGE, file=stream or sys.stderr, flush=True)
    return True
