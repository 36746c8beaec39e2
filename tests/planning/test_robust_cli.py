"""``protonpath plan --scenarios 21 --robust ...``: the robust plan, its evaluation in the
summary, the settings in the RT Ion Plan, and the evaluation re-computed from the exported
files alone."""

import json

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from protonpath.cli import build_app
from protonpath.planning import dicom_io
from protonpath.planning.ct import hu_to_spr
from protonpath.planning.dicom_export import dose_from_rt_dose
from protonpath.planning.resources import load_default_calibration, load_default_machine
from protonpath.planning.robust_export import (
    PRIVATE_CREATOR,
    PRIVATE_GROUP,
    plan_from_rt_ion_plan,
    read_robust_settings,
)
from protonpath.planning.robustness import evaluate_robustness, scenario_dose_cubes
from protonpath.planning.structures import EXTERNAL, structure_on_grid

from .test_dicom import downsampled_tg119, write_planning_folder

GRID_MM = 9.0
ARGS = [
    "--target", "OuterTarget", "--beams", "0,90", "--dose", "50", "--fractions", "25",
    "--oar", "Core:25", "--grid", str(GRID_MM), "--spot-spacing", "7", "--layer-spacing", "5",
    "--iterations", "60",
]  # fmt: skip


@pytest.fixture(scope="module")
def images(tmp_path_factory, tg119):
    folder = tmp_path_factory.mktemp("robust") / "ct"
    ct, structures = downsampled_tg119(tg119, step=3)
    write_planning_folder(folder, ct, structures)
    return folder


