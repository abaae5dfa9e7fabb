"""cartsim performance benchmark: prints one table.

    python benchmarks/run.py            # the table of docs/performance.md (~12 min on 2 cores)
    python benchmarks/run.py --full     # the same plus solid 256^3 (~25 min; 256^3 takes most)
    python benchmarks/run.py --quick    # smaller sizes and fewer steps (~6 min)
    python benchmarks/run.py --baseline e4d9f92   # also that revision's first run and patients
    python benchmarks/run.py --population         # then whole trials of 200 and 1,000 patients
                                                  # and the virtual population (population.py)

Every measurement runs in a fresh subprocess, so peak memory (max RSS) and JIT compile times are
those of one simulation. Compile time "cold" uses an empty numba cache directory, "cached" the
same directory again. ``--baseline REV`` also measures the first run and the virtual patients of
git revision REV (unpacked into a temporary folder) in the same run, on the same host. Timing:
warm-up steps first, garbage collection off, every step timed; blocks of whole simulated hours, so the mean includes the hourly field updates in their share (the
median step is one without). Throughput (cell-updates/s) is from the mean. A cell-update is one
live cell visited once in one time step (a step is the migration sweeps plus the interaction
sweep). Whole runs (the killing-assay dish, a virtual-cohort patient) are timed end to end. The same rules written with plain Mesa
agents (benchmarks/mesa_reference.py) are timed on a small lattice in the same run. The
interactive view (simulation.viz.app; needs the ``viz`` extra) is timed in frames per second.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
sys.path.insert(0, str(ROOT))  # measure the simulation package of this checkout


#: benchmark cases: shipped scenario, dimensions
CASES = {"solid": ("gbm_solid", 2), "blood": ("b_all_cd19", 2), "solid3d": ("gbm_spheroid_3d", 3),
         # the blood case with a 1:1 CD4:CD8, half memory-like product (per-class records and
         # the CD4-help check), and with two pooled products on two antigens
         "blood_mix": ("car_design/b_all_memory_enriched", 2),
         "blood_pooled": ("car_design/b_all_pooled_cd19_cd22", 2)}


def scenario_for(case: str, size: int):
    """A shipped scenario (``CASES``) on a lattice of ``size`` sites per side (2D or 3D).

    Tumour cells, normal-cell densities and the E:T dose keep the shipped proportions
    (tumour = 30 % of sites), so bigger lattices hold proportionally more cells.
    """
    from simulation.config import load_scenario

    name, dimensions = CASES[case]
    sides = [f"lattice.width={size}", f"lattice.height={size}"]
    if dimensions == 3:
        sides.append(f"lattice.depth={size}")
    return load_scenario(CONFIGS / f"{name}.yaml", sides + [
        f"tumor.initial_cells={int(0.3 * size ** dimensions)}"])


def case_label(case: str, size: int) -> str:
    """Table label, e.g. ``solid 256^2`` or ``solid 64^3``."""
    name, dimensions = CASES[case]
    return f"{case.removesuffix('3d')} {size}^{dimensions}"


def measure_kernel(case: str, size: int, threads: int, steps: int, repeats: int) -> dict:
    """Time CarTModel.step on one scenario; returns the numbers of one table row."""
    import numba

    from simulation.model import CarTModel

    numba.set_num_threads(threads)
    scenario = scenario_for(case, size)
    clock = time.perf_counter()
    # lattice, cells, and the fields' first steady state; kernel sweeps and field solves on
    # ``threads`` threads
    model = CarTModel(scenario, seed=1, threads=threads)
    setup_s = time.perf_counter() - clock
    model.step()  # first step includes JIT compile or cache load
    first_step_s = time.perf_counter() - clock
    for _ in range(3):
        model.step()
    cells = []
    step_s = []
    gc.disable()
    for _ in range(repeats):
        for _ in range(steps):
            start = time.perf_counter()
            model.step()
            step_s.append(time.perf_counter() - start)
        cells.append(int((model.lattice.cells["cell_type"] != 0).sum()))
    gc.enable()
    mean_s = statistics.fmean(step_s)  # every block holds its share of field updates
    live = statistics.mean(cells)
    dt_h = scenario.time.dt_min / 60.0
    return {
        "setup_s": setup_s,
        "first_step_s": first_step_s,
        "ms_per_step": mean_s * 1e3,
        "median_ms_per_step": statistics.median(step_s) * 1e3,
        "live_cells": live,
        "cell_updates_per_s": live / mean_s,
        "us_per_cell_per_sim_hour": mean_s / live / dt_h * 1e6,
        "bytes_per_site": model.lattice.bytes_per_site,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "steps_per_day": 1440.0 / scenario.time.dt_min,
    }


#: whole runs timed as a user runs them (seconds per run -> runs per minute): case -> scenario
WHOLE_RUNS = {"dish": "killing_assay", "cohort": "lbcl_node"}


def measure_run(case: str, days: float | None, threads: int | None) -> dict:
    """Wall time of one complete run of a shipped scenario at its full size (kernels cached):
    the killing-assay dish (200^2, 4 days) or one virtual-cohort patient (the LBCL node of
    configs/sweeps/lbcl_virtual_cohort.yaml, 200^2, 42 days). ``threads``: the kernel's, or
    None for the model's own choice (``default_threads``: all cores for these lattices)."""
    from simulation.config import load_scenario
    from simulation.model import CarTModel

    overrides = [] if days is None else [f"time.duration_days={days}"]
    scenario = load_scenario(CONFIGS / f"{WHOLE_RUNS[case]}.yaml", overrides)
    CarTModel(scenario, seed=2, threads=threads).step()  # load the kernels before the clock
    start = time.perf_counter()
    model = CarTModel(scenario, seed=1, threads=threads)
    model.run()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "steps": model.step_index,
            "days": model.time_min / 1440.0, "runs_per_min": 60.0 / seconds,
            "threads": model.threads}


