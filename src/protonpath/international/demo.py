"""Demo data for patients from abroad: the illustrative tariff, and a quote sent to the demo patient.

Idempotent: the tariff is loaded once; the demo request with its sent quote is made only when no
quote exists yet.
"""

from __future__ import annotations

import datetime

from protonpath.accounts.models import Role, User
from protonpath.international import services
from protonpath.international.models import Quote
from protonpath.referrals import services as referral_services
from protonpath.referrals.models import State, TreatmentRequest


def _accepted_demo_request(patient: User, staff: User, oncologist: User) -> TreatmentRequest:
    from protonpath.referrals.management.commands.seed_demo import _add_file, _patient, _request

    data = _patient("Amina", "El Idrissi", "F", datetime.date(1979, 3, 14), "MA", "MA")
    r = referral_services.create_request(actor=patient, patient_data=data, request_data=_request("Chordoma", "Clivus", False))
    _add_file(patient, r)
    referral_services.submit(actor=patient, treatment_request=r)
    referral_services.mark_complete(actor=staff, treatment_request=r)
    referral_services.send_to_review(actor=staff, treatment_request=r)
    referral_services.decide(
        actor=oncologist, treatment_request=r, decision="accept", note="Proton therapy indicated.", dose_gy=54, fractions=30
    )
    referral_services.send_decision(actor=staff, treatment_request=r)
    r.refresh_from_db()
    return r


def _department_details() -> None:
    """Example details (the demo's): the contact line of the department's directory, a textbook IBAN."""
    from protonpath.international.models import DepartmentDetails

    if DepartmentDetails.objects.exists():
        return
    DepartmentDetails.objects.create(
        address="Centre de protonthérapie, site CYCLHAD\nCaen, France",
        phone="+33 2 31 24 34 48",
        email="gestion-patients@example.org",
        signatory_name="Claire Durand",
        signatory_title_en="Patients' Administrative Management Department",
        signatory_title_fr="Gestion Administrative des Patients",
        beneficiary="Centre de protonthérapie (demo)",
        iban="FR76 3000 6000 0112 3456 7890 189",
        bic="AGRIFRPP",
        bank_name="Example bank (demo data)",
        payment_note_en="Example bank details of the demo, not the department's. Transfer fees are paid by the sender.",
        payment_note_fr="Coordonnées bancaires d'exemple de la démo, pas celles du service. Les frais de virement sont à la charge de l'émetteur.",
    )


def seed(stdout) -> None:
    _department_details()
    loaded = services.load_illustrative_tariff()
    if loaded:
        stdout.write(f"international: illustrative tariff loaded ({loaded} prices).\n")
    if Quote.objects.exists():
        return
    staff = User.objects.filter(role=Role.ADMIN_STAFF, is_active=True).order_by("pk").first()
    oncologist = User.objects.filter(role=Role.ONCOLOGIST, is_active=True).order_by("pk").first()
    patient = User.objects.filter(username="patient", role=Role.PATIENT).first()
    if staff is None or oncologist is None or patient is None:
        return
    r = (
        TreatmentRequest.objects.filter(state=State.ACCEPTED, covered_by_french_insurance=False, proposed_fractions__isnull=False)
        .order_by("pk")
        .first()
    ) or _accepted_demo_request(patient, staff, oncologist)
    quote = services.send_quote(actor=staff, quote=services.build_quote(actor=staff, treatment_request=r))
    stdout.write(f"international: quote {quote.number} sent for request {r.reference} (sign in as 'patient' to answer it).\n")
