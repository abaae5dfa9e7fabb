"""Figures of a study's outcomes, one mark per run or per scenario: response rates, the
waterfall of best % change, Kaplan-Meier progression-free survival, and the blood-vs-solid
comparison (burden, CAR-T and response bars side by side).

Drawn from the tables ``cartsim run`` writes (``summary.csv``, ``timeseries.csv``); each
function returns the Figure and saves it when given a ``path``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from .style import (RESPONSE_COLOURS, RESPONSE_NAMES, figure_and_axes, finish, series_colours,
                    styled)  # first: it picks matplotlib's backend (Agg outside Jupyter)

import matplotlib.pyplot as plt  # noqa: I001
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..analysis.outcomes import (PD_THRESHOLD_PERCENT, PR_THRESHOLD_PERCENT, PROGRESSION_FRACTION,
                                 RELAPSE_MIN_INCREASE_CELLS, RELAPSE_MIN_INCREASE_FRACTION,
                                 RESPONSES, best_percent_change, final_percent_change,
                                 kaplan_meier, progression_events, response_counts,
                                 wilson_interval)
from .time_courses import (TIME_LABEL, burden_axes, car_t_axes, mark_infusions,
                           relative_to_infusion, scenario_label, scenario_names,
                           time_course_legend, with_baseline_percent)

#: most bar labels of a waterfall panel: with more bars, every k-th is labelled
MAX_BAR_LABELS = 20
#: a PD run's final change above this (%) is drawn at it, as an open marker
FINAL_CHANGE_CAP_PERCENT = 300.0


@styled
def plot_response_rates(summary: pd.DataFrame, path: str | Path | None = None,
                        ax: plt.Axes | None = None) -> plt.Figure:
    """Stacked bars: % of replicates per response class (CR/PR/SD/PD), one bar per scenario,
    runs per class written in the segments, n under each bar and the Wilson 95 % interval of
    the CR rate as an error bar at the top of the CR segment."""
    fig, ax = figure_and_axes(ax, (4.5, 4.2))
    counts = response_counts(summary)
    percent = 100.0 * counts.div(counts.sum(axis=1), axis=0)
    x = np.arange(len(percent))
    bottom = np.zeros(len(percent))
    for response in RESPONSES:
        values = percent[response].to_numpy()
        ax.bar(x, values, bottom=bottom, color=RESPONSE_COLOURS[response], width=0.6,
               label=f"{response}: {RESPONSE_NAMES[response]}")
        for xi, (b, v, n) in enumerate(zip(bottom, values, counts[response])):
            if n:
                ax.text(xi, b + v / 2, str(int(n)), ha="center", va="center", fontsize=9)
        bottom += values
    n = counts.sum(axis=1)
    low, high = wilson_interval(counts["CR"], n)
    cr = percent["CR"].to_numpy()
    ax.errorbar(x + 0.18, cr, yerr=[cr - 100.0 * low, 100.0 * high - cr], fmt="none",
                ecolor="0.1",  # beside the counts written at the bar centres
                capsize=4, lw=1.2, label="CR rate, Wilson 95 % CI")
    tumor_types = summary.groupby("scenario", sort=False)["tumor_type"].first()
    ax.set_xticks(x, [f"{s}\n({tumor_types[s]})\nn = {int(counts.loc[s].sum())}"
                      for s in percent.index])
    ax.set_ylim(0, 100)
    ax.set_ylabel("replicates (%)")
    ax.set_xlabel("scenario")
    n_text = f"n = {n.min()}" if n.min() == n.max() else f"n = {n.min()}-{n.max()}"
    ax.set_title(f"Best response ({n_text} per scenario)")
    ax.grid(axis="x", visible=False)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return finish(fig, path)


@styled
def plot_blood_vs_solid(timeseries: pd.DataFrame, summary: pd.DataFrame,
                        path: str | Path | None = None, log_scale: bool = True,
                        infusions: Mapping[str, Sequence[float]] | None = None,
                        treatments: Mapping[str, str] | None = None) -> plt.Figure:
    """The central comparison in one row: burden, CAR-T (as ``plot_burden``) and
    response-rate bars per scenario."""
    relative, infused = relative_to_infusion(timeseries, infusions)
    data = with_baseline_percent(relative)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4), layout="constrained",
                             gridspec_kw={"width_ratios": [1, 1, 0.8]})
    burden_axes(axes[0], data, summary, log_scale, treatments)
    car_t_axes(axes[1], data, summary, log_scale)
    for ax in axes[:2]:
        mark_infusions(ax, infused, scenario_names(data))
    time_course_legend(fig, axes[:2])
    plot_response_rates.__wrapped__(summary, ax=axes[2])
    return finish(fig, path)


def labelled_bars(n: int) -> np.ndarray:
    """Which of ``n`` bars get a label: all up to ``MAX_BAR_LABELS``, else every k-th (the
    smallest k that keeps to it), so that labels never run together."""
    return np.arange(0, n, max(1, -(-n // MAX_BAR_LABELS)))


@styled
def plot_waterfall(summary: pd.DataFrame, path: str | Path | None = None,
                   unit: str = "replicate") -> plt.Figure:
    """Waterfall: best % change of tumour cells from baseline, one bar per replicate (or
    ``unit``, e.g. patient; labelled below the bars, every k-th of many, ``labelled_bars``).

    Bars are sorted from worst to best within each scenario (one panel each) and coloured by
    response; dashed lines at -30 % (partial response) and +20 % (progression). A run that
    hardly fell below baseline (best change within 1 % of 0: no visible bar) shows as a
    bar-wide mark on the zero line. PD is
    judged on growth, not on the best change a bar shows: where the table has the final
    count (``final_tumor_cells``), a ▲ marks each PD run's final change (above
    ``FINAL_CHANGE_CAP_PERCENT``: an open ▲ at it).
    """
    scenarios = scenario_names(summary)
    fig, axes = plt.subplots(1, len(scenarios), figsize=(max(5.0, 4.6 * len(scenarios) + 2), 4.6),
                             sharey=True, constrained_layout=True, squeeze=False)
    change = best_percent_change(summary)
    final = (final_percent_change(summary) if "final_tumor_cells" in summary
             else pd.Series(np.nan, index=summary.index))
    final = final.where(summary["response"] == "PD")
    top = max(40.0, float(change.max()) * 1.1,
              min(float(final.max(skipna=True) if final.notna().any() else 0.0),
                  FINAL_CHANGE_CAP_PERCENT) * 1.1)
    for ax, scenario in zip(axes[0], scenarios):
        mine = summary["scenario"] == scenario
        values = change[mine].to_numpy()
        responses = summary.loc[mine, "response"].to_numpy()
        order = np.argsort(-values, kind="stable")
        x = np.arange(len(values))
        colours = [RESPONSE_COLOURS[r] for r in responses[order]]
        ax.bar(x, values[order], color=colours, width=0.8)
        # a best change within 1 % of 0 has no visible bar: a mark shows the run is there
        flat = np.abs(values[order]) < 1.0
        ax.scatter(x[flat], np.zeros(int(flat.sum())), marker="_", s=200, linewidths=3,
                   c=[c for c, f in zip(colours, flat) if f], zorder=4)
        _mark_final_changes(ax, x, final[mine].to_numpy()[order])
        ax.axhline(PR_THRESHOLD_PERCENT, color="0.3", ls="--", lw=1)
        ax.axhline(PD_THRESHOLD_PERCENT, color="0.3", ls="--", lw=1)
        ax.axhline(0.0, color="0.3", lw=0.8)
        ax.set_title(scenario_label(scenario, summary, sep="\n"))
        shown = labelled_bars(len(values))
        names = summary.loc[mine, "replicate"].to_numpy()[order]
        ax.set_xticks(x[shown], [str(names[i]) for i in shown], fontsize=8)
        ax.set_xlabel(f"{unit} (sorted)" if len(shown) == len(values)
                      else f"{unit} (sorted; 1 in {shown[1] - shown[0]} labelled)")
        ax.grid(axis="x", visible=False)
        ax.set_ylim(-105.0, top)
    axes[0][0].set_ylabel("best change of cancer cells from baseline (%)")
    for threshold, name in ((PR_THRESHOLD_PERCENT, "PR"), (PD_THRESHOLD_PERCENT, "PD")):
        axes[0][0].text(0.01, threshold, f" {threshold:+.0f} % {name}",
                        transform=axes[0][0].get_yaxis_transform(),
                        va="bottom", fontsize=8, color="0.3", zorder=5,
                        bbox={"facecolor": "white", "alpha": 0.8, "lw": 0, "pad": 1})
    handles = [Patch(color=RESPONSE_COLOURS[r], label=f"{r}: {RESPONSE_NAMES[r]}")
               for r in RESPONSES]
    if final.notna().any():
        handles.append(Line2D([], [], marker="^", color="k", ls="none",
                              label=f"PD run: its final change\n(PD is judged on growth,"
                                    f"\nnot on the best change;\nopen: beyond "
                                    f"{FINAL_CHANGE_CAP_PERCENT:+.0f} %)"))
    axes[0][-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return finish(fig, path)


def _mark_final_changes(ax: plt.Axes, x: np.ndarray, final: np.ndarray) -> None:
    """A ▲ at each finite ``final`` change (%), open and at ``FINAL_CHANGE_CAP_PERCENT``
    where it is beyond."""
    shown = np.isfinite(final)
    capped = shown & (final > FINAL_CHANGE_CAP_PERCENT)
    for where, face in ((shown & ~capped, "k"), (capped, "none")):
        ax.scatter(x[where], np.minimum(final[where], FINAL_CHANGE_CAP_PERCENT), marker="^",
                   s=28, facecolors=face, edgecolors="k", zorder=5, gid="final_change")


@styled
def plot_progression_free(timeseries: pd.DataFrame, summary: pd.DataFrame | None = None,
                          path: str | Path | None = None, first_dose_day: float | None = None,
                          infusions: Mapping[str, Sequence[float]] | None = None
                          ) -> plt.Figure:
    """Kaplan-Meier progression-free fraction of the virtual cohort (replicates) per scenario,
    with its pointwise 95 % confidence band (``outcomes.kaplan_meier``, log-log).

    Progression and censoring as in ``progression_events``; censored runs are ticked (|).
    Time counts from each scenario's first infusion (``infusions`` or read from the table), or
    from ``first_dose_day`` for every scenario when given.
    """
    if first_dose_day is None:
        relative, _ = relative_to_infusion(timeseries, infusions)
        events = progression_events(relative, 0.0)
    else:
        events = progression_events(timeseries, first_dose_day)
    fig, ax = plt.subplots(figsize=(7, 4.8), constrained_layout=True)
    scenarios = scenario_names(events)
    for c, scenario in zip(series_colours(len(scenarios)), scenarios):
        mine = events[events["scenario"] == scenario]
        curve = kaplan_meier(mine["time_days"], mine["progressed"])
        end = float(mine["time_days"].max())
        t = np.append(curve["time"].to_numpy(), end)

        def extended(column: str) -> np.ndarray:
            return 100.0 * np.append(curve[column].to_numpy(), curve[column].iloc[-1])

        n_prog = int(mine["progressed"].sum())
        ax.step(t, extended("survival"), where="post", color=c, lw=2,
                label=f"{scenario}: {n_prog} of n = {len(mine)} progressed")
        ax.fill_between(t, extended("survival_ci_low"), extended("survival_ci_high"),
                        step="post", color=c, alpha=0.2, lw=0)
        censored = curve[curve["censored"] > 0]
        ax.plot(censored["time"], 100.0 * censored["survival"], marker="|", ms=12, mew=1.5,
                color=c, ls="none")
    ax.fill_between([], [], [], color="0.5", alpha=0.2, lw=0,
                    label="95 % CI (log-log; none before the first event)")
    ax.set_ylim(-3, 103)
    ax.set_xlim(left=0)
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel("progression-free (% of replicates)")
    ax.set_title("Progression-free survival (Kaplan-Meier; | censored)\n"
                 f"progression: cancer cells >= {PROGRESSION_FRACTION:.0%} of nadir or baseline\n"
                 f"and up by >= {RELAPSE_MIN_INCREASE_CELLS} cells "
                 f"({RELAPSE_MIN_INCREASE_FRACTION:.1%} of baseline if more)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14))
    return finish(fig, path)
