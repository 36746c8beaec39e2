"""Department pages: who may see and do what, and what the pages show."""

from __future__ import annotations

import datetime
import io

import pytest
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader

from protonpath.accounts.models import AuditEvent
from protonpath.department import services
from protonpath.department.models import (
    AgendaItem,
    OpeningHours,
    ReviewMeeting,
    Service,
    TeamMember,
)
from protonpath.referrals.models import State
from tests.factories import meeting_day

pytestmark = pytest.mark.django_db

EXTERNAL = ("patient", "doctor")


def as_user(client, user):
    client.force_login(user)
    return client


# Public directory -----------------------------------------------------------------------------


def test_the_public_page_lists_the_team_and_opening_hours_without_signing_in(client):
    response = client.get(reverse("department:about"))
    assert response.status_code == 200
    html = response.content.decode()
    for text in ("Jacques Balosso", "Head of department", "Magali Micaud", "Supervisor", "Juliette Thariat", "Radiation oncologist"):
        assert text in html
    assert "Proton therapy centre, CYCLHAD site, Caen" in html
    assert "08:00 – 18:30" in html and "08:00 – 17:00" in html
    assert "+33 2 31 24 34 48" in html
    assert "Clinical radiobiology" in html
    assert reverse("department:manage") not in html


def test_the_public_page_speaks_french(client):
    response = client.get(reverse("department:about"), HTTP_ACCEPT_LANGUAGE="fr")
    html = response.content.decode()
    assert "Consultations externes" in html and "Centre de protonthérapie, site CYCLHAD, Caen" in html
    assert "Radiobiologie clinique" in html
    assert "lundi" in html.lower()


def test_the_directory_was_loaded_from_the_seed_data():
    # Seed 000 lists ten radiation oncologists, the head of department among them.
    assert TeamMember.objects.filter(role="radiation_oncologist").count() == 9
    assert TeamMember.objects.get(role="head").name == "Jacques Balosso"
    consultations = Service.objects.get(code="consultations")
    hours = {(h.weekday, h.opens, h.closes) for h in consultations.hours.all()}
    assert hours == {(d, datetime.time(8), datetime.time(18, 30)) for d in range(5)}
    office = OpeningHours.objects.filter(service__code="administrative_office")
    assert {(h.weekday, h.closes) for h in office} == {(d, datetime.time(17)) for d in range(5)}


def test_opening_hours_for_the_consultation_booking():
    from protonpath.department import selectors

    hours = selectors.opening_hours("consultations")
    assert hours[0] == [(datetime.time(8), datetime.time(18, 30))] and 5 not in hours and 6 not in hours
    monday_noon = timezone.make_aware(datetime.datetime(2026, 11, 23, 12, 0))
    assert selectors.is_open("consultations", monday_noon)
    assert not selectors.is_open("consultations", monday_noon.replace(hour=19))
    assert not selectors.is_open("consultations", monday_noon + datetime.timedelta(days=5))
    assert selectors.is_open("consultations", monday_noon.replace(hour=18, minute=0))
    assert not selectors.is_open("administrative_office", monday_noon.replace(hour=17, minute=30))


@pytest.mark.parametrize("role", ["patient", "doctor", "oncologist", "physicist"])
def test_only_staff_and_head_edit_the_directory(client, users, role):
    as_user(client, users[role])
    assert client.get(reverse("department:manage")).status_code == 403
    assert client.post(reverse("department:manage"), {"section": "services"}).status_code == 403


def test_anonymous_visitors_are_sent_to_sign_in_to_edit(client):
    response = client.get(reverse("department:manage"))
    assert response.status_code == 302 and "/accounts/login" in response["Location"]


def _formset_post(formset, section: str, changes: dict[int, dict] | None = None, extra: dict | None = None) -> dict:
    data = {"section": section}
    for key, value in formset.management_form.initial.items():
        data[f"{section}-{key}"] = value
    for index, form in enumerate(formset.forms):
        for name, field in form.fields.items():
            value = form.initial.get(name, field.initial)
            if hasattr(value, "pk"):
                value = value.pk
            if value is None:
                value = ""
            if isinstance(value, bool):
                if not value:
                    continue
                value = "on"
            data[f"{section}-{index}-{name}"] = value
        for name, value in (changes or {}).get(index, {}).items():
            data[f"{section}-{index}-{name}"] = value
    data.update(extra or {})
    return data


