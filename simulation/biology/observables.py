"""Per-census measurements that need more than a count: CAR-T infiltration, tumour hypoxia,
the tumour's and healthy cells' antigens one by one."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_closing, binary_fill_holes, distance_transform_edt

from ..engine.constants import CANCER, CAR_T, F_OXYGEN, NECROTIC
from ..engine.kernel import antigen_phenotypes
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


#: how the names of ``antigen_columns`` begin
ANTIGEN_COLUMN_PREFIXES = ("tumor_antigen_negative_", "normal_antigen_positive_",
                           "tumor_expressing_")


def phenotype_label(names: list[str], mask: int) -> str:
    """``CD19+CD22`` for the antigens whose slot bits are set in ``mask``, ``none`` for 0."""
    return "+".join(name for slot, name in enumerate(names) if mask >> slot & 1) or "none"


def antigen_columns(names: list[str]) -> list[str]:
    """Census columns of a scenario with several antigens (none with one): per antigen
    ``tumor_antigen_negative_<name>`` and ``normal_antigen_positive_<name>``; per set of
    antigens a cancer cell can carry, ``tumor_expressing_<set>`` (``phenotype_label``)."""
    if len(names) < 2:
        return []
    negative, positive, expressing = ANTIGEN_COLUMN_PREFIXES
    return ([f"{negative}{name}" for name in names] + [f"{positive}{name}" for name in names]
            + [f"{expressing}{phenotype_label(names, mask)}" for mask in range(1 << len(names))])


def antigen_counts(lattice: Lattice, names: list[str]) -> dict[str, int]:
    """The values of ``antigen_columns(names)`` on the lattice now."""
    if len(names) < 2:
        return {}
    phenotypes = antigen_phenotypes(lattice.cells, lattice.extra, len(names))
    masks = np.arange(phenotypes.shape[1])
    counts = {}
    for slot, name in enumerate(names):
        has = (masks >> slot & 1).astype(bool)
        counts[f"tumor_antigen_negative_{name}"] = int(phenotypes[0, ~has].sum())
        counts[f"normal_antigen_positive_{name}"] = int(phenotypes[1, has].sum())
    for mask in masks:
        counts[f"tumor_expressing_{phenotype_label(names, mask)}"] = int(phenotypes[0, mask])
    return counts
