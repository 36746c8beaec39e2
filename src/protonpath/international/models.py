"""Tariffs, quotes, payments, and the people and earlier stays the visa assessment needs.

Money is ``Decimal`` euros to the cent. A sent quote never changes: its lines copy the label,
unit and price of the tariff row they came from, and a tariff row that a quote used is never
edited (a new price is a new row with its own ``valid_from``).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from protonpath.international.relationships import Relationship
from protonpath.international.rules.countries import UnknownCountryError, resolve_country
from protonpath.referrals.models import TreatmentRequest

MONEY = {"max_digits": 12, "decimal_places": 2}


def validate_nationality(code: str) -> None:
    """An ISO 3166-1 alpha-2 code pycountry knows (Kosovo ``XK`` included, as the visa lists do)."""
    from protonpath.international.rules.loaders import load_visa_regimes

    try:
        country = resolve_country(code, load_visa_regimes().extra_countries)
    except UnknownCountryError:
        raise ValidationError(_("Enter an ISO 3166-1 country code, e.g. DZ, MA or US."), code="nationality") from None
    if country.alpha_2 != code:
        raise ValidationError(_("Enter the two-letter code, e.g. DZ, MA or US."), code="nationality")


class Tariff(models.Model):
    """One price of the department's tariff, in force from ``valid_from`` until a later row for the same code."""

    code = models.SlugField(_("code"), max_length=60)
    label_en = models.CharField(_("label (English)"), max_length=200)
    label_fr = models.CharField(_("label (French)"), max_length=200)
    unit_en = models.CharField(_("unit (English)"), max_length=40)
    unit_fr = models.CharField(_("unit (French)"), max_length=40)
    unit_price_eur = models.DecimalField(_("unit price (EUR)"), validators=[MinValueValidator(Decimal("0"))], **MONEY)
    valid_from = models.DateField(_("valid from"))
    illustrative = models.BooleanField(
        _("illustrative price"), default=False, help_text=_("Example prices shipped with the software, not the department's.")
    )
    source = models.CharField(_("source"), max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        verbose_name = _("tariff price")
        verbose_name_plural = _("tariff")
        ordering = ["code", "-valid_from"]
        constraints = [models.UniqueConstraint(fields=["code", "valid_from"], name="tariff_one_price_per_code_and_day")]

    def __str__(self) -> str:
        return f"{self.code} {self.unit_price_eur} EUR from {self.valid_from}"

    def save(self, *args, **kwargs):
        # A price a quote was built with is history: change it by adding a new row.
        if self.is_used:
            raise ValidationError(_("This price is used by a quote: add a new price with a later date instead."))
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        if self.is_used:
            raise ValidationError(_("This price is used by a quote and cannot be deleted."))
        return super().delete(*args, **kwargs)

    @property
    def is_used(self) -> bool:
        return self.pk is not None and QuoteLine.objects.filter(tariff=self).exists()


class TravelPlan(models.Model):
    """When the patient is expected in Caen, and whether the emergency is confirmed (for the consulate)."""

    treatment_request = models.OneToOneField(TreatmentRequest, on_delete=models.CASCADE, related_name="travel_plan")
    first_consultation_on = models.DateField(_("planned first consultation"))
    medical_emergency = models.BooleanField(
        _("medical emergency confirmed"), default=False, help_text=_("The consulate may speed up the visa procedure.")
    )
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        verbose_name = _("travel plan")
        verbose_name_plural = _("travel plans")

    def __str__(self) -> str:
        return f"{self.treatment_request_id} {self.first_consultation_on}"


class QuoteStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    SENT = "sent", _("Sent")
    ACCEPTED = "accepted", _("Accepted")
    REFUSED = "refused", _("Refused")
    SUPERSEDED = "superseded", _("Superseded")


class Quote(models.Model):
    """A quote for a treatment. Drafts are rebuilt freely; from ``sent`` on, the lines are frozen."""

    treatment_request = models.ForeignKey(TreatmentRequest, on_delete=models.PROTECT, related_name="quotes")
    number = models.CharField(_("number"), max_length=20, unique=True, editable=False)
    status = models.CharField(_("status"), max_length=12, choices=QuoteStatus.choices, default=QuoteStatus.DRAFT, db_index=True)
    currency = models.CharField(max_length=3, default="EUR", editable=False)
    total_eur = models.DecimalField(_("total (EUR)"), default=Decimal("0.00"), **MONEY)
    tariff_version = models.CharField(_("tariff version"), max_length=40)
    illustrative = models.BooleanField(default=False)
    # What the quote was built from.
    fractions = models.PositiveSmallIntegerField(_("fractions"), validators=[MinValueValidator(1)])
    consultations = models.PositiveSmallIntegerField(_("consultations"))
    anaesthesia = models.BooleanField(_("general anaesthesia (child)"), default=False)
    # The stay and the additional costs the patient should plan for (not part of the amount to pay).
    first_consultation_on = models.DateField(_("first consultation (planned)"))
    stay_first_day = models.DateField(_("arrival"))
    stay_last_day = models.DateField(_("departure"))
    first_fraction_on = models.DateField(_("first session (expected)"))
    last_fraction_on = models.DateField(_("last session (expected)"))
    companions = models.PositiveSmallIntegerField(_("accompanying persons"), default=0)
    costs_version = models.CharField(max_length=40, blank=True)
    costs_illustrative = models.BooleanField(default=False)
    estimated_costs_eur = models.DecimalField(_("estimated additional costs (EUR)"), default=Decimal("0.00"), **MONEY)
    travel_included = models.BooleanField(default=False)

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    issued_at = models.DateTimeField(_("sent on"), null=True, blank=True)
    issued_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField(_("answered on"), null=True, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    refusal_reason = models.TextField(_("reason for refusal"), blank=True)

    class Meta:
        verbose_name = _("quote")
        verbose_name_plural = _("quotes")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(stay_last_day__gte=models.F("stay_first_day")), name="quote_stay_ordered"),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def is_frozen(self) -> bool:
        return self.status != QuoteStatus.DRAFT

    @property
    def stay_days(self) -> int:
        return (self.stay_last_day - self.stay_first_day).days + 1

    @property
    def stay_nights(self) -> int:
        return (self.stay_last_day - self.stay_first_day).days


class _PartOfQuote:
    """A row of a quote (amount line or cost estimate): frozen, like the quote, once it is sent;
    labelled in English and French."""

    def _refuse_if_sent(self) -> None:
        if Quote.objects.filter(pk=self.quote_id).exclude(status=QuoteStatus.DRAFT).exists():
            raise ValidationError(_("A sent quote never changes."))

    def save(self, *args, **kwargs):
        self._refuse_if_sent()
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        self._refuse_if_sent()
        return super().delete(*args, **kwargs)

    def label(self, language: str) -> str:
        return self.label_fr if language == "fr" else self.label_en


class QuoteLine(_PartOfQuote, models.Model):
    """One line of the amount to pay, copied from the tariff when the quote was built or sent."""

    quote = models.ForeignKey(Quote, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField()
    tariff = models.ForeignKey(Tariff, null=True, on_delete=models.PROTECT, related_name="+")
    code = models.CharField(max_length=60)
    label_en = models.CharField(max_length=200)
    label_fr = models.CharField(max_length=200)
    unit_en = models.CharField(max_length=40)
    unit_fr = models.CharField(max_length=40)
    quantity = models.PositiveIntegerField()
    unit_price_eur = models.DecimalField(**MONEY)
    total_eur = models.DecimalField(**MONEY)

    class Meta:
        ordering = ["quote", "position"]

    def __str__(self) -> str:
        return f"{self.code} × {self.quantity}"

    def unit(self, language: str) -> str:
        return self.unit_fr if language == "fr" else self.unit_en


class StayCostLine(_PartOfQuote, models.Model):
    """An estimated additional cost (accommodation, meals, transport): to plan, not to pay to us."""

    quote = models.ForeignKey(Quote, on_delete=models.CASCADE, related_name="cost_lines")
    position = models.PositiveSmallIntegerField()
    code = models.CharField(max_length=60)
    label_en = models.CharField(max_length=200)
    label_fr = models.CharField(max_length=200)
    persons = models.PositiveSmallIntegerField()
    quantity = models.PositiveIntegerField()
    unit_price_eur = models.DecimalField(**MONEY)
    total_eur = models.DecimalField(**MONEY)

    class Meta:
        ordering = ["quote", "position"]

    def __str__(self) -> str:
        return f"{self.code} {self.persons} × {self.quantity}"


class PaymentKind(models.TextChoices):
    PAYMENT = "payment", _("Payment")
    REFUND = "refund", _("Refund")


class PaymentMethod(models.TextChoices):
    BANK_TRANSFER = "bank_transfer", _("Bank transfer")
    CARD = "card", _("Card")
    CHEQUE = "cheque", _("Cheque")
    CASH = "cash", _("Cash")
    OTHER = "other", _("Other")


class Payment(models.Model):
    """Money received for a quote, or given back. Recorded rows are never edited: a mistake is corrected by a new row."""

    quote = models.ForeignKey(Quote, on_delete=models.PROTECT, related_name="payments")
    kind = models.CharField(_("kind"), max_length=10, choices=PaymentKind.choices, default=PaymentKind.PAYMENT)
    amount_eur = models.DecimalField(_("amount (EUR)"), validators=[MinValueValidator(Decimal("0.01"))], **MONEY)
    paid_on = models.DateField(_("date"))
    method = models.CharField(_("method"), max_length=20, choices=PaymentMethod.choices)
    reference = models.CharField(_("reference"), max_length=100)
    note = models.CharField(_("note"), max_length=300, blank=True)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("payment")
        verbose_name_plural = _("payments")
        ordering = ["paid_on", "id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount_eur} EUR {self.paid_on}"

    @property
    def treatment_request_id(self) -> int:
        return self.quote.treatment_request_id


class AccompanyingPerson(models.Model):
    """Someone who travels with the patient; the consulate asks for the relationship or a justification."""

    treatment_request = models.ForeignKey(TreatmentRequest, on_delete=models.CASCADE, related_name="companions")
    first_name = models.CharField(_("first name"), max_length=150)
    last_name = models.CharField(_("surname"), max_length=150)
    birth_date = models.DateField(_("date of birth"), null=True, blank=True)
    nationality = models.CharField(
        _("nationality"), max_length=2, validators=[validate_nationality], help_text=_("ISO 3166-1 alpha-2, e.g. MA")
    )
    passport_number = models.CharField(_("passport number"), max_length=40, blank=True)
    relationship_kind = models.CharField(
        _("relationship to the patient"), max_length=20, choices=Relationship.choices, blank=True
    )
    #: The relationship in words when it is "other" (e.g. aunt); rows typed before the choice
    #: existed keep their text here when no known word matched.
    relationship = models.CharField(
        _("other relationship, in words"), max_length=100, blank=True, help_text=_("Only for \"Other\": e.g. aunt, cousin")
    )
    legal_guardian = models.BooleanField(
        _("parent or legal guardian of the patient"), default=False,
        help_text=_("For a patient under 18: the letters say that this person has parental authority."),
    )
    justification = models.TextField(
        _("justification"), blank=True, help_text=_("If there is no family relationship: why this person accompanies the patient.")
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("accompanying person")
        verbose_name_plural = _("accompanying persons")
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def relationship_label(self) -> str:
        """The relationship in the active language (the words typed for "other")."""
        if self.relationship_kind and self.relationship_kind != Relationship.OTHER:
            return str(self.get_relationship_kind_display())
        return self.relationship.strip()

    @property
    def relationship_fact(self) -> str:
        """The relationship in no language (its code, or the words for "other"): what the
        visa rules and the letters' fingerprints compare."""
        if self.relationship_kind and self.relationship_kind != Relationship.OTHER:
            return self.relationship_kind
        return self.relationship.strip()

    def clean(self):
        self.nationality = (self.nationality or "").strip().upper()
        if self.relationship_kind == Relationship.OTHER and not self.relationship.strip():
            raise ValidationError(
                {"relationship": _("Say in a few words which relationship (e.g. aunt).")}, code="relationship"
            )
        if not self.relationship_fact and not self.justification.strip():
            raise ValidationError(
                _("Give the relationship to the patient or, if there is none, a justification."), code="relationship"
            )


class DeclaredStay(models.Model):
    """An earlier stay in the Schengen area, as declared (counts in the 90 days in any 180)."""

    treatment_request = models.ForeignKey(TreatmentRequest, on_delete=models.CASCADE, related_name="declared_stays")
    companion = models.ForeignKey(
        AccompanyingPerson,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="declared_stays",
        help_text=_("Empty for the patient's own stays."),
    )
    entry_on = models.DateField(_("entry"))
    exit_on = models.DateField(_("exit"))
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("earlier stay in the Schengen area")
        verbose_name_plural = _("earlier stays in the Schengen area")
        ordering = ["entry_on", "id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(exit_on__gte=models.F("entry_on")), name="declared_stay_ordered"),
        ]

    def __str__(self) -> str:
        return f"{self.entry_on} – {self.exit_on}"

    def clean(self):
        if self.entry_on and self.exit_on and self.exit_on < self.entry_on:
            raise ValidationError(_("The exit cannot be before the entry."), code="dates")
        if self.companion_id and self.companion.treatment_request_id != self.treatment_request_id:
            raise ValidationError(_("This person does not travel with this patient."), code="companion")


def validate_iban(value: str) -> None:
    from protonpath.international.rules.payment import iban_is_valid

    if value and not iban_is_valid(value):
        raise ValidationError(_("This IBAN is not valid: check its letters and digits."), code="iban")


class DepartmentDetails(models.Model):
    """What the department prints on quotes and consulate letters and tells a patient who accepted a
    quote: contact details, the letters' signatory, how to pay. One row, edited by staff.
    """

    address = models.TextField(_("postal address"), blank=True)
    phone = models.CharField(_("telephone"), max_length=40, blank=True)
    email = models.EmailField(_("e-mail"), blank=True)
    signatory_name = models.CharField(_("signatory of the letters"), max_length=150, blank=True)
    signatory_title_en = models.CharField(_("signatory's title (English)"), max_length=150, blank=True)
    signatory_title_fr = models.CharField(_("signatory's title (French)"), max_length=150, blank=True)
    beneficiary = models.CharField(_("beneficiary of transfers"), max_length=150, blank=True)
    iban = models.CharField(_("IBAN"), max_length=42, blank=True, validators=[validate_iban])
    bic = models.CharField(
        _("BIC"), max_length=11, blank=True,
        validators=[RegexValidator(r"^[A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})?$", _("A BIC has 8 or 11 letters and digits."))],
    )
    bank_name = models.CharField(_("bank"), max_length=150, blank=True)
    payment_note_en = models.TextField(_("payment instructions (English)"), blank=True)
    payment_note_fr = models.TextField(_("payment instructions (French)"), blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        verbose_name = _("department details")
        verbose_name_plural = _("department details")

    def __str__(self) -> str:
        return str(_("department details"))

    @classmethod
    def current(cls) -> DepartmentDetails:
        """The one row (an empty one until staff fill it in)."""
        details = cls.objects.order_by("pk").first()
        return details if details is not None else cls()

    def clean(self):
        self.iban = " ".join(self.iban.replace(" ", "").upper()[i : i + 4] for i in range(0, len(self.iban.replace(" ", "")), 4))
        self.bic = self.bic.replace(" ", "").upper()

    @property
    def can_take_transfers(self) -> bool:
        return bool(self.iban and self.beneficiary)

    def signatory_title(self, language: str) -> str:
        return self.signatory_title_fr if language == "fr" else self.signatory_title_en

    def payment_note(self, language: str) -> str:
        return self.payment_note_fr if language == "fr" else self.payment_note_en


class IssuedLetter(models.Model):
    """A consulate letter as issued: the PDF kept as it was sent, one version per set of facts.

    When the facts change (the sessions were booked or moved, a payment came, a detail was
    corrected), the next download issues a new version; the earlier ones stay.
    """

    treatment_request = models.ForeignKey(TreatmentRequest, on_delete=models.CASCADE, related_name="consulate_letters")
    companion = models.ForeignKey(
        AccompanyingPerson, null=True, blank=True, on_delete=models.SET_NULL, related_name="letters",
        help_text=_("Empty for the patient's attestation."),
    )
    traveller = models.CharField(max_length=20, help_text="'patient' or the accompanying person's id")
    version = models.PositiveSmallIntegerField(_("version"))
    language = models.CharField(_("language"), max_length=2)
    fingerprint = models.CharField(max_length=64)
    facts = models.JSONField(default=dict)
    pdf = models.BinaryField()
    issued_at = models.DateTimeField(_("issued on"), default=timezone.now)
    issued_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        verbose_name = _("consulate letter")
        verbose_name_plural = _("consulate letters")
        ordering = ["treatment_request", "traveller", "-version", "language"]
        constraints = [
            models.UniqueConstraint(
                fields=["treatment_request", "traveller", "version", "language"], name="issued_letter_one_per_version_language"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.treatment_request_id} {self.traveller} v{self.version} {self.language}"
