"""Golden outputs: refactors keep the numbers byte for byte.

``tests/golden/`` holds the tables of small studies: ``golden_study.yaml`` (a blood cancer, a solid tumour with
every field, and a 3D spheroid, 2 seeds each; its 3D final lattice as ``.vti``) and the killing
assay of ``tests/data/small_assay.yaml`` (under ``assay/``). Each test runs the study through
the CLI, as a user would, and compares the files byte for byte. A change that is meant to move
numbers regenerates these files in the same commit and says why (``git log tests/golden`` lists
each regeneration and its reason).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simulation.cli import main

GOLDEN = Path(__file__).parent / "golden"
DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("study, golden, files, workers", [
    (GOLDEN / "golden_study.yaml", GOLDEN,
     ("timeseries.csv", "summary.csv", "small_spheroid_3d_final.vti"), "1"),
    # two worker processes: the process pool gives the same bytes as one process
    (DATA / "small_assay.yaml", GOLDEN / "assay",
     ("timeseries.csv", "summary.csv", "assay.csv", "assay_endpoints.csv"), "2"),
], ids=["study", "assay"])
def test_outputs_are_byte_identical_to_the_golden_copies(tmp_path, study, golden, files,
                                                         workers):
    out = tmp_path / "out"
    assert main(["run", str(study), "--out", str(out), "--quiet", "--workers", workers]) == 0
    for name in files:
        assert (out / name).read_bytes() == (golden / name).read_bytes(), name
