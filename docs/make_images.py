"""Regenerate the README images from a real run (never edit docs/img by hand).

    python docs/make_images.py        # runs configs/blood_vs_solid.yaml, ~1-2 min on 2 cores
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

with tempfile.TemporaryDirectory() as tmp:
    out = Path(tmp) / "run"
    subprocess.run([sys.executable, "-m", "simulation", "run",
                    str(ROOT / "configs" / "blood_vs_solid.yaml"), "--out", str(out), "--quiet"],
                   check=True)
    shutil.copy(out / "burden.png", ROOT / "docs" / "img" / "burden.png")
    print("wrote docs/img/burden.png")
