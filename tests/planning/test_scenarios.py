"""Uncertainty scenarios: the standard sets, and their dose in water (a setup shift moves the
dose by the shift, a range error moves the distal fall-off by that fraction of the range)."""

import numpy as np
import pytest

from protonpath.planning.ct import CT, Grid, hu_to_spr
from protonpath.planning.raytrace import Beam
from protonpath.planning.resources import load_default_machine
from protonpath.planning.scenarios import (
    Scenario,
    ScenarioSet,
    parse_scenarios,
    scenario_dose_matrix,
    scenario_set,
)
from protonpath.planning.spots import spots_from_arrays

from .conftest import WATER_CALIBRATION


def test_default_set_is_nominal_six_shifts_two_ranges_and_their_twelve_combinations():
    s = scenario_set()
    assert len(s) == 21 and s[0].is_nominal
    shifts = [sc for sc in s if any(sc.shift_mm) and not sc.range_error]
    ranges = [sc for sc in s if sc.range_error and not any(sc.shift_mm)]
    both = [sc for sc in s if sc.range_error and any(sc.shift_mm)]
    assert len(shifts) == 6 and len(ranges) == 2 and len(both) == 12
    assert sorted(np.abs(np.array([sc.shift_mm for sc in shifts])).sum(axis=1)) == [3.0] * 6
    assert {sc.range_error for sc in ranges} == {0.035, -0.035}
    assert len({(sc.shift_mm, sc.range_error) for sc in s}) == 21
    assert np.isclose(s.weights.sum(), 1.0) and np.allclose(s.weights, 1 / 21)


def test_other_models_and_parameters():
    assert len(scenario_set("nominal")) == 1
    assert len(scenario_set("shifts", setup_mm=5.0)) == 7
    assert max(abs(v) for sc in scenario_set("shifts", setup_mm=5.0) for v in sc.shift_mm) == 5.0
    assert len(scenario_set("ranges")) == 3
    a, b = (
        scenario_set("sampled", n_samples=8, seed=3),
        scenario_set("sampled", n_samples=8, seed=3),
    )
    assert len(a) == 9 and a == b and a != scenario_set("sampled", n_samples=8, seed=4)
    assert len(parse_scenarios("21")) == 21 and len(parse_scenarios("sampled:5")) == 6
    assert parse_scenarios("combined", 2.0, 3.0)[1].shift_mm == (2.0, 0.0, 0.0)
    assert parse_scenarios("ranges", 2.0, 3.0)[1].range_error == pytest.approx(0.03)


def test_scenarios_round_trip_through_a_dict():
    s = scenario_set("sampled", n_samples=4, seed=1)
    assert ScenarioSet.from_dict(s.to_dict()) == s


@pytest.mark.parametrize(
    "make",
    [
        lambda: scenario_set("everything"),
        lambda: scenario_set(setup_mm=-3.0),
        lambda: Scenario((1.0, 2.0)),
        lambda: Scenario(range_error=0.9),
        lambda: ScenarioSet((Scenario((3.0, 0, 0)),)),
        lambda: parse_scenarios("sampled:x"),
    ],
)
def test_bad_scenarios_are_refused_with_a_clear_error(make):
    with pytest.raises(ValueError):
        make()


@pytest.fixture(scope="module")
def fine_water():
    """Water from y = 0 to 200 mm, fine (0.5 mm) along the beam, 2 mm across."""
    dx, dy, dz = 2.0, 0.5, 2.0
    x = np.arange(-49.0, 50.0, dx)
    y = np.arange(-10.0 + dy / 2, 200.0, dy)
    z = np.arange(-49.0, 50.0, dz)
    grid = Grid((len(z), len(y), len(x)), (x[0], y[0], z[0]), (dx, dy, dz))
    hu = np.where((y >= 0)[None, :, None], 0.0, -1000.0) * np.ones((len(z), 1, len(x)))
    return CT(hu.astype(np.float32), grid), x, y, z


def _line_dose(case, scenario, mask_of):
    ct, x, y, z = case
    machine = load_default_machine()
    e = int(np.argmin(np.abs(machine.range_r80_mm - 100.0)))
    spots = spots_from_arrays(machine, [0], [machine.energies_mev[e]], [0.0], [0.0])
    mask = mask_of(x, y, z)
    beam = Beam(0.0, 0.0, np.array([0.0, 80.0, 0.0]))
    dm = scenario_dose_matrix(
        hu_to_spr(ct.hu, WATER_CALIBRATION),
        ct.grid,
        ct.grid,
        mask,
        [beam],
        spots,
        machine,
        scenario,
    )
    return dm.dose_cube(np.ones(1))[mask]


def _lateral_line(x, y, z):
    m = np.zeros((len(z), len(y), len(x)), dtype=bool)
    m[np.argmin(np.abs(z - 1.0)), np.argmin(np.abs(y - 50.0)), :] = True
    return m


def _axis_line(x, y, z):
    m = np.zeros((len(z), len(y), len(x)), dtype=bool)
    m[np.argmin(np.abs(z - 1.0)), :, np.argmin(np.abs(x - 1.0))] = True
    return m


def test_a_3mm_setup_shift_moves_the_dose_by_3mm(fine_water):
    x = fine_water[1]
    centre = {}
    for shift in (0.0, 3.0, -3.0):
        d = _line_dose(fine_water, Scenario((shift, 0.0, 0.0)), _lateral_line)
        centre[shift] = float((x * d).sum() / d.sum())
    assert centre[3.0] - centre[0.0] == pytest.approx(3.0, abs=0.05)
    assert centre[0.0] - centre[-3.0] == pytest.approx(3.0, abs=0.05)


def _distal_r80(y, d):
    peak = int(np.argmax(d))
    level = 0.8 * d[peak]
    after = peak + int(np.argmax(d[peak:] < level))
    # linear interpolation between the last point above and the first below 80 %
    y0, y1, d0, d1 = y[after - 1], y[after], d[after - 1], d[after]
    return float(y0 + (d0 - level) * (y1 - y0) / (d0 - d1))


def test_a_range_error_moves_the_distal_falloff_by_that_fraction_of_the_range(fine_water):
    y = fine_water[2]
    r80 = {
        err: _distal_r80(y, _line_dose(fine_water, Scenario(range_error=err), _axis_line))
        for err in (0.0, 0.035, -0.035)
    }
    assert 90.0 < r80[0.0] < 110.0  # depth from the water surface at y = 0
    assert r80[0.035] - r80[0.0] == pytest.approx(0.035 * r80[0.0], rel=0.05)
    assert r80[0.0] - r80[-0.035] == pytest.approx(0.035 * r80[0.0], rel=0.05)
    # the shift along the beam leaves depths, hence the fall-off, where they were
    along = _distal_r80(y, _line_dose(fine_water, Scenario((0.0, 3.0, 0.0)), _axis_line))
    assert along == pytest.approx(r80[0.0], abs=0.1)
