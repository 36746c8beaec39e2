"""DVH, dose statistics and gamma index on distributions with known answers."""

import numpy as np

from protonpath.planning.dvh import cumulative_dvh, dose_at_volume, dose_statistics, volume_at_dose
from protonpath.planning.gamma import gamma_index, gamma_pass_rate


def test_uniform_dose_has_a_step_dvh():
    dose = np.full((4, 5, 5), 2.0)
    mask = np.ones_like(dose, bool)
    dvh = cumulative_dvh(dose, mask, "PTV", bin_gy=0.01)
    assert dvh.volume_fraction[0] == 1.0
    assert np.all(dvh.volume_fraction[dvh.dose_gy <= 2.0] == 1.0)
    assert np.all(dvh.volume_fraction[dvh.dose_gy > 2.0] == 0.0)
    stats = dose_statistics(dose, mask, prescription_gy=2.0)
    assert stats["D95"] == stats["D2"] == stats["mean"] == 2.0
    assert stats["V95"] == 1.0 and stats["V107"] == 0.0


def test_ramp_dose_statistics():
    dose = np.arange(1.0, 101.0).reshape(1, 10, 10)  # 1..100 Gy, one voxel each
    mask = np.ones_like(dose, bool)
    assert dose_at_volume(dose, mask, 95) == 6.0
    assert dose_at_volume(dose, mask, 2) == 99.0
    assert dose_at_volume(dose, mask, 50) == 51.0
    assert volume_at_dose(dose, mask, 95.0) == 0.06
    stats = dose_statistics(dose, mask, prescription_gy=100.0)
    assert stats["mean"] == 50.5 and stats["V95"] == 0.06 and stats["max"] == 100.0
    dvh = cumulative_dvh(dose, mask)
    assert np.all(np.diff(dvh.volume_fraction) <= 0)
    assert abs(np.interp(50.5, dvh.dose_gy, dvh.volume_fraction) - 0.5) < 0.011


def test_dvh_only_counts_the_structure():
    dose = np.zeros((1, 2, 2))
    dose[0, 0, 0] = 10.0
    mask = np.zeros_like(dose, bool)
    mask[0, 0, :] = True
    assert dose_statistics(dose, mask)["mean"] == 5.0


def smooth_field(shape=(20, 30, 30)):
    k, j, i = np.indices(shape)
    return 10 * np.exp(-((i - 15) ** 2 + (j - 15) ** 2) / 60.0 - (k - 10) ** 2 / 40.0)


def test_identical_doses_pass_gamma_everywhere():
    d = smooth_field()
    g = gamma_index(d, d, (2.0, 2.0, 2.0))
    assert gamma_pass_rate(g) == 1.0
    assert np.nanmax(g) == 0.0


def test_a_shift_within_the_distance_criterion_passes_and_a_larger_one_fails():
    d = smooth_field()
    shifted = np.roll(d, 1, axis=2)  # 1 mm shift on a 1 mm grid
    assert gamma_pass_rate(gamma_index(d, shifted, (1.0, 1.0, 1.0), 2.0, 2.0)) > 0.99
    far = np.roll(d, 5, axis=2)  # 5 mm
    assert gamma_pass_rate(gamma_index(d, far, (1.0, 1.0, 1.0), 2.0, 2.0)) < 0.6


def test_a_5_percent_dose_error_fails_a_2_percent_criterion():
    d = smooth_field()
    k, j, i = np.indices(d.shape)
    flat = np.full(d.shape, 10.0)
    assert gamma_pass_rate(gamma_index(flat, flat * 1.05, (2.0, 2.0, 2.0))) == 0.0
    assert gamma_pass_rate(gamma_index(flat, flat * 1.01, (2.0, 2.0, 2.0))) == 1.0
