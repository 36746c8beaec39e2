"""The Proteus One-like beam model: ranges, depth doses and spot sizes."""

import numpy as np
import pytest

from protonpath.planning import machine as mach
from protonpath.planning.resources import load_default_machine, load_machine_json, machine_json


def test_energies_span_the_proteus_one_range():
    m = load_default_machine()
    assert 69.9 <= m.energies_mev.min() <= 71.0
    assert 226.0 <= m.energies_mev.max() <= 228.0
    assert np.all(np.diff(m.energies_mev) > 0)


def test_r80_of_every_depth_dose_matches_bragg_kleeman_within_1mm():
    m = load_default_machine()
    expected = mach.bragg_kleeman_range_mm(m.energies_mev)
    measured = np.array(
        [mach.distal_depth_mm(d, idd, 0.8) for d, idd in zip(m.depths_mm, m.idd, strict=True)]
    )
    assert np.abs(measured - expected).max() < 1.0
    assert np.abs(m.range_r80_mm - expected).max() < 1.0


def test_bragg_kleeman_matches_reference_ranges_in_water():
    # CSDA ranges in water (NIST PSTAR): 100 MeV 77.2 mm, 150 MeV 157.7 mm, 200 MeV 259.6 mm;
    # Bragg-Kleeman with p = 1.77 is within 2 % over the clinical range.
    for energy, csda in ((100, 77.18), (150, 157.7), (200, 259.6)):
        assert abs(mach.bragg_kleeman_range_mm(energy) - csda) / csda < 0.02


def test_depth_doses_have_a_bragg_peak_before_the_range():
    m = load_default_machine()
    for e in range(0, m.n_energies, 10):
        d, idd = m.depths_mm[e], m.idd[e]
        assert idd.max() / idd[0] > 3.0  # peak-to-entrance ratio
        assert m.range_r80_mm[e] - 6.0 < m.peak_depth_mm[e] < m.range_r80_mm[e]
        assert idd[d > m.range_r80_mm[e] + 10].max() < 0.05 * idd.max()


def test_multiple_scattering_at_end_of_range_follows_the_water_scaling_law():
    # sigma at the end of range ~ 0.0294 cm * R[cm]^0.896 (Gottschalk's fit for water)
    for energy in (100.0, 160.0, 220.0):
        r = mach.bragg_kleeman_range_mm(energy)
        expected_mm = 10 * 0.0294 * (r / 10) ** 0.896
        got = mach.multiple_scattering_sigma_mm(r, energy)
        assert abs(got - expected_mm) / expected_mm < 0.12


def test_spot_size_in_air_shrinks_with_energy():
    m = load_default_machine()
    at_iso = m.spot_sigma_in_air_mm(np.arange(m.n_energies), np.full(m.n_energies, m.sad_mm))
    assert np.all(np.diff(at_iso) <= 1e-9)
    assert 2.5 < at_iso[-1] < at_iso[0] < 8.0


def test_machine_json_round_trip_keeps_the_tables():
    m = load_default_machine()
    back = load_machine_json(machine_json(m))
    assert np.allclose(back.energies_mev, m.energies_mev)
    assert np.allclose(back.idd[5], m.idd[5], rtol=1e-4)
    assert np.allclose(back.focus_sigma_mm, m.focus_sigma_mm, rtol=1e-4)


def test_energy_index_finds_machine_energies_and_rejects_others():
    m = load_default_machine()
    idx = m.energy_index(m.energies_mev[[3, 40]])
    assert list(idx) == [3, 40]
    try:
        m.energy_index([m.energies_mev[3] + 0.5])
    except ValueError:
        pass
    else:
        raise AssertionError("an energy outside the base data was accepted")


def test_bortfeld_depth_dose_is_continuous_where_the_plateau_form_takes_over():
    # the plateau (no straggling) and near-peak (parabolic cylinder) forms must join at
    # zeta = 10 straggling widths before the range: no step anywhere in the curve
    for energy in (70.0, 150.0, 226.0):
        z = np.linspace(0.0, mach.bragg_kleeman_range_mm(energy) * 0.9, 200001)
        idd = mach.bortfeld_idd(z, energy)
        step = np.abs(np.diff(idd)) / idd[1:]
        assert step.max() < 2e-4, energy


