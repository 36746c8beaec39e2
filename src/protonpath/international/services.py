"""Writes for patients from abroad: tariffs, quotes, payments, accompanying persons, earlier stays.

Each function checks who may act, runs in one transaction, records the audit trail, and moves
the request along its path through :func:`protonpath.referrals.services.perform` (whose guard,
:func:`path_guard`, refuses the quote and payment steps that are not backed by a quote here).
"""

from __future__ import annotations

import datetime
import math
from decimal import Decimal

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent
from protonpath.international import selectors
from protonpath.international.models import (
    AccompanyingPerson,
    DeclaredStay,
    Payment,
    PaymentKind,
    PaymentMethod,
    Quote,
    QuoteLine,
    QuoteStatus,
    StayCostLine,
    Tariff,
    TravelPlan,
)
from protonpath.international.relationships import Relationship, relationship_of
from protonpath.international.rules import loaders
from protonpath.international.rules import payment as payment_rules
from protonpath.international.rules import quote as quote_rules
from protonpath.international.rules.payment import Payment as PaymentRow
from protonpath.international.rules.payment import payment_balance
from protonpath.international.rules.stay import expected_stay
from protonpath.referrals import selectors as referral_selectors
from protonpath.referrals import services as referral_services
from protonpath.referrals.models import State, TreatmentRequest

#: The imaging a quote includes unless staff say otherwise: the planning CT and an MRI for fusion.
DEFAULT_IMAGING = {"imaging_ct_planning": 1, "imaging_mri": 1}


def default_consultations(fractions: int) -> int:
    """First consultation, one review per week of treatment, and the end-of-treatment consultation."""
    return 2 + math.ceil(fractions / 5)


def _require_manager(actor) -> None:
    if not selectors.may_manage(actor):
        raise PermissionDenied(_("You may not do this."))


def _locked_request(treatment_request: TreatmentRequest) -> TreatmentRequest:
    return TreatmentRequest.objects.select_for_update().select_related("patient").get(pk=treatment_request.pk)


def _locked_quote(quote: Quote) -> Quote:
    return Quote.objects.select_for_update().select_related("treatment_request__patient").get(pk=quote.pk)


# Tariffs --------------------------------------------------------------------------------------


def tariff_in_force(on: datetime.date) -> tuple[quote_rules.Tariff, dict[str, Tariff]]:
    """The tariff in force on ``on``: for each code, its latest price from on or before that day.

    Raises ValidationError when a required item has no price yet.
    """
    rows: dict[str, Tariff] = {}
    for row in Tariff.objects.filter(valid_from__lte=on).order_by("code", "-valid_from", "-id"):
        rows.setdefault(row.code, row)
    if not rows:
        raise ValidationError(_("No tariff is in force: enter the department's prices first."), code="tariff")
    ordered = sorted(rows.values(), key=lambda r: r.code)
    raw = {
        "version": max(r.valid_from for r in rows.values()).isoformat(),
        "effective_from": max(r.valid_from for r in rows.values()).isoformat(),
        "illustrative": any(r.illustrative for r in rows.values()),
        "items": [
            {
                "code": r.code,
                "label_en": r.label_en,
                "label_fr": r.label_fr,
                "unit_en": r.unit_en,
                "unit_fr": r.unit_fr,
                "unit_price_eur": str(r.unit_price_eur),
            }
            for r in ordered
        ],
    }
    try:
        return quote_rules.tariff_from_dict(raw), rows
    except ValueError as exc:
        raise ValidationError(_("The tariff is incomplete: %(error)s") % {"error": exc}, code="tariff") from None


@transaction.atomic
def add_tariff_price(*, actor, code: str, label_en: str, label_fr: str, unit_en: str, unit_fr: str, unit_price_eur, valid_from, source: str = "") -> Tariff:
    """A new price (never an edit of one a quote used): it applies to quotes built from ``valid_from``."""
    _require_manager(actor)
    row = Tariff(
        code=code,
        label_en=label_en,
        label_fr=label_fr,
        unit_en=unit_en,
        unit_fr=unit_fr,
        unit_price_eur=quote_rules.money_eur(Decimal(str(unit_price_eur))),
        valid_from=valid_from,
        source=source,
        created_by=actor,
    )
    row.full_clean()
    row.save()
    audit.record(actor=actor, action=AuditEvent.Action.CREATE, obj=row, summary=f"code={code} valid_from={valid_from}")
    return row