@pytest.fixture(scope="module")
def robust_run(images):
    out = images.parent / "out"
    result = CliRunner().invoke(
        build_app(),
        ["plan", str(images), *ARGS, "--scenarios", "21", "--robust", "voxel_worst_case",
         "--robust-iterations", "60", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, result.output


def test_summary_holds_settings_scenarios_evaluation_and_memory(robust_run):
    out, output = robust_run
    assert "worst case over 21 scenarios" in output and "nominally optimised plan" in output
    robust = json.loads((out / "summary.json").read_text())["robust"]
    assert robust["robust"] == "voxel_worst_case"
    assert (
        robust["scenarios"]["model"] == "combined" and len(robust["scenarios"]["scenarios"]) == 21
    )
    kinds = {(o["structure"], o["robustness"]) for o in robust["objectives"]}
    assert kinds == {("OuterTarget", "voxel_worst_case"), ("Core", "nominal")}
    assert robust["settings"]["method"] == "lbfgsb_smooth_max"
    worst = robust["worst_case"]["OuterTarget"]["D95"]
    assert 0 < worst["value"] <= worst["nominal"] <= 60  # whole-course Gy
    assert set(robust["worst_case"]["Core"]) == {"D2", "max", "mean"}
    assert robust["memory"]["scenarios"] == 21 and robust["memory"]["blocks_bytes"] > 0
    assert len(robust["per_scenario"]) == 21
    band = next(b for b in robust["dvh_bands"] if b["name"] == "OuterTarget")
    assert all(lo <= hi for lo, hi in zip(band["lower"], band["upper"], strict=True))
    assert robust["nominal_plan_worst_case"]["OuterTarget"]["D95"]["value"] < worst["value"]
    assert (out / "dvh_bands.png").read_bytes()[:4] == b"\x89PNG"
    # voxel-wise min and max over the scenarios as RT Dose, around the nominal dose
    low, grid = dose_from_rt_dose(pydicom.dcmread(out / "RTDOSE_MIN.dcm"))
    high, _ = dose_from_rt_dose(pydicom.dcmread(out / "RTDOSE_MAX.dcm"))
    nominal, _ = dose_from_rt_dose(pydicom.dcmread(out / "RTDOSE.dcm"))
    covered = high > 0
    assert covered.sum() > 10 and grid.spacing_mm[0] == GRID_MM
    assert np.all(low[covered] <= nominal[covered] + 1e-3)
    assert np.all(nominal[covered] <= high[covered] + 1e-3)
    assert (high - low)[covered].max() > 1.0  # Gy: the scenarios do move the dose


def test_rt_ion_plan_carries_the_robust_settings_and_the_evaluation_recomputes(robust_run, images):
    out, _ = robust_run
    plan = pydicom.dcmread(out / "RTPLAN.dcm")
    block = plan.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    assert block[0x01].value == "combined" and int(block[0x04].value) == 21
    assert float(block[0x02].value) == 3.0 and float(block[0x03].value) == 3.5
    settings = read_robust_settings(plan)
    scenarios = settings["scenarios"]
    assert len(scenarios) == 21 and settings["fractions"] == 25
    # from the exported CT, structures and plan alone
    machine = load_default_machine()
    beams, spots, weights = plan_from_rt_ion_plan(plan, machine)
    assert len(beams) == 2 and len(spots) == len(weights) and np.all(weights >= 0)
    read = dicom_io.read_planning_folder(images)
    dose_grid = read.ct.grid.resampled(GRID_MM)
    on_dose = [structure_on_grid(s, read.ct.grid, dose_grid) for s in read.structures]
    mask = np.zeros(dose_grid.shape, dtype=bool)
    for s in on_dose:
        if s.role != EXTERNAL:
            mask |= s.mask
    cubes = scenario_dose_cubes(
        hu_to_spr(read.ct.hu, load_default_calibration()),
        read.ct.grid, dose_grid, mask, beams, spots, weights, machine, scenarios,
    )  # fmt: skip
    again = evaluate_robustness(cubes, on_dose, scenarios, 50.0 / 25).to_dict(25)["worst_case"]
    for name, goals in settings["worst_case"].items():
        for goal, g in goals.items():
            assert again[name][goal]["value"] == pytest.approx(g["value"], rel=0.02, abs=0.05)
            assert again[name][goal]["scenario_label"] == g["scenario_label"] or goal in (
                "max", "min", "D2",
            )  # fmt: skip


def test_a_nominal_plan_is_evaluated_without_robust_optimisation(images):
    out = images.parent / "eval"
    result = CliRunner().invoke(
        build_app(), ["plan", str(images), *ARGS, "--scenarios", "shifts", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    robust = json.loads((out / "summary.json").read_text())["robust"]
    assert robust["robust"] == "none" and len(robust["scenarios"]["scenarios"]) == 7
    assert "optimiser" not in robust
    settings = read_robust_settings(pydicom.dcmread(out / "RTPLAN.dcm"))
    assert len(settings["scenarios"]) == 7


def test_plain_plan_has_no_robust_block(tmp_path, images):
    out = tmp_path / "plain"
    result = CliRunner().invoke(build_app(), ["plan", str(images), *ARGS, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "robust" not in json.loads((out / "summary.json").read_text())
    assert read_robust_settings(pydicom.dcmread(out / "RTPLAN.dcm")) is None


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--scenarios", "everything"], "unknown scenario model"),
        (["--robust", "voxel_worst_case"], "needs --scenarios"),
        (["--scenarios", "21", "--robust", "sometimes"], "--robust is none or one of"),
        (["--scenarios", "21", "--robust-method", "newton"], "--robust-method is one of"),
    ],
)
def test_bad_robust_options_are_refused_clearly(tmp_path, images, extra, message):
    result = CliRunner().invoke(
        build_app(), ["plan", str(images), *ARGS, *extra, "--out", str(tmp_path / "x")]
    )
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "x").exists()


def test_a_deliverable_robust_plan_gets_its_minimum_mu_on_the_robust_objectives(images):
    from protonpath.planning import proteus_one

    out = images.parent / "deliverable-robust"
    args = ["plan", str(images), *ARGS, "--scenarios", "21", "--robust", "voxel_worst_case",
            "--robust-iterations", "40", "--deliverable", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lateral_model"] == "halo-depth"  # the deliverable plans' default
    mu = summary["minimum_mu"]
    assert mu["active_spots_after"] == summary["delivery_time"]["spots"]
    worst = summary["robust"]["worst_case"]["OuterTarget"]["D95"]
    # the evaluation is in the plan's unit, Gy(RBE): its nominal D95 is the plan's
    assert worst["nominal"] == pytest.approx(summary["structures"]["OuterTarget"]["D95"], rel=1e-3)
    assert 0 < worst["value"] <= worst["nominal"]
    low = pydicom.dcmread(out / "RTDOSE_MIN.dcm")
    assert low.DoseType == "EFFECTIVE" and "Gy(RBE)" in low.DoseComment
    data = proteus_one.load_proteus_one()
    plan = pydicom.dcmread(out / "RTPLAN.dcm")
    for ib in plan.IonBeamSequence:
        for cp in ib.IonControlPointSequence[::2]:
            w = np.asarray(cp.ScanSpotMetersetWeights, dtype=float)
            spot_mu = proteus_one.weights_to_mu(w, float(cp.NominalBeamEnergy), data)
            assert np.all(spot_mu[w > 0] >= data.min_mu_per_spot * (1 - 1e-5))
    refused = CliRunner().invoke(build_app(), [*args[:-1], str(out / "x"), "--reduce-layers", "0.2"])
    assert refused.exit_code != 0 and "--reduce-layers" in refused.output