#: the trials whose patients are timed: case -> trial file (configs/trials/)
TRIAL_FILES = {"b_all": "b_all_eliana", "lbcl": "lbcl_zuma1"}


def measure_trial(case: str, patients: int) -> dict:
    """Wall time per patient of the first ``patients`` patients of a shipped trial, simulated
    one after the other in this process (1 thread, kernels loaded first): what a trial, a
    virtual-population pool or a cohort fit pays per patient."""
    from simulation.model import kernel_threads_at_most
    from simulation.study.trial import read_trial_file, run_cohort

    path = CONFIGS / "trials" / f"{TRIAL_FILES[case]}.yaml"
    # one kernel thread, as in a worker of a trial's pool (the model would take all cores)
    with kernel_threads_at_most(1):
        run_cohort(path, read_trial_file(path, 2).model_copy(update={"seed": 90_000}))
        start = time.perf_counter()
        table = run_cohort(path, read_trial_file(path, patients))
        seconds = time.perf_counter() - start
    return {"patients": len(table), "seconds_per_patient": seconds / len(table)}


def measure_weighting(patients: int, readouts: int) -> dict:
    """Wall time of the prevalence weights (analysis.vpop) of a pool of ``patients`` with
    ``readouts`` share readouts, each with a band the pool misses (random outcomes, seed 1)."""
    import numpy as np

    from simulation.analysis.vpop import Band, prevalence_weights

    rng = np.random.default_rng(1)
    shares, bands = {}, []
    for k in range(readouts):
        yes = rng.random(patients) < rng.uniform(0.2, 0.8)
        counted = rng.random(patients) < 0.9
        share = yes[counted].mean()
        shares[f"r{k}"] = (yes, counted)
        bands.append(Band(f"r{k}", min(share + 0.03, 0.99), min(share + 0.08, 1.0)))
    start = time.perf_counter()
    result = prevalence_weights(shares, bands)
    return {"seconds": time.perf_counter() - start, "effective_size": result.effective_size}


