"""De-identified export of a study with its RT objects: PS3.15 basic profile, UIDs remapped
consistently across CT, RTSTRUCT, RTPLAN and RTDOSE; staff only; audited."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pydicom
import pytest
from django.urls import reverse

from protonpath.accounts.models import AuditEvent
from protonpath.imaging import services
from protonpath.imaging.models import Study
from protonpath.referrals.models import Patient
from tests.factories import PASSWORD, make_request
from tests.imaging.conftest import as_uploads
from tests.imaging.dicomdata import rt_study  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def rt_request(doctor, staff, rt_study):  # noqa: F811
    treatment_request = make_request(doctor, images=False)
    Patient.objects.filter(pk=treatment_request.patient_id).update(last_name="boost", first_name="breast")
    treatment_request.refresh_from_db()
    services.upload_study(actor=staff, treatment_request=treatment_request, files=as_uploads([p for g in rt_study.values() for p in g]))
    return treatment_request


def _export(client, user, study) -> list[pydicom.Dataset]:
    assert client.login(username=user.username, password=PASSWORD)
    response = client.post(reverse("imaging:export", args=[study.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    return [pydicom.dcmread(io.BytesIO(archive.read(name))) for name in archive.namelist()], archive, response


def _uids(ds) -> set[str]:
    found = set()
    for element in ds.iterall():
        if element.VR == "UI" and element.value:
            values = element.value if isinstance(element.value, list | tuple) or type(element.value).__name__ == "MultiValue" else [element.value]
            found.update(str(v) for v in values)
    return found


def test_the_export_is_deidentified_with_uids_remapped_consistently(client, oncologist, rt_request, rt_study):  # noqa: F811
    study = Study.objects.get(treatment_request=rt_request)
    originals = {m: [pydicom.dcmread(p) for p in paths] for m, paths in rt_study.items()}
    original_uids = set().union(*(_uids(ds) for group in originals.values() for ds in group))
    # DICOM's own registered UIDs (SOP classes, transfer syntaxes...) identify nobody and stay.
    identifying = {uid for uid in original_uids if pydicom.uid.UID(uid).name == uid}
    assert len(identifying) > 100

    exported, archive, response = _export(client, oncologist, study)

    assert len(exported) == 101
    by_modality = {}
    for ds in exported:
        by_modality.setdefault(ds.Modality, []).append(ds)
    assert {m: len(v) for m, v in by_modality.items()} == {"CT": 98, "RTSTRUCT": 1, "RTPLAN": 1, "RTDOSE": 1}
    for ds in exported:
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert str(ds.PatientName).startswith("ANON-") and ds.PatientID == str(ds.PatientName)
        assert ds.get("PatientBirthDate") in (None, "") and ds.get("AccessionNumber") in (None, "")
        assert not any(e.tag.is_private for e in ds.iterall())
        # No original UID survives, apart from DICOM's registered ones (SOP classes...).
        assert not _uids(ds) & identifying
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    for raw in (archive.read(n) for n in archive.namelist()):
        assert b"boost" not in raw.lower() and b"breast^" not in raw.lower()
    # References between the files point at the remapped instances.
    cts, rtstruct, plan, dose = by_modality["CT"], by_modality["RTSTRUCT"][0], by_modality["RTPLAN"][0], by_modality["RTDOSE"][0]
    ct_uids = {ds.SOPInstanceUID for ds in cts}
    contour_refs = {
        c.ContourImageSequence[0].ReferencedSOPInstanceUID
        for roi in rtstruct.ROIContourSequence for c in roi.get("ContourSequence", [])
    }
    assert contour_refs and contour_refs <= ct_uids
    assert rtstruct.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == cts[0].FrameOfReferenceUID
    assert plan.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == rtstruct.SOPInstanceUID
    assert dose.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == plan.SOPInstanceUID
    assert len({ds.StudyInstanceUID for ds in exported}) == 1
    # The images themselves are untouched.
    original_ct = sorted(originals["CT"], key=lambda d: float(d.ImagePositionPatient[2]))[10]
    exported_ct = sorted(cts, key=lambda d: float(d.ImagePositionPatient[2]))[10]
    assert np.array_equal(original_ct.pixel_array, exported_ct.pixel_array)
    assert AuditEvent.objects.filter(actor=oncologist, action="export", object_type="imaging.study", object_id=str(study.pk)).exists()
    assert "boost" not in response["Content-Disposition"].lower()


def test_two_exports_of_a_study_agree(client, staff, rt_request):
    study = Study.objects.get(treatment_request=rt_request)
    first = sorted(ds.SOPInstanceUID for ds in _export(client, staff, study)[0])
    second = sorted(ds.SOPInstanceUID for ds in _export(client, staff, study)[0])
    assert first == second


@pytest.mark.parametrize("role, status", [("head", 200), ("physicist", 404), ("doctor", 404), ("other_patient", 404)])
def test_export_per_role(client, users, rt_request, role, status):
    study = Study.objects.get(treatment_request=rt_request)
    client.login(username=users[role].username, password=PASSWORD)
    assert client.post(reverse("imaging:export", args=[study.pk])).status_code == status
    assert AuditEvent.objects.filter(actor=users[role], action="export").exists() == (status == 200)


def test_export_is_not_a_get(client, staff, rt_request):
    study = Study.objects.get(treatment_request=rt_request)
    client.login(username=staff.username, password=PASSWORD)
    assert client.get(reverse("imaging:export", args=[study.pk])).status_code == 405
