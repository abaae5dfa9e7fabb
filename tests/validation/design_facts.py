"""Literature facts of the CAR design space: multi-antigen logic, armoured products, product
composition and several products per patient.

Facts 8-14 continue ``literature_facts`` (same ``Scale``, same ``FactResult``, same
run cache): each compares products on one shipped tumour from ``configs/car_design/`` with the
same seeds, so the arms of a replicate start from the same lattice and differ only in the
product. The criteria and their tolerances live here; the tests (``tests/validation/``) and
``docs/make_validation.py`` only choose the scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pandas as pd
from literature_facts import (
    FactResult,
    Scale,
    infiltration_index,
    iter_runs,
    median,
    patient_size,
    run_arms,
    solid_size,
    tumor_burden,
)

from simulation.analysis.outcomes import progression_day
from simulation.config import load_scenario, yaml_value

DESIGN = "car_design"
#: B-ALL with a CD19-negative/CD22-positive subclone: the CD19 CAR and the CD19/CD22 OR CAR
OR_GATE_ARMS = {"cd19_car": "b_all_cd22_subclone.yaml", "cd19_or_cd22": "b_all_or_cd19_cd22.yaml"}
#: GBM with heterogeneous IL13Ra2 and EGFR: two single-target CARs and the bivalent one
BIVALENT_ARMS = {"il13ra2_car": "gbm_il13ra2_egfr.yaml", "egfr_car": "gbm_egfr_car.yaml",
                 "bivalent_car": "gbm_bivalent_car.yaml"}
#: GBM in EphA2-positive brain: the unprimed EphA2 CAR and the EGFRvIII-primed AND-gate
AND_GATE_ARMS = {"epha2_car": "gbm_epha2_car.yaml", "and_gate": "gbm_synnotch_and.yaml"}
#: the suppressive GBM with uniform antigen (gbm_uniform.yaml) and the engineered products: with
#: 30 % antigen-negative cells (gbm_solid) the negative cells' growth, not suppression, sets
#: the pace, and no product can control the tumour longer
ARMOUR_ARMS = {"unmodified": "gbm_uniform.yaml", "dntgfbr": "gbm_dntgfbr.yaml",
               "pd1_knockout": "gbm_pd1_ko.yaml", "il12": "gbm_il12.yaml"}
#: the same B-ALL with a pooled CD19 + CD22 product (co-infused) and with the two given in
#: sequence (CD22 on day 14)
SEVERAL_PRODUCT_ARMS = {"cd19_car": "b_all_cd22_subclone.yaml",
                        "pooled": "b_all_pooled_cd19_cd22.yaml",
                        "sequential": "b_all_sequential_cd19_cd22.yaml"}
#: B-ALL (b_all_cd19) with CD8 cells alone, a 1:1 CD4:CD8 product, and one half memory-like
COMPOSITION_ARMS = {"cd8_only": "b_all_cd8_only.yaml", "cd4_cd8": "b_all_cd4_cd8.yaml",
                    "memory_enriched": "b_all_memory_enriched.yaml"}
#: persistence is read this long after infusion (days): past the expansion peak (~day 7-14)
PERSISTENCE_DAYS = 28.0
#: B-ALL runs last long enough for a CD19-negative subclone to regrow (days)
OR_GATE_DAYS = 42.0
#: residual disease below this many cells is not read as a composition (a handful of cells)
RESIDUAL_MIN_CELLS = 10


def run_products(scale: Scale, arms: dict[str, str], overrides: Sequence[str], seeds: int,
                 arm_overrides: dict[str, Sequence[str]] | None = None
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(time series, summary) of each product arm (name -> scenario file in
    ``configs/car_design/``) with the same ``overrides`` (plus an arm's own
    ``arm_overrides[name]``) and seeds. Arms read different files, so each is its own cached
    call; the tables are concatenated in the order of ``arms``."""
    extra = arm_overrides or {}
    tables = [run_arms(scale, f"{DESIGN}/{path}", {name: (*overrides, *extra.get(name, ()))},
                       seeds)
              for name, path in arms.items()]
    # an arm's all-empty summary columns (e.g. no relapse, no relapse day) are left out before
    # concatenating, and come back empty
    return (pd.concat([t for t, _ in tables], ignore_index=True),
            pd.concat([s.dropna(axis=1, how="all") for _, s in tables], ignore_index=True))


def _last(run: pd.DataFrame, column: str) -> float:
    return float(run[column].iloc[-1])


