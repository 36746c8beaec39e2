"""Visa assessment for patients from abroad and the people who accompany them.

The regime of a nationality comes from data (:class:`VisaRegimes`, loaded from
``data/visa_regimes.json``: Regulation (EU) 2018/1806, Annexes I and II, with its consolidated
version date), never from code:

- citizens of the EU, the EEA and Switzerland move freely: no visa;
- Annex II nationals need no visa for stays of no more than 90 days in any 180-day period;
- Annex I nationals need a short-stay visa for such stays;
- a stay that breaks the 90/180-day rule (planned stay plus the earlier stays the person
  declares) needs a French long-stay visa, for Annex I and Annex II nationals alike.

The 90/180-day rule (Schengen Borders Code, Article 6(1)) is checked on each day of the planned
stay: the days of presence in the 180-day window ending on that day, itself included, must not
exceed 90.
"""

from __future__ import annotations

import calendar
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum

from protonpath.international.rules.countries import Country, resolve_country
from protonpath.international.rules.stay import StayPeriod

# --------------------------------------------------------------------------------------------
# The 90/180-day rule


@dataclass(frozen=True)
class WindowCheck:
    """Result of the rolling-window check over a planned stay.

    Attributes
    ----------
    limit_days : int
        Most days of presence allowed in a window (90).
    window_days : int
        Length of the rolling window (180).
    max_days_in_window : int
        Largest number of days of presence in a window ending on a day of the planned stay.
    first_day_over_limit : datetime.date or None
        First day of the planned stay on which the limit is exceeded; None if it never is.
    """

    limit_days: int
    window_days: int
    max_days_in_window: int
    first_day_over_limit: date | None

    @property
    def compliant(self) -> bool:
        """True when no day of the planned stay breaks the rule."""
        return self.first_day_over_limit is None

    @property
    def last_compliant_day(self) -> date | None:
        """Last day the person may stay without breaking the rule (None if compliant)."""
        if self.first_day_over_limit is None:
            return None
        return self.first_day_over_limit - timedelta(days=1)


def check_rolling_window(
    planned: StayPeriod,
    earlier: Iterable[StayPeriod] = (),
    *,
    limit_days: int = 90,
    window_days: int = 180,
) -> WindowCheck:
    """Check the "90 days in any 180-day period" rule over a planned stay.

    Parameters
    ----------
    planned : StayPeriod
        The planned stay in the Schengen area.
    earlier : iterable of StayPeriod
        Earlier stays in the Schengen area that the person declares; each must end before the
        planned stay starts. Overlapping earlier stays are counted once per day.
    limit_days, window_days : int
        The rule's parameters (from the data file).

    Returns
    -------
    WindowCheck

    Raises
    ------
    ValueError
        If an earlier stay does not end before the planned stay, or the parameters are invalid.
    """
    if limit_days < 1 or window_days < limit_days:
        raise ValueError(f"Invalid rule: {limit_days} days in {window_days}.")
    earlier = tuple(earlier)
    for stay in earlier:
        if stay.last_day >= planned.first_day:
            raise ValueError(
                f"Earlier stay {stay.first_day.isoformat()} to {stay.last_day.isoformat()} does not "
                f"end before the planned stay starts ({planned.first_day.isoformat()})."
            )
    present = sorted({day.toordinal() for stay in (*earlier, planned) for day in stay.dates()})
    max_count = 0
    first_over: date | None = None
    for day in planned.dates():
        ordinal = day.toordinal()
        count = bisect_right(present, ordinal) - bisect_left(present, ordinal - window_days + 1)
        max_count = max(max_count, count)
        if first_over is None and count > limit_days:
            first_over = day
    return WindowCheck(limit_days, window_days, max_count, first_over)