def load_illustrative_tariff(*, valid_from: datetime.date | None = None) -> int:
    """Copy the shipped illustrative tariff into the editable table when it is empty (demo, first run)."""
    if Tariff.objects.exists():
        return 0
    tariff = loaders.load_tariff()
    for item in tariff.items.values():
        Tariff.objects.create(
            code=item.code,
            label_en=item.label_en,
            label_fr=item.label_fr,
            unit_en=item.unit_en,
            unit_fr=item.unit_fr,
            unit_price_eur=item.unit_price_eur,
            valid_from=valid_from or tariff.effective_from,
            illustrative=tariff.illustrative,
            source=f"{loaders.TARIFF_FILE} {tariff.version}",
        )
    return len(tariff.items)


# Quotes ---------------------------------------------------------------------------------------


def _next_number() -> str:
    prefix = f"Q-{timezone.localdate().year}-"
    last = Quote.objects.filter(number__startswith=prefix).order_by("-number").values_list("number", flat=True).first()
    number = int(last.rsplit("-", 1)[1]) + 1 if last else 1
    return f"{prefix}{number:05d}"


def _imaging(imaging: dict | None) -> dict[str, int]:
    imaging = dict(DEFAULT_IMAGING if imaging is None else imaging)
    for count in imaging.values():
        if not isinstance(count, int) or count < 0:
            raise ValidationError(_("Imaging counts must be whole numbers, zero or more."), code="imaging")
    return {code: count for code, count in imaging.items() if count}


def _fill(quote: Quote, *, imaging: dict[str, int], on: datetime.date, first_consultation_on: datetime.date, return_journey_per_person_eur) -> None:
    """(Re)write the draft's lines from the tariff in force on ``on`` and its stay estimate."""
    tariff, rows = tariff_in_force(on)
    try:
        params = quote_rules.TreatmentParameters(
            fractions=quote.fractions, consultations=quote.consultations, imaging=imaging, anaesthesia=quote.anaesthesia
        )
        built = quote_rules.build_quote(params, tariff)
        stay = expected_stay(first_consultation_on, quote.fractions)
        costs = quote_rules.estimate_additional_costs(
            stay.stay,
            quote.companions,
            loaders.load_daily_costs(),
            return_journey_per_person_eur=return_journey_per_person_eur,
        )
    except quote_rules.MissingTariffItemError as exc:
        raise ValidationError(_("The tariff has no price for: %(error)s") % {"error": exc}, code="tariff") from None
    except ValueError as exc:
        raise ValidationError(str(exc), code="quote") from None
    quote.lines.all().delete()
    quote.cost_lines.all().delete()
    QuoteLine.objects.bulk_create(
        [
            QuoteLine(
                quote=quote,
                position=i,
                tariff=rows[line.code],
                code=line.code,
                label_en=line.label_en,
                label_fr=line.label_fr,
                unit_en=line.unit_en,
                unit_fr=line.unit_fr,
                quantity=line.quantity,
                unit_price_eur=line.unit_price_eur,
                total_eur=line.total_eur,
            )
            for i, line in enumerate(built.lines)
        ]
    )
    StayCostLine.objects.bulk_create(
        [
            StayCostLine(
                quote=quote,
                position=i,
                code=line.code,
                label_en=line.label_en,
                label_fr=line.label_fr,
                persons=line.persons,
                quantity=line.quantity,
                unit_price_eur=line.unit_price_eur,
                total_eur=line.total_eur,
            )
            for i, line in enumerate(costs.lines)
        ]
    )
    quote.total_eur = built.total_eur
    quote.tariff_version = built.tariff_version
    quote.illustrative = built.illustrative
    quote.stay_first_day = stay.stay.first_day
    quote.stay_last_day = stay.stay.last_day
    quote.first_fraction_on = stay.first_fraction_day
    quote.last_fraction_on = stay.last_fraction_day
    quote.costs_version = costs.costs_version
    quote.costs_illustrative = costs.illustrative
    quote.estimated_costs_eur = costs.total_eur
    quote.travel_included = costs.travel_included


