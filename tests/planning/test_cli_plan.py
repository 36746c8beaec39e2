"""``protonpath plan`` on ordinary cases: clear messages, never a traceback."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from protonpath.cli import build_app
from tests.treatment.cases import write_case

ARGS = ["--grid", "12", "--spot-spacing", "10", "--layer-spacing", "8", "--iterations", "20"]


def test_structure_without_voxel_on_the_dose_grid_gets_no_statistics_not_a_keyerror(tmp_path):
    write_case(tmp_path / "ct", tiny_oar=True)
    result = CliRunner().invoke(
        build_app(),
        ["plan", str(tmp_path / "ct"), "--target", "PTV_60", "--oar", "Tiny", "--dose", "60",
         "--fractions", "30", "--out", str(tmp_path / "out"), *ARGS],
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 0, result.output
    assert "no voxel on the 12 mm dose grid" in result.output
    assert "Tiny" in result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["structures"]["Tiny"] == {"voxels": 0}
    assert summary["structures"]["PTV_60"]["voxels"] > 0


def test_target_outside_the_only_ct_slice_is_a_clear_message(tmp_path, recwarn):
    paths = write_case(tmp_path / "ct")
    # keep one CT slice, far from the target (the target spans z in -18..18 mm)
    for p in paths["CT"][1:]:
        p.unlink()
    result = CliRunner().invoke(
        build_app(),
        ["plan", str(tmp_path / "ct"), "--target", "PTV_60", "--out", str(tmp_path / "out"), *ARGS],
    )
    assert result.exit_code == 2, result.output
    assert "has no voxel on the CT" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not [w for w in recwarn if "Mean of empty slice" in str(w.message)]
    assert not (tmp_path / "out").exists()


def test_layer_spacing_auto_or_fixed_mm_goes_into_the_plan_and_its_summary(tmp_path):
    write_case(tmp_path / "ct")
    base = ["plan", str(tmp_path / "ct"), "--target", "PTV_60", "--dose", "60", "--fractions", "30",
            "--grid", "12", "--spot-spacing", "10", "--iterations", "20"]
    summaries = {}
    for spacing in ("auto", "8"):
        out = tmp_path / f"out-{spacing}"
        result = CliRunner().invoke(build_app(), [*base, "--layer-spacing", spacing, "--out", str(out)])
        assert result.exit_code == 0, result.output
        summaries[spacing] = json.loads((out / "summary.json").read_text())
    auto, fixed = summaries["auto"]["layer_spacing"], summaries["8"]["layer_spacing"]
    assert auto["mode"] == "auto" and auto["width"] == "W80" and auto["factor"] == 1.0
    # the target (50-86 mm deep) has narrow peaks: auto takes each of the machine's energies
    # (3 mm of range apart), the fixed 8 mm every third one
    assert 2.5 < auto["spacing_mm"][0] <= auto["spacing_mm"][1] < 3.5
    assert fixed == {"mode": "fixed", "mm": 8.0, "spacing_mm": fixed["spacing_mm"]}
    assert fixed["spacing_mm"][0] >= 8.0
    assert summaries["auto"]["energy_layers"] > 2 * summaries["8"]["energy_layers"]


def test_a_bad_layer_spacing_is_a_clear_message(tmp_path):
    result = CliRunner().invoke(
        build_app(),
        ["plan", str(tmp_path / "nowhere"), "--target", "PTV", "--layer-spacing", "fine",
         "--out", str(tmp_path / "out")],
    )
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.replace("│", " ").split())  # the error box wraps its lines
    assert "Invalid value for --layer-spacing: layer spacing is 'auto' or a number of mm" in said
    assert not (tmp_path / "out").exists()
