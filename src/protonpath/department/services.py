"""Writes for the department: the directory, review meetings, their agenda and decisions.

Each function checks who may act, runs in one transaction and records the change in the audit
trail. Decisions flow into the request's path through :func:`protonpath.referrals.services.decide`.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from protonpath.accounts import audit
from protonpath.accounts.models import STAFF_ROLES, AuditEvent, Role
from protonpath.department.models import DECISION_ACTIONS, AgendaItem, Decision, ReviewMeeting
from protonpath.referrals import services as referrals_services
from protonpath.referrals.models import State, TreatmentRequest

#: Who edits the team directory, the services' contacts and opening hours.
DIRECTORY_EDITORS = frozenset({Role.ADMIN_STAFF, Role.HEAD})
#: Who sees review meetings, their agenda and minutes.
MEETING_VIEWERS = frozenset({Role.ADMIN_STAFF, Role.ONCOLOGIST, Role.HEAD})
#: Who plans meetings and puts files on their agenda (the referrals path's "send to review").
MEETING_ORGANISERS = frozenset({Role.ADMIN_STAFF, Role.HEAD})
#: Who records the meeting's decisions (the referrals path's "accept / decline / ask").
DECIDERS = frozenset({Role.ONCOLOGIST})
#: Who may chair a meeting.
CHAIR_ROLES = frozenset({Role.ONCOLOGIST, Role.HEAD})
#: States in which a request may be put on an agenda.
AGENDA_STATES = frozenset({State.COMPLETE, State.IN_REVIEW})


def require_role(actor, roles, *, obj=None, object_type: str = "", what: str = "") -> None:
    """Raise PermissionDenied (and record the refusal) unless ``actor`` has one of ``roles``."""
    if getattr(actor, "is_authenticated", False) and actor.role in roles:
        return
    audit.record(actor=actor, action=AuditEvent.Action.DENIED, obj=obj, object_type=object_type, summary=what)
    raise PermissionDenied(_("You may not do this."))


# Directory -----------------------------------------------------------------------------------


@transaction.atomic
def save_directory_formset(*, actor, formset) -> int:
    """Save a (valid) model formset of the directory; returns how many objects changed."""
    require_role(actor, DIRECTORY_EDITORS, object_type=formset.model._meta.label_lower, what="edit directory")
    if not formset.is_valid():
        raise ValidationError(_("Please correct the errors below."))
    formset.save()
    for obj in formset.new_objects:
        audit.record(actor=actor, action=AuditEvent.Action.CREATE, obj=obj)
    for obj, fields in formset.changed_objects:
        audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=obj, summary="fields=" + ",".join(fields))
    for obj in formset.deleted_objects:
        audit.record(
            actor=actor, action=AuditEvent.Action.DELETE, object_type=obj._meta.label_lower, object_id=str(obj.pk or "")
        )
    return len(formset.new_objects) + len(formset.changed_objects) + len(formset.deleted_objects)


# Review meetings -----------------------------------------------------------------------------


def _check_chair(chair) -> None:
    if chair is not None and chair.role not in CHAIR_ROLES:
        raise ValidationError(_("The chair must be a radiation oncologist or the head of department."), code="chair")


def _check_attendees(attendees) -> list:
    attendees = list(attendees or [])
    if any(user.role not in STAFF_ROLES for user in attendees):
        raise ValidationError(_("Only the department's staff attend the review meeting."), code="attendees")
    return attendees


@transaction.atomic
def create_meeting(*, actor, starts_at, chair=None, location: str = "", attendees=()) -> ReviewMeeting:
    require_role(actor, MEETING_ORGANISERS, object_type="department.reviewmeeting", what="create meeting")
    _check_chair(chair)
    attendees = _check_attendees(attendees)
    meeting = ReviewMeeting(starts_at=starts_at, chair=chair, location=location, created_by=actor)
    meeting.full_clean()
    meeting.save()
    meeting.attendees.set(attendees + ([chair] if chair is not None and chair not in attendees else []))
    audit.record(actor=actor, action=AuditEvent.Action.CREATE, obj=meeting)
    return meeting


@transaction.atomic
def update_meeting(*, actor, meeting: ReviewMeeting, starts_at, chair=None, location: str = "", attendees=()) -> ReviewMeeting:
    require_role(actor, MEETING_ORGANISERS, obj=meeting, what="update meeting")
    meeting = ReviewMeeting.objects.select_for_update().get(pk=meeting.pk)
    _check_chair(chair)
    attendees = _check_attendees(attendees)
    meeting.starts_at, meeting.chair, meeting.location = starts_at, chair, location
    meeting.full_clean()
    meeting.save()
    meeting.attendees.set(attendees + ([chair] if chair is not None and chair not in attendees else []))
    audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=meeting)
    return meeting


def add_to_agenda(*, actor, meeting: ReviewMeeting, treatment_request: TreatmentRequest) -> AgendaItem:
    """Put a complete file on a planned meeting's agenda; a complete file then enters review."""
    require_role(actor, MEETING_ORGANISERS, obj=treatment_request, what="add to agenda")
    with transaction.atomic():
        meeting = ReviewMeeting.objects.select_for_update().get(pk=meeting.pk)
        if meeting.status != ReviewMeeting.Status.PLANNED:
            raise ValidationError(_("This meeting has been held: files can no longer be added."), code="held")
        treatment_request = TreatmentRequest.objects.select_for_update().get(pk=treatment_request.pk)
        pending = AgendaItem.objects.filter(treatment_request=treatment_request, decision="").select_related("meeting").first()
        if pending is not None:
            raise ValidationError(
                _("Request %(ref)s is already on the agenda of %(meeting)s.")
                % {"ref": treatment_request.reference, "meeting": pending.meeting},
                code="duplicate",
            )
        if treatment_request.state not in AGENDA_STATES:
            raise ValidationError(
                _("Only complete files go to the review meeting; request %(ref)s is '%(state)s'.")
                % {"ref": treatment_request.reference, "state": treatment_request.get_state_display()},
                code="state",
            )
        if treatment_request.state == State.COMPLETE:
            treatment_request = referrals_services.send_to_review(actor=actor, treatment_request=treatment_request)
        order = (meeting.items.aggregate(last=Max("order"))["last"] or 0) + 1
        try:
            with transaction.atomic():
                item = AgendaItem.objects.create(
                    meeting=meeting, treatment_request=treatment_request, order=order, added_by=actor
                )
        except IntegrityError:
            # Another agenda took it at the same moment (the database keeps one pending item).
            raise ValidationError(
                _("Request %(ref)s is already on an agenda.") % {"ref": treatment_request.reference}, code="duplicate"
            ) from None
        audit.record(actor=actor, action=AuditEvent.Action.CREATE, obj=item, summary=f"meeting={meeting.pk}")
    return item


