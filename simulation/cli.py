"""The ``cartsim`` command line: parse the arguments, then hand them to ``simulation.commands``.

Parsing needs none of the simulation: ``cartsim``, ``cartsim --help`` and ``cartsim --version``
answer without loading the engine (numba), pandas or matplotlib; only a command that runs
loads ``simulation.commands`` (``main``). With no arguments ``cartsim`` prints ``FIRST_STEPS``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .io.provenance import package_version

#: what ``cartsim`` with no arguments prints: what it is and a first command to try
FIRST_STEPS = """\
cartsim: agent-based simulation of CAR-T cell therapy.

Try first (a blood cancer beside a solid tumour, 8 runs, a few minutes):
  cartsim run configs/blood_vs_solid.yaml
then open results/blood_vs_solid/ (summary.csv, burden.png, blood_kinetics.png).

Other starts:
  cartsim run configs/blood_vs_solid.yaml --scale 0.1   a quick look on a smaller lattice
  cartsim validate CONFIG.yaml                          check a config file
  cartsim --help                                        every command
  cartsim COMMAND --help                                one command's options
"""


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
    fit = sub.add_parser("fit", help="fit parameters to data (ABC-SMC), or weight a virtual "
                         "population to published readouts; rerun to resume")
    fit.add_argument("fit", help="fit YAML file (model, data, parameters with priors; or "
                     "model, data, pool: a virtual population)")
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
    trial.add_argument("--seed", type=int, help="trial seed (default: the file's): another "
                       "cohort, run as <trial>_seed<N>")
    trial.add_argument("--product", type=Path, metavar="PRODUCT.yaml",
                       help="CAR-T product file (configs/products/) instead of the trial's own: "
                       "a prediction, run as <trial>_<product>")
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




def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cartsim`` console script; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        print(FIRST_STEPS, end="")
        return 0
    args = _parser().parse_args(argv)
    # lazy on purpose: the commands load the engine (numba: seconds), which parsing,
    # --help and --version never need
    from .commands import dispatch

    return dispatch(args)


if __name__ == "__main__":
    sys.exit(main())
