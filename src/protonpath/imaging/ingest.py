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

import gc
import io
import logging
import math
import os
import queue
import re
import sys
import threading
import time
import uuid
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
from django.db.models.functions import Greatest, Replace, Upper
from django.utils import timezone

from protonpath.accounts import audit
from protonpath.accounts.audit import AuditContext, reset_context, set_context
from protonpath.accounts.models import AuditEvent
from protonpath.imaging import checks, digests
from protonpath.imaging.files import DicomFile, FileRejected, classify_file
from protonpath.imaging.models import Instance, ReceivedVia, Series, Study, Transfer, instance_path
from protonpath.imaging.scp import (
    DUPLICATE,
    STATUS_CANNOT_UNDERSTAND,
    AssociationSummary,
    DicomListener,
    InstanceRefused,
    ListenerSettings,
    ReceivedInstance,
    StudyQuery,
    fsync_directory,
)
from protonpath.referrals.models import TreatmentRequest

logger = logging.getLogger(__name__)

_ACCESSION = re.compile(r"^([A-Z]+)(\d{4})(\d+)$")
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


class InstanceConflict(Exception):
    """The instance cannot be kept: same SOP Instance UID as one already filed elsewhere or with
    different content. The message is for staff and names no patient; ``comment`` is the short
    Error Comment a DICOM peer gets."""

    def __init__(self, message: str, comment: str = ""):
        super().__init__(message)
        self.comment = comment or message[:64]


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
    """The digest text (:mod:`.digests`) of the encoded dataset only: every sender writes its
    own file meta header."""
    return digests.of(memoryview(data)[dataset_offset(data) :])


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
    # checks.slice_normal's arithmetic, in plain floats: numpy costs more than the sum for three
    # numbers, and this runs for every instance received.
    r0, r1, r2, c0, c1, c2 = (float(v) for v in header.image_orientation)
    normal = (r1 * c2 - r2 * c1, r2 * c0 - r0 * c2, r0 * c1 - r1 * c0)
    norm = math.sqrt(normal[0] * normal[0] + normal[1] * normal[1] + normal[2] * normal[2])
    if norm < 1e-6:
        return None
    return float(sum(p * (n / norm) for p, n in zip(header.image_position_mm, normal, strict=True)))


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
        _check_same(existing, data, dicom_file, treatment_request)
        return Stored(study=existing.series.study, instance=None, duplicate=True)
    study = _study_for(header, treatment_request, inbox_reason, actor)
    series = _series_for(study, header)
    instance = _new_instance(
        dicom_file, data, series, via=via, calling_ae_title=calling_ae_title, dataset_digest=digest,
        transfer=transfer,
    )
    instance.file.save("instance.dcm", ContentFile(data), save=False)
    try:
        instance.save()
    except BaseException:
        default_storage.delete(instance.file.name)
        raise
    Series.objects.filter(pk=series.pk).update(instance_count=F("instance_count") + 1)
    return Stored(study=study, instance=instance, duplicate=False, saved_names=(instance.file.name,))


def _new_instance(
    dicom_file: DicomFile, data: bytes, series: Series, *, via: str, calling_ae_title: str,
    dataset_digest: str, **links,
) -> Instance:
    """The index row of a checked instance (not saved): what both ways in record of it.
    ``links``: its transfer (``transfer`` or ``transfer_id``) and, when already stored, ``file``."""
    header = dicom_file.header
    return Instance(
        series=series,
        sop_instance_uid=header.sop_instance_uid,
        sop_class_uid=header.sop_class_uid[:64],
        instance_number=header.instance_number,
        slice_position_mm=_slice_position(header),
        size_bytes=len(data),
        file_digest=digests.of(data),
        dataset_digest=dataset_digest,
        transfer_syntax_uid=dicom_file.transfer_syntax_uid[:64],
        received_via=via,
        calling_ae_title=calling_ae_title[:16],
        header=header.to_dict(),
        **links,
    )


def delete_saved(names: Iterable[str]) -> None:
    """Remove files saved by a transaction that was rolled back."""
    for name in names:
        default_storage.delete(name)


# --- the network side ---------------------------------------------------------------------------

