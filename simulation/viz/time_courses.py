"""Time courses of a study, drawn from its tables (never from a live model), so notebooks reuse
them: each function takes the tables ``cartsim run`` writes (``timeseries.csv``,
``summary.csv``), returns the matplotlib Figure and saves it when given a ``path``
(``style.save_figure``: no timestamps, the same tables give the same bytes).

=============================  ==================================================================
``plot_burden``                tumour burden (% of baseline, log, MRD line) and CAR-T vs days
                               after the first infusion, median + IQR band, infusions marked
``plot_car_t_kinetics``        CAR-T count (log) with the expansion peak and contraction marked
``plot_blood_kinetics``        CAR-T per uL of blood (log): peak, expansion, contraction,
                               persistence (``analysis.kinetics`` finds the phases)
``plot_killing_assay``         killing assay: targets as % of control and specific lysis
``plot_assay_wells``           killing assay: target cells per well (its ``burden.png``)
=============================  ==================================================================

Time courses share one clock, ``TIME_LABEL`` (days after each scenario's first infusion; the
shipped scenarios infuse on day 0, so it equals ``time_days``; ``relative_to_infusion``), and
draw zeros on a "0" band at the bottom of their log axes, below an axis break, instead of
dropping them. Their legends give n, and name each scenario's treatment when given
``treatments`` (scenario -> product, route, conditioning:
``execution.publish.treatment_labels``). The study figures (``study_plots``), the antigen and
product panels reuse these axes and labels.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

from .style import figure_and_axes, finish, series_colours, styled, wrapped  # first: backend

import matplotlib.pyplot as plt  # noqa: I001
import numpy as np
import pandas as pd
from matplotlib import ticker

from ..analysis.kinetics import (HALF_LIFE_MIN_QUANTA, PEAK_MIN_QUANTA, KineticPhases,
                                 count_quantum, half_life_interval, kinetic_phases,
                                 replicate_half_lives)
from ..analysis.outcomes import MRD_DETECTION_FRACTION, response_breakdown
from ..config import et_label

#: ``tumor_type`` of an in-vitro well (``config.schema``): no clinical response is read into it
IN_VITRO = "in_vitro"


# ---------------------------------------------------------------------------------------------
# tables -> plotted quantities
# ---------------------------------------------------------------------------------------------
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


#: the band of log axes where zeros are drawn ("0" tick)
ZERO_BAND_COLOUR = "0.88"
#: the time axis of every time course (x = census day minus the scenario's first infusion day)
TIME_LABEL = "days after first CAR-T infusion"
#: label of the MRD line on burden axes (``outcomes.MRD_DETECTION_FRACTION``)
MRD_LABEL = (f"MRD detection limit ({100 * MRD_DETECTION_FRACTION:g} %, 1 cancer cell in "
             f"{1 / MRD_DETECTION_FRACTION:,.0f}): CR below")


def infusion_days(timeseries: pd.DataFrame) -> dict[str, list[float]]:
    """Per scenario, the days (``time_days``) of its CAR-T infusions, read from the census
    column ``cumulative_car_t_infused``: a dose is seen at the first census that counts it.
    A dose at t = 0 is counted by the first census, so its day is exact; a census at a later
    dose time is taken before the dose (``CarTModel``), so a later dose is placed at the
    last census before the one that counts it: exact for doses on census times (the usual
    case), up to one census interval early otherwise. Pass the configured days instead where
    they are known (``execution/publish.py`` does). Scenarios never dosed map to []."""
    days: dict[str, list[float]] = {}
    for scenario, runs in timeseries.groupby("scenario", sort=False):
        found: set[float] = set()
        if "cumulative_car_t_infused" in runs:
            for _, run in runs.groupby("replicate", sort=False):
                run = run.sort_values("time_days")
                infused = run["cumulative_car_t_infused"].to_numpy(dtype=float)
                times = run["time_days"].to_numpy(dtype=float)
                if infused.size and infused[0] > 0:
                    found.add(float(times[0]))
                found.update(float(t) for t in times[:-1][np.diff(infused) > 0])
        days[scenario] = sorted(found)
    return days


def relative_to_infusion(timeseries: pd.DataFrame,
                          infusions: Mapping[str, Sequence[float]] | None
                          ) -> tuple[pd.DataFrame, dict[str, list[float]]]:
    """(``timeseries`` with ``time_days`` counted from each scenario's first infusion, the
    infusion days on that clock). ``infusions``: configured days per scenario (default: read
    from the table, ``infusion_days``); a scenario without infusions keeps its clock."""
    found = infusion_days(timeseries)
    if infusions is not None:
        found.update({name: sorted(float(d) for d in days) for name, days in infusions.items()})
    first = {name: (days[0] if days else 0.0) for name, days in found.items()}
    shift = timeseries["scenario"].map(first).fillna(0.0).astype(float)
    relative = {name: [d - first[name] for d in days] for name, days in found.items()}
    return timeseries.assign(time_days=timeseries["time_days"] - shift), relative


def with_baseline_percent(timeseries: pd.DataFrame) -> pd.DataFrame:
    """Adds ``tumor_percent_of_baseline``: tumour cells as % of each run's baseline, its last
    census at or before the first infusion (time 0 of a ``relative_to_infusion`` table), as
    ``outcomes.summarise_run`` takes it (the first census if the run starts later)."""
    runs = timeseries.groupby(["scenario", "replicate"])
    before = timeseries["tumor_cells"].where(timeseries["time_days"] <= 1e-9)
    baseline = before.groupby([timeseries["scenario"], timeseries["replicate"]]).transform(
        "last").fillna(runs["tumor_cells"].transform("first"))
    return timeseries.assign(
        tumor_percent_of_baseline=100.0 * timeseries["tumor_cells"] / baseline)


def scenario_names(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["scenario"]))


def scenario_label(scenario: str, summary: pd.DataFrame | None, sep: str = ": ",
           treatments: Mapping[str, str] | None = None) -> str:
    """"scenario (tumour type; treatment): CR 1 · PR 0 · SD 1 · PD 0 of n = 2" (``sep``
    before the breakdown; the treatment, e.g. "CD19 CAR-T, intravenous after
    lymphodepletion", where ``treatments`` names it); an in-vitro well has no clinical
    response: "scenario (in vitro), n = 2"."""
    treatment = (treatments or {}).get(scenario)
    rows = summary[summary["scenario"] == scenario] if summary is not None else pd.DataFrame()
    if rows.empty:
        return f"{scenario} ({treatment})" if treatment else scenario
    tumor_type = rows["tumor_type"].iloc[0]
    if tumor_type == IN_VITRO:
        return f"{scenario} (in vitro), n = {len(rows)}"
    given = f"; {treatment}" if treatment else ""
    return f"{scenario} ({tumor_type}{given}){sep}{response_breakdown(rows)}"


def panel_title(scenario: str, detail: str, treatments: Mapping[str, str] | None) -> str:
    """"scenario (detail)", and on a second line the scenario's treatment where
    ``treatments`` names it (wrapped at 48 characters)."""
    treatment = (treatments or {}).get(scenario)
    title = f"{scenario} ({detail})"
    return title + "\n" + textwrap.fill(treatment, 48) if treatment else title


def _n_replicates(timeseries: pd.DataFrame) -> str:
    """"n = 3" replicates per scenario ("n = 2-4" if they differ)."""
    n = timeseries.groupby("scenario")["replicate"].nunique()
    return f"n = {n.min()}" if n.min() == n.max() else f"n = {n.min()}-{n.max()}"


# ---------------------------------------------------------------------------------------------
# time courses
# ---------------------------------------------------------------------------------------------
def _draw_bands(ax: plt.Axes, data: pd.DataFrame, column: str, summary: pd.DataFrame | None,
                label: bool = True, floor: float | None = None,
                treatments: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Median line and IQR band per scenario; with ``floor`` (a log axis), values below it
    (zeros) are drawn at it, on the axis' "0" band (``_zero_band``), never dropped. Scenarios
    whose medians lie on each other (one hides the other) get a legend note
    (``_note_overlapping_curves``)."""
    bands = replicate_bands(data, column)
    colours = series_colours(len(scenario_names(data)))
    for c, scenario in zip(colours, scenario_names(data)):
        band = bands[bands["scenario"] == scenario]
        median, q25, q75 = (band[k].to_numpy(dtype=float) for k in ("median", "q25", "q75"))
        if floor is not None:
            median, q25, q75 = (np.maximum(v, floor) for v in (median, q25, q75))
        ax.plot(band["time_days"], median, color=c, lw=2,
                label=wrapped(scenario_label(scenario, summary, treatments=treatments)) if label
                else None)
        ax.fill_between(band["time_days"], q25, q75, color=c, alpha=0.25, lw=0)
    _note_overlapping_curves(ax, bands, COLUMN_WORDS.get(column, column))
    return bands


#: what a legend note calls the curves of a column
COLUMN_WORDS = {"tumor_percent_of_baseline": "tumour burden", "car_t_cells": "CAR-T",
                "car_t_blood_per_ul": "blood CAR-T"}


#: medians within this relative difference of each other at every census lie on or against
#: each other: on a log axis spanning three decades, 25 % is about three line widths
OVERLAP_TOLERANCE = 0.25


def overlapping_curves(bands: pd.DataFrame) -> list[list[str]]:
    """Groups of scenarios (each of 2 or more, in table order) whose ``replicate_bands``
    medians are zero at the same censuses and elsewhere within ``OVERLAP_TOLERANCE`` of the
    group's first at every census: drawn, each hides the ones before it."""
    groups: list[tuple[np.ndarray, np.ndarray, list[str]]] = []
    for scenario, band in bands.groupby("scenario", sort=False):
        t, median = (band[k].to_numpy(dtype=float) for k in ("time_days", "median"))
        for first_t, first, names in groups:
            if (t.shape == first_t.shape and np.array_equal(t, first_t)
                    and np.array_equal(median > 0, first > 0)
                    and np.all(np.abs(median - first) <= OVERLAP_TOLERANCE * first)):
                names.append(scenario)
                break
        else:
            groups.append((t, median, [scenario]))
    return [names for _, _, names in groups if len(names) > 1]


def _note_overlapping_curves(ax: plt.Axes, bands: pd.DataFrame, what: str) -> None:
    """A legend entry (no line) for every group of ``overlapping_curves``: "a and b: CAR-T
    medians within 25 % of each other throughout, drawn (nearly) over each other"."""
    for names in overlapping_curves(bands):
        ax.plot([], [], ls="none", gid="overlap",
                label=wrapped(f"{' and '.join(names)}: {what} medians within "
                               f"{100 * OVERLAP_TOLERANCE:.0f} % of each other throughout, drawn "
                               "(nearly) over each other"))


def _log_floor(values: pd.Series, below: float | None = None) -> float:
    """The "0" level of a log axis: a power of ten under the smallest positive value (and under
    ``below``), so zeros get their own band beneath every real value."""
    positive = values[values > 0]
    smallest = min(float(positive.min()) if len(positive) else 1.0,
                   below if below is not None else np.inf)
    return 10.0 ** (np.floor(np.log10(smallest)) - 1)


def _zero_band(ax: plt.Axes, floor: float, text: str, in_legend: bool = True,
               hatch: str | None = None) -> None:
    """Log axis with zeros drawn at ``floor``: the axis starts just below it, a grey band marks
    it (``hatch``ed: bands of different meaning in one figure get different hatches), its
    tick reads "0", the axis is broken (//) between it and the first decade, since the band
    is no decade of the scale, and ``text`` says what it means: a legend entry for the band
    (``in_legend``; curves at 0 run through the band and would hide a text there), else a
    note at its right end."""
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor / 2.0)
    ax.axhspan(floor / 2.0, floor * 2.0, facecolor=ZERO_BAND_COLOUR, lw=0, zorder=0,
               hatch=hatch, edgecolor="0.6" if hatch else None, gid="zero_band",
               label=text if in_legend else None)
    ax.plot([0.0, 0.0], [floor * 2.4, floor * 4.0], transform=ax.get_yaxis_transform(),
            color="white", lw=3, solid_capstyle="butt", clip_on=False, zorder=4)
    ax.plot([0.0, 0.0], [floor * 2.4, floor * 4.0], transform=ax.get_yaxis_transform(),
            marker=[(-1, -0.5), (1, 0.5)], ms=8, mew=1, color="0.2", ls="none",
            clip_on=False, zorder=5, gid="axis_break")
    if not in_legend:
        ax.text(0.99, floor * 1.4, text, transform=ax.get_yaxis_transform(), ha="right",
                va="bottom", fontsize=7, color="0.35")
    low, high = ax.get_ylim()
    ticks = [t for t in ticker.LogLocator(numticks=12).tick_values(low, high)
             if floor * 5 <= t <= high]
    ax.set_yticks([floor] + ticks, ["0"] + [f"{t:g}" for t in ticks])
    ax.yaxis.set_minor_locator(ticker.NullLocator())