@transaction.atomic
def build_quote(
    *,
    actor,
    treatment_request: TreatmentRequest,
    consultations: int | None = None,
    imaging: dict[str, int] | None = None,
    anaesthesia: bool | None = None,
    first_consultation_on: datetime.date | None = None,
    companions: int | None = None,
    return_journey_per_person_eur: Decimal | None = None,
) -> Quote:
    """Staff build a draft quote from the oncologist's accepted indication (its number of fractions).

    Children (under 18) get the anaesthesia lines unless staff say otherwise; earlier drafts of
    the request are superseded.
    """
    _require_manager(actor)
    r = _locked_request(treatment_request)
    if not r.is_international:
        raise ValidationError(_("Patients covered by French health insurance receive no quote."), code="domestic")
    if r.state != State.ACCEPTED:
        raise ValidationError(_("A quote is built once the request is accepted (and not already quoted)."), code="state")
    if not r.proposed_fractions:
        raise ValidationError(_("The accepted indication has no number of fractions."), code="fractions")
    if consultations is not None and (isinstance(consultations, bool) or consultations < 0):
        raise ValidationError(_("The number of consultations must be zero or more."), code="consultations")
    first_day = selectors.next_working_day(first_consultation_on or selectors.planned_first_consultation(r))
    if first_day < timezone.localdate():
        raise ValidationError(_("The first consultation cannot be in the past."), code="date")
    if return_journey_per_person_eur is not None:
        return_journey_per_person_eur = quote_rules.money_eur(Decimal(str(return_journey_per_person_eur)))
        if return_journey_per_person_eur < 0:
            raise ValidationError(_("A journey cannot cost less than nothing."), code="journey")
    for old in r.quotes.filter(status=QuoteStatus.DRAFT):
        old.status = QuoteStatus.SUPERSEDED
        old.save(update_fields=["status"])
        audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=old, summary="superseded")
    fractions = r.proposed_fractions
    quote = Quote(
        treatment_request=r,
        number=_next_number(),
        fractions=fractions,
        consultations=default_consultations(fractions) if consultations is None else consultations,
        anaesthesia=r.patient.is_child if anaesthesia is None else bool(anaesthesia),
        companions=r.companions.count() if companions is None else max(0, int(companions)),
        created_by=actor,
        first_consultation_on=first_day,
        # Filled in by _fill below.
        stay_first_day=first_day,
        stay_last_day=first_day,
        first_fraction_on=first_day,
        last_fraction_on=first_day,
        tariff_version="",
    )
    quote.save()
    imaging_counts = _imaging(imaging)
    _fill(
        quote,
        imaging=imaging_counts,
        on=timezone.localdate(),
        first_consultation_on=first_day,
        return_journey_per_person_eur=return_journey_per_person_eur,
    )
    quote.full_clean()
    quote.save()
    TravelPlan.objects.update_or_create(
        treatment_request=r, defaults={"first_consultation_on": first_day, "updated_by": actor, "updated_at": timezone.now()}
    )
    audit.record(actor=actor, action=AuditEvent.Action.CREATE, obj=quote, summary=f"quote draft total={quote.total_eur}")
    return quote


@transaction.atomic
def send_quote(*, actor, quote: Quote) -> Quote:
    """Freeze the draft (its lines priced from the tariff in force today) and send it: request → quote sent."""
    _require_manager(actor)
    quote = _locked_quote(quote)
    if quote.status != QuoteStatus.DRAFT:
        raise ValidationError(_("Only a draft quote can be sent."), code="status")
    if quote.treatment_request.state != State.ACCEPTED:
        raise ValidationError(_("The request is not waiting for a quote."), code="state")
    today = timezone.localdate()
    if quote.stay_first_day <= today:
        raise ValidationError(_("The planned stay has started: build a new quote with a later date."), code="date")
    # The tariff may have changed since the draft: a sent quote carries the prices of its sending day.
    imaging = {line.code: line.quantity for line in quote.lines.all() if line.code.startswith(quote_rules.IMAGING_PREFIX)}
    journey = next((c.unit_price_eur for c in quote.cost_lines.all() if c.code == "return_journey"), None)
    _fill(quote, imaging=imaging, on=today, first_consultation_on=quote.first_consultation_on, return_journey_per_person_eur=journey)
    quote.status = QuoteStatus.SENT
    quote.issued_at = timezone.now()
    quote.issued_by = actor
    quote.full_clean()
    quote.save()
    audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=quote, summary=f"quote sent total={quote.total_eur}")
    referral_services.perform(actor=actor, treatment_request=quote.treatment_request, action="send_quote")
    return quote


