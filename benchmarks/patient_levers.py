"""What a virtual patient's cost levers do to a trial: wall time and readouts, side by side.

    python benchmarks/patient_levers.py                       # ELIANA-like, 200 patients (~15 min)
    python benchmarks/patient_levers.py --trial lbcl_zuma1 --patients 100

Issue 30 asks for a trial patient at a tenth of its cost with the trial's readouts unchanged
within their intervals. This runs the shipped trial (same cohort: same seed, same patients) as
shipped and with one lever at a time:

* a smaller lattice (70^2, 50^2 sites, the same share of sites as cancer cells; every dose,
  burden and CRS score is relative to the lattice's baseline tumour, so nothing else changes);
* a longer time step (12 min instead of 6; docs/numerics.md finds no trend with dt from 1.5 to
  12 min in the blood scenario).

Each variant is a patient file extending the shipped one, written to a temporary folder, and
runs on all cores (``cartsim trial``'s pool); the table gives the wall time per patient (both
cores busy, so about half a core-second per patient per core) and every readout with its verdict
against the published interval (inside or outside) where the trial has one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # measure the simulation package of this checkout

SHIPPED = ROOT / "configs" / "trials"
#: the shipped trials whose patients start on a lattice of cancer cells and normal cells
TRIALS = ("b_all_eliana", "lbcl_zuma1")


def variants(side: int, dt_min: float) -> dict[str, dict]:
    """The levers, each as overrides of the shipped patient (label -> YAML mapping)."""
    return {
        f"shipped ({side}^2, dt {dt_min:g} min)": {},
        "70^2 lattice": {"side": 70},
        "50^2 lattice": {"side": 50},
        f"dt {2 * dt_min:g} min": {"dt_min": 2 * dt_min},
    }


def write_variant(folder: Path, trial: str, patient_file: str, label: str, lever: dict,
                  share: float) -> Path:
    """A patient file extending the trial's (``patient_file``, in configs/trials/) with the
    lever, cancer cells on ``share`` of its sites, and a trial file that uses it; returns the
    trial file."""
    import yaml

    patient: dict = {"extends": str(SHIPPED / patient_file)}
    if "side" in lever:
        side = lever["side"]
        patient["lattice"] = {"width": side, "height": side}
        patient["tumor"] = {"initial_cells": int(share * side * side)}
    if "dt_min" in lever:
        patient["time"] = {"dt_min": lever["dt_min"]}
    slug = "".join(c if c.isalnum() else "_" for c in label).strip("_")
    variant = folder / f"{Path(patient_file).stem}_{slug}.yaml"
    variant.write_text(yaml.safe_dump(patient))
    data = yaml.safe_load((SHIPPED / f"{trial}.yaml").read_text())
    data.update(name=f"{trial}_{slug}", base=variant.name,
                product=str((SHIPPED / data["product"]).resolve()))
    trial_file = folder / f"{trial}_{slug}.yaml"
    trial_file.write_text(yaml.safe_dump(data, sort_keys=False))
    return trial_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trial", choices=TRIALS, default="b_all_eliana")
    parser.add_argument("--patients", type=int, default=200)
    args = parser.parse_args()

    import pandas as pd

    from simulation.analysis.trial import trial_readouts
    from simulation.config import load_scenario
    from simulation.study.trial import agreement, read_trial_file, run_trial

    trial = read_trial_file(SHIPPED / f"{args.trial}.yaml")
    shipped = load_scenario(SHIPPED / trial.base)
    share = shipped.tumor.initial_cells / (shipped.lattice.width * shipped.lattice.height)
    columns, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label, lever in variants(shipped.lattice.width, shipped.time.dt_min).items():
            trial_file = write_variant(folder, args.trial, trial.base, label, lever, share)
            start = time.perf_counter()
            result = run_trial(trial_file, folder / "out" / trial_file.stem,
                               patients=args.patients)
            seconds[label] = (time.perf_counter() - start) / args.patients
            column = {}
            for readout in trial_readouts(result.patients):
                value = readout.value * 100 if readout.unit == "%" else readout.value
                verdict = (f" {agreement(readout, trial.published[readout.name])}"
                           if readout.name in trial.published else "")
                column[readout.name] = f"{value:.3g}{verdict}"
            columns[label] = column
            print(f"{label}: {seconds[label]:.2f} s per patient (wall, all cores)", flush=True)
    table = pd.DataFrame(columns)
    table.loc["wall s / patient"] = [f"{seconds[label]:.2f}" for label in table.columns]
    print(f"\n{args.trial}, {args.patients} patients, seed of the trial file:")
    print(table.to_string())


if __name__ == "__main__":
    main()
