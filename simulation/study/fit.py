"""Calibration: ``cartsim fit FIT.yaml`` turns measurements into a posterior over parameters.

A fit file (YAML, validated like every config; paths relative to it)::

    name: my_assay_fit
    model: ../killing_assay_et.yaml   # a scenario, study or assay file to simulate
    data: data/my_assay.csv           # tidy CSV (simulation.analysis.calibration)
    parameters:                       # any config key path, with a uniform prior
      car_t.kill_rate_per_h: {low: 0.02, high: 2.0, scale: log}
      car_t.exhaustion_after_engaged_h: {low: 5, high: 80}
    population_size: 200              # ABC-SMC particles per generation
    generations: 8                    # and/or final_tolerance

Inference is pyABC's ABC-SMC: each particle is one simulation of the model (the study with
the particle's values set, ``replicates_per_particle`` replicates); its summary statistics are
the simulated values at the observations (``calibration.simulated_values``, one statistic
``line_<n>`` per line of the data file), and the distance is, by default, pyABC's adaptive
p-norm (``AdaptivePNormDistance``, p = 2: each observation scaled by the spread of its
simulations in the last generation); ``distance: sd`` weighs each by 1 / the data's ``sd``
instead; ``distance: "package.module:function"`` uses the user's own ``f(simulated, observed)
-> float`` on those dictionaries.

Everything goes into the output folder: pyABC's SQLite store ``history.db`` (every generation
as it finishes, so rerunning the same command continues a killed fit from its last finished
generation), ``fit.json`` (what was fitted: a rerun with another fit or data refuses the
folder), and at the end ``posterior.csv``, ``fitted.yaml``, ``posterior.png``, ``fit.png`` and
``report.md``. The simulations run in local worker processes (``execution.pool``'s spawn pool,
handed to pyABC as a ``concurrent.futures`` executor), in this process (one worker), or on a
Dask cluster (pyABC's ``DaskDistributedSampler``). pyabc loads on first use (the ``fit`` extra).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import Field, model_validator

from ..analysis.assay import assay_table, is_assay
from ..analysis.calibration import (Observations, read_observations, read_readouts,
                                    readout_values, simulated_values, time_courses,
                                    weighted_quantiles)
from ..analysis.trial import trial_readouts
from ..config import (SEED_MAX, ConfigError, Problems, StrictModel, apply_overrides,
                      display_path, is_study, is_trial, is_virtual_population, load_study,
                      parse_override, read_yaml, validate_model_file, yaml_value)
from ..execution.extras import require
from ..execution.pool import make_backend
from ..execution.runner import run_study
from ..io.files import atomic_write, write_text
from ..io.provenance import versions
from ..viz.calibration import plot_fit, plot_posterior
from ..viz.style import write_figure
from .sweep import plan_sweep
from .trial import TrialFile, read_trial_data, run_cohort, set_trial_values, trial_with_values
from .vpop import VirtualPopulationResult, calibrate

#: the output files of a fit
HISTORY, FIT_RECORD, POSTERIOR, FITTED, REPORT = ("history.db", "fit.json", "posterior.csv",
                                                  "fitted.yaml", "report.md")
POSTERIOR_PNG, FIT_PNG = "posterior.png", "fit.png"
#: the credible interval of the report, fitted.yaml and fit.png
LEVEL = 0.9
#: the distances by name (anything else is "module:function")
DISTANCES = ("adaptive", "sd")


# ---------------------------------------------------------------------------------------------
# the fit file
# ---------------------------------------------------------------------------------------------
class Prior(StrictModel):
    """A uniform prior over [low, high], in the value or in its log10 (``scale: log``)."""

    low: float = Field(description="Lowest value.")
    high: float = Field(description="Highest value.")
    scale: Literal["linear", "log"] = Field(
        "linear", description="log: uniform in log10 (rates, times over decades; needs low > 0)")
    integer: bool = Field(False, description="Round to whole numbers (e.g. car_t.max_kills).")

    @model_validator(mode="after")
    def _ordered(self) -> Prior:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise Problems([(("low",), f"must be below high ({self.high:g})", self.low)])
        if self.scale == "log" and self.low <= 0:
            raise Problems([(("low",), "must be > 0 with scale: log", self.low)])
        return self

    def to_fit(self, value: float) -> float:
        """A value in the space pyABC samples (log10 for ``scale: log``)."""
        return math.log10(value) if self.scale == "log" else value

    def from_fit(self, value: float) -> float:
        """A value of the space pyABC samples in config units (not rounded)."""
        return float(10.0 ** value if self.scale == "log" else value)

    def natural(self, value: float) -> float:
        """A value pyABC sampled, as the config takes it (``integer``: rounded)."""
        value = self.from_fit(value)
        return float(round(value)) if self.integer else value


class FitFile(StrictModel):
    """A calibration: the model, the data, the parameters with their priors, ABC-SMC settings."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str = ""
    model: Annotated[str, Field(min_length=1)] = Field(
        description="Scenario, study, killing-assay or trial file to simulate, relative to "
        "this file (a trial: each particle is a whole cohort, the data its readouts).")
    data: Annotated[str, Field(min_length=1)] = Field(
        description="CSV table of the observations, relative to this file.")
    parameters: Annotated[dict[str, Prior], Field(min_length=1)] = Field(
        description="Dotted config key path -> uniform prior {low, high, scale}.")
    set: dict[str, Any] = Field(
        default_factory=dict, description="Dotted key -> value fixed in every simulation "
        "(e.g. a shorter time.duration_days); also in fitted.yaml.")
    scale: Annotated[float, Field(gt=0, le=100)] | None = Field(
        None, description="Simulate on ~scale times the lattice sites, cell counts with them "
        "(cartsim run --scale); fitted.yaml is then run with --scale too.")
    population_size: Annotated[int, Field(ge=10, le=100_000)] = 200
    generations: Annotated[int, Field(ge=1, le=1000)] = Field(
        8, description="ABC-SMC generations at most.")
    final_tolerance: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Stop once the tolerance (distance threshold) is at or below this.")
    replicates_per_particle: Annotated[int, Field(ge=1, le=100)] = Field(
        1, description="Simulations per particle (their mean is compared with the data).")
    distance: str = Field(
        "adaptive", description="adaptive (pyABC's AdaptivePNormDistance), sd (1/sd weights) "
        "or package.module:function(simulated, observed) -> float.")
    predictive_draws: Annotated[int, Field(ge=2, le=10_000)] = Field(
        40, description="Posterior particles simulated again for fit.png.")
    seed: Annotated[int, Field(ge=0, le=SEED_MAX // 2)] = 1

    @model_validator(mode="after")
    def _distance(self) -> FitFile:
        if self.distance not in DISTANCES and ":" not in self.distance:
            raise Problems([(("distance",), "must be adaptive, sd or package.module:function",
                             self.distance)])
        return self


@dataclass(frozen=True)
class FitSpec:
    """A checked fit file: everything a fit needs, resolved."""

    fit: FitFile
    source: str  # the fit file as messages show it
    model: Path
    observations: Observations
    is_assay: bool
    data_sha256: str
    is_trial: bool = False  # the model is a trial file: a particle is a cohort

    @property
    def keys(self) -> list[str]:
        return list(self.fit.parameters)

    def record(self) -> dict[str, Any]:
        """What identifies this fit (``fit.json``): the fit file's values and the data."""
        return {"fit": self.fit.model_dump(mode="json"), "model": str(self.model.resolve()),
                "data_sha256": self.data_sha256}


def load_fit(path: str | Path) -> FitSpec:
    """Read and check a fit file, its model and its data (nothing runs); ConfigError naming
    the file and key path otherwise."""
    path = Path(path)
    fit, shown, model = validate_model_file(path, FitFile)
    data = path.parent / fit.data
    if fit.distance not in DISTANCES:
        user_distance(fit.distance, shown)
    if is_trial(read_yaml(model, display_path(model))):
        return _load_trial_fit(fit, shown, model, data)
    fixed = [f"{key}={yaml_value(value)}" for key, value in fit.set.items()]
    study = _checked_study(model, fixed, shown, "set", fit.scale)
    for key, prior in fit.parameters.items():
        for bound in (prior.low, prior.high):
            value = yaml_value(prior.natural(prior.to_fit(bound)))
            _checked_study(model, [*fixed, f"{key}={value}"], shown, f"parameters.{key}",
                           fit.scale)
    assay = is_assay(study.scenarios)
    observations = read_observations(data, display_path(data), study.scenarios, assay)
    return _spec(fit, shown, model, data, observations, assay)


def _spec(fit: FitFile, shown: str, model: Path, data: Path, observations: Observations,
          assay: bool, trial: bool = False) -> FitSpec:
    if fit.distance == "sd" and not observations.has_sd:
        raise ConfigError(f"{shown}: distance: sd needs an sd column in {display_path(data)}")
    return FitSpec(fit=fit, source=shown, model=model, observations=observations,
                   is_assay=assay, data_sha256=hashlib.sha256(data.read_bytes()).hexdigest(),
                   is_trial=trial)


def _load_trial_fit(fit: FitFile, shown: str, model: Path, data: Path) -> FitSpec:
    """A fit whose model is a trial file: every parameter (a key of the trial or of its
    patient scenario, ``study.trial.set_trial_values``) checked at both prior bounds, every
    patient of those cohorts validated; the data are cohort readouts."""
    refused = [f"{shown}: {key}: {problem}" for key, problem in (
        ("scale", "a trial's patients run on the lattice of their scenario; set lattice keys "
         "in `set` instead" if fit.scale is not None else ""),
        ("replicates_per_particle", "a particle of a trial is a whole cohort; raise the "
         "trial's patients (set: {patients: N}) instead" if fit.replicates_per_particle != 1
         else "")) if problem]
    if refused:
        raise ConfigError("\n".join(refused))
    trial = read_trial_data(model)
    trial_with_values(trial, {"set": fit.set}, shown)  # `set` alone: its own key paths
    for key, prior in fit.parameters.items():
        for bound in (prior.low, prior.high):
            cohort = trial_with_values(trial, {"set": fit.set, "parameters": {
                key: _trial_value(prior, prior.natural(prior.to_fit(bound)))}}, shown)
            try:
                plan_sweep(model, cohort.sweep())
            except ConfigError as err:
                raise ConfigError(f"{shown}: parameters.{key}: {str(err).splitlines()[0]}"
                                  ) from None
    observations = read_readouts(data, display_path(data))
    return _spec(fit, shown, model, data, observations, False, trial=True)


def _checked_study(model: Path, overrides: list[str], shown: str, key: str,
                   scale: float | None):
    try:
        return load_study(model, overrides, scale=scale)
    except ConfigError as err:
        raise ConfigError(f"{shown}: {key}: {str(err).splitlines()[0]}") from None


def user_distance(text: str, shown: str = "distance") -> Callable[[dict, dict], float]:
    """The function ``package.module:function`` names; ConfigError if it cannot be imported."""
    module, _, name = text.partition(":")
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"{shown}: distance: cannot import {text} ({err})") from None
    if not callable(function):
        raise ConfigError(f"{shown}: distance: {text} is not a function")
    return function


# ---------------------------------------------------------------------------------------------
# one particle: a simulation of the model at the particle's values
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Simulator:
    """The model at given parameter values, as pyABC calls it (picklable: worker processes and
    Dask workers run it). ``__call__`` takes a pyABC parameter (values in the space of the
    priors) and returns the summary statistics ``{"line_<n>": value}``."""

    model: str
    fixed: tuple[str, ...]
    priors: dict[str, Prior]
    replicates: int
    seed: int
    observations: Observations
    scale: float | None = None

    def natural(self, parameter: dict[str, float]) -> dict[str, float]:
        """Config values of a pyABC parameter."""
        return {key: prior.natural(float(parameter[key])) for key, prior in self.priors.items()}

    def seed_for(self, values: dict[str, float]) -> int:
        """The seed of a simulation at ``values``: the fit's seed and the values, hashed (the
        same particle gives the same simulation, in any process and after a resume)."""
        text = json.dumps([self.seed, sorted(values.items())])
        return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) % (SEED_MAX // 2)

    def simulate(self, values: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame,
                                                          pd.DataFrame | None]:
        """(timeseries, summary, assay table or None) of the model at config ``values``."""
        overrides = [*self.fixed, *(f"{key}={yaml_value(value)}" for key, value
                                    in values.items())]
        study = load_study(self.model, overrides, replicates=self.replicates,
                           seed=self.seed_for(values), scale=self.scale)
        timeseries, summary = run_study(study, workers=1, threads=1, progress=False)
        assay = assay_table(study.scenarios, timeseries) if is_assay(study.scenarios) else None
        return timeseries, summary, assay

    def __call__(self, parameter: dict[str, float]) -> dict[str, float]:
        values = simulated_values(self.observations, *self.simulate(self.natural(parameter)))
        return statistics(self.observations, values)

    def prediction(self, values: dict[str, float]) -> pd.DataFrame:
        """The observed quantity at ``values``: its time course in every observed scenario
        (mean over replicates; ``scenario``, ``time_h``, ``value``), or for a summary quantity
        the value at every observation (``line``, ``value``)."""
        timeseries, summary, assay = self.simulate(values)
        if self.observations.source == "summary":
            return pd.DataFrame({"line": self.observations.table["line"],
                                 "value": simulated_values(self.observations, timeseries,
                                                           summary, assay)})
        curves = time_courses(self.observations, timeseries, assay)
        return curves.groupby(["scenario", "time_h"], as_index=False, sort=True)["value"].mean()


@dataclass(frozen=True)
class CohortSimulator(Simulator):
    """A trial as the model (``model`` a trial file): each particle is a whole cohort, drawn
    from the trial with the particle's values and ``fixed`` set (``study.trial
    .trial_with_values``) and the trial seed ``seed_for(values)``; its patients run one after
    the other in the worker that simulates the particle. Its summary statistics are the
    cohort's readouts (``analysis.trial.trial_readouts``) the data name."""

    def cohort(self, values: dict[str, float]) -> TrialFile:
        """The trial at config ``values`` (an integer prior's as int: a trial's counts are),
        seeded for them."""
        values = {key: _trial_value(self.priors[key], value) for key, value in values.items()}
        fixed = dict((".".join(parts), value) for parts, value in map(parse_override,
                                                                         self.fixed))
        trial = trial_with_values(read_trial_data(self.model),
                                  {"set": fixed, "parameters": values}, self.model)
        return trial.model_copy(update={"seed": self.seed_for(values)})

    def readouts(self, values: dict[str, float]) -> np.ndarray:
        """The observed readouts of the cohort at config ``values``, in data order."""
        trial = self.cohort(values)
        patients = run_cohort(Path(self.model), trial)
        return readout_values(self.observations,
                              trial_readouts(patients, trial.readout_months))

    def __call__(self, parameter: dict[str, float]) -> dict[str, float]:
        return statistics(self.observations, self.readouts(self.natural(parameter)))

    def prediction(self, values: dict[str, float]) -> pd.DataFrame:
        """The observed readouts at ``values`` (``line``, ``value``)."""
        return pd.DataFrame({"line": self.observations.table["line"],
                             "value": self.readouts(values)})


def _trial_value(prior: Prior, value: float) -> float | int:
    return int(value) if prior.integer else value


def statistics(observations: Observations, values: np.ndarray) -> dict[str, float]:
    """Summary statistics as pyABC takes them: one per line of the data file."""
    return {f"line_{line}": float(v) for line, v in zip(observations.table["line"], values,
                                                         strict=True)}


# ---------------------------------------------------------------------------------------------
# the fit
# ---------------------------------------------------------------------------------------------
@dataclass
class FitResult:
    """A finished fit: its particles, posterior and figures (``simulation.fit`` returns it).

    ``particles``: every generation's accepted particles (one column per parameter key path,
    ``weight``, ``generation``), as ``posterior.csv``; ``posterior``: the last generation's;
    ``populations``: per generation its tolerance, simulations, acceptance rate and effective
    sample size; ``predictive``: the posterior-predictive draws (``draw`` and the columns of
    ``Simulator.prediction``).
    """

    spec: FitSpec
    folder: Path
    particles: pd.DataFrame
    populations: pd.DataFrame
    predictive: pd.DataFrame
    seconds: float = 0.0
    files: list[Path] = field(default_factory=list)

    @property
    def posterior(self) -> pd.DataFrame:
        last = self.particles["generation"].max()
        return self.particles[self.particles["generation"] == last].reset_index(drop=True)

    def intervals(self, level: float = LEVEL) -> pd.DataFrame:
        """Per parameter: posterior median and central ``level`` credible interval (weighted),
        beside the prior's."""
        posterior = self.posterior
        rows = []
        for key, prior in self.spec.fit.parameters.items():
            low, median, high = weighted_quantiles(posterior[key], posterior["weight"],
                                                   [(1 - level) / 2, 0.5, (1 + level) / 2])
            prior_low, prior_high = prior_interval(prior, level)
            rows.append({"parameter": key, "median": median, "low": low, "high": high,
                         "prior_low": prior_low, "prior_high": prior_high,
                         "width_vs_prior": _width(prior, low, high) / _width(
                             prior, prior_low, prior_high)})
        return pd.DataFrame(rows)

    def medians(self) -> dict[str, float]:
        """Posterior median of every parameter (integers rounded, as fitted.yaml has them)."""
        table = self.intervals()
        priors = self.spec.fit.parameters
        return {key: round(value) if priors[key].integer else value
                for key, value in zip(table["parameter"], table["median"], strict=True)}

    def plot_posterior(self, path: str | Path | None = None, truth: dict | None = None):
        """Marginals and pairs of the last generation, the prior shown (posterior.png)."""
        return plot_posterior(self.posterior, _prior_ranges(self.spec), path, truth=truth,
                              generation=int(self.particles["generation"].max()))

    def plot_fit(self, path: str | Path | None = None):
        """The data with the posterior-predictive median and 90 % band (fit.png)."""
        return plot_fit(self.spec.observations, self.predictive, path, level=LEVEL,
                        replicates=self.spec.fit.replicates_per_particle)


def _width(prior: Prior, low: float, high: float) -> float:
    return prior.to_fit(high) - prior.to_fit(low)


def prior_interval(prior: Prior, level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` interval of a uniform prior (in its scale)."""
    a, b = prior.to_fit(prior.low), prior.to_fit(prior.high)
    margin = (1 - level) / 2 * (b - a)
    return prior.from_fit(a + margin), prior.from_fit(b - margin)


def _prior_ranges(spec: FitSpec) -> dict[str, tuple[float, float, bool]]:
    return {key: (p.low, p.high, p.scale == "log") for key, p in spec.fit.parameters.items()}


def fit(config: str | Path, out: str | Path | None = None, workers: int | None = None,
        scheduler: str | None = None, client: Any = None, quiet: bool = False
        ) -> FitResult | VirtualPopulationResult:
    """Run (or continue) the fit of ``config`` into ``out`` (default ``results/<name>``) and
    write its outputs; return the result. ``workers`` local processes (default: all cores;
    1: this process), or a Dask ``scheduler`` address / ``client``. A virtual-population file
    (one with a ``pool``) is calibrated by ``study.vpop.calibrate`` and gives its result."""
    if is_virtual_population(read_yaml(Path(config), display_path(Path(config)))):
        return calibrate(config, out, workers=workers, scheduler=scheduler, client=client,
                         quiet=quiet)
    require("fit", "cartsim fit")
    started = time.perf_counter()
    spec = load_fit(config)
    folder = Path(out) if out is not None else Path("results") / spec.fit.name
    resume = _prepare_folder(folder, spec)
    _quiet_pyabc(quiet)
    with make_backend(workers, scheduler=scheduler, client=client) as backend:
        history = _run_abc(spec, folder, backend, resume, quiet)
        particles, populations = _particles(spec, history)
        predictive = _predictive(spec, particles, backend)
    result = FitResult(spec=spec, folder=folder, particles=particles, populations=populations,
                       predictive=predictive, seconds=time.perf_counter() - started)
    result.files = write_outputs(result)
    return result


def _prepare_folder(folder: Path, spec: FitSpec) -> bool:
    """Create ``folder`` for this fit; True if it holds this fit's history to continue. A
    folder of another fit, or of anything else, is refused (never overwritten)."""
    record = folder / FIT_RECORD
    if record.exists():
        if json.loads(record.read_text(encoding="utf-8")) != spec.record():
            raise ConfigError(f"{folder}: holds another fit (its {FIT_RECORD} differs: fit "
                              "file, model or data changed); give another --out")
        return (folder / HISTORY).exists()
    if folder.exists() and any(p.name != HISTORY for p in folder.iterdir()):
        raise ConfigError(f"{folder}: exists and is not a fit folder; give another --out")
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):  # a start killed before fit.json: nothing kept
        (folder / HISTORY).unlink()
    return False


def _quiet_pyabc(quiet: bool) -> None:
    """pyABC reports each generation on its own loggers ("ABC", with their handler): shown
    unless ``quiet``; its per-component chatter is left out."""
    logger = logging.getLogger("ABC")
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    for name in ("ABC.Distance", "ABC.Epsilon", "ABC.Population", "ABC.Adaptation"):
        logging.getLogger(name).setLevel(logging.WARNING)


def simulator(spec: FitSpec) -> Simulator:
    """The model of ``spec`` as pyABC calls it."""
    fit_ = spec.fit
    kind = CohortSimulator if spec.is_trial else Simulator
    return kind(model=str(spec.model.resolve()),
                     fixed=tuple(f"{k}={yaml_value(v)}" for k, v in fit_.set.items()),
                     priors=dict(fit_.parameters), replicates=fit_.replicates_per_particle,
                     seed=fit_.seed, observations=spec.observations, scale=fit_.scale)


def _distance(spec: FitSpec):
    import pyabc  # lazy: pyabc takes seconds to import; only a fit needs it

    if spec.fit.distance == "adaptive":
        return pyabc.AdaptivePNormDistance(p=2)
    if spec.fit.distance == "sd":
        sd = spec.observations.table["sd"].to_numpy(float)
        return pyabc.PNormDistance(p=2, fixed_weights=statistics(spec.observations, 1.0 / sd))
    return user_distance(spec.fit.distance, spec.source)


def _sampler(backend, stack: contextlib.ExitStack):
    import pyabc  # lazy: see _distance

    if backend.name == "dask":
        return pyabc.sampler.DaskDistributedSampler(dask_client=backend.client,
                                                    client_max_jobs=max(1, backend.workers))
    if backend.name == "local":
        executor = stack.enter_context(backend.executor())
        return pyabc.sampler.ConcurrentFutureSampler(cfuture_executor=executor,
                                                     client_max_jobs=backend.workers)
    return pyabc.sampler.SingleCoreSampler()


def _run_abc(spec: FitSpec, folder: Path, backend, resume: bool, quiet: bool):
    """Run ABC-SMC into ``folder/history.db`` until ``generations`` or ``final_tolerance``;
    continue the history there if ``resume``. Returns the pyABC History."""
    import pyabc  # lazy: see _distance

    fit_ = spec.fit
    prior = pyabc.Distribution(**{key: pyabc.RV("uniform", p.to_fit(p.low),
                                                 p.to_fit(p.high) - p.to_fit(p.low))
                                  for key, p in fit_.parameters.items()})
    db = f"sqlite:///{(folder / HISTORY).resolve()}"
    with contextlib.ExitStack() as stack:
        abc = pyabc.ABCSMC(simulator(spec), prior, _distance(spec),
                           population_size=fit_.population_size,
                           sampler=_sampler(backend, stack))
        if resume:
            history = abc.load(db, 1)
        else:
            history = abc.new(db, statistics(spec.observations,
                                             spec.observations.table["value"].to_numpy()))
            write_text(folder / FIT_RECORD, json.dumps(spec.record(), indent=2) + "\n")
        done = history.max_t + 1
        last_eps = (history.get_all_populations()["epsilon"].iloc[-1] if done > 0 else math.inf)
        converged = fit_.final_tolerance is not None and last_eps <= fit_.final_tolerance
        if done < fit_.generations and not converged:
            if done and not quiet:
                print(f"cartsim fit: continuing {folder / HISTORY} after generation {done - 1}",
                      flush=True)
            np.random.seed((fit_.seed + done) % 2**32)  # pyABC draws from numpy's global RNG
            history = abc.run(minimum_epsilon=fit_.final_tolerance or 0.0,
                              max_nr_populations=fit_.generations - done)
    return history


def _particles(spec: FitSpec, history) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every generation's particles in config values, and per-generation statistics."""
    import pyabc  # lazy: see _distance

    frames, rows = [], []
    populations = history.get_all_populations()
    populations = populations[populations["t"] >= 0]
    for t, eps, samples, particles in populations[["t", "epsilon", "samples",
                                                   "particles"]].itertuples(index=False):
        table, weights = history.get_distribution(m=0, t=int(t))
        frame = pd.DataFrame({key: [p.natural(v) for v in table[key]]
                              for key, p in spec.fit.parameters.items()})
        frame["weight"] = np.asarray(weights, float)
        frame["generation"] = int(t)
        frames.append(frame)
        rows.append({"generation": int(t), "tolerance": float(eps), "simulations": int(samples),
                     "accepted": int(particles), "acceptance_rate": particles / samples,
                     "ess": float(pyabc.weighted_statistics.effective_sample_size(weights))})
    if not frames:
        raise ConfigError("no generation finished; rerun the same command to continue")
    return pd.concat(frames, ignore_index=True), pd.DataFrame(rows)


def _predictive(spec: FitSpec, particles: pd.DataFrame, backend) -> pd.DataFrame:
    """``predictive_draws`` particles of the last generation (drawn by weight, seeded) simulated
    again: the posterior-predictive distribution of the observed quantity."""
    last = particles[particles["generation"] == particles["generation"].max()]
    rng = np.random.default_rng(spec.fit.seed)
    weights = last["weight"].to_numpy(float)
    chosen = rng.choice(len(last), size=spec.fit.predictive_draws, p=weights / weights.sum())
    draws = [{key: float(last[key].iloc[i]) for key in spec.keys} for i in chosen]
    model = simulator(spec)
    frames = [frame.assign(draw=i) for i, frame in
              enumerate(backend.map_unordered(model.prediction, draws))]
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------------------------
def write_outputs(result: FitResult) -> list[Path]:
    """posterior.csv, fitted.yaml (+ its scenario files), posterior.png, fit.png, report.md."""
    folder = result.folder
    columns = [*result.spec.keys, "weight", "generation"]
    atomic_write(folder / POSTERIOR, lambda tmp: result.particles[columns].to_csv(
        tmp, index=False, float_format="%.10g"))
    written = [folder / POSTERIOR]
    written += write_fitted(result.spec, result.medians(), result.intervals(), folder)
    for name, draw in ((POSTERIOR_PNG, result.plot_posterior), (FIT_PNG, result.plot_fit)):
        written.append(write_figure(folder / name, draw))
    write_text(folder / REPORT, report_text(result))
    written.append(folder / REPORT)
    return written


def write_fitted(spec: FitSpec, medians: dict[str, float], intervals: pd.DataFrame,
                 folder: Path) -> list[Path]:
    """``fitted.yaml``: the model with the fixed ``set`` values and the posterior medians, for
    ``cartsim run``. A scenario model gets one file extending it; a study gets its scenario
    files each extended by a ``fitted_<name>.yaml`` and a copy of the study pointing at them."""
    values = {**spec.fit.set, **medians}
    overrides = [f"{key}={yaml_value(value)}" for key, value in values.items()]
    lines = [f"{row.parameter}: median {row.median:.4g}, {LEVEL:.0%} credible interval "
             f"{row.low:.4g} to {row.high:.4g}" for row in intervals.itertuples()]
    if spec.fit.scale is not None:
        lines.append(f"fitted at --scale {spec.fit.scale:g}: cartsim run fitted.yaml --scale "
                     f"{spec.fit.scale:g} simulates it as fitted")
    header = (f"# {spec.fit.name}: the model of {spec.source} with the posterior medians of "
              f"`cartsim fit`\n" + "".join(f"#   {line}\n" for line in lines))
    model = spec.model.resolve()
    data = read_yaml(model, display_path(model))

    def relative(path: Path) -> str:
        return Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()

    files: dict[str, dict[str, Any]] = {}
    if spec.is_trial:  # the trial with the values set; its patients' base found from here
        trial, _ = set_trial_values(data, values)
        files[FITTED] = {**trial, "name": f"{trial['name']}_fitted",
                         "base": relative(model.parent / trial["base"])}
    elif not is_study(data):
        files[FITTED] = apply_overrides({"extends": relative(model)}, overrides)
    else:
        study = {k: v for k, v in data.items() if k != "extends"}
        study["name"] = f"{data.get('name', spec.fit.name)}_fitted"
        entries = ([study["assay"]["scenario"]] if "assay" in study else study["scenarios"])
        fitted_entries = []
        for entry in entries:
            name = f"fitted_{Path(entry).stem}.yaml"
            files[name] = apply_overrides({"extends": relative(model.parent / entry)}, overrides)
            fitted_entries.append(name)
        if "assay" in study:
            study["assay"] = {**study["assay"], "scenario": fitted_entries[0]}
        else:
            study["scenarios"] = fitted_entries
        files[FITTED] = study
    written = []
    for name, mapping in files.items():
        text = header + yaml.safe_dump(mapping, sort_keys=False, default_flow_style=False)
        write_text(folder / name, text)
        written.append(folder / name)
    return written


def report_text(result: FitResult) -> str:
    """report.md: the fit, tolerance and acceptance per generation, credible intervals."""
    spec, fit_ = result.spec, result.spec.fit
    obs = spec.observations
    pops = result.populations
    observed = (f"{len(obs.table)} observed readouts ({', '.join(obs.table['scenario'])}) of "
                "a cohort per particle" if spec.is_trial else
                f"{len(obs.table)} observations of `{obs.column}` ({obs.source}) in "
                f"{obs.table['scenario'].nunique()} scenario(s)")
    lines = [f"# Fit {fit_.name}", "",
             f"Model `{display_path(spec.model)}`, {observed}; "
             f"{len(fit_.parameters)} parameter(s); pyABC ABC-SMC, {fit_.population_size} "
             f"particles per generation, {fit_.replicates_per_particle} simulation(s) per "
             f"particle, distance `{fit_.distance}`; {int(pops['simulations'].sum())} "
             f"simulations in {len(pops)} generation(s). Versions: "
             + ", ".join(f"{k} {v}" for k, v in {**versions(),
                                                 "pyabc": metadata.version("pyabc")}.items())
             + ".", "",
             "## Generations", "",
             "| generation | tolerance | simulations | acceptance rate | ESS |",
             "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.generation} | {r.tolerance:.4g} | {r.simulations} | "
              f"{r.acceptance_rate:.3f} | {r.ess:.1f} |" for r in pops.itertuples()]
    if fit_.distance == "adaptive":
        lines += ["", "The adaptive distance reweighs the observations every generation, so "
                  "tolerances of different generations are on different scales."]
    lines += ["", f"## Posterior (generation {int(pops['generation'].max())}, weighted; "
              f"{LEVEL:.0%} central credible intervals)", "",
              "| parameter | median | interval | prior interval | width / prior width |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| `{r.parameter}` | {r.median:.4g} | {r.low:.4g} to {r.high:.4g} | "
              f"{r.prior_low:.4g} to {r.prior_high:.4g} | {r.width_vs_prior:.2f} |"
              for r in result.intervals().itertuples()]
    lines += ["", "Widths are in the scale of each prior (log10 for `scale: log`). "
              f"fit.png: the data with the median and {LEVEL:.0%} band of "
              f"{fit_.predictive_draws} posterior-predictive simulations; posterior.png: "
              "marginals (prior dashed) and pairs.", ""]
    if result.seconds:
        lines += [f"Wall time of this invocation: {result.seconds:.0f} s.", ""]
    return "\n".join(lines)