#: Error Comments (0000,0902) of the C-STORE responses that refuse an instance: fixed sentences,
#: since peers write them in their own logs.
COMMENT_UNREADABLE = "not a readable DICOM instance"
COMMENT_OTHER_REQUEST = "SOP Instance UID already received for another request"
COMMENT_OTHER_CONTENT = "SOP Instance UID already received with other content"
COMMENT_OTHER_CLASS = "SOP Instance UID already received with another SOP Class"
COMMENT_SOP_MISMATCH = "UIDs of the data set differ from the C-STORE request"


@dataclass
class _Touched:
    transfer_id: int
    association_id: str
    studies: dict[int, int] = field(default_factory=dict)  # study pk -> instances stored
    routes: dict[tuple[str, ...], tuple[TreatmentRequest | None, InboxReason | None]] = field(default_factory=dict)
    # study key (request pk, study UID) -> Study, series key (study pk, series UID) -> Series
    study_rows: dict[tuple[int | None, str], Study] = field(default_factory=dict)
    series_rows: dict[tuple[int, str], Series] = field(default_factory=dict)
    folder: Path | None = None  # where the listener writes this association's files
    pending: int = 0  # accepted, not yet committed


_HURRY = "commit now"


@dataclass
class _Accepted:
    """An instance acknowledged to the peer, waiting in the journal (the incoming folder) for its
    batch to be committed to the index."""

    received: ReceivedInstance
    dicom_file: DicomFile
    data: bytes
    treatment_request: TreatmentRequest | None
    reason: InboxReason | None
    touched: _Touched
    accepted_at: datetime = field(default_factory=timezone.now)  # the index row's received_at


