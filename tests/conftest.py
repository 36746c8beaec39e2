"""Shared fixtures: one user per role, a second patient, and the media folder in a temp dir."""

from __future__ import annotations

import pytest

from protonpath.accounts.models import Role
from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture(autouse=True)
def _immediate_tasks(settings):
    """Tasks run at once, in the test's process and transaction (the default backend of the
    settings is the database queue, run by workers); tests of the workers switch it back."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with an empty cache (sign-in throttle counters live there)."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _default_language():
    """Each test ends in the default language: a page served in French (LocaleMiddleware
    activates the reader's language for the thread) must not leak into the next test."""
    yield
    from django.utils import translation

    translation.activate("en")


@pytest.fixture
def patient(db):
    return UserFactory(role=Role.PATIENT, username="patient1")


@pytest.fixture
def other_patient(db):
    return UserFactory(role=Role.PATIENT, username="patient2")


@pytest.fixture
def doctor(db):
    return UserFactory(role=Role.REFERRING_DOCTOR, username="doctor1")


@pytest.fixture
def other_doctor(db):
    return UserFactory(role=Role.REFERRING_DOCTOR, username="doctor2")


@pytest.fixture
def staff(db):
    return UserFactory(role=Role.ADMIN_STAFF, username="staff1", is_staff=True)


@pytest.fixture
def oncologist(db):
    return UserFactory(role=Role.ONCOLOGIST, username="onco1", is_staff=True)


@pytest.fixture
def physicist(db):
    return UserFactory(role=Role.PHYSICIST, username="phys1", is_staff=True)


@pytest.fixture
def head(db):
    return UserFactory(role=Role.HEAD, username="head1", is_staff=True)


@pytest.fixture
def therapist(db):
    return UserFactory(role=Role.THERAPIST, username="ther1", is_staff=True)


@pytest.fixture
def users(patient, other_patient, doctor, other_doctor, staff, oncologist, physicist, head, therapist):
    return {
        "patient": patient,
        "other_patient": other_patient,
        "doctor": doctor,
        "other_doctor": other_doctor,
        "staff": staff,
        "oncologist": oncologist,
        "physicist": physicist,
        "head": head,
        "therapist": therapist,
    }


def pytest_configure(config):
    from django.conf import settings

    # Fast hashing in tests: password strength is not what they check.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
