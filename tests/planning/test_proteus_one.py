"""Proteus One machine data, PSTAR ranges, MU limits, delivery time, range shifter, halo."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pydicom
import pytest

from protonpath.planning import deliverable, delivery_time, proteus_one, resources
from protonpath.planning.deliverability import enforce_minimum_weight, plan_objective
from protonpath.planning.dicom_export import StudyContext, rt_dose_dataset, rt_ion_plan_dataset
from protonpath.planning.pipeline import PlanSettings, default_objectives, plan_pbs
from protonpath.planning.raytrace import Beam
from protonpath.planning.spots import spots_from_arrays
from protonpath.planning.structures import EXTERNAL, TARGET, Structure, resolve_overlaps

from .conftest import WATER_CALIBRATION, water_box

RX = 2.0
SETTINGS = PlanSettings(
    dose_grid_mm=4.0, spot_spacing_mm=6.0, layer_spacing_mm=4.0, max_iterations=60
)

# NIST PSTAR, liquid water: CSDA range (g/cm2) and total stopping power (MeV cm2/g) as printed
# by the NIST program, at energies of the table and between its rows (to check interpolation)
PSTAR_STOPPING = {10.0: 45.67, 50.0: 12.45, 70.0: 9.559, 100.0: 7.289, 150.0: 5.445, 200.0: 4.492}


@pytest.fixture(scope="module")
def machine():
    return proteus_one.build_proteus_one_machine()


def test_machine_data_file_gives_every_figure_a_status_and_source():
    raw = json.loads(resources.read_data_text(proteus_one.DATA_FILE))
    data = proteus_one.load_proteus_one()
    assert data.version == raw["version"]
    for name, fig in raw["figures"].items():
        assert fig["status"] in ("published", "specification", "unpublished"), name
        assert len(fig["source"]) > 20, name
    assert 69.0 <= data.energy_min_mev <= 71.0 and 225.0 <= data.energy_max_mev <= 230.0
    assert data.pulse_period_ms == 1.0
    assert "layer_switch_up_s" in data.unpublished() and "min_mu_per_spot" in data.unpublished()
    # every figure is a parameter
    other = dataclasses.replace(data, min_mu_per_spot=0.02)
    assert other.min_mu_per_spot == 0.02


def test_machine_data_file_missing_a_figure_is_refused():
    raw = json.loads(resources.read_data_text(proteus_one.DATA_FILE))
    del raw["figures"]["layer_switch_up_s"]
    with pytest.raises(ValueError, match="layer_switch_up_s"):
        proteus_one.proteus_one_from_dict(raw)


def test_pstar_interpolation_reproduces_withheld_rows_within_0_5_mm():
    table = proteus_one.load_pstar_water()
    for i in range(3, len(table.energy_mev) - 3):
        keep = np.ones(len(table.energy_mev), dtype=bool)
        keep[i] = False
        sub = type(table)(table.energy_mev[keep], table.csda_range_mm[keep])
        assert abs(sub.range_mm(table.energy_mev[i]) - table.csda_range_mm[i]) < 0.5


def test_stopping_power_from_the_range_table_matches_pstar():
    table = proteus_one.load_pstar_water()
    for e, s in PSTAR_STOPPING.items():
        assert table.stopping_power_mev_per_mm(e) == pytest.approx(s / 10.0, rel=0.015)


def test_machine_ranges_in_water_match_pstar_csda_within_0_5_mm(machine):
    table = proteus_one.load_pstar_water()
    assert machine.energies_mev[0] == pytest.approx(70.0, abs=0.01)
    assert machine.energies_mev[-1] == pytest.approx(226.7, abs=0.01)
    diff = machine.range_r80_mm - table.range_mm(machine.energies_mev)
    assert np.max(np.abs(diff)) < 0.5
    # the generic Bragg-Kleeman machine does not (0.7 mm off near 200 MeV)
    generic = resources.load_default_machine()
    sel = generic.energies_mev <= 226.0
    off = generic.range_r80_mm[sel] - table.range_mm(generic.energies_mev[sel])
    assert np.max(np.abs(off)) > 0.5


def test_protons_per_mu_follow_the_stopping_power():
    data = proteus_one.load_proteus_one()
    n = proteus_one.protons_per_mu([70.0, 100.0, 200.0], data)
    assert n[1] == pytest.approx(data.protons_per_mu_at_100_mev)
    assert n[0] < n[1] < n[2]
    assert n[2] / n[1] == pytest.approx(7.289 / 4.492, rel=0.02)
    w = proteus_one.mu_to_weights([0.5], [150.0], data)
    assert proteus_one.weights_to_mu(w, [150.0], data)[0] == pytest.approx(0.5)


# --- a small plan on the Proteus One ------------------------------------------------------------


@pytest.fixture(scope="module")
def p1_plan(cube_plan_case, machine):
    ct, structures = cube_plan_case
    objectives = default_objectives("PTV", RX, ["Rectum"], {"Rectum": 0.1})
    beams = [Beam(0.0, 0.0, np.array([0.0, 80.0, 0.0]))]
    result = plan_pbs(
        ct, structures, beams, machine, WATER_CALIBRATION, objectives,
        target="PTV", prescription_gy=RX, settings=SETTINGS,
    )  # fmt: skip
    rows = {
        k: result.dose_matrix.rows_of(v) for k, v in resolve_overlaps(result.structures).items()
    }
    return result, objectives, rows


def test_no_delivered_spot_is_below_the_minimum_mu(p1_plan):
    result, objectives, rows = p1_plan
    data = dataclasses.replace(proteus_one.load_proteus_one(), min_mu_per_spot=0.05)
    mu_before = proteus_one.weights_to_mu(result.weights, result.spots.energy_mev, data)
    below = (mu_before > 0) & (mu_before < data.min_mu_per_spot)
    assert below.sum() > 5  # the unconstrained optimum has undeliverable spots
    plan = deliverable.make_deliverable(result, objectives, RX, data=data, max_iterations=80)
    d = plan.deliverability
    mu = proteus_one.weights_to_mu(d.weights, result.spots.energy_mev, data)
    delivered = mu[mu > 0]
    assert np.all(delivered >= data.min_mu_per_spot * (1 - 1e-9))
    assert np.all(delivered <= data.max_mu_per_spot * (1 + 1e-9))
    assert d.removed > 0 and d.removed + d.raised == below.sum()
    assert d.active_after == len(delivered)
    # quality kept: within 10 % of the unconstrained objective, and better than rounding
    assert d.objective_after <= 1.1 * d.objective_before
    lo = proteus_one.mu_to_weights(data.min_mu_per_spot, result.spots.energy_mev, data)
    rounded = np.where(result.weights >= 0.5 * lo, np.maximum(result.weights, lo), 0.0)
    assert d.objective_after < plan_objective(result.dose_matrix, objectives, rows, rounded)
    assert plan.plan.statistics["PTV"]["D95"] > 0.95 * RX
    assert plan.summary()["minimum_mu"]["spots_removed"] == d.removed


def test_minimum_weight_limits_are_checked(p1_plan):
    result, objectives, rows = p1_plan
    with pytest.raises(ValueError):
        enforce_minimum_weight(result.dose_matrix, objectives, rows, result.weights, 0.0)
    with pytest.raises(ValueError):
        enforce_minimum_weight(result.dose_matrix, objectives, rows, result.weights, 2.0, 1.0)


def test_delivery_time_adds_up_its_components():
    machine = proteus_one.build_proteus_one_machine()
    data = proteus_one.load_proteus_one()
    e_hi, e_lo = float(machine.energies_mev[20]), float(machine.energies_mev[10])
    # field 0: two layers of 3 spots 10 mm apart along u; field 1: one spot
    spots = spots_from_arrays(
        machine,
        [0, 0, 0, 0, 0, 0, 1],
        [e_lo, e_lo, e_lo, e_hi, e_hi, e_hi, e_hi],
        [0.0, 10.0, 20.0, 0.0, 10.0, 20.0, 0.0],
        [0.0] * 7,
    )
    mu = np.array([0.01, 0.12, 0.05, 0.2, 0.2, 0.2, 1.0])
    weights = proteus_one.mu_to_weights(mu, spots.energy_mev, data)
    t = delivery_time.fraction_delivery_time(spots, weights, data)
    f0 = t.fields[0]
    assert f0.energy_layers == 2 and f0.spots == 6 and t.energy_layers == 3
    pulses = np.ceil(mu[:6] / data.max_mu_per_pulse - 1e-9)
    assert f0.beam_on_s == pytest.approx(
        (pulses.sum() * data.pulse_period_ms + 6 * data.spot_dead_time_ms) / 1000
    )
    assert f0.layer_switching_s == pytest.approx(data.layer_switch_down_s)
    move = 10.0 / data.scanning_speed_x_mm_per_ms + data.spot_settling_ms
    assert f0.scanning_s == pytest.approx(4 * move / 1000)
    assert t.total_s == pytest.approx(
        t.fields[0].total_s + t.fields[1].total_s + data.field_setup_s
    )
    # upward switches are slower
    assert delivery_time.layer_switch_time_s(
        [e_lo, e_hi], data
    ) > delivery_time.layer_switch_time_s([e_hi, e_lo], data)
    # zero-weight spots are not delivered
    w2 = weights.copy()
    w2[3:6] = 0
    assert delivery_time.fraction_delivery_time(spots, w2, data).fields[0].energy_layers == 1


def test_reducing_energy_layers_saves_time(p1_plan):
    result, objectives, rows = p1_plan
    plan = deliverable.make_deliverable(
        result, objectives, RX, layer_weight_fraction=0.6, max_iterations=80
    )
    red = plan.layer_reduction
    assert red.layers_after < red.layers_before
    assert red.time_saved_s > 0
    assert plan.delivery_time.energy_layers == red.layers_after
    assert plan.delivery_time.total_s == pytest.approx(red.time_after_s)
    assert plan.summary()["layer_reduction"]["time_saved_s"] == pytest.approx(red.time_saved_s)


# --- range shifter ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shallow_case():
    ct, body = water_box(half_width_mm=40.0, depth_mm=80.0, spacing_mm=(4.0, 4.0, 4.0))
    x, y, z = ct.grid.axes_mm()
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    target = (np.abs(xx) < 16) & (np.abs(zz) < 16) & (yy > 8) & (yy < 28)
    return ct, [Structure("PTV", target, TARGET), Structure("BODY", body, EXTERNAL)]


def test_shallow_target_gets_a_range_shifter_recorded_in_the_plan(shallow_case, machine):
    ct, structures = shallow_case
    beams = [Beam(0.0, 0.0, np.array([0.0, 18.0, 0.0]))]
    data = proteus_one.load_proteus_one()
    rs_machine, shifter = deliverable.choose_range_shifter(
        ct, WATER_CALIBRATION, beams, machine, structures[0]
    )
    assert shifter == data.range_shifter
    wet = shifter.water_equivalent_thickness_mm
    assert rs_machine.peak_depth_mm == pytest.approx(machine.peak_depth_mm - wet)
    # spot size at the isocentre grows through the air gap, more at low energy
    grow = rs_machine.focus_sigma_mm[:, 1] - machine.focus_sigma_mm[:, 1]
    assert np.all(grow > 0) and grow[0] > grow[-1]
    theta = proteus_one.highland_theta_rad(70.0, shifter.physical_thickness_mm, 340.7)
    expected = np.hypot(machine.focus_sigma_mm[0, 1], theta * 300.0)
    assert rs_machine.focus_sigma_mm[0, 1] == pytest.approx(expected)
    # a deep target does not
    deep = Structure("deep", np.roll(structures[0].mask, 12, axis=1), TARGET)
    assert deliverable.choose_range_shifter(ct, WATER_CALIBRATION, beams, machine, deep)[1] is None

    objectives = default_objectives("PTV", RX)
    result = plan_pbs(
        ct, structures, beams, rs_machine, WATER_CALIBRATION, objectives,
        target="PTV", prescription_gy=RX, settings=SETTINGS,
    )  # fmt: skip
    # without the shifter the lowest energy overshoots the target
    bare = plan_pbs(
        ct, structures, beams, machine, WATER_CALIBRATION, objectives,
        target="PTV", prescription_gy=RX, settings=SETTINGS,
    )  # fmt: skip
    assert result.statistics["PTV"]["D95"] > 0.9 * RX
    g = result.dose_grid
    x, y, z = g.axes_mm()
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    distal = (np.abs(xx) < 12) & (np.abs(zz) < 12) & (yy > 30) & (yy < 42)
    assert bare.dose_gy[distal].mean() > RX  # the lowest energy peaks behind the target
    assert result.dose_gy[distal].mean() < 0.5 * bare.dose_gy[distal].mean()
    assert result.statistics["PTV"]["V95"] > bare.statistics["PTV"]["V95"] + 0.2
    ds = rt_ion_plan_dataset(beams, result.spots, result.weights, rs_machine, StudyContext())
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    back = pydicom.dcmread(io.BytesIO(buf.getvalue()))
    ib = back.IonBeamSequence[0]
    assert ib.NumberOfRangeShifters == 1
    assert ib.RangeShifterSequence[0].RangeShifterID == shifter.id
    st = ib.IonControlPointSequence[0].RangeShifterSettingsSequence[0]
    assert st.RangeShifterSetting == "IN"
    assert float(st.RangeShifterWaterEquivalentThickness) == pytest.approx(wet)
    assert float(st.IsocenterToRangeShifterDistance) == pytest.approx(300.0)
    # without a shifter nothing is recorded
    plain = rt_ion_plan_dataset(beams, result.spots, result.weights, machine, StudyContext())
    assert plain.IonBeamSequence[0].NumberOfRangeShifters == 0
    assert "RangeShifterSequence" not in plain.IonBeamSequence[0]


# --- lateral halo --------------------------------------------------------------------------------


def test_halo_lowers_small_field_factors_and_raises_low_dose_outside():
    data = proteus_one.load_proteus_one()
    w = float(proteus_one.halo_weight(100.0, 150.0, data))
    assert data.halo_weight_at_surface < w < 0.5
    kw = dict(weight=w, sigma_factor=data.halo_sigma_factor)
    sigma = 4.0
    # single Gaussian: a 30 mm field already has nearly its broad-field central dose
    single = proteus_one.field_size_factor(30.0, sigma, halo=False)
    double = proteus_one.field_size_factor(30.0, sigma, halo=True, **kw)
    assert single > 0.99
    assert double < single - 0.02
    # field-size factors rise towards 1 with field size
    sizes = [10.0, 20.0, 40.0, 80.0]
    f = [proteus_one.field_size_factor(s, sigma, halo=True, **kw) for s in sizes]
    assert all(a < b for a, b in zip(f, f[1:], strict=False)) and f[-1] > 0.95
    # 25 mm outside a 40 mm field: the halo dominates the low-dose region
    out_single = proteus_one.field_dose_centre(40.0, sigma, halo=False, offset_mm=45.0)
    out_double = proteus_one.field_dose_centre(40.0, sigma, halo=True, offset_mm=45.0, **kw)
    centre = proteus_one.field_dose_centre(40.0, sigma, halo=True, **kw)
    assert out_double > 100 * out_single
    assert 1e-3 < out_double / centre < 0.05
    # both profiles integrate to one spot's dose
    r = np.linspace(0, 80, 4000)
    for halo in (False, True):
        prof = proteus_one.lateral_profile(r, sigma, halo=halo, **kw)
        assert np.trapezoid(prof * 2 * np.pi * r, r) == pytest.approx(1.0, rel=1e-3)


def test_rt_dose_can_be_labelled_gy_rbe():
    from protonpath.planning.ct import Grid

    grid = Grid((2, 2, 2), (0.0, 0.0, 0.0), (2.0, 2.0, 2.0))
    ds = rt_dose_dataset(
        np.ones((2, 2, 2)), grid, StudyContext(), dose_type="EFFECTIVE",
        comment="Gy(RBE), constant RBE 1.1",
    )  # fmt: skip
    assert ds.DoseType == "EFFECTIVE" and "Gy(RBE)" in ds.DoseComment
    with pytest.raises(ValueError):
        rt_dose_dataset(np.ones((2, 2, 2)), grid, StudyContext(), dose_type="RBE")


def _halo_inputs(p1_plan, cube_plan_case):
    """The plan's matrix and the inputs ``halo_dose_matrix`` takes before the machine."""
    from protonpath.planning.ct import hu_to_spr

    result, _, _ = p1_plan
    ct, _ = cube_plan_case
    dm = result.dose_matrix
    interest = np.zeros(dm.grid.shape, dtype=bool).ravel()
    interest[dm.voxel_indices] = True
    spr = hu_to_spr(ct.hu, WATER_CALIBRATION)
    args = (spr, ct.grid, dm.grid, interest.reshape(dm.grid.shape), result.beams, result.spots)
    return result, ct, spr, dm, args, proteus_one.build_proteus_one_machine()