class NetworkReceiver:
    """The storage sink, association hook and C-FIND finder of the DICOM listener.

    An instance is checked before it is acknowledged: readable and complete
    (:func:`~protonpath.imaging.files.classify_file`), routed, and compared with what the index
    already holds under its SOP Instance UID (a duplicate is acknowledged and dropped; the same
    UID for other content, another SOP Class or another request is refused with a status and an
    Error Comment). Its file is then already whole in the incoming folder, in a sealed journal
    slot the listener wrote (and synced, with ``fsync``): the acknowledgement is sent at once, and a
    writer thread commits the accepted instances to the index in batches (files moved into the
    storage, rows written, counters updated), so that the peer's next instance arrives while the
    last one is being indexed. Nothing acknowledged can be lost: a batch that fails leaves its
    files in the journal, and a listener killed before a batch commits leaves them there too, for
    :func:`protonpath.imaging.recovery.reconcile_leftovers` to index when the listener starts
    again. When the peer releases the association, its instances are committed before the
    release is answered; when an association ends, however it ends, they are committed before
    the transfer is closed and the request's check report computed (once per association).
    """

    def __init__(
        self, *, batched: bool = False, batch_size: int = 200, linger_s: float = 0.05, fsync: bool = False
    ) -> None:
        """``batched``: acknowledge at once and index in the writer thread (the listener's way);
        otherwise each instance is indexed in its own transaction before ``on_instance`` returns
        (for callers in a transaction of their own, and for tests). ``fsync``: the listener
        syncs the journal (:attr:`~protonpath.imaging.scp.ListenerSettings.fsync`), so the
        writer syncs the storage folders it renames files into before it commits their rows."""
        self._batched = batched
        self._fsync = fsync
        self._folders: set[Path] = set()  # storage folders known to exist
        self._lock = threading.Lock()
        self._committed = threading.Condition(self._lock)
        self._touched: dict[str, _Touched] = {}
        self._pending_uids: set[str] = set()
        self._queue: queue.Queue[_Accepted | str | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._batch_size = batch_size
        self._linger_s = linger_s

    # --- per association ----------------------------------------------------------------------

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
            touched = _Touched(transfer.pk, received.association_id)
            with self._lock:
                self._touched[received.association_id] = touched
        return touched

    def adopt(self, association_id: str, transfer: Transfer) -> None:
        """File what comes for ``association_id`` under an existing transfer (files left by an
        earlier listener, see :mod:`protonpath.imaging.recovery`)."""
        with self._lock:
            self._touched.setdefault(association_id, _Touched(transfer.pk, association_id))

    def transfer_ids(self) -> list[int]:
        """The transfers of the associations this receiver has seen and not yet closed."""
        with self._lock:
            return [t.transfer_id for t in self._touched.values()]

    def on_instance(self, received: ReceivedInstance) -> str | None:
        """Check one received instance and accept it (None) or recognise a duplicate
        (:data:`~protonpath.imaging.scp.DUPLICATE`); raise :class:`InstanceRefused` to refuse it."""
        token = set_context(AuditContext(ip_address=_ip(received.peer_address), via="dicom"))
        try:
            return self._accept(received)
        finally:
            reset_context(token)

    def _refuse(self, touched: _Touched, reason: str, status: int, comment: str) -> InstanceRefused:
        # Counted at once: an association refused whole still says so in its transfer record.
        Transfer.objects.filter(pk=touched.transfer_id).update(refused=F("refused") + 1)
        return InstanceRefused(reason, status, comment)

    def _accept(self, received: ReceivedInstance) -> str | None:
        touched = self._transfer_for(received)
        touched.folder = received.path.parent
        data = received.data if received.data is not None else received.path.read_bytes()
        try:
            dicom_file = classify_file(
                received.path, name=received.sop_instance_uid, data=data, file_digest=False, quick=True
            )
        except FileRejected as error:
            # The reason names elements and offsets only; kept short for the log.
            raise self._refuse(touched, str(error)[:200], STATUS_CANNOT_UNDERSTAND, COMMENT_UNREADABLE) from error
        if dicom_file is None:
            raise self._refuse(touched, "a DICOMDIR is not an instance", STATUS_CANNOT_UNDERSTAND, COMMENT_UNREADABLE)
        header = dicom_file.header
        if header.sop_instance_uid != received.sop_instance_uid:
            raise self._refuse(touched, "the data set's SOP Instance UID is not the request's",
                               STATUS_CANNOT_UNDERSTAND, COMMENT_SOP_MISMATCH)
        key = (header.accession_number, header.patient_name, header.patient_birth_date, header.patient_id)
        routed = touched.routes.get(key)
        if routed is None:
            routed = touched.routes[key] = route(header)
        treatment_request, reason = routed
        uid = header.sop_instance_uid
        with self._lock:
            while uid in self._pending_uids:  # the same instance, accepted a moment ago
                self._committed.wait(1.0)
        try:
            duplicate = self._known(dicom_file, data, treatment_request)
        except InstanceConflict as conflict:
            raise self._refuse(touched, str(conflict), STATUS_CANNOT_UNDERSTAND, conflict.comment) from conflict
        if duplicate:
            received.path.unlink(missing_ok=True)
            # Counted at once, as refusals: the record is right when the peer hears back.
            Transfer.objects.filter(pk=touched.transfer_id).update(duplicates=F("duplicates") + 1)
            return DUPLICATE
        if received.wait_durable is not None:
            received.wait_durable()  # the file on disk before anything names it
        accepted = _Accepted(received, dicom_file, data, treatment_request, reason, touched)
        if not self._batched:
            self._commit([accepted])
            return None
        with self._lock:
            self._pending_uids.add(uid)
            touched.pending += 1
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write_batches, name="dicom-index-writer", daemon=True)
                self._writer.start()
        self._queue.put(accepted)
        return None

    def _known(self, dicom_file: DicomFile, data: bytes, treatment_request: TreatmentRequest | None) -> bool:
        """True if the index holds this instance already, for the same request and content;
        InstanceConflict if it holds the UID for something else."""
        uid = dicom_file.header.sop_instance_uid
        with connection.cursor() as cursor:  # the usual case, so the cheapest query: not there
            cursor.execute(f"SELECT 1 FROM {Instance._meta.db_table} WHERE sop_instance_uid = %s", [uid])
            if cursor.fetchone() is None:
                return False
        existing = Instance.objects.filter(sop_instance_uid=uid).select_related("series__study").first()
        if existing is None:
            return False
        _check_same(existing, data, dicom_file, treatment_request)
        return True

    # --- the writer ---------------------------------------------------------------------------

    def _write_batches(self) -> None:
        # Each batch waits up to linger_s for more instances (one transaction for several), unless
        # someone waits for it (a release, the end of an association): flush() queues _HURRY.
        while True:
            first = self._queue.get()
            if first is None:
                return
            if first == _HURRY:
                continue
            batch = [first]
            deadline = time.monotonic() + self._linger_s
            stop = False
            while len(batch) < self._batch_size:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                if item == _HURRY:
                    break
                batch.append(item)
            # The writer keeps its database connection from batch to batch (close_old_connections
            # would close it every time without CONN_MAX_AGE), and drops it after an error.
            token = set_context(AuditContext(via="dicom"))
            try:
                self._commit(batch)
            except Exception:
                logger.exception("the DICOM index writer failed; the files stay in the incoming folder")
                connection.close()
            finally:
                reset_context(token)
                with self._lock:
                    for item in batch:
                        self._pending_uids.discard(item.dicom_file.header.sop_instance_uid)
                        item.touched.pending -= 1
                    self._committed.notify_all()
            if stop:
                return

    def _commit(self, batch: list[_Accepted]) -> None:
        try:
            self._commit_batch(batch)
        except Exception:
            # One of them cannot go in as a batch (the index changed under it): one by one.
            logger.warning("a batch of %d instance(s) could not be indexed whole; indexing them one by one",
                           len(batch))
            for item in batch:
                self._commit_one(item)

    def _commit_batch(self, batch: list[_Accepted]) -> None:
        moved: list[tuple[Path, Path]] = []
        copied: list[str] = []
        try:
            with transaction.atomic():
                rows = []
                per_series: dict[int, int] = {}
                per_transfer: dict[int, int] = {}
                renames: dict[Path, bool] = {}  # journal folder -> whether its files can be renamed
                # One storage folder for the whole batch (random, as instance_path draws it),
                # so that with fsync it is one folder sync per batch, not one per instance.
                folder_name = instance_path(None, "instance.dcm").rsplit("/", 1)[0]
                for item in batch:
                    study, series = self._rows_for(item)
                    name = f"{folder_name}/{uuid.uuid4().hex}.dcm"
                    folder = item.received.path.parent
                    if folder not in renames:  # asked once per batch, not once per instance
                        renames[folder] = _storage_on_device_of(folder)
                    if not renames[folder]:  # a remote storage, or another file system: a copy
                        name = default_storage.save(name, ContentFile(item.data))
                        copied.append(name)
                    else:
                        target = Path(default_storage.path(name))
                        if target.parent not in self._folders:  # one system call less per instance
                            target.parent.mkdir(parents=True, exist_ok=True)
                            self._folders.add(target.parent)
                        os.replace(item.received.path, target)
                        moved.append((item.received.path, target))
                    rows.append(_instance_row(item, series, name))
                    per_series[series.pk] = per_series.get(series.pk, 0) + 1
                    per_transfer[item.touched.transfer_id] = per_transfer.get(item.touched.transfer_id, 0) + 1
                if self._fsync:
                    # The renames must be on disk before the rows naming them are: each storage
                    # folder once per batch (the files' contents were synced in the journal).
                    for folder in {target.parent for _, target in moved}:
                        fsync_directory(folder)
                _insert_instances(rows)
                for series_pk, count in per_series.items():
                    Series.objects.filter(pk=series_pk).update(instance_count=F("instance_count") + count)
                for transfer_pk, count in per_transfer.items():
                    Transfer.objects.filter(pk=transfer_pk).update(stored=F("stored") + count)
        except BaseException:
            for source, target in reversed(moved):  # back into the journal
                try:
                    os.replace(target, source)
                except OSError:
                    logger.exception("an indexed file could not be put back into the incoming folder")
            delete_saved(copied)
            for item in batch:  # rows cached in this transaction may not exist
                item.touched.study_rows.clear()
                item.touched.series_rows.clear()
            raise
        for item in batch:
            item.received.path.unlink(missing_ok=True)  # copied ones: the journal's file is done with
        with self._lock:
            for item in batch:
                studies = item.touched.studies
                studies[_study_pk(item)] = studies.get(_study_pk(item), 0) + 1

    def _rows_for(self, item: _Accepted) -> tuple[Study, Series]:
        header = item.dicom_file.header
        touched = item.touched
        request_pk = item.treatment_request.pk if item.treatment_request else None
        study = touched.study_rows.get((request_pk, header.study_instance_uid))
        if study is None:
            study = _study_for(header, item.treatment_request, item.reason or "", None)
            touched.study_rows[(request_pk, header.study_instance_uid)] = study
        series = touched.series_rows.get((study.pk, header.series_instance_uid))
        if series is None:
            series = _series_for(study, header)
            touched.series_rows[(study.pk, header.series_instance_uid)] = series
        item.study_pk = study.pk  # type: ignore[attr-defined]
        return study, series

    def _commit_one(self, item: _Accepted) -> None:
        """Index one instance through the general path (duplicate and conflict checks included)."""
        touched = item.touched
        try:
            with transaction.atomic():
                result = store_instance(
                    item.dicom_file,
                    treatment_request=item.treatment_request,
                    via=ReceivedVia.DICOM,
                    transfer=Transfer(pk=touched.transfer_id),
                    calling_ae_title=item.received.calling_ae_title,
                    inbox_reason=item.reason,
                )
                counter = "duplicates" if result.duplicate else "stored"
                Transfer.objects.filter(pk=touched.transfer_id).update(**{counter: F(counter) + 1})
        except InstanceConflict as conflict:
            # Acknowledged, then found to clash with something indexed meanwhile (an upload of
            # the same UID): kept out of the index, said in the trail.
            Transfer.objects.filter(pk=touched.transfer_id).update(refused=F("refused") + 1)
            audit.record(actor=None, action=AuditEvent.Action.UPDATE, object_type="imaging.transfer",
                         object_id=str(touched.transfer_id),
                         summary=f"an instance received over DICOM was not indexed: {conflict}"[:300])
            item.received.path.unlink(missing_ok=True)
            return
        except Exception:
            logger.exception("an instance could not be indexed; its file stays in the incoming folder")
            return
        item.received.path.unlink(missing_ok=True)
        if not result.duplicate:
            with self._lock:
                touched.studies[result.study.pk] = touched.studies.get(result.study.pk, 0) + 1

    def flush(self, association_id: str | None = None, timeout_s: float = 60.0) -> bool:
        """Wait until the instances accepted (for one association, or all) are committed."""
        deadline = time.monotonic() + timeout_s
        if self._writer is not None and self._writer.is_alive():
            self._queue.put(_HURRY)
        with self._lock:
            while True:
                if association_id is None:
                    busy = bool(self._pending_uids)
                else:
                    touched = self._touched.get(association_id)
                    busy = touched is not None and touched.pending > 0
                if not busy:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._committed.wait(remaining)

    def close(self, timeout_s: float = 60.0) -> None:
        """Commit what is accepted and stop the writer thread."""
        self.flush(timeout_s=timeout_s)
        writer = self._writer
        if writer is not None and writer.is_alive():
            self._queue.put(None)
            writer.join(timeout_s)

    # --- end of association -------------------------------------------------------------------

    def on_association_end(self, summary: AssociationSummary) -> None:
        """Commit the association's instances, close its transfer, audit what it brought and
        re-check the requests concerned."""
        from protonpath.imaging import services

        self.flush(summary.association_id)
        with self._lock:
            touched = self._touched.pop(summary.association_id, None)
        if touched is not None and touched.folder is not None:
            try:
                touched.folder.rmdir()  # empty once everything is indexed or refused
            except OSError:
                pass  # not empty: files the writer could not index, for the next start
        token = set_context(AuditContext(ip_address=_ip(summary.peer_address), via="dicom"))
        try:
            if touched is None:
                if summary.refused:  # refused before the sink saw them (bad UIDs, disk full)
                    transfer = Transfer.objects.create(
                        via=ReceivedVia.DICOM, calling_ae_title=summary.calling_ae_title[:16],
                        peer_address=summary.peer_address[:64], association_id=summary.association_id,
                        refused=summary.refused,
                        outcome=Transfer.Outcome.COMPLETE if summary.outcome == "released" else Transfer.Outcome.ABORTED,
                        ended_at=timezone.now(),
                    )
                    audit.record(actor=None, action=AuditEvent.Action.CREATE, obj=transfer,
                                 summary=f"DICOM transfer from AE {summary.calling_ae_title}: "
                                 f"{summary.refused} instance(s) refused ({summary.outcome})"[:300])
                return
            outcome = Transfer.Outcome.COMPLETE if summary.outcome == "released" else Transfer.Outcome.ABORTED
            Transfer.objects.filter(pk=touched.transfer_id).update(
                outcome=outcome, ended_at=timezone.now(),
                # the listener's count also has the instances it refused before the sink saw them
                refused=Greatest(F("refused"), summary.refused),
            )
            transfer = Transfer.objects.get(pk=touched.transfer_id)
            if transfer.refused and not touched.studies:
                audit.record(actor=None, action=AuditEvent.Action.CREATE, obj=transfer,
                             summary=f"DICOM transfer from AE {summary.calling_ae_title}: {transfer.refused} "
                             f"instance(s) refused, {transfer.duplicates} duplicate(s) ({summary.outcome})"[:300])
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


