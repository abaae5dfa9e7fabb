"""Plots drawn from results tables (never from a live model), so notebooks reuse them.

Every function takes the tables ``cartsim run`` writes (``timeseries.csv``, ``summary.csv``, read
back with ``pandas.read_csv``) or a lattice snapshot (``simulation.io.snapshots``), returns the
matplotlib Figure, and saves it when given a ``path`` (PNG by default, SVG or PDF by suffix;
files carry no timestamps, so the same tables give the same bytes).

=============================  ==================================================================
``plot_burden``                tumour burden (% of baseline, log, MRD line) and CAR-T vs days
                               after the first infusion, median + IQR band, infusions marked
``plot_blood_vs_solid``        burden, CAR-T and response-rate bars side by side
``plot_car_t_kinetics``        CAR-T count (log) with the expansion peak and contraction marked
``plot_blood_kinetics``        CAR-T per uL of blood (log): peak, expansion, contraction,
                               persistence
``plot_waterfall``             best % change from baseline per replicate, coloured by response
``plot_progression_free``      Kaplan-Meier progression-free curve over the virtual cohort,
                               95 % confidence band
``plot_killing_assay``         killing assay: targets as % of control and specific lysis
``plot_assay_wells``           killing assay: target cells per well (its ``burden.png``)
``plot_snapshot``              the lattice: cancer by antigen level, normal, CAR-T by state,
                               necrosis, stroma, vessels
``plot_snapshot_with_fields``  the lattice beside its oxygen and suppressive-factor fields
``plot_orthogonal_slices``     3D: the xy, xz and yz planes through the tumour
``plot_max_projection``        3D: cancer and CAR-T density projected like a two-channel confocal
                               image, beside the minimum projection of oxygen
``plot_points_3d``             3D: cancer, necrotic and CAR-T sites as a 3D scatter (small cases)
=============================  ==================================================================

Time courses share one clock, ``TIME_LABEL`` (days after each scenario's first infusion; the
shipped scenarios infuse on day 0, so it equals ``time_days``), and draw zeros on a "0" band
at the bottom of their log axes, below an axis break, instead of dropping them. Their legends
give n, and name each scenario's treatment when given ``treatments`` (scenario -> product,
route, conditioning: ``execution.publish.treatment_labels``).

Given a 3D snapshot (arrays (nz, ny, nx)), ``plot_snapshot`` and ``plot_snapshot_with_fields``
draw the xy slice through the tumour (``tumour_slice_z``).
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import sys

import matplotlib

if "ipykernel" not in sys.modules:  # Jupyter keeps its inline backend
    matplotlib.use("Agg")  # files, not windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import patheffects, ticker  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import (  # noqa: E402
    LinearSegmentedColormap,
    ListedColormap,
    Normalize,
    to_rgb,
)
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from scipy import stats  # noqa: E402
from scipy.ndimage import gaussian_filter  # noqa: E402

from ..analysis.outcomes import (  # noqa: E402
    MRD_DETECTION_FRACTION,
    PD_THRESHOLD_PERCENT,
    PR_THRESHOLD_PERCENT,
    PROGRESSION_FRACTION,
    RELAPSE_MIN_INCREASE_CELLS,
    RELAPSE_MIN_INCREASE_FRACTION,
    RESPONSES,
    best_percent_change,
    kaplan_meier,
    progression_events,
    response_counts,
    wilson_interval,
)
from ..config import et_label  # noqa: E402
from ..io.snapshots import (  # noqa: E402
    FIELD_NEUTRAL,
    N_SITE_CLASSES,
    SITE_CANCER_HIGH,
    SITE_CANCER_LOW,
    SITE_CANCER_NEGATIVE,
    SITE_CAR_T_EFFECTOR,
    SITE_CAR_T_EXHAUSTED,
    SITE_CAR_T_MEMORY,
    SITE_EMPTY,
    SITE_NECROTIC,
    SITE_NORMAL_NEGATIVE,
    SITE_NORMAL_POSITIVE,
    SITE_STROMA,
    SITE_VESSEL,
    SNAPSHOT_FIELDS,
    site_classes,
    snapshot_field,
)

#: Okabe-Ito colour-blind-safe palette
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")

#: the one style of every cartsim figure (applied per call, so it never leaks into user code)
STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "savefig.dpi": 120,
    "svg.hashsalt": "cartsim",  # deterministic SVG ids
}

#: response classes (``outcomes.RESPONSES``) with their colours (also used by the waterfall)
RESPONSE_COLOURS = {"CR": "#009E73", "PR": "#56B4E9", "SD": "#E69F00", "PD": "#D55E00"}
RESPONSE_NAMES = {"CR": "complete response", "PR": "partial response", "SD": "stable disease",
                  "PD": "progressive disease"}

#: ``tumor_type`` of an in-vitro well (``config.schema``): no clinical response is read into it
IN_VITRO = "in_vitro"

#: most bar labels of a waterfall panel: with more bars, every k-th is labelled
MAX_BAR_LABELS = 20
#: a PD run's final change above this (%) is drawn at it, as an open marker
FINAL_CHANGE_CAP_PERCENT = 300.0

_SAVE_METADATA = {".png": {"Software": None}, ".svg": {"Date": None},
                  ".pdf": {"CreationDate": None, "ModDate": None}}


def _styled(function):
    """Run a plotting function inside ``STYLE``.

    ``interactive`` keeps the value it has when the function returns: Jupyter's inline backend,
    loaded by a session's first figure, switches it on, and the context's exit would switch it
    off again, so that no later figure of the session would be shown.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            figure = function(*args, **kwargs)
            interactive = matplotlib.is_interactive()
        matplotlib.interactive(interactive)
        return figure

    return wrapper


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    """Save ``fig`` to ``path``: PNG if it has no suffix, else PNG, SVG or PDF by suffix.

    No timestamps or software versions are written, so identical figures give identical files.
    """
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    suffix = path.suffix.lower()
    if suffix not in _SAVE_METADATA:
        raise ValueError(f"{path}: unsupported figure format {suffix!r}; use .png, .svg or .pdf")
    with plt.rc_context(STYLE):
        fig.savefig(path, dpi=STYLE["savefig.dpi"], metadata=_SAVE_METADATA[suffix])
    return path


def _finish(fig: plt.Figure, path: str | Path | None) -> plt.Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


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