def _first(run: pd.DataFrame, column: str) -> float:
    return float(run[column].iloc[0])


def per_run_table(timeseries: pd.DataFrame, summary: pd.DataFrame,
                  measure: Callable[[pd.DataFrame, pd.Series], dict]) -> pd.DataFrame:
    """One row per run: ``scenario``, ``replicate`` and what ``measure(run, summary row)``
    returns."""
    return pd.DataFrame([{"scenario": row["scenario"], "replicate": row["replicate"],
                          **measure(run, row)} for run, row in iter_runs(timeseries, summary)])


def by_arm(per_run: pd.DataFrame, column: str) -> dict[str, float]:
    """Median of ``column`` per arm (``scenario``)."""
    return {arm: median(values) for arm, values in per_run.groupby("scenario", sort=False)
            [column]}


def paired_fraction(per_run: pd.DataFrame, column: str, better: str, others: Sequence[str],
                    lower: bool = True) -> float:
    """Fraction of replicates in which arm ``better`` has a lower (``lower``) or higher
    ``column`` than every arm of ``others`` (same seed: same starting lattice)."""
    table = per_run.pivot(index="replicate", columns="scenario", values=column)
    best = table[others].min(axis=1) if lower else table[others].max(axis=1)
    wins = table[better] < best if lower else table[better] > best
    return float(wins.mean())


def _share(part: float, whole: float) -> float:
    return part / whole if whole else math.nan


# ---------------------------------------------------------------------------------------------
# the facts
# ---------------------------------------------------------------------------------------------
def fact_or_gate(scale: Scale) -> FactResult:
    """Fact 8: in B-ALL with a CD19-negative/CD22-positive subclone, a CD19/CD22 OR product
    gives fewer CD19-negative relapses than the CD19 CAR; what relapses remain is
    double-negative or CD22-low."""
    timeseries, summary, per_run = relapse_runs(scale, OR_GATE_ARMS)
    arms = dict(list(per_run.groupby("scenario", sort=False)))
    single, dual = arms["cd19_car"], arms["cd19_or_cd22"]
    measured = {
        "runs_per_arm": len(single),
        "cd19_car_cd19_negative_relapses": int(single["cd19_negative_relapse"].sum()),
        "or_cd19_negative_relapses": int(dual["cd19_negative_relapse"].sum()),
        "cd19_car_residual_runs": int(single["residual"].sum()),
        "or_residual_runs": int(dual["residual"].sum()),
        "cd19_car_final_fraction_median": median(single["final_fraction"]),
        "or_final_fraction_median": median(dual["final_fraction"]),
        "cd19_car_cd19_negative_share_median": median(single["cd19_negative_share"]),
        "or_escape_share_median": median(dual["escape_share"]),
        "or_escape_share_min": float(dual["escape_share"].min()),
    }
    checks = {
        # the premise: a pre-existing CD19-negative subclone makes the CD19 CAR fail in most
        # runs (more than half), by CD19-negative disease
        "CD19 CAR: most runs relapse CD19-negative":
            measured["cd19_car_cd19_negative_relapses"] > measured["runs_per_arm"] / 2,
        # fewer: strictly, over the same seeds
        "OR product: fewer CD19-negative relapses": measured["or_cd19_negative_relapses"]
        < measured["cd19_car_cd19_negative_relapses"],
        # what remains escapes both receptors: every residual disease under the OR product is
        # mostly double-negative or CD22-low (no residual at all also passes)
        "OR residual disease is double-negative or CD22-low (>= 50 % each)":
            not measured["or_residual_runs"] or measured["or_escape_share_min"] >= 0.5,
    }
    gives = (f"CD19-negative relapse in {measured['cd19_car_cd19_negative_relapses']}/"
             f"{len(single)} runs with the CD19 CAR vs {measured['or_cd19_negative_relapses']}/"
             f"{len(dual)} with the CD19/CD22 OR CAR; tumour on day "
             f"{max(scale.days, OR_GATE_DAYS):g} "
             f"{100 * measured['cd19_car_final_fraction_median']:.0f} vs "
             f"{100 * measured['or_final_fraction_median']:.1f} % of baseline (median); OR "
             f"residual disease (in {measured['or_residual_runs']} runs) "
             f"{_percent(measured['or_escape_share_median'])} double-negative or CD22-low")
    return FactResult(8, "OR-gate (CD19/CD22) against a CD19-negative subclone",
                      "Spiegel 2021 Nat Med; Cordoba 2021 Nat Med; Fry 2018 Nat Med", gives,
                      measured, checks, {"timeseries": timeseries, "summary": summary,
                                         "per_run": per_run})


