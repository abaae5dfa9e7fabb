"""The data the shipped fits use (configs/data/) are real measurements with a source on every
row; the one synthetic table is a labelled parameter-recovery example."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from simulation.config import read_yaml

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "configs" / "data"
FITS = ROOT / "configs" / "fits"


def is_synthetic(table: Path) -> bool:
    return "synthetic" in table.stem


@pytest.mark.parametrize("table", sorted(DATA.glob("*.csv")), ids=lambda p: p.name)
def test_every_published_row_names_its_source(table):
    if is_synthetic(table):
        pytest.skip("the labelled recovery example: simulated by docs/make_calibration.py")
    rows = pd.read_csv(table, comment="#")  # a table may open with lines on its source
    assert "source" in rows.columns, f"{table.name}: no source column"
    missing = rows.index[rows["source"].fillna("").str.strip().str.len() < 20].tolist()
    assert missing == [], f"{table.name}: rows {missing} name no source"


def test_the_virtual_populations_weight_to_published_data():
    vpops = sorted((ROOT / "configs" / "vpop").glob("*.yaml"))
    assert vpops
    for path in vpops:
        data = (path.parent / read_yaml(path, str(path))["data"]).resolve()
        assert data.parent == DATA and not is_synthetic(data), path.name


def test_only_the_recovery_example_fits_synthetic_data():
    fits = [(path, read_yaml(path, str(path))) for path in sorted(FITS.glob("*.yaml"))]
    fits = [(path, fit) for path, fit in fits if "data" in fit]
    synthetic = [path.name for path, fit in fits if is_synthetic(Path(fit["data"]))]
    assert synthetic == ["killing_assay_synthetic.yaml"]
    assert "synthetic" in read_yaml(FITS / synthetic[0], synthetic[0])["description"].lower()
    assert len(fits) >= 3  # the real-data fits exist beside it
