"""VTK export of snapshots: exact round trips, VTK's layout (x fastest, cell data, spacing in
um), 2D input, atomic writes, and ``cartsim export-vtk``.

``sphere_snapshot`` (a synthetic 3D snapshot, no simulation) is shared with test_plotting.py.
"""

from __future__ import annotations

import base64
from xml.etree import ElementTree

import numpy as np
import pytest

from simulation.io import volume
from simulation.cli import main
from simulation.commands import EXIT_CONFIG_ERROR
from simulation.engine.constants import (
    CANCER,
    CAR_T,
    EFFECTOR,
    EXHAUSTED,
    MEMORY,
    NECROTIC,
    TISSUE_STROMA,
    TISSUE_VESSEL,
)
from simulation.io.snapshots import quantise_field, save_snapshot, site_classes, snapshot_field
from simulation.io.volume import SITE_ARRAYS, read_vti, write_vti

SHAPE = (20, 24, 28)  # (nz, ny, nx)
SPACING_UM = 15.0
TUMOUR_CENTRE = (8, 13, 16)  # (z, y, x): off the lattice centre (10, 12, 14) on purpose
TUMOUR_RADIUS = 6  # sites; necrotic core radius 2
#: (z, y, x) of the three CAR-T cells: effector, exhausted, memory
CAR_T_SITES = {(2, 3, 4): EFFECTOR, (8, 13, 24): EXHAUSTED, (15, 20, 5): MEMORY}
VESSEL_ROW = (18, 2)  # (z, y) of a vessel along x; the z = 0 plane is stroma


def sphere_snapshot() -> dict:
    """A 20x24x28 (z, y, x) snapshot: a sphere of cancer (antigen class = x mod 3) with a
    necrotic core, three CAR-T outside it, a vessel, a stroma plane, oxygen falling to 1 mmHg
    in the core (38 mmHg from 12 sites out) and a suppressive factor peaking there."""
    z, y, x = np.indices(SHAPE)
    distance = np.sqrt(sum((axis - c) ** 2 for axis, c in zip((z, y, x), TUMOUR_CENTRE)))
    cell_type = np.zeros(SHAPE, np.uint8)
    cell_type[distance <= TUMOUR_RADIUS] = CANCER
    cell_type[distance <= 2] = NECROTIC
    car_t_state = np.zeros(SHAPE, np.uint8)
    for site, state in CAR_T_SITES.items():
        cell_type[site], car_t_state[site] = CAR_T, state
    tissue = np.zeros(SHAPE, np.uint8)
    tissue[0] = TISSUE_STROMA
    tissue[VESSEL_ROW] = TISSUE_VESSEL
    snapshot = {"cell_type": cell_type, "antigen_class": (x % 3).astype(np.uint8),
                "car_t_state": car_t_state, "tissue": tissue,
                "time_days": np.float64(4.0), "step": np.int64(960),
                "tumor_cells": np.int64(np.count_nonzero(cell_type == CANCER)),
                "car_t_cells": np.int64(len(CAR_T_SITES)),
                "necrotic_cells": np.int64(np.count_nonzero(cell_type == NECROTIC)),
                "spacing_um": np.float64(SPACING_UM), "necrosis_threshold_mmhg": np.float64(5.0),
                "scenario": np.str_("sphere")}
    fields = {"oxygen": np.clip(38.0 * distance / 12.0, 1.0, 38.0),
              "suppression": 9.0 * np.exp(-(distance / 5.0) ** 2)}
    for name, values in fields.items():
        snapshot[f"{name}_u8"], snapshot[f"{name}_max"] = quantise_field(values)
    return snapshot


def _raw_array(path, name: str) -> tuple[str, np.ndarray]:
    """(VTK type, flat values in file order) of one DataArray, decoded without read_vti."""
    element = next(e for e in ElementTree.parse(path).iter("DataArray") if e.get("Name") == name)
    text = element.text.strip()
    n_bytes = int(np.frombuffer(base64.b64decode(text[:12]), "<u8")[0])  # UInt64 count
    data = base64.b64decode(text[12:])
    assert len(data) == n_bytes
    return element.get("type"), np.frombuffer(data, {"UInt8": "u1", "Float32": "<f4"}[
        element.get("type")])


