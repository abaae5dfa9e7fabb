"""The one-call Python API: run a config and get a result; open any output folder as one.

    import simulation

    res = simulation.run("configs/blood_vs_solid.yaml", replicates=4, days=21, seed=1,
                         set={"car_t.max_kills": 5})
    res.summary                 # pandas: the columns of summary.csv, one row per run
    res.timeseries              # pandas: the columns of timeseries.csv, one row per census
    res.plot()                  # the burden figure (res.plot_waterfall(), ... for the others)
    res.save("results/my_run")  # the folder `cartsim run` writes, byte for byte
    res.snapshots               # run -> xarray.Dataset of its lattice over time
                                # (needs set={"time.snapshot_every_h": 24})
    simulation.load("results/my_run")   # any folder cartsim wrote: a run, an assay, a sweep

Overrides are the dotted key paths of ``cartsim run --set``: ``set={"car_t.max_kills": 5}``
(a list of ``"key.path=value"`` strings works too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from ..analysis.assay import assay_table, is_assay
from ..analysis.outcomes import response_counts
from ..config import ConfigError, Overrides, Study, load_study, override_list
from ..execution.folder_run import complete
from ..execution.publish import infusion_days, treatment_labels
from ..execution.runner import run_specs, run_study, store_snapshot
from ..io.rundir import (CONFIG_FILE, MANIFEST_FILE, MARKER, RunDir, create, finished_manifest,
                         new_manifest, read_manifest, read_timeseries)
from ..io.snapshot_series import snapshot_dataset
from ..io.snapshots import load_snapshot, snapshot_files
from ..viz import antigen_plots, lattice_plots, product_plots, study_plots, time_courses
from .sweep import load_sweep_table
from .trial import run_trial as trial  # simulation.trial(TRIAL.yaml, out=..., product=...)

#: what a folder is, by the files that make it one
RUN, ASSAY, SWEEP = "run", "assay", "sweep"


@dataclass
class Result:
    """The tables of a study, in memory (``run``) or read from an output folder (``load``).

    ``kind`` is ``"run"``, ``"assay"`` (a killing assay: also ``assay``, % of untreated control
    over time) or ``"sweep"`` (one summary row per run with its parameter values; sweeps keep
    no time series, so ``timeseries`` is None and the figures of time courses do not apply).
    ``study`` is the resolved study (None for a sweep); ``folder`` the folder it was read
    from or saved to; ``manifest`` what ``manifest.json`` holds (None for a sweep).
    """

    summary: pd.DataFrame
    timeseries: pd.DataFrame | None
    study: Study | None
    assay: pd.DataFrame | None = None
    folder: Path | None = None
    manifest: dict[str, Any] | None = None  # config file, overrides, seeds, versions, timing
    #: run name -> its lattice snapshots in time order: dicts (in memory) or their files
    snapshot_sources: dict[str, list[dict | Path]] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``"sweep"`` (no time series), ``"assay"`` (an assay table) or ``"run"``."""
        return SWEEP if self.timeseries is None else ASSAY if self.assay is not None else RUN

    @property
    def snapshots(self) -> dict[str, xr.Dataset]:
        """Run name -> its lattice over time (``io.snapshot_series``: dims time_days, y, x;
        fields quantised to 256 levels). Empty unless the config set
        ``time.snapshot_every_h``."""
        return {run: snapshot_dataset(self._snapshot_dicts(run), run)
                for run in self.snapshot_sources}

    def _snapshot_dicts(self, run: str) -> list[dict]:
        if run not in self.snapshot_sources:
            known = ", ".join(self.snapshot_sources) or "none: set time.snapshot_every_h"
            raise KeyError(f"no snapshots of run {run!r} (runs with snapshots: {known})")
        return [load_snapshot(item) if isinstance(item, Path) else item
                for item in self.snapshot_sources[run]]

    # ---- tables --------------------------------------------------------------------------
    def response_counts(self) -> pd.DataFrame:
        """Runs per scenario and response class (CR, PR, SD, PD)."""
        return response_counts(self.summary)

    # ---- figures (each returns the matplotlib Figure; ``path`` also saves it) ----------
    def plot(self, path: str | Path | None = None) -> plt.Figure:
        """Tumour burden and CAR-T over time, median and spread over replicates (a killing
        assay: the wells' target counts by antigen and E:T), as burden.png of the folder."""
        if self.kind == ASSAY:
            return time_courses.plot_assay_wells(self.assay, path)
        return time_courses.plot_burden(self._series("plot"), self.summary, path,
                                    infusions=self._infusions(), treatments=self._treatments())

    def plot_car_t_kinetics(self, path: str | Path | None = None) -> plt.Figure:
        """CAR-T in the tissue on a log scale: expansion, peak, contraction."""
        return time_courses.plot_car_t_kinetics(self._series("plot_car_t_kinetics"), self.summary,
                                            path, infusions=self._infusions(),
                                            treatments=self._treatments())

    def plot_blood_kinetics(self, path: str | Path | None = None) -> plt.Figure:
        """CAR-T per uL of blood, the curve the clinic measures."""
        return time_courses.plot_blood_kinetics(self._series("plot_blood_kinetics"), self.summary,
                                            path, infusions=self._infusions(),
                                            treatments=self._treatments())

    def plot_antigen_composition(self, path: str | Path | None = None) -> plt.Figure:
        """Cancer cells by the antigens they carry over time (scenarios naming several
        antigens), as antigen_composition.png of the folder."""
        return antigen_plots.plot_antigen_composition(self._series("plot_antigen_composition"),
                                                      path, infusions=self._infusions(),
                                                      treatments=self._treatments())

    def plot_car_t_products(self, path: str | Path | None = None) -> plt.Figure:
        """CAR-T per product and per subset over time (several products, or a product
        composition), as car_t_products.png of the folder."""
        return product_plots.plot_car_t_products(self._series("plot_car_t_products"), path,
                                                 infusions=self._infusions(),
                                                 treatments=self._treatments())

    def plot_waterfall(self, path: str | Path | None = None) -> plt.Figure:
        """Best % change of the tumour from baseline, one bar per run."""
        return study_plots.plot_waterfall(self.summary, path)

    def plot_progression_free(self, path: str | Path | None = None) -> plt.Figure:
        """Kaplan-Meier progression-free fraction of the replicates."""
        return study_plots.plot_progression_free(self._series("plot_progression_free"),
                                              self.summary, path, infusions=self._infusions())

    def plot_response_rates(self, path: str | Path | None = None) -> plt.Figure:
        """Response classes per scenario."""
        return study_plots.plot_response_rates(self.summary, path)

    def plot_killing_assay(self, path: str | Path | None = None) -> plt.Figure:
        """% of untreated control over time, one line per E:T (killing assays only)."""
        if self.assay is None:
            raise ValueError("plot_killing_assay: this result is not a killing assay (no "
                             "assay table)")
        return time_courses.plot_killing_assay(self.assay, path)

    def plot_snapshot(self, run: str | None = None, day: float | None = None,
                      path: str | Path | None = None) -> plt.Figure:
        """The lattice of ``run`` (default: the first run with snapshots) at the snapshot
        nearest ``day`` (default: the last), with its oxygen and suppression fields."""
        run = run if run is not None else next(iter(self.snapshot_sources), "")
        pictures = self._snapshot_dicts(run)
        times = np.array([float(p["time_days"]) for p in pictures])
        chosen = pictures[-1 if day is None else int(np.argmin(np.abs(times - day)))]
        return lattice_plots.plot_snapshot_with_fields(chosen, path)

    def _infusions(self) -> dict[str, list[float]] | None:
        """Configured infusion days per scenario (None for a sweep: read from the table)."""
        return infusion_days(self.study.scenarios) if self.study is not None else None

    def _treatments(self) -> dict[str, str] | None:
        """What each scenario was given, for legends (None for a sweep)."""
        return treatment_labels(self.study.scenarios) if self.study is not None else None

    def _series(self, what: str) -> pd.DataFrame:
        if self.timeseries is None:
            raise ValueError(f"{what}: a sweep keeps one summary row per run and no time "
                             "series; `cartsim report` draws its figures")
        return self.timeseries

    # ---- storing ------------------------------------------------------------------------
    def save(self, folder: str | Path, force: bool = False) -> Path:
        """Write the output folder ``cartsim run`` writes for this study (tables, figures,
        config.resolved.yaml, manifest.json), atomically; an existing folder is refused
        unless ``force``. 3D runs kept in memory have no final lattice to write."""
        if self.study is None or self.timeseries is None or self.manifest is None:
            raise ValueError("save: a sweep result is its folder already")
        rundir, _ = create(Path(folder), self.study, {"checkpoint_every_h": None},
                           self.manifest, force=force)
        specs = run_specs(self.study)

        def store_runs() -> None:  # the runs/ files run_into_folder would have written
            for spec in specs:
                mine = ((self.timeseries["scenario"] == spec.scenario.name)
                        & (self.timeseries["replicate"] == spec.replicate))
                row = self.summary[(self.summary["scenario"] == spec.scenario.name)
                                   & (self.summary["replicate"] == spec.replicate)]
                rundir.store_run(spec.name, self.timeseries[mine],
                                 _json_row(row.iloc[0].to_dict()))
                if spec.name in self.snapshot_sources:
                    for picture in self._snapshot_dicts(spec.name):
                        store_snapshot(rundir.snapshot_folder(spec.name), picture)

        complete(rundir, specs, self.manifest, store_runs)
        self.folder = rundir.path
        return rundir.path


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """A summary row as ``run_tables`` makes it: numpy scalars as Python numbers, NaN as None."""
    return {key: None if pd.isna(value) else value.item() if hasattr(value, "item") else value
            for key, value in row.items()}


