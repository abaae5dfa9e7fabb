"""How the cost of a time step grows with lattice size and cell count: a log-log plot.

    python benchmarks/scaling.py    # ~2 min on 2 cores; writes docs/img/scaling.png

Solid scenario (tumour 30 % of sites, shipped proportions) from 64^2 to 1024^2 sites, 1 and 2
threads, each size in a fresh subprocess (benchmarks/run.py --measure).
"""

import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
SIZES = (64, 128, 256, 512, 768, 1024)


def measure(size: int, threads: int) -> dict:
    steps = max(5, 200_000_000 // (size * size * 60))
    out = subprocess.run([sys.executable, str(HERE / "run.py"), "--measure", "kernel",
                          "--case", "solid", "--size", str(size), "--threads", str(threads),
                          "--steps", str(steps)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    fig, ax = plt.subplots(figsize=(5.5, 4.2), constrained_layout=True)
    print(f"{'size':>6}{'threads':>8}{'cells':>10}{'ms/step':>10}{'cell-upd/s':>12}")
    for threads, colour in ((1, "#0072B2"), (2, "#D55E00")):
        cells, ms = [], []
        for size in SIZES:
            row = measure(size, threads)
            cells.append(row["live_cells"])
            ms.append(row["ms_per_step"])
            print(f"{size:>6}{threads:>8}{row['live_cells']:>10.0f}{row['ms_per_step']:>10.3f}"
                  f"{row['cell_updates_per_s']:>12.3g}")
        ax.loglog(cells, ms, "o-", color=colour, label=f"{threads} thread{'s' * (threads > 1)}")
    ref = [c / 1e8 * 1e3 for c in cells]
    ax.loglog(cells, ref, ":", color="0.5", label="10$^8$ cell-updates/s")
    ax.set_xlabel("live cells on the lattice")
    ax.set_ylabel("wall time per time step (ms)")
    ax.set_title("cartsim kernel cost, solid scenario (64$^2$-1024$^2$ sites)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    path = HERE.parent / "docs" / "img" / "scaling.png"
    fig.savefig(path, dpi=110, metadata={"Software": None})
    print(f"wrote {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
