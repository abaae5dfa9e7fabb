"""The notebooks run top to bottom (CARTSIM_QUICK=1: small lattices, few replicates), every
claim of their text checked by an ``assert`` cell; they are stored without outputs; and the
rendered copies in docs/notebooks/ (full mode, with outputs: ``python docs/render_notebooks.py``)
were made from the current sources."""

from __future__ import annotations

import os
import time

import pytest
from conftest import REPO_ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
RENDERED = REPO_ROOT / "docs" / "notebooks"
NAMES = ["01_quickstart.ipynb", "02_blood_vs_solid.ipynb", "03_sweeps_and_sensitivity.ipynb"]
#: per cell: the first simulation of a test session compiles the numba kernels (~25-60 s)
CELL_TIMEOUT_S = 300


def _outputs(notebook, output_type: str | None = None) -> list:
    return [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
            if output_type is None or o.output_type == output_type]


def _images(notebook) -> int:
    return sum("image/png" in o.get("data", {}) for o in _outputs(notebook))


def _cells(notebook) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in notebook.cells]


def test_there_are_three_notebooks():
    assert [p.name for p in NOTEBOOKS] == NAMES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, monkeypatch):
    """Quick mode, top to bottom: a failing ``assert`` (a sentence of the text the numbers no
    longer support) fails the test."""
    monkeypatch.setenv("CARTSIM_QUICK", "1")
    monkeypatch.setenv("NUMBA_CACHE_DIR", os.environ["NUMBA_CACHE_DIR"])
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    print(f"{path.name}: {elapsed:.1f} s")
    assert not _outputs(notebook, "error")
    assert _images(notebook) >= 2
    # the claims are checked in the notebook itself: the assert cells must be there
    asserts = sum(c.source.count("assert ") for c in notebook.cells if c.cell_type == "code")
    assert asserts >= 5, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_rendered_copy_is_current(path):
    """docs/notebooks/ holds each notebook executed in full mode, with its figures and no
    errors, made from the current source: re-render (python docs/render_notebooks.py NAME)
    after editing a notebook."""
    rendered = RENDERED / path.name
    assert rendered.exists(), f"no {rendered.relative_to(REPO_ROOT)}: run docs/render_notebooks.py"
    copy = nbformat.read(rendered, as_version=4)
    source = nbformat.read(path, as_version=4)
    assert _cells(copy) == _cells(source), (
        f"{rendered.relative_to(REPO_ROOT)} was made from another version of {path.name}: "
        f"run python docs/render_notebooks.py {path.stem}")
    assert copy.metadata["cartsim"]["mode"] == "full"
    code = [c for c in copy.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "not executed to the end"
    assert not _outputs(copy, "error")
    assert _images(copy) >= 2
    assert rendered.stat().st_size < 2_000_000, "keep the rendered copies small (figure dpi)"


def test_every_cartsim_figure_shows_in_jupyter_without_magic(monkeypatch):
    """A session's first figure loads the inline backend inside the plotting style's
    rc_context; its exit used to switch `interactive` off again, so no later figure showed.
    Importing the sweep report used to switch the session to Agg (no figure at all)."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", os.environ["NUMBA_CACHE_DIR"])
    study = REPO_ROOT / "tests" / "data" / "small_study.yaml"
    cells = [f"import simulation\nres = simulation.run({str(study)!r}, replicates=1, days=1, "
             "workers=1, progress=False)",
             "res.plot();", "res.plot_car_t_kinetics();",
             "import simulation.study.report\nres.plot_waterfall();"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    shown = [sum("image/png" in o.get("data", {}) for o in cell.outputs)
             for cell in notebook.cells]
    assert shown == [0, 1, 1, 1]
