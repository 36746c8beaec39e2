"""Quotes for patients from abroad, and the estimate of the costs they must plan besides.

Money is :class:`decimal.Decimal` in euros, rounded to the cent (half up). Prices come from a
versioned :class:`Tariff` (the department edits it as a new version; a sent quote keeps the
lines it was built with), never from code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from protonpath.international.rules.stay import StayPeriod

CENT = Decimal("0.01")
CURRENCY = "EUR"

CONSULTATION = "consultation_oncologist"
TREATMENT_PLANNING = "treatment_planning"
PROTON_FRACTION = "proton_fraction"
ANAESTHESIA_CONSULTATION = "anaesthesia_consultation"
ANAESTHESIA_SESSION = "anaesthesia_session"
IMAGING_PREFIX = "imaging_"
REQUIRED_ITEMS = (
    CONSULTATION,
    TREATMENT_PLANNING,
    PROTON_FRACTION,
    ANAESTHESIA_CONSULTATION,
    ANAESTHESIA_SESSION,
)
"""Tariff codes every tariff must price; imaging items are any codes starting with ``imaging_``."""


class MissingTariffItemError(KeyError):
    """Raised when a quote needs an item the tariff does not price."""


def money_eur(value: Decimal | str | int) -> Decimal:
    """Return an amount in euros as a Decimal rounded to the cent.

    Floats are refused: ``0.1 + 0.2`` is not money.

    Raises
    ------
    TypeError
        For a float or another type.
    ValueError
        For a string that is not a number.
    """
    if isinstance(value, bool) or not isinstance(value, Decimal | str | int):
        raise TypeError(f"Money must be a Decimal, a string or an int, got {type(value).__name__}.")
    try:
        amount = Decimal(value)
    except InvalidOperation as error:
        raise ValueError(f"{value!r} is not an amount of money.") from error
    if not amount.is_finite():
        raise ValueError(f"{value!r} is not an amount of money.")
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


# --------------------------------------------------------------------------------------------
# Tariffs


@dataclass(frozen=True)
class TariffItem:
    """One priced item: ``unit_price_eur`` per ``unit``, with English and French labels."""

    code: str
    label_en: str
    label_fr: str
    unit_en: str
    unit_fr: str
    unit_price_eur: Decimal


@dataclass(frozen=True)
class Tariff:
    """A version of the price list.

    Attributes
    ----------
    version : str
        Identifier written on every quote built with it.
    effective_from : datetime.date
        First day quotes may use it.
    illustrative : bool
        True for example prices (the shipped default): never for a real quote.
    items : mapping of str to TariffItem
        By code, in display order.
    """

    version: str
    effective_from: date
    illustrative: bool
    items: Mapping[str, TariffItem]
    notice: str = ""
    vat_note: str = ""
    currency: str = CURRENCY

    def item(self, code: str) -> TariffItem:
        """Return the item ``code``; raise :class:`MissingTariffItemError` if unpriced."""
        try:
            return self.items[code]
        except KeyError:
            raise MissingTariffItemError(f"Tariff {self.version} has no item {code!r}.") from None

    @property
    def imaging_codes(self) -> tuple[str, ...]:
        """Codes of the imaging exams the tariff prices, in display order."""
        return tuple(code for code in self.items if code.startswith(IMAGING_PREFIX))


def _price(raw: object, what: str) -> Decimal:
    if not isinstance(raw, str):
        raise ValueError(f'{what}: write prices as strings (e.g. "120.00"), got {raw!r}.')
    price = money_eur(raw)
    if price < 0:
        raise ValueError(f"{what}: a price cannot be negative ({raw}).")
    return price


def tariff_from_dict(raw: Mapping) -> Tariff:
    """Build and validate a :class:`Tariff` from the data file's structure.

    Raises
    ------
    ValueError
        If the currency is not EUR, a price is not a string amount, a code is repeated, or a
        required item is missing.
    """
    if raw.get("currency", CURRENCY) != CURRENCY:
        raise ValueError(f"Tariffs are in {CURRENCY}, got {raw['currency']!r}.")
    items: dict[str, TariffItem] = {}
    for entry in raw["items"]:
        code = entry["code"]
        if code in items:
            raise ValueError(f"Tariff item {code!r} is listed twice.")
        items[code] = TariffItem(
            code=code,
            label_en=entry["label_en"],
            label_fr=entry["label_fr"],
            unit_en=entry["unit_en"],
            unit_fr=entry["unit_fr"],
            unit_price_eur=_price(entry["unit_price_eur"], code),
        )
    missing = [code for code in REQUIRED_ITEMS if code not in items]
    if missing:
        raise ValueError(f"Tariff {raw['version']} lacks the items {missing}.")
    return Tariff(
        version=str(raw["version"]),
        effective_from=date.fromisoformat(raw["effective_from"]),
        illustrative=bool(raw.get("illustrative", False)),
        items=items,
        notice=raw.get("notice", ""),
        vat_note=raw.get("vat_note", ""),
    )


def tariff_in_force(tariffs: Iterable[Tariff], on: date) -> Tariff:
    """Return the tariff in force on ``on``: the latest ``effective_from`` on or before it.

    Raises
    ------
    LookupError
        If no tariff is in force yet on that day.
    """
    candidates = [t for t in tariffs if t.effective_from <= on]
    if not candidates:
        raise LookupError(f"No tariff in force on {on.isoformat()}.")
    return max(candidates, key=lambda t: t.effective_from)


# --------------------------------------------------------------------------------------------
# Quotes


@dataclass(frozen=True)
class TreatmentParameters:
    """What the accepted indication plans for the patient.

    Attributes
    ----------
    fractions : int
        Number of proton therapy sessions.
    consultations : int
        Radiation oncologist consultations (first, weekly reviews, end of treatment).
    imaging : mapping of str to int
        Imaging exams by tariff code (``imaging_...``), e.g. ``{"imaging_ct_planning": 1}``.
    anaesthesia : bool
        The patient (a young child) needs general anaesthesia for each session and each exam,
        and a pre-anaesthesia consultation.
    """

    fractions: int
    consultations: int
    imaging: Mapping[str, int] = field(default_factory=dict)
    anaesthesia: bool = False

    def __post_init__(self) -> None:
        if (
            isinstance(self.fractions, bool)
            or not isinstance(self.fractions, int)
            or self.fractions < 1
        ):
            raise ValueError(f"fractions must be a positive integer, got {self.fractions!r}.")
        if (
            isinstance(self.consultations, bool)
            or not isinstance(self.consultations, int)
            or self.consultations < 0
        ):
            raise ValueError(f"consultations must be zero or more, got {self.consultations!r}.")
        for code, count in self.imaging.items():
            if not code.startswith(IMAGING_PREFIX):
                raise ValueError(
                    f"{code!r} is not an imaging item (codes start with {IMAGING_PREFIX!r})."
                )
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"Number of {code} must be zero or more, got {count!r}.")

    @property
    def imaging_exams(self) -> int:
        """Total number of imaging exams."""
        return sum(self.imaging.values())


@dataclass(frozen=True)
class QuoteLine:
    """A line of a quote: ``quantity`` × ``unit_price_eur`` = ``total_eur``."""

    code: str
    label_en: str
    label_fr: str
    unit_en: str
    unit_fr: str
    quantity: int
    unit_price_eur: Decimal
    total_eur: Decimal


@dataclass(frozen=True)
class Quote:
    """A quote, frozen with the tariff version it was built from."""

    tariff_version: str
    tariff_effective_from: date
    illustrative: bool
    lines: tuple[QuoteLine, ...]
    total_eur: Decimal
    vat_note: str = ""
    currency: str = CURRENCY


def quote_line(item: TariffItem, quantity: int) -> QuoteLine:
    """Price ``quantity`` units of ``item``."""
    if quantity < 0:
        raise ValueError(f"Quantity of {item.code} cannot be negative ({quantity}).")
    return QuoteLine(
        code=item.code,
        label_en=item.label_en,
        label_fr=item.label_fr,
        unit_en=item.unit_en,
        unit_fr=item.unit_fr,
        quantity=quantity,
        unit_price_eur=item.unit_price_eur,
        total_eur=money_eur(item.unit_price_eur * quantity),
    )


def quote_quantities(params: TreatmentParameters, tariff: Tariff) -> tuple[tuple[str, int], ...]:
    """Return ``(tariff code, quantity)`` pairs for a treatment, in quote order, zeros left out."""
    imaging = [(code, params.imaging.get(code, 0)) for code in tariff.imaging_codes]
    unknown = sorted(set(params.imaging) - set(tariff.imaging_codes))
    if unknown:
        raise MissingTariffItemError(f"Tariff {tariff.version} has no imaging items {unknown}.")
    anaesthesia = params.anaesthesia
    pairs = [
        (CONSULTATION, params.consultations),
        (ANAESTHESIA_CONSULTATION, 1 if anaesthesia else 0),
        *imaging,
        (TREATMENT_PLANNING, 1),
        (PROTON_FRACTION, params.fractions),
        # One anaesthesia per session and per exam: a young child must stay still for both.
        (ANAESTHESIA_SESSION, params.fractions + params.imaging_exams if anaesthesia else 0),
    ]
    return tuple((code, quantity) for code, quantity in pairs if quantity > 0)


def build_quote(params: TreatmentParameters, tariff: Tariff) -> Quote:
    """Build the quote of a treatment from a tariff.

    Parameters
    ----------
    params : TreatmentParameters
        Fractions, consultations, imaging and anaesthesia from the accepted indication.
    tariff : Tariff
        The tariff version in force (see :func:`tariff_in_force`).

    Returns
    -------
    Quote
        Lines in order (consultations, imaging, planning, fractions, anaesthesia) and the total.
    """
    lines = tuple(
        quote_line(tariff.item(code), quantity)
        for code, quantity in quote_quantities(params, tariff)
    )
    return Quote(
        tariff_version=tariff.version,
        tariff_effective_from=tariff.effective_from,
        illustrative=tariff.illustrative,
        lines=lines,
        total_eur=money_eur(sum((line.total_eur for line in lines), Decimal(0))),
        vat_note=tariff.vat_note,
    )


# --------------------------------------------------------------------------------------------
# Additional costs of the stay


@dataclass(frozen=True)
class DailyCosts:
    """Daily cost estimates of a stay in Caen, per person, in euros."""

    version: str
    effective_from: date
    illustrative: bool
    accommodation_first_person_per_night_eur: Decimal
    accommodation_additional_person_per_night_eur: Decimal
    meals_per_person_per_day_eur: Decimal
    local_transport_per_person_per_day_eur: Decimal
    notice: str = ""
    city: str = "Caen"
    currency: str = CURRENCY


def daily_costs_from_dict(raw: Mapping) -> DailyCosts:
    """Build and validate :class:`DailyCosts` from the data file's structure."""
    if raw.get("currency", CURRENCY) != CURRENCY:
        raise ValueError(f"Cost estimates are in {CURRENCY}, got {raw['currency']!r}.")
    prices = {
        name: _price(raw[name], name)
        for name in (
            "accommodation_first_person_per_night_eur",
            "accommodation_additional_person_per_night_eur",
            "meals_per_person_per_day_eur",
            "local_transport_per_person_per_day_eur",
        )
    }
    return DailyCosts(
        version=str(raw["version"]),
        effective_from=date.fromisoformat(raw["effective_from"]),
        illustrative=bool(raw.get("illustrative", False)),
        notice=raw.get("notice", ""),
        city=raw.get("city", "Caen"),
        **prices,
    )


