"""Triage of referrals against the validated indications (pure: no database)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protonpath.department import triage
from protonpath.department.directory import DATA_DIR

CATALOGUE = triage.load_catalogue(json.loads((DATA_DIR / "indications.json").read_text(encoding="utf-8")))


def run(pathology: str, location: str = "", age: int = 50, **kw) -> triage.TriageResult:
    return triage.triage(pathology_name=pathology, pathology_location=location, age_years=age, catalogue=CATALOGUE, **kw)


def codes(result: triage.TriageResult) -> list[str]:
    return [c.code for c in result.candidates]


@pytest.mark.parametrize(
    ("pathology", "location", "expected"),
    [
        ("Chordoma", "Clivus", "adult-cartilage"),
        ("Chordome du clivus", "base du crâne", "adult-cartilage"),
        ("CHORDOMES sacrés", "", "adult-cartilage"),
        ("Chondrosarcome de bas grade", "rocher", "adult-cartilage"),
        ("chondrosarcomas", "skull base", "adult-cartilage"),
        ("Méningiome", "sinus caverneux gauche", "adult-benign-brain"),
        ("meningiomas", "petroclival", "adult-benign-brain"),
        ("Méningiome grade I", "", "adult-benign-brain"),
        ("Schwannome vestibulaire", "angle ponto-cérébelleux", "adult-benign-brain"),
        ("Neurinome de l'acoustique", "CPA", "adult-benign-brain"),
        ("acoustic neuroma", "", "adult-benign-brain"),
        ("scwhannoma", "", "adult-benign-brain"),
        ("Paragangliome jugulaire", "foramen jugulaire", "adult-benign-brain"),
        ("Chemodectoma", "carotid body", "adult-benign-brain"),
        ("Craniopharyngiome", "région sellaire", "adult-benign-brain"),
        ("Carcinome adénoïde kystique", "parotide", "adult-ent"),
        ("Adenoid cystic carcinoma", "maxillary sinus", "adult-ent"),
        ("Cancer ORL", "", "adult-ent"),
        ("ENT tumour", "", "adult-ent"),
        ("Carcinome épidermoïde", "cavum", "adult-ent"),
        ("squamous cell carcinoma", "nasopharynx", "adult-ent"),
        ("Esthésioneuroblastome", "ethmoïde", "adult-ent"),
        ("carcinoma of the nasopharynx", "", "adult-ent"),
        ("Mélanome uvéal", "œil droit", "adult-eye-orbit"),
        ("melanome de la choroide", "OG", "adult-eye-orbit"),
        ("Uveal melanoma", "left eye", "adult-eye-orbit"),
        ("choroidal melanoma", "", "adult-eye-orbit"),
        ("Lymphome", "orbite gauche", "adult-eye-orbit"),
        ("Sarcoma", "retroperitoneum", "adult-spine-trunk"),
        ("Sarcome", "paravertébral D12", "adult-spine-trunk"),
        ("Thymome", "médiastin antérieur", "adult-spine-trunk"),
        ("Ependymoma", "spinal cord, thoracic spine", "adult-spine-trunk"),
    ],
)
def test_adult_referrals_find_their_indication(pathology, location, expected):
    result = run(pathology, location, age=52)
    assert result.population == triage.ADULT
    assert result.candidates, f"no candidate for {pathology!r} / {location!r}"
    assert result.candidates[0].code == expected
    assert result.is_validated_indication and not result.needs_discussion


@pytest.mark.parametrize(
    ("pathology", "location", "expected"),
    [
        ("Medulloblastoma", "posterior fossa", "paed-medulloblastoma-pnet"),
        ("Médulloblastome", "fosse postérieure", "paed-medulloblastoma-pnet"),
        ("PNET supratentoriel", "", "paed-medulloblastoma-pnet"),
        ("primitive neuroectodermal tumour", "", "paed-medulloblastoma-pnet"),
        ("Épendymome anaplasique", "4e ventricule", "paed-ependymoma"),
        ("ependymomas", "", "paed-ependymoma"),
        ("Gliome de bas grade", "chiasma", "paed-glioma"),
        ("pilocytic astrocytoma", "cerebellum", "paed-glioma"),
        ("DIPG", "pons", "paed-glioma"),
        ("Craniopharyngiome", "selle turcique", "paed-craniopharyngioma"),
        ("Rhabdomyosarcome embryonnaire", "orbite", "paed-soft-tissue"),
        ("RMS", "bladder/prostate", "paed-soft-tissue"),
        ("sarcome des tissus mous", "cuisse", "paed-soft-tissue"),
        ("Neuroblastome", "surrénale gauche", "paed-neuroblastoma"),
        ("neuroblastoma", "", "paed-neuroblastoma"),
    ],
)
def test_paediatric_referrals_find_their_indication(pathology, location, expected):
    result = run(pathology, location, age=6)
    assert result.population == triage.PAEDIATRIC
    assert result.candidates[0].code == expected
    assert not result.needs_discussion


def test_the_first_reason_quotes_the_words_as_written():
    result = run("Méningiomes multiples", "sinus caverneux", age=61)
    reason = result.candidates[0].reasons[0]
    assert (reason.kind, reason.field, reason.text, reason.term) == ("pathology_term", "pathology", "Méningiomes", "meningiome")


def test_a_location_alone_points_at_the_indication_and_says_so():
    reason = run("carcinome épidermoïde", "Cavum", age=44).candidates[0].reasons[0]
    assert (reason.kind, reason.field, reason.text) == ("location_term", "location", "Cavum")


def test_age_18_is_adult_and_17_is_paediatric():
    assert run("chordoma", age=18).population == triage.ADULT
    assert run("chordoma", age=17).population == triage.PAEDIATRIC
    population_reason = run("chordoma", age=17).reasons[0]
    assert (population_reason.kind, population_reason.term, population_reason.text) == ("population", "paediatric", "17")


def test_an_adult_glioblastoma_is_not_validated_and_needs_discussion():
    result = run("Glioblastome", "temporal droit", age=58)
    assert result.candidates == ()
    assert result.needs_discussion
    kinds = {r.kind for r in result.reasons}
    assert "no_match" in kinds
    # The words are a paediatric indication: said, never proposed.
    other = [r for r in result.reasons if r.kind == "other_population"]
    assert other and other[0].code == "paed-glioma"


def test_aggressive_tumours_are_kept_out_of_non_aggressive_brain_tumours():
    result = run("Méningiome anaplasique grade III", "convexité", age=66)
    assert "adult-benign-brain" not in codes(result)
    excluded = [r for r in result.reasons if r.kind == "excluded"]
    assert excluded and excluded[0].code == "adult-benign-brain"
    assert result.needs_discussion


def test_metastases_near_the_spine_are_not_a_validated_indication():
    result = run("Métastase osseuse", "rachis dorsal", age=70)
    assert "adult-spine-trunk" not in codes(result)
    assert result.needs_discussion


def test_common_adult_cancers_elsewhere_need_discussion():
    for pathology, location in [("Adénocarcinome", "prostate"), ("breast cancer", "left breast"), ("adenocarcinoma", "lung")]:
        result = run(pathology, location)
        assert result.candidates == () and result.needs_discussion, pathology


def test_a_mobile_organ_in_the_chest_is_a_candidate_with_a_caution():
    result = run("Sarcome", "paroi thoracique, poumon droit", age=40)
    candidate = result.candidates[0]
    assert candidate.code == "adult-spine-trunk"
    assert [c.kind for c in candidate.cautions] == ["mobile_location"]
    assert candidate.cautions[0].text == "poumon"


def test_close_misspellings_are_read_but_flagged():
    result = run("menigioma", age=50)
    reason = result.candidates[0].reasons[0]
    assert result.candidates[0].code == "adult-benign-brain"
    assert (reason.kind, reason.text, reason.term) == ("approximate_term", "menigioma", "meningioma")
    # Short words are never guessed.
    assert run("gliom", age=50).candidates == ()


def test_a_child_with_an_unnamed_tumour_falls_under_other_paediatric_tumours_to_discuss():
    result = run("Sarcome d'Ewing", "bassin", age=14)
    assert codes(result) == ["paed-other"]
    assert result.candidates[0].basis == triage.BASIS_CATCH_ALL
    assert result.needs_discussion and not result.is_validated_indication


def test_a_child_with_an_adult_indication_is_told_so():
    result = run("Chordome", "clivus", age=12)
    assert codes(result) == ["paed-other"]
    other = [r for r in result.reasons if r.kind == "other_population"]
    assert other[0].code == "adult-cartilage" and other[0].text == "Chordome"


def test_a_paediatric_indication_in_an_adult_needs_discussion():
    result = run("Médulloblastome", "cervelet", age=35)
    assert result.candidates == () and result.needs_discussion
    assert any(r.kind == "other_population" and r.code == "paed-medulloblastoma-pnet" for r in result.reasons)


def test_craniopharyngioma_is_in_both_catalogues_without_a_cross_note():
    adult = run("craniopharyngioma", age=40)
    assert codes(adult) == ["adult-benign-brain"]
    assert not any(r.kind == "other_population" for r in adult.reasons)


@pytest.mark.parametrize(
    ("kwargs", "pathology", "kind"),
    [
        ({"reirradiation_requested": True}, "Chordoma", "reirradiation_requested"),
        ({"had_radiotherapy": True}, "Chordoma", "earlier_radiotherapy"),
        ({}, "Récidive en territoire irradié d'un chordome", "reirradiation_text"),
        ({}, "Chordoma, re-irradiation", "reirradiation_text"),
    ],
)
def test_reirradiation_is_flagged_with_its_reason(kwargs, pathology, kind):
    result = run(pathology, "clivus", age=55, **kwargs)
    assert result.reirradiation
    assert kind in {r.kind for r in result.reasons}
    assert codes(result) == ["adult-cartilage", "adult-reirradiation"]


def test_curative_reirradiation_alone_is_a_candidate_for_an_adult():
    result = run("carcinome épidermoïde récidivant", "cou", age=63, had_radiotherapy=True)
    assert codes(result) == ["adult-reirradiation"]
    assert result.reirradiation and result.is_validated_indication
    assert "no_match" in {r.kind for r in result.reasons}


def test_a_child_treated_before_is_flagged_but_has_no_reirradiation_indication():
    result = run("Épendymome", "fosse postérieure", age=9, had_radiotherapy=True)
    assert result.reirradiation
    assert codes(result) == ["paed-ependymoma"]


def test_no_reirradiation_without_a_sign_of_it():
    assert not run("Chordoma", "clivus", age=55).reirradiation


def test_empty_text_needs_discussion():
    assert run("", "", age=50).needs_discussion
    assert codes(run("", "", age=5)) == ["paed-other"]


def test_negative_age_is_refused():
    with pytest.raises(ValueError):
        run("chordoma", age=-1)


def test_the_catalogue_keeps_the_seed_indications_and_its_source():
    assert "Seed 000" in CATALOGUE.source
    adult = {i.code for i in CATALOGUE.of(triage.ADULT)}
    paediatric = {i.code for i in CATALOGUE.of(triage.PAEDIATRIC)}
    assert adult == {"adult-cartilage", "adult-ent", "adult-spine-trunk", "adult-eye-orbit", "adult-reirradiation", "adult-benign-brain"}
    assert paediatric == {
        "paed-medulloblastoma-pnet",
        "paed-glioma",
        "paed-ependymoma",
        "paed-craniopharyngioma",
        "paed-soft-tissue",
        "paed-neuroblastoma",
        "paed-other",
    }
    assert all(i.label_fr and i.label_en for i in CATALOGUE.indications)


def test_bad_catalogue_data_is_refused():
    with pytest.raises(ValueError):
        triage.load_catalogue({"indications": [{"code": "x", "population": "elderly", "label_en": "a", "label_fr": "b"}]})
    with pytest.raises(ValueError):
        triage.load_catalogue(
            {"indications": [{"code": "x", "population": "adult", "label_en": "a", "label_fr": "b"}] * 2}
        )


def test_normalisation_removes_accents_ligatures_and_plurals():
    assert triage.normalise_word("Œil") == "oeil"
    assert triage.normalise_word("Méningiomes") == "meningiome"
    assert triage.phrase("l'œil") == ("l", "oeil")


@settings(max_examples=200, deadline=None)
@given(
    pathology=st.text(max_size=80),
    location=st.text(max_size=60),
    age=st.integers(min_value=0, max_value=120),
    had_radiotherapy=st.booleans(),
    requested=st.booleans(),
)
def test_any_text_gets_an_answer_that_follows_the_rules(pathology, location, age, had_radiotherapy, requested):
    result = run(pathology, location, age=age, had_radiotherapy=had_radiotherapy, reirradiation_requested=requested)
    assert result.population == (triage.ADULT if age >= 18 else triage.PAEDIATRIC)
    assert all(c.indication.population == result.population for c in result.candidates)
    if had_radiotherapy or requested:
        assert result.reirradiation
    # Either a named indication, or the file is explicitly to be discussed.
    assert result.is_validated_indication != result.needs_discussion
    if result.population == triage.PAEDIATRIC:
        assert result.candidates  # never left without an answer: at worst 'other paediatric tumours'