@pytest.mark.parametrize("role", ["staff", "head"])
def test_staff_change_the_consultation_phone_and_it_is_audited(client, users, role):
    from protonpath.department.forms import ServiceFormSet

    as_user(client, users[role])
    formset = ServiceFormSet(prefix="services")
    index = [f.instance.code for f in formset.forms].index("consultations")
    data = _formset_post(formset, "services", {index: {"phone": "+33 2 31 00 00 00"}})
    response = client.post(reverse("department:manage"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Service.objects.get(code="consultations").phone == "+33 2 31 00 00 00"
    assert AuditEvent.objects.filter(actor=users[role], action="update", object_type="department.service").exists()
    assert "+33 2 31 00 00 00" in client.get(reverse("department:about")).content.decode()


def test_opening_hours_that_close_before_they_open_are_refused_and_nothing_changes(client, users):
    from protonpath.department.forms import HoursFormSet

    as_user(client, users["staff"])
    formset = HoursFormSet(prefix="hours")
    data = _formset_post(formset, "hours", {0: {"opens": "19:00", "closes": "08:00"}})
    response = client.post(reverse("department:manage"), data)
    assert response.status_code == 400
    assert OpeningHours.objects.filter(opens=datetime.time(19)).count() == 0


def test_staff_add_a_team_member(client, users):
    from protonpath.department.forms import TeamFormSet

    as_user(client, users["head"])
    formset = TeamFormSet(prefix="team")
    new = len(formset.forms) - 1
    data = _formset_post(
        formset, "team", {new: {"name": "Nouvelle Personne", "title": "Dr", "role": "radiation_oncologist", "display_order": "200", "active": "on"}}
    )
    response = client.post(reverse("department:manage"), data)
    assert response.status_code == 302
    assert TeamMember.objects.filter(name="Nouvelle Personne").exists()
    assert AuditEvent.objects.filter(action="create", object_type="department.teammember").exists()


# Meetings -------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["patient", "doctor", "physicist"])
def test_meetings_are_closed_to_external_users_and_physicists(client, users, meeting, role):
    as_user(client, users[role])
    for url in (
        reverse("department:meetings"),
        reverse("department:meeting", args=[meeting.pk]),
        reverse("department:minutes", args=[meeting.pk]),
    ):
        assert client.get(url).status_code == 403, url
    assert client.post(reverse("department:meetings"), {"starts_at": f"{meeting_day(2)}T14:00"}).status_code == 403
    assert ReviewMeeting.objects.count() == 1


@pytest.mark.parametrize("role", ["staff", "oncologist", "head"])
def test_staff_oncologists_and_head_see_the_meetings(client, users, meeting, role):
    as_user(client, users[role])
    assert client.get(reverse("department:meetings")).status_code == 200
    assert client.get(reverse("department:meeting", args=[meeting.pk])).status_code == 200
    assert client.get(reverse("department:meeting", args=[meeting.pk + 99])).status_code == 404


def test_staff_plan_a_meeting_from_the_page(client, users):
    as_user(client, users["staff"])
    response = client.post(
        reverse("department:meetings"),
        {"starts_at": f"{meeting_day(2)}T14:00", "location": "Salle 2", "chair": users["oncologist"].pk, "attendees": [users["head"].pk]},
    )
    meeting = ReviewMeeting.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("department:meeting", args=[meeting.pk])
    assert timezone.localtime(meeting.starts_at).hour == 14
    assert set(meeting.attendees.all()) == {users["head"], users["oncologist"]}


def test_the_whole_meeting_through_the_pages(client, users, meeting, complete_request):
    staff, oncologist = users["staff"], users["oncologist"]
    as_user(client, staff)
    page = client.get(reverse("department:meeting", args=[meeting.pk])).content.decode()
    assert complete_request.reference in page  # waiting for a meeting
    response = client.post(reverse("department:agenda_add"), {"meeting": meeting.pk, "treatment_request": complete_request.pk})
    assert response.status_code == 302
    complete_request.refresh_from_db()
    assert complete_request.state == State.IN_REVIEW
    item = AgendaItem.objects.get()

    as_user(client, oncologist)
    page = client.get(reverse("department:meeting", args=[meeting.pk])).content.decode()
    assert "Candidate indication: Malignant cartilage tumours" in page
    prefix = f"item{item.pk}"
    response = client.post(
        reverse("department:agenda_decide", args=[item.pk]),
        {f"{prefix}-decision": "accepted", f"{prefix}-dose_gy": "74", f"{prefix}-fractions": "37", f"{prefix}-note": "Validated."},
    )
    assert response.status_code == 302
    complete_request.refresh_from_db()
    assert (complete_request.state, complete_request.proposed_fractions) == (State.ACCEPTED, 37)
    as_user(client, staff)
    assert client.post(reverse("department:meeting_held", args=[meeting.pk])).status_code == 302
    meeting.refresh_from_db()
    assert meeting.status == ReviewMeeting.Status.HELD
    # Viewing the agenda is recorded against the request.
    assert AuditEvent.objects.filter(actor=oncologist, action="view", treatment_request_id=complete_request.pk).exists()


def test_an_acceptance_without_dose_is_shown_back_with_the_error(client, users, meeting, complete_request):
    item = services.add_to_agenda(actor=users["staff"], meeting=meeting, treatment_request=complete_request)
    as_user(client, users["oncologist"])
    response = client.post(reverse("department:agenda_decide", args=[item.pk]), {f"item{item.pk}-decision": "accepted"})
    assert response.status_code == 400
    assert "needs the proposed dose and number of fractions" in response.content.decode()
    complete_request.refresh_from_db()
    assert complete_request.state == State.IN_REVIEW


@pytest.mark.parametrize("role", ["staff", "head", "physicist", "patient", "doctor"])
def test_only_oncologists_post_decisions(client, users, meeting, complete_request, role):
    item = services.add_to_agenda(actor=users["staff"], meeting=meeting, treatment_request=complete_request)
    as_user(client, users[role])
    response = client.post(
        reverse("department:agenda_decide", args=[item.pk]),
        {f"item{item.pk}-decision": "accepted", f"item{item.pk}-dose_gy": "54", f"item{item.pk}-fractions": "30"},
    )
    assert response.status_code == 403
    complete_request.refresh_from_db()
    assert complete_request.state == State.IN_REVIEW


@pytest.mark.parametrize("role", ["oncologist", "physicist", "patient", "doctor"])
def test_only_staff_and_head_post_to_the_agenda(client, users, meeting, complete_request, role):
    as_user(client, users[role])
    response = client.post(reverse("department:agenda_add"), {"meeting": meeting.pk, "treatment_request": complete_request.pk})
    assert response.status_code == 403
    assert not AgendaItem.objects.exists()


# Minutes --------------------------------------------------------------------------------------


def _pdf_text(content: bytes) -> str:
    reader = PdfReader(io.BytesIO(content))
    # Table cells wrap lines: compare with single spaces.
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def test_the_minutes_pdf_lists_each_file_with_initials_decision_and_dose(client, users, meeting, complete_request):
    item = services.add_to_agenda(actor=users["staff"], meeting=meeting, treatment_request=complete_request)
    services.record_decision(actor=users["oncologist"], item=item, decision="accepted", note="Validated.", dose_gy=74, fractions=37)
    as_user(client, users["head"])
    response = client.get(reverse("department:minutes", args=[meeting.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF")
    text = _pdf_text(response.content)
    assert "Minutes of the multidisciplinary review meeting" in text
    assert complete_request.reference in text
    assert "A.E.I. (1979)" in text  # Amina El Idrissi, born 1979: initials and year only
    assert "Amina" not in text and "Idrissi" not in text and "Casablanca" not in text
    assert "Chordoma" in text and "Malignant cartilage tumours" in text
    assert "Accepted" in text and "74.00 Gy (RBE) in 37 fractions" in text
    assert str(users["head"]) in text  # attendee
    assert AuditEvent.objects.filter(actor=users["head"], action="download", object_type="department.reviewmeeting").exists()
    assert AuditEvent.objects.filter(actor=users["head"], action="export", treatment_request_id=complete_request.pk).exists()


def test_the_minutes_are_in_french_for_a_french_reader(client, users, meeting, complete_request):
    services.add_to_agenda(actor=users["staff"], meeting=meeting, treatment_request=complete_request)
    as_user(client, users["oncologist"])
    response = client.get(reverse("department:minutes", args=[meeting.pk]), HTTP_ACCEPT_LANGUAGE="fr")
    text = _pdf_text(response.content)
    assert "Compte rendu de la réunion de concertation pluridisciplinaire" in text
    assert "Tumeurs malignes cartilagineuses" in text
    assert "Aucune décision enregistrée" in text


# Request page panel -----------------------------------------------------------------------------


def test_the_triage_panel_is_for_oncologists_staff_and_head_only(rf, users, complete_request):
    from django.template.loader import render_to_string
    from django.utils import translation

    from protonpath.department.panels import request_panels

    for role in ("patient", "doctor", "physicist"):
        request = rf.get("/")
        request.user = users[role]
        assert request_panels(request, complete_request) == []
    request = rf.get("/")
    request.user = users["staff"]
    [panel] = request_panels(request, complete_request)
    assert panel["context"]["triage"]["candidates"][0]["code"] == "adult-cartilage"
    assert panel["context"]["may_schedule"] is True
    with translation.override("en"):
        [panel] = request_panels(request, complete_request)
        html = render_to_string(panel["template"], {"panel": panel["context"], "r": complete_request, "request": request})
    assert "Malignant cartilage tumours" in html and "The pathology “Chordoma” matches “chordoma”." in html
    request.user = users["oncologist"]
    assert request_panels(request, complete_request)[0]["context"]["may_schedule"] is False
    assert AuditEvent.objects.filter(actor=users["staff"], summary="triage", treatment_request_id=complete_request.pk).exists()


def test_the_panel_flags_reirradiation(rf, users, patient):
    from protonpath.department.panels import request_panels
    from tests.factories import make_request

    r = make_request(patient, submit=False, request_type="reirradiation")
    request = rf.get("/")
    request.user = users["oncologist"]
    triage = request_panels(request, r)[0]["context"]["triage"]
    assert triage["reirradiation"] is True
    assert "The request is for re-irradiation." in triage["notes"]
    assert [c["code"] for c in triage["candidates"]] == ["adult-cartilage", "adult-reirradiation"]


# Activity -------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["patient", "doctor", "oncologist", "physicist"])
def test_the_activity_page_is_for_the_head_and_administrative_staff(client, users, role):
    as_user(client, users[role])
    assert client.get(reverse("department:activity")).status_code == 403


def test_meeting_times_are_shown_in_local_time(client, users):
    meeting = services.create_meeting(
        actor=users["staff"], starts_at=timezone.make_aware(datetime.datetime(2026, 7, 2, 14, 30))
    )
    as_user(client, users["staff"])
    assert "14:30" in client.get(reverse("department:meeting", args=[meeting.pk])).content.decode()


def test_the_team_form_offers_only_staff_accounts(client, users):
    as_user(client, users["staff"])
    html = client.get(reverse("department:manage")).content.decode()
    assert f'<option value="{users["oncologist"].pk}">{users["oncologist"]}</option>' in html
    assert str(users["patient"]) not in html and str(users["doctor"]) not in html


@pytest.mark.parametrize("role", ["patient", "doctor", "physicist", "oncologist"])
def test_only_organisers_edit_remove_or_close_a_meeting(client, users, meeting, complete_request, role):
    item = services.add_to_agenda(actor=users["staff"], meeting=meeting, treatment_request=complete_request)
    as_user(client, users[role])
    edit = client.post(reverse("department:meeting_edit", args=[meeting.pk]), {"starts_at": f"{meeting_day(5)}T14:00"})
    assert edit.status_code == 403
    assert client.post(reverse("department:agenda_remove", args=[item.pk])).status_code == 403
    assert AgendaItem.objects.filter(pk=item.pk).exists()
    held = client.post(reverse("department:meeting_held", args=[meeting.pk]))
    meeting.refresh_from_db()
    if role == "oncologist":  # the chair of this meeting closes it
        assert held.status_code == 302 and meeting.status == ReviewMeeting.Status.HELD
    else:
        assert held.status_code == 403 and meeting.status == ReviewMeeting.Status.PLANNED
    assert timezone.localtime(meeting.starts_at).date() == meeting_day()


def test_staff_change_the_attendees_and_take_a_file_off_the_agenda(client, users, meeting, complete_request):
    item = services.add_to_agenda(actor=users["staff"], meeting=meeting, treatment_request=complete_request)
    as_user(client, users["staff"])
    response = client.post(
        reverse("department:meeting_edit", args=[meeting.pk]),
        {"starts_at": f"{meeting_day()}T15:00", "chair": users["head"].pk, "attendees": [users["oncologist"].pk]},
    )
    assert response.status_code == 302
    meeting.refresh_from_db()
    assert meeting.chair == users["head"] and set(meeting.attendees.all()) == {users["head"], users["oncologist"]}
    assert client.post(reverse("department:agenda_remove", args=[item.pk])).status_code == 302
    assert not AgendaItem.objects.exists()
    complete_request.refresh_from_db()
    assert complete_request.state == State.IN_REVIEW
    assert AuditEvent.objects.filter(action="delete", object_type="department.agendaitem").exists()


def test_a_file_in_the_wrong_state_gets_a_clear_message(client, users, meeting, patient):
    from tests.factories import make_request

    draft = make_request(patient, submit=False)
    as_user(client, users["staff"])
    response = client.post(reverse("department:agenda_add"), {"meeting": meeting.pk, "treatment_request": draft.pk}, follow=True)
    assert "Only complete files go to the review meeting" in response.content.decode()
    assert not AgendaItem.objects.exists()


def test_the_meeting_page_speaks_french(client, users, meeting, complete_request):
    services.add_to_agenda(actor=users["staff"], meeting=meeting, treatment_request=complete_request)
    as_user(client, users["oncologist"])
    html = client.get(reverse("department:meeting", args=[meeting.pk]), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Ordre du jour" in html and "Indication possible\u00a0: Tumeurs malignes cartilagineuses" in html
    assert "Enregistrer la décision" in html


def test_services_are_closed_on_french_public_holidays():
    from protonpath.department import selectors

    bastille_day = datetime.date(2026, 7, 14)  # a Tuesday
    assert bastille_day.weekday() == 1 and selectors.is_public_holiday(bastille_day)
    assert selectors.opening_periods_on("consultations", bastille_day) == []
    assert selectors.opening_periods_on("consultations", datetime.date(2026, 7, 15)) == [(datetime.time(8), datetime.time(18, 30))]
    assert not selectors.is_open("consultations", timezone.make_aware(datetime.datetime(2026, 7, 14, 10, 0)))
    assert selectors.is_open("consultations", timezone.make_aware(datetime.datetime(2026, 7, 15, 10, 0)))


def test_the_minutes_can_be_asked_for_in_the_other_language(client, users, meeting):
    as_user(client, users["staff"])
    french = _pdf_text(client.get(reverse("department:minutes", args=[meeting.pk]) + "?lang=fr").content)
    assert "Compte rendu de la réunion de concertation pluridisciplinaire" in french
    english = _pdf_text(
        client.get(reverse("department:minutes", args=[meeting.pk]) + "?lang=en", HTTP_ACCEPT_LANGUAGE="fr").content
    )
    assert "Minutes of the multidisciplinary review meeting" in english
    unknown = _pdf_text(client.get(reverse("department:minutes", args=[meeting.pk]) + "?lang=xx").content)
    assert "Minutes of the multidisciplinary review meeting" in unknown


def test_the_public_page_lists_the_validated_indications_in_both_languages(client):
    html = client.get(reverse("department:about")).content.decode()
    assert "Adult cancers" in html and "Paediatric cancers" in html
    assert "Malignant cartilage tumours: chondrosarcomas, chordomas" in html and "Curative re-irradiation" in html
    french = client.get(reverse("department:about"), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Cancers de l&#x27;enfant" in french or "Cancers de l'enfant" in french
    assert "Tumeurs du système nerveux : neuroblastomes" in french


def test_the_request_page_shows_the_triage_to_the_oncologist_not_to_the_patient(client, users, complete_request):
    as_user(client, users["oncologist"])
    html = client.get(reverse("referrals:detail", args=[complete_request.pk])).content.decode()
    assert 'id="triage"' in html and "Candidate indication: Malignant cartilage tumours" in html
    as_user(client, users["patient"])
    html = client.get(reverse("referrals:detail", args=[complete_request.pk])).content.decode()
    assert 'id="triage"' not in html and "Candidate indication" not in html
