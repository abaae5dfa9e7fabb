"""The look of every cartsim figure: colours, the matplotlib style, saving without timestamps.

``PALETTE`` (Okabe-Ito, colour-blind safe), ``STYLE`` (rcParams applied per call by ``styled``,
so it never leaks into user code), ``RESPONSE_COLOURS`` / ``RESPONSE_NAMES``, ``save_figure``
(PNG, SVG or PDF; the same figure gives the same bytes), ``finish`` (save when given a path),
``series_colours``, ``figure_and_axes`` and ``wrapped`` legend labels. Importing it picks
matplotlib's backend (Agg outside Jupyter), so plotting modules import it first.
"""

from __future__ import annotations

import functools
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # Jupyter keeps its inline backend
    matplotlib.use("Agg")  # files, not windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..io.files import atomic_write  # noqa: E402

#: Okabe-Ito colour-blind-safe palette
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")

#: the one style of every cartsim figure (applied per call, so it never leaks into user code)
STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "savefig.dpi": 120,
    "svg.hashsalt": "cartsim",  # deterministic SVG ids
}

#: response classes (``outcomes.RESPONSES``) with their colours (also used by the waterfall)
RESPONSE_COLOURS = {"CR": "#009E73", "PR": "#56B4E9", "SD": "#E69F00", "PD": "#D55E00"}
RESPONSE_NAMES = {"CR": "complete response", "PR": "partial response", "SD": "stable disease",
                  "PD": "progressive disease"}

_SAVE_METADATA = {".png": {"Software": None}, ".svg": {"Date": None},
                  ".pdf": {"CreationDate": None, "ModDate": None}}


def styled(function):
    """Run a plotting function inside ``STYLE``.

    ``interactive`` keeps the value it has when the function returns: Jupyter's inline backend,
    loaded by a session's first figure, switches it on, and the context's exit would switch it
    off again, so that no later figure of the session would be shown.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            figure = function(*args, **kwargs)
            interactive = matplotlib.is_interactive()
        matplotlib.interactive(interactive)
        return figure

    return wrapper


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    """Save ``fig`` to ``path``: PNG if it has no suffix, else PNG, SVG or PDF by suffix.

    No timestamps or software versions are written, so identical figures give identical files.
    """
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    suffix = path.suffix.lower()
    if suffix not in _SAVE_METADATA:
        raise ValueError(f"{path}: unsupported figure format {suffix!r}; use .png, .svg or .pdf")
    with plt.rc_context(STYLE):
        fig.savefig(path, dpi=STYLE["savefig.dpi"], metadata=_SAVE_METADATA[suffix])
    return path


def write_figure(path: str | Path, draw: Callable[[Path], plt.Figure]) -> Path:
    """Write a figure file atomically and let its figure go: ``draw(tmp)`` saves into a
    temporary file beside ``path`` (same suffix), which then replaces ``path``
    (``io.files.atomic_write``); the figure is closed, so a batch writing many files keeps
    none of them open."""
    path = Path(path)
    atomic_write(path, lambda tmp: plt.close(draw(tmp)))
    return path


def finish(fig: plt.Figure, path: str | Path | None) -> plt.Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def series_colours(n: int) -> list:
    """``n`` distinct colours: the Okabe-Ito ``PALETTE`` for up to 8 series, then ``tab20``
    for up to 20, then ``viridis`` sampled evenly (no colour is ever reused)."""
    if n <= len(PALETTE):
        return list(PALETTE[:n])
    if n <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(n)]
    return [plt.get_cmap("viridis")(x) for x in np.linspace(0.0, 0.95, n)]


def figure_and_axes(ax: plt.Axes | None, size: tuple[float, float]):
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=size, constrained_layout=True)
    return fig, ax


#: characters per line of a long legend label (``wrapped``)
LEGEND_LINE_CHARACTERS = 90


def wrapped(label: str) -> str:
    """``label`` broken into lines of at most ``LEGEND_LINE_CHARACTERS`` (at spaces), the
    later lines indented, so that a legend below an axes stays within the figure."""
    return textwrap.fill(label, LEGEND_LINE_CHARACTERS, subsequent_indent="   ")
