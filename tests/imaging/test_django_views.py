"""The images panel, the viewer's endpoints, the inbox and the API, per role, on real files."""

from __future__ import annotations

import html
import io

import numpy as np
import pydicom
import pytest
from django.urls import reverse
from PIL import Image

from protonpath.accounts.models import AuditEvent
from protonpath.imaging import services
from protonpath.imaging.models import Instance, Series, Study
from protonpath.referrals.models import Patient
from tests.factories import PASSWORD, advance_to, make_request
from tests.imaging.conftest import PATIENT_BIRTH, PATIENT_NAME, as_uploads
from tests.imaging.dicomdata import pydicom_file, rt_study, write_ct_series  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db

STAFF = ["staff", "oncologist", "head"]


def login(client, user):
    assert client.login(username=user.username, password=PASSWORD)


@pytest.fixture
def with_ct(submitted, doctor, tmp_path):
    """The submitted request with a 30-slice CT missing two slices (so: not fit, with a reason)."""
    paths = write_ct_series(tmp_path / "ct", 30, skip=(5, 6), patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    services.upload_study(actor=doctor, treatment_request=submitted, files=as_uploads(paths))
    return submitted


@pytest.fixture
def rt_request(doctor, staff, oncologist, rt_study):  # noqa: F811
    """An accepted request for the patient of the dicompyler-core study, with CT+RTSTRUCT+RTPLAN+RTDOSE."""
    treatment_request = make_request(doctor, images=False)
    Patient.objects.filter(pk=treatment_request.patient_id).update(last_name="boost", first_name="breast")
    treatment_request.refresh_from_db()
    paths = [p for group in rt_study.values() for p in group]
    services.upload_study(actor=staff, treatment_request=treatment_request, files=as_uploads(paths))
    return treatment_request


# --- the panel on the request page --------------------------------------------------------------


@pytest.mark.parametrize("role", STAFF)
def test_staff_see_the_verdict_reasons_and_series_geometry(client, users, with_ct, role):
    login(client, users[role])
    page = client.get(reverse("referrals:detail", args=[with_ct.pk])).content.decode()
    assert "Not fit for planning" in page
    assert "2 slice(s) missing" in page
    assert 'class="list checks"' in page and "View</a>" in page
    assert "De-identified export" in page


def test_the_referring_doctor_sees_the_verdict_and_reasons_but_not_the_viewer(client, doctor, with_ct):
    login(client, doctor)
    page = client.get(reverse("referrals:detail", args=[with_ct.pk])).content.decode()
    assert "Not fit for planning" in page and "2 slice(s) missing" in page
    assert 'class="list checks"' not in page and "View</a>" not in page and "De-identified export" not in page


def test_the_patient_sees_what_was_received_only(client, with_ct, patient, doctor):
    with_ct.patient.user = patient
    with_ct.patient.save()
    login(client, patient)
    page = client.get(reverse("referrals:detail", args=[with_ct.pk])).content.decode()
    assert "28 images received." in page
    assert 'id="planning-verdict"' not in page and "slice(s) missing" not in page
    assert "team checks the images and will tell you if anything is missing" in page


def test_the_panel_tells_staff_how_many_studies_wait_in_the_inbox(client, staff, submitted, tmp_path):
    paths = write_ct_series(tmp_path / "ct", 1)
    from django.db import transaction

    from protonpath.imaging import ingest
    from protonpath.imaging.files import classify_file

    with transaction.atomic():
        ingest.store_instance(classify_file(paths[0]), treatment_request=None, via="dicom", inbox_reason="no accession number")
    login(client, staff)
    page = client.get(reverse("referrals:detail", args=[submitted.pk])).content.decode()
    assert "1 study received over the network waits to be matched" in page


def test_staff_can_run_the_checks_again(client, oncologist, with_ct):
    login(client, oncologist)
    response = client.post(reverse("imaging:recheck", args=[with_ct.pk]))
    assert response.status_code == 302
    assert AuditEvent.objects.filter(actor=oncologist, summary="images re-checked").exists()


def test_external_users_cannot_run_the_checks(client, doctor, with_ct):
    login(client, doctor)
    assert client.post(reverse("imaging:recheck", args=[with_ct.pk])).status_code == 403


# --- viewer -----------------------------------------------------------------------------------


def _ct_series(treatment_request) -> Series:
    return Series.objects.get(study__treatment_request=treatment_request, modality="CT")


@pytest.mark.parametrize(
    "role, status",
    [("staff", 200), ("oncologist", 200), ("head", 200), ("physicist", 404), ("doctor", 404), ("other_doctor", 404), ("other_patient", 404)],
)
def test_viewer_and_its_endpoints_per_role(client, users, with_ct, role, status):
    series = _ct_series(with_ct)
    instance = series.instances.first()
    login(client, users[role])
    for url in (
        reverse("imaging:viewer", args=[series.pk]),
        reverse("imaging:series_slices", args=[series.pk]),
        reverse("imaging:series_contours", args=[series.pk]),
        reverse("imaging:instance_png", args=[instance.pk]),
    ):
        assert client.get(url).status_code == status, url
    if status == 404:
        assert AuditEvent.objects.filter(actor=users[role], action="denied").exists()


def test_physicists_see_the_images_once_the_request_reaches_planning(client, physicist, doctor, staff, oncologist, tmp_path):
    from protonpath.referrals import services as referral_services

    r = make_request(doctor, covered_by_french_insurance=True, images=False)
    services.upload_study(actor=doctor, treatment_request=r, files=as_uploads(write_ct_series(tmp_path / "ct", 2)))
    r = advance_to(r, "accepted", staff=staff, oncologist=oncologist)
    referral_services.send_decision(actor=staff, treatment_request=r)
    referral_services.perform(actor=staff, treatment_request=r, action="book_consultation")
    login(client, physicist)
    assert client.get(reverse("imaging:viewer", args=[_ct_series(r).pk])).status_code == 200


def test_the_slice_list_is_in_position_order(client, staff, with_ct):
    series = _ct_series(with_ct)
    login(client, staff)
    data = client.get(reverse("imaging:series_slices", args=[series.pk])).json()
    positions = [s["position_mm"] for s in data["slices"]]
    assert len(positions) == 28 and positions == sorted(positions)
    assert data["presets"]["lung"] == {"center": -600.0, "width": 1500.0}
    assert AuditEvent.objects.filter(actor=staff, action="view", object_type="imaging.study").exists()


def test_a_rendered_slice_applies_the_window_to_hounsfield_units(client, staff, with_ct):
    instance = _ct_series(with_ct).instances.first()
    login(client, staff)

    response = client.get(reverse("imaging:instance_png", args=[instance.pk]), {"center": 40, "width": 400})

    assert response["Content-Type"] == "image/png"
    shown = np.asarray(Image.open(io.BytesIO(response.content)))
    ds = pydicom.dcmread(instance.file.path)
    hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    # The linear window function of PS3.3 C.11.2.1.2.1.
    expected = np.clip(np.rint(((hu - (40 - 0.5)) / (400 - 1) + 0.5) * 255), 0, 255)
    assert shown.shape == (ds.Rows, ds.Columns)
    assert np.abs(shown.astype(float) - expected).max() <= 1
    bone = np.asarray(Image.open(io.BytesIO(client.get(reverse("imaging:instance_png", args=[instance.pk]), {"center": 400, "width": 1800}).content)))
    assert not np.array_equal(bone, shown)


def test_a_bad_window_is_refused(client, staff, with_ct):
    instance = _ct_series(with_ct).instances.first()
    login(client, staff)
    assert client.get(reverse("imaging:instance_png", args=[instance.pk]), {"width": "-5"}).status_code == 400
    assert client.get(reverse("imaging:instance_png", args=[instance.pk]), {"center": "abc"}).status_code == 400


def test_contours_of_the_rtstruct_are_given_in_pixel_coordinates_of_each_slice(client, staff, rt_request):
    series = _ct_series(rt_request)
    rtstruct = pydicom.dcmread(Instance.objects.get(series__modality="RTSTRUCT").file.path)
    login(client, staff)

    data = client.get(reverse("imaging:series_contours", args=[series.pk])).json()

    assert data["structure_sets"] == 1
    assert {s["name"] for s in data["structures"]} >= {"BODY", "Heart", "Lt Lung"}
    assert len(data["slices"]) > 10
    # Each polygon maps back to the RTSTRUCT's patient coordinates through its slice's geometry.
    by_uid: dict[str, list[np.ndarray]] = {}
    for roi in rtstruct.ROIContourSequence:
        for contour in roi.get("ContourSequence", []):
            uid = str(contour.ContourImageSequence[0].ReferencedSOPInstanceUID)
            by_uid.setdefault(uid, []).append(np.asarray(contour.ContourData, float).reshape(-1, 3))
    instance_pk, drawn = next(iter(data["slices"].items()))
    instance = Instance.objects.get(pk=instance_pk)
    ds = pydicom.dcmread(instance.file.path)
    origin = np.asarray(ds.ImagePositionPatient, float)
    row_dir, col_dir = np.asarray(ds.ImageOrientationPatient[:3], float), np.asarray(ds.ImageOrientationPatient[3:], float)
    dy, dx = (float(v) for v in ds.PixelSpacing)
    back = [
        origin + np.outer(np.asarray(poly)[:, 0] * dx, row_dir) + np.outer(np.asarray(poly)[:, 1] * dy, col_dir)
        for structure in drawn for poly in structure["polygons"]
    ]
    expected = by_uid[instance.sop_instance_uid]
    assert len(back) == len(expected)
    for got in back:
        assert any(got.shape == want.shape and np.abs(got[:, :2] - want[:, :2]).max() < 0.01 for want in expected)


def test_a_series_without_structure_set_has_no_contours(client, staff, with_ct):
    login(client, staff)
    data = client.get(reverse("imaging:series_contours", args=[_ct_series(with_ct).pk])).json()
    assert data == {"series": _ct_series(with_ct).pk, "structure_sets": 0, "structures": [], "slices": {}}


def test_an_mr_slice_renders_with_its_own_window(client, staff, submitted):
    services.upload_study(actor=staff, treatment_request=submitted, files=as_uploads([pydicom_file("MR_small.dcm")]))
    instance = Instance.objects.get()
    login(client, staff)
    response = client.get(reverse("imaging:instance_png", args=[instance.pk]))
    image = Image.open(io.BytesIO(response.content))
    assert response.status_code == 200 and image.size == (64, 64)
    assert len(set(np.asarray(image).ravel().tolist())) > 50  # a real image, not a flat square


# --- inbox ------------------------------------------------------------------------------------


def _inbox_study(tmp_path, **identity) -> Study:
    from django.db import transaction

    from protonpath.imaging import ingest
    from protonpath.imaging.files import classify_file

    paths = write_ct_series(tmp_path / "inbox", 2, **identity)
    with transaction.atomic():
        for path in paths:
            stored = ingest.store_instance(classify_file(path), treatment_request=None, via="dicom", inbox_reason="unknown accession number")
    return stored.study


@pytest.mark.parametrize("role, status", [("staff", 200), ("oncologist", 200), ("physicist", 200), ("head", 200), ("doctor", 403), ("patient", 403)])
def test_inbox_per_role(client, users, tmp_path, role, status):
    _inbox_study(tmp_path, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    login(client, users[role])
    response = client.get(reverse("imaging:inbox"))
    assert response.status_code == status
    if status == 200:
        assert "El Idrissi^Amina" in response.content.decode() and "unknown accession number" in response.content.decode()


def test_staff_match_an_inbox_study_to_the_right_patient(client, staff, submitted, tmp_path):
    study = _inbox_study(tmp_path, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    login(client, staff)
    response = client.post(reverse("imaging:match", args=[study.pk]), {"reference": submitted.reference.lower()})
    assert response.status_code == 302 and response["Location"] == reverse("referrals:detail", args=[submitted.pk])
    study.refresh_from_db()
    assert study.treatment_request_id == submitted.pk and study.matched_by == staff
    assert submitted.imaging_check.instance_count == 2


def test_matching_to_another_patient_is_refused(client, staff, submitted, tmp_path):
    study = _inbox_study(tmp_path, patient_name="Martin^Lucas", birth_date="20170602")
    login(client, staff)
    response = client.post(reverse("imaging:match", args=[study.pk]), {"reference": submitted.reference}, follow=True)
    page = response.content.decode()
    assert "the family name in the images differs from the request" in page
    assert "the birth date in the images differs from the request" in page
    study.refresh_from_db()
    assert study.treatment_request is None


def test_images_without_identity_are_matched_only_when_staff_confirm(client, staff, submitted, tmp_path):
    study = _inbox_study(tmp_path, patient_name="", birth_date="")
    login(client, staff)
    refused = client.post(reverse("imaging:match", args=[study.pk]), {"reference": submitted.reference}, follow=True)
    assert "neither a patient name nor a birth date" in refused.content.decode()
    study.refresh_from_db()
    assert study.treatment_request is None
    client.post(reverse("imaging:match", args=[study.pk]), {"reference": submitted.reference, "confirm_no_identity": "on"})
    study.refresh_from_db()
    assert study.treatment_request_id == submitted.pk
    assert AuditEvent.objects.filter(actor=staff, summary__contains="confirmed").exists()


def test_matching_into_a_study_already_on_the_request_merges_the_series(staff, doctor, submitted, tmp_path):
    from django.db import transaction

    from protonpath.imaging import ingest
    from protonpath.imaging.files import classify_file

    paths = write_ct_series(tmp_path / "ct", 4, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    services.upload_study(actor=doctor, treatment_request=submitted, files=as_uploads(paths[:2]))
    with transaction.atomic():
        for path in paths[2:]:
            inbox = ingest.store_instance(classify_file(path), treatment_request=None, via="dicom").study

    services.match_study(actor=staff, study=inbox, treatment_request=submitted)

    study = Study.objects.get()
    assert study.treatment_request_id == submitted.pk
    assert list(study.series.values_list("instance_count", flat=True)) == [4]


def test_an_unknown_reference_is_reported(client, staff, tmp_path):
    study = _inbox_study(tmp_path, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    login(client, staff)
    response = client.post(reverse("imaging:match", args=[study.pk]), {"reference": "PP-1999-99999"}, follow=True)
    assert "No request has the reference PP-1999-99999." in response.content.decode()


def test_external_users_cannot_match(client, doctor, submitted, tmp_path):
    study = _inbox_study(tmp_path, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    login(client, doctor)
    assert client.post(reverse("imaging:match", args=[study.pk]), {"reference": submitted.reference}).status_code == 403
    study.refresh_from_db()
    assert study.treatment_request is None


# --- API --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "role, status, verdict, findings",
    [("staff", 200, True, True), ("doctor", 200, True, False), ("other_doctor", 404, None, None), ("physicist", 404, None, None)],
)
def test_api_images_of_a_request(client, users, with_ct, role, status, verdict, findings):
    login(client, users[role])
    response = client.get(f"/api/imaging/requests/{with_ct.pk}/images")
    assert response.status_code == status
    if status == 200:
        data = response.json()
        assert data["studies"][0]["modalities"] == ["CT"] and data["studies"][0]["series"][0]["instance_count"] == 28
        assert (data["fit_for_planning"] is False) == verdict
        assert (data["findings"] is not None) == findings
        if verdict:
            assert "2 slice(s) missing: 1 gap(s) wider than the 2.50 mm spacing" in data["reasons"]


def test_the_images_panel_speaks_french(client, staff, with_ct):
    login(client, staff)
    page = client.get(reverse("referrals:detail", args=[with_ct.pk]), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Non exploitable pour la planification" in page
    assert "28 images reçues." in page
    assert "Export anonymisé (zip)" in page


def test_the_findings_read_in_the_reader_s_language(client, staff, with_ct):
    login(client, staff)
    url = reverse("referrals:detail", args=[with_ct.pk])
    french = html.unescape(client.get(url, HTTP_ACCEPT_LANGUAGE="fr").content.decode())
    assert "2 coupe(s) manquante(s)\u00a0: 1 écart(s) plus grand(s) que l'espacement de 2,50 mm" in french
    assert "aucune IRM reçue" in french and "slice(s) missing" not in french
    english = html.unescape(client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode())
    assert "2 slice(s) missing: 1 gap(s) wider than the 2.50 mm spacing" in english and "no MR received" in english
    api = client.get(f"/api/imaging/requests/{with_ct.pk}/images", HTTP_ACCEPT_LANGUAGE="fr").json()
    assert "2 coupe(s) manquante(s)\u00a0: 1 écart(s) plus grand(s) que l'espacement de 2,50 mm" in api["reasons"]
    missing = next(f for f in api["findings"] if f["code"] == "missing_slices")
    assert missing["params"] == {"count": 2, "gaps": 1, "spacing_mm": 2.5}


def test_a_refused_match_says_why_in_french(client, staff, submitted, tmp_path):
    study = _inbox_study(tmp_path, patient_name="Martin^Lucas", birth_date="20170602")
    login(client, staff)
    response = client.post(reverse("imaging:match", args=[study.pk]), {"reference": submitted.reference}, follow=True,
                           HTTP_ACCEPT_LANGUAGE="fr")
    page = html.unescape(response.content.decode())
    assert "le nom de famille dans les images diffère de celui de la demande" in page
    assert "la date de naissance dans les images diffère de celle de la demande" in page


def test_contours_that_name_no_image_are_drawn_on_the_slices_they_lie_on(client, staff, submitted, tmp_path):
    """An RTSTRUCT without ContourImageSequence (some systems write none): contours are placed by
    the distance of their points to each slice plane."""
    import pydicom as dicom

    paths = write_ct_series(tmp_path / "ct", 3, spacing_mm=5.0, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    slices = [dicom.dcmread(p) for p in paths]
    rtstruct = dicom.dcmread(pydicom_file("rtstruct.dcm"), force=True)
    rtstruct.StudyInstanceUID = slices[0].StudyInstanceUID
    rtstruct.PatientName, rtstruct.PatientBirthDate = PATIENT_NAME, PATIENT_BIRTH
    rtstruct.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = slices[0].FrameOfReferenceUID
    x, y, z = (float(v) for v in slices[1].ImagePositionPatient)
    roi = rtstruct.ROIContourSequence[0]
    contour = roi.ContourSequence[0]
    if "ContourImageSequence" in contour:
        del contour.ContourImageSequence
    contour.ContourData = [x + 10, y + 10, z, x + 30, y + 10, z, x + 30, y + 40, z]
    contour.NumberOfContourPoints = 3
    roi.ContourSequence = [contour]
    rtstruct.ROIContourSequence = [roi]
    rt_path = tmp_path / "rs.dcm"
    rtstruct.save_as(rt_path, enforce_file_format=False)
    services.upload_study(actor=staff, treatment_request=submitted, files=as_uploads([*paths, rt_path]))
    series = _ct_series(submitted)
    login(client, staff)

    data = client.get(reverse("imaging:series_contours", args=[series.pk])).json()

    middle = series.instances.get(instance_number=2)
    assert list(data["slices"]) == [str(middle.pk)]
    dy, dx = (float(v) for v in slices[1].PixelSpacing)  # row spacing, then column spacing
    assert [float(v) for v in slices[1].ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    polygon = data["slices"][str(middle.pk)][0]["polygons"][0]
    expected = np.array([[10 / dx, 10 / dy], [30 / dx, 10 / dy], [30 / dx, 40 / dy]])
    assert np.abs(np.array(polygon) - expected).max() < 0.01
