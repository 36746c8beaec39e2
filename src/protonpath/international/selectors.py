"""Reads for patients from abroad: quotes a user may see, balances, the planned stay and the visa assessment."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent
from protonpath.international.models import AccompanyingPerson, Payment, Quote, QuoteStatus
from protonpath.international.rules import loaders
from protonpath.international.rules.countries import UnknownCountryError
from protonpath.international.rules.payment import Payment as PaymentRow
from protonpath.international.rules.payment import PaymentBalance, payment_balance
from protonpath.international.rules.stay import (
    ExpectedStay,
    StayPeriod,
    expected_stay,
    french_public_holidays,
    is_working_day,
)
from protonpath.international.rules.visa import Role as TravellerRole
from protonpath.international.rules.visa import Traveller, TripAssessment, assess_trip
from protonpath.referrals import pathway
from protonpath.referrals import selectors as referral_selectors
from protonpath.referrals.models import TreatmentRequest

#: Calendar days between sending a quote and the earliest first consultation we propose by default.
DEFAULT_LEAD_IN_DAYS = 28


def may_manage(user) -> bool:
    """Administrative staff and the head of department build quotes and record payments."""
    return user.is_authenticated and user.role in pathway.STAFF


def may_see_quotes(user, treatment_request: TreatmentRequest) -> bool:
    """The request's owner and the department staff who see the request (checked by the caller)."""
    return user.is_authenticated and (user.is_department_staff or referral_selectors.is_owner(user, treatment_request))


def quotes_for(user, treatment_request: TreatmentRequest) -> QuerySet[Quote]:
    """Quotes of a request that ``user`` may see: the owner never sees a draft nor one never sent."""
    qs = treatment_request.quotes.all()
    if not may_see_quotes(user, treatment_request):
        return qs.none()
    if not user.is_department_staff:
        qs = qs.filter(issued_at__isnull=False)
    return qs


def get_quote_for(user, pk: int, *, audit_view: bool = True) -> Quote:
    """The quote ``pk`` if ``user`` may see it, else 404 (never reveal that it exists)."""
    try:
        quote = Quote.objects.select_related("treatment_request__patient").get(
            pk=pk, treatment_request__in=referral_selectors.visible_requests(user)
        )
        if not quotes_for(user, quote.treatment_request).filter(pk=quote.pk).exists():
            raise Quote.DoesNotExist
    except (Quote.DoesNotExist, ValueError, TypeError):
        audit.record(actor=user, action=AuditEvent.Action.DENIED, object_type="international.quote", object_id=str(pk))
        raise Http404(_("No such quote.")) from None
    if audit_view:
        audit.record(actor=user, action=AuditEvent.Action.VIEW, obj=quote)
    return quote


def get_companion_for(user, pk: int) -> AccompanyingPerson:
    try:
        companion = AccompanyingPerson.objects.select_related("treatment_request__patient").get(
            pk=pk, treatment_request__in=referral_selectors.visible_requests(user)
        )
        if not may_see_quotes(user, companion.treatment_request):
            raise AccompanyingPerson.DoesNotExist
    except (AccompanyingPerson.DoesNotExist, ValueError, TypeError):
        audit.record(actor=user, action=AuditEvent.Action.DENIED, object_type="international.accompanyingperson", object_id=str(pk))
        raise Http404(_("No such person.")) from None
    return companion


def current_quote(treatment_request: TreatmentRequest) -> Quote | None:
    """The latest quote that is not superseded (draft, sent, accepted or refused)."""
    return treatment_request.quotes.exclude(status=QuoteStatus.SUPERSEDED).order_by("-created_at", "-id").first()


def accepted_quote(treatment_request: TreatmentRequest) -> Quote | None:
    return treatment_request.quotes.filter(status=QuoteStatus.ACCEPTED).order_by("-decided_at", "-id").first()


