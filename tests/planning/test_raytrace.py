"""Beam geometry and water-equivalent depth."""

import numpy as np
import pytest

from protonpath.planning import raytrace
from protonpath.planning.ct import hu_to_spr

from .conftest import WATER_CALIBRATION


@pytest.mark.parametrize("gantry, couch", [(0, 0), (90, 0), (45, 0), (30, 60), (270, 90)])
def test_beam_frame_is_orthonormal_and_right_handed(gantry, couch):
    f = raytrace.beam_frame(raytrace.Beam(gantry, couch, np.zeros(3)))
    m = np.stack([f.u, f.v, f.direction])
    assert np.allclose(m @ m.T, np.eye(3))
    assert np.allclose(np.cross(f.u, f.v), -f.direction) or np.allclose(
        np.cross(f.u, f.v), f.direction
    )


def test_gantry_angles_follow_iec_for_head_first_supine():
    # gantry 0: from anterior (-y in LPS) towards posterior; gantry 90: from the patient's left
    assert np.allclose(raytrace.beam_frame(raytrace.Beam(0, 0, np.zeros(3))).direction, [0, 1, 0])
    assert np.allclose(raytrace.beam_frame(raytrace.Beam(90, 0, np.zeros(3))).direction, [-1, 0, 0])
    src = raytrace.beam_frame(raytrace.Beam(90, 0, np.zeros(3))).source_mm(
        raytrace.Beam(90, 0, np.zeros(3)), 1000.0
    )
    assert np.allclose(src, [1000, 0, 0])


@pytest.mark.parametrize("gantry", [0.0, 90.0, 180.0, 270.0])
def test_depth_in_a_water_box_is_the_geometric_depth(water, gantry):
    ct, body = water
    spr = hu_to_spr(ct.hu, WATER_CALIBRATION)
    x, y, z = ct.grid.axes_mm()
    iso = np.array([0.0, 110.0, 0.0])
    pts = np.array(
        [[0.0, d, 0.0] for d in (20.0, 60.0, 150.0)] + [[-30.0, 110.0, 10.0], [40.0, 110.0, 0]]
    )
    view = raytrace.water_equivalent_depth(spr, ct.grid, raytrace.Beam(gantry, 0, iso), 2000.0, pts)
    # faces: y = 0 (gantry 0), x = +60 (gantry 90), y = 220 (180), x = -60 (270)
    expected = {
        0.0: pts[:, 1],
        90.0: 60.0 - pts[:, 0],
        180.0: 220.0 - pts[:, 1],
        270.0: pts[:, 0] + 60.0,
    }[gantry]
    # divergent rays from 2 m travel slightly longer paths off axis
    assert np.allclose(view.wed_mm, expected, atol=0.6)


def test_a_dense_slab_adds_its_water_equivalent_thickness(water):
    ct, body = water
    x, y, z = ct.grid.axes_mm()
    hu = ct.hu.copy()
    slab = (y > 40) & (y < 60)  # 20 mm at SPR 2
    hu[:, slab, :] = np.where(hu[:, slab, :] > -500, 1000.0, hu[:, slab, :])
    spr = hu_to_spr(hu, WATER_CALIBRATION)
    view = raytrace.water_equivalent_depth(
        spr,
        ct.grid,
        raytrace.Beam(0, 0, np.array([0, 110.0, 0])),
        2000.0,
        np.array([[0, 100.0, 0]]),
    )
    assert abs(view.wed_mm[0] - 120.0) < 0.6


def test_source_to_surface_distance_finds_the_skin(water):
    ct, _ = water
    spr = hu_to_spr(ct.hu, WATER_CALIBRATION)
    beam = raytrace.Beam(0, 0, np.array([0, 110.0, 0]))
    ssd = raytrace.source_to_surface_mm(spr, ct.grid, beam, 2000.0, [0.0, 20.0], [0.0, 0.0])
    assert abs(ssd[0] - (2000.0 - 110.0)) < 1.0
    far = raytrace.source_to_surface_mm(spr, ct.grid, beam, 2000.0, [500.0], [0.0])
    assert np.isnan(far[0])


def test_projection_to_isocentre_plane_undoes_divergence():
    beam = raytrace.Beam(0, 0, np.zeros(3))
    # a point 100 mm downstream of the isocentre, on the ray through u = 10 mm
    sad = 1000.0
    point = np.array([[10.0 * 1.1, 100.0, 0.0]])
    u, v, axial = raytrace.project_to_isocentre_plane(point, beam, sad)
    assert np.allclose([u[0], v[0], axial[0]], [10.0, 0.0, 1100.0])


def test_couch_rotation_turns_a_lateral_beam_into_a_longitudinal_one(water):
    # gantry 90 with couch 90: the beam travels towards the head (+z), entering at z = -60
    ct, _ = water
    spr = hu_to_spr(ct.hu, WATER_CALIBRATION)
    beam = raytrace.Beam(90.0, 90.0, np.array([0.0, 110.0, 0.0]))
    assert np.allclose(raytrace.beam_frame(beam).direction, [0, 0, 1])
    pts = np.array([[0.0, 110.0, z] for z in (-40.0, 0.0, 30.0)])
    view = raytrace.water_equivalent_depth(spr, ct.grid, beam, 2000.0, pts)
    assert np.allclose(view.wed_mm, pts[:, 2] + 60.0, atol=0.6)


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64])
def test_hu_to_spr_gives_numpy_interp_values_clamped_at_the_curve_ends(dtype):
    from protonpath.planning.ct import HuCalibration

    curve = HuCalibration(
        np.array([-1000.0, -100.0, 0.0, 100.0, 1500.0, 3000.0]),
        np.array([0.001, 0.93, 1.0, 1.07, 1.8, 2.5]),
    )
    rng = np.random.default_rng(5)
    hu = rng.uniform(-1200, 3200, size=(7, 9, 11)).astype(dtype)
    hu[0, 0, :6] = curve.hu  # the knots themselves
    hu = hu[:, ::-1, :]  # not contiguous
    spr = hu_to_spr(hu, curve)
    assert spr.dtype == np.float32 and spr.shape == hu.shape
    expected = np.interp(hu.astype(np.float64), curve.hu, curve.spr).astype(np.float32)
    assert np.allclose(spr, expected, rtol=2e-7, atol=0)
    assert spr.min() == np.float32(0.001) and spr.max() == np.float32(2.5)
