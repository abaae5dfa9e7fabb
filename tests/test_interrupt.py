"""Ctrl-C on ``cartsim run`` with worker processes: the real signal, the real process pool.

The in-process checks of interruption and resume are in test_checkpoint.py; this one sends
SIGINT to a running ``cartsim run --workers 2`` and checks that it stops its workers at once,
exits with 130 without a traceback, leaves the folder marked incomplete and says how to resume.
"""

import signal
import subprocess
import sys
import time
from pathlib import Path

#: four 120-day solid runs on a 160x160 lattice whose tumour outgrows its CAR-T: they cannot end
#: early, and take about a minute, so the signal finds them running even when a loaded machine
#: (the test suite on 2 cores) starves this process's polling for seconds. (The small study's
#: 40x40 runs ended in that window twice in full-suite runs, 2026-12-07.) They are interrupted
#: after their first checkpoint (day 6), so the length costs nothing.
STUDY = Path(__file__).parent / "data" / "long_study.yaml"
RESULTS = ("timeseries.csv", "summary.csv", "burden.png")


def test_ctrl_c_with_worker_processes_stops_them_and_says_how_to_resume(tmp_path):
    out = tmp_path / "interrupted"
    process = subprocess.Popen([sys.executable, "-m", "simulation", "run", str(STUDY), "--out",
                                str(out), "--quiet", "--workers", "2", "--checkpoint-every", "6"],
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out.is_dir() and list((out / "checkpoints").glob("[!.]*.npz"))):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends (here to the main process only)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].endswith(f"continue with: cartsim resume {out}"), err
    assert (out / "INCOMPLETE").exists()
    assert not any((out / name).exists() for name in RESULTS)
    # the workers are gone: nothing in the folder changes any more
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    time.sleep(1.0)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
