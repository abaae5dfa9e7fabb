"""The ``cartsim`` command: run, resume, validate, schema (and sweep, trial, report, animate, app,
export-vtk).

Config errors print one line per problem, naming the file and the key path, and exit with code 2
without a traceback and without writing anything. ``run`` writes its output folder as it goes
(``simulation.io.rundir``); Ctrl-C leaves it consistent and resumable with ``cartsim resume DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path


from .analysis.outcomes import response_counts
from .config import (ConfigError, base_file_gaps, check_memory, file_kind, json_schema,
                     load_scenario, load_study, read_yaml)
from .engine.jit import announce_compilation
from .io.files import clean_temporaries, write_text
from .io.provenance import code_fingerprint, package_version
from .io.rundir import (MANIFEST_FILE, OutputExistsError, RunDir, create, default_output_dir,
                        finished_manifest, new_manifest, read_manifest, remove_leftovers, run_name)
from .io.snapshots import load_snapshot, record_snapshots, snapshot_files
from .io.volume import write_pvd, write_vti
from .model import CarTModel
from .study.publish import finish
from .study.fit import fit as run_fit, load_fit
from .study.report import write_report
from .study.runner import run_into_folder, run_specs, study_progress
from .study.extras import require
from .study.sweep import failure_summary, plan_sweep, resolve, run_sweep, sweep_json_schema
from .study.trial import format_interval, format_value, read_trial_file, run_trial
from .study.trial_sweep import READOUTS_FILE, resolve_trial_sweep, write_readouts
from .viz.animation import animate, ffmpeg_available

EXIT_CONFIG_ERROR = 2
#: the readouts `cartsim sweep` prints per point of a sweep over a trial (all: readouts.csv)
TRIAL_SWEEP_SHOWN = ("orr", "cr_rate", "pfs", "crs_grade3")
EXIT_INTERRUPTED = 130
#: the start of the warning Solara gives for a page not served as localhost (``_command_app``)
SOLARA_COOKIE_WARNING = "Cookies with samesite=none require https"
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of our output stopped (cartsim schema | head)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cartsim", description="Agent-based simulation of CAR-T cell therapy.")
    parser.add_argument("--version", action="version", version=f"cartsim {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a scenario or a study and write results and plots")
    run.add_argument("config", help="scenario or study YAML file")
    run.add_argument("--out", type=Path, help="output folder (default: results/<name>[-N])")
    run.add_argument("--force", action="store_true", help="replace an existing --out folder")
    run.add_argument("--seed", type=int, help="seed of replicate 0 (replicate r: seed + r)")
    run.add_argument("--replicates", type=int, help="replicates per scenario")
    run.add_argument("--days", type=float, help="simulated days (time.duration_days)")
    run.add_argument("--set", dest="overrides", action="append", default=[],
                     metavar="KEY.PATH=VALUE", help="override a config value (repeatable)")
    run.add_argument("--scale", type=float, metavar="F",
                     help="F times the lattice's sites, every cell count and dose in cells "
                     "scaled with them (0.1: a quick look)")
    run.add_argument("--workers", type=int, help="worker processes (default: all cores)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--checkpoint-every", type=float, metavar="H",
                     help="save each running simulation every H simulated hours, so an "
                     "interrupted run continues from there (cartsim resume DIR)")

    validate = sub.add_parser("validate", help="check a config file (scenario, study, assay, "
                              "sweep or base file) and print a summary")
    validate.add_argument("config", help="YAML file of any kind")
    validate.add_argument("--set", dest="overrides", action="append", default=[],
                          metavar="KEY.PATH=VALUE",
                          help="override a config value before checking (repeatable)")
    validate.add_argument("--scale", type=float, metavar="F",
                          help="check it as `cartsim run --scale F` would run it")

    schema = sub.add_parser("schema", help="print the JSON Schema of config files")
    schema.add_argument("--kind", choices=("scenario", "study", "sweep"), default="scenario",
                        help="which kind of file (default: scenario)")
    _add_sweep_parsers(sub)
    _add_view_parsers(sub)
    _add_export_parser(sub)
    _add_resume_parser(sub)
    _add_fit_parser(sub)
    return parser


def _add_fit_parser(sub) -> None:
    """``cartsim fit``: ABC-SMC calibration to data (docs/calibration.md)."""
    fit = sub.add_parser("fit", help="fit parameters to data (ABC-SMC); rerun to resume")
    fit.add_argument("fit", help="fit YAML file (model, data, parameters with priors)")
    fit.add_argument("--out", type=Path, help="fit folder (default: results/<fit name>); "
                     "rerunning the same command on it continues from the last generation")
    fit.add_argument("--workers", type=int, help="local worker processes (default: all cores)")
    fit.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                     help="run the simulations on this Dask distributed scheduler instead")
    fit.add_argument("--quiet", action="store_true", help="no per-generation messages")


def _add_resume_parser(sub) -> None:
    """``cartsim resume DIR``: finish an interrupted ``cartsim run``."""
    resume = sub.add_parser("resume", help="continue an interrupted run in its output folder")
    resume.add_argument("folder", type=Path, help="output folder of the interrupted run")
    resume.add_argument("--workers", type=int, help="worker processes (default: all cores)")
    resume.add_argument("--checkpoint-every", type=float, metavar="H",
                        help="checkpoint interval in simulated hours (default: as at the start)")
    resume.add_argument("--force", action="store_true",
                        help="resume even if the simulation code changed since the start")
    resume.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_sweep_parsers(sub) -> None:
    """``cartsim sweep``, ``cartsim trial`` and ``cartsim report`` (docs/sweeps.md,
    docs/trials.md)."""
    sweep = sub.add_parser("sweep", help="run a parameter sweep; rerun to resume")
    sweep.add_argument("sweep", help="sweep YAML file")
    _add_folder_and_pool_options(sweep, "sweep", "runs")
    sweep.add_argument("--replicates", type=int, help="replicates per design point")
    sweep.add_argument("--days", type=float, help="simulated days (time.duration_days)")
    sweep.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY.PATH=VALUE",
                       help="override a value of every base scenario (repeatable)")
    trial = sub.add_parser("trial", help="run a virtual clinical trial; rerun to resume")
    trial.add_argument("trial", help="trial YAML file (configs/trials/)")
    _add_folder_and_pool_options(trial, "trial", "patients")
    trial.add_argument("--patients", type=int, help="number of patients (default: the file's)")
    report = sub.add_parser("report", help="tables and plots from a sweep folder")
    report.add_argument("folder", type=Path, help="sweep folder written by cartsim sweep")
    report.add_argument("--out", type=Path, help="report folder (default: FOLDER/report)")


def _add_folder_and_pool_options(parser: argparse.ArgumentParser, kind: str, what: str) -> None:
    """--out (a resumable folder of ``kind``), --workers, --scheduler, --quiet."""
    parser.add_argument("--out", type=Path,
                        help=f"{kind} folder (default: results/<{kind} name>); rerunning the "
                        f"same command on it skips the {what} already there")
    parser.add_argument("--workers", type=int, help="local worker processes (default: all cores)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="run on this Dask distributed scheduler instead")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _load(args: argparse.Namespace):
    """The study of ``args.config`` with ``--set``, ``--days``, ``--replicates``, ``--seed``,
    ``--scale``."""
    return load_study(args.config, list(args.overrides), days=getattr(args, "days", None),
                      replicates=getattr(args, "replicates", None),
                      seed=getattr(args, "seed", None), scale=getattr(args, "scale", None))


def _command_run(args: argparse.Namespace) -> int:
    every = positive_hours(args.checkpoint_every)
    _check_workers(args.workers)
    study = _load(args)
    overrides = list(args.overrides)
    _check_parallel_memory(study, args.workers, str(args.config))
    out = args.out if args.out is not None else default_output_dir(study.name)
    manifest = new_manifest(study, str(args.config), overrides, datetime.now(timezone.utc), every,
                            args.scale)
    with _signals_as_interrupt() as received:
        try:
            rundir, _ = create(out, study, {"checkpoint_every_h": every}, manifest,
                               force=args.force)
        except KeyboardInterrupt:  # DIR exists (and is resumable) only if the rename happened
            folder = RunDir(Path(out))
            names = [run_name(s.name, r) for s in study.scenarios for r in range(study.replicates)]
            return _interrupted(folder if folder.is_incomplete() else None, received, names,
                                {"checkpoint_every_h": every})
        return _execute(rundir, study, manifest, args, received)


def _command_resume(args: argparse.Namespace) -> int:
    folder = RunDir(args.folder)
    if not args.folder.is_dir():
        raise ConfigError(f"{args.folder}: no such folder")
    if not folder.is_incomplete():
        if (args.folder / "summary.csv").exists() and (args.folder / "manifest.json").exists():
            remove_leftovers(folder)  # of a run stopped while it cleaned up
            print(f"cartsim: {args.folder} is complete; nothing to resume", file=sys.stderr)
            return 0
        raise ConfigError(f"{args.folder}: not a folder written by cartsim run (no INCOMPLETE "
                          "marker, no results)")
    marker = folder.read_marker()
    _check_workers(args.workers)
    every = (positive_hours(args.checkpoint_every) if args.checkpoint_every is not None
             else marker.get("checkpoint_every_h"))
    study = folder.load_study()
    manifest = read_manifest(folder)
    if manifest.get("code_fingerprint") != code_fingerprint() and not args.force:
        raise ConfigError(
            f"{args.folder}: the simulation code changed since this study started (cartsim "
            f"{manifest.get('versions', {}).get('cartsim', '?')}, code "
            f"{manifest.get('code_fingerprint')}; now code {code_fingerprint()}); resuming "
            "would mix results of both; pass --force to resume anyway, or start over with "
            "`cartsim run ... --force`")
    _check_parallel_memory(study, args.workers, str(args.folder))
    manifest = {**manifest, "code_fingerprint": code_fingerprint(), "checkpoint_every_h": every,
                "resumed_utc": [*manifest.get("resumed_utc", []),
                                datetime.now(timezone.utc).isoformat(timespec="seconds")]}
    with _signals_as_interrupt() as received:
        return _execute(folder, study, manifest, args, received)


def _execute(rundir, study, manifest: dict, args: argparse.Namespace, received: list[int]) -> int:
    """Run the missing runs of ``study`` into ``rundir``, then write the results."""
    specs = run_specs(study)
    names = [spec.name for spec in specs]
    every = manifest.get("checkpoint_every_h")
    replaces = rundir.read_marker().get("replaces")  # an old folder --force moved aside
    settings = {"checkpoint_every_h": every, **({"replaces": replaces} if replaces else {})}
    started = datetime.fromisoformat(manifest["started_utc"])
    clock = time.perf_counter()
    try:
        with rundir.lock():
            clean_temporaries(rundir.path)
            write_text(rundir.path / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
            finished, checkpointed, _ = rundir.status(names)
            if finished or checkpointed:
                print(f"cartsim: resuming {rundir.path}: {len(finished)} of {len(names)} runs "
                      f"finished, {len(checkpointed)} continue from a checkpoint",
                      file=sys.stderr)

            def done(spec) -> None:
                rundir.write_marker(names, settings)

            announce_compilation()  # before the progress bars, not inside them
            with study_progress(study.name, specs, finished, disable=args.quiet) as bars:
                run_into_folder(rundir, specs, args.workers, every, done, bars)
            wall = (datetime.now(timezone.utc) - started).total_seconds()
            _, summary = finish(rundir, specs, finished_manifest(manifest, wall))
    except KeyboardInterrupt:
        return _interrupted(rundir, received, names, settings)
    except OSError as err:  # disk full, permissions: the folder stays resumable
        print(f"cartsim: error: {err}\ncartsim: {rundir.path} is incomplete; after fixing this, "
              f"continue with: cartsim resume {rundir.path}", file=sys.stderr)
        return 1
    except Exception:
        if rundir.is_incomplete():  # a bug or a crashed worker: the traceback follows
            print(f"cartsim: failed; {rundir.path} is incomplete (finished runs are kept); "
                  f"after fixing the problem, continue with: cartsim resume {rundir.path}",
                  file=sys.stderr)
        raise
    print(f"{len(specs)} runs in {time.perf_counter() - clock:.1f} s -> {rundir.path}")
    print(response_counts(summary).to_string())
    return 0


def _interrupted(rundir, received: list[int], names: list[str] | None = None,
                 settings: dict | None = None) -> int:
    """Ctrl-C (or SIGTERM): the folder is consistent; say how to go on."""
    code = 128 + (received[-1] if received else signal.SIGINT)
    if rundir is None:
        print("cartsim: interrupted; no output folder was written", file=sys.stderr)
        return code
    if not rundir.is_incomplete():  # stopped while removing its work files: results are there
        print(f"cartsim: interrupted; {rundir.path} is complete", file=sys.stderr)
        return code
    with contextlib.suppress(Exception):
        rundir.write_marker(names, settings)
    finished, checkpointed, _ = rundir.status(names or [])
    print(f"cartsim: interrupted; {rundir.path} is incomplete ({len(finished)} of {len(names)} "
          f"runs finished, {len(checkpointed)} checkpointed); continue with: "
          f"cartsim resume {rundir.path}", file=sys.stderr)
    return code


@contextlib.contextmanager
def _signals_as_interrupt():
    """SIGTERM (e.g. a batch scheduler's time limit) stops a run the way Ctrl-C does."""
    received: list[int] = []

    def handler(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield received
        return
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


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


def _check_parallel_memory(study, workers: int | None, source: str) -> None:
    """Refuse up front if the runs that would run side by side do not fit in memory."""
    n_runs = len(study.scenarios) * study.replicates
    parallel = max(1, min(workers or os.cpu_count() or 1, n_runs))
    for i, scenario in enumerate(study.scenarios):
        check_memory(scenario, study.sources[i] if i < len(study.sources) else source, parallel)


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
        print(f"{args.config}: ok: trial {trial.name}: {len(plan.unique_runs)} patients of "
              f"{plan.sweep.bases[0]}, {len(trial.properties)} varying properties")
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
        print(f"cartsim: interrupted; finished runs are kept in {out}; rerun the same "
              "command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    ran = outcome.done + len(outcome.failed)
    print(f"{outcome.total} runs ({outcome.skipped} already done, {outcome.done} done now, "
          f"{len(outcome.failed)} failed) in {outcome.seconds:.1f} s"
          + (f", {outcome.runs_per_minute:.0f} runs/min" if ran else "") + f" -> {out}")
    if cohorts is not None:
        table = write_readouts(out, cohorts)
        shown = ["point_id", *cohorts.sweep.parameters, "patients_done", *TRIAL_SWEEP_SHOWN]
        print(f"readouts per point ({READOUTS_FILE}; rates as fractions):")
        print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    summary = failure_summary(outcome)
    if summary:
        print(summary, file=sys.stderr)
    return 1 if outcome.failed else 0


def _command_trial(args: argparse.Namespace) -> int:
    _check_workers(args.workers)
    announce_compilation()
    try:
        result = run_trial(args.trial, args.out, workers=args.workers, scheduler=args.scheduler,
                           patients=args.patients, quiet=args.quiet)
    except KeyboardInterrupt:
        print("cartsim: interrupted; finished patients are kept; rerun the same command to "
              "resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    outcome = result.outcome
    print(f"{outcome.total} patients ({outcome.skipped} already done, {outcome.done} done now, "
          f"{len(outcome.failed)} failed) in {outcome.seconds:.1f} s -> {result.out}")
    for readout in result.readouts:
        print(f"  {readout.label}: {format_value(readout.value, readout.unit)} "
              f"{format_interval(readout)}")
    summary = failure_summary(outcome)
    if summary:
        print(summary, file=sys.stderr)
    return 1 if outcome.failed else 0


def _command_fit(args: argparse.Namespace) -> int:
    _check_workers(args.workers)
    load_fit(args.fit)  # a bad fit or data file: its error before anything else
    announce_compilation()
    try:
        result = run_fit(args.fit, args.out, workers=args.workers, scheduler=args.scheduler,
                         quiet=args.quiet)
    except KeyboardInterrupt:
        print("cartsim: interrupted; finished generations are kept; rerun the same command "
              "to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(result.intervals().to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"{int(result.populations['simulations'].sum())} simulations in "
          f"{len(result.populations)} generations, {result.seconds:.0f} s -> {result.folder}")
    return 0


def _command_report(args: argparse.Namespace) -> int:
    written = write_report(args.folder, args.out)
    for path in written:
        print(path)
    return 0


def _add_view_parsers(sub) -> None:
    """``cartsim animate`` and ``cartsim app`` (simulation.io.snapshots, simulation.viz.app)."""
    animate = sub.add_parser("animate", help="animate lattice snapshots (MP4 with ffmpeg, "
                             "else GIF)")
    animate.add_argument("folder", type=Path, help="output folder of cartsim run (run with "
                         "time.snapshot_every_h set), or a folder of snapshot_*.npz files")
    _add_run_choice(animate)
    animate.add_argument("--record", metavar="CONFIG",
                         help="first run this scenario and save snapshots into FOLDER")
    animate.add_argument("--snapshot-every", "--every-h", dest="snapshot_every", type=float,
                         default=12.0, metavar="H",
                         help="with --record: simulated hours between snapshots (default 12)")
    animate.add_argument("--set", dest="overrides", action="append", default=[],
                         metavar="KEY.PATH=VALUE", help="with --record: override a config value")
    animate.add_argument("--seed", type=int, help="with --record: seed of the run")
    animate.add_argument("--out", type=Path, help="output file (default: FOLDER/<run>.mp4|gif "
                         "for a run folder, FOLDER/animation.mp4|gif for snapshot files)")
    animate.add_argument("--format", choices=("auto", "mp4", "gif"), default="auto",
                         help="mp4 needs ffmpeg; auto (default): mp4 if ffmpeg is installed, "
                         "else gif")
    animate.add_argument("--fps", type=float, default=6.0, help="frames per second")
    app = sub.add_parser("app", help="serve the interactive view (Mesa SolaraViz) in a browser")
    app.add_argument("--host", default="localhost",
                     help="address to serve on (default localhost: this machine only)")
    app.add_argument("--port", type=int, default=8765, help="port to serve on (default 8765)")


def _add_run_choice(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", dest="runs", action="append", default=[], metavar="NAME",
                        help="with a run folder: this run, e.g. gbm_solid_r1 (repeatable; "
                        "default: replicate 0 of each scenario)")


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


def _add_export_parser(sub) -> None:
    """``cartsim export-vtk``: snapshots as VTK images for ParaView (simulation.io.volume)."""
    export = sub.add_parser("export-vtk", help="write lattice snapshots as VTK images (.vti) "
                            "for ParaView")
    export.add_argument("sources", nargs="+", type=Path, metavar="SNAPSHOT|RUN_FOLDER",
                        help="snapshot .npz file (2D or 3D lattice), or an output folder of "
                        "cartsim run with snapshots (time.snapshot_every_h): each run's "
                        "snapshots and a .pvd time series of them")
    _add_run_choice(export)
    export.add_argument("--out", "--out-dir", dest="out", type=Path,
                        help="folder for the .vti files (default: next to each snapshot file; "
                        "RUN_FOLDER/vtk for a run folder)")


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
    command = [sys.executable, "-m", "solara", "run", "simulation.viz.app:page", "--host",
               args.host,
               "--port", str(args.port), "--production", "--no-open"]
    print(f"cartsim app: http://{args.host}:{args.port}/ (Ctrl-C to stop)", file=sys.stderr)
    # Solara warns on every page load served by another name than localhost that its session
    # cookie falls back to samesite=lax: it matters only when the view is embedded in an
    # iframe of another site, which cartsim app never is
    env = {**os.environ, "PYTHONWARNINGS": ",".join(filter(None, [
        os.environ.get("PYTHONWARNINGS"), f"ignore:{SOLARA_COOKIE_WARNING}:UserWarning"]))}
    return subprocess.call(command, env=env)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cartsim`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    commands = {"run": _command_run, "validate": _command_validate, "schema": _command_schema,
                "sweep": _command_sweep, "trial": _command_trial, "report": _command_report,
                "animate": _command_animate, "app": _command_app, "resume": _command_resume,
                "export-vtk": _command_export_vtk, "fit": _command_fit}
    try:
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


if __name__ == "__main__":
    sys.exit(main())
