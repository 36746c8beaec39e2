"""The department: its team, its services' hours and contacts, and the review meetings."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _


def _in_language(en: str, fr: str) -> str:
    return (fr or en) if (get_language() or "en").startswith("fr") else (en or fr)


class TeamRole(models.TextChoices):
    HEAD = "head", _("Head of department")
    SUPERVISOR = "supervisor", _("Supervisor")
    RADIATION_ONCOLOGIST = "radiation_oncologist", _("Radiation oncologist")
    PHYSICIST = "physicist", _("Medical physicist")
    OTHER = "other", _("Other")


class TeamMember(models.Model):
    """A person of the team directory (public page); not necessarily a user of the system."""

    title = models.CharField(_("title"), max_length=20, blank=True, help_text=_("Pr, Dr..."))
    name = models.CharField(_("name"), max_length=200)
    role = models.CharField(_("role"), max_length=32, choices=TeamRole.choices)
    specialties_en = models.TextField(_("specialties (English)"), blank=True, help_text=_("One per line."))
    specialties_fr = models.TextField(_("specialties (French)"), blank=True, help_text=_("One per line."))
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="team_member",
        verbose_name=_("user account"),
    )
    display_order = models.PositiveSmallIntegerField(_("display order"), default=0)
    active = models.BooleanField(_("listed"), default=True)

    class Meta:
        ordering = ["display_order", "name"]
        verbose_name = _("team member")
        verbose_name_plural = _("team members")

    def __str__(self) -> str:
        return f"{self.title} {self.name}".strip()

    @property
    def specialties(self) -> list[str]:
        text = _in_language(self.specialties_en, self.specialties_fr)
        return [line.strip() for line in text.splitlines() if line.strip()]


class Service(models.Model):
    """A service of the department with its contact details and opening hours."""

    class Code(models.TextChoices):
        CONSULTATIONS = "consultations", _("Outpatient consultations")
        ADMINISTRATIVE_OFFICE = "administrative_office", _("Administrative office")

    code = models.CharField(_("service"), max_length=32, choices=Code.choices, unique=True)
    name_en = models.CharField(_("name (English)"), max_length=120)
    name_fr = models.CharField(_("name (French)"), max_length=120)
    phone = models.CharField(_("telephone"), max_length=40, blank=True)
    location_en = models.CharField(_("location (English)"), max_length=200, blank=True)
    location_fr = models.CharField(_("location (French)"), max_length=200, blank=True)

    class Meta:
        ordering = ["code"]
        verbose_name = _("service")
        verbose_name_plural = _("services")

    def __str__(self) -> str:
        return self.name

    @property
    def name(self) -> str:
        return _in_language(self.name_en, self.name_fr)

    @property
    def location(self) -> str:
        return _in_language(self.location_en, self.location_fr)


class Weekday(models.IntegerChoices):
    MONDAY = 0, _("Monday")
    TUESDAY = 1, _("Tuesday")
    WEDNESDAY = 2, _("Wednesday")
    THURSDAY = 3, _("Thursday")
    FRIDAY = 4, _("Friday")
    SATURDAY = 5, _("Saturday")
    SUNDAY = 6, _("Sunday")


class OpeningHours(models.Model):
    """One opening period of a service on a weekday (Python's weekday numbers: Monday = 0)."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="hours", verbose_name=_("service"))
    weekday = models.PositiveSmallIntegerField(_("day"), choices=Weekday.choices)
    opens = models.TimeField(_("opens"))
    closes = models.TimeField(_("closes"))

    class Meta:
        ordering = ["service", "weekday", "opens"]
        verbose_name = _("opening hours")
        verbose_name_plural = _("opening hours")
        constraints = [
            models.CheckConstraint(condition=Q(opens__lt=models.F("closes")), name="hours_open_before_close"),
            models.CheckConstraint(condition=Q(weekday__gte=0, weekday__lte=6), name="hours_weekday_range"),
            models.UniqueConstraint(fields=["service", "weekday", "opens"], name="hours_unique_period"),
        ]

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.opens:%H:%M}-{self.closes:%H:%M}"


class ReviewMeeting(models.Model):
    """The multidisciplinary review meeting (RCP) where complete files are decided."""

    class Status(models.TextChoices):
        PLANNED = "planned", _("Planned")
        HELD = "held", _("Held")

    starts_at = models.DateTimeField(_("date and time"))
    chair = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="chaired_meetings",
        verbose_name=_("chair"),
    )
    attendees = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="review_meetings", verbose_name=_("attendees")
    )
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PLANNED)
    location = models.CharField(_("room"), max_length=120, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    held_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-starts_at"]
        verbose_name = _("review meeting")
        verbose_name_plural = _("review meetings")

    def __str__(self) -> str:
        return f"{_('Review meeting')} {timezone.localtime(self.starts_at):%Y-%m-%d %H:%M}"


class Decision(models.TextChoices):
    ACCEPTED = "accepted", _("Accepted")
    DECLINED = "declined", _("Declined")
    INFO_REQUESTED = "info_requested", _("More information requested")


#: The referrals service's name for each decision.
DECISION_ACTIONS = {
    Decision.ACCEPTED: "accept",
    Decision.DECLINED: "decline",
    Decision.INFO_REQUESTED: "request_information",
}


class AgendaItem(models.Model):
    """A request on a meeting's agenda, and the decision taken on it."""

    meeting = models.ForeignKey(ReviewMeeting, on_delete=models.CASCADE, related_name="items", verbose_name=_("meeting"))
    treatment_request = models.ForeignKey(
        "referrals.TreatmentRequest", on_delete=models.PROTECT, related_name="agenda_items", verbose_name=_("request")
    )
    order = models.PositiveSmallIntegerField(_("order"), default=0)
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    added_at = models.DateTimeField(default=timezone.now, editable=False)

    decision = models.CharField(_("decision"), max_length=20, choices=Decision.choices, blank=True)
    proposed_dose_gy = models.DecimalField(
        _("proposed dose (Gy RBE)"), max_digits=5, decimal_places=2, null=True, blank=True
    )
    proposed_fractions = models.PositiveSmallIntegerField(_("number of fractions"), null=True, blank=True)
    note = models.TextField(_("note"), blank=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recorded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["meeting", "order", "id"]
        verbose_name = _("agenda item")
        verbose_name_plural = _("agenda items")
        constraints = [
            models.UniqueConstraint(fields=["meeting", "treatment_request"], name="agenda_request_once_per_meeting"),
            # A request waits on one agenda at a time.
            models.UniqueConstraint(
                fields=["treatment_request"], condition=Q(decision=""), name="agenda_one_pending_item_per_request"
            ),
            models.CheckConstraint(
                condition=~Q(decision=Decision.ACCEPTED)
                | Q(proposed_dose_gy__isnull=False, proposed_fractions__gte=1),
                name="agenda_accepted_has_dose",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.meeting} #{self.order}"

    @property
    def is_decided(self) -> bool:
        return bool(self.decision)