def mark_infusions(ax: plt.Axes, infusions: Mapping[str, Sequence[float]],
                    scenarios: Sequence[str]) -> None:
    """A ▲ at the top of ``ax`` at every infusion day (scenario colours; grey where scenarios
    share a day), one legend entry "▲ CAR-T infusion"."""
    colours = dict(zip(scenarios, series_colours(len(scenarios))))
    by_day: dict[float, list[str]] = {}
    for scenario in scenarios:
        for day in infusions.get(scenario, []):
            by_day.setdefault(round(day, 9), []).append(scenario)
    for i, (day, names) in enumerate(sorted(by_day.items())):
        ax.plot([day], [1.0], marker="^", ms=9, ls="none", clip_on=False, zorder=5,
                transform=ax.get_xaxis_transform(), gid="infusion",
                color=colours[names[0]] if len(names) == 1 else "0.25",
                label="CAR-T infusion" if i == 0 else None)
    ax.set_title(ax.get_title(), pad=12)  # room for the marks under the title


def burden_axes(ax: plt.Axes, data: pd.DataFrame, summary: pd.DataFrame | None,
                 log_scale: bool, treatments: Mapping[str, str] | None = None) -> None:
    """Tumour burden (% of baseline): log axis with the MRD line (unless every scenario is an
    in-vitro dish), zeros on a "0" band."""
    mrd_percent = 100.0 * MRD_DETECTION_FRACTION
    column = data["tumor_percent_of_baseline"]
    floor = _log_floor(column, mrd_percent) if log_scale else None
    _draw_bands(ax, data, "tumor_percent_of_baseline", summary, floor=floor,
                treatments=treatments)
    ax.set_title(f"Tumour burden (median, IQR; {_n_replicates(data)} replicates)")
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel("cancer cells (% of baseline at infusion)")
    ax.axhline(100.0, color="0.6", lw=0.8, ls="--")
    clinical = summary is None or bool((summary["tumor_type"] != IN_VITRO).any())
    if log_scale:
        ax.set_ylim(top=max(200.0, float(column.max()) * 2))
        if clinical:  # MRD and CR are clinical readouts: not drawn over dishes alone
            ax.axhline(mrd_percent, color="#882255", lw=1.2, ls="-.", label=MRD_LABEL,
                       gid="mrd")
        _zero_band(ax, floor, "0 band, left: no cancer cells left (cleared)", hatch="////")
    else:
        ax.set_ylim(bottom=0)


