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

``import simulation`` loads nothing heavy (no numba, pandas, matplotlib, solara or dask): each
name loads its module on first use.

The package is layered; each layer imports only the layers before it (docs/architecture.md,
enforced by tests/test_architecture.py): ``engine`` (numpy + numba kernels) -> ``config``
(YAML -> typed config) -> ``biology`` (set-up and coupled processes) -> ``model`` (the Mesa
model) -> ``io`` (files, checkpoints, output folders, snapshots) -> ``analysis`` (outcome
rules, assay readout) -> ``viz`` (figures, animations, the app) -> ``execution`` (the runner,
the process pool, progress, output folders) -> ``study`` (sweeps, trials, fits, reports, the
one-call API) -> ``commands`` (what each ``cartsim`` command does) -> ``cli`` (parsing).
"""

# Every name below is served by ``__getattr__`` (PEP 562), which imports its module on first
# use, so that ``import simulation`` stays light: no numba, pandas or matplotlib until a name is
# used (``cartsim --version`` and ``--help`` load none of them).
#: from ``simulation.config``
_CONFIG_API = ("ConfigError", "ScenarioConfig", "Study", "load_scenario", "load_study")
#: from ``simulation.model`` (loads the engine: numba)
_MODEL_API = ("CarTModel",)
#: from ``simulation.execution.runner``
_RUNNER_API = ("RunSpec", "run_study")
#: from ``simulation.study.api``: the result API draws figures (matplotlib)
_RESULT_API = ("Result", "load", "run", "trial")
#: from ``simulation.study.fit``: the fit API draws figures too
_FIT_API = ("fit", "FitResult")

__all__ = ["CarTModel", "ConfigError", "FitResult", "Result", "RunSpec", "ScenarioConfig",
           "Study", "fit", "load", "load_scenario", "load_study", "run", "run_study", "trial"]


def __getattr__(name: str):
    # each import here is lazy on purpose: `import simulation` must stay light
    if name in _CONFIG_API:
        from . import config

        return getattr(config, name)
    if name in _MODEL_API:
        from . import model

        return getattr(model, name)
    if name in _RUNNER_API:
        from .execution import runner

        return getattr(runner, name)
    if name in _RESULT_API:
        from .study import api

        return getattr(api, name)
    if name in _FIT_API:
        from .study import fit

        return getattr(fit, name)
    raise AttributeError(f"module 'simulation' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()).union(_CONFIG_API, _MODEL_API, _RUNNER_API, _RESULT_API,
                                       _FIT_API))