def _answer(*, actor, quote: Quote, accept: bool, reason: str = "") -> Quote:
    r = quote.treatment_request
    if not referral_selectors.is_owner(actor, r):
        audit.record(actor=actor, action=AuditEvent.Action.DENIED, obj=quote, summary="answer quote")
        raise PermissionDenied(_("Only the patient (or the doctor who made the request) answers the quote."))
    reason = (reason or "").strip()
    if not accept and not reason:
        raise ValidationError(_("Please give a reason."), code="note")
    with transaction.atomic():
        quote = _locked_quote(quote)
        if quote.status != QuoteStatus.SENT:
            raise ValidationError(_("This quote is not waiting for an answer."), code="status")
        quote.status = QuoteStatus.ACCEPTED if accept else QuoteStatus.REFUSED
        quote.decided_at = timezone.now()
        quote.decided_by = actor
        quote.refusal_reason = "" if accept else reason
        quote.save(update_fields=["status", "decided_at", "decided_by", "refusal_reason"])
        audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=quote, summary=f"quote {quote.status}")
        referral_services.perform(
            actor=actor, treatment_request=quote.treatment_request, action="accept_quote" if accept else "refuse_quote", note=reason
        )
    return quote


def accept_quote(*, actor, quote: Quote) -> Quote:
    """The patient accepts the sent quote online: request → quote accepted."""
    return _answer(actor=actor, quote=quote, accept=True)


def refuse_quote(*, actor, quote: Quote, reason: str) -> Quote:
    """The patient refuses the sent quote online, with a reason: the request is back to accepted."""
    return _answer(actor=actor, quote=quote, accept=False, reason=reason)


# Payments -------------------------------------------------------------------------------------


class PaymentNeedsConfirmation(ValidationError):
    """The payment looks wrong (overpayment, reference already recorded): nothing was recorded;
    staff confirm to record it anyway. ``warnings`` are the rules' warnings, ``messages`` their text."""

    def __init__(self, warnings, messages):
        super().__init__([ValidationError(m, code="confirm") for m in messages])
        self.code = "confirm"
        self.warnings = tuple(warnings)


def _warning_messages(warnings, *, quote: Quote, reference: str, reused_on: list[str]) -> list[str]:
    from django.utils.translation import get_language

    from protonpath.international.formatting import format_eur

    def eur(amount):
        return format_eur(amount, get_language())

    texts = []
    for warning in warnings:
        if warning.code == "overpayment":
            texts.append(
                _("This payment would exceed the quote's total (%(total)s) by %(amount)s: the surplus would have to be refunded.")
                % {"total": eur(quote.total_eur), "amount": eur(warning.amount_eur)}
            )
        else:
            texts.append(
                _("The bank reference %(reference)s is already recorded (quote %(numbers)s): is it the same transfer entered twice?")
                % {"reference": reference, "numbers": ", ".join(reused_on) or quote.number}
            )
    return texts


def record_payment(
    *,
    actor,
    quote: Quote,
    amount_eur,
    paid_on: datetime.date,
    method: str,
    reference: str,
    kind: str = PaymentKind.PAYMENT,
    note: str = "",
    confirmed: bool = False,
) -> Payment:
    """Record money received for an accepted quote, or a refund (e.g. on cancellation).

    A payment beyond the quote's total, or with a bank reference already recorded, is held
    (:class:`PaymentNeedsConfirmation`, audited) until staff confirm it (``confirmed=True``; the
    audit row says what they confirmed).
    """
    try:
        return _record_payment(
            actor=actor, quote=quote, amount_eur=amount_eur, paid_on=paid_on, method=method, reference=reference,
            kind=kind, note=note, confirmed=confirmed,
        )
    except PaymentNeedsConfirmation as held:
        # Outside the write's transaction, which rolled back: the hold stays in the trail.
        audit.record(
            actor=actor,
            action=AuditEvent.Action.DENIED,
            obj=quote,
            treatment_request_id=quote.treatment_request_id,
            summary="payment held for confirmation: " + ",".join(w.code for w in held.warnings),
        )
        raise