def car_t_axes(ax: plt.Axes, data: pd.DataFrame, summary: pd.DataFrame | None,
                log_scale: bool, label: bool = False) -> pd.DataFrame:
    floor = _log_floor(data["car_t_cells"]) if log_scale else None
    bands = _draw_bands(ax, data, "car_t_cells", summary, label=label, floor=floor)
    ax.set_title(f"CAR-T cells on the lattice (median, IQR; {_n_replicates(data)} replicates)")
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel("CAR-T cells (count)")
    if log_scale:
        _zero_band(ax, floor, "0 band, right: no CAR-T on the lattice", hatch="....")
    else:
        ax.set_ylim(bottom=0)
    return bands


def time_course_legend(fig: plt.Figure, axes: Sequence[plt.Axes]) -> None:
    """One legend for the time-course ``axes`` below the figure (never over the data)."""
    handles, labels = {}, []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    long = max(len(line) for label in labels for line in label.splitlines()) > 60
    fig.legend([handles[k] for k in labels], labels, loc="outside lower center",
               ncols=2 if len(labels) > 3 and not long else 1)


@styled
def plot_burden(timeseries: pd.DataFrame, summary: pd.DataFrame | None = None,
                path: str | Path | None = None, log_scale: bool = True,
                infusions: Mapping[str, Sequence[float]] | None = None,
                treatments: Mapping[str, str] | None = None) -> plt.Figure:
    """Tumour burden (% of baseline) and CAR-T cells vs days after the first infusion: median
    line, interquartile band, over replicates.

    One colour per scenario (``series_colours``); the legend, below the panels, gives tumour
    type, the treatment (``treatments``: scenario -> product, route and conditioning, as
    ``execution.publish.treatment_labels`` writes them) and the response breakdown (CR, PR, SD,
    PD of n, and how many relapsed). ``log_scale``: log y axes with the MRD detection limit
    that defines CR drawn, zeros (a cleared tumour, no CAR-T) on a "0" band below an axis
    break at the bottom. Infusions (▲) from ``infusions`` (days per scenario, as configured)
    or read from the table (``infusion_days``). Saved to ``path`` (PNG, SVG or PDF by
    suffix) when given.
    """
    relative, infused = relative_to_infusion(timeseries, infusions)
    data = with_baseline_percent(relative)
    fig, (ax_tumor, ax_car_t) = plt.subplots(1, 2, figsize=(11, 5.8), layout="constrained")
    burden_axes(ax_tumor, data, summary, log_scale, treatments)
    car_t_axes(ax_car_t, data, summary, log_scale)
    for ax in (ax_tumor, ax_car_t):
        mark_infusions(ax, infused, scenario_names(data))
    time_course_legend(fig, [ax_tumor, ax_car_t])
    return finish(fig, path)


