"""Plots drawn from results tables (never from a live model), so notebooks reuse them."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files, not windows; notebooks switch backends themselves
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

#: Okabe-Ito colour-blind-safe palette
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def replicate_bands(timeseries: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per scenario and time: median and 25/75 % quantiles of ``column`` across replicates.

    Runs that stopped early (tumour cleared) keep their last value afterwards: a cleared
    tumour stays at zero.
    """
    rows = []
    for scenario, group in timeseries.groupby("scenario", sort=False):
        wide = group.pivot_table(index="time_days", columns="replicate", values=column)
        wide = wide.sort_index().ffill()
        rows.append(pd.DataFrame({
            "scenario": scenario,
            "time_days": wide.index.to_numpy(),
            "median": wide.median(axis=1).to_numpy(),
            "q25": wide.quantile(0.25, axis=1).to_numpy(),
            "q75": wide.quantile(0.75, axis=1).to_numpy(),
        }))
    return pd.concat(rows, ignore_index=True)


def _with_baseline_percent(timeseries: pd.DataFrame) -> pd.DataFrame:
    """Adds ``tumor_percent_of_baseline``: tumour cells as % of each run's t = 0 count."""
    first = timeseries.groupby(["scenario", "replicate"])["tumor_cells"].transform("first")
    return timeseries.assign(tumor_percent_of_baseline=100.0 * timeseries["tumor_cells"] / first)


def _label(scenario: str, summary: pd.DataFrame | None) -> str:
    if summary is None:
        return scenario
    rows = summary[summary["scenario"] == scenario]
    tumor_type = rows["tumor_type"].iloc[0]
    cr = int((rows["response"] == "CR").sum())
    return f"{scenario} ({tumor_type}): CR {cr}/{len(rows)}"


def plot_burden(timeseries: pd.DataFrame, summary: pd.DataFrame | None = None,
                path: str | Path | None = None, log_scale: bool = True) -> plt.Figure:
    """Tumour burden (% of baseline) and CAR-T cells vs time: median line, interquartile band.

    One colour per scenario; the legend gives tumour type and complete responses. Saved to
    ``path`` (PNG, SVG or PDF by suffix) when given.
    """
    data = _with_baseline_percent(timeseries)
    fig, (ax_tumor, ax_car_t) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    scenarios = list(dict.fromkeys(data["scenario"]))
    for colour, (column, ax) in zip((0, 0), (("tumor_percent_of_baseline", ax_tumor),
                                              ("car_t_cells", ax_car_t))):
        bands = replicate_bands(data, column)
        for i, scenario in enumerate(scenarios):
            band = bands[bands["scenario"] == scenario]
            c = PALETTE[(i + colour) % len(PALETTE)]
            ax.plot(band["time_days"], band["median"], color=c, lw=2,
                    label=_label(scenario, summary))
            ax.fill_between(band["time_days"], band["q25"], band["q75"], color=c, alpha=0.25,
                            lw=0)
    n_reps = data.groupby("scenario")["replicate"].nunique().max()
    ax_tumor.set_title(f"Tumour burden (median, IQR over {n_reps} replicates)")
    ax_tumor.set_xlabel("time since start (days)")
    ax_tumor.set_ylabel("cancer cells (% of day-0 count)")
    ax_tumor.axhline(100.0, color="0.6", lw=0.8, ls="--")
    ax_car_t.set_title("CAR-T cells on the lattice")
    ax_car_t.set_xlabel("time since start (days)")
    ax_car_t.set_ylabel("CAR-T cells (count)")
    if log_scale:
        for ax in (ax_tumor, ax_car_t):
            ax.set_yscale("symlog", linthresh=1.0)
    for ax in (ax_tumor, ax_car_t):
        ax.grid(alpha=0.3)
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
    ax_tumor.legend(loc="best", fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=120, metadata={"Software": None} if str(path).endswith(".png")
                    else None)
    return fig


def response_counts(summary: pd.DataFrame) -> pd.DataFrame:
    """Runs per scenario and response class (CR, PR, SD, PD), zeros included."""
    counts = pd.crosstab(summary["scenario"], summary["response"])
    for response in ("CR", "PR", "SD", "PD"):
        if response not in counts:
            counts[response] = 0
    order = list(dict.fromkeys(summary["scenario"]))
    return counts.loc[order, ["CR", "PR", "SD", "PD"]].astype(np.int64)