def earliest_compliant_first_day(
    duration_days: int,
    earlier: Sequence[StayPeriod],
    not_before: date,
    *,
    limit_days: int = 90,
    window_days: int = 180,
) -> date | None:
    """Return the earliest start, on or after ``not_before``, of a compliant stay.

    Parameters
    ----------
    duration_days : int
        Length of the stay in days, arrival and departure included.
    earlier : sequence of StayPeriod
        Earlier declared stays, all before ``not_before``.
    not_before : datetime.date
        First acceptable start day.

    Returns
    -------
    datetime.date or None
        None when no start works: the stay itself is longer than ``limit_days``.
    """
    if duration_days < 1:
        raise ValueError(f"duration_days must be at least 1, got {duration_days}.")
    if duration_days > limit_days:
        return None
    start = not_before
    # Once every earlier day has left the window, any start is compliant: the loop is bounded.
    while True:
        planned = StayPeriod(start, start + timedelta(days=duration_days - 1))
        check = check_rolling_window(
            planned, earlier, limit_days=limit_days, window_days=window_days
        )
        if check.compliant:
            return start
        start += timedelta(days=1)


# --------------------------------------------------------------------------------------------
# The regimes (data)


class Regime(StrEnum):
    """How the visa rules treat a nationality."""

    FREE_MOVEMENT = "free_movement"
    """EU, EEA or Swiss citizen."""
    VISA_EXEMPT = "visa_exempt"
    """Annex II of Regulation (EU) 2018/1806, exemption in force."""
    VISA_REQUIRED = "visa_required"
    """Annex I, or Annex II with the exemption not yet in force."""
    UNLISTED = "unlisted"
    """In no list (e.g. a territory code): staff check by hand."""


class Requirement(StrEnum):
    """What the person needs to stay in France for the treatment."""

    NONE = "none"
    SHORT_STAY_VISA = "short_stay_visa"
    LONG_STAY_VISA = "long_stay_visa"
    MANUAL_CHECK = "manual_check"


@dataclass(frozen=True)
class AnnexEntry:
    """One line of Annex I or II.

    Attributes
    ----------
    code : str
        ISO 3166-1 alpha-2 code (or ``XK`` for Kosovo).
    name : str
        The name as the Regulation writes it.
    part : str
        Part of the annex ("1" states, "2" special administrative regions or entities, ...).
    condition : str
        Condition on the passport, e.g. biometric passports only.
    exemption_in_force : bool
        False for an Annex II line whose exemption awaits a visa waiver agreement.
    note : str
        History of the line, e.g. when it moved between annexes.
    """

    code: str
    name: str
    part: str = "1"
    condition: str = ""
    exemption_in_force: bool = True
    note: str = ""


@dataclass(frozen=True)
class ApplicationRules:
    """Lead times for visa applications, with their sources."""

    usual_processing_days_min: int
    usual_processing_days_max: int
    processing_source: str
    where: str
    short_stay_earliest_months_before: int
    short_stay_latest_days_before: int
    short_stay_source: str
    long_stay_earliest_months_before: int
    long_stay_source: str


@dataclass(frozen=True)
class VisaRegimes:
    """A version of the visa lists, with their legal source.

    Build it with :func:`visa_regimes_from_dict` (from the JSON data file or a database copy).
    """

    version: str
    reviewed_on: date
    legal_source_title: str
    legal_source_url: str
    consolidated_version_date: date
    limit_days: int
    window_days: int
    rule_source: str
    free_movement_source: str
    eu: frozenset[str]
    eea_efta: frozenset[str]
    switzerland: frozenset[str]
    schengen: frozenset[str]
    annex_i: Mapping[str, AnnexEntry]
    annex_ii: Mapping[str, AnnexEntry]
    extra_countries: tuple[Country, ...]
    application: ApplicationRules
    territory_states: Mapping[str, str] = field(default_factory=dict)
    """Alpha-2 code of a territory -> alpha-2 code of the state whose nationality it gives."""

    @property
    def free_movement(self) -> frozenset[str]:
        """Alpha-2 codes of the EU, EEA and Swiss nationalities."""
        return self.eu | self.eea_efta | self.switzerland


