"""Gantry scheduling on the live schedule: courses placed by the solver, announced sessions fixed,
missed sessions and downtimes pushed to the end of the course, earliest possible start, payment rule."""

from __future__ import annotations

import datetime

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from protonpath.accounts.models import AuditEvent
from protonpath.referrals import services as referral_services
from protonpath.referrals.models import State, TreatmentRequest
from protonpath.scheduling import selectors, services
from protonpath.scheduling.calendar import add_working_days, is_working_day
from protonpath.scheduling.config import default_gantry_day
from protonpath.scheduling.models import (
    GantrySession,
    MachineDowntime,
    SessionStatus,
    TreatmentCourse,
)
from tests.factories import advance_to, make_request
from tests.facts import hold_first_consultation

pytestmark = pytest.mark.django_db


def at(day: datetime.date, hour: int, minute: int = 0) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time(hour, minute)))


def first_open_day() -> datetime.date:
    return selectors.next_days_with_hours(timezone.localdate() + datetime.timedelta(days=1), 1)[0]


def in_planning(owner, staff, oncologist, **overrides) -> TreatmentRequest:
    """A domestic request with its first consultation booked and planning started."""
    r = advance_to(
        make_request(owner, covered_by_french_insurance=True, **overrides),
        "accepted",
        staff=staff,
        oncologist=oncologist,
    )
    referral_services.send_decision(actor=staff, treatment_request=r)
    start = at(first_open_day(), 8)
    while True:
        try:
            services.book_consultation(
                actor=staff, treatment_request=r, doctor=oncologist, start=start
            )
            break
        except ValidationError:
            start += datetime.timedelta(hours=1)
    hold_first_consultation(r, oncologist)
    referral_services.perform(actor=oncologist, treatment_request=r, action="start_planning")
    r.refresh_from_db()
    return r


def make_course(
    r, actor, fractions=5, category="adult_standard", ready=None, **kw
) -> TreatmentCourse:
    ready = ready or add_working_days(timezone.localdate() + datetime.timedelta(days=1), 2)
    return services.create_course(
        actor=actor,
        treatment_request=r,
        category=category,
        ready_date=ready,
        fractions=fractions,
        **kw,
    )


def active(course):
    return list(
        course.sessions.filter(status__in=["planned", "announced", "done"]).order_by("start")
    )


def local(moment):
    return timezone.localtime(moment)


def minutes(moment) -> int:
    return local(moment).hour * 60 + local(moment).minute


def assert_no_overlap(sessions):
    ordered = sorted(sessions, key=lambda s: s.start)
    for a, b in zip(ordered, ordered[1:], strict=False):
        assert a.end <= b.start, (a, b)


@pytest.fixture
def planning(doctor, staff, oncologist):
    return in_planning(doctor, staff, oncologist)


def test_a_course_is_placed_on_consecutive_working_days_inside_the_gantry_day(planning, physicist):
    course = make_course(planning, physicist, fractions=6)
    assert (course.session_minutes, course.first_session_minutes, course.under_anaesthesia) == (
        30,
        50,
        False,
    )
    sessions = services.schedule_course(actor=physicist, course=course)
    assert [s.fraction_number for s in sessions] == [1, 2, 3, 4, 5, 6]
    days = [local(s.start).date() for s in sessions]
    assert all(is_working_day(d) for d in days) and days[0] >= course.ready_date
    assert days == [add_working_days(days[0], k) for k in range(6)]  # consecutive working days
    assert (sessions[0].end - sessions[0].start) == datetime.timedelta(minutes=50)
    assert all(s.end - s.start == datetime.timedelta(minutes=30) for s in sessions[1:])
    gantry_day = default_gantry_day()
    qa_end = max(block.end_min for block in gantry_day.qa_blocks)
    for s in sessions:  # after the morning QA, before the end of the gantry day
        assert minutes(s.start) >= qa_end and minutes(s.end) <= gantry_day.closing_min
    course.refresh_from_db()
    assert course.usual_start_min is not None
    with pytest.raises(ValidationError):
        services.schedule_course(actor=physicist, course=course)  # already scheduled


