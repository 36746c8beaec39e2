"""The journal's reserve: slot files of zeros made while the listener is idle, written over by
instances (flushed data only), cut to their instance once on disk, given back when never written,
and put right by the start-up recovery when the listener died in between."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from protonpath.imaging import aio
from protonpath.imaging.reserve import RESERVE_DIR, JournalReserve
from protonpath.imaging.scp import (
    encode_file_header,
    journal_entry_digest,
    journal_entry_length,
    journal_seal,
)
from tests.imaging.test_reactor import associate, ct_dataset
from tests.imaging.test_scp import Recorder, start_listener

SLOT = 64 * 1024


def _reserve(tmp_path: Path, busy: threading.Event | None = None, **options) -> JournalReserve:
    busy = busy or threading.Event()
    options = {"count": 5, "slot_bytes": SLOT, "idle_s": 0.05, **options}
    return JournalReserve(tmp_path / RESERVE_DIR, idle=lambda: not busy.is_set(), **options)


def _files(folder: Path) -> list[Path]:
    return sorted(folder.iterdir())


def test_the_reserve_is_filled_with_synced_files_of_zeros_while_idle(tmp_path, monkeypatch):
    synced = []
    real = os.fdatasync

    def fdatasync(fd):
        real(fd)
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd).st_size))

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    reserve = _reserve(tmp_path)
    reserve.open()
    try:
        assert reserve.wait_full(10)
    finally:
        reserve.close()
    files = _files(tmp_path / RESERVE_DIR)
    assert len(files) == reserve.available == 5
    assert all(p.suffix == ".slot" and p.read_bytes() == bytes(SLOT) for p in files)
    # each was synced whole under its temporary name, before it was named a slot
    assert len(synced) == 5 and all(path.endswith(".new") and size == SLOT for path, size in synced)


def test_the_reserve_waits_for_the_listener_to_be_idle(tmp_path):
    busy = threading.Event()
    busy.set()  # an association is open
    reserve = _reserve(tmp_path, busy)
    reserve.open()
    try:
        time.sleep(0.4)
        assert reserve.available == 0
        assert not reserve.wait_full(0.2)
        busy.clear()  # it ends ...
        reserve.wake()  # ... and wakes the reserve, which fills after idle_s
        assert reserve.wait_full(10)
    finally:
        reserve.close()


def test_filling_stops_when_an_association_opens_and_goes_on_after_it(tmp_path, monkeypatch):
    busy = threading.Event()
    reserve = _reserve(tmp_path, busy, count=6)
    real = reserve._make_one

    def make_one(length):
        path = real(length)
        if reserve.available == 1:  # an association opens while the second file is made
            busy.set()
        return path

    monkeypatch.setattr(reserve, "_make_one", make_one)
    reserve.open()
    try:
        time.sleep(0.5)
        assert reserve.available == 2  # the file under way is finished, no other begun
        busy.clear()
        reserve.wake()
        assert reserve.wait_full(10)
    finally:
        reserve.close()


def test_taken_slots_leave_the_reserve_and_unwritten_ones_come_back(tmp_path):
    reserve = _reserve(tmp_path)
    reserve.open()
    try:
        assert reserve.wait_full(10)
        taken = reserve.take(3)
        assert len(taken) == 3 and reserve.available == 2
        moved = []
        for number, path in enumerate(taken):
            moved.append(tmp_path / f"{number}.slot")
            os.rename(path, moved[-1])
        moved[0].write_bytes(b"")  # an empty slot (made when the reserve ran out): not taken
        assert [reserve.give_back(p) for p in moved] == [False, True, True]
        assert reserve.available == 4 and moved[0].exists() and not moved[1].exists()
        assert reserve.take(10) and reserve.available == 0
    finally:
        reserve.close()


def test_a_full_reserve_takes_nothing_back(tmp_path):
    reserve = _reserve(tmp_path, count=1)
    reserve.open()
    try:
        assert reserve.wait_full(10)
        extra = tmp_path / "extra.slot"
        extra.write_bytes(bytes(SLOT))
        assert not reserve.give_back(extra) and extra.exists()
    finally:
        reserve.close()


def test_opening_keeps_whole_slots_and_removes_the_rest(tmp_path):
    folder = tmp_path / RESERVE_DIR
    folder.mkdir()
    whole = folder / "a.slot"
    whole.write_bytes(bytes(SLOT))
    (folder / "b.new").write_bytes(bytes(SLOT // 2))  # being made when the listener died
    (folder / "c.slot").write_bytes(bytes(2 * SLOT))  # longer than the setting now allows
    (folder / "d.slot").write_bytes(b"")  # not a reserve file
    shorter = folder / "e.slot"
    shorter.write_bytes(bytes(SLOT // 4))  # made to fit shorter instances: kept
    reserve = _reserve(tmp_path, count=2, idle_s=60)  # nothing made during the test
    reserve.open()
    try:
        assert _files(folder) == [whole, shorter]
        assert reserve.available == 2
    finally:
        reserve.close()


def test_new_files_take_the_length_most_recent_instances_had_in_whole_blocks(tmp_path):
    reserve = _reserve(tmp_path, count=3, idle_s=60)
    reserve.open()
    try:
        assert reserve.next_length == SLOT  # nothing noted yet: the longest
        block = reserve.block
        for length in (10_000, 10_001, 3 * block + 1, 10_500, 5 * SLOT):  # the last: too long to fit
            reserve.note(length)
        assert reserve.next_length == -(-10_000 // block) * block  # three of four in those blocks
        for _ in range(5):
            reserve.note(3 * block + 1)
        assert reserve.next_length == 4 * block
        reserve.idle_s = 0.0
        reserve.wake()
        assert reserve.wait_full(10)
        assert sorted(p.stat().st_size for p in _files(tmp_path / RESERVE_DIR)) == [4 * block] * 3
    finally:
        reserve.close()


def test_slots_are_taken_best_fitting_first_and_idle_time_remakes_the_others(tmp_path):
    folder = tmp_path / RESERVE_DIR
    folder.mkdir()
    block = 4096
    for name, size in (("long", SLOT), ("fits", 4 * block), ("short", 2 * block)):
        (folder / f"{name}.slot").write_bytes(bytes(size))
    reserve = _reserve(tmp_path, count=3, idle_s=60)
    reserve.open()
    try:
        for _ in range(3):
            reserve.note(4 * block - 100)
        assert reserve.next_length == 4 * block
        assert [p.name for p in reserve.take(1)] == ["fits.slot"]
        assert [p.name for p in reserve.take(1)] == ["long.slot"]  # longer (cut later) before shorter
        assert [p.name for p in reserve.take(5)] == ["short.slot"]
        (folder / "fits.slot").unlink()  # taken for good (written with an instance)
        for name in ("long", "short"):
            assert reserve.give_back(folder / f"{name}.slot")
        assert not reserve.wait_full(0.2)  # a missing file, and two of other lengths
        reserve.idle_s = 0.0
        reserve.wake()
        assert reserve.wait_full(10)
        assert reserve.lengths() == [4 * block] * 3
        assert sorted(p.stat().st_size for p in _files(folder)) == [4 * block] * 3
    finally:
        reserve.close()


def test_a_new_listener_keeps_the_lengths_an_earlier_one_made(tmp_path):
    folder = tmp_path / RESERVE_DIR
    folder.mkdir()
    for number in range(3):
        (folder / f"{number}.slot").write_bytes(bytes(5 * 4096))  # made to fit earlier instances
    reserve = _reserve(tmp_path, count=4)
    reserve.open()
    try:
        assert reserve.next_length == 5 * 4096
        assert reserve.wait_full(10)  # one more of that length, none remade
        assert reserve.lengths() == [5 * 4096] * 4
        assert {p.name for p in _files(folder)} >= {f"{number}.slot" for number in range(3)}
    finally:
        reserve.close()


def test_the_reserve_keeps_the_disk_s_free_space(tmp_path, caplog):
    reserve = _reserve(tmp_path, min_free_bytes=1 << 62)
    reserve.open()
    try:
        assert not reserve.wait_full(10)  # it gave up at once
        assert reserve.available == 0
    finally:
        reserve.close()
    assert "too little free space" in caplog.text
    assert list((tmp_path / RESERVE_DIR).iterdir()) == []


def _listener(tmp_path, sink, **settings):
    options = {"journal_reserve": 6, "journal_reserve_slot_bytes": SLOT, "journal_reserve_idle_s": 0.05, **settings}
    listener = start_listener(tmp_path, sink, **options)
    assert listener.reserve is not None and listener.reserve.wait_full(10)
    return listener


@pytest.mark.parametrize("kernel_flush", [True, False] if aio.thread_flusher() is not None else [False])
def test_instances_are_written_over_reserve_slots_flushed_data_only_and_cut(tmp_path, monkeypatch, kernel_flush):
    """Six reserve slots: the association's first instances go into them (their length the
    reserve's until each is on disk, then cut to the instance's bytes), the others into empty
    slots; every file is whole and exact, each flush syncs data only (fdatasync), and the
    reserve is full again once the listener has been idle."""
    flushes = []
    real_start = aio.Flusher.start

    def start(self, fd, data_only=False):
        flushes.append(("kernel", data_only, os.fstat(fd).st_size))
        return real_start(self, fd, data_only)

    real_fdatasync, real_fsync = os.fdatasync, os.fsync

    def fdatasync(fd):
        if "/incoming/" in os.readlink(f"/proc/self/fd/{fd}") and RESERVE_DIR not in os.readlink(f"/proc/self/fd/{fd}"):
            flushes.append(("thread", True, os.fstat(fd).st_size))
        real_fdatasync(fd)

    def fsync(fd):
        if os.path.isfile(f"/proc/self/fd/{fd}"):
            flushes.append(("thread", False, os.fstat(fd).st_size))
        real_fsync(fd)

    monkeypatch.setattr(aio.Flusher, "start", start)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(os, "fsync", fsync)
    sink = Recorder()
    listener = _listener(tmp_path, sink, kernel_flush=kernel_flush)
    reserve = listener.reserve
    try:
        assoc = associate(listener)
        statuses = [assoc.send_c_store(ct_dataset()).Status for _ in range(10)]
        assoc.release()
        sink.wait_end()
        assert reserve.wait_full(10)  # refilled, the slots made and not written given back
    finally:
        listener.stop()
    assert statuses == [0x0000] * 10
    assert [kind for kind, _, _ in flushes] == ["kernel" if kernel_flush else "thread"] * 10
    assert all(data_only for _, data_only, _ in flushes)
    sizes = [size for _, _, size in flushes]
    assert sizes[:6] == [SLOT] * 6  # written over a reserve slot, flushed at its length
    assert all(size < SLOT for size in sizes[6:])  # an empty slot, flushed at the instance's
    for instance in sink.instances:
        data = instance.path.read_bytes()
        assert data == instance.data  # cut to the instance once on disk
        assert journal_entry_digest(data) == instance.dataset_digest
    # refilled with files the instances' length, in whole blocks: their cuts stay in the last
    block = reserve.block
    lengths = {-(-len(instance.data) // block) * block for instance in sink.instances}
    assert len(lengths) == 1
    assert [p.stat().st_size for p in _files(tmp_path / "incoming" / RESERVE_DIR)] == [lengths.pop()] * 6


def test_an_instance_longer_than_a_reserve_slot_grows_it(tmp_path):
    """A 512 KB slice into slots of 64 KiB: the file grows past the zeros, and is whole."""
    import numpy as np

    ds = ct_dataset()
    ds.Rows = ds.Columns = 512
    ds.PixelData = np.arange(512 * 512, dtype=np.uint16).tobytes()
    sink = Recorder()
    listener = _listener(tmp_path, sink)
    try:
        assoc = associate(listener)
        statuses = [assoc.send_c_store(ds).Status for _ in range(2)]
        assoc.release()
        sink.wait_end()
    finally:
        listener.stop()
    assert statuses == [0x0000] * 2
    for instance in sink.instances:
        data = instance.path.read_bytes()
        assert len(data) > 512 * 1024 and data == instance.data
        assert journal_entry_digest(data) == instance.dataset_digest


def test_without_fsync_there_is_no_reserve(tmp_path):
    sink = Recorder()
    listener = start_listener(tmp_path, sink, fsync=False, journal_reserve=4, journal_reserve_idle_s=0.0)
    try:
        assert listener.reserve is None
        time.sleep(0.2)
    finally:
        listener.stop()
    assert not (tmp_path / "incoming" / RESERVE_DIR).exists()


def test_a_sealed_file_keeps_its_length_past_zeros():
    dataset = b"\x08\x00\x18\x00UI\x04\x001.2\x00"
    seal, digest = journal_seal(dataset)
    header = encode_file_header(sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid="1.2.3",
                                transfer_syntax_uid="1.2.840.10008.1.2.1", source_ae_title="PACS", seal=seal)
    whole = header + dataset
    assert journal_entry_length(whole + bytes(1000)) == len(whole) == journal_entry_length(whole)
    assert journal_entry_digest(whole) == digest
    assert journal_entry_digest(whole + bytes(1000)) is None  # zeros past it: not whole as it is
    assert journal_entry_length(bytes(1000)) is None
