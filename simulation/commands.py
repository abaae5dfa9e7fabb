"""What each ``cartsim`` command does, once ``simulation.cli`` has parsed it: run, resume,
validate, schema, sweep, trial, fit, report, animate, export-vtk, app.

Each command checks its options, then hands over to the layers below: a run or a resume to
``simulation.execution.folder_run``, sweeps, trials and fits to ``simulation.study``, pictures
to ``simulation.viz``. Config errors print one line per problem, naming the file and the key
path, and exit with code 2 without a traceback and without writing anything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import zipfile
from pathlib import Path

from .config import (ConfigError, base_file_gaps, file_kind, json_schema, load_scenario,
                     load_study, read_yaml)
from .engine.jit import announce_compilation
from .execution import folder_run
from .execution.extras import require
from .execution.runner import record_snapshots
from .io.rundir import OutputExistsError, RunDir
from .io.snapshots import load_snapshot, snapshot_files
from .io.volume import write_pvd, write_vti
from .model import CarTModel, threads_cap
from .study.fit import fit as run_fit, load_fit
from .study.report import write_report
from .study.product import read_product
from .study.sweep import failure_summary, plan_sweep, resolve, run_sweep, sweep_json_schema
from .study.trial import format_readout, read_trial_file, run_trial
from .study.trial_sweep import READOUTS_FILE, resolve_trial_sweep, write_readouts
from .study.vpop import calibrate, load_virtual_population
from .viz.animation import animate, ffmpeg_available
from .viz.serve import serve_app

EXIT_CONFIG_ERROR = 2
#: the readouts `cartsim sweep` prints per point of a sweep over a trial (all: readouts.csv)
TRIAL_SWEEP_SHOWN = ("orr", "cr_rate", "pfs", "crs_grade3")
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of our output stopped (cartsim schema | head)


def _load(args: argparse.Namespace):
    """The study of ``args.config`` with ``--set``, ``--days``, ``--replicates``, ``--seed``,
    ``--scale``."""
    return load_study(args.config, list(args.overrides), days=getattr(args, "days", None),
                      replicates=getattr(args, "replicates", None),
                      seed=getattr(args, "seed", None), scale=getattr(args, "scale", None))


def _command_run(args: argparse.Namespace) -> int:
    every = positive_hours(args.checkpoint_every)
    _check_workers(args.workers)
    return folder_run.start(_load(args), str(args.config), list(args.overrides), args.out,
                            workers=args.workers, checkpoint_every_h=every, scale=args.scale,
                            force=args.force, quiet=args.quiet)


def _command_resume(args: argparse.Namespace) -> int:
    _check_workers(args.workers)
    return folder_run.resume(args.folder, workers=args.workers,
                             checkpoint_every_h=positive_hours(args.checkpoint_every),
                             force=args.force, quiet=args.quiet)


def positive_hours(value: float | None, option: str = "--checkpoint-every") -> float | None:
    """``value`` if it is a positive, finite number of hours (or None), else a ConfigError."""
    if value is None:
        return None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{option}: must be a positive number of simulated hours "
                          f"(got {value:g})")
    return float(value)


def _check_workers(workers: int | None) -> None:
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers: must be >= 1 (got {workers})")


def _refuse_command_line_values(args: argparse.Namespace, reason: str) -> None:
    """ConfigError naming the option (``--set`` or ``--scale``) if either was given: the file
    sets its own values (``reason``)."""
    if args.overrides or args.scale is not None:
        raise ConfigError(f"{'--set' if args.overrides else '--scale'}: {reason}")


def _command_validate(args: argparse.Namespace) -> int:
    """Check a file as what it is: a trial or a sweep (every run resolved), a fit, a study or
    scenario, or a base file that other configs extend (only the keys it leaves to them may be
    missing)."""
    kind = file_kind(read_yaml(Path(args.config), args.config))
    if kind == "trial":
        trial = read_trial_file(args.config)
        plan = plan_sweep(Path(args.config), trial.sweep())  # every patient validated
        product = f", the product {trial.product}" if trial.product else ""
        print(f"{args.config}: ok: trial {trial.name}: {len(plan.unique_runs)} patients of "
              f"{plan.sweep.bases[0]}{product}, {len(trial.properties)} varying properties")
        return 0
    if kind == "product":
        _refuse_command_line_values(args, "a product sets its own values")
        product, _ = read_product(Path(args.config))
        print(f"{args.config}: ok: CAR-T product {product.name}: {len(product.values)} fixed and "
              f"{len(product.varies)} varying keys")
        return 0
    if kind == "virtual population":
        _refuse_command_line_values(args, "a virtual population sets its pool in `pool`")
        vpop = load_virtual_population(args.config)
        print(f"{args.config}: ok: virtual population {vpop.file.name}: a pool of "
              f"{vpop.pool.patients} patients of {vpop.file.model}, weighted to "
              f"{len(vpop.published)} published readouts "
              f"({', '.join(p.key for p in vpop.published)})")
        return 0
    if kind == "fit":
        _refuse_command_line_values(args, "a fit sets values in its own `set` and `scale`")
        spec = load_fit(args.config)
        obs = spec.observations
        observed = (f"readouts {', '.join(obs.table['scenario'])} of a cohort per particle"
                    if spec.is_trial else f"observations of {obs.column} in "
                    f"{obs.table['scenario'].nunique()} scenario(s)")
        print(f"{args.config}: ok: fit {spec.fit.name}: {len(obs.table)} {observed}, "
              f"{len(spec.keys)} parameter(s) ({', '.join(spec.keys)}), "
              f"{spec.fit.population_size} particles x up to {spec.fit.generations} "
              "generations")
        return 0
    if kind == "sweep":
        _refuse_command_line_values(args, "a sweep sets values in its own `overrides`")
        cohorts = resolve_trial_sweep(args.config)
        if cohorts is not None:
            print(f"{args.config}: ok: sweep {cohorts.sweep.name} over the trial "
                  f"{cohorts.cohorts[0].name}: {len(cohorts.points)} design points, each a "
                  f"cohort ({len(cohorts.plan.unique_runs)} distinct patients in all, "
                  f"{cohorts.sweep.design.method} design)")
            return 0
        plan = resolve(args.config)
        sweep = plan.sweep
        points = len({run.point_id for run in plan.runs})
        print(f"{args.config}: ok: sweep {sweep.name}: {points} design points x "
              f"{len(sweep.bases)} base(s) x {sweep.replicates} replicate(s) = "
              f"{len(plan.unique_runs)} runs ({sweep.design.method} design)")
        return 0
    gaps = None if args.overrides or args.scale is not None else base_file_gaps(args.config)
    if gaps:
        print(f"{args.config}: ok: a base file; the configs that extend it give "
              f"{', '.join(gaps)} (it cannot run by itself)")
        return 0
    study = _load(args)
    for scenario in study.scenarios:
        lat = scenario.lattice
        print(f"{args.config}: ok: {scenario.name} ({scenario.tumor_type}), "
              f"{lat.label} sites, {scenario.tumor.initial_cells} cancer cells, "
              f"{scenario.time.duration_days:g} days, "
              f"{len(scenario.dosing.doses)} dose(s)")
    print(f"{study.replicates} replicate(s) from seed {study.seed}")
    return 0


def _command_schema(args: argparse.Namespace) -> int:
    schema = sweep_json_schema() if args.kind == "sweep" else json_schema(args.kind)
    print(json.dumps(schema, indent=2))
    return 0


def _command_sweep(args: argparse.Namespace) -> int:
    _check_workers(args.workers)
    # every run (a sweep over a trial: every patient of every point) validated before any starts
    cohorts = resolve_trial_sweep(args.sweep, args.overrides, replicates=args.replicates,
                                  days=args.days)
    plan = cohorts.plan if cohorts is not None else resolve(
        args.sweep, args.overrides, replicates=args.replicates, days=args.days)
    out = args.out if args.out is not None else Path("results") / plan.sweep.name
    announce_compilation()  # before the progress bar, not inside it
    try:
        outcome = run_sweep(args.sweep, out, workers=args.workers,
                            scheduler=args.scheduler, quiet=args.quiet, plan=plan)
    except KeyboardInterrupt:
        return _interrupted(f"finished runs are kept in {out}")
    ran = outcome.done + len(outcome.failed)
    print(f"{outcome.total} runs ({outcome.skipped} already done, {outcome.done} done now, "
          f"{len(outcome.failed)} failed) in {outcome.seconds:.1f} s"
          + (f", {outcome.runs_per_minute:.0f} runs/min" if ran else "") + f" -> {out}")
    if cohorts is not None:
        table = write_readouts(out, cohorts)
        shown = ["point_id", *cohorts.sweep.parameters, "patients_done", *TRIAL_SWEEP_SHOWN]
        print(f"readouts per point ({READOUTS_FILE}; rates as fractions):")
        print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return _exit_code(outcome)


def _interrupted(kept: str, then: str = "resume") -> int:
    """Ctrl-C during a sweep, trial or fit: what is kept and how to go on; exit code 130."""
    print(f"cartsim: interrupted; {kept}; rerun the same command to {then}", file=sys.stderr)
    return EXIT_INTERRUPTED


def _exit_code(outcome) -> int:
    """1 if runs of a sweep or trial ``outcome`` failed (their summary printed), else 0."""
    summary = failure_summary(outcome)
    if summary:
        print(summary, file=sys.stderr)
    return 1 if outcome.failed else 0


def _command_trial(args: argparse.Namespace) -> int:
    _check_workers(args.workers)
    announce_compilation()
    try:
        result = run_trial(args.trial, args.out, workers=args.workers, scheduler=args.scheduler,
                           patients=args.patients, quiet=args.quiet, product=args.product,
                           seed=args.seed)
    except KeyboardInterrupt:
        return _interrupted("finished patients are kept")
    outcome = result.outcome
    print(f"{outcome.total} patients ({outcome.skipped} already done, {outcome.done} done now, "
          f"{len(outcome.failed)} failed) in {outcome.seconds:.1f} s -> {result.out}")
    for readout in result.readouts:
        print(f"  {readout.label}: {format_readout(readout)}")
    return _exit_code(outcome)


def _command_fit(args: argparse.Namespace) -> int:
    _check_workers(args.workers)
    if file_kind(read_yaml(Path(args.fit), args.fit)) == "virtual population":
        return _command_vpop(args)
    load_fit(args.fit)  # a bad fit or data file: its error before anything else
    announce_compilation()
    try:
        result = run_fit(args.fit, args.out, workers=args.workers, scheduler=args.scheduler,
                         quiet=args.quiet)
    except KeyboardInterrupt:
        return _interrupted("finished generations are kept", "continue")
    print(result.intervals().to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"{int(result.populations['simulations'].sum())} simulations in "
          f"{len(result.populations)} generations, {result.seconds:.0f} s -> {result.folder}")
    return 0


def _command_vpop(args: argparse.Namespace) -> int:
    """``cartsim fit VPOP.yaml``: simulate (or finish) the pool, weight it, report."""
    load_virtual_population(args.fit)  # a bad file: its error before anything else
    announce_compilation()
    try:
        result = calibrate(args.fit, args.out, workers=args.workers, scheduler=args.scheduler,
                           quiet=args.quiet)
    except KeyboardInterrupt:
        return _interrupted("finished pool patients are kept")
    outcome = result.outcome
    print(f"pool: {outcome.total} patients ({outcome.skipped} cached, {outcome.done} simulated "
          f"now, {len(outcome.failed)} failed); effective sample size "
          f"{result.weighting.effective_size:.0f}")
    for row in result.readouts.itertuples():
        print(f"  {row.label}: pool {100 * row.pool:.0f} % -> weighted {100 * row.weighted:.0f}"
              f" % (published {100 * row.published:.0f} %, band {100 * row.band_low:.0f}-"
              f"{100 * row.band_high:.0f} %)")
    print(f"{result.seconds:.1f} s -> {result.folder}")
    return _exit_code(outcome)


def _command_report(args: argparse.Namespace) -> int:
    written = write_report(args.folder, args.out)
    for path in written:
        print(path)
    return 0


def _snapshot_folders(folder: Path, runs: list[str]) -> dict[str, Path]:
    """Run name -> folder of snapshot files: the ``runs`` (default: replicate 0 of each
    scenario) of an output folder of cartsim run, or {"": folder} for a folder of files."""
    available = RunDir(folder).snapshot_folders()
    if not available:
        if (folder / "summary.csv").exists():
            raise ConfigError(f"{folder}: its runs kept no snapshots; run the config again "
                              "with --set time.snapshot_every_h=12 (hours between pictures)")
        if runs:
            raise ConfigError(f"--run: {folder} is not an output folder of cartsim run")
        return {"": folder}
    missing = [run for run in runs if run not in available]
    if missing:
        raise ConfigError(f"--run: {folder} has no snapshots of {', '.join(missing)} (it has "
                          f"{', '.join(available)})")
    return {run: available[run] for run in runs} if runs else {
        run: path for run, path in available.items() if run.endswith("_r0")}


def _command_animate(args: argparse.Namespace) -> int:
    if args.record:
        scenario = load_scenario(args.record, list(args.overrides))
        record_snapshots(CarTModel(scenario, seed=args.seed), args.folder,
                         every_h=positive_hours(args.snapshot_every, "--snapshot-every"))
    folders = _snapshot_folders(args.folder, args.runs)
    if args.out is not None and len(folders) > 1:
        raise ConfigError(f"--out: names one file, but {len(folders)} runs would be animated; "
                          "choose one with --run NAME")
    fmt = args.format if args.format != "auto" else "mp4" if ffmpeg_available() else "gif"
    for run, snapshots in folders.items():
        out = args.out or (args.folder / f"{run}.{fmt}" if run else None)
        try:
            print(animate(snapshots, out, fps=args.fps, fmt=fmt))
        except (FileNotFoundError, RuntimeError) as err:
            raise ConfigError(str(err)) from None
    return 0


def _load_snapshot_file(path: Path) -> dict:
    """The arrays of a snapshot file; ConfigError if it is missing or not an .npz file."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        return load_snapshot(path)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    except (ValueError, EOFError, zipfile.BadZipFile):
        raise ConfigError(f"{path}: not a snapshot file (an .npz written by cartsim)") from None