def run(config: str | Path, replicates: int | None = None, days: float | None = None,
        seed: int | None = None, set: Overrides = None, scale: float | None = None,
        workers: int | None = None, progress: bool = True) -> Result:
    """Run a scenario or study file and return its result (nothing is written to disk).

    ``replicates``, ``days`` and ``seed`` are the options of ``cartsim run``; ``set`` overrides
    config values by their dotted key paths (``{"car_t.max_kills": 5}``, or
    ``["car_t.max_kills=5"]``); ``scale`` runs it on a lattice with ~``scale`` times the
    sites, every cell count scaled with them (``cartsim run --scale``; 0.1 for a quick look).
    ``workers`` processes run the simulations (default: all cores);
    the tables do not depend on it. ``progress``: bars in simulated days, for the study and
    each run in flight (widgets in Jupyter).
    """
    started = datetime.now(timezone.utc)
    overrides = override_list(set)
    study = load_study(config, overrides, replicates=replicates, days=days, seed=seed,
                       scale=scale)
    snapshots: dict[str, list[dict]] = {}
    timeseries, summary = run_study(study, workers=workers, progress=progress,
                                    snapshots=snapshots)
    assay = assay_table(study.scenarios, timeseries) if is_assay(study.scenarios) else None
    manifest = finished_manifest(new_manifest(study, str(config), overrides, started, None, scale),
                                 (datetime.now(timezone.utc) - started).total_seconds())
    return Result(summary=summary, timeseries=timeseries, study=study, assay=assay,
                  manifest=manifest, snapshot_sources=dict(snapshots))