@dataclass(frozen=True)
class CostLine:
    """An estimated cost: ``persons`` × ``quantity`` (nights, days or journeys) × ``unit_price_eur``."""

    code: str
    label_en: str
    label_fr: str
    persons: int
    quantity: int
    unit_price_eur: Decimal
    total_eur: Decimal


@dataclass(frozen=True)
class CostEstimate:
    """The additional costs the patient should plan for, outside the quote."""

    costs_version: str
    illustrative: bool
    persons: int
    nights: int
    days: int
    lines: tuple[CostLine, ...]
    total_eur: Decimal
    travel_included: bool
    currency: str = CURRENCY


def _cost_line(
    code: str, label_en: str, label_fr: str, persons: int, quantity: int, unit: Decimal
) -> CostLine:
    return CostLine(
        code, label_en, label_fr, persons, quantity, unit, money_eur(unit * persons * quantity)
    )


def estimate_additional_costs(
    stay: StayPeriod,
    companions: int,
    costs: DailyCosts,
    *,
    return_journey_per_person_eur: Decimal | None = None,
) -> CostEstimate:
    """Estimate transport, accommodation and meals over the stay, for the patient and companions.

    Parameters
    ----------
    stay : StayPeriod
        Expected stay in Caen (see :func:`~protonpath.international.rules.stay.expected_stay`).
    companions : int
        Number of accompanying persons.
    costs : DailyCosts
        Daily estimates per person.
    return_journey_per_person_eur : Decimal, optional
        Price of a return journey between home and Caen, when known; otherwise the estimate
        says the journey is not included (``travel_included`` is False).

    Returns
    -------
    CostEstimate
        Accommodation per night, meals and local transport per day, and the return journeys.
    """
    if isinstance(companions, bool) or not isinstance(companions, int) or companions < 0:
        raise ValueError(f"companions must be zero or more, got {companions!r}.")
    persons = 1 + companions
    lines = [
        _cost_line(
            "accommodation_first_person",
            "Accommodation (first person)",
            "Hébergement (première personne)",
            1,
            stay.nights,
            costs.accommodation_first_person_per_night_eur,
        ),
    ]
    if companions:
        lines.append(
            _cost_line(
                "accommodation_additional_persons",
                "Accommodation (each further person)",
                "Hébergement (chaque personne supplémentaire)",
                companions,
                stay.nights,
                costs.accommodation_additional_person_per_night_eur,
            )
        )
    lines.append(
        _cost_line(
            "meals", "Meals", "Repas", persons, stay.days, costs.meals_per_person_per_day_eur
        )
    )
    lines.append(
        _cost_line(
            "local_transport",
            "Local transport in Caen",
            "Transports locaux à Caen",
            persons,
            stay.days,
            costs.local_transport_per_person_per_day_eur,
        )
    )
    travel_included = return_journey_per_person_eur is not None
    if travel_included:
        journey = money_eur(return_journey_per_person_eur)
        if journey < 0:
            raise ValueError("A journey cannot cost less than nothing.")
        lines.append(
            _cost_line(
                "return_journey",
                "Return journey to Caen",
                "Voyage aller-retour jusqu'à Caen",
                persons,
                1,
                journey,
            )
        )
    return CostEstimate(
        costs_version=costs.version,
        illustrative=costs.illustrative,
        persons=persons,
        nights=stay.nights,
        days=stay.days,
        lines=tuple(lines),
        total_eur=money_eur(sum((line.total_eur for line in lines), Decimal(0))),
        travel_included=travel_included,
    )