def test_round_trip_is_exact_for_sites_and_float32_for_fields(tmp_path):
    snapshot = sphere_snapshot()
    back = read_vti(write_vti(snapshot, tmp_path / "sphere.vti"))
    assert set(back) == {*SITE_ARRAYS, "oxygen", "suppression", "spacing_um"}
    for name in ("cell_type", "antigen_class", "car_t_state", "tissue"):
        assert back[name].dtype == np.uint8 and back[name].shape == SHAPE
        np.testing.assert_array_equal(back[name], snapshot[name])
    np.testing.assert_array_equal(back["site_class"], site_classes(
        snapshot["cell_type"], snapshot["antigen_class"], snapshot["car_t_state"],
        snapshot["tissue"]))
    for name in ("oxygen", "suppression"):
        assert back[name].dtype == np.float32
        np.testing.assert_array_equal(back[name], snapshot_field(snapshot, name))
    assert back["oxygen"][TUMOUR_CENTRE] == pytest.approx(1.0, abs=38.0 / 255)
    assert back["oxygen"][0, 0, 0] == pytest.approx(38.0)
    assert back["spacing_um"] == SPACING_UM


def test_file_follows_vtk_image_layout(tmp_path):
    path = write_vti(sphere_snapshot(), tmp_path / "sphere.vti")
    root = ElementTree.parse(path).getroot()
    assert (root.get("type"), root.get("header_type")) == ("ImageData", "UInt64")
    image = root.find("ImageData")
    assert image.get("WholeExtent") == "0 28 0 24 0 20"  # points: one more than sites per axis
    assert image.get("Spacing") == "15.0 15.0 15.0" and image.get("Origin") == "0 0 0"
    assert [e.get("Name") for e in image.find("Piece/CellData")] == [
        "site_class", "cell_type", "antigen_class", "car_t_state", "tissue", "oxygen",
        "suppression"]
    # x fastest, then y, then z: the CAR-T at (z, y, x) sits at x + nx * (y + ny * z)
    vtk_type, car_t_state = _raw_array(path, "car_t_state")
    nz, ny, nx = SHAPE
    assert vtk_type == "UInt8" and car_t_state.size == nz * ny * nx
    for (z, y, x), state in CAR_T_SITES.items():
        assert car_t_state[x + nx * (y + ny * z)] == state
    assert np.count_nonzero(car_t_state) == 2  # the effector's state is 0
    vtk_type, oxygen = _raw_array(path, "oxygen")
    assert vtk_type == "Float32" and oxygen[0] == pytest.approx(38.0)


def test_two_dimensional_snapshot_is_one_layer_of_voxels(tmp_path):
    snapshot = sphere_snapshot()
    flat = {name: snapshot[name][TUMOUR_CENTRE[0]]
            for name in ("cell_type", "antigen_class", "car_t_state")}  # no tissue, no fields
    flat["spacing_um"] = np.float64(10.0)
    path = write_vti(flat, tmp_path / "flat.vti")
    assert ElementTree.parse(path).find("ImageData").get("WholeExtent") == "0 28 0 24 0 1"
    back = read_vti(path)
    assert set(back) == {*SITE_ARRAYS, "spacing_um"} and back["spacing_um"] == 10.0
    np.testing.assert_array_equal(back["cell_type"], flat["cell_type"][None])
    assert back["tissue"].shape == (1, 24, 28) and not back["tissue"].any()  # open tissue
    assert np.count_nonzero(back["cell_type"] == CANCER) == 100  # the equator, core excluded


def test_write_is_atomic(tmp_path, monkeypatch):
    path = write_vti(sphere_snapshot(), tmp_path / "sphere.vti")
    assert [p.name for p in tmp_path.iterdir()] == ["sphere.vti"]
    before = path.read_bytes()

    def fail(values):
        raise OSError("disk full")

    monkeypatch.setattr(volume, "_encoded", fail)  # fails after the file was opened
    with pytest.raises(OSError, match="disk full"):
        write_vti(sphere_snapshot(), path)
    assert [p.name for p in tmp_path.iterdir()] == ["sphere.vti"]
    assert path.read_bytes() == before


def test_snapshot_without_lattice_arrays_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a lattice snapshot: no car_t_state, spacing_um"):
        write_vti({"cell_type": np.zeros((3, 4, 5), np.uint8),
                   "antigen_class": np.zeros((3, 4, 5), np.uint8)}, tmp_path / "x.vti")
    assert not list(tmp_path.iterdir())


def test_cli_exports_next_to_the_snapshot_or_into_a_folder(tmp_path, capsys):
    snapshot = sphere_snapshot()
    first = save_snapshot(snapshot, tmp_path / "snapshot_00000960.npz")
    second = save_snapshot({**snapshot, "time_days": np.float64(5.0)}, tmp_path / "late.npz")
    assert main(["export-vtk", str(first), str(second)]) == 0
    written = [tmp_path / "snapshot_00000960.vti", tmp_path / "late.vti"]
    assert capsys.readouterr().out.splitlines() == [str(p) for p in written]
    np.testing.assert_array_equal(read_vti(written[0])["cell_type"], snapshot["cell_type"])
    assert main(["export-vtk", str(first), "--out-dir", str(tmp_path / "vtk")]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'vtk' / 'snapshot_00000960.vti'}\n"


