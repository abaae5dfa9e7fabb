"""Execute the notebooks in full mode and store the copies with their outputs in docs/notebooks/.

    python docs/render_notebooks.py                 # all three (a few minutes each on 2 cores)
    python docs/render_notebooks.py 02_blood_vs_solid   # one (name with or without .ipynb)
    python docs/render_notebooks.py --quick --out /tmp/nb   # quick mode (CARTSIM_QUICK=1), to check

The notebooks under notebooks/ stay stored without outputs (tests/test_notebooks.py); the copies
here are what a reader sees on GitHub without running anything. Each copy records in its
metadata (``cartsim``) the mode, the run time and the commit of the source it was made from;
the test checks that its cells equal the source notebook's cells, so re-render after editing a
notebook. A cell that fails (an ``assert`` checking a sentence of the text, for instance) stops
the rendering and no copy is written.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "notebooks"
RENDERED = ROOT / "docs" / "notebooks"
#: figures in the stored copies: 80 dpi PNG keeps each copy at a few hundred kB
FIGURE_DPI = 80
#: a cell may run a whole study (full mode: a few minutes)
CELL_TIMEOUT_S = 1800


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _ipython_dir(folder: Path) -> Path:
    """An IPython profile whose inline figures are drawn at FIGURE_DPI (the notebook's own
    code is left as it is, so the copy's cells equal the source's)."""
    profile = folder / "profile_default"
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "ipython_kernel_config.py").write_text(
        f"c.InlineBackend.rc = {{'figure.dpi': {FIGURE_DPI}}}\n", encoding="utf-8")
    return folder


def render(source: Path, out_dir: Path, quick: bool = False) -> tuple[Path, float]:
    """Execute ``source`` (working directory: notebooks/) and write it with outputs to
    ``out_dir``; return the written path and the run time in seconds."""
    notebook = nbformat.read(source, as_version=4)
    env_before = {key: os.environ.get(key) for key in ("CARTSIM_QUICK", "IPYTHONDIR")}
    with tempfile.TemporaryDirectory(prefix="cartsim-render-") as tmp:
        if quick:
            os.environ["CARTSIM_QUICK"] = "1"
        else:
            os.environ.pop("CARTSIM_QUICK", None)
        os.environ["IPYTHONDIR"] = str(_ipython_dir(Path(tmp)))
        try:
            client = nbclient.NotebookClient(
                notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                resources={"metadata": {"path": str(source.parent)}})
            start = time.perf_counter()
            try:
                client.execute()
            except nbclient.exceptions.CellExecutionError:
                failed = Path(tempfile.gettempdir()) / f"{source.stem}.failed.ipynb"
                nbformat.write(notebook, failed)
                print(f"{source.name}: a cell failed; the notebook as far as it ran: {failed}",
                      file=sys.stderr)
                raise
            elapsed = time.perf_counter() - start
        finally:
            for key, value in env_before.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    notebook.metadata["cartsim"] = {"mode": "quick" if quick else "full",
                                    "run_time_s": round(elapsed, 1),
                                    "source": f"notebooks/{source.name}",
                                    "commit": _commit()}
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / source.name
    nbformat.write(notebook, target)
    return target, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebooks to render (default: all)")
    parser.add_argument("--quick", action="store_true", help="CARTSIM_QUICK=1 (small, fast)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"folder for the executed copies (default: {RENDERED})")
    args = parser.parse_args(argv)
    sources = sorted(SOURCES.glob("*.ipynb"))
    if args.names:
        wanted = {name.removesuffix(".ipynb") for name in args.names}
        sources = [s for s in sources if s.stem in wanted]
        missing = wanted - {s.stem for s in sources}
        if missing:
            parser.error(f"no such notebook: {', '.join(sorted(missing))}")
    if args.quick and args.out is None:
        parser.error("--quick needs --out: docs/notebooks/ holds the full-mode copies")
    out_dir = args.out or RENDERED
    for source in sources:
        target, elapsed = render(source, out_dir, quick=args.quick)
        size = target.stat().st_size / 1024
        print(f"{source.name}: {elapsed:.0f} s -> {target} ({size:.0f} kB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
