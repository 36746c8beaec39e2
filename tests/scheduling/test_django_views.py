"""Pages and API of the scheduling app, per role: who sees and does what (others get 403 or 404)."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from protonpath.accounts.models import ApiToken, AuditEvent, Role
from protonpath.referrals import services as referral_services
from protonpath.referrals.models import State
from protonpath.scheduling import ical, selectors, services
from protonpath.scheduling.models import (
    Consultation,
    GantrySession,
    MachineDowntime,
    SessionStatus,
    TreatmentCourse,
)
from tests.factories import PASSWORD, UserFactory, advance_to, make_request
from tests.facts import hold_first_consultation

pytestmark = pytest.mark.django_db


def at(day: datetime.date, hour: int, minute: int = 0) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time(hour, minute)))


def first_open_day() -> datetime.date:
    return selectors.next_days_with_hours(timezone.localdate() + datetime.timedelta(days=1), 1)[0]


def login(client, user):
    assert client.login(username=user.username, password=PASSWORD)
    return client


def get(client, user, url):
    client.logout()
    if user is not None:
        login(client, user)
    return client.get(url)


# The request page's panel and the patient's calendar -------------------------------------------


def test_the_owner_sees_the_appointments_on_the_request_page(client, patient, patient_request):
    page = get(client, patient, f"/requests/{patient_request.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="appointments"' in html and "First consultation" in html and "09:00" in html
    assert f"/scheduling/requests/{patient_request.pk}/calendar.ics" in html
    assert "Earliest possible start" not in html  # staff only
    assert "Book the first consultation" not in html


def test_the_calendar_export_is_for_the_patient_and_staff_only(client, users, patient_request):
    url = f"/scheduling/requests/{patient_request.pk}/calendar.ics"
    expected = {
        "patient": 200,
        "other_patient": 404,
        "doctor": 404,
        "other_doctor": 404,
        "staff": 200,
        "oncologist": 200,
        "physicist": 200,
        "head": 200,
    }
    for name, status in expected.items():
        response = get(client, users[name], url)
        assert response.status_code == status, name
    assert get(client, None, url).status_code == 302  # to the sign-in page
    response = get(client, users["patient"], url)
    body = response.content.decode()
    assert response["Content-Type"].startswith("text/calendar")
    assert body.startswith("BEGIN:VCALENDAR\r\n") and body.endswith("END:VCALENDAR\r\n")
    assert "\n" not in body.replace("\r\n", "") and body.count("BEGIN:VEVENT") == 1
    assert "DTSTART:" in body and "DTSTAMP:" in body and "UID:consultation-" in body
    assert patient_request.pathology_name not in body
    assert AuditEvent.objects.filter(
        action="export", treatment_request_id=patient_request.pk
    ).exists()


def test_one_consultation_export_per_role(client, users, patient_request):
    consultation = patient_request.consultations.get()
    url = f"/scheduling/consultations/{consultation.pk}/consultation.ics"
    for name, status in {
        "patient": 200,
        "other_patient": 404,
        "other_doctor": 404,
        "staff": 200,
    }.items():
        assert get(client, users[name], url).status_code == status, name


def test_staff_see_the_earliest_possible_start_of_a_request_in_review(
    client, users, doctor, staff, oncologist
):
    r = advance_to(
        make_request(doctor, covered_by_french_insurance=True),
        "in_review",
        staff=staff,
        oncologist=oncologist,
    )
    estimate = selectors.earliest_start(r)
    for name in ("staff", "oncologist", "head"):
        html = get(client, users[name], f"/requests/{r.pk}/").content.decode()
        assert 'id="earliest-start"' in html, name
        assert estimate.first_day.strftime("%d %B %Y").lstrip("0") in html
    assert (
        'id="earliest-start"'
        not in get(client, users["doctor"], f"/requests/{r.pk}/").content.decode()
    )


# Booking pages ---------------------------------------------------------------------------------


@pytest.fixture
def ready(doctor, staff, oncologist):
    r = advance_to(
        make_request(doctor, covered_by_french_insurance=True),
        "accepted",
        staff=staff,
        oncologist=oncologist,
    )
    referral_services.send_decision(actor=staff, treatment_request=r)
    return r


def test_the_booking_page_per_role(client, users, ready):
    url = f"/scheduling/requests/{ready.pk}/book/"
    expected = {
        "staff": 200,
        "head": 200,
        "oncologist": 403,
        "physicist": 404,
        "doctor": 403,
        "other_doctor": 404,
        "patient": 404,
    }
    for name, status in expected.items():
        assert get(client, users[name], url).status_code == status, name


def test_staff_book_a_free_slot_from_the_page(client, staff, oncologist, ready):
    day = first_open_day()
    page = get(
        client,
        staff,
        f"/scheduling/requests/{ready.pk}/book/?doctor={oncologist.pk}&day={day.isoformat()}",
    )
    assert (
        page.status_code == 200
        and b"08:00" in page.content
        and b"17:30" in page.content
        and b"18:00" not in page.content
    )
    detail = get(client, staff, f"/requests/{ready.pk}/").content.decode()
    assert "Book the first consultation" in detail
    response = client.post(
        f"/scheduling/requests/{ready.pk}/book/",
        {"doctor": oncologist.pk, "start": at(day, 10).isoformat(), "kind": "first"},
    )
    assert response.status_code == 302 and response["Location"] == f"/requests/{ready.pk}/"
    ready.refresh_from_db()
    assert ready.state == State.CONSULTATION_BOOKED
    assert Consultation.objects.get(treatment_request=ready).start == at(day, 10)
    page = client.get(
        f"/scheduling/requests/{ready.pk}/book/?doctor={oncologist.pk}&day={day.isoformat()}"
    )
    assert b'data-start="' + at(day, 10).isoformat().encode() not in page.content


def test_a_refused_booking_says_why_and_saves_nothing(client, staff, oncologist, ready):
    saturday = timezone.localdate() + datetime.timedelta(
        days=(5 - timezone.localdate().weekday()) % 7 or 7
    )
    login(client, staff)
    response = client.post(
        f"/scheduling/requests/{ready.pk}/book/",
        {"doctor": oncologist.pk, "start": at(saturday, 10).isoformat(), "kind": "first"},
    )
    assert response.status_code == 400 and "closed at weekends" in response.content.decode()
    response = client.post(
        f"/scheduling/requests/{ready.pk}/book/", {"doctor": oncologist.pk, "start": "not a time"}
    )
    assert response.status_code == 400
    assert not Consultation.objects.exists()
    page = client.get(
        f"/scheduling/requests/{ready.pk}/book/?doctor={oncologist.pk}&day={saturday.isoformat()}"
    )
    assert "No consultations on this day." in page.content.decode()


def test_moving_and_cancelling_from_the_pages(client, users, patient_request):
    consultation = patient_request.consultations.get()
    later = selectors.next_days_with_hours(first_open_day() + datetime.timedelta(days=1), 1)[0]
    assert (
        get(
            client, users["patient"], f"/scheduling/consultations/{consultation.pk}/reschedule/"
        ).status_code
        == 403
    )
    assert (
        get(
            client,
            users["other_patient"],
            f"/scheduling/consultations/{consultation.pk}/reschedule/",
        ).status_code
        == 404
    )
    assert (
        get(
            client, users["staff"], f"/scheduling/consultations/{consultation.pk}/reschedule/"
        ).status_code
        == 200
    )
    response = client.post(
        f"/scheduling/consultations/{consultation.pk}/reschedule/",
        {"doctor": consultation.doctor_id, "start": at(later, 15).isoformat()},
    )
    assert response.status_code == 302
    consultation.refresh_from_db()
    assert consultation.start == at(later, 15)
    # Another patient cannot cancel it (404); the patient can, with a reason.
    login(client, users["other_patient"])
    assert (
        client.post(
            f"/scheduling/consultations/{consultation.pk}/cancel/", {"reason": "x"}
        ).status_code
        == 404
    )
    login(client, users["patient"])
    client.post(f"/scheduling/consultations/{consultation.pk}/cancel/", {"reason": ""})
    consultation.refresh_from_db()
    assert consultation.is_booked
    client.post(
        f"/scheduling/consultations/{consultation.pk}/cancel/",
        {"reason": "I cannot travel that week"},
    )
    consultation.refresh_from_db()
    assert consultation.status == "cancelled" and consultation.cancelled_by == users["patient"]


# The gantry agenda -------------------------------------------------------------------------------


def test_the_agenda_is_for_staff(client, users):
    day = first_open_day().isoformat()
    for name, status in {
        "staff": 200,
        "oncologist": 200,
        "physicist": 200,
        "head": 200,
        "patient": 403,
        "doctor": 403,
    }.items():
        assert get(client, users[name], f"/scheduling/agenda/{day}/").status_code == status, name
    assert get(client, users["staff"], "/scheduling/agenda/2026-02-30/").status_code == 404
    assert get(client, users["staff"], "/scheduling/agenda/").status_code == 302


def test_the_agenda_lists_the_days_sessions_and_records_a_downtime(client, users, patient_request):
    staff, oncologist, physicist = users["staff"], users["oncologist"], users["physicist"]
    hold_first_consultation(patient_request, oncologist)
    referral_services.perform(
        actor=oncologist, treatment_request=patient_request, action="start_planning"
    )
    login(client, physicist)
    day = selectors.next_days_with_hours(first_open_day() + datetime.timedelta(days=3), 1)[0]
    response = client.post(
        f"/scheduling/requests/{patient_request.pk}/course/",
        {
            "category": "adult_standard",
            "fractions": 3,
            "ready_date": day.isoformat(),
            "urgency": "standard",
        },
    )
    assert response.status_code == 302
    course = TreatmentCourse.objects.get(treatment_request=patient_request)
    client.post(f"/scheduling/courses/{course.pk}/schedule/")
    sessions = list(course.sessions.order_by("start"))
    assert len(sessions) == 3
    # Planned sessions may still move: the patient sees them once announced.
    ics = get(
        client, users["patient"], f"/scheduling/requests/{patient_request.pk}/calendar.ics"
    ).content.decode()
    assert ics.count("BEGIN:VEVENT") == 1
    staff_ics = get(
        client, staff, f"/scheduling/requests/{patient_request.pk}/calendar.ics"
    ).content.decode()
    assert staff_ics.count("BEGIN:VEVENT") == 4
    login(client, physicist)
    client.post(f"/scheduling/courses/{course.pk}/announce/")
    assert set(course.sessions.values_list("status", flat=True)) == {SessionStatus.ANNOUNCED}
    first_day = timezone.localtime(sessions[0].start).date()
    page = get(client, staff, f"/scheduling/agenda/{first_day.isoformat()}/").content.decode()
    assert str(patient_request.patient) in page and "1 / 3" in page
    # The patient's calendar now lists the sessions too.
    ics = get(
        client, users["patient"], f"/scheduling/requests/{patient_request.pk}/calendar.ics"
    ).content.decode()
    assert ics.count("BEGIN:VEVENT") == 4
    # A physicist may not record downtimes; staff may.
    login(client, physicist)
    form = {
        "start": f"{first_day}T00:00",
        "end": f"{first_day}T23:00",
        "reason": "Gantry rotation fault",
    }
    assert client.post("/scheduling/downtimes/new/", form).status_code == 403
    login(client, staff)
    assert client.post("/scheduling/downtimes/new/", form).status_code == 302
    assert MachineDowntime.objects.count() == 1
    assert GantrySession.objects.get(pk=sessions[0].pk).status == SessionStatus.CANCELLED
    assert course.sessions.filter(status=SessionStatus.ANNOUNCED).count() == 3


def scheduled_course(users, patient_request, category):
    """Planning started, then a 2-fraction course of ``category``, ready on the first open
    day, scheduled by the physicist."""
    hold_first_consultation(patient_request, users["oncologist"])
    referral_services.perform(
        actor=users["oncologist"], treatment_request=patient_request, action="start_planning"
    )
    course = services.create_course(
        actor=users["physicist"],
        treatment_request=patient_request,
        category=category,
        ready_date=first_open_day(),
        fractions=2,
    )
    services.schedule_course(actor=users["physicist"], course=course)
    return course


def test_recording_a_session_from_the_agenda(client, users, patient_request):
    course = scheduled_course(users, patient_request, "adult_standard")
    session = course.sessions.order_by("start").first()
    past = timezone.now() - datetime.timedelta(hours=2)
    GantrySession.objects.filter(pk=session.pk).update(
        start=past, end=past + datetime.timedelta(minutes=50)
    )
    login(client, users["physicist"])
    assert (
        client.post(f"/scheduling/sessions/{session.pk}/record/", {"outcome": "done"}).status_code
        == 403
    )
    login(client, users["staff"])
    assert (
        client.post(f"/scheduling/sessions/{session.pk}/record/", {"outcome": "done"}).status_code
        == 302
    )
    session.refresh_from_db()
    assert session.status == SessionStatus.DONE


def test_the_agenda_names_each_session_s_category_in_the_reader_s_language(client, users, patient_request):
    course = scheduled_course(users, patient_request, "adult_complex")
    day = timezone.localtime(course.sessions.order_by("start").first().start).date()
    login(client, users["staff"])
    url = f"/scheduling/agenda/{day.isoformat()}/"
    french = client.get(url, HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Adulte, complexe (tronc avec gestion des mouvements, réirradiation)" in french
    assert "Catégorie" in french and "Adult, complex" not in french
    english = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Adult, complex (trunk with motion management, re-irradiation)" in english
    # The request page's course shows it too.
    panel = client.get(f"/requests/{patient_request.pk}/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Adulte, complexe (tronc avec gestion des mouvements, réirradiation)" in panel


def test_every_category_of_the_gantry_data_has_a_label_in_both_languages():
    from django.utils import translation

    from protonpath.scheduling.config import default_gantry_day
    from protonpath.scheduling.models import IndicationCategory

    assert set(IndicationCategory.values) == set(default_gantry_day().categories)
    for category in IndicationCategory:
        with translation.override("fr"):
            french = str(category.label)
        with translation.override("en"):
            assert str(category.label) != french, category


# API -----------------------------------------------------------------------------------------------


def bearer(user):
    return {"HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(user=user, name='test')[1]}"}


def test_api_calendar_per_role(client, users, patient_request):
    url = f"/api/scheduling/requests/{patient_request.pk}/calendar"
    response = client.get(url, **bearer(users["patient"]))
    assert response.status_code == 200 and response.json()[0]["kind"] == "consultation"
    assert client.get(url, **bearer(users["other_patient"])).status_code == 404
    assert client.get(url).status_code == 401


def test_api_booking_and_free_slots(client, users, ready):
    day = first_open_day()
    slots_url = f"/api/scheduling/doctors/{users['oncologist'].pk}/free-slots?day={day.isoformat()}"
    assert client.get(slots_url, **bearer(users["patient"])).status_code == 403
    free = client.get(slots_url, **bearer(users["staff"])).json()
    assert len(free) == 20
    url = f"/api/scheduling/requests/{ready.pk}/consultations"
    payload = {"doctor_id": users["oncologist"].pk, "start": at(day, 8).isoformat()}
    assert (
        client.post(
            url, payload, content_type="application/json", **bearer(users["doctor"])
        ).status_code
        == 403
    )
    created = client.post(url, payload, content_type="application/json", **bearer(users["staff"]))
    assert created.status_code == 201 and created.json()["status"] == "booked"
    again = client.post(
        url,
        {**payload, "kind": "follow_up"},
        content_type="application/json",
        **bearer(users["staff"]),
    )
    assert again.status_code == 400 and again.json()["detail"]
    assert len(client.get(slots_url, **bearer(users["staff"])).json()) == 18


# iCalendar writer ----------------------------------------------------------------------------------


def test_ical_escapes_folds_and_uses_crlf():
    now = timezone.make_aware(datetime.datetime(2026, 3, 2, 9, 0))
    event = ical.Event(
        uid="x-1@protonpath",
        start=now,
        end=now + datetime.timedelta(minutes=30),
        summary="Consultation; Dr Élodie, Caen\\Normandie\nsecond line",
        description="é" * 80,
    )
    text = ical.calendar([event], method="REQUEST", now=now)
    lines = text.split("\r\n")
    assert lines[-1] == "" and all("\n" not in line for line in lines)
    assert "SUMMARY:Consultation\\; Dr Élodie\\, Caen\\\\Normandie\\nsecond line" in text
    assert (
        "DTSTART:20260302T080000Z" in text and "DTSTAMP:20260302T080000Z" in text
    )  # Paris is UTC+1 in March
    assert all(len(line.encode("utf-8")) <= 75 for line in lines)
    unfolded = text.replace("\r\n ", "")
    assert "DESCRIPTION:" + "é" * 80 in unfolded
    with pytest.raises(ValueError):
        ical.utc_stamp(datetime.datetime(2026, 1, 1))


# French ----------------------------------------------------------------------------------------------


def test_pages_and_messages_in_french(
    client, staff, oncologist, ready, django_capture_on_commit_callbacks
):
    from django.core import mail

    ready.patient.user = None
    ready.submitted_by.preferred_language = "fr"
    ready.submitted_by.save()
    oncologist.preferred_language = "fr"
    oncologist.save()
    login(client, staff)
    day = first_open_day()
    page = client.get(
        f"/scheduling/requests/{ready.pk}/book/?day={day.isoformat()}", HTTP_ACCEPT_LANGUAGE="fr"
    )
    html = page.content.decode()
    assert "Voir les créneaux libres" in html and "Créneaux libres de" in html
    assert "Première consultation" in html
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.book_consultation(
            actor=staff, treatment_request=ready, doctor=oncologist, start=at(day, 11)
        )
    subjects = [m.subject for m in mail.outbox]
    assert any(s.startswith("Consultation réservée") for s in subjects)
    body = next(m.body for m in mail.outbox if m.subject.startswith("Consultation réservée"))
    assert "heure de Paris" in body and "11:00" in body


def test_course_pages_per_role(client, users, patient_request):
    """Only department staff prepare, place and announce courses; outsiders get 403 or 404."""
    hold_first_consultation(patient_request, users["oncologist"])
    referral_services.perform(
        actor=users["oncologist"], treatment_request=patient_request, action="start_planning"
    )
    form = {
        "category": "adult_standard",
        "fractions": 2,
        "ready_date": first_open_day().isoformat(),
        "urgency": "standard",
    }
    url = f"/scheduling/requests/{patient_request.pk}/course/"
    for name, status in {
        "patient": 403,
        "other_patient": 404,
        "doctor": 404,
        "other_doctor": 404,
    }.items():
        login(client, users[name])
        assert client.post(url, form).status_code == status, name
    assert not TreatmentCourse.objects.exists()
    login(client, users["oncologist"])
    assert client.post(url, form).status_code == 302
    course = TreatmentCourse.objects.get()
    for action in ("schedule", "announce"):
        for name, status in {"patient": 403, "other_patient": 404}.items():
            login(client, users[name])
            assert (
                client.post(f"/scheduling/courses/{course.pk}/{action}/").status_code == status
            ), (action, name)
    assert not course.sessions.exists()
    login(client, users["other_patient"])
    assert client.post("/scheduling/downtimes/new/", {}).status_code == 403
    assert client.get(f"/scheduling/courses/{course.pk}/schedule/").status_code == 405


def test_upcoming_consultations_per_role(client, users, patient_request):
    consultation = patient_request.consultations.get()
    for name, status in {"patient": 403, "doctor": 403, "physicist": 200, "head": 200}.items():
        assert get(client, users[name], "/scheduling/consultations/").status_code == status, name
    # An oncologist sees their own consultations by default.
    page = get(client, users["oncologist"], "/scheduling/consultations/").content.decode()
    assert patient_request.reference in page
    colleague = UserFactory(role=Role.ONCOLOGIST, username="onco2")
    page = get(client, colleague, "/scheduling/consultations/").content.decode()
    assert (
        patient_request.reference not in page and "No consultation in the next two weeks." in page
    )
    page = get(client, colleague, "/scheduling/consultations/?doctor=all").content.decode()
    assert patient_request.reference in page
    page = get(
        client, users["staff"], f"/scheduling/consultations/?doctor={consultation.doctor_id}"
    ).content.decode()
    assert patient_request.reference in page
