"""The ``cartsim`` command: run, validate, schema.

Config errors print one line per problem, naming the file and the key path, and exit with code 2
without a traceback and without writing anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .config import ConfigError, json_schema, load_study

EXIT_CONFIG_ERROR = 2
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cartsim", description="Agent-based simulation of CAR-T cell therapy.")
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
    run.add_argument("--workers", type=int, help="worker processes (default: all cores)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    validate = sub.add_parser("validate", help="check a config file and print a summary")
    validate.add_argument("config")
    validate.add_argument("--set", dest="overrides", action="append", default=[],
                          metavar="KEY.PATH=VALUE")

    schema = sub.add_parser("schema", help="print the JSON Schema of config files")
    schema.add_argument("--kind", choices=("scenario", "study"), default="scenario")
    return parser


def _load(args: argparse.Namespace):
    overrides = list(args.overrides)
    if getattr(args, "days", None) is not None:
        overrides.append(f"time.duration_days={args.days}")
    study = load_study(args.config, overrides)
    updates = {}
    if getattr(args, "seed", None) is not None:
        updates["seed"] = args.seed
    if getattr(args, "replicates", None) is not None:
        updates["replicates"] = args.replicates
    if updates:
        if updates.get("seed", 0) < 0 or updates.get("replicates", 1) < 1:
            raise ConfigError("--seed must be >= 0 and --replicates >= 1")
        study = study.model_copy(update=updates)
    return study, overrides


def _command_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .outputs import atomic_output_dir, default_output_dir, write_config_and_manifest
    from .plotting import plot_burden, response_counts
    from .results import run_specs, run_study

    study, overrides = _load(args)
    out = args.out if args.out is not None else default_output_dir(study.name)
    started = datetime.now(timezone.utc)
    n_runs = len(run_specs(study))
    clock = time.perf_counter()
    with atomic_output_dir(out, force=args.force) as staging:
        with tqdm(total=n_runs, unit="run", desc=study.name, disable=args.quiet,
                  file=sys.stderr) as bar:
            timeseries, summary = run_study(study, workers=args.workers,
                                            on_done=lambda spec: bar.update(1))
        timeseries.to_csv(staging / "timeseries.csv", index=False)
        summary.to_csv(staging / "summary.csv", index=False)
        plot_burden(timeseries, summary, staging / "burden.png")
        write_config_and_manifest(staging, study, str(args.config), overrides, started, n_runs)
    elapsed = time.perf_counter() - clock
    print(f"{n_runs} runs in {elapsed:.1f} s -> {out}")
    print(response_counts(summary).to_string())
    return 0


def _command_validate(args: argparse.Namespace) -> int:
    study, _ = _load(args)
    for scenario in study.scenarios:
        lat = scenario.lattice
        print(f"{args.config}: ok: {scenario.name} ({scenario.tumor_type}), "
              f"{lat.width}x{lat.height} sites, {scenario.time.duration_days:g} days, "
              f"{len(scenario.dosing.doses)} dose(s)")
    print(f"{study.replicates} replicate(s) from seed {study.seed}")
    return 0


def _command_schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(args.kind), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cartsim`` console script; returns the exit code."""
    from .outputs import OutputExistsError

    args = _parser().parse_args(argv)
    commands = {"run": _command_run, "validate": _command_validate, "schema": _command_schema}
    try:
        return commands[args.command](args)
    except (ConfigError, OutputExistsError) as err:
        print(f"cartsim: error: {err}".replace("\n", "\ncartsim: error: "), file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except KeyboardInterrupt:
        print("cartsim: interrupted; no output folder was written", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
