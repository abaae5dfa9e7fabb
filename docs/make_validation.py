"""Regenerate docs/validation.md and docs/img/validation_*.png from real runs.

    python docs/make_validation.py               # all 7 facts at DOCS scale: ~17 min of CPU,
                                                 # ~10 min on 2 free cores
    python docs/make_validation.py --workers 1   # one process

Every fact of ``tests/validation/literature_facts.py`` (the same criteria the tests beside it
check on small runs) is run at ``DOCS``: larger lattices and 10-20 seeds per arm. The page gets
the settings, the table (fact | source | what the model gives | pass/fail), each criterion's
verdict and four figures drawn from the result tables:

docs/img/validation_kinetics.png  B-ALL vs glioblastoma: tumour burden, CAR-T, blood CAR-T/uL
docs/img/validation_assay.png     killing assay: % of control by E:T; killing vs antigen density
docs/img/validation_dose.png      dose response and split dosing (B-ALL)
docs/img/validation_outcomes.png  cures vs progressions over time (B-ALL with an antigen-negative
                                  clone)
"""

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "img"
PAGE = ROOT / "docs" / "validation.md"

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "validation"))  # the facts: checks of configs/, not API
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import design_facts  # noqa: E402
import literature_facts as literature  # noqa: E402
from simulation.config import et_label  # noqa: E402
from simulation.viz.style import PALETTE, STYLE, save_figure  # noqa: E402
from simulation.viz.time_courses import replicate_bands  # noqa: E402
from simulation.analysis.outcomes import progression_day  # noqa: E402
from literature_facts import FactResult, Scale  # noqa: E402

#: the documented run: B-ALL 100x100 with 3,000 blasts (1/4 of the shipped 200x200 / 12,000),
#: glioblastoma 140x140 with 6,000 cells (half the shipped tumour), the dish 60x60 with 900
#: targets; 10 seeds per arm, 20 for the arm that decides between cure and progression. The
#: relapse arm's antigen loss is halved against the tests because the tumour is twice as large
#: (about the same number of antigen-negative clones per run).
DOCS = Scale(lattice_sites=100, tumor_cells=3000, days=28.0, seeds=10, dose_seeds=10,
             solid_lattice_sites=140, solid_tumor_cells=6000, solid_days=42.0, solid_seeds=10,
             relapse_days=60.0, relapse_seeds=20, relapse_loss_per_division=1e-3,
             dish_sites=60, dish_cells=900, dish_days=4.0, dish_seeds=10, first_seed=101,
             workers=2)


# ---------------------------------------------------------------------------------------------
# figures (from the result tables of each fact)
# ---------------------------------------------------------------------------------------------
def _band(ax: plt.Axes, timeseries: pd.DataFrame, column: str, label: str, colour: str) -> None:
    """Median line and IQR band of ``column`` across replicates."""
    bands = replicate_bands(timeseries, column)
    ax.fill_between(bands["time_days"], bands["q25"], bands["q75"], color=colour, alpha=0.2,
                    linewidth=0)
    ax.plot(bands["time_days"], bands["median"], color=colour, label=label)


def _relative(timeseries: pd.DataFrame, column: str, new: str, by: float | None = None
              ) -> pd.DataFrame:
    """``timeseries`` with ``new`` = ``column`` / its first value per run (or / ``by``)."""
    first = timeseries.groupby(["scenario", "replicate"])[column].transform("first")
    return timeseries.assign(**{new: timeseries[column] / (by if by else first)})


