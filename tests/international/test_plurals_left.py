"""Plurals that were still fixed to "fractions"/"consultations" (issue 12, item 13).

The review pages and minutes said "in 1 fractions", the quote page "in 1 fractions" and the quote
PDF "1 proton therapy fractions and 1 consultations", in English and French.
"""

from __future__ import annotations

import io
import re
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from pypdf import PdfReader

from protonpath.international import pdf

pytestmark = pytest.mark.django_db


def _plain(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u00a0", " ").replace("\u202f", " "))


@pytest.mark.parametrize(
    ("language", "one", "many"),
    [("en", "60 Gy (RBE) in 1 fraction", "60 Gy (RBE) in 30 fractions"), ("fr", "60 Gy (EBR) en 1 fraction", "60 Gy (EBR) en 30 fractions")],
)
def test_the_review_panel_says_one_fraction(language, one, many):
    for count, expected in ((1, one), (30, many)):
        item = SimpleNamespace(meeting="RCP", get_decision_display="Accepted", proposed_fractions=count, proposed_dose_gy=Decimal("60"))
        panel = {"triage": None, "pending_item": None, "past_items": [item], "may_schedule": False}
        with translation.override(language):
            html = _plain(render_to_string("department/_request_panel.html", {"panel": panel, "r": SimpleNamespace(state="accepted")}))
        assert expected in html, html
        if count == 1:
            assert "1 fractions" not in html


@pytest.mark.parametrize(
    ("language", "expected", "wrong"),
    [
        ("en", "1 proton therapy fraction and 1 consultation.", "fractions"),
        ("fr", "1 fraction de protonthérapie et 1 consultation.", "fractions de"),
    ],
)
def test_the_quote_pdf_says_one_fraction_and_one_consultation(sent_quote, language, expected, wrong):
    sent_quote.fractions = 1
    sent_quote.consultations = 1
    text = _plain("\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.quote_pdf(sent_quote, language=language))).pages))
    assert expected in text
    assert f"1 proton therapy {wrong}" not in text and f"1 {wrong}" not in text


@pytest.mark.parametrize("language", ["en", "fr"])
def test_the_quote_pdf_keeps_the_plural_for_several(sent_quote, language):
    text = _plain("\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.quote_pdf(sent_quote, language=language))).pages))
    n, c = sent_quote.fractions, sent_quote.consultations
    expected = {"en": f"{n} proton therapy fractions and {c} consultations.", "fr": f"{n} fractions de protonthérapie et {c} consultations."}
    assert expected[language] in text


def test_the_quote_page_says_one_fraction(client, accepted, staff):
    accepted.proposed_fractions = 1
    accepted.save(update_fields=["proposed_fractions"])
    client.force_login(staff)
    html = _plain(client.get(reverse("international:quote_new", args=[accepted.pk])).content.decode())
    assert "in 1 fraction." in html and "1 fractions" not in html
