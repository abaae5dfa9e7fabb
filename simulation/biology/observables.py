"""Per-census measurements that need more than a count: CAR-T infiltration, tumour hypoxia,
the tumour's and healthy cells' antigens one by one, CAR-T per product and subset."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_closing, binary_fill_holes, distance_transform_edt

from ..config import ScenarioConfig
from ..engine.constants import (
    CANCER,
    CAR_T,
    F_OXYGEN,
    N_SUBSETS,
    NECROTIC,
    SUBSET_CD4,
    SUBSET_MEMORY_LIKE,
)
from ..engine.kernel import antigen_phenotypes, car_t_by_class
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


#: CAR-T columns of a scenario whose products have a composition (lattice and blood)
SUBSET_COLUMNS = ("car_t_cd4", "car_t_cd8", "car_t_memory_like")


def product_columns(cfg: ScenarioConfig) -> list[str]:
    """Census columns of CAR-T (lattice and blood) per product, ``product_<name>_car_t``, when
    a scenario has several products, and ``SUBSET_COLUMNS`` when a product has a composition
    (none otherwise)."""
    products = cfg.product_configs
    columns = [f"product_{name}_car_t" for name in products] if len(products) > 1 else []
    if any(car_t.composition is not None for car_t in products.values()):
        columns += SUBSET_COLUMNS
    return columns


def product_counts(lattice: Lattice, cfg: ScenarioConfig, blood_counts: np.ndarray
                   ) -> dict[str, int]:
    """The values of ``product_columns(cfg)``: CAR-T on the lattice plus ``blood_counts``
    (CAR-T in the blood per class)."""
    columns = product_columns(cfg)
    if not columns:
        return {}
    per_class = car_t_by_class(lattice.cells, blood_counts.size) + blood_counts
    subsets = np.arange(per_class.size) % N_SUBSETS
    counts = {}
    for product, name in enumerate(cfg.product_configs):
        column = f"product_{name}_car_t"
        if column in columns:
            counts[column] = int(per_class[product * N_SUBSETS:(product + 1) * N_SUBSETS].sum())
    if SUBSET_COLUMNS[0] in columns:
        cd4 = (subsets & SUBSET_CD4).astype(bool)
        counts["car_t_cd4"] = int(per_class[cd4].sum())
        counts["car_t_cd8"] = int(per_class[~cd4].sum())
        counts["car_t_memory_like"] = int(
            per_class[(subsets & SUBSET_MEMORY_LIKE).astype(bool)].sum())
    return counts
