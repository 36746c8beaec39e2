"""The TG119 phantom (matRad/pyRadPlan) loaded, planned on a coarse grid, and planned from the
command line through DICOM."""

import json

import numpy as np
import pydicom
from typer.testing import CliRunner

from protonpath.cli import build_app
from protonpath.planning import matrad_io
from protonpath.planning.pipeline import PlanSettings, plan_pbs
from protonpath.planning.raytrace import Beam
from protonpath.planning.resources import load_default_calibration, load_default_machine

from .test_dicom import downsampled_tg119, write_planning_folder


def test_tg119_geometry_is_read_in_patient_order(tg119):
    grid = tg119.ct.grid
    assert grid.shape == (129, 167, 167)
    assert np.allclose(grid.spacing_mm, [3.0, 3.0, 2.5])
    by_name = {s.name: s for s in tg119.structures}
    target, core, body = by_name["OuterTarget"], by_name["Core"], by_name["BODY"]
    assert target.mask.sum() == 7458 and core.mask.sum() == 1320
    assert target.role == "target" and body.role == "external"
    assert not (target.mask & core.mask).any()
    assert (body.mask | ~target.mask).all()  # the body contains the target
    # the C-shaped target wraps around the core: the core sits in the target's bounding box
    k, j, i = np.nonzero(target.mask)
    ck, cj, ci = (np.mean(a) for a in np.nonzero(core.mask))
    assert k.min() < ck < k.max() and j.min() < cj < j.max() and i.min() < ci < i.max()
    assert tg119.priority == ["OuterTarget", "Core", "BODY"]
    kinds = {(o.structure, o.kind, o.dose_gy) for o in tg119.objectives}
    assert ("OuterTarget", "squared_deviation", 50.0) in kinds


def test_matrad_generic_machine_is_read_as_a_machine():
    m = matrad_io.load_pyradplan_generic_proton_machine()
    assert m.n_energies > 100 and m.sad_mm == 10000.0
    assert np.all(np.diff(m.energies_mev) > 0)
    assert np.all(m.peak_depth_mm < m.range_r80_mm)
    assert np.all(m.focus_sigma_mm > 0)


def test_tg119_plan_covers_the_c_shape_and_spares_the_core(tg119):
    ct, structures = downsampled_tg119(tg119)
    target = next(s for s in structures if s.name == "OuterTarget")
    iso = ct.grid.points_mm(np.flatnonzero(target.mask)).mean(axis=0)
    beams = [Beam(g, 0.0, iso) for g in (0.0, 90.0)]
    settings = PlanSettings(
        dose_grid_mm=8.0, spot_spacing_mm=6.0, layer_spacing_mm=4.0, max_iterations=150
    )
    plan = plan_pbs(
        ct,
        structures,
        beams,
        load_default_machine(),
        load_default_calibration(),
        tg119.objectives,
        target="OuterTarget",
        prescription_gy=50.0,
        priority=tg119.priority,
        settings=settings,
    )
    t, core = plan.statistics["OuterTarget"], plan.statistics["Core"]
    assert t["D95"] > 0.9 * 50 and t["D2"] < 1.12 * 50
    assert core["mean"] < 0.75 * t["mean"]


def test_plan_command_writes_plan_dose_dvh_and_summary(tmp_path, tg119):
    ct, structures = downsampled_tg119(tg119, step=3)
    images = tmp_path / "ct"
    write_planning_folder(images, ct, structures)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        build_app(),
        [
            "plan",
            str(images),
            "--target",
            "OuterTarget",
            "--beams",
            "0,90",
            "--dose",
            "50",
            "--fractions",
            "25",
            "--oar",
            "Core:25",
            "--grid",
            "9",
            "--spot-spacing",
            "7",
            "--layer-spacing",
            "5",
            "--iterations",
            "60",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "OuterTarget" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["fractions"] == 25 and len(summary["beams"]) == 2
    target = summary["structures"]["OuterTarget"]
    assert 45 < target["mean"] < 55 and target["D95"] > 0.8 * 50
    plan = pydicom.dcmread(out / "RTPLAN.dcm")
    assert plan.Modality == "RTPLAN" and len(plan.IonBeamSequence) == 2
    dose = pydicom.dcmread(out / "RTDOSE.dcm")
    assert dose.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == plan.SOPInstanceUID
    assert (out / "dvh.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