def relapse_runs(scale: Scale, arms: dict[str, str],
                 arm_overrides: dict[str, Sequence[str]] | None = None
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(time series, summary, per-run measures) of B-ALL product arms run until
    ``OR_GATE_DAYS``: residual disease, whether it is CD19-negative, how much of it escapes
    every product's receptors, and the final tumour."""
    overrides = patient_size(scale, max(scale.days, OR_GATE_DAYS), stop_when_cleared=True)
    timeseries, summary = run_products(scale, arms, overrides, scale.seeds, arm_overrides)

    def measure(run: pd.DataFrame, row: pd.Series) -> dict:
        final = _last(run, "tumor_cells")
        residual = final >= RESIDUAL_MIN_CELLS
        cd19_negative = _share(_last(run, "tumor_antigen_negative_CD19"), final)
        # escape variants: no antigen a killing receptor binds, or all of them below half-max
        escaped = _share(_last(run, "tumor_antigen_negative") + _last(run, "tumor_antigen_low"),
                         final)
        return {"residual": residual, "relapse": bool(row["relapse"]),
                "cd19_negative_relapse": residual and cd19_negative >= 0.5,
                "cd19_negative_share": cd19_negative if residual else math.nan,
                "escape_share": escaped if residual else math.nan,
                "final_fraction": final / _first(run, "tumor_cells")}

    return timeseries, summary, per_run_table(timeseries, summary, measure)


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.0f} %"


def _solid_measures(run: pd.DataFrame, row: pd.Series, spacing_um: float) -> dict:
    """Burden, kills, infiltration, progression day and CRS peak of one solid-tumour run."""
    days = float(run["time_days"].iloc[-1])
    burden = tumor_burden(run, days)["burden"].iloc[0]
    progressed = progression_day(run, row)
    return {"burden": burden,
            "killed": _last(run, "cumulative_cancer_killed"),
            "infiltration_index": infiltration_index(run, spacing_um),
            "progression_day": days if progressed is None else progressed,
            "crs_index_peak": float(run["crs_index"].max())}


def solid_products(scale: Scale, arms: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                 pd.DataFrame]:
    """(time series, summary, per-run measures) of solid-tumour product arms on the scale's
    solid-tumour size."""
    timeseries, summary = run_products(scale, arms, solid_size(scale), scale.solid_seeds)
    spacing_um = load_scenario(scale.config_dir / DESIGN / next(iter(arms.values()))
                               ).lattice.spacing_um
    per_run = per_run_table(timeseries, summary,
                            lambda run, row: _solid_measures(run, row, spacing_um))
    return timeseries, summary, per_run


def fact_bivalent(scale: Scale) -> FactResult:
    """Fact 9: in GBM with heterogeneous IL13Ra2 and EGFR a bivalent CAR shrinks more tumour
    than either single-target CAR."""
    timeseries, summary, per_run = solid_products(scale, BIVALENT_ARMS)
    burden = by_arm(per_run, "burden")
    killed = by_arm(per_run, "killed")
    singles = ["il13ra2_car", "egfr_car"]
    measured = {
        **{f"{arm}_burden_median": value for arm, value in burden.items()},
        **{f"{arm}_killed_median": value for arm, value in killed.items()},
        "bivalent_lower_burden_paired": paired_fraction(per_run, "burden", "bivalent_car",
                                                        singles),
        "bivalent_more_kills_paired": paired_fraction(per_run, "killed", "bivalent_car",
                                                      singles, lower=False),
    }
    checks = {
        # more shrinkage = a lower tumour burden over the run than each single CAR, in at least
        # 80 % of the seeds (same seed, same tumour: a paired comparison; 80 % leaves room for
        # one replicate in which chance favours a single CAR)
        "bivalent: lower tumour burden than either single CAR (>= 80 % of seeds)":
            measured["bivalent_lower_burden_paired"] >= 0.8,
        "bivalent: more cancer cells killed than either single CAR (>= 80 % of seeds)":
            measured["bivalent_more_kills_paired"] >= 0.8,
    }
    gives = (f"tumour burden (mean over {scale.solid_days:g} days, 1 = baseline) IL13Ra2 CAR "
             f"{burden['il13ra2_car']:.2f}, EGFR CAR {burden['egfr_car']:.2f}, bivalent "
             f"{burden['bivalent_car']:.2f}; cancer cells killed {killed['il13ra2_car']:.0f}, "
             f"{killed['egfr_car']:.0f}, {killed['bivalent_car']:.0f} (medians); bivalent lowest "
             f"in {100 * measured['bivalent_lower_burden_paired']:.0f} % of seeds")
    return FactResult(9, "bivalent CAR in antigen-heterogeneous GBM",
                      "Bagley 2024 Nat Med (bivalent EGFR/IL13Ra2 CAR: shrinkage in 6/6); "
                      "Hegde 2016 J Clin Invest", gives, measured, checks,
                      {"timeseries": timeseries, "summary": summary, "per_run": per_run})


