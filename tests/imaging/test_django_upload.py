"""Uploading a DICOM study in a request's medical file: files, zips, DICOMDIR folders; duplicates,
conflicts and bad input refused whole; the planning checks computed from the index."""

from __future__ import annotations

import zipfile
from html import unescape
from pathlib import Path

import pydicom
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protonpath.accounts.models import AuditEvent
from protonpath.imaging import services
from protonpath.imaging.files import UploadRefused
from protonpath.imaging.models import CheckReport, Instance, ReceivedVia, Study, Transfer
from tests.factories import PASSWORD
from tests.imaging.conftest import PATIENT_BIRTH, PATIENT_NAME, as_uploads, stamp, zip_of
from tests.imaging.dicomdata import PYDICOM_FILES, pydicom_file, write_ct_series, write_rt_study

pytestmark = pytest.mark.django_db


def _stored_files() -> list[str]:
    found = []
    if not default_storage.exists("imaging"):
        return found
    for folder in default_storage.listdir("imaging")[0]:
        found.extend(default_storage.listdir(f"imaging/{folder}")[1])
    return found


def test_a_ct_series_uploaded_as_files_is_indexed_stored_and_fit_for_planning(submitted, doctor, tmp_path):
    paths = write_ct_series(tmp_path / "ct", 25, spacing_mm=2.5, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)

    summary = services.upload_study(actor=doctor, treatment_request=submitted, files=as_uploads(paths))

    assert (summary.stored, summary.duplicates, summary.studies) == (25, 0, 1)
    study = Study.objects.get(treatment_request=submitted)
    series = study.series.get()
    assert (series.modality, series.instance_count) == ("CT", 25)
    instances = list(series.instances.order_by("slice_position_mm"))
    assert [i.instance_number for i in instances] == list(range(1, 26))
    # Files kept byte for byte, under random names that carry neither name nor UID.
    first = instances[0]
    assert first.file.read() == Path(paths[0]).read_bytes()
    assert "Idrissi" not in first.file.name and first.sop_instance_uid not in first.file.name
    assert {i.received_via for i in instances} == {ReceivedVia.UPLOAD}
    report = CheckReport.objects.get(treatment_request=submitted)
    assert report.fit_for_planning, report.findings
    assert report.instance_count == 25 and report.modalities == "CT"
    assert AuditEvent.objects.filter(actor=doctor, action="create", treatment_request_id=submitted.pk, object_type="imaging.transfer").exists()


def test_a_zip_with_ct_rtstruct_rtplan_and_rtdose_is_indexed_as_one_study(submitted, staff, tmp_path):
    study_files = write_rt_study(tmp_path / "rt")
    all_paths = [p for paths in study_files.values() for p in paths]
    archive = SimpleUploadedFile("study.zip", zip_of(all_paths, tmp_path / "rt"), content_type="application/zip")

    summary = services.upload_study(actor=staff, treatment_request=submitted, files=[archive])

    assert summary.stored == 101
    study = Study.objects.get(treatment_request=submitted)
    assert study.modality_list == ["CT", "RTSTRUCT", "RTPLAN", "RTDOSE"]
    assert dict(study.series.values_list("modality", "instance_count")) == {"CT": 98, "RTSTRUCT": 1, "RTPLAN": 1, "RTDOSE": 1}
    report = CheckReport.objects.get(treatment_request=submitted)
    # Another patient's images: the checks say so (the request is Amina El Idrissi's).
    codes = {f["code"] for f in report.blocking}
    assert "name_mismatch" in codes and not report.fit_for_planning


def test_a_dicomdir_media_folder_uploaded_with_its_paths_keeps_only_referenced_instances(client, submitted, doctor):
    media = PYDICOM_FILES / "dicomdirtests" / "TINY_ALPHA"
    files = sorted(p for p in media.rglob("*") if p.is_file())
    paths = [f"TINY_ALPHA/{p.relative_to(media).as_posix()}" for p in files]
    client.login(username=doctor.username, password=PASSWORD)

    response = client.post(
        reverse("imaging:upload", args=[submitted.pk]),
        {"files": [SimpleUploadedFile(p.name, p.read_bytes()) for p in files], "paths": paths},
    )

    assert response.status_code == 302
    referenced = len(pydicom.dcmread(media / "DICOMDIR").DirectoryRecordSequence)
    stored = Instance.objects.filter(series__study__treatment_request=submitted).count()
    assert 0 < stored <= referenced
    assert Transfer.objects.get(via="upload").stored == stored


