"""Dose-averaged LET and RBE-weighted dose (evaluation models)."""

from __future__ import annotations

import numpy as np
import pytest

from protonpath.planning import deliverable, let_rbe, proteus_one
from protonpath.planning.pipeline import PlanSettings, default_objectives, plan_pbs
from protonpath.planning.raytrace import Beam

from .conftest import WATER_CALIBRATION

RX = 2.0


@pytest.fixture(scope="module")
def machine():
    return proteus_one.build_proteus_one_machine()


def test_let_of_a_pencil_beam_rises_towards_the_end_of_range(machine):
    depths, table = let_rbe.let_depth_table(machine)
    pstar = proteus_one.load_pstar_water()
    for e in (0, 40, machine.n_energies - 1):
        let = table[e]
        r80 = machine.range_r80_mm[e]
        # entrance: the stopping power of the nominal energy
        assert let[0] == pytest.approx(
            pstar.stopping_power_mev_per_mm(machine.energies_mev[e]), rel=0.02
        )
        plateau = depths < 0.7 * r80
        assert np.all(np.diff(let[plateau]) > 0)
        at_peak = np.interp(machine.peak_depth_mm[e], depths, let)
        at_r80 = np.interp(r80, depths, let)
        assert 2.5 < at_peak < at_r80 < 15.0


def test_rbe_models_limits():
    d = np.array([1e-6, 2.0, 1e4])
    assert np.all(let_rbe.rbe(d, 3.0, 2.0, "constant") == 1.1)
    # no LET effect in Wedenberg's model at LET 0
    assert let_rbe.rbe(d, 0.0, 2.0, "wedenberg") == pytest.approx(1.0)
    for model, rbe_max, rbe_min in (
        ("mcnamara", 0.99064 + 0.35605 * 4.0 / 2.0, 1.1012 - 0.0038703 * np.sqrt(2.0) * 4.0),
        ("wedenberg", 1.0 + 0.434 * 4.0 / 2.0, 1.0),
    ):
        r = let_rbe.rbe(d, 4.0, 2.0, model)
        assert r[0] == pytest.approx(rbe_max, rel=1e-3)  # low dose: RBEmax
        assert r[2] == pytest.approx(rbe_min, rel=1e-2)  # high dose: RBEmin
        assert r[0] > r[1] > r[2]
        # higher LET and lower alpha/beta raise the RBE
        assert let_rbe.rbe(2.0, 6.0, 2.0, model) > let_rbe.rbe(2.0, 4.0, 2.0, model)
        assert let_rbe.rbe(2.0, 4.0, 1.5, model) > let_rbe.rbe(2.0, 4.0, 10.0, model)
    with pytest.raises(ValueError):
        let_rbe.rbe(2.0, 4.0, 2.0, "carabe")
    with pytest.raises(ValueError):
        let_rbe.rbe(2.0, 4.0, 0.0, "mcnamara")


def test_alpha_beta_per_structure_from_data():
    assert let_rbe.alpha_beta_for("Prostate") == 1.5
    assert let_rbe.alpha_beta_for("Rectum") == 3.0
    assert let_rbe.alpha_beta_for("PTV", is_target=True) == 10.0
    assert let_rbe.alpha_beta_for("Unknown organ") == 2.0
    custom = {"default": {"alpha_beta_gy": 4.0}, "structures": {}}
    assert let_rbe.alpha_beta_for("Rectum", table=custom) == 4.0


def test_plan_let_and_rbe_weighted_dose(cube_plan_case, machine):
    ct, structures = cube_plan_case
    beams = [Beam(0.0, 0.0, np.array([0.0, 80.0, 0.0]))]
    result = plan_pbs(
        ct, structures, beams, machine, WATER_CALIBRATION,
        default_objectives("PTV", RX, ["Rectum"], {"Rectum": 0.1}),
        target="PTV", prescription_gy=RX,
        settings=PlanSettings(dose_grid_mm=4.0, spot_spacing_mm=6.0, layer_spacing_mm=4.0,
                              max_iterations=40),
    )  # fmt: skip
    ev = deliverable.evaluate_let_rbe(result, ct, WATER_CALIBRATION, machine, prescription_gy=RX)
    let = ev["let_d_kev_um"]
    assert 1.0 < ev["let_statistics"]["PTV"]["mean"] < 6.0
    # the distal organ sees the end of range: higher LET than the target's mean
    assert ev["let_statistics"]["Rectum"]["mean"] > ev["let_statistics"]["PTV"]["mean"]
    phys = result.dose_gy
    assert ev["rbe_dose_gy"]["constant"] == pytest.approx(1.1 * phys)
    # variable RBE: above 1.1 x physical where the LET is high (low alpha/beta organ)
    mcn = ev["rbe_dose_gy"]["mcnamara"]
    rect = next(s for s in result.structures if s.name == "Rectum").mask & (phys > 0.05)
    assert np.mean(mcn[rect] / phys[rect]) > 1.1
    assert (
        ev["statistics"]["mcnamara"]["Rectum"]["mean"]
        > ev["statistics"]["constant"]["Rectum"]["mean"]
    )
    # LET of a voxel lies within its spots' LET values
    assert np.all(let[phys > 0] > 0.3) and np.all(let < 20)
