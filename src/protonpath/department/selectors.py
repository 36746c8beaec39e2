"""Reads for the department: directory and hours, triage explained, meetings, activity figures."""

from __future__ import annotations

import datetime
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache

import holidays
from django.apps import apps
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Min, Prefetch, Q, QuerySet
from django.db.models.functions import ExtractYear
from django.http import Http404
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent, Role
from protonpath.department import triage as triage_rules
from protonpath.department.directory import DATA_DIR, directory_data
from protonpath.department.models import (
    AgendaItem,
    OpeningHours,
    ReviewMeeting,
    Service,
    TeamMember,
    TeamRole,
)
from protonpath.department.services import AGENDA_STATES, MEETING_VIEWERS
from protonpath.referrals.models import RequestType, State, StateChange, TreatmentRequest

#: Who sees the triage of a request.
TRIAGE_VIEWERS = frozenset({Role.ONCOLOGIST, Role.ADMIN_STAFF, Role.HEAD})
#: Who sees the activity page (the administrative staff prepare the head's reports).
ACTIVITY_VIEWERS = frozenset({Role.HEAD, Role.ADMIN_STAFF})
#: Review outcomes: the first one reached ends the wait for a decision.
DECISION_STATES = (State.ACCEPTED, State.DECLINED, State.INFO_REQUESTED)


# Directory ------------------------------------------------------------------------------------


def team_by_role() -> list[tuple[str, list[TeamMember]]]:
    """Listed team members grouped by role, in the directory's order (head first)."""
    members = list(TeamMember.objects.filter(active=True))
    groups = []
    for role, label in TeamRole.choices:
        people = [m for m in members if m.role == role]
        if people:
            groups.append((label, people))
    return groups


def services_with_hours() -> list[Service]:
    return list(Service.objects.prefetch_related("hours"))


def opening_hours(service_code: str) -> dict[int, list[tuple[datetime.time, datetime.time]]]:
    """``{weekday: [(opens, closes), ...]}`` of a service (Monday = 0); days not listed are closed.

    The consultation booking uses this for its slots (``Service.Code.CONSULTATIONS``).
    """
    hours: dict[int, list[tuple[datetime.time, datetime.time]]] = defaultdict(list)
    for row in OpeningHours.objects.filter(service__code=service_code).order_by("weekday", "opens"):
        hours[row.weekday].append((row.opens, row.closes))
    return dict(hours)


def is_public_holiday(day: datetime.date) -> bool:
    """French public holidays (the ``holidays`` package), when every service is closed."""
    return day in holidays.country_holidays("FR", years=day.year)


def opening_periods_on(service_code: str, day: datetime.date) -> list[tuple[datetime.time, datetime.time]]:
    """The periods a service is open on ``day``: none on weekends not listed and public holidays."""
    if is_public_holiday(day):
        return []
    return opening_hours(service_code).get(day.weekday(), [])


def is_open(service_code: str, at: datetime.datetime) -> bool:
    """Whether the service is open at ``at`` (local time), public holidays included."""
    local = timezone.localtime(at) if timezone.is_aware(at) else at
    return any(opens <= local.time() < closes for opens, closes in opening_periods_on(service_code, local.date()))


# Triage ---------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def catalogue() -> triage_rules.Catalogue:
    return triage_rules.load_catalogue(json.loads((DATA_DIR / "indications.json").read_text(encoding="utf-8")))


def indications_by_population() -> list[tuple[str, list[str]]]:
    """The catalogue's labels in the active language: [(population label, [indication labels])]."""
    language = (get_language() or "en")[:2]
    return [
        (_("Adult cancers"), [i.label(language) for i in catalogue().of(triage_rules.ADULT)]),
        (_("Paediatric cancers"), [i.label(language) for i in catalogue().of(triage_rules.PAEDIATRIC)]),
    ]


def triage_request(treatment_request: TreatmentRequest, *, on: datetime.date | None = None) -> triage_rules.TriageResult:
    """The triage of a request, with the patient's age on ``on`` (today by default)."""
    age = treatment_request.patient.age_on(on or timezone.localdate())
    return triage_rules.triage(
        pathology_name=treatment_request.pathology_name,
        pathology_location=treatment_request.pathology_location,
        age_years=max(age, 0),
        had_radiotherapy=treatment_request.had_radiotherapy,
        reirradiation_requested=treatment_request.request_type == RequestType.REIRRADIATION,
        catalogue=catalogue(),
    )


def _label(code: str, language: str) -> str:
    try:
        return catalogue().get(code).label(language)
    except KeyError:
        return code


