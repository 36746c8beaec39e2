"""The patient's path as data: which action moves a request from which states to which, by whom.

This module is the single description of the path (see ARCHITECTURE.md). Services look actions up
here; pages and the API list the actions a user may take with :func:`available_actions`.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _

from protonpath.accounts.models import Role
from protonpath.referrals.models import TERMINAL_STATES, State

STAFF = frozenset({Role.ADMIN_STAFF, Role.HEAD})
OWNER = "owner"  # the patient or referring doctor the request belongs to


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    sources: frozenset[str]
    target: str
    roles: frozenset[str]
    international_only: bool = False
    domestic_only: bool = False
    needs_note: bool = False
    #: The app whose own pages carry this step (with the data it needs: a quote, a booking...).
    #: When that app is installed, the request page links to it instead of offering a bare button.
    handled_by: str = ""


def _action(name, label, sources, target, roles, **kw) -> Action:
    return Action(name, label, frozenset(sources), target, frozenset(roles), **kw)


OPEN_STATES = frozenset(s for s in State.values if s not in TERMINAL_STATES)

ACTIONS: dict[str, Action] = {
    a.name: a
    for a in [
        _action("submit", _("Submit the request"), {State.DRAFT}, State.SUBMITTED, {OWNER}),
        _action(
            "resubmit",
            _("Send the completed file"),
            {State.INCOMPLETE, State.INFO_REQUESTED},
            State.SUBMITTED,
            {OWNER},
        ),
        _action(
            "mark_incomplete",
            _("File incomplete: ask for what is missing"),
            {State.SUBMITTED, State.COMPLETE},
            State.INCOMPLETE,
            STAFF,
            needs_note=True,
        ),
        _action("mark_complete", _("File complete"), {State.SUBMITTED, State.INCOMPLETE}, State.COMPLETE, STAFF),
        # On the pages, the department's panel asks which meeting (see department/panels.py).
        _action(
            "send_to_review",
            _("Send to the review meeting"),
            {State.COMPLETE},
            State.IN_REVIEW,
            STAFF,
            handled_by="department",
        ),
        _action("accept", _("Accept: proton therapy indicated"), {State.IN_REVIEW}, State.ACCEPTED, {Role.ONCOLOGIST}),
        _action(
            "decline",
            _("Decline"),
            {State.IN_REVIEW},
            State.DECLINED,
            {Role.ONCOLOGIST},
            needs_note=True,
        ),
        _action(
            "request_information",
            _("Ask for more information"),
            {State.IN_REVIEW},
            State.INFO_REQUESTED,
            {Role.ONCOLOGIST},
            needs_note=True,
        ),
        _action(
            "send_quote",
            _("Send the quote"),
            {State.ACCEPTED},
            State.QUOTE_SENT,
            STAFF,
            international_only=True,
            handled_by="international",
        ),
        _action(
            "accept_quote",
            _("Accept the quote"),
            {State.QUOTE_SENT},
            State.QUOTE_ACCEPTED,
            {OWNER},
            international_only=True,
            handled_by="international",
        ),
        _action(
            "refuse_quote",
            _("Refuse the quote"),
            {State.QUOTE_SENT},
            State.ACCEPTED,
            {OWNER},
            international_only=True,
            needs_note=True,
            handled_by="international",
        ),
        _action(
            "record_full_payment",
            _("Record payment in full"),
            {State.QUOTE_ACCEPTED},
            State.PAID,
            STAFF,
            international_only=True,
            handled_by="international",
        ),
        _action(
            "book_consultation",
            _("Book the first consultation"),
            {State.ACCEPTED, State.PAID},
            State.CONSULTATION_BOOKED,
            STAFF,
            handled_by="scheduling",
        ),
        _action(
            "start_planning",
            _("Start treatment planning"),
            {State.CONSULTATION_BOOKED},
            State.PLANNING,
            {Role.ONCOLOGIST, Role.PHYSICIST},
        ),
        _action(
            "schedule_treatment",
            _("Treatment scheduled"),
            {State.PLANNING},
            State.SCHEDULED,
            # the oncologist's approval of the plan schedules the course (treatment.approval)
            STAFF | {Role.PHYSICIST, Role.ONCOLOGIST},
        ),
        _action(
            "start_treatment",
            _("First session given"),
            {State.SCHEDULED},
            State.IN_TREATMENT,
            STAFF | {Role.ONCOLOGIST},
        ),
        _action(
            "complete_treatment",
            _("Treatment completed"),
            {State.IN_TREATMENT},
            State.COMPLETED,
            {Role.ONCOLOGIST},
        ),
        _action(
            "cancel",
            _("Cancel the request"),
            OPEN_STATES,
            State.CANCELLED,
            STAFF | {Role.ONCOLOGIST, OWNER},
            needs_note=True,
        ),
    ]
}

#: A decision that must be sent to the patient and referring doctor once recorded.
DECISION_STATES = frozenset({State.ACCEPTED, State.DECLINED, State.INFO_REQUESTED})


def role_may(action: Action, *, role: str, is_owner: bool) -> bool:
    return role in action.roles or (is_owner and OWNER in action.roles)


def applies(action: Action, *, state: str, is_international: bool) -> bool:
    if state not in action.sources:
        return False
    if action.international_only and not is_international:
        return False
    if action.domestic_only and is_international:
        return False
    # A patient from abroad pays in full before the first consultation is booked.
    if action.name == "book_consultation" and is_international and state != State.PAID:
        return False
    return True


def available_actions(*, state: str, role: str, is_owner: bool, is_international: bool) -> list[Action]:
    return [
        a
        for a in ACTIONS.values()
        if applies(a, state=state, is_international=is_international) and role_may(a, role=role, is_owner=is_owner)
    ]
