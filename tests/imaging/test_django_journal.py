"""What the listener makes durable before it answers, and what its index writer commits.

An instance is acknowledged only once its file and its name in ``incoming/<association>/`` (the
journal) are synced (``fsync``, on by default); the writer syncs the storage folders it renames
files into before it commits their rows; a batch the index refuses is indexed one instance at a
time, each acknowledged instance exactly once.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import blake3
import pydicom
import pytest
from django.db import connection
from django.utils import timezone

from protonpath.imaging import aio, ingest, reactor
from protonpath.imaging.models import Instance, Transfer
from protonpath.imaging.scp import journal_entry_digest
from tests.imaging.conftest import PATIENT_BIRTH, PATIENT_NAME, stamp
from tests.imaging.dicomdata import write_ct_series
from tests.imaging.test_django_network import _wait_for, storescu
from tests.imaging.test_reactor import store_series
from tests.imaging.test_scp import Recorder, start_listener

pytestmark = pytest.mark.dicom_peer


#: Where Linux AIO is to be had, the listener's flushes run in the kernel (kernel_flush, the
#: default); elsewhere, and with kernel_flush off, in its syncer threads. Both ways are tested.
KERNEL_FLUSH = [True, False] if aio.thread_flusher() is not None else [False]


def spy_kernel_flushes(monkeypatch, on_flushed):
    """Call ``on_flushed(fd)`` once each flush handed to the kernel has completed (before the
    file is closed); returns the list of the files handed over (their fds)."""
    started = []
    real_start, real_result = aio.Flusher.start, aio.Flush.result

    def start(self, fd, data_only=False):
        flush = real_start(self, fd, data_only)
        if flush is not None:
            started.append(fd)
        return flush

    def result(flush):
        fd = None if flush._done else flush._fd
        if fd is not None:
            st = os.fstat(fd)
        real_result(flush)
        if fd is not None:
            on_flushed(st)

    monkeypatch.setattr(aio.Flusher, "start", start)
    monkeypatch.setattr(aio.Flush, "result", result)
    return started


class Synced:
    """os.fsync, os.fdatasync and the flushes handed to the kernel, remembering the inodes they
    synced (files and folders)."""

    def __init__(self, monkeypatch):
        self.inodes: set[tuple[int, int]] = set()
        for name in ("fsync", "fdatasync"):
            monkeypatch.setattr(os, name, self._spy(getattr(os, name)))
        self.kernel = spy_kernel_flushes(monkeypatch, lambda st: self.inodes.add((st.st_dev, st.st_ino)))

    def _spy(self, real):
        def sync(fd):
            real(fd)
            st = os.fstat(fd)
            self.inodes.add((st.st_dev, st.st_ino))

        return sync

    def __contains__(self, path) -> bool:
        st = os.stat(path)
        return (st.st_dev, st.st_ino) in self.inodes


class SyncWitness(Recorder):
    """A sink noting, when it is handed an instance (its flush may still be under way), whether
    the file's folder and that folder's parent were synced, and, once ``wait_durable`` returns,
    whether the file was; and noting, when the listener encodes each C-STORE answer, whether
    the file of the instance answered was synced."""

    def __init__(self, synced: Synced, monkeypatch):
        super().__init__()
        self.synced = synced
        self.seen: list[tuple[bool, bool, bool]] = []
        self.answered: list[bool] = []
        real = reactor.encode_store_response

        def encode_store_response(context_id, message_id, sop_class_uid, sop_instance_uid, status, *rest):
            path = self.instances[-1].path
            self.answered.append(sop_instance_uid == self.uid(path) and path in self.synced)
            return real(context_id, message_id, sop_class_uid, sop_instance_uid, status, *rest)

        monkeypatch.setattr(reactor, "encode_store_response", encode_store_response)

    @staticmethod
    def uid(path) -> str:
        return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)

    def __call__(self, instance):
        path = instance.path
        folders = (path.parent in self.synced, path.parent.parent in self.synced)
        if instance.wait_durable is not None:
            instance.wait_durable()
        self.seen.append((path in self.synced, *folders))
        super().__call__(instance)


@pytest.mark.parametrize("kernel_flush", KERNEL_FLUSH)
@pytest.mark.parametrize("fsync", [True, False])
def test_an_instance_is_synced_file_and_name_before_it_is_acknowledged(tmp_path, monkeypatch, fsync, kernel_flush):
    synced = Synced(monkeypatch)
    sink = SyncWitness(synced, monkeypatch)
    listener = start_listener(tmp_path, sink, fsync=fsync, kernel_flush=kernel_flush)
    statuses = store_series(listener, sink, 3)
    assert statuses == [0x0000] * 3
    assert sink.seen == [(fsync, fsync, fsync)] * 3
    assert sink.answered == [fsync] * 3
    assert len(synced.kernel) == (3 if fsync and kernel_flush else 0)


@pytest.mark.parametrize("kernel_flush", KERNEL_FLUSH)
@pytest.mark.parametrize("fsync", [True, False])
def test_one_disk_flush_per_instance_and_one_folder_flush_per_batch_of_slots(tmp_path, monkeypatch, fsync, kernel_flush):
    flushes = {"file": 0, "folder": 0}
    synced: set[tuple[int, int]] = set()
    def counting(real):
        def sync(fd):
            st = os.fstat(fd)
            flushes["folder" if stat.S_ISDIR(st.st_mode) else "file"] += 1
            real(fd)
            synced.add((st.st_dev, st.st_ino))

        return sync

    monkeypatch.setattr(os, "fsync", counting(os.fsync))  # folders
    monkeypatch.setattr(os, "fdatasync", counting(os.fdatasync))  # journal files: their data and length

    def kernel_flushed(st):
        flushes["file"] += 1
        synced.add((st.st_dev, st.st_ino))

    kernel = spy_kernel_flushes(monkeypatch, kernel_flushed)
    sink = Recorder()  # a sink that does not wait for the flush itself: the listener does
    answered_synced = []
    real_encode = reactor.encode_store_response

    def encode_store_response(*args):
        st = os.stat(sink.instances[-1].path)
        answered_synced.append((st.st_dev, st.st_ino) in synced)
        return real_encode(*args)

    monkeypatch.setattr(reactor, "encode_store_response", encode_store_response)
    listener = start_listener(tmp_path, sink, fsync=fsync, kernel_flush=kernel_flush)
    statuses = store_series(listener, sink, 20)
    assert statuses == [0x0000] * 20
    assert answered_synced == [fsync] * 20
    # 20 slots in batches of 4, 4, 8, 16 (the last one's unused slots removed at the end): the
    # incoming folder once for the association's folder, that folder once per batch.
    assert flushes == ({"file": 20, "folder": 1 + 4} if fsync else {"file": 0, "folder": 0})
    assert len(kernel) == (20 if fsync and kernel_flush else 0)
    left = sorted(p for p in (tmp_path / "incoming").rglob("*") if p.is_file())
    assert left == sorted(i.path for i in sink.instances)  # written in place: no rename, no leftover slot
    for instance in sink.instances:
        data = instance.path.read_bytes()
        assert journal_entry_digest(data) == instance.dataset_digest == ingest.dataset_digest(data)


@pytest.mark.django_db(transaction=True)
def test_the_writer_syncs_storage_folders_inside_the_transaction_before_commit(
    listener, submitted, tmp_path, monkeypatch
):
    synced_folders = []
    real = ingest.fsync_directory

    def fsync_directory(folder):
        synced_folders.append((folder, connection.in_atomic_block))
        real(folder)

    monkeypatch.setattr(ingest, "fsync_directory", fsync_directory)
    paths = write_ct_series(tmp_path / "ct", 6, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber=submitted.accession_number)

    result = storescu(listener, paths)

    assert result.returncode == 0, result.stderr
    assert listener.settings.fsync  # the default (DICOM_FSYNC)
    _wait_for(lambda: Transfer.objects.filter(outcome="complete").first())
    folders = {os.path.dirname(i.file.path) for i in Instance.objects.all()}
    assert len(folders) >= 1
    assert folders <= {str(folder) for folder, in_transaction in synced_folders if in_transaction}


@pytest.mark.django_db(transaction=True)
def test_a_batch_the_index_refuses_is_indexed_one_by_one_each_instance_once(
    listener, submitted, tmp_path, monkeypatch
):
    real = ingest._insert_instances
    failures = []

    def insert_failing_once(rows):
        if not failures:
            failures.append(len(rows))
            raise RuntimeError("the index refused the batch")
        real(rows)

    monkeypatch.setattr(ingest, "_insert_instances", insert_failing_once)
    paths = write_ct_series(tmp_path / "ct", 12, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber=submitted.accession_number)

    result = storescu(listener, paths)

    assert result.returncode == 0, result.stderr
    transfer = _wait_for(lambda: Transfer.objects.filter(outcome="complete").first())
    assert failures and failures[0] >= 1
    uids = list(Instance.objects.values_list("sop_instance_uid", flat=True))
    assert sorted(uids) == sorted(str(pydicom.dcmread(p).SOPInstanceUID) for p in paths)
    assert (transfer.stored, transfer.duplicates, transfer.refused) == (12, 0, 0)
    for instance in Instance.objects.all():
        assert os.path.exists(instance.file.path)
    assert not list((tmp_path / "incoming").rglob("*.dcm"))  # the journal is empty once indexed


@pytest.mark.parametrize("fast_pdus", ["all", "every other", "none"])
def test_the_data_set_hashed_as_its_fragments_arrive_is_the_data_sets_blake3(tmp_path, monkeypatch, fast_pdus):
    """The seal's BLAKE3 is fed fragment by fragment as the data PDUs arrive (the upper layer's
    fast path), the rest hashed once the message is complete: whichever PDUs took which way,
    it is the BLAKE3 of the data set written."""
    real = reactor.PromptDul._append_data_fragments
    taken = []

    def append(self, pdu):
        if fast_pdus == "none" or (fast_pdus == "every other" and len(taken) % 2):
            taken.append(False)
            return False  # pynetdicom's way
        done = real(self, pdu)
        taken.append(done)
        return done

    monkeypatch.setattr(reactor.PromptDul, "_append_data_fragments", append)
    sink = Recorder()
    listener = start_listener(tmp_path, sink, maximum_pdu_size=4096)  # CT_small: a dozen data PDUs
    statuses = store_series(listener, sink, 2)
    assert statuses == [0x0000] * 2
    assert (sum(taken) > 4) == (fast_pdus != "none")
    for instance in sink.instances:
        data = instance.path.read_bytes()
        assert instance.dataset_digest == "blake3:" + blake3.blake3(data[ingest.dataset_offset(data):]).hexdigest()
        assert journal_entry_digest(data) == instance.dataset_digest


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fsync", [True, False])
def test_the_rows_the_writer_inserts_hold_what_the_general_path_gives(submitted, tmp_path, settings, fsync):
    """The batched writer builds its rows from plain values, with the digests the listener
    computed (the data set's as it arrived, the file's while it was flushed): the same values as
    the general path (:func:`ingest._new_instance`) from the stored file."""
    from protonpath.imaging.files import classify_file

    settings.DICOM_FSYNC = fsync
    paths = write_ct_series(tmp_path / "ct", 6, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber=submitted.accession_number)
    node = ingest.build_listener(host="127.0.0.1", port=0, incoming_dir=tmp_path / "incoming")
    assert node.settings.fsync is fsync
    node.start()
    try:
        before = timezone.now()
        result = storescu(node, paths)
        transfer = _wait_for(lambda: Transfer.objects.filter(outcome="complete").first())
        after = timezone.now()
    finally:
        node.stop()
    assert result.returncode == 0, result.stderr
    instances = list(Instance.objects.select_related("series"))
    assert len(instances) == transfer.stored == 6
    compared = ("sop_instance_uid", "sop_class_uid", "instance_number", "slice_position_mm", "size_bytes",
                "file_digest", "dataset_digest", "transfer_syntax_uid", "received_via", "calling_ae_title", "header")
    for instance in instances:
        data = Path(instance.file.path).read_bytes()
        general = ingest._new_instance(
            classify_file(instance.file.path, data=data), data, instance.series, via="dicom",
            calling_ae_title="HOSPITAL_PACS", dataset_digest=ingest.dataset_digest(data),
        )
        assert {k: getattr(instance, k) for k in compared} == {k: getattr(general, k) for k in compared}
        assert instance.file_digest == "blake3:" + blake3.blake3(data).hexdigest()
        assert instance.transfer_id == transfer.pk and before <= instance.received_at <= after