def fact_and_gate(scale: Scale) -> FactResult:
    """Fact 10: an EGFRvIII-primed (SynNotch AND-gate) EphA2 CAR kills the double-positive
    tumour and spares healthy cells carrying only EphA2; an unprimed EphA2 CAR kills both."""
    overrides = solid_size(scale)
    timeseries, summary = run_products(scale, AND_GATE_ARMS, overrides, scale.solid_seeds)

    def measure(run: pd.DataFrame, row: pd.Series) -> dict:
        tumour_start, tumour_end = _first(run, "tumor_cells"), _last(run, "tumor_cells")
        column = "tumor_expressing_EGFRvIII+EphA2"
        return {"healthy_left": _share(_last(run, "normal_antigen_positive_EphA2"),
                                       _first(run, "normal_antigen_positive_EphA2")),
                "tumour_final_fraction": tumour_end / tumour_start,
                "double_positive_start": _share(_first(run, column), tumour_start),
                "double_positive_end": _share(_last(run, column), tumour_end)}

    per_run = per_run_table(timeseries, summary, measure)
    healthy = by_arm(per_run, "healthy_left")
    tumour = by_arm(per_run, "tumour_final_fraction")
    gate = per_run[per_run["scenario"] == "and_gate"]
    drop = gate["double_positive_start"] - gate["double_positive_end"]
    measured = {
        "epha2_car_healthy_left_median": healthy["epha2_car"],
        "and_gate_healthy_left_median": healthy["and_gate"],
        "epha2_car_tumour_final_fraction_median": tumour["epha2_car"],
        "and_gate_tumour_final_fraction_median": tumour["and_gate"],
        "and_gate_double_positive_start_median": median(gate["double_positive_start"]),
        "and_gate_double_positive_end_median": median(gate["double_positive_end"]),
        "and_gate_double_positive_drop_min": float(drop.min()),
    }
    checks = {
        # kills both: the unprimed CAR halves the tumour and removes >= 80 % of the EphA2+
        # healthy cells
        "unprimed EphA2 CAR kills the tumour (<= 50 % left)":
            measured["epha2_car_tumour_final_fraction_median"] <= 0.5,
        "unprimed EphA2 CAR kills healthy EphA2+ cells (<= 20 % left)":
            measured["epha2_car_healthy_left_median"] <= 0.2,
        # spares: >= 80 % of them survive the AND-gate (priming lasts hours, so CAR-T that
        # leave the tumour still kill near its edge)
        "AND-gate spares healthy EphA2+ cells (>= 80 % left)":
            measured["and_gate_healthy_left_median"] >= 0.8,
        # kills the double-positive tumour: its share of the tumour falls by >= 20 points in
        # every replicate (selective killing where priming happens)
        "AND-gate kills double-positive cells (share falls >= 20 points)":
            measured["and_gate_double_positive_drop_min"] >= 0.2,
    }
    gives = (f"healthy EphA2+ cells left: {100 * healthy['epha2_car']:.0f} % (unprimed) vs "
             f"{100 * healthy['and_gate']:.0f} % (AND-gate); tumour at the end "
             f"{100 * tumour['epha2_car']:.0f} % vs {100 * tumour['and_gate']:.0f} % of baseline; "
             f"under the AND-gate the double-positive share falls "
             f"{100 * measured['and_gate_double_positive_start_median']:.0f} -> "
             f"{100 * measured['and_gate_double_positive_end_median']:.0f} % and EGFRvIII-"
             "negative cells take over")
    return FactResult(10, "AND-gate (SynNotch) spares single-antigen healthy tissue",
                      "Choe 2021 Sci Transl Med; Hyrenius-Wittsten 2021 Sci Transl Med; "
                      "Roybal 2016 Cell", gives, measured, checks,
                      {"timeseries": timeseries, "summary": summary, "per_run": per_run})