@transaction.atomic
def remove_from_agenda(*, actor, item: AgendaItem) -> None:
    """Take an undecided file off the agenda; it stays in review, ready for another meeting."""
    require_role(actor, MEETING_ORGANISERS, obj=item, what="remove from agenda")
    item = AgendaItem.objects.select_for_update().select_related("meeting").get(pk=item.pk)
    if item.is_decided:
        raise ValidationError(_("A decision has been recorded: the item stays in the minutes."), code="decided")
    if item.meeting.status != ReviewMeeting.Status.PLANNED:
        raise ValidationError(_("This meeting has been held: its agenda is closed."), code="held")
    audit.record(actor=actor, action=AuditEvent.Action.DELETE, obj=item, summary=f"meeting={item.meeting_id}")
    item.delete()


def _decimal(value) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValidationError(_("The dose must be a number of Gy (RBE)."), code="dose") from None


def record_decision(
    *,
    actor,
    item: AgendaItem,
    decision: str,
    note: str = "",
    dose_gy=None,
    fractions: int | None = None,
) -> AgendaItem:
    """An oncologist records the meeting's decision on one file; it moves the request's path."""
    require_role(actor, DECIDERS, obj=item, what="record decision")
    if decision not in Decision.values:
        raise ValidationError(_("Unknown decision."), code="decision")
    note = (note or "").strip()
    dose = _decimal(dose_gy)
    with transaction.atomic():
        item = AgendaItem.objects.select_for_update().select_related("meeting", "treatment_request").get(pk=item.pk)
        if item.is_decided:
            raise ValidationError(_("The decision on this file has already been recorded."), code="decided")
        treatment_request = referrals_services.decide(
            actor=actor,
            treatment_request=item.treatment_request,
            decision=DECISION_ACTIONS[Decision(decision)],
            note=note,
            dose_gy=dose if decision == Decision.ACCEPTED else None,
            fractions=fractions if decision == Decision.ACCEPTED else None,
        )
        item.decision = decision
        item.note = note
        item.proposed_dose_gy = treatment_request.proposed_dose_gy if decision == Decision.ACCEPTED else None
        item.proposed_fractions = treatment_request.proposed_fractions if decision == Decision.ACCEPTED else None
        item.recorded_by = actor
        item.recorded_at = timezone.now()
        item.full_clean()
        item.save()
        item.meeting.attendees.add(actor)
        audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=item, summary=f"decision={decision}")
    return item


@transaction.atomic
def mark_held(*, actor, meeting: ReviewMeeting) -> ReviewMeeting:
    """The meeting took place: its agenda closes (decisions may still be recorded)."""
    meeting = ReviewMeeting.objects.select_for_update().get(pk=meeting.pk)
    if not (getattr(actor, "is_authenticated", False) and (actor.role in MEETING_ORGANISERS or meeting.chair_id == actor.pk)):
        require_role(actor, (), obj=meeting, what="mark held")
    if meeting.status == ReviewMeeting.Status.HELD:
        raise ValidationError(_("This meeting is already marked as held."), code="held")
    meeting.status = ReviewMeeting.Status.HELD
    meeting.held_at = timezone.now()
    meeting.save(update_fields=["status", "held_at"])
    audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=meeting, summary="held")
    return meeting


# Decisions taken outside the meeting page ------------------------------------------------------

#: The referrals path's decision actions and what the agenda records for each.
_DECISION_OF_ACTION = {action: decision for decision, action in DECISION_ACTIONS.items()}


def sync_agenda_after_transition(sender, treatment_request, action, actor, **kwargs) -> None:
    """Keep the agenda true when a decision is recorded on the request's own page or API.

    Connected to :data:`protonpath.referrals.services.request_transitioned` (after commit): a
    pending agenda item of the request takes the decision the oncologist recorded there.
    """
    decision = _DECISION_OF_ACTION.get(action)
    if decision is None:
        return
    with transaction.atomic():
        item = AgendaItem.objects.select_for_update().filter(treatment_request=treatment_request, decision="").first()
        if item is None:
            return
        r = TreatmentRequest.objects.get(pk=treatment_request.pk)
        item.decision = decision
        item.note = r.decision_note
        item.proposed_dose_gy = r.proposed_dose_gy if decision == Decision.ACCEPTED else None
        item.proposed_fractions = r.proposed_fractions if decision == Decision.ACCEPTED else None
        item.recorded_by = actor if getattr(actor, "is_authenticated", False) else r.decided_by
        item.recorded_at = r.decided_at or timezone.now()
        item.save()
        audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=item, summary=f"decision={decision} (request page)")
