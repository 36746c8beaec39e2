"""French typography in every French catalogue: a no-break space before the high punctuation
(: ; ! ?) and inside the guillemets (« »), as French print has it; never an ordinary space, which
lets the mark wrap alone onto the next line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "protonpath"
CATALOGUES = sorted(SRC.glob("**/locale/fr/LC_MESSAGES/django.po"))


def _translations(path: Path) -> list[str]:
    """The msgstr texts of a catalogue (continuation lines joined), header left out."""
    texts, current, in_msgstr = [], None, False
    for line in path.read_text().splitlines():
        start = re.match(r'^msgstr(?:\[\d\])? "(.*)"$', line)
        if start:
            current, in_msgstr = start.group(1), True
            texts.append(current)
        elif in_msgstr and line.startswith('"'):
            texts[-1] += line[1:-1]
        else:
            in_msgstr = False
    return [t for t in texts if t and "Content-Type" not in t]


# A high punctuation mark that ends a phrase (followed by a space, the end, or a closing mark),
# preceded by an ordinary space or by a letter directly.
BAD_BEFORE_MARK = re.compile(r"(?: |[^\s\u00a0\u202f(\[/%:])([:;!?])(?=\s|$|\"|<|»|\))")
BAD_GUILLEMETS = re.compile(r"« |«(?=[^\s\u00a0\u202f])| »|(?<=[^\s\u00a0\u202f])»")


def test_there_are_french_catalogues():
    assert len(CATALOGUES) >= 5


@pytest.mark.parametrize("catalogue", CATALOGUES, ids=lambda p: str(p.relative_to(SRC)))
def test_french_punctuation_has_no_break_spaces(catalogue):
    wrong = [t for t in _translations(catalogue) if BAD_BEFORE_MARK.search(t) or BAD_GUILLEMETS.search(t)]
    assert wrong == []


def test_the_rule_catches_what_it_should():
    assert BAD_BEFORE_MARK.search("Motif : absent") and BAD_BEFORE_MARK.search("Motif: absent")
    assert BAD_BEFORE_MARK.search("Pourquoi ?") and BAD_BEFORE_MARK.search("a ; b")
    assert not BAD_BEFORE_MARK.search("Motif\u00a0: absent") and not BAD_BEFORE_MARK.search("à 10:30")
    assert not BAD_BEFORE_MARK.search("https://example.org/?a=1")
    assert BAD_GUILLEMETS.search("« texte »") and not BAD_GUILLEMETS.search("«\u00a0texte\u00a0»")


TEMPLATES = sorted((SRC / "templates").rglob("*.html"))
# A colon written straight after a template tag's translated text (`{% translate "CT" %}:`):
# English typography in every language; `{% colon %}` gives the active language's.
COLON_AFTER_TAG = re.compile(r"%\}:")


def test_templates_put_label_colons_through_the_colon_tag():
    assert len(TEMPLATES) > 20
    offending = [
        f"{path.relative_to(SRC)}:{number}"
        for path in TEMPLATES
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if COLON_AFTER_TAG.search(line)
    ]
    assert offending == []


def test_the_colon_tag_renders_each_languages_typography():
    from django.template import Context, Template
    from django.utils import translation

    template = Template('{% load i18n %}{% translate "CT" %}{% colon %} 18')
    with translation.override("fr"):
        assert template.render(Context()) == "Scanner\u00a0: 18"
    with translation.override("en"):
        assert template.render(Context()) == "CT: 18"