def test_halo_dose_matrix_lowers_a_small_field_and_spreads_low_dose(p1_plan, cube_plan_case):
    result, ct, spr, dm, args, machine = _halo_inputs(p1_plan, cube_plan_case)
    halo = proteus_one.halo_dose_matrix(*args, machine, dm, weight=0.1, sigma_factor=3.0)
    core_dose = dm.dose_cube(result.weights)
    halo_dose = halo.dose_cube(result.weights)
    target = next(s for s in result.structures if s.name == "PTV").mask
    # same protons: the halo moves dose from the field into the low-dose surroundings
    ratio = halo_dose[target].mean() / core_dose[target].mean()
    assert 0.9 < ratio < 0.99
    x, y, z = dm.grid.axes_mm()
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    outside = (np.abs(xx) > 34) & (np.abs(xx) < 46) & (np.abs(zz) < 10) & (yy > 60) & (yy < 100)
    assert halo_dose[outside].mean() > 3 * core_dose[outside].mean()


def test_machine_takes_energy_spread_tail_and_mean_energy_from_the_data():
    data = proteus_one.load_proteus_one()
    assert data.idd_tail_fraction == 0.0 and 0.004 < data.energy_spread_fraction < 0.01
    base = proteus_one.build_proteus_one_machine(data)
    # a mean energy 1 MeV above the nominal one moves every range by PSTAR's dR/dE
    shifted = proteus_one.build_proteus_one_machine(
        dataclasses.replace(data, mean_energy_offset_mev=((70.0, 1.0), (230.0, 1.0)))
    )
    table = proteus_one.load_pstar_water()
    expected = table.range_mm(base.energies_mev + 1.0) - table.range_mm(base.energies_mev)
    assert np.abs(shifted.range_r80_mm - base.range_r80_mm - expected).max() < 0.1
    # a wider energy spread lowers and widens the peak
    wide = proteus_one.build_proteus_one_machine(
        dataclasses.replace(data, energy_spread_fraction=0.012)
    )
    e = int(np.argmin(np.abs(base.energies_mev - 150.0)))
    assert wide.idd[e].max() < 0.95 * base.idd[e].max()
    # the tail fraction raises the entrance dose
    tailed = proteus_one.build_proteus_one_machine(
        dataclasses.replace(data, idd_tail_fraction=0.1)
    )
    assert tailed.idd[e][0] > 1.1 * base.idd[e][0]


