"""Figures of a virtual trial, drawn from its patient table (``patients.csv``).

``plot_trial``: response and CRS rates with 95 % Wilson intervals beside the published values;
Kaplan-Meier PFS, EFS and RFS with 95 % bands (lifelines); duration of response and B-cell
aplasia; relapse composition; CRS grades; CAR-T Cmax and AUC0-28 of responders vs
non-responders. ``plot_trial_waterfall``: best % change of the burden per patient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..analysis.trial import (CRS_GRADES, DAYS_PER_MONTH, Readout, crs_grade_counts,
                              kaplan_meier_fit)
from .plotting import PALETTE, _finish, _styled, plot_waterfall

#: the rates drawn as bars, in order
RATE_READOUTS = ("orr", "cr_rate", "mrd_negative_rate", "crs_any", "crs_grade3")
RATE_LABELS = {"orr": "ORR", "cr_rate": "CR", "mrd_negative_rate": "MRD-neg",
               "crs_any": "CRS", "crs_grade3": "CRS >= 3"}


def _rates(ax: plt.Axes, readouts: Mapping[str, Readout], published: Mapping[str, float]
           ) -> None:
    shown = [readouts[name] for name in RATE_READOUTS]
    x = np.arange(len(shown))
    values = np.array([100 * r.value for r in shown])
    errors = np.array([[100 * (r.value - r.low) for r in shown],
                       [100 * (r.high - r.value) for r in shown]])
    ax.bar(x, values, color=PALETTE[0], alpha=0.8, label="simulated (95 % Wilson CI)")
    ax.errorbar(x, values, yerr=errors, fmt="none", ecolor="0.2", capsize=3)
    ref = [(i, 100 * published[r.name]) for i, r in enumerate(shown) if r.name in published]
    if ref:
        ax.scatter(*zip(*ref), marker="D", color=PALETTE[1], zorder=5, label="published")
    ax.set_xticks(x, [RATE_LABELS[r.name] for r in shown])
    ax.set_ylim(0, 105)
    ax.set_ylabel("patients (%)")
    ax.set_title(f"Response and CRS (n = {shown[0].n})")
    ax.legend(loc="upper right", fontsize=8)


def _km(ax: plt.Axes, curves: Sequence[tuple[str, pd.Series, pd.Series]], title: str,
        ylabel: str, published: Mapping[str, tuple[float, float]] | None = None) -> None:
    for colour, (label, days, events) in zip(PALETTE, curves):
        if not len(days):
            continue
        fit = kaplan_meier_fit(days / DAYS_PER_MONTH, events, label)
        survival = fit.survival_function_.iloc[:, 0]
        band = fit.confidence_interval_survival_function_
        ax.step(survival.index, 100 * survival, where="post", color=colour, lw=2,
                label=f"{label} ({int(events.sum())} events / n = {len(days)})")
        ax.fill_between(band.index, 100 * band.iloc[:, 0], 100 * band.iloc[:, 1],
                        step="post", color=colour, alpha=0.2, lw=0)
        if published and label in published:
            month, value = published[label]
            ax.scatter([month], [100 * value], marker="D", color=colour, edgecolor="k",
                       zorder=5)
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


def _expansion(ax: plt.Axes, patients: pd.DataFrame) -> None:
    responders = patients["responded"].astype(bool)
    positions = []
    for i, column in enumerate(("car_t_cmax", "car_t_auc_0_28")):
        for j, (group, label) in enumerate(((responders, "R"), (~responders, "NR"))):
            values = patients.loc[group, column].to_numpy(dtype=float)
            values = values[values > 0]
            x = 3 * i + j
            positions.append((x, f"{'Cmax' if i == 0 else 'AUC0-28'}\n{label} n={len(values)}"))
            if len(values):
                ax.boxplot([values], positions=[x], widths=0.6, showfliers=False)
                jitter = np.linspace(-0.2, 0.2, len(values))
                ax.scatter(x + jitter, values, s=6, alpha=0.5,
                           color=PALETTE[0] if j == 0 else PALETTE[1])
    ax.set_yscale("log")
    ax.set_xticks([p for p, _ in positions], [t for _, t in positions], fontsize=7)
    ax.set_ylabel("CAR-T per baseline cancer cell\n(Cmax) or x days (AUC0-28)")
    ax.set_title("CAR-T expansion: responders (R) vs not (NR)")


@_styled
def plot_trial(patients: pd.DataFrame, readouts: Sequence[Readout], name: str,
               path: str | Path | None = None, published: Mapping[str, float] | None = None,
               at_months: float = 12.0) -> plt.Figure:
    """The trial's readouts on one page (see module docstring); ``published`` readout values
    are drawn as diamonds."""
    published = dict(published or {})
    by_name = {r.name: r for r in readouts}
    fig, axes = plt.subplots(2, 3, figsize=(16, 9), constrained_layout=True)
    _rates(axes[0, 0], by_name, published)
    cr = patients["best_response"] == "CR"
    responders = patients["responded"].astype(bool)
    at = {label: (at_months, published[key]) for label, key in
          (("PFS", "pfs"), ("EFS", "efs"), ("RFS", "rfs")) if key in published}
    _km(axes[0, 1], [("PFS", patients["pfs_day"], patients["progressed"]),
                     ("EFS", patients["efs_day"], patients["efs_event"]),
                     ("RFS", patients.loc[cr, "rfs_day"], patients.loc[cr, "progressed"])],
        "Kaplan-Meier, 95 % CI band (RFS: CR patients, from CR)", "event-free (%)", at)
    aplastic = patients["b_cell_aplasia"].astype(bool)
    _km(axes[0, 2], [("response", patients.loc[responders, "dor_day"],
                      patients.loc[responders, "progressed"]),
                     ("B-cell aplasia", patients.loc[aplastic, "b_cell_aplasia_day"],
                      patients.loc[aplastic, "b_cell_recovery_day"].notna())],
        "Duration of response and of B-cell aplasia", "continuing (%)")
    axes[0, 2].set_xlabel("months after response / aplasia onset")
    _relapses(axes[1, 0], patients)
    _crs(axes[1, 1], patients)
    _expansion(axes[1, 2], patients)
    fig.suptitle(f"Virtual trial {name}: n = {len(patients)} patients")
    return _finish(fig, path)


def plot_trial_waterfall(patients: pd.DataFrame, name: str, path: str | Path | None = None
                         ) -> plt.Figure:
    """Best % change of the burden per patient, coloured by best response."""
    table = pd.DataFrame({
        "scenario": name, "tumor_type": patients["tumor_type"], "replicate": patients["patient"],
        "response": patients["best_response"],
        "baseline_tumor_cells": patients["baseline_tumor_cells"],
        "nadir_tumor_cells": patients["baseline_tumor_cells"]
        * patients["burden_nadir"]})
    return plot_waterfall(table, path, unit="patient")
