"""Pencil-beam dose in a water box: range, lateral spread, symmetry and linearity."""

import numpy as np
import pytest

from protonpath.planning import dose, raytrace, spots
from protonpath.planning import machine as mach
from protonpath.planning.ct import CT, hu_to_spr
from protonpath.planning.resources import load_default_machine

from .conftest import WATER_CALIBRATION, water_box


@pytest.fixture(scope="module")
def fine_box():
    return water_box(half_width_mm=40.0, depth_mm=220.0, spacing_mm=(2.0, 1.0, 2.0))


def spot_dose(case, energy_mev, gantry=0.0, iso=(0.0, 110.0, 0.0), u=0.0, v=0.0, lateral_mm=30):
    """Dose (Gy per 10^6 protons) of one spot on the CT grid, near the central axis."""
    ct, _ = case
    m = load_default_machine()
    spr = hu_to_spr(ct.hu, WATER_CALIBRATION)
    x, y, z = ct.grid.axes_mm()
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    if gantry in (0.0, 180.0):
        mask = (np.abs(xx - u) <= lateral_mm) & (np.abs(zz - v) <= lateral_mm)
    else:
        mask = (np.abs(yy - iso[1]) <= lateral_mm) & (np.abs(zz - v) <= lateral_mm)
    e = int(np.argmin(np.abs(m.energies_mev - energy_mev)))
    s = spots.spots_from_arrays(m, [0], [m.energies_mev[e]], [u], [v])
    beam = raytrace.Beam(gantry, 0.0, np.array(iso))
    dm = dose.compute_dose_matrix(spr, ct.grid, ct.grid, mask, [beam], s, m)
    return dm.dose_cube(np.array([1.0])), m, e, dm


def test_range_in_water_matches_the_machine_r80_within_1mm(fine_box):
    ct, _ = fine_box
    for energy in (100.0, 150.0):
        d, m, e, _ = spot_dose(fine_box, energy)
        x, y, z = ct.grid.axes_mm()
        idd = d.sum(axis=(0, 2))  # laterally integrated
        depth = y  # water surface at y = 0
        r80 = mach.distal_depth_mm(depth, idd, 0.8)
        # the air gap from nozzle to skin adds a small water-equivalent offset
        ssd = m.sad_mm - 110.0
        air = dose.AIR_SPR * (ssd + m.nozzle_to_isocentre_mm - m.sad_mm)
        assert abs(r80 - (m.range_r80_mm[e] - air)) < 1.0
        assert abs(r80 - mach.bragg_kleeman_range_mm(m.energies_mev[e])) < 1.0


def test_laterally_integrated_dose_equals_the_depth_dose_table(fine_box):
    ct, _ = fine_box
    d, m, e, _ = spot_dose(fine_box, 150.0)
    x, y, z = ct.grid.axes_mm()
    dx, dy, dz = ct.grid.spacing_mm
    integrated = d.sum(axis=(0, 2)) * dx * dz  # Gy mm^2 per 10^6 protons
    at = np.flatnonzero((y > 20) & (y < 120))
    table = mach.IDD_TO_GY_MM2_PER_MEGAPROTON * np.interp(y[at], m.depths_mm[e], m.idd[e])
    assert np.allclose(integrated[at], table, rtol=0.02)


def test_lateral_spread_is_air_spot_and_multiple_scattering_in_quadrature(fine_box):
    ct, _ = fine_box
    d, m, e, _ = spot_dose(fine_box, 150.0)
    x, y, z = ct.grid.axes_mm()
    ssd = m.sad_mm - 110.0
    sigma_air = m.spot_sigma_in_air_mm(e, ssd)
    k2 = -2 * np.log(1 - 0.995)
    truncation = 1 - (k2 / 2) * np.exp(-k2 / 2) / (1 - np.exp(-k2 / 2))
    for depth in (20.0, 100.0, 140.0):
        j = int(np.argmin(np.abs(y - depth)))
        plane = d[:, j, :]
        second_moment = (plane * x[None, :] ** 2).sum() / plane.sum()
        sigma_mcs = np.interp(y[j], m.depths_mm[e], m.sigma_mcs_mm[e])
        scale = (m.sad_mm - 110.0 + y[j]) / m.sad_mm  # beam divergence
        expected = truncation * (sigma_air**2 + sigma_mcs**2) * scale**2 + dx_var(ct)
        assert abs(np.sqrt(second_moment) - np.sqrt(expected)) / np.sqrt(expected) < 0.04
    # wider deep than shallow
    shallow = d[:, int(np.argmin(np.abs(y - 20))), :]
    deep = d[:, int(np.argmin(np.abs(y - 140))), :]
    assert (deep > 0.01 * deep.max()).sum() > (shallow > 0.01 * shallow.max()).sum()