def plot_kinetics(blood: FactResult, solid: FactResult, path: Path) -> None:
    """Fact 1 vs fact 2: tumour % of baseline, CAR-T fold of dose, blood CAR-T per uL."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(13.0, 4.0))
        for (result, label), colour in zip(((blood, "B-ALL (b_all_cd19)"),
                                            (solid, "glioblastoma (gbm_solid)")), PALETTE):
            series = result.data["timeseries"]
            dose = float(result.data["summary"]["car_t_infused"].median())
            series = _relative(series, "tumor_cells", "tumor_percent")
            series["tumor_percent"] *= 100.0
            series = _relative(series, "car_t_cells", "car_t_fold", by=dose)
            _band(axes[0], series, "tumor_percent", label, colour)
            _band(axes[1], series, "car_t_fold", label, colour)
            _band(axes[2], series, "car_t_blood_per_ul", label, colour)
        axes[0].set(title="Tumour", ylabel="cancer cells (% of day 0)", yscale="symlog")
        axes[1].set(title="CAR-T in tissue", ylabel="CAR-T cells / cells infused (log)",
                    yscale="log")
        axes[2].set(title="CAR-T in blood", ylabel="CAR-T per uL of blood (log)", yscale="log")
        for ax in axes:
            ax.set_xlabel("days after infusion")
        axes[1].legend(loc="upper right")
        fig.suptitle("Median and IQR over replicates")
        fig.tight_layout()
        save_figure(fig, path)
        plt.close(fig)


def plot_assay(killing: FactResult, threshold: FactResult, path: Path) -> None:
    """Fact 3: % of control over time by E:T; fact 4: killing at 72 h vs antigen density."""
    with plt.rc_context(STYLE):
        fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.0))
        table = killing.data["table"]
        treated = table[table["effector_to_target"] > 0]
        for colour, (ratio, well) in zip(PALETTE, sorted(treated.groupby("effector_to_target"),
                                                         reverse=True)):
            median = well.groupby("time_h")["percent_of_control"].median()
            q = well.groupby("time_h")["percent_of_control"].quantile([0.25, 0.75]).unstack()
            left.fill_between(q.index, q[0.25], q[0.75], color=colour, alpha=0.2, linewidth=0)
            left.plot(median.index, median, color=colour, label=f"E:T {et_label(ratio)}")
        left.axvline(literature.ASSAY_READOUT_H, color="grey", linestyle=":", linewidth=1)
        left.set(title="Killing assay by E:T", xlabel="hours after CAR-T added",
                 ylabel="targets (% of untreated control)")
        left.legend()
        curves = threshold.data["curves"]
        for colour, (label, curve) in zip(PALETTE, curves.groupby("affinity", sort=False)):
            half_max = float(curve["half_max"].iloc[0])
            right.plot(curve["antigen_molecules_per_cell"], curve["killing_percent"], "o-",
                       color=colour, label=f"{label.replace('_', ' ')} (half-max {half_max:g})")
            right.axvline(literature.antigen_for_killing(curve), color=colour, linestyle=":",
                          linewidth=1)
        title = (f"Killing vs antigen (E:T {et_label(literature.THRESHOLD_RATIO)}, "
                 f"{literature.ASSAY_READOUT_H:g} h)")
        right.set(xscale="log", title=title, xlabel="target antigen (molecules/cell)",
                  ylabel="killing (100 - % of control)")
        right.legend(loc="upper left")
        fig.tight_layout()
        save_figure(fig, path)
        plt.close(fig)


def plot_dose(dose: FactResult, path: Path) -> None:
    """Fact 5: burden vs dose (median, IQR) with the split dose; tumour over time per arm."""
    with plt.rc_context(STYLE):
        fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.0))
        summary, by_arm = dose.data["summary"], dose.data["by_arm"].set_index("scenario")
        bolus = [f"dose_x{f:g}" for f in literature.DOSE_FACTORS]
        stats = summary.groupby("scenario")["burden"].quantile([0.25, 0.5, 0.75]).unstack()
        cells = by_arm.loc[bolus, "car_t"]
        left.errorbar(cells, stats.loc[bolus, 0.5],
                      yerr=[stats.loc[bolus, 0.5] - stats.loc[bolus, 0.25],
                            stats.loc[bolus, 0.75] - stats.loc[bolus, 0.5]],
                      fmt="o-", color=PALETTE[0], capsize=3, label="one dose on day 0")
        split_cells = by_arm.loc["split", "car_t"]
        left.errorbar([split_cells * 1.08], [stats.loc["split", 0.5]],
                      yerr=[[stats.loc["split", 0.5] - stats.loc["split", 0.25]],
                            [stats.loc["split", 0.75] - stats.loc["split", 0.5]]],
                      fmt="s", color=PALETTE[1], capsize=3,
                      label=f"same total as 2 halves, day 0 + {literature.SPLIT_GAP_DAYS:g}")
        left.set(xscale="log", title="Dose response (B-ALL)", xlabel="CAR-T infused (log)",
                 ylabel="tumour burden (mean cells / day-0 cells)")
        left.legend()
        series = _relative(dose.data["timeseries"], "tumor_cells", "tumor_percent")
        series["tumor_percent"] *= 100.0
        for colour, arm in zip(PALETTE, [*bolus, "split"]):
            label = "split" if arm == "split" else f"{int(by_arm.loc[arm, 'car_t'])} CAR-T"
            _band(right, series[series["scenario"] == arm], "tumor_percent", label, colour)
        right.set(title="Tumour by dose", xlabel="days after first dose",
                  ylabel="cancer cells (% of day 0)", xlim=(0, 20))
        right.legend()
        fig.tight_layout()
        save_figure(fig, path)
        plt.close(fig)


def plot_outcomes(stochastic: FactResult, path: Path) -> None:
    """Fact 6: every run's tumour (log) coloured by outcome; cure and progression days."""
    with plt.rc_context(STYLE):
        fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.0),
                                          gridspec_kw={"width_ratios": [2, 1]})
        series, summary = stochastic.data["timeseries"], stochastic.data["summary"]
        outcome = {}
        for run, row in literature.iter_runs(series, summary):
            day = progression_day(run, row)
            kind = "cure" if row["cleared"] else ("progression" if day is not None else "neither")
            outcome[row["replicate"]] = kind
            colour = {"cure": PALETTE[2], "progression": PALETTE[1], "neither": "grey"}[kind]
            left.plot(run["time_days"], run["tumor_cells"].clip(lower=0.5), color=colour,
                      alpha=0.6, linewidth=1)
        left.set(yscale="log", title="Identical parameters, different seeds (B-ALL)",
                 xlabel="days after infusion", ylabel="cancer cells (log; 0 drawn at 0.5)")
        left.plot([], [], color=PALETTE[2], label="cure")
        left.plot([], [], color=PALETTE[1], label="progression")
        left.plot([], [], color="grey", label="neither by the end")
        left.legend()
        events = stochastic.data["events"]
        for i, (kind, colour) in enumerate((("cure", PALETTE[2]), ("progression", PALETTE[1]))):
            days = events.loc[events["event"] == kind, "day"].to_numpy()
            jitter = np.linspace(-0.15, 0.15, days.size) if days.size > 1 else np.zeros(days.size)
            right.plot(days, i + jitter, "o", color=colour, alpha=0.8)
        right.set(yticks=[0, 1], yticklabels=["cure\n(cleared)", "progression\n(relapse)"],
                  ylim=(-0.6, 1.6), xlabel="day", title="When outcomes happen")
        fig.tight_layout()
        save_figure(fig, path)
        plt.close(fig)


