"""Animations of lattice snapshots (``simulation.io.snapshots``): MP4 or GIF.

    from simulation.viz.animation import animate

    animate("snaps/gbm")            # snaps/gbm/animation.mp4 (ffmpeg) or .gif (Pillow)

or ``cartsim animate snaps/gbm`` (``--record CONFIG`` runs and records first).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import matplotlib.animation as animation
import matplotlib.pyplot as plt
import numpy as np

from ..io.snapshots import SNAPSHOT_PATTERN, load_snapshot, snapshot_files
from .lattice_plots import (plot_snapshot, site_class_array, site_legend_handles, slice_label,
                            snapshot_spacing_um, tumour_slice_z)
from .style import STYLE


def _iter_snapshots(files: list[Path]) -> Iterator[dict[str, np.ndarray]]:
    for path in files:
        yield load_snapshot(path)


def _frame_layout() -> tuple[plt.Figure, plt.Axes, plt.Axes]:
    """(figure, lattice axes, counts axes): the lattice fills the left two thirds of the frame
    at full height; the right column holds the fixed site legend above the counts over time,
    each in its own axes, so no label overlaps another."""
    fig = plt.figure(figsize=(10.0, 6.0), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=(2.0, 1.0), height_ratios=(1.25, 1.0))
    ax = fig.add_subplot(grid[:, 0])
    legend_ax = fig.add_subplot(grid[0, 1])
    legend_ax.axis("off")
    legend_ax.legend(handles=site_legend_handles(), loc="center left", fontsize=7,
                     title="site", title_fontsize=8, alignment="left", borderaxespad=0.0)
    return fig, ax, fig.add_subplot(grid[1, 1])


def ffmpeg_available() -> bool:
    """True if matplotlib can write MP4 through an ffmpeg executable."""
    return shutil.which("ffmpeg") is not None and animation.writers.is_available("ffmpeg")


def animate(folder: str | Path, out: str | Path | None = None, fps: float = 6.0,
            fmt: str = "auto", dpi: int = 100) -> Path:
    """An animation of the snapshots in ``folder``: the lattice (most of the frame) beside the
    site legend and the cancer and CAR-T counts over time, a cursor on the current frame.

    ``fmt``: ``"mp4"`` (needs ffmpeg), ``"gif"`` (Pillow), or ``"auto"``: MP4 if ffmpeg is
    installed, else GIF. ``out`` defaults to ``folder/animation.<fmt>``. One frame per snapshot.
    """
    files = snapshot_files(folder)
    if not files:
        raise FileNotFoundError(f"{folder}: no {SNAPSHOT_PATTERN} files")
    if fmt == "auto":
        fmt = "mp4" if ffmpeg_available() else "gif"
    if fmt not in ("mp4", "gif"):
        raise ValueError(f"fmt must be 'auto', 'mp4' or 'gif', not {fmt!r}")
    if fmt == "mp4" and not ffmpeg_available():
        raise RuntimeError("MP4 needs ffmpeg on PATH; install it or use fmt='gif'")
    out = Path(out) if out is not None else Path(folder) / f"animation.{fmt}"
    # the counts panel: counts of every frame, read once
    frames = list(_iter_snapshots(files))
    days = np.array([float(f["time_days"]) for f in frames])
    tumor = np.array([int(f["tumor_cells"]) for f in frames])
    car_t = np.array([int(f["car_t_cells"]) for f in frames])

    with plt.rc_context(STYLE):
        fig, ax, counts_ax = _frame_layout()
        plot_snapshot(frames[0], ax=ax, legend=False, title="")  # a 3D run: the slice through
        first = site_class_array(frames[0])  # the day-0 tumour ... (plot_snapshot's choice)
        plane_z = tumour_slice_z(first) if first.ndim == 3 else None  # ... in every frame
        plane_note = ("" if plane_z is None
                      else f", {slice_label(plane_z, snapshot_spacing_um(frames[0]))}")
        image = ax.images[0]
        counts_ax.plot(days, tumor, color="#D55E00", lw=1.5, label="cancer")
        counts_ax.plot(days, car_t, color="#0072B2", lw=1.5, label="CAR-T")
        counts_ax.set_yscale("symlog", linthresh=1.0)  # linear below 1 cell: 0 stays on it
        counts_ax.set_ylim(bottom=0)
        counts_ax.set_xlabel("simulation day", fontsize=8)
        counts_ax.set_ylabel("cells on the lattice (count)", fontsize=8)
        counts_ax.tick_params(labelsize=7)
        counts_ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2,
                         borderaxespad=0.2)
        cursor = counts_ax.axvline(days[0], color="0.3", lw=1)
        marks = counts_ax.plot([days[0], days[0]], [tumor[0], car_t[0]], "o", ms=3,
                               color="0.2")[0]
        title = fig.suptitle("", fontsize=11)

        def update(i: int):
            classes = site_class_array(frames[i])
            image.set_data(classes if plane_z is None else classes[plane_z])
            title.set_text(f"{frames[i]['scenario']}, day {days[i]:.1f}: {tumor[i]} cancer, "
                           f"{car_t[i]} CAR-T{plane_note}")
            cursor.set_xdata([days[i], days[i]])
            marks.set_data([days[i], days[i]], [tumor[i], car_t[i]])
            return image, cursor, marks, title

        anim = animation.FuncAnimation(fig, update, frames=len(frames), blit=False,
                                       repeat=False)
        writer = (animation.FFMpegWriter(fps=fps, codec="libx264",
                                         extra_args=["-pix_fmt", "yuv420p"])
                  if fmt == "mp4" else animation.PillowWriter(fps=fps))
        anim.save(out, writer=writer, dpi=dpi)
        plt.close(fig)
    return out
