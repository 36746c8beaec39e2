"""Flushes handed to the kernel (imaging/aio.py, Linux AIO) and what the listener does when a
flush fails, whichever way it flushes."""

from __future__ import annotations

import errno
import mmap
import os

import pytest

from protonpath.imaging import aio
from tests.imaging.test_reactor import associate, ct_dataset, store_series
from tests.imaging.test_scp import Recorder, start_listener

KERNEL = aio.thread_flusher() is not None
needs_aio = pytest.mark.skipif(not KERNEL, reason="Linux AIO is not to be had on this system (the listener flushes in threads)")


def _written(path, size=300_000) -> int:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.pwrite(fd, os.urandom(size), 0)
    return fd


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as error:
        return error.errno == errno.EBADF
    return False


def test_linux_aio_is_there_on_linux():
    """The listener's default way on the systems it is run on (CI included)."""
    import sys

    if sys.platform.startswith("linux") and os.uname().machine in ("x86_64", "aarch64"):
        assert KERNEL


@needs_aio
def test_a_flush_handed_to_the_kernel_completes_and_closes_the_file(tmp_path):
    flusher = aio.thread_flusher()
    assert aio.thread_flusher() is flusher  # one per thread
    fd = _written(tmp_path / "a")
    flush = flusher.start(fd)
    assert flush is not None
    flush.result()
    assert _closed(fd)
    flush.result()  # said once, said again
    data_fd = _written(tmp_path / "b")
    flusher.start(data_fd, data_only=True).result()
    assert _closed(data_fd)


@needs_aio
def test_several_flushes_under_way_are_reaped_in_any_order(tmp_path):
    flusher = aio.thread_flusher()
    fds = [_written(tmp_path / f"f{i}") for i in range(5)]
    flushes = [flusher.start(fd) for fd in fds]
    assert all(flushes)
    for flush in reversed(flushes):
        flush.result()
    assert all(_closed(fd) for fd in fds)
    assert flusher._outstanding == 0 and flusher._finished == {}


@needs_aio
def test_a_file_the_kernel_will_not_flush_is_left_to_the_caller(tmp_path):
    flusher = aio.thread_flusher()
    read_end, write_end = os.pipe()  # no flush for a pipe: refused at submission
    try:
        assert flusher.start(write_end) is None
        assert not _closed(write_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert flusher._outstanding == 0


@needs_aio
def test_a_flush_that_fails_raises_its_error_and_still_closes_the_file(tmp_path, monkeypatch):
    flusher = aio.thread_flusher()
    fd = _written(tmp_path / "a")
    flush = flusher.start(fd)
    real_reap = aio.Flusher._reap

    def reap(self, key):  # the flush is reaped, and said to have failed
        real_reap(self, key)
        return -errno.EIO

    monkeypatch.setattr(aio.Flusher, "_reap", reap)
    with pytest.raises(OSError) as raised:
        flush.result()
    assert raised.value.errno == errno.EIO and _closed(fd)
    with pytest.raises(OSError):
        flush.result()


@needs_aio
def test_a_wait_that_fails_is_said_by_every_call(tmp_path, monkeypatch):
    flusher = aio.thread_flusher()
    fd = _written(tmp_path / "a")
    flush = flusher.start(fd)
    real_reap = aio.Flusher._reap

    def reap(self, key):
        real_reap(self, key)
        raise OSError(errno.EINVAL, "io_getevents failed")

    monkeypatch.setattr(aio.Flusher, "_reap", reap)
    for _ in range(2):  # the sink's wait, then the listener's before it answers
        with pytest.raises(OSError):
            flush.result()
    assert _closed(fd)


@pytest.mark.parametrize("kernel_flush", [True, False] if KERNEL else [False])
def test_an_instance_whose_flush_fails_is_refused_so_that_the_peer_sends_it_again(tmp_path, monkeypatch, kernel_flush):
    """The second instance's flush fails (a disk error): it is answered 'out of resources'
    (0xA700), its file removed, the refusal counted; the instances around it are stored."""
    calls = {"n": 0}

    def failing_second():
        calls["n"] += 1
        return calls["n"] == 2

    if kernel_flush:
        real_reap = aio.Flusher._reap

        def reap(self, key):
            code = real_reap(self, key)
            return -errno.EIO if failing_second() else code

        monkeypatch.setattr(aio.Flusher, "_reap", reap)
    else:
        real_fdatasync = os.fdatasync

        def fdatasync(fd):
            real_fdatasync(fd)
            if os.path.isfile(f"/proc/self/fd/{fd}") and failing_second():
                raise OSError(errno.EIO, os.strerror(errno.EIO))

        monkeypatch.setattr(os, "fdatasync", fdatasync)
    sink = Recorder()
    listener = start_listener(tmp_path, sink, fsync=True, kernel_flush=kernel_flush)
    statuses = store_series(listener, sink, 3)
    assert statuses == [0x0000, 0xA700, 0x0000]
    summary = sink.summaries[-1]
    assert (summary.stored, summary.refused) == (2, 1)
    refused = sink.instances[1]
    assert not refused.path.exists()
    assert all(i.path.exists() for i in (sink.instances[0], sink.instances[2]))


def _slice():
    """A CT instance of 512 x 512 pixels (512 KiB of pixel data), as a scanner sends."""
    import numpy as np

    ds = ct_dataset()
    ds.Rows = ds.Columns = 512
    ds.PixelData = np.arange(512 * 512, dtype=np.uint16).tobytes()
    return ds


def test_the_writeback_of_an_instance_begins_while_it_arrives(tmp_path, monkeypatch):
    """With early_writeback, a 512 KB CT slice has its journal file's writeback started as
    its data set arrives (every 256 KiB written), on ranges of that file that were written;
    without it, or without fsync, none is; the files are whole either way."""
    from protonpath.imaging import scp

    started = []
    real_start = aio.Writeback.start

    def start(self, fd, offset, length):
        started.append((os.readlink(f"/proc/self/fd/{fd}"), offset, length, os.fstat(fd).st_size))
        real_start(self, fd, offset, length)

    monkeypatch.setattr(aio.Writeback, "start", start)
    for settings, expected in (({}, True), ({"early_writeback": False}, False), ({"fsync": False}, False)):
        started.clear()
        sink = Recorder()
        listener = start_listener(tmp_path / str(len(settings)) / str(expected), sink, **settings)
        assert (listener._writeback is not None) == expected
        try:
            assoc = associate(listener)
            statuses = [assoc.send_c_store(_slice()).Status for _ in range(3)]
            assoc.release()
            sink.wait_end()
        finally:
            listener.stop()
        assert statuses == [0x0000] * 3
        assert listener._writeback is None  # stopped with the listener
        if not expected:
            assert started == []
            continue
        assert len(started) >= 3  # each of the three instances at least once
        slots = {str(i.path) for i in sink.instances}
        for path, offset, length, size in started:
            assert path in slots and offset + length <= size
            assert offset >= mmap.PAGESIZE and length >= scp.WRITEBACK_BYTES - mmap.PAGESIZE  # not the header's page
        for instance in sink.instances:
            assert scp.journal_entry_digest(instance.path.read_bytes()) == instance.dataset_digest
