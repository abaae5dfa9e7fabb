"""The facts at the end of ../shared/biology.md, one test each, on the shipped scenarios.

Each test runs one ``literature_facts`` fact on small settings (``SMALL``: B-ALL on a 70x70
lattice with 1,500 blasts, glioblastoma on 100x100 with 3,000 cells, the killing-assay dish on
40x40 with 400 targets; 3-10 seeds per arm) and asserts every criterion of the fact. The
criteria and the reasons for their tolerances are written once, beside the code that measures
them, in ``literature_facts.py`` (beside this file); ``docs/make_validation.py`` checks the same criteria on
larger runs. The numbers quoted below are what these settings gave when the tests were written.

Run with ``pytest -m validation tests/validation`` (about 3 minutes of CPU; ``-rP`` prints
the measured numbers).
"""

import pytest

import design_facts
import literature_facts as literature
from literature_facts import FactResult, Scale

pytestmark = pytest.mark.validation

#: CI settings (the ``Scale`` defaults): small runs that still decide every fact with a margin
SMALL = Scale(workers=1)


def assert_holds(result: FactResult) -> None:
    print(result.report())  # the measured numbers, shown by pytest -rP
    assert result.passed, result.report()


def test_blood_cancer_car_t_expand_cure_and_relapses_are_antigen_negative():
    """Fact 1 (Stein 2019 for the kinetics; ELIANA: Laetsch 2023, Myers 2023, Pillai 2019).

    b_all_cd19 as shipped (5 seeds, 21 days): CR in 5/5, 143-fold expansion, blood peak on
    day 7.5, 13 % of the peak left on day 21. The relapse arm (antigen loss raised from 1e-4 to
    2e-3 per division, so that a rare antigen-negative clone exists in some of the 10 runs on
    this small lattice; 60 days) relapses in 4/10, every relapse 100 % antigen-negative.
    """
    assert_holds(literature.fact_blood_cancer(SMALL))


def test_solid_tumour_response_is_transient_car_t_miss_the_core_and_antigen_escapes():
    """Fact 2 (Brown 2024 Nat Med; O'Rourke 2017 Sci Transl Med; Salmon 2012).

    gbm_solid as shipped for its 42 days (3 seeds): no shrinkage, the tumour ends at 228 % of
    baseline; CAR-T infiltration index 0.46 (1 = even spread, 2/3 = none in the inner half of
    the radius); CAR-T end at 14 % of their peak; antigen-low/negative share 43 -> 81 %.
    """
    assert_holds(literature.fact_solid_tumor(SMALL))


def test_in_vitro_killing_rises_with_et_and_kills_per_car_t_rise_as_et_falls():
    """Fact 3 (Davenport 2015, serial killing; the dish of configs/killing_assay.yaml).

    E:T 1:20, 1:8, 1:4, 1:1 (3 seeds): 80, 8, 0, 0 % of control at 72 h; kills per CAR-T
    20.4, 19.5, 7.9, 1.5 (with the dish's 12 h of arming; 64, 0, 0, 0 % and 24, 13, 5, 1.1
    before it).
    """
    assert_holds(literature.fact_killing_assay(SMALL))


def test_killing_collapses_below_an_antigen_threshold_that_lower_affinity_raises():
    """Fact 4 (Majzner 2020 Cancer Discov; Hernandez-Lopez 2021).

    Dish at E:T 1:4, 250-32,000 CD19/cell (3 seeds): killing 4 % at 250, 22 % at 1000, 92 % at
    2000; half-maximal killing at ~1300/cell, ~5300/cell with a 4x higher CAR half-max (arming
    needs a synapse; ~760 and ~3000/cell before the dish armed).
    """
    assert_holds(literature.fact_antigen_threshold(SMALL))


def test_more_dose_helps_with_diminishing_returns_and_split_dosing_is_not_worse():
    """Fact 5 (biology.md clinic table: doses 0.2-5e6/kg, Mueller 2018, ZUMA-1).

    b_all_cd19 with 4, 16, 64, 256 CAR-T (4 seeds): burden 0.33, 0.20, 0.12, 0.073 (gains
    0.13, 0.08, 0.05 per 4x step); 16 CAR-T as 2x8 three days apart: CR 100 % as for the
    bolus (burden 0.27 vs 0.20: half the cells start later).
    """
    assert_holds(literature.fact_dose(SMALL))