def _storage_on_device_of(folder: Path) -> bool:
    """Whether the storage is a file system on the same device as ``folder``, so that files
    can be renamed from one into the other."""
    try:
        default_storage.path("imaging")
    except NotImplementedError:
        return False
    root = Path(default_storage.location)
    root.mkdir(parents=True, exist_ok=True)
    try:
        return root.stat().st_dev == folder.stat().st_dev
    except OSError:
        return False


def _study_pk(item: _Accepted) -> int:
    return item.study_pk  # type: ignore[attr-defined]


def _check_same(existing: Instance, data: bytes, dicom_file: DicomFile, treatment_request: TreatmentRequest | None) -> None:
    """Raise InstanceConflict unless ``existing`` is this instance, filed where it would go."""
    where = existing.series.study.treatment_request_id
    if where != (treatment_request.pk if treatment_request else None):
        raise InstanceConflict(
            "this instance was already received for another request"
            if where is not None
            else "this instance was already received and waits in the staff inbox",
            COMMENT_OTHER_REQUEST,
        )
    if existing.sop_class_uid != dicom_file.header.sop_class_uid[:64]:
        raise InstanceConflict(
            "an instance with the same SOP Instance UID but another SOP Class was already received",
            COMMENT_OTHER_CLASS,
        )
    same_bytes = digests.matches(existing.dataset_digest, memoryview(data)[dataset_offset(data) :])
    if not same_bytes and not _same_content(existing, data):
        raise InstanceConflict(
            "an instance with the same SOP Instance UID but different content was already received",
            COMMENT_OTHER_CONTENT,
        )