def _command_export_vtk(args: argparse.Namespace) -> int:
    jobs = []  # (snapshot file, .vti file, run name or "")
    for source in args.sources:
        if source.is_dir():
            out = args.out or source / "vtk"
            for run, folder in _snapshot_folders(source, args.runs).items():
                jobs += [(file, out / run / f"{file.stem}.vti", run)
                         for file in snapshot_files(folder)]
        else:
            jobs.append((source, (args.out or source.parent) / f"{source.stem}.vti", ""))
    targets = [target for _, target, _ in jobs]
    repeated = [target for target in targets if targets.count(target) > 1]
    if repeated:
        raise ConfigError(f"{repeated[0]}: more than one snapshot would be written here (same "
                          "file name); export them into separate --out folders")
    series: dict[Path, list[tuple[float, Path]]] = {}
    for source, target, run in jobs:
        snapshot = _load_snapshot_file(source)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            print(write_vti(snapshot, target))
        except ValueError as err:  # arrays missing
            raise ConfigError(f"{source}: {err}") from None
        except OSError as err:
            raise ConfigError(f"{target}: cannot write: {err}") from None
        if run:
            series.setdefault(target.parent.with_suffix(".pvd"), []).append(
                (float(snapshot["time_days"]), target))
    for collection, frames in series.items():
        print(write_pvd(frames, collection))
    return 0


