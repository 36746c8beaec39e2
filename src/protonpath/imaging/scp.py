"""The DICOM network receiver: C-ECHO, C-STORE of every storage SOP class, study-level C-FIND.

:class:`DicomListener` wraps a pynetdicom Application Entity. Each instance received over C-STORE
is written as a DICOM Part 10 file straight from the bytes on the wire (never decoded): the
preamble and file meta information, then the dataset as the peer encoded it. The bytes go into
a journal slot made in advance (one disk flush per instance with ``fsync``; a slot of the
journal's reserve, zeros already on disk, where there is one: :mod:`.reserve`), sealed with the
data set's length and BLAKE3 digest, so that a file cut short by a crash is told apart from a whole
one and everything stored before a cut is kept. Each
stored file is handed to the ``on_instance`` callable (the storage sink), which attaches it to a
patient's request or keeps it for staff to match; if the sink refuses it, the file is removed and
the peer told so.

C-FIND answers at STUDY level of the Study Root information model from a ``find_studies``
callable that returns candidate records; the listener applies DICOM matching (PS3.4 C.2.2.2) to
them, so the callable may pre-filter coarsely.

Peers are held to limits (:class:`ListenerSettings`, enforced in :mod:`.reactor`): PDU sizes,
a time limit for every stage of an association, and open connections in all and per address.
:meth:`DicomListener.serve_forever` stops on SIGTERM as on SIGINT: new associations refused,
open ones given ``stop_grace_s`` to finish, then aborted, their transfers closed.

Logs carry AE titles, addresses and counts, never UIDs or patient data.
"""

from __future__ import annotations

import logging
import mmap
import os
import re
import signal
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    PYNETDICOM_IMPLEMENTATION_UID,
    AllStoragePresentationContexts,
    _config,
    evt,
)
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

from protonpath.imaging import aio, digests
from protonpath.imaging.aio import fsync_directory
from protonpath.imaging.checks import InstanceHeader
from protonpath.imaging.reactor import (
    MAX_PDU_CAP,
    BoundedAssociationServer,
    NetworkLimits,
    PromptRequestHandler,
)
from protonpath.imaging.reserve import RESERVE_DIR, SLOT_SUFFIX, JournalReserve

LOGGER = logging.getLogger(__name__)

#: C-STORE statuses (PS3.4 Table B.2-1) and C-FIND statuses (PS3.4 Table C.4-1).
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_REFUSED = 0xA900
STATUS_FIND_PENDING = 0xFF00
STATUS_FIND_CANCELLED = 0xFE00
STATUS_FIND_UNABLE_TO_PROCESS = 0xC000
STATUS_FIND_IDENTIFIER_MISMATCH = 0xA900

#: Transfer syntaxes accepted for storage: uncompressed, deflated, RLE and the image codecs
#: (JPEG, JPEG-LS, JPEG 2000, HTJ2K, JPEG XL). Video syntaxes (MPEG, HEVC, SMPTE 2110) are left
#: out: not radiotherapy data, and every syntax listed here is copied for each association.
STORAGE_TRANSFER_SYNTAXES = [
    ts for ts in ALL_TRANSFER_SYNTAXES
    if not ts.startswith(("1.2.840.10008.1.2.4.10", "1.2.840.10008.1.2.7.", "1.2.840.10008.1.2.4.94", "1.2.840.10008.1.2.4.95"))
]

#: After the grace of a graceful stop, how long aborted associations may take to end (a C-STORE
#: being filed finishes first); the process exits within ``stop_grace_s`` plus this.
ABORT_WAIT_S = 10.0

_UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")
#: Where listeners before the journal's slots wrote their temporary ``.part`` files (the
#: start-up reconciliation still removes what one of them left).
PARTIAL_DIR = ".partial"

#: The journal (see :meth:`DicomListener._write`): ``incoming/<association>/<n>.slot`` files
#: (:data:`SLOT_SUFFIX`, the reserve's too), made in advance and synced with their folder, each
#: then written with one instance.
#: Slots made at an association's first instance; each time they run out, twice as many, up
#: to :data:`MAX_SLOTS` (one folder sync per batch of slots).
FIRST_SLOTS = 4
MAX_SLOTS = 64
#: Slots left in an association's batch when the next batch is begun, in the background: at
#: 200-250 instances/s, 30-40 ms ahead of need, more than a batch takes on a quiet disk; and
#: few enough that an association that ends seldom leaves a batch made for nothing.
SLOTS_AHEAD = 8
#: With ``fsync`` and ``early_writeback``, the writeback of an instance's journal file is
#: started each time this much more of its data set has been written (see JournalEntry.write).
WRITEBACK_BYTES = 256 * 1024
#: The journal reserve's longest file (see :mod:`.reserve`): a 512 x 512 slice of 16 bits with up
#: to 64 KiB of other attributes (the settings' 512 such files, 288 MiB, take a CT study of that size).
RESERVE_SLOT_BYTES = 576 * 1024
RESERVE_MIN_FREE_BYTES = 1024**3
#: Threads flushing journal files (one flush at a time per association; several associations
#: may flush at once).
SYNC_THREADS = 4
#: Private Information Creator UID (0002,0100) of the seal the listener writes in each file's
#: meta information (a UUID-derived UID, PS3.5 B.2), and the seal's (0002,0102) layout: magic,
#: the data set's length (8 bytes, little endian) and its digest (32 bytes): BLAKE3 after
#: magic ``PPJ2``, SHA-256 after ``PPJ1`` (files sealed before BLAKE3, still recovered).
JOURNAL_SEAL_CREATOR_UID = "2.25.168871145352364551718259961535756849068"
JOURNAL_SEAL_MAGIC = b"PPJ2"
_LEGACY_SEAL_MAGIC = b"PPJ1"
_SEAL_LENGTH = len(JOURNAL_SEAL_MAGIC) + 8 + 32


