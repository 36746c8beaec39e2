"""Prescriptions and plan versions of a request: what the oncologist prescribes, what the
physicist sets up and calculates (on a task worker), and who approved it.

Nothing is overwritten once it matters: a new prescription is a new version; a plan whose setup
changes after calculation is a new version that supersedes the old one; an approved plan is
frozen by the SHA-256 of its RT Ion Plan's bytes.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from protonpath.referrals.models import TreatmentRequest


class Prescription(models.Model):
    """The oncologist's prescription, one row per version (the highest is the current one)."""

    treatment_request = models.ForeignKey(
        TreatmentRequest, on_delete=models.CASCADE, related_name="prescriptions"
    )
    version = models.PositiveSmallIntegerField()
    target = models.CharField(_("target"), max_length=64, help_text=_("e.g. PTV"))
    dose_gy = models.DecimalField(_("dose (Gy RBE)"), max_digits=5, decimal_places=2)
    fractions = models.PositiveSmallIntegerField(_("number of fractions"))
    note = models.TextField(_("note"), blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["treatment_request", "-version"]
        verbose_name = _("prescription")
        verbose_name_plural = _("prescriptions")
        constraints = [
            models.UniqueConstraint(fields=["treatment_request", "version"], name="prescription_version_unique"),
            models.CheckConstraint(
                condition=models.Q(fractions__gte=1) & models.Q(fractions__lte=60), name="prescription_fractions_1_60"
            ),
            models.CheckConstraint(condition=models.Q(dose_gy__gt=0), name="prescription_dose_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.treatment_request.reference} Rx v{self.version}"

    @property
    def dose_per_fraction_gy(self) -> float:
        return float(self.dose_gy) / self.fractions


class PlanState(models.TextChoices):
    DRAFT = "draft", _("Draft")
    QUEUED = "queued", _("Waiting for a worker")
    RUNNING = "running", _("Calculating")
    CALCULATED = "calculated", _("Calculated, awaiting approval")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")
    PHYSICIST_APPROVED = "physicist_approved", _("Approved by the physicist")
    APPROVED = "approved", _("Approved")
    SUPERSEDED = "superseded", _("Superseded")


#: A calculation may be started (again) from these states.
STARTABLE_STATES = frozenset({PlanState.DRAFT, PlanState.FAILED, PlanState.CANCELLED})
#: The setup may be edited in place only before anything was calculated from it.
EDITABLE_STATES = frozenset({PlanState.DRAFT, PlanState.FAILED, PlanState.CANCELLED})
ACTIVE_STATES = frozenset({PlanState.QUEUED, PlanState.RUNNING})
FROZEN_STATES = frozenset({PlanState.PHYSICIST_APPROVED, PlanState.APPROVED})


def plan_file_path(instance: Plan, filename: str) -> str:
    # Random names: never a patient's name or a UID.
    return f"treatment/{uuid.uuid4().hex}{filename[filename.rfind('.'):]}"


class Plan(models.Model):
    """One version of a request's PBS plan: setup, calculation state and progress, results."""

    treatment_request = models.ForeignKey(TreatmentRequest, on_delete=models.CASCADE, related_name="plans")
    version = models.PositiveSmallIntegerField()
    prescription = models.ForeignKey(Prescription, on_delete=models.PROTECT, related_name="plans")
    category = models.CharField(_("indication category"), max_length=32)
    ct_series = models.ForeignKey("imaging.Series", on_delete=models.PROTECT, related_name="+")
    rtstruct = models.ForeignKey("imaging.Instance", on_delete=models.PROTECT, related_name="+")
    # {"structures": [{"name", "role", "standard"}], "target": name, "beams": [{"gantry_deg",
    #  "couch_deg", "isocentre_mm"}], "objectives": [...], "goals": [...], "settings": {...}}
    setup = models.JSONField(default=dict)
    # Robust planning (robust.py validates it): {"scenarios": "nominal" | "combined",
    #  "setup_mm", "range_pct", "robustness": global mode}; an objective of the setup may carry
    #  its own "robustness". Empty: a nominal plan, not evaluated under scenarios.
    robust = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=20, choices=PlanState.choices, default=PlanState.DRAFT)
    # Progress of the calculation, written by the worker from the pipeline's callback.
    stage = models.CharField(max_length=32, blank=True)
    progress = models.FloatField(default=0.0)
    cancel_requested = models.BooleanField(default=False)
    task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=64, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Why it failed: a code and its params, rendered in the reader's language (messages.py).
    error_code = models.CharField(max_length=32, blank=True)
    error_params = models.JSONField(default=dict, blank=True)
    # Results: statistics (course doses), goals, DVH curves, delivery estimate.
    results = models.JSONField(default=dict, blank=True)
    # Robustness evaluation of the calculated plan (RobustnessEvaluation.to_dict, whole-course
    # doses) when scenarios were asked for; the voxel-wise min/max dose cubes are not kept.
    robustness = models.JSONField(default=dict, blank=True)
    rtplan_file = models.FileField(upload_to=plan_file_path, max_length=200, blank=True)
    rtdose_file = models.FileField(upload_to=plan_file_path, max_length=200, blank=True)
    dose_file = models.FileField(upload_to=plan_file_path, max_length=200, blank=True)
    rtplan_sha256 = models.CharField(max_length=64, blank=True)
    physicist_approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    physicist_approved_at = models.DateTimeField(null=True, blank=True)
    oncologist_approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    oncologist_approved_at = models.DateTimeField(null=True, blank=True)
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by"
    )
    exported_at = models.DateTimeField(null=True, blank=True)
    export_status = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["treatment_request", "-version"]
        verbose_name = _("treatment plan")
        verbose_name_plural = _("treatment plans")
        constraints = [
            models.UniqueConstraint(fields=["treatment_request", "version"], name="plan_version_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.treatment_request.reference} plan v{self.version}"

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def is_frozen(self) -> bool:
        return self.state in FROZEN_STATES

    @property
    def progress_percent(self) -> int:
        return int(round(100 * max(0.0, min(1.0, self.progress))))

    def error_display(self) -> str:
        from protonpath.treatment.messages import plan_error_message

        return plan_error_message(self.error_code, self.error_params)

    def stage_display(self) -> str:
        from protonpath.treatment.messages import stage_label

        return stage_label(self.stage)
