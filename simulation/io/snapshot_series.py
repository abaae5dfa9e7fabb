"""A run's lattice snapshots over time as one ``xarray.Dataset`` with named dimensions.

    ds = snapshot_dataset(snapshots)          # the snapshot dicts of one run, in time order
    ds.site_class.sel(time_days=7, method="nearest")
    ds.oxygen.mean(("y", "x"))                # mmHg, one value per snapshot

Dimensions ``time_days`` (days since t = 0), then ``y, x`` (2D) or ``z, y, x`` (3D) with
coordinates in um (site centres, ``spacing_um`` apart). Per site (uint8 codes): ``cell_type``
(``engine.constants``), ``antigen_class`` (0 none, 1 low, 2 high), ``car_t_state``, ``tissue``
and ``site_class`` (the colours of the lattice pictures, ``snapshots.SITE_*``); the fields of
``snapshots.SNAPSHOT_FIELDS`` as float32 in their units. **The fields are quantised**: a
snapshot stores each as 256 levels between 0 and its maximum, so a value is exact to within
max / 510 (half a level); the ``resolution`` attribute of each field variable gives max / 255
per snapshot. Counts per snapshot: ``tumor_cells``, ``car_t_cells``, ``necrotic_cells``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .snapshots import SNAPSHOT_FIELDS, site_classes, snapshot_field

_SITE_ARRAYS = ("cell_type", "antigen_class", "car_t_state", "tissue")
_COUNTS = ("tumor_cells", "car_t_cells", "necrotic_cells")


def snapshot_dataset(snapshots: list[dict[str, np.ndarray]], run: str = "") -> xr.Dataset:
    """The snapshots of one run (dicts as ``snapshots.lattice_snapshot`` makes them, in time
    order) as a Dataset (see the module docstring); ``run`` names it in ``attrs``."""
    if not snapshots:
        raise ValueError("snapshot_dataset: no snapshots")
    first = snapshots[0]
    shape = np.asarray(first["cell_type"]).shape
    spatial = ("y", "x") if len(shape) == 2 else ("z", "y", "x")
    dims = ("time_days", *spatial)
    spacing = float(first["spacing_um"])
    coords = {"time_days": ("time_days", [float(s["time_days"]) for s in snapshots],
                            {"units": "days"})}
    for name, size in zip(spatial, shape, strict=True):
        coords[name] = (name, np.arange(size) * spacing, {"units": "um"})
    data = {name: (dims, np.stack([np.asarray(s[name]) for s in snapshots]))
            for name in _SITE_ARRAYS}
    data["site_class"] = (dims, np.stack([
        site_classes(s["cell_type"], s["antigen_class"], s["car_t_state"], s.get("tissue"))
        for s in snapshots]))
    for name, unit in SNAPSHOT_FIELDS.items():
        values = [snapshot_field(s, name) for s in snapshots]
        if any(v is None for v in values):
            continue
        tops = [float(s[f"{name}_max"]) for s in snapshots]
        data[name] = (dims, np.stack(values), {
            "units": unit, "quantised": "256 levels from 0 to the snapshot's maximum",
            "resolution": [top / 255.0 for top in tops]})
    for name in _COUNTS:
        data[name] = (("time_days",), np.array([int(s[name]) for s in snapshots]))
    return xr.Dataset(data, coords=coords, attrs={
        "run": run, "scenario": str(first["scenario"]), "spacing_um": spacing,
        "necrosis_threshold_mmhg": float(first["necrosis_threshold_mmhg"])})
