"""The one runner: a study's runs -> tidy tables, in memory or into a resumable output folder.

``run_study`` runs every (scenario, replicate) of a study and returns the two tables, ordered
by scenario and replicate; ``run_into_folder`` runs the unfinished runs of an output folder
(``simulation.io.rundir``), each continuing from its checkpoint when it has one, and stores each
run's files as it finishes (``simulation.execution.publish`` reads them back in order). Both hand
the runs to ``simulation.execution.pool`` (this process or local worker processes; sweeps also use
its Dask backend), so the output does not depend on the number of workers or on which run
finished first.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd

from ..analysis.clinical import patient_outcome
from ..analysis.outcomes import summarise_run
from ..biology.scenario import receptor_logics
from ..config import ConfigError, ScenarioConfig, Study
from ..engine.units import MIN_PER_DAY, MIN_PER_H, minutes_to_steps
from ..io.checkpoints import load_checkpoint, save_checkpoint
from ..io.files import atomic_write
from ..io.rundir import RunDir, run_name
from ..io.snapshots import lattice_snapshot, save_snapshot, snapshot_file_name
from ..model import CarTModel
from .pool import make_backend
from .progress import REPORT_EVERY_DAYS, StudyProgress, report


@dataclass(frozen=True)
class RunSpec:
    """One simulation: a scenario, its replicate number and seed."""

    scenario: ScenarioConfig
    scenario_index: int
    replicate: int
    seed: int
    threads: int | None = None  # kernel threads; None: CarTModel's default

    @property
    def name(self) -> str:
        """File stem of the run in an output folder (``<scenario>_r<replicate>``)."""
        return run_name(self.scenario.name, self.replicate)

    @property
    def site_updates(self) -> float:
        """Lattice sites x time steps of the whole run: its work, for choosing a backend."""
        time = self.scenario.time
        return self.scenario.lattice.n_sites * time.duration_days * MIN_PER_DAY / time.dt_min


def run_specs(study: Study, threads: int | None = None) -> list[RunSpec]:
    """All runs of a study; replicate r of every scenario uses seed ``study.seed + r``."""
    return [
        RunSpec(scenario, i, r, study.seed + r, threads)
        for i, scenario in enumerate(study.scenarios)
        for r in range(study.replicates)
    ]


def run_one(spec: RunSpec) -> tuple[pd.DataFrame, dict, list[dict]]:
    """Run one simulation to its end; return its time series, its summary row and its lattice
    snapshots (``time.snapshot_every_h``; none if it is not set)."""
    model = CarTModel(spec.scenario, seed=spec.seed, threads=spec.threads)
    snapshots: list[dict] = []
    step_to_end(model, spec.name, keep_snapshot=snapshots.append)
    return (*run_tables(model, spec), snapshots)


def step_to_end(model: CarTModel, run: str, checkpoint: Path | None = None,
                checkpoint_every_h: float | None = None,
                keep_snapshot: Callable[[dict], None] | None = None,
                snapshot_every_h: float | None = None) -> None:
    """Step ``model`` until it stops, reporting its simulated day (``progress.report``) every
    ``REPORT_EVERY_DAYS``, saving it to ``checkpoint`` every ``checkpoint_every_h`` simulated
    hours and handing ``keep_snapshot`` a lattice snapshot at t = 0, every
    ``snapshot_every_h`` simulated hours (default: the config's ``time.snapshot_every_h``)
    and at the end (intervals rounded to whole steps)."""
    def steps(hours: float | None) -> int | None:  # None: never
        return minutes_to_steps(hours * MIN_PER_H, model.dt_min) if hours else None

    checkpoint_every = steps(checkpoint_every_h) if checkpoint is not None else None
    report_every = minutes_to_steps(REPORT_EVERY_DAYS * MIN_PER_DAY, model.dt_min)
    if snapshot_every_h is None:
        snapshot_every_h = model.config.time.snapshot_every_h
    snapshot_every = steps(snapshot_every_h) if keep_snapshot else None
    if snapshot_every and model.step_index == 0:
        keep_snapshot(lattice_snapshot(model))
    while model.running:
        model.step()
        if model.step_index % report_every == 0:
            report(run, model.time_min / MIN_PER_DAY)
        if snapshot_every and (model.step_index % snapshot_every == 0 or not model.running):
            keep_snapshot(lattice_snapshot(model))
        if checkpoint_every and model.running and model.step_index % checkpoint_every == 0:
            save_checkpoint(model.checkpoint_state(), checkpoint)


def record_snapshots(model: CarTModel, folder: str | Path, every_h: float = 12.0) -> list[Path]:
    """Step ``model`` to its end, saving a lattice snapshot into ``folder`` (created) as
    ``snapshot_<step>.npz`` at t = 0, every ``every_h`` simulated hours and at the end: the
    cadence of a run's ``time.snapshot_every_h`` (``step_to_end``). Returns the files."""
    if every_h <= 0:
        raise ValueError("every_h must be > 0")
    written: list[Path] = []
    step_to_end(model, str(folder), snapshot_every_h=every_h,
                keep_snapshot=lambda snapshot: written.append(store_snapshot(Path(folder),
                                                                             snapshot)))
    return written


def run_tables(model: CarTModel, spec: RunSpec) -> tuple[pd.DataFrame, dict]:
    """The time series and summary row of a finished run of ``spec`` (``model``)."""
    series = model.datacollector.get_model_vars_dataframe().reset_index(drop=True)
    series = series[list(model.columns)]
    ids = {
        "scenario": spec.scenario.name,
        "tumor_type": spec.scenario.tumor_type,
        "replicate": spec.replicate,
        "seed": spec.seed,
    }
    for position, (key, value) in enumerate(ids.items()):
        series.insert(position, key, value)
    first_dose_day = min((d.day for d in spec.scenario.dosing.doses), default=0.0)
    summary = {**ids, **summarise_run(series, first_dose_day)}
    summary["car_t_infused"] = model.car_t_infused
    summary["car_t_not_placed"] = model.car_t_not_placed
    if spec.scenario.clinical is not None:  # a patient of a trial: its endpoints too
        summary.update(patient_outcome(series, spec.scenario.clinical, first_dose_day))
    return series, summary


def run_study(study: Study, workers: int | None = None, threads: int | None = None,
              on_done: Callable[[RunSpec], None] | None = None, progress: bool = True,
              snapshots: dict[str, list[dict]] | None = None
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run every replicate of every scenario; return (timeseries, summary) tables.

    ``workers`` processes (default: all cores, at most one per run) run the simulations, each
    kernel with ``threads`` threads (default: CarTModel's choice for the lattice, at most the
    cores divided among the workers). The tables are identical for any ``workers`` and
    ``threads``. ``on_done`` is called after each run. ``progress``: bars in simulated days
    (the study and each run in flight) on stderr, or widgets in Jupyter. ``snapshots``, if
    given, receives each run's lattice snapshots by run name (``time.snapshot_every_h``).
    """
    specs = run_specs(study, threads)
    results: dict[tuple[int, int], tuple[pd.DataFrame, dict]] = {}
    with (study_progress(study.name, specs, disable=not progress) as bars,
          make_backend(workers, n_runs=len(specs), site_updates=_work(specs),
                       reports=bars.worker_queue, logics=_receptor_logics(specs)) as backend):
        for spec, (series, row, pictures) in backend.map_unordered(_run_keeping_spec, specs):
            results[(spec.scenario_index, spec.replicate)] = series, row
            if snapshots is not None and pictures:
                snapshots[spec.name] = pictures
            bars.run_finished(spec.name)
            if on_done:
                on_done(spec)
    ordered = [results[key] for key in sorted(results)]
    timeseries = pd.concat([series for series, _ in ordered], ignore_index=True)
    summary = pd.DataFrame([row for _, row in ordered])
    return timeseries, summary


def _work(specs: list[RunSpec]) -> float:
    return sum(spec.site_updates for spec in specs)


def _receptor_logics(specs: list[RunSpec]) -> set[bool | None]:
    """The kernels the runs of ``specs`` call (``biology.scenario.receptor_logic``), one
    look per scenario."""
    return receptor_logics({spec.scenario_index: spec.scenario for spec in specs}.values())


def _run_keeping_spec(spec: RunSpec) -> tuple[RunSpec, tuple[pd.DataFrame, dict, list[dict]]]:
    return spec, run_one(spec)


def run_to_files(folder: str, checkpoint_every_h: float | None, spec: RunSpec) -> RunSpec:
    """Run (or continue from its checkpoint) one simulation; store its files in ``folder``.

    Module-level so worker processes can run it. A checkpoint that cannot be read, or that
    belongs to another config or seed, is ignored (the run starts over) with a warning.
    """
    rundir = RunDir(Path(folder))
    checkpoint = rundir.checkpoint(spec.name)
    model = None
    if checkpoint.exists():
        try:
            state = load_checkpoint(checkpoint)
            if (ScenarioConfig.model_validate(state["config"]) != spec.scenario
                    or int(state["seed"]) != spec.seed):
                raise ValueError(f"{checkpoint}: written for another config or seed")
            model = CarTModel.from_checkpoint(state, threads=spec.threads)
        except (ValueError, KeyError, TypeError, ConfigError) as err:
            print(f"cartsim: warning: {err}; run {spec.name} starts over", file=sys.stderr)
            model = None
    if model is None:
        model = CarTModel(spec.scenario, seed=spec.seed, threads=spec.threads)
    snapshots = rundir.snapshot_folder(spec.name)
    step_to_end(model, spec.name, checkpoint, checkpoint_every_h,
                partial(store_snapshot, snapshots))
    series, summary = run_tables(model, spec)
    if model.lattice.dimensions == 3 and spec.replicate == 0:
        snapshot = lattice_snapshot(model)
        atomic_write(rundir.final_snapshot(spec.name), lambda tmp: save_snapshot(snapshot, tmp))
    rundir.store_run(spec.name, series, summary)
    return spec


def store_snapshot(folder: Path, snapshot: dict) -> Path:
    """Write ``snapshot`` into ``folder`` (created) as ``snapshot_<step>.npz``, atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / snapshot_file_name(snapshot)
    atomic_write(path, lambda tmp: save_snapshot(snapshot, tmp))
    return path


def run_into_folder(rundir: RunDir, specs: list[RunSpec], workers: int | None,
                    checkpoint_every_h: float | None,
                    on_done: Callable[[RunSpec], None] | None = None,
                    bars: StudyProgress | None = None) -> None:
    """Run every spec whose files are not in ``rundir`` yet, in ``workers`` processes
    (default: all cores, at most one per pending run), moving ``bars`` as they go."""
    pending = [spec for spec in specs if not rundir.is_finished(spec.name)]
    if not pending:
        return
    run = partial(run_to_files, str(rundir.path), checkpoint_every_h)
    with make_backend(workers, n_runs=len(pending), site_updates=_work(pending),
                      reports=bars.worker_queue if bars else None,
                      logics=_receptor_logics(pending)) as backend:
        for spec in backend.map_unordered(run, pending):
            if bars:
                bars.run_finished(spec.name)
            if on_done:
                on_done(spec)


def study_progress(name: str, specs: list[RunSpec], finished: Iterable[str] = (),
                   disable: bool = False) -> StudyProgress:
    """Progress bars (``progress.StudyProgress``) of the runs of ``specs``, in simulated days."""
    return StudyProgress({spec.name: spec.scenario.time.duration_days for spec in specs},
                         desc=name, finished=finished, disable=disable)
