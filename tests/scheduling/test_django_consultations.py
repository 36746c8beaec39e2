"""Consultation booking: opening hours, holidays, one consultation per doctor, messages, moves, cancellations."""

from __future__ import annotations

import datetime
import threading
from zoneinfo import ZoneInfo

import holidays
import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.utils import timezone

from protonpath.accounts.models import AuditEvent, Role
from protonpath.referrals import services as referral_services
from protonpath.referrals.models import State, TreatmentRequest
from protonpath.scheduling import selectors, services, slots
from protonpath.scheduling.models import Consultation, ConsultationSlot, ConsultationStatus
from tests.factories import UserFactory, advance_to, make_request

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")


def open_days(count: int = 5) -> list[datetime.date]:
    """The next days with consultation hours (never today, so every slot is in the future)."""
    return selectors.next_days_with_hours(timezone.localdate() + datetime.timedelta(days=1), count)


def at(day: datetime.date, hour: int, minute: int = 0) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time(hour, minute)))


def next_weekday_holiday() -> datetime.date:
    """The next French public holiday that falls on a weekday."""
    today = timezone.localdate()
    return min(
        d
        for d in holidays.France(years=[today.year, today.year + 1, today.year + 2])
        if d > today and d.weekday() < 5
    )


def next_saturday() -> datetime.date:
    today = timezone.localdate()
    return today + datetime.timedelta(days=(5 - today.weekday()) % 7 or 7)


def book(r, staff, doctor, start, **kw):
    return services.book_consultation(
        actor=staff, treatment_request=r, doctor=doctor, start=start, **kw
    )


# The pure slot rules --------------------------------------------------------------------------


def test_slots_cover_the_opening_hours_of_a_working_day():
    day = open_days(1)[0]
    tz = timezone.get_current_timezone()
    now = at(day, 0)
    first = slots.free_slot_starts(day, slots.CONSULTATION_HOURS, tz, 60, [], now)
    follow_up = slots.free_slot_starts(day, slots.CONSULTATION_HOURS, tz, 30, [], now)
    assert first[0] == at(day, 8) and first[-1] == at(day, 17, 30) and len(first) == 20
    assert follow_up[-1] == at(day, 18) and len(follow_up) == 21


def test_a_taken_slot_removes_every_start_that_would_overlap_it():
    day = open_days(1)[0]
    tz = timezone.get_current_timezone()
    free = slots.free_slot_starts(day, slots.CONSULTATION_HOURS, tz, 60, [at(day, 10)], at(day, 0))
    assert at(day, 9, 30) not in free and at(day, 10) not in free  # both would take 10:00-10:30
    assert at(day, 9) in free and at(day, 10, 30) in free


def test_no_slot_on_weekends_and_french_public_holidays():
    tz = timezone.get_current_timezone()
    now = timezone.now()
    assert slots.free_slot_starts(next_saturday(), slots.CONSULTATION_HOURS, tz, 30, [], now) == []
    assert (
        slots.free_slot_starts(next_weekday_holiday(), slots.CONSULTATION_HOURS, tz, 30, [], now)
        == []
    )
    # 14 July and 25 December are closed whatever the weekday (holidays package, France).
    assert not slots.periods_on(datetime.date(2031, 7, 14), slots.CONSULTATION_HOURS)
    assert not slots.periods_on(datetime.date(2030, 12, 25), slots.CONSULTATION_HOURS)


@pytest.mark.parametrize(
    ("when", "duration", "code"),
    [
        (lambda d: at(d, 7, 30), 30, "hours"),
        (lambda d: at(d, 18), 60, "hours"),  # would end at 19:00
        (lambda d: at(d, 18, 30), 30, "hours"),
        (lambda d: at(d, 8, 10), 30, "boundary"),
        (lambda d: at(d - datetime.timedelta(days=3650), 9), 30, "past"),
        (lambda d: datetime.datetime.combine(d, datetime.time(9)), 30, "naive"),
        (lambda d: at(d, 9), 45, "duration"),
    ],
)
def test_refusals_name_the_rule(when, duration, code):
    day = open_days(1)[0]
    refusal = slots.refusal(when(day), duration, slots.CONSULTATION_HOURS, timezone.now(), PARIS)
    assert refusal is not None and refusal.code == code