def _insert_instances(rows: list[dict[str, Any]]) -> None:
    """INSERT the index rows of a batch in one statement, from plain column values (attribute
    name -> value, as :func:`_instance_row` gives them): no model objects, no query compiler.
    Only the fields whose database form differs from their Python value (dates, JSON) are
    prepared, by the fields themselves; fields a row lacks get their defaults. The primary keys
    are not read back: nothing uses them."""
    fields, prepared = _instance_columns()
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {connection.ops.quote_name(Instance._meta.db_table)} ({columns}) VALUES ({marks})"
    values = []
    for row in rows:
        line = []
        for f in fields:
            value = row[f.attname] if f.attname in row else f.get_default()
            line.append(f.get_db_prep_save(value, connection) if f.attname in prepared else value)
        values.append(line)
    with connection.cursor() as cursor:
        cursor.executemany(sql, values)


_COLUMNS: tuple[list[Any], frozenset[str]] | None = None


def _instance_columns() -> tuple[list[Any], frozenset[str]]:
    """Instance's columns but the primary key, and the attribute names of those whose values
    need the field's preparation for the database (everything but text, numbers and keys)."""
    global _COLUMNS
    if _COLUMNS is None:
        from django.db import models

        plain = (models.CharField, models.IntegerField, models.FloatField, models.ForeignKey, models.FileField)
        fields = [f for f in Instance._meta.concrete_fields if not f.primary_key]
        _COLUMNS = fields, frozenset(f.attname for f in fields if not isinstance(f, plain))
    return _COLUMNS


