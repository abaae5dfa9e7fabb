"""Plots from results tables: every plot renders from a small study, in PNG/SVG/PDF; the
Kaplan-Meier estimator and the progression rule against hand-computed examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import REPO_ROOT

from simulation import load_study
from simulation.plotting import (
    SITE_CLASSES,
    best_percent_change,
    kaplan_meier,
    plot_blood_vs_solid,
    plot_burden,
    plot_car_t_kinetics,
    plot_progression_free,
    plot_response_rates,
    plot_snapshot,
    plot_waterfall,
    progression_events,
    save_figure,
)
from simulation.results import run_study

STUDY = REPO_ROOT / "tests" / "data" / "small_study.yaml"
PNG = b"\x89PNG\r\n\x1a\n"



@pytest.fixture(autouse=True)
def _close_figures():
    """Figures are returned open (for notebooks); close them so they do not pile up."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")

@pytest.fixture(scope="module")
def tables():
    study = load_study(STUDY).model_copy(update={"replicates": 3})
    return run_study(study, workers=1)


def test_kaplan_meier_matches_hand_computation():
    # t:      1  2  2  3  4  5     (event = progression, 0 = censored)
    # event:  1  1  0  1  0  1
    # S(1) = 5/6; S(2) = 5/6 * 4/5 = 2/3 (censoring at 2 counted after the event);
    # S(3) = 2/3 * 2/3 = 4/9; S(4) = 4/9 (censored only); S(5) = 0
    curve = kaplan_meier([1, 2, 2, 3, 4, 5], [1, 1, 0, 1, 0, 1])
    assert curve["time"].tolist() == [0, 1, 2, 3, 4, 5]
    assert curve["at_risk"].tolist() == [6, 6, 5, 3, 2, 1]
    assert curve["events"].tolist() == [0, 1, 1, 1, 0, 1]
    assert curve["censored"].tolist() == [0, 0, 1, 0, 1, 0]
    np.testing.assert_allclose(curve["survival"], [1, 5 / 6, 2 / 3, 4 / 9, 4 / 9, 0])


def test_kaplan_meier_without_events_stays_at_one():
    curve = kaplan_meier([3.0, 5.0], [False, False])
    assert curve["survival"].tolist() == [1.0, 1.0, 1.0]


def _series(scenario, replicate, counts, step=1.0):
    return pd.DataFrame({"scenario": scenario, "replicate": replicate,
                         "time_days": np.arange(len(counts)) * step, "tumor_cells": counts})


def test_progression_rule_nadir_baseline_and_censoring():
    timeseries = pd.concat([
        _series("s", 0, [100, 50, 40, 47, 48, 49]),   # nadir 40 -> 48 is 120 %: day 4
        _series("s", 1, [100, 110, 119, 120, 130, 140]),  # no response: 120 % of baseline: day 3
        _series("s", 2, [100, 60, 0]),                 # cleared on day 2: censored at day 5
        _series("s", 3, [100, 90, 95, 100, 105, 107]),  # 107 < 120 % of nadir 90: censored
    ], ignore_index=True)
    events = progression_events(timeseries)
    assert events["progressed"].tolist() == [True, True, False, False]
    assert events["time_days"].tolist() == [4.0, 3.0, 5.0, 5.0]


def test_best_percent_change():
    summary = pd.DataFrame({"baseline_tumor_cells": [200, 100], "nadir_tumor_cells": [0, 150]})
    assert best_percent_change(summary).tolist() == [-100.0, 50.0]


@pytest.mark.parametrize("plot", [plot_burden, plot_blood_vs_solid, plot_car_t_kinetics,
                                  plot_progression_free])
def test_time_course_plots_render_to_png(tables, plot, tmp_path):
    timeseries, summary = tables
    path = tmp_path / "plot.png"
    fig = plot(timeseries, summary, path)
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 15_000
    for ax in fig.axes:
        if ax.has_data():
            assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()


def test_burden_plot_linear_scale(tables):
    fig = plot_burden(*tables, log_scale=False)
    assert fig.axes[0].get_yscale() == "linear"
    assert plot_burden(*tables).axes[0].get_yscale() == "symlog"


def test_car_t_kinetics_marks_the_peak(tables):
    timeseries, summary = tables
    ax = plot_car_t_kinetics(timeseries, summary).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert all("peak" in label and "day" in label for label in labels)
    assert ax.get_yscale() == "symlog"


def test_waterfall_colours_bars_by_response(tables, tmp_path):
    timeseries, summary = tables
    fig = plot_waterfall(summary, tmp_path / "waterfall.png")
    bars = [patch for ax in fig.axes for patch in ax.patches]
    assert len(bars) == len(summary)
    lines = {round(line.get_ydata()[0]) for line in fig.axes[0].lines}
    assert {-30, 20} <= lines


def test_response_rate_bars(tables):
    _, summary = tables
    fig = plot_response_rates(summary)
    heights = {}
    for patch in fig.axes[0].patches:
        x = round(patch.get_x() + patch.get_width() / 2)
        heights[x] = heights.get(x, 0.0) + patch.get_height()
    assert all(h == pytest.approx(100.0) for h in heights.values())


@pytest.mark.parametrize("suffix, magic", [(".svg", b"<?xml"), (".pdf", b"%PDF"), ("", PNG)])
def test_format_follows_the_suffix(tables, tmp_path, suffix, magic):
    fig = plot_burden(*tables)
    written = save_figure(fig, tmp_path / f"burden{suffix}")
    assert written.read_bytes()[:len(magic)] == magic


def test_same_tables_give_identical_files(tables, tmp_path):
    for suffix in (".png", ".svg", ".pdf"):
        plot_waterfall(tables[1], tmp_path / f"a{suffix}")
        plot_waterfall(tables[1], tmp_path / f"b{suffix}")
        assert (tmp_path / f"a{suffix}").read_bytes() == (tmp_path / f"b{suffix}").read_bytes()


def test_unknown_suffix_is_refused(tables, tmp_path):
    with pytest.raises(ValueError, match="unsupported"):
        save_figure(plot_burden(*tables), tmp_path / "burden.jpeg")


def test_snapshot_plot_has_fixed_legend_and_mm_axes(tmp_path):
    classes = np.zeros((10, 12), dtype=np.uint8)
    classes[2:5, 3:6] = 1  # only cancer: the legend still lists every class
    fig = plot_snapshot({"site_class": classes, "time_days": 2.5, "spacing_um": 15.0},
                        tmp_path / "snap.png")
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [c.label for c in SITE_CLASSES]
    ax = fig.axes[0]
    assert ax.get_xlabel() == "x (mm)" and ax.get_title() == "day 2.5"
    assert ax.images[0].get_extent()[1] == pytest.approx(12 * 0.015)
    assert (tmp_path / "snap.png").read_bytes()[:8] == PNG