def test_weekend_and_holiday_refusals():
    now = timezone.now()
    assert (
        slots.refusal(at(next_saturday(), 9), 30, slots.CONSULTATION_HOURS, now, PARIS).code
        == "weekend"
    )
    assert (
        slots.refusal(at(next_weekday_holiday(), 9), 30, slots.CONSULTATION_HOURS, now, PARIS).code
        == "holiday"
    )
    assert (
        slots.refusal(at(open_days(1)[0], 17, 30), 60, slots.CONSULTATION_HOURS, now, PARIS) is None
    )


# Booking ----------------------------------------------------------------------------------------


def test_booking_a_first_consultation_moves_the_request_and_tells_everyone(
    domestic_accepted, staff, oncologist, django_capture_on_commit_callbacks
):
    r = domestic_accepted
    day = open_days(1)[0]
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        consultation = book(r, staff, oncologist, at(day, 9))
    r.refresh_from_db()
    assert r.state == State.CONSULTATION_BOOKED
    assert r.history.filter(to_state=State.CONSULTATION_BOOKED, actor=staff).exists()
    assert consultation.end == at(day, 10) and consultation.status == ConsultationStatus.BOOKED
    assert list(
        ConsultationSlot.objects.filter(doctor=oncologist)
        .values_list("start", flat=True)
        .order_by("start")
    ) == [
        at(day, 9),
        at(day, 9, 30),
    ]
    assert AuditEvent.objects.filter(
        action="create", object_type="scheduling.consultation", treatment_request_id=r.pk
    ).exists()
    confirmations = [m for m in mail.outbox if m.subject.startswith("Consultation booked")]
    recipients = {address for m in confirmations for address in m.to}
    assert {
        r.patient.email,
        r.addressee_email,
        r.referring_doctor.email,
        oncologist.email,
    } <= recipients
    for message in confirmations:
        assert r.pathology_name not in message.body and r.pathology_location not in message.body
        assert r.reference in message.body and "09:00" in message.body
        name, content, mimetype = message.attachments[0]
        assert name == "consultation.ics" and mimetype.startswith("text/calendar")
        assert "BEGIN:VEVENT" in content and "METHOD:REQUEST" in content
        assert r.pathology_name not in content


def test_the_doctor_cannot_be_booked_twice_for_overlapping_times(
    domestic_accepted, doctor, staff, oncologist
):
    day = open_days(1)[0]
    book(domestic_accepted, staff, oncologist, at(day, 9))
    other = advance_to(
        make_request(doctor, covered_by_french_insurance=True),
        "accepted",
        staff=staff,
        oncologist=oncologist,
    )
    referral_services.send_decision(actor=staff, treatment_request=other)
    with pytest.raises(ValidationError) as exc:
        book(other, staff, oncologist, at(day, 9, 30))  # 09:30-10:30 overlaps 09:00-10:00
    assert exc.value.code == "doctor_busy"
    other.refresh_from_db()
    assert other.state == State.ACCEPTED
    assert Consultation.objects.filter(treatment_request=other).count() == 0
    assert ConsultationSlot.objects.filter(doctor=oncologist).count() == 2
    # The free slots say the same thing.
    free = selectors.free_slots(oncologist, day, 60)
    assert at(day, 9, 30) not in free and at(day, 8) in free and at(day, 10) in free
    # Another oncologist is free at that time.
    colleague = UserFactory(role=Role.ONCOLOGIST, username="onco2")
    assert book(other, staff, colleague, at(day, 9, 30)).doctor == colleague


def test_the_database_refuses_a_second_row_for_the_same_doctor_and_slot(
    domestic_accepted, staff, oncologist
):
    from django.db import IntegrityError, transaction

    consultation = book(domestic_accepted, staff, oncologist, at(open_days(1)[0], 11))
    with pytest.raises(IntegrityError), transaction.atomic():
        ConsultationSlot.objects.create(
            consultation=consultation, doctor=oncologist, start=consultation.start
        )


