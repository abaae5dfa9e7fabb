"""Progress in simulated days (``simulation.execution.progress``): one bar for the study, one per
run in flight, fed by the processes that step the runs."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from simulation.config import load_study
from simulation.execution import progress
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
    with StudyProgress({"a_r0": 4.0, "a_r1": 4.0}, desc="demo", finished=["a_r1"],
                       bars=True) as bars:
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


def test_a_study_shows_its_runs_in_simulated_days(capsys, monkeypatch):
    monkeypatch.setattr(progress, "draws_bars", lambda stream: True)  # as on a terminal
    study = load_study(STUDY, replicates=1, days=2)
    run_study(study, workers=1)
    stderr = capsys.readouterr().err
    assert _last_overall(stderr) == "4.0/4.0" and "runs 2/2" in stderr
    assert re.search(r"small_blood_r0: [^\r\n]* ([\d.]+)/2 days", stderr)
    assert re.search(r"small_solid_r0: [^\r\n]* ([\d.]+)/2 days", stderr)
    run_study(study, workers=1, progress=False)
    assert capsys.readouterr().err == ""


def test_without_a_terminal_progress_is_a_few_plain_lines(capsys):
    """Into a log file the bars wrote 1,587 lines of escape codes for one study."""
    runs = {f"a_r{i}": 10.0 for i in range(4)}
    with StudyProgress(runs, desc="logged") as bars:
        for day in range(1, 41):
            report(f"a_r{(day - 1) // 10}", (day - 1) % 10 + 1.0)
        _wait_for(lambda: bars.days_done == 40.0)
        for run in runs:
            bars.run_finished(run)
    lines = capsys.readouterr().err.splitlines()
    assert 10 <= len(lines) <= 12, lines  # one each 10 %, and the runs count at the end
    assert not any("\r" in line or "\x1b" in line for line in lines)
    assert lines[0].startswith("logged:  10% 4.0/40.0 simulated days")
    assert lines[-1].startswith("logged: 100% 40.0/40.0 simulated days, runs 4/4 [")


@pytest.mark.parametrize("bars", [True, False], ids=["bars", "plain lines"])
def test_the_time_left_leaves_out_the_compile_before_the_first_progress(capsys, bars):
    """Right after a 60 s compile the bars estimated <22:02:41> for a 3-minute study: the
    compile counted as progress time. The clock starts at the first report instead."""
    with StudyProgress({"a_r0": 10.0}, desc="eta", bars=bars) as study:
        time.sleep(3.0)  # compiling: no run reports yet
        report("a_r0", 1.0)
        _wait_for(lambda: study.days_done == 1.0)
        for day in range(2, 10):  # then 9 simulated days in ~0.9 s
            time.sleep(0.11)
            report("a_r0", float(day))
            _wait_for(lambda: study.days_done == float(day))
    stderr = capsys.readouterr().err
    left = re.findall(r"<(\d+):(\d+)" if bars else r"~(\d+):(\d+) left", stderr)
    assert left, stderr
    assert all(int(minutes) * 60 + int(seconds) <= 1 for minutes, seconds in left), left
