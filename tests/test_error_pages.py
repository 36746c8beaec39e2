"""The 403, 404 and 500 pages: styled like the site, in the reader's language, and a favicon on
every page."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "language, refused, missing",
    [("en", "Access refused", "Page not found"), ("fr", "Accès refusé", "Page introuvable")],
)
def test_refusal_and_not_found_pages_are_styled_and_in_the_readers_language(client, users, language, refused, missing):
    client.force_login(users["patient"])
    client.cookies["django_language"] = language
    forbidden = client.get(reverse("referrals:queues"))
    assert forbidden.status_code == 403
    html = forbidden.content.decode()
    assert refused in html and "site.css" in html and 'class="top"' in html
    assert f'lang="{language}"' in html
    not_found = client.get("/requests/999999/")
    assert not_found.status_code == 404
    assert missing in not_found.content.decode() and "site.css" in not_found.content.decode()


@pytest.mark.parametrize("language, heading", [("en", "Server error"), ("fr", "Erreur du serveur")])
def test_the_server_error_page_is_styled_and_in_the_readers_language(rf, language, heading):
    from django.utils import translation
    from django.views.defaults import server_error

    # As Django serves it: the server error view, in the language the request was served in.
    with translation.override(language):
        response = server_error(rf.get("/requests/"))
    html = response.content.decode()
    assert response.status_code == 500
    assert heading in html and "site.css" in html and "favicon.svg" in html
    assert f'lang="{language}"' in html


def test_every_page_links_the_favicon_and_it_is_served(client, users):
    for user, url in [(None, reverse("accounts:login")), (users["patient"], reverse("referrals:list")), (users["staff"], reverse("referrals:queues"))]:
        if user:
            client.force_login(user)
        html = client.get(url).content.decode()
        assert 'rel="icon"' in html and "protonpath/favicon.svg" in html, url
    response = client.get("/favicon.ico", follow=True)
    assert response.status_code == 200
    assert b"<svg" in b"".join(response.streaming_content) if response.streaming else b"<svg" in response.content
