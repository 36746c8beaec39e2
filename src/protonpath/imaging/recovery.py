"""What a DICOM listener killed mid-work leaves behind, put right when the next one starts.

The listener keeps a journal in ``incoming/<association>/``: empty ``<n>.slot`` files made in
advance (their names synced with their folder), each then written with one received instance,
a Part 10 file whose meta information carries a seal (the data set's length and digest), and
synced before the instance is acknowledged. Its index writer then moves the file into the
storage and writes the rows in one transaction (see
:class:`protonpath.imaging.ingest.NetworkReceiver`). A process killed at any point of that
leaves one of:

* slots never written (empty, or all zeros when taken from the journal's reserve): removed;
  the reserve itself (``incoming/.reserve/``, files of zeros made while the listener was idle,
  see :mod:`protonpath.imaging.reserve`) is left to the next listener, which keeps its whole
  files;
* slots written in part, or whose bytes do not match their seal (an instance not yet received
  whole, never acknowledged), and the ``.part`` files of listeners from before the slots:
  removed;
* whole sealed slots, and the ``<SOP Instance UID>.dcm`` files of listeners from before the
  slots (acknowledged or not, not yet indexed, or indexed but not yet removed): each goes
  through the listener's normal checks and routing (a reserve slot's zeros past the sealed
  data set, left when the listener died between the instance's flush and their cut, are cut
  first), and is indexed under its association's
  transfer, recognised as a duplicate and removed, or refused and removed;
* files in the storage with no index row (moved, then the transaction never committed): those
  the listener wrote (its implementation version name in the file meta) are indexed the same
  way, or removed when the index already holds their instance; files from elsewhere (a web
  upload rolled back by a crash) are removed once older than a grace period, so that an upload
  under way in the web process at that moment is never touched;
* empty ``incoming/<association>/`` folders: removed.

:func:`reconcile_leftovers` does all of it before the listener accepts associations, and writes
one audit line with the counts (nothing personal). It assumes one listener per database and
incoming folder, as :func:`protonpath.imaging.services.close_interrupted_transfers` does, and
runs before it, so that the transfers it completes are then closed with their full counts.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent
from protonpath.imaging.models import Instance, ReceivedVia, Study, Transfer
from protonpath.imaging.reserve import RESERVE_DIR
from protonpath.imaging.scp import (
    DUPLICATE,
    IMPLEMENTATION_VERSION_NAME,
    PARTIAL_DIR,
    SLOT_SUFFIX,
    InstanceRefused,
    ReceivedInstance,
    journal_entry_digest,
    journal_entry_length,
)

logger = logging.getLogger(__name__)

#: Files in the storage without an index row, not written by the listener, are removed only once
#: this old (a web upload keeps its files unindexed until its transaction commits).
ORPHAN_GRACE_S = 24 * 3600.0
STORAGE_PREFIX = "imaging"


@dataclass(frozen=True)
class Reconciliation:
    """What :func:`reconcile_leftovers` found and did (counts only)."""

    indexed: int = 0
    duplicates: int = 0
    refused: int = 0
    failed: int = 0
    partial_removed: int = 0
    folders_removed: int = 0
    orphans_indexed: int = 0
    orphans_removed: int = 0
    orphans_left: int = 0

    @property
    def anything(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self) if f.name != "orphans_left")

    def __str__(self) -> str:
        return (
            f"{self.indexed} file(s) left in the incoming folder indexed, {self.duplicates} already indexed and "
            f"{self.refused} refused (removed), {self.failed} left for the next start; {self.partial_removed} "
            f"partial file(s) and {self.folders_removed} empty folder(s) removed; files in the storage without "
            f"an index entry: {self.orphans_indexed} indexed, {self.orphans_removed} removed, {self.orphans_left} "
            "too recent to judge"
        )


class _Counts:
    def __init__(self) -> None:
        self.values = {f.name: 0 for f in fields(Reconciliation)}

    def add(self, name: str, count: int = 1) -> None:
        self.values[name] += count


def _meta(path: Path) -> dict[str, str] | None:
    """The file meta the listener wrote (None if the file is not a readable Part 10 file)."""
    from pydicom.filereader import read_file_meta_info

    try:
        meta = read_file_meta_info(path)
    except Exception:  # anything unreadable is simply not one of the listener's files
        return None
    return {
        "sop_class_uid": str(meta.get("MediaStorageSOPClassUID", "") or ""),
        "sop_instance_uid": str(meta.get("MediaStorageSOPInstanceUID", "") or ""),
        "transfer_syntax_uid": str(meta.get("TransferSyntaxUID", "") or ""),
        "source_ae_title": str(meta.get("SourceApplicationEntityTitle", "") or "").strip(),
        "implementation_version_name": str(meta.get("ImplementationVersionName", "") or "").strip(),
    }


def _received(
    path: Path, meta: dict[str, str], transfer: Transfer | None, association_id: str, dataset_digest: str = ""
) -> ReceivedInstance:
    return ReceivedInstance(
        path=path,
        sop_class_uid=meta["sop_class_uid"],
        sop_instance_uid=meta["sop_instance_uid"] or path.stem,
        transfer_syntax_uid=meta["transfer_syntax_uid"],
        calling_ae_title=(transfer.calling_ae_title if transfer else "") or meta["source_ae_title"],
        called_ae_title=settings.DICOM_AE_TITLE,
        peer_address=transfer.peer_address if transfer else "",
        peer_port=0,
        association_id=association_id,
        dataset_digest=dataset_digest,
    )


def _offer(receiver, received: ReceivedInstance, counts: _Counts, *, orphan: bool) -> None:
    """Put one left-over file through the listener's sink; remove it unless it was indexed."""
    try:
        outcome = receiver.on_instance(received)
    except InstanceRefused:
        received.path.unlink(missing_ok=True)
        counts.add("orphans_removed" if orphan else "refused")
        return
    except Exception:
        logger.exception("a file left by an earlier listener could not be indexed; it stays for the next start")
        counts.add("failed")
        return
    if outcome == DUPLICATE:
        received.path.unlink(missing_ok=True)
        counts.add("orphans_removed" if orphan else "duplicates")
    else:
        counts.add("orphans_indexed" if orphan else "indexed")


