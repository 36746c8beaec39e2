"""Energy layers: the Bragg peak's width, the automatic ladder and its clamps, the fixed ladder,
and the depth-dose ripple of a one-field plan with each."""

from __future__ import annotations

import numpy as np
import pytest

from protonpath.planning import proteus_one
from protonpath.planning.machine import (
    bragg_kleeman_energy_mev,
    bragg_peak_width_mm,
    build_analytical_machine,
)
from protonpath.planning.pipeline import PlanSettings, default_objectives, plan_pbs
from protonpath.planning.raytrace import Beam
from protonpath.planning.spots import (
    AUTO,
    MAX_LAYER_SPACING_MM,
    MIN_LAYER_SPACING_MM,
    auto_layer_spacing_mm,
    bragg_peak_widths_mm,
    layer_spacing_record,
    parse_layer_spacing,
    select_energy_layers,
)
from protonpath.planning.structures import EXTERNAL, TARGET, Structure

from .conftest import WATER_CALIBRATION, water_box


@pytest.fixture(scope="module")
def machine():
    return proteus_one.build_proteus_one_machine()


@pytest.fixture(scope="module")
def fine_machine():
    """An analytical machine with energies every 1 mm of range (finer than any W80 step)."""
    energies = np.round(bragg_kleeman_energy_mev(np.arange(40.0, 321.0, 1.0)), 3)
    return build_analytical_machine(
        energies, np.full(len(energies), 4.0), name="fine", sad_mm=2500.0,
        nozzle_to_isocentre_mm=500.0, energy_spread_fraction=0.0067, tail_fraction=0.0,
    )  # fmt: skip


def gaps_mm(machine, layers):
    """Bragg peak spacing from each layer (but the shallowest) to the next one upstream, and
    the deeper layer of each pair."""
    peaks = machine.peak_depth_mm[layers]
    assert np.all(np.diff(peaks) > 0), "layers ascend in depth, none twice"
    return np.diff(peaks), layers[1:]


def test_peak_width_of_a_sampled_gaussian_is_its_full_width_at_the_level():
    depth = np.arange(0.0, 100.0, 0.2)
    sigma = 3.7
    curve = 0.2 + np.exp(-0.5 * ((depth - 61.3) / sigma) ** 2)  # on a plateau: the level is of the max
    level_of_gaussian = (0.8 * 1.2 - 0.2) / 1.0
    expected = 2 * sigma * np.sqrt(2 * np.log(1 / level_of_gaussian))
    assert bragg_peak_width_mm(depth, curve, 0.8) == pytest.approx(expected, abs=0.01)
    # a peak at the surface (no proximal crossing): from the first sample
    half = np.exp(-0.5 * (depth / sigma) ** 2)
    assert bragg_peak_width_mm(depth, half, 0.8) == pytest.approx(
        sigma * np.sqrt(2 * np.log(1 / 0.8)), abs=0.01
    )


def test_proteus_one_peak_widths_grow_with_energy(machine):
    w = bragg_peak_widths_mm(machine)
    assert len(w) == machine.n_energies
    assert np.all(np.diff(w) > 0)
    # straggling and energy spread: about 1.5 mm at 70 MeV, 11 mm at the top energy
    assert 1.0 < w[0] < 2.5 and 9.0 < w[-1] < 13.0
    # the distal 80 % is the machine's own R80, so W80 ends there
    assert np.all(w < machine.range_r80_mm)


