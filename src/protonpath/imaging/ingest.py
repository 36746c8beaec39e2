"""Django glue between the DICOM core and the index: keep a checked instance, file it, route it.

:func:`store_instance` copies one checked file (:class:`protonpath.imaging.files.DicomFile`) into
the storage backend and writes its study/series/instance rows. It must run inside a transaction;
it returns the names it saved so the caller can delete them if the transaction is rolled back.

:func:`route` decides where an instance received over the network goes: to the request whose
accession number it carries, and only if the patient in the images is the request's patient
(family name, given name, birth date); anything else waits in the staff inbox.

:class:`NetworkReceiver` is the sink the C-STORE listener calls (one instance at a time, from the
association's thread), its end-of-association hook and its study-level C-FIND finder.

Nothing here logs a patient's name or identifier.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pydicom
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import close_old_connections, connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Replace, Upper
from django.utils import timezone

from protonpath.accounts import audit
from protonpath.accounts.audit import AuditContext, reset_context, set_context
from protonpath.accounts.models import AuditEvent
from protonpath.imaging import checks
from protonpath.imaging.files import DicomFile, FileRejected, classify_file
from protonpath.imaging.models import Instance, ReceivedVia, Series, Study, Transfer
from protonpath.imaging.scp import (
    STATUS_CANNOT_UNDERSTAND,
    AssociationSummary,
    DicomListener,
    InstanceRefused,
    ListenerSettings,
    ReceivedInstance,
    StudyQuery,
)
from protonpath.referrals.models import TreatmentRequest

logger = logging.getLogger(__name__)

_ACCESSION = re.compile(r"^([A-Z]+)(\d{4})(\d+)$")
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


class InstanceConflict(Exception):
    """The instance cannot be kept: same SOP Instance UID as one already filed elsewhere or with
    different content. The message is for staff and names no patient."""


@dataclass(frozen=True)
class Stored:
    """What :func:`store_instance` did with one file."""

    study: Study
    instance: Instance | None
    duplicate: bool
    saved_names: tuple[str, ...] = ()


# --- bytes ------------------------------------------------------------------------------------


def part10_bytes(dicom_file: DicomFile) -> bytes:
    """The file as it will be kept: Part 10 files as they are, bare datasets wrapped in a meta
    header (old systems write datasets without preamble; viewers and peers want Part 10)."""
    data = Path(dicom_file.path).read_bytes()
    if dicom_file.part10:
        return data
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = dicom_file.header.sop_class_uid
    meta.MediaStorageSOPInstanceUID = dicom_file.header.sop_instance_uid
    meta.TransferSyntaxUID = dicom_file.transfer_syntax_uid
    ds.file_meta = meta
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def dataset_offset(data: bytes) -> int:
    """Where the dataset starts in a Part 10 file (after preamble and group 0002)."""
    offset = 132
    while offset + 8 <= len(data) and data[offset : offset + 2] == b"\x02\x00":
        vr = data[offset + 4 : offset + 6]
        if vr in _LONG_VRS:
            offset += 12 + int.from_bytes(data[offset + 8 : offset + 12], "little")
        else:
            offset += 8 + int.from_bytes(data[offset + 6 : offset + 8], "little")
    return offset


def dataset_digest(data: bytes) -> str:
    """SHA-256 of the encoded dataset only: every sender writes its own file meta header."""
    return hashlib.sha256(memoryview(data)[dataset_offset(data) :]).hexdigest()


def _same_content(existing: Instance, data: bytes) -> bool:
    """Different bytes may still be the same instance (a peer re-encoded it in another transfer
    syntax): compare the decoded datasets, file meta aside."""
    try:
        with existing.file.open("rb") as f:
            kept = pydicom.dcmread(f)
        new = pydicom.dcmread(io.BytesIO(data))
    except Exception:  # unreadable either side: not provably the same
        return False
    # Element by element (FileDataset equality would also compare the file meta and file names),
    # leaving out what encoders add or drop freely: group lengths and trailing padding.
    def meaningful(ds):
        return {tag for tag in ds.keys() if tag.element != 0x0000 and tag != 0xFFFCFFFC}

    tags = meaningful(kept)
    return tags == meaningful(new) and all(kept[tag] == new[tag] for tag in tags)


# --- routing ----------------------------------------------------------------------------------


def request_by_accession(accession_number: str) -> TreatmentRequest | None:
    """The request whose accession number (its reference without dashes) this is."""
    wanted = accession_number.strip().upper().replace("-", "")
    if not wanted:
        return None
    # Fast path on the unique reference: PP202600001 is PP-2026-00001.
    parts = _ACCESSION.match(wanted)
    if parts:
        found = (
            TreatmentRequest.objects.select_related("patient")
            .filter(reference="-".join(parts.groups()))
            .first()
        )
        if found is not None:
            return found
    return (
        TreatmentRequest.objects.select_related("patient")
        .annotate(accession=Upper(Replace("reference", Value("-"), Value(""))))
        .filter(accession=wanted)
        .first()
    )


def expected_identity(treatment_request: TreatmentRequest) -> checks.ExpectedIdentity:
    patient = treatment_request.patient
    return checks.ExpectedIdentity(
        family_name=patient.last_name, given_names=patient.first_name, birth_date=patient.birth_date
    )


def identity_mismatches(
    headers: Iterable[checks.InstanceHeader], treatment_request: TreatmentRequest
) -> list[checks.Finding]:
    """Blocking identity findings (another name, birth date, several patients) against a request."""
    found = checks.check_identity(list(headers), expected_identity(treatment_request))
    return [f for f in found if f.severity == "blocking"]


@dataclass(frozen=True)
class InboxReason:
    """Why a study received over the network waits in the staff inbox.

    ``code`` is stable (``no_accession_number``, ``unknown_accession_number``, ``request_closed``,
    ``identity_differs``); ``message`` is the English sentence kept with the study and in the audit
    trail; ``params`` are the values it quotes (JSON-ready: the request's reference and, for
    ``identity_differs``, the identity findings as ``{code, params, message}``), so that pages say
    it in the reader's language (:func:`protonpath.imaging.messages.inbox_reason_message`).
    """

    code: str
    message: str
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __str__(self) -> str:
        return self.message


def identity_differs(reference: str, mismatches: Iterable[checks.Finding]) -> InboxReason:
    """The inbox reason for images whose patient is not the request's (which parts differ)."""
    found = list(mismatches)
    details = "; ".join(f.message for f in found)
    return InboxReason(
        "identity_differs",
        f"patient identity differs from request {reference}" + (f": {details}" if details else ""),
        {
            "reference": reference,
            "mismatches": [{"code": f.code, "params": dict(f.params), "message": f.message} for f in found],
        },
    )


