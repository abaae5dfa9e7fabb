"""CAR-T product files apart from the disease cohort: a trial names its product, the product's
values and varying keys join the trial's, `--product` (and ``simulation.trial(product=...)``)
gives the cohort another product as a prediction, and bad product files or product keys in
the wrong file are refused with the file and key path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import simulation
from simulation.cli import main
from simulation.config import ConfigError
from simulation.study.sweep import plan_sweep
from simulation.study.trial import TrialFile, read_trial_file

DATA = Path(__file__).parent / "data"
COHORT = DATA / "small_cohort.yaml"
PRODUCT = DATA / "small_product.yaml"
OTHER = DATA / "small_product_other.yaml"
CONFIGS = Path(__file__).parent.parent / "configs"


def test_a_named_product_draws_the_patients_its_keys_would_draw_written_in_the_trial(tmp_path):
    """Joining a product is bookkeeping: the same patients (values, seeds, run ids) as a trial
    that lists the product's keys itself."""
    inline = tmp_path / "inline.yaml"
    inline.write_text(
        f"name: small_cohort\nbase: {DATA / 'small_patient.yaml'}\npatients: 4\nseed: 5\n"
        "overrides: {clinical.car_t_kill_rate_per_day: 0.2}\nproperties:\n"
        "  clinical.crs_susceptibility: {distribution: loguniform, low: 0.1, high: 10.0, "
        "source: test}\n"
        "  car_t.max_divisions: {distribution: uniform, low: 1.0, high: 12.0, integer: true, "
        "source: test range}\n", encoding="utf-8")
    named, written = read_trial_file(COHORT), read_trial_file(inline)
    assert named.product == str(PRODUCT) or named.product.endswith("small_product.yaml")
    assert named.sweep().parameters == written.sweep().parameters
    assert named.overrides == written.overrides == {"clinical.car_t_kill_rate_per_day": 0.2}
    ids = [[run.run_id for run in plan_sweep(path, trial.sweep()).runs]
           for path, trial in ((COHORT, named), (inline, written))]
    assert ids[0] == ids[1]


def test_another_product_renames_the_cohort_and_drops_the_other_products_readouts():
    trial = read_trial_file(COHORT, product=OTHER)
    assert trial.name == "small_cohort_other_product"
    assert set(trial.properties) == {"clinical.crs_susceptibility",
                                     "clinical.car_t_functional_days"}
    assert trial.overrides == {"car_t.max_kills": 3}
    assert trial.published == {} and trial.predictors == {} and trial.not_modelled == {}
    assert "a prediction" in trial.description
    # the trial's own product named again is no swap
    assert read_trial_file(COHORT, product=PRODUCT).name == "small_cohort"


def test_the_shipped_trials_name_their_products_and_each_runs_with_the_other():
    for trial_name, own, other in (("b_all_eliana", "tisa_cel", "axi_cel"),
                                   ("lbcl_zuma1", "axi_cel", "tisa_cel")):
        path = CONFIGS / "trials" / f"{trial_name}.yaml"
        trial = read_trial_file(path)
        assert trial.product.endswith(f"products/{own}.yaml") and trial.published
        swapped = read_trial_file(path, 3, CONFIGS / "products" / f"{other}.yaml")
        assert swapped.name == f"{trial_name}_{other}"
        assert len(plan_sweep(path, swapped.sweep()).unique_runs) == 3  # valid patients


