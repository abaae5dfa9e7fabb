"""Figures of a fit (``cartsim fit``, ``simulation.study.fit``).

=================  ==========================================================================
``plot_posterior`` marginals (weighted histograms, the uniform prior dashed) on the diagonal,
                   pairs (particles sized by weight) below, median and credible interval
                   above; every axis spans the prior, so the posterior's shrinkage is visible
``plot_fit``       the data (with their sd) and the posterior-predictive median and central
                   band over the draws, one panel per simulated scenario (a summary quantity:
                   one interval per observation)
=================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib import ticker
import numpy as np
import pandas as pd

from ..analysis.calibration import TIME_COLUMNS, Observations, weighted_quantiles
from .style import PALETTE, finish, styled

#: bins of a marginal, evenly spaced over the prior (in its scale)
MARGINAL_BINS = 20
#: axis labels of common observed columns (others are shown by name)
OBSERVED_LABELS = {"percent_of_control": "target cells (% of untreated control)",
                   "car_t_blood_per_ul": "CAR-T per uL of blood",
                   "tumor_cells": "tumour cells", "kills_per_car_t": "targets killed per CAR-T"}
TIME_LABELS = {"time_h": "time (h)", "time_days": "time (days)"}


def _edges(low: float, high: float, log: bool) -> np.ndarray:
    if log:
        return np.logspace(np.log10(low), np.log10(high), MARGINAL_BINS + 1)
    return np.linspace(low, high, MARGINAL_BINS + 1)


@styled
def plot_posterior(posterior: pd.DataFrame, priors: Mapping[str, tuple[float, float, bool]],
                   path: str | Path | None = None, truth: Mapping[str, float] | None = None,
                   generation: int | None = None, level: float = 0.9) -> plt.Figure:
    """Corner plot of weighted particles (``posterior``: one column per key of ``priors`` and
    ``weight``); ``priors``: key -> (low, high, log scale); ``truth``: known values, marked."""
    keys = list(priors)
    k = len(keys)
    weights = posterior["weight"].to_numpy(float)
    weights = weights / weights.sum()
    fig, axes = plt.subplots(k, k, figsize=(max(6.5, 2.9 * k + 0.8), 2.7 * k + 1.2),
                             squeeze=False, constrained_layout=True)
    for i, key in enumerate(keys):
        low, high, log = priors[key]
        values = posterior[key].to_numpy(float)
        ax = axes[i][i]
        ax.hist(values, bins=_edges(low, high, log), weights=weights, color=PALETTE[0],
                alpha=0.7, label="posterior")
        ax.axhline(1.0 / MARGINAL_BINS, color="0.3", ls="--", lw=1.2, label="prior (uniform)")
        lo, median, hi = weighted_quantiles(values, weights, [(1 - level) / 2, 0.5,
                                                               (1 + level) / 2])
        ax.axvspan(lo, hi, color=PALETTE[0], alpha=0.12, lw=0,
                   label=f"{level:.0%} credible interval")
        if truth and key in truth:
            ax.axvline(truth[key], color=PALETTE[1], lw=2, label="truth")
        ax.set_ylabel("posterior weight per bin")
        for j in range(k):
            if j > i:
                axes[i][j].axis("off")
        _range_axis(ax, low, high, log, "x")
        ax.set_xlabel(key)
        ax.set_title(f"median {median:.3g} ({level:.0%}: {lo:.3g}-{hi:.3g})", fontsize=9)
        for j in range(i):
            other = keys[j]
            pair = axes[i][j]
            pair.scatter(posterior[other], values, s=4 + 400 * weights, color=PALETTE[0],
                         alpha=0.5, lw=0)
            if truth and key in truth and other in truth:
                pair.plot(truth[other], truth[key], marker="*", ms=14, color=PALETTE[1])
            _range_axis(pair, *priors[other], "x")
            _range_axis(pair, low, high, log, "y")
            pair.set_xlabel(other)
            pair.set_ylabel(key)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 2 * k))
    where = f"generation {generation}, " if generation is not None else ""
    fig.suptitle(f"Posterior ({where}n = {len(posterior)} weighted particles)\naxes span "
                 "the prior")
    return finish(fig, path)


def _range_axis(ax: plt.Axes, low: float, high: float, log: bool, which: str) -> None:
    """The prior's range on the ``which`` axis; a log prior on a log axis ticked 1-2-5."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log" if log else "linear")
    (ax.set_xlim if which == "x" else ax.set_ylim)(low, high)
    if log:
        axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(ticker.NullFormatter())