def _instance_row(item: _Accepted, series: Series, name: str) -> dict[str, Any]:
    """The column values of an accepted instance's index row (what :func:`_new_instance` gives,
    as plain values): the data set's digest is the one the listener sealed the file with, the
    file's the one it computed while the file was flushed to disk (when it did)."""
    header = item.dicom_file.header
    data = item.data
    return {
        "series_id": series.pk,
        "transfer_id": item.touched.transfer_id,
        "sop_instance_uid": header.sop_instance_uid,
        "sop_class_uid": header.sop_class_uid[:64],
        "instance_number": header.instance_number,
        "slice_position_mm": _slice_position(header),
        "file": name,
        "size_bytes": len(data),
        "file_digest": file_digest() if (file_digest := item.received.file_digest) else digests.of(data),
        "dataset_digest": item.received.dataset_digest or dataset_digest(data),
        "transfer_syntax_uid": item.dicom_file.transfer_syntax_uid[:64],
        "received_via": ReceivedVia.DICOM,
        "calling_ae_title": item.received.calling_ae_title[:16],
        "received_at": item.accepted_at,
        "header": header.to_dict(),
    }


def _ip(address: str) -> str | None:
    import ipaddress

    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


#: The interpreter's thread switch interval while a listener runs (see IngestListener.start).
SWITCH_INTERVAL_S = 0.0005
_FROZEN = False  # gc.freeze() done (once per process)


