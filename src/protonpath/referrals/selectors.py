"""Reads: which requests and documents a user may see, and the staff work queues."""

from __future__ import annotations

from dataclasses import dataclass

from django.apps import apps
from django.db.models import Count, Q, QuerySet
from django.http import Http404
from django.utils.translation import gettext_lazy as _

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent, Role
from protonpath.referrals.identity import identity_key
from protonpath.referrals.models import (
    DocumentKind,
    MedicalDocument,
    Patient,
    State,
    TreatmentRequest,
)

#: Physicists work on requests from the first consultation on.
PHYSICIST_STATES = frozenset(
    {State.CONSULTATION_BOOKED, State.PLANNING, State.SCHEDULED, State.IN_TREATMENT, State.COMPLETED}
)


def visible_requests(user) -> QuerySet[TreatmentRequest]:
    """The requests ``user`` may see. External users see only their own."""
    qs = TreatmentRequest.objects.select_related("patient", "submitted_by", "referring_doctor")
    if not user.is_authenticated:
        return qs.none()
    role = user.role
    if role == Role.PATIENT:
        return qs.filter(Q(patient__user=user) | Q(submitted_by=user))
    if role == Role.REFERRING_DOCTOR:
        return qs.filter(Q(submitted_by=user) | Q(referring_doctor=user))
    if role in (Role.ADMIN_STAFF, Role.ONCOLOGIST, Role.HEAD):
        return qs
    if role == Role.PHYSICIST:
        return qs.filter(state__in=PHYSICIST_STATES)
    return qs.none()


#: Who sees the list of possible duplicate patients, and who may merge two records.
DUPLICATE_VIEWERS = frozenset({Role.ADMIN_STAFF, Role.HEAD})
PATIENT_MERGERS = frozenset({Role.ADMIN_STAFF})


def reusable_patients(user, *, last_name: str, first_name: str, birth_date) -> QuerySet[Patient]:
    """Records of the same person (name and birth date, normalised) that ``user`` already sees.

    A referring doctor is offered only the patients of the requests they made or refer, never
    another doctor's; administrative staff, who see every request, any record.
    """
    if not getattr(user, "is_authenticated", False) or not birth_date:
        return Patient.objects.none()
    key = identity_key(last_name, first_name, birth_date)
    if user.role == Role.ADMIN_STAFF:
        return Patient.objects.filter(identity_key=key)
    if user.role == Role.REFERRING_DOCTOR:
        mine = visible_requests(user).values("patient_id")
        return Patient.objects.filter(identity_key=key, pk__in=mine)
    return Patient.objects.none()


@dataclass(frozen=True)
class DuplicateGroup:
    key: str
    patients: list[Patient]


def duplicate_groups(*, limit: int = 200) -> list[DuplicateGroup]:
    """Patients sharing one normalised family name, given name and birth date, across all records."""
    keys = list(
        Patient.objects.exclude(identity_key="")
        .values("identity_key")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .order_by("identity_key")
        .values_list("identity_key", flat=True)[:limit]
    )
    patients = (
        Patient.objects.filter(identity_key__in=keys)
        .select_related("user")
        .annotate(request_count=Count("requests"))
        .order_by("identity_key", "created_at", "pk")
    )
    groups: dict[str, list[Patient]] = {}
    for patient in patients:
        groups.setdefault(patient.identity_key, []).append(patient)
    return [DuplicateGroup(key, members) for key, members in groups.items()]


def is_owner(user, treatment_request: TreatmentRequest) -> bool:
    """The patient or referring doctor on whose behalf the request was made."""
    if not user.is_authenticated or user.role not in (Role.PATIENT, Role.REFERRING_DOCTOR):
        return False
    return (
        treatment_request.submitted_by_id == user.pk
        or treatment_request.referring_doctor_id == user.pk
        or treatment_request.patient.user_id == user.pk
    )


def get_request_for(user, pk: int, *, audit_view: bool = True) -> TreatmentRequest:
    """The request ``pk`` if ``user`` may see it, else 404 (never reveal that it exists)."""
    try:
        treatment_request = visible_requests(user).get(pk=pk)
    except (TreatmentRequest.DoesNotExist, ValueError, TypeError):
        audit.record(
            actor=user,
            action=AuditEvent.Action.DENIED,
            object_type="referrals.treatmentrequest",
            object_id=str(pk),
        )
        raise Http404(_("No such request.")) from None
    if audit_view:
        audit.record(actor=user, action=AuditEvent.Action.VIEW, obj=treatment_request)
    return treatment_request


def get_document_for(user, pk: int) -> MedicalDocument:
    try:
        document = MedicalDocument.objects.select_related("treatment_request").get(
            pk=pk, treatment_request__in=visible_requests(user)
        )
    except (MedicalDocument.DoesNotExist, ValueError, TypeError):
        audit.record(actor=user, action=AuditEvent.Action.DENIED, object_type="referrals.medicaldocument", object_id=str(pk))
        raise Http404(_("No such document.")) from None
    return document


