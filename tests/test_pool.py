"""Where runs execute (``simulation.execution.pool``): small studies in this process, larger ones in
spawned workers that do not run the user's script again."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from simulation.biology.scenario import receptor_logic, receptor_logics
from simulation.config.loading import load_study
from simulation.execution import pool
from simulation.execution.pool import (
    POOL_MIN_WORK_S,
    SITE_UPDATES_PER_S,
    LocalBackend,
    SerialBackend,
    make_backend,
)
from simulation.execution.runner import _receptor_logics, run_specs

STUDY = Path(__file__).parent / "data" / "small_study.yaml"
CONFIGS = Path(__file__).parent.parent / "configs"


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: every study runs serially")
def test_a_small_study_runs_in_this_process_and_a_large_one_in_a_pool():
    small = 0.5 * POOL_MIN_WORK_S * SITE_UPDATES_PER_S
    large = 2.0 * POOL_MIN_WORK_S * SITE_UPDATES_PER_S
    assert isinstance(make_backend(None, n_runs=4, site_updates=small), SerialBackend)
    assert isinstance(make_backend(None, n_runs=4, site_updates=large), LocalBackend)
    # workers asked for are workers given, however small the study
    assert isinstance(make_backend(2, n_runs=4, site_updates=small), LocalBackend)


def test_a_script_without_a_main_guard_runs_on_worker_processes(tmp_path):
    """Spawned workers would import the script again and fail ("An attempt has been made to
    start a new process before the current process has finished its bootstrapping phase");
    they start without it, and the script's top-level code runs once."""
    script = tmp_path / "analysis.py"
    script.write_text(textwrap.dedent(f"""
        import simulation
        print("top level ran")
        res = simulation.run({str(STUDY)!r}, replicates=2, days=1, workers=2)
        print(len(res.summary), "runs")
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["top level ran", "4 runs"]


def test_the_warm_up_compiles_the_kernels_the_runs_will_call(monkeypatch):
    """A study of plain CARs warms up their kernel, one with receptor logic (an OR gate on
    two antigens) its own, once each; the workers then load instead of each compiling it."""
    warmed = []

    class Recorder:
        def __init__(self, scenario, seed):
            warmed.append(receptor_logic(scenario))

        def run(self):
            pass

    monkeypatch.setattr(pool, "CarTModel", Recorder)
    pool.warm_up([True, None, True])
    assert warmed == [None, True]
    plain = run_specs(load_study(CONFIGS / "b_all_cd19.yaml"), None)
    or_gate = run_specs(load_study(CONFIGS / "car_design" / "or_gate_b_all.yaml"), None)
    assert _receptor_logics(plain) == {None}
    assert _receptor_logics(or_gate) == {True}
    assert receptor_logics(spec.scenario for spec in plain + or_gate) == {None, True}
    assert LocalBackend(2, logics=_receptor_logics(or_gate))._logics == (True,)