# ---------------------------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------------------------
#: rows of the settings table: label, then the ``Scale`` fields shown in it
SETTINGS = (
    ("B-ALL lattice / blasts / days", ("lattice_sites", "tumor_cells", "days")),
    ("B-ALL seeds: kinetics / dose arms", ("seeds", "dose_seeds")),
    ("relapse arm: days / seeds / antigen loss per division",
     ("relapse_days", "relapse_seeds", "relapse_loss_per_division")),
    ("glioblastoma lattice / cells / days / seeds",
     ("solid_lattice_sites", "solid_tumor_cells", "solid_days", "solid_seeds")),
    ("killing-assay dish lattice / targets / days / seeds",
     ("dish_sites", "dish_cells", "dish_days", "dish_seeds")),
    ("seed of replicate 0", ("first_seed",)),
)


def _tumour_panel(ax: plt.Axes, result: FactResult, title: str, column: str = "tumor_cells",
                  ylabel: str = "tumour (% of day 0)") -> None:
    """One fact's arms: ``column`` as % of its day-0 value, median and IQR per arm."""
    series = _relative(result.data["timeseries"], column, "percent")
    series = series.assign(percent=100.0 * series["percent"])
    n = series.groupby("scenario")["replicate"].nunique()
    for (arm, runs), colour in zip(series.groupby("scenario", sort=False), PALETTE):
        _band(ax, runs, "percent", f"{arm} (n = {n[arm]})", colour)
    ax.set(title=f"fact {result.number}: {title}", xlabel="day", ylabel=ylabel)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)


