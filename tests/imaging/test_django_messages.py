"""The image checks' findings in English and French (imaging.messages renders code + params)."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from django.utils import translation

from protonpath.imaging import checks, messages
from tests.translations import assert_every_sentence_reads_differently_in_french


def _header(**values) -> checks.InstanceHeader:
    base = dict(sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid="1.2.3.1", study_instance_uid="1.2.3",
                series_instance_uid="1.2.3.4", modality="CT")
    return checks.InstanceHeader(**(base | values))


def test_every_code_the_checks_emit_has_a_sentence_translated_into_french():
    source = Path(checks.__file__).read_text()
    codes = set(re.findall(r'_finding\(\s*"([a-z_]+)"', source)) | {"no_rtstruct", "no_mr", "no_pt"}
    keys = {key.split("/")[0] for key in messages.MESSAGES}
    assert codes == keys
    assert_every_sentence_reads_differently_in_french(messages.MESSAGES)


def test_the_english_rendering_is_the_checks_own_message():
    headers = [
        _header(sop_instance_uid=f"1.2.3.{i}", image_position_mm=(0.0, 0.0, z), image_orientation=(1, 0, 0, 0, 1, 0),
                slice_thickness_mm=5.0, patient_name="Martin^Lucas", patient_birth_date="20170602")
        for i, z in enumerate([0.0, 2.5, 5.0, 12.5, 15.0])
    ]
    report = checks.assess_study(headers, checks.ExpectedIdentity("El Idrissi", "Amina", date(1979, 3, 14)))
    assert {"missing_slices", "name_mismatch", "birth_date_mismatch", "too_few_slices", "slices_too_thick", "no_mr"} <= {
        f.code for f in report.findings
    }
    with translation.override("en"):
        for finding in report.findings:
            assert messages.finding_message(finding.code, finding.params, "fallback") == finding.message


def test_an_identity_mismatch_reads_in_french():
    found = checks.check_identity([_header(patient_name="Martin^Amina", patient_birth_date="19790314")],
                                  checks.ExpectedIdentity("El Idrissi", "Amina", date(1979, 3, 14)))
    (finding,) = found
    assert finding.code == "name_mismatch" and finding.params == {"part": "family"}
    with translation.override("fr"):
        assert messages.localised(finding)["message"] == "le nom de famille dans les images diffère de celui de la demande"
    with translation.override("en"):
        assert messages.localised(finding)["message"] == "the family name in the images differs from the request"


@pytest.mark.parametrize("language, expected", [("en", "slices 2 mm thick are 2.50 mm apart"),
                                                ("fr", "des coupes de 2 mm d'épaisseur sont espacées de 2,50 mm")])
def test_millimetres_follow_the_language(language, expected):
    with translation.override(language):
        assert messages.finding_message("gaps_between_slices", {"thickness_mm": 2.0, "spacing_mm": 2.5}) == expected


def test_unknown_codes_and_reports_stored_without_params_keep_their_stored_text():
    with translation.override("fr"):
        assert messages.finding_message("new_check", {}, "a newer check said so") == "a newer check said so"
        old = {"code": "missing_slices", "severity": "blocking", "message": "2 slice(s) missing: 1 gap(s) wider than the 2.50 mm spacing"}
        assert messages.localised(old)["message"] == old["message"]
        assert messages.localised({"code": "no_images", "message": "no images have been received"})["message"] == (
            "aucune image n'a été reçue"
        )