@pytest.mark.parametrize("body, message", [
    ("values: {tumor.cycle_time_h: 50.0}",
     "values.tumor.cycle_time_h: is no product key"),
    ("varies: {dosing.doses.0.effector_to_target: {distribution: uniform, low: 0.1, high: 1, "
     "source: s}}", "varies.dosing.doses.0.effector_to_target: is no product key"),
    ("values: {car_t.max_kills: 3}\nvaries: {car_t.max_kills: {distribution: uniform, low: 1, "
     "high: 5, source: s}}", "varies.car_t.max_kills: is also in values"),
    ("varies: {car_t.max_kills: {distribution: uniform, low: 1, high: 5}}",
     "varies.car_t.max_kills.source"),
])
def test_a_bad_product_file_is_refused_with_its_key_path(tmp_path, capsys, body, message):
    product = tmp_path / "p.yaml"
    product.write_text(f"name: p\n{body}\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["trial", str(COHORT), "--product", str(product), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"p.yaml: {message}" in err and "Traceback" not in err
    assert not out.exists()


def test_a_trial_that_sets_a_key_of_its_product_is_refused(tmp_path):
    trial = tmp_path / "t.yaml"
    trial.write_text(
        f"name: t\nbase: {DATA / 'small_patient.yaml'}\nproduct: {PRODUCT}\npatients: 2\n"
        "properties:\n  car_t.max_kills: {distribution: uniform, low: 1, high: 5, source: s}\n",
        encoding="utf-8")
    with pytest.raises(ConfigError, match=r"t.yaml: properties.car_t.max_kills: is a key of "
                       r"the CAR-T product; set it in the product file"):
        read_trial_file(trial)
    with pytest.raises(ConfigError, match="no such product file"):
        read_trial_file(COHORT, product=tmp_path / "missing.yaml")


def test_a_predictor_must_name_a_property_of_the_trial(tmp_path):
    trial = tmp_path / "t.yaml"
    trial.write_text(COHORT.read_text(encoding="utf-8").replace(
        "product: small_product.yaml", f"product: {PRODUCT}").replace(
        "base: small_patient.yaml", f"base: {DATA / 'small_patient.yaml'}").replace(
        "  car_t.max_divisions: {direction", "  car_t.max_kills: {direction"),
        encoding="utf-8")
    with pytest.raises(ConfigError, match=r"t.yaml: predictors.car_t.max_kills: names no "
                       "property of the trial"):
        read_trial_file(trial)


def test_validate_knows_a_product_file_and_run_points_to_trial(tmp_path, capsys):
    product = CONFIGS / "products" / "axi_cel.yaml"
    assert main(["validate", str(product)]) == 0
    assert "ok: CAR-T product axi_cel: 1 fixed and 3 varying keys" in capsys.readouterr().out
    assert main(["run", str(product), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "is a CAR-T product file" in err and "--product" in err
    assert not (tmp_path / "run").exists()


def test_cartsim_trial_with_another_product_runs_the_cohort_as_a_prediction(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["trial", str(COHORT), "--product", str(OTHER), "--patients", "2",
                 "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert "2 patients (0 already done, 2 done now, 0 failed)" in capsys.readouterr().out
    text = (out / "trial.md").read_text(encoding="utf-8")
    assert "# Virtual trial small_cohort_other_product" in text
    assert "a prediction" in text and "CAR-T product: " in text and "small_product_other" in text
    patients = pd.read_csv(out / "patients.csv")
    assert "clinical.car_t_functional_days" in patients and "car_t.max_divisions" not in patients
    # the same cohort from Python: the same patients, run for run
    result = simulation.trial(COHORT, out=tmp_path / "api", product=OTHER, patients=2,
                              workers=1)
    assert result.trial.name == "small_cohort_other_product"
    assert result.patients["run_id"].tolist() == patients["run_id"].tolist()


def test_another_seed_draws_another_cohort_under_its_own_name():
    own = read_trial_file(COHORT)
    other = read_trial_file(COHORT, seed=11)
    assert other.name == "small_cohort_seed11" and own.name == "small_cohort"
    assert other.sweep().parameters["seed"] == [11, 12, 13, 14]
    assert other.sweep().parameters["car_t.max_divisions"] != own.sweep().parameters[
        "car_t.max_divisions"]
    assert read_trial_file(COHORT, seed=5).name == "small_cohort"  # the file's own seed


def test_a_property_per_another_is_its_draw_divided_by_the_patients_value_then_clipped(tmp_path):
    """A fixed dose against each patient's burden: E:T = dose / burden, within [low, high];
    the other properties draw exactly what they drew without it."""
    trial = read_trial_file(COHORT, patients=400)
    dose = {"distribution": "lognormal", "median": 3.0e8, "sigma": 0.3, "low": 1e-3,
            "high": 0.03, "per": "clinical.body_tumor_cells", "source": "s"}
    burden = {"distribution": "lognormal", "median": 1.0e11, "sigma": 1.0, "source": "s"}
    coupled = TrialFile.model_validate({**trial.model_dump(), "properties": {
        **trial.model_dump()["properties"], "dosing.doses.0.effector_to_target": dose,
        "clinical.body_tumor_cells": burden}})
    drawn = coupled.sweep().parameters
    ratio = np.array(drawn["dosing.doses.0.effector_to_target"])
    load = np.array(drawn["clinical.body_tumor_cells"])
    assert ratio.min() >= 1e-3 and ratio.max() <= 0.03
    inside = (ratio > 1e-3) & (ratio < 0.03)
    # dose = E:T x burden: lognormal around 3e8 with sigma 0.3 (the median of 400 draws within
    # ~4 % at 1 SE; 15 % is > 3 SE)
    assert np.median((ratio * load)[inside]) == pytest.approx(3.0e8, rel=0.15)
    assert np.corrcoef(np.log(ratio[inside]), np.log(load[inside]))[0, 1] < -0.9
    assert drawn["car_t.max_divisions"] == trial.sweep().parameters["car_t.max_divisions"]
    assert "per `clinical.body_tumor_cells`" in coupled.properties[
        "dosing.doses.0.effector_to_target"].describe()


@pytest.mark.parametrize("change, message", [
    ({"per": "clinical.nothing"}, "per: names no property of the trial"),
    ({"distribution": "uniform", "low": 1.0, "high": 2.0},
     "per: needs a lognormal or normal draw"),
])
def test_a_bad_per_names_the_property_and_key(change, message):
    base = read_trial_file(COHORT).model_dump()
    spec = {"distribution": "lognormal", "median": 1.0, "sigma": 0.1,
            "per": "clinical.crs_susceptibility", "source": "s", **change}
    data = {**base, "properties": {**base["properties"], "dosing.doses.0.effector_to_target": spec}}
    with pytest.raises(Exception, match=message):
        TrialFile.model_validate(data)


def test_cartsim_trial_hands_seed_and_product_to_the_trial(monkeypatch, tmp_path):
    """The command's --seed and --product reach simulation.trial (run_trial) as given."""
    import simulation.commands as commands

    handed = {}

    def fake_run_trial(path, out, **options):
        handed.update(options)
        raise KeyboardInterrupt  # stop before anything runs: the command reports it

    monkeypatch.setattr(commands, "run_trial", fake_run_trial)
    main(["trial", str(COHORT), "--seed", "11", "--product", str(OTHER),
          "--out", str(tmp_path / "out"), "--workers", "1", "--quiet"])
    assert handed["seed"] == 11 and Path(handed["product"]) == OTHER