def _annex(entries: Iterable[Mapping], extra: tuple[Country, ...]) -> dict[str, AnnexEntry]:
    annex: dict[str, AnnexEntry] = {}
    for raw in entries:
        entry = AnnexEntry(
            code=resolve_country(raw["code"], extra).alpha_2,
            name=raw["name"],
            part=str(raw.get("part", "1")),
            condition=raw.get("condition", ""),
            exemption_in_force=bool(raw.get("exemption_in_force", True)),
            note=raw.get("note", ""),
        )
        if entry.code in annex:
            raise ValueError(f"{entry.code} is listed twice in the same annex.")
        annex[entry.code] = entry
    return annex


def _codes(raw: Iterable[str], extra: tuple[Country, ...]) -> frozenset[str]:
    return frozenset(resolve_country(code, extra).alpha_2 for code in raw)


def visa_regimes_from_dict(raw: Mapping) -> VisaRegimes:
    """Build and validate :class:`VisaRegimes` from the data file's structure.

    Raises
    ------
    ValueError
        If a code is unknown, or a nationality sits in two lists.
    """
    extra = tuple(
        Country(alpha_2=c["alpha_2"], alpha_3=c["alpha_3"], name=c["name"])
        for c in raw.get("extra_countries", ())
    )
    source = raw["legal_source"]
    rule = raw["short_stay_rule"]
    free = raw["free_movement"]
    app = raw["application"]
    regimes = VisaRegimes(
        version=str(raw["version"]),
        reviewed_on=date.fromisoformat(raw["reviewed_on"]),
        legal_source_title=source["title"],
        legal_source_url=source["url"],
        consolidated_version_date=date.fromisoformat(source["consolidated_version_date"]),
        limit_days=int(rule["limit_days"]),
        window_days=int(rule["window_days"]),
        rule_source=rule["source"],
        free_movement_source=free["source"],
        eu=_codes(free["eu"], extra),
        eea_efta=_codes(free["eea_efta"], extra),
        switzerland=_codes(free["switzerland"], extra),
        schengen=_codes(raw["schengen"]["members"], extra),
        annex_i=_annex(raw["annex_i"], extra),
        annex_ii=_annex(raw["annex_ii"], extra),
        extra_countries=extra,
        application=ApplicationRules(**{k: app[k] for k in ApplicationRules.__dataclass_fields__}),
        territory_states={
            resolve_country(territory, extra).alpha_2: resolve_country(state, extra).alpha_2
            for territory, state in raw.get("territories", {}).get("states", {}).items()
        },
    )
    listed = regimes.free_movement | frozenset(regimes.annex_i) | frozenset(regimes.annex_ii)
    for territory, state in regimes.territory_states.items():
        if territory in listed or state not in listed:
            raise ValueError(
                f"Territory {territory} must be unlisted and its state {state} listed."
            )
    lists = {
        "free movement": regimes.free_movement,
        "Annex I": frozenset(regimes.annex_i),
        "Annex II": frozenset(regimes.annex_ii),
    }
    names = list(lists)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            both = lists[first] & lists[second]
            if both:
                raise ValueError(f"{sorted(both)} listed both in {first} and in {second}.")
    return regimes


# --------------------------------------------------------------------------------------------
# Nationalities


@dataclass(frozen=True)
class NationalityStatus:
    """The regime of one nationality.

    Attributes
    ----------
    country : Country
        The nationality assessed (a state; for a territory, the state it belongs to).
    regime : Regime
    annex_entry : AnnexEntry or None
        The annex line, for Annex I and II nationalities.
    territory : Country or None
        The territory given as nationality, when it was one (e.g. Réunion for France).
    """

    country: Country
    regime: Regime
    annex_entry: AnnexEntry | None = None
    territory: Country | None = None


def _classify_state(country: Country, regimes: VisaRegimes) -> NationalityStatus:
    key = country.alpha_2
    if key in regimes.free_movement:
        return NationalityStatus(country, Regime.FREE_MOVEMENT)
    if key in regimes.annex_ii:
        entry = regimes.annex_ii[key]
        regime = Regime.VISA_EXEMPT if entry.exemption_in_force else Regime.VISA_REQUIRED
        return NationalityStatus(country, regime, entry)
    if key in regimes.annex_i:
        return NationalityStatus(country, Regime.VISA_REQUIRED, regimes.annex_i[key])
    return NationalityStatus(country, Regime.UNLISTED)


