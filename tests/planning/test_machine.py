"""The Proteus One-like beam model: ranges, depth doses and spot sizes."""

import numpy as np

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
