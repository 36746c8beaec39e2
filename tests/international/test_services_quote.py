"""Quotes: built from the accepted indication, sent frozen, answered by the patient; the path follows."""

import datetime
from decimal import Decimal

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError

from protonpath.accounts.models import AuditEvent
from protonpath.international import selectors, services
from protonpath.international.models import QuoteLine, QuoteStatus, Tariff
from protonpath.referrals import services as referral_services
from protonpath.referrals.models import State
from tests.factories import advance_to, make_request

pytestmark = pytest.mark.django_db


def test_a_draft_quote_prices_the_accepted_fractions_from_the_tariff(accepted, staff):
    quote = services.build_quote(actor=staff, treatment_request=accepted)
    lines = {line.code: line for line in quote.lines.all()}
    assert lines["proton_fraction"].quantity == 30
    assert lines["proton_fraction"].unit_price_eur == Decimal("1250.00")
    assert lines["treatment_planning"].quantity == 1
    # 2 + one review per treatment week (30 fractions = 6 weeks).
    assert lines["consultation_oncologist"].quantity == 8
    assert "anaesthesia_session" not in lines  # an adult
    assert quote.total_eur == sum(line.total_eur for line in lines.values())
    assert quote.total_eur == Decimal("30") * 1250 + 6500 + 8 * 120 + 350 + 450
    assert quote.status == QuoteStatus.DRAFT
    assert AuditEvent.objects.filter(action="create", object_type="international.quote", object_id=str(quote.pk)).exists()


def test_the_stay_estimate_is_separate_from_the_amount_to_pay(accepted, staff):
    quote = services.build_quote(actor=staff, treatment_request=accepted, companions=1)
    codes = [c.code for c in quote.cost_lines.all()]
    assert "accommodation_additional_persons" in codes and "meals" in codes
    assert quote.estimated_costs_eur == sum(c.total_eur for c in quote.cost_lines.all())
    assert quote.estimated_costs_eur > 0
    assert not {c.code for c in quote.lines.all()} & set(codes)
    # 30 fractions on working days after 10 working days of planning: more than six weeks.
    assert quote.stay_days > 42
    assert quote.first_fraction_on > quote.first_consultation_on


def test_a_child_gets_anaesthesia_for_every_session_and_exam(tariff, patient, staff, oncologist):
    child_birth = datetime.date.today().replace(year=datetime.date.today().year - 6)
    r = make_request(patient)
    r.patient.birth_date = child_birth
    r.patient.save()
    r = advance_to(r, "accepted", staff=staff, oncologist=oncologist)
    quote = services.build_quote(actor=staff, treatment_request=r)
    lines = {line.code: line.quantity for line in quote.lines.all()}
    assert lines["anaesthesia_consultation"] == 1
    assert lines["anaesthesia_session"] == 30 + 2  # each fraction and each of the two exams


def test_only_administrative_staff_and_head_build_quotes(accepted, users):
    for name in ("patient", "doctor", "oncologist", "physicist"):
        with pytest.raises(PermissionDenied):
            services.build_quote(actor=users[name], treatment_request=accepted)
    assert services.build_quote(actor=users["head"], treatment_request=accepted).pk


def test_no_quote_before_acceptance_nor_for_insured_patients(tariff, patient, doctor, staff, oncologist):
    in_review = advance_to(make_request(patient), "in_review", staff=staff, oncologist=oncologist)
    with pytest.raises(ValidationError):
        services.build_quote(actor=staff, treatment_request=in_review)
    insured = advance_to(make_request(doctor, covered_by_french_insurance=True), "accepted", staff=staff, oncologist=oncologist)
    with pytest.raises(ValidationError):
        services.build_quote(actor=staff, treatment_request=insured)


def test_no_quote_without_a_tariff(patient, staff, oncologist):
    r = advance_to(make_request(patient), "accepted", staff=staff, oncologist=oncologist)
    with pytest.raises(ValidationError) as excinfo:
        services.build_quote(actor=staff, treatment_request=r)
    assert "tariff" in str(excinfo.value)


def test_sending_freezes_the_quote_and_moves_the_request(accepted, staff, django_capture_on_commit_callbacks):
    quote = services.build_quote(actor=staff, treatment_request=accepted)
    with django_capture_on_commit_callbacks(execute=True):
        services.send_quote(actor=staff, quote=quote)
    accepted.refresh_from_db()
    quote.refresh_from_db()
    assert accepted.state == State.QUOTE_SENT
    assert quote.status == QuoteStatus.SENT and quote.issued_by == staff and quote.issued_at
    assert any(accepted.patient.email in m.to for m in mail.outbox)
    line = quote.lines.first()
    line.quantity = 1
    with pytest.raises(ValidationError):
        line.save()
    with pytest.raises(ValidationError):
        services.send_quote(actor=staff, quote=quote)


