"""Numbers agree with their nouns: "8 consultations", "30 fractions", "1 fraction", in English and
French (French: singular for 0 and 1)."""

from __future__ import annotations

from decimal import Decimal
from html import unescape

import pytest
from django.urls import reverse
from django.utils import translation
from django.utils.translation import ngettext

from protonpath.international.formatting import plural_unit, quantity_with_unit

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "unit, quantity, language, expected",
    [
        ("consultation", 8, "en", "consultations"),
        ("consultation", 1, "en", "consultation"),
        ("consultation", 0, "en", "consultations"),
        ("fraction", 30, "fr", "fractions"),
        ("fraction", 1, "fr", "fraction"),
        ("fraction", 0, "fr", "fraction"),
        ("examen", Decimal("2"), "fr", "examens"),
        ("anesthésie", 31, "fr", "anesthésies"),
    ],
)
def test_units_agree_with_the_quantity(unit, quantity, language, expected):
    assert plural_unit(unit, quantity, language) == expected


def test_quantity_and_unit_together():
    with translation.override("fr"):
        assert quantity_with_unit(30, "fraction", "fr") == "30 fractions"


@pytest.mark.parametrize("language", ["en", "fr"])
def test_the_quote_page_shows_plural_units(client, sent_quote, staff, language):
    client.force_login(staff)
    client.cookies["django_language"] = language
    html = unescape(client.get(reverse("international:quote", args=[sent_quote.pk])).content.decode())
    lines = list(sent_quote.lines.all())
    assert any(line.quantity > 1 for line in lines)
    for line in lines:
        unit = line.unit(language)
        if line.quantity > 1:
            assert f"{line.quantity} {unit}s" in html, (line.code, line.quantity)
        else:
            assert f"{line.quantity} {unit}<" in html or f"{line.quantity} {unit} " in html


@pytest.mark.parametrize(
    "language, one, many",
    [
        ("en", "1 session placed on the gantry.", "30 sessions placed on the gantry."),
        ("fr", "1 séance placée sur le bras isocentrique.", "30 séances placées sur le bras isocentrique."),
    ],
)
def test_the_scheduling_message_agrees_with_the_count(language, one, many):
    with translation.override(language):
        for n, expected in ((1, one), (30, many)):
            assert ngettext("%(n)s session placed on the gantry.", "%(n)s sessions placed on the gantry.", n) % {"n": n} == expected


@pytest.mark.parametrize("language, text", [("en", "Gy (RBE) in 1 fraction<"), ("fr", "Gy (EBR) en 1 fraction<")])
def test_the_request_page_says_one_fraction(client, users, language, text):
    from tests.factories import advance_to, make_request

    r = advance_to(make_request(users["patient"]), "accepted", staff=users["staff"], oncologist=users["oncologist"])
    type(r).objects.filter(pk=r.pk).update(proposed_dose_gy=Decimal("74"), proposed_fractions=1)
    client.force_login(users["staff"])
    client.cookies["django_language"] = language
    html = unescape(client.get(reverse("referrals:detail", args=[r.pk])).content.decode())
    assert text in html
    assert "in 1 fractions" not in html and "en 1 fractions" not in html