def route(header: checks.InstanceHeader) -> tuple[TreatmentRequest | None, InboxReason | None]:
    """Where an instance received over the network goes: (request, None) or (None, inbox reason)."""
    if not header.accession_number.strip():
        return None, InboxReason("no_accession_number", "no accession number")
    treatment_request = request_by_accession(header.accession_number)
    if treatment_request is None:
        return None, InboxReason("unknown_accession_number", "unknown accession number")
    reference = treatment_request.reference
    if not treatment_request.is_open:
        return None, InboxReason("request_closed", f"request {reference} is closed", {"reference": reference})
    mismatches = identity_mismatches([header], treatment_request)
    if mismatches:
        return None, identity_differs(reference, mismatches)
    return treatment_request, None


# --- index ------------------------------------------------------------------------------------


def _dicom_date(value: str) -> date | None:
    try:
        return datetime.strptime(value.strip()[:8], "%Y%m%d").date()
    except ValueError:
        return None


def _slice_position(header: checks.InstanceHeader) -> float | None:
    if header.image_position_mm is None or header.image_orientation is None:
        return None
    try:
        normal = checks.slice_normal(header.image_orientation)
    except ValueError:
        return None
    return float(sum(p * n for p, n in zip(header.image_position_mm, normal, strict=True)))


def _study_for(
    header: checks.InstanceHeader, treatment_request: TreatmentRequest | None, inbox_reason: str | InboxReason, actor
) -> Study:
    # A plain string (older callers) is kept as text only: pages show it as it is.
    reason_text = str(inbox_reason or "")
    reason_code = getattr(inbox_reason, "code", "")
    reason_params = dict(getattr(inbox_reason, "params", None) or {})
    inbox = treatment_request is None
    study, created = Study.objects.get_or_create(
        treatment_request=treatment_request,
        study_instance_uid=header.study_instance_uid,
        defaults={
            "accession_number": header.accession_number[:16],
            "study_date": _dicom_date(header.study_date),
            "description": header.study_description[:64],
            "patient_name": header.patient_name[:200],
            "patient_id": header.patient_id[:64],
            "patient_birth_date": header.patient_birth_date[:8],
            "inbox_reason": reason_text[:200] if inbox else "",
            "inbox_reason_code": reason_code[:32] if inbox else "",
            "inbox_reason_params": reason_params if inbox else {},
        },
    )
    if created:
        audit.record(
            actor=actor,
            action=AuditEvent.Action.CREATE,
            obj=study,
            summary="study indexed" if treatment_request else f"study put in the inbox: {reason_text}"[:300],
        )
    return study


