"""Sign-up, sign-in, languages, and what the audit trail and the logs keep."""

import logging

import pytest
from django.urls import reverse

from protonpath.accounts.models import AuditEvent, Role, User
from tests.factories import PASSWORD, make_request

pytestmark = pytest.mark.django_db


def test_a_patient_signs_up_and_lands_on_their_requests(client):
    response = client.post(
        reverse("accounts:signup"),
        {
            "username": "amina",
            "first_name": "Amina",
            "last_name": "El Idrissi",
            "email": "Amina@Example.org",
            "phone": "",
            "institution": "",
            "preferred_language": "fr",
            "role": "patient",
            "password1": "a-strong-pass-phrase-9",
            "password2": "a-strong-pass-phrase-9",
        },
        follow=True,
    )
    user = User.objects.get(username="amina")
    assert user.role == Role.PATIENT and user.email == "amina@example.org" and not user.is_staff
    assert response.redirect_chain[-1][0] == reverse("referrals:list")


def test_sign_up_cannot_choose_a_staff_role(client):
    response = client.post(
        reverse("accounts:signup"),
        {"username": "mallory", "email": "m@example.org", "role": "oncologist", "password1": "x-long-pass-phrase-1", "password2": "x-long-pass-phrase-1", "preferred_language": "en"},
    )
    assert response.status_code == 200 and not User.objects.filter(username="mallory").exists()


def test_weak_or_mismatched_passwords_are_refused(client):
    data = {"username": "bob", "email": "b@example.org", "role": "patient", "preferred_language": "en"}
    assert client.post(reverse("accounts:signup"), {**data, "password1": "123", "password2": "123"}).status_code == 200
    assert client.post(reverse("accounts:signup"), {**data, "password1": "a-long-pass-phrase-1", "password2": "other-long-pass-2"}).status_code == 200
    assert not User.objects.filter(username="bob").exists()


def test_sign_in_and_failures_are_audited_without_the_user_name(client, patient):
    assert client.login(username=patient.username, password=PASSWORD)
    assert AuditEvent.objects.filter(action="login", actor=patient).exists()
    client.logout()
    client.post(reverse("accounts:login"), {"username": "someone.else", "password": "wrong"})
    failed = AuditEvent.objects.get(action="login_failed")
    assert failed.actor is None and "someone" not in failed.summary


def test_pages_are_in_french_for_french_speakers(client, patient):
    response = client.get("/", HTTP_ACCEPT_LANGUAGE="fr")
    html = response.content.decode()
    assert 'lang="fr"' in html
    assert "Demander une protonthérapie" in html or "protonthérapie" in html.lower()
    client.force_login(patient)
    r = make_request(patient)
    page = client.get(reverse("referrals:detail", args=[r.pk]), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Dossier médical" in page
    # Dates in the French format (day first).
    assert r.patient.birth_date.strftime("%d/%m/%Y") in page or "14 mars 1979" in page


def test_language_choice_is_kept_on_the_account(client, patient):
    client.force_login(patient)
    client.post(reverse("accounts:profile"), {"preferred_language": "fr"})
    patient.refresh_from_db()
    assert patient.preferred_language == "fr"


def test_logs_carry_no_personal_data(client, patient, staff, caplog, django_capture_on_commit_callbacks):
    caplog.set_level(logging.DEBUG)
    with django_capture_on_commit_callbacks(execute=True):
        r = make_request(patient)
    client.force_login(staff)
    client.get(reverse("referrals:detail", args=[r.pk]))
    text = caplog.text
    for personal in ("Amina", "Idrissi", "Chordoma", "Clivus", "amina@example.org", "1979"):
        assert personal not in text, personal
    assert "audit" in text  # the log is there, without the person


def test_audit_trail_cannot_be_changed_in_the_admin(client, staff):
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    event = AuditEvent.objects.create(action="view", object_type="x", object_id="1")
    assert client.get(reverse("admin:accounts_auditevent_change", args=[event.pk])).status_code == 200
    assert client.post(reverse("admin:accounts_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.parametrize(
    ("role", "present", "absent"),
    [
        ("head", ["Activity", "Review meetings", "Work queues"], []),
        ("physicist", ["Work queues"], ["Tariffs", "Activity", "Review meetings"]),
        ("patient", ["My requests"], ["Work queues", "Tariffs", "Activity"]),
    ],
)
def test_menu_shows_each_role_its_own_entries(client, users, role, present, absent):
    client.force_login(users[role])
    header = client.get(reverse("department:about")).content.decode().split("</header>")[0]
    for label in present:
        assert label in header, label
    for label in absent:
        assert label not in header, label