@styled
def plot_fit(observations: Observations, predictive: pd.DataFrame,
             path: str | Path | None = None, level: float = 0.9,
             replicates: int = 1) -> plt.Figure:
    """The data and the posterior predictive (``FitResult.predictive``: ``draw`` plus
    ``scenario``, ``time_h``, ``value`` for a time course, ``line``, ``value`` for a summary
    quantity): median and central ``level`` band over the draws."""
    table = observations.table
    draws = int(predictive["draw"].nunique())
    quantiles = [(1 - level) / 2, 0.5, (1 + level) / 2]
    ylabel = OBSERVED_LABELS.get(observations.column, observations.column)
    if observations.time_column is None:
        fig, ax = plt.subplots(figsize=(max(7.0, 0.6 * len(table) + 2.5), 4.6),
                               constrained_layout=True)
        by_line = predictive.groupby("line")["value"].quantile(quantiles).unstack()
        x = np.arange(len(table))
        low, median, high = (by_line.loc[table["line"], q].to_numpy() for q in quantiles)
        ax.errorbar(x + 0.1, median, yerr=[median - low, high - median], fmt="s",
                    color=PALETTE[0], label=f"posterior predictive median, {level:.0%} band")
        _data_points(ax, x - 0.1, table)
        ax.set_xticks(x, [f"{s}\n(line {n})" for s, n in zip(table["scenario"], table["line"])],
                      rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(table) - 0.4)
        ax.set_ylabel(ylabel)
        axes = [ax]
    else:
        scenarios = list(dict.fromkeys(table["scenario"]))
        cols = min(3, len(scenarios))
        rows = -(-len(scenarios) // cols)
        fig, grid = plt.subplots(rows, cols, figsize=(4.6 * cols + 0.6, 3.6 * rows + 0.8),
                                 squeeze=False, constrained_layout=True, sharey=True)
        axes = list(grid.flat)
        factor = TIME_COLUMNS[observations.time_column]
        for ax, scenario in zip(axes, scenarios):
            band = _common_grid_band(predictive[predictive["scenario"] == scenario], quantiles)
            t = band.index.to_numpy(float) / factor
            ax.fill_between(t, band[quantiles[0]], band[quantiles[2]], color=PALETTE[0],
                            alpha=0.25, lw=0, label=f"posterior predictive {level:.0%} band")
            ax.plot(t, band[quantiles[1]], color=PALETTE[0], lw=2,
                    label="posterior predictive median")
            here = table[table["scenario"] == scenario]
            _data_points(ax, here["time_h"].to_numpy() / factor, here)
            ax.set_title(_condition_title(scenario, here), fontsize=9)
            ax.set_xlabel(TIME_LABELS[observations.time_column])
        values = table["value"].to_numpy(float)
        if (values > 0).all() and values.max() > 100 * values.min():  # decades: a log axis
            for ax in axes[:len(scenarios)]:
                ax.set_yscale("log")
                ax.set_ylim(bottom=0.3 * values.min())
        for ax in axes[len(scenarios):]:
            ax.axis("off")
        for ax in grid[:, 0]:
            ax.set_ylabel(ylabel)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center",
               ncol=min(len(labels), 2 if len(axes) == 1 else len(labels)), fontsize=8)
    fig.suptitle(f"Data (n = {len(table)} observations) and posterior predictive\nover {draws} "
                 f"draws ({replicates} simulation(s) each)")
    return finish(fig, path)


def _common_grid_band(curves: pd.DataFrame, quantiles: list[float]) -> pd.DataFrame:
    """Quantiles over the draws of time courses sampled at different times (a trial patient
    hands over to the systemic model on its own day): each draw interpolated onto the union
    of their times, within its own span; index time_h, one column per quantile."""
    grid = np.unique(curves["time_h"].to_numpy(float))
    on_grid = []
    for _, course in curves.groupby("draw"):  # a draw is already its replicates' mean
        course = course.sort_values("time_h")
        t, v = course["time_h"].to_numpy(float), course["value"].to_numpy(float)
        on_grid.append(np.where((grid >= t[0]) & (grid <= t[-1]), np.interp(grid, t, v),
                                np.nan))
    values = pd.DataFrame(np.array(on_grid), columns=grid)
    return values.quantile(quantiles).T.rename_axis("time_h")


def _data_points(ax: plt.Axes, x: np.ndarray, rows: pd.DataFrame) -> None:
    """The observations: with their reported interval (``low``-``high``) where the data give
    one, else ± their sd where they give that."""
    value = rows["value"].to_numpy(float)
    # cohort readouts (analysis.calibration.read_readouts) carry no interval columns
    if "low" in rows and np.isfinite(rows["low"].to_numpy(float)).all():
        yerr, label = [value - rows["low"], rows["high"] - value], "data, reported interval"
    else:
        sd = rows["sd"].to_numpy(float)
        yerr = np.where(np.isfinite(sd), sd, 0.0)
        label = "data" + (" ± sd" if np.isfinite(sd).all() else "")
    ax.errorbar(x, value, yerr=yerr, fmt="o", color=PALETTE[1], ms=5, capsize=2, label=label,
                zorder=3)


def _condition_title(scenario: str, rows: pd.DataFrame) -> str:
    extra = [f"{name.replace('_', ' ')} {rows[name].iloc[0]:g}" for name in
             ("effector_to_target", "antigen_molecules_per_cell") if name in rows]
    return scenario + (f"\n({', '.join(extra)})" if extra else "")