def _draw_kinetics(ax: plt.Axes, timeseries: pd.DataFrame, column: str, value_format: str,
                   floor: float, treatments: Mapping[str, str] | None = None
                   ) -> list[KineticPhases | None]:
    """Median and IQR of ``column`` per scenario (values below ``floor``, zeros, drawn at it)
    with its phases marked where the signal carries them: the peak (a ▼ whose legend label
    gives ``value_format.format(peak value)``, its day and, when meaningful, the contraction
    half-life over the replicates, ``replicate_half_lives``), dotted lines at the peak and
    persistence start, phase names in the curve's colour. A median that never reaches
    ``PEAK_MIN_QUANTA`` cells (the column's smallest step, ``count_quantum``) is counting noise:
    its label says so and nothing is marked. Returns the phases of every scenario's median
    (None where not read)."""
    bands = _draw_bands(ax, timeseries, column, None, label=False, floor=floor)
    all_phases = []
    scenarios = scenario_names(timeseries)
    for i, (scenario, colour) in enumerate(zip(scenarios, series_colours(len(scenarios)))):
        runs = timeseries[timeseries["scenario"] == scenario]
        band = bands[bands["scenario"] == scenario]
        t, median = band["time_days"].to_numpy(), band["median"].to_numpy()
        quantum = count_quantum(runs[column])
        name = _kinetics_name(scenario, runs, treatments)
        phases = kinetic_phases(t, median, HALF_LIFE_MIN_QUANTA * quantum)
        if phases is None:
            ax.plot([], [], color=colour, lw=2, label=f"{name}: never detected")
        elif median[phases.peak] < PEAK_MIN_QUANTA * quantum:
            cells = median[phases.peak] / quantum
            ax.plot([], [], color=colour, lw=2, label=wrapped(
                f"{name}: median at most {value_format.format(median[phases.peak])} "
                f"(~{cells:.2g} cells), counting noise: no peak or half-life read"))
            phases = None
        else:
            label = (f"{name}: peak {value_format.format(median[phases.peak])} on day "
                     f"{t[phases.peak]:g}")
            if phases.half_life_days is not None:
                label += _half_life_text(replicate_half_lives(runs, column, quantum),
                                         runs["replicate"].nunique())
            _mark_phases(ax, t, np.maximum(median, floor), phases, colour, i, label)
        all_phases.append(phases)
    return all_phases