def test_adding_a_course_never_moves_announced_sessions(doctor, staff, oncologist, physicist):
    first = in_planning(doctor, staff, oncologist)
    course_a = make_course(first, physicist, fractions=5)
    services.schedule_course(actor=physicist, course=course_a)
    services.announce_course(actor=physicist, course=course_a)
    before = [(s.pk, s.start, s.end, s.status) for s in active(course_a)]
    assert all(status == SessionStatus.ANNOUNCED for *_x, status in before)
    second = in_planning(doctor, staff, oncologist)
    course_b = make_course(second, physicist, fractions=5)
    services.schedule_course(actor=physicist, course=course_b, move_planned=True)
    assert [(s.pk, s.start, s.end, s.status) for s in active(course_a)] == before
    assert_no_overlap(active(course_a) + active(course_b))


def test_planned_sessions_move_only_when_allowed(doctor, staff, oncologist, physicist):
    course_a = make_course(in_planning(doctor, staff, oncologist), physicist, fractions=4)
    services.schedule_course(actor=physicist, course=course_a)
    ids_a = {s.pk for s in active(course_a)}
    course_b = make_course(in_planning(doctor, staff, oncologist), physicist, fractions=4)
    services.schedule_course(actor=physicist, course=course_b)
    assert {s.pk for s in active(course_a)} == ids_a  # not allowed: untouched
    course_c = make_course(
        in_planning(doctor, staff, oncologist), physicist, fractions=4, urgency="urgent"
    )
    services.schedule_course(actor=physicist, course=course_c, move_planned=True)
    # Allowed: the planned courses were placed again together with the new one (sessions that
    # land where they were are kept as they are).
    placed_again = AuditEvent.objects.filter(summary="sessions placed again").values_list(
        "object_id", flat=True
    )
    assert set(placed_again) == {str(course_a.pk), str(course_b.pk)}
    for course in (course_a, course_b, course_c):
        assert len(active(course)) == 4
    assert_no_overlap(active(course_a) + active(course_b) + active(course_c))


def test_announcing_tells_the_patient_and_schedules_the_request(
    planning, physicist, django_capture_on_commit_callbacks
):
    course = make_course(planning, physicist, fractions=3)
    services.schedule_course(actor=physicist, course=course)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.announce_course(actor=physicist, course=course) == 3
    planning.refresh_from_db()
    assert planning.state == State.SCHEDULED
    message = next(m for m in mail.outbox if m.subject.startswith("Treatment sessions"))
    assert planning.patient.email in message.to and planning.pathology_name not in message.body
    ics = message.attachments[0][1]
    assert ics.count("BEGIN:VEVENT") == 3 and "STATUS:CONFIRMED" in ics


def test_a_missed_session_goes_to_the_end_of_the_course(planning, physicist, staff):
    course = make_course(planning, physicist, fractions=5)
    services.schedule_course(actor=physicist, course=course)
    services.announce_course(actor=physicist, course=course)
    sessions = active(course)
    old_last_day = local(sessions[-1].start).date()
    # Session 1 was given; session 2's time has come and the patient did not come.
    GantrySession.objects.filter(pk=sessions[0].pk).update(status=SessionStatus.DONE)
    yesterday = timezone.now() - datetime.timedelta(hours=1)
    GantrySession.objects.filter(pk=sessions[1].pk).update(
        start=yesterday, end=yesterday + datetime.timedelta(minutes=30)
    )
    services.record_session(actor=staff, session=sessions[1], outcome="missed")
    after = active(course)
    assert len(after) == 5 and [s.fraction_number for s in after] == [1, 2, 3, 4, 5]
    assert GantrySession.objects.get(pk=sessions[1].pk).status == SessionStatus.MISSED
    assert [s.pk for s in after[1:4]] == [
        s.pk for s in sessions[2:5]
    ]  # the others keep their times
    new = after[-1]
    assert new.pk not in {s.pk for s in sessions} and new.status == SessionStatus.ANNOUNCED
    assert local(new.start).date() > old_last_day and is_working_day(local(new.start).date())
    assert new.end - new.start == datetime.timedelta(minutes=30)


def test_recording_the_first_session_given_starts_the_treatment(planning, physicist, staff):
    course = make_course(planning, physicist, fractions=2)
    services.schedule_course(actor=physicist, course=course)
    services.announce_course(actor=physicist, course=course)
    first = active(course)[0]
    with pytest.raises(ValidationError):  # its time has not come
        services.record_session(actor=staff, session=first, outcome="done")
    earlier = timezone.now() - datetime.timedelta(minutes=20)
    GantrySession.objects.filter(pk=first.pk).update(
        start=earlier, end=earlier + datetime.timedelta(minutes=50)
    )
    with pytest.raises(PermissionDenied):
        services.record_session(actor=physicist, session=first, outcome="done")
    services.record_session(actor=staff, session=first, outcome="done")
    planning.refresh_from_db()
    assert planning.state == State.IN_TREATMENT
    with pytest.raises(ValidationError):
        services.record_session(actor=staff, session=first, outcome="missed")