def dx_var(ct):
    return ct.grid.spacing_mm[0] ** 2 / 12.0


def test_central_spot_dose_is_mirror_symmetric(fine_box):
    d, *_ = spot_dose(fine_box, 120.0)
    assert np.allclose(d, d[:, :, ::-1], rtol=1e-4, atol=1e-5 * d.max())
    assert np.allclose(d, d[::-1, :, :], rtol=1e-4, atol=1e-5 * d.max())


def test_opposed_beams_give_mirrored_doses():
    case = water_box(half_width_mm=40.0, depth_mm=220.0, spacing_mm=(4.0, 2.0, 4.0))
    front, *_ = spot_dose(case, 130.0, gantry=0.0)
    back, *_ = spot_dose(case, 130.0, gantry=180.0)
    assert np.allclose(front, back[:, ::-1, :], rtol=1e-3, atol=1e-6 * front.max())


def test_dose_scales_linearly_with_spot_weights(fine_box):
    ct, _ = fine_box
    m = load_default_machine()
    spr = hu_to_spr(ct.hu, WATER_CALIBRATION)
    x, y, z = ct.grid.axes_mm()
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    mask = (np.abs(xx) <= 30) & (np.abs(zz) <= 30)
    e = m.energies_mev[[30, 40]]
    s = spots.spots_from_arrays(m, [0, 0], e, [-5.0, 5.0], [0.0, 0.0])
    dm = dose.compute_dose_matrix(
        spr, ct.grid, ct.grid, mask, [raytrace.Beam(0.0, 0.0, (0, 110, 0))], s, m
    )
    a, b = dm.dose_cube(np.array([1.0, 0.0])), dm.dose_cube(np.array([0.0, 1.0]))
    assert np.allclose(dm.dose_cube(np.array([2.5, 0.0])), 2.5 * a)
    assert np.allclose(dm.dose_cube(np.array([1.0, 3.0])), a + 3.0 * b)
    # the matrix product and the sparse column agree
    assert np.allclose(
        dose.csc_rmatvec(dm.matrix, np.ones(dm.matrix.shape[0])), dm.matrix.sum(axis=0)
    )


def test_denser_medium_pulls_the_peak_upstream(fine_box):
    ct, _ = fine_box
    d_water, m, e, _ = spot_dose(fine_box, 150.0)
    x, y, z = ct.grid.axes_mm()
    dense = ct.hu.copy()
    dense[:, (y > 20) & (y < 40), :] = np.where(
        dense[:, (y > 20) & (y < 40), :] > -500, 500.0, -1000
    )
    from protonpath.planning.ct import CT

    d_bone, *_ = spot_dose((CT(dense, ct.grid), None), 150.0)
    r_water = mach.distal_depth_mm(y, d_water.sum(axis=(0, 2)), 0.8)
    r_bone = mach.distal_depth_mm(y, d_bone.sum(axis=(0, 2)), 0.8)
    # 20 mm of SPR 1.5 add 10 mm of water-equivalent depth
    assert abs((r_water - r_bone) - 10.0) < 1.0


