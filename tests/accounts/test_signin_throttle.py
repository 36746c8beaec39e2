"""Sign-in throttling: repeated failures lock an account name or an address for a while."""

import logging
import time

import pytest
from django.core.cache import cache
from django.urls import reverse

from protonpath.accounts.models import AuditEvent
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

WRONG = "not-the-password-0"


def sign_in(client, username, password, ip="10.0.0.1", **extra):
    return client.post(
        reverse("accounts:login"), {"username": username, "password": password}, REMOTE_ADDR=ip, **extra
    )


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def fail(client, username, times, ip="10.0.0.1"):
    for _ in range(times):
        response = sign_in(client, username, WRONG, ip=ip)
        assert response.status_code == 200 and not signed_in(client)


def later(monkeypatch, seconds):
    """Moves the clock (the throttle's and the local-memory cache's) forward."""
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + seconds)


def test_the_sixth_attempt_is_refused_even_with_the_right_password(client, patient):
    fail(client, patient.username, 5)
    response = sign_in(client, patient.username, PASSWORD)
    assert response.status_code == 429 and not signed_in(client)
    assert "Too many failed sign-ins" in response.content.decode()
    # Refused before the password was checked: five failures, one refusal, no sign-in.
    assert AuditEvent.objects.filter(action="login_failed").count() == 5
    assert not AuditEvent.objects.filter(action="login").exists()


def test_the_refusal_is_audited_without_the_name(client, patient):
    fail(client, patient.username, 5)
    sign_in(client, patient.username, PASSWORD, ip="10.0.0.9")
    refusal = AuditEvent.objects.get(action="login_refused")
    assert refusal.actor is None and refusal.object_type == "accounts.user" and refusal.object_id == ""
    assert refusal.ip_address == "10.0.0.9" and refusal.via == "web"
    assert patient.username not in refusal.summary and "account" in refusal.summary


def test_an_unknown_name_is_refused_with_the_same_message(client, patient):
    """The refusal does not tell whether the account exists."""
    fail(client, patient.username, 5, ip="10.0.0.1")
    fail(client, "nobody-here", 5, ip="10.0.0.2")
    known = sign_in(client, patient.username, PASSWORD, ip="10.0.0.1")
    unknown = sign_in(client, "nobody-here", PASSWORD, ip="10.0.0.2")
    assert known.status_code == unknown.status_code == 429
    assert known.context["form"].non_field_errors() == unknown.context["form"].non_field_errors()


def test_another_account_from_another_address_is_not_affected(client, patient, other_patient):
    fail(client, patient.username, 5, ip="10.0.0.1")
    response = sign_in(client, other_patient.username, PASSWORD, ip="10.0.0.2")
    assert response.status_code == 302 and signed_in(client)


def test_the_account_is_refused_from_any_address(client, patient):
    fail(client, patient.username, 5, ip="10.0.0.1")
    assert sign_in(client, patient.username, PASSWORD, ip="10.0.0.2").status_code == 429


def test_one_address_trying_many_names_is_refused(client, settings, patient, other_patient):
    settings.SIGNIN_MAX_FAILURES_PER_IP = 3
    for name in ("anna", "bruno", "chloe"):
        fail(client, name, 1, ip="10.0.0.3")
    assert sign_in(client, other_patient.username, PASSWORD, ip="10.0.0.3").status_code == 429
    assert AuditEvent.objects.get(action="login_refused").summary.endswith("(address)")
    assert sign_in(client, other_patient.username, PASSWORD, ip="10.0.0.4").status_code == 302


def test_sign_in_works_again_after_the_lockout(client, patient, monkeypatch, settings):
    fail(client, patient.username, 5)
    assert sign_in(client, patient.username, PASSWORD).status_code == 429
    later(monkeypatch, settings.SIGNIN_LOCKOUT_S + 1)
    response = sign_in(client, patient.username, PASSWORD)
    assert response.status_code == 302 and signed_in(client)


def test_failures_older_than_the_window_are_forgotten(client, patient, monkeypatch, settings):
    fail(client, patient.username, 4)
    later(monkeypatch, settings.SIGNIN_WINDOW_S + 1)
    fail(client, patient.username, 4)
    assert sign_in(client, patient.username, PASSWORD).status_code == 302


def test_a_successful_sign_in_clears_the_account_counter(client, patient):
    fail(client, patient.username, 4)
    assert sign_in(client, patient.username, PASSWORD).status_code == 302
    client.logout()
    fail(client, patient.username, 4)
    assert sign_in(client, patient.username, PASSWORD).status_code == 302


def test_the_refusal_is_in_french_for_french_speakers(client, patient):
    fail(client, patient.username, 5)
    response = sign_in(client, patient.username, PASSWORD, HTTP_ACCEPT_LANGUAGE="fr")
    html = response.content.decode()
    assert response.status_code == 429
    assert "Trop de connexions ont échoué" in html and "réessayer dans 15 minutes" in html


def test_the_admin_sign_in_is_throttled_too(client, staff):
    fail(client, staff.username, 5)
    response = client.post(
        reverse("admin:login"), {"username": staff.username, "password": PASSWORD}, REMOTE_ADDR="10.0.0.1"
    )
    assert not signed_in(client) and "Too many failed sign-ins" in response.content.decode()


def test_cache_keys_and_logs_hold_neither_names_nor_addresses(client, patient, caplog):
    caplog.set_level(logging.DEBUG)
    fail(client, patient.username, 5, ip="10.0.0.77")
    sign_in(client, patient.username, PASSWORD, ip="10.0.0.77")
    keys = list(cache._cache.keys())  # the local-memory cache of the tests
    assert keys and all(patient.username not in key and "10.0.0.77" not in key for key in keys)
    assert patient.username not in caplog.text and patient.email not in caplog.text
    assert "sign-in locked subject=account" in caplog.text


def test_limits_can_be_turned_off(client, settings, patient):
    settings.SIGNIN_MAX_FAILURES = 0
    settings.SIGNIN_MAX_FAILURES_PER_IP = 0
    fail(client, patient.username, 7)
    assert sign_in(client, patient.username, PASSWORD).status_code == 302
