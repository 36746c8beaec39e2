"""API endpoints for requests for treatment and their medical file."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Literal

from django.core.exceptions import ValidationError
from django.http import FileResponse
from ninja import File, Form, Query, Router, Schema
from ninja.files import UploadedFile

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent
from protonpath.referrals import pathway, selectors, services
from protonpath.referrals.models import DocumentKind, GuardianRelationship, RequestType, State

router = Router(tags=["requests"])


class PatientIn(Schema):
    first_name: str
    last_name: str
    sex: Literal["F", "M", "O"]
    birth_date: datetime.date
    birth_place: str
    nationality: str
    passport_number: str = ""
    phone: str
    email: str
    address: str
    country_of_residence: str


class RequestIn(Schema):
    request_type: Literal[tuple(RequestType.values)]  # type: ignore[valid-type]
    reason: str
    covered_by_french_insurance: bool = False
    addressee_name: str
    addressee_institution: str = ""
    addressee_phone: str
    addressee_email: str
    addressee_address: str
    addressee_country: str = ""
    filled_by_guardian: bool = False
    guardian_name: str = ""
    guardian_relationship: Literal[("", *GuardianRelationship.values)] = ""  # type: ignore[valid-type]
    guardian_phone: str = ""
    guardian_email: str = ""
    pathology_name: str
    pathology_location: str
    had_surgery: bool = False
    had_chemotherapy: bool = False
    had_radiotherapy: bool = False


class RequestCreate(Schema):
    patient: PatientIn
    request: RequestIn
    #: The id of a record of the same person that the author already sees, to reuse it.
    reuse_patient_id: int | None = None


class RequestPatch(Schema):
    patient: dict | None = None
    request: dict | None = None


class PatientOut(Schema):
    first_name: str
    last_name: str
    sex: str
    birth_date: datetime.date
    birth_place: str
    nationality: str
    passport_number: str
    phone: str
    email: str
    address: str
    country_of_residence: str


class ChecklistItemOut(Schema):
    key: str
    label: str
    required: bool
    done: bool


class RequestOut(Schema):
    id: int
    reference: str
    accession_number: str
    state: str
    state_label: str
    request_type: str
    reason: str
    is_international: bool
    patient: PatientOut
    addressee_name: str
    addressee_institution: str
    addressee_phone: str
    addressee_email: str
    addressee_address: str
    addressee_country: str
    filled_by_guardian: bool
    guardian_name: str
    guardian_relationship: str
    guardian_phone: str
    guardian_email: str
    pathology_name: str
    pathology_location: str
    had_surgery: bool
    had_chemotherapy: bool
    had_radiotherapy: bool
    missing_information: str
    decision_note: str
    proposed_dose_gy: Decimal | None
    proposed_fractions: int | None
    created_at: datetime.datetime
    submitted_at: datetime.datetime | None
    state_changed_at: datetime.datetime
    available_actions: list[str]

    @staticmethod
    def resolve_state_label(obj) -> str:
        return str(obj.get_state_display())


class RequestSummary(Schema):
    id: int
    reference: str
    state: str
    request_type: str
    patient_name: str
    pathology_name: str
    created_at: datetime.datetime

    @staticmethod
    def resolve_patient_name(obj) -> str:
        return obj.patient.full_name


class DocumentOut(Schema):
    id: int
    kind: str
    original_name: str
    content_type: str
    size_bytes: int
    sha256: str
    description: str
    uploaded_at: datetime.datetime


class StateChangeOut(Schema):
    from_state: str
    to_state: str
    at: datetime.datetime
    note: str
    actor_role: str

    @staticmethod
    def resolve_actor_role(obj) -> str:
        return obj.actor.role if obj.actor else ""


class ActionIn(Schema):
    note: str = ""


class DecisionIn(Schema):
    decision: Literal["accept", "decline", "request_information"]
    note: str = ""
    dose_gy: Decimal | None = None
    fractions: int | None = None


class MeOut(Schema):
    id: int
    username: str
    role: str
    full_name: str


class Error(Schema):
    detail: list[str] | str


def _out(request, treatment_request) -> dict:
    user = request.auth
    actions = pathway.available_actions(
        state=treatment_request.state,
        role=user.role,
        is_owner=selectors.is_owner(user, treatment_request),
        is_international=treatment_request.is_international,
    )
    # As on the page: a step whose facts are missing (the consultation not held yet) is not offered.
    treatment_request.available_actions = [a.name for a in actions if not services.missing_fact(treatment_request, a.name)]
    return treatment_request


@router.get("/me", response=MeOut)
def me(request):
    user = request.auth
    return {"id": user.pk, "username": user.username, "role": user.role, "full_name": user.get_full_name()}


#: Larger offsets are past any department's last request (and past what SQL's OFFSET accepts).
MAX_OFFSET = 2**62


@router.get("/requests", response=list[RequestSummary])
def list_requests(
    request,
    state: str | None = None,
    limit: Query[int] = 100,  # type: ignore[type-arg]
    offset: Query[int] = 0,  # type: ignore[type-arg]
):
    qs = selectors.visible_requests(request.auth)
    if state:
        if state not in State.values:
            raise ValidationError(f"Unknown state {state!r}.")
        qs = qs.filter(state=state)
    if offset < 0:
        raise ValidationError("offset must be zero or more.")
    limit = max(1, min(limit, 500))
    audit.record(actor=request.auth, action=AuditEvent.Action.VIEW, object_type="referrals.treatmentrequest", summary="list")
    if offset > MAX_OFFSET:
        # Past the last request: an empty page. The database takes no OFFSET past 63 bits.
        return []
    return list(qs[offset : offset + limit])


@router.post("/requests", response={201: RequestOut, 400: Error, 403: Error})
def create_request(request, payload: RequestCreate):
    treatment_request = services.create_request(
        actor=request.auth,
        patient_data=payload.patient.dict(),
        request_data=payload.request.dict(),
        reuse_patient=payload.reuse_patient_id,
    )
    return 201, _out(request, treatment_request)


@router.get("/requests/{int:request_id}", response={200: RequestOut, 404: Error})
def get_request(request, request_id: int):
    return _out(request, selectors.get_request_for(request.auth, request_id))


@router.patch("/requests/{int:request_id}", response={200: RequestOut, 400: Error, 403: Error, 404: Error})
def patch_request(request, request_id: int, payload: RequestPatch):
    treatment_request = selectors.get_request_for(request.auth, request_id, audit_view=False)
    patient = {k: v for k, v in (payload.patient or {}).items() if k in services.PATIENT_FIELDS}
    fields = {k: v for k, v in (payload.request or {}).items() if k in services.REQUEST_FIELDS}
    treatment_request = services.update_request(
        actor=request.auth, treatment_request=treatment_request, patient_data=patient, request_data=fields
    )
    return _out(request, treatment_request)


@router.get("/requests/{int:request_id}/checklist", response={200: list[ChecklistItemOut], 404: Error})
def get_checklist(request, request_id: int):
    treatment_request = selectors.get_request_for(request.auth, request_id)
    return [item.__dict__ for item in selectors.checklist(treatment_request)]


@router.get("/requests/{int:request_id}/history", response={200: list[StateChangeOut], 404: Error})
def get_history(request, request_id: int):
    treatment_request = selectors.get_request_for(request.auth, request_id)
    return list(treatment_request.history.select_related("actor"))


@router.get("/requests/{int:request_id}/documents", response={200: list[DocumentOut], 404: Error})
def list_documents(request, request_id: int):
    treatment_request = selectors.get_request_for(request.auth, request_id)
    return list(treatment_request.documents.all())


@router.post("/requests/{int:request_id}/documents", response={201: DocumentOut, 400: Error, 403: Error, 404: Error})
def upload_document(
    request,
    request_id: int,
    kind: Form[Literal[tuple(DocumentKind.values)]],  # type: ignore[valid-type]
    file: File[UploadedFile],
    description: Form[str] = "",
):
    treatment_request = selectors.get_request_for(request.auth, request_id, audit_view=False)
    document = services.add_document(
        actor=request.auth, treatment_request=treatment_request, kind=kind, file=file, description=description
    )
    return 201, document


@router.get("/documents/{int:document_id}/file", response={200: None, 404: Error})
def download_document(request, document_id: int):
    document = selectors.get_document_for(request.auth, document_id)
    audit.record(actor=request.auth, action=AuditEvent.Action.DOWNLOAD, obj=document)
    response = FileResponse(document.file.open("rb"), as_attachment=True, filename=document.original_name)
    response["Content-Type"] = document.content_type
    return response


@router.post("/requests/{int:request_id}/actions/{action}", response={200: RequestOut, 400: Error, 403: Error, 404: Error})
def run_action(request, request_id: int, action: str, payload: ActionIn):
    treatment_request = selectors.get_request_for(request.auth, request_id, audit_view=False)
    user = request.auth
    if action == "mark_complete":
        result = services.mark_complete(actor=user, treatment_request=treatment_request)
    elif action == "mark_incomplete":
        result = services.mark_incomplete(actor=user, treatment_request=treatment_request, missing=payload.note)
    elif action == "cancel":
        result = services.cancel(actor=user, treatment_request=treatment_request, reason=payload.note)
    elif action == "send_decision":
        result = services.send_decision(actor=user, treatment_request=treatment_request)
    elif action in ("accept", "decline", "request_information"):
        raise ValidationError("Use the decision endpoint to record a review decision.")
    else:
        result = services.perform(actor=user, treatment_request=treatment_request, action=action, note=payload.note)
    return _out(request, result)


@router.post("/requests/{int:request_id}/decision", response={200: RequestOut, 400: Error, 403: Error, 404: Error})
def record_decision(request, request_id: int, payload: DecisionIn):
    treatment_request = selectors.get_request_for(request.auth, request_id, audit_view=False)
    result = services.decide(
        actor=request.auth,
        treatment_request=treatment_request,
        decision=payload.decision,
        note=payload.note,
        dose_gy=payload.dose_gy,
        fractions=payload.fractions,
    )
    return _out(request, result)


@router.get("/queues", response={200: dict[str, list[RequestSummary]], 403: Error})
def queues(request):
    if not request.auth.is_department_staff:
        return 403, {"detail": "Only department staff have work queues."}
    return {key: list(qs[:200]) for key, qs in selectors.work_queues(request.auth).items()}