def _kinetics_name(scenario: str, runs: pd.DataFrame,
                   treatments: Mapping[str, str] | None) -> str:
    """"b_all_cd19 (n = 4; CAR-T, intravenous after lymphodepletion)" (the treatment where
    ``treatments`` names it)."""
    treatment = (treatments or {}).get(scenario)
    return f"{scenario} (n = {runs['replicate'].nunique()}{'; ' + treatment if treatment else ''})"


def _half_life_text(half_lives: np.ndarray, n_runs: int) -> str:
    """", contraction t1/2 5.5 d (95 % CI 4.1-7.4 over 4 of 4 runs)": the legend's words for
    ``half_life_interval`` (", contraction t1/2 5.5 d (1 of 4 runs, no CI)" from one run;
    nothing if no run's fit is meaningful)."""
    if half_lives.size == 0:
        return ""
    centre, interval = half_life_interval(half_lives)
    runs = f"{half_lives.size} of {n_runs} runs"
    spread = (f"95 % CI {interval[0]:.1f}-{interval[1]:.1f} over {runs}" if interval
              else f"{runs}, no CI")
    return f", contraction t1/2 {centre:.1f} d ({spread})"


def _mark_phases(ax: plt.Axes, t: np.ndarray, median: np.ndarray, phases: KineticPhases,
                 colour: str, row: int, label: str) -> None:
    """Peak marker and phase lines of one scenario; phase names raised by ``row`` lines so
    that scenarios with close phases do not overprint each other."""
    peak, persistence = phases.peak, phases.persistence
    if persistence is not None:
        label += f", persistence from day {t[persistence]:g}"
    label = wrapped(label)
    ax.axvline(t[peak], color=colour, lw=1, ls=":")
    ax.plot([t[peak]], [median[peak]], marker="v", color=colour, ms=8, ls="none", label=label,
            gid="peak")
    contraction_end = len(t) - 1 if persistence is None else persistence
    names = [("expansion", phases.start, peak, median[peak]),
             ("contraction", peak, contraction_end, median[peak])]
    if persistence is not None:
        ax.axvline(t[persistence], color=colour, lw=1, ls="-.")
        names.append(("persistence", persistence, len(t) - 1, median[persistence]))
    for name, first, last, level in names:
        if last > first:
            ax.annotate(name, xy=((t[first] + t[last]) / 2, level), color=colour, ha="center",
                        va="bottom", fontsize=8, xytext=(0, 2 + 10 * row),
                        textcoords="offset points")


