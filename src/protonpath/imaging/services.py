"""Writes: upload a study, match an inbox study to a request, re-check a request's images, export.

Every function takes the acting user, checks that the user may act, works in one transaction and
records what it did in the audit trail. Nothing here logs a patient's name or identifier.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pydicom
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, Max
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.translation import gettext as _

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent
from protonpath.imaging import checks, ingest
from protonpath.imaging.files import FileProblem, UploadLimits, UploadRefused, read_upload
from protonpath.imaging.messages import finding_message
from protonpath.imaging.models import CheckReport, Instance, ReceivedVia, Series, Study, Transfer
from protonpath.referrals import selectors as referral_selectors
from protonpath.referrals import services as referral_services
from protonpath.referrals.models import State, TreatmentRequest


@dataclass(frozen=True)
class UploadSummary:
    stored: int
    duplicates: int
    ignored: int
    studies: int
    #: The identity findings of the request's images after this upload (the patient in the
    #: images differs from the request's): stored dicts, to warn the uploader at once.
    identity_findings: tuple = ()


#: Findings that say the images may be another person's.
IDENTITY_CODES = frozenset({"several_patients", "name_mismatch", "birth_date_mismatch"})


#: The patient or referring doctor may add images while the file is theirs to complete, and also
#: once submitted (images often follow the letter) until staff have checked the file.
OWNER_UPLOAD_STATES = referral_services.EDITABLE_STATES | {State.SUBMITTED}


def may_upload(actor, treatment_request: TreatmentRequest) -> bool:
    """Who may add images: the owner at the stages above; the department's staff while the
    request is open (they bring CDs and planning images)."""
    if not actor.is_authenticated:
        return False
    if referral_selectors.is_owner(actor, treatment_request):
        return treatment_request.state in OWNER_UPLOAD_STATES
    return actor.is_department_staff and treatment_request.is_open


def _safe_parts(relative: str) -> list[str] | None:
    parts = [p for p in relative.replace("\\", "/").split("/")]
    if not parts or any(p in ("", ".", "..") or "\x00" in p or ":" in p for p in parts):
        return None
    return parts


def _write_upload(files: Sequence, relative_paths: Sequence[str] | None, root: Path) -> tuple[list[Path], list[str]]:
    """Write the browser's files under ``root``; a folder upload keeps its tree (DICOMDIR media
    refer to their files by relative path). Returns the sources and names for read_upload."""
    sources: list[Path] = []
    names: list[str] = []
    folders: dict[str, Path] = {}
    problems: list[FileProblem] = []
    seen_paths: set[tuple[str, ...]] = set()
    for index, upload in enumerate(files):
        name = Path(getattr(upload, "name", "") or f"file{index}").name
        relative = relative_paths[index] if relative_paths and index < len(relative_paths) else ""
        if relative and "/" in relative.replace("\\", "/"):
            parts = _safe_parts(relative)
            if parts is None:
                problems.append(FileProblem(relative, _("has an unsafe path (absolute or with '..')")))
                continue
            if tuple(parts) in seen_paths:
                problems.append(FileProblem(relative, _("appears twice in the upload")))
                continue
            seen_paths.add(tuple(parts))
            target = root.joinpath("tree", *parts)
            folders.setdefault(parts[0], root / "tree" / parts[0])
        else:
            target = root / "loose" / str(index) / (name if name not in ("", ".", "..") else "file")
            sources.append(target)
            names.append(name)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as sink:
                for chunk in upload.chunks():
                    sink.write(chunk)
        except (FileExistsError, IsADirectoryError, NotADirectoryError):
            # A file and a folder of the same name (cd/IM1 and cd/IM1/IM2): no tree holds both.
            problems.append(FileProblem(relative or name, _("is both a file and a folder in the upload")))
    if problems:
        raise UploadRefused(problems)
    for name, folder in folders.items():
        sources.append(folder)
        names.append(name)
    return sources, names


def upload_study(
    *, actor, treatment_request: TreatmentRequest, files: Sequence, relative_paths: Sequence[str] | None = None
) -> UploadSummary:
    """Add the DICOM files, folders (with their relative paths) or zips of one upload, all or none.

    Raises
    ------
    PermissionDenied
        If ``actor`` may not add images to this request now.
    UploadRefused
        With one problem per offending file; nothing is kept.
    """
    if not may_upload(actor, treatment_request):
        raise PermissionDenied(_("Images cannot be added to this request now."))
    if not files:
        raise UploadRefused([FileProblem(_("upload"), _("no file was sent"))])
    total = sum(getattr(f, "size", 0) or 0 for f in files)
    limit = settings.PROTONPATH_MAX_DICOM_UPLOAD_BYTES
    if total > limit:
        raise UploadRefused(
            [FileProblem(_("upload"), _("is too large (%(size)s); the limit is %(limit)s.")
                         % {"size": filesizeformat(total), "limit": filesizeformat(limit)})]
        )
    limits = UploadLimits(max_total_bytes=min(UploadLimits.max_total_bytes, 4 * limit))
    with tempfile.TemporaryDirectory(prefix="protonpath-dicom-") as tmp:
        root = Path(tmp)
        sources, names = _write_upload(files, relative_paths, root)
        work = root / "work"
        work.mkdir()
        result = read_upload(sources, work, limits=limits, names=names)
        saved: list[str] = []
        stored = duplicates = 0
        studies: set[int] = set()
        try:
            with transaction.atomic():
                transfer = Transfer.objects.create(via=ReceivedVia.UPLOAD, uploaded_by=actor)
                conflicts = []
                for dicom_file in result.files:
                    try:
                        outcome = ingest.store_instance(
                            dicom_file, treatment_request=treatment_request, via=ReceivedVia.UPLOAD,
                            transfer=transfer, actor=actor,
                        )
                    except ingest.InstanceConflict as conflict:
                        conflicts.append(FileProblem(dicom_file.name, str(conflict)))
                        continue
                    saved.extend(outcome.saved_names)
                    studies.add(outcome.study.pk)
                    stored += 0 if outcome.duplicate else 1
                    duplicates += 1 if outcome.duplicate else 0
                if conflicts:
                    raise UploadRefused(conflicts)
                duplicates += len(result.duplicates)
                Transfer.objects.filter(pk=transfer.pk).update(
                    stored=stored, duplicates=duplicates, outcome=Transfer.Outcome.COMPLETE, ended_at=timezone.now()
                )
                audit.record(
                    actor=actor,
                    action=AuditEvent.Action.CREATE,
                    obj=transfer,
                    treatment_request_id=treatment_request.pk,
                    summary=f"DICOM upload: {stored} instance(s) stored, {duplicates} duplicate(s)",
                )
        except BaseException:
            ingest.delete_saved(saved)
            raise
    report = refresh_check_report(treatment_request)
    identity = tuple(f for f in report.findings if f.get("code") in IDENTITY_CODES)
    return UploadSummary(
        stored=stored, duplicates=duplicates, ignored=len(result.ignored), studies=len(studies), identity_findings=identity
    )


# --- the DICOM listener's start-up ------------------------------------------------------------


def record_dicom_receipt(study_counts, calling_ae_title: str, outcome: str) -> set[int]:
    """Audit what one DICOM association brought, study by study, and return the ids of the
    requests those studies are filed to (their image checks need refreshing).

    ``study_counts`` yields ``(study, instances received)``; ``outcome`` ends each audit line.
    """
    requests: set[int] = set()
    for study, received in study_counts:
        audit.record(
            actor=None,
            action=AuditEvent.Action.CREATE,
            obj=study,
            summary=f"{received} instance(s) received over DICOM from AE {calling_ae_title} ({outcome})",
        )
        if study.treatment_request_id:
            requests.add(study.treatment_request_id)
    return requests


def close_interrupted_transfers() -> list[Transfer]:
    """Mark as cut off the DICOM transfers that an earlier listener left 'in progress'.

    A transfer is closed when its association ends; if the listener process dies mid-association
    (killed, crashed, machine restarted), it stays 'in progress' for ever. Call this when the
    listener starts, before it accepts associations: each such transfer becomes 'aborted' (what
    arrived is kept, as for an association cut off by the peer), ending at its last instance,
    with what it brought in the audit trail (as at the end of an association), and the requests
    it brought images to are checked again. Uploads are not concerned (each is one transaction).

    Assumes one listener per database: a second listener started while another is receiving
    would close the other's open transfers.

    Returns
    -------
    list of Transfer
        The transfers closed, as saved.
    """
    token = audit.set_context(audit.AuditContext(via="dicom"))
    requests: set[int] = set()
    try:
        with transaction.atomic():
            stale = list(
                Transfer.objects.select_for_update()
                .filter(via=ReceivedVia.DICOM, outcome=Transfer.Outcome.IN_PROGRESS)
                .order_by("started_at", "pk")
            )
            for transfer in stale:
                last = transfer.instances.aggregate(last=Max("received_at"))["last"]
                transfer.outcome = Transfer.Outcome.ABORTED
                transfer.ended_at = max(last, transfer.started_at) if last else transfer.started_at
                transfer.save(update_fields=["outcome", "ended_at"])
                audit.record(
                    actor=None,
                    action=AuditEvent.Action.UPDATE,
                    obj=transfer,
                    summary=f"DICOM transfer from AE {transfer.calling_ae_title} cut off when the listener "
                    f"stopped: {transfer.stored} instance(s) kept; closed at the listener's restart",
                )
                counts = (
                    Study.objects.filter(series__instances__transfer=transfer)
                    .annotate(received=Count("series__instances"))
                    .order_by("pk")
                )
                requests |= record_dicom_receipt(
                    ((study, study.received) for study in counts),
                    transfer.calling_ae_title,
                    "aborted: the listener stopped",
                )
    finally:
        audit.reset_context(token)
    for treatment_request in TreatmentRequest.objects.filter(pk__in=requests).select_related("patient"):
        refresh_check_report(treatment_request)
    return stale


# --- checks -----------------------------------------------------------------------------------


def request_headers(treatment_request: TreatmentRequest) -> list[checks.InstanceHeader]:
    rows = Instance.objects.filter(series__study__treatment_request=treatment_request).values_list("header", flat=True)
    return [checks.InstanceHeader.from_dict(h) for h in rows]


def _series_summary(report: checks.SeriesReport) -> dict:
    data = asdict(report)
    data.pop("findings", None)
    return data


def refresh_check_report(treatment_request: TreatmentRequest) -> CheckReport:
    """Re-run the planning checks on every image of the request and keep the verdict."""
    headers = request_headers(treatment_request)
    report = checks.assess_study(headers, ingest.expected_identity(treatment_request))
    stored, _created = CheckReport.objects.update_or_create(
        treatment_request=treatment_request,
        defaults={
            "fit_for_planning": report.fit_for_planning,
            "modalities": "\\".join(report.modalities),
            "findings": [asdict(f) for f in report.findings],
            "series": [_series_summary(s) for s in report.series],
            "planning_series_instance_uid": report.planning_series_instance_uid,
            "instance_count": len(headers),
            "created_at": timezone.now(),
        },
    )
    return stored


# --- the inbox --------------------------------------------------------------------------------


def study_headers(study: Study) -> list[checks.InstanceHeader]:
    rows = Instance.objects.filter(series__study=study).values_list("header", flat=True)
    return [checks.InstanceHeader.from_dict(h) for h in rows]


def match_study(*, actor, study: Study, treatment_request: TreatmentRequest, confirm_no_identity: bool = False) -> Study:
    """File a study of the inbox under a request, after checking it is the same patient.

    The family name, first given name and birth date in the images must agree with the request's
    patient; images that carry neither name nor birth date are matched only when the member of
    staff confirms it explicitly. The match is audited.

    Raises
    ------
    PermissionDenied
        If ``actor`` is not department staff.
    ValidationError
        If the study is not in the inbox, the request is closed, or the identities differ.
    """
    if not (actor.is_authenticated and actor.is_department_staff):
        raise PermissionDenied(_("Only the department's staff match images to requests."))
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study.pk)
        # The request as it is now (a caller's copy may predate a cancellation).
        treatment_request = TreatmentRequest.objects.select_related("patient").get(pk=treatment_request.pk)
        if study.treatment_request_id is not None:
            raise ValidationError(_("This study is not in the inbox any more."), code="matched")
        if not treatment_request.is_open:
            raise ValidationError(_("This request is closed."), code="closed")
        headers = study_headers(study)
        mismatches = ingest.identity_mismatches(headers, treatment_request)
        if mismatches:
            raise ValidationError(
                [_("Not matched: %(reason)s.") % {"reason": finding_message(f.code, f.params, f.message)} for f in mismatches],
                code="identity",
            )
        has_identity = any(h.patient_name.strip("^ ") or h.patient_birth_date.strip() for h in headers)
        if not has_identity and not confirm_no_identity:
            raise ValidationError(
                _("The images carry neither a patient name nor a birth date: confirm that they are this patient's."),
                code="unconfirmed",
            )
        target = treatment_request.imaging_studies.filter(study_instance_uid=study.study_instance_uid).first()
        if target is None:
            study.treatment_request = treatment_request
            study.inbox_reason = ""
            study.inbox_reason_code = ""
            study.inbox_reason_params = {}
            study.matched_at = timezone.now()
            study.matched_by = actor
            study.save()
            target = study
        else:
            _merge_into(study, target)
        audit.record(
            actor=actor,
            action=AuditEvent.Action.UPDATE,
            obj=target,
            treatment_request_id=treatment_request.pk,
            summary="study matched from the inbox" + ("" if has_identity else " (no identity in images; confirmed)"),
        )
    refresh_check_report(treatment_request)
    return target


def _merge_into(source: Study, target: Study) -> None:
    """Move the series of an inbox study into the request's study of the same UID."""
    for series in list(source.series.all()):
        same = target.series.filter(series_instance_uid=series.series_instance_uid).first()
        if same is None:
            series.study = target
            series.save(update_fields=["study"])
        else:
            moved = series.instances.update(series=same)
            Series.objects.filter(pk=same.pk).update(instance_count=same.instance_count + moved)
            series.delete()
    modalities = checks.modalities_present(
        [checks.InstanceHeader("", "", "", "", modality=m) for m in target.series.values_list("modality", flat=True)]
    )
    Study.objects.filter(pk=target.pk).update(modalities="\\".join(modalities))
    source.delete()


