"""API of the department: directory (public), triage, review meetings and activity."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Literal

from django.core.exceptions import PermissionDenied, ValidationError
from ninja import Field, Router, Schema, Status
from pydantic import field_validator

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent, User
from protonpath.department import selectors, services
from protonpath.department import triage as triage_rules
from protonpath.department.models import Decision, TeamMember
from protonpath.referrals import selectors as referrals_selectors

router = Router(tags=["department"])


class Error(Schema):
    detail: list[str] | str


class TeamMemberOut(Schema):
    title: str
    name: str
    role: str
    role_label: str
    specialties: list[str]


class HoursOut(Schema):
    weekday: int
    opens: datetime.time
    closes: datetime.time


class ServiceOut(Schema):
    code: str
    name: str
    phone: str
    location: str
    hours: list[HoursOut]


class CandidateOut(Schema):
    code: str
    label: str
    population: str
    basis: str
    basis_label: str
    reasons: list[str]
    cautions: list[str]


class TriageOut(Schema):
    population: str
    population_label: str
    age_years: int
    reirradiation: bool
    validated: bool
    needs_discussion: bool
    verdict: str
    candidates: list[CandidateOut]
    notes: list[str]
    catalogue_source: str


class TriageIn(Schema):
    pathology_name: str
    pathology_location: str = ""
    age_years: int
    had_radiotherapy: bool = False
    reirradiation_requested: bool = False


class MeetingIn(Schema):
    starts_at: datetime.datetime
    location: str = Field("", max_length=120)
    # Bounded to the database's id range: PostgreSQL refuses larger integers with a server error.
    chair_id: int | None = Field(None, ge=1, le=2**63 - 1)

    @field_validator("starts_at")
    @classmethod
    def _in_utc(cls, value: datetime.datetime) -> datetime.datetime:
        # Any offset the client sends is turned into UTC: PostgreSQL refuses offsets past ±16 h.
        return value.astimezone(datetime.UTC) if value.tzinfo is not None else value


class ItemOut(Schema):
    id: int
    order: int
    request_id: int
    reference: str
    request_state: str
    decision: str
    proposed_dose_gy: Decimal | None
    proposed_fractions: int | None
    note: str
    recorded_at: datetime.datetime | None


class MeetingOut(Schema):
    id: int
    starts_at: datetime.datetime
    status: str
    location: str
    chair_id: int | None
    items: list[ItemOut]


class AgendaIn(Schema):
    request_id: int


class DecisionIn(Schema):
    decision: Literal[tuple(Decision.values)]  # type: ignore[valid-type]
    note: str = ""
    dose_gy: Decimal | None = None
    fractions: int | None = None


class WaitingOut(Schema):
    count: int
    median_days: float | None
    mean_days: float | None


class StateCountOut(Schema):
    state: str
    label: str
    count: int


class YearOut(Schema):
    year: int
    sessions_estimate: int
    sessions_given: int | None
    courses_started: int


class ActivityOut(Schema):
    total: int
    by_state: list[StateCountOut]
    to_decision: WaitingOut
    to_first_session: WaitingOut
    sessions_per_year: list[YearOut]
    reference_year: int
    reference_sessions: int
    sessions_are_estimates: bool


def _item_out(item) -> dict:
    return {
        "id": item.pk,
        "order": item.order,
        "request_id": item.treatment_request_id,
        "reference": item.treatment_request.reference,
        "request_state": item.treatment_request.state,
        "decision": item.decision,
        "proposed_dose_gy": item.proposed_dose_gy,
        "proposed_fractions": item.proposed_fractions,
        "note": item.note,
        "recorded_at": item.recorded_at,
    }


def _meeting_out(meeting) -> dict:
    return {
        "id": meeting.pk,
        "starts_at": meeting.starts_at,
        "status": meeting.status,
        "location": meeting.location,
        "chair_id": meeting.chair_id,
        "items": [_item_out(item) for item in meeting.items.all()],
    }


# Public directory ----------------------------------------------------------------------------


@router.get("/team", response=list[TeamMemberOut], auth=None)
def team(request):
    return [
        {
            "title": m.title,
            "name": m.name,
            "role": m.role,
            "role_label": str(m.get_role_display()),
            "specialties": m.specialties,
        }
        for m in TeamMember.objects.filter(active=True)
    ]


@router.get("/services", response=list[ServiceOut], auth=None)
def service_list(request):
    return [
        {
            "code": s.code,
            "name": s.name,
            "phone": s.phone,
            "location": s.location,
            "hours": [{"weekday": h.weekday, "opens": h.opens, "closes": h.closes} for h in s.hours.all()],
        }
        for s in selectors.services_with_hours()
    ]


class IndicationOut(Schema):
    code: str
    population: str
    label_en: str
    label_fr: str


@router.get("/indications", response=list[IndicationOut], auth=None)
def indications(request):
    """The catalogue of validated indications (seed 000), adult and paediatric."""
    return [
        {"code": i.code, "population": i.population, "label_en": i.label_en, "label_fr": i.label_fr}
        for i in selectors.catalogue().indications
    ]


# Triage --------------------------------------------------------------------------------------


def _require_triage_viewer(user) -> None:
    if user.role not in selectors.TRIAGE_VIEWERS:
        audit.record(actor=user, action=AuditEvent.Action.DENIED, object_type="department.triage")
        raise PermissionDenied


@router.get("/triage/requests/{int:request_id}", response={200: TriageOut, 403: Error, 404: Error})
def request_triage(request, request_id: int):
    _require_triage_viewer(request.auth)
    treatment_request = referrals_selectors.get_request_for(request.auth, request_id, audit_view=False)
    return selectors.triage_for(request.auth, treatment_request)


@router.post("/triage", response={200: TriageOut, 400: Error, 403: Error})
def preview_triage(request, payload: TriageIn):
    """Triage free text (no request stored): what a referral would look like."""
    _require_triage_viewer(request.auth)
    if payload.age_years < 0 or payload.age_years > 130:
        raise ValidationError("age_years must be between 0 and 130.")
    result = triage_rules.triage(
        pathology_name=payload.pathology_name,
        pathology_location=payload.pathology_location,
        age_years=payload.age_years,
        had_radiotherapy=payload.had_radiotherapy,
        reirradiation_requested=payload.reirradiation_requested,
        catalogue=selectors.catalogue(),
    )
    return selectors.explain(result)


# Review meetings -----------------------------------------------------------------------------


@router.get("/meetings", response={200: list[MeetingOut], 403: Error})
def list_meetings(request, status: str | None = None):
    qs = selectors.meetings_for(request.auth).prefetch_related("items__treatment_request")
    if status:
        qs = qs.filter(status=status)
    audit.record(actor=request.auth, action=AuditEvent.Action.VIEW, object_type="department.reviewmeeting", summary="list")
    return [_meeting_out(m) for m in qs[:200]]


@router.post("/meetings", response={201: MeetingOut, 400: Error, 403: Error})
def create_meeting(request, payload: MeetingIn):
    chair = User.objects.filter(pk=payload.chair_id).first() if payload.chair_id else None
    meeting = services.create_meeting(actor=request.auth, starts_at=payload.starts_at, chair=chair, location=payload.location)
    return Status(201, _meeting_out(meeting))


@router.get("/meetings/{int:meeting_id}", response={200: MeetingOut, 403: Error, 404: Error})
def get_meeting(request, meeting_id: int):
    meeting = selectors.get_meeting_for(request.auth, meeting_id)
    audit.record(actor=request.auth, action=AuditEvent.Action.VIEW, obj=meeting)
    return _meeting_out(meeting)


@router.post("/meetings/{int:meeting_id}/agenda", response={201: ItemOut, 400: Error, 403: Error, 404: Error})
def add_item(request, meeting_id: int, payload: AgendaIn):
    services.require_role(request.auth, services.MEETING_ORGANISERS, object_type="department.agendaitem", what="add")
    meeting = selectors.get_meeting_for(request.auth, meeting_id)
    treatment_request = referrals_selectors.get_request_for(request.auth, payload.request_id, audit_view=False)
    item = services.add_to_agenda(actor=request.auth, meeting=meeting, treatment_request=treatment_request)
    return Status(201, _item_out(item))


@router.post("/agenda/{int:item_id}/decision", response={200: ItemOut, 400: Error, 403: Error, 404: Error})
def decide_item(request, item_id: int, payload: DecisionIn):
    item = selectors.get_item_for(request.auth, item_id)
    item = services.record_decision(
        actor=request.auth,
        item=item,
        decision=payload.decision,
        note=payload.note,
        dose_gy=payload.dose_gy,
        fractions=payload.fractions,
    )
    item.treatment_request.refresh_from_db()
    return _item_out(item)


# Activity ------------------------------------------------------------------------------------


@router.get("/activity", response={200: ActivityOut, 403: Error})
def activity(request):
    if request.auth.role not in selectors.ACTIVITY_VIEWERS:
        audit.record(actor=request.auth, action=AuditEvent.Action.DENIED, object_type="department.activity")
        raise PermissionDenied
    summary = selectors.activity_summary()
    recorded = dict(summary["recorded_sessions"]) if summary["recorded_sessions"] is not None else None
    audit.record(actor=request.auth, action=AuditEvent.Action.VIEW, object_type="department.activity", summary="api")
    return {
        "total": summary["total"],
        "by_state": [{"state": v, "label": str(label), "count": n} for v, label, n in summary["by_state"]],
        "to_decision": summary["to_decision"].__dict__,
        "to_first_session": summary["to_first_session"].__dict__,
        "sessions_per_year": [
            {"year": y, "sessions_estimate": s, "sessions_given": recorded.get(y, 0) if recorded is not None else None, "courses_started": c}
            for y, s, c in summary["sessions_per_year"]
        ],
        "reference_year": summary["reference_year"],
        "reference_sessions": summary["reference_sessions"],
        "sessions_are_estimates": summary["sessions_are_estimates"],
    }