@dataclass(frozen=True)
class ListenerSettings:
    """How the listener presents itself and where it writes.

    Attributes
    ----------
    incoming_dir : pathlib.Path
        The journal: received files are written into slots made in advance,
        ``incoming_dir/<association id>/<n>.slot``, each a Part 10 file whose meta information
        carries a seal (the data set's length and digest, :func:`journal_entry_digest`).
    ae_title : str
        Our AE title; associations called with another title are rejected.
    host, port : str, int
        Where to listen; port 0 picks a free port (see :attr:`DicomListener.port`).
    allowed_calling_ae_titles : frozenset of str, optional
        Only these peers may associate; None lets any peer in.
    maximum_pdu_size : int
        Largest P-DATA-TF PDU we accept, in bytes, announced to peers; a peer sending a larger
        one is aborted. 0 announces :data:`~protonpath.imaging.reactor.MAX_PDU_CAP` (64 MiB).
        Larger PDUs mean fewer reads per instance.
    fsync : bool
        Before an instance is acknowledged, flush its file to disk: what a peer was told is
        stored survives a power cut. The slot's name is on disk already (its folder is synced
        when slots are made, the association's folder's parent when the folder is made), so
        this is one flush per instance (about 3 ms on a virtual disk). Without it, a file
        complete in the page cache survives a killed listener only.
    kernel_flush : bool
        With ``fsync``, hand each flush to the kernel (Linux AIO, :mod:`.aio`) and wait for it
        in the receiving thread once the instance is checked, instead of flushing in a thread
        of the listener's (the way where Linux AIO is not to be had, or with False).
    early_writeback : bool
        With ``fsync``, start writing each instance's journal file out to disk while the rest
        of it arrives (every :data:`WRITEBACK_BYTES`, ``sync_file_range`` in a
        ``dicom-journal-writeback`` thread that nothing waits for), so that its flush has less
        left to do once the instance is complete.
    journal_reserve : int
        With ``fsync``, how many slot files of zeros the journal keeps on disk, made while no
        association is open (:mod:`.reserve`, ``incoming_dir/.reserve/``): an instance that fits
        in one is flushed without the file system allocating anything, in half the time of an
        empty slot. 0 (the default here; ``dicom_listen`` takes ``DICOM_JOURNAL_RESERVE``, 512):
        every slot is a new, empty file.
    journal_reserve_slot_bytes : int
        The longest reserve file: the first ones are made this long, later ones as long as
        most of the last instances were (rounded up to the file system's block), so that the
        zeros cut past each instance are within its last block. A longer instance grows its
        file (and is flushed as in an empty slot).
    journal_reserve_min_free_bytes : int
        The reserve is not filled past what would leave the disk less than this free.
    journal_reserve_idle_s : float
        How long no association must have been open before the reserve is filled.
    network_timeout_s : float
        An association with nothing received for this long is aborted (idle time).
    acse_timeout_s : float
        pynetdicom's ARTIM timer: waits for a release answer or for the peer to close.
    dimse_timeout_s : float
        One DIMSE message (command and data set) must arrive within this, from its first
        fragment to its last.
    request_timeout_s : float
        From the connection to its complete A-ASSOCIATE-RQ.
    pdu_header_timeout_s, pdu_body_timeout_s : float
        A PDU's 6-byte header, once begun; its body, once the header is in.
    max_control_pdu_bytes : int
        Largest PDU before the association, and of any other type than P-DATA-TF.
    max_associations, max_associations_per_address : int
        Open connections in all, and from one peer address; more are rejected at once
        (A-ASSOCIATE-RJ, transient, local limit exceeded).
    max_message_bytes : int
        Largest DIMSE message (an instance with its command), held in memory until complete;
        a peer sending a larger one is aborted.
    stop_grace_s : float
        On SIGTERM or SIGINT, how long open associations may go on before they are aborted.
    """

    incoming_dir: Path
    ae_title: str = "PROTONPATH"
    host: str = "0.0.0.0"
    port: int = 11112
    allowed_calling_ae_titles: frozenset[str] | None = None
    maximum_pdu_size: int = 4 * 1024 * 1024
    fsync: bool = True
    kernel_flush: bool = True
    early_writeback: bool = True
    journal_reserve: int = 0
    journal_reserve_slot_bytes: int = RESERVE_SLOT_BYTES
    journal_reserve_min_free_bytes: int = RESERVE_MIN_FREE_BYTES
    journal_reserve_idle_s: float = 1.0
    network_timeout_s: float = 60.0
    acse_timeout_s: float = 30.0
    dimse_timeout_s: float = 300.0
    # the reactors' limits, with their defaults (one place: NetworkLimits)
    request_timeout_s: float = NetworkLimits.request_timeout_s
    pdu_header_timeout_s: float = NetworkLimits.pdu_header_timeout_s
    pdu_body_timeout_s: float = NetworkLimits.pdu_body_timeout_s
    max_control_pdu_bytes: int = NetworkLimits.max_control_pdu_bytes
    max_associations: int = NetworkLimits.max_associations
    max_associations_per_address: int = NetworkLimits.max_associations_per_address
    max_message_bytes: int = NetworkLimits.max_message_bytes
    stop_grace_s: float = 30.0

    def limits(self) -> NetworkLimits:
        """The limits the association reactors enforce."""
        return NetworkLimits(
            request_timeout_s=self.request_timeout_s,
            pdu_header_timeout_s=self.pdu_header_timeout_s,
            pdu_body_timeout_s=self.pdu_body_timeout_s,
            max_control_pdu_bytes=self.max_control_pdu_bytes,
            max_associations=self.max_associations,
            max_associations_per_address=self.max_associations_per_address,
            max_message_bytes=self.max_message_bytes,
        )


@dataclass(frozen=True)
class ReceivedInstance:
    """One instance stored from the network, handed to the sink.

    Attributes
    ----------
    path : pathlib.Path
        The complete Part 10 file. The sink may move it (into the storage backend) or leave it,
        once ``wait_durable`` has returned: until then, a file written over a slot of the
        journal's reserve may hold zeros past its bytes (cut once it is on disk); ``data``
        holds them exactly.
    sop_class_uid, sop_instance_uid, transfer_syntax_uid : str
    calling_ae_title, called_ae_title : str
    peer_address : str
    peer_port : int
    association_id : str
        Same for every instance of one association, to group a transfer.
    """

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    calling_ae_title: str
    called_ae_title: str
    peer_address: str
    peer_port: int
    association_id: str
    #: The file's bytes, when the listener still holds them (None: read ``path``).
    data: bytes | None = field(default=None, repr=False, compare=False)
    #: Digest (:mod:`~protonpath.imaging.digests` text) of the data set without file meta, when
    #: the listener sealed the file with it.
    dataset_digest: str = field(default="", compare=False)
    #: With ``fsync``, the file's flush to disk runs while the sink checks the instance: this
    #: returns once the file is on disk (raises OSError if the flush failed). A sink that makes
    #: the instance known anywhere else (an index writer, another process) calls it first; the
    #: listener calls it anyway before it answers the peer. None: nothing to wait for.
    wait_durable: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    #: With ``fsync``, the digest text of the whole file, computed while its flush runs: this
    #: returns it. None: not computed (hash ``data``).
    file_digest: Callable[[], str] | None = field(default=None, repr=False, compare=False)

    def header(self) -> InstanceHeader:
        """Read the attributes the index and the checks need (pixel data not read)."""
        from pydicom import dcmread

        from protonpath.imaging.checks import header_from_dataset

        return header_from_dataset(dcmread(self.path, stop_before_pixels=True))


