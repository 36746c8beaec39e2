"""Settings a server must not run without: its own secret key, the security headers, no caching
of health data, and a clean ``check --deploy`` with the production settings the README documents."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

from tests.factories import make_request

ROOT = Path(__file__).resolve().parent.parent


def _env(**extra: str) -> dict[str, str]:
    # the browser tests set DJANGO_ALLOW_ASYNC_UNSAFE in this process (Playwright's sync API);
    # a production server never has it
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE"}}
    env.update({"DJANGO_SETTINGS_MODULE": "protonpath.settings", "PYTHONPATH": str(ROOT / "src")}, **extra)
    return env


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_refuses_to_start_without_secret_key_outside_debug():
    result = _manage("check", env=_env())
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "SECRET_KEY" in result.stderr
    # An empty value is no key either.
    assert _manage("check", env=_env(SECRET_KEY="")).returncode != 0


def test_debug_machine_starts_without_secret_key():
    assert _manage("check", env=_env(DEBUG="1")).returncode == 0


def _documented_production_env() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Production settings", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    pairs = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
    assert pairs["SECRET_KEY"].startswith("<")
    pairs["SECRET_KEY"] = secrets.token_urlsafe(50)
    return pairs


def test_check_deploy_is_clean_with_the_documented_production_settings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=_env(**_documented_production_env()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_hsts_and_ssl_redirect_follow_the_environment():
    code = "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE)"
    env = _env(**_documented_production_env())
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert result.stdout.split() == ["True", "31536000", "True"], result.stderr
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"], env=_env(DEBUG="1"), cwd=ROOT,
        capture_output=True, text=True,
    )
    assert result.stdout.split() == ["False", "0", "False"], result.stderr


@pytest.mark.django_db
def test_pages_api_and_downloads_carry_csp_and_no_store(client, users):
    treatment_request = make_request(users["patient"])
    answers = [client.get(reverse("accounts:login"))]
    client.force_login(users["patient"])
    answers += [
        client.get(reverse("referrals:list")),
        client.get(reverse("referrals:detail", args=[treatment_request.pk])),
        client.get("/api/requests"),
    ]
    for response in answers:
        assert response.status_code == 200
        assert "no-store" in response["Cache-Control"]
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy


@pytest.mark.django_db
def test_a_document_download_is_not_stored(client, users):
    treatment_request = make_request(users["patient"])
    document = treatment_request.documents.first()
    client.force_login(users["patient"])
    response = client.get(reverse("referrals:document", args=[document.pk]))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db
def test_pages_have_no_inline_script_or_style(client, users):
    """The policy forbids inline code: no page may depend on it."""
    treatment_request = make_request(users["patient"])
    for user, url in [
        (users["patient"], reverse("referrals:list")),
        (users["patient"], reverse("referrals:detail", args=[treatment_request.pk])),
        (users["staff"], reverse("referrals:list")),
    ]:
        client.force_login(user)
        html = client.get(url).content.decode()
        assert "<style" not in html
        assert not re.search(r"\son[a-z]+=", html), url
        assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)", html), url