def rule_payments(payments) -> list[PaymentRow]:
    return [PaymentRow(p.kind, p.amount_eur, p.paid_on, p.method, p.reference) for p in payments]


def quote_balance(quote: Quote) -> PaymentBalance:
    """Payments, refunds and what remains due on a quote (see :mod:`rules.payment`)."""
    return payment_balance(quote.total_eur, rule_payments(quote.payments.all()))


def is_paid_in_full(treatment_request: TreatmentRequest) -> bool:
    """True when the request's accepted quote is covered by the payments net of refunds.

    The scheduling app calls this (through :func:`may_schedule_first_session`) before placing a
    foreign patient's first session.
    """
    quote = accepted_quote(treatment_request)
    return quote is not None and quote_balance(quote).paid_in_full


def may_schedule_first_session(treatment_request: TreatmentRequest) -> bool:
    """Patients covered by French insurance: yes. Patients from abroad: once the quote is paid in full."""
    return not treatment_request.is_international or is_paid_in_full(treatment_request)


def payments_of(quote: Quote) -> QuerySet[Payment]:
    return quote.payments.select_related("recorded_by")


# The planned stay ----------------------------------------------------------------------------


def default_first_consultation(today: datetime.date | None = None) -> datetime.date:
    """The first working day at least :data:`DEFAULT_LEAD_IN_DAYS` after today."""
    day = (today or timezone.localdate()) + datetime.timedelta(days=DEFAULT_LEAD_IN_DAYS)
    closed = french_public_holidays({day.year, day.year + 1})
    while not is_working_day(day, closed):
        day += datetime.timedelta(days=1)
    return day


def next_working_day(day: datetime.date) -> datetime.date:
    closed = french_public_holidays({day.year, day.year + 1})
    while not is_working_day(day, closed):
        day += datetime.timedelta(days=1)
    return day


def planned_first_consultation(treatment_request: TreatmentRequest) -> datetime.date:
    plan = getattr(treatment_request, "travel_plan", None)
    if plan is not None:
        return next_working_day(plan.first_consultation_on)
    return default_first_consultation()


def booked_dates(treatment_request: TreatmentRequest) -> tuple[datetime.date | None, tuple[datetime.date, ...]]:
    """The booked first consultation's day and the days of the booked gantry sessions (scheduling
    app), or ``(None, ())`` for what is not booked yet."""
    from django.apps import apps

    if not apps.is_installed("protonpath.scheduling"):
        return None, ()
    from protonpath.scheduling.models import (
        ACTIVE_SESSION_STATES,
        Consultation,
        ConsultationKind,
        ConsultationStatus,
        GantrySession,
    )

    consultation = (
        Consultation.objects.filter(
            treatment_request=treatment_request,
            kind=ConsultationKind.FIRST,
            status__in=[ConsultationStatus.BOOKED, ConsultationStatus.DONE],
        )
        .order_by("start")
        .first()
    )
    starts = GantrySession.objects.filter(
        course__treatment_request=treatment_request, status__in=ACTIVE_SESSION_STATES
    ).values_list("start", flat=True)
    days = tuple(sorted({timezone.localdate(start) for start in starts}))
    return (timezone.localdate(consultation.start) if consultation else None), days


def planned_stay(treatment_request: TreatmentRequest) -> ExpectedStay | None:
    """The stay: from the booked sessions (and booked first consultation) once scheduled, else
    from the planned first consultation with the fractions on working days (rules.stay); None
    before a decision."""
    if not treatment_request.proposed_fractions:
        return None
    consultation_day, fraction_days = booked_dates(treatment_request)
    if fraction_days:
        first = consultation_day or min(planned_first_consultation(treatment_request), fraction_days[0])
        first = min(first, fraction_days[0])
        return ExpectedStay(
            stay=StayPeriod(first - datetime.timedelta(days=1), fraction_days[-1] + datetime.timedelta(days=1)),
            first_consultation_day=first,
            fraction_days=fraction_days,
        )
    if consultation_day is not None:
        try:
            return expected_stay(consultation_day, treatment_request.proposed_fractions)
        except ValueError:  # booked on a day the rules do not count as working: plan from the next one
            return expected_stay(next_working_day(consultation_day), treatment_request.proposed_fractions)
    return expected_stay(planned_first_consultation(treatment_request), treatment_request.proposed_fractions)


