"""The tumour's antigen composition over time, for scenarios that name several antigens.

Reads the ``tumor_expressing_<set>`` census columns (``biology.observables.antigen_columns``):
cancer cells by the exact set of antigens they carry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from ..biology.observables import ANTIGEN_COLUMN_PREFIXES
from .style import PALETTE, finish, styled
from .time_courses import TIME_LABEL, mark_infusions, panel_title, relative_to_infusion

EXPRESSING = ANTIGEN_COLUMN_PREFIXES[2]
#: colour of the cells carrying none of the antigens (antigen escape)
NONE_COLOUR = "0.35"
#: most scenarios drawn, one panel each
MAX_PANELS = 6


def phenotype_columns(timeseries: pd.DataFrame, scenario: str) -> list[str]:
    """The ``tumor_expressing_*`` columns ``scenario`` has values in (empty: one antigen)."""
    rows = timeseries[timeseries["scenario"] == scenario]
    return [c for c in timeseries.columns
            if c.startswith(EXPRESSING) and rows[c].notna().any()]


def has_antigen_composition(timeseries: pd.DataFrame) -> bool:
    """True if some scenario of the table names several antigens."""
    return any(phenotype_columns(timeseries, s) for s in timeseries["scenario"].unique())


def _by_run(runs: pd.DataFrame, column: str) -> pd.DataFrame:
    """``column`` as one column per replicate and one row per census time; runs that stopped
    early keep their last census (as ``time_courses.replicate_bands`` does), so that layers
    still add up."""
    return runs.pivot_table(index="time_days", columns="replicate",
                            values=column).sort_index().ffill()


def _mean_layers(runs: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Per census time, the mean over replicates of each column (``_by_run``)."""
    return pd.DataFrame({column: _by_run(runs, column).mean(axis=1) for column in columns})


@styled
def plot_antigen_composition(timeseries: pd.DataFrame, path: str | Path | None = None,
                             infusions: Mapping[str, Sequence[float]] | None = None,
                             treatments: Mapping[str, str] | None = None) -> plt.Figure:
    """Cancer cells by the set of antigens they carry vs days after the first infusion, one
    column per scenario with several antigens (at most ``MAX_PANELS``).

    Every curve is a mean over the replicates. Top: the layers are stacked means, so they
    add up to the mean tumour, the black line at their top; the grey band is the range of
    the tumour over the replicates (lowest to highest run). Bottom: the same layers as % of
    the mean tumour (the composition, also of residual disease too small to see above;
    blank once no run has a cancer cell left).
    ``none``: cells carrying no antigen at all. Panel titles name each scenario's treatment
    where ``treatments`` does (``execution.publish.treatment_labels``). ValueError if no scenario
    has several antigens.
    """
    relative, infused = relative_to_infusion(timeseries, infusions)
    scenarios = [s for s in dict.fromkeys(relative["scenario"])
                 if phenotype_columns(relative, s)][:MAX_PANELS]
    if not scenarios:
        raise ValueError("plot_antigen_composition: no scenario names several antigens "
                         "(tumor.antigens)")
    fig, axes = plt.subplots(2, len(scenarios), figsize=(4.8 * len(scenarios), 7.4),
                             layout="constrained", squeeze=False, sharex="col")
    for (ax_cells, ax_share), scenario in zip(axes.T, scenarios):
        runs = relative[relative["scenario"] == scenario]
        columns = phenotype_columns(relative, scenario)
        layers = _mean_layers(runs, columns)
        labels = [c[len(EXPRESSING):] for c in columns]
        colours = [NONE_COLOUR if label == "none" else PALETTE[(i - 1) % len(PALETTE)]
                   for i, label in enumerate(labels)]
        ax_cells.stackplot(layers.index, *(layers[c] for c in columns), labels=labels,
                           colors=colours, alpha=0.85, lw=0)
        n_runs = runs["replicate"].nunique()
        totals = _by_run(runs, "tumor_cells")
        ax_cells.fill_between(totals.index, totals.min(axis=1), totals.max(axis=1), color="k",
                              alpha=0.12, lw=0, label=f"tumour: range over the {n_runs} runs")
        ax_cells.plot(totals.index, totals.mean(axis=1), color="k", lw=1.2,
                      label=f"tumour: mean of the {n_runs} runs")
        mark_infusions(ax_cells, infused, [scenario])
        ax_cells.set_title(panel_title(scenario, f"n = {n_runs} runs; means", treatments))
        ax_cells.set_ylabel("cancer cells (mean over runs, stacked)")
        ax_cells.set_ylim(bottom=0)
        total = layers.sum(axis=1)
        shares = 100.0 * layers.div(total.where(total > 0), axis=0)
        ax_share.stackplot(shares.index, *(shares[c] for c in columns), colors=colours,
                           alpha=0.85, lw=0)
        ax_share.set_ylim(0, 100)
        ax_share.set_ylabel("% of the mean tumour")
        ax_share.set_xlabel(TIME_LABEL)
        handles, texts = ax_cells.get_legend_handles_labels()
        ax_share.legend(handles, texts, title="cancer cells carrying", loc="upper center",
                        bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize=8)
    fig.suptitle("Tumour antigen composition: cancer cells by the antigens they carry "
                 "(mean over runs)")
    return finish(fig, path)