def _command_app(args: argparse.Namespace) -> int:
    require("viz", "the interactive view (cartsim app)")
    return serve_app(args.host, args.port)


def dispatch(args: argparse.Namespace) -> int:
    """Run the command ``args`` holds (parsed by ``simulation.cli``); returns the exit code.
    A ConfigError is one line per problem and exit code 2, never a traceback."""
    commands = {"run": _command_run, "validate": _command_validate, "schema": _command_schema,
                "sweep": _command_sweep, "trial": _command_trial, "report": _command_report,
                "animate": _command_animate, "app": _command_app, "resume": _command_resume,
                "export-vtk": _command_export_vtk, "fit": _command_fit}
    try:
        threads_cap()  # a bad $CARTSIM_THREADS stops here, before any output folder exists
        code = commands[args.command](args)
        sys.stdout.flush()  # a reader that stopped (cartsim schema | head) fails here, caught
        return code
    except BrokenPipeError:
        # not an error: the reader has what it wanted; keep the exit-time flush quiet too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except (ConfigError, OutputExistsError) as err:
        print(f"cartsim: error: {err}".replace("\n", "\ncartsim: error: "), file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except KeyboardInterrupt:
        print("cartsim: interrupted; no output folder was written", file=sys.stderr)
        return EXIT_INTERRUPTED
