"""Patients, requests for treatment, their medical file and the path's history."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from protonpath.referrals.countries import country_name, validate_country_code
from protonpath.referrals.identity import identity_key


class Sex(models.TextChoices):
    FEMALE = "F", _("Female")
    MALE = "M", _("Male")
    OTHER = "O", _("Other / unspecified")


class GuardianRelationship(models.TextChoices):
    MOTHER = "mother", _("Mother")
    FATHER = "father", _("Father")
    LEGAL_GUARDIAN = "legal_guardian", _("Legal guardian")
    OTHER = "other", _("Other legal representative")


#: The guardian's details a request filled in by a parent or legal guardian must give.
GUARDIAN_FIELDS = ("guardian_name", "guardian_relationship", "guardian_phone", "guardian_email")


class Patient(models.Model):
    """A person to be treated, with the administrative details asked of every request."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="patient_record",
        help_text=_("The patient's own account, when the patient signs in."),
    )
    first_name = models.CharField(_("first name"), max_length=150)
    last_name = models.CharField(_("surname"), max_length=150)
    sex = models.CharField(_("sex"), max_length=1, choices=Sex.choices)
    birth_date = models.DateField(_("date of birth"))
    birth_place = models.CharField(_("place of birth"), max_length=200)
    nationality = models.CharField(
        _("nationality"), max_length=2, validators=[validate_country_code], help_text=_("ISO 3166-1 alpha-2")
    )
    passport_number = models.CharField(
        _("passport number"), max_length=40, blank=True,
        help_text=_("Printed on the letter for the consulate when a visa is needed."),
    )
    phone = models.CharField(_("telephone"), max_length=40)
    email = models.EmailField(_("e-mail"))
    address = models.TextField(_("postal address"))
    country_of_residence = models.CharField(_("country of residence"), max_length=2, validators=[validate_country_code])
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Family name|given name|birth date without case, accents or punctuation, to find the records
    # of one person (see :mod:`protonpath.referrals.identity`). Kept up to date by save().
    identity_key = models.CharField(max_length=320, editable=False, db_index=True, default="")

    class Meta:
        verbose_name = _("patient")
        verbose_name_plural = _("patients")
        ordering = ["last_name", "first_name"]

    def __str__(self) -> str:
        return f"{self.last_name.upper()} {self.first_name}"

    def save(self, *args, **kwargs):
        self.identity_key = identity_key(self.last_name, self.first_name, self.birth_date)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and {"first_name", "last_name", "birth_date"} & set(update_fields):
            kwargs["update_fields"] = {*update_fields, "identity_key"}
        super().save(*args, **kwargs)

    @property
    def nationality_name(self) -> str:
        """The country of the nationality, named in the active language."""
        return country_name(self.nationality)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    def age_on(self, day) -> int:
        years = day.year - self.birth_date.year
        if (day.month, day.day) < (self.birth_date.month, self.birth_date.day):
            years -= 1
        return years

    @property
    def is_child(self) -> bool:
        return self.age_on(timezone.localdate()) < 18


class State(models.TextChoices):
    DRAFT = "draft", _("Draft")
    SUBMITTED = "submitted", _("Submitted")
    INCOMPLETE = "incomplete", _("File incomplete")
    COMPLETE = "complete", _("File complete")
    IN_REVIEW = "in_review", _("In review")
    ACCEPTED = "accepted", _("Accepted")
    DECLINED = "declined", _("Declined")
    INFO_REQUESTED = "info_requested", _("More information requested")
    QUOTE_SENT = "quote_sent", _("Quote sent")
    QUOTE_ACCEPTED = "quote_accepted", _("Quote accepted")
    PAID = "paid", _("Paid in full")
    CONSULTATION_BOOKED = "consultation_booked", _("First consultation booked")
    PLANNING = "planning", _("Planning")
    SCHEDULED = "scheduled", _("Treatment scheduled")
    IN_TREATMENT = "in_treatment", _("In treatment")
    COMPLETED = "completed", _("Completed")
    CANCELLED = "cancelled", _("Cancelled")


TERMINAL_STATES = frozenset({State.DECLINED, State.COMPLETED, State.CANCELLED})


class RequestType(models.TextChoices):
    TREATMENT = "treatment", _("Proton therapy treatment")
    OPINION = "opinion", _("Opinion on whether proton therapy is indicated")
    SECOND_OPINION = "second_opinion", _("Second opinion on a proposed treatment")
    REIRRADIATION = "reirradiation", _("Re-irradiation after earlier radiotherapy")