def test_the_same_files_sent_twice_are_counted_as_duplicates_and_kept_once(submitted, doctor, tmp_path):
    paths = write_ct_series(tmp_path / "ct", 3, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    services.upload_study(actor=doctor, treatment_request=submitted, files=as_uploads(paths))

    again = services.upload_study(actor=doctor, treatment_request=submitted, files=as_uploads(paths))

    assert (again.stored, again.duplicates) == (0, 3)
    assert Instance.objects.count() == 3 and len(_stored_files()) == 3


def test_same_uid_with_different_content_refuses_the_whole_upload(submitted, doctor, tmp_path):
    paths = write_ct_series(tmp_path / "ct", 3, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    services.upload_study(actor=doctor, treatment_request=submitted, files=as_uploads(paths[:1]))
    stamp(paths[:1], SeriesDescription="changed after sending")

    with pytest.raises(UploadRefused) as refused:
        services.upload_study(actor=doctor, treatment_request=submitted, files=as_uploads(paths))

    assert [p.name for p in refused.value.problems] == ["IM0001.dcm"]
    assert "different content" in refused.value.problems[0].reason
    assert Instance.objects.count() == 1 and len(_stored_files()) == 1


def test_instances_already_filed_for_another_patient_are_refused(submitted, other_patient, doctor, tmp_path):
    from tests.factories import make_request

    other = make_request(other_patient)
    paths = write_ct_series(tmp_path / "ct", 2)
    services.upload_study(actor=other_patient, treatment_request=other, files=as_uploads(paths))

    with pytest.raises(UploadRefused) as refused:
        services.upload_study(actor=doctor, treatment_request=submitted, files=as_uploads(paths))

    assert all("another request" in p.reason for p in refused.value.problems)
    assert not Study.objects.filter(treatment_request=submitted).exists()


@pytest.mark.parametrize(
    "bad_name, bad_bytes, expected",
    [
        ("notes.txt", b"this is a letter, not an image\n" * 10, "not a DICOM file"),
        ("MR_truncated.dcm", pydicom_file("MR_truncated.dcm").read_bytes(), "truncated"),
        ("empty.dcm", b"", "empty"),
    ],
)
def test_a_bad_file_among_good_ones_refuses_everything_and_names_it(client, submitted, doctor, tmp_path, bad_name, bad_bytes, expected):
    paths = write_ct_series(tmp_path / "ct", 3)
    uploads = as_uploads(paths) + [SimpleUploadedFile(bad_name, bad_bytes)]
    client.login(username=doctor.username, password=PASSWORD)

    response = client.post(reverse("imaging:upload", args=[submitted.pk]), {"files": uploads}, HTTP_HX_REQUEST="true")

    assert response.status_code == 400
    errors = [e for e in response.context["panel"]["upload_errors"]]
    assert any(e.startswith(bad_name) and expected in e for e in errors), errors
    assert "nothing was kept" in response.content.decode()
    assert not Instance.objects.exists() and not Study.objects.exists() and _stored_files() == []


def test_a_zip_with_path_traversal_is_refused_whole(submitted, doctor, tmp_path):
    good = write_ct_series(tmp_path / "ct", 2)[0]
    archive_path = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.write(good, "IM1.dcm")
        archive.writestr("../../outside.dcm", good.read_bytes())

    with pytest.raises(UploadRefused) as refused:
        services.upload_study(
            actor=doctor, treatment_request=submitted, files=[SimpleUploadedFile("evil.zip", archive_path.read_bytes())]
        )

    assert any("path traversal" in p.reason for p in refused.value.problems)
    assert not Instance.objects.exists()
    assert not (tmp_path.parent / "outside.dcm").exists()


def test_a_zip_bomb_is_refused_whole(submitted, doctor, tmp_path):
    archive_path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive_path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("IM1.dcm", b"\x00" * (50 * 1024 * 1024))

    with pytest.raises(UploadRefused) as refused:
        services.upload_study(
            actor=doctor, treatment_request=submitted, files=[SimpleUploadedFile("bomb.zip", archive_path.read_bytes())]
        )

    assert any("zip bomb" in p.reason for p in refused.value.problems)
    assert not Instance.objects.exists()


def test_a_folder_path_leaving_the_upload_is_refused(submitted, doctor, tmp_path):
    good = write_ct_series(tmp_path / "ct", 1)[0]

    with pytest.raises(UploadRefused) as refused:
        services.upload_study(
            actor=doctor, treatment_request=submitted, files=as_uploads([good]), relative_paths=["cd/../../etc/IM1.dcm"]
        )

    assert "unsafe path" in refused.value.problems[0].reason


def test_missing_slices_make_the_study_unfit_with_the_reason(submitted, oncologist, tmp_path):
    paths = write_ct_series(tmp_path / "ct", 30, skip=(10, 11), patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)

    services.upload_study(actor=oncologist, treatment_request=submitted, files=as_uploads(paths))

    report = CheckReport.objects.get(treatment_request=submitted)
    assert not report.fit_for_planning
    assert [f["message"] for f in report.blocking if f["code"] == "missing_slices"] == [
        "2 slice(s) missing: 1 gap(s) wider than the 2.50 mm spacing"
    ]


def test_the_upload_limit_refuses_large_uploads(submitted, doctor, tmp_path, settings):
    settings.PROTONPATH_MAX_DICOM_UPLOAD_BYTES = 1000
    paths = write_ct_series(tmp_path / "ct", 1)

    with pytest.raises(UploadRefused) as refused:
        services.upload_study(actor=doctor, treatment_request=submitted, files=as_uploads(paths))

    assert "too large" in refused.value.problems[0].reason


def test_a_bare_dataset_without_file_meta_is_kept_as_part10(submitted, doctor, tmp_path):
    source = pydicom_file("ExplVR_LitEndNoMeta.dcm")
    services.upload_study(actor=doctor, treatment_request=submitted, files=as_uploads([source]))

    instance = Instance.objects.get()
    with instance.file.open("rb") as f:
        kept = f.read()
    assert kept[128:132] == b"DICM"
    assert pydicom.dcmread(source, force=True).SOPInstanceUID == pydicom.dcmread(instance.file.path).SOPInstanceUID


# --- who may upload ---------------------------------------------------------------------------


@pytest.mark.parametrize("role, status", [("doctor", 302), ("staff", 302), ("oncologist", 302), ("other_patient", 404), ("other_doctor", 404), ("physicist", 404)])
def test_upload_per_role(client, users, submitted, tmp_path, role, status):
    paths = write_ct_series(tmp_path / "ct", 1)
    client.login(username=users[role].username, password=PASSWORD)

    response = client.post(reverse("imaging:upload", args=[submitted.pk]), {"files": as_uploads(paths)})

    assert response.status_code == status
    assert Instance.objects.exists() == (status == 302)


def test_the_owner_cannot_add_images_once_the_file_is_under_review(client, submitted, doctor, staff, oncologist, tmp_path):
    from tests.factories import advance_to

    services.upload_study(actor=doctor, treatment_request=submitted, files=as_uploads(write_ct_series(tmp_path / "first", 1)))
    advance_to(submitted, "in_review", staff=staff, oncologist=oncologist)
    client.login(username=doctor.username, password=PASSWORD)
    stored = Instance.objects.count()

    response = client.post(reverse("imaging:upload", args=[submitted.pk]), {"files": as_uploads(write_ct_series(tmp_path / "ct", 1))}, follow=True)

    assert "cannot be added" in response.content.decode()
    assert Instance.objects.count() == stored


def test_get_is_not_allowed_on_upload(client, submitted, doctor):
    client.login(username=doctor.username, password=PASSWORD)
    assert client.get(reverse("imaging:upload", args=[submitted.pk])).status_code == 405


def test_upload_needs_a_login(client, submitted):
    response = client.post(reverse("imaging:upload", args=[submitted.pk]), {})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]



def test_a_folder_of_hundreds_of_slices_is_accepted_through_the_page(client, submitted, doctor, tmp_path):
    paths = write_ct_series(tmp_path / "CT", 150, spacing_mm=1.0, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    client.login(username=doctor.username, password=PASSWORD)

    response = client.post(
        reverse("imaging:upload", args=[submitted.pk]),
        {"files": as_uploads(paths), "paths": [f"CT/{Path(p).name}" for p in paths]},
        HTTP_HX_REQUEST="true",
    )

    assert response.status_code == 200, response.content[:300]
    assert Instance.objects.count() == 150
    assert "150 new instance(s)" in response.content.decode()


def test_a_request_is_found_by_its_accession_number_with_or_without_dashes(submitted, other_patient):
    from protonpath.imaging.ingest import request_by_accession
    from tests.factories import make_request

    other = make_request(other_patient)
    assert request_by_accession(submitted.accession_number) == submitted
    assert request_by_accession(other.reference.lower()) == other
    assert request_by_accession(" " + other.accession_number + " ") == other
    assert request_by_accession("PP209900001") is None
    assert request_by_accession("") is None


def test_two_files_with_the_same_path_refuse_the_upload_with_the_reason(client, submitted, doctor):
    """A folder upload naming one path twice was a server error (FileExistsError)."""
    data = pydicom_file("CT_small.dcm").read_bytes()
    client.force_login(doctor)
    response = client.post(
        reverse("imaging:upload", args=[submitted.pk]),
        {"files": [SimpleUploadedFile("IM1", data), SimpleUploadedFile("IM1", data)], "paths": ["cd/IM1", "cd/IM1"]},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 400
    assert "cd/IM1" in response.content.decode() and "twice" in response.content.decode()
    assert not Study.objects.filter(treatment_request=submitted).exists()


def test_a_path_that_is_both_a_file_and_a_folder_is_refused(submitted, doctor):
    data = pydicom_file("CT_small.dcm").read_bytes()
    with pytest.raises(UploadRefused) as refused:
        services.upload_study(
            actor=doctor, treatment_request=submitted,
            files=[SimpleUploadedFile("IM1", data), SimpleUploadedFile("IM2", data)], relative_paths=["cd/IM1", "cd/IM1/IM2"],
        )
    assert "cd/IM1/IM2" in str(refused.value)


_segment = st.sampled_from(["cd", "IM1", "IM2", "DICOM"])
_paths = st.lists(st.lists(_segment, min_size=2, max_size=3).map("/".join), min_size=1, max_size=5)


@given(paths=_paths)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_generated_folder_trees_are_stored_or_refused_never_a_server_error(submitted, doctor, paths):
    """Hypothesis draws folder uploads from a few names: the same path twice, a file inside a
    "file" (cd/IM1 and cd/IM1/IM2) come up at once."""
    data = pydicom_file("CT_small.dcm").read_bytes()
    uploads = [SimpleUploadedFile(p.rsplit("/", 1)[1], data) for p in paths]
    try:
        services.upload_study(actor=doctor, treatment_request=submitted, files=uploads, relative_paths=paths)
    except UploadRefused as refused:
        assert refused.problems


def test_the_duplicate_path_reason_reads_in_french(submitted, doctor):
    from django.utils import translation

    data = pydicom_file("CT_small.dcm").read_bytes()
    with translation.override("fr"), pytest.raises(UploadRefused) as refused:
        services.upload_study(
            actor=doctor, treatment_request=submitted,
            files=[SimpleUploadedFile("IM1", data), SimpleUploadedFile("IM1", data)], relative_paths=["cd/IM1", "cd/IM1"],
        )
        assert "figure deux fois dans l'envoi" in str(refused.value)
    assert "cd/IM1" in str(refused.value)


@pytest.mark.parametrize("language, words", [("en", "may not be the patient of this request"), ("fr", "n'est peut-être pas celui de cette demande")])
def test_images_of_another_name_are_kept_with_a_warning_to_the_uploader(client, submitted, doctor, tmp_path, language, words):
    """The images were accepted with no word to the uploader when their patient differed."""
    paths = write_ct_series(tmp_path / "ct", 3, patient_name="Dupont^Marie", birth_date=PATIENT_BIRTH)
    client.force_login(doctor)
    client.cookies["django_language"] = language
    response = client.post(
        reverse("imaging:upload", args=[submitted.pk]), {"files": as_uploads(paths)}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    html = unescape(response.content.decode())
    assert words in html and 'class="warning"' in html
    assert "Dupont" not in html  # the warning names no one
    # Without script: the same warning as a message on the request page.
    response = client.post(reverse("imaging:upload", args=[submitted.pk]), {"files": as_uploads(paths)}, follow=True)
    assert words in unescape(response.content.decode())


def test_images_of_the_requests_patient_bring_no_warning(client, submitted, doctor, tmp_path):
    paths = write_ct_series(tmp_path / "ct", 3, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    client.force_login(doctor)
    response = client.post(
        reverse("imaging:upload", args=[submitted.pk]), {"files": as_uploads(paths)}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert 'class="warning"' not in response.content.decode()