def build_listener(
    *, host: str | None = None, port: int | None = None, ae_title: str | None = None, incoming_dir: Path | None = None
) -> DicomListener:
    """The DICOM listener of the settings (DICOM_AE_TITLE, DICOM_PORT, DICOM_BIND_ADDRESS), filing
    what it receives into the index. ``DICOM_ALLOWED_CALLING_AE_TITLES`` (optional, a list)
    restricts which peers may associate; the network limits come from the settings named in
    :data:`protonpath.imaging.network.SETTINGS`."""
    from django.conf import settings

    from protonpath.imaging.network import listener_limits_from_settings

    allowed = getattr(settings, "DICOM_ALLOWED_CALLING_AE_TITLES", None)
    listener_settings = ListenerSettings(
        incoming_dir=Path(incoming_dir or getattr(settings, "DICOM_INCOMING_DIR", settings.VAR_DIR / "dicom-incoming")),
        ae_title=ae_title or settings.DICOM_AE_TITLE,
        host=host if host is not None else settings.DICOM_BIND_ADDRESS,
        port=port if port is not None else settings.DICOM_PORT,
        allowed_calling_ae_titles=frozenset(allowed) if allowed else None,
        **listener_limits_from_settings(),
    )
    receiver = NetworkReceiver(batched=True, fsync=listener_settings.fsync)
    return IngestListener(receiver, listener_settings)


class IngestListener(DicomListener):
    """The listener filing into the index through a :class:`NetworkReceiver` (``receiver``);
    stopping it commits what the receiver has accepted."""

    def __init__(self, receiver: NetworkReceiver, listener_settings: ListenerSettings):
        self.receiver = receiver
        super().__init__(
            listener_settings,
            on_instance=receiver.on_instance,
            find_studies=receiver.find_studies,
            on_association_end=receiver.on_association_end,
            before_release=receiver.flush,
        )

    def start(self) -> None:
        # Three threads share the interpreter while an instance is received: the association's
        # upper layer, its acceptor and the index writer. Python hands the interpreter over
        # every 5 ms by default, so the acceptor, ready to answer the peer, would often wait that
        # long for the writer's turn to end; a shorter interval lets it answer at once.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        # What is alive when the first listener starts (Django, the DICOM dictionaries,
        # pynetdicom's contexts) stays for the process's life: out of the collector's way, whose
        # full passes would scan it all again for the short-lived objects every instance makes.
        global _FROZEN
        if not _FROZEN:
            gc.freeze()
            _FROZEN = True
        super().start()

    def stop(self, grace_s: float | None = None, hurry=None) -> None:
        super().stop(grace_s, hurry)
        self.receiver.close()
