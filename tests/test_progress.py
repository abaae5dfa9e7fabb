"""Progress in simulated days (``simulation.execution.progress``): one bar for the study, one per
run in flight, fed by the processes that step the runs."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from simulation.config import load_study
from simulation.execution.pool import make_backend
from simulation.execution.progress import StudyProgress, report
from simulation.execution.runner import run_one, run_specs, run_study, study_progress

STUDY = Path(__file__).parent / "data" / "small_study.yaml"


def _last_overall(stderr: str) -> str:
    """The study bar's last state: 'n/total' in simulated days."""
    return re.findall(r"([\d.]+/[\d.]+) simulated days", stderr)[-1]


def _wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "progress reports did not arrive"
        time.sleep(0.01)


def test_reports_move_the_run_and_the_study_and_a_finished_run_fills_up(capsys):
    with StudyProgress({"a_r0": 4.0, "a_r1": 4.0}, desc="demo", finished=["a_r1"]) as bars:
        report("a_r0", 1.0)
        report("elsewhere_r0", 3.0)  # not a run of this study: ignored
        report("a_r0", 2.5)
        _wait_for(lambda: bars.days_done == 4.0 + 2.5)  # the queue is drained by a thread
        bars.run_finished("a_r0")  # e.g. stopped early when the tumour was cleared
        report("a_r0", 3.0)  # late report of a finished run: moves nothing
    stderr = capsys.readouterr().err
    assert _last_overall(stderr) == "8.0/8.0"
    assert "runs 2/2" in stderr and "a_r0" in stderr


def test_no_bars_no_queue_and_reports_go_nowhere(capsys):
    with StudyProgress({"a_r0": 1.0}, desc="quiet", disable=True) as bars:
        assert bars.worker_queue() is None
        report("a_r0", 0.5)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("workers", [1, 2], ids=["this process", "worker processes"])
def test_every_report_of_every_run_reaches_the_bars(workers):
    """From worker processes too: without ``run_finished`` the study's bar reaches its total
    only if every run's reports arrived (the last one at the run's last step)."""
    study = load_study(STUDY, replicates=1, days=2)
    specs = run_specs(study)
    with (study_progress(study.name, specs) as bars,
          make_backend(workers, n_runs=len(specs), reports=bars.worker_queue) as backend):
        assert len(list(backend.map_unordered(run_one, specs))) == 2
        _wait_for(lambda: bars.days_done == pytest.approx(4.0))


def test_a_study_shows_its_runs_in_simulated_days(capsys):
    study = load_study(STUDY, replicates=1, days=2)
    run_study(study, workers=1)
    stderr = capsys.readouterr().err
    assert _last_overall(stderr) == "4.0/4.0" and "runs 2/2" in stderr
    assert re.search(r"small_blood_r0: [^\r\n]* ([\d.]+)/2 days", stderr)
    assert re.search(r"small_solid_r0: [^\r\n]* ([\d.]+)/2 days", stderr)
    run_study(study, workers=1, progress=False)
    assert capsys.readouterr().err == ""