def test_a_downtime_moves_the_sessions_it_hits_to_the_end(
    planning, physicist, staff, django_capture_on_commit_callbacks
):
    course = make_course(planning, physicist, fractions=5)
    services.schedule_course(actor=physicist, course=course)
    services.announce_course(actor=physicist, course=course)
    sessions = active(course)
    GantrySession.objects.filter(pk=sessions[0].pk).update(status=SessionStatus.DONE)
    hit_day = local(sessions[2].start).date()
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        downtime, created = services.record_downtime(
            actor=staff, start=at(hit_day, 0), end=at(hit_day, 23, 59), reason="Cyclotron RF fault"
        )
    assert GantrySession.objects.get(pk=sessions[2].pk).status == SessionStatus.CANCELLED
    assert len(created) == 1 and local(created[0].start).date() > local(sessions[-1].start).date()
    after = active(course)
    assert len(after) == 5 and [s.fraction_number for s in after] == [1, 2, 3, 4, 5]
    assert all(local(s.start).date() != hit_day for s in after)
    assert any("changed" in m.body for m in mail.outbox)
    # The agenda of that day shows the downtime and the cancelled session.
    agenda = selectors.gantry_agenda(hit_day)
    assert agenda.downtimes == [downtime]
    assert [s.status for s in agenda.sessions] == [SessionStatus.CANCELLED]


def test_a_downtime_before_the_first_session_places_the_whole_course_again(
    planning, physicist, staff
):
    course = make_course(planning, physicist, fractions=3)
    services.schedule_course(actor=physicist, course=course)
    first_day = local(active(course)[0].start).date()
    services.record_downtime(
        actor=staff, start=at(first_day, 0), end=at(first_day, 23, 59), reason="Maintenance"
    )
    after = active(course)
    assert len(after) == 3 and local(after[0].start).date() > first_day
    assert after[0].end - after[0].start == datetime.timedelta(
        minutes=50
    )  # the long first session is kept first


def test_downtime_needs_a_reason_and_a_role(staff, physicist):
    day = first_open_day()
    with pytest.raises(ValidationError):
        services.record_downtime(actor=staff, start=at(day, 9), end=at(day, 10), reason="")
    with pytest.raises(ValidationError):
        services.record_downtime(actor=staff, start=at(day, 10), end=at(day, 9), reason="x")
    with pytest.raises(PermissionDenied):
        services.record_downtime(actor=physicist, start=at(day, 9), end=at(day, 10), reason="x")
    assert not MachineDowntime.objects.exists()


def test_new_courses_avoid_downtimes(planning, physicist, staff):
    ready = add_working_days(timezone.localdate() + datetime.timedelta(days=1), 2)
    services.record_downtime(
        actor=staff, start=at(ready, 0), end=at(ready, 23, 59), reason="Planned maintenance"
    )
    course = make_course(planning, physicist, fractions=2, ready=ready)
    sessions = services.schedule_course(actor=physicist, course=course)
    assert local(sessions[0].start).date() > ready


def test_course_rules(doctor, staff, oncologist, physicist, patient):
    r = in_planning(doctor, staff, oncologist)
    with pytest.raises(PermissionDenied):
        make_course(r, patient)
    with pytest.raises(ValidationError):  # adults are not treated under general anaesthesia here
        make_course(r, physicist, category="paediatric_anaesthesia")
    with pytest.raises(ValidationError):
        make_course(r, physicist, ready=timezone.localdate() - datetime.timedelta(days=1))
    course = make_course(r, physicist, fractions=None)  # the review's proposed number
    assert course.fractions == 30
    assert course.due_date == add_working_days(course.ready_date, 20)  # standard urgency
    with pytest.raises(ValidationError):
        make_course(r, physicist)


