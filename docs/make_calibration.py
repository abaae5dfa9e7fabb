"""Regenerate the synthetic data, the shipped fits and the dish's first day of
docs/calibration.md.

    python docs/make_calibration.py data     # configs/data/killing_assay_synthetic.csv
    python docs/make_calibration.py fits     # every configs/fits/*.yaml fit -> results/fits/,
                                             # its figures -> docs/img/calibration/
    python docs/make_calibration.py dish     # the killing assay with and without its first-day
                                             # arming against real assays -> dish_first_day.png
    python docs/make_calibration.py kinetics # the ELIANA virtual population (configs/vpop/
                                             # eliana.yaml; results/eliana_vpop, cached) vs the
                                             # label's responder / non-responder kinetics

The synthetic killing-assay data are the mean and sd of ``REPLICATES`` simulations of
configs/fits/cd19_killing_assay.yaml at ``TRUTH`` (the fit's own scale and duration), read every
``EVERY_H`` hours from ``EVERY_H`` to the end. The fits run with ``--workers`` all cores; rerunning
continues each one from its history (delete results/fits/<name> to start over).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import simulation  # noqa: E402
from simulation.config import read_yaml  # noqa: E402
from simulation.analysis.response_kinetics import compare_with_label, strata  # noqa: E402
from simulation.analysis.vpop import resample  # noqa: E402
from simulation.execution.runner import RunSpec, run_one  # noqa: E402
from simulation.study.fit import FIT_PNG, POSTERIOR_PNG, FitFile  # noqa: E402
from simulation.study.vpop import calibrate  # noqa: E402
from simulation.viz.vpop_plots import (plot_kinetics_by_response,  # noqa: E402
                                       plot_kinetics_courses)

ROOT = Path(__file__).resolve().parent.parent
FITS = ROOT / "configs" / "fits"
SYNTHETIC = ROOT / "configs" / "data" / "killing_assay_synthetic.csv"
TRUTH = {"car_t.kill_rate_per_h": 0.25, "car_t.exhaustion_after_engaged_h": 20.0}
REPLICATES = 8
SEED = 1000
EVERY_H = 12.0
IMAGES = ROOT / "docs" / "img" / "calibration"
#: the dish's first day: the shipped E:T study, high-antigen wells, replicates per arm
DISH_STUDY = ROOT / "configs" / "killing_assay_et.yaml"
DISH_DATA = ROOT / "configs" / "data" / "brummer_gbm_xcelligence_killing.csv"
DISH_REPLICATES = 4
#: model E:T -> the real assay's nominal E:T beside it
DISH_PAIRS = ((0.25, "1:5"), (0.125, "1:10"), (0.05, "1:25"))
#: the ELIANA virtual population and the label's kinetics of its responders / non-responders
VPOP = ROOT / "configs" / "vpop" / "eliana.yaml"
#: patients of each stratum drawn by weight and simulated again for their blood courses, and
#: the draw's seed
COURSE_PATIENTS = 25
COURSE_SEED = 7
#: the common time grid the courses are interpolated onto (days after infusion)
COURSE_DAYS = np.arange(0.0, 90.01, 0.5)
LABEL_KINETICS = ROOT / "configs" / "data" / "tisacel_b_all_kinetics_by_response.csv"


def make_data() -> Path:
    path = FITS / "killing_assay_synthetic.yaml"
    fit = FitFile.model_validate(read_yaml(path, str(path)))  # its data are what we write
    result = simulation.run(path.parent / fit.model, replicates=REPLICATES, seed=SEED,
                            scale=fit.scale, set={**fit.set, **TRUTH}, progress=False)
    table = result.assay
    table = table[(table["effector_to_target"] > 0) & (table["time_h"] > 0)
                  & ((table["time_h"] / EVERY_H).round(6) % 1 == 0)]
    data = (table.groupby(["effector_to_target", "time_h"], as_index=False)["percent_of_control"]
            .agg(percent_of_control="mean", sd="std"))
    design = read_yaml(path.parent / fit.model, fit.model)["assay"]["effector_to_target"]
    # the design's E:T, as a lab writes it (a scaled dish rounds the CAR-T: 31/625 = 0.0496)
    data["effector_to_target"] = [min(design, key=lambda d: abs(d - r))
                                  for r in data["effector_to_target"]]
    data["sd"] = data["sd"].clip(lower=1.0)  # at 0 % a replicate sd of 0 would weigh infinitely
    SYNTHETIC.parent.mkdir(parents=True, exist_ok=True)
    data.to_csv(SYNTHETIC, index=False, float_format="%.4g")
    return SYNTHETIC


def make_fits() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    for config in sorted(FITS.glob("*.yaml")):
        if "data" not in read_yaml(config, str(config)):
            continue  # a model file of the fits, not a fit
        result = simulation.fit(config, out=ROOT / "results" / "fits" / config.stem)
        shutil.copyfile(result.folder / FIT_PNG, IMAGES / f"{config.stem}_{FIT_PNG}")
        result.plot_posterior(IMAGES / f"{config.stem}_{POSTERIOR_PNG}",
                              truth=TRUTH if config.stem == SYNTHETIC.stem else None)
        print(config.stem, f"{result.seconds:.0f} s")
        print(result.intervals().to_string(index=False))


def make_dish_first_day() -> Path:
    """The killing assay's % of control over its first 4 days with its first-day arming (as
    shipped) and without it (``car_t.arming_time_h=0``), median and interquartile range over
    ``DISH_REPLICATES`` seeds, beside the real xCELLigence assays of ``DISH_DATA`` (median over
    three lines, range over lines and wells)."""
    arms = {}
    for label, overrides in (("as shipped: 12 h arming", {}),
                             ("without arming", {"car_t.arming_time_h": 0.0})):
        assay = simulation.run(DISH_STUDY, replicates=DISH_REPLICATES, set=overrides,
                               progress=False).assay
        arms[label] = assay[assay["antigen_molecules_per_cell"] == assay[
            "antigen_molecules_per_cell"].max()]
    data = pd.read_csv(DISH_DATA)
    fig, axes = plt.subplots(1, len(DISH_PAIRS), figsize=(13, 4.6), sharey=True)
    for ax, (ratio, nominal) in zip(axes, DISH_PAIRS):
        for (label, assay), color in zip(arms.items(), ("tab:blue", "tab:grey")):
            well = assay[(assay["effector_to_target"] - ratio).abs() < 0.01 * ratio]
            stats = well.groupby("time_h")["percent_of_control"].quantile([0.25, 0.5, 0.75])
            stats = stats.unstack()
            ax.plot(stats.index, stats[0.5], color=color,
                    label=f"model, {label} (median, IQR; n = {DISH_REPLICATES} seeds)")
            ax.fill_between(stats.index, stats[0.25], stats[0.75], color=color, alpha=0.25)
        real = data[data["nominal_effector_to_target"] == nominal]
        by_time = real.groupby("time_h")
        lines = real["line"].nunique()
        ax.plot(by_time["percent_of_control_mean"].median(), color="black",
                label=f"real assay, nominal {nominal} (median of {lines} lines)")
        ax.fill_between(by_time.groups.keys(), by_time["percent_of_control_min"].min(),
                        by_time["percent_of_control_max"].max(), color="black", alpha=0.12,
                        label=f"real assay: range over {lines} lines x 2 wells")
        ax.axvspan(0, 12, color="orange", alpha=0.08)
        ax.set(title=f"model E:T 1:{1 / ratio:g}  |  real nominal {nominal}",
               xlabel="hours after CAR-T were added", xlim=(0, 96), ylim=(-5, 125))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("target cells, % of untreated control")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=len(labels))
    fig.suptitle("The dish's first day: CD19 dish (model, 10,000 CD19/cell) vs IL13Ra2 CAR-T on "
                 "patient-derived GBM lines (xCELLigence, Brummer et al.; shaded: first 12 h)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path = IMAGES / "dish_first_day.png"
    IMAGES.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    for label, assay in arms.items():
        medians = assay.groupby(["effector_to_target", "time_h"])["percent_of_control"].median()
        print(label)
        print(medians.unstack(0).loc[[4, 8, 12, 16, 24, 36, 48, 72]].round(0).to_string())
    return path


def kinetic_courses(result, factor: float, patients: int = COURSE_PATIENTS) -> pd.DataFrame:
    """Blood CAR-T over time (label units: all CAR-T per baseline cancer cell x the patient's
    body tumour x ``factor``) of ``patients`` responders and as many non-responders, drawn
    from the pool by weight within each (seed ``COURSE_SEED``; a patient drawn twice counts
    once), simulated again with their own seeds (the pool keeps summaries only),
    interpolated onto ``COURSE_DAYS``."""
    by_id = {run.run_id: run for run in result.spec.plan.runs}
    drawn = []
    for mask in strata(result.pool).values():  # each stratum by its own weights
        if mask.all():
            continue
        chosen = np.flatnonzero(mask)
        weights = result.weights[chosen] / result.weights[chosen].sum()
        drawn.append(result.pool.iloc[chosen[resample(weights, patients, COURSE_SEED)]])
    rows = []
    for row in pd.concat(drawn).drop_duplicates("run_id").itertuples():
        run = by_id[row.run_id]
        series, summary, _ = run_one(RunSpec(run.scenario, 0, 0, run.seed, threads=1))
        baseline = summary["baseline_tumor_cells"]
        body = run.scenario.clinical.body_tumor_cells
        car_t = (series["car_t_cells"] + series["car_t_blood"]) / baseline * body * factor
        stratum = "responders" if summary["best_response"] == "CR" else "non-responders"
        rows.append(pd.DataFrame({"patient": row.run_id, "stratum": stratum,
                                  "days": COURSE_DAYS, "value": np.interp(
                                      COURSE_DAYS, series["time_days"], car_t)}))
    return pd.concat(rows, ignore_index=True)


def make_kinetics() -> Path:
    """Blood kinetics of the weighted ELIANA-like cohort, responders vs non-responders, beside
    the label's (``LABEL_KINETICS``); prints the table docs/calibration.md shows."""
    result = calibrate(VPOP, out=ROOT / "results" / "eliana_vpop", workers=2)
    label = pd.read_csv(LABEL_KINETICS, comment="#")
    rows = []
    for name, weights in (("pool, equal weights", None), ("weighted", result.weights)):
        table, info = compare_with_label(result.pool, result.weights if weights is not None
                                         else [1.0] * len(result.pool), label)
        rows.append((name, table, info))
    path = IMAGES / "tisacel_kinetics_by_response.png"
    plot_kinetics_by_response(rows[1][1], rows[1][2], "ELIANA-like virtual population", path)
    courses = kinetic_courses(result, rows[1][2]["factor"])
    plot_kinetics_courses(courses, label, rows[1][2]["factor"], "ELIANA-like cohort",
                          ROOT / "docs" / "img" / "blood_kinetics_vs_label.png")
    for name, table, info in rows:
        print(f"{name}: factor {info['factor']:.3g} {info['factor_interval']}, effective size "
              f"{info['effective_size']}, patients {info['patients']}, weighted shares "
              f"{info['weighted_share']}")
        print(table.to_string(float_format=lambda v: f"{v:.3g}"))
    return path


if __name__ == "__main__":
    steps = sys.argv[1:] or ["data", "fits", "dish", "kinetics"]
    if "data" in steps:
        print(make_data())
    if "fits" in steps:
        make_fits()
    if "dish" in steps:
        print(make_dish_first_day())
    if "kinetics" in steps:
        print(make_kinetics())