def reconcile_leftovers(incoming_dir: Path | None = None, *, orphan_grace_s: float = ORPHAN_GRACE_S) -> Reconciliation:
    """Index or remove what an earlier listener left behind (see the module's description).

    Call it when the listener starts, before it accepts associations and before
    :func:`~protonpath.imaging.services.close_interrupted_transfers`.
    """
    from protonpath.imaging import services
    from protonpath.imaging.ingest import NetworkReceiver

    incoming = Path(incoming_dir or getattr(settings, "DICOM_INCOMING_DIR", settings.VAR_DIR / "dicom-incoming"))
    counts = _Counts()
    receiver = NetworkReceiver()  # synchronous: each file indexed in its own transaction
    token = audit.set_context(audit.AuditContext(via="dicom"))
    try:
        touched_transfers: set[int] = set()
        if incoming.is_dir():
            for part in incoming.rglob("*.part"):
                part.unlink(missing_ok=True)
                counts.add("partial_removed")
            try:
                (incoming / PARTIAL_DIR).rmdir()  # an earlier listener's, now empty
            except OSError:
                pass
            for folder in sorted(
                p for p in incoming.iterdir() if p.is_dir() and p.name not in (PARTIAL_DIR, RESERVE_DIR)
            ):
                transfer = (
                    Transfer.objects.filter(via=ReceivedVia.DICOM, association_id=folder.name).order_by("pk").first()
                )
                if transfer is not None:
                    receiver.adopt(folder.name, transfer)
                for path in sorted(folder.glob("*" + SLOT_SUFFIX)):
                    _recover_slot(receiver, path, transfer, folder.name, counts)
                for path in sorted(folder.glob("*.dcm")):  # renamed into place whole (older listeners)
                    meta = _meta(path)
                    if meta is None:
                        path.unlink(missing_ok=True)
                        counts.add("refused")
                        continue
                    _offer(receiver, _received(path, meta, transfer, folder.name), counts, orphan=False)
                touched_transfers |= set(receiver.transfer_ids())
                if not any(folder.iterdir()):
                    folder.rmdir()
                    counts.add("folders_removed")
        _reconcile_storage(receiver, counts, orphan_grace_s)
        touched_transfers |= set(receiver.transfer_ids())
        result = Reconciliation(**counts.values)
        if touched_transfers:
            _after(touched_transfers, services)
        if result.anything:
            audit.record(actor=None, action=AuditEvent.Action.UPDATE, object_type="imaging.transfer",
                         summary=f"DICOM listener start-up: {result}"[:300])
            logger.info("DICOM listener start-up: %s", result)
    finally:
        audit.reset_context(token)
    return result