def measure_mesa(size: int, steps: int) -> dict:
    """Time the plain-Mesa twin on the solid scenario (same layout, rates, CAR-T dose)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from mesa_reference import MesaReferenceModel

    scenario = scenario_for("solid", size)
    n_car_t = max(1, round(0.01 * scenario.tumor.initial_cells))
    model = MesaReferenceModel(scenario, seed=1, n_car_t=n_car_t)
    model.step()
    gc.disable()
    start = time.perf_counter()
    for _ in range(steps):
        model.step()
    elapsed = (time.perf_counter() - start) / steps
    gc.enable()
    live = len(model.agents)
    return {"ms_per_step": elapsed * 1e3, "live_cells": live,
            "cell_updates_per_s": live / elapsed,
            "us_per_cell_per_sim_hour": elapsed / live / (scenario.time.dt_min / 60.0) * 1e6,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


#: shipped 200x200 scenarios whose interactive view is timed
VIEW_SCENARIOS = ("b_all_cd19", "gbm_solid")


def measure_view(scenario: str, frames: int) -> dict:
    """Frames per second of the interactive view: ``app.STEPS_PER_FRAME`` model steps plus the
    lattice and field pictures per frame, on a shipped scenario at its full size."""
    from simulation.viz.app import ViewModel, measure_frame_rate

    model = ViewModel(scenario=scenario)
    measure_frame_rate(model, frames=2)  # warm-up: the first pictures set up matplotlib
    return measure_frame_rate(model, frames=frames)


def _subprocess(args: list[str], env: dict | None = None, script: str | Path = __file__
                ) -> dict:
    """Run one measurement of ``script`` (this file, or a baseline's) in a fresh process.

    It runs in the script's checkout, with that checkout on ``PYTHONPATH``, so that the
    processes it starts (the model's second compile process, ``python -c``) import the same
    simulation package as it does."""
    checkout = str(Path(script).resolve().parent.parent)
    out = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": checkout, **(env or {})},
                         cwd=checkout, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def unpack_baseline(revision: str, folder: Path) -> Path:
    """Unpack git revision ``revision`` of this checkout into ``folder``; returns its
    benchmarks/run.py, which measures that revision's simulation package (a baseline measured
    in the same run, on the same host, as the code here)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "benchmarks" / "run.py"


def compile_times(script: str | Path = __file__) -> tuple[float, float]:
    """Seconds to the end of the first step with an empty numba cache, then with it filled."""
    with tempfile.TemporaryDirectory() as cache:
        env = {"NUMBA_CACHE_DIR": cache}
        args = ["--measure", "kernel", "--case", "solid", "--size", "64", "--threads", "1",
                "--steps", "1", "--repeats", "1"]
        cold = _subprocess(args, env, script)["first_step_s"]
        cached = _subprocess(args, env, script)["first_step_s"]
    return cold, cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer steps")
    parser.add_argument("--full", action="store_true", help="add solid 256^3 (~2.4 GB)")
    parser.add_argument("--baseline", metavar="REV",
                        help="also measure the first run and the virtual patients of this git "
                             "revision, in the same run (e.g. the commit before a change)")
    parser.add_argument("--population", action="store_true",
                        help="then time whole trials (200 and 1,000 patients) and the ELIANA "
                             "virtual population (benchmarks/population.py, ~1 h; with "
                             "--baseline, twice that)")
    parser.add_argument("--measure", choices=("kernel", "mesa", "view", "run", "trial",
                                                 "weighting"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--days", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--case", default="solid", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=20, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure == "kernel":
        print(json.dumps(measure_kernel(args.case, args.size, args.threads, args.steps,
                                        args.repeats)))
        return
    if args.measure == "mesa":
        print(json.dumps(measure_mesa(args.size, args.steps)))
        return
    if args.measure == "view":  # --case: a scenario name, --steps: frames
        print(json.dumps(measure_view(args.case, args.steps)))
        return
    if args.measure == "run":  # --case: dish or cohort; --threads 0: the model's own choice
        print(json.dumps(measure_run(args.case, args.days, args.threads or None)))
        return
    if args.measure == "trial":  # --case: b_all or lbcl, --size: patients
        print(json.dumps(measure_trial(args.case, args.size)))
        return
    if args.measure == "weighting":  # --size: pool patients, --steps: readouts
        print(json.dumps(measure_weighting(args.size, args.steps)))
        return

    baseline_folder = Path(tempfile.mkdtemp()) if args.baseline else None
    try:
        measure_all(args, unpack_baseline(args.baseline, baseline_folder)
                    if baseline_folder else None)
    finally:
        if baseline_folder:
            shutil.rmtree(baseline_folder)
    if args.population:
        print("\nwhole trials and the virtual population, all cores (benchmarks/population.py):",
              flush=True)
        subprocess.run([sys.executable, str(Path(__file__).with_name("population.py"))]
                       + (["--baseline", args.baseline] if args.baseline else []), check=True)


def measure_all(args: argparse.Namespace, baseline: Path | None) -> None:
    """Print the whole table; ``baseline``: the run.py of ``args.baseline``, or None."""
    # steps per timed block: multiples of 10, so each block holds its share of field solves
    # (every 60 min = 10 steps of 6 min)
    cases = ([("solid", 256, 40), ("solid", 512, 10), ("blood", 200, 40), ("solid3d", 64, 10)]
             if args.quick else
             [("solid", 256, 100), ("solid", 512, 30), ("solid", 1024, 10), ("blood", 200, 100),
              ("solid3d", 64, 20), ("solid3d", 128, 10)]
             + ([("solid3d", 256, 10)] if args.full else []))
    mesa_size, mesa_steps = (48, 3) if args.quick else (64, 5)
    print(f"cartsim benchmark on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    cold, cached = compile_times()
    print(f"JIT compile + first step: cold {cold:.1f} s, cached {cached:.2f} s")
    if baseline:
        cold, cached = compile_times(baseline)
        print(f"  baseline {args.baseline}: cold {cold:.1f} s, cached {cached:.2f} s")
    print()

    header = (f"{'scenario':<14}{'threads':>8}{'cells':>10}{'ms/step':>10}{'median':>8}"
              f"{'cell-upd/s':>12}{'us/cell/h':>11}{'B/site':>8}{'RSS MB':>8}{'set-up s':>9}"
              f"{'30 d (s)':>10}")
    print(header)
    print("-" * len(header))
    rows = {}
    for case, size, steps in cases:
        for threads in (1, 2):
            row = _subprocess(["--measure", "kernel", "--case", case, "--size", str(size),
                               "--threads", str(threads), "--steps", str(steps)])
            rows[(case, size, threads)] = row
            thirty_days = row["ms_per_step"] / 1e3 * row["steps_per_day"] * 30
            print(f"{case_label(case, size):<14}{threads:>8}{row['live_cells']:>10.0f}"
                  f"{row['ms_per_step']:>10.2f}{row['median_ms_per_step']:>8.2f}"
                  f"{row['cell_updates_per_s']:>12.3g}"
                  f"{row['us_per_cell_per_sim_hour']:>11.3f}{row['bytes_per_site']:>8}"
                  f"{row['peak_rss_mb']:>8.0f}{row['setup_s']:>9.1f}{thirty_days:>10.0f}")

    mesa = _subprocess(["--measure", "mesa", "--size", str(mesa_size),
                        "--steps", str(mesa_steps)])
    same = _subprocess(["--measure", "kernel", "--case", "solid", "--size", str(mesa_size),
                        "--threads", "1", "--steps", "200"])
    print(f"\nplain Mesa agents, solid {mesa_size}^2: {mesa['live_cells']} cells, "
          f"{mesa['ms_per_step']:.1f} ms/step, {mesa['cell_updates_per_s']:.3g} cell-updates/s, "
          f"{mesa['us_per_cell_per_sim_hour']:.1f} us/cell/h")
    print(f"kernel, same lattice, 1 thread: {same['cell_updates_per_s']:.3g} cell-updates/s "
          f"-> {same['cell_updates_per_s'] / mesa['cell_updates_per_s']:.0f}x plain Mesa")
    largest = max((k for k in rows if k[0] == "solid"), key=lambda k: (k[1], k[2]))
    best = rows[largest]["cell_updates_per_s"]
    print(f"kernel, solid {largest[1]}^2, {largest[2]} threads: {best:.3g} cell-updates/s "
          f"-> {best / mesa['cell_updates_per_s']:.0f}x plain Mesa")
    flat, block = (min(row["us_per_cell_per_sim_hour"] for key, row in rows.items()
                       if key[0] == case) for case in ("solid", "solid3d"))
    print(f"per cell and simulated hour, best of each: solid 2D {flat:.3f} us, solid 3D "
          f"{block:.3f} us ({block / flat:.1f}x)")

    print("\nwhole runs, 1 thread, kernels cached (what a sweep, a fit or a cohort repeats):")
    for case, label in (("dish", "killing-assay dish 200^2, 4 days"),
                        ("cohort", "virtual-cohort patient (LBCL node 200^2, 42 days)")):
        run = _subprocess(["--measure", "run", "--case", case]
                          + (["--days", "7"] if args.quick and case == "cohort" else []))
        print(f"{label}: {run['seconds']:.2f} s for {run['days']:.0f} days "
              f"({run['steps']} steps) -> {run['runs_per_min']:.1f} runs/min per core")
    # one dish on its own (a notebook, the app, `cartsim run` of one replicate): the model
    # picks its kernel threads (all cores for 200^2) and solves its fields one after the other
    run = _subprocess(["--measure", "run", "--case", "dish", "--threads", "0"])
    print(f"killing-assay dish on its own, the model's default threads ({run['threads']}): "
          f"{run['seconds']:.2f} s")
    if baseline:
        run = _subprocess(["--measure", "run", "--case", "dish", "--threads", "0"],
                          script=baseline)
        print(f"  baseline {args.baseline}: {run['seconds']:.2f} s "
              f"({run.get('threads', 'its default')} threads)")

    print("\nvirtual patients, 1 thread, kernels cached (trials, virtual-population pools):")
    patients = 4 if args.quick else 12
    for case in TRIAL_FILES:
        trial = _subprocess(["--measure", "trial", "--case", case, "--size", str(patients)])
        per = trial["seconds_per_patient"]
        print(f"{TRIAL_FILES[case]} patient (mean of the trial's first {trial['patients']}): "
              f"{per:.2f} s -> projected 200 patients {200 * per / 2 / 60:.1f} min, 1,000 "
              f"patients {1000 * per / 2 / 60:.1f} min on 2 cores (measured: --population)")
        if baseline:
            before = _subprocess(["--measure", "trial", "--case", case, "--size",
                                  str(patients)], script=baseline)["seconds_per_patient"]
            print(f"  baseline {args.baseline}: {before:.2f} s per patient")
        if case == "b_all":
            pool_minutes = 600 * per / 2 / 60
    for size in (600, 10_000):
        weighting = _subprocess(["--measure", "weighting", "--size", str(size), "--steps",
                                 "12"])
        print(f"prevalence weights, pool of {size:,}, 12 readouts: {weighting['seconds']:.2f} s "
              f"(effective sample size {weighting['effective_size']:.0f})")
    print(f"ELIANA virtual population (configs/vpop/eliana.yaml, 600 patients): pool "
          f"~{pool_minutes:.0f} min on 2 cores, then each rerun from the cached pool: the "
          "weights above plus the report")

    print("\ninteractive view (simulation.viz.app), full lattice, model steps + pictures per frame:")
    for scenario in VIEW_SCENARIOS:
        try:
            view = _subprocess(["--measure", "view", "--case", scenario,
                                "--steps", "10" if args.quick else "30"])
        except subprocess.CalledProcessError as err:
            print(f"{scenario}: not measured ({err.stderr.strip().splitlines()[-1]}; "
                  "pip install '.[viz]')")
            continue
        print(f"{scenario}: {view['frames_per_s']:.1f} frames/s (steps "
              f"{view['step_ms_per_frame']:.0f} ms + pictures "
              f"{view['render_ms_per_frame']:.0f} ms per frame)")


if __name__ == "__main__":
    main()
