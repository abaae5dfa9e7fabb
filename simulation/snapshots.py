"""Lattice snapshots (compressed .npz files) and animations made from them.

A snapshot is three uint8 arrays of shape (ny, nx), enough to redraw the lattice picture:

* ``cell_type``: ``constants.EMPTY / CANCER / NORMAL / CAR_T``;
* ``antigen_class``: 0 antigen-negative, 1 low (below the CAR half-max density), 2 high;
* ``car_t_state``: ``constants.EFFECTOR / EXHAUSTED`` on CAR-T sites, 0 elsewhere;

plus scalars ``time_days, step, tumor_cells, car_t_cells, spacing_um, scenario``. A 200x200
snapshot is ~5-20 kB on disk.

    from simulation import CarTModel
    from simulation.snapshots import record_snapshots, animate

    model = CarTModel("configs/gbm_solid.yaml", seed=1)
    record_snapshots(model, "snaps/gbm", every_h=12)
    animate("snaps/gbm")            # snaps/gbm/animation.mp4 (ffmpeg) or .gif (Pillow)

or ``cartsim animate snaps/gbm`` (``--record CONFIG`` runs and records first).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .constants import CANCER, CAR_T, NORMAL
from .units import MIN_PER_DAY, MIN_PER_H

ANTIGEN_NEGATIVE = 0
ANTIGEN_LOW = 1
ANTIGEN_HIGH = 2
SNAPSHOT_PATTERN = "snapshot_*.npz"

#: (cell_type, antigen_class, car_t_state) -> site class code of ``plotting.SITE_CLASSES``
_CLASS_TABLE = np.zeros((4, 3, 2), dtype=np.uint8)
_CLASS_TABLE[CANCER, ANTIGEN_HIGH, :] = 1
_CLASS_TABLE[CANCER, ANTIGEN_LOW, :] = 2
_CLASS_TABLE[CANCER, ANTIGEN_NEGATIVE, :] = 3
_CLASS_TABLE[NORMAL, ANTIGEN_LOW:, :] = 4
_CLASS_TABLE[NORMAL, ANTIGEN_NEGATIVE, :] = 5
_CLASS_TABLE[CAR_T, :, 0] = 6
_CLASS_TABLE[CAR_T, :, 1] = 7


def site_classes(cell_type: np.ndarray, antigen_class: np.ndarray,
                 car_t_state: np.ndarray) -> np.ndarray:
    """Site-class codes (``plotting.SITE_CLASSES``) from the three snapshot arrays."""
    state = np.minimum(np.asarray(car_t_state), 1)
    return _CLASS_TABLE[np.asarray(cell_type), np.minimum(np.asarray(antigen_class), 2), state]


def antigen_classes(antigen: np.ndarray, half_max: float) -> np.ndarray:
    """0 (no antigen), 1 (below ``half_max``) or 2 (at or above it), as uint8."""
    classes = np.zeros(antigen.shape, dtype=np.uint8)
    classes[antigen > 0] = ANTIGEN_LOW
    classes[antigen >= half_max] = ANTIGEN_HIGH
    return classes


def lattice_snapshot(model) -> dict[str, np.ndarray]:
    """The current lattice of a ``CarTModel`` as snapshot arrays (2D lattices)."""
    lattice = model.lattice
    cell_type = lattice.grid("cell_type").copy()
    half_max = model.config.car_t.antigen_half_max_molecules_per_cell
    car_t_state = np.where(cell_type == CAR_T, lattice.grid("car_t_state"), 0).astype(np.uint8)
    return {
        "cell_type": cell_type,
        "antigen_class": antigen_classes(lattice.grid("antigen"), half_max),
        "car_t_state": car_t_state,
        "time_days": np.float64(model.time_min / MIN_PER_DAY),
        "step": np.int64(model.step_index),
        "tumor_cells": np.int64(np.count_nonzero(cell_type == CANCER)),
        "car_t_cells": np.int64(np.count_nonzero(cell_type == CAR_T)),
        "spacing_um": np.float64(lattice.spacing_um),
        "scenario": np.str_(model.config.name),
    }


def save_snapshot(snapshot: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write one snapshot with ``np.savez_compressed``."""
    path = Path(path)
    np.savez_compressed(path, **snapshot)
    return path