def test_bortfeld_depth_dose_conserves_energy():
    # with no low-energy tail, the depth dose integrates to the beam's energy less what
    # nuclear interactions carry away: E0 (1 - (1 - gamma) beta R0 / ((1 + beta R0)(1 + 1/p)))
    # (energy balance of Bortfeld 1997's fluence and local-deposit terms); gamma = 1 gives E0
    for energy in (70.0, 150.0, 226.0):
        r0 = float(mach.bragg_kleeman_range_mm(energy))
        z = np.linspace(0.0, r0 + 40.0, 200001)
        for gamma in (0.0, 0.6, 1.0):
            idd = mach.bortfeld_idd(z, energy, tail_fraction=0.0, gamma_nuclear=gamma)
            deposited_mev = np.trapezoid(idd, z) / 10.0  # MeV cm2 g-1 x cm, water
            b = 0.0012 * r0
            expected = energy * (1 - (1 - gamma) * b / ((1 + b) * (1 + 1 / mach.BK_P)))
            assert deposited_mev == pytest.approx(expected, rel=2e-3), (energy, gamma)


def test_low_energy_tail_raises_the_plateau_against_the_peak():
    z = np.linspace(0.0, 200.0, 2001)
    flat = mach.bortfeld_idd(z, 150.0, tail_fraction=0.0)
    tail = mach.bortfeld_idd(z, 150.0, tail_fraction=0.1)
    # at the entrance the residual range is R0: the plateau bracket 1 + (beta + gamma beta p) R0
    # gains p epsilon
    r0_cm = float(mach.bragg_kleeman_range_mm(150.0)) / 10.0
    bracket = 1 + (0.012 + 0.6 * 0.012 * mach.BK_P) * r0_cm
    assert tail[0] / flat[0] == pytest.approx(1 + mach.BK_P * 0.1 / bracket, rel=0.01)
    assert tail.max() / flat.max() < tail[0] / flat[0]


def test_nuclear_build_up_moves_the_nuclear_deposit_away_from_the_surface():
    energy = 200.0
    r0 = float(mach.bragg_kleeman_range_mm(energy))
    z = np.array([0.0, 33.0, 250.0])
    local = mach.bortfeld_idd(z, energy, tail_fraction=0.0)
    built = mach.bortfeld_idd(z, energy, tail_fraction=0.0, nuclear_buildup_mm=33.0)
    # at the surface none of the nuclear term is there yet: bracket 1 + beta R0 instead of
    # 1 + (beta + gamma beta p) R0
    b = 0.0012 * r0
    assert built[0] / local[0] == pytest.approx((1 + b) / (1 + b + 0.6 * mach.BK_P * b), rel=1e-3)
    # one build-up length down, 1 - 1/e of it; far down, all of it
    resid = (r0 - z[1]) * 0.0012
    full = 1 + resid + 0.6 * mach.BK_P * resid
    assert built[1] / local[1] == pytest.approx(
        (1 + resid + (1 - np.exp(-1)) * 0.6 * mach.BK_P * resid) / full, rel=1e-3
    )
    assert built[2] == pytest.approx(local[2], rel=1e-3)


def test_the_packaged_machine_is_what_its_generator_writes_today():
    # the shipped file must follow the depth-dose formula as it is (it once kept a plateau
    # 3-15 % low, written before a fix of bortfeld_idd)
    from protonpath.planning.resources import build_proteus_one_like_machine

    shipped = load_default_machine()
    built = build_proteus_one_like_machine()
    assert np.array_equal(shipped.energies_mev, built.energies_mev)
    for a, b in zip(shipped.idd, built.idd, strict=True):
        assert np.allclose(a, b, rtol=1e-4, atol=1e-6 * b.max())  # 5 significant digits
    assert np.allclose(shipped.range_r80_mm, built.range_r80_mm, atol=1e-6)
