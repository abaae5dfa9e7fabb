"""The first run on a machine says that the kernels compile, before the silence begins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from simulation.engine import jit
from simulation.execution.pool import warm_up

CHECK = "from simulation.engine import jit; print(jit.kernels_cached())"


class Uncompiled:
    """A dispatcher with nothing compiled in this process and no on-disk cache."""

    signatures: list = []


def test_announces_once_when_the_kernels_must_compile(monkeypatch, capsys):
    monkeypatch.setattr(jit, "ENTRY_POINTS", (Uncompiled(),))
    monkeypatch.setattr(jit, "_announced", set())
    monkeypatch.setattr(jit.numba.config, "DISABLE_JIT", False)
    assert jit.announce_compilation() is True
    assert jit.announce_compilation() is False  # once per process
    assert capsys.readouterr().err == jit.MESSAGE + "\n"


def test_announces_again_for_a_scenario_whose_kernel_differs(monkeypatch, capsys):
    """A scenario with receptor logic runs a kernel of its own (``kernel.receptor_logic``):
    its first run compiles again, and says so, after a plain one did."""
    monkeypatch.setattr(jit, "ENTRY_POINTS", (Uncompiled(),))
    monkeypatch.setattr(jit, "_announced", set())
    monkeypatch.setattr(jit.numba.config, "DISABLE_JIT", False)
    assert jit.announce_compilation(None) is True
    assert jit.announce_compilation(None) is False
    assert jit.announce_compilation(True) is True
    assert capsys.readouterr().err == 2 * (jit.MESSAGE + "\n")


class CompiledForPlainCars:
    """A dispatcher compiled in this process for ``logic`` None only (its last argument)."""

    signatures = [(jit.numba.types.int64, jit.numba.types.none)]


def test_a_kernel_counts_as_cached_only_for_the_logic_it_was_compiled_for():
    compiled = CompiledForPlainCars()
    assert jit._cached(compiled, None)
    assert not jit._cached(compiled, True)  # (and it has no on-disk cache)
    assert jit._cached(compiled)  # a kernel compiled once for every scenario


def test_says_nothing_when_the_kernels_are_compiled(monkeypatch, capsys):
    warm_up()  # every entry point is compiled (or loaded) in this process now
    capsys.readouterr()  # (a first compile in this test session announced itself)
    monkeypatch.setattr(jit, "_announced", set())
    assert jit.kernels_cached()
    assert jit.announce_compilation() is False
    assert capsys.readouterr().err == ""


def test_reads_numbas_on_disk_cache(tmp_path):
    """An empty cache folder means compiling; this session's, after a warm-up, means loading."""
    warm_up()  # this process wrote (or read) the entry points in the session's cache folder
    empty = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    for env, expected in ((empty, "False"), (dict(os.environ), "True")):
        result = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True,
                                text=True, check=True)
        assert result.stdout.strip() == expected


FIRST_RUN = """
from simulation.engine import fields, kernel
from simulation.model import CarTModel
from simulation.execution.pool import warm_up
warm_up()
for dispatcher in (fields.solve_field, kernel.census_kernel, kernel.extravasate):
    print(len(dispatcher._cache_hits), len(dispatcher._cache_misses))
print(len(kernel.COMPILED_ENTRY_POINTS[0]._cache_misses))
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs a second core")
@pytest.mark.skipif(jit.numba.config.DISABLE_JIT, reason="nothing compiles")
def test_the_first_run_compiles_the_rest_in_a_second_process(tmp_path):
    """With an empty cache, the first model compiles the lattice kernel itself while a second
    process compiles the field solver, the census and extravasation for the same argument
    types: the model then loads each of them from the cache (a hit, no miss) instead of
    compiling it a second time."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", FIRST_RUN], env=env, capture_output=True,
                            text=True, check=True)
    *loaded, kernel_misses = result.stdout.split("\n")[:-1]
    assert [tuple(int(v) for v in line.split()) for line in loaded] == [(1, 0)] * 3
    assert int(kernel_misses) == 1  # the kernel was compiled here
