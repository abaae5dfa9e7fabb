"""The lattice state: one structured record per site, plus the lattice geometry."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .constants import (
    CELL_DTYPE,
    CELL_EXTRA_DTYPE,
    F_OXYGEN,
    FIELD_NAMES,
    N_FIELDS,
    NO_HEADING,
    TIMER_MAX,
    neighbour_offsets,
)

#: oxygen where no field is solved: the arterial / far-field partial pressure (mmHg;
#: PhysiCell default 38 mmHg), above every hypoxia threshold
NORMOXIA_MMHG = 38.0


@dataclass
class Lattice:
    """Per-site records of a lattice of ``shape = (nz, ny, nx)`` sites (``nz = 1`` in 2D).

    ``cells`` is flat (site ``x + nx * (y + ny * z)``) and contiguous, ready for the kernels;
    ``lattice.cells["antigen"]`` is a writable numpy view of one record field. ``extra`` holds
    the per-site data only some scenarios use (``CELL_EXTRA_DTYPE``: more antigens, priming):
    one record per site, or none at all (length 0). ``tissue`` is
    the fixed structure under the cells (``TISSUE_*`` codes: open, stroma, vessel) and
    ``fields`` the diffusing concentrations the cells sense, one row per ``FIELD_NAMES`` entry
    (oxygen in mmHg, the others in arbitrary units); oxygen starts at ``NORMOXIA_MMHG``.
    """

    shape: tuple[int, int, int]
    spacing_um: float
    offsets: np.ndarray  # (n_neighbours, 3) int64 columns dx, dy, dz
    cells: np.ndarray  # (n_sites,) CELL_DTYPE
    tissue: np.ndarray  # (n_sites,) uint8 TISSUE_* codes
    fields: np.ndarray  # (N_FIELDS, n_sites) float64 concentrations
    extra: np.ndarray  # (n_sites,) or (0,) CELL_EXTRA_DTYPE

    @classmethod
    def empty(cls, width: int, height: int, spacing_um: float, neighbourhood: str,
              depth: int | None = None, extra: bool = False) -> Lattice:
        """An empty lattice of ``width x height`` sites (2D) or ``width x height x depth``
        sites (3D, when ``depth`` is given) spaced ``spacing_um`` um apart; with ``extra``
        records if asked (several antigens, a priming receptor)."""
        dimensions = 2 if depth is None else 3
        shape = (1 if depth is None else int(depth), int(height), int(width))
        table = neighbour_offsets(dimensions, neighbourhood)
        offsets = np.zeros((table.shape[0], 3), dtype=np.int64)
        offsets[:, :dimensions] = table
        cells = np.zeros(shape[0] * shape[1] * shape[2], dtype=CELL_DTYPE)
        cells["heading"] = NO_HEADING
        cells["stamp"] = TIMER_MAX  # sweep numbers start at 0: no cell has acted yet
        fields = np.zeros((N_FIELDS, cells.shape[0]), dtype=np.float64)
        fields[F_OXYGEN] = NORMOXIA_MMHG
        return cls(shape=shape, spacing_um=float(spacing_um), offsets=offsets, cells=cells,
                   tissue=np.zeros(cells.shape[0], dtype=np.uint8), fields=fields,
                   extra=np.zeros(cells.shape[0] if extra else 0, dtype=CELL_EXTRA_DTYPE))

    @property
    def dimensions(self) -> int:
        """2 for a section (``nz == 1``), 3 for a block."""
        return 2 if self.shape[0] == 1 else 3

    @property
    def n_sites(self) -> int:
        """Number of lattice sites."""
        return self.cells.shape[0]

    @property
    def bytes_per_site(self) -> int:
        """Memory of the per-site state (cell record, tissue code, fields), bytes per site."""
        fields = self.fields.shape[0] * self.fields.itemsize
        extra = self.extra.itemsize if self.extra.size else 0
        return self.cells.itemsize + extra + self.tissue.itemsize + fields

    def antigen(self, slot: int) -> np.ndarray:
        """Writable view of the densities of antigen ``slot`` (0-2; molecules/cell) per site:
        slot 0 in ``cells``, slots 1 and 2 in ``extra``."""
        if slot == 0:
            return self.cells["antigen"]
        return self.extra[("antigen_b", "antigen_c")[slot - 1]]

    def grid(self, name: str) -> np.ndarray:
        """A record field, ``"tissue"`` or a diffusing field (``FIELD_NAMES``) shaped (ny, nx)
        in 2D or (nz, ny, nx) in 3D, for plots and inspection."""
        if name == "tissue":
            values = self.tissue
        elif name in FIELD_NAMES:
            values = self.fields[FIELD_NAMES.index(name)]
        else:
            values = self.cells[name]
        return self.as_grid(values)

    def as_grid(self, values: np.ndarray) -> np.ndarray:
        """A flat per-site array shaped (ny, nx) in 2D or (nz, ny, nx) in 3D."""
        nz, ny, nx = self.shape
        return values.reshape(ny, nx) if nz == 1 else values.reshape(nz, ny, nx)

    def copy(self) -> Lattice:
        """A deep copy."""
        return replace(self, offsets=self.offsets.copy(), cells=self.cells.copy(),
                       tissue=self.tissue.copy(), fields=self.fields.copy(),
                       extra=self.extra.copy())

    def site_coordinates(self, sites: np.ndarray) -> np.ndarray:
        """(n, 2) array of (x, y) coordinates of ``sites`` in 2D, (n, 3) of (x, y, z) in 3D,
        in lattice spacings."""
        nz, ny, nx = self.shape
        columns = [sites % nx, (sites // nx) % ny]
        if nz > 1:
            columns.append(sites // (nx * ny))
        return np.stack(columns, axis=1)
