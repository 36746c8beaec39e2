"""'Fit for planning': the verdict and its reasons on real and derived series."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from datetime import date

import pydicom
import pytest

from protonpath.imaging.checks import (
    ExpectedIdentity,
    InstanceHeader,
    assess_study,
    check_series,
    header_from_dataset,
    load_planning_requirements,
    modalities_present,
    normalised_name,
    slice_positions_mm,
)
from tests.imaging.dicomdata import pydicom_file, shared_rt_study, write_ct_series


@pytest.fixture(scope="module")
def rt_study(tmp_path_factory):
    return shared_rt_study(tmp_path_factory)


def headers_of(paths) -> list[InstanceHeader]:
    return [header_from_dataset(pydicom.dcmread(p, stop_before_pixels=True)) for p in paths]


def codes(report) -> set[str]:
    return {f.code for f in report.findings}


@pytest.fixture(scope="module")
def rt_headers(rt_study) -> list[InstanceHeader]:
    return headers_of([p for paths in rt_study.values() for p in paths])


def test_the_real_rt_study_is_fit_for_planning(rt_headers):
    source = next(h for h in rt_headers if h.modality == "CT")
    expected = ExpectedIdentity(family_name=source.patient_name.split("^")[0], given_names=source.patient_name.split("^")[1])

    report = assess_study(rt_headers, expected)

    assert report.fit_for_planning, report.reasons
    assert report.modalities == ("CT", "RTSTRUCT", "RTPLAN", "RTDOSE")
    planning = next(s for s in report.series if s.series_instance_uid == report.planning_series_instance_uid)
    assert (planning.slice_count, planning.spacing_mm, planning.slice_thicknesses_mm) == (98, pytest.approx(3.0), (3.0,))
    assert planning.missing_slices == 0 and planning.spacing_regular
    assert {"no_mr", "no_pt"} <= codes(report)
    # This anonymised example carries no birth date: a warning, not a reason to refuse.
    assert [f.code for f in report.findings if f.severity != "info"] == ["birth_date_absent"]


def test_a_missing_slice_is_found_and_blocks(rt_study, rt_headers):
    ct = sorted((h for h in rt_headers if h.modality == "CT"), key=lambda h: h.image_position_mm[2])
    without_two = [h for h in rt_headers if h not in (ct[40], ct[41])]

    report = assess_study(without_two)

    assert not report.fit_for_planning
    finding = next(f for f in report.findings if f.code == "missing_slices")
    assert finding.severity == "blocking"
    assert finding.message.startswith("2 slice(s) missing")


def test_slices_too_thick_and_too_few_are_reasons(tmp_path):
    headers = headers_of(write_ct_series(tmp_path, 12, spacing_mm=5.0))

    report = assess_study(headers)

    assert not report.fit_for_planning
    assert {"slices_too_thick", "too_few_slices"} <= codes(report)
    assert any("5 mm thick" in reason for reason in report.reasons)


def test_irregular_spacing_blocks(tmp_path):
    headers = headers_of(write_ct_series(tmp_path, 30, spacing_mm=2.0))
    shifted = [replace(h, image_position_mm=(*h.image_position_mm[:2], h.image_position_mm[2] + 0.4))
               if h.instance_number == 10 else h for h in headers]

    report = check_series(shifted, load_planning_requirements())

    assert not report.spacing_regular
    assert [f.code for f in report.findings] == ["irregular_spacing"]


def test_a_series_with_mixed_orientation_is_refused(tmp_path):
    headers = headers_of(write_ct_series(tmp_path, 25, spacing_mm=2.0))
    tilted = [replace(h, image_orientation=(1.0, 0.0, 0.0, 0.0, 0.996, -0.087)) if h.instance_number == 3 else h
              for h in headers]

    report = check_series(tilted)

    assert not report.orientation_consistent
    assert "orientation_inconsistent" in {f.code for f in report.findings}


def test_positions_follow_the_slice_normal_not_z():
    # A sagittal MR (rows along +y, columns along -z): the normal, row x column, is -x, so
    # slices 4 mm apart in x are 4 mm apart along it.
    base = header_from_dataset(pydicom.dcmread(pydicom_file("MR_small.dcm"), stop_before_pixels=True))
    sagittal = [replace(base, image_orientation=(0, 1, 0, 0, 0, -1), image_position_mm=(10.0 + 4 * i, 0.0, 0.0),
                        sop_instance_uid=f"1.2.3.{i}") for i in range(5)]

    assert list(slice_positions_mm(sagittal)) == pytest.approx([-10, -14, -18, -22, -26])
    assert check_series(sagittal).spacing_mm == pytest.approx(4.0)


def test_the_patient_in_the_images_must_be_the_patient_of_the_request(tmp_path):
    headers = headers_of(write_ct_series(tmp_path, 40, spacing_mm=2.0, patient_name="Lefèvre^Anne-Marie",
                                         birth_date="19610203"))

    same = assess_study(headers, ExpectedIdentity("LEFEVRE", "Anne Marie", date(1961, 2, 3)))
    other_name = assess_study(headers, ExpectedIdentity("Lefebvre", "Anne", date(1961, 2, 3)))
    other_birth = assess_study(headers, ExpectedIdentity("Lefèvre", "Anne", date(1961, 3, 2)))

    assert same.fit_for_planning, same.reasons
    assert "name_mismatch" in codes(other_name) and not other_name.fit_for_planning
    assert "birth_date_mismatch" in codes(other_birth) and not other_birth.fit_for_planning
    for report in (other_name, other_birth):
        assert all("Lef" not in f.message and "1961" not in f.message for f in report.findings)


def test_two_patients_in_one_upload_block(tmp_path):
    first = headers_of(write_ct_series(tmp_path / "a", 30, spacing_mm=2.0, patient_name="Doe^Jane"))
    second = headers_of(write_ct_series(tmp_path / "b", 30, spacing_mm=2.0, patient_name="Roe^Rick"))

    report = assess_study(first + second)

    assert "several_patients" in codes(report)
    assert not report.fit_for_planning


def test_no_ct_means_not_fit_even_with_a_good_mr():
    mr = header_from_dataset(pydicom.dcmread(pydicom_file("MR_small.dcm"), stop_before_pixels=True))

    report = assess_study([mr])

    assert "no_planning_ct" in codes(report)
    assert report.modalities == ("MR",)


def test_a_structure_set_drawn_on_images_not_received_is_flagged(rt_headers):
    without_ct = [h for h in rt_headers if h.modality != "CT"]
    other_ct = [replace(h, frame_of_reference_uid="1.2.3.4.5", series_instance_uid="1.2.3.4.6")
                for h in rt_headers if h.modality == "CT"]

    report = assess_study(without_ct + other_ct)

    assert "structures_other_frame" in codes(report)


def test_modalities_are_listed_in_a_fixed_order():
    headers = [InstanceHeader("1.2", f"1.{i}", "1.3", f"1.4.{m}", modality=m)
               for i, m in enumerate(["RTDOSE", "SR", "MR", "CT", "RTSTRUCT", "PT"])]

    assert modalities_present(headers) == ("CT", "MR", "PT", "RTSTRUCT", "RTDOSE", "SR")


def test_headers_survive_a_round_trip_through_json_ready_dicts(rt_headers):
    for header in rt_headers[::25]:
        assert InstanceHeader.from_dict(header.to_dict()) == header


def test_json_ready_dicts_hold_what_dataclasses_would_and_only_lists(rt_headers):
    for header in rt_headers[::25]:
        data = header.to_dict()
        assert json.dumps(data) == json.dumps(dataclasses.asdict(header))
        assert json.loads(json.dumps(data)) == data  # lists, not tuples: the same after JSON


def test_names_compare_without_case_accents_or_punctuation():
    assert normalised_name("Lefèvre-Dupont") == normalised_name("LEFEVRE DUPONT") == "lefevre dupont"