@pytest.mark.parametrize(
    ("start", "code"),
    [
        (lambda: at(next_weekday_holiday(), 9), "holiday"),
        (lambda: at(next_saturday(), 9), "weekend"),
        (lambda: at(open_days(1)[0], 18), "hours"),
        (lambda: at(open_days(1)[0], 7), "hours"),
        (lambda: timezone.now().replace(microsecond=0) - datetime.timedelta(days=1), "past"),
    ],
)
def test_bad_times_are_refused_and_nothing_changes(
    domestic_accepted, staff, oncologist, start, code
):
    with pytest.raises(ValidationError) as exc:
        book(domestic_accepted, staff, oncologist, start())
    assert exc.value.code == code and exc.value.messages[0]
    domestic_accepted.refresh_from_db()
    assert domestic_accepted.state == State.ACCEPTED
    assert not Consultation.objects.exists() and not ConsultationSlot.objects.exists()


def test_only_oncologists_give_consultations(domestic_accepted, staff, physicist):
    with pytest.raises(ValidationError) as exc:
        book(domestic_accepted, staff, physicist, at(open_days(1)[0], 9))
    assert exc.value.code == "doctor"


def test_who_may_book(domestic_accepted, users):
    start = at(open_days(1)[0], 9)
    for name in ("patient", "doctor", "oncologist", "physicist"):
        with pytest.raises(PermissionDenied):
            book(domestic_accepted, users[name], users["oncologist"], start)
    assert (
        AuditEvent.objects.filter(
            action="denied", treatment_request_id=domestic_accepted.pk
        ).count()
        == 4
    )
    assert (
        book(domestic_accepted, users["head"], users["oncologist"], start).booked_by
        == users["head"]
    )


def test_a_request_not_yet_accepted_or_not_sent_cannot_have_a_first_consultation(
    doctor, staff, oncologist
):
    r = advance_to(
        make_request(doctor, covered_by_french_insurance=True),
        "in_review",
        staff=staff,
        oncologist=oncologist,
    )
    with pytest.raises(ValidationError) as exc:
        book(r, staff, oncologist, at(open_days(1)[0], 9))
    assert exc.value.code == "state"
    accepted = advance_to(
        make_request(doctor, covered_by_french_insurance=True),
        "accepted",
        staff=staff,
        oncologist=oncologist,
    )
    with pytest.raises(ValidationError):  # the decision has not been sent yet
        book(accepted, staff, oncologist, at(open_days(1)[0], 9))


def test_one_first_consultation_per_request(domestic_accepted, staff, oncologist):
    day = open_days(1)[0]
    book(domestic_accepted, staff, oncologist, at(day, 9))
    with pytest.raises(ValidationError) as exc:
        book(domestic_accepted, staff, oncologist, at(day, 14))
    assert exc.value.code == "already_booked"
    follow_up = book(domestic_accepted, oncologist, oncologist, at(day, 14), kind="follow_up")
    assert follow_up.duration_min == 30


def test_the_patient_cannot_be_in_two_consultations_at_once(domestic_accepted, staff, oncologist):
    day = open_days(1)[0]
    book(domestic_accepted, staff, oncologist, at(day, 9))
    colleague = UserFactory(role=Role.ONCOLOGIST, username="onco2")
    with pytest.raises(ValidationError) as exc:
        book(domestic_accepted, staff, colleague, at(day, 9, 30), kind="follow_up")
    assert exc.value.code == "patient_busy"


# Patients from abroad ---------------------------------------------------------------------------


def test_a_patient_from_abroad_is_not_booked_before_paying(
    international_accepted, staff, oncologist
):
    with pytest.raises(ValidationError):
        book(international_accepted, staff, oncologist, at(open_days(1)[0], 9))
    assert not Consultation.objects.exists()