def load_snapshot(path: str | Path) -> dict[str, np.ndarray]:
    """Read a snapshot file back (arrays, and scalars as 0-d arrays)."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def snapshot_files(folder: str | Path) -> list[Path]:
    """The snapshot files of a folder, in time order."""
    return sorted(Path(folder).glob(SNAPSHOT_PATTERN))


def record_snapshots(model, folder: str | Path, every_h: float = 12.0,
                     max_days: float | None = None) -> list[Path]:
    """Step ``model`` to its end (or ``max_days``), saving a snapshot every ``every_h`` hours.

    Snapshots are taken at t = 0, every ``every_h`` hours and at the last step, into ``folder``
    (created) as ``snapshot_<step>.npz``. Returns the files written.
    """
    if every_h <= 0:
        raise ValueError("every_h must be > 0")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    every_steps = max(1, round(every_h * MIN_PER_H / model.dt_min))
    end_step = None if max_days is None else round(max_days * MIN_PER_DAY / model.dt_min)

    def save() -> Path:
        return save_snapshot(lattice_snapshot(model),
                             folder / f"snapshot_{model.step_index:08d}.npz")

    written = [save()]
    while model.running and (end_step is None or model.step_index < end_step):
        model.step()
        if model.step_index % every_steps == 0:
            written.append(save())
    if written[-1].name != f"snapshot_{model.step_index:08d}.npz":
        written.append(save())
    return written


def _iter_snapshots(files: list[Path]) -> Iterator[dict[str, np.ndarray]]:
    for path in files:
        yield load_snapshot(path)


def ffmpeg_available() -> bool:
    """True if matplotlib can write MP4 through an ffmpeg executable."""
    import matplotlib.animation as animation

    return shutil.which("ffmpeg") is not None and animation.writers.is_available("ffmpeg")


def animate(folder: str | Path, out: str | Path | None = None, fps: float = 6.0,
            fmt: str = "auto", dpi: int = 100) -> Path:
    """An animation of the snapshots in ``folder``: lattice frames with a burden inset.

    ``fmt``: ``"mp4"`` (needs ffmpeg), ``"gif"`` (Pillow), or ``"auto"``: MP4 if ffmpeg is
    installed, else GIF. ``out`` defaults to ``folder/animation.<fmt>``. One frame per snapshot.
    """
    import matplotlib.animation as animation
    import matplotlib.pyplot as plt

    from .plotting import STYLE, plot_snapshot

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
    # the burden inset: counts of every frame, read once
    frames = list(_iter_snapshots(files))
    days = np.array([float(f["time_days"]) for f in frames])
    tumor = np.array([int(f["tumor_cells"]) for f in frames])
    car_t = np.array([int(f["car_t_cells"]) for f in frames])

    with plt.rc_context(STYLE):
        fig = plot_snapshot(frames[0])
        fig.set_size_inches(9.0, 5.4)
        ax = fig.axes[0]
        image = ax.images[0]
        inset = ax.inset_axes((1.12, 0.0, 0.5, 0.33))
        inset.plot(days, tumor, color="#D55E00", lw=1.2, label="cancer")
        inset.plot(days, car_t, color="#0072B2", lw=1.2, label="CAR-T")
        inset.set_yscale("symlog", linthresh=1.0)
        inset.set_xlabel("time (days)", fontsize=8)
        inset.set_ylabel("cells (log)", fontsize=8)
        inset.tick_params(labelsize=7)
        inset.legend(fontsize=7, loc="upper right")
        cursor = inset.axvline(days[0], color="0.3", lw=1)
        marks = inset.plot([days[0], days[0]], [tumor[0], car_t[0]], "o", ms=3, color="0.2")[0]

        def update(i: int):
            from .plotting import _snapshot_classes

            image.set_data(_snapshot_classes(frames[i]))
            ax.set_title(f"{frames[i]['scenario']}, day {days[i]:.1f}: {tumor[i]} cancer, "
                         f"{car_t[i]} CAR-T")
            cursor.set_xdata([days[i], days[i]])
            marks.set_data([days[i], days[i]], [tumor[i], car_t[i]])
            return image, cursor, marks

        anim = animation.FuncAnimation(fig, update, frames=len(frames), blit=False,
                                       repeat=False)
        writer = (animation.FFMpegWriter(fps=fps, codec="libx264",
                                         extra_args=["-pix_fmt", "yuv420p"])
                  if fmt == "mp4" else animation.PillowWriter(fps=fps))
        anim.save(out, writer=writer, dpi=dpi)
        plt.close(fig)
    return out