def _relative_to_infusion(timeseries: pd.DataFrame,
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


def _with_baseline_percent(timeseries: pd.DataFrame) -> pd.DataFrame:
    """Adds ``tumor_percent_of_baseline``: tumour cells as % of each run's baseline, its last
    census at or before the first infusion (time 0 of a ``_relative_to_infusion`` table), as
    ``outcomes.summarise_run`` takes it (the first census if the run starts later)."""
    runs = timeseries.groupby(["scenario", "replicate"])
    before = timeseries["tumor_cells"].where(timeseries["time_days"] <= 1e-9)
    baseline = before.groupby([timeseries["scenario"], timeseries["replicate"]]).transform(
        "last").fillna(runs["tumor_cells"].transform("first"))
    return timeseries.assign(
        tumor_percent_of_baseline=100.0 * timeseries["tumor_cells"] / baseline)


def _scenarios(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["scenario"]))


def series_colours(n: int) -> list:
    """``n`` distinct colours: the Okabe-Ito ``PALETTE`` for up to 8 series, then ``tab20``
    for up to 20, then ``viridis`` sampled evenly (no colour is ever reused)."""
    if n <= len(PALETTE):
        return list(PALETTE[:n])
    if n <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(n)]
    return [plt.get_cmap("viridis")(x) for x in np.linspace(0.0, 0.95, n)]


def response_breakdown(rows: pd.DataFrame) -> str:
    """Runs per best-response class of ``rows`` (summary rows): "CR 0 · PR 0 · SD 2 · PD 0 of
    n = 2" (classes ``outcomes.RESPONSES``), and where some relapsed after their response
    (column ``relapse``): "CR 0 · PR 3 · SD 0 · PD 0 of n = 3, 3 relapsed"."""
    counts = {r: int((rows["response"] == r).sum()) for r in RESPONSES}
    text = " · ".join(f"{r} {counts[r]}" for r in RESPONSES) + f" of n = {len(rows)}"
    relapsed = int(rows["relapse"].astype(bool).sum()) if "relapse" in rows else 0
    return text + (f", {relapsed} relapsed" if relapsed else "")