def fact_resistant_car_t(scale: Scale) -> FactResult:
    """Fact 11: dnTGFbR and PD-1-knockout CAR-T infiltrate a suppressive solid tumour deeper
    and control it longer than the unmodified product (GBM with uniform antigen)."""
    timeseries, summary, per_run = solid_products(scale, ARMOUR_ARMS)
    depth = by_arm(per_run, "infiltration_index")
    progression = by_arm(per_run, "progression_day")
    burden = by_arm(per_run, "burden")
    measured = {
        **{f"{arm}_infiltration_index_median": depth[arm] for arm in ARMOUR_ARMS},
        **{f"{arm}_progression_day_median": progression[arm] for arm in ARMOUR_ARMS},
        **{f"{arm}_burden_median": burden[arm] for arm in ARMOUR_ARMS},
    }
    checks = {}
    for arm, label in (("dntgfbr", "dnTGFbR"), ("pd1_knockout", "PD-1 KO")):
        measured[f"{arm}_lower_burden_paired"] = paired_fraction(per_run, "burden", arm,
                                                                 ["unmodified"])
        # deeper: a higher median infiltration index
        checks[f"{label}: deeper infiltration"] = depth[arm] > depth["unmodified"]
        # better control: a lower median tumour burden over the run (time-averaged, so holding
        # the tumour down for longer counts); the share of seeds in which it is lower is
        # reported beside it (PD-1 knockout removes only the checkpoint share, 30 % in this
        # tumour, so its gain is small and not seen in every seed)
        checks[f"{label}: lower tumour burden (median)"] = burden[arm] < burden["unmodified"]
    arms = ("unmodified", "dntgfbr", "pd1_knockout")
    gives = ("infiltration index " + ", ".join(f"{arm} {depth[arm]:.2f}" for arm in arms)
             + "; tumour burden " + ", ".join(f"{burden[arm]:.2f}" for arm in arms)
             + "; progression on day " + ", ".join(f"{progression[arm]:.1f}" for arm in arms)
             + f" (medians; {scale.solid_days:g} days = none)")
    return FactResult(11, "suppression-resistant CAR-T (dnTGFbR, PD-1 knockout)",
                      "Kloss 2018 Mol Ther; Narayan 2022 Nat Med; Rupp 2017 Sci Rep", gives,
                      measured, checks, {"timeseries": timeseries, "summary": summary,
                                         "per_run": per_run})


def fact_il12_armour(scale: Scale) -> FactResult:
    """Fact 12: IL-12-armoured CAR-T improve solid-tumour control and raise the CRS index."""
    timeseries, summary, per_run = solid_products(scale, ARMOUR_ARMS)
    pair = per_run[per_run["scenario"].isin(["unmodified", "il12"])]
    burden = by_arm(pair, "burden")
    killed = by_arm(pair, "killed")
    crs = by_arm(pair, "crs_index_peak")
    progression = by_arm(pair, "progression_day")
    measured = {
        "unmodified_progression_day_median": progression["unmodified"],
        "il12_progression_day_median": progression["il12"],
        "unmodified_burden_median": burden["unmodified"], "il12_burden_median": burden["il12"],
        "unmodified_killed_median": killed["unmodified"], "il12_killed_median": killed["il12"],
        "unmodified_crs_peak_median": crs["unmodified"], "il12_crs_peak_median": crs["il12"],
        "il12_more_kills_paired": paired_fraction(pair, "killed", "il12", ["unmodified"],
                                                  lower=False),
        "il12_higher_crs_paired": paired_fraction(pair, "crs_index_peak", "il12",
                                                  ["unmodified"], lower=False),
        "il12_lower_burden_paired": paired_fraction(pair, "burden", "il12", ["unmodified"]),
    }
    checks = {
        # better control: more cancer cells killed in >= 80 % of the seeds (paired)
        "IL-12: more cancer cells killed (>= 80 % of seeds)":
            measured["il12_more_kills_paired"] >= 0.8,
        # and a lower tumour burden over the run in >= 80 % of the seeds, as in fact 11
        "IL-12: lower tumour burden (>= 80 % of seeds)":
            measured["il12_lower_burden_paired"] >= 0.8,
        # the cost: a higher CRS index peak in every seed
        "IL-12: higher CRS index peak (every seed)": measured["il12_higher_crs_paired"] == 1.0,
    }
    gives = (f"cancer cells killed {killed['unmodified']:.0f} -> {killed['il12']:.0f}, "
             f"progression on day {progression['unmodified']:.1f} -> {progression['il12']:.1f}, "
             f"tumour burden {burden['unmodified']:.2f} -> {burden['il12']:.2f}, CRS index peak "
             f"{crs['unmodified']:.0f} -> {crs['il12']:.0f} (medians, unmodified -> IL-12)")
    return FactResult(12, "IL-12-armoured CAR-T: more control, more CRS",
                      "Pegram 2012 Blood; Yeku 2017 Sci Rep; Zhang 2015 Clin Cancer Res", gives,
                      measured, checks, {"timeseries": timeseries, "summary": summary,
                                         "per_run": per_run})