def reason_text(reason: triage_rules.Reason, language: str) -> str:
    """One reason in the reader's language (the active translation)."""
    params = {"text": reason.text, "term": reason.term, "indication": _label(reason.code, language) if reason.code else ""}
    kind = reason.kind
    if kind == "population":
        if reason.term == triage_rules.ADULT:
            return _("Adult catalogue: the patient is %(age)s years old.") % {"age": reason.text}
        return _("Paediatric catalogue: the patient is %(age)s years old (under 18).") % {"age": reason.text}
    if kind == "pathology_term":
        return _("The pathology “%(text)s” matches “%(term)s”.") % params
    if kind == "location_term":
        if reason.field == "pathology":
            return _("The pathology names the site “%(text)s”.") % params
        return _("The location “%(text)s” matches “%(term)s”.") % params
    if kind == "approximate_term":
        return _("“%(text)s” is read as “%(term)s” (close spelling: please check).") % params
    if kind == "excluded":
        return _("“%(text)s” keeps the file out of “%(indication)s”.") % params
    if kind == "mobile_location":
        return _("“%(text)s” moves with breathing: check that the target moves little.") % params
    if kind == "other_population":
        other = catalogue().get(reason.code).population if reason.code else ""
        if other == triage_rules.PAEDIATRIC:
            return _("“%(text)s” is a paediatric indication (“%(indication)s”); the patient is an adult.") % params
        return _("“%(text)s” is an adult indication (“%(indication)s”); the patient is a child.") % params
    if kind == "catch_all":
        return _("No named paediatric indication fits: other paediatric tumours are discussed case by case.")
    if kind == "reirradiation_requested":
        return _("The request is for re-irradiation.")
    if kind == "earlier_radiotherapy":
        return _("The patient was treated by radiotherapy before.")
    if kind == "reirradiation_text":
        return _("The file mentions “%(text)s”.") % params
    if kind == "no_match":
        return _("The pathology and location match no indication of the catalogue.")
    return kind


def explain(result: triage_rules.TriageResult) -> dict:
    """A triage result as plain data in the active language (for pages, PDF and API)."""
    language = (get_language() or "en")[:2]
    basis_labels = {
        triage_rules.BASIS_PATHOLOGY: _("by pathology"),
        triage_rules.BASIS_LOCATION: _("by location"),
        triage_rules.BASIS_REIRRADIATION: _("re-irradiation"),
        triage_rules.BASIS_CATCH_ALL: _("to discuss"),
    }
    candidates = []
    for c in result.candidates:
        cautions = [reason_text(r, language) for r in c.cautions]
        if c.indication.caution(language):
            cautions.append(c.indication.caution(language))
        candidates.append(
            {
                "code": c.code,
                "label": c.indication.label(language),
                "population": c.indication.population,
                "basis": c.basis,
                "basis_label": basis_labels[c.basis],
                "reasons": [reason_text(r, language) for r in c.reasons],
                "cautions": cautions,
            }
        )
    if result.is_validated_indication:
        verdict = _("Candidate indication: %(label)s") % {"label": candidates[0]["label"]}
    else:
        verdict = _("Not a validated indication: needs discussion")
    return {
        "population": result.population,
        "population_label": _("Adult") if result.population == triage_rules.ADULT else _("Paediatric"),
        "age_years": result.age_years,
        "reirradiation": result.reirradiation,
        "validated": result.is_validated_indication,
        "needs_discussion": result.needs_discussion,
        "verdict": verdict,
        "candidates": candidates,
        "notes": [reason_text(r, language) for r in result.reasons],
        "catalogue_source": catalogue().source,
    }


def triage_for(user, treatment_request: TreatmentRequest) -> dict:
    """The explained triage of a request the user may see; staff roles only (audited)."""
    if not user.is_authenticated or user.role not in TRIAGE_VIEWERS:
        audit.record(actor=user, action=AuditEvent.Action.DENIED, obj=treatment_request, summary="triage")
        raise PermissionDenied
    audit.record(actor=user, action=AuditEvent.Action.VIEW, obj=treatment_request, summary="triage")
    return explain(triage_request(treatment_request))


# Review meetings ------------------------------------------------------------------------------


def _items_prefetch() -> Prefetch:
    return Prefetch(
        "items",
        queryset=AgendaItem.objects.select_related("treatment_request__patient", "recorded_by").order_by("order", "id"),
    )


def meetings_for(user) -> QuerySet[ReviewMeeting]:
    if not user.is_authenticated or user.role not in MEETING_VIEWERS:
        raise PermissionDenied
    return ReviewMeeting.objects.select_related("chair").annotate(
        item_count=Count("items"), decided_count=Count("items", filter=~Q(items__decision=""))
    )


def get_meeting_for(user, pk: int) -> ReviewMeeting:
    if not user.is_authenticated or user.role not in MEETING_VIEWERS:
        audit.record(actor=user, action=AuditEvent.Action.DENIED, object_type="department.reviewmeeting", object_id=str(pk))
        raise PermissionDenied
    try:
        return (
            ReviewMeeting.objects.select_related("chair")
            .prefetch_related(_items_prefetch(), "attendees")
            .get(pk=pk)
        )
    except (ReviewMeeting.DoesNotExist, ValueError, TypeError):
        raise Http404(_("No such meeting.")) from None


