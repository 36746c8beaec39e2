"""Password reset by e-mail: one-time links, the same answer for any address, in the user's language."""

import logging
import re
from urllib.parse import urlparse

import pytest
from django.urls import reverse

from protonpath.accounts.models import AuditEvent
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-brand-new-pass-phrase-7"


def ask_for_link(client, email, **extra):
    return client.post(reverse("accounts:password_reset"), {"email": email}, **extra)


def link_path(message) -> str:
    links = re.findall(r"https?://\S+", message.body)
    assert len(links) == 1, message.body
    return urlparse(links[0]).path


def set_new_password(client, path, password=NEW_PASSWORD):
    """Follows the link (which moves the token into the session) and sends the new password."""
    response = client.get(path, follow=True)
    assert response.status_code == 200 and response.context["validlink"]
    form_url = response.redirect_chain[-1][0]
    return client.post(form_url, {"new_password1": password, "new_password2": password})


def signs_in(client, username, password) -> bool:
    client.post(reverse("accounts:login"), {"username": username, "password": password})
    ok = "_auth_user_id" in client.session
    client.logout()
    return ok


def test_the_sign_in_page_offers_a_reset(client):
    html = client.get(reverse("accounts:login")).content.decode()
    assert reverse("accounts:password_reset") in html and "Forgot your password?" in html


def test_known_and_unknown_addresses_get_the_same_answer(client, patient, mailoutbox):
    known = ask_for_link(client, patient.email)
    unknown = ask_for_link(client, "nobody@example.org")
    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"] == reverse("accounts:password_reset_done")
    done = client.get(known["Location"])
    assert done.status_code == 200 and "If an account uses this address" in done.content.decode()
    assert [m.to for m in mailoutbox] == [[patient.email]]


def test_requests_are_audited_without_the_address(client, patient, mailoutbox):
    ask_for_link(client, patient.email.upper(), REMOTE_ADDR="10.1.1.1")
    ask_for_link(client, "nobody@example.org", REMOTE_ADDR="10.1.1.2")
    known, unknown = AuditEvent.objects.filter(action="reset_requested").order_by("id")
    assert known.object_type == "accounts.user" and known.object_id == str(patient.pk) and known.actor is None
    assert known.ip_address == "10.1.1.1"
    assert unknown.object_id == "" and unknown.ip_address == "10.1.1.2"
    for event in (known, unknown):
        assert "@" not in event.summary and "nobody" not in event.summary
    assert len(mailoutbox) == 1  # the address is matched whatever its case


def test_the_e_mail_holds_only_the_link(client, patient, mailoutbox):
    patient.first_name, patient.last_name = "Amina", "El Idrissi"
    patient.save()
    ask_for_link(client, patient.email)
    message = mailoutbox[0]
    text = message.subject + message.body
    for personal in (patient.username, patient.first_name, patient.last_name):
        assert personal not in text, personal
    assert link_path(message).startswith("/accounts/password-reset/")


def test_the_link_sets_a_new_password_once(client, patient, mailoutbox):
    ask_for_link(client, patient.email)
    path = link_path(mailoutbox[0])
    response = set_new_password(client, path)
    assert response.status_code == 302 and response["Location"] == reverse("accounts:password_reset_complete")
    assert "Password changed" in client.get(response["Location"]).content.decode()

    # The link cannot be used again.
    again = client.get(path, follow=True)
    assert not again.context["validlink"] and "This link no longer works" in again.content.decode()

    assert signs_in(client, patient.username, NEW_PASSWORD)
    assert not signs_in(client, patient.username, PASSWORD)
    done = AuditEvent.objects.get(action="password_reset")
    assert done.actor == patient and done.object_id == str(patient.pk)


def test_a_forged_token_is_refused(client, patient, mailoutbox):
    ask_for_link(client, patient.email)
    path = link_path(mailoutbox[0])
    forged = re.sub(r"/[^/]+/$", "/abc-0123456789abcdef/", path)
    response = client.get(forged, follow=True)
    assert not response.context["validlink"]


def test_a_reset_lifts_a_sign_in_lockout(client, patient, mailoutbox):
    for _ in range(5):
        client.post(reverse("accounts:login"), {"username": patient.username, "password": "wrong-one-0"})
    assert client.post(reverse("accounts:login"), {"username": patient.username, "password": PASSWORD}).status_code == 429
    ask_for_link(client, patient.email)
    set_new_password(client, link_path(mailoutbox[0]))
    assert signs_in(client, patient.username, NEW_PASSWORD)


def test_the_e_mail_is_in_the_account_language_and_the_pages_in_the_reader_s(client, patient, other_patient, mailoutbox):
    patient.preferred_language = "fr"
    patient.save()
    # Asked from an English page, the French speaker's e-mail is in French; and the other way round.
    ask_for_link(client, patient.email, HTTP_ACCEPT_LANGUAGE="en")
    ask_for_link(client, other_patient.email, HTTP_ACCEPT_LANGUAGE="fr")
    french, english = mailoutbox
    assert french.subject.startswith("Choisir un nouveau mot de passe")
    assert "Service de protonthérapie" in french.subject
    assert "suivez ce lien" in french.body and "ne sert qu'une fois, dans un délai de 60 minutes" in french.body
    assert english.subject.startswith("Choose a new password") and "follow this link" in english.body

    page = client.get(reverse("accounts:password_reset"), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Mot de passe oublié\u00a0?" in page and "M'envoyer un lien" in page
    done = client.get(reverse("accounts:password_reset_done"), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Si un compte utilise cette adresse" in done
    form = client.get(link_path(french), HTTP_ACCEPT_LANGUAGE="fr", follow=True).content.decode()
    assert "Choisir un nouveau mot de passe" in form and "Enregistrer le nouveau mot de passe" in form
    login = client.get(reverse("accounts:login"), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Mot de passe oublié\u00a0?" in login


def test_a_weak_new_password_is_refused(client, patient, mailoutbox):
    ask_for_link(client, patient.email)
    response = set_new_password(client, link_path(mailoutbox[0]), password="12345")
    assert response.status_code == 200 and response.context["form"].errors
    assert signs_in(client, patient.username, PASSWORD)


def test_reset_logs_carry_no_address(client, patient, mailoutbox, caplog):
    caplog.set_level(logging.DEBUG)
    ask_for_link(client, patient.email)
    set_new_password(client, link_path(mailoutbox[0]))
    assert patient.email not in caplog.text and patient.username not in caplog.text
    assert f"password reset link sent user={patient.pk}" in caplog.text