def _kinetics_titles(ax: plt.Axes, timeseries: pd.DataFrame, what: str, ylabel: str,
                     floor: float, zero_text: str, infusions: Mapping[str, Sequence[float]]
                     ) -> None:
    """Log y axis with the "0" band, headroom above the highest peak for the phase names,
    infusion marks, axis labels, title and legend (below the axes)."""
    ax.set_yscale("log")
    ax.set_ylim(top=ax.get_ylim()[1] * 3.0)
    _zero_band(ax, floor, zero_text)
    mark_infusions(ax, infusions, scenario_names(timeseries))
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{what} (median, IQR; {_n_replicates(timeseries)} replicates; ▼ peak)",
                 pad=12)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14))


@styled
def plot_car_t_kinetics(timeseries: pd.DataFrame, summary: pd.DataFrame | None = None,
                        path: str | Path | None = None, ax: plt.Axes | None = None,
                        infusions: Mapping[str, Sequence[float]] | None = None,
                        treatments: Mapping[str, str] | None = None) -> plt.Figure:
    """CAR-T count vs days after the first infusion on a log axis: median and IQR, the peak of
    the median marked, zeros on a "0" band, infusions marked (▲).

    Before the peak: expansion (activation-driven division outpaces death); after: contraction
    (death of effectors and exhausted cells), then persistence when the decline slows (memory
    cells; see ``kinetic_phases``). The legend gives each scenario's n, treatment (where
    ``treatments`` names it) and peak day and, when the fit is meaningful
    (``contraction_half_life``), the contraction half-life with its CI over the replicates
    (``half_life_interval``); a course too small to read (``PEAK_MIN_QUANTA``) says so.
    """
    fig, ax = figure_and_axes(ax, (7, 4.8))
    relative, infused = relative_to_infusion(timeseries, infusions)
    floor = _log_floor(relative["car_t_cells"])
    _draw_kinetics(ax, relative, "car_t_cells", "{:.0f} cells", floor, treatments)
    _kinetics_titles(ax, relative, "CAR-T kinetics", "CAR-T cells (count, log scale)", floor,
                     "0 CAR-T cells on the lattice", infused)
    return finish(fig, path)