def test_the_scheduling_service_checks_the_paid_state_in_the_history(
    international_accepted, staff, oncologist
):
    """Even a request put in 'paid' by hand (no 'paid' in its history) is refused."""
    TreatmentRequest.objects.filter(pk=international_accepted.pk).update(state=State.PAID)
    international_accepted.refresh_from_db()
    assert not services.has_passed_through_paid(international_accepted)
    with pytest.raises(ValidationError) as exc:
        book(international_accepted, staff, oncologist, at(open_days(1)[0], 9))
    assert exc.value.code == "unpaid"
    assert not Consultation.objects.exists()


def test_a_patient_from_abroad_who_paid_in_full_is_booked(international_paid, staff, oncologist):
    assert services.has_passed_through_paid(international_paid)
    consultation = book(international_paid, staff, oncologist, at(open_days(1)[0], 9))
    international_paid.refresh_from_db()
    assert international_paid.state == State.CONSULTATION_BOOKED and consultation.is_booked


# Moving and cancelling --------------------------------------------------------------------------


def test_rescheduling_moves_the_consultation_and_frees_the_old_slots(
    domestic_accepted, staff, oncologist, django_capture_on_commit_callbacks
):
    day, later = open_days(2)
    consultation = book(domestic_accepted, staff, oncologist, at(day, 9))
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        moved = services.reschedule_consultation(
            actor=staff, consultation=consultation, start=at(later, 14)
        )
    assert moved.pk == consultation.pk and moved.start == at(later, 14) and moved.sequence == 1
    assert set(ConsultationSlot.objects.values_list("start", flat=True)) == {
        at(later, 14),
        at(later, 14, 30),
    }
    assert at(day, 9) in selectors.free_slots(oncologist, day, 60)
    assert any(m.subject.startswith("Consultation moved") for m in mail.outbox)
    assert "SEQUENCE:1" in mail.outbox[-1].attachments[0][1]


def test_a_refused_reschedule_keeps_the_old_booking(domestic_accepted, doctor, staff, oncologist):
    day = open_days(1)[0]
    consultation = book(domestic_accepted, staff, oncologist, at(day, 9))
    colleague = UserFactory(role=Role.ONCOLOGIST, username="onco2")
    other = advance_to(
        make_request(doctor, covered_by_french_insurance=True),
        "accepted",
        staff=staff,
        oncologist=oncologist,
    )
    referral_services.send_decision(actor=staff, treatment_request=other)
    book(other, staff, oncologist, at(day, 14))
    for start, doctor_, code in [
        (at(day, 14, 30), None, "doctor_busy"),
        (at(next_weekday_holiday(), 10), None, "holiday"),
        (at(day, 18), colleague, "hours"),
    ]:
        with pytest.raises(ValidationError) as exc:
            services.reschedule_consultation(
                actor=staff, consultation=consultation, start=start, doctor=doctor_
            )
        assert exc.value.code == code
        consultation.refresh_from_db()
        assert (
            consultation.start == at(day, 9)
            and consultation.doctor == oncologist
            and consultation.is_booked
        )
        assert set(consultation.slots.values_list("start", flat=True)) == {
            at(day, 9),
            at(day, 9, 30),
        }


def test_cancellation_needs_a_reason_and_frees_the_slot(
    domestic_accepted, staff, oncologist, django_capture_on_commit_callbacks
):
    day = open_days(1)[0]
    consultation = book(domestic_accepted, staff, oncologist, at(day, 9))
    with pytest.raises(ValidationError):
        services.cancel_consultation(actor=staff, consultation=consultation, reason="  ")
    assert Consultation.objects.get(pk=consultation.pk).is_booked
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        cancelled = services.cancel_consultation(
            actor=staff, consultation=consultation, reason="Patient unwell"
        )
    assert (
        cancelled.status == ConsultationStatus.CANCELLED
        and cancelled.cancellation_reason == "Patient unwell"
    )
    assert not ConsultationSlot.objects.exists()
    assert at(day, 9) in selectors.free_slots(oncologist, day, 60)
    ics = mail.outbox[0].attachments[0][1]
    assert "METHOD:CANCEL" in ics and "STATUS:CANCELLED" in ics
    with pytest.raises(ValidationError):
        services.cancel_consultation(actor=staff, consultation=cancelled, reason="again")
    # The first consultation can be booked again; the request stays where it is.
    again = book(domestic_accepted, staff, oncologist, at(day, 9))
    domestic_accepted.refresh_from_db()
    assert again.is_booked and domestic_accepted.state == State.CONSULTATION_BOOKED


