"""Lattice snapshots as VTK XML image files (``.vti``) for ParaView, and read back.

Every lattice site is one voxel, a cube of side ``spacing_um``, so every array is VTK *cell*
data (one value per site): ``site_class`` (codes ``snapshots.SITE_*``, colours
``lattice_plots.SITE_CLASSES``), ``cell_type``, ``antigen_class``, ``car_t_state`` and ``tissue``
as UInt8, and the fields the snapshot holds, ``oxygen`` (mmHg) and ``suppression`` (a.u.), as
Float32. Origin 0 and spacing in um, so ParaView's rulers read um; x varies fastest, then y,
then z (snapshot arrays are indexed [z, y, x]). A 2D snapshot is one layer of voxels (nz = 1).

    cartsim export-vtk snaps/gbm3d/snapshot_*.npz      # or write_vti(load_snapshot(p), "t.vti")

In ParaView, colour by ``site_class`` (or threshold it: cancer is 1-3, CAR-T 6-8) and slice
or volume-render ``oxygen``.

The writer is hand-written rather than ``pyevtk``: a few lines of XML with inline base64
"binary" arrays (each preceded by its UInt64 byte count, as VTK's own writer does), no new
dependency, and ``read_vti`` reads exactly this layout back for the tests and for users who
want the arrays; pyevtk only writes (raw appended data, which would need a reader of its own).
Files are uncompressed base64: about 17 bytes per site with both fields (140 MB for 200^3
sites), so this is for inspecting cases, not for archiving runs.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from .files import atomic_write
from .snapshots import SNAPSHOT_FIELDS, site_classes, snapshot_field

#: the uint8 arrays of a ``.vti`` file, in file order (the fields follow)
SITE_ARRAYS = ("site_class", "cell_type", "antigen_class", "car_t_state", "tissue")
_REQUIRED = ("cell_type", "antigen_class", "car_t_state", "spacing_um")
#: VTK data-array type names of the numpy dtypes written (little-endian)
_VTK_TYPES = {np.dtype("u1"): "UInt8", np.dtype("<f4"): "Float32"}
_NUMPY_TYPES = {name: dtype for dtype, name in _VTK_TYPES.items()}
_HEADER_TYPES = {"UInt64": np.dtype("<u8"), "UInt32": np.dtype("<u4")}
_HEADER = "UInt64"


def volume_arrays(snapshot) -> dict[str, np.ndarray]:
    """The arrays ``write_vti`` writes, each shaped (nz, ny, nx) (nz = 1 for a 2D snapshot):
    ``SITE_ARRAYS`` as uint8 (no ``tissue`` in the snapshot: open tissue), then the fields of
    ``SNAPSHOT_FIELDS`` it holds as float32 in their units."""
    missing = [name for name in _REQUIRED if name not in snapshot]
    if missing:
        raise ValueError(f"not a lattice snapshot: no {', '.join(missing)}")
    cell_type = np.asarray(snapshot["cell_type"])
    if cell_type.ndim not in (2, 3):
        raise ValueError(f"lattice arrays must be (ny, nx) or (nz, ny, nx), not {cell_type.shape}")
    tissue = snapshot.get("tissue", np.zeros_like(cell_type))
    arrays = {"site_class": site_classes(cell_type, snapshot["antigen_class"],
                                         snapshot["car_t_state"], tissue),
              "cell_type": cell_type, "antigen_class": snapshot["antigen_class"],
              "car_t_state": snapshot["car_t_state"], "tissue": tissue}
    arrays = {name: np.asarray(values, np.dtype("u1")) for name, values in arrays.items()}
    for name in SNAPSHOT_FIELDS:
        values = snapshot_field(snapshot, name)
        if values is not None:
            arrays[name] = values.astype("<f4")
    return {name: values.reshape((-1,) + cell_type.shape[-2:]) for name, values in arrays.items()}


def _encoded(values: np.ndarray) -> str:
    """VTK inline "binary" data: base64 of the byte count (``_HEADER``), then of the bytes."""
    data = np.ascontiguousarray(values).tobytes()
    header = np.array([len(data)], _HEADER_TYPES[_HEADER]).tobytes()
    return (base64.b64encode(header) + base64.b64encode(data)).decode("ascii")


def write_vti(snapshot, path: str | Path) -> Path:
    """Write a snapshot (2D or 3D) as a VTK XML ImageData file (see the module docstring),
    atomically (a temporary file in the same folder, renamed). Returns the path."""
    arrays = volume_arrays(snapshot)
    nz, ny, nx = arrays["site_class"].shape
    spacing_um = float(np.asarray(snapshot["spacing_um"]))
    extent = f"0 {nx} 0 {ny} 0 {nz}"

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="ascii") as stream:
            stream.write(f'<?xml version="1.0"?>\n<VTKFile type="ImageData" version="1.0" '
                         f'byte_order="LittleEndian" header_type="{_HEADER}">\n'
                         f'  <ImageData WholeExtent="{extent}" Origin="0 0 0" '
                         f'Spacing="{spacing_um!r} {spacing_um!r} {spacing_um!r}">\n'
                         f'    <Piece Extent="{extent}">\n      <CellData Scalars="site_class">\n')
            for name, values in arrays.items():
                stream.write(f'        <DataArray type="{_VTK_TYPES[values.dtype]}" '
                             f'Name="{name}" format="binary">{_encoded(values)}</DataArray>\n')
            stream.write("      </CellData>\n    </Piece>\n  </ImageData>\n</VTKFile>\n")

    path = Path(path)
    atomic_write(path, write)
    return path


def read_vti(path: str | Path) -> dict[str, np.ndarray]:
    """The cell arrays of a ``.vti`` file as ``write_vti`` writes them (inline binary,
    uncompressed), each shaped (nz, ny, nx) and indexed [z, y, x], plus ``spacing_um``
    (float64, um). ValueError for other VTK layouts (appended or compressed data)."""
    root = ElementTree.parse(path).getroot()
    image = root.find("ImageData")
    if (root.get("type") != "ImageData" or image is None or root.get("compressor")
            or root.get("byte_order") != "LittleEndian"):
        raise ValueError(f"{path}: not an uncompressed little-endian VTK ImageData file")
    x0, x1, y0, y1, z0, z1 = (int(n) for n in image.get("WholeExtent").split())
    header = _HEADER_TYPES[root.get("header_type", "UInt32")]
    header_chars = 4 * math.ceil(header.itemsize / 3)  # the byte count, base64 on its own
    arrays = {"spacing_um": np.float64(image.get("Spacing").split()[0])}
    for element in image.iterfind("Piece/CellData/DataArray"):
        name = element.get("Name")
        if element.get("format") != "binary" or element.get("type") not in _NUMPY_TYPES:
            raise ValueError(f"{path}: {name}: only inline binary UInt8 or Float32 data is read")
        text = element.text.strip()
        n_bytes = int(np.frombuffer(base64.b64decode(text[:header_chars]), header)[0])
        data = base64.b64decode(text[header_chars:])[:n_bytes]
        arrays[name] = np.frombuffer(data, _NUMPY_TYPES[element.get("type")]).reshape(
            z1 - z0, y1 - y0, x1 - x0)
    return arrays


def write_pvd(frames: list[tuple[float, Path]], path: str | Path) -> Path:
    """A ParaView collection (``.pvd``) of ``.vti`` files over time: ``frames`` are (simulated
    day, file); files are referred to relative to ``path``'s folder. Opening it in ParaView
    gives one dataset with a time slider (days). Written atomically."""
    path = Path(path)
    lines = ['<?xml version="1.0"?>',
             '<VTKFile type="Collection" version="1.0" byte_order="LittleEndian">',
             "  <Collection>"]
    for day, file in frames:
        relative = Path(file).resolve().relative_to(path.parent.resolve()).as_posix()
        lines.append(f'    <DataSet timestep="{day:.6g}" part="0" file="{relative}"/>')
    lines += ["  </Collection>", "</VTKFile>", ""]
    atomic_write(path, lambda tmp: tmp.write_text("\n".join(lines), encoding="ascii"))
    return path
