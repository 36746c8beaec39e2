"""The review meeting: agenda, decisions flowing into the request's path, permissions, audit."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from protonpath.accounts.models import AuditEvent
from protonpath.department import services
from protonpath.department.models import AgendaItem, ReviewMeeting
from protonpath.referrals.models import State, StateChange
from protonpath.referrals.services import request_transitioned
from tests.factories import advance_to, make_request

pytestmark = pytest.mark.django_db


def test_putting_a_complete_file_on_the_agenda_sends_it_to_review(meeting, complete_request, staff):
    item = services.add_to_agenda(actor=staff, meeting=meeting, treatment_request=complete_request)
    complete_request.refresh_from_db()
    assert complete_request.state == State.IN_REVIEW
    assert StateChange.objects.filter(treatment_request=complete_request, to_state=State.IN_REVIEW, actor=staff).exists()
    assert (item.order, item.added_by, item.decision) == (1, staff, "")
    assert AuditEvent.objects.filter(action="create", object_type="department.agendaitem", treatment_request_id=complete_request.pk).exists()


def test_a_file_already_in_review_joins_the_agenda_without_a_new_transition(meeting, patient, staff, oncologist):
    r = advance_to(make_request(patient), "in_review", staff=staff, oncologist=oncologist)
    services.add_to_agenda(actor=staff, meeting=meeting, treatment_request=r)
    assert StateChange.objects.filter(treatment_request=r, to_state=State.IN_REVIEW).count() == 1


def test_items_are_numbered_in_the_order_they_are_added(meeting, patient, staff, oncologist):
    first = advance_to(make_request(patient), "complete", staff=staff, oncologist=oncologist)
    second = advance_to(make_request(patient), "complete", staff=staff, oncologist=oncologist)
    a = services.add_to_agenda(actor=staff, meeting=meeting, treatment_request=first)
    b = services.add_to_agenda(actor=staff, meeting=meeting, treatment_request=second)
    assert (a.order, b.order) == (1, 2)


def test_incomplete_files_stay_off_the_agenda(meeting, patient, staff):
    r = make_request(patient, complete=False)
    with pytest.raises(ValidationError) as excinfo:
        services.add_to_agenda(actor=staff, meeting=meeting, treatment_request=r)
    assert "Only complete files" in str(excinfo.value)
    r.refresh_from_db()
    assert r.state == State.SUBMITTED and not AgendaItem.objects.exists()


def test_a_file_waits_on_one_agenda_at_a_time(meeting, complete_request, staff):
    other = services.create_meeting(actor=staff, starts_at=meeting.starts_at + datetime.timedelta(days=7))
    services.add_to_agenda(actor=staff, meeting=meeting, treatment_request=complete_request)
    with pytest.raises(ValidationError) as excinfo:
        services.add_to_agenda(actor=staff, meeting=other, treatment_request=complete_request)
    assert complete_request.reference in str(excinfo.value)
    assert AgendaItem.objects.count() == 1


def test_the_database_keeps_one_pending_item_per_request_even_when_code_is_bypassed(meeting, complete_request, staff):
    other = services.create_meeting(actor=staff, starts_at=meeting.starts_at + datetime.timedelta(days=7))
    AgendaItem.objects.create(meeting=meeting, treatment_request=complete_request)
    with pytest.raises(IntegrityError), transaction.atomic():
        AgendaItem.objects.create(meeting=other, treatment_request=complete_request)


def test_only_administrative_staff_and_head_organise(meeting, complete_request, users):
    for name in ("patient", "doctor", "oncologist", "physicist"):
        with pytest.raises(PermissionDenied):
            services.add_to_agenda(actor=users[name], meeting=meeting, treatment_request=complete_request)
        with pytest.raises(PermissionDenied):
            services.create_meeting(actor=users[name], starts_at=timezone.now())
    assert AuditEvent.objects.filter(action="denied", treatment_request_id=complete_request.pk).count() == 4
    services.add_to_agenda(actor=users["head"], meeting=meeting, treatment_request=complete_request)


def test_the_chair_is_an_oncologist_or_the_head(staff, physicist):
    with pytest.raises(ValidationError):
        services.create_meeting(actor=staff, starts_at=timezone.now(), chair=physicist)


def test_only_staff_attend(staff, patient):
    with pytest.raises(ValidationError):
        services.create_meeting(actor=staff, starts_at=timezone.now(), attendees=[patient])


@pytest.fixture
def item(meeting, complete_request, staff):
    return services.add_to_agenda(actor=staff, meeting=meeting, treatment_request=complete_request)


def test_an_acceptance_flows_into_the_path_with_dose_and_fractions(item, oncologist, django_capture_on_commit_callbacks):
    heard = []

    def listener(sender, treatment_request, action, actor, **kwargs):
        heard.append((treatment_request.pk, action, actor))

    request_transitioned.connect(listener)
    with django_capture_on_commit_callbacks(execute=True):
        services.record_decision(
            actor=oncologist, item=item, decision="accepted", note="Validated indication.", dose_gy=Decimal("70.2"), fractions=39
        )
    item.refresh_from_db()
    r = item.treatment_request
    r.refresh_from_db()
    assert r.state == State.ACCEPTED
    assert (r.proposed_dose_gy, r.proposed_fractions, r.decided_by) == (Decimal("70.20"), 39, oncologist)
    assert (item.decision, item.proposed_dose_gy, item.proposed_fractions, item.recorded_by) == (
        "accepted",
        Decimal("70.20"),
        39,
        oncologist,
    )
    assert item.recorded_at is not None
    assert oncologist in item.meeting.attendees.all()
    assert StateChange.objects.filter(treatment_request=r, from_state=State.IN_REVIEW, to_state=State.ACCEPTED).exists()
    assert AuditEvent.objects.filter(action="update", object_type="department.agendaitem", summary="decision=accepted").exists()
    # Other apps hear of the transition as for any decision of the path.
    request_transitioned.disconnect(listener)
    assert heard == [(r.pk, "accept", oncologist)]


def test_a_decline_needs_a_reason_and_leaves_nothing_half_done(item, oncologist):
    with pytest.raises(ValidationError):
        services.record_decision(actor=oncologist, item=item, decision="declined", note="  ")
    item.refresh_from_db()
    item.treatment_request.refresh_from_db()
    assert item.decision == "" and item.treatment_request.state == State.IN_REVIEW
    services.record_decision(actor=oncologist, item=item, decision="declined", note="Photons are as good here.")
    item.treatment_request.refresh_from_db()
    assert item.treatment_request.state == State.DECLINED
    assert item.proposed_dose_gy is None and item.proposed_fractions is None


def test_more_information_goes_back_to_the_owner(item, oncologist):
    services.record_decision(actor=oncologist, item=item, decision="info_requested", note="Recent MRI, please.")
    r = item.treatment_request
    r.refresh_from_db()
    assert r.state == State.INFO_REQUESTED and r.missing_information == "Recent MRI, please."


@pytest.mark.parametrize(
    ("dose", "fractions"),
    [(None, 30), (Decimal("54"), None), (Decimal("0"), 30), (Decimal("95"), 30), (Decimal("54"), 0), (Decimal("54"), 61), ("abc", 30)],
)
def test_an_acceptance_with_a_bad_dose_is_refused(item, oncologist, dose, fractions):
    with pytest.raises(ValidationError):
        services.record_decision(actor=oncologist, item=item, decision="accepted", dose_gy=dose, fractions=fractions)
    item.refresh_from_db()
    item.treatment_request.refresh_from_db()
    assert item.decision == "" and item.treatment_request.state == State.IN_REVIEW


def test_only_oncologists_record_decisions(item, users):
    for name in ("patient", "doctor", "staff", "physicist", "head"):
        with pytest.raises(PermissionDenied):
            services.record_decision(actor=users[name], item=item, decision="accepted", dose_gy=54, fractions=30)
    item.refresh_from_db()
    assert item.decision == ""


def test_a_decision_is_recorded_once(item, oncologist):
    services.record_decision(actor=oncologist, item=item, decision="accepted", dose_gy=54, fractions=30)
    with pytest.raises(ValidationError):
        services.record_decision(actor=oncologist, item=item, decision="declined", note="changed my mind")


def test_a_request_cancelled_meanwhile_gets_a_clear_error(item, oncologist, patient):
    from protonpath.referrals import services as referrals_services

    referrals_services.cancel(actor=patient, treatment_request=item.treatment_request, reason="Treated elsewhere.")
    with pytest.raises(ValidationError) as excinfo:
        services.record_decision(actor=oncologist, item=item, decision="accepted", dose_gy=54, fractions=30)
    assert "Cancelled" in str(excinfo.value)
    item.refresh_from_db()
    assert item.decision == ""


def test_after_info_requested_the_file_returns_to_another_meeting(item, oncologist, staff, patient):
    from protonpath.referrals import services as referrals_services

    services.record_decision(actor=oncologist, item=item, decision="info_requested", note="Recent MRI, please.")
    r = item.treatment_request
    referrals_services.resubmit(actor=patient, treatment_request=r)
    referrals_services.mark_complete(actor=staff, treatment_request=r)
    later = services.create_meeting(actor=staff, starts_at=item.meeting.starts_at + datetime.timedelta(days=7))
    services.add_to_agenda(actor=staff, meeting=later, treatment_request=r)
    r.refresh_from_db()
    assert r.state == State.IN_REVIEW
    assert r.agenda_items.count() == 2


def test_removing_an_undecided_item_keeps_the_file_in_review(item, staff, oncologist):
    services.remove_from_agenda(actor=staff, item=item)
    item.treatment_request.refresh_from_db()
    assert item.treatment_request.state == State.IN_REVIEW and not AgendaItem.objects.exists()


def test_decided_items_stay_in_the_minutes(item, staff, oncologist):
    services.record_decision(actor=oncologist, item=item, decision="accepted", dose_gy=54, fractions=30)
    with pytest.raises(ValidationError):
        services.remove_from_agenda(actor=staff, item=item)


def test_a_held_meeting_closes_its_agenda_but_takes_late_decisions(item, meeting, staff, oncologist, patient):
    services.mark_held(actor=oncologist, meeting=meeting)  # the chair
    meeting.refresh_from_db()
    assert meeting.status == ReviewMeeting.Status.HELD and meeting.held_at
    late = advance_to(make_request(patient), "complete", staff=staff, oncologist=oncologist)
    with pytest.raises(ValidationError):
        services.add_to_agenda(actor=staff, meeting=meeting, treatment_request=late)
    services.record_decision(actor=oncologist, item=item, decision="accepted", dose_gy=54, fractions=30)
    with pytest.raises(ValidationError):
        services.mark_held(actor=staff, meeting=meeting)


def test_only_organisers_or_the_chair_mark_a_meeting_held(meeting, users):
    for name in ("patient", "doctor", "physicist"):
        with pytest.raises(PermissionDenied):
            services.mark_held(actor=users[name], meeting=meeting)


def test_a_decision_taken_on_the_request_page_is_written_on_the_agenda(item, oncologist, django_capture_on_commit_callbacks):
    from protonpath.referrals import services as referrals_services

    with django_capture_on_commit_callbacks(execute=True):
        referrals_services.decide(
            actor=oncologist, treatment_request=item.treatment_request, decision="accept", note="ok", dose_gy=60, fractions=30
        )
    item.refresh_from_db()
    assert (item.decision, item.proposed_dose_gy, item.proposed_fractions, item.recorded_by) == (
        "accepted",
        Decimal("60.00"),
        30,
        oncologist,
    )


def test_a_decision_on_the_meeting_page_is_written_once(item, oncologist, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.record_decision(actor=oncologist, item=item, decision="declined", note="Not indicated.")
    assert AuditEvent.objects.filter(object_type="department.agendaitem", action="update").count() == 1