def classify_nationality(code: str, regimes: VisaRegimes) -> NationalityStatus:
    """Return the regime of a nationality given as an alpha-2 or alpha-3 code.

    A territory (e.g. ``RE`` Réunion, ``PR`` Puerto Rico) is assessed as the nationality of its
    state, as the data file maps it.

    Raises
    ------
    UnknownCountryError
        If the code names no country.
    """
    country = resolve_country(code, regimes.extra_countries)
    state = regimes.territory_states.get(country.alpha_2)
    if state is None:
        return _classify_state(country, regimes)
    status = _classify_state(resolve_country(state, regimes.extra_countries), regimes)
    return NationalityStatus(status.country, status.regime, status.annex_entry, territory=country)


_PREFERENCE = (Regime.FREE_MOVEMENT, Regime.VISA_EXEMPT, Regime.VISA_REQUIRED, Regime.UNLISTED)


def most_favourable(statuses: Sequence[NationalityStatus]) -> NationalityStatus:
    """Of several nationalities, the one whose passport needs the least (first one on ties)."""
    return min(statuses, key=lambda status: _PREFERENCE.index(status.regime))


# --------------------------------------------------------------------------------------------
# Assessment


class Role(StrEnum):
    """Why the person travels."""

    PATIENT = "patient"
    COMPANION = "companion"


@dataclass(frozen=True)
class Reason:
    """One reason of a verdict: a stable ``code`` (to translate) and an English message."""

    code: str
    message: str


@dataclass(frozen=True)
class Traveller:
    """A person travelling for the treatment.

    Attributes
    ----------
    role : Role
        Patient or accompanying person.
    nationality : str
        ISO 3166-1 alpha-2 or alpha-3 code of the passport used.
    other_nationalities : tuple of str
        Further nationalities; the most favourable passport is assessed.
    relationship : str
        Accompanying person: relationship to the patient (e.g. "mother", "spouse").
    justification : str
        Accompanying person without a family relationship: why they come.
    earlier_stays : tuple of StayPeriod
        Stays in the Schengen area in the months before the planned stay, as declared.
    stay : StayPeriod or None
        The person's own stay when it differs from the patient's.
    reference : str
        Opaque identifier of the caller (e.g. a database key), returned in the assessment.
    """

    role: Role
    nationality: str
    other_nationalities: tuple[str, ...] = ()
    relationship: str = ""
    justification: str = ""
    earlier_stays: tuple[StayPeriod, ...] = ()
    stay: StayPeriod | None = None
    reference: str = ""

    def __post_init__(self) -> None:
        # Accept plain strings and lists from forms; keep the dataclass immutable and hashable.
        object.__setattr__(self, "role", Role(self.role))
        object.__setattr__(self, "other_nationalities", tuple(self.other_nationalities))
        object.__setattr__(self, "earlier_stays", tuple(self.earlier_stays))


@dataclass(frozen=True)
class ApplicationAdvice:
    """When and where to apply for a visa.

    Attributes
    ----------
    visa : Requirement
        The visa to apply for.
    earliest_lodging_day : datetime.date
        Earliest day the consulate accepts the application.
    latest_lodging_day : datetime.date or None
        For a short-stay visa, the day by which to apply as a rule (15 days before arrival);
        None for a long-stay visa: apply as early as possible.
    usual_processing_days_min, usual_processing_days_max : int or None
        Usual time to an answer for a short-stay visa (2 to 10 days); None for a long-stay
        visa, for which the source gives no figure.
    late : bool
        True when ``today`` was given and is past ``latest_lodging_day``.
    message : str
        The advice in English.
    """

    visa: Requirement
    earliest_lodging_day: date
    latest_lodging_day: date | None
    usual_processing_days_min: int | None
    usual_processing_days_max: int | None
    late: bool
    message: str


