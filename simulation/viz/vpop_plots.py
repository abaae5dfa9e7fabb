"""The figure of a virtual-population calibration (``study.vpop``): each published readout
beside the pool's share before and after weighting and the drawn cohort's readout with its
95 % interval; and how the weights move the properties they move most (pool vs weighted
histograms)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker
import pandas as pd

from .style import PALETTE, finish, styled

#: properties drawn beside the readouts (the ones the weights move most)
SHOWN_PROPERTIES = 4
#: histogram bins of a property
BINS = 24


@styled
def plot_vpop(readouts: pd.DataFrame, shifts: pd.DataFrame, properties: pd.DataFrame,
              weights: np.ndarray, effective_size: float, name: str,
              path: str | Path | None = None) -> plt.Figure:
    """``readouts``: ``study.vpop._readout_table`` (with ``fresh`` columns when the drawn
    cohort was simulated again); ``shifts``:
    ``analysis.vpop.property_shifts``; ``properties``: one row per pool patient."""
    shown = shifts.head(SHOWN_PROPERTIES)
    fig = plt.figure(figsize=(15, 6.5), layout="constrained")
    grid = fig.add_gridspec(2, 4)
    _readouts(fig.add_subplot(grid[:, :2]), readouts)
    for k, row in enumerate(shown.itertuples()):
        _property(fig.add_subplot(grid[k // 2, 2 + k % 2]), properties[row.property].to_numpy(
            dtype=float), weights, row.property, bool(row.log_scale), row.shift_sd)
    fig.suptitle(f"{name}: pool of n = {len(weights)} patients weighted to the published "
                 f"readouts (effective sample size {effective_size:.0f})")
    return finish(fig, path)


def _readouts(ax: plt.Axes, readouts: pd.DataFrame) -> None:
    y = np.arange(len(readouts))[::-1]
    for yi, row in zip(y, readouts.itertuples(), strict=True):
        ax.plot([100 * row.published_low, 100 * row.published_high], [yi, yi], color="0.75",
                lw=9, solid_capstyle="butt", label="published 95 % CI" if yi == y[0] else None)
        ax.plot([100 * row.band_low, 100 * row.band_high], [yi, yi], color=PALETTE[4], lw=9,
                alpha=0.6, solid_capstyle="butt", label="band targeted" if yi == y[0] else None)
        ax.scatter([100 * row.published], [yi], marker="D", color="k", zorder=5,
                   label="published" if yi == y[0] else None)
        ax.scatter([100 * row.pool], [yi + 0.22], marker="o", facecolor="white",
                   edgecolor=PALETTE[1], zorder=5, label="pool, equal weights"
                   if yi == y[0] else None)
        ax.scatter([100 * row.weighted], [yi + 0.22], marker="o", color=PALETTE[0], zorder=6,
                   label="pool, weighted" if yi == y[0] else None)
        ax.errorbar([100 * row.cohort], [yi - 0.25],
                    xerr=[[100 * (row.cohort - row.cohort_low)],
                          [100 * (row.cohort_high - row.cohort)]],
                    fmt="s", color=PALETTE[2], ms=5, capsize=3,
                    label="drawn cohort (95 % CI)" if yi == y[0] else None)
        if "fresh" in readouts.columns:  # the drawn cohort simulated again with new seeds
            ax.errorbar([100 * row.fresh], [yi - 0.42],
                        xerr=[[100 * (row.fresh - row.fresh_low)],
                              [100 * (row.fresh_high - row.fresh)]],
                        fmt="^", color=PALETTE[3], ms=5, capsize=3,
                        label="drawn cohort, new seeds (95 % CI)" if yi == y[0] else None)
    ax.set_yticks(y, [f"{row.label}\n(cohort n = {row.cohort_n})"
                      for row in readouts.itertuples()])
    ax.set_xlim(0, 100)
    ax.set_xlabel("patients (%)")
    ax.set_title("Readouts: published vs pool, before and after weighting")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3, fontsize="small")


def _log_axis(ax: plt.Axes, which: str) -> None:
    """Axis ``which`` ("x" or "y") on a log scale (call it once the data are drawn): over a
    few decades labelled at 1, 2 and 5 per decade in plain numbers, else at decades; never
    crowded minor labels."""
    getattr(ax, f"set_{which}scale")("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    low, high = getattr(ax, f"get_{which}lim")()
    if high / low < 1e3:  # a few decades: 1, 2, 5 in each, in plain numbers
        axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def _property(ax: plt.Axes, values: np.ndarray, weights: np.ndarray, key: str, log: bool,
              shift: float) -> None:
    edges = (np.geomspace(values.min(), values.max(), BINS + 1) if log
             else np.linspace(values.min(), values.max(), BINS + 1))
    ax.hist(values, bins=edges, weights=np.full(len(values), 100.0 / len(values)),
            color=PALETTE[1], alpha=0.35, label="pool")
    ax.hist(values, bins=edges, weights=100.0 * weights, histtype="step", lw=2,
            color=PALETTE[0], label="weighted")
    if log:
        _log_axis(ax, "x")
    ax.set_xlabel(key)
    ax.set_ylabel("patients (%)")
    ax.set_title(f"shift {shift:+.2f} SD", fontsize="medium")
    ax.legend(fontsize="small")


#: the panels of ``plot_kinetics_by_response``: quantity -> (title, log axis)
KINETIC_PANELS = {"cmax": ("Cmax", True), "tmax": ("Tmax (days)", False),
                  "auc_0_28": ("AUC0-28", True), "half_life": ("post-peak half-life (days)", True)}


@styled
def plot_kinetics_by_response(table: pd.DataFrame, info: dict, name: str,
                              path: str | Path | None = None) -> plt.Figure:
    """Blood kinetics of responders vs non-responders: the label's values beside the weighted
    cohort's, with its bootstrap interval (``analysis.response_kinetics.compare_with_label``);
    counts in the label's unit through the fitted factor ``info["factor"]``."""
    fig, axes = plt.subplots(1, len(KINETIC_PANELS), figsize=(15, 4.2), layout="constrained")
    for ax, (quantity, (title, log)) in zip(axes, KINETIC_PANELS.items(), strict=True):
        rows = table[(table["quantity"] == quantity) & (table["statistic"] != "ratio")]
        x = np.arange(len(rows))
        ax.scatter(x - 0.1, rows["label"], marker="D", color="k", zorder=5,
                   label="label (n per stratum below)")
        ax.errorbar(x + 0.1, rows["model"], yerr=[rows["model"] - rows["model_low"],
                                                  rows["model_high"] - rows["model"]],
                    fmt="o", color=PALETTE[0], capsize=4, label="model, weighted (90 % CI)")
        ax.set_xticks(x, [f"{s}\nlabel n = {n:.0f}\nmodel n = {info['patients'][s]}\n"
                          f"({100 * info['weighted_share'][s]:.0f} % of weight)"
                          for s, n in zip(rows["stratum"], rows["label_n"], strict=True)])
        ax.set_xlim(-0.6, len(rows) - 0.4)
        if log:
            # the label's points and the intervals inside the frame (log autoscaling may put
            # the lowest point on the edge)
            shown = pd.concat([rows["label"], rows["model_low"], rows["model_high"]])
            shown = shown[np.isfinite(shown) & (shown > 0)]
            if len(shown):
                ax.set_ylim(shown.min() / 1.4, shown.max() * 1.4)
            _log_axis(ax, "y")
        unit = rows["unit"].iloc[0] if len(rows) else ""
        ax.set_title(f"{title}\n{rows['statistic'].iloc[0] if len(rows) else ''}")
        ax.set_ylabel(unit)
    axes[0].legend(fontsize="small", loc="lower left")
    low, high = info["factor_interval"]
    fig.suptitle(f"{name}: blood CAR-T of responders (CR/CRi) vs non-responders, the "
                 f"Kymriah label beside the weighted pool (effective sample size "
                 f"{info['effective_size']})\ncounts in copies/ug through a fitted factor of "
                 f"{info['factor']:.2g} ({low:.2g}-{high:.2g}) copies/ug per CAR-T in the body")
    return finish(fig, path)


