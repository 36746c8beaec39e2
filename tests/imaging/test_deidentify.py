"""De-identification: a real CT + RTSTRUCT + RTPLAN + RTDOSE set stays linked, loses its identity."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.datadict import keyword_for_tag

from protonpath.imaging.deidentify import (
    DICOM_UID_ROOT,
    Pseudonym,
    UidMapper,
    deidentify_dataset,
    deidentify_files,
    load_basic_profile,
    resolve_action,
)
from tests.imaging.dicomdata import pydicom_file, shared_rt_study

TABLE_FILE = Path(__file__).resolve().parents[2] / "src/protonpath/imaging/data/deid_basic_profile.csv"

@pytest.fixture(scope="module")
def rt_study(tmp_path_factory):
    return shared_rt_study(tmp_path_factory)


def all_uids(ds: pydicom.Dataset) -> set[str]:
    found: set[str] = set()

    def visit(dataset, element):
        if element.VR == "UI" and element.value:
            values = [element.value] if isinstance(element.value, str) else element.value
            found.update(str(v) for v in values)

    ds.walk(visit)
    return found


def all_text(ds: pydicom.Dataset) -> str:
    parts: list[str] = []
    ds.walk(lambda d, e: parts.append(str(e.value)) if e.VR in ("PN", "LO", "SH", "ST", "LT", "UT", "DA", "CS") else None)
    return "\n".join(parts)


@pytest.fixture(scope="module")
def export(rt_study, tmp_path_factory):
    sources = {m: [pydicom.dcmread(p) for p in paths] for m, paths in rt_study.items()}
    mapper = UidMapper(b"department key")
    paths, warnings = deidentify_files(
        [p for paths in rt_study.values() for p in paths], tmp_path_factory.mktemp("export"),
        uids=mapper, pseudonym=Pseudonym("PROTONPATH^0042", "PP-ANON-0042"),
    )
    exported: dict[str, list[pydicom.Dataset]] = {}
    for path in paths:
        ds = pydicom.dcmread(path)
        exported.setdefault(ds.Modality, []).append(ds)
    return sources, exported, mapper, paths, warnings


def test_no_original_uid_survives_anywhere(export):
    sources, exported, _, _, _ = export
    original = set().union(*(all_uids(ds) for group in sources.values() for ds in group))
    remaining = set().union(*(all_uids(ds) for group in exported.values() for ds in group))

    leaked = {u for u in original & remaining if not u.startswith(DICOM_UID_ROOT)}
    assert leaked == set()
    assert len({ds.StudyInstanceUID for group in exported.values() for ds in group}) == 1


def test_rtstruct_still_points_at_the_ct_slices_and_frame(export):
    _, exported, _, _, _ = export
    (structures,) = exported["RTSTRUCT"]
    ct_uids = {ds.SOPInstanceUID for ds in exported["CT"]}
    ct_frames = {ds.FrameOfReferenceUID for ds in exported["CT"]}
    contour_refs = {
        c.ContourImageSequence[0].ReferencedSOPInstanceUID
        for roi in structures.ROIContourSequence for c in roi.get("ContourSequence", [])
    }
    frame_ref = structures.ReferencedFrameOfReferenceSequence[0]
    series_ref = frame_ref.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]

    assert contour_refs == ct_uids and len(ct_uids) == 98
    assert {frame_ref.FrameOfReferenceUID} == ct_frames
    assert {r.ReferencedFrameOfReferenceUID for r in structures.StructureSetROISequence} == ct_frames
    assert series_ref.SeriesInstanceUID == exported["CT"][0].SeriesInstanceUID


def test_plan_and_dose_refer_to_the_new_structure_set_and_plan(export):
    _, exported, _, _, _ = export
    (structures,), (plan,), (dose,) = exported["RTSTRUCT"], exported["RTPLAN"], exported["RTDOSE"]

    assert plan.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == structures.SOPInstanceUID
    assert dose.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == plan.SOPInstanceUID
    assert plan.FrameOfReferenceUID == dose.FrameOfReferenceUID == exported["CT"][0].FrameOfReferenceUID


def test_identity_is_removed_and_the_removal_is_recorded(export):
    sources, exported, _, _, _ = export
    original = sources["RTPLAN"][0]
    for group in exported.values():
        for ds in group:
            assert ds.PatientName == "PROTONPATH^0042"
            assert ds.PatientID == "PP-ANON-0042"
            assert ds.get("PatientBirthDate", "") == ""
            assert ds.PatientIdentityRemoved == "YES"
            assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
            assert not any(e.tag.is_private for e in ds.iterall())
            assert "SourceApplicationEntityTitle" not in ds.file_meta
    text = all_text(exported["RTPLAN"][0])
    for identifying in (str(original.PatientName), original.PatientID, original.get("InstitutionName", "")):
        if identifying:
            assert identifying not in text


def test_pixels_doses_and_contours_are_untouched(export):
    sources, exported, _, _, _ = export
    by_position = {float(ds.ImagePositionPatient[2]): ds for ds in exported["CT"]}
    for ds in sources["CT"][::20]:
        assert np.array_equal(by_position[float(ds.ImagePositionPatient[2])].pixel_array, ds.pixel_array)
    assert np.array_equal(exported["RTDOSE"][0].pixel_array, sources["RTDOSE"][0].pixel_array)
    def contours(ds):
        return [list(c.ContourData) for roi in ds.ROIContourSequence for c in roi.get("ContourSequence", [])]

    assert contours(exported["RTSTRUCT"][0]) == contours(sources["RTSTRUCT"][0])
    assert [r.ROIName for r in exported["RTSTRUCT"][0].StructureSetROISequence] == \
        [r.ROIName for r in sources["RTSTRUCT"][0].StructureSetROISequence]


def test_exported_files_are_read_by_dcmdump(export):
    _, _, _, paths, _ = export
    result = subprocess.run(["dcmdump", "-q", str(paths[-1])], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr


def test_the_same_key_gives_the_same_uids_and_another_key_others():
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))

    first = deidentify_dataset(ds, uids=UidMapper(b"a")).dataset
    again = deidentify_dataset(ds, uids=UidMapper(b"a")).dataset
    other = deidentify_dataset(ds, uids=UidMapper(b"b")).dataset

    assert first.SOPInstanceUID == again.SOPInstanceUID != other.SOPInstanceUID
    assert first.SOPInstanceUID.startswith("2.25.") and len(first.SOPInstanceUID) <= 64
    assert ds.PatientName == "CompressedSamples^CT1"  # the original is left untouched


def test_a_stored_mapping_continues_an_export():
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    mapper = UidMapper(b"a")
    deidentify_dataset(ds, uids=mapper)

    resumed = UidMapper(b"other key", mapping=dict(mapper.mapping))

    assert resumed(ds.SOPInstanceUID) == mapper(ds.SOPInstanceUID)


def test_private_attributes_are_removed():
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    assert any(e.tag.is_private for e in ds)

    result = deidentify_dataset(ds, uids=UidMapper(b"k")).dataset

    assert not any(e.tag.is_private for e in result)


def test_an_option_can_keep_dates():
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    table = load_basic_profile().with_overrides({"StudyDate": "K"})

    kept = deidentify_dataset(ds, uids=UidMapper(b"k"), table=table).dataset
    basic = deidentify_dataset(ds, uids=UidMapper(b"k")).dataset

    assert kept.StudyDate == ds.StudyDate and "LongitudinalTemporalInformationModified" not in kept
    assert basic.StudyDate == "" and basic.LongitudinalTemporalInformationModified == "REMOVED"


@pytest.mark.parametrize(("code", "action"), [("X", "X"), ("X/Z", "Z"), ("X/D", "D"), ("Z/D", "D"),
                                             ("X/Z/D", "D"), ("X/Z/U*", "U"), ("K", "K")])
def test_combined_codes_resolve_to_an_action_valid_for_every_type(code, action):
    assert resolve_action(code) == action


def test_the_action_table_names_real_attributes():
    rows = list(csv.DictReader(line for line in TABLE_FILE.read_text().splitlines()
                               if line and not line.startswith("#")))
    assert len(rows) > 250
    for row in rows:
        resolve_action(row["action"])
        if "x" not in row["tag"]:
            assert keyword_for_tag(int(row["tag"], 16)) == row["keyword"], row
