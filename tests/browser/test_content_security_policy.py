"""The Content-Security-Policy in a real browser: the pages load their scripts and styles, htmx
works, the language switch (formerly an inline handler) still sends its form, and Chromium reports
no violation of the policy."""

import pytest
from django.urls import reverse

from tests.browser.conftest import login
from tests.factories import PASSWORD, make_request

pytestmark = pytest.mark.django_db(transaction=True)


def test_pages_work_under_the_policy(page, screenshot, users):
    violations = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None)
    treatment_request = make_request(users["patient"])
    response = page.goto("/accounts/login/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    login(page, users["patient"].username, PASSWORD)
    page.goto(reverse("referrals:detail", args=[treatment_request.pk]))
    page.wait_for_load_state("networkidle")
    # htmx and the site's own script are loaded and running.
    assert page.evaluate("typeof window.htmx") == "object"
    # The stylesheet applies (the header is laid out by site.css, not by inline styles).
    assert page.evaluate("getComputedStyle(document.querySelector('header.top')).display") == "flex"
    screenshot("request-under-csp")
    # The language switch submits its form on change: the page comes back in French.
    with page.expect_navigation():
        page.select_option("header select[name=language]", "fr")
    assert page.evaluate("document.documentElement.lang") == "fr"
    screenshot("request-in-french")
    login(page, users["staff"].username, PASSWORD)
    page.goto(reverse("referrals:list"))
    page.wait_for_load_state("networkidle")
    assert violations == []


def test_the_admin_and_the_error_pages_under_the_policy(page, screenshot, users):
    violations = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None)
    staff = users["staff"]
    staff.is_superuser = True
    staff.save()
    login(page, staff.username, PASSWORD)
    page.goto("/admin/international/tariff/")
    page.wait_for_load_state("networkidle")
    assert page.locator("#changelist").count() == 1
    screenshot("admin-tariffs")
    login(page, users["patient"].username, PASSWORD)
    page.goto("/requests/")
    with page.expect_navigation():
        page.select_option("header select[name=language]", "fr")
    response = page.goto("/requests/queues/")
    assert response.status == 403
    assert "Accès refusé" in page.inner_text("main h1")
    screenshot("refused-in-french")
    assert violations == []