@transaction.atomic
def _record_payment(*, actor, quote: Quote, amount_eur, paid_on, method, reference, kind, note, confirmed) -> Payment:
    _require_manager(actor)
    quote = _locked_quote(quote)
    if quote.status != QuoteStatus.ACCEPTED:
        raise ValidationError(_("Payments are recorded against an accepted quote."), code="status")
    if kind not in PaymentKind.values or method not in PaymentMethod.values:
        raise ValidationError(_("Unknown kind or method of payment."), code="kind")
    if paid_on > timezone.localdate():
        raise ValidationError(_("A payment cannot be dated in the future."), code="date")
    recorded = selectors.rule_payments(quote.payments.all())
    try:
        row = PaymentRow(kind, Decimal(str(amount_eur)), paid_on, method, reference or "")
        payment_balance(quote.total_eur, [*recorded, row])
    except (ValueError, ArithmeticError) as exc:
        message = str(exc)
        if "exceed" in message:
            message = _("A refund cannot exceed what was paid.")
        elif "reference" in message:
            message = _("A payment needs its reference.")
        elif "positive" in message:
            message = _("The amount must be positive.")
        raise ValidationError(message, code="amount") from None
    wanted = payment_rules.normalised_reference(row.reference)
    reused_on = sorted(
        {
            number
            for ref, number in Payment.objects.filter(kind=PaymentKind.PAYMENT).values_list("reference", "quote__number")
            if payment_rules.normalised_reference(ref) == wanted
        }
    )
    elsewhere = [row.reference] if reused_on else []
    warnings = payment_rules.payment_warnings(
        quote.total_eur, [p for p in recorded if p.kind is payment_rules.PaymentKind.PAYMENT], row, elsewhere
    )
    codes = ",".join(w.code for w in warnings)
    if warnings and not confirmed:
        raise PaymentNeedsConfirmation(
            warnings, _warning_messages(warnings, quote=quote, reference=row.reference.strip(), reused_on=reused_on)
        )
    payment = Payment(
        quote=quote,
        kind=kind,
        amount_eur=row.amount_eur,
        paid_on=paid_on,
        method=method,
        reference=reference.strip(),
        note=note.strip()[:300],
        recorded_by=actor,
    )
    payment.full_clean()
    payment.save()
    audit.record(
        actor=actor,
        action=AuditEvent.Action.CREATE,
        obj=payment,
        treatment_request_id=quote.treatment_request_id,
        summary=f"{kind} {payment.amount_eur} EUR quote={quote.number}" + (f" confirmed despite: {codes}" if warnings else ""),
    )
    return payment


def record_full_payment(*, actor, treatment_request: TreatmentRequest) -> TreatmentRequest:
    """Staff confirm the quote is paid in full (refused by :func:`path_guard` until it is): request → paid."""
    _require_manager(actor)
    return referral_services.perform(actor=actor, treatment_request=treatment_request, action="record_full_payment")


# The guard on the patient's path ---------------------------------------------------------------


def path_guard(action: str, treatment_request: TreatmentRequest, actor) -> None:
    """Registered in ``referrals.services.TRANSITION_GUARDS``: the quote steps need a quote here."""
    if not treatment_request.is_international:
        return
    quote = selectors.current_quote(treatment_request)
    if action == "send_quote" and (quote is None or quote.status != QuoteStatus.SENT):
        raise ValidationError(_("Build the quote and send it from its page."), code="no_quote")
    if action == "accept_quote" and (quote is None or quote.status != QuoteStatus.ACCEPTED):
        raise ValidationError(_("Open the quote to accept or refuse it."), code="quote")
    if action == "refuse_quote" and (quote is None or quote.status != QuoteStatus.REFUSED):
        raise ValidationError(_("Open the quote to accept or refuse it."), code="quote")
    if action in ("record_full_payment", "book_consultation") and not selectors.is_paid_in_full(treatment_request):
        raise ValidationError(_("The accepted quote is not paid in full."), code="unpaid")


# Travel: plan, accompanying persons, earlier stays ----------------------------------------------


def _may_edit_travellers(actor, treatment_request: TreatmentRequest) -> bool:
    return treatment_request.is_open and (
        referral_selectors.is_owner(actor, treatment_request) or selectors.may_manage(actor)
    )


