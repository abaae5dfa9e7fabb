"""CAR-T per product and per subset over time, for scenarios with several products or a
product composition.

Reads the ``product_<name>_car_t`` and ``car_t_cd4`` / ``car_t_cd8`` / ``car_t_memory_like``
census columns (``biology.observables.product_columns``): CAR-T in tissue and blood.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from ..biology.observables import SUBSET_COLUMNS
from .style import PALETTE, finish, styled
from .time_courses import (TIME_LABEL, mark_infusions, panel_title, relative_to_infusion,
                           replicate_bands)

PRODUCT_PREFIX, PRODUCT_SUFFIX = "product_", "_car_t"
#: most scenarios drawn, one panel each
MAX_PANELS = 6


def product_series(timeseries: pd.DataFrame, scenario: str) -> list[str]:
    """The per-product and per-subset CAR-T columns ``scenario`` has values in (empty: one
    product without a composition); a subset the product never had (all 0) is left out."""
    rows = timeseries[timeseries["scenario"] == scenario]
    products = [c for c in timeseries.columns
                if c.startswith(PRODUCT_PREFIX) and c.endswith(PRODUCT_SUFFIX)
                and rows[c].notna().any()]
    subsets = [c for c in SUBSET_COLUMNS if c in rows and rows[c].notna().any()]
    if subsets:
        subsets = [c for c in subsets if rows[c].fillna(0).gt(0).any()]
    return products + subsets


def has_product_series(timeseries: pd.DataFrame) -> bool:
    """True if some scenario of the table has several products or a composition."""
    return any(product_series(timeseries, s) for s in timeseries["scenario"].unique())


def _label(column: str) -> str:
    if column in SUBSET_COLUMNS:
        return column.removeprefix("car_t_").replace("_", "-") + " cells"
    return "product " + column[len(PRODUCT_PREFIX):-len(PRODUCT_SUFFIX)]


@styled
def plot_car_t_products(timeseries: pd.DataFrame, path: str | Path | None = None,
                        infusions: Mapping[str, Sequence[float]] | None = None,
                        treatments: Mapping[str, str] | None = None) -> plt.Figure:
    """CAR-T (tissue and blood) per product (solid) and per subset (dashed: CD4, CD8,
    memory-like; those it has) vs days after the first infusion, one panel per scenario that
    has them (at most ``MAX_PANELS``): median line and interquartile band over the
    replicates, log scale.
    Panel titles name each scenario's treatment where ``treatments`` does
    (``execution.publish.treatment_labels``). ValueError if no scenario has several products or a
    composition.
    """
    relative, infused = relative_to_infusion(timeseries, infusions)
    scenarios = [s for s in dict.fromkeys(relative["scenario"])
                 if product_series(relative, s)][:MAX_PANELS]
    if not scenarios:
        raise ValueError("plot_car_t_products: no scenario has several products or a "
                         "composition (products, car_t.composition)")
    # one colour per product or subset across the panels
    every = dict.fromkeys(c for s in scenarios for c in product_series(relative, s))
    colours = {column: PALETTE[i % len(PALETTE)] for i, column in enumerate(every)}
    fig, axes = plt.subplots(1, len(scenarios), figsize=(5.2 * len(scenarios), 4.6),
                             layout="constrained", squeeze=False)
    for ax, scenario in zip(axes[0], scenarios):
        runs = relative[relative["scenario"] == scenario]
        for column in product_series(relative, scenario):
            band = replicate_bands(runs, column)
            colour = colours[column]
            ax.fill_between(band["time_days"], band["q25"], band["q75"], color=colour,
                            alpha=0.18, lw=0)
            ax.plot(band["time_days"], band["median"], color=colour, label=_label(column),
                    ls="--" if column in SUBSET_COLUMNS else "-")
        mark_infusions(ax, infused, [scenario])
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_ylim(bottom=0)
        ax.set_title(panel_title(scenario, f"n = {runs['replicate'].nunique()} runs",
                                 treatments))
        ax.set_xlabel(TIME_LABEL)
        ax.set_ylabel("CAR-T in tissue and blood (cells)")
        ax.legend(fontsize=8)
    fig.suptitle("CAR-T by product and subset: median and IQR over runs")
    return finish(fig, path)
