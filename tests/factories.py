"""Factories for the people and requests that tests need (factory-boy)."""

from __future__ import annotations

import datetime

import factory
from django.core.files.uploadedfile import SimpleUploadedFile

from protonpath.accounts.models import Role, User
from protonpath.referrals import services
from protonpath.referrals.models import DocumentKind

PASSWORD = "a-long-test-password-42"
PDF_BYTES = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    role = Role.PATIENT
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


def meeting_day(weeks: int = 1) -> datetime.date:
    """A Thursday ``weeks`` weeks or more ahead of today: meetings the tests plan stay upcoming whatever the date."""
    today = datetime.date.today()
    return today + datetime.timedelta(days=7 * weeks + (3 - today.weekday()) % 7)


def patient_data(**overrides) -> dict:
    data = {
        "first_name": "Amina",
        "last_name": "El Idrissi",
        "sex": "F",
        "birth_date": datetime.date(1979, 3, 14),
        "birth_place": "Casablanca",
        "nationality": "MA",
        "phone": "+212 600 000 000",
        "email": "amina@example.org",
        "address": "12 boulevard d'Anfa, Casablanca",
        "country_of_residence": "MA",
    }
    data.update(overrides)
    return data


def request_data(**overrides) -> dict:
    data = {
        "request_type": "treatment",
        "reason": "Proton therapy near the brainstem.",
        "covered_by_french_insurance": False,
        "addressee_name": "Dr Benali",
        "addressee_institution": "Centre d'oncologie",
        "addressee_phone": "+212 500 000 000",
        "addressee_email": "benali@example.org",
        "addressee_address": "Casablanca",
        "pathology_name": "Chordoma",
        "pathology_location": "Clivus",
        "had_surgery": False,
        "had_chemotherapy": False,
        "had_radiotherapy": False,
    }
    data.update(overrides)
    return data


def pdf_upload(name: str = "letter.pdf", salt: str = "") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, PDF_BYTES + f"% {name} {salt}\n".encode(), content_type="application/pdf")


def dicom_upload() -> SimpleUploadedFile:
    from pathlib import Path

    import pydicom

    path = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
    return SimpleUploadedFile("CT_small.dcm", path.read_bytes(), content_type="application/dicom")


def request_ct(treatment_request) -> SimpleUploadedFile:
    """pydicom's CT_small.dcm as this request's image: new UIDs, the request's patient in the header."""
    import io
    from pathlib import Path

    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm")
    seed = [treatment_request.reference]
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[*seed, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[*seed, "series"])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[*seed, "instance"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    patient = treatment_request.patient
    ds.PatientName = f"{patient.last_name}^{patient.first_name}"
    ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d")
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    return SimpleUploadedFile("CT_small.dcm", buffer.getvalue(), content_type="application/dicom")


def make_request(owner, *, complete: bool = True, submit: bool = True, images: bool = True, **request_overrides):
    """A request made by ``owner`` (patient or referring doctor), with its medical file.

    ``complete`` adds the letter, the imaging report and (unless ``images`` is false) pydicom's CT
    sent through the imaging upload, which indexes it.
    """
    treatment_request = services.create_request(
        actor=owner,
        patient_data=patient_data(),
        request_data=request_data(**request_overrides),
    )
    if complete:
        for kind, name in [(DocumentKind.DOCTOR_LETTER, "letter.pdf"), (DocumentKind.IMAGING_REPORT, "report.pdf")]:
            services.add_document(
                actor=owner,
                treatment_request=treatment_request,
                kind=kind,
                file=pdf_upload(name, salt=str(treatment_request.pk)),
            )
    if complete and images:
        # DICOM images go through the imaging upload and its checks (never as a document).
        from protonpath.imaging import services as imaging_services

        imaging_services.upload_study(actor=owner, treatment_request=treatment_request, files=[request_ct(treatment_request)])
    if submit:
        services.submit(actor=owner, treatment_request=treatment_request)
    treatment_request.refresh_from_db()
    return treatment_request


def advance_to(treatment_request, state: str, *, staff, oncologist):
    """Walk a submitted, complete request along the path up to ``state``."""
    steps = {
        "complete": lambda r: services.mark_complete(actor=staff, treatment_request=r),
        "in_review": lambda r: services.send_to_review(actor=staff, treatment_request=r),
        "accepted": lambda r: services.decide(
            actor=oncologist, treatment_request=r, decision="accept", note="Validated.", dose_gy=54, fractions=30
        ),
    }
    for name, step in steps.items():
        treatment_request = step(treatment_request)
        if name == state:
            break
    treatment_request.refresh_from_db()
    return treatment_request
