"""cartsim: agent-based simulation of CAR-T cell therapy (numba lattice kernels driven by Mesa).

What a notebook needs::

    import simulation

    res = simulation.run("configs/blood_vs_solid.yaml", replicates=4, days=21,
                         set={"car_t.max_kills": 5})
    res.summary, res.timeseries         # pandas tables
    res.plot()                          # the burden figure
    simulation.load("results/blood_vs_solid")   # any output folder, as the same kind of result
    trial = simulation.trial("configs/trials/b_all_eliana.yaml", out="results/eliana")
    trial.table, trial.patients          # readouts with 95 % intervals, one row per patient
    fit = simulation.fit("configs/fits/killing_assay_fit.yaml", out="results/fit")  # ABC-SMC
    fit.posterior, fit.intervals(), fit.plot_fit()    # particles, credible intervals, figures

    model = simulation.CarTModel("configs/b_all_cd19.yaml", seed=3)   # one run, step by step

``import simulation`` loads no matplotlib, solara or dask: ``run``, ``load``, ``Result`` and
``trial`` (``simulation.study.api``, which draws figures) load on first use.

The package is layered; each layer imports only the layers before it (docs/architecture.md,
enforced by tests/test_architecture.py): ``engine`` (numpy + numba kernels) -> ``config``
(YAML -> typed config) -> ``biology`` (set-up and coupled processes) -> ``model`` (the Mesa
model) -> ``io`` (files, checkpoints, output folders, snapshots) -> ``analysis`` (outcome
rules, assay readout) -> ``viz`` (figures, animations, the app) -> ``study`` (the runner, the
process pool, sweeps, reports, literature checks) -> ``cli``.
"""

from .config import ConfigError, ScenarioConfig, Study, load_scenario, load_study
from .model import CarTModel
from .study.runner import RunSpec, run_study

#: names served from ``simulation.study.api`` on first use (PEP 562), so that ``import
#: simulation`` stays free of matplotlib
_RESULT_API = ("Result", "load", "run", "trial")
#: served from ``simulation.study.fit`` on first use (it draws figures too)
_FIT_API = ("fit", "FitResult")

__all__ = ["CarTModel", "ConfigError", "FitResult", "Result", "RunSpec", "ScenarioConfig",
           "Study", "fit", "load", "load_scenario", "load_study", "run", "run_study", "trial"]


def __getattr__(name: str):
    if name in _RESULT_API:
        # lazy: the result API imports matplotlib; `import simulation` must stay light
        from .study import api

        return getattr(api, name)
    if name in _FIT_API:
        # lazy: as above (calibration figures)
        from .study import fit

        return getattr(fit, name)
    raise AttributeError(f"module 'simulation' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_RESULT_API) | set(_FIT_API))
