"""Demo data: one account per role, and patients at every step of the path.

Idempotent: running it twice leaves one copy. Other apps add their own demo data by defining
``protonpath.<app>.demo.seed(stdout)``; it is called after the requests exist.
"""

from __future__ import annotations

import datetime
import importlib
import unicodedata
from decimal import Decimal
from pathlib import Path

import pydicom
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand
from django.db import transaction

from protonpath.accounts.models import Role, User
from protonpath.referrals import services
from protonpath.referrals.models import DocumentKind, State, TreatmentRequest

DEMO_PASSWORD = "demo-password-2026"

ACCOUNTS = [
    ("admin", Role.ADMIN_STAFF, "Claire", "Durand", True),
    ("head", Role.HEAD, "Jeanne", "Lefort", True),
    ("oncologist", Role.ONCOLOGIST, "Paul", "Marchand", True),
    ("physicist", Role.PHYSICIST, "Inès", "Roussel", True),
    ("therapist", Role.THERAPIST, "Lucas", "Moreau", True),
    ("doctor", Role.REFERRING_DOCTOR, "Youssef", "Benali", False),
    ("patient", Role.PATIENT, "Amina", "El Idrissi", False),
]

PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


def demo_dicom_file() -> Path:
    """A real CT image shipped with pydicom (no download)."""
    return Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"


def _user(username, role, first, last, staff) -> User:
    user, created = User.objects.get_or_create(
        username=username,
        defaults={"role": role, "first_name": first, "last_name": last, "email": f"{username}@demo.protonpath.invalid", "is_staff": staff},
    )
    if created:
        user.set_password(DEMO_PASSWORD)
        if role == Role.ADMIN_STAFF:
            user.is_superuser = True
        user.save()
    return user


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _patient(first, last, sex, born, nationality, residence):
    return {
        "first_name": first,
        "last_name": last,
        "sex": sex,
        "birth_date": born,
        "birth_place": "Casablanca" if nationality == "MA" else "Rouen",
        "nationality": nationality,
        "phone": "+33 2 00 00 00 00",
        "email": _ascii(f"{first}.{last}".lower().replace(" ", "")) + "@demo.protonpath.invalid",
        "address": "1 rue de l'Exemple\n14000 Caen" if residence == "FR" else "12 boulevard d'Anfa\nCasablanca",
        "country_of_residence": residence,
    }


def _request(pathology, location, insured, **extra):
    data = {
        "request_type": "treatment",
        "reason": "Proton therapy to spare nearby organs at risk.",
        "covered_by_french_insurance": insured,
        "addressee_name": "Dr Youssef Benali",
        "addressee_institution": "Centre d'oncologie",
        "addressee_phone": "+212 5 00 00 00 00",
        "addressee_email": "doctor@demo.protonpath.invalid",
        "addressee_address": "Centre d'oncologie, Casablanca",
        "pathology_name": pathology,
        "pathology_location": location,
    }
    data.update(extra)
    return data


def _add_file(actor, treatment_request, with_images=True, number=0):
    for kind, name in [(DocumentKind.DOCTOR_LETTER, "letter.pdf"), (DocumentKind.IMAGING_REPORT, "mri-report.pdf")]:
        content = PDF + f"% {treatment_request.reference} {kind}\n".encode()
        services.add_document(actor=actor, treatment_request=treatment_request, kind=kind, file=SimpleUploadedFile(name, content))
    if with_images and "protonpath.imaging" in settings.INSTALLED_APPS:
        # Images are indexed by the imaging app (never stored as a document): the demo's own set.
        from protonpath.imaging.demo import seed_request

        seed_request(treatment_request, number)


class Command(BaseCommand):
    help = "Load demo accounts, patients and requests (idempotent)."

    @transaction.atomic
    def handle(self, *args, **options):
        users = {username: _user(username, role, first, last, staff) for username, role, first, last, staff in ACCOUNTS}
        if not TreatmentRequest.objects.exists():
            self._requests(users)
        for app in ("department", "imaging", "international", "scheduling", "treatment"):
            if f"protonpath.{app}" not in settings.INSTALLED_APPS:
                continue
            try:
                module = importlib.import_module(f"protonpath.{app}.demo")
            except ModuleNotFoundError as exc:
                if exc.name != f"protonpath.{app}.demo":
                    raise
                continue
            module.seed(self.stdout)
        self.stdout.write(f"Demo accounts (password {DEMO_PASSWORD}):")
        for username, role, *_ in ACCOUNTS:
            self.stdout.write(f"  {username:<12} {Role(role).label}")

    def _requests(self, users):
        patient, doctor, admin, onco = users["patient"], users["doctor"], users["admin"], users["oncologist"]
        # 1. A patient from abroad, file submitted, waiting to be checked.
        r1 = services.create_request(
            actor=patient,
            patient_data=_patient("Amina", "El Idrissi", "F", datetime.date(1979, 3, 14), "MA", "MA"),
            request_data=_request("Chordoma", "Skull base (clivus)", False, had_surgery=False),
        )
        _add_file(patient, r1)
        services.submit(actor=patient, treatment_request=r1)
        # 2. A child referred by a French doctor, in review.
        r2 = services.create_request(
            actor=doctor,
            patient_data=_patient("Lucas", "Martin", "M", datetime.date(2017, 6, 2), "FR", "FR"),
            request_data=_request("Medulloblastoma", "Posterior fossa", True, had_surgery=True, had_chemotherapy=True),
        )
        _add_file(doctor, r2, number=1)
        services.add_document(
            actor=doctor, treatment_request=r2, kind=DocumentKind.OPERATION_REPORT, file=SimpleUploadedFile("op.pdf", PDF + b"% op\n")
        )
        services.add_document(
            actor=doctor, treatment_request=r2, kind=DocumentKind.CHEMOTHERAPY_REPORT, file=SimpleUploadedFile("chemo.pdf", PDF + b"% chemo\n")
        )
        services.submit(actor=doctor, treatment_request=r2)
        services.mark_complete(actor=admin, treatment_request=r2)
        services.send_to_review(actor=admin, treatment_request=r2)
        # 3. An adult, accepted, decision sent, first consultation booked.
        r3 = services.create_request(
            actor=doctor,
            patient_data=_patient("Hélène", "Bernard", "F", datetime.date(1962, 11, 5), "FR", "FR"),
            request_data=_request("Meningioma", "Left cavernous sinus", True),
        )
        _add_file(doctor, r3, number=2)
        services.submit(actor=doctor, treatment_request=r3)
        services.mark_complete(actor=admin, treatment_request=r3)
        services.send_to_review(actor=admin, treatment_request=r3)
        services.decide(actor=onco, treatment_request=r3, decision="accept", note="Validated indication.", dose_gy=Decimal("54"), fractions=30)
        services.send_decision(actor=admin, treatment_request=r3)
        services.perform(actor=admin, treatment_request=r3, action="book_consultation")
        # 4. A draft, with an incomplete file.
        r4 = services.create_request(
            actor=doctor,
            patient_data=_patient("Marc", "Petit", "M", datetime.date(1955, 1, 20), "FR", "FR"),
            request_data=_request("Chondrosarcoma", "Sacrum", True, had_radiotherapy=True),
        )
        _add_file(doctor, r4, with_images=False)
        assert r4.state == State.DRAFT