# --- de-identified export ---------------------------------------------------------------------


def export_deidentified(*, actor, study: Study) -> tuple[bytes, str]:
    """A zip of the study and the RT objects of the same request, de-identified by the core's
    :mod:`protonpath.imaging.deidentify` (PS3.15 basic profile, UIDs remapped consistently across
    CT, RTSTRUCT, RTPLAN and RTDOSE). Returns (zip bytes, file name).

    The UID key is derived from the server's secret and the request, so every export of the same
    patient's images agrees with the others, and nobody without the secret can link them to the
    originals. Warnings (burned-in annotations) go into ``WARNINGS.txt`` in the zip.

    Raises
    ------
    PermissionDenied
        If ``actor`` is not department staff.
    """
    from protonpath.imaging import deidentify
    from protonpath.imaging.selectors import instances_for_export

    if not (actor.is_authenticated and actor.is_department_staff):
        raise PermissionDenied(_("Only the department's staff export images."))
    instances = instances_for_export(study)
    scope = f"request-{study.treatment_request_id}" if study.treatment_request_id else f"study-{study.pk}"
    key = hmac.new(settings.SECRET_KEY.encode(), f"imaging-export-{scope}".encode(), hashlib.sha256).digest()
    pseudonym = f"ANON-{key.hex()[:10].upper()}"
    uids = deidentify.UidMapper(secret=key)
    table = deidentify.load_basic_profile()
    warnings: list[str] = []
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for number, instance in enumerate(instances, start=1):
            with instance.file.open("rb") as f:
                original = pydicom.dcmread(f)
            result = deidentify.deidentify_dataset(
                original, uids=uids, pseudonym=deidentify.Pseudonym(pseudonym, pseudonym), table=table
            )
            member = io.BytesIO()
            result.dataset.save_as(member, enforce_file_format=True)
            modality = "".join(c for c in str(result.dataset.get("Modality", "OT") or "OT") if c.isalnum())[:16] or "OT"
            name = f"{pseudonym}/{modality}/{number:05d}.dcm"
            archive.writestr(name, member.getvalue())
            warnings.extend(f"{name}: {w}" for w in result.warnings)
        if warnings:
            archive.writestr(f"{pseudonym}/WARNINGS.txt", "\n".join(warnings) + "\n")
    audit.record(
        actor=actor,
        action=AuditEvent.Action.EXPORT,
        obj=study,
        summary=f"de-identified export of {len(instances)} instance(s)",
    )
    return buffer.getvalue(), f"{pseudonym}.zip"