def test_a_sent_quote_keeps_its_prices_when_the_tariff_changes(sent_quote, staff):
    before = {line.code: line.unit_price_eur for line in sent_quote.lines.all()}
    total = sent_quote.total_eur
    services.add_tariff_price(
        actor=staff,
        code="proton_fraction",
        label_en="Proton therapy session (fraction)",
        label_fr="Séance de protonthérapie (fraction)",
        unit_en="fraction",
        unit_fr="fraction",
        unit_price_eur="1400.00",
        valid_from=datetime.date.today(),
    )
    sent_quote.refresh_from_db()
    assert {line.code: line.unit_price_eur for line in sent_quote.lines.all()} == before
    assert sent_quote.total_eur == total
    # The used tariff row cannot be edited.
    used = Tariff.objects.get(code="proton_fraction", valid_from=datetime.date(2026, 1, 1))
    used.unit_price_eur = Decimal("1.00")
    with pytest.raises(ValidationError):
        used.save()


def test_a_new_quote_uses_the_new_price(accepted, staff):
    services.add_tariff_price(
        actor=staff,
        code="proton_fraction",
        label_en="Proton therapy session (fraction)",
        label_fr="Séance de protonthérapie (fraction)",
        unit_en="fraction",
        unit_fr="fraction",
        unit_price_eur="1400.00",
        valid_from=datetime.date.today(),
    )
    quote = services.build_quote(actor=staff, treatment_request=accepted)
    assert quote.lines.get(code="proton_fraction").unit_price_eur == Decimal("1400.00")


def test_sending_prices_the_draft_with_the_tariff_of_the_sending_day(accepted, staff):
    quote = services.build_quote(actor=staff, treatment_request=accepted)
    services.add_tariff_price(
        actor=staff,
        code="treatment_planning",
        label_en="Treatment planning",
        label_fr="Préparation du traitement",
        unit_en="course",
        unit_fr="traitement",
        unit_price_eur="7000.00",
        valid_from=datetime.date.today(),
    )
    quote = services.send_quote(actor=staff, quote=quote)
    assert QuoteLine.objects.get(quote=quote, code="treatment_planning").unit_price_eur == Decimal("7000.00")


def test_a_new_draft_supersedes_the_previous_draft(accepted, staff):
    first = services.build_quote(actor=staff, treatment_request=accepted)
    second = services.build_quote(actor=staff, treatment_request=accepted)
    first.refresh_from_db()
    assert first.status == QuoteStatus.SUPERSEDED
    assert selectors.current_quote(accepted) == second
    assert first.number != second.number


def test_the_path_refuses_to_send_a_quote_that_does_not_exist(accepted, staff):
    with pytest.raises(ValidationError) as excinfo:
        referral_services.perform(actor=staff, treatment_request=accepted, action="send_quote")
    assert "quote" in str(excinfo.value)
    services.build_quote(actor=staff, treatment_request=accepted)
    with pytest.raises(ValidationError):  # a draft is not sent
        referral_services.perform(actor=staff, treatment_request=accepted, action="send_quote")
    accepted.refresh_from_db()
    assert accepted.state == State.ACCEPTED


def test_the_patient_accepts_the_quote(sent_quote, patient):
    quote = services.accept_quote(actor=patient, quote=sent_quote)
    r = quote.treatment_request
    r.refresh_from_db()
    assert quote.status == QuoteStatus.ACCEPTED and quote.decided_by == patient
    assert r.state == State.QUOTE_ACCEPTED


def test_the_referring_doctor_who_made_the_request_may_answer(tariff, doctor, staff, oncologist):
    r = advance_to(make_request(doctor), "accepted", staff=staff, oncologist=oncologist)
    quote = services.send_quote(actor=staff, quote=services.build_quote(actor=staff, treatment_request=r))
    services.accept_quote(actor=doctor, quote=quote)
    r.refresh_from_db()
    assert r.state == State.QUOTE_ACCEPTED


def test_the_patient_refuses_with_a_reason_and_the_request_goes_back(sent_quote, patient, staff):
    with pytest.raises(ValidationError):
        services.refuse_quote(actor=patient, quote=sent_quote, reason="  ")
    quote = services.refuse_quote(actor=patient, quote=sent_quote, reason="Too expensive for us.")
    r = quote.treatment_request
    r.refresh_from_db()
    assert quote.status == QuoteStatus.REFUSED and quote.refusal_reason == "Too expensive for us."
    assert r.state == State.ACCEPTED
    # Staff may then prepare another quote.
    assert services.build_quote(actor=staff, treatment_request=r).status == QuoteStatus.DRAFT


def test_nobody_else_answers_the_quote(sent_quote, users):
    for name in ("other_patient", "other_doctor", "staff", "oncologist", "head"):
        with pytest.raises(PermissionDenied):
            services.accept_quote(actor=users[name], quote=sent_quote)
    sent_quote.refresh_from_db()
    assert sent_quote.status == QuoteStatus.SENT
    assert AuditEvent.objects.filter(action="denied", object_type="international.quote").count() == 5


def test_the_generic_path_buttons_cannot_answer_without_the_quote(sent_quote, patient):
    with pytest.raises(ValidationError):
        referral_services.perform(actor=patient, treatment_request=sent_quote.treatment_request, action="accept_quote")
    sent_quote.treatment_request.refresh_from_db()
    assert sent_quote.treatment_request.state == State.QUOTE_SENT


def test_an_answered_quote_cannot_be_answered_again(accepted_quote, patient):
    with pytest.raises(ValidationError):
        services.refuse_quote(actor=patient, quote=accepted_quote, reason="Changed my mind")