def test_halo_weight_along_depth_follows_the_data(p1_plan, cube_plan_case):
    from protonpath.planning.raytrace import water_equivalent_depth

    result, ct, spr, dm, args, machine = _halo_inputs(p1_plan, cube_plan_case)
    data = proteus_one.load_proteus_one()
    core = dm.matrix.tocsc()
    wide = proteus_one.halo_dose_matrix(*args, machine, dm, weight=1.0).matrix.tocsc()
    mixed = proteus_one.halo_dose_matrix(*args, machine, dm, along_depth=True).matrix.tocsc()
    # one spot: every entry is (1 - w) core + w wide with w from its voxel's depth over R80
    c = int(np.argmax(result.weights))
    b = int(result.spots.beam_index[c])
    points = dm.grid.points_mm(dm.voxel_indices)
    wed = water_equivalent_depth(spr, ct.grid, result.beams[b], machine.sad_mm, points).wed_mm
    r80 = machine.range_r80_mm[result.spots.energy_index[c]]
    w = np.clip(data.halo_weight_at_surface + data.halo_weight_per_range * wed / r80, 0, 0.5)
    col = lambda m: np.asarray(m[:, c].todense()).ravel()  # noqa: E731
    expected = (1 - w) * col(core) + w * col(wide)
    got = col(mixed)
    # (float32 entries: 1e-3 of the column's maximum)
    assert np.abs(got - expected).max() < 1e-3 * expected.max()
    assert np.abs(got - col(core)).max() > 0.05 * expected.max()
    # the weight grows with depth: deeper voxels get more of the wide Gaussian
    assert w[wed < 0.2 * r80].max() < w[(wed > 0.8 * r80) & (wed < r80)].min()