@dataclass(frozen=True)
class TravellerAssessment:
    """The verdict for one traveller.

    Attributes
    ----------
    reference : str
        The traveller's ``reference``.
    role : Role
    country : Country
        Nationality assessed (the most favourable passport).
    regime : Regime
    requirement : Requirement
    stay : StayPeriod
        Stay assessed.
    window : WindowCheck or None
        The 90/180-day check (None for free movement and unlisted nationalities).
    earliest_visa_free_first_day : datetime.date or None
        For a visa-exempt person whose stay breaks the rule only because of earlier stays: the
        earliest arrival day that would keep the same stay within it.
    reasons : tuple of Reason
        Why, in order.
    missing_information : tuple of Reason
        What must be filled in before letters can be written.
    relationship, justification : str
        The accompanying person's relationship to the patient, or why they come.
    application : ApplicationAdvice or None
        Lead times, when a visa is needed.
    """

    reference: str
    role: Role
    country: Country
    regime: Regime
    requirement: Requirement
    stay: StayPeriod
    window: WindowCheck | None
    earliest_visa_free_first_day: date | None
    reasons: tuple[Reason, ...]
    missing_information: tuple[Reason, ...]
    application: ApplicationAdvice | None
    relationship: str = ""
    justification: str = ""

    @property
    def needs_visa(self) -> bool:
        """True when a short-stay or long-stay visa is needed."""
        return self.requirement in (Requirement.SHORT_STAY_VISA, Requirement.LONG_STAY_VISA)

    @property
    def needs_consulate_letter(self) -> bool:
        """True when the hospital writes a letter for this person's visa application."""
        return self.needs_visa


@dataclass(frozen=True)
class TripAssessment:
    """The verdicts for a patient and the people accompanying them."""

    patient: TravellerAssessment
    companions: tuple[TravellerAssessment, ...]
    regimes_version: str
    legal_source_title: str
    legal_source_url: str
    consolidated_version_date: date
    medical_emergency: bool

    @property
    def travellers(self) -> tuple[TravellerAssessment, ...]:
        """The patient first, then the companions in the given order."""
        return (self.patient, *self.companions)

    @property
    def needs_any_visa(self) -> bool:
        """True when at least one traveller needs a visa."""
        return any(t.needs_visa for t in self.travellers)

    @property
    def complete(self) -> bool:
        """True when no information is missing for any traveller."""
        return not any(t.missing_information for t in self.travellers)