def _reference_columns(view, beam_spots, m, ssd, tables, cut_level=0.995):
    """Every (voxel, spot) pair of :func:`dose.beam_dose_columns` evaluated by brute force,
    without lateral cells or any skipping: the kernel must keep exactly these entries."""
    sad = m.sad_mm
    scale = view.axial_mm.astype(np.float64) / sad
    sig0 = dose.spot_initial_sigma_mm(m, beam_spots, ssd) ** 2
    ssd = np.where(np.isfinite(ssd), ssd, sad)
    offset = dose.AIR_SPR * (ssd + m.nozzle_to_isocentre_mm - sad - m.fit_air_offset_mm)
    k2 = -2.0 * np.log(1.0 - cut_level)
    wed = view.wed_mm.astype(np.float64)
    u, v = view.u_mm.astype(np.float64), view.v_mm.astype(np.float64)
    columns = []
    for s in range(len(beam_spots)):
        e = beam_spots.energy_index[s]
        max_wed = (tables.n_depths[e] - 2) * tables.step_mm - offset[s]
        du, dv = u - beam_spots.u_mm[s], v - beam_spots.v_mm[s]
        r2 = (du * du + dv * dv) * scale * scale
        depth = np.maximum(wed + offset[s], 0.0)
        f = depth / tables.step_mm
        i0 = f.astype(np.int64)
        t = f - i0
        i0 = np.minimum(i0, tables.sigma_mcs_sq_mm2.shape[1] - 2)
        s2 = (
            sig0[s]
            + tables.sigma_mcs_sq_mm2[e, i0] * (1 - t)
            + tables.sigma_mcs_sq_mm2[e, i0 + 1] * t
        )
        idd = tables.idd_gy_mm2[e, i0] * (1 - t) + tables.idd_gy_mm2[e, i0 + 1] * t
        keep = (wed <= max_wed) & (r2 <= k2 * s2)
        value = idd * np.exp(-r2 / (2 * s2)) / (2 * np.pi * s2) / cut_level
        rows = np.flatnonzero(keep)
        columns.append((rows, value[rows]))
    return columns


def test_dose_columns_keep_every_entry_of_a_brute_force_evaluation():
    """Off-axis spots of several energies through a bone slab: the kernel visits only the
    lateral cells a spot's cut-off reaches and stops at the end of its depth-dose table, and
    must still keep exactly the entries a voxel-by-voxel evaluation keeps."""
    ct, _ = water_box(half_width_mm=50.0, depth_mm=200.0, spacing_mm=(2.0, 2.0, 2.0))
    hu = ct.hu.copy()
    x, y, z = ct.grid.axes_mm()
    slab = (y > 30) & (y < 50)
    hu[:, slab, :] = np.where(x[None, None, :] > 0, 1000.0, hu[:, slab, :])
    ct = CT(hu, ct.grid)
    m = load_default_machine()
    spr = hu_to_spr(ct.hu, WATER_CALIBRATION)
    mask = ct.hu > -500
    beam = raytrace.Beam(0.0, 0.0, np.array([0.0, 100.0, 0.0]))
    energies = m.energies_mev[[10, 35, 60, 85]]
    rng = np.random.default_rng(3)
    n = 24
    s = spots.spots_from_arrays(
        m,
        np.zeros(n, int),
        rng.choice(energies, n),
        rng.uniform(-30, 30, n),
        rng.uniform(-30, 30, n),
    )
    points = ct.grid.points_mm(np.flatnonzero(mask))
    view = raytrace.water_equivalent_depth(spr, ct.grid, beam, m.sad_mm, points)
    ssd = raytrace.source_to_surface_mm(spr, ct.grid, beam, m.sad_mm, s.u_mm, s.v_mm)
    tables = dose.kernel_tables(m)
    indptr, indices, data = dose.beam_dose_columns(view, s, m, ssd, tables)
    for k, (rows, values) in enumerate(_reference_columns(view, s, m, ssd, tables)):
        got = indices[indptr[k] : indptr[k + 1]]
        order = np.argsort(got)
        assert np.array_equal(got[order], rows)
        assert np.allclose(data[indptr[k] : indptr[k + 1]][order], values, rtol=1e-5, atol=0)


def test_voxel_cells_are_sorted_as_lexsort_by_cell_then_depth():
    """The kernel's cell binning (a counting sort by cell, then a sort by depth in each cell)
    orders voxels exactly as ``np.lexsort((wed, cell))``, ties in depth included."""
    rng = np.random.default_rng(7)
    n = 20_000
    u, v = rng.uniform(-60, 60, n), rng.uniform(-40, 40, n)
    wed = np.round(rng.uniform(0, 250, n), 0)  # many equal depths within a cell
    start, order, n_cu, n_cv, u0, v0 = dose._bin_voxels(u, v, wed, 4.0)
    cell = np.floor((u - u0) / 4.0).astype(np.int64) * n_cv + np.floor((v - v0) / 4.0).astype(
        np.int64
    )
    assert np.array_equal(order, np.lexsort((wed, cell)))
    assert np.array_equal(start, np.concatenate([[0], np.cumsum(np.bincount(cell, minlength=n_cu * n_cv))]))