def test_proteus_one_auto_layers_are_closer_shallow_than_deep_within_the_clamps(machine):
    layers = select_energy_layers(machine, AUTO)
    assert len(np.unique(layers)) == len(layers)
    gaps, deeper = gaps_mm(machine, layers)
    depth = machine.peak_depth_mm[deeper]
    shallow, deep = gaps[depth < 100.0], gaps[depth > 250.0]
    assert len(shallow) > 5 and len(deep) > 3
    assert shallow.max() < deep.min()
    assert np.all(gaps >= MIN_LAYER_SPACING_MM - 1e-9) and np.all(gaps <= MAX_LAYER_SPACING_MM + 1e-9)
    # the machine's energies are 3 mm of range apart: shallow W80 (< 3 mm) take every energy
    peaks = machine.peak_depth_mm
    every = np.flatnonzero((peaks >= 40.0) & (peaks < 100.0))
    assert set(every) <= set(layers)
    # and the steps follow the width: each is at most the wanted step, unless the machine's next
    # energy upstream is already further than it
    wanted = auto_layer_spacing_mm(machine)[deeper]
    next_energy = np.array([peaks[d] - peaks[peaks < peaks[d] - 1e-9].max() for d in deeper])
    assert np.all(gaps <= np.maximum(wanted, next_energy) + 1e-9)
    # with the fixed 5 mm, the shallow layers are 6 mm apart (every other energy)
    fixed = gaps_mm(machine, select_energy_layers(machine, 5.0))[0]
    assert np.all(fixed >= 5.0 - 1e-9)
    assert np.median(shallow) < np.median(fixed) - 2.0


def test_behind_the_range_shifter_the_widths_are_the_machines_and_the_ladder_reaches_the_skin(
    machine,
):
    shifter = proteus_one.load_proteus_one().range_shifter
    shifted = proteus_one.machine_with_range_shifter(machine, shifter)
    w, w_shifted = bragg_peak_widths_mm(machine), bragg_peak_widths_mm(shifted)
    clear = shifted.peak_depth_mm > w  # the whole peak is downstream of the skin
    assert clear.sum() >= machine.n_energies - 3
    assert np.allclose(w_shifted[clear], w[clear], atol=1e-6)
    # a peak cut by the skin is measured from the surface: narrower, never zero
    assert np.all((w_shifted[~clear] > 0) & (w_shifted[~clear] <= w[~clear]))
    layers = select_energy_layers(shifted, AUTO, 30.0)
    assert shifted.peak_depth_mm[layers[0]] == shifted.peak_depth_mm.min()


@pytest.mark.parametrize(
    ("factor", "min_mm", "max_mm"), [(1.0, 2.0, 10.0), (0.6, None, None), (1.5, 3.0, 6.0)]
)
def test_auto_ladder_takes_the_nearest_energy_at_or_beyond_the_wanted_depth(
    fine_machine, factor, min_mm, max_mm
):
    m = fine_machine
    layers = select_energy_layers(m, AUTO, 230.0, factor=factor, min_mm=min_mm, max_mm=max_mm)
    peaks = m.peak_depth_mm
    # the distal layer: the shallowest peak at or beyond the target's deepest point
    assert peaks[layers[-1]] >= 230.0 and not np.any((peaks >= 230.0) & (peaks < peaks[layers[-1]]))
    gaps, deeper = gaps_mm(m, layers)
    widths = bragg_peak_widths_mm(m)
    wanted = np.clip(factor * widths[deeper], min_mm or 0.0, max_mm or np.inf)
    floor = min_mm or 0.0
    for gap, d, step in zip(gaps, deeper, wanted, strict=True):
        assert gap >= floor - 1e-9
        cur = peaks[d]
        allowed = peaks[(peaks >= cur - step - 1e-9) & (peaks <= cur - max(floor, 1e-9))]
        if len(allowed):  # the machine has an energy between the wanted depth and the floor
            assert gap == pytest.approx(cur - allowed.min())
        else:
            assert gap == pytest.approx(cur - peaks[peaks <= cur - max(floor, 1e-9)].max())
    # the ladder goes upstream to the machine's shallowest reachable energy
    assert peaks[layers[0]] - peaks.min() <= wanted.max()
    if max_mm is not None:
        assert np.all(gaps <= max_mm + 1.3)  # at most one of the machine's 1 mm steps beyond


def test_fixed_ladder_keeps_at_least_its_spacing(machine):
    for spacing in (3.0, 5.0, 8.0):
        gaps, _ = gaps_mm(machine, select_energy_layers(machine, spacing, 200.0))
        assert np.all(gaps >= spacing - 1e-9)
    with pytest.raises(ValueError, match="positive"):
        select_energy_layers(machine, 0.0)