@dataclass(frozen=True)
class AssociationSummary:
    """What one association brought, handed to ``on_association_end``.

    ``outcome`` is 'released' when the peer ended normally, 'aborted' when the association was
    aborted or the connection dropped: instances counted in ``stored`` are kept either way.
    """

    association_id: str
    calling_ae_title: str
    peer_address: str
    stored: int
    refused: int
    outcome: Literal["released", "aborted"]
    #: Of ``stored``, the instances the sink already had (it returned :data:`DUPLICATE`).
    duplicates: int = 0


#: What a sink returns for an instance it already holds, identical: acknowledged with success,
#: counted and logged as a duplicate rather than as stored.
DUPLICATE = "duplicate"


class StoreStatus(int):
    """A C-STORE status with the Error Comment (0000,0902) the response carries (64 characters
    at most, no patient data)."""

    error_comment: str

    def __new__(cls, status: int, error_comment: str = ""):
        value = super().__new__(cls, status)
        value.error_comment = error_comment[:64]
        return value


class InstanceRefused(Exception):
    """Raised by a sink that will not keep an instance; the peer gets ``status`` and, when given,
    ``comment`` as the response's Error Comment (no patient data: peers log it)."""

    def __init__(self, reason: str, status: int = STATUS_REFUSED, comment: str = ""):
        super().__init__(reason)
        self.status = status
        self.comment = comment


@dataclass(frozen=True)
class StudyQuery:
    """A study-level C-FIND request as plain data.

    Attributes
    ----------
    filters : dict
        Keyword -> match value for every key with a non-empty value (wildcards, ranges and UID
        lists as DICOM writes them).
    return_keys : tuple of str
        Every keyword the peer asked for, to be filled in each answer.
    calling_ae_title : str
    """

    filters: dict[str, str]
    return_keys: tuple[str, ...]
    calling_ae_title: str


InstanceSink = Callable[[ReceivedInstance], None]
StudyFinder = Callable[[StudyQuery], Iterable[Mapping[str, str]]]
AssociationEnd = Callable[[AssociationSummary], None]


@dataclass
class _Transfer:
    association_id: str
    calling_ae_title: str
    peer_address: str
    stored: int = 0
    refused: int = 0
    duplicates: int = 0
    ended: bool = False
    folder_made: bool = False  # incoming/<association id>/ exists
    slots: list[Path] = field(default_factory=list)  # made, synced, not yet written (last first)
    slots_made: int = 0
    making: Future[None] | None = None  # the next batch of slots, made ahead of need
    entries: set[JournalEntry] = field(default_factory=set)  # slots being written as data arrive


class JournalEntry:
    """A journal slot written while its instance arrives (see :meth:`DicomListener._open_entry`):
    the data set's fragments go in as they are received, after room left for the file's header
    (preamble and file meta, whose seal needs the whole data set); :meth:`DicomListener._write`
    writes the rest, then the header. Until then the slot holds no ``DICM`` and no seal: should
    the listener die, the start-up recovery removes it as written in part."""

    __slots__ = ("path", "fd", "offset", "written", "failed", "_transfer", "_lock", "writeback", "written_back")

    def __init__(self, path: Path, fd: int, offset: int, transfer: _Transfer, lock: threading.Lock):
        self.path = path
        self.fd = fd
        self.offset = offset  # the header's length: where the data set begins
        self.written = 0  # data set bytes in the file
        self.failed: OSError | None = None
        self.writeback: aio.Writeback | None = None
        self.written_back = 0  # data set bytes whose writeback was started
        self._transfer = transfer
        self._lock = lock

    def write(self, chunk: bytes | memoryview) -> None:
        """Append data set bytes (a failure is kept, and raised by :meth:`finish`)."""
        if self.failed is not None:
            return
        try:
            _pwrite_all(self.fd, chunk, self.offset + self.written)
        except OSError as error:
            self.failed = error
            return
        self.written += len(chunk)
        # the writeback of what is written so far begins (the flush then has the rest to do)
        # (past the first page, which the header is written into last: a page being written out
        # may not change under it on disks that want stable pages)
        if self.writeback is not None and self.written - self.written_back >= WRITEBACK_BYTES:
            start = max(self.offset + self.written_back, mmap.PAGESIZE)
            self.writeback.start(self.fd, start, self.offset + self.written - start)
            self.written_back = self.written

    def take(self) -> None:
        """The instance is being stored: the association's end no longer removes this slot."""
        with self._lock:
            self._transfer.entries.discard(self)

    def discard(self) -> None:
        """Close and remove the slot (the instance never came whole, or is written elsewhere)."""
        self.take()
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
        self.path.unlink(missing_ok=True)


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    with memoryview(data) as view:
        done = 0
        while done < len(view):
            done += os.pwrite(fd, view[done:], offset + done)