@styled
def plot_blood_kinetics(timeseries: pd.DataFrame, summary: pd.DataFrame | None = None,
                        path: str | Path | None = None, ax: plt.Axes | None = None,
                        infusions: Mapping[str, Sequence[float]] | None = None,
                        treatments: Mapping[str, str] | None = None) -> plt.Figure:
    """CAR-T per uL of blood vs days after the first infusion (column ``car_t_blood_per_ul``),
    as clinics plot it.

    Median and IQR per scenario on a log axis, the expansion peak (Cmax, Tmax) marked with ▼,
    the phases named: expansion, contraction, persistence (``kinetic_phases``; the census at an
    intravenous infusion, before the cells leave the blood, is not the peak), the contraction
    half-life with its CI over the replicates (``half_life_interval``); a course of a few
    cells in the blood (``PEAK_MIN_QUANTA``) is labelled as counting noise, unmarked. The
    legend names each scenario's treatment (``treatments``: product, route, conditioning).
    Censuses with no CAR-T in the blood are drawn on the "0 (below detection)" band at the
    bottom, never dropped. ``summary`` is accepted for the same call as the other
    time-course plots.
    """
    fig, ax = figure_and_axes(ax, (8.5, 5.4))
    relative, infused = relative_to_infusion(timeseries, infusions)
    floor = _log_floor(relative["car_t_blood_per_ul"])
    _draw_kinetics(ax, relative, "car_t_blood_per_ul", "{:.3g} cells/uL", floor, treatments)
    _kinetics_titles(ax, relative, "CAR-T in peripheral blood",
                     "CAR-T in blood (cells/uL, log scale)", floor,
                     "0 = none in blood (below detection)", infused)
    return finish(fig, path)


# ---------------------------------------------------------------------------------------------
# killing assays
# ---------------------------------------------------------------------------------------------
def _assay_n(table: pd.DataFrame) -> str:
    """"n = 4" replicates per well ("n = 3-4" if they differ)."""
    if not len(table):
        return "n = 0"
    n = table.groupby("scenario")["replicate"].nunique()
    return f"n = {n.min()}" if n.min() == n.max() else f"n = {n.min()}-{n.max()}"


