"""Population-scale wall time: whole trials and a virtual population, run as a user runs them.

    python benchmarks/population.py                          # ELIANA-like 200 + 1,000 patients
                                                             # and the ELIANA virtual population
                                                             # (~1 h on 2 cores)
    python benchmarks/population.py --patients 200 --no-vpop # one trial (~6 min)
    python benchmarks/population.py --baseline e4d9f92       # each also with that revision

``benchmarks/run.py`` times one patient at a time and projects trials from it; this times what
the projection stands for. Each measurement is ``simulation.trial`` (``cartsim trial``) or
``study.vpop.calibrate`` (``cartsim fit configs/vpop/eliana.yaml``) on every core, into an
empty temporary folder, in a fresh process that imports the package measured: this checkout's,
or with ``--baseline REV`` that revision's (unpacked by ``run.unpack_baseline``) measured
right after it in the same run. The kernels are compiled before the clock starts (a 2-patient
trial into another folder); worker start-up, the patients, the weights and every output file
are inside it. The virtual population is timed twice: its pool simulated from nothing, then a
rerun from the cached pool (weights, report, figure, drawn cohort).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from run import unpack_baseline

ROOT = Path(__file__).resolve().parent.parent

#: what one measurement runs, in a fresh process inside the checkout measured; prints JSON
PROGRAM = """
import json, sys, tempfile, time
from pathlib import Path
from simulation.study.trial import run_trial
from simulation.study.vpop import calibrate

kind, config, patients = sys.argv[1], sys.argv[2], int(sys.argv[3])
# the kernels the measured patients call: the trial's own (a virtual population: ELIANA's)
warm = config if kind == "trial" else "configs/trials/b_all_eliana.yaml"
with tempfile.TemporaryDirectory() as folder:
    run_trial(warm, out=Path(folder) / "warm-up", patients=2)
    start = time.perf_counter()
    if kind == "trial":
        result = run_trial(config, out=Path(folder) / "trial", patients=patients)
        done = len(result.patients)
        seconds = [time.perf_counter() - start]
    else:
        calibrate(config, out=Path(folder) / "vpop")
        seconds = [time.perf_counter() - start]
        calibrate(config, out=Path(folder) / "vpop")
        seconds.append(time.perf_counter() - start - seconds[0])
        done = patients
print(json.dumps({"patients": done, "seconds": seconds}))
"""


def measure(checkout: Path, kind: str, config: str, patients: int) -> dict:
    """Run ``PROGRAM`` for one measurement with ``checkout``'s simulation package."""
    out = subprocess.run([sys.executable, "-c", PROGRAM, kind, config, str(patients)],
                         capture_output=True, text=True, cwd=checkout, check=True,
                         env={**os.environ, "PYTHONPATH": str(checkout)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(label: str, result: dict) -> None:
    """One printed line: wall time, and per patient where the measurement simulated them."""
    patients, seconds = result["patients"], result["seconds"]
    line = f"{label}: {seconds[0] / 60:.1f} min ({seconds[0] / patients:.2f} s per patient)"
    if len(seconds) > 1:
        line += f", rerun from the cached pool {seconds[1]:.1f} s"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trial", default="b_all_eliana",
                        help="a trial of configs/trials/ (default: b_all_eliana)")
    parser.add_argument("--patients", type=int, nargs="+", default=[200, 1000],
                        help="cohort sizes to time (default: 200 1000)")
    parser.add_argument("--no-vpop", action="store_true",
                        help="skip the ELIANA virtual population (configs/vpop/eliana.yaml)")
    parser.add_argument("--baseline", metavar="REV",
                        help="also measure this git revision, in the same run")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp()) if args.baseline else None
    baseline = unpack_baseline(args.baseline, folder).parent.parent if folder else None
    checkouts = [("now", ROOT)] + ([(f"baseline {args.baseline}", baseline)] if baseline else [])
    print(f"cartsim population benchmark, {os.cpu_count()} cores (all busy), kernels cached")
    try:
        for patients in args.patients:
            for name, checkout in checkouts:
                report(f"{args.trial}, {patients:,} patients, {name}",
                       measure(checkout, "trial", f"configs/trials/{args.trial}.yaml",
                               patients))
        if not args.no_vpop:
            vpop = "configs/vpop/eliana.yaml"
            pool = yaml.safe_load((ROOT / vpop).read_text())["pool"]["patients"]
            for name, checkout in checkouts:
                report(f"ELIANA virtual population, pool of {pool} from nothing, {name}",
                       measure(checkout, "vpop", vpop, pool))
    finally:
        if folder:
            shutil.rmtree(folder)


if __name__ == "__main__":
    main()
