"""Triage of a request against the catalogue of validated indications (pure: no Django).

The catalogue is data (``department/data/indications.json``, from seed 000). :func:`triage` takes
what the referring doctor wrote (pathology and location, in English or French, with or without
accents, abbreviations, plurals, common misspellings), the patient's age and whether radiotherapy
was given before, and returns the candidate indications with the reasons that led to each. It
never decides: the review meeting does. It only says what the file looks like, and says so
plainly when nothing in the catalogue fits ("not a validated indication: needs discussion").

Reasons are returned as data (:class:`Reason`, a kind and the words concerned), so that the web
layer can phrase them in the reader's language.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

ADULT = "adult"
PAEDIATRIC = "paediatric"
#: Patients under this age (in completed years) fall under the paediatric catalogue.
ADULT_AGE_YEARS = 18

# Where a candidate comes from, strongest first (used to rank the candidates).
BASIS_PATHOLOGY = "pathology"
BASIS_LOCATION = "location"
BASIS_REIRRADIATION = "reirradiation"
BASIS_CATCH_ALL = "catch_all"
_BASIS_RANK = {BASIS_PATHOLOGY: 0, BASIS_LOCATION: 1, BASIS_REIRRADIATION: 2, BASIS_CATCH_ALL: 3}

#: A one-word term of at least this many letters also matches a close misspelling.
FUZZY_MIN_LETTERS = 7
FUZZY_MIN_RATIO = 0.88

_LIGATURES = str.maketrans({"œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae", "ß": "ss"})
_WORD = re.compile(r"[^\W_]+", re.UNICODE)

Phrase = tuple[str, ...]


# Text normalisation ---------------------------------------------------------------------------


def normalise_word(word: str) -> str:
    """Lower case, no accents or ligatures, and a crude singular (a final ``s`` dropped)."""
    word = unicodedata.normalize("NFKD", word.translate(_LIGATURES).lower())
    word = "".join(ch for ch in word if not unicodedata.combining(ch))
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word


def words(text: str) -> tuple[list[str], list[str]]:
    """The words of ``text`` as written and normalised, position by position."""
    original = _WORD.findall(text or "")
    return original, [normalise_word(w) for w in original]


def phrase(term: str) -> Phrase:
    return tuple(words(term)[1])


# The catalogue --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Indication:
    code: str
    population: str
    label_en: str
    label_fr: str
    pathology_terms: tuple[Phrase, ...] = ()
    location_terms: tuple[Phrase, ...] = ()
    exclude_terms: tuple[Phrase, ...] = ()
    mobile_location_terms: tuple[Phrase, ...] = ()
    caution_en: str = ""
    caution_fr: str = ""
    catch_all: bool = False
    for_reirradiation: bool = False

    def label(self, language: str = "en") -> str:
        return self.label_fr if language.startswith("fr") else self.label_en

    def caution(self, language: str = "en") -> str:
        return self.caution_fr if language.startswith("fr") else self.caution_en


@dataclass(frozen=True)
class Catalogue:
    indications: tuple[Indication, ...]
    reirradiation_terms: tuple[Phrase, ...] = ()
    source: str = ""
    version: str = ""

    def get(self, code: str) -> Indication:
        for indication in self.indications:
            if indication.code == code:
                return indication
        raise KeyError(code)

    def of(self, population: str) -> tuple[Indication, ...]:
        return tuple(i for i in self.indications if i.population == population)


def _phrases(terms: Iterable[str]) -> tuple[Phrase, ...]:
    result = []
    for term in terms:
        p = phrase(term)
        if p and p not in result:
            result.append(p)
    return tuple(result)


def load_catalogue(data: Mapping) -> Catalogue:
    """Build a :class:`Catalogue` from the parsed JSON file; bad data raises ``ValueError``."""
    indications = []
    seen: set[str] = set()
    for item in data.get("indications", []):
        code = item.get("code", "")
        if not code or code in seen:
            raise ValueError(f"Indication without a code or listed twice: {code!r}")
        if item.get("population") not in (ADULT, PAEDIATRIC):
            raise ValueError(f"Indication {code}: population must be {ADULT!r} or {PAEDIATRIC!r}")
        if not item.get("label_en") or not item.get("label_fr"):
            raise ValueError(f"Indication {code}: needs label_en and label_fr")
        seen.add(code)
        indications.append(
            Indication(
                code=code,
                population=item["population"],
                label_en=item["label_en"],
                label_fr=item["label_fr"],
                pathology_terms=_phrases(item.get("pathology_terms", [])),
                location_terms=_phrases(item.get("location_terms", [])),
                exclude_terms=_phrases(item.get("exclude_terms", [])),
                mobile_location_terms=_phrases(item.get("mobile_location_terms", [])),
                caution_en=item.get("caution_en", ""),
                caution_fr=item.get("caution_fr", ""),
                catch_all=bool(item.get("catch_all", False)),
                for_reirradiation=bool(item.get("for_reirradiation", False)),
            )
        )
    return Catalogue(
        indications=tuple(indications),
        reirradiation_terms=_phrases(data.get("reirradiation_terms", [])),
        source=data.get("source", ""),
        version=data.get("version", ""),
    )


# Results --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reason:
    """Why the triage says what it says.

    ``kind`` is one of: ``population`` (``term`` = adult/paediatric, ``text`` = age),
    ``pathology_term`` / ``location_term`` (``text`` = the words as written, ``term`` = the
    catalogue's term), ``approximate_term`` (same, a close spelling), ``excluded`` (a term that
    keeps the indication out), ``mobile_location`` (a moving organ), ``other_population`` (the
    words match an indication of the other age group), ``catch_all``, ``reirradiation_requested``,
    ``earlier_radiotherapy``, ``reirradiation_text``, ``no_match``.
    """

    kind: str
    field: str = ""
    text: str = ""
    term: str = ""
    code: str = ""


@dataclass(frozen=True)
class Candidate:
    indication: Indication
    basis: str
    reasons: tuple[Reason, ...]
    cautions: tuple[Reason, ...] = ()

    @property
    def code(self) -> str:
        return self.indication.code


@dataclass(frozen=True)
class TriageResult:
    population: str
    age_years: int
    candidates: tuple[Candidate, ...]
    reirradiation: bool
    reasons: tuple[Reason, ...] = field(default=())

    @property
    def is_validated_indication(self) -> bool:
        """At least one named indication fits (not only 'other paediatric tumours')."""
        return any(c.basis != BASIS_CATCH_ALL for c in self.candidates)

    @property
    def needs_discussion(self) -> bool:
        return not self.is_validated_indication

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


# Matching -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Hit:
    text: str
    term: str
    approximate: bool = False


def _find(terms: Iterable[Phrase], original: list[str], norm: list[str], *, fuzzy: bool = False) -> _Hit | None:
    """The first (longest) term of ``terms`` found as whole words in the text."""
    for term in sorted(terms, key=len, reverse=True):
        n = len(term)
        for start in range(len(norm) - n + 1):
            if tuple(norm[start : start + n]) == term:
                return _Hit(text=" ".join(original[start : start + n]), term=" ".join(term))
    if not fuzzy:
        return None
    for term in terms:
        if len(term) != 1 or len(term[0]) < FUZZY_MIN_LETTERS:
            continue
        for position, word in enumerate(norm):
            if abs(len(word) - len(term[0])) > 2:
                continue
            if difflib.SequenceMatcher(None, word, term[0]).ratio() >= FUZZY_MIN_RATIO:
                return _Hit(text=original[position], term=term[0], approximate=True)
    return None


def _term_reason(hit: _Hit, field_name: str, code: str) -> Reason:
    kind = "approximate_term" if hit.approximate else f"{field_name}_term"
    return Reason(kind=kind, field=field_name, text=hit.text, term=hit.term, code=code)


def _match(indication: Indication, pathology: tuple[list[str], list[str]], location: tuple[list[str], list[str]]):
    """(basis, reasons) when the texts point at ``indication``, else None."""
    hit = _find(indication.pathology_terms, *pathology, fuzzy=True)
    if hit is not None:
        return BASIS_PATHOLOGY, [_term_reason(hit, "pathology", indication.code)]
    # A location named in the pathology field ("cancer of the nasopharynx") counts as well.
    for field_name, text in (("location", location), ("pathology", pathology)):
        hit = _find(indication.location_terms, *text)
        if hit is not None:
            reason = Reason(kind="location_term", field=field_name, text=hit.text, term=hit.term, code=indication.code)
            return BASIS_LOCATION, [reason]
    return None


def _exclusion(indication: Indication, pathology, location) -> Reason | None:
    for field_name, text in (("pathology", pathology), ("location", location)):
        hit = _find(indication.exclude_terms, *text)
        if hit is not None:
            return Reason(kind="excluded", field=field_name, text=hit.text, term=hit.term, code=indication.code)
    return None


def _cautions(indication: Indication, pathology, location) -> tuple[Reason, ...]:
    cautions = []
    for field_name, text in (("location", location), ("pathology", pathology)):
        hit = _find(indication.mobile_location_terms, *text)
        if hit is not None:
            cautions.append(Reason(kind="mobile_location", field=field_name, text=hit.text, term=hit.term, code=indication.code))
            break
    return tuple(cautions)


def triage(
    *,
    pathology_name: str,
    pathology_location: str,
    age_years: int,
    catalogue: Catalogue,
    had_radiotherapy: bool = False,
    reirradiation_requested: bool = False,
) -> TriageResult:
    """Candidate indications for a request, strongest first, each with its reasons.

    Parameters
    ----------
    pathology_name, pathology_location
        As the referring doctor wrote them (English or French, free text).
    age_years
        The patient's age in completed years; under 18 the paediatric catalogue applies.
    had_radiotherapy, reirradiation_requested
        Earlier radiotherapy, or a request explicitly for re-irradiation: flags re-irradiation.
    """
    if age_years < 0:
        raise ValueError("age_years must not be negative")
    population = ADULT if age_years >= ADULT_AGE_YEARS else PAEDIATRIC
    other_population = PAEDIATRIC if population == ADULT else ADULT
    pathology = words(pathology_name)
    location = words(pathology_location)
    general: list[Reason] = [Reason(kind="population", term=population, text=str(age_years))]

    # Re-irradiation: asked for, earlier radiotherapy, or said in the text.
    reirradiation_reasons: list[Reason] = []
    if reirradiation_requested:
        reirradiation_reasons.append(Reason(kind="reirradiation_requested"))
    if had_radiotherapy:
        reirradiation_reasons.append(Reason(kind="earlier_radiotherapy"))
    for field_name, text in (("pathology", pathology), ("location", location)):
        hit = _find(catalogue.reirradiation_terms, *text)
        if hit is not None:
            reirradiation_reasons.append(Reason(kind="reirradiation_text", field=field_name, text=hit.text, term=hit.term))
            break
    reirradiation = bool(reirradiation_reasons)
    general.extend(reirradiation_reasons)

    candidates: list[Candidate] = []
    for indication in catalogue.of(population):
        if indication.catch_all or indication.for_reirradiation:
            continue
        matched = _match(indication, pathology, location)
        if matched is None:
            continue
        excluded = _exclusion(indication, pathology, location)
        if excluded is not None:
            general.append(excluded)
            continue
        basis, reasons = matched
        cautions = _cautions(indication, pathology, location)
        candidates.append(Candidate(indication, basis, tuple(reasons), cautions))

    if reirradiation:
        for indication in catalogue.of(population):
            if indication.for_reirradiation:
                candidates.append(Candidate(indication, BASIS_REIRRADIATION, tuple(reirradiation_reasons)))

    # Words that point at the other age group's catalogue: worth saying, never a candidate.
    matched_terms = {r.term for c in candidates for r in c.reasons if r.term}
    for indication in catalogue.of(other_population):
        if indication.catch_all or indication.for_reirradiation:
            continue
        hit = _find(indication.pathology_terms, *pathology)
        if hit is not None and hit.term not in matched_terms:
            general.append(Reason(kind="other_population", field="pathology", text=hit.text, term=hit.term, code=indication.code))

    if not any(c.basis in (BASIS_PATHOLOGY, BASIS_LOCATION) for c in candidates):
        catch_all = [i for i in catalogue.of(population) if i.catch_all]
        if catch_all:
            candidates.append(Candidate(catch_all[0], BASIS_CATCH_ALL, (Reason(kind="catch_all", code=catch_all[0].code),)))
        else:
            general.append(Reason(kind="no_match"))

    candidates.sort(key=lambda c: _BASIS_RANK[c.basis])
    return TriageResult(
        population=population,
        age_years=age_years,
        candidates=tuple(candidates),
        reirradiation=reirradiation,
        reasons=tuple(general),
    )
