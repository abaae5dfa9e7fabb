"""Regenerate the README images from a real run (never edit docs/img by hand).

    python docs/make_images.py        # runs configs/blood_vs_solid.yaml, ~1-2 min on 2 cores

docs/img/burden.png: the burden plot of `cartsim run configs/blood_vs_solid.yaml`;
docs/img/snapshot.png: the lattices of both scenarios on day 7 (replicate 0's seed).
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT_DAY = 7.0

with tempfile.TemporaryDirectory() as tmp:
    out = Path(tmp) / "run"
    subprocess.run([sys.executable, "-m", "simulation", "run",
                    str(ROOT / "configs" / "blood_vs_solid.yaml"), "--out", str(out), "--quiet"],
                   check=True)
    shutil.copy(out / "burden.png", ROOT / "docs" / "img" / "burden.png")
    print("wrote docs/img/burden.png")

sys.path.insert(0, str(ROOT))
import matplotlib.pyplot as plt  # noqa: E402

from simulation import CarTModel, load_study  # noqa: E402
from simulation.plotting import STYLE, plot_snapshot, save_figure  # noqa: E402
from simulation.snapshots import lattice_snapshot  # noqa: E402

study = load_study(ROOT / "configs" / "blood_vs_solid.yaml")
with plt.rc_context(STYLE):
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.6), constrained_layout=True)
    for ax, scenario in zip(axes, study.scenarios):
        model = CarTModel(scenario, seed=study.seed)
        while model.running and model.time_min < SNAPSHOT_DAY * 1440 - 1e-9:
            model.step()
        plot_snapshot(lattice_snapshot(model), ax=ax, legend=ax is axes[-1],
                      title=f"{scenario.name} ({scenario.tumor_type}), day {SNAPSHOT_DAY:g}")
    save_figure(fig, ROOT / "docs" / "img" / "snapshot.png")
print("wrote docs/img/snapshot.png")