#: the lowest blood level ``plot_kinetics_courses`` shows (copies/ug)
COURSE_FLOOR = 1.0
#: colours of the two strata in ``plot_kinetics_courses``
STRATUM_COLOURS = {"responders": PALETTE[0], "non-responders": PALETTE[1]}


@styled
def plot_kinetics_courses(courses: pd.DataFrame, label: pd.DataFrame, factor: float,
                          name: str, path: str | Path | None = None) -> plt.Figure:
    """Blood CAR-T over time of patients drawn by weight (``courses``: ``patient``,
    ``stratum``, ``days``, ``value`` in the label's unit), median and 10-90 % band per
    stratum, beside the label's points: Cmax (geometric mean) at the median Tmax, with the
    Tmax range, and the post-peak half-life as a line from that point."""
    fig, ax = plt.subplots(figsize=(9, 6.4), layout="constrained")
    by_value = label.set_index(["quantity", "stratum"])
    for stratum, colour in STRATUM_COLOURS.items():
        group = courses[courses["stratum"] == stratum]
        if not len(group):
            continue
        grid = group.pivot_table(index="days", columns="patient", values="value")
        low, mid, high = (grid.quantile(q, axis=1) for q in (0.1, 0.5, 0.9))
        n = grid.shape[1]
        ax.plot(grid.index, mid, color=colour, label=f"model {stratum}, median (n = {n})")
        ax.fill_between(grid.index, low, high, color=colour, alpha=0.2,
                        label=f"model {stratum}, 10-90 %")
        if ("cmax", stratum) not in by_value.index or ("tmax", stratum) not in by_value.index:
            continue
        cmax, tmax = by_value.loc[("cmax", stratum)], by_value.loc[("tmax", stratum)]
        ax.errorbar([tmax["value"]], [cmax["value"]],
                    xerr=[[tmax["value"] - tmax["low"]], [tmax["high"] - tmax["value"]]],
                    fmt="D", color=colour, mec="k", capsize=4,
                    label=f"label {stratum}: Cmax at median Tmax (Tmax range; n = "
                          f"{cmax['n']:.0f})")
        if ("half_life", stratum) in by_value.index:
            half = by_value.loc[("half_life", stratum), "value"]
            days = np.linspace(tmax["value"], tmax["value"] + 42, 30)
            ax.plot(days, cmax["value"] * 2 ** (-(days - tmax["value"]) / half), ls="--",
                    color=colour, label=f"label {stratum}: post-peak half-life {half:g} d")
    ax.set_yscale("log")
    ax.set_ylim(COURSE_FLOOR, None)  # below one copy/ug: extinct, not a blood level
    ax.set_xlim(0, 90)
    ax.set_xlabel("days after infusion")
    ax.set_ylabel("CAR-T in blood (transgene copies/ug DNA)")
    ax.set_title(f"{name}: blood CAR-T vs the Kymriah label\n(model: patients drawn by "
                 f"weight; CAR-T in the body x a fitted {factor:.2g} copies/ug per cell)",
                 fontsize="medium")
    ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    return finish(fig, path)
