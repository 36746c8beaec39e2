"""``protonpath plan --deliverable``: a Proteus One plan with its delivery report."""

from __future__ import annotations

import json

import numpy as np
import pydicom
from typer.testing import CliRunner

from protonpath.cli import build_app
from protonpath.planning import proteus_one

from .test_dicom import downsampled_tg119, write_planning_folder


def test_deliverable_plan_command_reports_mu_time_and_rbe(tmp_path, tg119):
    ct, structures = downsampled_tg119(tg119, step=3)
    images = tmp_path / "ct"
    write_planning_folder(images, ct, structures)
    out = tmp_path / "out"
    args = [
        "plan", str(images), "--target", "OuterTarget", "--beams", "0,90", "--dose", "50",
        "--fractions", "25", "--oar", "Core:25", "--grid", "9", "--spot-spacing", "7",
        "--layer-spacing", "5", "--iterations", "60", "--out", str(out), "--deliverable",
        "--reduce-layers", "0.2", "--lateral-model", "halo-depth",
    ]  # fmt: skip
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    assert "Gy(RBE)" in result.output and "per fraction" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dose_unit"] == "Gy(RBE)" and summary["machine"] == "Proteus One"
    assert summary["lateral_model"] == "halo-depth"
    target = summary["structures"]["OuterTarget"]
    assert 45 < target["mean"] < 55  # Gy(RBE) = 1.1 x physical
    time = summary["delivery_time"]
    assert len(time["fields"]) == 2 and time["total_s"] > time["beam_on_s"] > 0
    assert time["energy_layers"] == sum(f["energy_layers"] for f in time["fields"])
    assert summary["minimum_mu"]["active_spots_after"] == time["spots"]
    assert summary["layer_reduction"]["layers_after"] == time["energy_layers"]
    assert set(summary["rbe_evaluation_gy_rbe"]) == {"constant", "mcnamara", "wedenberg"}
    assert summary["let_d_kev_um"]["OuterTarget"]["mean"] > 1.0

    plan = pydicom.dcmread(out / "RTPLAN.dcm")
    data = proteus_one.load_proteus_one()
    # TG119's C-shaped target comes within 40 mm of the surface: a range shifter, recorded
    shifter = summary["range_shifter"]
    assert (shifter is not None) == all(
        ib.NumberOfRangeShifters == 1 for ib in plan.IonBeamSequence
    )
    if shifter is not None:
        rs = plan.IonBeamSequence[0].RangeShifterSequence[0]
        assert rs.RangeShifterID == shifter["id"]
    for ib in plan.IonBeamSequence:
        for cp in ib.IonControlPointSequence[::2]:
            w = np.asarray(cp.ScanSpotMetersetWeights, dtype=float)
            mu = proteus_one.weights_to_mu(w, float(cp.NominalBeamEnergy), data)
            assert np.all(mu[w > 0] >= data.min_mu_per_spot * (1 - 1e-5))
    physical = pydicom.dcmread(out / "RTDOSE.dcm")
    rbe = pydicom.dcmread(out / "RTDOSE_RBE.dcm")
    assert physical.DoseType == "PHYSICAL" and rbe.DoseType == "EFFECTIVE"
    assert "Gy(RBE)" in rbe.DoseComment
    ratio = (rbe.pixel_array.max() * float(rbe.DoseGridScaling)) / (
        physical.pixel_array.max() * float(physical.DoseGridScaling)
    )
    assert abs(ratio - 1.1) < 1e-6


def test_an_unknown_lateral_model_is_refused_before_any_calculation(tmp_path):
    result = CliRunner().invoke(build_app(), [
        "plan", str(tmp_path), "--target", "PTV", "--lateral-model", "triple", "--out", str(tmp_path / "o"),
    ])  # fmt: skip
    assert result.exit_code != 0 and "lateral-model" in result.output
    assert not (tmp_path / "o").exists()
