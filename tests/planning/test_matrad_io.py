"""matRad phantom files: the world-coordinate convention of matRad_getWorldAxes.

matRad (``matRad_getWorldAxes.m``) keeps ``ct.x/y/z`` when all three are there; otherwise the
first voxel sits at ``ct.dicomInfo.ImagePositionPatient`` or, without it, at
``-cubeDim([2 1 3]) / 2 .* [res.x res.y res.z]``.  The expected coordinates below are written
from that definition, not from the loader.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.io as sio

from protonpath.planning import matrad_io
from protonpath.planning.ct import CT, Grid
from protonpath.planning.optimise import SQUARED_DEVIATION, SQUARED_OVERDOSE, Objective
from protonpath.planning.structures import EXTERNAL, OAR, TARGET, Structure

NX, NY, NZ = 10, 8, 6
DX, DY, DZ = 1.0, 2.0, 3.0


def _phantom(origin):
    grid = Grid((NZ, NY, NX), origin, (DX, DY, DZ))
    rng = np.random.default_rng(3)
    hu = rng.integers(-1000, 1000, size=grid.shape).astype(np.float32)
    body = np.ones(grid.shape, dtype=bool)
    target = np.zeros(grid.shape, dtype=bool)
    target[2:4, 3:6, 4:8] = True
    oar = np.zeros(grid.shape, dtype=bool)
    oar[1, 1:3, 0:2] = True
    structures = [
        Structure("PTV", target, TARGET),
        Structure("Cord", oar, OAR),
        Structure("BODY", body, EXTERNAL),
    ]
    objectives = [
        Objective("PTV", SQUARED_DEVIATION, 60.0, 800.0),
        Objective("Cord", SQUARED_OVERDOSE, 20.0, 100.0),
    ]
    return CT(hu, grid), structures, objectives


def _file(data) -> bytes:
    buffer = io.BytesIO()
    sio.savemat(buffer, data)
    return buffer.getvalue()


def test_no_axes_first_voxel_at_minus_half_the_cube():
    first = (-NX / 2 * DX, -NY / 2 * DY, -NZ / 2 * DZ)  # matRad: -(dimensions/2) .* resolution
    ct, structures, objectives = _phantom(first)
    data = matrad_io.matrad_phantom_data(
        ct, structures, ["PTV", "Cord", "BODY"], objectives, axes=False
    )
    assert not {"x", "y", "z", "dicomInfo"} & set(data["ct"])
    loaded = matrad_io.load_matrad_phantom(_file(data))
    assert np.allclose(loaded.ct.grid.origin_mm, [-5.0, -8.0, -9.0])
    x, y, z = loaded.ct.grid.axes_mm()
    assert np.allclose(x, [-5, -4, -3, -2, -1, 0, 1, 2, 3, 4])
    assert np.allclose(y, [-8, -6, -4, -2, 0, 2, 4, 6])
    assert np.allclose(z, [-9, -6, -3, 0, 3, 6])
    assert np.array_equal(loaded.ct.hu, ct.hu)
    for original, read in zip(structures, loaded.structures, strict=True):
        assert read.name == original.name and read.role == original.role
        assert np.array_equal(read.mask, original.mask)
    assert loaded.priority == ["PTV", "Cord", "BODY"]
    assert loaded.objectives == objectives


def test_matrad_own_unit_cube_example():
    """matRad's test_getWorldAxes: resolution 1/2/3 mm, cubeDim [10 10 10]."""
    ct = {"resolution": {"x": 1.0, "y": 2.0, "z": 3.0}, "cubeDim": np.array([10, 10, 10])}
    x, y, z = matrad_io.matrad_world_axes(ct)
    assert np.array_equal(x, [-5, -4, -3, -2, -1, 0, 1, 2, 3, 4])
    assert np.array_equal(y, [-10, -8, -6, -4, -2, 0, 2, 4, 6, 8])
    assert np.array_equal(z, [-15, -12, -9, -6, -3, 0, 3, 6, 9, 12])


def test_explicit_axes_are_kept():
    ct, structures, objectives = _phantom((12.5, -40.0, 7.0))
    data = matrad_io.matrad_phantom_data(ct, structures, None, objectives, axes=True)
    loaded = matrad_io.load_matrad_phantom(_file(data))
    assert np.allclose(loaded.ct.grid.origin_mm, [12.5, -40.0, 7.0])
    assert np.allclose(loaded.ct.grid.axes_mm()[0], 12.5 + DX * np.arange(NX))


def test_dicom_image_position_without_axes():
    first = (-NX / 2 * DX, -NY / 2 * DY, -NZ / 2 * DZ)
    ct, structures, objectives = _phantom(first)
    data = matrad_io.matrad_phantom_data(ct, structures, None, objectives, axes=False)
    data["ct"]["dicomInfo"] = {"ImagePositionPatient": np.array([-100.0, 20.0, -3.5])}
    loaded = matrad_io.load_matrad_phantom(_file(data))
    assert np.allclose(loaded.ct.grid.origin_mm, [-100.0, 20.0, -3.5])


def test_empty_axes_count_as_missing():
    ct, structures, objectives = _phantom((-5.0, -8.0, -9.0))
    data = matrad_io.matrad_phantom_data(ct, structures, None, objectives, axes=False)
    data["ct"].update({"x": np.zeros(0), "y": np.zeros(0), "z": np.zeros(0)})
    loaded = matrad_io.load_matrad_phantom(_file(data))
    assert np.allclose(loaded.ct.grid.origin_mm, [-5.0, -8.0, -9.0])


def test_axes_that_do_not_fit_the_cube_are_refused():
    ct, structures, objectives = _phantom((0.0, 0.0, 0.0))
    data = matrad_io.matrad_phantom_data(ct, structures, None, objectives, axes=True)
    data["ct"]["x"] = data["ct"]["x"][:-1]
    with pytest.raises(ValueError, match="ct.x has 9 values"):
        matrad_io.load_matrad_phantom(_file(data))
    data["ct"]["x"] = np.arange(NX) * 2.0  # steps of 2 mm at a 1 mm resolution
    with pytest.raises(ValueError, match="not a regular axis"):
        matrad_io.load_matrad_phantom(_file(data))


def test_writer_refuses_a_grid_matrad_would_place_elsewhere():
    ct, structures, objectives = _phantom((1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="-cubeDim/2"):
        matrad_io.matrad_phantom_data(ct, structures, None, objectives, axes=False)


def test_tg119_keeps_its_axes(tg119):
    assert np.allclose(tg119.ct.grid.origin_mm, [-250.0, -250.0, -160.0])
    assert tg119.ct.grid.shape == (129, 167, 167)
