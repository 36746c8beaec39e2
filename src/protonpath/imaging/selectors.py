"""Reads: which studies and series a user may see, the inbox, and C-FIND answers.

Images follow their request: whoever may see the request (``referrals.selectors.visible_requests``)
sees what was received for it; the check details, the viewer and exports are for the department's
staff; the inbox (studies not yet matched to a request) is for staff only.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db.models import Count, QuerySet, Sum
from django.http import Http404
from django.utils.translation import gettext_lazy as _

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent, Role
from protonpath.imaging.models import CheckReport, Instance, Series, Study
from protonpath.referrals.models import TreatmentRequest
from protonpath.referrals.selectors import visible_requests


def may_see_check_details(user) -> bool:
    """Staff see every finding; referring doctors see the verdict and its reasons (to resend);
    patients see what was received."""
    return user.is_authenticated and (user.is_department_staff or user.role == Role.REFERRING_DOCTOR)


def may_view_images(user) -> bool:
    return user.is_authenticated and user.is_department_staff


def studies_of(treatment_request: TreatmentRequest) -> QuerySet[Study]:
    return treatment_request.imaging_studies.prefetch_related("series").order_by("study_date", "id")


def check_report_of(treatment_request: TreatmentRequest) -> CheckReport | None:
    return CheckReport.objects.filter(treatment_request=treatment_request).first()


def inbox() -> QuerySet[Study]:
    return (
        Study.objects.filter(treatment_request__isnull=True)
        .annotate(instance_total=Sum("series__instance_count"), series_total=Count("series"))
        .order_by("created_at")
    )


def _denied(user, object_type: str, pk) -> Http404:
    audit.record(actor=user, action=AuditEvent.Action.DENIED, object_type=object_type, object_id=str(pk))
    return Http404(_("No such images."))


def get_series_for(user, pk: int) -> Series:
    """A series of a request ``user`` may see, for staff (viewer); else 404, audited."""
    if not may_view_images(user):
        raise _denied(user, "imaging.series", pk)
    try:
        return Series.objects.select_related("study__treatment_request").get(
            pk=pk, study__treatment_request__in=visible_requests(user)
        )
    except (Series.DoesNotExist, ValueError, TypeError):
        raise _denied(user, "imaging.series", pk) from None


def get_instance_for(user, pk: int) -> Instance:
    if not may_view_images(user):
        raise _denied(user, "imaging.instance", pk)
    try:
        return Instance.objects.select_related("series__study").get(
            pk=pk, series__study__treatment_request__in=visible_requests(user)
        )
    except (Instance.DoesNotExist, ValueError, TypeError):
        raise _denied(user, "imaging.instance", pk) from None


def get_study_for(user, pk: int) -> Study:
    """A study of a request ``user`` may see, for staff; else 404, audited."""
    if not may_view_images(user):
        raise _denied(user, "imaging.study", pk)
    try:
        return Study.objects.select_related("treatment_request").get(
            pk=pk, treatment_request__in=visible_requests(user)
        )
    except (Study.DoesNotExist, ValueError, TypeError):
        raise _denied(user, "imaging.study", pk) from None


def get_inbox_study_for(user, pk: int) -> Study:
    if not (user.is_authenticated and user.is_department_staff):
        raise _denied(user, "imaging.study", pk)
    try:
        return Study.objects.get(pk=pk, treatment_request__isnull=True)
    except (Study.DoesNotExist, ValueError, TypeError):
        raise _denied(user, "imaging.study", pk) from None


def slices_of(series: Series) -> list[Instance]:
    """The instances of a series in slice order (along the normal, then by number)."""
    return list(series.instances.order_by("slice_position_mm", "instance_number", "id"))


def structure_sets_for(series: Series) -> list[Instance]:
    """RTSTRUCT instances of the same request drawn in this series' frame of reference (or on it)."""
    study = series.study
    candidates = Instance.objects.filter(
        series__study__treatment_request_id=study.treatment_request_id, series__modality="RTSTRUCT"
    ) if study.treatment_request_id else Instance.objects.filter(series__study=study, series__modality="RTSTRUCT")
    found = []
    for instance in candidates:
        header = instance.header
        frames = header.get("referenced_frame_of_reference_uids") or []
        referenced = header.get("referenced_series_instance_uids") or []
        if series.series_instance_uid in referenced or (series.frame_of_reference_uid and series.frame_of_reference_uid in frames):
            found.append(instance)
    return found


RT_MODALITIES = ("RTSTRUCT", "RTPLAN", "RTDOSE")


def instances_for_export(study: Study) -> list[Instance]:
    """The study's instances, and the RT objects (structures, plans, doses) of the same request
    kept in other studies: images first, then RTSTRUCT, RTPLAN, RTDOSE."""
    own = list(Instance.objects.filter(series__study=study).select_related("series"))
    if study.treatment_request_id:
        own += list(
            Instance.objects.filter(
                series__study__treatment_request_id=study.treatment_request_id, series__modality__in=RT_MODALITIES
            ).exclude(series__study=study).select_related("series")
        )
    order = {m: i for i, m in enumerate(RT_MODALITIES, start=1)}
    return sorted(own, key=lambda i: (order.get(i.series.modality, 0), i.series_id, i.slice_position_mm or 0, i.pk))


# --- C-FIND -----------------------------------------------------------------------------------

FIND_KEYS = (
    "StudyInstanceUID", "AccessionNumber", "StudyDate", "StudyDescription", "ModalitiesInStudy",
    "PatientName", "PatientID", "PatientBirthDate", "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)


def study_find_records(filters: Mapping[str, str]) -> list[dict[str, str]]:
    """Candidate records for a study-level C-FIND (the listener applies exact DICOM matching).

    Exact keys without wildcards narrow the query in the database; the rest is left to the
    listener's matching.
    """
    qs = Study.objects.annotate(instance_total=Sum("series__instance_count"), series_total=Count("series"))
    uid = filters.get("StudyInstanceUID", "")
    if uid and "\\" not in uid:
        qs = qs.filter(study_instance_uid=uid)
    accession = filters.get("AccessionNumber", "")
    if accession and not any(c in accession for c in "*?\\"):
        qs = qs.filter(accession_number=accession)
    records = []
    for study in qs.order_by("id")[:1000]:
        records.append(
            {
                "StudyInstanceUID": study.study_instance_uid,
                "AccessionNumber": study.accession_number,
                "StudyDate": study.study_date.strftime("%Y%m%d") if study.study_date else "",
                "StudyDescription": study.description,
                "ModalitiesInStudy": study.modalities,
                "PatientName": study.patient_name,
                "PatientID": study.patient_id,
                "PatientBirthDate": study.patient_birth_date,
                "NumberOfStudyRelatedSeries": str(study.series_total or 0),
                "NumberOfStudyRelatedInstances": str(study.instance_total or 0),
            }
        )
    return records
