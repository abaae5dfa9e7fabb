"""Regenerate the synthetic data and the shipped fits of docs/calibration.md.

    python docs/make_calibration.py data     # configs/data/killing_assay_synthetic.csv
    python docs/make_calibration.py fits     # every configs/fits/*.yaml fit -> results/fits/,
                                             # its figures -> docs/img/calibration/

The synthetic killing-assay data are the mean and sd of ``REPLICATES`` simulations of
configs/fits/cd19_killing_assay.yaml at ``TRUTH`` (the fit's own scale and duration), read every
``EVERY_H`` hours from ``EVERY_H`` to the end. The fits run with ``--workers`` all cores; rerunning
continues each one from its history (delete results/fits/<name> to start over).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import simulation
from simulation.config import read_yaml
from simulation.study.fit import FIT_PNG, POSTERIOR_PNG, FitFile

ROOT = Path(__file__).resolve().parent.parent
FITS = ROOT / "configs" / "fits"
SYNTHETIC = ROOT / "configs" / "data" / "killing_assay_synthetic.csv"
TRUTH = {"car_t.kill_rate_per_h": 0.25, "car_t.exhaustion_after_engaged_h": 20.0}
REPLICATES = 8
SEED = 1000
EVERY_H = 12.0
IMAGES = ROOT / "docs" / "img" / "calibration"


def make_data() -> Path:
    path = FITS / "killing_assay_synthetic.yaml"
    fit = FitFile.model_validate(read_yaml(path, str(path)))  # its data are what we write
    result = simulation.run(path.parent / fit.model, replicates=REPLICATES, seed=SEED,
                            scale=fit.scale, set={**fit.set, **TRUTH}, progress=False)
    table = result.assay
    table = table[(table["effector_to_target"] > 0) & (table["time_h"] > 0)
                  & ((table["time_h"] / EVERY_H).round(6) % 1 == 0)]
    data = (table.groupby(["effector_to_target", "time_h"], as_index=False)["percent_of_control"]
            .agg(percent_of_control="mean", sd="std"))
    design = read_yaml(path.parent / fit.model, fit.model)["assay"]["effector_to_target"]
    # the design's E:T, as a lab writes it (a scaled dish rounds the CAR-T: 31/625 = 0.0496)
    data["effector_to_target"] = [min(design, key=lambda d: abs(d - r))
                                  for r in data["effector_to_target"]]
    data["sd"] = data["sd"].clip(lower=1.0)  # at 0 % a replicate sd of 0 would weigh infinitely
    SYNTHETIC.parent.mkdir(parents=True, exist_ok=True)
    data.to_csv(SYNTHETIC, index=False, float_format="%.4g")
    return SYNTHETIC


def make_fits() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    for config in sorted(FITS.glob("*.yaml")):
        if "data" not in read_yaml(config, str(config)):
            continue  # a model file of the fits, not a fit
        result = simulation.fit(config, out=ROOT / "results" / "fits" / config.stem)
        shutil.copyfile(result.folder / FIT_PNG, IMAGES / f"{config.stem}_{FIT_PNG}")
        result.plot_posterior(IMAGES / f"{config.stem}_{POSTERIOR_PNG}",
                              truth=TRUTH if config.stem == SYNTHETIC.stem else None)
        print(config.stem, f"{result.seconds:.0f} s")
        print(result.intervals().to_string(index=False))


if __name__ == "__main__":
    steps = sys.argv[1:] or ["data", "fits"]
    if "data" in steps:
        print(make_data())
    if "fits" in steps:
        make_fits()
