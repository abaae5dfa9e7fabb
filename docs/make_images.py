"""Regenerate the README images from real runs (never edit docs/img by hand).

    python docs/make_images.py        # runs configs/blood_vs_solid.yaml, ~10 min on 2 cores
    python docs/make_images.py --run DIR   # reuse `cartsim run configs/blood_vs_solid.yaml
                                           # --out DIR` instead of running it again

docs/img/burden.png: the burden plot of `cartsim run configs/blood_vs_solid.yaml`;
docs/img/blood_kinetics.png: CAR-T per uL of blood from the same run;
docs/img/snapshot.png: the lattices of both scenarios on day 7 (replicate 0's seed);
docs/img/snapshot_fields.png: glioblastoma on day 10, lattice beside its oxygen and suppressive
factor, on a 150x150 lattice (the full scenario's cell density; ~40 s).
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "img"
SNAPSHOT_DAY = 7.0
FIELDS_DAY = 10.0
FIELDS_LATTICE_SITES = 150  # per side; the full scenario is 200

sys.path.insert(0, str(ROOT))
import matplotlib.pyplot as plt  # noqa: E402

from simulation import CarTModel, load_scenario, load_study  # noqa: E402
from simulation.viz.lattice_plots import plot_snapshot, plot_snapshot_with_fields  # noqa: E402
from simulation.viz.style import STYLE, save_figure  # noqa: E402
from simulation.io.snapshots import lattice_snapshot  # noqa: E402


def run_until(model: CarTModel, day: float) -> CarTModel:
    """Step ``model`` to ``day`` (or its end)."""
    while model.running and model.time_min < day * 1440 - 1e-9:
        model.step()
    return model


def study_images(out: Path) -> None:
    """burden.png and blood_kinetics.png of the run folder ``out`` of blood_vs_solid.yaml, as
    `cartsim run` drew them (legends naming each arm's product, route and conditioning)."""
    for name in ("burden.png", "blood_kinetics.png"):
        shutil.copy(out / name, IMAGES / name)
        print(f"wrote docs/img/{name}")


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--run", type=Path, help="finished run folder of blood_vs_solid.yaml")
args = parser.parse_args()
if args.run is not None:
    study_images(args.run)
else:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        subprocess.run([sys.executable, "-m", "simulation", "run",
                        str(ROOT / "configs" / "blood_vs_solid.yaml"), "--out", str(out),
                        "--quiet"], check=True)
        study_images(out)

study = load_study(ROOT / "configs" / "blood_vs_solid.yaml")
with plt.rc_context(STYLE):
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.6), constrained_layout=True)
    for ax, scenario in zip(axes, study.scenarios):
        model = run_until(CarTModel(scenario, seed=study.seed), SNAPSHOT_DAY)
        plot_snapshot(lattice_snapshot(model), ax=ax, legend=ax is axes[-1],
                      title=f"{scenario.name} ({scenario.tumor_type}), day {SNAPSHOT_DAY:g}")
    save_figure(fig, IMAGES / "snapshot.png")
print("wrote docs/img/snapshot.png")

gbm = load_scenario(ROOT / "configs" / "gbm_solid.yaml")
scale = (FIELDS_LATTICE_SITES / gbm.lattice.width) * (FIELDS_LATTICE_SITES / gbm.lattice.height)
model = run_until(CarTModel(gbm, seed=study.seed, lattice__width=FIELDS_LATTICE_SITES,
                            lattice__height=FIELDS_LATTICE_SITES,
                            tumor__initial_cells=round(gbm.tumor.initial_cells * scale)),
                  FIELDS_DAY)
plot_snapshot_with_fields(lattice_snapshot(model), IMAGES / "snapshot_fields.png",
                          title=f"{gbm.name} (solid), day {FIELDS_DAY:g}, "
                                f"{FIELDS_LATTICE_SITES}x{FIELDS_LATTICE_SITES} sites")
print("wrote docs/img/snapshot_fields.png")
