"""API for patients from abroad: quotes, payments and the visa assessment (same rules as the pages)."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Literal

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from ninja import Router, Schema

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent
from protonpath.international import pdf, selectors, services
from protonpath.international.models import PaymentKind, PaymentMethod
from protonpath.referrals import selectors as referral_selectors

router = Router(tags=["international"])


class Error(Schema):
    detail: list[str] | str


class QuoteLineOut(Schema):
    code: str
    label_en: str
    label_fr: str
    unit_en: str
    unit_fr: str
    quantity: int
    unit_price_eur: Decimal
    total_eur: Decimal


class CostLineOut(Schema):
    code: str
    label_en: str
    label_fr: str
    persons: int
    quantity: int
    unit_price_eur: Decimal
    total_eur: Decimal


class QuoteOut(Schema):
    id: int
    number: str
    request_id: int
    status: str
    currency: str
    total_eur: Decimal
    tariff_version: str
    illustrative: bool
    fractions: int
    consultations: int
    anaesthesia: bool
    first_consultation_on: datetime.date
    stay_first_day: datetime.date
    stay_last_day: datetime.date
    first_fraction_on: datetime.date
    last_fraction_on: datetime.date
    companions: int
    estimated_costs_eur: Decimal
    issued_at: datetime.datetime | None
    decided_at: datetime.datetime | None
    refusal_reason: str
    lines: list[QuoteLineOut]
    cost_lines: list[CostLineOut]

    @staticmethod
    def resolve_request_id(obj) -> int:
        return obj.treatment_request_id

    @staticmethod
    def resolve_lines(obj):
        return list(obj.lines.all())

    @staticmethod
    def resolve_cost_lines(obj):
        return list(obj.cost_lines.all())


class QuoteIn(Schema):
    consultations: int | None = None
    imaging: dict[str, int] | None = None
    anaesthesia: bool | None = None
    first_consultation_on: datetime.date | None = None
    companions: int | None = None
    return_journey_per_person_eur: Decimal | None = None


class RefuseIn(Schema):
    reason: str


class PaymentIn(Schema):
    kind: Literal[tuple(PaymentKind.values)] = "payment"  # type: ignore[valid-type]
    amount_eur: Decimal
    paid_on: datetime.date
    method: Literal[tuple(PaymentMethod.values)]  # type: ignore[valid-type]
    reference: str
    note: str = ""
    #: Record it although the API answered 400 because it would overpay the quote or its bank
    #: reference is already recorded (the audit trail keeps what was confirmed).
    confirmed: bool = False


class PaymentOut(Schema):
    id: int
    kind: str
    amount_eur: Decimal
    paid_on: datetime.date
    method: str
    reference: str
    note: str
    recorded_at: datetime.datetime


class BalanceOut(Schema):
    quote_total_eur: Decimal
    paid_eur: Decimal
    refunded_eur: Decimal
    net_paid_eur: Decimal
    balance_due_eur: Decimal
    overpaid_eur: Decimal
    paid_in_full: bool


class PaymentsOut(Schema):
    payments: list[PaymentOut]
    balance: BalanceOut


class TravellerOut(Schema):
    reference: str
    role: str
    nationality: str
    regime: str
    requirement: str
    max_days_in_window: int | None
    first_day_over_limit: datetime.date | None
    reasons: list[str]
    missing_information: list[str]
    advice: str


class VisaOut(Schema):
    stay_first_day: datetime.date | None
    stay_last_day: datetime.date | None
    stay_days: int | None
    regimes_version: str
    legal_source: str
    travellers: list[TravellerOut]
    error: str


def _request(user, request_id: int):
    r = referral_selectors.get_request_for(user, request_id, audit_view=False)
    if not r.is_international or not selectors.may_see_quotes(user, r):
        raise Http404
    return r


def _balance(quote) -> dict:
    b = selectors.quote_balance(quote)
    return {**b.__dict__, "paid_in_full": b.paid_in_full}


@router.get("/requests/{int:request_id}/quotes", response={200: list[QuoteOut], 404: Error})
def list_quotes(request, request_id: int):
    r = _request(request.auth, request_id)
    audit.record(actor=request.auth, action=AuditEvent.Action.VIEW, obj=r, summary="quotes")
    return list(selectors.quotes_for(request.auth, r))


@router.post("/requests/{int:request_id}/quotes", response={201: QuoteOut, 400: Error, 403: Error, 404: Error})
def build_quote(request, request_id: int, payload: QuoteIn):
    r = _request(request.auth, request_id)
    quote = services.build_quote(actor=request.auth, treatment_request=r, **payload.dict())
    return 201, quote


@router.get("/quotes/{int:quote_id}", response={200: QuoteOut, 404: Error})
def get_quote(request, quote_id: int):
    return selectors.get_quote_for(request.auth, quote_id)


@router.get("/quotes/{int:quote_id}/pdf", response={200: None, 404: Error})
def quote_pdf(request, quote_id: int, lang: str | None = None):
    quote = selectors.get_quote_for(request.auth, quote_id, audit_view=False)
    language = pdf.choose_language(lang, request.auth)
    data = pdf.quote_pdf(quote, language=language)
    audit.record(actor=request.auth, action=AuditEvent.Action.DOWNLOAD, obj=quote, summary=f"quote pdf {language}")
    response = HttpResponse(data, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{pdf.pdf_filename("quote", quote.number, language)}"'
    return response


@router.post("/quotes/{int:quote_id}/send", response={200: QuoteOut, 400: Error, 403: Error, 404: Error})
def send_quote(request, quote_id: int):
    quote = selectors.get_quote_for(request.auth, quote_id, audit_view=False)
    return services.send_quote(actor=request.auth, quote=quote)


@router.post("/quotes/{int:quote_id}/accept", response={200: QuoteOut, 400: Error, 403: Error, 404: Error})
def accept_quote(request, quote_id: int):
    quote = selectors.get_quote_for(request.auth, quote_id, audit_view=False)
    return services.accept_quote(actor=request.auth, quote=quote)


@router.post("/quotes/{int:quote_id}/refuse", response={200: QuoteOut, 400: Error, 403: Error, 404: Error})
def refuse_quote(request, quote_id: int, payload: RefuseIn):
    quote = selectors.get_quote_for(request.auth, quote_id, audit_view=False)
    return services.refuse_quote(actor=request.auth, quote=quote, reason=payload.reason)


@router.get("/quotes/{int:quote_id}/payments", response={200: PaymentsOut, 403: Error, 404: Error})
def list_payments(request, quote_id: int):
    quote = selectors.get_quote_for(request.auth, quote_id, audit_view=False)
    if not request.auth.is_department_staff and not referral_selectors.is_owner(request.auth, quote.treatment_request):
        raise PermissionDenied
    audit.record(actor=request.auth, action=AuditEvent.Action.VIEW, obj=quote, summary="payments")
    return {"payments": list(quote.payments.all()), "balance": _balance(quote)}


@router.post("/quotes/{int:quote_id}/payments", response={201: PaymentOut, 400: Error, 403: Error, 404: Error})
def record_payment(request, quote_id: int, payload: PaymentIn):
    quote = selectors.get_quote_for(request.auth, quote_id, audit_view=False)
    return 201, services.record_payment(actor=request.auth, quote=quote, **payload.dict())


@router.post("/requests/{int:request_id}/full-payment", response={200: BalanceOut, 400: Error, 403: Error, 404: Error})
def record_full_payment(request, request_id: int):
    r = _request(request.auth, request_id)
    services.record_full_payment(actor=request.auth, treatment_request=r)
    return _balance(selectors.accepted_quote(r))


@router.get("/requests/{int:request_id}/visa", response={200: VisaOut, 404: Error})
def visa(request, request_id: int):
    r = _request(request.auth, request_id)
    audit.record(actor=request.auth, action=AuditEvent.Action.VIEW, obj=r, summary="visa assessment")
    assessment = selectors.visa_assessment(r)
    trip = assessment.trip
    stay = assessment.expected.stay if assessment.expected else None
    travellers = []
    for t in trip.travellers if trip else ():
        travellers.append(
            {
                "reference": t.reference,
                "role": str(t.role),
                "nationality": t.country.alpha_2,
                "regime": str(t.regime),
                "requirement": str(t.requirement),
                "max_days_in_window": t.window.max_days_in_window if t.window else None,
                "first_day_over_limit": t.window.first_day_over_limit if t.window else None,
                "reasons": [reason.message for reason in t.reasons],
                "missing_information": [reason.message for reason in t.missing_information],
                "advice": t.application.message if t.application else "",
            }
        )
    return {
        "stay_first_day": stay.first_day if stay else None,
        "stay_last_day": stay.last_day if stay else None,
        "stay_days": stay.days if stay else None,
        "regimes_version": trip.regimes_version if trip else "",
        "legal_source": trip.legal_source_title if trip else "",
        "travellers": travellers,
        "error": assessment.error,
    }
