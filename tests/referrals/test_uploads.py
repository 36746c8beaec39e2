"""The medical file: what is accepted, what is refused, and that a refusal loses nothing."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from protonpath.referrals import selectors, services
from protonpath.referrals.models import DocumentKind, MedicalDocument
from tests.factories import make_request, pdf_upload

pytestmark = pytest.mark.django_db


def stored_files(settings):
    root = settings.MEDIA_ROOT
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_checklist_follows_uploads_and_the_treatments_declared(patient):
    r = make_request(patient, complete=False, submit=False, had_surgery=True)
    missing = {item.key for item in selectors.missing_items(r)}
    assert missing == {"doctor_letter", "imaging_report", "dicom_images", "operation_report"}
    services.add_document(actor=patient, treatment_request=r, kind=DocumentKind.OPERATION_REPORT, file=pdf_upload("op.pdf"))
    assert "operation_report" not in {item.key for item in selectors.missing_items(r)}
    chemo = next(item for item in selectors.checklist(r) if item.key == "chemotherapy_report")
    assert chemo.required is False


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("letter.exe", b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 200, DocumentKind.DOCTOR_LETTER),
        ("letter.pdf", b"\x00\x01\x02\x03 not a pdf" * 20, DocumentKind.DOCTOR_LETTER),
        ("empty.pdf", b"", DocumentKind.IMAGING_REPORT),
    ],
)
def test_wrong_types_and_empty_files_are_refused_and_nothing_is_stored(patient, settings, name, content, kind):
    r = make_request(patient, complete=False, submit=False)
    with pytest.raises(ValidationError):
        services.add_document(actor=patient, treatment_request=r, kind=kind, file=SimpleUploadedFile(name, content))
    assert MedicalDocument.objects.count() == 0
    assert stored_files(settings) == []


def test_files_over_the_limit_are_refused(patient, settings):
    settings.PROTONPATH_MAX_DOCUMENT_BYTES = 1000
    r = make_request(patient, complete=False, submit=False)
    big = SimpleUploadedFile("big.pdf", b"%PDF-1.4\n" + b"0" * 2000)
    with pytest.raises(ValidationError) as excinfo:
        services.add_document(actor=patient, treatment_request=r, kind=DocumentKind.DOCTOR_LETTER, file=big)
    assert "too large" in str(excinfo.value)


def test_the_same_file_twice_is_refused(patient):
    r = make_request(patient, complete=False, submit=False)
    services.add_document(actor=patient, treatment_request=r, kind=DocumentKind.DOCTOR_LETTER, file=pdf_upload("a.pdf"))
    with pytest.raises(ValidationError):
        services.add_document(actor=patient, treatment_request=r, kind=DocumentKind.IMAGING_REPORT, file=pdf_upload("a.pdf"))


def test_stored_path_carries_no_uploaded_name(patient):
    r = make_request(patient, complete=False, submit=False)
    document = services.add_document(
        actor=patient, treatment_request=r, kind=DocumentKind.DOCTOR_LETTER, file=pdf_upload("El-Idrissi-Amina-letter.pdf")
    )
    assert "Idrissi" not in document.file.name and document.original_name == "El-Idrissi-Amina-letter.pdf"


def test_documents_are_frozen_once_submitted_for_the_owner(patient, staff):
    r = make_request(patient)
    with pytest.raises(PermissionDenied):
        services.add_document(actor=patient, treatment_request=r, kind=DocumentKind.OTHER, file=pdf_upload("late.pdf"))
    # Staff can still add what arrives by post, for instance.
    services.add_document(actor=staff, treatment_request=r, kind=DocumentKind.OTHER, file=pdf_upload("post.pdf"))


def test_failed_database_write_removes_the_stored_file(patient, settings, monkeypatch):
    r = make_request(patient, complete=False, submit=False)

    def boom(*args, **kwargs):
        raise RuntimeError("database down")

    monkeypatch.setattr("protonpath.referrals.services.audit.record", boom)
    with pytest.raises(RuntimeError):
        services.add_document(actor=patient, treatment_request=r, kind=DocumentKind.DOCTOR_LETTER, file=pdf_upload("x.pdf"))
    assert MedicalDocument.objects.count() == 0
    assert stored_files(settings) == []


def test_upload_page_shows_a_clear_error_and_the_live_checklist(client, patient):
    r = make_request(patient, complete=False, submit=False)
    client.force_login(patient)
    url = reverse("referrals:upload", args=[r.pk])
    bad = client.post(url, {"kind": "doctor_letter", "file": SimpleUploadedFile("x.pdf", b"\x00\x01garbage")}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 400
    assert "Reports must be PDF" in bad.content.decode()
    good = client.post(url, {"kind": "doctor_letter", "file": pdf_upload("letter.pdf")}, HTTP_HX_REQUEST="true")
    html = good.content.decode()
    assert good.status_code == 200
    assert 'class="done" data-key="doctor_letter"' in html
    assert 'class="missing" data-key="imaging_report"' in html


def test_request_form_reports_every_missing_field_and_saves_nothing(client, patient):
    client.force_login(patient)
    response = client.post(reverse("referrals:new"), {"patient-first_name": "Amina"})
    assert response.status_code == 200
    assert response.content.decode().count("This field is required") >= 10
    from protonpath.referrals.models import Patient, TreatmentRequest

    assert TreatmentRequest.objects.count() == 0 and Patient.objects.count() == 0


def test_birth_date_in_the_future_is_refused(client, patient):
    client.force_login(patient)
    response = client.post(reverse("referrals:new"), {"patient-birth_date": "2099-01-01"})
    assert "The date of birth is in the future." in response.content.decode()