@transaction.atomic
def set_travel_plan(*, actor, treatment_request: TreatmentRequest, first_consultation_on: datetime.date, medical_emergency: bool) -> TravelPlan:
    _require_manager(actor)
    plan, _created = TravelPlan.objects.update_or_create(
        treatment_request=treatment_request,
        defaults={
            "first_consultation_on": first_consultation_on,
            "medical_emergency": bool(medical_emergency),
            "updated_by": actor,
            "updated_at": timezone.now(),
        },
    )
    audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=plan, summary=f"emergency={bool(medical_emergency)}")
    return plan


@transaction.atomic
def set_patient_passport(*, actor, treatment_request: TreatmentRequest, passport_number: str):
    """The patient's own passport number, for their consulate letter (given or corrected late,
    when the request form can no longer be changed). Audited without the number itself."""
    if not _may_edit_travellers(actor, treatment_request):
        raise PermissionDenied(_("You may not do this."))
    patient = treatment_request.patient
    value = (passport_number or "").strip()
    patient._meta.get_field("passport_number").clean(value, patient)
    patient.passport_number = value
    patient.save(update_fields=["passport_number"])
    audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=patient, summary="passport number")
    return patient


@transaction.atomic
def add_companion(*, actor, treatment_request: TreatmentRequest, data: dict) -> AccompanyingPerson:
    if not _may_edit_travellers(actor, treatment_request):
        raise PermissionDenied(_("You may not do this."))
    fields = ("first_name", "last_name", "birth_date", "nationality", "passport_number", "relationship", "justification")
    companion = AccompanyingPerson(treatment_request=treatment_request, **{k: data.get(k) or ("" if k != "birth_date" else None) for k in fields})
    companion.relationship_kind = data.get("relationship_kind") or ""
    if not companion.relationship_kind:
        # A caller that gives the relationship in words ("mother", "époux"): its kind when known.
        companion.relationship_kind, companion.relationship = relationship_of(companion.relationship)
    elif companion.relationship_kind != Relationship.OTHER:
        companion.relationship = ""
    companion.legal_guardian = bool(data.get("legal_guardian"))
    companion.nationality = (companion.nationality or "").strip().upper()
    companion.full_clean()
    companion.save()
    audit.record(actor=actor, action=AuditEvent.Action.CREATE, obj=companion, summary="accompanying person")
    return companion


@transaction.atomic
def remove_companion(*, actor, companion: AccompanyingPerson) -> None:
    if not _may_edit_travellers(actor, companion.treatment_request):
        raise PermissionDenied(_("You may not do this."))
    audit.record(actor=actor, action=AuditEvent.Action.DELETE, obj=companion, summary="accompanying person")
    companion.delete()


@transaction.atomic
def add_declared_stay(
    *, actor, treatment_request: TreatmentRequest, entry_on: datetime.date, exit_on: datetime.date, companion: AccompanyingPerson | None = None
) -> DeclaredStay:
    if not _may_edit_travellers(actor, treatment_request):
        raise PermissionDenied(_("You may not do this."))
    if exit_on > timezone.localdate():
        raise ValidationError(_("Declare stays that have already ended."), code="dates")
    stay = DeclaredStay(treatment_request=treatment_request, companion=companion, entry_on=entry_on, exit_on=exit_on)
    stay.full_clean()
    stay.save()
    audit.record(actor=actor, action=AuditEvent.Action.CREATE, obj=stay, summary="earlier stay")
    return stay


@transaction.atomic
def remove_declared_stay(*, actor, stay: DeclaredStay) -> None:
    if not _may_edit_travellers(actor, stay.treatment_request):
        raise PermissionDenied(_("You may not do this."))
    audit.record(actor=actor, action=AuditEvent.Action.DELETE, obj=stay, summary="earlier stay")
    stay.delete()


# The department's details (contact, signatory, bank) ---------------------------------------------


@transaction.atomic
def save_department_details(*, actor, data: dict):
    """Staff edit what quotes and letters print and what patients are told to pay with."""
    from protonpath.international.models import DepartmentDetails

    _require_manager(actor)
    details = DepartmentDetails.objects.select_for_update().order_by("pk").first() or DepartmentDetails()
    for field, value in data.items():
        setattr(details, field, value)
    details.updated_by = actor
    details.updated_at = timezone.now()
    details.full_clean()
    details.save()
    audit.record(actor=actor, action=AuditEvent.Action.UPDATE, obj=details, summary="department details: " + ",".join(sorted(data)))
    return details