@pytest.mark.parametrize("content, message", [
    (None, "missing.npz: no such file"),
    (b"cell_type,antigen\n1,2\n", "missing.npz: not a snapshot file (an .npz written by cartsim)"),
    ("other", "missing.npz: not a lattice snapshot: no cell_type, antigen_class, car_t_state, "
              "spacing_um"),
])
def test_cli_refuses_a_missing_or_invalid_snapshot(tmp_path, capsys, content, message):
    path = tmp_path / "missing.npz"
    if content == "other":
        np.savez(path, counts=np.arange(3))
    elif content is not None:
        path.write_bytes(content)
    assert main(["export-vtk", str(path)]) == EXIT_CONFIG_ERROR
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"cartsim: error: {tmp_path / message}\n"
    assert not list(tmp_path.glob("*.vti"))


def test_cli_refuses_two_snapshots_for_one_file(tmp_path, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        save_snapshot(sphere_snapshot(), tmp_path / folder / "snapshot_00000960.npz")
    code = main(["export-vtk", str(tmp_path / "a" / "snapshot_00000960.npz"),
                 str(tmp_path / "b" / "snapshot_00000960.npz"), "--out-dir", str(tmp_path)])
    assert code == EXIT_CONFIG_ERROR
    assert "more than one snapshot would be written here" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.vti"))


def _read_with_vtk(path) -> tuple:
    """(vtkImageData, {name: cell array (nz, ny, nx)}) as VTK's own XML reader sees the file."""
    vtk = pytest.importorskip("vtk", reason="the test extra installs vtk")
    from vtk.util.numpy_support import vtk_to_numpy

    reader = vtk.vtkXMLImageDataReader()
    reader.SetFileName(str(path))
    reader.Update()
    assert reader.GetErrorCode() == 0
    image = reader.GetOutput()
    nx, ny, nz = (n - 1 for n in image.GetDimensions())  # points: one more than voxels
    cells = image.GetCellData()
    arrays = {cells.GetArrayName(i): vtk_to_numpy(cells.GetArray(i)).reshape(nz, ny, nx)
              for i in range(cells.GetNumberOfArrays())}
    return image, arrays


@pytest.mark.parametrize("dimensions", [3, 2])
def test_vtk_reads_the_file_as_written(tmp_path, dimensions):
    """VTK's reader (not ours) finds the snapshot's dimensions, spacing and every array."""
    snapshot = sphere_snapshot()
    if dimensions == 2:
        snapshot = {name: value[TUMOUR_CENTRE[0]] if np.ndim(value) == 3 else value
                    for name, value in snapshot.items()}
    image, arrays = _read_with_vtk(write_vti(snapshot, tmp_path / "sphere.vti"))
    nz, ny, nx = SHAPE if dimensions == 3 else (1, *SHAPE[1:])
    assert image.GetDimensions() == (nx + 1, ny + 1, nz + 1)
    assert image.GetNumberOfCells() == nx * ny * nz
    assert image.GetSpacing() == (SPACING_UM,) * 3 and image.GetOrigin() == (0.0, 0.0, 0.0)
    assert list(arrays) == [*SITE_ARRAYS, "oxygen", "suppression"]
    assert image.GetCellData().GetScalars().GetName() == "site_class"
    for name in ("cell_type", "antigen_class", "car_t_state", "tissue"):
        assert arrays[name].dtype == np.uint8
        np.testing.assert_array_equal(arrays[name], np.reshape(snapshot[name], (nz, ny, nx)))
    np.testing.assert_array_equal(arrays["site_class"], np.reshape(site_classes(
        snapshot["cell_type"], snapshot["antigen_class"], snapshot["car_t_state"],
        snapshot["tissue"]), (nz, ny, nx)))
    for name in ("oxygen", "suppression"):
        assert arrays[name].dtype == np.float32
        np.testing.assert_array_equal(arrays[name], np.reshape(
            snapshot_field(snapshot, name).astype(np.float32), (nz, ny, nx)))
    if dimensions == 3:  # the CAR-T at snapshot[z, y, x] is VTK's voxel (i, j, k) = (x, y, z)
        for (z, y, x), state in CAR_T_SITES.items():
            cell = image.ComputeCellId([x, y, z])
            assert image.GetCellData().GetArray("cell_type").GetValue(cell) == CAR_T
            assert image.GetCellData().GetArray("car_t_state").GetValue(cell) == state
