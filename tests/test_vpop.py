"""Virtual-population calibration: the prevalence weights (analysis.vpop), the published
readouts' table, and `cartsim fit VPOP.yaml` end to end (pool, weights, report, resume)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulation.analysis.vpop import (Band, prevalence_weights, property_shifts, resample,
                                      weighted_share)
from simulation.cli import main
from simulation.config import ConfigError
from simulation.study.vpop import read_published, targeted_shares

DATA = Path(__file__).parent / "data"
EVERYONE = np.ones(100, dtype=bool)


def _yes(count: int, n: int = 100) -> np.ndarray:
    return np.arange(n) < count


def test_weights_reach_the_band_edge_with_equal_weights_inside_each_group():
    """30 % yes, band 50-60 %: the least-divergent weights stop at the band's near edge and
    weigh every yes alike and every no alike (nothing else tells them apart)."""
    yes = _yes(30)
    result = prevalence_weights({"cr_rate": (yes, EVERYONE)}, [Band("cr_rate", 0.5, 0.6)])
    assert weighted_share(yes, EVERYONE, result.weights) == pytest.approx(0.5, abs=1e-6)
    assert np.allclose(result.weights[yes], 0.5 / 30, rtol=1e-5)
    assert np.allclose(result.weights[~yes], 0.5 / 70, rtol=1e-5)
    # Kish: 1 / (30 (1/60)^2 + 70 (1/140)^2) = 1 / (1/120 + 1/280) = 84
    assert result.effective_size == pytest.approx(84.0, rel=1e-4)


def test_a_pool_already_inside_every_band_keeps_equal_weights():
    result = prevalence_weights({"cr_rate": (_yes(55), EVERYONE)}, [Band("cr_rate", 0.5, 0.6)])
    assert np.allclose(result.weights, 0.01) and result.effective_size == pytest.approx(100)


def test_a_share_among_counted_patients_counts_only_them():
    """RFS among the 40 counted (CR) patients: 10 of them relapse-free (25 %); band 50-70 %.
    The weights are exp(mu (v - 0.5)) on counted patients and 1 elsewhere, and 50 % needs
    10 e^x = 30 e^-x (e^x = sqrt 3): the 60 patients not counted hold 60 / (60 + 20 sqrt 3)."""
    counted = _yes(40)
    free = _yes(10)
    result = prevalence_weights({"rfs": (free, counted)}, [Band("rfs", 0.5, 0.7)])
    assert weighted_share(free, counted, result.weights) == pytest.approx(0.5, abs=1e-6)
    assert np.allclose(result.weights[~counted], result.weights[-1])
    assert result.weights[~counted].sum() == pytest.approx(60 / (60 + 20 * np.sqrt(3)),
                                                         rel=1e-5)


def test_a_band_no_patient_can_reach_is_named_and_the_rest_still_weighted():
    nobody = np.zeros(100, dtype=bool)
    result = prevalence_weights(
        {"crs_any": (nobody, EVERYONE), "cr_rate": (_yes(30), EVERYONE)},
        [Band("crs_any", 0.6, 0.9), Band("cr_rate", 0.5, 0.6)])
    assert list(result.unreachable) == ["crs_any"]
    assert "every counted patient of the pool is a 'no'" in result.unreachable["crs_any"]
    assert [b.name for b in result.bands] == ["cr_rate"]
    assert weighted_share(_yes(30), EVERYONE, result.weights) == pytest.approx(0.5, abs=1e-6)


def test_a_band_that_cannot_be_met_with_the_ones_before_it_is_left_out_by_name():
    """The same patients are the yes of both readouts: 20-30 % and 60-70 % at once is
    impossible, though each alone is reachable; the first given wins."""
    yes = _yes(40)
    result = prevalence_weights({"orr": (yes, EVERYONE), "cr_rate": (yes, EVERYONE)},
                                [Band("orr", 0.2, 0.3), Band("cr_rate", 0.6, 0.7)])
    assert result.unreachable == {"cr_rate": "no weighting of the pool reaches it together "
                                  "with orr"}
    assert weighted_share(yes, EVERYONE, result.weights) == pytest.approx(0.3, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 3))
def test_weights_are_a_distribution_that_meets_every_reachable_band(seed, readouts):
    """Random pools of 60 patients and bands around a share some weighting reaches (a mix of
    two patients' groups): the weights are >= 0, sum to 1 and put each share in its band."""
    rng = np.random.default_rng(seed)
    shares, bands = {}, []
    target = rng.dirichlet(np.ones(60))  # some weighting: its shares are reachable together
    for k in range(readouts):
        yes, counted = rng.random(60) < rng.uniform(0.1, 0.9), rng.random(60) < 0.8
        counted[:2] = True
        yes[0], yes[1] = True, False  # each band reachable alone
        share = weighted_share(yes, counted, target)
        name = f"r{k}"
        shares[name] = (yes, counted)
        bands.append(Band(name, max(0.0, share - 0.05), min(1.0, share + 0.05)))
    result = prevalence_weights(shares, bands)
    assert (result.weights >= 0).all() and result.weights.sum() == pytest.approx(1.0)
    for band in bands:
        value = weighted_share(*shares[band.name], result.weights)
        assert band.low - 1e-6 <= value <= band.high + 1e-6
    assert 1.0 <= result.effective_size <= 60.0 + 1e-9


def test_property_shifts_name_the_property_the_weights_move():
    """Responders are the patients with many divisions: weighting up responders moves the
    divisions up and leaves an unrelated property where it was."""
    rng = np.random.default_rng(5)
    divisions = rng.uniform(5, 20, 400)
    unrelated = rng.lognormal(0, 1, 400)
    yes = divisions > 12
    result = prevalence_weights({"cr_rate": (yes, np.ones(400, dtype=bool))},
                                [Band("cr_rate", 0.7, 0.8)])
    shifts = property_shifts(pd.DataFrame({"unrelated": unrelated, "divisions": divisions}),
                             result.weights)
    assert shifts["property"].tolist() == ["divisions", "unrelated"]
    moved = shifts.iloc[0]
    # yes (> 12, mean 16) 53 % -> 70 %: the mean 12.5 -> 0.7 * 16 + 0.3 * 8.5 = 13.75, i.e.
    # +1.25 / 4.33 (the SD of uniform(5, 20)) = +0.29 SD; 0.06 covers the sample's spread
    assert moved["shift_sd"] == pytest.approx(0.29, abs=0.06)
    assert moved["weighted_median"] > moved["pool_median"]
    assert abs(shifts.iloc[1]["shift_sd"]) < 0.2
    assert bool(shifts.iloc[1]["log_scale"]) and not bool(moved["log_scale"])


def test_resampling_follows_the_weights_and_its_seed():
    weights = np.array([0.7, 0.1, 0.1, 0.1])
    drawn = resample(weights, 2000, seed=4)
    assert np.array_equal(drawn, resample(weights, 2000, seed=4))
    # binomial(2000, 0.7): sd ~20, so 1400 +- 80 is a 4-sd tolerance
    assert abs(np.count_nonzero(drawn == 0) - 1400) < 80


def test_published_readouts_take_their_interval_or_a_wilson_interval(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("readout,value,low,high,n,source\ncr_rate,0.81,0.71,0.89,75,x\n"
                    "crs_any,0.77,,,75,y\n", encoding="utf-8")
    cr, crs = read_published(path, "d.csv")
    assert (cr.low, cr.high) == (0.71, 0.89)
    # Wilson 95 % on 58/75 (0.773): 0.665-0.854
    assert crs.low == pytest.approx(0.665, abs=0.002) and crs.high == pytest.approx(0.854,
                                                                                     abs=0.002)
    assert cr.band(0.5).low == pytest.approx(0.76) and cr.band(0.5).high == pytest.approx(0.85)
    path.write_text("readout,value\ncrs_any,0.77\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"d.csv: line 2: crs_any needs low and high"):
        read_published(path, "d.csv")


def test_a_published_median_is_targeted_as_half_its_stratum_at_or_below_it(tmp_path):
    """Tmax median 10 days among 61 responders: the share of responders peaking by day 10
    must be one half, within the Wilson interval of 30.5/61 (0.378-0.622); non-responders
    and patients without a peak day are not counted."""
    path = tmp_path / "d.csv"
    path.write_text("readout,value,n,among,source\ncar_t_tmax_day,10,61,responders,label\n",
                    encoding="utf-8")
    (median,) = read_published(path, "d.csv")
    assert median.key == "car_t_tmax_day median (responders)" and median.share == 0.5
    assert (median.low, median.high) == pytest.approx((0.3783, 0.6217), abs=1e-4)
    assert (median.band(0.5).low, median.band(0.5).high) == pytest.approx((0.439, 0.561),
                                                                          abs=1e-3)
    patients = pd.DataFrame({"best_response": ["CR", "CR", "CR", "PD", "CR"],
                             "car_t_tmax_day": [6.0, 10.0, 14.0, 3.0, np.nan]})
    yes, counted = targeted_shares([median], patients, 12.0)[median.key]
    assert yes.tolist()[:4] == [True, True, False, True]
    assert counted.tolist() == [True, True, True, False, False]
    path.write_text("readout,value,n,among\ncar_t_tmax_day,10,61,everyone\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="a median needs among: one of responders, "
                       "non-responders, all"):
        read_published(path, "d.csv")


def _vpop_file(tmp_path: Path, data: str, patients: int = 12, extra: str = "") -> Path:
    (tmp_path / "d.csv").write_text(data, encoding="utf-8")
    path = tmp_path / "v.yaml"
    path.write_text(
        f"name: small_vpop\nmodel: {DATA / 'small_trial.yaml'}\ndata: d.csv\n"
        f"pool:\n  patients: {patients}\n  seed: 40\n  properties:\n"
        "    clinical.crs_susceptibility: {distribution: loguniform, low: 0.01, high: 100.0,"
        f" source: test}}\ncohort: 10\n{extra}", encoding="utf-8")
    return path


def test_a_readout_that_is_no_share_is_refused_naming_the_file(tmp_path, capsys):
    path = _vpop_file(tmp_path, "readout,value,low,high\ndor_median,0.5,0.4,0.6\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "d.csv: line 2: dor_median: not a share of patients" in err
    assert "Traceback" not in err


def test_a_folder_of_something_else_is_refused_and_left_alone(tmp_path, capsys):
    path = _vpop_file(tmp_path, "readout,value,low,high\ncrs_any,0.5,0.2,0.8\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "report.md").write_text("an earlier result", encoding="utf-8")
    assert main(["fit", str(path), "--out", str(other), "--workers", "1"]) == 2
    assert "exists and is not a virtual-population folder" in capsys.readouterr().err
    assert (other / "report.md").read_text(encoding="utf-8") == "an earlier result"
    assert sorted(p.name for p in other.iterdir()) == ["report.md"]


def test_cartsim_fit_weights_a_pool_writes_its_report_and_reruns_from_the_cache(
        tmp_path, capsys):
    path = _vpop_file(tmp_path, "readout,value,low,high,source\n"
                      "crs_any,0.5,0.2,0.8,test\ncrs_grade3,0.1,0.02,0.3,test\n",
                      extra="check: true\n")
    assert main(["validate", str(path)]) == 0
    assert "ok: virtual population small_vpop: a pool of 12 patients" in capsys.readouterr().out
    out = tmp_path / "out"
    assert main(["fit", str(path), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "pool: 12 patients (0 cached, 12 simulated now, 0 failed)" in printed
    weights = pd.read_csv(out / "weights.csv")
    assert len(weights) == 12 and weights["weight"].sum() == pytest.approx(1.0, abs=1e-5)
    shares = [(weights["crs_grade"] >= 1), (weights["crs_grade"] >= 3)]
    for share, (low, high) in zip(shares, [(0.35, 0.65), (0.06, 0.2)], strict=True):
        assert low - 1e-4 <= weights.loc[share, "weight"].sum() <= high + 1e-4
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "effective sample size" in report and "| CRS any grade | 50 % [20 %, 80 %]" in report
    assert "`clinical.crs_susceptibility`" in report
    for png in ("vpop.png", "cohort/trial.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "cohort" / "trial.md").is_file()
    # the drawn cohort again, with seeds the pool never used: its own folder and columns
    (check,) = out.glob("check_*")
    fresh = pd.read_csv(check / "patients.csv")
    drawn = pd.read_csv(out / "cohort" / "patients.csv")
    assert len(fresh) == len(drawn) and not set(fresh["seed"]) & set(weights["seed"])
    assert "fresh seeds (95 % CI, n) | inside |" in report
    first = (out / "weights.csv").read_bytes()
    assert main(["fit", str(path), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert "(12 cached, 0 simulated now" in capsys.readouterr().out
    assert (out / "weights.csv").read_bytes() == first


def test_the_shipped_virtual_population_validates(capsys):
    path = Path(__file__).parent.parent / "configs" / "vpop" / "eliana.yaml"
    assert main(["validate", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "ok: virtual population eliana_vpop: a pool of 600 patients" in printed
    assert "car_t_tmax_day median (responders)" in printed