def _months_before(day: date, months: int) -> date:
    month_index = day.year * 12 + day.month - 1 - months
    year, month = divmod(month_index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def application_advice(
    visa: Requirement,
    arrival: date,
    rules: ApplicationRules,
    *,
    medical_emergency: bool = False,
    today: date | None = None,
) -> ApplicationAdvice:
    """Return when to apply for ``visa`` for an arrival on ``arrival``."""
    if visa is Requirement.SHORT_STAY_VISA:
        earliest = _months_before(arrival, rules.short_stay_earliest_months_before)
        latest: date | None = arrival - timedelta(days=rules.short_stay_latest_days_before)
        window = (
            f"The application may be lodged from {earliest.isoformat()} and, as a rule, no later "
            f"than {latest.isoformat()}."
        )
    elif visa is Requirement.LONG_STAY_VISA:
        earliest = _months_before(arrival, rules.long_stay_earliest_months_before)
        latest = None
        window = f"The application may be lodged from {earliest.isoformat()}: apply as early as possible."
    else:
        raise ValueError(f"No application for {visa!r}.")
    late = today is not None and latest is not None and today > latest
    if visa is Requirement.SHORT_STAY_VISA:
        usual: tuple[int, int] | None = (
            rules.usual_processing_days_min,
            rules.usual_processing_days_max,
        )
        delay = f"The answer usually comes within {usual[0]} to {usual[1]} days; apply early."
    else:
        usual = None
        delay = (
            f"The usual {rules.usual_processing_days_min} to {rules.usual_processing_days_max} days "
            "are for short-stay visas; a long-stay visa may take longer."
        )
    parts = [rules.where, window, delay]
    if medical_emergency:
        parts.append(
            "The medical emergency is confirmed: the consulate may speed up the procedure; "
            "mention it and attach the hospital's attestation."
        )
    if late:
        parts.append("The usual deadline has passed: contact the consulate without delay.")
    return ApplicationAdvice(
        visa=visa,
        earliest_lodging_day=earliest,
        latest_lodging_day=latest,
        usual_processing_days_min=usual[0] if usual else None,
        usual_processing_days_max=usual[1] if usual else None,
        late=late,
        message=" ".join(parts),
    )


def _missing_information(traveller: Traveller) -> tuple[Reason, ...]:
    if traveller.role is Role.COMPANION and not (
        traveller.relationship.strip() or traveller.justification.strip()
    ):
        return (
            Reason(
                "relationship_or_justification_missing",
                "An accompanying person needs their relationship to the patient or, if there is "
                "none, a justification written by them or the patient.",
            ),
        )
    return ()


def _nationality_reasons(
    status: NationalityStatus, statuses: Sequence[NationalityStatus]
) -> list[Reason]:
    name = status.country.name
    reasons: list[Reason] = []
    if len(statuses) > 1:
        others = ", ".join(s.country.name for s in statuses if s is not status)
        reasons.append(
            Reason(
                "most_favourable_nationality",
                f"Assessed on the {name} passport (other nationalities: {others}).",
            )
        )
    if status.territory is not None:
        reasons.append(
            Reason(
                "territory",
                f"{status.territory.name} is a territory of {name}: assessed as a national of {name}.",
            )
        )
    entry = status.annex_entry
    if status.regime is Regime.FREE_MOVEMENT:
        reasons.append(
            Reason("free_movement", f"{name}: EU, EEA or Swiss citizen, free movement: no visa.")
        )
    elif status.regime is Regime.VISA_EXEMPT:
        reasons.append(
            Reason(
                "annex_ii",
                f"{name} is in Annex II of Regulation (EU) 2018/1806: no visa for stays of "
                "no more than 90 days in any 180-day period.",
            )
        )
    elif (
        status.regime is Regime.VISA_REQUIRED and entry is not None and not entry.exemption_in_force
    ):
        reasons.append(Reason("annex_ii_not_in_force", f"{name}: {entry.condition}"))
    elif status.regime is Regime.VISA_REQUIRED:
        reasons.append(
            Reason(
                "annex_i", f"{name} is in Annex I of Regulation (EU) 2018/1806: a visa is required."
            )
        )
    else:
        reasons.append(
            Reason(
                "unlisted",
                f"{name} is in none of the lists: check the person's nationality and "
                "passport by hand.",
            )
        )
    if entry is not None and entry.condition and entry.exemption_in_force:
        reasons.append(Reason("passport_condition", f"{name}: {entry.condition}"))
    return reasons


def _window_reasons(window: WindowCheck, stay: StayPeriod) -> list[Reason]:
    if window.compliant:
        return [
            Reason(
                "within_90_180",
                f"At most {window.max_days_in_window} days in any {window.window_days}-day "
                f"period over the stay ({stay.days} days): within the limit of {window.limit_days}.",
            )
        ]
    assert window.first_day_over_limit is not None
    if stay.days > window.limit_days:
        why = f"The stay lasts {stay.days} days, more than {window.limit_days}"
    else:
        why = "With the earlier stays declared, the stay exceeds the limit"
    return [
        Reason(
            "exceeds_90_180",
            f"{why}: the {window.limit_days}/{window.window_days}-day rule is broken "
            f"from {window.first_day_over_limit.isoformat()}. A French long-stay visa is needed.",
        )
    ]


def assess_traveller(
    traveller: Traveller,
    planned_stay: StayPeriod,
    regimes: VisaRegimes,
    *,
    medical_emergency: bool = False,
    today: date | None = None,
) -> TravellerAssessment:
    """Assess what one traveller needs to stay in France for the treatment.

    Parameters
    ----------
    traveller : Traveller
    planned_stay : StayPeriod
        The patient's expected stay; the traveller's own ``stay`` wins when given.
    regimes : VisaRegimes
        The visa lists (see :func:`~protonpath.international.rules.loaders.load_visa_regimes`).
    medical_emergency : bool
        The emergency is confirmed by the physician: the advice says the consulate may be faster.
    today : datetime.date, optional
        To flag applications already past the usual deadline.

    Raises
    ------
    UnknownCountryError
        If a nationality code is unknown.
    ValueError
        If an earlier stay does not end before the stay.
    """
    stay = traveller.stay or planned_stay
    codes = (traveller.nationality, *traveller.other_nationalities)
    statuses = [classify_nationality(code, regimes) for code in codes]
    status = most_favourable(statuses)
    reasons = _nationality_reasons(status, statuses)
    window: WindowCheck | None = None
    earliest_visa_free: date | None = None
    if status.regime is Regime.FREE_MOVEMENT:
        requirement = Requirement.NONE
        if stay.days > regimes.limit_days:
            reasons.append(
                Reason(
                    "free_movement_over_3_months",
                    "Beyond three months the right of residence requires "
                    "sufficient resources and comprehensive sickness insurance; no visa.",
                )
            )
    elif status.regime is Regime.UNLISTED:
        requirement = Requirement.MANUAL_CHECK
    else:
        window = check_rolling_window(
            stay,
            traveller.earlier_stays,
            limit_days=regimes.limit_days,
            window_days=regimes.window_days,
        )
        reasons.extend(_window_reasons(window, stay))
        if not window.compliant:
            requirement = Requirement.LONG_STAY_VISA
            if status.regime is Regime.VISA_EXEMPT:
                earliest_visa_free = earliest_compliant_first_day(
                    stay.days,
                    traveller.earlier_stays,
                    stay.first_day,
                    limit_days=regimes.limit_days,
                    window_days=regimes.window_days,
                )
                if earliest_visa_free is not None:
                    reasons.append(
                        Reason(
                            "postpone_to_stay_visa_free",
                            "Without a visa, the same stay could start on "
                            f"{earliest_visa_free.isoformat()} at the earliest.",
                        )
                    )
        elif status.regime is Regime.VISA_REQUIRED:
            requirement = Requirement.SHORT_STAY_VISA
        else:
            requirement = Requirement.NONE
    application = None
    if requirement in (Requirement.SHORT_STAY_VISA, Requirement.LONG_STAY_VISA):
        application = application_advice(
            requirement,
            stay.first_day,
            regimes.application,
            medical_emergency=medical_emergency,
            today=today,
        )
    return TravellerAssessment(
        reference=traveller.reference,
        role=traveller.role,
        country=status.country,
        regime=status.regime,
        requirement=requirement,
        stay=stay,
        window=window,
        earliest_visa_free_first_day=earliest_visa_free,
        reasons=tuple(reasons),
        missing_information=_missing_information(traveller),
        relationship=traveller.relationship.strip(),
        justification=traveller.justification.strip(),
        application=application,
    )


def assess_trip(
    patient: Traveller,
    companions: Sequence[Traveller],
    planned_stay: StayPeriod,
    regimes: VisaRegimes,
    *,
    medical_emergency: bool = False,
    today: date | None = None,
) -> TripAssessment:
    """Assess the patient and each accompanying person (each with their own nationality).

    Raises
    ------
    ValueError
        If ``patient`` is not in the patient role or a companion is.
    """
    if patient.role is not Role.PATIENT:
        raise ValueError("The first traveller must have the patient role.")
    if any(c.role is not Role.COMPANION for c in companions):
        raise ValueError("Accompanying persons must have the companion role.")
    options = {"medical_emergency": medical_emergency, "today": today}
    return TripAssessment(
        patient=assess_traveller(patient, planned_stay, regimes, **options),
        companions=tuple(assess_traveller(c, planned_stay, regimes, **options) for c in companions),
        regimes_version=regimes.version,
        legal_source_title=regimes.legal_source_title,
        legal_source_url=regimes.legal_source_url,
        consolidated_version_date=regimes.consolidated_version_date,
        medical_emergency=medical_emergency,
    )