def plot_design(design: list[FactResult], path: Path) -> None:
    """Facts 8-12: each product comparison over time, median and IQR over replicates."""
    or_gate, bivalent, and_gate, resistant, _ = design
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, 3, figsize=(15.0, 8.5), layout="constrained")
        _tumour_panel(axes[0, 0], or_gate, "B-ALL, CD19-negative subclone")
        _tumour_panel(axes[0, 1], bivalent, "GBM, IL13Ra2 and EGFR")
        _tumour_panel(axes[0, 2], and_gate, "GBM in EphA2+ brain: healthy cells",
                      "normal_antigen_positive_EphA2", "healthy EphA2+ cells (% of day 0)")
        _tumour_panel(axes[1, 0], and_gate, "GBM in EphA2+ brain: tumour")
        _tumour_panel(axes[1, 1], resistant, "GBM, uniform antigen: engineered products")
        series = resistant.data["timeseries"]
        n = series.groupby("scenario")["replicate"].nunique()
        for (arm, runs), colour in zip(series.groupby("scenario", sort=False), PALETTE):
            _band(axes[1, 2], runs, "crs_index", f"{arm} (n = {n[arm]})", colour)
        axes[1, 2].set(title="facts 11-12: CRS index", xlabel="day",
                       ylabel="CRS index (activated-CAR-T equivalents)")
        axes[1, 2].legend(fontsize=8)
        fig.suptitle("CAR design space: median and IQR over replicate seeds (same seeds in "
                     "every arm)")
        fig.savefig(path)
        plt.close(fig)


def plot_products(composition: FactResult, several: FactResult, path: Path) -> None:
    """Facts 13-14: CAR-T per product composition, CD4 share; tumour and CD19-negative
    blasts under one, pooled and sequential products; median and IQR over replicates."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 4, figsize=(19.0, 4.6), layout="constrained")
        series = composition.data["timeseries"]
        series = series.assign(car_t_patient=series["car_t_cells"] + series["car_t_blood"])
        series = series.assign(cd4_percent=100.0 * series["car_t_cd4"]
                               / series["car_t_patient"].where(series["car_t_patient"] > 0))
        n = series.groupby("scenario")["replicate"].nunique()
        for (arm, runs), colour in zip(series.groupby("scenario", sort=False), PALETTE):
            _band(axes[0], runs, "car_t_patient", f"{arm} (n = {n[arm]})", colour)
            if arm != "cd8_only":
                _band(axes[1], runs, "cd4_percent", f"{arm} (n = {n[arm]})", colour)
        axes[0].set(title="fact 13: CAR-T by product composition", xlabel="day",
                    ylabel="CAR-T in tissue and blood (cells)", yscale="log")
        axes[1].set(title="fact 13: CD4 share of the CAR-T", xlabel="day",
                    ylabel="CD4 CAR-T (% of CAR-T)", ylim=(0, 100))
        for ax in axes[:2]:
            ax.legend(fontsize=8)
        _tumour_panel(axes[2], several, "B-ALL, CD19-negative subclone: tumour")
        _tumour_panel(axes[3], several, "CD19-negative blasts", "tumor_antigen_negative_CD19",
                      "CD19-negative blasts (% of day 0)")
        fig.suptitle("Product composition and several products: median and IQR over replicate "
                     "seeds (same seeds in every arm)")
        fig.savefig(path)
        plt.close(fig)


def settings_table(scale: Scale, tests: Scale) -> str:
    """Markdown table of this page's settings beside the tests' (``Scale()`` defaults)."""
    lines = ["| runs | this page | tests |", "|---|---|---|"]
    for label, keys in SETTINGS:
        page, test = (" / ".join(_setting(s, k) for k in keys) for s in (scale, tests))
        lines.append(f"| {label} | {page} | {test} |")
    return "\n".join(lines)


def _setting(scale: Scale, key: str) -> str:
    value = getattr(scale, key)
    if key.endswith("sites"):
        return f"{value}x{value}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def facts_table(results: list[FactResult]) -> str:
    """The table: fact | source | what the model gives | pass/fail."""
    lines = ["| fact | source | what the model gives | result |", "|---|---|---|---|"]
    for row in literature.results_table(results).itertuples():
        verdict = "**pass**" if row.result == "pass" else "**FAIL**"
        lines.append(f"| {row.fact} | {row.source} | {row.model_gives} | {verdict} |")
    return "\n".join(lines)


def criteria(results: list[FactResult]) -> str:
    """Every criterion of every fact with its verdict."""
    lines = []
    for result in results:
        lines.append(f"**{result.number}. {result.name}**")
        lines += [f"- {'pass' if ok else 'FAIL'}: {name}" for name, ok in result.checks.items()]
        lines.append("")
    return "\n".join(lines)


PAGE_TEXT = """# Validation against the biology facts