def dates_are_booked(treatment_request: TreatmentRequest) -> bool:
    """True when the treatment's dates come from booked sessions (not an estimate)."""
    return bool(booked_dates(treatment_request)[1])


# Visa assessment ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VisaAssessment:
    trip: TripAssessment | None
    expected: ExpectedStay | None
    error: str = ""


def _stays(declared) -> tuple[StayPeriod, ...]:
    return tuple(StayPeriod(s.entry_on, s.exit_on) for s in declared)


def visa_assessment(treatment_request: TreatmentRequest, *, today: datetime.date | None = None) -> VisaAssessment:
    """The patient's and each accompanying person's visa verdict over the planned stay."""
    expected = planned_stay(treatment_request)
    if expected is None:
        return VisaAssessment(None, None, str(_("The planned stay is known once the medical team has accepted the request.")))
    today = today or timezone.localdate()
    declared = list(treatment_request.declared_stays.all())
    companions = list(treatment_request.companions.all())
    # Only stays that ended before the planned stay count as earlier stays.
    before = [s for s in declared if s.exit_on < expected.stay.first_day]
    patient = Traveller(
        role=TravellerRole.PATIENT,
        nationality=treatment_request.patient.nationality,
        earlier_stays=_stays(s for s in before if s.companion_id is None),
        reference="patient",
    )
    travellers = [
        Traveller(
            role=TravellerRole.COMPANION,
            nationality=c.nationality,
            relationship=c.relationship_fact,  # in no language: the letters name it when printed
            justification=c.justification,
            earlier_stays=_stays(s for s in before if s.companion_id == c.pk),
            reference=str(c.pk),
        )
        for c in companions
    ]
    plan = getattr(treatment_request, "travel_plan", None)
    try:
        trip = assess_trip(
            patient,
            travellers,
            expected.stay,
            loaders.load_visa_regimes(),
            medical_emergency=bool(plan and plan.medical_emergency),
            today=today,
        )
    except UnknownCountryError:
        return VisaAssessment(None, expected, str(_("A nationality code is not a known country: correct it first.")))
    return VisaAssessment(trip, expected)


def letters_available(treatment_request: TreatmentRequest) -> bool:
    """Consulate letters prove advance payment: they need an accepted quote with money received."""
    quote = accepted_quote(treatment_request)
    return quote is not None and quote_balance(quote).net_paid_eur > 0


# What the department tells patients: how to pay, whom to contact ---------------------------------


@dataclass(frozen=True)
class PaymentInstructions:
    """How to pay a quote by bank transfer, from the department's details (editable by staff)."""

    beneficiary: str
    iban: str
    bic: str
    bank_name: str
    reference: str
    amount_due_eur: object
    note: str
    available: bool


def department_details():
    from protonpath.international.models import DepartmentDetails

    return DepartmentDetails.current()


def payment_instructions(quote: Quote, language: str) -> PaymentInstructions:
    """The transfer details with the reference to quote (the quote's number and the request's)."""
    details = department_details()
    balance = quote_balance(quote) if quote.status == QuoteStatus.ACCEPTED else None
    return PaymentInstructions(
        beneficiary=details.beneficiary,
        iban=details.iban,
        bic=details.bic,
        bank_name=details.bank_name,
        reference=f"{quote.number} {quote.treatment_request.reference}",
        amount_due_eur=balance.balance_due_eur if balance is not None else quote.total_eur,
        note=details.payment_note(language),
        available=details.can_take_transfers,
    )
