"""File flushes handed to the kernel and reaped by the thread that asked (Linux AIO).

The listener acknowledges an instance only once its journal file is on disk, and checks the
instance while the flush runs. A flush done by a thread of ours ends with that thread taking the
interpreter's lock back and waking the one that waits, which cost 0.3 ms and more per instance
beside the checks' own Python. Here the receiving thread submits the flush to the kernel
(``io_submit`` of an ``IOCB_CMD_FSYNC`` or ``IOCB_CMD_FDSYNC``, run by a kernel worker since
Linux 4.18), checks the
instance, then waits for its completion in ``io_getevents``: no thread of ours in between.

Linux on x86-64 and arm64 only, through ``ctypes`` and the raw system calls (no library); where
anything of it is missing, :func:`thread_flusher` is None and the caller flushes its own way.

:class:`Writeback` starts writing a file's ranges out (``sync_file_range``) while the rest of it
is still arriving, in a thread nothing waits for, so that the flush at its end has less to do.
:func:`fsync_directory` flushes a folder's entries (names made or renamed in it).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys
import threading
import weakref
from pathlib import Path

#: Outstanding flushes one thread's context holds (one per instance in progress).
DEPTH = 8

_SYSCALLS = {  # (io_setup, io_destroy, io_getevents, io_submit)
    "x86_64": (206, 207, 208, 209),
    "aarch64": (0, 1, 4, 2),
    "arm64": (0, 1, 4, 2),
}
_IOCB_CMD_FSYNC = 2
_IOCB_CMD_FDSYNC = 3


class _Iocb(ctypes.Structure):
    # struct iocb of <linux/aio_abi.h>, little endian (aio_key before aio_rw_flags)
    _fields_ = [
        ("aio_data", ctypes.c_uint64),
        ("aio_key", ctypes.c_uint32),
        ("aio_rw_flags", ctypes.c_int32),
        ("aio_lio_opcode", ctypes.c_uint16),
        ("aio_reqprio", ctypes.c_int16),
        ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64),
        ("aio_nbytes", ctypes.c_uint64),
        ("aio_offset", ctypes.c_int64),
        ("aio_reserved2", ctypes.c_uint64),
        ("aio_flags", ctypes.c_uint32),
        ("aio_resfd", ctypes.c_uint32),
    ]


class _IoEvent(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint64), ("obj", ctypes.c_uint64), ("res", ctypes.c_int64), ("res2", ctypes.c_int64)]


def _libc():
    if not sys.platform.startswith("linux") or sys.byteorder != "little":
        return None
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # releases the interpreter's lock in each call
        syscall = libc.syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    return syscall, numbers


_LIBC = _libc()
_local = threading.local()


class Flush:
    """One flush under way: :meth:`result` waits for it (once; later calls say the same)."""

    __slots__ = ("_flusher", "_key", "_fd", "_error", "_done")

    def __init__(self, flusher: Flusher, key: int, fd: int):
        self._flusher = flusher
        self._key = key
        self._fd = fd
        self._error: OSError | None = None
        self._done = False

    def result(self) -> None:
        """Return once the file is on disk, closing it; raise OSError if the flush failed."""
        if not self._done:
            try:
                code = self._flusher._reap(self._key)
            except OSError as error:  # the wait itself failed: the flush is not known to be done
                self._error = error
            else:
                if code < 0:
                    self._error = OSError(-code, os.strerror(-code))
            finally:
                self._done = True
                os.close(self._fd)
        if self._error is not None:
            raise self._error


class Flusher:
    """A kernel AIO context of one thread: :meth:`start` submits a flush of a file."""

    def __init__(self) -> None:
        assert _LIBC is not None
        self._syscall, (self._setup, self._destroy, self._getevents, self._submit) = _LIBC
        context = ctypes.c_ulong(0)
        if self._syscall(self._setup, ctypes.c_ulong(DEPTH), ctypes.byref(context)) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        self._context = context
        self._next = 0
        self._outstanding = 0
        self._finished: dict[int, int] = {}  # key -> result, reaped while waiting for another
        self._events = (_IoEvent * DEPTH)()
        weakref.finalize(self, self._syscall, self._destroy, context)

    def start(self, fd: int, data_only: bool = False) -> Flush | None:
        """Submit a flush of ``fd`` (``fsync``, or ``fdatasync`` with ``data_only``); the
        returned :class:`Flush` then owns ``fd`` and closes it. None when the kernel refused the
        submission (the caller flushes ``fd`` itself)."""
        if self._outstanding >= DEPTH:
            return None
        self._next += 1
        key = self._next
        block = _Iocb(aio_data=key, aio_lio_opcode=_IOCB_CMD_FDSYNC if data_only else _IOCB_CMD_FSYNC, aio_fildes=fd)
        blocks = (ctypes.POINTER(_Iocb) * 1)(ctypes.pointer(block))
        while True:
            submitted = self._syscall(self._submit, self._context, ctypes.c_long(1), blocks)
            if submitted == 1:
                break
            if submitted < 0 and ctypes.get_errno() == errno.EINTR:
                continue
            return None  # EINVAL where the file system takes no AIO flush, EAGAIN, ...
        self._outstanding += 1
        return Flush(self, key, fd)

    def _reap(self, key: int) -> int:
        while key not in self._finished:
            got = self._syscall(
                self._getevents, self._context, ctypes.c_long(1), ctypes.c_long(DEPTH), self._events, None
            )
            if got < 0:
                code = ctypes.get_errno()
                if code == errno.EINTR:
                    continue
                raise OSError(code, os.strerror(code))
            for event in self._events[:got]:
                self._finished[int(event.data)] = int(event.res)
        self._outstanding -= 1
        return self._finished.pop(key)


def thread_flusher() -> Flusher | None:
    """The calling thread's :class:`Flusher`, made at its first call; None where Linux AIO is
    not to be had (another system, a kernel without it, a context refused)."""
    flusher = getattr(_local, "flusher", False)
    if flusher is False:
        flusher = None
        if _LIBC is not None:
            try:
                flusher = Flusher()
            except OSError:
                flusher = None
        _local.flusher = flusher
    return flusher


# --- writeback started early ----------------------------------------------------------------

_SYNC_FILE_RANGE_WRITE = 2


def _sync_file_range():
    if _LIBC is None:
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except AttributeError:
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


class Writeback:
    """Starts the writeback of file ranges in a thread of its own (``sync_file_range`` with
    ``SYNC_FILE_RANGE_WRITE``: nothing waits for it), so that the flush that follows has less
    left to write. Each range comes with a duplicate of the caller's descriptor, closed here."""

    def __init__(self) -> None:
        import queue

        self._call = _sync_file_range()  # None: nothing is started (start() does nothing)
        self._closed = False
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="dicom-journal-writeback", daemon=True)
        if self._call is not None:
            self._thread.start()

    @property
    def available(self) -> bool:
        return self._call is not None

    def start(self, fd: int, offset: int, length: int) -> None:
        """Have the writeback of ``length`` bytes of ``fd`` from ``offset`` started (soon)."""
        if self._call is None:
            return
        with self._lock:
            if self._closed:
                return
            try:
                copy = os.dup(fd)  # the caller may close its own before the writeback begins
            except OSError:
                return
            self._queue.put((copy, offset, length))

    def close(self) -> None:
        """Start what was asked, then end the thread (later requests are ignored)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        call = self._call
        while True:
            item = self._queue.get()
            if item is None:
                return
            fd, offset, length = item
            try:
                call(fd, offset, length, _SYNC_FILE_RANGE_WRITE)
            finally:
                os.close(fd)


def fsync_directory(folder: Path) -> None:
    """Flush a folder's entries to disk (a file renamed or created in it then survives a power
    loss under that name); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (PermissionError, IsADirectoryError):
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