The facts at the end of `../shared/biology.md`, each checked on the shipped scenarios
(`configs/b_all_cd19.yaml`, `configs/gbm_solid.yaml`, `configs/killing_assay.yaml`) over
replicate seeds. Each fact is one function in `tests/validation/literature_facts.py` holding
its criteria and the reasons for their tolerances; `tests/validation/` runs the same functions on small
settings (`pytest -m validation tests/validation`, ~3-4 min of CPU) and this page on larger
ones. Only sizes, seeds, doses (fact 5), antigen levels (facts 3-4) and, for the relapse arm,
the antigen-loss rate are overridden; no scenario is special-cased. Facts 8-14 (the CAR design
space, `tests/validation/design_facts.py`) compare products on the scenarios of
`configs/car_design/`, every arm with the same seeds (fact 14's sequential arm gets its second
dose scaled to the tumour size, as the first).

Regenerate (never edit by hand): `python docs/make_validation.py` (this page: {cpu:.0f} min of
CPU, {elapsed:.0f} min on a shared 2-core machine).

## What was run

{settings}

The relapse arm raises `tumor.antigen.loss_per_division` from the scenario's 1e-4 so that an
antigen-negative clone exists in some runs of a small tumour ("relapses, when a rare
antigen-negative clone exists"); facts 1 and 6 read it. Fact 7 reads the B-ALL runs of fact 1
and the glioblastoma runs of fact 2.

## Results

{facts}

## Criteria

{criteria}
## Figures

![B-ALL vs glioblastoma](img/validation_kinetics.png)

*Facts 1-2.* Tumour (% of day 0), CAR-T in the tissue (relative to the cells infused) and CAR-T
per uL of blood; median and IQR over replicates.

![Killing assay](img/validation_assay.png)

*Facts 3-4.* Left: targets as % of the untreated control of the same seed after CAR-T are added
at four E:T ratios. Right: killing at 72 h (E:T 1:4) vs the targets' antigen density for the
CAR as shipped and one binding 4x more weakly (half-max 4x higher); dotted: half-maximal
killing.

![Dose response](img/validation_dose.png)

*Fact 5.* Left: tumour burden (time-averaged cancer cells / day-0 cells) vs dose, median and
IQR; the square is the scenario's dose given as two halves. Right: tumour over time per arm.

![CAR design space](img/validation_design.png)

*Facts 8-12* (`configs/car_design/`, `tests/validation/design_facts.py`). Top: B-ALL with a
CD19-negative/CD22-positive subclone under a CD19 CAR or a CD19/CD22 OR CAR; GBM with
heterogeneous IL13Ra2 and EGFR under either single CAR or the bivalent one; the healthy
EphA2-positive brain cells under an unprimed EphA2 CAR or the EGFRvIII-primed AND-gate.
Bottom: the AND-gate's tumour; the suppressive GBM with uniform antigen (gbm_uniform) under the
unmodified, dnTGFbR, PD-1-knockout and IL-12-armoured products, and their CRS index.

![Product composition and several products](img/validation_products.png)

*Facts 13-14.* Left: CAR-T in tissue and blood after the same dose of CD8 cells alone, a 1:1
CD4:CD8 product, and a 1:1 product half of whose cells are memory-like (B-ALL as shipped); the
CD4 share of the two products with CD4 cells. Right: B-ALL with a CD19-negative/CD22-positive
subclone under the CD19 product alone, CD19 and CD22 products pooled (half the dose each, day
0), and CD22 CAR-T given on day 14; the CD19-negative blasts of the same runs.

![Cures and progressions](img/validation_outcomes.png)

*Fact 6.* Every run of the relapse arm (identical parameters): cures (cleared) and progressions
(regrowth of >= 20 % and >= 10 cells above the nadir, `simulation.analysis.outcomes.find_relapse`), and
the day each happened.

## Virtual clinical trials

The shipped virtual trials beside the published ones (simulated value with its 95 %
interval; copied from [trials.md](trials.md), which `python docs/make_trials.py` writes with the
trials' sources, the mechanisms the model lacks where it misses, and the figures;
`python docs/make_validation.py --trials-only` copies them again without re-running the facts):

{trials}

## Notes for calibration

{notes}

{design_notes}

The same glioblastoma in 3D (a spheroid) against its 2D central section:
[validation_3d.md](validation_3d.md).
"""


def notes(results: list[FactResult]) -> str:
    """Where the model meets a fact only qualitatively: its numbers beside the clinic's."""
    m = {r.number: r.measured for r in results}
    uncured = m[6]["runs"] - m[6]["cures"]
    only_negative = m[6]["uncured_with_only_antigen_negative_left"]
    lines = [
        f"- **CR rate.** B-ALL as shipped reaches CR in "
        f"{100 * m[1]['complete_response_fraction']:.0f} % of replicates (ELIANA ~81 %). In the "
        f"relapse arm {only_negative} of the {uncured} runs that were not cured had only "
        "antigen-negative cells left: "
        + ("whether a run is cured is decided by the antigen-negative clone alone; "
           "antigen-positive blasts are always cleared at this dose."
           if uncured and only_negative == uncured else "some kept antigen-positive cells."),
        "- **Relapse phenotype.** Median "
        f"{100 * m[1]['relapse_antigen_negative_fraction_median']:.0f} % (least "
        f"{100 * m[1]['relapse_antigen_negative_fraction_min']:.0f} %) of the cells of a "
        "relapse are antigen-negative; clinically 40-60 % of relapses are CD19-negative "
        "(Pillai 2019), the others follow the loss of CAR-T persistence. Antigen-positive "
        "relapses would need CAR-T that contract or exhaust before the last blast is found "
        "(e.g. a shorter memory half-life within Stein 2019's 200-350 d, or less re-activation "
        "of memory cells).",
        f"- **Expansion peak.** Blood peak on day {m[1]['blood_peak_day_median']:.1f} (median); "
        "tisagenlecleucel peaks around day 10 (Stein 2019). The activated cycle (first division "
        "after a ~10 h lag and ~16 h, then ~6 h; Mishima 2014, Yoon 2010) is the lever.",
        f"- **Antigen threshold.** Half-maximal killing at "
        f"{m[4]['threshold_molecules_per_cell']:.0f} molecules/cell in the dish (CAR half-max "
        "2000). Near 2000 CD19/cell CD19-CD28z CAR-T lose cytokine production and kill less "
        "(Majzner 2018 Blood 132 suppl. 963; Majzner 2020), while lysis alone has a threshold "
        "~10x lower (~200/cell, Watanabe 2015 J Immunol). The dish's CAR-T arm only in synapses "
        "(antigen at or above the half-max; `car_t.arming_time_h`, docs/parameters.md note 4): "
        "before arming, 72 h of serial killing at a small per-contact rate put the half-max at "
        "~750/cell.",
        f"- **Low E:T.** At 1:20 the well is controlled only partly "
        f"({m[3]['percent_of_control_72h_1:20']:.0f} % of control at 72 h); it escapes control "
        "again (% of control rising >= 5 points from its minimum by the end of the run) in "
        f"{100 * m[3]['lowest_et_regrowth_fraction']:.0f} % of those wells.",
        f"- **Split dosing.** Same CR rate as one bolus; the burden is higher "
        f"({m[5]['burden_split']:.3f} vs {m[5]['burden_dose_x1']:.3f}) because half the cells "
        f"start {literature.SPLIT_GAP_DAYS:g} days later, and the CRS index peaks lower "
        f"({m[5]['crs_peak_split']:.0f} vs {m[5]['crs_peak_bolus']:.0f}).",
        f"- **Glioblastoma.** Infiltration index {m[2]['infiltration_index_median']:.2f} "
        "(CAR-T-weighted mean depth inside the mass / the mean depth of an even spread over a "
        "disc of the same area). Penetration is roughly an absolute distance, so smaller "
        "tumours are infiltrated relatively deeper: the tests' 3,000-cell tumour scores higher "
        "than this page's.",
    ]
    return "\n".join(lines)


def design_notes(results: list[FactResult]) -> str:
    """The CAR design facts: the sizes of the effects and what they rest on."""
    m = {r.number: r.measured for r in results}
    return "\n".join([
        "**CAR design space (facts 8-14).**",
        "",
        f"- **AND-gate.** It spares the healthy EphA2+ brain "
        f"({100 * m[10]['and_gate_healthy_left_median']:.0f} % left vs "
        f"{100 * m[10]['epha2_car_healthy_left_median']:.1f} % under the unprimed CAR) but "
        f"loses the tumour: it ends at {100 * m[10]['and_gate_tumour_final_fraction_median']:.0f}"
        " % of baseline, EGFRvIII-negative clones growing where no CAR-T is primed. Choe 2021 "
        "report primed killing of EGFRvIII-negative neighbours; how far a primed cell reaches "
        "is set by `car_t.priming_duration_h` (12 h, a model assumption within the ~1 day "
        "Roybal 2016 report), the lever to calibrate.",
        f"- **dnTGFbR vs PD-1 knockout.** Tumour burden (time-averaged, 1 = baseline) "
        f"{m[11]['unmodified_burden_median']:.2f} (unmodified), "
        f"{m[11]['dntgfbr_burden_median']:.2f} (dnTGFbR), "
        f"{m[11]['pd1_knockout_burden_median']:.2f} (PD-1 KO) in the GBM with uniform antigen. "
        "In gbm_solid itself (30 % antigen-negative cells) the same products kill 20-70 % more "
        "cells but barely change the tumour (burden 1.36 vs 1.36-1.37 at this page's size, "
        "progression within a day of the unmodified product): the antigen-negative cells' "
        "growth sets the pace, which no suppression resistance touches. Kloss 2018's mice had "
        "antigen-positive tumours; in patients (Narayan 2022) PSA fell >= 30 % in 4/13. The "
        "ranking of the two follows `microenvironment.suppression.checkpoint_share` (0.3 in "
        "gbm_solid: GBM suppression is TGF-beta-dominated, PD-L1 on a minority of cells, "
        "Nduom 2016), an assumption, not a measurement.",
        f"- **IL-12.** The CRS index peak rises "
        f"{m[12]['il12_crs_peak_median'] / m[12]['unmodified_crs_peak_median']:.1f}-fold"
        " with the default effect sizes (`car_t.armour.il12`, docs/parameters.md), which are "
        "assumptions sized to the direction Pegram 2012 and Yeku 2017 report.",
        f"- **Composition.** CAR-T on day 28: {m[13]['cd8_only_persisting_median']:.0f} (CD8 "
        f"alone), {m[13]['cd4_cd8_persisting_median']:.0f} (1:1), "
        f"{m[13]['memory_enriched_persisting_median']:.0f} (memory-enriched). The direction is "
        "what Sommermeyer 2016 and Fraietta 2018 report; the sizes follow the effect sizes of "
        "`car_t.composition` (CD4 kill rate x0.5, CD4 and memory-like half-life x2, unhelped "
        "CD8 division x0.5, 3 more divisions per memory-like lineage), which are estimates, "
        "not fits. Help needs a CD4 CAR-T next to the dividing CD8 cell, so it acts where the "
        "products' cells meet (in clusters around targets), not product-wide; most CD8 cells "
        "of the dispersed B-ALL go unhelped, and the CD4 share of the 1:1 product rises from "
        f"50 % to {100 * m[13]['cd4_cd8_cd4_share_end_median']:.0f} % by day 28. Whether CD4 "
        "cells should come to dominate this much is not checked against data here (no CD4:CD8 "
        "kinetics in the project's biology reference); the reach and strength of help are the "
        "levers to calibrate against a product's measured CD4:CD8 ratio in blood.",
        f"- **Pooled vs tandem.** Two pooled products, half the dose each, relapse "
        f"CD19-negative in {m[14]['pooled_cd19_negative_relapses']}/{m[14]['runs_per_arm']} runs "
        f"against {m[8]['or_cd19_negative_relapses']}/{m[8]['runs_per_arm']} for one tandem "
        "CD19/CD22 CAR at the full dose (fact 8): each pooled CAR-T expands only on the blasts "
        "its one receptor binds.",
        f"- **Sequential products.** CD22 CAR-T given on day 14 (as many cells as the first "
        f"dose) peak at {m[14]['sequential_cd22_product_peak_median']:.0f} cells vs "
        f"{m[14]['pooled_cd22_product_peak_median']:.0f} when co-infused: given into residual "
        "disease they meet few targets to expand on, and the conditioning boost "
        "(`dosing.lymphodepletion`, once, at t = 0) has faded. They leave less tumour than the "
        f"CD19 product alone ({100 * m[14]['sequential_final_fraction_median']:.1f} vs "
        f"{100 * m[14]['cd19_car_final_fraction_median']:.1f} % on day 42) but do not prevent "
        f"CD19-negative relapse ({m[14]['sequential_cd19_negative_relapses']}/"
        f"{m[14]['runs_per_arm']} runs). Clinical sequential protocols condition again before "
        "the second product (Pan 2019); conditioning per dose is not modelled.",
    ])


TRIALS_PAGE = ROOT / "docs" / "trials.md"


def trial_tables() -> str:
    """The comparison table of each shipped trial in docs/trials.md (the first table of the
    section headed by the trial's name, ``configs/trials/<name>.yaml``)."""
    if not TRIALS_PAGE.exists():
        return "(not written yet: `python docs/make_trials.py`)"
    out = []
    for section in TRIALS_PAGE.read_text().split("\n## ")[1:]:
        heading, _, body = section.partition("\n")
        name = heading.split(":")[0].strip()
        if not (ROOT / "configs" / "trials" / f"{name}.yaml").exists():
            continue
        lines = body.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("|"))
        end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")),
                   len(lines))
        out += [f"**{heading}**", "", *lines[start:end], ""]  # its first table: the readouts
    return "\n".join(out).rstrip()


