"""The index of DICOM images: studies, series and instances, their transfers and check reports.

Files live in the storage backend under names made of random hex (never a patient's name or a
UID that a peer chose); the database keeps what the pages, the checks and C-FIND need. A study
whose request is not known yet (received over the network without a known accession number, or
with a patient identity that differs from the request's) has no request: it waits in the staff
inbox until someone matches it (see :func:`protonpath.imaging.services.match_study`).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from protonpath.imaging import digests
from protonpath.imaging.messages import inbox_reason_message, localised
from protonpath.referrals.models import TreatmentRequest


class ReceivedVia(models.TextChoices):
    UPLOAD = "upload", _("Upload")
    DICOM = "dicom", _("DICOM network")
    DEMO = "demo", _("Demo data")


class Transfer(models.Model):
    """One upload or one DICOM association: what it brought and how it ended."""

    class Outcome(models.TextChoices):
        IN_PROGRESS = "in_progress", _("In progress")
        COMPLETE = "complete", _("Complete")
        ABORTED = "aborted", _("Cut off (what arrived is kept)")

    via = models.CharField(max_length=10, choices=ReceivedVia.choices)
    calling_ae_title = models.CharField(_("calling AE title"), max_length=16, blank=True)
    peer_address = models.CharField(max_length=64, blank=True)
    association_id = models.CharField(max_length=32, blank=True, db_index=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    stored = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=12, choices=Outcome.choices, default=Outcome.IN_PROGRESS)
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        verbose_name = _("image transfer")
        verbose_name_plural = _("image transfers")

    def __str__(self) -> str:
        return f"{self.via} {self.calling_ae_title} {self.started_at:%Y-%m-%d %H:%M}"


class Study(models.Model):
    """A DICOM study as received for one request (or waiting in the inbox, without one)."""

    treatment_request = models.ForeignKey(
        TreatmentRequest, null=True, blank=True, on_delete=models.CASCADE, related_name="imaging_studies"
    )
    study_instance_uid = models.CharField(max_length=64)
    accession_number = models.CharField(_("accession number"), max_length=16, blank=True)
    study_date = models.DateField(_("study date"), null=True, blank=True)
    description = models.CharField(_("description"), max_length=64, blank=True)
    modalities = models.CharField(_("modalities"), max_length=100, blank=True, help_text="CT\\RTSTRUCT...")
    # The patient as the images name them (DICOM PN, DA), to check against the request.
    patient_name = models.CharField(max_length=200, blank=True)
    patient_id = models.CharField(max_length=64, blank=True)
    patient_birth_date = models.CharField(max_length=8, blank=True)
    # Why a study is in the inbox (no accession number, unknown one, request closed, identity
    # differs): the English text, and the code and params pages render in the reader's language
    # (see reason_display); rows without a code show the text as it is.
    inbox_reason = models.CharField(max_length=200, blank=True)
    inbox_reason_code = models.CharField(max_length=32, blank=True)
    inbox_reason_params = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    matched_at = models.DateTimeField(null=True, blank=True)
    matched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("study")
        verbose_name_plural = _("studies")
        constraints = [
            models.UniqueConstraint(
                fields=["treatment_request", "study_instance_uid"],
                condition=Q(treatment_request__isnull=False),
                name="imaging_study_unique_per_request",
            ),
            models.UniqueConstraint(
                fields=["study_instance_uid"],
                condition=Q(treatment_request__isnull=True),
                name="imaging_study_unique_in_inbox",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.modalities or 'study'} {self.study_date or ''}".strip()

    @property
    def modality_list(self) -> list[str]:
        return [m for m in self.modalities.split("\\") if m]

    @property
    def is_matched(self) -> bool:
        return self.treatment_request_id is not None

    @property
    def reason_display(self) -> str:
        """Why the study waits in the inbox, in the active language (the stored English text for
        rows without a known code)."""
        return inbox_reason_message(self.inbox_reason_code, self.inbox_reason_params, self.inbox_reason)


class Series(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="series")
    series_instance_uid = models.CharField(max_length=64)
    modality = models.CharField(_("modality"), max_length=16, blank=True)
    description = models.CharField(_("description"), max_length=64, blank=True)
    series_number = models.IntegerField(null=True, blank=True)
    frame_of_reference_uid = models.CharField(max_length=64, blank=True)
    instance_count = models.PositiveIntegerField(_("instances"), default=0)

    class Meta:
        ordering = ["series_number", "id"]
        verbose_name = _("series")
        verbose_name_plural = _("series")
        constraints = [
            models.UniqueConstraint(fields=["study", "series_instance_uid"], name="imaging_series_unique_per_study"),
        ]

    def __str__(self) -> str:
        return f"{self.modality} {self.description}".strip()

    @property
    def is_image(self) -> bool:
        return self.modality in ("CT", "MR", "PT")


def instance_path(instance: Instance, filename: str) -> str:
    # Random name: never the uploaded name or a UID chosen by the sender.
    name = uuid.uuid4().hex
    return f"imaging/{name[:2]}/{name}.dcm"


class Instance(models.Model):
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="instances")
    transfer = models.ForeignKey(Transfer, null=True, blank=True, on_delete=models.SET_NULL, related_name="instances")
    sop_instance_uid = models.CharField(max_length=64, unique=True)
    sop_class_uid = models.CharField(max_length=64)
    instance_number = models.IntegerField(null=True, blank=True)
    # Position along the slice normal (mm, patient LPS), to order slices; None for non-images.
    slice_position_mm = models.FloatField(null=True, blank=True)
    file = models.FileField(upload_to=instance_path, max_length=200)
    size_bytes = models.BigIntegerField()
    # "<algorithm>:<hex>" (imaging.digests): BLAKE3 since 2026-12, SHA-256 before.
    file_digest = models.CharField(max_length=digests.MAX_LENGTH, help_text="of the stored file")
    dataset_digest = models.CharField(
        max_length=digests.MAX_LENGTH, help_text="of the encoded dataset without file meta: same instance, same digest"
    )
    transfer_syntax_uid = models.CharField(max_length=64)
    received_via = models.CharField(max_length=10, choices=ReceivedVia.choices)
    calling_ae_title = models.CharField(max_length=16, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    # checks.InstanceHeader.to_dict(): lets the checks run from the index without reading files.
    header = models.JSONField(default=dict)

    class Meta:
        ordering = ["slice_position_mm", "instance_number", "id"]
        verbose_name = _("instance")
        verbose_name_plural = _("instances")

    def __str__(self) -> str:
        return f"instance {self.pk}"


class CheckReport(models.Model):
    """The 'fit for planning' verdict of a request's images, as last computed."""

    treatment_request = models.OneToOneField(
        TreatmentRequest, on_delete=models.CASCADE, related_name="imaging_check"
    )
    fit_for_planning = models.BooleanField()
    modalities = models.CharField(max_length=100, blank=True)
    # Each finding also carries its params; the stored message is the English text, and
    # pages render code + params in the reader's language (see localised_findings).
    findings = models.JSONField(default=list, help_text="[{code, severity, message, series_instance_uid}]")
    series = models.JSONField(default=list, help_text="one summary per series")
    planning_series_instance_uid = models.CharField(max_length=64, blank=True)
    instance_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("image check report")
        verbose_name_plural = _("image check reports")

    def __str__(self) -> str:
        return f"{'fit' if self.fit_for_planning else 'not fit'} ({self.created_at:%Y-%m-%d %H:%M})"

    def localised_findings(self, severity: str | None = None) -> list[dict]:
        """The findings (of one severity, or all) with ``message`` in the active language."""
        return [localised(f) for f in self.findings if severity is None or f.get("severity") == severity]

    @property
    def blocking(self) -> list[dict]:
        return self.localised_findings("blocking")

    @property
    def warnings(self) -> list[dict]:
        return self.localised_findings("warning")

    @property
    def notes(self) -> list[dict]:
        return self.localised_findings("info")
