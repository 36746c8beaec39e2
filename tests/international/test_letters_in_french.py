"""What the French letters still printed in English (issue 12, item 13).

The header of every French quote and letter said "Proton therapy department", and an
accompanying person's relationship was printed as typed ("mother" on the French letter, "mère"
on the English one). The relationship is now a choice, named in the letter's language, and the
rows typed before are mapped by a data migration.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import translation

from protonpath.international import pdf, services
from protonpath.international.forms import CompanionForm
from protonpath.international.models import AccompanyingPerson
from protonpath.international.relationships import relationship_of
from tests.international.test_consulate_letters import details as details  # noqa: F401  (fixture)
from tests.international.test_consulate_letters import paid as paid  # noqa: F401  (fixture)
from tests.international.test_consulate_letters import text_of

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _back_to_the_default_language():
    yield
    translation.activate(settings.LANGUAGE_CODE)


def _add(r, actor, **data):
    base = {"first_name": "Karim", "last_name": "Haddad", "nationality": "DZ", "passport_number": "DZ2223334"}
    base.update(data)
    return services.add_companion(actor=actor, treatment_request=r, data=base)


# The header -------------------------------------------------------------------------------------


def test_the_french_attestation_and_quote_name_the_department_in_french(paid):  # noqa: F811
    for document in (pdf.attestation_pdf(paid.treatment_request, language="fr"), pdf.quote_pdf(paid, language="fr")):
        text = text_of(document)
        assert "Service de protonthérapie" in text
        assert "Proton therapy department" not in text


def test_the_english_attestation_keeps_the_english_name(paid):  # noqa: F811
    assert "Proton therapy department" in text_of(pdf.attestation_pdf(paid.treatment_request, language="en"))


# The relationship -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "language", "printed", "not_printed"),
    [
        ("husband", "fr", "Lien avec le patient Conjoint ou conjointe", "husband"),
        ("époux", "en", "Relationship to the patient Spouse or partner", "époux"),
        ("Mère", "en", "Relationship to the patient Parent", "Mère"),
        ("brother", "fr", "Lien avec le patient Frère ou sœur", "brother"),
    ],
)
def test_the_companion_letter_names_the_relationship_in_its_language(paid, patient, typed, language, printed, not_printed):  # noqa: F811
    person = _add(paid.treatment_request, patient, relationship=typed)
    text = text_of(pdf.companion_letter_pdf(person, language=language))
    assert printed in text
    assert not_printed not in text


def test_other_keeps_its_words(paid, patient):  # noqa: F811
    person = _add(paid.treatment_request, patient, relationship_kind="other", relationship="tante")
    assert "Lien avec le patient tante" in text_of(pdf.companion_letter_pdf(person, language="fr"))


def test_the_form_offers_the_choice_and_other_needs_words(paid):  # noqa: F811
    base = {"first_name": "Karim", "last_name": "Haddad", "nationality": "DZ"}
    with translation.override("fr"):
        form = CompanionForm(prefix="companion")
        labels = [str(label) for _value, label in form.fields["relationship_kind"].choices]
        assert {"Parent", "Conjoint ou conjointe", "Fils ou fille", "Frère ou sœur", "Autre (précisez)"} <= set(labels)
    bare = CompanionForm({f"companion-{k}": v for k, v in {**base, "relationship_kind": "other"}.items()}, prefix="companion")
    bare.instance.treatment_request = paid.treatment_request
    assert not bare.is_valid()
    assert "relationship" in bare.errors
    chosen = CompanionForm(
        {f"companion-{k}": v for k, v in {**base, "relationship_kind": "sibling", "relationship": "stray words"}.items()},
        prefix="companion",
    )
    chosen.instance.treatment_request = paid.treatment_request
    assert chosen.is_valid(), chosen.errors
    assert chosen.cleaned_data["relationship"] == ""


@pytest.mark.parametrize(
    ("typed", "kind", "words"),
    [
        ("mother", "parent", ""), ("Père", "parent", ""), ("the wife", "spouse", ""), ("épouse", "spouse", ""),
        ("fille", "child", ""), ("Sœur", "sibling", ""), ("tuteur légal", "legal_guardian", ""),
        ("aunt", "other", "aunt"), ("", "", ""),
    ],
)
def test_typed_words_map_to_the_choice(typed, kind, words):
    assert relationship_of(typed) == (kind, words)


@pytest.mark.django_db(transaction=True)
def test_the_data_migration_maps_the_rows_typed_before(patient):
    from tests.factories import make_request

    r = make_request(patient, complete=False, submit=False)
    executor = MigrationExecutor(connection)
    before = [("international", "0003_department_details_letters_guardian")]
    latest = executor.loader.graph.leaf_nodes("international")
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps.get_model("international", "AccompanyingPerson")
        rows = {
            typed: old.objects.create(treatment_request_id=r.pk, first_name="A", last_name=typed or "none", nationality="DZ", relationship=typed).pk
            for typed in ("mère", "Husband", "cousin", "")
        }
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    now = {typed: AccompanyingPerson.objects.get(pk=pk) for typed, pk in rows.items()}
    assert (now["mère"].relationship_kind, now["mère"].relationship) == ("parent", "")
    assert (now["Husband"].relationship_kind, now["Husband"].relationship) == ("spouse", "")
    assert (now["cousin"].relationship_kind, now["cousin"].relationship) == ("other", "cousin")
    assert (now[""].relationship_kind, now[""].relationship) == ("", "")
    with translation.override("fr"):
        assert now["mère"].relationship_label == "Parent" and now["Husband"].relationship_label == "Conjoint ou conjointe"
