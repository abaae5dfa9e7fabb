"""Lattice snapshots: compressed .npz files of the lattice at chosen times.

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
    from simulation.execution.runner import record_snapshots

    model = CarTModel("configs/gbm_solid.yaml", seed=1)
    record_snapshots(model, "snaps/gbm", every_h=12)

``simulation.viz.animation.animate("snaps/gbm")`` (or ``cartsim animate snaps/gbm``) makes a
movie of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engine.constants import (
    ANTIGEN_HIGH,
    ANTIGEN_LOW,
    ANTIGEN_NEGATIVE,
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
from ..engine.kernel import antigen_classes
from ..engine.lattice import NORMOXIA_MMHG
from ..engine.units import MIN_PER_DAY

SNAPSHOT_PATTERN = "snapshot_*.npz"

# ---- site classes: the codes of lattice pictures (``viz.lattice_plots.SITE_CLASSES`` gives
# each its label and colour, in this order). Codes are stable: saved pictures and the view use
# them; a new class gets the next code.
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
    """Site-class codes (``SITE_*``, legend ``lattice_plots.SITE_CLASSES``) from snapshot arrays.

    ``tissue`` (``TISSUE_*`` codes) None means open tissue everywhere (old snapshots).
    """
    cell_type = np.asarray(cell_type)
    tissue = np.zeros_like(cell_type) if tissue is None else np.asarray(tissue)
    return _CLASS_TABLE[np.minimum(tissue, _N_TISSUES - 1), cell_type,
                        np.minimum(np.asarray(antigen_class), _N_ANTIGEN_CLASSES - 1),
                        np.minimum(np.asarray(car_t_state), _N_CAR_T_STATES - 1)]


def lattice_site_arrays(model) -> dict[str, np.ndarray]:
    """The inputs of ``site_classes`` for a ``CarTModel``'s lattice now, as new uint8 arrays
    (``cell_type, antigen_class, car_t_state, tissue``), shaped like ``lattice.grid``."""
    lattice = model.lattice
    cell_type = lattice.grid("cell_type").copy()
    car_t_state = np.where(cell_type == CAR_T, lattice.grid("car_t_state"), 0).astype(np.uint8)
    return {
        "cell_type": cell_type,
        "antigen_class": antigen_classes(lattice.cells, lattice.extra, model.params).reshape(
            cell_type.shape),
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


def snapshot_file_name(snapshot: dict[str, np.ndarray]) -> str:
    """``snapshot_<step>.npz``: file names that sort in time order."""
    return f"snapshot_{int(snapshot['step']):08d}.npz"


def snapshot_files(folder: str | Path) -> list[Path]:
    """The snapshot files of a folder, in time order."""
    return sorted(Path(folder).glob(SNAPSHOT_PATTERN))