def _series_for(study: Study, header: checks.InstanceHeader) -> Series:
    series, created = Series.objects.get_or_create(
        study=study,
        series_instance_uid=header.series_instance_uid,
        defaults={
            "modality": header.modality[:16],
            "description": header.series_description[:64],
            "series_number": header.series_number,
            "frame_of_reference_uid": header.frame_of_reference_uid[:64],
        },
    )
    if created:
        modalities = checks.modalities_present(
            [checks.InstanceHeader("", "", "", "", modality=m) for m in study.series.values_list("modality", flat=True)]
        )
        Study.objects.filter(pk=study.pk).update(modalities="\\".join(modalities)[:100])
    return series


def store_instance(
    dicom_file: DicomFile,
    *,
    treatment_request: TreatmentRequest | None,
    via: str,
    transfer: Transfer | None = None,
    calling_ae_title: str = "",
    inbox_reason: str | InboxReason | None = "",
    actor=None,
) -> Stored:
    """Keep one checked instance for ``treatment_request`` (None: the inbox, for ``inbox_reason``:
    an :class:`InboxReason`, whose code and params pages translate, or a plain English text).

    Must run inside ``transaction.atomic()``. The same instance already filed for the same request
    (or the inbox) with the same content is a duplicate: skipped, nothing saved.

    Raises
    ------
    InstanceConflict
        If the SOP Instance UID is already filed for another request (or the inbox), or with
        different content.
    """
    header = dicom_file.header
    data = part10_bytes(dicom_file)
    digest = dataset_digest(data)
    existing = (
        Instance.objects.select_related("series__study")
        .filter(sop_instance_uid=header.sop_instance_uid)
        .first()
    )
    if existing is not None:
        where = existing.series.study.treatment_request_id
        if where != (treatment_request.pk if treatment_request else None):
            raise InstanceConflict(
                "this instance was already received for another request"
                if where is not None
                else "this instance was already received and waits in the staff inbox"
            )
        if existing.dataset_sha256 != digest and not _same_content(existing, data):
            raise InstanceConflict("an instance with the same SOP Instance UID but different content was already received")
        return Stored(study=existing.series.study, instance=None, duplicate=True)
    study = _study_for(header, treatment_request, inbox_reason, actor)
    series = _series_for(study, header)
    instance = Instance(
        series=series,
        transfer=transfer,
        sop_instance_uid=header.sop_instance_uid,
        sop_class_uid=header.sop_class_uid[:64],
        instance_number=header.instance_number,
        slice_position_mm=_slice_position(header),
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        dataset_sha256=digest,
        transfer_syntax_uid=dicom_file.transfer_syntax_uid[:64],
        received_via=via,
        calling_ae_title=calling_ae_title[:16],
        header=header.to_dict(),
    )
    instance.file.save("instance.dcm", ContentFile(data), save=False)
    try:
        instance.save()
    except BaseException:
        default_storage.delete(instance.file.name)
        raise
    Series.objects.filter(pk=series.pk).update(instance_count=F("instance_count") + 1)
    return Stored(study=study, instance=instance, duplicate=False, saved_names=(instance.file.name,))


def delete_saved(names: Iterable[str]) -> None:
    """Remove files saved by a transaction that was rolled back."""
    for name in names:
        default_storage.delete(name)


# --- the network side ---------------------------------------------------------------------------


@dataclass
class _Touched:
    transfer_id: int
    studies: dict[int, int] = field(default_factory=dict)  # study pk -> instances stored