class DicomListener:
    """A DICOM Storage and Query SCP.

    Parameters
    ----------
    settings : ListenerSettings
    on_instance : callable
        Called with a :class:`ReceivedInstance` for every instance stored, from the association's
        thread (so it must be thread-safe). Raise :class:`InstanceRefused` to refuse it.
    find_studies : callable, optional
        Called with a :class:`StudyQuery`; returns records (keyword -> DICOM string value). When
        absent, C-FIND is not offered.
    on_association_end : callable, optional
        Called with an :class:`AssociationSummary` when an association ends, however it ends.
    before_release : callable, optional
        Called with the association id when the peer asks to release, before the release is
        answered (a sink that commits in batches commits the association's instances then, so
        that what the peer sent is indexed when it is told the association is over).

    Examples
    --------
    >>> listener = DicomListener(ListenerSettings(Path("/tmp/in"), port=0), on_instance=print)
    >>> listener.start()          # doctest: +SKIP
    >>> listener.port             # doctest: +SKIP
    >>> listener.stop()           # doctest: +SKIP
    """

    def __init__(
        self,
        settings: ListenerSettings,
        on_instance: InstanceSink,
        find_studies: StudyFinder | None = None,
        on_association_end: AssociationEnd | None = None,
        before_release: Callable[[str], None] | None = None,
    ):
        self.settings = settings
        self._before_release = before_release
        self._on_instance = on_instance
        self._find_studies = find_studies
        self._on_association_end = on_association_end
        self._server: Any = None
        self._transfers: dict[int, _Transfer] = {}
        self._lock = threading.Lock()
        # journal files flushed to disk while the sink checks them (see _write)
        self._syncer: ThreadPoolExecutor | None = None
        self._slot_maker: ThreadPoolExecutor | None = None
        self._writeback: aio.Writeback | None = None
        self._reserve: JournalReserve | None = None
        self.ae = self._build_ae()

    # --- life cycle ---------------------------------------------------------------------------

    def _build_ae(self) -> AE:
        # pynetdicom's standard handlers format a log line for every PDU and message even when
        # nobody reads them; they cost a fifth of the receive time. This listener logs its own.
        _config.LOG_HANDLER_LEVEL = "none"
        # C-FIND identifiers carry patient names: never in the logs.
        _config.LOG_REQUEST_IDENTIFIERS = False
        _config.LOG_RESPONSE_IDENTIFIERS = False
        ae = AE(ae_title=self.settings.ae_title)
        # every PDU read has a bound: what we announce (see reactor.NetworkLimits)
        ae.maximum_pdu_size = self.settings.maximum_pdu_size or MAX_PDU_CAP
        ae.network_timeout = self.settings.network_timeout_s
        ae.acse_timeout = self.settings.acse_timeout_s
        ae.dimse_timeout = self.settings.dimse_timeout_s
        ae.require_called_aet = True
        ae.maximum_associations = self.settings.max_associations
        if self.settings.allowed_calling_ae_titles is not None:
            ae.require_calling_aet = sorted(self.settings.allowed_calling_ae_titles)
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, STORAGE_TRANSFER_SYNTAXES)
        if self._find_studies is not None:
            ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind, ALL_TRANSFER_SYNTAXES)
        return ae

    def _handlers(self) -> list[tuple[Any, Callable[..., Any]]]:
        handlers = [
            (evt.EVT_C_STORE, self._handle_store),
            (evt.EVT_ACCEPTED, self._handle_accepted),
            (evt.EVT_RELEASED, self._handle_released),
            (evt.EVT_ABORTED, self._handle_aborted),
            (evt.EVT_CONN_CLOSE, self._handle_closed),
            (evt.EVT_REJECTED, self._handle_rejected),
        ]
        if self._find_studies is not None:
            handlers.append((evt.EVT_C_FIND, self._handle_find))
        return handlers

    def start(self) -> None:
        """Listen in background threads and return at once."""
        Path(self.settings.incoming_dir).mkdir(parents=True, exist_ok=True)
        if self.settings.fsync and self._syncer is None:
            self._syncer = ThreadPoolExecutor(max_workers=SYNC_THREADS, thread_name_prefix="dicom-journal-sync")
        if self._slot_maker is None:
            self._slot_maker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dicom-journal-slots")
        if self.settings.fsync and self.settings.early_writeback and self._writeback is None:
            writeback = aio.Writeback()
            self._writeback = writeback if writeback.available else None
        if self.settings.fsync and self.settings.journal_reserve > 0 and self._reserve is None:
            reserve = JournalReserve(
                Path(self.settings.incoming_dir) / RESERVE_DIR,
                count=self.settings.journal_reserve,
                slot_bytes=self.settings.journal_reserve_slot_bytes,
                idle=lambda: not self._transfers,
                idle_s=self.settings.journal_reserve_idle_s,
                min_free_bytes=self.settings.journal_reserve_min_free_bytes,
            )
            reserve.open()
            self._reserve = reserve
        # pynetdicom's server, with associations that serve each message as soon as it has
        # arrived instead of polling every millisecond (see reactor.py)
        server = self.ae.make_server(
            (self.settings.host, self.settings.port),
            evt_handlers=self._handlers(),
            server_class=BoundedAssociationServer,
            request_handler=PromptRequestHandler,
        )
        server.fast_store = self._store  # C-STORE served straight from the reactor
        server.open_store = self._open_entry  # and written into its slot as it arrives
        server.limits = self.settings.limits()
        server.slots_lock = threading.Lock()
        server.refusing = False
        server.before_release = self._releasing
        thread = threading.Thread(target=server.serve_forever, name="dicom-listener", daemon=True)
        thread.start()
        self.ae._servers.append(server)  # so that server.shutdown() can take it off the AE
        self._server = server
        LOGGER.info("DICOM listener %s on %s:%d", self.settings.ae_title, self.settings.host, self.port)

    def serve_forever(self, stop_signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
        """Listen until one of ``stop_signals`` arrives (for the command line), then stop
        gracefully (:meth:`stop` with the settings' ``stop_grace_s``); a second signal aborts
        the open associations at once. Signals are only caught in the main thread; elsewhere
        this listens until the process ends."""
        stopping = threading.Event()
        hurry = threading.Event()

        def on_signal(signum: int, frame: object) -> None:
            if stopping.is_set():
                hurry.set()
            stopping.set()

        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in stop_signals:
                previous[signum] = signal.signal(signum, on_signal)
        try:
            self.start()
            while not stopping.wait(0.5):
                pass
            LOGGER.info("DICOM listener %s stopping", self.settings.ae_title)
        finally:
            self.stop(grace_s=self.settings.stop_grace_s, hurry=hurry)
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def stop(self, grace_s: float | None = None, hurry: threading.Event | None = None) -> None:
        """Stop listening.

        Without ``grace_s``, open associations go on by themselves. With it, new connections
        are refused at once, open associations have ``grace_s`` seconds to end, then are
        aborted (or as soon as ``hurry`` is set); returns once every one has ended and its
        transfer is closed."""
        server = self._server
        if server is None:
            return
        self._server = None
        server.refusing = True  # connections accepted before the socket closes are rejected
        server.shutdown()
        if grace_s is not None:
            self._drain(server, grace_s, hurry or threading.Event())
        writeback, self._writeback = self._writeback, None
        if writeback is not None:  # associations still open flush without it
            writeback.close()
        reserve, self._reserve = self._reserve, None
        if reserve is not None:  # associations still open make empty slots
            reserve.close()

    @property
    def reserve(self) -> JournalReserve | None:
        """The journal's reserve (None without ``fsync`` or with ``journal_reserve`` 0)."""
        return self._reserve

    def _drain(self, server: Any, grace_s: float, hurry: threading.Event) -> None:
        deadline = time.monotonic() + grace_s
        open_now = server.active_associations
        if open_now:
            LOGGER.info("waiting up to %g s for %d open association(s)", grace_s, len(open_now))
        while open_now and time.monotonic() < deadline and not hurry.is_set():
            time.sleep(0.05)
            open_now = server.active_associations
        for assoc in open_now:
            LOGGER.warning("association from %s aborted: the listener is stopping", assoc.requestor.address)
            request_stop = getattr(assoc, "request_stop", None)
            if request_stop is not None:
                request_stop()
            else:
                assoc.abort()
        ended_by = time.monotonic() + ABORT_WAIT_S
        while server.active_associations and time.monotonic() < ended_by:
            time.sleep(0.02)
        # connections dropped without release or abort are ended by a timer: end them now
        with self._lock:
            left = list(self._transfers)
        for key in left:
            self._end_key(key, "aborted")

    @property
    def port(self) -> int:
        """The port really listened on (useful with port 0)."""
        if self._server is None:
            return self.settings.port
        return int(self._server.server_address[1])

    def __enter__(self) -> DicomListener:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- associations -------------------------------------------------------------------------

    def _transfer(self, assoc: Any) -> _Transfer:
        key = id(assoc)
        with self._lock:
            transfer = self._transfers.get(key)
            if transfer is None:
                transfer = _Transfer(
                    association_id=uuid.uuid4().hex,
                    calling_ae_title=str(assoc.requestor.ae_title),
                    peer_address=str(assoc.requestor.address),
                )
                self._transfers[key] = transfer
            return transfer

    def _releasing(self, assoc: Any) -> None:
        if self._before_release is not None:
            self._before_release(self._transfer(assoc).association_id)

    def _handle_accepted(self, event: Any) -> None:
        transfer = self._transfer(event.assoc)
        LOGGER.info("association from %s (%s) accepted", transfer.calling_ae_title, transfer.peer_address)

    def _handle_rejected(self, event: Any) -> None:
        """Say who was turned away and why (AE titles, address and the reason; no patient data)."""
        assoc = event.assoc
        primitive = getattr(assoc.acceptor, "primitive", None)
        reason = _REJECT_REASONS.get(
            (getattr(primitive, "result_source", None), getattr(primitive, "diagnostic", None)), "no reason given"
        )
        requested = getattr(assoc.requestor, "primitive", None)
        LOGGER.warning(
            "rejecting association from AE %s (%s) calling AE %s: %s",
            _printable(str(assoc.requestor.ae_title)), assoc.requestor.address,
            _printable(str(getattr(requested, "called_ae_title", "") or "")), reason,
        )

    def _handle_released(self, event: Any) -> None:
        self._end(event.assoc, "released")

    def _handle_aborted(self, event: Any) -> None:
        self._end(event.assoc, "aborted")

    def _handle_closed(self, event: Any) -> None:
        # The connection closes just before pynetdicom reports a release or an abort; should it
        # report neither (a connection dropped before the association was set up), end the
        # transfer as aborted shortly after. _end only acts once.
        timer = threading.Timer(2.0, self._end, (event.assoc, "aborted"))
        timer.daemon = True
        timer.start()

    def _end(self, assoc: Any, outcome: Literal["released", "aborted"]) -> None:
        self._end_key(id(assoc), outcome)

    def _end_key(self, key: int, outcome: Literal["released", "aborted"]) -> None:
        with self._lock:
            transfer = self._transfers.get(key)
            if transfer is None or transfer.ended:
                return
            transfer.ended = True
            del self._transfers[key]
            unused, transfer.slots = transfer.slots, []
            unused += [entry.path for entry in transfer.entries]  # written in part: never whole
            transfer.entries = set()
            making, transfer.making = transfer.making, None
        if making is not None:  # a batch made ahead removes its slots itself, seeing the end
            try:
                making.result()
            except Exception:
                pass  # it failed: nothing of it is left
        self._drop_slots(unused)
        reserve = self._reserve
        if reserve is not None:
            reserve.wake()  # filled once the listener has been idle for a while
        LOGGER.info(
            "association from %s %s: %d stored, %d duplicate(s), %d refused",
            transfer.calling_ae_title, outcome, transfer.stored - transfer.duplicates, transfer.duplicates,
            transfer.refused,
        )
        if self._on_association_end is not None:
            self._on_association_end(
                AssociationSummary(
                    association_id=transfer.association_id,
                    calling_ae_title=transfer.calling_ae_title,
                    peer_address=transfer.peer_address,
                    stored=transfer.stored,
                    refused=transfer.refused,
                    outcome=outcome,
                    duplicates=transfer.duplicates,
                )
            )

    # --- C-STORE ------------------------------------------------------------------------------

    def _handle_store(self, event: Any) -> int:
        """EVT_C_STORE handler (for associations served by pynetdicom's own reactor)."""
        return self._store(event.assoc, event.request, str(event.context.transfer_syntax))

    def _store(self, assoc: Any, request: Any, transfer_syntax_uid: str) -> int:
        """Write one received instance and hand it to the sink; return the C-STORE status.

        Called by the association's reactor for each C-STORE request (``fast_store``)."""
        transfer = self._transfer(assoc)
        sop_instance_uid = str(request.AffectedSOPInstanceUID)
        if not _UID_PATTERN.match(sop_instance_uid) or len(sop_instance_uid) > 64:
            transfer.refused += 1
            return STATUS_CANNOT_UNDERSTAND
        sop_class_uid = str(request.AffectedSOPClassUID)
        try:
            path, data, digest, flushed, file_digest = self._write(
                assoc, request, transfer, sop_class_uid, sop_instance_uid, transfer_syntax_uid
            )
        except OSError:
            LOGGER.exception("could not write an instance from %s", transfer.calling_ae_title)
            transfer.refused += 1
            return STATUS_OUT_OF_RESOURCES
        received = ReceivedInstance(
            path=path,
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
            transfer_syntax_uid=transfer_syntax_uid,
            calling_ae_title=transfer.calling_ae_title,
            called_ae_title=str(assoc.acceptor.ae_title),
            peer_address=transfer.peer_address,
            peer_port=int(assoc.requestor.port),
            association_id=transfer.association_id,
            data=data,
            dataset_digest=digest,
            wait_durable=None if flushed is None else flushed.result,
            file_digest=None if file_digest is None else file_digest.result,
        )
        status, kept = self._hand_over(received, transfer)
        if flushed is not None:
            try:
                flushed.result()  # never acknowledged before its file is on disk
            except OSError:
                LOGGER.exception("could not flush an instance from %s to disk", transfer.calling_ae_title)
                if kept:  # the peer must send it again
                    transfer.stored -= 1
                    transfer.refused += 1
                    received.path.unlink(missing_ok=True)
                    return STATUS_OUT_OF_RESOURCES
        return status

    def _open_entry(self, assoc: Any, request: Any, transfer_syntax_uid: str) -> JournalEntry | None:
        """The journal slot a C-STORE request's data set is written into as its fragments
        arrive (called by the association's upper layer at the first fragment; ``open_store``
        of :mod:`.reactor`); None when the instance will be refused anyway (a malformed UID) or
        once the association has ended."""
        sop_instance_uid = str(request.AffectedSOPInstanceUID)
        if not _UID_PATTERN.match(sop_instance_uid) or len(sop_instance_uid) > 64:
            return None
        transfer = self._transfer(assoc)
        header_length = len(encode_file_header(
            sop_class_uid=str(request.AffectedSOPClassUID),
            sop_instance_uid=sop_instance_uid,
            transfer_syntax_uid=transfer_syntax_uid,
            source_ae_title=transfer.calling_ae_title,
            seal=bytes(_SEAL_LENGTH),
        ))
        slot = self._slot(transfer)
        try:
            fd = os.open(slot, os.O_WRONLY)  # no O_CREAT: a slot that vanished is an error
        except BaseException:
            slot.unlink(missing_ok=True)
            raise
        entry = JournalEntry(slot, fd, header_length, transfer, self._lock)
        entry.writeback = self._writeback
        with self._lock:
            ended = transfer.ended
            if not ended:
                transfer.entries.add(entry)
        if ended:
            entry.discard()
            return None
        return entry

    def _write(
        self,
        assoc: Any,
        request: Any,
        transfer: _Transfer,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
    ) -> tuple[Path, bytes, str, Future[None] | aio.Flush | _CutWhenFlushed | None, Future[str] | None]:
        """Write preamble, file meta (with the seal) and the peer's encoded dataset into the
        association's next journal slot; with ``fsync``, start flushing it to disk: handed to the
        kernel (``kernel_flush``, :mod:`.aio`; the index writer then hashes the whole file), or
        in a syncer thread that hashes the whole file meanwhile. Returns the
        file, its bytes, the data set's digest, the flush under way and the file's digest to
        come (both None without ``fsync``; the file's digest None with the kernel's flush).

        One flush per instance: the slot already exists and its name is on disk (made and
        synced in advance by :meth:`_slot`), so syncing the file makes both its content and its
        length durable, and no rename (with its folder sync) follows. The flush runs while the
        sink checks the instance (:attr:`ReceivedInstance.wait_durable`).
        A file cut short by a crash is told apart from a whole one by its seal
        (:func:`journal_entry_digest`)."""
        dul = getattr(assoc, "dul", None)
        entry = dul.take_journal_entry(request.DataSet) if hasattr(dul, "take_journal_entry") else None
        dataset = request.DataSet.getbuffer()
        hashed = dul.data_set_digest(request.DataSet) if hasattr(dul, "data_set_digest") else None
        seal, digest = journal_seal(dataset, hashed)
        header = encode_file_header(
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
            transfer_syntax_uid=transfer_syntax_uid,
            source_ae_title=transfer.calling_ae_title,
            seal=seal,
        )
        data = header + dataset  # the file's bytes, kept for the sink
        if entry is not None:
            entry.take()
            if entry.offset != len(header) or entry.failed is not None:
                if entry.failed is not None:
                    LOGGER.warning("writing an instance from %s as it arrived failed (%s); writing it whole",
                                   transfer.calling_ae_title, entry.failed.strerror)
                entry.discard()
                entry = None
        flushed: Future[None] | aio.Flush | _CutWhenFlushed | None = None
        file_digest: Future[str] | None = None
        if entry is None:
            slot = self._slot(transfer)
        else:
            slot = entry.path
        try:
            if entry is None:
                fd = os.open(slot, os.O_WRONLY)  # no O_CREAT: a slot that vanished is an error
            else:
                fd, entry.fd = entry.fd, -1
            try:
                if entry is None:
                    _pwrite_all(fd, data, 0)
                else:  # the data set so far is in: its rest, then the header before it
                    _pwrite_all(fd, dataset[entry.written :], len(header) + entry.written)
                    _pwrite_all(fd, header, 0)
                if self.settings.fsync:
                    if self._reserve is not None:
                        self._reserve.note(len(data))  # the reserve's next slots are made to fit
                    # a slot of the reserve is longer than its instance: the zeros past it are
                    # cut once it is on disk (cut before, the flush would commit the new length)
                    padded = os.fstat(fd).st_size > len(data)
                    syncer = self._syncer
                    kernel = aio.thread_flusher() if self.settings.kernel_flush else None
                    # data only (fdatasync): the slot's name is on disk already, and its length
                    # and blocks, which the flush needs to find the data, are synced with it
                    flushed = kernel.start(fd, data_only=True) if kernel is not None else None
                    if flushed is not None:
                        pass  # the kernel flushes it while the sink checks it; the writer hashes it
                    elif syncer is None:  # not started through start(): flush here
                        os.fdatasync(fd)
                        if padded:
                            os.ftruncate(fd, len(data))
                            padded = False
                    else:
                        flushed = syncer.submit(_sync_and_close, fd)
                        file_digest = syncer.submit(digests.of, data)
                    if flushed is not None and padded:
                        flushed = _CutWhenFlushed(flushed, slot, len(data))
            finally:
                if flushed is None:
                    os.close(fd)
        except BaseException:
            slot.unlink(missing_ok=True)
            raise
        return slot, data, digest, flushed, file_digest

    def _slot(self, transfer: _Transfer) -> Path:
        """The association's next empty journal slot.

        Slots are made in batches (the association's folder first, at its first instance),
        each batch twice the last up to :data:`MAX_SLOTS`, and with ``fsync`` their folder is
        synced once per batch, so that their names survive a power cut before any is written.
        Once the listener has started, the next batch is made in its own thread while the
        current one still has slots left: making 64 files and syncing their folder took from
        1 to over 100 ms, in the middle of a transfer, with the peer waiting for its answer."""
        with self._lock:
            slot = transfer.slots.pop() if transfer.slots else None
            ahead = transfer.making
        if slot is None and ahead is not None:
            try:
                ahead.result()  # the batch under way (its OSError, if any, refuses this one)
            finally:
                with self._lock:
                    if transfer.making is ahead:
                        transfer.making = None
                    slot = transfer.slots.pop() if transfer.slots else None
        if slot is None:
            self._make_slots(transfer)
            with self._lock:
                if not transfer.slots:  # none made: the association ended meanwhile
                    raise OSError("the association has ended")
                slot = transfer.slots.pop()
        self._make_slots_ahead(transfer)
        return slot

    def _make_slots_ahead(self, transfer: _Transfer) -> None:
        maker = self._slot_maker
        if maker is None:
            return
        with self._lock:
            if transfer.making is not None and transfer.making.done():
                transfer.making = None  # made (a failure shows when a slot is next made here)
            if transfer.ended or transfer.making is not None or len(transfer.slots) > SLOTS_AHEAD:
                return
            try:
                transfer.making = maker.submit(self._make_slots, transfer)
            except RuntimeError:  # the listener is shutting its threads down
                transfer.making = None

    def _make_slots(self, transfer: _Transfer) -> None:
        """Make the association's next batch of empty slots (see :meth:`_slot`)."""
        durable = self.settings.fsync
        folder = Path(self.settings.incoming_dir) / transfer.association_id
        with self._lock:
            if transfer.ended:
                return
            first = transfer.slots_made
            count = min(MAX_SLOTS, max(FIRST_SLOTS, first))  # doubles the slots made
            transfer.slots_made += count
            make_folder = not transfer.folder_made
            transfer.folder_made = True
        made: list[Path] = []
        reserved: list[Path] = []
        try:
            if make_folder:
                folder.mkdir(exist_ok=True)
                if durable:
                    fsync_directory(folder.parent)
            reserved = self._reserve.take(count) if self._reserve is not None else []
            for number in range(first, first + count):
                path = folder / f"{number:08d}{SLOT_SUFFIX}"
                while reserved:  # a file of the reserve, renamed: its blocks are on disk
                    try:
                        os.rename(reserved.pop(), path)
                        break
                    except FileNotFoundError:
                        continue
                else:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                made.append(path)
            if durable:
                fsync_directory(folder)
        except BaseException:
            self._drop_slots(made + reserved)
            if make_folder:
                with self._lock:
                    transfer.folder_made = False
            raise
        with self._lock:
            ended = transfer.ended
            if not ended:  # after the slots left (lower numbers, popped first)
                transfer.slots = made[::-1] + transfer.slots
        if ended:  # the association ended meanwhile: nothing will be written into them
            self._drop_slots(made)

    def _drop_slots(self, slots: Iterable[Path]) -> None:
        """Slots never written: back into the reserve, or removed."""
        reserve = self._reserve
        for slot in slots:
            if reserve is None or not reserve.give_back(slot):
                slot.unlink(missing_ok=True)

    def _hand_over(self, received: ReceivedInstance, transfer: _Transfer) -> tuple[int, bool]:
        """The sink's verdict: the status for the peer, and whether the sink kept the file (an
        instance stored, not refused, not a duplicate)."""
        try:
            kept = self._on_instance(received)
        except InstanceRefused as refusal:
            received.path.unlink(missing_ok=True)
            transfer.refused += 1
            LOGGER.info("instance from %s refused by the sink (status 0x%04X): %s",
                        transfer.calling_ae_title, refusal.status, refusal)
            return StoreStatus(refusal.status, refusal.comment), False
        except Exception:
            received.path.unlink(missing_ok=True)
            transfer.refused += 1
            LOGGER.exception("the sink failed on an instance from %s", transfer.calling_ae_title)
            return STATUS_OUT_OF_RESOURCES, False
        transfer.stored += 1
        if kept == DUPLICATE:
            transfer.duplicates += 1
            return STATUS_SUCCESS, False
        return STATUS_SUCCESS, True

    # --- C-FIND -------------------------------------------------------------------------------

    def _handle_find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        identifier = event.identifier
        if str(identifier.get("QueryRetrieveLevel", "")).strip() != "STUDY":
            yield STATUS_FIND_IDENTIFIER_MISMATCH, None
            return
        query = study_query_from_identifier(identifier, str(event.assoc.requestor.ae_title))
        assert self._find_studies is not None
        try:
            records = list(self._find_studies(query))
        except Exception:
            LOGGER.exception("study query from %s failed", query.calling_ae_title)
            yield STATUS_FIND_UNABLE_TO_PROCESS, None
            return
        for record in records:
            if event.is_cancelled:
                yield STATUS_FIND_CANCELLED, None
                return
            if matches_study(record, query.filters):
                yield STATUS_FIND_PENDING, identifier_from_record(record, query.return_keys)


#: (result source, diagnostic) of an A-ASSOCIATE-RJ (PS3.8 9.3.4), as the log says them.
_REJECT_REASONS = {
    (0x01, 0x01): "no reason given",
    (0x01, 0x02): "application context name not supported",
    (0x01, 0x03): "calling AE title not recognised",
    (0x01, 0x07): "called AE title not recognised",
    (0x02, 0x01): "no reason given (ACSE)",
    (0x02, 0x02): "protocol version not supported",
    (0x03, 0x01): "temporary congestion",
    (0x03, 0x02): "local limit exceeded",
}


def _printable(text: str) -> str:
    """An AE title as a peer sent it, safe for a log line (no control characters)."""
    return "".join(c if c.isprintable() else "?" for c in text.strip())[:16]


def _sync_and_close(fd: int) -> None:
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


class _CutWhenFlushed:
    """A journal file's flush under way (:class:`aio.Flush` or a future): :meth:`result` waits
    for it, then cuts the file to its instance's bytes (a reserve slot's zeros past them go).
    The cut need not be on disk before the peer is answered: the file system's journal commits
    it with the storage folder's sync that follows the file's rename (ext4 and XFS write their
    journal in order), and a start-up recovery cuts a file left uncut."""

    __slots__ = ("_flush", "_path", "_length", "_cut")

    def __init__(self, flush: Any, path: Path, length: int):
        self._flush = flush
        self._path = path
        self._length = length
        self._cut = False

    def result(self) -> None:
        self._flush.result()  # raises when the flush failed (and again at every call)
        if not self._cut:
            os.truncate(self._path, self._length)
            self._cut = True


# --- Part 10 file header (pure) ---------------------------------------------------------------

IMPLEMENTATION_CLASS_UID = PYNETDICOM_IMPLEMENTATION_UID
IMPLEMENTATION_VERSION_NAME = "PROTONPATH_01"


def encode_file_header(
    *, sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, source_ae_title: str = "",
    seal: bytes | None = None,
) -> bytes:
    """The 128-byte preamble, ``DICM`` and the File Meta Information (PS3.10 7.1).

    Encoded by hand (explicit VR little endian, as the standard requires) because it is written
    for every instance received: building it through pydicom's validated datasets costs more than
    writing the instance itself. ``seal`` (from :func:`journal_seal`) goes in as the Private
    Information (0002,0102) of :data:`JOURNAL_SEAL_CREATOR_UID`.
    """
    elements = [
        _meta_element(0x0001, b"OB", b"\x00\x01"),
        _meta_element(0x0002, b"UI", _uid_bytes(sop_class_uid)),
        _meta_element(0x0003, b"UI", _uid_bytes(sop_instance_uid)),
        _meta_element(0x0010, b"UI", _uid_bytes(transfer_syntax_uid)),
        _meta_element(0x0012, b"UI", _uid_bytes(IMPLEMENTATION_CLASS_UID)),
        _meta_element(0x0013, b"SH", _padded(IMPLEMENTATION_VERSION_NAME.encode("ascii"), b" ")),
    ]
    if source_ae_title:
        elements.append(_meta_element(0x0016, b"AE", _padded(source_ae_title.encode("ascii", "replace"), b" ")))
    if seal is not None:
        elements.append(_meta_element(0x0100, b"UI", _uid_bytes(JOURNAL_SEAL_CREATOR_UID)))
        elements.append(_meta_element(0x0102, b"OB", seal))
    body = b"".join(elements)
    group_length = struct.pack("<HH2sHL", 0x0002, 0x0000, b"UL", 4, len(body))
    return b"\x00" * 128 + b"DICM" + group_length + body


def journal_seal(dataset: bytes | memoryview, digest: Any = None) -> tuple[bytes, str]:
    """The seal of a journal file for its encoded data set: (the Private Information value,
    the data set's digest text). ``digest``: the data set's hasher
    (:func:`~protonpath.imaging.digests.hasher`) when already fed, as the bytes arrived."""
    if digest is None:
        digest = digests.hasher()
        digest.update(dataset)
    return JOURNAL_SEAL_MAGIC + struct.pack("<Q", len(dataset)) + digest.digest(), digests.text(digest)


def journal_entry_digest(data: bytes) -> str | None:
    """The data set's digest text when ``data`` is a whole sealed journal file: its meta
    information carries the listener's seal, and the data set that follows has the sealed
    length and digest. None for anything else (a file cut short, one never written, one
    written without a seal, one with bytes past its data set)."""
    sealed = _sealed(data)
    if sealed is None:
        return None
    offset, length, claimed = sealed
    if len(data) - offset != length:
        return None
    return claimed if digests.matches(claimed, memoryview(data)[offset:]) else None


def journal_entry_length(data: bytes) -> int | None:
    """The length a sealed journal file has once cut to its data set (its meta information and
    the data set's sealed length); None when ``data`` carries no seal of the listener's."""
    sealed = _sealed(data)
    return None if sealed is None else sealed[0] + sealed[1]


def _sealed(data: bytes) -> tuple[int, int, str] | None:
    """(where the data set begins, its sealed length, its sealed digest text), or None."""
    if data[128:132] != b"DICM":
        return None
    offset, end = 132, len(data)
    creator = seal = None
    while offset + 8 <= end and data[offset : offset + 2] == b"\x02\x00":
        element = int.from_bytes(data[offset + 2 : offset + 4], "little")
        vr = bytes(data[offset + 4 : offset + 6])
        if vr in (b"OB", b"OW", b"UN", b"UT", b"SQ"):
            if offset + 12 > end:
                return None
            start = offset + 12
            length = int.from_bytes(data[offset + 8 : offset + 12], "little")
        else:
            start = offset + 8
            length = int.from_bytes(data[offset + 6 : offset + 8], "little")
        if start + length > end:
            return None
        if element == 0x0100:
            creator = bytes(data[start : start + length]).rstrip(b"\0 ").decode("ascii", "replace")
        elif element == 0x0102:
            seal = bytes(data[start : start + length])
        offset = start + length
    if creator != JOURNAL_SEAL_CREATOR_UID or seal is None or len(seal) != _SEAL_LENGTH:
        return None
    magic = seal[: len(JOURNAL_SEAL_MAGIC)]
    if magic not in (JOURNAL_SEAL_MAGIC, _LEGACY_SEAL_MAGIC):
        return None
    length = struct.unpack_from("<Q", seal, len(JOURNAL_SEAL_MAGIC))[0]
    claimed = f"{digests.ALGORITHM if magic == JOURNAL_SEAL_MAGIC else digests.LEGACY}:{seal[-32:].hex()}"
    return offset, length, claimed


def _uid_bytes(uid: str) -> bytes:
    return _padded(uid.encode("ascii"), b"\x00")


def _padded(value: bytes, pad: bytes) -> bytes:
    return value + pad if len(value) % 2 else value


def _meta_element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":
        return struct.pack("<HH2sHL", 0x0002, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


# --- C-FIND matching (pure) -------------------------------------------------------------------

_NOT_KEYS = {"QueryRetrieveLevel", "SpecificCharacterSet"}


def study_query_from_identifier(identifier: Dataset, calling_ae_title: str = "") -> StudyQuery:
    """Turn a C-FIND identifier into a :class:`StudyQuery` (sequences are ignored)."""
    filters: dict[str, str] = {}
    keys: list[str] = []
    for element in identifier:
        keyword = element.keyword
        if not keyword or keyword in _NOT_KEYS or element.VR == "SQ":
            continue
        keys.append(keyword)
        value = _as_text(element.value)
        if value:
            filters[keyword] = value
    return StudyQuery(filters=filters, return_keys=tuple(keys), calling_ae_title=calling_ae_title)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def matches_study(record: Mapping[str, str], filters: Mapping[str, str]) -> bool:
    """Whether a record answers every filter, by DICOM matching rules (PS3.4 C.2.2.2).

    Single value, wildcard (``*``, ``?``), UID list (``\\``-separated) and range (``A-B``, ``A-``,
    ``-B`` for dates and times) matching; a multi-valued record attribute (ModalitiesInStudy)
    matches if any of its values does. Person names match case-insensitively.
    """
    return all(_matches(keyword, str(record.get(keyword, "") or ""), wanted) for keyword, wanted in filters.items())


def _matches(keyword: str, value: str, wanted: str) -> bool:
    vr = _vr(keyword)
    if wanted in ("*", ""):
        return True
    if vr == "UI":
        return value in wanted.split("\\")
    if vr in ("DA", "TM", "DT") and "-" in wanted:
        low, _, high = wanted.partition("-")
        return bool(value) and (not low or value >= low) and (not high or value[: len(high)] <= high)
    values = value.split("\\") if value else [""]
    pattern = _wildcard(wanted, ignore_case=vr == "PN")
    return any(pattern.fullmatch(v) for v in values)


def _wildcard(wanted: str, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in wanted)
    return re.compile(regex, re.IGNORECASE if ignore_case else 0)


def _vr(keyword: str) -> str:
    try:
        return str(dictionary_VR(keyword))
    except KeyError:
        return "LO"


def identifier_from_record(record: Mapping[str, str], return_keys: Iterable[str]) -> Dataset:
    """A C-FIND answer: QueryRetrieveLevel STUDY and every requested key, empty when unknown."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = "STUDY"
    for keyword in return_keys:
        if tag_for_keyword(keyword) is None:
            continue
        value = str(record.get(keyword, "") or "")
        setattr(ds, keyword, value.split("\\") if "\\" in value else value)
    return ds


__all__ = [
    "DUPLICATE",
    "AssociationSummary",
    "StoreStatus",
    "DicomListener",
    "InstanceRefused",
    "InstanceSink",
    "ListenerSettings",
    "ReceivedInstance",
    "StudyFinder",
    "fsync_directory",
    "journal_entry_digest",
    "journal_seal",
    "StudyQuery",
    "identifier_from_record",
    "matches_study",
    "study_query_from_identifier",
]