def get_item_for(user, pk: int) -> AgendaItem:
    if not user.is_authenticated or user.role not in MEETING_VIEWERS:
        audit.record(actor=user, action=AuditEvent.Action.DENIED, object_type="department.agendaitem", object_id=str(pk))
        raise PermissionDenied
    try:
        return AgendaItem.objects.select_related("meeting", "treatment_request__patient").get(pk=pk)
    except (AgendaItem.DoesNotExist, ValueError, TypeError):
        raise Http404(_("No such agenda item.")) from None


def requests_ready_for_agenda() -> QuerySet[TreatmentRequest]:
    """Complete files and files in review that wait on no agenda, oldest first."""
    return (
        TreatmentRequest.objects.filter(state__in=AGENDA_STATES)
        .exclude(agenda_items__decision="")
        .select_related("patient")
        .order_by("state_changed_at")
    )


def pending_item(treatment_request: TreatmentRequest) -> AgendaItem | None:
    return (
        AgendaItem.objects.filter(treatment_request=treatment_request, decision="").select_related("meeting").first()
    )


def planned_meetings() -> QuerySet[ReviewMeeting]:
    return ReviewMeeting.objects.filter(status=ReviewMeeting.Status.PLANNED).order_by("starts_at")


def minimised_patient(treatment_request: TreatmentRequest) -> str:
    """Initials and year of birth: what the minutes say about the patient (data minimisation)."""
    p = treatment_request.patient
    initials = "".join(part[0].upper() + "." for part in f"{p.first_name} {p.last_name}".replace("-", " ").split() if part)
    return f"{initials} ({p.birth_date.year})"


# Activity -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """Waiting times in days (calendar days, fractional)."""

    count: int
    median_days: float | None
    mean_days: float | None

    @classmethod
    def of(cls, days: list[float]) -> Waiting:
        if not days:
            return cls(0, None, None)
        return cls(len(days), round(statistics.median(days), 1), round(statistics.fmean(days), 1))


def activity_reference() -> dict:
    return directory_data()["activity_reference"]


def _first_reached(states) -> dict[int, datetime.datetime]:
    rows = (
        StateChange.objects.filter(to_state__in=list(states))
        .values("treatment_request_id")
        .annotate(first=Min("at"))
    )
    return {row["treatment_request_id"]: row["first"] for row in rows}


def recorded_sessions_per_year() -> dict[int, int] | None:
    """Sessions given per (local) year, from the scheduling app's gantry sessions when installed.

    ``None`` when no session records exist in this installation (the page then shows only the
    estimate). Read through the app registry: the department does not depend on scheduling.
    """
    if not apps.is_installed("protonpath.scheduling"):
        return None
    try:
        session_model = apps.get_model("scheduling", "GantrySession")
    except LookupError:
        return None
    rows = (
        session_model.objects.filter(status="done")
        .annotate(year=ExtractYear("start"))
        .values("year")
        .annotate(n=Count("id"))
        .order_by("year")
    )
    return {row["year"]: row["n"] for row in rows}


def activity_summary() -> dict:
    """The head of department's figures, computed from the requests' history."""
    counts = dict(TreatmentRequest.objects.values_list("state").annotate(n=Count("id")).values_list("state", "n"))
    by_state = [(value, label, counts.get(value, 0)) for value, label in State.choices]

    submitted = dict(TreatmentRequest.objects.filter(submitted_at__isnull=False).values_list("id", "submitted_at"))
    decided = _first_reached(DECISION_STATES)
    started = _first_reached([State.IN_TREATMENT])

    def days_between(ends: dict[int, datetime.datetime]) -> list[float]:
        return [
            (end - submitted[pk]).total_seconds() / 86400
            for pk, end in ends.items()
            if pk in submitted and end >= submitted[pk]
        ]

    # Sessions: the fractions prescribed for the courses that started each year (an estimate
    # until session records exist), by the local year of the first session.
    fractions = dict(
        TreatmentRequest.objects.filter(pk__in=list(started), proposed_fractions__isnull=False).values_list(
            "id", "proposed_fractions"
        )
    )
    sessions: dict[int, int] = defaultdict(int)
    courses: dict[int, int] = defaultdict(int)
    for pk, at in started.items():
        year = timezone.localtime(at).year
        courses[year] += 1
        sessions[year] += fractions.get(pk, 0)
    reference = activity_reference()
    recorded = recorded_sessions_per_year()
    years = sorted(set(sessions) | set(recorded or {}))
    return {
        "by_state": by_state,
        "total": sum(counts.values()),
        "to_decision": Waiting.of(days_between(decided)),
        "to_first_session": Waiting.of(days_between(started)),
        "sessions_per_year": [(year, sessions.get(year, 0), courses.get(year, 0)) for year in years],
        "recorded_sessions": None if recorded is None else [(year, recorded.get(year, 0)) for year in years],
        "reference_year": reference["year"],
        "reference_sessions": reference["sessions"],
        "sessions_are_estimates": True,
    }
