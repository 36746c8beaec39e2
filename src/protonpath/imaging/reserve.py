"""The journal's reserve: slot files written out to disk in advance, while the listener is idle.

An instance written into an empty journal slot makes the file system allocate the slot's blocks
and grow its length, so the flush that must end before the peer is answered commits the file
system's journal as well as the data: 0.55 ms for a 512 KB CT slice on ext4 over a virtual disk,
against 0.22-0.28 ms for the same bytes written over blocks already allocated, written and synced,
flushed with ``fdatasync`` (AMD EPYC, 2026-12-04). Databases do the same for their logs
(PostgreSQL recycles its WAL segments rather than create new ones).

:class:`JournalReserve` keeps ``count`` such files in ``incoming/.reserve/``, each a file of
zeros of the length most of the last instances had, rounded up to the file system's block (at
first, and at most, ``slot_bytes``), written and synced by its own thread (``dicom-journal-reserve``) when no association has
been open for ``idle_s`` seconds, one file at a time, stopping as soon as one opens and whenever
the disk would keep less than ``min_free_bytes`` free. The listener takes its slots from the
reserve while it has some (renamed into the association's folder, whose sync makes their new
names durable as for empty slots), and empty new files once it is empty; a slot never written
goes back. The zeros past an instance's bytes are cut once its flush is over (see
:meth:`~protonpath.imaging.scp.DicomListener._write`); should the listener die between the two,
the start-up recovery cuts them (``recovery._recover_slot``). Why the lengths follow the
instances: a cut inside the file's last block takes 0.008 ms, one that frees blocks 0.07-0.09 ms
and more with the length cut (0.12 ms for 50 KiB, 0.23 ms for 500 KiB), in the receiving thread;
an instance longer than its slot grows the file, and its flush commits the journal again.

A slot file appears in the reserve under its ``.slot`` name only once its zeros are on disk (it
is written as ``.new`` first), so at start :meth:`JournalReserve.open` keeps every ``.slot`` file
of the right length and removes the rest. On file systems that copy on write (Btrfs, ZFS) the
blocks are new at each write anyway: the reserve then costs its idle writes and gains nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path

from protonpath.imaging.aio import fsync_directory

LOGGER = logging.getLogger(__name__)

#: The reserve's folder, inside the listener's incoming folder (the same file system: its files
#: are renamed into association folders).
RESERVE_DIR = ".reserve"
#: The journal's slot files, in association folders and in the reserve.
SLOT_SUFFIX = ".slot"
_NEW_SUFFIX = ".new"
#: How many of the last instances' lengths the next files' length is drawn from.
RECENT = 256
#: Zeros are written this much at a time.
_WRITE_BYTES = 1024 * 1024


class JournalReserve:
    """Slot files of zeros on disk, made while the listener is idle (see the module).

    Parameters
    ----------
    folder : pathlib.Path
        Where the reserve's files lie (made if missing).
    count : int
        How many files the reserve holds when full.
    slot_bytes : int
        The longest file: the length of the first files made, and of later ones when the
        instances noted (:meth:`note`) were longer. An instance up to its slot's length (with
        its file header) is written over blocks already on disk; a longer one grows the file,
        and its flush commits the file system's journal as an empty slot's does.
    idle : callable
        True while no association is open; the reserve is filled only then.
    idle_s : float
        How long the listener must have been idle (since :meth:`wake`) before filling starts.
    min_free_bytes : int
        Free space the disk keeps: no file is made that would leave less.
    """

    def __init__(
        self,
        folder: Path,
        *,
        count: int,
        slot_bytes: int,
        idle: Callable[[], bool],
        idle_s: float = 1.0,
        min_free_bytes: int = 0,
    ):
        self.folder = Path(folder)
        self.count = max(0, int(count))
        self.slot_bytes = max(4096, int(slot_bytes))
        self._idle = idle
        self.idle_s = idle_s
        self.min_free_bytes = min_free_bytes
        self._files: dict[Path, int] = {}  # file -> its length
        self._recent: deque[int] = deque()  # the last instances' lengths, in whole blocks
        self._lengths: Counter[int] = Counter()
        self.block = 4096
        self._cv = threading.Condition()
        self._woken_at: float | None = None
        self._given_up = False  # the last filling stopped for want of space, or failed
        self._closing = False
        self._thread: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Take stock of the files an earlier listener left (each ``.slot`` file no longer than
        ``slot_bytes`` is kept, anything else removed), then fill the reserve in the background
        once the listener is idle."""
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self.block = max(512, os.statvfs(self.folder).f_bsize)
        except (OSError, AttributeError):
            pass
        kept: dict[Path, int] = {}
        removed = 0
        for path in sorted(self.folder.iterdir()):
            try:
                size = path.stat().st_size if path.suffix == SLOT_SUFFIX and path.is_file() else 0
            except OSError:
                size = 0
            if self._fits(size) and len(kept) < self.count:
                kept[path] = size
                continue
            try:
                path.unlink()
                removed += 1
            except IsADirectoryError:
                pass
            except OSError:
                LOGGER.warning("could not remove a file from the journal's reserve")
        if removed:
            LOGGER.info("journal reserve: %d file(s) left by an earlier listener removed", removed)
        with self._cv:
            self._files = kept
            self._closing = False
        LOGGER.info("journal reserve: %d of %d slot file(s) on disk, the rest made once the listener is idle",
                    len(kept), self.count)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dicom-journal-reserve", daemon=True)
            self._thread.start()
        self.wake()

    def close(self) -> None:
        """Stop filling (a file being made is finished first). The files stay for the next start."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=30)

    # --- the listener's side ------------------------------------------------------------------

    @property
    def available(self) -> int:
        """Files in the reserve now."""
        with self._cv:
            return len(self._files)

    def lengths(self) -> list[int]:
        """The lengths of the files in the reserve now."""
        with self._cv:
            return sorted(self._files.values())

    def take(self, count: int) -> list[Path]:
        """Up to ``count`` files out of the reserve, now the caller's (to rename): those whose
        length fits the next instances best (:attr:`next_length` or just over, then the
        longest of the shorter ones)."""
        if count <= 0:
            return []
        with self._cv:
            wanted = self._next_length()
            best = sorted(self._files, key=lambda path: _misfit(self._files[path], wanted))[:count]
            for path in best:
                del self._files[path]
        return best

    def give_back(self, path: Path) -> bool:
        """Put a slot taken and never written back into the reserve (False: it is not, and
        stays the caller's to remove: the reserve is full or closing, or the file is empty,
        made when the reserve had run out)."""
        with self._cv:
            if len(self._files) >= self.count or self._closing:
                return False
        try:
            size = path.stat().st_size
            if not self._fits(size):
                return False
            target = self.folder / f"{uuid.uuid4().hex}{SLOT_SUFFIX}"
            os.rename(path, target)
        except OSError:
            return False
        with self._cv:
            self._files[target] = size
        return True

    def note(self, length: int) -> None:
        """An instance of ``length`` bytes (its whole file) was written: the next files made
        take the length most of the last :data:`RECENT` instances that fit had, rounded up to
        the file system's block."""
        blocks = -(-length // self.block) * self.block
        if blocks > self.slot_bytes:
            return
        with self._cv:
            self._recent.append(blocks)
            self._lengths[blocks] += 1
            if len(self._recent) > RECENT:
                old = self._recent.popleft()
                self._lengths[old] -= 1
                if not self._lengths[old]:
                    del self._lengths[old]

    @property
    def next_length(self) -> int:
        """The length of the next files made (see :meth:`note`; before any is noted, the
        length most files in the reserve have, or ``slot_bytes`` when it is empty)."""
        with self._cv:
            return self._next_length()

    def _next_length(self) -> int:
        # before any instance, the length most files have (made to fit an earlier listener's
        # instances, not to be made anew at each start), else the longest
        lengths = self._lengths or Counter(self._files.values())
        if not lengths:
            return self.slot_bytes
        return max(lengths.items(), key=lambda item: (item[1], item[0]))[0]

    def _fits(self, size: int) -> bool:
        return 0 < size <= self.slot_bytes

    def wake(self) -> None:
        """The listener may be idle from now on: fill the reserve once it has been for ``idle_s``."""
        with self._cv:
            self._woken_at = time.monotonic()
            self._cv.notify_all()

    def wait_full(self, timeout_s: float) -> bool:
        """Wait until the filling has nothing left to do (``count`` files, all of
        :attr:`next_length`), or gave up (no space, an error); True if it has nothing left."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self._work_left() and not self._given_up:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(min(left, 0.1))
            return not self._work_left()

    # --- filling ------------------------------------------------------------------------------

    def _work_left(self) -> bool:
        """Files to make, or files of another length to make anew (under the lock)."""
        wanted = self._next_length()
        return len(self._files) < self.count or any(size != wanted for size in self._files.values())

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._closing and (self._woken_at is None or not self._work_left()):
                    self._cv.wait()
                if self._closing:
                    return
                woken_at = self._woken_at
                quiet_until = woken_at + self.idle_s
                while not self._closing and time.monotonic() < quiet_until:
                    self._cv.wait(quiet_until - time.monotonic())
                    if self._woken_at != woken_at:  # woken again: the quiet time starts anew
                        woken_at = self._woken_at
                        quiet_until = woken_at + self.idle_s
                if self._closing:
                    return
                self._woken_at = None  # an association's end wakes it again
                self._given_up = False
            self._fill()

    def _fill(self) -> None:
        """Make files of :attr:`next_length` while the listener is idle: first those missing,
        then anew those of another length (made for other instances, or by an earlier
        listener), the worst fitting first."""
        made = 0
        try:
            while True:
                with self._cv:
                    if self._closing or not self._work_left():
                        break
                    length = self._next_length()
                    misfit = None
                    if len(self._files) >= self.count:
                        misfit = max(self._files, key=lambda path: _misfit(self._files[path], length))
                        del self._files[misfit]
                if misfit is not None:
                    misfit.unlink(missing_ok=True)
                if not self._idle():
                    return  # an association opened: its end wakes the reserve again
                if not self._room(length):
                    LOGGER.warning("journal reserve: %d of %d file(s), the disk keeps too little free space for more",
                                   self.available, self.count)
                    self._give_up()
                    return
                path = self._make_one(length)
                with self._cv:
                    self._files[path] = length
                    self._cv.notify_all()
                made += 1
        except OSError as error:
            LOGGER.warning("journal reserve: could not make a file (%s)", error.strerror or type(error).__name__)
            self._give_up()
        finally:
            if made:
                try:
                    fsync_directory(self.folder)
                except OSError:
                    pass
                LOGGER.debug("journal reserve: %d file(s) made", made)

    def _give_up(self) -> None:
        with self._cv:
            self._given_up = True
            self._cv.notify_all()

    def _room(self, length: int) -> bool:
        try:
            stats = os.statvfs(self.folder)
        except (OSError, AttributeError):
            return True
        return stats.f_bavail * stats.f_frsize - length >= self.min_free_bytes

    def _make_one(self, length: int) -> Path:
        """One file of ``length`` zeros, on disk, under its ``.slot`` name."""
        name = uuid.uuid4().hex
        new = self.folder / f"{name}{_NEW_SUFFIX}"
        zeros = bytes(min(length, _WRITE_BYTES))
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            try:
                left = length
                while left:
                    left -= os.write(fd, zeros[: min(left, len(zeros))])
                os.fdatasync(fd)  # blocks allocated and written: later writes over them allocate nothing
            finally:
                os.close(fd)
            path = self.folder / f"{name}{SLOT_SUFFIX}"
            os.rename(new, path)
        except BaseException:
            new.unlink(missing_ok=True)
            raise
        return path


def _misfit(size: int, wanted: int) -> tuple[bool, int]:
    """How badly a file of ``size`` bytes fits instances of ``wanted``: one at least as long, by
    what it has too much (cut later); one shorter (the instance grows it) after any such."""
    return (size < wanted, abs(size - wanted))

