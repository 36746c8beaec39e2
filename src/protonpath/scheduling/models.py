"""Consultations with the oncologists, and the gantry's treatment courses, sessions and downtimes.

Rules the database itself enforces (so that they also hold under concurrent writes):

* one consultation per doctor at a time: every booked consultation owns one
  :class:`ConsultationSlot` row per 30-minute slot it takes, unique per doctor and slot start
  (the rows are deleted when the consultation is cancelled or moved);
* one booked first consultation per request;
* one active gantry session per course and fraction number, and per gantry and start time.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from protonpath.referrals.models import TreatmentRequest


class ConsultationKind(models.TextChoices):
    FIRST = "first", _("First consultation")
    FOLLOW_UP = "follow_up", _("Follow-up consultation")


class ConsultationStatus(models.TextChoices):
    BOOKED = "booked", _("Booked")
    CANCELLED = "cancelled", _("Cancelled")
    DONE = "done", _("Done")


class Consultation(models.Model):
    """An outpatient consultation of a patient (through a request) with a radiation oncologist."""

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    treatment_request = models.ForeignKey(
        TreatmentRequest, on_delete=models.PROTECT, related_name="consultations"
    )
    doctor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="consultations_given",
        verbose_name=_("doctor"),
    )
    start = models.DateTimeField(_("start"), db_index=True)
    end = models.DateTimeField(_("end"))
    kind = models.CharField(
        _("kind"), max_length=16, choices=ConsultationKind.choices, default=ConsultationKind.FIRST
    )
    status = models.CharField(
        _("status"),
        max_length=16,
        choices=ConsultationStatus.choices,
        default=ConsultationStatus.BOOKED,
        db_index=True,
    )
    booked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    booked_at = models.DateTimeField(default=timezone.now, editable=False)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancellation_reason = models.TextField(_("reason for cancellation"), blank=True)
    sequence = models.PositiveIntegerField(
        default=0, editable=False, help_text="iCalendar SEQUENCE"
    )

    class Meta:
        verbose_name = _("consultation")
        verbose_name_plural = _("consultations")
        ordering = ["start"]
        constraints = [
            models.CheckConstraint(
                condition=Q(end__gt=models.F("start")), name="consultation_end_after_start"
            ),
            models.UniqueConstraint(
                fields=["treatment_request"],
                condition=Q(kind="first", status="booked"),
                name="one_booked_first_consultation_per_request",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {timezone.localtime(self.start):%Y-%m-%d %H:%M}"

    @property
    def is_booked(self) -> bool:
        return self.status == ConsultationStatus.BOOKED

    @property
    def duration_min(self) -> int:
        return int((self.end - self.start).total_seconds() // 60)


class ConsultationSlot(models.Model):
    """One 30-minute slot a booked consultation takes; unique per doctor (the no-overlap rule)."""

    consultation = models.ForeignKey(Consultation, on_delete=models.CASCADE, related_name="slots")
    doctor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    start = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["doctor", "start"], name="one_consultation_per_doctor_per_slot"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.doctor_id} {self.start:%Y-%m-%d %H:%M}"


class Urgency(models.TextChoices):
    URGENT = "urgent", _("Urgent")
    STANDARD = "standard", _("Standard")
    ELECTIVE = "elective", _("Elective")


class IndicationCategory(models.TextChoices):
    """Categories of the gantry day data (``data/gantry_day.toml``): they set session durations.

    The pure scheduling modules know a category by its code only; this is the table of the labels
    pages show, translated (the ``label`` in the TOML file is for people reading the data). Every
    category of the data file must be here (a test checks it)."""

    ADULT_STANDARD = "adult_standard", _("Adult, standard (base of skull, ENT, brain, orbit)")
    ADULT_COMPLEX = (
        "adult_complex",
        _("Adult, complex (trunk with motion management, re-irradiation)"),
    )
    PAEDIATRIC_AWAKE = "paediatric_awake", _("Child, awake")
    PAEDIATRIC_ANAESTHESIA = "paediatric_anaesthesia", _("Child under general anaesthesia")


class TreatmentCourse(models.Model):
    """The gantry sessions a request needs: how many, how long, from when, by when."""

    treatment_request = models.OneToOneField(
        TreatmentRequest, on_delete=models.PROTECT, related_name="course"
    )
    gantry_id = models.CharField(_("gantry"), max_length=16, default="G1")
    fractions = models.PositiveSmallIntegerField(_("number of fractions"))
    category = models.CharField(
        _("indication category"), max_length=32, choices=IndicationCategory.choices
    )
    session_minutes = models.PositiveSmallIntegerField(_("session duration (min)"))
    first_session_extra_minutes = models.PositiveSmallIntegerField(
        _("extra minutes of the first session")
    )
    under_anaesthesia = models.BooleanField(_("child under general anaesthesia"), default=False)
    ready_date = models.DateField(_("plan ready on"))
    due_date = models.DateField(_("first session at the latest on"))
    urgency = models.CharField(
        _("urgency"), max_length=16, choices=Urgency.choices, default=Urgency.STANDARD
    )
    usual_start_min = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="usual time of day, minutes after midnight (set by the scheduler)",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("treatment course")
        verbose_name_plural = _("treatment courses")
        constraints = [
            models.CheckConstraint(
                condition=Q(fractions__gte=1) & Q(fractions__lte=60), name="course_fractions_1_60"
            ),
            models.CheckConstraint(
                condition=Q(due_date__gte=models.F("ready_date")), name="course_due_after_ready"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.treatment_request.reference} ({self.fractions} fx)"

    @property
    def first_session_minutes(self) -> int:
        return self.session_minutes + self.first_session_extra_minutes


class SessionStatus(models.TextChoices):
    PLANNED = "planned", _("Planned")
    ANNOUNCED = "announced", _("Announced to the patient")
    DONE = "done", _("Given")
    MISSED = "missed", _("Missed")
    CANCELLED = "cancelled", _("Cancelled")


#: Sessions that hold their place on the gantry.
ACTIVE_SESSION_STATES = (SessionStatus.PLANNED, SessionStatus.ANNOUNCED, SessionStatus.DONE)


class GantrySession(models.Model):
    """One fraction of a course on the gantry."""

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    course = models.ForeignKey(TreatmentCourse, on_delete=models.CASCADE, related_name="sessions")
    fraction_number = models.PositiveSmallIntegerField(_("fraction"))
    gantry_id = models.CharField(_("gantry"), max_length=16, default="G1")
    start = models.DateTimeField(_("start"), db_index=True)
    end = models.DateTimeField(_("end"))
    status = models.CharField(
        _("status"), max_length=16, choices=SessionStatus.choices, default=SessionStatus.PLANNED
    )
    status_note = models.CharField(_("note"), max_length=200, blank=True)
    sequence = models.PositiveIntegerField(
        default=0, editable=False, help_text="iCalendar SEQUENCE"
    )

    class Meta:
        verbose_name = _("gantry session")
        verbose_name_plural = _("gantry sessions")
        ordering = ["start"]
        constraints = [
            models.CheckConstraint(
                condition=Q(end__gt=models.F("start")), name="session_end_after_start"
            ),
            models.UniqueConstraint(
                fields=["course", "fraction_number"],
                condition=Q(status__in=["planned", "announced", "done"]),
                name="one_active_session_per_fraction",
            ),
            models.UniqueConstraint(
                fields=["gantry_id", "start"],
                condition=Q(status__in=["planned", "announced", "done"]),
                name="one_active_session_per_gantry_start",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.fraction_number} {timezone.localtime(self.start):%Y-%m-%d %H:%M}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_SESSION_STATES


class MachineDowntime(models.Model):
    """A period when the gantry cannot treat (breakdown, maintenance)."""

    gantry_id = models.CharField(_("gantry"), max_length=16, default="G1")
    start = models.DateTimeField(_("from"))
    end = models.DateTimeField(_("until"))
    reason = models.CharField(_("reason"), max_length=200)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    recorded_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("machine downtime")
        verbose_name_plural = _("machine downtimes")
        ordering = ["start"]
        constraints = [
            models.CheckConstraint(
                condition=Q(end__gt=models.F("start")), name="downtime_end_after_start"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.gantry_id} {timezone.localtime(self.start):%Y-%m-%d %H:%M}"
