"""Plots from results tables: every plot renders from a small study, in PNG/SVG/PDF; the
Kaplan-Meier estimator and the progression rule against hand-computed examples; lattice
pictures of 2D and (synthetic) 3D snapshots show the sites they should."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import REPO_ROOT
from matplotlib.colors import to_hex
from matplotlib.text import Annotation
from test_volume import CAR_T_SITES, TUMOUR_CENTRE, sphere_snapshot

from simulation import load_study
from simulation.engine.constants import CANCER, CAR_T, NECROTIC
from simulation.analysis.outcomes import (
    best_percent_change,
    kaplan_meier,
    progression_events,
    wilson_interval,
)
from simulation.analysis.kinetics import (
    contraction_half_life,
    half_life_interval,
    kinetic_phases,
    replicate_half_lives,
)
from simulation.analysis.outcomes import response_breakdown
from simulation.viz.lattice_plots import (
    SITE_CLASSES,
    plot_max_projection,
    plot_orthogonal_slices,
    plot_points_3d,
    plot_snapshot,
    plot_snapshot_with_fields,
    tumour_slice_z,
)
from simulation.viz.study_plots import (
    plot_blood_vs_solid,
    plot_progression_free,
    plot_response_rates,
    plot_waterfall,
)
from simulation.viz.style import save_figure, series_colours
from simulation.viz.time_courses import (
    TIME_LABEL,
    infusion_days,
    plot_assay_wells,
    plot_blood_kinetics,
    plot_burden,
    plot_car_t_kinetics,
    plot_killing_assay,
)
from simulation.execution.runner import run_study
from simulation.viz.animation import animate
from simulation.io.snapshots import (
    SITE_EMPTY,
    SITE_STROMA,
    SITE_VESSEL,
    quantise_field,
    save_snapshot,
    site_classes,
    snapshot_field,
)

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
    assert curve["survival_ci_low"].isna().all()  # no event, no variance: no interval


def _naive_kaplan_meier(times, events) -> list[float]:
    """Product-limit estimate at each distinct time (events before censorings)."""
    times, events = np.asarray(times, float), np.asarray(events, bool)
    survival, values = 1.0, []
    for t in np.unique(times):
        d = np.count_nonzero(events & (times == t))
        survival *= 1.0 - d / np.count_nonzero(times >= t)
        values.append(survival)
    return values


def test_kaplan_meier_is_scipys_estimate_with_its_log_log_interval():
    rng = np.random.default_rng(7)
    times = rng.integers(1, 15, 40).astype(float)
    events = rng.random(40) < 0.6
    curve = kaplan_meier(times, events)
    np.testing.assert_allclose(curve["survival"].iloc[1:], _naive_kaplan_meier(times, events),
                               rtol=0, atol=1e-12)
    from scipy import stats

    reference = stats.ecdf(stats.CensoredData(uncensored=times[events],
                                              right=times[~events])).sf
    with warnings.catch_warnings():  # "undefined at some observations": where S = 0
        warnings.simplefilter("ignore", RuntimeWarning)
        interval = reference.confidence_interval(0.95, method="log-log")
    distinct = curve["time"].to_numpy()[1:]
    np.testing.assert_array_equal(curve["survival"].iloc[1:], reference.evaluate(distinct))
    defined = curve["survival_ci_low"].notna().to_numpy()[1:]
    assert defined.sum() >= 10
    np.testing.assert_array_equal(curve["survival_ci_low"].iloc[1:][defined],
                                  interval.low.evaluate(distinct)[defined])
    assert ((curve["survival_ci_low"] <= curve["survival"])
            & (curve["survival"] <= curve["survival_ci_high"]))[curve["survival_ci_low"].notna()
                                                                 ].all()


def _series(scenario, replicate, counts, step=1.0):
    return pd.DataFrame({"scenario": scenario, "replicate": replicate,
                         "time_days": np.arange(len(counts)) * step, "tumor_cells": counts})


def test_progression_rule_nadir_baseline_and_censoring():
    timeseries = pd.concat([
        _series("s", 0, [1000, 500, 400, 470, 480, 490]),  # nadir 400 -> 480 is 120 %: day 4
        _series("s", 1, [1000, 1100, 1190, 1200, 1300]),  # no response: 120 % of baseline: day 3
        _series("s", 2, [1000, 600, 0]),                 # cleared on day 2: censored at day 5
        _series("s", 3, [1000, 900, 950, 1000, 1050, 1070]),  # < 120 % of nadir 900: censored
        _series("s", 4, [1000, 1, 1, 2, 3, 5]),  # one cell dividing: +4 < 10 cells: censored
        _series("s", 5, [1000, 1, 1, 2, 8, 11]),  # 11 >= 1 + 10 cells (and 120 %): day 5
    ], ignore_index=True)
    events = progression_events(timeseries)
    assert events["progressed"].tolist() == [True, True, False, False, False, True]
    assert events["time_days"].tolist() == [4.0, 3.0, 5.0, 5.0, 5.0, 5.0]


def test_best_percent_change():
    summary = pd.DataFrame({"baseline_tumor_cells": [200, 100], "nadir_tumor_cells": [0, 150]})
    assert best_percent_change(summary).tolist() == [-100.0, 50.0]


@pytest.mark.parametrize("plot", [plot_burden, plot_blood_vs_solid, plot_car_t_kinetics,
                                  plot_blood_kinetics, plot_progression_free])
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
    # log, not symlog: symlog is linear below 1 % and cannot show the 0.01 % MRD level
    assert plot_burden(*tables).axes[0].get_yscale() == "log"


def _legend_texts(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends + [ax.get_legend() for ax in fig.axes
                                                      if ax.get_legend()]
            for t in legend.get_texts()]


def test_burden_shows_the_full_response_breakdown_mrd_and_infusions(tables):
    timeseries, summary = tables
    fig = plot_burden(timeseries, summary)
    labels = _legend_texts(fig)
    for scenario, rows in summary.groupby("scenario"):
        counts = {r: int((rows["response"] == r).sum()) for r in ("CR", "PR", "SD", "PD")}
        expected = (f"{scenario} ({rows['tumor_type'].iloc[0]}): CR {counts['CR']} · "
                    f"PR {counts['PR']} · SD {counts['SD']} · PD {counts['PD']} of n = 3")
        assert expected in labels
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == TIME_LABEL
    mrd = [line for line in ax.lines if line.get_gid() == "mrd"]
    assert len(mrd) == 1 and mrd[0].get_ydata()[0] == pytest.approx(0.01)  # % of baseline
    assert ax.get_ylim()[0] < 0.01 and any("MRD detection limit" in t for t in labels)
    assert [line.get_xdata()[0] for line in ax.lines if line.get_gid() == "infusion"] == [0.0]
    assert not fig.axes[0].get_legend()  # the legend sits below the panels, off the data
    fig.canvas.draw()  # constrained layout places the legend at draw time
    assert fig.legends and fig.legends[0].get_window_extent().y1 <= \
        ax.get_window_extent().y0 + 1


def test_zeros_are_drawn_on_the_zero_band_not_dropped():
    counts = [400, 200, 10, 0, 0, 0]
    timeseries = pd.concat([_series("s", r, counts).assign(
        car_t_cells=[0, 5, 9, 9, 0, 0], cumulative_car_t_infused=20) for r in range(2)])
    fig = plot_burden(timeseries)
    ax = fig.axes[0]
    median = ax.lines[0].get_ydata()
    assert np.isfinite(median).all() and len(median) == len(counts)
    floor = median[-1]
    assert 0 < floor < 0.01 and ax.get_ylim()[0] < floor  # below the MRD line, on the axis
    tick_labels = {t.get_text(): t.get_position()[1] for t in ax.get_yticklabels()}
    assert tick_labels["0"] == pytest.approx(floor)
    # the band says what it means
    assert "0 band, left: no cancer cells left (cleared)" in _legend_texts(fig)


def test_the_two_zero_bands_of_the_burden_figure_look_and_read_apart_below_an_axis_break():
    counts = [400, 200, 10, 0, 0, 0]
    timeseries = pd.concat([_series("s", r, counts).assign(
        car_t_cells=[0, 5, 9, 9, 0, 0], cumulative_car_t_infused=20) for r in range(2)])
    fig = plot_burden(timeseries)
    fig.canvas.draw()
    bands = {handle.get_label(): handle for handle in fig.legends[0].legend_handles
             if "0 band" in handle.get_label()}
    assert len(bands) == 2  # one legend entry per panel's band, each saying which panel
    left, right = (bands[k] for k in sorted(bands))
    assert "left" in left.get_label() and "right" in right.get_label()
    assert left.get_hatch() != right.get_hatch()  # two boxes that cannot be confused
    for ax in fig.axes:  # the "0" band is no decade of the scale: the axis is broken above it
        floor = [t.get_position()[1] for t in ax.get_yticklabels() if t.get_text() == "0"][0]
        breaks = [line for line in ax.lines if line.get_gid() == "axis_break"]
        assert len(breaks) == 1 and all(floor < y < 10 * floor
                                        for y in breaks[0].get_ydata())


def test_infusion_days_are_read_from_the_census():
    table = pd.concat([
        _series("a", 0, [10] * 6).assign(cumulative_car_t_infused=[5, 5, 5, 9, 9, 9]),
        _series("b", 0, [10] * 6).assign(cumulative_car_t_infused=[0, 0, 4, 4, 4, 4]),
        _series("c", 0, [10] * 6).assign(cumulative_car_t_infused=0)])
    # a: at t = 0 (counted by the first census) and at day 2 (seen on day 3); b: on day 1
    assert infusion_days(table) == {"a": [0.0, 2.0], "b": [1.0], "c": []}


def test_configured_infusions_set_the_clock_and_dishes_get_no_clinical_labels():
    counts = [400, 300, 200, 100]
    timeseries = pd.concat([_series("dish", r, counts).assign(car_t_cells=5) for r in range(2)])
    summary = pd.DataFrame({"scenario": "dish", "tumor_type": "in_vitro", "replicate": [0, 1],
                            "response": ["CR", "CR"]})
    fig = plot_burden(timeseries, summary, infusions={"dish": [1.0, 2.0]})
    ax = fig.axes[0]
    assert ax.lines[0].get_xdata()[0] == -1.0  # day 1 is time 0: the census before is day -1
    assert [line.get_xdata()[0] for line in ax.lines if line.get_gid() == "infusion"] == [
        0.0, 1.0]
    assert ax.lines[0].get_ydata()[1] == pytest.approx(100.0)  # baseline: the count at infusion
    assert "dish (in vitro), n = 2" in _legend_texts(fig)
    assert not any("CR" in label for label in _legend_texts(fig))


def test_series_colours_never_repeat():
    for n in (2, 8, 10, 20, 35):
        colours = series_colours(n)
        assert len({to_hex(c) for c in colours}) == n


def test_response_breakdown_counts_every_class():
    summary = pd.DataFrame({"response": ["SD", "SD", "CR"]})
    assert response_breakdown(summary) == "CR 1 · PR 0 · SD 2 · PD 0 of n = 3"


def test_response_breakdown_says_how_many_relapsed_after_their_response():
    """A best response of PR in 3 of 3 runs reads as success unless the relapses are shown."""
    summary = pd.DataFrame({"response": ["PR", "PR", "PR"], "relapse": [True, True, True]})
    assert response_breakdown(summary) == "CR 0 · PR 3 · SD 0 · PD 0 of n = 3, 3 relapsed"
    assert "relapsed" not in response_breakdown(summary.assign(relapse=False))


def test_burden_legend_names_each_arm_s_product_route_and_relapses(tables):
    timeseries, summary = tables
    summary = summary.assign(relapse=summary["replicate"] == 0)
    treatments = {s: f"product of {s}, intravenous" for s in summary["scenario"].unique()}
    fig = plot_burden(timeseries, summary, treatments=treatments)
    labels = [" ".join(label.split()) for label in _legend_texts(fig)]  # wrapped lines joined
    for scenario, rows in summary.groupby("scenario"):
        assert any(label.startswith(f"{scenario} ({rows['tumor_type'].iloc[0]}; product of "
                                    f"{scenario}, intravenous): ") and "1 relapsed" in label
                   for label in labels)
    assert all("n = 3 replicates" in ax.get_title() for ax in fig.axes)  # both panels


def test_shipped_studies_say_which_product_each_arm_gets_and_how():
    from simulation.execution.publish import treatment_labels

    labels = treatment_labels(load_study(REPO_ROOT / "configs" / "blood_vs_solid.yaml").scenarios)
    assert labels == {"b_all_cd19": "CAR-T, intravenous after lymphodepletion",
                      "gbm_solid": "CAR-T, intratumoral"}
    arms = treatment_labels(load_study(
        REPO_ROOT / "configs" / "car_design" / "or_gate_b_all.yaml").scenarios)
    assert list(arms.values()) == ["CD19 CAR-T, intravenous after lymphodepletion",
                                   "CD19/CD22 OR CAR-T, intravenous after lymphodepletion"]


def test_curves_drawn_over_each_other_are_noted_in_the_legend():
    counts = [400, 300, 200, 100]
    arm = pd.concat([_series("a", r, counts).assign(car_t_cells=[0, 50, 90, 80],
                                                    cumulative_car_t_infused=20)
                     for r in range(2)])
    twin = arm.assign(scenario="b", car_t_cells=arm["car_t_cells"] * 1.1)
    apart = arm.assign(scenario="c", car_t_cells=arm["car_t_cells"] * 3,
                       tumor_cells=arm["tumor_cells"] * np.tile([1.0, 2.0, 3.0, 4.0], 2))
    fig = plot_burden(pd.concat([arm, twin, apart], ignore_index=True))
    notes = [" ".join(t.split()) for t in _legend_texts(fig) if "drawn (nearly)" in t]
    assert notes == [f"a and b: {what} medians within 25 % of each other throughout, drawn "
                     "(nearly) over each other" for what in ("tumour burden", "CAR-T")]


def test_car_t_kinetics_marks_the_peak(tables):
    timeseries, summary = tables
    ax = plot_car_t_kinetics(timeseries, summary).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[-2:] == ["0 CAR-T cells on the lattice", "CAR-T infusion"]  # the ▲ marks
    assert all("peak" in label and "day" in label for label in labels[:-2])
    assert all("(n = 3)" in label for label in labels[:-2])
    assert ax.get_yscale() == "log"  # zeros on the "0" band instead of a symlog axis


def test_progression_free_plot_has_a_confidence_band_and_n(tables):
    timeseries, summary = tables
    fig = plot_progression_free(timeseries, summary)
    ax = fig.axes[0]
    assert ax.get_xlabel() == TIME_LABEL
    labels = _legend_texts(fig)
    assert any("of n = 3 progressed" in label for label in labels)
    assert any("95 % CI" in label for label in labels)
    assert len(ax.collections) >= 2  # one band per scenario (+ the legend's swatch)


def test_waterfall_colours_bars_by_response(tables, tmp_path):
    timeseries, summary = tables
    fig = plot_waterfall(summary, tmp_path / "waterfall.png")
    bars = [patch for ax in fig.axes for patch in ax.patches]
    assert len(bars) == len(summary)
    lines = {round(line.get_ydata()[0]) for line in fig.axes[0].lines}
    assert {-30, 20} <= lines


def test_waterfall_labels_never_run_together_and_pd_shows_its_final_change():
    n = 60
    summary = pd.DataFrame({"scenario": "trial", "tumor_type": "blood", "replicate": range(n),
                            "response": ["PD"] * 10 + ["CR"] * (n - 10),
                            "baseline_tumor_cells": 100,
                            "nadir_tumor_cells": [99] * 10 + [0] * (n - 10),
                            "final_tumor_cells": [150, 500, 9000] + [130] * 7 + [0] * (n - 10)})
    ax = plot_waterfall(summary, unit="patient").axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert len(labels) == 20 and "1 in 3 labelled" in ax.get_xlabel()
    finals = [c for c in ax.collections if c.get_gid() == "final_change"]
    heights = sorted(y for c in finals for _, y in c.get_offsets())
    # PD is judged on growth: each PD run's final change is marked, 9000 % at the cap
    assert heights == pytest.approx([30.0] * 7 + [50.0, 300.0, 300.0])
    assert any("final change" in t.get_text() for t in ax.get_legend().get_texts())


def test_waterfall_marks_runs_that_never_fell_below_baseline():
    """A best change of 0 % draws no bar; each such run gets a mark on the zero line."""
    summary = pd.DataFrame({"scenario": ["gbm"] * 3, "tumor_type": ["solid"] * 3,
                            "replicate": [0, 1, 2], "response": ["PD", "PD", "PR"],
                            "baseline_tumor_cells": [100, 100, 100],
                            "nadir_tumor_cells": [100, 100, 50]})
    fig = plot_waterfall(summary)
    marks = fig.axes[0].collections[0].get_offsets()
    assert len(marks) == 2 and set(np.asarray(marks)[:, 1]) == {0.0}


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


# ---- site classes, fields, blood kinetics ----------------------------------------------------
def test_site_classes_are_one_fixed_list_with_distinct_colours():
    from simulation.io.snapshots import N_SITE_CLASSES

    assert [c.code for c in SITE_CLASSES] == list(range(N_SITE_CLASSES))
    assert len({c.colour.upper() for c in SITE_CLASSES}) == len(SITE_CLASSES)
    labels = " | ".join(c.label for c in SITE_CLASSES)
    for word in ("memory", "exhausted", "effector", "necrotic", "stroma", "vessel"):
        assert word in labels


def _field_snapshot(oxygen: np.ndarray, suppression: np.ndarray) -> dict:
    from simulation.engine.constants import CANCER, NECROTIC, TISSUE_STROMA, TISSUE_VESSEL
    from simulation.io.snapshots import quantise_field

    ny, nx = oxygen.shape
    cell_type = np.zeros((ny, nx), np.uint8)
    cell_type[10:30, 10:30] = CANCER
    cell_type[17:23, 17:23] = NECROTIC  # the core
    tissue = np.zeros((ny, nx), np.uint8)
    tissue[::9, ::9] = TISSUE_VESSEL
    tissue[5, :] = TISSUE_STROMA
    cell_type[tissue == TISSUE_VESSEL] = 0
    snapshot = {"cell_type": cell_type, "antigen_class": np.full((ny, nx), 2, np.uint8),
                "car_t_state": np.zeros((ny, nx), np.uint8), "tissue": tissue,
                "time_days": np.float64(10.0), "spacing_um": np.float64(15.0),
                "necrosis_threshold_mmhg": np.float64(5.0), "scenario": np.str_("synthetic")}
    for name, values in (("oxygen", oxygen), ("suppression", suppression)):
        snapshot[f"{name}_u8"], snapshot[f"{name}_max"] = quantise_field(values)
    return snapshot


def _colour_bar_labels(fig) -> list[str]:
    return [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_snapshot_with_fields_has_units_and_shows_the_necrotic_core(tmp_path):
    y, x = np.mgrid[0:40, 0:40]
    distance = np.hypot(x - 20, y - 20)
    oxygen = np.clip(38.0 * distance / 20.0, 1.0, 38.0)  # hypoxic centre
    suppression = 20.0 * np.exp(-(distance / 10.0) ** 2)
    path = tmp_path / "fields.png"
    fig = plot_snapshot_with_fields(_field_snapshot(oxygen, suppression), path)
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 30_000
    assert _colour_bar_labels(fig) == ["oxygen (mmHg)", "suppressive factor (a.u.)"]
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in panels] == ["cells and tissue", "oxygen",
                                                 "suppressive factor"]
    for ax in panels:
        assert ax.get_xlabel() == "x (mm)" and ax.get_ylabel() == "y (mm)"
        assert not [t for t in ax.texts if "field off" in t.get_text()]
    # the necrotic core: outlined on both field panels; the oxygen panel also has the
    # necrosis-threshold contour
    from matplotlib.contour import ContourSet

    contours = [[c for c in ax.get_children() if isinstance(c, ContourSet)] for ax in panels]
    assert [len(c) for c in contours] == [0, 2, 1]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:len(SITE_CLASSES)] == [c.label for c in SITE_CLASSES]
    assert any("necrosis threshold (5 mmHg)" in t for t in legend)


def test_fields_at_their_neutral_value_plot_as_off(tmp_path):
    fig = plot_snapshot_with_fields(_field_snapshot(np.full((40, 40), 38.0), np.zeros((40, 40))),
                                    tmp_path / "off.png")
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    for ax in panels[1:]:
        assert ax.images and any("field off" in t.get_text() for t in ax.texts)
    assert _colour_bar_labels(fig) == ["oxygen (mmHg)", "suppressive factor (a.u.)"]
    assert (tmp_path / "off.png").stat().st_size > 20_000


def _kinetics_table(peak_days: dict[str, float], replicates: int = 3) -> pd.DataFrame:
    """CAR-T per uL: an infusion bolus at day 0, gone at day 1, expansion to a peak (x20 the
    bolus) on ``peak_days[scenario]``, contraction with a 2-day half-life for 10 days, then
    persistence (14-day half-life)."""
    rows = []
    days = np.arange(0.0, 50.0, 0.5)
    for scenario, peak_day in peak_days.items():
        for replicate in range(replicates):
            rise = 20.0 * np.exp(np.log(200.0) * (days - peak_day) / (peak_day - 1.0))
            fall = 20.0 * 0.5 ** ((days - peak_day) / 2.0)
            plateau = 20.0 * 0.5 ** 5.0 * 0.5 ** ((days - peak_day - 10.0) / 14.0)
            level = np.where(days <= peak_day, rise,
                             np.where(days <= peak_day + 10.0, fall, plateau))
            level[days == 1.0] = 0.0
            level[0] = 1.0  # the bolus, before the cells leave the blood
            rows.append(pd.DataFrame({"scenario": scenario, "replicate": replicate,
                                      "time_days": days,
                                      "car_t_blood_per_ul": level * (1 + 0.05 * replicate)}))
    return pd.concat(rows, ignore_index=True)


def test_kinetic_phases_of_a_synthetic_course():
    table = _kinetics_table({"a": 9.0}, replicates=1)
    phases = kinetic_phases(table["time_days"], table["car_t_blood_per_ul"])
    t = table["time_days"].to_numpy()
    assert t[phases.start] == 1.0 and t[phases.peak] == 9.0  # not the day-0 bolus
    assert t[phases.persistence] == pytest.approx(19.0, abs=1.0)
    assert phases.half_life_days == pytest.approx(2.0, rel=0.05)
    assert kinetic_phases([0, 1, 2], [0, 0, 0]) is None
    falling = kinetic_phases([0, 1, 2, 3], [8, 4, 2, 1])  # no expansion: the peak is day 0
    assert (falling.start, falling.peak, falling.persistence) == (0, 0, None)
    # one exponential contraction with sampling noise: no persistence read into the noise
    days = np.arange(0.0, 42.0, 0.5)
    noise = np.random.default_rng(3).lognormal(0.0, 0.15, days.size)
    noisy = kinetic_phases(days, 100.0 * 0.5 ** (days / 5.0) * noise)
    assert noisy.peak <= 1 and noisy.persistence is None
    assert noisy.half_life_days == pytest.approx(5.0, rel=0.1)


def test_half_life_is_given_with_its_interval_only_when_the_decline_is_real():
    days = np.arange(0.0, 20.0, 0.5)
    rng = np.random.default_rng(11)
    clean = 100.0 * 0.5 ** (days / 4.0) * rng.lognormal(0.0, 0.1, days.size)
    half_life, (low, high) = contraction_half_life(days, clean)
    assert half_life == pytest.approx(4.0, rel=0.05) and low < 4.0 < high and high - low < 0.5
    phases = kinetic_phases(days, clean)
    assert phases.half_life_ci_days[0] < 4.0 < phases.half_life_ci_days[1]
    # counting noise at 2-7 cells per 10 uL, falling a little: no half-life
    noise = rng.integers(2, 8, days.size) / 10.0
    noise[0] = 0.75
    assert contraction_half_life(days, noise) is None
    assert kinetic_phases(days, noise).half_life_days is None
    # a real decline, but below the fit floor: nothing to fit
    assert contraction_half_life(days, clean, floor=1e3) is None
    assert contraction_half_life(days[:4], clean[:4]) is None  # too few points


def test_blood_kinetics_label_the_half_life_with_its_interval():
    fig = plot_blood_kinetics(_kinetics_table({"fast": 7.0}))
    label = " ".join(fig.axes[0].get_legend().get_texts()[0].get_text().split())
    assert "contraction t1/2 2.0 d (95 % CI 2.0-2.0 over 3 of 3 runs)" in label


def test_the_half_life_interval_comes_from_the_replicates_not_from_one_median_curve():
    """Four runs with half-lives 1.5-3 d: the interval spans their spread, where a regression
    through the censuses of their median would give a sliver around one value."""
    runs = []
    days = np.arange(0.0, 30.0, 0.5)
    for replicate, half_life in enumerate((1.5, 2.0, 2.5, 3.0)):
        level = 400.0 * 0.5 ** (np.abs(days - 5.0) / half_life) * (days > 0.5)
        runs.append(pd.DataFrame({"scenario": "a", "replicate": replicate, "time_days": days,
                                  "car_t_blood_per_ul": np.round(level, 1) + 0.0}))
    table = pd.concat(runs, ignore_index=True)
    half_lives = replicate_half_lives(table, "car_t_blood_per_ul", 0.1)
    assert half_lives == pytest.approx([1.5, 2.0, 2.5, 3.0], rel=0.05)
    centre, (low, high) = half_life_interval(half_lives)
    assert low < 1.7 and high > 2.7 and low < centre < high
    label = plot_blood_kinetics(table).axes[0].get_legend().get_texts()[0].get_text()
    assert f"{low:.1f}-{high:.1f} over 4 of 4 runs" in " ".join(label.split())
    assert half_life_interval(np.array([2.0]))[1] is None  # one run: no interval


def test_blood_kinetics_read_no_peak_or_half_life_into_a_few_cells():
    """0-2 cells per blood volume (0.05 cells/uL each) rising and falling at random: the
    legend says it is counting noise and nothing is marked."""
    rng = np.random.default_rng(5)
    days = np.arange(0.0, 30.0, 0.5)
    table = pd.concat([pd.DataFrame({"scenario": "local", "replicate": r, "time_days": days,
                                     "car_t_blood_per_ul": 0.05 * rng.integers(0, 14, days.size)})
                       for r in range(4)], ignore_index=True)
    ax = plot_blood_kinetics(table).axes[0]
    label = " ".join(ax.get_legend().get_texts()[0].get_text().split())
    assert label.startswith("local (n = 4): median at most ") and "counting noise" in label
    assert not [line for line in ax.lines if line.get_gid() == "peak"]
    assert not [t for t in ax.texts if isinstance(t, Annotation)]  # no phase names


def test_blood_kinetics_marks_the_peak_on_the_right_day(tmp_path):
    path = tmp_path / "blood.png"
    fig = plot_blood_kinetics(_kinetics_table({"fast": 7.0, "slow": 14.0}), path=path)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert "cells/uL" in ax.get_ylabel() and "days" in ax.get_xlabel()
    peaks = [line for line in ax.lines if line.get_gid() == "peak"]
    assert [float(line.get_xdata()[0]) for line in peaks] == [7.0, 14.0]
    assert [float(line.get_ydata()[0]) for line in peaks] == pytest.approx([21.0, 21.0])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("fast (n = 3): peak 21 cells/uL on day 7")
    assert all("persistence from day" in label for label in labels[:2])
    assert labels[2:] == ["0 = none in blood (below detection)"]
    phase_names = {t.get_text() for t in ax.texts if isinstance(t, Annotation)}
    assert phase_names == {"expansion", "contraction", "persistence"}
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 20_000


def test_blood_kinetics_of_a_scenario_never_in_blood():
    table = _kinetics_table({"iv": 7.0}, replicates=2)
    local = table.assign(scenario="local", car_t_blood_per_ul=0.0)
    ax = plot_blood_kinetics(pd.concat([table, local], ignore_index=True)).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[-2:] == ["local (n = 2): never detected",
                           "0 = none in blood (below detection)"]


# ---- 3D snapshots (synthetic: test_volume.sphere_snapshot) -----------------------------------
def _images(fig) -> list[np.ndarray]:
    """The image data of each panel (colour bars left out), in panel order."""
    return [np.asarray(ax.images[0].get_array()) for ax in fig.axes
            if ax.get_label() != "<colorbar>"]


def _classes_3d(snapshot) -> np.ndarray:
    """Site classes (nz, ny, nx) of a snapshot, straight from ``snapshots.site_classes``."""
    return site_classes(snapshot["cell_type"], snapshot["antigen_class"],
                        snapshot["car_t_state"], snapshot["tissue"])


def test_3d_snapshot_plots_draw_the_slice_through_the_tumour(tmp_path):
    snapshot = sphere_snapshot()
    classes = _classes_3d(snapshot)
    z = TUMOUR_CENTRE[0]  # the most tumour sites (with the necrotic core): 113 at z = 8
    assert tumour_slice_z(snapshot) == z
    fig = plot_snapshot(snapshot, tmp_path / "slice.png")
    assert fig.axes[0].get_title() == "sphere, day 4.0, z = 0.13 mm slice"  # (8 + 0.5) * 15 um
    np.testing.assert_array_equal(_images(fig)[0], classes[z])
    assert (tmp_path / "slice.png").read_bytes()[:8] == PNG
    fig = plot_snapshot_with_fields(snapshot)
    assert fig.get_suptitle() == "sphere, day 4.0, z = 0.13 mm slice"
    lattice, oxygen, suppression = _images(fig)
    np.testing.assert_array_equal(lattice, classes[z])
    np.testing.assert_array_equal(oxygen, snapshot_field(snapshot, "oxygen")[z])
    no_tumour = {**snapshot, "cell_type": np.where(snapshot["cell_type"] == CAR_T, CAR_T, 0)}
    assert tumour_slice_z(no_tumour) == 10  # nz // 2


def test_orthogonal_slices_show_the_three_planes_through_the_centre(tmp_path):
    snapshot = sphere_snapshot()
    classes = _classes_3d(snapshot)
    path = tmp_path / "ortho.png"
    fig = plot_orthogonal_slices(snapshot, path)
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 20_000
    assert len(fig.axes) == 3
    z, y, x = TUMOUR_CENTRE  # the default: the tumour's centroid
    xy, xz, yz = _images(fig)
    np.testing.assert_array_equal(xy, classes[z])
    np.testing.assert_array_equal(xz, classes[:, y, :])
    np.testing.assert_array_equal(yz, classes[:, :, x])
    assert [ax.get_title() for ax in fig.axes] == [
        "xy plane at z = 0.13 mm", "xz plane at y = 0.20 mm", "yz plane at x = 0.25 mm"]
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes] == [
        ("x (mm)", "y (mm)"), ("x (mm)", "z (mm)"), ("y (mm)", "z (mm)")]
    mm = 0.015  # per site
    cuts = [[float(line.get_xdata()[0]) for line in ax.lines[:1]]
            + [float(line.get_ydata()[0]) for line in ax.lines[1:]] for ax in fig.axes]
    np.testing.assert_allclose(cuts, [[(x + 0.5) * mm, (y + 0.5) * mm],
                                      [(x + 0.5) * mm, (z + 0.5) * mm],
                                      [(y + 0.5) * mm, (z + 0.5) * mm]])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [c.label for c in SITE_CLASSES]
    chosen = plot_orthogonal_slices(snapshot, centre=(18, 2, 0))  # through the vessel
    np.testing.assert_array_equal(_images(chosen)[0], classes[18])
    assert set(np.unique(_images(chosen)[1])) == {SITE_EMPTY, SITE_STROMA, SITE_VESSEL}
    with pytest.raises(ValueError, match=r"centre must be a \(z, y, x\) site"):
        plot_orthogonal_slices(snapshot, centre=(20, 0, 0))


def test_max_projection_is_a_two_channel_image_with_the_hypoxic_core(tmp_path):
    snapshot = sphere_snapshot()
    path = tmp_path / "mip.png"
    fig = plot_max_projection(snapshot, path)
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 20_000
    # projection, its two channels' colour bars, oxygen, oxygen's colour bar
    assert len(fig.axes) == 5
    rgb, oxygen = _images(fig)
    assert rgb.shape == (24, 28, 3) and oxygen.shape == (24, 28)
    vermillion, blue = np.array([0xD5, 0x5E, 0x00]) / 255, np.array([0x00, 0x72, 0xB2]) / 255
    _, y, x = TUMOUR_CENTRE
    assert rgb[..., 0].max() == pytest.approx(vermillion[0])  # the densest cancer pixel
    centre = rgb[y, x]  # dense cancer (a little less in the necrotic core), no CAR-T
    assert centre[2] == 0.0
    assert centre[0] / vermillion[0] == pytest.approx(centre[1] / vermillion[1])
    assert 0.9 < centre[0] / vermillion[0] < 1.0
    for z, y, x in CAR_T_SITES:  # each CAR-T alone: the brightest of its channel
        assert rgb[y, x, 2] == pytest.approx(blue[2])
    np.testing.assert_allclose(rgb[3, 4], blue, atol=1e-6)  # far from the tumour: pure blue
    assert rgb[13, 24, 0] > 0.0  # 2 sites from the tumour: a little cancer density adds
    np.testing.assert_array_equal(rgb[23, 27], 0.0)  # nothing there: black
    np.testing.assert_allclose(oxygen, snapshot_field(snapshot, "oxygen").min(axis=0),
                               atol=1e-5)
    assert oxygen.min() == pytest.approx(1.0, abs=0.15)
    assert fig.axes[1].get_title() == "oxygen, minimum projection along z"
    assert _colour_bar_labels(fig) == [
        "cancer local density, smoothed over 1 site (1 = brightest pixel)",
        "CAR-T local density, smoothed over 1 site (1 = brightest pixel)", "oxygen (mmHg)"]
    side = plot_max_projection(snapshot, axis="x")
    assert _images(side)[0].shape == (20, 24, 3)  # (nz, ny)
    assert (side.axes[0].get_xlabel(), side.axes[0].get_ylabel()) == ("y (mm)", "z (mm)")
    normoxic = dict(snapshot)
    normoxic["oxygen_u8"], normoxic["oxygen_max"] = quantise_field(np.full((20, 24, 28), 38.0))
    assert len(plot_max_projection(normoxic).axes) == 3  # oxygen off: no oxygen panel
    with pytest.raises(ValueError, match="axis must be one of"):
        plot_max_projection(snapshot, axis="t")


def test_3d_titles_name_the_replicate_and_its_seed():
    snapshot = {**sphere_snapshot(), "replicate": 0, "seed": 17}
    for plot in (plot_orthogonal_slices, plot_max_projection):
        assert plot(snapshot).get_suptitle() == "sphere, day 4.0, replicate 0 (seed 17)"


def test_points_3d_draws_tumour_and_car_t_sites_and_subsamples(tmp_path):
    snapshot = sphere_snapshot()
    n_sites = np.count_nonzero(np.isin(snapshot["cell_type"], [CANCER, CAR_T, NECROTIC]))
    assert n_sites == 892 + 3 + 33

    def points(fig) -> int:
        return sum(len(c.get_offsets()) for c in fig.axes[0].collections)

    path = tmp_path / "points.png"
    fig = plot_points_3d(snapshot, path)
    assert path.read_bytes()[:8] == PNG and len(fig.axes) == 1
    assert points(fig) == n_sites and fig.axes[0].get_title() == "sphere, day 4.0"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["cancer, antigen high (>= CAR half-max): 306", "cancer, antigen low: 280",
                      "cancer, antigen negative: 306", "CAR-T effector: 1", "CAR-T exhausted: 1",
                      "CAR-T memory: 1", "necrotic (hypoxic debris): 33"]
    fig = plot_points_3d(snapshot, max_points=200)
    assert fig.axes[0].get_title() == "sphere, day 4.0, 1 in 5 shown"  # ceil(928 / 200)
    assert points(fig) == 186  # sites 0, 5, ..., 925 of the 928
    assert [t.get_text() for t in fig.legends[0].get_texts()] == labels  # counts of all sites


@pytest.mark.parametrize("plot", [plot_orthogonal_slices, plot_max_projection, plot_points_3d])
def test_3d_plots_refuse_a_2d_snapshot(plot):
    snapshot = _field_snapshot(np.full((40, 40), 38.0), np.zeros((40, 40)))
    with pytest.raises(ValueError,
                       match=rf"{plot.__name__} needs a 3D snapshot.*shape \(40, 40\)"):
        plot(snapshot)


def test_3d_snapshots_animate_one_plane_the_slice_through_the_day_0_tumour(tmp_path,
                                                                           monkeypatch):
    """Frames keep the plane of day 0 (z = 8) while the tumour drifts to z = 10 and 12: one
    picture per plane, so a moving slice cannot pass for tumour change."""
    import matplotlib.animation

    frames = []
    for day in range(3):  # the whole volume moves 2 sites up per day
        moved = {name: np.roll(value, 2 * day, axis=0) if np.ndim(value) == 3 else value
                 for name, value in sphere_snapshot().items()}
        frames.append(_classes_3d(moved))
        save_snapshot({**moved, "time_days": np.float64(day)},
                      tmp_path / f"snapshot_{day:08d}.npz")
    assert [tumour_slice_z(classes) for classes in frames] == [8, 10, 12]
    drawn = []
    real_grab_frame = matplotlib.animation.PillowWriter.grab_frame

    def grab_frame(writer, **kwargs):
        ax = writer.fig.axes[0]
        drawn.append((np.array(ax.images[0].get_array()), writer.fig.get_suptitle()))
        real_grab_frame(writer, **kwargs)

    monkeypatch.setattr(matplotlib.animation.PillowWriter, "grab_frame", grab_frame)
    animate(tmp_path, fmt="gif")
    assert len(drawn) == 3
    for classes, (image, title) in zip(frames, drawn):
        np.testing.assert_array_equal(image, classes[8])
        assert title.endswith("CAR-T, z = 0.13 mm slice")


# ---- killing assays ---------------------------------------------------------------------------
def _assay_table(levels=(10000.0, 1000.0), ratios=(0.0, 1.0, 0.25, 0.125, 0.05),
                 replicates=2) -> pd.DataFrame:
    """An assay.csv-like table: targets fall faster for more CAR-T and more antigen."""
    rows = []
    hours = np.arange(0.0, 49.0, 4.0)
    for antigen in levels:
        for ratio in ratios:
            for replicate in range(replicates):
                rate = ratio * antigen / 1e4 * 0.2
                tumor = np.floor(10000 * np.exp((0.01 - rate) * hours))
                control = np.floor(10000 * np.exp(0.01 * hours))
                rows.append(pd.DataFrame({
                    "scenario": f"well_{antigen:g}_{ratio:g}", "antigen_molecules_per_cell":
                    antigen, "effector_to_target": ratio, "replicate": replicate,
                    "time_h": hours, "tumor_cells": tumor, "control_tumor_cells": control,
                    "percent_of_control": 100.0 * tumor / control}))
    return pd.concat(rows, ignore_index=True)


def test_assay_wells_have_one_colour_each_no_clinical_labels_and_a_legend_off_the_data():
    table = _assay_table()
    fig = plot_assay_wells(table)
    ax = fig.axes[0]
    wells = [line for line in ax.lines if line.get_label() and
             not line.get_label().startswith("_")]
    assert len(wells) == 10
    assert len({to_hex(line.get_color()) for line in wells}) == 10  # 10 wells, 10 colours
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "10,000/cell, E:T 1:4, n = 2" in labels
    assert "1,000/cell, untreated control, n = 2" in labels
    assert not any("CR" in label or "PD" in label for label in labels + [ax.get_title()])
    fig.canvas.draw()
    assert ax.get_legend().get_window_extent().y1 <= ax.get_window_extent().y0  # below
    assert ax.get_yscale() == "log" and np.isfinite(wells[-1].get_ydata()).all()
    assert "0" in [t.get_text() for t in ax.get_yticklabels()]  # cleared wells on the 0 band


def test_killing_assay_reads_out_specific_lysis_with_n_and_a_legend_outside():
    fig = plot_killing_assay(_assay_table())
    assert fig.legends and not any(ax.get_legend() for ax in fig.axes)  # outside the panels
    assert "n = 2" in fig.get_suptitle()
    assert any("specific lysis" in axis.get_ylabel()  # the right axis: 100 - % of control
               for ax in fig.axes for axis in ax.child_axes)
    panel = fig.axes[0]
    colours = {to_hex(line.get_color()) for line in panel.lines if line.get_linestyle() == "-"}
    assert len(colours) == 4  # one per E:T


def test_response_rates_show_the_wilson_interval_of_the_cr_rate(tables):
    _, summary = tables
    ax = plot_response_rates(summary).axes[0]
    caps = [c for c in ax.containers if c.get_label() == "CR rate, Wilson 95 % CI"]
    assert len(caps) == 1
    segments = caps[0].lines[2][0].get_segments()  # one vertical bar per scenario
    cr = (summary.groupby("scenario", sort=False)["response"]
          .apply(lambda r: (r == "CR").sum()).to_numpy())
    low, high = wilson_interval(cr, np.full(cr.size, 3))
    np.testing.assert_allclose([[s[0][1], s[1][1]] for s in segments],
                               np.column_stack([100 * low, 100 * high]))
