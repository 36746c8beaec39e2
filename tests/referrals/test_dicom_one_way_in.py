"""Issue 12, item 4: DICOM has one way in, the imaging upload and its checks.

The document form once took "Images (DICOM)" with no DICOM check: a zip with path traversal, a zip
bomb and a 200 MB garbage file were stored there, and the checklist ticked "Images" while the
images panel said none were received. Now the document path refuses DICOM and zips with a
pointer to the images upload (in English and French), stores nothing, and the checklist counts
the images the imaging app indexed, only.
"""

from __future__ import annotations

import io
import zipfile

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import translation

from protonpath.imaging import services as imaging_services
from protonpath.imaging.files import UploadRefused
from protonpath.imaging.models import Instance, Study
from protonpath.referrals import selectors, services
from protonpath.referrals.forms import DocumentForm
from protonpath.referrals.models import DocumentKind, MedicalDocument
from tests.factories import PASSWORD, dicom_upload, make_request

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _back_to_the_default_language():
    """A page asked in French leaves French active in this thread: give the next test the default."""
    yield
    translation.activate(settings.LANGUAGE_CODE)

POINTER_EN = "send them in the Images (DICOM) section"
POINTER_FR = "envoyez-les dans la partie Images (DICOM)"


def stored_files(settings):
    root = settings.MEDIA_ROOT
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def traversal_zip() -> bytes:
    ct = dicom_upload().read()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("IM1.dcm", ct)
        archive.writestr("../../outside.dcm", ct)
    return buffer.getvalue()


def zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("IM1.dcm", b"\x00" * (50 * 1024 * 1024))
    return buffer.getvalue()


@pytest.fixture
def garbage_200mb(tmp_path):
    """200 MB of garbage (a sparse file: random head, then zeros) as an uploaded file."""
    path = tmp_path / "garbage.dcm"
    with open(path, "wb") as sink:
        sink.write(bytes(range(256)) * 16 + b"\x8f\x00garbage")
        sink.truncate(200 * 1024 * 1024)
    with open(path, "rb") as source:
        upload = File(source, name="study.dcm")
        yield upload


MALICIOUS = {
    "traversal_zip": lambda: SimpleUploadedFile("study.zip", traversal_zip()),
    "zip_bomb": lambda: SimpleUploadedFile("bomb.zip", zip_bomb()),
    "dicom": dicom_upload,
}


@pytest.mark.parametrize("name", sorted(MALICIOUS))
@pytest.mark.parametrize("kind", [DocumentKind.DICOM_IMAGES, DocumentKind.IMAGING_REPORT, DocumentKind.OTHER])
def test_dicom_and_zips_sent_as_documents_are_refused_with_a_pointer_and_nothing_is_stored(patient, settings, name, kind):
    r = make_request(patient, complete=False, submit=False)
    with pytest.raises(ValidationError) as refused:
        services.add_document(actor=patient, treatment_request=r, kind=kind, file=MALICIOUS[name]())
    assert refused.value.code == "use_imaging_upload"
    assert POINTER_EN in refused.value.messages[0]
    assert not MedicalDocument.objects.exists()
    assert stored_files(settings) == []
    assert "dicom_images" in {item.key for item in selectors.missing_items(r)}


def test_a_200_mb_garbage_file_is_refused_as_images_and_as_a_document(patient, settings, garbage_200mb):
    r = make_request(patient, complete=False, submit=False)
    with pytest.raises(ValidationError) as refused:
        services.add_document(actor=patient, treatment_request=r, kind=DocumentKind.DICOM_IMAGES, file=garbage_200mb)
    assert refused.value.code == "use_imaging_upload"
    with pytest.raises(ValidationError) as refused:
        services.add_document(actor=patient, treatment_request=r, kind=DocumentKind.OTHER, file=garbage_200mb)
    assert refused.value.code == "too_large"
    assert not MedicalDocument.objects.exists()
    assert stored_files(settings) == []


def test_the_document_form_offers_no_images_kind():
    form = DocumentForm()
    assert DocumentKind.DICOM_IMAGES not in dict(form.fields["kind"].choices)
    bound = DocumentForm(data={"kind": DocumentKind.DICOM_IMAGES}, files={"file": dicom_upload()})
    assert not bound.is_valid() and "kind" in bound.errors


@pytest.mark.parametrize(("language", "pointer"), [("en", POINTER_EN), ("fr", POINTER_FR)])
def test_the_page_refuses_a_dicom_document_with_the_pointer_in_the_reader_language(client, patient, language, pointer):
    r = make_request(patient, complete=False, submit=False)
    client.login(username=patient.username, password=PASSWORD)
    response = client.post(
        reverse("referrals:upload", args=[r.pk]),
        {"kind": DocumentKind.IMAGING_REPORT, "file": SimpleUploadedFile("study.zip", traversal_zip())},
        headers={"accept-language": language, "hx-request": "true"},
    )
    assert response.status_code == 400
    assert pointer in response.content.decode()
    assert not MedicalDocument.objects.exists()


def test_the_malicious_inputs_are_refused_by_the_imaging_upload_too(patient):
    r = make_request(patient, complete=False, submit=False)
    for upload, reason in [(SimpleUploadedFile("study.zip", traversal_zip()), "path traversal"),
                           (SimpleUploadedFile("bomb.zip", zip_bomb()), "zip bomb")]:
        with pytest.raises(UploadRefused) as refused:
            imaging_services.upload_study(actor=patient, treatment_request=r, files=[upload])
        assert any(reason in p.reason for p in refused.value.problems)
    assert not Instance.objects.exists()
    assert "dicom_images" in {item.key for item in selectors.missing_items(r)}


def test_the_checklist_counts_indexed_images_only(patient):
    r = make_request(patient, complete=False, submit=False)
    # A document stored as "Images (DICOM)" before this fix does not tick the line.
    MedicalDocument.objects.create(
        treatment_request=r, kind=DocumentKind.DICOM_IMAGES, file="requests/old.dcm", original_name="old.dcm",
        content_type="application/dicom", size_bytes=1, sha256="0" * 64, uploaded_by=patient,
    )
    # Nor does a study with no image in it.
    Study.objects.create(treatment_request=r, study_instance_uid="1.2.3")
    assert "dicom_images" in {item.key for item in selectors.missing_items(r)}
    imaging_services.upload_study(actor=patient, treatment_request=r, files=[dicom_upload()])
    assert "dicom_images" not in {item.key for item in selectors.missing_items(r)}


def test_the_pointer_reads_in_french():
    from protonpath.referrals.uploads import use_imaging_upload

    with translation.override("fr"):
        assert POINTER_FR in use_imaging_upload().messages[0]