def test_a_child_under_anaesthesia_is_treated_early_in_the_morning(
    doctor, staff, oncologist, physicist
):
    r = in_planning(doctor, staff, oncologist)
    r.patient.birth_date = timezone.localdate() - datetime.timedelta(days=6 * 365)
    r.patient.save()
    course = make_course(r, physicist, category="paediatric_anaesthesia", fractions=3)
    assert course.under_anaesthesia and course.first_session_minutes == 60
    for s in services.schedule_course(actor=physicist, course=course):
        gantry_day = default_gantry_day()
        assert (
            gantry_day.anaesthesia_earliest_start_min
            <= minutes(s.start)
            <= gantry_day.anaesthesia_latest_start_min
        )


# Payment in full before the first session -------------------------------------------------------


def test_the_first_session_of_a_patient_from_abroad_waits_for_full_payment(
    international_accepted, staff, oncologist, physicist
):
    r = international_accepted
    # Put by hand where a course could be prepared, without ever passing through 'paid'.
    TreatmentRequest.objects.filter(pk=r.pk).update(state=State.PLANNING)
    r.refresh_from_db()
    with pytest.raises(ValidationError) as exc:
        make_course(r, physicist)
    assert exc.value.code == "unpaid"
    course = TreatmentCourse.objects.create(
        treatment_request=r,
        fractions=3,
        category="adult_standard",
        session_minutes=30,
        first_session_extra_minutes=20,
        ready_date=timezone.localdate() + datetime.timedelta(days=3),
        due_date=timezone.localdate() + datetime.timedelta(days=30),
        created_by=physicist,
    )
    with pytest.raises(ValidationError) as exc:
        services.schedule_course(actor=physicist, course=course)
    assert exc.value.code == "unpaid"
    assert not GantrySession.objects.exists()
    # The path itself refuses the steps to treatment.
    with pytest.raises(ValidationError):
        referral_services.perform(actor=staff, treatment_request=r, action="schedule_treatment")


def test_a_patient_from_abroad_who_paid_is_scheduled(
    international_paid, staff, oncologist, physicist
):
    r = international_paid
    services.book_consultation(
        actor=staff, treatment_request=r, doctor=oncologist, start=at(first_open_day(), 9)
    )
    hold_first_consultation(r, oncologist)
    referral_services.perform(actor=oncologist, treatment_request=r, action="start_planning")
    course = make_course(r, physicist, fractions=2)
    assert len(services.schedule_course(actor=physicist, course=course)) == 2


# Earliest possible start ------------------------------------------------------------------------


def test_earliest_start_of_a_request_in_review(doctor, staff, oncologist):
    r = advance_to(
        make_request(doctor, covered_by_french_insurance=True),
        "in_review",
        staff=staff,
        oncologist=oncologist,
    )
    estimate = selectors.earliest_start(r)
    assert (
        estimate.fractions == selectors.DEFAULT_FRACTIONS and estimate.category == "adult_standard"
    )
    assert estimate.first_day == estimate.ready_date and is_working_day(estimate.first_day)
    # A downtime on that day pushes the estimate to the next working day.
    MachineDowntime.objects.create(
        start=at(estimate.ready_date, 0),
        end=at(estimate.ready_date, 23, 59),
        reason="Maintenance",
        recorded_by=staff,
    )
    later = selectors.earliest_start(r)
    assert later.first_day == add_working_days(estimate.ready_date + datetime.timedelta(days=1), 0)


def test_earliest_start_goes_around_the_booked_sessions(doctor, staff, oncologist, physicist):
    """When the estimate's first day is full, the estimate moves to a later day."""
    planning = in_planning(doctor, staff, oncologist)
    in_review = advance_to(
        make_request(doctor, covered_by_french_insurance=True),
        "in_review",
        staff=staff,
        oncologist=oncologist,
    )
    empty = selectors.earliest_start(in_review)
    day = empty.ready_date
    # Downtimes take the whole day but 12:00-13:00, room for a 50-minute first session; then a
    # session takes 12:00-12:30 and it no longer fits.
    MachineDowntime.objects.create(
        start=at(day, 0), end=at(day, 12), reason="QA", recorded_by=staff
    )
    MachineDowntime.objects.create(
        start=at(day, 13), end=at(day, 23, 59), reason="QA", recorded_by=staff
    )
    course = make_course(planning, physicist, fractions=1)
    assert selectors.earliest_start(in_review).first_day == day
    GantrySession.objects.create(
        course=course, fraction_number=1, start=at(day, 12), end=at(day, 12, 30)
    )
    assert selectors.earliest_start(in_review).first_day > day