def test_who_may_cancel(domestic_accepted, users):
    consultation = book(
        domestic_accepted, users["staff"], users["oncologist"], at(open_days(1)[0], 9)
    )
    for name in ("patient", "other_doctor", "physicist"):
        with pytest.raises(PermissionDenied):
            services.cancel_consultation(actor=users[name], consultation=consultation, reason="no")
    # The referring doctor who made the request may cancel it.
    assert (
        services.cancel_consultation(
            actor=users["doctor"], consultation=consultation, reason="Travel"
        ).cancelled_by
        == users["doctor"]
    )


# Concurrency ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_bookings_of_the_same_doctor_and_slot_exactly_one_wins(
    doctor, staff, oncologist
):
    requests = []
    for _ in range(2):
        r = advance_to(
            make_request(doctor, covered_by_french_insurance=True),
            "accepted",
            staff=staff,
            oncologist=oncologist,
        )
        referral_services.send_decision(actor=staff, treatment_request=r)
        requests.append(r)
    start = at(open_days(1)[0], 10)
    barrier = threading.Barrier(2)
    outcomes: list = [None, None]

    def attempt(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            outcomes[index] = book(requests[index], staff, oncologist, start)
        except Exception as exc:  # noqa: BLE001 - the test inspects what each thread got
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    won = [o for o in outcomes if isinstance(o, Consultation)]
    lost = [o for o in outcomes if isinstance(o, ValidationError)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert lost[0].code in ("doctor_busy", "busy") and lost[0].messages[0]
    assert Consultation.objects.filter(status="booked").count() == 1
    assert ConsultationSlot.objects.count() == 2
    states = sorted(
        TreatmentRequest.objects.filter(pk__in=[r.pk for r in requests]).values_list(
            "state", flat=True
        )
    )
    assert states == [State.ACCEPTED, State.CONSULTATION_BOOKED]


def test_the_department_opening_hours_drive_the_slots(domestic_accepted, staff, oncologist):
    """Staff change the consultations' hours in the department app: booking follows."""
    from protonpath.department.models import OpeningHours

    day = open_days(1)[0]
    hours = OpeningHours.objects.filter(service__code="consultations", weekday=day.weekday())
    assert list(hours.values_list("opens", "closes")) == [(datetime.time(8), datetime.time(18, 30))]
    hours.update(opens=datetime.time(13), closes=datetime.time(17))
    free = selectors.free_slots(oncologist, day, 60)
    assert free[0] == at(day, 13) and free[-1] == at(day, 16)
    with pytest.raises(ValidationError) as exc:
        book(domestic_accepted, staff, oncologist, at(day, 9))
    assert exc.value.code == "hours"
    OpeningHours.objects.filter(service__code="consultations", weekday=day.weekday()).delete()
    assert selectors.free_slots(oncologist, day, 60) == []


def test_a_consultation_is_marked_done_once_it_has_begun(
    domestic_accepted, staff, oncologist, physicist
):
    consultation = book(domestic_accepted, staff, oncologist, at(open_days(1)[0], 9))
    with pytest.raises(ValidationError):
        services.mark_consultation_done(actor=oncologist, consultation=consultation)
    with pytest.raises(PermissionDenied):
        services.mark_consultation_done(actor=physicist, consultation=consultation)
    earlier = timezone.now() - datetime.timedelta(minutes=10)
    Consultation.objects.filter(pk=consultation.pk).update(
        start=earlier, end=earlier + datetime.timedelta(hours=1)
    )
    done = services.mark_consultation_done(actor=oncologist, consultation=consultation)
    assert done.status == ConsultationStatus.DONE and not done.slots.exists()