class TreatmentRequest(models.Model):
    """A request for treatment and its whole path, from submission to the last session."""

    reference = models.CharField(_("reference"), max_length=16, unique=True, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="requests")
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="submitted_requests"
    )
    referring_doctor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="referred_requests",
        help_text=_("The referring doctor's account, when the doctor uses the system."),
    )
    request_type = models.CharField(_("type of request"), max_length=32, choices=RequestType.choices)
    reason = models.TextField(_("reason for the request"), help_text=_("What do you ask of the medical team?"))
    covered_by_french_insurance = models.BooleanField(
        _("covered by French health insurance"),
        default=False,
        help_text=_("Patients not affiliated to French health insurance receive a quote to pay before treatment."),
    )
    # Addressee: the referring doctor or institution to whom answers are sent.
    addressee_name = models.CharField(_("addressee (doctor or institution)"), max_length=200)
    addressee_institution = models.CharField(_("institution"), max_length=200, blank=True)
    addressee_phone = models.CharField(_("addressee telephone"), max_length=40)
    addressee_email = models.EmailField(_("addressee e-mail"))
    addressee_address = models.TextField(_("addressee postal address"))
    addressee_country = models.CharField(
        _("addressee country"), max_length=2, blank=True, validators=[validate_country_code], help_text=_("ISO 3166-1 alpha-2")
    )
    # Who filled in the request when it is not the patient: a parent or legal guardian.
    filled_by_guardian = models.BooleanField(_("filled in by a parent or legal guardian"), default=False)
    guardian_name = models.CharField(_("parent or guardian's name"), max_length=200, blank=True)
    guardian_relationship = models.CharField(
        _("relationship to the patient"), max_length=32, choices=GuardianRelationship.choices, blank=True
    )
    guardian_phone = models.CharField(_("parent or guardian's telephone"), max_length=40, blank=True)
    guardian_email = models.EmailField(_("parent or guardian's e-mail"), blank=True)
    # Medical summary.
    pathology_name = models.CharField(_("pathology"), max_length=200)
    pathology_location = models.CharField(_("location"), max_length=200)
    had_surgery = models.BooleanField(_("operated on for this disease"), default=False)
    had_chemotherapy = models.BooleanField(_("treated by chemotherapy"), default=False)
    had_radiotherapy = models.BooleanField(_("treated by radiotherapy before"), default=False)

    state = models.CharField(_("state"), max_length=32, choices=State.choices, default=State.DRAFT, db_index=True)
    state_changed_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    submitted_at = models.DateTimeField(null=True, blank=True)
    missing_information = models.TextField(_("what is missing"), blank=True)

    # The oncologists' decision.
    decision_note = models.TextField(_("decision"), blank=True)
    proposed_dose_gy = models.DecimalField(
        _("proposed dose (Gy RBE)"), max_digits=5, decimal_places=2, null=True, blank=True
    )
    proposed_fractions = models.PositiveSmallIntegerField(_("number of fractions"), null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_sent_at = models.DateTimeField(null=True, blank=True)
    cancellation_reason = models.TextField(_("reason for cancellation"), blank=True)

    class Meta:
        verbose_name = _("request for treatment")
        verbose_name_plural = _("requests for treatment")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(proposed_fractions__isnull=True) | models.Q(proposed_fractions__gte=1),
                name="request_fractions_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.reference

    def clean(self):
        super().clean()
        if self.filled_by_guardian:
            errors = {}
            if not self.guardian_name.strip():
                errors["guardian_name"] = _("Give the name of the parent or legal guardian.")
            if not self.guardian_relationship:
                errors["guardian_relationship"] = _("Say whether you are the mother, the father or the legal guardian.")
            if not (self.guardian_phone.strip() or self.guardian_email.strip()):
                errors["guardian_phone"] = _("Give a telephone number or an e-mail address to reach the parent or legal guardian.")
            if errors:
                raise ValidationError(errors)
        else:
            # Nothing kept about a guardian the request does not name.
            for field in GUARDIAN_FIELDS:
                setattr(self, field, "")

    @property
    def addressee_country_name(self) -> str:
        """The addressee's country, named in the active language ("" when not given)."""
        return country_name(self.addressee_country) if self.addressee_country else ""

    @property
    def is_international(self) -> bool:
        """Patients from abroad (not covered by French insurance) pay a quote in full first."""
        return not self.covered_by_french_insurance

    @property
    def accession_number(self) -> str:
        """The DICOM accession number under which images for this request are sent (SH, ≤16)."""
        return self.reference.replace("-", "")

    @property
    def is_open(self) -> bool:
        return self.state not in TERMINAL_STATES


class DocumentKind(models.TextChoices):
    DOCTOR_LETTER = "doctor_letter", _("Letter from the referring doctor")
    IMAGING_REPORT = "imaging_report", _("Imaging report")
    DICOM_IMAGES = "dicom_images", _("Images (DICOM)")
    OPERATION_REPORT = "operation_report", _("Operation report")
    CHEMOTHERAPY_REPORT = "chemotherapy_report", _("Chemotherapy report")
    RADIOTHERAPY_REPORT = "radiotherapy_report", _("Radiotherapy report")
    OTHER = "other", _("Other document")


def document_path(instance: MedicalDocument, filename: str) -> str:
    # Never the uploaded name in the path: it often carries the patient's name.
    suffix = filename.rsplit(".", 1)[-1].lower()[:8] if "." in filename else "bin"
    return f"requests/{instance.treatment_request_id}/documents/{uuid.uuid4().hex}.{suffix}"


class MedicalDocument(models.Model):
    treatment_request = models.ForeignKey(TreatmentRequest, on_delete=models.CASCADE, related_name="documents")
    kind = models.CharField(_("kind"), max_length=32, choices=DocumentKind.choices)
    file = models.FileField(upload_to=document_path, max_length=300)
    original_name = models.CharField(_("file name"), max_length=255)
    content_type = models.CharField(max_length=100)
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    description = models.CharField(_("description"), max_length=300, blank=True)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    uploaded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("medical document")
        verbose_name_plural = _("medical documents")
        ordering = ["kind", "uploaded_at"]
        constraints = [
            models.UniqueConstraint(fields=["treatment_request", "sha256"], name="document_unique_per_request"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.original_name})"


class StateChange(models.Model):
    """The path of a request, one row per transition (also mirrored in the audit trail)."""

    treatment_request = models.ForeignKey(TreatmentRequest, on_delete=models.CASCADE, related_name="history")
    from_state = models.CharField(max_length=32, choices=State.choices)
    to_state = models.CharField(max_length=32, choices=State.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField(default=timezone.now)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]
        verbose_name = _("state change")
        verbose_name_plural = _("state changes")

    def __str__(self) -> str:
        return f"{self.from_state} → {self.to_state}"
