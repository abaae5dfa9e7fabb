"""Lattice snapshots (compressed .npz files) and animations made from them.

A snapshot holds uint8 arrays of shape (ny, nx), or (nz, ny, nx) for a 3D lattice, enough to
redraw the lattice picture:

* ``cell_type``: ``constants.EMPTY / CANCER / NORMAL / CAR_T / NECROTIC``;
* ``antigen_class``: 0 antigen-negative, 1 low (below the CAR half-max density), 2 high;
* ``car_t_state``: ``constants.EFFECTOR / EXHAUSTED / MEMORY`` on CAR-T sites, 0 elsewhere;
* ``tissue``: ``constants.TISSUE_OPEN / TISSUE_STROMA / TISSUE_VESSEL``;
* the fields of ``SNAPSHOT_FIELDS`` (oxygen in mmHg, suppressive factor in a.u.), each stored
  uint8-quantised as ``<name>_u8`` (0-255, linear) with ``<name>_max`` (the value of code 255,
  float64), so the value is ``code / 255 * max``: a resolution of max / 255 (0.15 mmHg of
  oxygen at 38 mmHg), at a quarter of float32's size and compressing far better;

plus scalars ``time_days, step, tumor_cells, car_t_cells, necrotic_cells, spacing_um,
necrosis_threshold_mmhg, scenario``. A 200x200 glioblastoma snapshot is ~50 kB on disk:
~15 kB of cells and tissue, ~35 kB for the two fields (float16 fields would take ~110 kB).
Files written before tissue and fields existed load as before: they draw as open tissue and
have no fields (``snapshot_field`` gives None).

    from simulation import CarTModel
    from simulation.io.snapshots import record_snapshots, animate

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

from ..engine.constants import (
    CANCER,
    CAR_T,
    EFFECTOR,
    EXHAUSTED,
    MEMORY,
    N_CELL_TYPES,
    NECROTIC,
    NORMAL,
    TISSUE_OPEN,
    TISSUE_STROMA,
    TISSUE_VESSEL,
)
from ..engine.lattice import NORMOXIA_MMHG
from ..engine.units import MIN_PER_DAY, MIN_PER_H

ANTIGEN_NEGATIVE = 0
ANTIGEN_LOW = 1
ANTIGEN_HIGH = 2
SNAPSHOT_PATTERN = "snapshot_*.npz"

# ---- site classes: the codes of lattice pictures (``plotting.SITE_CLASSES`` gives each its
# label and colour, in this order). Codes are stable: saved pictures and the view use them;
# a new class gets the next code.
SITE_EMPTY = 0
SITE_CANCER_HIGH = 1
SITE_CANCER_LOW = 2
SITE_CANCER_NEGATIVE = 3
SITE_NORMAL_POSITIVE = 4
SITE_NORMAL_NEGATIVE = 5
SITE_CAR_T_EFFECTOR = 6
SITE_CAR_T_EXHAUSTED = 7
SITE_CAR_T_MEMORY = 8
SITE_NECROTIC = 9
SITE_STROMA = 10  # stroma with no cell on it (a cell on stroma shows as the cell)
SITE_VESSEL = 11
N_SITE_CLASSES = 12

#: diffusing fields saved in snapshots, with their units
SNAPSHOT_FIELDS = {"oxygen": "mmHg", "suppression": "a.u."}
#: the value of a field that is not solved (``FieldConfig.enabled: false``)
FIELD_NEUTRAL = {"oxygen": NORMOXIA_MMHG, "suppression": 0.0}
_N_TISSUES = 3
_N_ANTIGEN_CLASSES = 3
_N_CAR_T_STATES = 3


def _class_table() -> np.ndarray:
    """(tissue, cell_type, antigen_class, car_t_state) -> site-class code, as uint8."""
    table = np.zeros((_N_TISSUES, N_CELL_TYPES, _N_ANTIGEN_CLASSES, _N_CAR_T_STATES), np.uint8)
    cells = table[TISSUE_OPEN]
    cells[CANCER, ANTIGEN_HIGH] = SITE_CANCER_HIGH
    cells[CANCER, ANTIGEN_LOW] = SITE_CANCER_LOW
    cells[CANCER, ANTIGEN_NEGATIVE] = SITE_CANCER_NEGATIVE
    cells[NORMAL, ANTIGEN_LOW:] = SITE_NORMAL_POSITIVE
    cells[NORMAL, ANTIGEN_NEGATIVE] = SITE_NORMAL_NEGATIVE
    cells[CAR_T, :, EFFECTOR] = SITE_CAR_T_EFFECTOR
    cells[CAR_T, :, EXHAUSTED] = SITE_CAR_T_EXHAUSTED
    cells[CAR_T, :, MEMORY] = SITE_CAR_T_MEMORY
    cells[NECROTIC] = SITE_NECROTIC
    table[TISSUE_STROMA] = np.where(cells == SITE_EMPTY, SITE_STROMA, cells)
    table[TISSUE_VESSEL] = SITE_VESSEL  # vessels never hold a cell
    return table


_CLASS_TABLE = _class_table()


def site_classes(cell_type: np.ndarray, antigen_class: np.ndarray, car_t_state: np.ndarray,
                 tissue: np.ndarray | None = None) -> np.ndarray:
    """Site-class codes (``SITE_*``, legend ``plotting.SITE_CLASSES``) from snapshot arrays.

    ``tissue`` (``TISSUE_*`` codes) None means open tissue everywhere (old snapshots).
    """
    cell_type = np.asarray(cell_type)
    tissue = np.zeros_like(cell_type) if tissue is None else np.asarray(tissue)
    return _CLASS_TABLE[np.minimum(tissue, _N_TISSUES - 1), cell_type,
                        np.minimum(np.asarray(antigen_class), _N_ANTIGEN_CLASSES - 1),
                        np.minimum(np.asarray(car_t_state), _N_CAR_T_STATES - 1)]


def antigen_classes(antigen: np.ndarray, half_max: float) -> np.ndarray:
    """0 (no antigen), 1 (below ``half_max``) or 2 (at or above it), as uint8."""
    classes = np.zeros(antigen.shape, dtype=np.uint8)
    classes[antigen > 0] = ANTIGEN_LOW
    classes[antigen >= half_max] = ANTIGEN_HIGH
    return classes


def lattice_site_arrays(model) -> dict[str, np.ndarray]:
    """The inputs of ``site_classes`` for a ``CarTModel``'s lattice now, as new uint8 arrays
    (``cell_type, antigen_class, car_t_state, tissue``), shaped like ``lattice.grid``."""
    lattice = model.lattice
    cell_type = lattice.grid("cell_type").copy()
    half_max = model.config.car_t.antigen_half_max_molecules_per_cell
    car_t_state = np.where(cell_type == CAR_T, lattice.grid("car_t_state"), 0).astype(np.uint8)
    return {
        "cell_type": cell_type,
        "antigen_class": antigen_classes(lattice.grid("antigen"), half_max),
        "car_t_state": car_t_state,
        "tissue": lattice.grid("tissue").copy(),
    }


def quantise_field(values: np.ndarray) -> tuple[np.ndarray, np.float64]:
    """(uint8 codes, value of code 255) of a non-negative field: ``code = round(255 v / max)``.

    A field that is zero everywhere gets max 0 (all codes 0).
    """
    values = np.asarray(values, dtype=np.float64)
    top = float(values.max()) if values.size else 0.0
    if not top > 0.0:
        return np.zeros(values.shape, dtype=np.uint8), np.float64(0.0)
    codes = np.rint(np.clip(values, 0.0, top) * (255.0 / top)).astype(np.uint8)
    return codes, np.float64(top)


def snapshot_field(snapshot, name: str) -> np.ndarray | None:
    """Field ``name`` of a snapshot as float32 in its unit (``SNAPSHOT_FIELDS``), or None if
    the snapshot has no such field (e.g. a file from before fields were saved)."""
    if f"{name}_u8" not in snapshot:
        return None
    codes = np.asarray(snapshot[f"{name}_u8"])
    top = float(np.asarray(snapshot[f"{name}_max"]))
    return codes.astype(np.float32) * np.float32(top / 255.0)


def lattice_snapshot(model) -> dict[str, np.ndarray]:
    """The current lattice of a ``CarTModel`` as snapshot arrays (2D or 3D)."""
    lattice = model.lattice
    snapshot = lattice_site_arrays(model)
    for name in SNAPSHOT_FIELDS:
        snapshot[f"{name}_u8"], snapshot[f"{name}_max"] = quantise_field(lattice.grid(name))
    cell_type = snapshot["cell_type"]
    snapshot.update({
        "time_days": np.float64(model.time_min / MIN_PER_DAY),
        "step": np.int64(model.step_index),
        "tumor_cells": np.int64(np.count_nonzero(cell_type == CANCER)),
        "car_t_cells": np.int64(np.count_nonzero(cell_type == CAR_T)),
        "necrotic_cells": np.int64(np.count_nonzero(cell_type == NECROTIC)),
        "spacing_um": np.float64(lattice.spacing_um),
        "necrosis_threshold_mmhg": np.float64(
            model.config.microenvironment.oxygen.necrosis_threshold_mmhg),
        "scenario": np.str_(model.config.name),
    })
    return snapshot


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

    from ..viz.plotting import (STYLE, _site_class_array, _spacing_um, plot_snapshot, slice_label,
                           tumour_slice_z)

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
        fig = plot_snapshot(frames[0])  # a 3D run: the slice through the day-0 tumour ...
        first = _site_class_array(frames[0])
        plane_z = tumour_slice_z(first) if first.ndim == 3 else None  # ... in every frame
        plane_note = ("" if plane_z is None
                      else f", {slice_label(plane_z, _spacing_um(frames[0]))}")
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
            classes = _site_class_array(frames[i])
            image.set_data(classes if plane_z is None else classes[plane_z])
            ax.set_title(f"{frames[i]['scenario']}, day {days[i]:.1f}: {tumor[i]} cancer, "
                         f"{car_t[i]} CAR-T{plane_note}")
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
