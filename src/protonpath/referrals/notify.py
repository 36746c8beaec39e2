"""E-mails sent when a request moves along its path.

Messages carry the request's reference and new state, never medical content: the reader signs
in to see more. Each message is written in the recipient's language.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from protonpath.accounts.models import Role, User
from protonpath.referrals.models import State, TreatmentRequest

logger = logging.getLogger(__name__)

#: Which staff roles hear of a request arriving in a state.
STAFF_TO_TELL = {
    State.SUBMITTED: (Role.ADMIN_STAFF,),
    State.IN_REVIEW: (Role.ONCOLOGIST,),
    State.QUOTE_ACCEPTED: (Role.ADMIN_STAFF,),
    State.CONSULTATION_BOOKED: (Role.ONCOLOGIST, Role.PHYSICIST),
    State.CANCELLED: (Role.ADMIN_STAFF,),
}
#: States the patient and referring doctor are told about at once. Decisions are told when staff send them.
EXTERNAL_TO_TELL = frozenset(
    {
        State.SUBMITTED,
        State.INCOMPLETE,
        State.QUOTE_SENT,
        State.PAID,
        State.CONSULTATION_BOOKED,
        State.SCHEDULED,
        State.CANCELLED,
    }
)


def _language_for_patient(treatment_request: TreatmentRequest) -> str:
    user = treatment_request.patient.user or treatment_request.submitted_by
    return getattr(user, "preferred_language", None) or settings.LANGUAGE_CODE


def _send(recipients: list[str], language: str, treatment_request: TreatmentRequest, heading: str) -> None:
    recipients = sorted({r for r in recipients if r})
    if not recipients:
        return
    with translation.override(language):
        link = settings.PROTONPATH_BASE_URL + reverse("referrals:detail", args=[treatment_request.pk])
        subject = _("Request %(ref)s: %(state)s") % {
            "ref": treatment_request.reference,
            "state": treatment_request.get_state_display(),
        }
        body = "\n\n".join(
            [
                str(heading),
                _("Request %(ref)s is now: %(state)s.")
                % {"ref": treatment_request.reference, "state": treatment_request.get_state_display()},
                _("Sign in to see the details: %(link)s") % {"link": link},
                settings.PROTONPATH_DEPARTMENT_NAME,
            ]
        )
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
    logger.info("notification request=%s state=%s recipients=%d", treatment_request.pk, treatment_request.state, len(recipients))


def external_recipients(treatment_request: TreatmentRequest) -> list[str]:
    emails = [treatment_request.patient.email, treatment_request.addressee_email]
    if treatment_request.referring_doctor:
        emails.append(treatment_request.referring_doctor.email)
    emails.append(treatment_request.submitted_by.email)
    return emails


def tell_external(treatment_request: TreatmentRequest, heading: str = "") -> None:
    _send(
        external_recipients(treatment_request),
        _language_for_patient(treatment_request),
        treatment_request,
        heading or _("There is news about a request for proton therapy."),
    )


def on_transition(treatment_request: TreatmentRequest) -> None:
    state = treatment_request.state
    if state in EXTERNAL_TO_TELL:
        tell_external(treatment_request)
    roles = STAFF_TO_TELL.get(state, ())
    if roles:
        staff = User.objects.filter(role__in=roles, is_active=True).exclude(email="")
        by_language: dict[str, list[str]] = {}
        for member in staff:
            by_language.setdefault(member.preferred_language, []).append(member.email)
        for language, emails in by_language.items():
            with translation.override(language):
                heading = _("A request needs your attention.")
            _send(emails, language, treatment_request, heading)


def tell_decision(treatment_request: TreatmentRequest) -> None:
    with translation.override(_language_for_patient(treatment_request)):
        heading = _("The medical team has reviewed the request.")
    tell_external(treatment_request, heading)
