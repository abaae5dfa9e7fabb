"""Checkpoints and resume: an interrupted study continues to the same bytes as an uninterrupted one.

* ``CarTModel.checkpoint_state`` / ``from_checkpoint``: a run restored mid-way (in memory or via
  a checkpoint file) ends with exactly the same DataCollector table and lattice;
* ``cartsim run --checkpoint-every``, killed with SIGKILL mid-run, then ``cartsim resume``: the
  tables and plot are byte-identical to an uninterrupted run's;
* Ctrl-C (KeyboardInterrupt) leaves the folder consistent and marked incomplete, exit code 130;
  a damaged checkpoint only costs its run a restart; existing folders are protected.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import pytest
import yaml
from numba.core.caching import _CacheLocator

import simulation
from conftest import TINY_SCENARIO
from simulation import cli
from simulation.io import checkpoints, files, provenance, rundir
from simulation.execution import publish, runner
from simulation.config import load_study
from simulation.model import CarTModel
from simulation.execution.runner import run_study

DATA = Path(__file__).parent / "data"
PACKAGE = Path(simulation.__file__).resolve().parent
STUDY = DATA / "small_study.yaml"
RESULTS = ("timeseries.csv", "summary.csv", "burden.png")


def frame(model: CarTModel) -> pd.DataFrame:
    return model.datacollector.get_model_vars_dataframe()


def tiny_config(tmp_path: Path, **time_keys) -> Path:
    """TINY_SCENARIO (20x20, 2 days), 2 replicates, a second dose on day 1, as a YAML file."""
    data = copy.deepcopy(TINY_SCENARIO)
    data["replicates"] = 2
    data["time"].update(time_keys)
    data["dosing"]["doses"].append({"day": 1.0, "cells": 6})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def assert_same_results(a: Path, b: Path) -> None:
    for name in RESULTS + ("blood_kinetics.png",):
        assert (a / name).exists() == (b / name).exists(), name
        if (a / name).exists():
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


def assert_complete(out: Path) -> None:
    """A finished folder holds exactly the output contract (no marker, work files or lock);
    blood_kinetics.png is part of it when CAR-T went through the blood."""
    blood = ["blood_kinetics.png"] if (out / "blood_kinetics.png").exists() else []
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*RESULTS, *blood, "config.resolved.yaml", "manifest.json"])


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stop_when_cleared", [False, True])
def test_restored_model_finishes_exactly_like_the_original(tmp_path, stop_when_cleared):
    data = copy.deepcopy(TINY_SCENARIO)
    data["time"]["stop_when_cleared"] = stop_when_cleared
    data["dosing"]["doses"] = [{"day": 0, "cells": 8}, {"day": 1.0, "cells": 20}]
    original = CarTModel(data, seed=5)
    for _ in range(130):  # 13 h: between censuses, before the second dose
        original.step()
    state = original.checkpoint_state()
    in_memory = CarTModel.from_checkpoint(state)
    path = tmp_path / "run.npz"
    checkpoints.save_checkpoint(state, path)
    from_file = CarTModel.from_checkpoint(checkpoints.load_checkpoint(path))
    assert not list(tmp_path.glob(".*")), "temporary file left behind"
    for model in (original, in_memory, from_file):
        model.run()
    for restored in (in_memory, from_file):
        pd.testing.assert_frame_equal(frame(restored), frame(original), check_exact=True)
        assert np.array_equal(restored.lattice.cells, original.lattice.cells)
        assert np.array_equal(restored.events, original.events)
        for name in ("step_index", "time_min", "sweep", "next_infusion", "car_t_infused",
                     "car_t_not_placed", "steps", "running"):
            assert getattr(restored, name) == getattr(original, name), name
    assert original.car_t_infused > 8  # the second dose happened after the checkpoint
    assert len(frame(original)) > 3


def test_checkpoint_state_is_a_copy_and_files_need_no_pickle(tmp_path):
    model = CarTModel(copy.deepcopy(TINY_SCENARIO), seed=1)
    for _ in range(10):
        model.step()
    state = model.checkpoint_state()
    model.step()
    assert not np.array_equal(state["cells"], model.lattice.cells)  # not a view
    checkpoints.save_checkpoint(state, tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz", allow_pickle=False) as data:
        assert set(data.files) == {"cells", "extra", "events", "fields", "meta"}
    with pytest.raises(ValueError, match="format"):
        CarTModel.from_checkpoint({**state, "format": 99})
    other = {**state, "config": {**state["config"], "lattice": {**state["config"]["lattice"],
                                                               "width": 21}}}
    with pytest.raises(ValueError, match="does not match"):
        CarTModel.from_checkpoint(other)
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        checkpoints.load_checkpoint(tmp_path / "bad.npz")


def test_interrupted_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")

    def half_then_interrupt(tmp: Path) -> None:
        tmp.write_text("new, but only ha")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(target, half_then_interrupt)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


# ---------------------------------------------------------------------------------------------
# cartsim run / resume in-process (tiny study)
# ---------------------------------------------------------------------------------------------
def test_ctrl_c_leaves_a_resumable_folder_and_resume_matches(tmp_path, monkeypatch, capsys):
    config = tiny_config(tmp_path)
    reference = tmp_path / "reference"
    assert cli.main(["run", str(config), "--out", str(reference), "--quiet", "--workers", "1"]) == 0
    assert_complete(reference)
    # the folder's tables are the in-memory tables of run_study, byte for byte
    timeseries, summary = run_study(load_study(config), workers=1)
    assert (reference / "timeseries.csv").read_bytes() == timeseries.to_csv(index=False).encode()
    assert (reference / "summary.csv").read_bytes() == summary.to_csv(index=False).encode()

    # Ctrl-C in the middle of the second run, right after one of its checkpoints
    saved = runner.save_checkpoint
    calls = {"n": 0}

    def save_then_interrupt(state, path):
        saved(state, path)
        if path.name.endswith("_r1.npz"):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt

    monkeypatch.setattr(runner, "save_checkpoint", save_then_interrupt)
    out = tmp_path / "out"
    capsys.readouterr()
    code = cli.main(["run", str(config), "--out", str(out), "--quiet", "--workers", "1",
                     "--checkpoint-every", "6"])
    err = capsys.readouterr().err
    assert code == 130
    assert f"continue with: cartsim resume {out}" in err and "Traceback" not in err
    marker = json.loads((out / "INCOMPLETE").read_text())
    assert marker["finished"] == ["tiny_r0"] and marker["missing"] == ["tiny_r1"]
    assert marker["checkpointed"] == ["tiny_r1"] and marker["checkpoint_every_h"] == 6.0
    assert not any((out / name).exists() for name in RESULTS)
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["tiny_r0.csv", "tiny_r0.json"]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["tiny_r1.npz"]
    state = checkpoints.load_checkpoint(out / "checkpoints" / "tiny_r1.npz")
    assert state["step_index"] == 3 * 60  # 18 h at 6-min steps

    # running again into it is refused with the way out; resume finishes it
    assert cli.main(["run", str(config), "--out", str(out), "--quiet"]) == 2
    assert f"`cartsim resume {out}`" in capsys.readouterr().err
    monkeypatch.setattr(runner, "save_checkpoint", saved)
    restarted = []
    restore = CarTModel.from_checkpoint

    def spy(state, **kwargs):
        restarted.append(state["step_index"])
        return restore(state, **kwargs)

    monkeypatch.setattr(CarTModel, "from_checkpoint", spy)
    assert cli.main(["resume", str(out), "--quiet", "--workers", "1"]) == 0
    assert restarted == [180]  # the checkpointed run continued from its checkpoint
    assert "1 of 2 runs finished, 1 continue from a checkpoint" in capsys.readouterr().err
    assert_same_results(out, reference)
    assert_complete(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["resumed_utc"]) == 1 and manifest["finished_utc"]
    assert cli.main(["resume", str(out)]) == 0
    assert "nothing to resume" in capsys.readouterr().err


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_damaged_checkpoint_restarts_its_run_with_a_warning(tmp_path, monkeypatch, capsys):
    config = tiny_config(tmp_path, duration_days=1.5)
    reference = tmp_path / "reference"
    assert cli.main(["run", str(config), "--out", str(reference), "--quiet", "--workers", "1"]) == 0
    out = tmp_path / "out"
    monkeypatch.setattr(runner, "run_to_files", interrupt)
    assert cli.main(["run", str(config), "--out", str(out), "--quiet", "--workers", "1",
                     "--checkpoint-every", "3"]) == 130
    monkeypatch.undo()
    (out / "checkpoints" / "tiny_r0.npz").write_bytes(b"garbage")
    (out / "runs" / ".tiny_r1.tmp.csv").write_text("half a tab")  # a write cut short
    capsys.readouterr()
    assert cli.main(["resume", str(out), "--quiet", "--workers", "1"]) == 0
    assert "tiny_r0 starts over" in capsys.readouterr().err
    assert_same_results(out, reference)
    assert_complete(out)


def copy_package_with_compiled_kernels(dest: Path) -> None:
    """Copy the package to ``dest`` with its numba cache, so that only modules changed in the
    copy compile again (numba keys a cache by the source folder's path and the file's mtime and
    size; copytree keeps mtimes)."""
    shutil.copytree(PACKAGE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    cache = Path(numba.config.CACHE_DIR)  # conftest sets one per test session
    for source in PACKAGE.rglob("*.py"):
        compiled = cache / _CacheLocator.get_suitable_cache_subpath(str(source))
        if compiled.is_dir():
            copy = dest / source.relative_to(PACKAGE)
            shutil.copytree(compiled, cache / _CacheLocator.get_suitable_cache_subpath(str(copy)),
                            dirs_exist_ok=True)


def test_resume_refuses_a_changed_field_solver_unless_forced(tmp_path, monkeypatch, capsys):
    """Interrupt a checkpointed run, change the field solver in a copy of the package: `cartsim
    resume` run from the copy refuses with both code fingerprints; with --force it goes on."""
    data = copy.deepcopy(TINY_SCENARIO)  # 20x20 sites, 12 h: quick even with the JIT off
    data["replicates"] = 2
    data["time"]["duration_days"] = 0.5
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    saved = runner.save_checkpoint

    def save_then_interrupt(state, path):
        saved(state, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "save_checkpoint", save_then_interrupt)
    out = tmp_path / "out"
    assert cli.main(["run", str(config), "--out", str(out), "--quiet", "--workers", "1",
                     "--checkpoint-every", "3"]) == 130
    monkeypatch.undo()
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["tiny_r0.npz"]
    started_with = json.loads((out / "manifest.json").read_text())["code_fingerprint"]
    assert started_with == provenance.code_fingerprint()

    changed = tmp_path / "changed"
    copy_package_with_compiled_kernels(changed / "simulation")
    solver = changed / "simulation" / "engine" / "fields.py"
    source = solver.read_text(encoding="utf-8")
    assert "DEFAULT_OVER_RELAXATION = 1.8" in source
    solver.write_text(source.replace("DEFAULT_OVER_RELAXATION = 1.8",
                                     "DEFAULT_OVER_RELAXATION = 1.7"), encoding="utf-8")
    now = provenance.code_fingerprint(changed / "simulation")
    assert now != started_with
    env = {**os.environ, "PYTHONPATH": str(changed)}
    command = [sys.executable, "-m", "simulation", "resume", str(out), "--quiet", "--workers", "1"]
    refused = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert refused.returncode == 2, refused.stderr
    assert "the simulation code changed since this study started" in refused.stderr
    assert started_with in refused.stderr and now in refused.stderr
    assert "Traceback" not in refused.stderr
    assert (out / "INCOMPLETE").exists() and (out / "checkpoints" / "tiny_r0.npz").exists()

    forced = subprocess.run(command + ["--force"], cwd=tmp_path, env=env, capture_output=True,
                            text=True)
    assert forced.returncode == 0, forced.stderr
    assert_complete(out)
    assert json.loads((out / "manifest.json").read_text())["code_fingerprint"] == now


def test_fingerprint_covers_every_module_that_can_change_numbers():
    """Found by walking the package: everything but the presentation layers (viz, commands,
    cli)."""
    covered = {p.relative_to(PACKAGE).as_posix() for p in provenance.numeric_modules()}
    every = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}
    assert covered == {name for name in every
                       if not name.startswith("viz/")
                       and name not in ("commands.py", "cli.py", "__main__.py")}
    for module in ("engine/fields.py", "engine/kernel.py", "biology/microenvironment.py",
                   "biology/blood.py", "biology/observables.py", "analysis/outcomes.py",
                   "config/schema.py", "model.py", "execution/runner.py"):
        assert module in covered


def test_interrupted_while_writing_results_then_busy_then_resumed(tmp_path, monkeypatch,
                                                                    capsys):
    config = tiny_config(tmp_path, duration_days=1.5)
    out = tmp_path / "out"
    monkeypatch.setattr(publish, "plot_burden", interrupt)  # Ctrl-C while drawing the plot
    assert cli.main(["run", str(config), "--out", str(out), "--quiet", "--workers", "1"]) == 130
    monkeypatch.undo()
    assert "2 of 2 runs finished" in capsys.readouterr().err
    assert (out / "INCOMPLETE").exists() and (out / "timeseries.csv").exists()
    assert not (out / "burden.png").exists()
    with rundir.RunDir(out).lock():  # as if another cartsim were writing the folder
        assert cli.main(["resume", str(out), "--quiet"]) == 2
        assert "another cartsim process" in capsys.readouterr().err
    assert cli.main(["resume", str(out), "--quiet"]) == 0
    assert_complete(out)


def test_force_replaces_only_output_folders(tmp_path, capsys):
    config = tiny_config(tmp_path, duration_days=1.5)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    assert cli.main(["run", str(config), "--out", str(precious), "--force", "--quiet"]) == 2
    assert "not a cartsim output folder" in capsys.readouterr().err
    assert (precious / "thesis.tex").read_text() == "years of work"
    out = tmp_path / "out"
    assert cli.main(["run", str(config), "--out", str(out), "--quiet", "--workers", "1"]) == 0
    (out / "summary.csv").write_text("old results")
    assert cli.main(["run", str(config), "--out", str(out), "--force", "--quiet",
                     "--workers", "1"]) == 0
    assert (out / "summary.csv").read_text() != "old results"
    assert_complete(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "precious", "tiny.yaml"]


# ---------------------------------------------------------------------------------------------
# kill -9 in the middle of a real study, then cartsim resume
# ---------------------------------------------------------------------------------------------
DAYS = 12  # the study takes ~5 s uninterrupted (4 runs of 40x40 sites, 12 days each)
RUN_ARGS = ["--quiet", "--workers", "1", "--days", str(DAYS), "--checkpoint-every", "6"]


def test_study_killed_with_sigkill_resumes_to_identical_outputs(tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "simulation", "run", str(STUDY), "--out",
                                str(out), *RUN_ARGS], stderr=subprocess.PIPE, env=env)
    # wait until one run has finished and a later one has a checkpoint, then kill -9
    deadline = time.monotonic() + 300
    while True:
        finished = list((out / "runs").glob("[!.]*.json")) if out.is_dir() else []
        checkpointed = list((out / "checkpoints").glob("[!.]*.npz")) if out.is_dir() else []
        if finished and checkpointed:
            break
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()

    # consistent and marked incomplete: no result table, nothing truncated
    marker = json.loads((out / "INCOMPLETE").read_text())
    assert marker["runs"] == 4 and len(marker["missing"]) + len(marker["finished"]) == 4
    assert not any((out / name).exists() for name in RESULTS)
    for path in (out / "runs").glob("[!.]*.csv"):
        assert len(pd.read_csv(path)) == DAYS * 2 + 1, path  # censuses every 12 h from day 0
    for path in (out / "runs").glob("[!.]*.json"):
        assert json.loads(path.read_text())["final_day"] == DAYS
    for path in (out / "checkpoints").glob("[!.]*.npz"):
        assert 0 < checkpoints.load_checkpoint(path)["step_index"] < DAYS * 240

    resumed = subprocess.run([sys.executable, "-m", "simulation", "resume", str(out), "--quiet",
                              "--workers", "1"], capture_output=True, text=True, env=env,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert "continue from a checkpoint" in resumed.stderr

    reference = tmp_path / "reference"  # the same study, uninterrupted (in-process: faster)
    assert cli.main(["run", str(STUDY), "--out", str(reference), *RUN_ARGS]) == 0
    assert_same_results(out, reference)
    assert_complete(out)