def fact_composition(scale: Scale) -> FactResult:
    """Fact 13: the product's composition sets expansion and persistence: a defined 1:1
    CD4:CD8 product expands and persists more than CD8 cells alone, and a memory-enriched one
    more still."""
    overrides = patient_size(scale, max(scale.days, PERSISTENCE_DAYS))
    timeseries, summary = run_products(scale, COMPOSITION_ARMS, overrides, scale.seeds)

    def measure(run: pd.DataFrame, _row: pd.Series) -> dict:
        car_t = run["car_t_cells"] + run["car_t_blood"]  # the whole patient
        return {"peak": float(car_t.max()), "persisting": float(car_t.iloc[-1]),
                "cd4_share_end": _share(_last(run, "car_t_cd4"), float(car_t.iloc[-1])),
                "final_fraction": _last(run, "tumor_cells") / _first(run, "tumor_cells")}

    per_run = per_run_table(timeseries, summary, measure)
    peak, persisting = by_arm(per_run, "peak"), by_arm(per_run, "persisting")
    cd4_share = by_arm(per_run, "cd4_share_end")
    order = list(COMPOSITION_ARMS)
    measured = {
        "runs_per_arm": int((per_run["scenario"] == order[0]).sum()),
        **{f"{arm}_peak_median": peak[arm] for arm in order},
        **{f"{arm}_persisting_median": persisting[arm] for arm in order},
        "cd4_cd8_cd4_share_end_median": cd4_share["cd4_cd8"],
        "cd4_cd8_more_persisting_paired": paired_fraction(
            per_run, "persisting", "cd4_cd8", ["cd8_only"], lower=False),
        "memory_enriched_more_persisting_paired": paired_fraction(
            per_run, "persisting", "memory_enriched", ["cd4_cd8"], lower=False),
    }
    checks = {
        # expansion: the medians of the peak rise along the three products
        "peak expansion: CD8 alone < 1:1 CD4:CD8 < memory-enriched (medians)":
            peak["cd8_only"] < peak["cd4_cd8"] < peak["memory_enriched"],
        # persistence: CAR-T left on day 28 rise along the three products, in >= 80 % of the
        # seeds for each step (same seed, same patient: paired)
        "persistence: 1:1 CD4:CD8 above CD8 alone (>= 80 % of seeds)":
            measured["cd4_cd8_more_persisting_paired"] >= 0.8,
        "persistence: memory-enriched above 1:1 (>= 80 % of seeds)":
            measured["memory_enriched_more_persisting_paired"] >= 0.8,
        # CD4 cells outlast CD8 cells: their share of the 1:1 product rises above half
        "CD4 share of the 1:1 product above 50 % at the end": cd4_share["cd4_cd8"] > 0.5,
    }
    days = max(scale.days, PERSISTENCE_DAYS)
    gives = ("CAR-T at the peak " + ", ".join(f"{peak[arm]:.0f}" for arm in order)
             + f" and on day {days:g} " + ", ".join(f"{persisting[arm]:.0f}" for arm in order)
             + " (CD8 alone, 1:1 CD4:CD8, 1:1 with 50 % memory-like; medians, lattice and "
             f"blood); CD4 share of the 1:1 product on day {days:g} "
             f"{_percent(cd4_share['cd4_cd8'])}")
    return FactResult(13, "product composition: CD4:CD8 and memory-like cells",
                      "Sommermeyer 2016 Leukemia; Turtle 2016 J Clin Invest; Fraietta 2018 "
                      "Nat Med; Melenhorst 2022 Nature", gives, measured, checks,
                      {"timeseries": timeseries, "summary": summary, "per_run": per_run})