#: the headings around the trial tables in PAGE_TEXT
TRIALS_HEADING, AFTER_TRIALS_HEADING = "## Virtual clinical trials", "## Notes for calibration"


def refresh_trial_tables() -> None:
    """Replace the trial tables of docs/validation.md with those docs/trials.md has now,
    leaving the facts as they were measured (their runs read no trial file)."""
    text = PAGE.read_text()
    head, found, rest = text.partition(TRIALS_HEADING)
    if not found:
        raise SystemExit(f"{PAGE.relative_to(ROOT)} has no '{TRIALS_HEADING}': run it whole")
    tail = rest.partition(AFTER_TRIALS_HEADING)[2]
    template = PAGE_TEXT[PAGE_TEXT.index(TRIALS_HEADING):PAGE_TEXT.index(AFTER_TRIALS_HEADING)]
    PAGE.write_text(head + template.format(trials=trial_tables()) + AFTER_TRIALS_HEADING + tail)
    print(f"wrote the trial tables of {PAGE.relative_to(ROOT)}")


def write_page(results: list[FactResult], scale: Scale, elapsed_min: float, cpu_min: float
               ) -> None:
    """docs/validation.md from the results."""
    PAGE.write_text(PAGE_TEXT.format(elapsed=elapsed_min, cpu=cpu_min,
                                     settings=settings_table(scale, Scale()),
                                     facts=facts_table(results), criteria=criteria(results),
                                     trials=trial_tables(), notes=notes(results),
                                     design_notes=design_notes(results)))
    print(f"wrote {PAGE.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=DOCS.workers,
                        help="worker processes (default %(default)s)")
    parser.add_argument("--trials-only", action="store_true",
                        help="only copy docs/trials.md's tables again (after make_trials.py); "
                        "the facts stay as last measured")
    args = parser.parse_args()
    if args.trials_only:
        refresh_trial_tables()
        return
    scale = Scale(**{**DOCS.__dict__, "workers": args.workers})
    start = time.time()

    def done(result: FactResult) -> None:
        print(f"[{(time.time() - start) / 60:4.1f} min] fact {result.number}: "
              f"{'pass' if result.passed else 'FAIL'}: {result.model_gives}", flush=True)

    results = literature.validate_all(scale, on_done=done,
                                      facts=literature.FACTS + design_facts.FACTS)
    elapsed = (time.time() - start) / 60
    cpu = sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
              for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 60
    images = {"kinetics": lambda p: plot_kinetics(results[0], results[1], p),
              "assay": lambda p: plot_assay(results[2], results[3], p),
              "dose": lambda p: plot_dose(results[4], p),
              "outcomes": lambda p: plot_outcomes(results[5], p),
              "design": lambda p: plot_design(results[7:12], p),
              "products": lambda p: plot_products(results[12], results[13], p)}
    for name, draw in images.items():
        path = IMAGES / f"validation_{name}.png"
        draw(path)
        print(f"wrote {path.relative_to(ROOT)}")
    write_page(results, scale, elapsed, cpu)


if __name__ == "__main__":
    main()
