"""The patient's path: each transition, who may do it, what it records and whom it tells."""

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError

from protonpath.accounts.models import AuditEvent
from protonpath.referrals import services
from protonpath.referrals.models import State, StateChange
from tests.factories import advance_to, make_request
from tests.facts import course_with_sessions, give_pending_sessions, hold_first_consultation

pytestmark = pytest.mark.django_db


def test_a_new_request_is_a_draft_with_a_reference_and_an_audit_line(patient):
    r = make_request(patient, complete=False, submit=False)
    assert r.state == State.DRAFT
    assert r.reference.startswith("PP-")
    assert AuditEvent.objects.filter(action="create", object_id=str(r.pk), actor=patient).exists()


def test_submission_records_history_audit_and_tells_patient_and_staff(patient, staff, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        r = make_request(patient)
    assert r.state == State.SUBMITTED
    change = StateChange.objects.get(treatment_request=r)
    assert (change.from_state, change.to_state, change.actor) == (State.DRAFT, State.SUBMITTED, patient)
    event = AuditEvent.objects.get(action="transition", treatment_request_id=r.pk)
    assert (event.from_state, event.to_state, event.actor_id) == ("draft", "submitted", patient.pk)
    recipients = {address for message in mail.outbox for address in message.to}
    assert r.patient.email in recipients and staff.email in recipients
    # No medical content in notifications.
    assert all("Chordoma" not in m.body and "Clivus" not in m.body for m in mail.outbox)


def test_staff_cannot_mark_a_file_complete_while_documents_are_missing(patient, staff):
    r = make_request(patient, complete=False)
    with pytest.raises(ValidationError) as excinfo:
        services.mark_complete(actor=staff, treatment_request=r)
    assert "Letter from the referring doctor" in str(excinfo.value)
    r.refresh_from_db()
    assert r.state == State.SUBMITTED


def test_incomplete_file_goes_back_to_the_patient_and_returns(patient, staff):
    r = make_request(patient, complete=False)
    services.mark_incomplete(actor=staff, treatment_request=r, missing="The imaging report, please.")
    r.refresh_from_db()
    assert r.state == State.INCOMPLETE and r.missing_information == "The imaging report, please."
    services.resubmit(actor=patient, treatment_request=r)
    r.refresh_from_db()
    assert r.state == State.SUBMITTED


def test_reasons_are_required_where_the_path_needs_them(patient, staff):
    r = make_request(patient)
    with pytest.raises(ValidationError):
        services.mark_incomplete(actor=staff, treatment_request=r, missing="   ")
    with pytest.raises(ValidationError):
        services.cancel(actor=patient, treatment_request=r, reason="")


def test_only_oncologists_decide(patient, staff, oncologist, head, physicist):
    r = advance_to(make_request(patient), "in_review", staff=staff, oncologist=oncologist)
    for user in (patient, staff, head, physicist):
        with pytest.raises(PermissionDenied):
            services.decide(actor=user, treatment_request=r, decision="accept", dose_gy=54, fractions=30)
    assert AuditEvent.objects.filter(action="denied", treatment_request_id=r.pk).count() == 4
    services.decide(actor=oncologist, treatment_request=r, decision="accept", dose_gy=54, fractions=30, note="ok")
    r.refresh_from_db()
    assert r.state == State.ACCEPTED and r.proposed_fractions == 30 and r.decided_by == oncologist


def test_acceptance_needs_dose_and_fractions_in_range(patient, staff, oncologist):
    r = advance_to(make_request(patient), "in_review", staff=staff, oncologist=oncologist)
    with pytest.raises(ValidationError):
        services.decide(actor=oncologist, treatment_request=r, decision="accept")
    with pytest.raises(ValidationError):
        services.decide(actor=oncologist, treatment_request=r, decision="accept", dose_gy=54, fractions=0)
    with pytest.raises(ValidationError):
        services.decide(actor=oncologist, treatment_request=r, decision="accept", dose_gy=120, fractions=30)
    r.refresh_from_db()
    assert r.state == State.IN_REVIEW


def test_decision_is_sent_once_by_staff(patient, staff, oncologist, django_capture_on_commit_callbacks):
    r = advance_to(make_request(patient), "accepted", staff=staff, oncologist=oncologist)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.send_decision(actor=staff, treatment_request=r)
    assert any(r.patient.email in m.to for m in mail.outbox)
    with pytest.raises(ValidationError):
        services.send_decision(actor=staff, treatment_request=r)


def test_foreign_patient_pays_in_full_before_the_first_consultation(patient, staff, oncologist):
    r = advance_to(make_request(patient), "accepted", staff=staff, oncologist=oncologist)
    assert r.is_international
    with pytest.raises(ValidationError):
        services.perform(actor=staff, treatment_request=r, action="book_consultation")
    # The quote steps need a real quote and payment (protonpath.international guards them).
    import datetime

    from protonpath.international import services as international

    international.load_illustrative_tariff(valid_from=datetime.date(2026, 1, 1))
    quote = international.send_quote(actor=staff, quote=international.build_quote(actor=staff, treatment_request=r))
    international.accept_quote(actor=patient, quote=quote)
    with pytest.raises(ValidationError):
        services.perform(actor=staff, treatment_request=r, action="book_consultation")
    international.record_payment(
        actor=staff, quote=quote, amount_eur=quote.total_eur, paid_on=datetime.date.today(), method="bank_transfer", reference="VIR-1"
    )
    services.perform(actor=staff, treatment_request=r, action="record_full_payment")
    services.perform(actor=staff, treatment_request=r, action="book_consultation")
    r.refresh_from_db()
    assert r.state == State.CONSULTATION_BOOKED


def test_domestic_patient_gets_no_quote_and_goes_to_consultation(doctor, staff, oncologist):
    r = advance_to(make_request(doctor, covered_by_french_insurance=True), "accepted", staff=staff, oncologist=oncologist)
    with pytest.raises(ValidationError):
        services.perform(actor=staff, treatment_request=r, action="send_quote")
    services.perform(actor=staff, treatment_request=r, action="book_consultation")
    r.refresh_from_db()
    assert r.state == State.CONSULTATION_BOOKED


def test_full_course_to_completion_and_no_move_after_the_end(doctor, staff, oncologist, physicist):
    r = advance_to(make_request(doctor, covered_by_french_insurance=True), "accepted", staff=staff, oncologist=oncologist)
    services.perform(actor=staff, treatment_request=r, action="book_consultation")
    hold_first_consultation(r, oncologist)
    services.perform(actor=physicist, treatment_request=r, action="start_planning")
    course = course_with_sessions(r, physicist, given=1, pending=2)
    services.perform(actor=physicist, treatment_request=r, action="schedule_treatment")
    services.perform(actor=staff, treatment_request=r, action="start_treatment")
    give_pending_sessions(course)
    services.perform(actor=oncologist, treatment_request=r, action="complete_treatment")
    r.refresh_from_db()
    assert r.state == State.COMPLETED
    with pytest.raises(ValidationError):
        services.cancel(actor=staff, treatment_request=r, reason="too late")
    assert [c.to_state for c in r.history.all()] == [
        "submitted", "complete", "in_review", "accepted", "consultation_booked", "planning", "scheduled", "in_treatment", "completed"
    ]


def test_cancellation_from_any_open_state_keeps_the_reason(patient, staff, oncologist):
    r = advance_to(make_request(patient), "in_review", staff=staff, oncologist=oncologist)
    services.cancel(actor=patient, treatment_request=r, reason="Treated closer to home.")
    r.refresh_from_db()
    assert r.state == State.CANCELLED and r.cancellation_reason == "Treated closer to home."


def test_a_patient_cannot_act_on_someone_elses_request(patient, other_patient):
    r = make_request(patient, submit=False)
    with pytest.raises(PermissionDenied):
        services.submit(actor=other_patient, treatment_request=r)
    with pytest.raises(PermissionDenied):
        services.cancel(actor=other_patient, treatment_request=r, reason="x")


def test_guards_from_other_apps_can_refuse_a_transition(patient, staff, oncologist):
    r = advance_to(make_request(patient), "accepted", staff=staff, oncologist=oncologist)

    def no_quote_without_tariff(action, treatment_request, actor):
        if action == "send_quote":
            raise ValidationError("No tariff.")

    services.TRANSITION_GUARDS.append(no_quote_without_tariff)
    try:
        with pytest.raises(ValidationError):
            services.perform(actor=staff, treatment_request=r, action="send_quote")
    finally:
        services.TRANSITION_GUARDS.remove(no_quote_without_tariff)
    r.refresh_from_db()
    assert r.state == State.ACCEPTED