def test_a_plan_optimised_on_the_halo_model_covers_the_target_and_shows_the_halo_outside_it(
    cube_plan_case, machine, p1_plan
):
    ct, structures = cube_plan_case
    single = p1_plan[0]
    objectives = default_objectives("PTV", RX, ["Rectum"], {"Rectum": 0.1})
    beams = [Beam(0.0, 0.0, np.array([0.0, 80.0, 0.0]))]
    halo = plan_pbs(
        ct, structures, beams, machine, WATER_CALIBRATION, objectives, target="PTV",
        prescription_gy=RX, settings=dataclasses.replace(SETTINGS, lateral_model="halo-depth"),
    )  # fmt: skip
    assert halo.dose_matrix.matrix.nnz > single.dose_matrix.matrix.nnz  # the wide part reaches further
    target = structures[0].mask
    for plan in (single, halo):
        assert abs(plan.dose_gy[target].mean() / RX - 1) < 0.03
    # 12-28 mm beside the target at its depths: the halo model puts dose there that the core
    # Gaussian alone does not
    x, y, z = halo.dose_grid.axes_mm()
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    beside = (np.abs(xx) > 32) & (np.abs(xx) < 48) & (np.abs(zz) < 20) & (yy > 60) & (yy < 100)
    assert halo.dose_gy[beside].mean() > 1.5 * single.dose_gy[beside].mean()
    with pytest.raises(ValueError, match="lateral_model"):
        plan_pbs(
            ct, structures, beams, machine, WATER_CALIBRATION, objectives, target="PTV",
            prescription_gy=RX, settings=dataclasses.replace(SETTINGS, lateral_model="triple"),
        )  # fmt: skip


