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
from pathlib import Path
from typing import TextIO

import numba
import numpy as np

from . import fields, kernel
from .constants import EFFECTOR, KERNEL_PARAMS_DTYPE, N_CELL_TYPES
from .lattice import Lattice

#: the kernels a model calls from Python; each carries its callees in its compiled code
ENTRY_POINTS = (*kernel.COMPILED_ENTRY_POINTS, fields.solve_field, fields.field_total)
#: those compiled once per ``kernel.receptor_logic`` (their last argument)
PER_RECEPTOR_LOGIC = (kernel.advance_kernel, kernel.census_kernel)
MESSAGE = ("cartsim: compiling the simulation kernels, once per machine (15-45 s, by the "
           "machine); later runs load them from numba's cache")

#: the values of ``kernel.receptor_logic`` whose compilation this process announced
_announced: set[bool | None] = set()


def kernels_cached(logic: bool | None = None) -> bool:
    """True if every entry point is compiled in this process already or has a fresh entry in
    numba's on-disk cache (the next call loads it instead of compiling), for a scenario of
    ``logic`` (``kernel.receptor_logic``)."""
    return all(_cached(dispatcher, logic if dispatcher in PER_RECEPTOR_LOGIC else ANY)
               for dispatcher in ENTRY_POINTS)


#: ``_cached``'s ``logic`` for a kernel compiled once, whatever the scenario
ANY = object()


def _cached(dispatcher, logic=ANY) -> bool:
    """True if ``dispatcher`` is compiled in this process or has a fresh on-disk cache entry;
    with ``logic``, one compiled for that ``kernel.receptor_logic`` (its last argument)."""
    def fits(signature) -> bool:
        return logic is ANY or signature[-1] == numba.typeof(logic)
    if any(fits(signature) for signature in dispatcher.signatures):
        return True
    try:
        # numba keeps no public API for this: an empty or stale index means compiling; its
        # keys start with the signature
        index = dispatcher._cache._cache_file._load_index()
        return any(fits(key[0]) for key in index)
    except (AttributeError, OSError, EOFError, ValueError, TypeError, IndexError):
        return False


def compile_field_solver() -> None:
    """Compile (and cache) the field solver for the argument types the model passes, by a
    tiny solve."""
    n_sites = 16
    no_source = np.zeros(n_sites)
    field = np.zeros(n_sites)
    fields.solve_field(field, (1, 4, 4), 15.0, 1000.0, 0.01, no_source, no_source,
                       np.zeros(n_sites, dtype=np.uint8), 0.0, -1.0, 60.0, 1e-6, 10, 1.8)
    fields.field_total(field, 15.0, 1)


def compile_kernel_helpers(logic: bool | None) -> None:
    """Compile (and cache) the kernel's entry points other than ``kernel.advance``'s (the
    census for ``logic``, extravasation, the marks of motile rows) for the argument types the
    model passes, on an empty 4 x 4 lattice (which they leave as it was)."""
    lattice = Lattice.empty(4, 4, 10.0, "moore")
    params = np.zeros(1, dtype=KERNEL_PARAMS_DTYPE)
    motile_rows = np.zeros(lattice.shape[0] * lattice.shape[1], dtype=np.uint8)
    kernel.census_kernel(lattice.cells, lattice.extra, params, logic)
    kernel.mark_motile_rows(lattice.cells, lattice.shape, np.zeros(N_CELL_TYPES), motile_rows)
    kernel.extravasate(lattice.cells, lattice.extra, lattice.tissue, lattice.shape,
                       lattice.offsets, np.flatnonzero(lattice.tissue), 0, 0, EFFECTOR, 0, 0, 0,
                       motile_rows)


def compile_beside_kernel(logic: bool | None) -> None:
    """Everything the first model of ``logic`` (``kernel.receptor_logic``) needs but
    ``kernel.advance``: run in a second process by ``compile_in_background``."""
    compile_field_solver()
    compile_kernel_helpers(logic)


def compile_in_background(logic: bool | None) -> subprocess.Popen | None:
    """Start ``compile_beside_kernel`` in a new process when the lattice kernel of ``logic``
    (``kernel.receptor_logic``) and the rest must compile and a second core can do it, so that
    the first model on a machine compiles the lattice kernel (``kernel.advance``, about half of
    the wait) while that process compiles the rest; the caller compiles the kernel and then
    waits for the process (whose cache entries it then loads). None when there is nothing to
    gain."""
    if (numba.config.DISABLE_JIT or (os.cpu_count() or 1) < 2
            or _cached(kernel.advance_kernel, logic)
            or (_cached(fields.solve_field) and _cached(kernel.census_kernel, logic))):
        return None
    # this very package, whatever the working directory holds: -P keeps `python -c` from
    # putting the working directory first on sys.path (another `simulation` there would
    # compile in its place); the folder this package was imported from comes last, for a
    # source tree that is not installed
    package_parent = str(Path(__file__).resolve().parents[2])
    program = (f"import sys; sys.path.append({package_parent!r}); "
               "from simulation.engine.jit import compile_beside_kernel; "
               f"compile_beside_kernel({logic!r})")
    return subprocess.Popen([sys.executable, "-P", "-c", program], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def announce_compilation(logic: bool | None = None, stream: TextIO | None = None) -> bool:
    """Print ``MESSAGE`` (to stderr by default) if the kernels of a scenario of ``logic``
    (``kernel.receptor_logic``) are about to compile; once per process and value of ``logic``.
    Returns whether it printed."""
    if logic in _announced or numba.config.DISABLE_JIT or kernels_cached(logic):
        return False
    _announced.add(logic)
    print(MESSAGE, file=stream or sys.stderr, flush=True)
    return True
