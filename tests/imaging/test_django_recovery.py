"""What a killed listener leaves behind is put right at the next start (issue 17, item 3): each
kind of leftover built here by hand, then :func:`reconcile_leftovers` run as the listener's
start-up runs it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pydicom
import pytest
from django.core.files.storage import default_storage

from protonpath.accounts.models import AuditEvent
from protonpath.imaging import services
from protonpath.imaging.ingest import NetworkReceiver, dataset_digest, dataset_offset
from protonpath.imaging.models import Instance, Transfer
from protonpath.imaging.recovery import Reconciliation, reconcile_leftovers
from protonpath.imaging.reserve import RESERVE_DIR
from protonpath.imaging.scp import (
    PARTIAL_DIR,
    SLOT_SUFFIX,
    ReceivedInstance,
    encode_file_header,
    journal_entry_digest,
    journal_seal,
)
from tests.imaging.conftest import PATIENT_BIRTH, PATIENT_NAME, stamp
from tests.imaging.dicomdata import write_ct_series

pytestmark = pytest.mark.django_db


def listener_file(source: Path, target: Path, calling_ae: str = "MODALITY") -> Path:
    """``source`` as the listener writes it: its own file meta, then the dataset's bytes."""
    ds = pydicom.dcmread(source)
    data = source.read_bytes()
    header = encode_file_header(
        sop_class_uid=str(ds.SOPClassUID), sop_instance_uid=str(ds.SOPInstanceUID),
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID), source_ae_title=calling_ae,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(header + data[dataset_offset(data):])
    return target


def slot_file(source: Path, target: Path, *, sealed: bool = True) -> tuple[Path, str]:
    """``source`` as the listener writes it into a journal slot: file meta with the seal of the
    data set's length and digest, then the data set. Returns the slot and the sealed digest."""
    ds = pydicom.dcmread(source)
    data = source.read_bytes()
    dataset = data[dataset_offset(data):]
    seal, digest = journal_seal(dataset)
    header = encode_file_header(
        sop_class_uid=str(ds.SOPClassUID), sop_instance_uid=str(ds.SOPInstanceUID),
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID), source_ae_title="MODALITY",
        seal=seal if sealed else None,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(header + dataset)
    return target, digest


def received(path: Path, association_id: str) -> ReceivedInstance:
    ds = pydicom.dcmread(path)
    return ReceivedInstance(
        path=path, sop_class_uid=str(ds.SOPClassUID), sop_instance_uid=str(ds.SOPInstanceUID),
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID), calling_ae_title="MODALITY",
        called_ae_title="PROTONPATH", peer_address="192.0.2.7", peer_port=104, association_id=association_id,
    )


def storage_files() -> set[str]:
    root = Path(default_storage.location)
    return {p.relative_to(root).as_posix() for p in (root / "imaging").rglob("*") if p.is_file()}