def _label(scenario: str, summary: pd.DataFrame | None, sep: str = ": ",
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
    colours = series_colours(len(_scenarios(data)))
    for c, scenario in zip(colours, _scenarios(data)):
        band = bands[bands["scenario"] == scenario]
        median, q25, q75 = (band[k].to_numpy(dtype=float) for k in ("median", "q25", "q75"))
        if floor is not None:
            median, q25, q75 = (np.maximum(v, floor) for v in (median, q25, q75))
        ax.plot(band["time_days"], median, color=c, lw=2,
                label=_wrapped(_label(scenario, summary, treatments=treatments)) if label
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
                label=_wrapped(f"{' and '.join(names)}: {what} medians within "
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


def _mark_infusions(ax: plt.Axes, infusions: Mapping[str, Sequence[float]],
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


def _burden_axes(ax: plt.Axes, data: pd.DataFrame, summary: pd.DataFrame | None,
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


def _car_t_axes(ax: plt.Axes, data: pd.DataFrame, summary: pd.DataFrame | None,
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


def _time_course_legend(fig: plt.Figure, axes: Sequence[plt.Axes]) -> None:
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


@_styled
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
    relative, infused = _relative_to_infusion(timeseries, infusions)
    data = _with_baseline_percent(relative)
    fig, (ax_tumor, ax_car_t) = plt.subplots(1, 2, figsize=(11, 5.8), layout="constrained")
    _burden_axes(ax_tumor, data, summary, log_scale, treatments)
    _car_t_axes(ax_car_t, data, summary, log_scale)
    for ax in (ax_tumor, ax_car_t):
        _mark_infusions(ax, infused, _scenarios(data))
    _time_course_legend(fig, [ax_tumor, ax_car_t])
    return _finish(fig, path)


@_styled
def plot_response_rates(summary: pd.DataFrame, path: str | Path | None = None,
                        ax: plt.Axes | None = None) -> plt.Figure:
    """Stacked bars: % of replicates per response class (CR/PR/SD/PD), one bar per scenario,
    runs per class written in the segments, n under each bar and the Wilson 95 % interval of
    the CR rate as an error bar at the top of the CR segment."""
    fig, ax = _figure_and_axes(ax, (4.5, 4.2))
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
    return _finish(fig, path)


@_styled
def plot_blood_vs_solid(timeseries: pd.DataFrame, summary: pd.DataFrame,
                        path: str | Path | None = None, log_scale: bool = True,
                        infusions: Mapping[str, Sequence[float]] | None = None,
                        treatments: Mapping[str, str] | None = None) -> plt.Figure:
    """The central comparison in one row: burden, CAR-T (as ``plot_burden``) and
    response-rate bars per scenario."""
    relative, infused = _relative_to_infusion(timeseries, infusions)
    data = _with_baseline_percent(relative)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4), layout="constrained",
                             gridspec_kw={"width_ratios": [1, 1, 0.8]})
    _burden_axes(axes[0], data, summary, log_scale, treatments)
    _car_t_axes(axes[1], data, summary, log_scale)
    for ax in axes[:2]:
        _mark_infusions(ax, infused, _scenarios(data))
    _time_course_legend(fig, axes[:2])
    plot_response_rates.__wrapped__(summary, ax=axes[2])
    return _finish(fig, path)


def _figure_and_axes(ax: plt.Axes | None, size: tuple[float, float]):
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=size, constrained_layout=True)
    return fig, ax


#: a rise after the post-infusion trough counts as expansion if it at least doubles the trough
EXPANSION_FOLD = 2.0
#: persistence: the log-linear decline after the contraction is at least this many times slower
PERSISTENCE_SLOWDOWN = 2.0
#: fewest time points on each side of the contraction/persistence break: this many, and this
#: share of the positive points after the peak (noise in a short tail is not persistence)
_MIN_PHASE_POINTS = 3
_MIN_PHASE_SHARE = 0.2
#: the two-segment fit must leave at most this share of a single line's squared error
_KNEE_ERROR_SHARE = 0.5


@dataclass(frozen=True)
class KineticPhases:
    """Phases of one CAR-T time course, as indices into its time points.

    Expansion runs from ``start`` to ``peak`` (Cmax at Tmax), contraction from ``peak`` to
    ``persistence`` (or the end), persistence from ``persistence`` to the end (None: not
    reached). ``half_life_days``: of the contraction, from a log-linear fit, and
    ``half_life_ci_days`` its 95 % confidence interval; both None unless the fit is meaningful
    (``contraction_half_life``).
    """

    start: int
    peak: int
    persistence: int | None
    half_life_days: float | None
    half_life_ci_days: tuple[float, float] | None = None


def kinetic_phases(time_days: Sequence[float], values: Sequence[float], floor: float = 0.0
                   ) -> KineticPhases | None:
    """Expansion, peak, contraction and persistence of a CAR-T time course (None if never > 0).

    The peak is the expansion peak (clinical Cmax): if the values fall after the first positive
    one (the infused cells leaving the blood) and then rise ``EXPANSION_FOLD``-fold above that
    trough, the highest value after the trough, else the highest value. Persistence starts at
    the break of a two-segment log-linear fit to the positive values after the peak that
    minimises the squared error, if the later segment declines ``PERSISTENCE_SLOWDOWN`` times
    more slowly than the earlier one (or not at all), each segment holds at least a fifth of
    the points, and the break at least halves the squared error of one straight line. The
    contraction half-life is fitted to the values above ``floor`` (``contraction_half_life``).
    """
    t = np.asarray(time_days, dtype=float)
    v = np.asarray(values, dtype=float)
    positive = np.flatnonzero(v > 0)
    if positive.size == 0:
        return None
    start = int(positive[0])
    peak = start + int(np.argmax(v[start:]))
    rises = np.flatnonzero(np.diff(v[start:]) > 0)
    if rises.size:
        trough = start + int(rises[0])
        expansion_peak = trough + int(np.argmax(v[trough:]))
        if v[expansion_peak] > EXPANSION_FOLD * v[trough]:
            start, peak = trough, expansion_peak
    persistence = _persistence_start(t, v, peak)
    end = len(t) if persistence is None else persistence + 1
    fit = contraction_half_life(t[peak:end], v[peak:end], floor)
    return KineticPhases(start, peak, persistence, *(fit if fit else (None, None)))


def _persistence_start(t: np.ndarray, v: np.ndarray, peak: int) -> int | None:
    """Index where the decline after ``peak`` slows into persistence (see ``kinetic_phases``)."""
    after = peak + np.flatnonzero(v[peak:] > 0)
    min_points = max(_MIN_PHASE_POINTS, int(np.ceil(_MIN_PHASE_SHARE * after.size)))
    if after.size < 2 * min_points:
        return None
    times, logs = t[after], np.log(v[after])

    def fit(part: slice) -> tuple[float, float]:  # (slope per day, squared error)
        coefficients = np.polyfit(times[part], logs[part], 1)
        return coefficients[0], float(((np.polyval(coefficients, times[part]) - logs[part])
                                       ** 2).sum())

    best = (_KNEE_ERROR_SHARE * fit(slice(None))[1], None)
    for k in range(min_points - 1, after.size - min_points + 1):
        (contraction, error_1), (later, error_2) = fit(slice(0, k + 1)), fit(slice(k, None))
        if (contraction < 0 and later > contraction / PERSISTENCE_SLOWDOWN
                and error_1 + error_2 < best[0]):
            best = (error_1 + error_2, int(after[k]))
    return best[1]


def _draw_kinetics(ax: plt.Axes, timeseries: pd.DataFrame, column: str, value_format: str,
                   floor: float, treatments: Mapping[str, str] | None = None
                   ) -> list[KineticPhases | None]:
    """Median and IQR of ``column`` per scenario (values below ``floor``, zeros, drawn at it)
    with its phases marked where the signal carries them: the peak (a ▼ whose legend label
    gives ``value_format.format(peak value)``, its day and, when meaningful, the contraction
    half-life over the replicates, ``replicate_half_lives``), dotted lines at the peak and
    persistence start, phase names in the curve's colour. A median that never reaches
    ``PEAK_MIN_QUANTA`` cells (the column's smallest step, ``_quantum``) is counting noise:
    its label says so and nothing is marked. Returns the phases of every scenario's median
    (None where not read)."""
    bands = _draw_bands(ax, timeseries, column, None, label=False, floor=floor)
    all_phases = []
    scenarios = _scenarios(timeseries)
    for i, (scenario, colour) in enumerate(zip(scenarios, series_colours(len(scenarios)))):
        runs = timeseries[timeseries["scenario"] == scenario]
        band = bands[bands["scenario"] == scenario]
        t, median = band["time_days"].to_numpy(), band["median"].to_numpy()
        quantum = _quantum(runs[column])
        name = _kinetics_name(scenario, runs, treatments)
        phases = kinetic_phases(t, median, HALF_LIFE_MIN_QUANTA * quantum)
        if phases is None:
            ax.plot([], [], color=colour, lw=2, label=f"{name}: never detected")
        elif median[phases.peak] < PEAK_MIN_QUANTA * quantum:
            cells = median[phases.peak] / quantum
            ax.plot([], [], color=colour, lw=2, label=_wrapped(
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


#: characters per line of a long legend label (``_wrapped``)
LEGEND_LINE_CHARACTERS = 90


def _wrapped(label: str) -> str:
    """``label`` broken into lines of at most ``LEGEND_LINE_CHARACTERS`` (at spaces), the
    later lines indented, so that a legend below an axes stays within the figure."""
    return textwrap.fill(label, LEGEND_LINE_CHARACTERS, subsequent_indent="   ")


def _kinetics_name(scenario: str, runs: pd.DataFrame,
                   treatments: Mapping[str, str] | None) -> str:
    """"b_all_cd19 (n = 4; CAR-T, intravenous after lymphodepletion)" (the treatment where
    ``treatments`` names it)."""
    treatment = (treatments or {}).get(scenario)
    return f"{scenario} (n = {runs['replicate'].nunique()}{'; ' + treatment if treatment else ''})"


#: phases (peak, half-life) are read from a median course only if its peak holds at least
#: this many of the measurement's smallest steps (cells): the counting noise, ~1/sqrt(count),
#: is then at most ~22 %; below it the day and height of the highest point are chance
PEAK_MIN_QUANTA = 20.0


def replicate_half_lives(runs: pd.DataFrame, column: str, quantum: float) -> np.ndarray:
    """The contraction half-life (days) of each replicate's own course of ``column``
    (``kinetic_phases``: from its own peak, fitted above ``HALF_LIFE_MIN_QUANTA`` x
    ``quantum``), for the replicates where that fit is meaningful."""
    wide = runs.pivot_table(index="time_days", columns="replicate", values=column)
    wide = wide.sort_index().ffill()
    t = wide.index.to_numpy(dtype=float)
    half_lives = []
    for replicate in wide.columns:
        phases = kinetic_phases(t, wide[replicate].to_numpy(dtype=float),
                                HALF_LIFE_MIN_QUANTA * quantum)
        if phases is not None and phases.half_life_days is not None:
            half_lives.append(phases.half_life_days)
    return np.array(half_lives)


def half_life_interval(half_lives: np.ndarray) -> tuple[float, tuple[float, float] | None]:
    """(geometric mean of replicate half-lives, its ``HALF_LIFE_CONFIDENCE`` t-interval over
    the replicates, on the log scale, or None from fewer than 2). The replicates are the
    independent units: an interval from the time points of one median curve would treat
    autocorrelated censuses as independent and come out far too narrow."""
    logs = np.log(np.asarray(half_lives, dtype=float))
    centre = float(np.exp(logs.mean()))
    if logs.size < 2:
        return centre, None
    margin = (stats.t.ppf(0.5 + HALF_LIFE_CONFIDENCE / 2, logs.size - 1)
              * logs.std(ddof=1) / np.sqrt(logs.size))
    return centre, (float(np.exp(logs.mean() - margin)), float(np.exp(logs.mean() + margin)))


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
    label = _wrapped(label)
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
    _mark_infusions(ax, infusions, _scenarios(timeseries))
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{what} (median, IQR; {_n_replicates(timeseries)} replicates; ▼ peak)",
                 pad=12)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14))


#: a contraction half-life is fitted only to medians at least this many times the smallest
#: step of the measurement (one cell, or one cell per blood volume): at a few cells the
#: counting noise (Poisson, ~1/sqrt(count)) is as large as the decline being measured
HALF_LIFE_MIN_QUANTA = 5.0


def _quantum(values: pd.Series) -> float:
    """The smallest step of a count-derived column (one scenario's: one cell, or one cell per
    its blood volume): the smallest of its positive values and of the gaps between them
    (0 if it has none)."""
    positive = np.unique(values[values > 0].to_numpy(dtype=float))
    if not positive.size:
        return 0.0
    gaps = np.diff(positive)
    gaps = gaps[gaps > 1e-9 * positive[-1]]  # not float rounding of equal counts
    return float(min(positive[0], gaps.min(initial=np.inf)))


@_styled
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
    fig, ax = _figure_and_axes(ax, (7, 4.8))
    relative, infused = _relative_to_infusion(timeseries, infusions)
    floor = _log_floor(relative["car_t_cells"])
    _draw_kinetics(ax, relative, "car_t_cells", "{:.0f} cells", floor, treatments)
    _kinetics_titles(ax, relative, "CAR-T kinetics", "CAR-T cells (count, log scale)", floor,
                     "0 CAR-T cells on the lattice", infused)
    return _finish(fig, path)


@_styled
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
    fig, ax = _figure_and_axes(ax, (8.5, 5.4))
    relative, infused = _relative_to_infusion(timeseries, infusions)
    floor = _log_floor(relative["car_t_blood_per_ul"])
    _draw_kinetics(ax, relative, "car_t_blood_per_ul", "{:.3g} cells/uL", floor, treatments)
    _kinetics_titles(ax, relative, "CAR-T in peripheral blood",
                     "CAR-T in blood (cells/uL, log scale)", floor,
                     "0 = none in blood (below detection)", infused)
    return _finish(fig, path)


#: fewest medians a contraction half-life is fitted to
HALF_LIFE_MIN_POINTS = 5
#: two-sided confidence level of the half-life interval
HALF_LIFE_CONFIDENCE = 0.95


def contraction_half_life(t: np.ndarray, values: np.ndarray, floor: float = 0.0
                          ) -> tuple[float, tuple[float, float]] | None:
    """(half-life in days, its ``HALF_LIFE_CONFIDENCE`` interval) of an exponential decline
    fitted to the values above ``floor`` (and above 0) after the peak, or None unless the fit
    means something: at least ``HALF_LIFE_MIN_POINTS`` such values, the last below 80 % of the
    first, and a log-linear slope (``scipy.stats.linregress``) whose t-interval lies entirely
    below 0 (a significant decline; the interval of the half-life is ln 2 / -slope at its
    ends)."""
    t = np.asarray(t, dtype=float)
    values = np.asarray(values, dtype=float)
    keep = values > max(floor, 0.0)
    if keep.sum() < HALF_LIFE_MIN_POINTS or values[keep][-1] >= 0.8 * values[keep][0]:
        return None
    fit = stats.linregress(t[keep], np.log(values[keep]))
    margin = stats.t.ppf(0.5 + HALF_LIFE_CONFIDENCE / 2, keep.sum() - 2) * fit.stderr
    steepest, shallowest = fit.slope - margin, fit.slope + margin
    if not shallowest < 0:
        return None
    return float(np.log(2) / -fit.slope), (float(np.log(2) / -steepest),
                                           float(np.log(2) / -shallowest))


# ---------------------------------------------------------------------------------------------
# per-replicate outcomes
# ---------------------------------------------------------------------------------------------
def final_percent_change(summary: pd.DataFrame) -> pd.Series:
    """% change of the tumour count from baseline at the end of each run."""
    baseline = summary["baseline_tumor_cells"].astype(float)
    return 100.0 * (summary["final_tumor_cells"] - baseline) / baseline


def labelled_bars(n: int) -> np.ndarray:
    """Which of ``n`` bars get a label: all up to ``MAX_BAR_LABELS``, else every k-th (the
    smallest k that keeps to it), so that labels never run together."""
    return np.arange(0, n, max(1, -(-n // MAX_BAR_LABELS)))


@_styled
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
    scenarios = _scenarios(summary)
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
        ax.set_title(_label(scenario, summary, sep="\n"))
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
    return _finish(fig, path)


def _mark_final_changes(ax: plt.Axes, x: np.ndarray, final: np.ndarray) -> None:
    """A ▲ at each finite ``final`` change (%), open and at ``FINAL_CHANGE_CAP_PERCENT``
    where it is beyond."""
    shown = np.isfinite(final)
    capped = shown & (final > FINAL_CHANGE_CAP_PERCENT)
    for where, face in ((shown & ~capped, "k"), (capped, "none")):
        ax.scatter(x[where], np.minimum(final[where], FINAL_CHANGE_CAP_PERCENT), marker="^",
                   s=28, facecolors=face, edgecolors="k", zorder=5, gid="final_change")


@_styled
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
        relative, _ = _relative_to_infusion(timeseries, infusions)
        events = progression_events(relative, 0.0)
    else:
        events = progression_events(timeseries, first_dose_day)
    fig, ax = plt.subplots(figsize=(7, 4.8), constrained_layout=True)
    scenarios = _scenarios(events)
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
    return _finish(fig, path)


# ---------------------------------------------------------------------------------------------
# killing assays
# ---------------------------------------------------------------------------------------------
def _assay_n(table: pd.DataFrame) -> str:
    """"n = 4" replicates per well ("n = 3-4" if they differ)."""
    if not len(table):
        return "n = 0"
    n = table.groupby("scenario")["replicate"].nunique()
    return f"n = {n.min()}" if n.min() == n.max() else f"n = {n.min()}-{n.max()}"


@_styled
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
    return _finish(fig, path)


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


@_styled
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
    return _finish(fig, path)


# ---------------------------------------------------------------------------------------------
# lattice snapshots
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SiteClass:
    """One colour of the lattice picture: its code in the class array, its label and colour."""

    code: int
    label: str
    colour: str


#: the fixed legend of lattice pictures: every class always shown, in code order (the codes
#: are ``snapshots.SITE_*``, where lattices map to them). Okabe-Ito colours for cells; the
#: tissue classes and necrosis, beyond those eight, differ from every cell colour in lightness
#: too, so they stay apart under every colour-vision deficiency: pale sand stroma (a background
#: tint), dark wine vessels, dark brown necrotic debris.
SITE_CLASSES = (
    SiteClass(SITE_EMPTY, "empty", "#FFFFFF"),
    SiteClass(SITE_CANCER_HIGH, "cancer, antigen high (>= CAR half-max)", "#D55E00"),
    SiteClass(SITE_CANCER_LOW, "cancer, antigen low", "#E69F00"),
    SiteClass(SITE_CANCER_NEGATIVE, "cancer, antigen negative", "#000000"),
    SiteClass(SITE_NORMAL_POSITIVE, "normal, antigen+ (on-target, off-tumour)", "#CC79A7"),
    SiteClass(SITE_NORMAL_NEGATIVE, "normal, antigen-", "#C8C8C8"),
    SiteClass(SITE_CAR_T_EFFECTOR, "CAR-T effector", "#0072B2"),
    SiteClass(SITE_CAR_T_EXHAUSTED, "CAR-T exhausted", "#56B4E9"),
    SiteClass(SITE_CAR_T_MEMORY, "CAR-T memory", "#009E73"),
    SiteClass(SITE_NECROTIC, "necrotic (hypoxic debris)", "#5C4033"),
    SiteClass(SITE_STROMA, "stroma (no cell)", "#E8DFB0"),
    SiteClass(SITE_VESSEL, "blood vessel", "#882255"),
)
assert [c.code for c in SITE_CLASSES] == list(range(N_SITE_CLASSES)), "SITE_CLASSES out of order"
SITE_CMAP = ListedColormap([c.colour for c in SITE_CLASSES], name="cartsim_sites")
#: the same colours as an (n_classes, 3) uint8 table, for fast RGB images (class -> colour)
SITE_RGB = np.array([[int(c.colour[i:i + 2], 16) for i in (1, 3, 5)] for c in SITE_CLASSES],
                    dtype=np.uint8)
#: how field panels draw each snapshot field: (title, colour map); units in SNAPSHOT_FIELDS
FIELD_STYLES = {"oxygen": ("oxygen", "cividis"), "suppression": ("suppressive factor", "magma")}
#: outline of necrotic sites on field panels; oxygen contour at the necrosis threshold
NECROTIC_OUTLINE = "#FFFFFF"
NECROSIS_CONTOUR = "#E69F00"


def site_legend_handles() -> list[Patch]:
    """Legend entries for every site class (fixed: the same legend on every picture)."""
    return [Patch(facecolor=c.colour, edgecolor="0.5", lw=0.5, label=c.label)
            for c in SITE_CLASSES]


def _site_legend(fig: plt.Figure) -> None:
    """The fixed site legend of ``site_legend_handles`` at the right of ``fig``."""
    fig.legend(handles=site_legend_handles(), loc="outside right upper", title="site",
               alignment="left")


def _snapshot_meta(snapshot) -> dict:
    """The mapping part of a snapshot: the snapshot itself, or {} for a bare array of classes."""
    return {} if isinstance(snapshot, np.ndarray) else snapshot


def snapshot_spacing_um(snapshot) -> float | None:
    """The site spacing of a snapshot (um), or None if it does not say."""
    meta = _snapshot_meta(snapshot)
    return float(np.asarray(meta["spacing_um"])) if "spacing_um" in meta else None


def site_class_array(snapshot) -> np.ndarray:
    """Site-class codes of every site: (ny, nx) for a 2D snapshot, (nz, ny, nx) for a 3D one."""
    if isinstance(snapshot, np.ndarray):
        return snapshot
    if "site_class" in snapshot:
        return np.asarray(snapshot["site_class"])
    return site_classes(snapshot["cell_type"], snapshot["antigen_class"],
                        snapshot["car_t_state"], snapshot.get("tissue"))


def _snapshot_classes(snapshot) -> np.ndarray:
    """Site-class codes of the picture of a snapshot: every site of a 2D one, the slice through
    the tumour (``tumour_slice_z``) of a 3D one. (Animations keep the slice of their first
    frame instead: ``simulation.viz.animation.animate``.)"""
    classes = site_class_array(snapshot)
    return classes[tumour_slice_z(classes)] if classes.ndim == 3 else classes


def _volume_classes(snapshot, plot_name: str) -> np.ndarray:
    """Site-class codes (nz, ny, nx) of a 3D snapshot; ValueError naming ``plot_name`` if 2D."""
    classes = site_class_array(snapshot)
    if classes.ndim != 3:
        raise ValueError(f"{plot_name} needs a 3D snapshot (arrays of shape (nz, ny, nx)); "
                         f"this one is 2D, shape {classes.shape}: draw it with plot_snapshot")
    return classes


def tumour_slice_z(snapshot) -> int:
    """z index (site) of the xy slice through the tumour of a 3D snapshot: the slice with the
    most tumour sites, cancer or necrotic (the lowest z of a tie), or ``nz // 2`` if there are
    none. Necrotic debris counts so that a necrotic core does not push the slice off the
    tumour's equator."""
    classes = _volume_classes(snapshot, "tumour_slice_z")
    tumour_per_z = np.isin(classes, TUMOUR_SITE_CLASSES).sum(axis=(1, 2))
    return int(np.argmax(tumour_per_z)) if tumour_per_z.any() else classes.shape[0] // 2


def _mm_per_site(spacing_um: float | None) -> tuple[float, str]:
    """(length of one site, unit) of picture axes: mm when the spacing (um) is known, else
    sites."""
    return (spacing_um / 1000.0, "mm") if spacing_um else (1.0, "sites")


def _site_position(index: int, spacing_um: float | None) -> str:
    """Where the centre of site ``index`` lies along an axis, e.g. "0.49 mm" ("site 32" if the
    spacing in um is unknown)."""
    return f"{(index + 0.5) * spacing_um / 1000.0:.2f} mm" if spacing_um else f"site {index}"


def slice_label(z: int, spacing_um: float | None) -> str:
    """Title note naming the xy slice at site ``z``, e.g. "z = 0.49 mm slice"."""
    return f"z = {_site_position(z, spacing_um)} slice"


def _central_slice(snapshot, spacing_um: float | None):
    """(2D snapshot, title note): a 2D snapshot as it is with no note; a 3D one cut at
    ``tumour_slice_z`` (every 3D array, scalars kept) with the note "z = 0.49 mm slice"."""
    classes = site_class_array(snapshot)
    if classes.ndim == 2:
        return snapshot, None
    z = tumour_slice_z(classes)
    note = slice_label(z, spacing_um)
    if isinstance(snapshot, np.ndarray):
        return snapshot[z], note
    return {name: value[z] if np.ndim(value) == 3 else value
            for name, value in snapshot.items()}, note


def _joined_title(*parts: str | None) -> str:
    """The non-empty ``parts`` joined with commas ("" if none)."""
    return ", ".join(part for part in parts if part)


def _lattice_image_axes(ax: plt.Axes, shape: tuple[int, int], spacing_um: float | None,
                        plane: str = "xy") -> tuple[float, float, float, float]:
    """Label ``ax`` for a lattice picture of ``shape = (rows, columns)`` sites in ``plane``
    (columns along ``plane[0]``, rows along ``plane[1]``: "xy" is (ny, nx)); returns the
    imshow extent, in mm when the site spacing (um) is known, else in sites."""
    rows, columns = shape
    scale, unit = _mm_per_site(spacing_um)
    ax.set_xlabel(f"{plane[0]} ({unit})")
    ax.set_ylabel(f"{plane[1]} ({unit})")
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(True)
    return (0.0, columns * scale, 0.0, rows * scale)


def _site_image(ax: plt.Axes, classes: np.ndarray, extent: tuple[float, float, float, float]
                ) -> None:
    """A 2D array of site-class codes as an image in the ``SITE_CLASSES`` colours."""
    ax.imshow(classes, cmap=SITE_CMAP, vmin=-0.5, vmax=len(SITE_CLASSES) - 0.5,
              interpolation="nearest", origin="lower", extent=extent)


def _snapshot_title(meta) -> str | None:
    """"scenario, day 4.0" and, when the snapshot says which run it is (``replicate`` and
    ``seed``, as ``execution/publish.py`` adds them), ", replicate 0 (seed 1)"."""
    if "time_days" not in meta:
        return None
    title = f"day {float(np.asarray(meta['time_days'])):.1f}"
    if "scenario" in meta:
        title = f"{np.asarray(meta['scenario'])}, {title}"
    if "replicate" in meta:
        title += f", replicate {int(np.asarray(meta['replicate']))}"
        if "seed" in meta:
            title += f" (seed {int(np.asarray(meta['seed']))})"
    return title


@_styled
def plot_snapshot(snapshot, path: str | Path | None = None, ax: plt.Axes | None = None,
                  title: str | None = None, legend: bool = True,
                  spacing_um: float | None = None) -> plt.Figure:
    """The lattice at one moment, one pixel per site, with the fixed legend of ``SITE_CLASSES``.

    ``snapshot`` is a mapping as saved by ``simulation.io.snapshots`` (``cell_type``,
    ``antigen_class``, ``car_t_state``, optional ``tissue``, ``time_days``, ``spacing_um``), or
    an array of site-class codes. Axes are in mm when the site spacing is known. A 3D snapshot
    (arrays (nz, ny, nx)) draws its xy slice through the tumour (``tumour_slice_z``), named in
    the title ("z = 0.49 mm slice").
    """
    meta = _snapshot_meta(snapshot)
    if spacing_um is None:
        spacing_um = snapshot_spacing_um(meta)
    snapshot, slice_note = _central_slice(snapshot, spacing_um)
    classes = site_class_array(snapshot)
    own_figure = ax is None
    fig, ax = _figure_and_axes(ax, (8.6, 5.2) if legend else (5.2, 5.2))
    extent = _lattice_image_axes(ax, classes.shape, spacing_um)
    _site_image(ax, classes, extent)
    title = _joined_title(_snapshot_title(meta) if title is None else title, slice_note)
    if title:
        ax.set_title(title)
    if legend and own_figure:
        _site_legend(fig)
    elif legend:
        ax.legend(handles=site_legend_handles(), loc="upper left", bbox_to_anchor=(1.02, 1.0),
                  title="site", alignment="left")
    return _finish(fig, path)


def field_is_off(values: np.ndarray, name: str) -> bool:
    """True if a snapshot field sits at its neutral value everywhere (not solved, or nothing
    acts on it): oxygen at normoxia, the others at 0 (within the uint8 quantisation step)."""
    neutral = FIELD_NEUTRAL[name]
    return bool(np.allclose(values, neutral, rtol=0.0, atol=max(abs(neutral), 1.0) / 255.0))


def _necrosis_threshold(snapshot) -> float | None:
    """Oxygen below which cancer cells turn necrotic (mmHg), if the snapshot saved it."""
    if "necrosis_threshold_mmhg" not in snapshot:
        return None
    return float(np.asarray(snapshot["necrosis_threshold_mmhg"]))


def _field_axes(ax: plt.Axes, snapshot, name: str, spacing_um: float | None,
                plane: str = "xy") -> None:
    """One field of a 2D ``snapshot`` (a picture in ``plane``) as an image with a colour bar in
    its unit; necrotic sites outlined; "field off" written across a field at its neutral
    value."""
    label, cmap = FIELD_STYLES.get(name, (name, "viridis"))
    unit = SNAPSHOT_FIELDS.get(name, "a.u.")
    values = snapshot_field(snapshot, name)
    ax.set_title(label)
    if values is None:
        shape = np.asarray(snapshot["cell_type"]).shape
        _lattice_image_axes(ax, shape, spacing_um, plane)
        ax.text(0.5, 0.5, "not in this snapshot\n(saved before fields)", ha="center",
                va="center", transform=ax.transAxes, color="0.3")
        return
    extent = _lattice_image_axes(ax, values.shape, spacing_um, plane)
    neutral = FIELD_NEUTRAL.get(name, 0.0)
    top = max(float(values.max()), neutral, 1e-9)
    image = ax.imshow(values, cmap=cmap, vmin=0.0, vmax=top, interpolation="nearest",
                      origin="lower", extent=extent)
    ax.figure.colorbar(image, ax=ax, shrink=0.8, label=f"{label} ({unit})")
    if field_is_off(values, name):
        ax.text(0.5, 0.5, f"field off\n(uniform {neutral:g} {unit})", ha="center",
                va="center", transform=ax.transAxes, color="0.15", fontsize=11,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "0.6"})
    threshold = _necrosis_threshold(snapshot)
    if name == "oxygen" and threshold is not None and values.min() < threshold < values.max():
        ax.contour(values, levels=[threshold], colors=NECROSIS_CONTOUR, linewidths=1.0,
                   linestyles="--", origin="lower", extent=extent)
    necrotic = _snapshot_classes(snapshot) == SITE_NECROTIC
    if necrotic.any():
        ax.contour(necrotic.astype(np.float32), levels=[0.5], colors=NECROTIC_OUTLINE,
                   linewidths=0.8, origin="lower", extent=extent)


@_styled
def plot_snapshot_with_fields(snapshot, path: str | Path | None = None,
                              fields: Sequence[str] = tuple(SNAPSHOT_FIELDS),
                              title: str | None = None) -> plt.Figure:
    """The lattice and its diffusing fields side by side, one panel each, same axes (mm).

    ``snapshot`` is a mapping as saved by ``simulation.io.snapshots``. Field panels (default
    oxygen in mmHg and suppressive factor in a.u.) have a colour bar in the field's unit and
    outline the necrotic sites in white; oxygen has a dashed contour at the scenario's necrosis
    threshold (when saved); a field at its neutral value everywhere (not solved)
    still draws, marked "field off"; a snapshot saved before fields were stored says so.
    A 3D snapshot draws its xy slice through the tumour (``tumour_slice_z``), named in the
    title.
    """
    spacing_um = snapshot_spacing_um(snapshot)
    snapshot, slice_note = _central_slice(snapshot, spacing_um)
    fig, axes = plt.subplots(1, 1 + len(fields), figsize=(4.6 * (1 + len(fields)), 5.6),
                             layout="constrained", squeeze=False)
    plot_snapshot.__wrapped__(snapshot, ax=axes[0][0], legend=False, spacing_um=spacing_um,
                              title="cells and tissue")
    for ax, name in zip(axes[0][1:], fields):
        _field_axes(ax, snapshot, name, spacing_um)
    handles = site_legend_handles()
    if fields:
        handles.append(Line2D([], [], color=NECROTIC_OUTLINE, lw=1.5,
                              path_effects=[patheffects.withStroke(linewidth=3, foreground="0.3")],
                              label="necrotic sites (outline on fields)"))
    threshold = _necrosis_threshold(snapshot)
    if "oxygen" in fields and threshold is not None:
        handles.append(Line2D([], [], color=NECROSIS_CONTOUR, lw=1.0, ls="--",
                              label=f"oxygen = necrosis threshold ({threshold:g} mmHg)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=4, title="site")
    title = _joined_title(_snapshot_title(snapshot) if title is None else title, slice_note)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


# ---------------------------------------------------------------------------------------------
# 3D lattice snapshots
# ---------------------------------------------------------------------------------------------
#: site classes of cancer cells, and of CAR-T cells (the two channels of projections)
CANCER_SITE_CLASSES = (SITE_CANCER_HIGH, SITE_CANCER_LOW, SITE_CANCER_NEGATIVE)
CAR_T_SITE_CLASSES = (SITE_CAR_T_EFFECTOR, SITE_CAR_T_EXHAUSTED, SITE_CAR_T_MEMORY)
#: the sites of the tumour mass, which slices of 3D snapshots go through
TUMOUR_SITE_CLASSES = CANCER_SITE_CLASSES + (SITE_NECROTIC,)
#: the site classes ``plot_points_3d`` draws (not empty, normal or tissue sites)
POINT_SITE_CLASSES = TUMOUR_SITE_CLASSES + CAR_T_SITE_CLASSES
#: the plane normal to each axis, as (horizontal, vertical) axis names, and each axis' index in
#: snapshot arrays [z, y, x]; cutting or projecting along an axis leaves the rows and columns
#: of its plane in that order
PLANES = {"z": "xy", "y": "xz", "x": "yz"}
ARRAY_AXIS = {"z": 0, "y": 1, "x": 2}
#: the lines marking where the other planes cut a slice
CUT_LINE = {"color": "0.25", "lw": 0.8, "ls": "--"}
#: projection channels: (label, site classes, colour of its brightest pixel)
PROJECTION_CHANNELS = (
    ("cancer", CANCER_SITE_CLASSES, SITE_CLASSES[SITE_CANCER_HIGH].colour),
    ("CAR-T", CAR_T_SITE_CLASSES, SITE_CLASSES[SITE_CAR_T_EFFECTOR].colour),
)
#: standard deviation of the Gaussian that turns cell sites into local density (sites)
DENSITY_SMOOTHING_SITES = 1.0


def _slice_centre(classes: np.ndarray, centre: Sequence[int] | None) -> tuple[int, int, int]:
    """``centre`` (z, y, x) checked to lie on the lattice; by default the centroid of the tumour
    sites (cancer and necrotic) rounded to a site, or the lattice centre if there are none."""
    if centre is None:
        tumour_sites = np.argwhere(np.isin(classes, TUMOUR_SITE_CLASSES))
        centre = (np.rint(tumour_sites.mean(axis=0)) if len(tumour_sites)
                  else np.array(classes.shape) // 2)
    centre = tuple(int(index) for index in centre)
    if len(centre) != 3 or not all(0 <= c < n for c, n in zip(centre, classes.shape)):
        raise ValueError(f"centre must be a (z, y, x) site of the lattice, shape {classes.shape}; "
                         f"got {centre}")
    return centre


@_styled
def plot_orthogonal_slices(snapshot, path: str | Path | None = None,
                           centre: Sequence[int] | None = None) -> plt.Figure:
    """Three planes through a 3D snapshot side by side (xy, xz, yz) in the site-class colours,
    with the fixed legend and axes in mm.

    The planes pass through the site ``centre`` = (z, y, x) (indices into the snapshot arrays),
    by default the centroid of the tumour (cancer and necrotic sites) rounded to a site (the
    lattice centre if there is none). Dashed lines in each panel mark where the other two
    planes cut it.
    """
    classes = _volume_classes(snapshot, "plot_orthogonal_slices")
    centre = _slice_centre(classes, centre)
    spacing_um = snapshot_spacing_um(snapshot)
    scale, _ = _mm_per_site(spacing_um)
    fig, axes = plt.subplots(1, 3, figsize=(15.0, 5.2), layout="constrained")
    for ax, normal in zip(axes, ("z", "y", "x")):
        plane = PLANES[normal]
        index = centre[ARRAY_AXIS[normal]]
        picture = np.take(classes, index, axis=ARRAY_AXIS[normal])
        _site_image(ax, picture, _lattice_image_axes(ax, picture.shape, spacing_um, plane))
        ax.axvline((centre[ARRAY_AXIS[plane[0]]] + 0.5) * scale, **CUT_LINE)
        ax.axhline((centre[ARRAY_AXIS[plane[1]]] + 0.5) * scale, **CUT_LINE)
        ax.set_title(f"{plane} plane at {normal} = {_site_position(index, spacing_um)}")
    _site_legend(fig)
    title = _snapshot_title(_snapshot_meta(snapshot))
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def _max_projection_rgb(classes: np.ndarray, axis: str) -> np.ndarray:
    """RGB image (rows, columns, 3) of floats 0-1 on black: for each of ``PROJECTION_CHANNELS``,
    the maximum along ``axis`` of its sites' local density (indicator smoothed with a Gaussian
    of ``DENSITY_SMOOTHING_SITES``), scaled to the channel's brightest pixel, in its colour;
    the channels add."""
    rows_columns = tuple(n for i, n in enumerate(classes.shape) if i != ARRAY_AXIS[axis])
    image = np.zeros(rows_columns + (3,))
    for _, codes, colour in PROJECTION_CHANNELS:
        density = gaussian_filter(np.isin(classes, codes).astype(np.float32),
                                  DENSITY_SMOOTHING_SITES, mode="constant")
        projection = density.max(axis=ARRAY_AXIS[axis])
        if projection.max() > 0:
            image += (projection / projection.max())[..., None] * np.array(to_rgb(colour))
    return np.clip(image, 0.0, 1.0)


def _oxygen_min_projection(snapshot, classes: np.ndarray, axis: str) -> dict:
    """A 2D snapshot for ``_field_axes``: the minimum of oxygen along ``axis`` (the minimum of
    the uint8 codes, which grow with oxygen), marking as necrotic the lines of sight that meet
    necrotic debris; the necrosis threshold kept."""
    array_axis = ARRAY_AXIS[axis]
    necrotic_seen = (classes == SITE_NECROTIC).any(axis=array_axis)
    projected = {"oxygen_u8": np.asarray(snapshot["oxygen_u8"]).min(axis=array_axis),
                 "oxygen_max": snapshot["oxygen_max"],
                 "site_class": np.where(necrotic_seen, SITE_NECROTIC, SITE_EMPTY)}
    if "necrosis_threshold_mmhg" in snapshot:
        projected["necrosis_threshold_mmhg"] = snapshot["necrosis_threshold_mmhg"]
    return projected


@_styled
def plot_max_projection(snapshot, path: str | Path | None = None, axis: str = "z"
                        ) -> plt.Figure:
    """A maximum-intensity projection of a 3D snapshot along ``axis``, like a two-channel
    confocal image: cancer (vermillion) and CAR-T (blue) local density on black, each channel
    scaled to its brightest pixel (see ``_max_projection_rgb``); where both are dense the
    colours add up to a pale beige.

    If the snapshot has an oxygen field that is solved (not ``field_is_off``), a second panel
    shows its minimum-intensity projection (mmHg): the hypoxic core, necrotic debris outlined.
    """
    classes = _volume_classes(snapshot, "plot_max_projection")
    if axis not in PLANES:
        raise ValueError(f"axis must be one of {sorted(PLANES)}, not {axis!r}")
    meta = _snapshot_meta(snapshot)
    oxygen = snapshot_field(meta, "oxygen")
    show_oxygen = oxygen is not None and not field_is_off(oxygen, "oxygen")
    spacing_um = snapshot_spacing_um(meta)
    fig, axes = plt.subplots(1, 1 + show_oxygen, figsize=(6.0 + 5.6 * show_oxygen, 5.8),
                             layout="constrained", squeeze=False)
    ax = axes[0][0]
    image = _max_projection_rgb(classes, axis)
    ax.imshow(image, interpolation="nearest", origin="lower",
              extent=_lattice_image_axes(ax, image.shape[:2], spacing_um, PLANES[axis]))
    ax.set_title(f"maximum projection along {axis}")
    for label, _, colour in PROJECTION_CHANNELS:  # one colour scale per channel
        cmap = LinearSegmentedColormap.from_list(f"black_{label}", ["#000000", colour])
        fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap), ax=ax, shrink=0.8, pad=0.02,
                     label=f"{label} local density, smoothed over {DENSITY_SMOOTHING_SITES:g} "
                           "site (1 = brightest pixel)")
    if show_oxygen:
        _field_axes(axes[0][1], _oxygen_min_projection(meta, classes, axis), "oxygen",
                    spacing_um, PLANES[axis])
        axes[0][1].set_title(f"oxygen, minimum projection along {axis}")
    title = _snapshot_title(meta)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


@_styled
def plot_points_3d(snapshot, path: str | Path | None = None, max_points: int = 30_000
                   ) -> plt.Figure:
    """A 3D scatter of the cancer (coloured by antigen class), necrotic and CAR-T sites of a 3D
    snapshot (not empty, normal or tissue sites), equal axis scales in mm; for small lattices.

    With more than ``max_points`` such sites, every k-th (in array order, so the same picture
    each time) is drawn, with k the smallest that fits, and the title says "1 in k shown". The
    legend counts every site of each class.
    """
    classes = _volume_classes(snapshot, "plot_points_3d")
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, not {max_points}")
    spacing_um = snapshot_spacing_um(snapshot)
    scale, unit = _mm_per_site(spacing_um)
    sites = np.flatnonzero(np.isin(classes, POINT_SITE_CLASSES))
    every = max(1, -(-len(sites) // max_points))  # ceiling division
    shown = sites[::every]
    z, y, x = (np.array(np.unravel_index(shown, classes.shape)) + 0.5) * scale
    shown_classes = classes.ravel()[shown]
    counts = np.bincount(classes.ravel(), minlength=len(SITE_CLASSES))
    fig = plt.figure(figsize=(9.0, 6.8), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    for site_class in SITE_CLASSES:  # a class subsampled away still gets its legend entry
        if site_class.code in POINT_SITE_CLASSES and counts[site_class.code]:
            mine = shown_classes == site_class.code
            ax.scatter(x[mine], y[mine], z[mine], s=6, color=site_class.colour, lw=0,
                       label=f"{site_class.label}: {counts[site_class.code]:,}")
    nz, ny, nx = classes.shape
    ax.set(xlim=(0, nx * scale), ylim=(0, ny * scale), zlim=(0, nz * scale),
           xlabel=f"x ({unit})", ylabel=f"y ({unit})", zlabel=f"z ({unit})")
    ax.set_box_aspect((nx, ny, nz))
    fig.legend(loc="outside right upper", title="sites", alignment="left")
    ax.set_title(_joined_title(_snapshot_title(_snapshot_meta(snapshot)),
                               f"1 in {every} shown" if every > 1 else None))
    return _finish(fig, path)