@pytest.mark.parametrize(
    ("text", "value"),
    [("auto", AUTO), (" AUTO ", AUTO), ("5", 5.0), ("5,5", 5.5), (4, 4.0), ("20", 20.0)],
)
def test_parse_layer_spacing_reads_auto_or_mm(text, value):
    assert parse_layer_spacing(text) == value


@pytest.mark.parametrize("text", ["", "fast", "0.5", "25", "nan", "-3"])
def test_parse_layer_spacing_refuses_anything_else_with_a_clear_message(text):
    with pytest.raises(ValueError, match="layer spacing"):
        parse_layer_spacing(text)


# --- ripple of a one-field spread-out Bragg peak -------------------------------------------------

TARGET_MM = (40.0, 120.0)  # water-equivalent depth of the target
RIPPLE_BOUND = 0.03  # peak-to-trough over the mean, central 80 % of the target's depth


@pytest.fixture(scope="module")
def sobp_case():
    """Water box, 2 mm voxels, a 40 x 40 mm target from 40 to 120 mm depth (shallow layers,
    whose peaks are narrow)."""
    d0, d1 = TARGET_MM
    ct, body = water_box(half_width_mm=40.0, depth_mm=d1 + 40.0, spacing_mm=(2.0, 2.0, 2.0))
    x, y, z = ct.grid.axes_mm()
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    target = (np.abs(xx) < 20) & (np.abs(zz) < 20) & (yy > d0) & (yy < d1)
    return ct, [Structure("PTV", target, TARGET), Structure("BODY", body, EXTERNAL)]


def one_field_plan(case, machine, layer_spacing):
    ct, structures = case
    settings = PlanSettings(
        dose_grid_mm=2.0, spot_spacing_mm=6.0, layer_spacing_mm=layer_spacing, max_iterations=150
    )
    beam = Beam(0.0, 0.0, np.array([0.0, sum(TARGET_MM) / 2, 0.0]))
    return plan_pbs(
        ct, structures, [beam], machine, WATER_CALIBRATION, default_objectives("PTV", 2.0),
        target="PTV", prescription_gy=2.0, settings=settings,
    )  # fmt: skip


def central_axis_ripple(plan):
    """Peak-to-trough of the dose along the beam's central axis (the four voxel columns around
    it, averaged) over the central 80 % of the target's depth, relative to its mean."""
    x, y, z = plan.dose_grid.axes_mm()
    ix, iz = np.argsort(np.abs(x))[:2], np.argsort(np.abs(z))[:2]
    profile = plan.dose_gy[np.ix_(iz, np.arange(len(y)), ix)].mean(axis=(0, 2))
    d0, d1 = TARGET_MM
    centre, half = (d0 + d1) / 2, 0.8 * (d1 - d0) / 2
    inside = profile[(y >= centre - half) & (y <= centre + half)]
    assert len(inside) >= 30
    return (inside.max() - inside.min()) / inside.mean()


@pytest.mark.slow
def test_auto_layers_flatten_the_depth_dose_that_fixed_5_mm_ripples(sobp_case, machine):
    # measured: auto 1.3 % (29 layers), fixed 5 mm 6.8 % (15 layers, 6 mm apart on this machine)
    auto = one_field_plan(sobp_case, machine, AUTO)
    fixed = one_field_plan(sobp_case, machine, 5.0)
    assert central_axis_ripple(auto) < RIPPLE_BOUND < central_axis_ripple(fixed)
    layers = {k: len(np.unique(p.spots.energy_index)) for k, p in (("auto", auto), ("5", fixed))}
    assert layers["auto"] > layers["5"]
    assert auto.statistics["PTV"]["D95"] > fixed.statistics["PTV"]["D95"]
    record = layer_spacing_record(auto.spots, machine, AUTO)
    assert record["mode"] == AUTO and record["width"] == "W80"
    assert 2.5 < record["spacing_mm"][0] <= record["spacing_mm"][1] < 3.5
    assert layer_spacing_record(fixed.spots, machine, 5.0)["spacing_mm"][0] >= 5.0
