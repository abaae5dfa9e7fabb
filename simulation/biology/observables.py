"""Per-census measurements that need more than a count: CAR-T infiltration, tumour hypoxia."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_closing, binary_fill_holes, distance_transform_edt

from ..engine.constants import CANCER, CAR_T, F_OXYGEN, NECROTIC
from ..engine.lattice import Lattice


def tumor_region(lattice: Lattice) -> np.ndarray:
    """Boolean grid of the tumour mass: cancer and necrotic sites, closed over one-site gaps
    and with enclosed holes filled, so CAR-T and empty sites inside the mass count as inside."""
    cell_type = lattice.grid("cell_type")
    mass = (cell_type == CANCER) | (cell_type == NECROTIC)
    if not mass.any():
        return mass
    return binary_fill_holes(binary_closing(mass, structure=np.ones((3,) * mass.ndim)))


def infiltration(lattice: Lattice) -> tuple[float, float]:
    """(mean depth in um of the CAR-T inside the tumour mass, fraction of CAR-T inside it).

    Depth is the Euclidean distance from the CAR-T's site to the nearest site outside the mass
    (``tumor_region``), in um; 0 and 0 when no CAR-T is inside. Meaningful for compact
    (solid) tumours; in a dispersed blood cancer the "mass" is scattered cells.
    """
    region = tumor_region(lattice)
    car_t = lattice.grid("cell_type") == CAR_T
    inside = car_t & region
    n_car_t = int(np.count_nonzero(car_t))
    if not inside.any():
        return 0.0, 0.0
    depth_um = distance_transform_edt(region)[inside] * lattice.spacing_um
    return float(depth_um.mean()), float(np.count_nonzero(inside)) / n_car_t


def hypoxic_fraction(lattice: Lattice, threshold_mmhg: float) -> float:
    """Fraction of cancer cells whose site has oxygen below ``threshold_mmhg`` (0 if none)."""
    cancer = lattice.cells["cell_type"] == CANCER
    n = int(np.count_nonzero(cancer))
    if n == 0:
        return 0.0
    return float(np.count_nonzero(lattice.fields[F_OXYGEN][cancer] < threshold_mmhg)) / n