def sequential_doses(scale: Scale) -> str:
    """The doses of the sequential arm on the scale's tumour: the shipped file gives the CD22
    product as many cells as the first dose of the full-size patient; on a smaller tumour it
    gets as many as the first dose there (the same cells per baseline cancer cell)."""
    path = scale.config_dir / DESIGN / SEVERAL_PRODUCT_ARMS["sequential"]
    first, second = load_scenario(path).dosing.doses
    second_cells = max(1, round(first.effector_to_target * scale.tumor_cells))
    return "dosing.doses=" + yaml_value([
        {"day": first.day, "effector_to_target": first.effector_to_target},
        {"day": second.day, "cells": second_cells, "product": second.product}])


def fact_several_products(scale: Scale) -> FactResult:
    """Fact 14: in B-ALL with a CD19-negative/CD22-positive subclone, CD19 and CD22 CAR-T
    products given together (pooled) give fewer CD19-negative relapses than the CD19 product
    alone; given one after the other (CD22 on day 14, no new conditioning) they leave less
    tumour."""
    timeseries, summary, per_run = relapse_runs(
        scale, SEVERAL_PRODUCT_ARMS, {"sequential": (sequential_doses(scale),)})
    cd22_peak = {arm: median(timeseries[timeseries["scenario"] == arm]
                              .groupby("replicate")["product_cd22_car_t"].max())
                 for arm in ("pooled", "sequential")}
    arms = dict(list(per_run.groupby("scenario", sort=False)))
    relapses = {arm: int(table["cd19_negative_relapse"].sum()) for arm, table in arms.items()}
    final = {arm: median(table["final_fraction"]) for arm, table in arms.items()}
    measured = {"runs_per_arm": len(arms["cd19_car"]),
                **{f"{arm}_cd19_negative_relapses": n for arm, n in relapses.items()},
                **{f"{arm}_final_fraction_median": f for arm, f in final.items()},
                **{f"{arm}_cd22_product_peak_median": peak for arm, peak in cd22_peak.items()},
                "sequential_less_tumour_paired": paired_fraction(
                    per_run, "final_fraction", "sequential", ["cd19_car"])}
    checks = {
        # the premise, as in fact 8: the CD19 product alone relapses CD19-negative in most runs
        "CD19 product: most runs relapse CD19-negative":
            relapses["cd19_car"] > measured["runs_per_arm"] / 2,
        # fewer: strictly, over the same seeds
        "pooled CD19 + CD22: fewer CD19-negative relapses":
            relapses["pooled"] < relapses["cd19_car"],
        # less tumour on day 42 than the CD19 product alone in >= 80 % of the seeds (paired);
        # the CD22 product given into residual disease expands on few targets and without
        # conditioning, so it need not prevent the relapse
        "CD19 then CD22 (day 14): less tumour on day 42 (>= 80 % of seeds)":
            measured["sequential_less_tumour_paired"] >= 0.8,
    }
    n = measured["runs_per_arm"]
    gives = (f"CD19-negative relapse in {relapses['cd19_car']}/{n} runs with the CD19 product, "
             f"{relapses['pooled']}/{n} pooled with a CD22 product, {relapses['sequential']}/{n} "
             f"with CD22 CAR-T on day 14; tumour on day {max(scale.days, OR_GATE_DAYS):g} "
             + ", ".join(f"{100 * final[arm]:.1f}" for arm in SEVERAL_PRODUCT_ARMS)
             + f" % of baseline; CD22 CAR-T at their peak {cd22_peak['pooled']:.0f} pooled vs "
             f"{cd22_peak['sequential']:.0f} sequential (medians)")
    return FactResult(14, "several products: pooled and sequential CD19 + CD22 CAR-T",
                      "Wang N 2020 Blood (CAR19/22 cocktail); Pan 2019 Leukemia (sequential "
                      "CD19 then CD22)", gives, measured, checks,
                      {"timeseries": timeseries, "summary": summary, "per_run": per_run})


#: the CAR design-space facts, after ``literature.FACTS``
FACTS: tuple[Callable[[Scale], FactResult], ...] = (
    fact_or_gate, fact_bivalent, fact_and_gate, fact_resistant_car_t, fact_il12_armour,
    fact_composition, fact_several_products)