@styled
def plot_killing_assay(table: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Killing assay: target cells as % of the untreated control (left axis) and specific
    lysis, 100 - that (right axis), vs hours after adding CAR-T.

    ``table`` is ``simulation.analysis.assay.assay_table`` (``assay.csv``). One panel per antigen
    level (highest first), one colour per E:T ratio (the same in every panel): median over
    replicates with the interquartile band; the untreated control is the dashed line at 100 %.
    The legend, outside the panels, gives n per well.
    """
    levels = sorted(table["antigen_molecules_per_cell"].unique(), reverse=True)
    ratios = sorted((r for r in table["effector_to_target"].unique() if r > 0), reverse=True)
    colours = series_colours(len(ratios))
    fig, axes = plt.subplots(1, len(levels), figsize=(max(6.0, 4.9 * len(levels) + 1.6), 4.4),
                             sharey=True, constrained_layout=True, squeeze=False)
    top = max(110.0, float(np.nanmax(table["percent_of_control"], initial=0.0)) * 1.05)
    for ax, antigen in zip(axes[0], levels):
        here = table[table["antigen_molecules_per_cell"] == antigen]
        ax.axhline(100.0, color="0.4", lw=1.2, ls="--", label="untreated control (0 % lysis)")
        for colour, ratio in zip(colours, ratios):
            well = here[here["effector_to_target"] == ratio]
            if well.empty:
                continue
            by_time = well.groupby("time_h")["percent_of_control"]
            t = np.asarray(by_time.median().index, dtype=float)
            ax.plot(t, by_time.median().to_numpy(), color=colour, lw=2,
                    label=f"E:T {et_label(ratio)}")
            ax.fill_between(t, by_time.quantile(0.25).to_numpy(),
                            by_time.quantile(0.75).to_numpy(), color=colour, alpha=0.25,
                            lw=0)
        ax.set_title(f"antigen {antigen:,.0f} molecules/cell ({_assay_n(here)} per well)")
        ax.set_xlabel("time after adding CAR-T (h)")
        ax.xaxis.set_major_locator(plt.MultipleLocator(24))
        ax.set_xlim(left=min(0.0, float(here["time_h"].min())))
        ax.set_ylim(0.0, top)
        lysis = ax.secondary_yaxis("right", functions=(lambda y: 100.0 - y,
                                                        lambda y: 100.0 - y))
        if ax is axes[0][-1]:
            lysis.set_ylabel("specific lysis (%) = 100 - % of control")
    axes[0][0].set_ylabel("target cells (% of untreated control)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:  # an E:T missing from the first panel
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend(handles, labels, loc="outside right upper", title="well")
    fig.suptitle(f"Killing assay (median, IQR over {_assay_n(table)} replicates per well)")
    return finish(fig, path)


#: colour maps of the antigen levels of ``plot_assay_wells`` (highest level first): one hue
#: per level, darker for more CAR-T per target
ASSAY_LEVEL_CMAPS = ("Blues", "Oranges", "Greens", "Purples", "Reds", "Greys")


def assay_well_colours(table: pd.DataFrame) -> dict[tuple[float, float], tuple]:
    """(antigen, E:T) -> colour: a sequential map per antigen level (``ASSAY_LEVEL_CMAPS``),
    the control lightest and the highest E:T darkest, so any number of wells stays distinct."""
    levels = sorted(table["antigen_molecules_per_cell"].unique(), reverse=True)
    colours = {}
    for i, antigen in enumerate(levels):
        ratios = sorted(table.loc[table["antigen_molecules_per_cell"] == antigen,
                                  "effector_to_target"].unique())
        cmap = plt.get_cmap(ASSAY_LEVEL_CMAPS[i % len(ASSAY_LEVEL_CMAPS)])
        shades = np.linspace(0.35, 0.95, len(ratios)) if len(ratios) > 1 else [0.8]
        colours.update({(antigen, ratio): cmap(shade) for ratio, shade in zip(ratios, shades)})
    return colours


@styled
def plot_assay_wells(table: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """The wells of a killing assay as counts: target cells per well vs hours after adding
    CAR-T (log axis, a cleared well on the "0" band), median and IQR over replicates; the
    in-vitro counterpart of ``plot_burden`` (no clinical response is read into a dish).

    Wells are labelled by antigen level, E:T and n; one sequential colour map per antigen level
    (``assay_well_colours``), controls dashed; the legend sits below the axes.
    """
    colours = assay_well_colours(table)
    fig, ax = plt.subplots(figsize=(8.5, 6.4), layout="constrained")
    floor = _log_floor(table["tumor_cells"].astype(float))
    wells = table.drop_duplicates("scenario").sort_values(
        ["antigen_molecules_per_cell", "effector_to_target"], ascending=[False, True])
    for _, well in wells.iterrows():
        rows = table[table["scenario"] == well["scenario"]]
        by_time = rows.groupby("time_h")["tumor_cells"]
        t = np.asarray(by_time.median().index, dtype=float)
        ratio, antigen = well["effector_to_target"], well["antigen_molecules_per_cell"]
        colour = colours[(antigen, ratio)]
        name = "untreated control" if ratio == 0 else f"E:T {et_label(ratio)}"
        ax.plot(t, np.maximum(by_time.median().to_numpy(dtype=float), floor), color=colour,
                lw=2, ls="--" if ratio == 0 else "-",
                label=f"{antigen:,.0f}/cell, {name}, n = {rows['replicate'].nunique()}")
        ax.fill_between(t, np.maximum(by_time.quantile(0.25).to_numpy(dtype=float), floor),
                        np.maximum(by_time.quantile(0.75).to_numpy(dtype=float), floor),
                        color=colour, alpha=0.2, lw=0)
    ax.set_yscale("log")
    ax.set_ylim(top=float(table["tumor_cells"].max()) * 3)
    _zero_band(ax, floor, "0 targets left", in_legend=False)
    ax.set_xlabel("time after adding CAR-T (h)")
    ax.xaxis.set_major_locator(plt.MultipleLocator(24))
    ax.set_ylabel("target cells per well (count, log scale)")
    ax.set_title(f"Killing assay wells: targets (median, IQR; {_assay_n(table)} per well)\n"
                 "antigen in molecules/cell; readout: specific lysis in assay.png")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=8,
              ncols=wells["antigen_molecules_per_cell"].nunique())  # a column per level
    return finish(fig, path)