def test_cure_is_a_stochastic_extinction_event():
    """Fact 6 (Kimmel 2021 Proc R Soc B).

    The relapse arm of fact 1 (identical parameters, 10 seeds): 5 cures on days 7.5-9.3,
    4 progressions (antigen-negative relapses) on days 16-41.5.
    """
    assert_holds(literature.fact_stochastic_cure(SMALL))


def test_antigen_positive_healthy_cells_are_depleted_and_antigen_negative_ones_spared():
    """Fact 7 (biology.md: CD19 CAR-T deplete normal B cells, B-cell aplasia).

    b_all_cd19 runs of fact 1: no normal B cell left; T/NK and myeloid cells (antigen-negative)
    unchanged in every run; no brain cell killed in the glioblastoma runs of fact 2.
    """
    assert_holds(literature.fact_off_tumor(SMALL))


# ---------------------------------------------------------------------------------------------
# the CAR design space (design_facts.py, configs/car_design/)
# ---------------------------------------------------------------------------------------------
def test_or_gate_prevents_cd19_negative_relapse_and_leaves_double_negative_disease():
    """Fact 8 (Spiegel 2021 Nat Med; Cordoba 2021 Nat Med; Fry 2018 Nat Med).

    B-ALL with 3 % CD19-negative blasts (5 seeds, 42 days): the CD19 CAR relapses
    CD19-negative in 5/5 runs, the CD19/CD22 OR CAR in 1/5; what the OR CAR leaves is 100 %
    double-negative or CD22-low.
    """
    assert_holds(design_facts.fact_or_gate(SMALL))


def test_bivalent_car_shrinks_heterogeneous_gbm_more_than_either_single_car():
    """Fact 9 (Bagley 2024 Nat Med; Hegde 2016 J Clin Invest).

    GBM with 30 %-negative IL13Ra2 and EGFR (3 seeds): burden 1.60 / 1.59 (single CARs) vs
    1.40 (bivalent); cancer cells killed 880 / 1051 vs 2879 (medians); bivalent best in 3/3.
    """
    assert_holds(design_facts.fact_bivalent(SMALL))


def test_and_gate_spares_healthy_single_antigen_tissue_that_an_unprimed_car_kills():
    """Fact 10 (Choe 2021 Sci Transl Med; Hyrenius-Wittsten 2021; Roybal 2016 Cell).

    EphA2+ brain around a GBM (3 seeds): healthy EphA2+ cells left 0.05 % (unprimed) vs
    87 % (AND-gate); tumour 1 % vs 228 % of baseline at day 42; double-positive share under
    the AND-gate 60 -> 13 %.
    """
    assert_holds(design_facts.fact_and_gate(SMALL))


def test_dntgfbr_and_pd1_knockout_infiltrate_deeper_and_delay_progression():
    """Fact 11 (Kloss 2018 Mol Ther; Narayan 2022 Nat Med; Rupp 2017 Sci Rep).

    gbm_uniform (gbm_solid with uniform antigen; 3 seeds): numbers in the assertion message
    (pytest -rP); the GBM with 30 % antigen-negative cells shows no control gain (docs).
    """
    assert_holds(design_facts.fact_resistant_car_t(SMALL))


def test_il12_armour_kills_more_and_raises_the_crs_index():
    """Fact 12 (Pegram 2012 Blood; Yeku 2017 Sci Rep; Zhang 2015 Clin Cancer Res).

    gbm_uniform (3 seeds, the runs of fact 11): numbers in the assertion message (pytest -rP).
    """
    assert_holds(design_facts.fact_il12_armour(SMALL))


def test_cd4_help_and_memory_like_cells_raise_expansion_and_persistence():
    """Fact 13 (Sommermeyer 2016 Leukemia; Turtle 2016 J Clin Invest; Fraietta 2018 Nat Med).

    B-ALL as shipped, 28 days (5 seeds): CAR-T at the peak 793 / 2335 / 3099 and on day 28
    66 / 590 / 1241 (CD8 alone, 1:1 CD4:CD8, 1:1 with 50 % memory-like; medians); the CD4
    share of the 1:1 product ends at 90 %.
    """
    assert_holds(design_facts.fact_composition(SMALL))


def test_pooled_cd19_and_cd22_products_prevent_cd19_negative_relapses():
    """Fact 14 (Wang N 2020 Blood; Pan 2019 Leukemia).

    B-ALL with 3 % CD19-negative blasts (5 seeds, 42 days): CD19-negative relapse in 5/5 runs
    with the CD19 product, 2/5 pooled with a CD22 product, 5/5 with CD22 CAR-T on day 14 (which
    leave 5.5 % of baseline vs 46 %).
    """
    assert_holds(design_facts.fact_several_products(SMALL))