def load(folder: str | Path) -> Result:
    """Open any output folder cartsim wrote: ``cartsim run`` (a run or a killing assay),
    ``Result.save`` or ``cartsim sweep``. A folder still being written, or interrupted, is
    refused with the command that finishes it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder")
    if (folder / "index.parquet").exists():
        return Result(summary=load_sweep_table(folder), timeseries=None, study=None,
                      folder=folder)
    if (folder / MARKER).exists():
        raise ConfigError(f"{folder}: is incomplete (an interrupted run); finish it with "
                          f"`cartsim resume {folder}`")
    if not all((folder / name).exists() for name in ("summary.csv", "timeseries.csv",
                                                    CONFIG_FILE, MANIFEST_FILE)):
        raise ConfigError(f"{folder}: not a cartsim output folder (no summary.csv, "
                          f"timeseries.csv, {CONFIG_FILE} and {MANIFEST_FILE}, nor a sweep's "
                          "index.parquet)")
    assay = folder / "assay.csv"
    rundir = RunDir(folder)
    # round_trip: read the repr to_csv wrote exactly (the default parser can miss the last
    # digit, and then a loaded folder would not save to the same bytes)
    return Result(summary=pd.read_csv(folder / "summary.csv", float_precision="round_trip"),
                  timeseries=read_timeseries(folder / "timeseries.csv"),
                  study=rundir.load_study(),
                  assay=(pd.read_csv(assay, float_precision="round_trip") if assay.exists()
                         else None), folder=folder,
                  manifest=read_manifest(rundir),
                  snapshot_sources={run: snapshot_files(path) for run, path
                                    in rundir.snapshot_folders().items()})