def test_every_kind_of_leftover_is_indexed_or_removed_with_one_audit_line(submitted, tmp_path):
    incoming = tmp_path / "incoming"
    paths = write_ct_series(tmp_path / "ct", 9, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber=submitted.accession_number)
    uids = [str(pydicom.dcmread(p).SOPInstanceUID) for p in paths]
    # Association a1: two instances indexed before the kill.
    receiver = NetworkReceiver()
    for index in (0, 1):
        receiver.on_instance(received(listener_file(paths[index], incoming / "a1" / f"{uids[index]}.dcm"), "a1"))
    transfer = Transfer.objects.get()
    assert (transfer.association_id, transfer.stored, transfer.outcome) == ("a1", 2, "in_progress")
    # ... then a file received whole but not indexed, and one indexed but not yet removed.
    listener_file(paths[2], incoming / "a1" / f"{uids[2]}.dcm")
    listener_file(paths[0], incoming / "a1" / f"{uids[0]}.dcm")
    # Association a2: killed before its transfer was recorded.
    listener_file(paths[3], incoming / "a2" / f"{uids[3]}.dcm")
    # Association a3: a file that is no usable instance (cut short).
    bad = listener_file(paths[4], incoming / "a3" / f"{uids[4]}.dcm")
    bad.write_bytes(bad.read_bytes()[:-1000])
    # A partial file, an empty association folder.
    (incoming / PARTIAL_DIR).mkdir()
    (incoming / PARTIAL_DIR / "0123abcd.part").write_bytes(b"\0" * 300)
    (incoming / "a4").mkdir()
    # In the storage: files the index writer moved before its transaction died...
    orphan_new = listener_file(paths[5], Path(default_storage.path("imaging/ab/orphan-new.dcm")))
    listener_file(paths[1], Path(default_storage.path("imaging/cd/orphan-known.dcm")))
    # ... and files of a web upload rolled back by a crash: one old, one that may be under way.
    old_upload = Path(default_storage.path("imaging/ef/old-upload.dcm"))
    old_upload.parent.mkdir(parents=True, exist_ok=True)
    old_upload.write_bytes(paths[6].read_bytes())
    os.utime(old_upload, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    recent_upload = Path(default_storage.path("imaging/ef/recent-upload.dcm"))
    recent_upload.write_bytes(paths[7].read_bytes())

    result = reconcile_leftovers(incoming)

    assert result == Reconciliation(
        indexed=2, duplicates=1, refused=1, failed=0, partial_removed=1, folders_removed=4,
        orphans_indexed=1, orphans_removed=2, orphans_left=1,
    )
    # Every instance indexed exactly once, a1's under its own transfer.
    assert sorted(Instance.objects.values_list("sop_instance_uid", flat=True)) == sorted(uids[:4] + [uids[5]])
    assert Instance.objects.filter(transfer=transfer).count() == 3
    # Nothing left in the incoming folder (the older listeners' partial folder neither).
    assert list(incoming.iterdir()) == []
    # In the storage: the indexed files, and the upload that may still be under way.
    indexed = set(Instance.objects.values_list("file", flat=True))
    assert storage_files() == indexed | {"imaging/ef/recent-upload.dcm"}
    assert not orphan_new.exists() and not old_upload.exists()
    # One audit line, counts only.
    line = AuditEvent.objects.get(summary__startswith="DICOM listener start-up:")
    assert line.via == "dicom" and "2 file(s) left in the incoming folder indexed" in line.summary
    assert "Idrissi" not in line.summary and all(uid not in line.summary for uid in uids)
    # Then the start-up closes a1 with its whole count, and the request's check sees them.
    services.close_interrupted_transfers()
    transfer.refresh_from_db()
    assert (transfer.outcome, transfer.stored) == ("aborted", 3)
    submitted.refresh_from_db()
    assert submitted.imaging_check.instance_count == 5  # the recovered orphan carries its accession too
    # A second start finds nothing to do and writes nothing.
    assert not reconcile_leftovers(incoming).anything
    assert AuditEvent.objects.filter(summary__startswith="DICOM listener start-up:").count() == 1


def test_a_file_left_for_a_closed_transfer_is_indexed_and_its_request_re_checked(submitted, tmp_path):
    incoming = tmp_path / "incoming"
    paths = write_ct_series(tmp_path / "ct", 2, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber=submitted.accession_number)
    receiver = NetworkReceiver()
    first = listener_file(paths[0], incoming / "b1" / "one.dcm")
    receiver.on_instance(received(first, "b1"))
    Transfer.objects.update(outcome=Transfer.Outcome.COMPLETE)
    services.refresh_check_report(submitted)
    listener_file(paths[1], incoming / "b1" / "two.dcm")

    result = reconcile_leftovers(incoming)

    assert (result.indexed, result.folders_removed) == (1, 1)
    assert Transfer.objects.get().stored == 2
    submitted.refresh_from_db()
    assert submitted.imaging_check.instance_count == 2


def test_journal_slots_whole_ones_are_indexed_and_cut_tampered_unsealed_or_empty_ones_removed(submitted, tmp_path):
    incoming = tmp_path / "incoming"
    paths = write_ct_series(tmp_path / "ct", 4, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber=submitted.accession_number)
    folder = incoming / "s1"
    whole, digest = slot_file(paths[0], folder / f"00000000{SLOT_SUFFIX}")
    cut, _ = slot_file(paths[1], folder / f"00000001{SLOT_SUFFIX}")  # killed while writing
    cut.write_bytes(cut.read_bytes()[:-1000])
    tampered, _ = slot_file(paths[2], folder / f"00000002{SLOT_SUFFIX}")  # its length, other bytes
    data = bytearray(tampered.read_bytes())
    data[-5] ^= 0xFF
    tampered.write_bytes(bytes(data))
    unsealed, _ = slot_file(paths[3], folder / f"00000003{SLOT_SUFFIX}", sealed=False)
    (folder / f"00000004{SLOT_SUFFIX}").write_bytes(b"")  # made, never written
    assert journal_entry_digest(whole.read_bytes()) == digest
    assert [journal_entry_digest(p.read_bytes()) for p in (cut, tampered, unsealed)] == [None] * 3

    result = reconcile_leftovers(incoming)

    assert (result.indexed, result.partial_removed, result.refused, result.folders_removed) == (1, 3, 0, 1)
    instance = Instance.objects.get()
    assert instance.sop_instance_uid == str(pydicom.dcmread(paths[0]).SOPInstanceUID)
    stored = Path(instance.file.path).read_bytes()
    assert instance.dataset_digest == digest == dataset_digest(stored)
    assert pydicom.dcmread(instance.file.path).PixelData == pydicom.dcmread(paths[0]).PixelData
    assert list(incoming.iterdir()) == []


def test_reserve_slots_are_cut_when_whole_removed_when_never_written_and_the_reserve_kept(submitted, tmp_path):
    """A listener that took its slots from the journal's reserve (files of zeros) and died
    between an instance's flush and the cut of the zeros past it, or before writing a slot
    taken: the first is indexed cut to its instance, the second removed as never written; the
    reserve's own files are the next listener's, left as they are."""
    incoming = tmp_path / "incoming"
    paths = write_ct_series(tmp_path / "ct", 2, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber=submitted.accession_number)
    folder = incoming / "s2"
    padded, digest = slot_file(paths[0], folder / f"00000000{SLOT_SUFFIX}")
    exact = padded.read_bytes()
    with open(padded, "ab") as f:
        f.write(bytes(64 * 1024))  # the reserve slot's zeros past the instance
    (folder / f"00000001{SLOT_SUFFIX}").write_bytes(bytes(64 * 1024))  # taken, never written
    partly, _ = slot_file(paths[1], folder / f"00000002{SLOT_SUFFIX}")  # data set in, header not yet
    data = bytearray(partly.read_bytes())
    data[:1024] = bytes(1024)
    partly.write_bytes(bytes(data) + bytes(4096))
    reserve = incoming / RESERVE_DIR
    reserve.mkdir()
    (reserve / f"a{SLOT_SUFFIX}").write_bytes(bytes(64 * 1024))

    result = reconcile_leftovers(incoming)

    assert (result.indexed, result.partial_removed, result.refused, result.folders_removed) == (1, 1, 0, 1)
    instance = Instance.objects.get()
    assert Path(instance.file.path).read_bytes() == exact
    assert instance.dataset_digest == digest
    assert list(incoming.iterdir()) == [reserve]
    assert [p.name for p in reserve.iterdir()] == [f"a{SLOT_SUFFIX}"]
