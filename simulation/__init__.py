"""cartsim: agent-based simulation of CAR-T cell therapy (numba lattice kernels driven by Mesa).

What a notebook needs, importable from here without matplotlib, solara or dask::

    from simulation import CarTModel, load_study, run_study

    model = CarTModel("configs/b_all_cd19.yaml", seed=3)
    model.run()
    timeseries, summary = run_study(load_study("configs/blood_vs_solid.yaml"))

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

__all__ = ["CarTModel", "ConfigError", "RunSpec", "ScenarioConfig", "Study", "load_scenario",
           "load_study", "run_study"]