@dataclass(frozen=True)
class ChecklistItem:
    key: str
    label: str
    required: bool
    done: bool


def checklist(treatment_request: TreatmentRequest) -> list[ChecklistItem]:
    """The medical file's completeness checklist (seed 002), live from what is uploaded."""
    kinds = set(treatment_request.documents.values_list("kind", flat=True))
    r = treatment_request
    items = [
        ChecklistItem(
            "pathology",
            str(_("Name of the pathology and its location")),
            True,
            bool(r.pathology_name.strip() and r.pathology_location.strip()),
        ),
        ChecklistItem("doctor_letter", str(DocumentKind.DOCTOR_LETTER.label), True, DocumentKind.DOCTOR_LETTER in kinds),
        ChecklistItem("imaging_report", str(DocumentKind.IMAGING_REPORT.label), True, DocumentKind.IMAGING_REPORT in kinds),
        ChecklistItem("dicom_images", str(DocumentKind.DICOM_IMAGES.label), True, _has_indexed_images(r)),
        ChecklistItem(
            "operation_report",
            str(DocumentKind.OPERATION_REPORT.label),
            r.had_surgery,
            DocumentKind.OPERATION_REPORT in kinds,
        ),
        ChecklistItem(
            "chemotherapy_report",
            str(DocumentKind.CHEMOTHERAPY_REPORT.label),
            r.had_chemotherapy,
            DocumentKind.CHEMOTHERAPY_REPORT in kinds,
        ),
        ChecklistItem(
            "radiotherapy_report",
            str(DocumentKind.RADIOTHERAPY_REPORT.label),
            r.had_radiotherapy,
            DocumentKind.RADIOTHERAPY_REPORT in kinds,
        ),
    ]
    return items


def _has_indexed_images(treatment_request: TreatmentRequest) -> bool:
    """Only images the imaging app indexed count (sent over the network or through its upload, which
    checks each file): a file stored as a document is no image the team can plan on."""
    studies = getattr(treatment_request, "imaging_studies", None)
    return studies is not None and studies.filter(series__instances__isnull=False).exists()


def missing_items(treatment_request: TreatmentRequest) -> list[ChecklistItem]:
    return [item for item in checklist(treatment_request) if item.required and not item.done]


def is_file_complete(treatment_request: TreatmentRequest) -> bool:
    return not missing_items(treatment_request)


def work_queues(user) -> dict[str, QuerySet[TreatmentRequest]]:
    """The staff queues, each oldest first (first come, first served)."""
    qs = visible_requests(user).order_by("state_changed_at")
    queues: dict[str, QuerySet[TreatmentRequest]] = {}
    if user.role in (Role.ADMIN_STAFF, Role.HEAD):
        queues["files_to_check"] = qs.filter(state=State.SUBMITTED)
        queues["waiting_for_documents"] = qs.filter(state__in=[State.INCOMPLETE, State.INFO_REQUESTED])
        queues["ready_for_review"] = qs.filter(state=State.COMPLETE)
        if apps.is_installed("protonpath.department"):
            # Sent to review (by the API, or taken off an agenda) but on no meeting's agenda yet.
            queues["waiting_for_meeting"] = qs.filter(state=State.IN_REVIEW).exclude(agenda_items__decision="")
        queues["decisions_to_send"] = qs.filter(
            state__in=[State.ACCEPTED, State.DECLINED, State.INFO_REQUESTED], decision_sent_at__isnull=True
        )
        queues["quotes_and_payments"] = qs.filter(state__in=[State.QUOTE_SENT, State.QUOTE_ACCEPTED])
        queues["consultations_to_book"] = qs.filter(
            Q(state=State.ACCEPTED, covered_by_french_insurance=True, decision_sent_at__isnull=False)
            | Q(state=State.PAID)
        )
    if user.role in (Role.ONCOLOGIST, Role.HEAD):
        queues["files_for_review"] = qs.filter(state=State.IN_REVIEW)
    if user.role in (Role.ONCOLOGIST, Role.PHYSICIST, Role.HEAD):
        queues["to_plan"] = qs.filter(state__in=[State.CONSULTATION_BOOKED, State.PLANNING])
        queues["in_treatment"] = qs.filter(state__in=[State.SCHEDULED, State.IN_TREATMENT])
    return queues


QUEUE_LABELS = {
    "files_to_check": _("Files to check"),
    "waiting_for_documents": _("Waiting for documents"),
    "ready_for_review": _("Complete files to put on the review agenda"),
    "waiting_for_meeting": _("In review, waiting for a meeting's agenda"),
    "files_for_review": _("Files for review"),
    "decisions_to_send": _("Decisions to send"),
    "quotes_and_payments": _("Quotes and payments"),
    "consultations_to_book": _("First consultations to book"),
    "to_plan": _("To plan"),
    "in_treatment": _("Scheduled and in treatment"),
}
