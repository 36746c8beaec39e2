"""The radiation therapist at the console: opens on the gantry's day, records sessions and
downtimes, reads the patient's record and approved plan, and may do nothing else."""

from __future__ import annotations

import datetime

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from protonpath.accounts.models import STAFF_ROLES, AuditEvent, Role
from protonpath.scheduling import services
from protonpath.scheduling.models import GantrySession, SessionStatus
from protonpath.treatment import services as treatment_services
from tests.scheduling.test_django_views import first_open_day, login, scheduled_course

pytestmark = pytest.mark.django_db


def _session_in_the_past(course) -> GantrySession:
    session = course.sessions.order_by("start").first()
    past = timezone.now() - datetime.timedelta(hours=2)
    GantrySession.objects.filter(pk=session.pk).update(start=past, end=past + datetime.timedelta(minutes=50))
    return GantrySession.objects.get(pk=session.pk)


def test_the_therapist_is_department_staff_and_opens_on_the_gantrys_day(client, therapist):
    assert Role.THERAPIST in STAFF_ROLES and therapist.is_department_staff
    login(client, therapist)
    response = client.get("/")
    assert response.status_code == 302 and response.url == "/scheduling/agenda/"
    day = client.get("/scheduling/agenda/", follow=True)
    assert day.status_code == 200
    menu = [item["url"] for item in day.context["staff_menu"]]
    assert menu == ["/requests/", "/scheduling/agenda/"]  # no queues, meetings, inbox, tariffs, activity
    assert AuditEvent.objects.filter(actor=therapist, object_type="scheduling.agenda").exists()


def test_the_therapist_records_a_session_given_from_the_agenda(client, users, therapist, patient_request):
    course = scheduled_course(users, patient_request, "adult_standard")
    session = _session_in_the_past(course)
    login(client, therapist)
    day = timezone.localtime(session.start).date()
    page = client.get(f"/scheduling/agenda/{day.isoformat()}/").content.decode()
    assert f"/scheduling/sessions/{session.pk}/record/" in page
    response = client.post(f"/scheduling/sessions/{session.pk}/record/", {"outcome": "done"})
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.status == SessionStatus.DONE
    assert AuditEvent.objects.filter(actor=therapist, object_type__startswith="scheduling").exclude(
        object_type="scheduling.agenda").exists()


def test_the_therapist_records_a_machine_downtime(therapist):
    day = first_open_day()
    start = timezone.make_aware(datetime.datetime.combine(day, datetime.time(7, 0)))
    downtime, moved = services.record_downtime(
        actor=therapist, start=start, end=start + datetime.timedelta(minutes=30), reason="magnet quench"
    )
    assert downtime.pk and moved == []


def test_the_therapist_may_not_prescribe_plan_book_or_schedule(users, therapist, patient_request):
    with pytest.raises(PermissionDenied):
        services.create_course(actor=therapist, treatment_request=patient_request, category="adult_standard",
                               ready_date=first_open_day(), fractions=2)
    day = first_open_day()
    with pytest.raises(PermissionDenied):
        services.book_consultation(actor=therapist, treatment_request=patient_request, doctor=users["oncologist"],
                                   start=timezone.make_aware(datetime.datetime.combine(day, datetime.time(10))))
    assert Role.THERAPIST not in treatment_services.PRESCRIBERS
    assert Role.THERAPIST not in treatment_services.PLANNERS
    assert Role.THERAPIST in treatment_services.PLAN_VIEWERS


def test_the_therapist_is_refused_the_activity_page_and_the_refusal_is_audited(client, therapist):
    login(client, therapist)
    before = AuditEvent.objects.filter(action=AuditEvent.Action.DENIED, actor=therapist).count()
    assert client.get("/department/activity/").status_code == 403
    assert AuditEvent.objects.filter(action=AuditEvent.Action.DENIED, actor=therapist).count() == before + 1


def test_the_role_has_its_name_in_french():
    from django.utils import translation

    with translation.override("fr"):
        assert str(Role.THERAPIST.label) == "Manipulateur en radiothérapie"