def test_bounded_reoptimisation_own_lbfgsb_against_scipy(p1_plan):
    """reoptimise_bounded with lower and upper bounds per spot: protonpath's L-BFGS-B keeps
    every spot within its bounds and reaches SciPy's objective."""
    from protonpath.planning.deliverability import reoptimise_bounded

    result, objectives, rows = p1_plan
    w = result.weights
    n = len(w)
    lo = np.where(np.arange(n) % 3 == 0, 0.5 * w.max() * 0.1, 0.0)  # some spots held up
    hi = np.where(np.arange(n) % 4 == 0, 0.5 * w.max(), np.inf)  # some held down
    lo = np.minimum(lo, hi)
    found = {}
    for method in ("lbfgsb", "scipy"):
        weights, iterations = reoptimise_bounded(
            result.dose_matrix, objectives, rows, w, lo, hi, max_iterations=80, method=method
        )
        assert np.all(weights >= lo) and np.all(weights <= hi)
        assert 0 < iterations <= 80
        found[method] = plan_objective(result.dose_matrix, objectives, rows, weights)
    assert found["lbfgsb"] <= 1.01 * found["scipy"] + 1e-9
    with pytest.raises(ValueError, match="unknown method"):
        reoptimise_bounded(result.dose_matrix, objectives, rows, w, lo, hi, method="x")