def _recover_slot(receiver, path: Path, transfer: Transfer | None, association_id: str, counts: _Counts) -> None:
    """One journal slot: never written (removed), written in part or not matching its seal
    (removed, as a partial file: it was never acknowledged), or whole (offered to the sink)."""
    try:
        data = path.read_bytes()
    except OSError:
        counts.add("failed")
        return
    if not data or data.count(0) == len(data):  # never written (a reserve slot is zeros)
        path.unlink(missing_ok=True)
        return
    length = journal_entry_length(data)
    if length is not None and len(data) > length and data.count(0, length) == len(data) - length:
        try:  # a reserve slot's zeros, left uncut
            os.truncate(path, length)
        except OSError:
            counts.add("failed")
            return
        data = data[:length]
    digest = journal_entry_digest(data)
    meta = _meta(path) if digest is not None else None
    if digest is None or meta is None:
        path.unlink(missing_ok=True)
        counts.add("partial_removed")
        return
    _offer(receiver, _received(path, meta, transfer, association_id, digest), counts, orphan=False)


def _after(transfer_ids: set[int], services) -> None:
    """Transfers that reconciliation completed: those already closed get their requests
    re-checked now (open ones are closed, and their requests re-checked, by
    close_interrupted_transfers)."""
    from protonpath.referrals.models import TreatmentRequest

    closed = Transfer.objects.filter(pk__in=transfer_ids).exclude(outcome=Transfer.Outcome.IN_PROGRESS)
    requests = set(
        Study.objects.filter(series__instances__transfer__in=closed, treatment_request__isnull=False)
        .values_list("treatment_request_id", flat=True)
    )
    for treatment_request in TreatmentRequest.objects.filter(pk__in=requests).select_related("patient"):
        services.refresh_check_report(treatment_request)


def _storage_files() -> list[str]:
    """Names of the files under the storage's ``imaging/`` folder (file-system storages only)."""
    try:
        root = Path(default_storage.path(STORAGE_PREFIX))
    except NotImplementedError:
        return []
    base = Path(default_storage.location)
    names = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            names.append((Path(folder) / name).relative_to(base).as_posix())
    return names


def _reconcile_storage(receiver, counts: _Counts, grace_s: float) -> None:
    names = _storage_files()
    if not names:
        return
    known = set(Instance.objects.values_list("file", flat=True))
    now = time.time()
    for name in names:
        if name in known:
            continue
        path = Path(default_storage.path(name))
        meta = _meta(path)
        if meta is not None and meta["implementation_version_name"] == IMPLEMENTATION_VERSION_NAME:
            if Instance.objects.filter(sop_instance_uid=meta["sop_instance_uid"]).exists():
                path.unlink(missing_ok=True)
                counts.add("orphans_removed")
            else:
                _offer(receiver, _received(path, meta, None, "recovered"), counts, orphan=True)
            continue
        try:
            old = now - path.stat().st_mtime > grace_s
        except OSError:
            continue
        if old:
            path.unlink(missing_ok=True)
            counts.add("orphans_removed")
        else:
            counts.add("orphans_left")
