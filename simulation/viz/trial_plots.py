"""Figures of a virtual trial, drawn from its patient table (``patients.csv``).

``plot_trial``: response and CRS rates with 95 % Wilson intervals beside the published values
(with their intervals where published); Kaplan-Meier PFS, EFS and RFS with 95 % bands
(lifelines); duration of response and B-cell aplasia; relapse composition; CRS grades; CAR-T
Cmax and AUC0-28 of responders vs non-responders, each on its own axis. ``plot_trial_waterfall``:
best % change of the burden per patient.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib import ticker
import numpy as np
import pandas as pd

from ..analysis.trial import (CRS_GRADES, DAYS_PER_MONTH, Readout, crs_grade_counts,
                              kaplan_meier_fit)
from .study_plots import plot_waterfall
from .style import PALETTE, finish, styled

#: a published value: (value, low, high) of its 95 % interval (None where not published)
Published = tuple[float, float | None, float | None]
#: fewest points of a group drawn as a box plot; fewer are drawn as points with their median
MIN_BOX_POINTS = 5

#: the rates drawn as bars, in order
RATE_READOUTS = ("orr", "dcr", "cr_rate", "mrd_negative_rate", "crs_any", "crs_grade3")
RATE_LABELS = {"orr": "ORR", "dcr": "DCR", "cr_rate": "CR", "mrd_negative_rate": "MRD-neg",
               "crs_any": "CRS", "crs_grade3": "CRS >= 3"}


def _published_point(ax: plt.Axes, x: float, published: Published, colour, **style) -> None:
    """A published value (%) as a diamond at ``x``, with its 95 % interval as an error bar
    where it was published."""
    value, low, high = (None if v is None else 100 * v for v in published)
    if low is not None and high is not None:
        ax.errorbar([x], [value], yerr=[[value - low], [high - value]], fmt="none",
                    ecolor=colour, elinewidth=1.5, capsize=4, zorder=5)
    ax.scatter([x], [value], marker="D", color=colour, edgecolor="k", zorder=6, **style)


def _rates(ax: plt.Axes, readouts: Mapping[str, Readout], published: Mapping[str, Published]
           ) -> None:
    shown = [readouts[name] for name in RATE_READOUTS]
    x = np.arange(len(shown))
    values = np.array([100 * r.value for r in shown])
    errors = np.array([[100 * (r.value - r.low) for r in shown],
                       [100 * (r.high - r.value) for r in shown]])
    ax.bar(x, values, color=PALETTE[0], alpha=0.8, label="simulated (95 % Wilson CI)")
    ax.errorbar(x, values, yerr=errors, fmt="none", ecolor="0.2", capsize=3)
    for i, r in enumerate(shown):
        if r.name in published:
            _published_point(ax, i + 0.25, published[r.name], PALETTE[1])
    if any(r.name in published for r in shown):
        ax.scatter([], [], marker="D", color=PALETTE[1], edgecolor="k",
                   label="published (95 % CI where published)")
    ax.set_xticks(x, [RATE_LABELS[r.name] for r in shown])
    ax.set_ylim(0, 128)  # room for the legend above the 100 % bars
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("patients (%)")
    ax.set_title(f"Response and CRS (n = {shown[0].n})")
    ax.legend(loc="upper center", ncols=2, fontsize=8)


def _km(ax: plt.Axes, curves: Sequence[tuple[str, pd.Series, pd.Series]], title: str,
        ylabel: str, published: Mapping[str, tuple[float, Published]] | None = None) -> None:
    """Kaplan-Meier curves; each 95 % band drawn as a light fill edged by dotted lines of
    its colour, so that overlapping bands stay apart; published values at their month."""
    for colour, (label, days, events) in zip(PALETTE, curves):
        if not len(days):
            continue
        fit = kaplan_meier_fit(days / DAYS_PER_MONTH, events, label)
        survival = fit.survival_function_.iloc[:, 0]
        band = fit.confidence_interval_survival_function_
        ax.step(survival.index, 100 * survival, where="post", color=colour, lw=2,
                label=f"{label} ({int(events.sum())} events / n = {len(days)})")
        ax.fill_between(band.index, 100 * band.iloc[:, 0], 100 * band.iloc[:, 1],
                        step="post", color=colour, alpha=0.08, lw=0)
        for edge in (band.iloc[:, 0], band.iloc[:, 1]):
            ax.step(band.index, 100 * edge, where="post", color=colour, lw=1, ls=":")
        if published and label in published:
            month, value = published[label]
            _published_point(ax, month, value, colour)
    ax.plot([], [], color="0.3", lw=1, ls=":", label="95 % CI (dotted, shaded)")
    if published:
        ax.scatter([], [], marker="D", color="0.6", edgecolor="k",
                   label="published (95 % CI where published)")
    ax.set_ylim(-3, 103)
    ax.set_xlim(left=0)
    ax.set_xlabel("months after infusion")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=7)


def _relapses(ax: plt.Axes, patients: pd.DataFrame) -> None:
    relapsed = patients[patients["responded"].astype(bool) & patients["progressed"].astype(bool)]
    counts = relapsed["relapse_antigen"].value_counts()
    n = len(relapsed)
    labels = ("positive", "negative")
    shares = [100 * counts.get(k, 0) / n if n else 0.0 for k in labels]
    ax.bar([0, 1], shares, color=[PALETTE[2], PALETTE[3]])
    for i, k in enumerate(labels):
        ax.text(i, shares[i] + 2, f"{counts.get(k, 0)}", ha="center", fontsize=9)
    ax.set_xticks([0, 1], ["antigen-positive", "antigen-negative"])
    ax.set_ylim(0, 105)
    ax.set_ylabel("relapses after response (%)")
    ax.set_title(f"Relapse composition (n = {n} relapses)")


def _crs(ax: plt.Axes, patients: pd.DataFrame) -> None:
    counts = crs_grade_counts(patients)
    share = 100 * counts / max(1, len(patients))
    ax.bar(list(CRS_GRADES), share.to_numpy(), color=PALETTE[4])
    ax.set_xticks(list(CRS_GRADES), [str(g) for g in CRS_GRADES])
    ax.set_xlabel("CRS grade (0 = none)")
    ax.set_ylabel("patients (%)")
    ax.set_title(f"CRS grade distribution (n = {len(patients)})")


#: the expansion panels: (column, title, y label with its unit)
EXPANSION_PANELS = (
    ("car_t_cmax", "CAR-T Cmax", "Cmax (CAR-T per baseline cancer cell)"),
    ("car_t_auc_0_28", "CAR-T AUC0-28", "AUC0-28 (CAR-T per baseline cancer cell x days)"),
)


def _decades(ax: plt.Axes) -> float:
    """Decades the y-axis of a log-scaled ``ax`` spans."""
    low, high = ax.get_ylim()
    return float(np.log10(high / low)) if low > 0 else math.inf


def _expansion(ax: plt.Axes, patients: pd.DataFrame, column: str, title: str, ylabel: str
               ) -> None:
    """One expansion readout of responders (R) and non-responders (NR) on a log axis: every
    patient a point; a group of ``MIN_BOX_POINTS`` or more also a box (median, IQR,
    whiskers to 1.5 IQR), a smaller one its median as a bar; n under each group."""
    responders = patients["responded"].astype(bool)
    names = []
    for x, (group, label) in enumerate(((responders, "R"), (~responders, "NR"))):
        values = patients.loc[group, column].to_numpy(dtype=float)
        values = values[values > 0]
        names.append(f"{label}\nn = {len(values)}")
        if not len(values):
            continue
        if len(values) >= MIN_BOX_POINTS:
            ax.boxplot([values], positions=[x], widths=0.6, showfliers=False)
        else:
            ax.plot([x - 0.25, x + 0.25], [np.median(values)] * 2, color="0.2", lw=1.5,
                    gid="median")
        jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(1)
        ax.scatter(x + jitter, values, s=12, alpha=0.7, zorder=3,
                   color=PALETTE[0] if x == 0 else PALETTE[1])
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    # minor ticks labelled only on an axis spanning under one decade (else they overlap)
    ax.yaxis.set_minor_formatter(ticker.FuncFormatter(
        lambda value, position: f"{value:g}" if _decades(ax) < 1 else ""))
    ax.set_xticks([0, 1], names)
    ax.set_xlim(-0.6, 1.6)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(f"{title}: R vs NR", fontsize=10)


@styled
def plot_trial(patients: pd.DataFrame, readouts: Sequence[Readout], name: str,
               path: str | Path | None = None,
               published: Mapping[str, float | Published] | None = None,
               at_months: float = 12.0) -> plt.Figure:
    """The trial's readouts on one page (see module docstring); ``published`` readout values
    (a value, or (value, low, high) of its 95 % interval) are drawn as diamonds, with their
    intervals where given. Groups of fewer than ``MIN_BOX_POINTS`` patients are drawn as
    points, not boxes."""
    published = {key: value if isinstance(value, tuple) else (value, None, None)
                 for key, value in (published or {}).items()}
    by_name = {r.name: r for r in readouts}
    fig = plt.figure(figsize=(16, 9), layout="constrained")
    grid = fig.add_gridspec(2, 6)
    rates, survival, durations, relapses, crs = (  # two grid columns each
        fig.add_subplot(grid[k // 3, 2 * (k % 3):2 * (k % 3) + 2]) for k in range(5))
    _rates(rates, by_name, published)
    cr = patients["best_response"] == "CR"
    responders = patients["responded"].astype(bool)
    at = {label: (at_months, published[key]) for label, key in
          (("PFS", "pfs"), ("EFS", "efs"), ("RFS", "rfs")) if key in published}
    _km(survival, [("PFS", patients["pfs_day"], patients["progressed"]),
                   ("EFS", patients["efs_day"], patients["efs_event"]),
                   ("RFS", patients.loc[cr, "rfs_day"], patients.loc[cr, "progressed"])],
        "Kaplan-Meier, 95 % CI band (RFS: CR patients, from CR)", "event-free (%)", at)
    aplastic = patients["b_cell_aplasia"].astype(bool)
    _km(durations, [("response", patients.loc[responders, "dor_day"],
                     patients.loc[responders, "progressed"]),
                    ("B-cell aplasia", patients.loc[aplastic, "b_cell_aplasia_day"],
                     patients.loc[aplastic, "b_cell_recovery_day"].notna())],
        "Duration of response and of B-cell aplasia", "continuing (%)")
    durations.set_xlabel("months after response / aplasia onset")
    _relapses(relapses, patients)
    _crs(crs, patients)
    for column, panel in enumerate(EXPANSION_PANELS):  # one grid column each
        _expansion(fig.add_subplot(grid[1, 4 + column]), patients, *panel)
    fig.suptitle(f"Virtual trial {name}: n = {len(patients)} patients")
    return finish(fig, path)


def plot_trial_waterfall(patients: pd.DataFrame, name: str, path: str | Path | None = None
                         ) -> plt.Figure:
    """Best % change of the burden per patient, coloured by best response; a PD patient's
    final change (at the end of follow-up) marked, relapses after a response counted in the
    title (``plot_waterfall``)."""
    table = pd.DataFrame({
        "scenario": name, "tumor_type": patients["tumor_type"], "replicate": patients["patient"],
        "response": patients["best_response"],
        "relapse": patients["responded"].astype(bool) & patients["progressed"].astype(bool),
        "baseline_tumor_cells": patients["baseline_tumor_cells"],
        "nadir_tumor_cells": patients["baseline_tumor_cells"] * patients["burden_nadir"],
        "final_tumor_cells": patients["baseline_tumor_cells"] * patients["burden_final"]})
    return plot_waterfall(table, path, unit="patient")