class NetworkReceiver:
    """The storage sink, association hook and C-FIND finder of the DICOM listener.

    Each instance is filed in its own transaction as it arrives, so an association cut off
    mid-study keeps everything received before the cut (the transfer is then marked 'aborted').
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._touched: dict[str, _Touched] = {}

    def _transfer_for(self, received: ReceivedInstance) -> _Touched:
        with self._lock:
            touched = self._touched.get(received.association_id)
        if touched is None:
            transfer = Transfer.objects.create(
                via=ReceivedVia.DICOM,
                calling_ae_title=received.calling_ae_title[:16],
                peer_address=received.peer_address[:64],
                association_id=received.association_id,
            )
            touched = _Touched(transfer.pk)
            with self._lock:
                self._touched[received.association_id] = touched
        return touched

    def on_instance(self, received: ReceivedInstance) -> None:
        """File one received instance; raise :class:`InstanceRefused` to refuse it."""
        token = set_context(AuditContext(ip_address=_ip(received.peer_address), via="dicom"))
        try:
            self._file(received)
        finally:
            reset_context(token)

    def _file(self, received: ReceivedInstance) -> None:
        try:
            dicom_file = classify_file(received.path, name=received.sop_instance_uid)
        except FileRejected as error:
            raise InstanceRefused(str(error), STATUS_CANNOT_UNDERSTAND) from error
        if dicom_file is None:
            raise InstanceRefused("a DICOMDIR is not an instance", STATUS_CANNOT_UNDERSTAND)
        touched = self._transfer_for(received)
        treatment_request, reason = route(dicom_file.header)
        saved: tuple[str, ...] = ()
        try:
            with transaction.atomic():
                result = store_instance(
                    dicom_file,
                    treatment_request=treatment_request,
                    via=ReceivedVia.DICOM,
                    transfer=Transfer(pk=touched.transfer_id),
                    calling_ae_title=received.calling_ae_title,
                    inbox_reason=reason,
                )
                saved = result.saved_names
                counter = "duplicates" if result.duplicate else "stored"
                Transfer.objects.filter(pk=touched.transfer_id).update(**{counter: F(counter) + 1})
        except InstanceConflict as conflict:
            Transfer.objects.filter(pk=touched.transfer_id).update(refused=F("refused") + 1)
            raise InstanceRefused(str(conflict)) from conflict
        except BaseException:
            delete_saved(saved)
            raise
        if not result.duplicate:
            with self._lock:
                touched.studies[result.study.pk] = touched.studies.get(result.study.pk, 0) + 1
        received.path.unlink(missing_ok=True)

    def on_association_end(self, summary: AssociationSummary) -> None:
        """Close the transfer, audit what it brought and re-check the requests concerned."""
        from protonpath.imaging import services

        with self._lock:
            touched = self._touched.pop(summary.association_id, None)
        token = set_context(AuditContext(ip_address=_ip(summary.peer_address), via="dicom"))
        try:
            if touched is None:
                return
            outcome = Transfer.Outcome.COMPLETE if summary.outcome == "released" else Transfer.Outcome.ABORTED
            Transfer.objects.filter(pk=touched.transfer_id).update(outcome=outcome, ended_at=timezone.now())
            requests = services.record_dicom_receipt(
                (
                    (study, touched.studies[study.pk])
                    for study in Study.objects.filter(pk__in=touched.studies)
                ),
                summary.calling_ae_title,
                summary.outcome,
            )
            for treatment_request in TreatmentRequest.objects.filter(pk__in=requests).select_related("patient"):
                services.refresh_check_report(treatment_request)
        finally:
            reset_context(token)
            # Each association runs in its own thread, with its own database connection.
            connection.close()

    def find_studies(self, query: StudyQuery) -> list[Mapping[str, str]]:
        """Study-level C-FIND from the index (the listener applies DICOM matching)."""
        from protonpath.imaging import selectors

        close_old_connections()
        token = set_context(AuditContext(via="dicom"))
        try:
            records = selectors.study_find_records(query.filters)
            audit.record(
                actor=None,
                action=AuditEvent.Action.VIEW,
                object_type="imaging.study",
                summary=f"C-FIND from AE {query.calling_ae_title}: {len(records)} candidate(s)",
            )
        finally:
            reset_context(token)
        return records


def _ip(address: str) -> str | None:
    import ipaddress

    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def build_listener(
    *, host: str | None = None, port: int | None = None, ae_title: str | None = None, incoming_dir: Path | None = None
) -> DicomListener:
    """The DICOM listener of the settings (DICOM_AE_TITLE, DICOM_PORT, DICOM_BIND_ADDRESS), filing
    what it receives into the index. ``DICOM_ALLOWED_CALLING_AE_TITLES`` (optional, a list)
    restricts which peers may associate; the network limits come from the settings named in
    :data:`protonpath.imaging.network.SETTINGS`."""
    from django.conf import settings

    from protonpath.imaging.network import listener_limits_from_settings

    receiver = NetworkReceiver()
    allowed = getattr(settings, "DICOM_ALLOWED_CALLING_AE_TITLES", None)
    listener_settings = ListenerSettings(
        incoming_dir=Path(incoming_dir or getattr(settings, "DICOM_INCOMING_DIR", settings.VAR_DIR / "dicom-incoming")),
        ae_title=ae_title or settings.DICOM_AE_TITLE,
        host=host if host is not None else settings.DICOM_BIND_ADDRESS,
        port=port if port is not None else settings.DICOM_PORT,
        allowed_calling_ae_titles=frozenset(allowed) if allowed else None,
        **listener_limits_from_settings(),
    )
    return DicomListener(
        listener_settings,
        on_instance=receiver.on_instance,
        find_studies=receiver.find_studies,
        on_association_end=receiver.on_association_end,
    )
