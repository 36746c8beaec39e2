"""Event-driven association reactors for the listener (no polling delay per message).

pynetdicom runs two threads per association, and both poll: the upper-layer (DUL) thread
sleeps a millisecond whenever a pass finds nothing to do, and the acceptor thread sleeps a
millisecond before each look at the DIMSE message queue. A C-STORE therefore waits up to a
millisecond for its request to be noticed and up to another for its response to leave, which
is most of the time an instance takes on a fast network: the receiver idles between
instances while the sender waits for the response.

The classes here keep pynetdicom's state machine, PDU and DIMSE code, and replace only the
two waits:

* :class:`PromptDul` blocks in ``select`` on the peer's socket and on a wake-up socket pair,
  written to whenever a primitive is queued for sending or the reactor is told to stop; the
  select also wakes every :data:`TIMER_CHECK_S` so the ARTIM and idle timers are honoured.
* :class:`PromptAssociation` blocks on the DIMSE message queue and wakes as soon as a
  complete message is there; between messages it checks for release, abort, a dead upper
  layer and the network time-out every :data:`CONTROL_CHECK_S`.

:class:`PromptRequestHandler` makes the server build these associations. They rely on
pynetdicom 3.0's internal reactor attributes (``_dul_ready``, ``_reactor_checkpoint``,
``to_provider_queue``, ``event_queue``…), so pyproject.toml pins pynetdicom to 3.0.x, and the
listener's tests, which run dcmtk's storescu, echoscu and findscu against it, exercise them.

Hostile or broken peers (:class:`NetworkLimits`): :class:`PromptDul` reads PDUs without ever
blocking, a little at a time as bytes arrive, into a buffer that grows with what has arrived
(never with what the peer announces); a PDU longer than allowed (the maximum PDU size we
announced for P-DATA-TF, a small cap for every other PDU and for anything before the
association) is answered with an A-ABORT and the connection closed. Every stage has a time
limit, checked at each pass of the reactor: the association request after the connection,
the rest of a PDU header once it has begun, a PDU body once its header is in, a DIMSE message
once its first fragment is in, and the association's idle time (pynetdicom's network
time-out). :class:`PromptRequestHandler` bounds open connections, in all and per peer
address, answering those over the limit with an A-ASSOCIATE-RJ (transient, local limit
exceeded) at once.
"""

from __future__ import annotations

import io
import logging
import queue
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pynetdicom import evt
from pynetdicom._globals import MODE_ACCEPTOR
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.fsm import InvalidEventError
from pynetdicom.pdu import A_ABORT_RQ, A_ASSOCIATE_RJ
from pynetdicom.pdu_primitives import A_ASSOCIATE, P_DATA
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer
from pynetdicom.utils import set_timer_resolution

from protonpath.imaging import digests

LOGGER = logging.getLogger(__name__)

#: Longest sleep of the upper-layer thread when nothing happens (timers are checked after it).
TIMER_CHECK_S = 0.05
#: Longest wait of the acceptor thread for a DIMSE message before it checks release and abort.
CONTROL_CHECK_S = 0.005

#: Largest P-DATA-TF PDU when the listener is configured without a maximum PDU size (0): it then
#: announces this one, so that every PDU it reads has a known bound.
MAX_PDU_CAP = 64 * 1024 * 1024
#: First allocation for a PDU body; the buffer doubles as bytes arrive, up to the PDU's length.
FIRST_CHUNK = 256 * 1024
#: The largest data set the fast path makes its buffer for in advance (the length of the
#: association's last one; see PromptDul._begin_incoming).
MAX_PRESIZE = 64 * 1024 * 1024
#: How long a connection refused for too many open ones may take to read our A-ASSOCIATE-RJ.
REFUSAL_DRAIN_S = 0.5
#: Longest wait, once an association is told to stop, for its upper layer to end.
KILL_WAIT_S = 5.0

_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
#: pynetdicom's events for a P-DATA-TF received (see PromptDul._append_data_fragments).
_FRAGMENT_EVENTS = (evt.EVT_DATA_RECV, evt.EVT_PDU_RECV, evt.EVT_FSM_TRANSITION, evt.EVT_DIMSE_RECV)
#: ... and those of a P-DATA-TF sent (PromptDul.send_now writes the PDU itself when none is bound).
_SENT_EVENTS = (evt.EVT_DATA_SENT, evt.EVT_PDU_SENT, evt.EVT_FSM_TRANSITION)
#: A-ABORT reasons (PS3.8 9.3.8): not specified, unexpected PDU, invalid PDU parameter value.
ABORT_NOT_SPECIFIED = 0x00
ABORT_UNRECOGNISED_PDU = 0x01
ABORT_INVALID_PARAMETER = 0x06


@dataclass(frozen=True)
class NetworkLimits:
    """What a peer may take from the listener, in time, bytes and connections.

    Attributes
    ----------
    request_timeout_s : float
        From the connection to its complete A-ASSOCIATE-RQ.
    pdu_header_timeout_s : float
        From the first byte of a PDU to the last of its 6-byte header.
    pdu_body_timeout_s : float
        From a PDU's header to the last byte of its body.
    max_control_pdu_bytes : int
        Largest PDU before the association is established, and of any type but P-DATA-TF
        afterwards. An A-ASSOCIATE-RQ of 128 storage classes is 17 KiB with 4 transfer syntaxes
        each, 154 KiB with all 45 that pynetdicom knows; 256 KiB covers any real one.
    max_associations : int
        Open connections in all (associated or not yet).
    max_associations_per_address : int
        Open connections from one peer address.
    max_message_bytes : int
        Largest DIMSE message (command and data set), held in memory until complete.

    The time-outs of the association itself (idle, DIMSE message) are pynetdicom's
    ``network_timeout`` and ``dimse_timeout`` of the Application Entity.
    """

    request_timeout_s: float = 10.0
    pdu_header_timeout_s: float = 10.0
    pdu_body_timeout_s: float = 60.0
    max_control_pdu_bytes: int = 256 * 1024
    max_associations: int = 32
    max_associations_per_address: int = 8
    max_message_bytes: int = 1024 * 1024 * 1024


#: Command Field (0000,0100) of a C-STORE-RQ, and the Command Data Set Type that means none.
_C_STORE_RQ_FIELD = 0x0001
_NO_DATA_SET = 0x0101
#: The elements a C-STORE-RQ's command set may hold (PS3.7 9.3.1.1), by element number of group
#: 0000: 'US' (unsigned short), 'UL' (the group length), 'UI' (a UID), 'AE' (an AE title).
_STORE_COMMAND_ELEMENTS = {
    0x0000: "UL", 0x0002: "UI", 0x0100: "US", 0x0110: "US", 0x0700: "US", 0x0800: "US",
    0x1000: "UI", 0x1030: "AE", 0x1031: "US",
}
_UID_BYTES = re.compile(rb"[0-9]+(?:\.[0-9]+)*")
_AE_BYTES = re.compile(rb"[\x20-\x5b\x5d-\x7e]*")  # printable ASCII, no backslash


class StoreRequest:
    """A C-STORE request decoded by :func:`decode_store_request`: the attributes of
    pynetdicom's C_STORE primitive that the fast path reads, under the same names."""

    __slots__ = (
        "MessageID", "AffectedSOPClassUID", "AffectedSOPInstanceUID", "Priority",
        "MoveOriginatorApplicationEntityTitle", "MoveOriginatorMessageID", "DataSet",
    )

    def __init__(self, message_id: int, sop_class_uid: str, sop_instance_uid: str, priority: int,
                 move_originator_ae_title: str | None = None, move_originator_message_id: int | None = None):
        self.MessageID = message_id
        self.AffectedSOPClassUID = sop_class_uid
        self.AffectedSOPInstanceUID = sop_instance_uid
        self.Priority = priority
        self.MoveOriginatorApplicationEntityTitle = move_originator_ae_title
        self.MoveOriginatorMessageID = move_originator_message_id
        self.DataSet: Any = None

    is_valid_request = True  # every field a C-STORE-RQ needs is there (the decoder checked)


def decode_store_request(command: bytes | bytearray | memoryview) -> StoreRequest | None:
    """The C-STORE-RQ in an encoded command set (group 0000, implicit VR little endian, PS3.7
    E.1 and 9.3.1.1), or None for anything else or anything odd: another command, an element
    a C-STORE-RQ does not carry, elements out of order or repeated, a length that overruns, a
    group length that is not the rest, a value of the wrong size, a UID or AE title that is not
    well formed, a priority other than low, medium or high, no data set announced. None sends
    the message pynetdicom's way (pydicom's decoder and pynetdicom's checks), as before."""
    values: dict[int, Any] = {}
    total = len(command)
    offset, previous = 0, -1
    try:
        while offset < total:
            if offset + 8 > total:
                return None
            group, element, length = struct.unpack_from("<HHL", command, offset)
            start = offset + 8
            offset = start + length
            kind = _STORE_COMMAND_ELEMENTS.get(element)
            if group != 0x0000 or kind is None or element <= previous or offset > total:
                return None
            previous = element
            raw = bytes(command[start:offset])
            if kind == "UL":
                if length != 4 or start != 8 or struct.unpack("<L", raw)[0] != total - offset:
                    return None
                continue
            if kind == "US":
                if length != 2:
                    return None
                values[element] = struct.unpack("<H", raw)[0]
                continue
            text = raw.rstrip(b"\0 ") if kind == "UI" else raw.strip(b" ")
            if kind == "UI" and (len(text) > 64 or not _UID_BYTES.fullmatch(text)):
                return None
            if kind == "AE" and (len(text) > 16 or not _AE_BYTES.fullmatch(text)):
                return None
            values[element] = text.decode("ascii")
    except (struct.error, TypeError, ValueError):
        return None
    if (
        values.get(0x0100) != _C_STORE_RQ_FIELD
        or values.get(0x0800, _NO_DATA_SET) == _NO_DATA_SET
        or values.get(0x0700) not in (0, 1, 2)
        or any(element not in values for element in (0x0002, 0x0110, 0x1000))
    ):
        return None
    return StoreRequest(
        values[0x0110], values[0x0002], values[0x1000], values[0x0700], values.get(0x1030), values.get(0x1031)
    )


class _Incoming:
    """The data set of a C-STORE request being received on the fast path."""

    __slots__ = ("data_set", "digest", "hashed", "request", "entry", "presized")

    def __init__(self, data_set: Any):
        self.data_set = data_set
        self.presized = False  # holds zeros past what was written (cut at the last fragment)
        self.digest = digests.hasher()
        self.hashed = 0  # bytes of the data set hashed so far
        self.request: StoreRequest | None = None
        self.entry: Any = None  # what ``open_store`` returned: written(), write(), discard()


#: ``open_store(assoc, request, transfer_syntax_uid) -> entry or None``: opens the journal entry
#: a C-STORE request's data set is written into as it arrives (see PromptDul._begin_incoming);
#: the entry has ``written`` (data set bytes in it), ``write(chunk)`` and ``discard()``.
OpenStore = Callable[[Any, StoreRequest, str], Any]


class PromptDul(DULServiceProvider):
    """An upper-layer service provider that sleeps until there is something to do."""

    def __init__(self, assoc: Any, limits: NetworkLimits | None = None):
        super().__init__(assoc)
        self._wake_receiver, self._wake_sender = socket.socketpair()
        self._wake_receiver.setblocking(False)
        self._wake_sender.setblocking(False)
        self.limits = limits or NetworkLimits()
        self._connected_at = time.monotonic()
        # the PDU being received: its bytes so far (header first), how many, and when it began
        self._rx = bytearray()
        self._rx_filled = 0
        self._rx_length: int | None = None  # body length, once the header is complete
        self._rx_started = 0.0
        self._rx_body_started = 0.0
        self._dimse_started: float | None = None
        self._stop_reason: str | None = None
        self._quiet: bool | None = None  # no handler bound to the events of a data fragment
        self._sent_quiet: bool | None = None  # ... nor to those of a P-DATA-TF sent
        # the data set being received on the fast path: its digest, fed with its fragments as
        # they arrive (see data_set_digest), and its journal entry, written as they arrive
        self._incoming: _Incoming | None = None
        # the length of the last data set received whole on the fast path: the next one's
        # buffer is made that size at its first fragment (see _begin_incoming)
        self._last_data_set_length = 0

    def request_abort(self, reason: str) -> None:
        """Abort the association from any thread (the upper layer does it at its next pass)."""
        self._stop_reason = reason
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_sender.send(b"\0")
        except OSError:  # BlockingIOError included
            pass  # a wake-up is already pending, or the reactor has finished

    def send_pdu(self, primitive: Any) -> None:
        super().send_pdu(primitive)
        self._wake()

    def kill_dul(self) -> None:
        super().kill_dul()
        self._wake()

    def _wait_for_work(self) -> None:
        """Block until the peer sends data, a primitive is queued, or the timer check is due."""
        watched: list[Any] = [self._wake_receiver]
        raw = getattr(self.socket, "socket", None) if self.socket is not None else None
        if raw is not None and getattr(self.socket, "_is_connected", False):
            pending = getattr(raw, "pending", None)  # TLS may hold decrypted bytes select can't see
            if pending is not None and pending():
                return
            watched.append(raw)
        try:
            ready, _, _ = select.select(watched, [], [], TIMER_CHECK_S)
        except (OSError, ValueError):
            time.sleep(0.001)  # the socket closed under us: the next pass reports it
            return
        if self._wake_receiver in ready:
            try:
                while self._wake_receiver.recv(4096):
                    pass
            except OSError:  # BlockingIOError included
                pass

    def run_reactor(self) -> None:
        self._idle_timer.start()
        try:
            while True:
                if not self.assoc._dul_ready.is_set():
                    self.assoc._dul_ready.set()
                if self._kill_thread:
                    break
                if self.artim_timer.expired:
                    self.event_queue.put("Evt18")
                try:
                    # one primitive to send, or else what the peer sent, per pass
                    if not self._process_recv_primitive():
                        self._transport_pass()
                    self._check_limits()
                except Exception:
                    self._abort_after_error()
                    return
                try:
                    event = self.event_queue.get_nowait()
                except queue.Empty:
                    self._wait_for_work()
                    continue
                try:
                    self._do_action(event)
                except Exception:  # e.g. pynetdicom's decoder on a command set it cannot read
                    self._abort_after_error()
                    return
        finally:
            self._discard_incoming()
            self._wake_receiver.close()
            self._wake_sender.close()

    def _discard_incoming(self) -> None:
        """Drop the data set being received (the association ended, or another message began
        before it was complete): its journal entry, written in part, is removed."""
        incoming, self._incoming = self._incoming, None
        if incoming is not None and incoming.entry is not None:
            entry, incoming.entry = incoming.entry, None
            entry.discard()

    # --- reading PDUs, bounded in size and time --------------------------------------------------

    @property
    def _peer(self) -> str:
        try:
            return str(self.assoc.requestor.address)
        except Exception:  # address not known yet
            return "?"

    def _connected(self) -> bool:
        sock = self.socket
        return sock is not None and sock.socket is not None and bool(getattr(sock, "_is_connected", False))

    def _transport_pass(self) -> None:
        """Read what the peer has sent, if anything (pynetdicom's _is_transport_event)."""
        if self.socket is None:
            return
        if self.state_machine.current_state == "Sta13":
            # waiting for the peer to close: read what it still sends, else close
            if not (self._connected() and self._receive()):
                self.socket.close()
            return
        if self._connected() and self._receive() is not None:
            self._idle_timer.restart()  # something arrived (the stage limits bound a trickle)

    def _receive(self) -> str | None:
        """Read without blocking; 'pdu' when a PDU (or the end of the connection) was handled,
        'bytes' when only part of one arrived, None when nothing had arrived."""
        assert self.socket is not None and self.socket.socket is not None
        raw = self.socket.socket
        # TLS sockets take no flags: read once per readiness (select said so, or pending())
        flags = 0 if hasattr(raw, "pending") else _DONTWAIT
        try:
            if self._rx_length is None:
                if not self._rx_filled:
                    self._rx = bytearray(6)
                with memoryview(self._rx) as view:
                    count = raw.recv_into(view[self._rx_filled : 6], 6 - self._rx_filled, flags)
                if not count:
                    return self._peer_closed()
                if not self._rx_filled:
                    self._rx_started = time.monotonic()
                self._rx_filled += count
                if self._rx_filled < 6:
                    return "bytes"
                if not self._header_received():
                    return "pdu"
                if self._rx_length == 0:
                    return self._pdu_received()
                return self._receive_body(raw, flags) or "bytes"  # the header, at least
            return self._receive_body(raw, flags)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as error:
            if type(error).__name__ == "SSLWantReadError":
                return None
            LOGGER.info("connection from %s lost: %s", self._peer, error.strerror or type(error).__name__)
            self.socket.close()  # Evt17
            return "pdu"

    def _receive_body(self, raw: Any, flags: int) -> str | None:
        assert self._rx_length is not None
        total = 6 + self._rx_length
        progress = False
        while self._rx_filled < total:
            if self._rx_filled == len(self._rx):  # full: double it, never past the PDU's length
                self._rx.extend(bytes(min(max(len(self._rx), FIRST_CHUNK), total - len(self._rx))))
            try:
                with memoryview(self._rx) as view:
                    count = raw.recv_into(view[self._rx_filled :], len(self._rx) - self._rx_filled, flags)
            except (BlockingIOError, InterruptedError):
                break  # all that had arrived is read
            if not count:
                return self._peer_closed()
            self._rx_filled += count
            progress = True
            if not flags:
                break  # one read per readiness
        if self._rx_filled < total:
            return "bytes" if progress else None
        return self._pdu_received()

    def _header_received(self) -> bool:
        """Check a complete header; False when the peer was aborted for it."""
        pdu_type, _, length = struct.unpack(">BBL", self._rx[:6])
        if not 0x01 <= pdu_type <= 0x07:
            self.abort_peer(f"unknown PDU type 0x{pdu_type:02X}", ABORT_UNRECOGNISED_PDU)
            return False
        limit = self._length_limit(pdu_type)
        if length > limit:
            self.abort_peer(
                f"PDU of type 0x{pdu_type:02X} announcing {length} bytes (limit {limit})",
                ABORT_INVALID_PARAMETER,
            )
            return False
        self._rx_length = length
        self._rx_body_started = time.monotonic()
        self._rx.extend(bytes(min(length, FIRST_CHUNK)))
        return True

    def _length_limit(self, pdu_type: int) -> int:
        if pdu_type == 0x04 and self.state_machine.current_state not in ("Sta1", "Sta2", "Sta3"):
            negotiated = int(self.assoc.acceptor.maximum_length or 0)
            return negotiated if negotiated else MAX_PDU_CAP
        return self.limits.max_control_pdu_bytes

    def _pdu_received(self) -> str:
        data = self._rx
        self._reset_rx()
        if data[0] == 0x04 and self._append_data_fragments(data):
            return "pdu"
        try:
            pdu, event = self._decode_pdu(data)
        except Exception:
            LOGGER.warning("undecodable PDU from %s", self._peer)
            self.event_queue.put("Evt19")
            return "pdu"
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)
        return "pdu"

    def _append_data_fragments(self, pdu: bytearray) -> bool:
        """:meth:`_append_fast`; when it leaves the PDU to pynetdicom, a data set made in advance
        to the length expected is cut to what it holds first (pynetdicom appends to it)."""
        if self._append_fast(pdu):
            return True
        state = self._incoming
        if state is not None and state.presized:
            state.presized = False
            state.data_set.truncate()
        return False

    def _append_fast(self, pdu: bytearray) -> bool:
        """Write the data set fragments of a P-DATA-TF straight into the C-STORE request being
        received (every PDU of an instance after its command set). True if done; False leaves
        the PDU to pynetdicom (its state machine, its decoder, the DIMSE provider), which does
        the same in four copies of the bytes and many more calls.

        When the PDU ends the data set (its last item is the last fragment), the request is
        complete: it is served here, in this thread, by :meth:`_complete_store` (no hand-over to
        the acceptor's thread and back for the answer, which took a millisecond per instance).

        At a data set's first fragment here, its command set is decoded by
        :func:`decode_store_request` and, when the server has an ``open_store`` callable (the
        listener's journal), the entry the instance will be stored in is opened: each fragment
        is then written into it as it arrives (and hashed), so that once the last one is in
        only its bytes, the file's header and the flush remain.

        Taken only in the data transfer state, with no event waiting before it, a request whose
        command set is complete and held in memory, and nobody listening to the upper layer's
        events; a PDU with a command fragment, a last fragment before its last item or a
        malformed item goes the usual way (which aborts on malformed ones)."""
        if self.state_machine.current_state != "Sta6" or not self.event_queue.empty():
            return False
        assoc = self.assoc
        message = assoc.dimse.message
        if type(message) is not C_STORE_RQ or message._data_set_file is not None:
            return False
        if self._quiet is None:
            self._quiet = not any(assoc.get_handlers(event) for event in _FRAGMENT_EVENTS)
        if not self._quiet:
            return False
        spans = []
        total, offset = len(pdu), 6
        last = False
        while offset < total:
            if offset + 6 > total or last:
                return False  # malformed, or an item after the data set's last fragment
            length = int.from_bytes(pdu[offset : offset + 4], "big")
            control = pdu[offset + 5] & 0x03
            if length < 2 or offset + 4 + length > total or control & 0x01:
                return False  # malformed, or a command fragment
            if pdu[offset + 4] != message.context_id:
                return False  # another presentation context: pynetdicom's decoder says what
            last = control == 0x02
            spans.append((offset + 6, offset + 4 + length))
            offset += 4 + length
        if not spans:
            return False
        data_set = message.data_set
        state = self._incoming
        if state is None or state.data_set is not data_set:
            state = self._begin_incoming(message)
            data_set = message.data_set  # made anew to the length expected, perhaps
        hashed = data_set.tell()
        entry = state.entry
        if state.hashed != hashed or (entry is not None and entry.written != hashed):
            # fragments written the usual way since: hash and file them first
            with data_set.getbuffer() as written:
                state.digest.update(written[state.hashed : hashed])
                if entry is not None:
                    entry.write(written[entry.written : hashed])
        with memoryview(pdu) as view:
            for start, end in spans:
                fragment = view[start:end]
                data_set.write(fragment)
                state.digest.update(fragment)  # while the peer sends the next PDU
                if entry is not None:
                    entry.write(fragment)
                hashed += end - start
        state.hashed = hashed
        if last:
            if state.presized:  # the zeros past the data set go
                state.presized = False
                data_set.truncate()
            self._last_data_set_length = hashed
        self._message_grew(message)
        if last and assoc.dimse.message is message:  # complete, and not aborted for its size
            self._complete_store(message)
        return True

    def _begin_incoming(self, message: Any) -> _Incoming:
        """The fast path's state for a C-STORE request's data set, at its first fragment here."""
        self._discard_incoming()  # a message left incomplete (aborted for its size, say)
        expected = self._last_data_set_length
        presize = 0 < expected <= min(MAX_PRESIZE, self.limits.max_message_bytes) and message.data_set.tell() == 0
        if presize:
            # A growing stream costs a fresh allocation and a copy each time it outgrows itself:
            # 0.19 ms for the 5 fragments of a 512 KB CT slice, against 0.01 ms written into one
            # made to the length of the last data set (AMD EPYC).
            message.data_set = io.BytesIO(bytes(expected))
        state = self._incoming = _Incoming(message.data_set)
        state.presized = presize
        assoc = self.assoc
        request = decode_store_request(message.encoded_command_set.getbuffer())
        if request is None:
            return state
        state.request = request
        open_store: OpenStore | None = getattr(getattr(assoc, "_server", None), "open_store", None)
        context_id = int(message.context_id)
        fast_path = getattr(assoc, "_fast_store", None)
        if open_store is None or fast_path is None or fast_path(request, context_id) is None:
            return state
        context = assoc._accepted_cx[context_id]
        try:
            state.entry = open_store(assoc, request, str(context.transfer_syntax[0]))
        except Exception:  # the instance is written whole at the end instead, or refused then
            LOGGER.exception("could not open a journal entry for an instance from %s", self._peer)
        return state

    def _complete_store(self, message: Any) -> None:
        """A C-STORE request received whole: served at once by the association
        (:meth:`PromptAssociation.serve_store_now`), or else queued for the acceptor's thread,
        as pynetdicom's DIMSE provider does. Its request is the one decoded at its first
        fragment (:func:`decode_store_request`), or pynetdicom's primitive when that decoder
        refused it or when it is queued (its journal entry, written in part, removed then:
        the acceptor's thread writes it whole)."""
        dimse = self.assoc.dimse
        context_id = int(message.context_id)
        dimse.message = None  # ready for the next message, as pynetdicom resets it
        self._dimse_started = None
        state = self._incoming
        request = state.request if state is not None and state.data_set is message.data_set else None
        serve_now = getattr(self.assoc, "serve_store_now", None)
        if request is not None and serve_now is not None:
            request.DataSet = message.data_set
            if serve_now(request, context_id):
                if self._incoming is state:  # not stored (refused before it was written)
                    self._discard_incoming()
                return
        if self._incoming is state and state is not None and state.entry is not None:
            self._discard_incoming()  # the digest goes with it: the acceptor hashes it whole
        try:
            primitive = message.message_to_primitive()
        except Exception:
            LOGGER.warning("invalid DIMSE message from %s", self._peer)
            self.event_queue.put("Evt19")
            return
        if serve_now is None or not serve_now(primitive, context_id):
            dimse.msg_queue.put((context_id, primitive))

    def send_now(self, primitive: Any) -> None:
        """Send a P-DATA primitive from this thread at once, through pynetdicom's state machine
        (Evt9, DT-1: the same PDU and events as :meth:`send_pdu`), when nothing is waiting to
        be sent or handled before it; else queue it as :meth:`send_pdu` does."""
        if (
            threading.current_thread() is not self
            or not self.to_provider_queue.empty()
            or not self.event_queue.empty()
            or self.state_machine.current_state != "Sta6"
        ):
            self.send_pdu(primitive)
            return
        if self._sent_quiet is None:
            self._sent_quiet = not any(self.assoc.get_handlers(event) for event in _SENT_EVENTS)
        if self._sent_quiet and self.socket is not None and type(primitive) is P_DATA:
            # What DT-1 does in Sta6 (send the P-DATA-TF PDU, stay in Sta6), without building
            # pynetdicom's PDU objects for an answer of a few dozen bytes.
            self.socket.send(encode_p_data_tf(primitive))
            return
        DULServiceProvider.send_pdu(self, primitive)
        if self._process_recv_primitive():
            self._do_action(self.event_queue.get_nowait())

    def data_set_digest(self, data_set: Any) -> Any:
        """The hasher (:func:`~protonpath.imaging.digests.hasher`) of a complete data set
        received on this association: of the bytes already hashed as they arrived
        (:meth:`_append_data_fragments`), and of the rest now. ``data_set`` is the message's stream (a C-STORE request's ``DataSet``)."""
        state = self._incoming
        if state is not None and state.data_set is data_set:
            self._incoming = None  # hashed once; and the stream is not kept alive by the layer
            digest, hashed = state.digest, state.hashed
            if state.entry is not None:  # not taken (take_journal_entry): nothing will finish it
                state.entry.discard()
        else:
            digest, hashed = digests.hasher(), 0
        with data_set.getbuffer() as written:
            digest.update(written[hashed:])
        return digest

    def take_journal_entry(self, data_set: Any) -> Any:
        """The journal entry opened for a complete data set received on this association
        (written with every fragment that came the fast way, and with no header yet), now the
        caller's to finish or discard; None when there is none. Called from this thread, before
        :meth:`data_set_digest`."""
        state = self._incoming
        if state is None or state.data_set is not data_set or threading.current_thread() is not self:
            return None
        entry, state.entry = state.entry, None
        return entry

    def _message_grew(self, message: Any) -> None:
        """Start the DIMSE clock at a message's first fragment; abort one over the size limit."""
        if self._dimse_started is None:
            self._dimse_started = time.monotonic()
        size = _tell(getattr(message, "encoded_command_set", None)) + _tell(
            getattr(message, "_data_set_file", None) or getattr(message, "data_set", None)
        )
        if size > self.limits.max_message_bytes:
            self.abort_peer(f"DIMSE message over {self.limits.max_message_bytes} bytes", ABORT_NOT_SPECIFIED)
            self.assoc.dimse.message = None  # its bytes are freed now

    def _peer_closed(self) -> str:
        if self._rx_filled:
            LOGGER.info("connection from %s closed inside a PDU (%d bytes of it received)", self._peer, self._rx_filled)
        self._reset_rx()
        assert self.socket is not None
        self.socket.close()  # Evt17: the state machine ends the association
        return "pdu"

    def _reset_rx(self) -> None:
        self._rx = bytearray()
        self._rx_filled = 0
        self._rx_length = None

    def _check_limits(self) -> None:
        """Abort a peer that has overstayed a stage, or that the listener is told to stop."""
        if self._stop_reason is not None:
            reason, self._stop_reason = self._stop_reason, None
            if self._connected():
                self.abort_peer(reason, ABORT_NOT_SPECIFIED)
            return
        if not self._connected():
            return
        now = time.monotonic()
        limits = self.limits
        if self.state_machine.current_state in ("Sta1", "Sta2") and now - self._connected_at > limits.request_timeout_s:
            self.abort_peer(f"no association request within {limits.request_timeout_s:g} s", ABORT_NOT_SPECIFIED)
        elif self._rx_length is None and self._rx_filled and now - self._rx_started > limits.pdu_header_timeout_s:
            self.abort_peer(f"PDU header incomplete after {limits.pdu_header_timeout_s:g} s", ABORT_NOT_SPECIFIED)
        elif self._rx_length is not None and now - self._rx_body_started > limits.pdu_body_timeout_s:
            self.abort_peer(
                f"PDU body incomplete after {limits.pdu_body_timeout_s:g} s "
                f"({self._rx_filled - 6} of {self._rx_length} bytes)",
                ABORT_NOT_SPECIFIED,
            )
        elif self._dimse_started is not None:
            timeout = self.assoc.dimse_timeout
            if timeout is not None and now - self._dimse_started > timeout:
                self.abort_peer(f"DIMSE message incomplete after {timeout:g} s", ABORT_NOT_SPECIFIED)

    def abort_peer(self, reason: str, diagnostic: int) -> None:
        """Send an A-ABORT (service provider) and close the connection, from the upper layer's
        thread; the state machine then ends the association as for a dropped connection."""
        LOGGER.warning("DICOM peer %s: %s; association aborted", self._peer, reason)
        abort = A_ABORT_RQ()
        abort.source = 0x02
        abort.reason_diagnostic = diagnostic
        sock = self.socket
        self._reset_rx()
        self._dimse_started = None
        if sock is not None and sock.socket is not None:
            try:
                sock.socket.send(abort.encode(), _DONTWAIT)
            except (OSError, ValueError):
                pass  # the peer does not read: the connection is closed anyway
            sock.close()  # Evt17

    def _do_action(self, event: str) -> None:
        try:
            self.state_machine.do_action(event)
        except InvalidEventError:
            state = self.state_machine.current_state
            if state != "Sta1":  # in Sta1 the connection is gone already: nothing to end
                LOGGER.warning("DICOM peer %s: %s unexpected in %s", self._peer, event, state)
                if self._connected():
                    self.abort_peer("protocol error", ABORT_NOT_SPECIFIED)
            return
        if event == "Evt10":  # a P-DATA-TF: a DIMSE message begun, continued or completed
            message = self.assoc.dimse.message
            if message is None:
                self._dimse_started = None
                return
            self._message_grew(message)

    def _abort_after_error(self) -> None:
        """Send an A-ABORT straight to the peer and stop both reactors (the state machine
        cannot be trusted after an error in it)."""
        LOGGER.exception("error in the DICOM upper layer; aborting the association")
        abort = A_ABORT_RQ()
        abort.source = 0x02
        abort.reason_diagnostic = 0x00
        try:
            if self.socket is not None:
                self.socket.send(abort.encode())
        except OSError:
            pass
        self.assoc.is_aborted = True
        self.assoc.is_established = False
        self.assoc._kill = True
        self._kill_thread = True


def _tell(stream: Any) -> int:
    try:
        return int(stream.tell()) if stream is not None else 0
    except (OSError, ValueError):
        return 0


def encode_store_response(
    context_id: int, message_id: int, sop_class_uid: str, sop_instance_uid: str, status: int,
    error_comment: str = "",
) -> P_DATA:
    """A C-STORE-RSP as one P-DATA primitive: the command set (implicit VR little endian,
    PS3.7 E.1 and 9.3.1.2) written by hand, in one last command fragment (PS3.8 E.2), with an
    Error Comment (0000,0902) when one is given."""

    def element(element_number: int, value: bytes) -> bytes:
        return struct.pack("<HHL", 0x0000, element_number, len(value)) + value

    def uid(value: str) -> bytes:
        raw = value.encode("ascii", "replace")  # a peer's malformed UID, echoed: never a crash
        return raw + b"\0" if len(raw) % 2 else raw

    comment = error_comment.encode("ascii", "replace")[:64]
    body = b"".join(
        (
            element(0x0002, uid(sop_class_uid)),
            element(0x0100, struct.pack("<H", 0x8001)),  # C-STORE-RSP
            element(0x0120, struct.pack("<H", message_id)),
            element(0x0800, struct.pack("<H", 0x0101)),  # no data set
            element(0x0900, struct.pack("<H", status)),
            *([element(0x0902, comment + b" " * (len(comment) % 2))] if comment else []),
            element(0x1000, uid(sop_instance_uid)),
        )
    )
    command = element(0x0000, struct.pack("<L", len(body))) + body
    primitive = P_DATA()
    primitive.presentation_data_value_list.append((context_id, b"\x03" + command))
    return primitive


def encode_p_data_tf(primitive: P_DATA) -> bytes:
    """The P-DATA-TF PDU (PS3.8 9.3.5) of a P-DATA primitive: each presentation data value
    (its message control header first) in an item with its length and context ID."""
    items = b"".join(
        struct.pack(">LB", 1 + len(value), context_id) + bytes(value)
        for context_id, value in primitive.presentation_data_value_list
    )
    return struct.pack(">BBL", 0x04, 0x00, len(items)) + items


#: ``store(assoc, request, transfer_syntax_uid) -> status``: a C-STORE handler called straight
#: from the reactor, set as ``fast_store`` on the server (see :class:`PromptAssociation`).
FastStore = Callable[[Any, C_STORE, str], int]


class PromptAssociation(Association):
    """An acceptor association that serves each DIMSE message as soon as it is complete.

    When the server has a ``fast_store`` callable, C-STORE requests go straight to it and its
    status goes back in a response encoded by :func:`encode_store_response`, instead of through
    pynetdicom's storage service class, event objects and validated response primitives (they
    took as much time as everything else a received instance costs). The EVT_C_STORE and
    EVT_DIMSE_SENT events are then not triggered for C-STORE; every other message is served by
    pynetdicom as usual.
    """

    def __init__(self, ae: Any, mode: str, limits: NetworkLimits | None = None):
        super().__init__(ae, mode)
        self.dul = PromptDul(self, limits)
        # the time-outs are applied to the upper layer's timers when set: set them again
        self.acse_timeout = self.ae.acse_timeout
        self.network_timeout = self.ae.network_timeout

    def run_reactor(self) -> None:
        """pynetdicom's acceptor reactor, waiting for the association request no longer than
        the upper layer allows (it ends the connection of a peer that sends none)."""
        if not self._started_dul:
            self.dul.start()
            self._started_dul = True
            self._dul_ready.wait()
        try:
            primitive = self._wait_for_request()
            if primitive is None:
                self.kill()
                return
            self.requestor.primitive = primitive
            from pynetdicom import evt

            evt.trigger(self, evt.EVT_REQUESTED, {})
            if not self.is_aborted and not self.is_rejected:
                self.acse.negotiate_association()
            if self.is_established:
                with set_timer_resolution(self._timer_resolution):
                    self._run_reactor()
        finally:
            sock = self.dul.socket
            if self._server is not None and sock is not None and sock.socket is not None:
                self._server.shutdown_request(sock.socket)

    def _wait_for_request(self) -> A_ASSOCIATE | None:
        dul = self.dul
        backstop = time.monotonic() + dul.limits.request_timeout_s + 1.0
        while True:
            primitive = dul.receive_pdu(wait=True, timeout=TIMER_CHECK_S)
            if primitive is not None:
                return primitive if isinstance(primitive, A_ASSOCIATE) else None
            sock = dul.socket
            if sock is None or sock.socket is None or not dul.is_alive() or time.monotonic() > backstop:
                return None

    def kill(self) -> None:
        """pynetdicom's kill, with a bounded wait for the upper layer to reach Sta1."""
        self._reactor_checkpoint.set()
        self._kill = True
        self.is_established = False
        self._is_paused = True
        deadline = time.monotonic() + KILL_WAIT_S
        while self.dul.is_alive() and not self.dul.stop_dul():
            if time.monotonic() > deadline or threading.current_thread() is self.dul:
                self.dul.kill_dul()
                break
            time.sleep(0.01)

    def request_stop(self, reason: str = "the listener is stopping") -> None:
        """Abort the association from any thread: A-ABORT to the peer, connection closed, and
        the association ends as aborted (EVT_ABORTED)."""
        dul = self.dul
        if isinstance(dul, PromptDul):
            dul.request_abort(reason)

    def _run_reactor(self) -> None:
        self._is_paused = False
        while not self._kill:
            # let a send_*() call made from a handler take the next message itself
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False

            try:
                context_id, message = self.dimse.msg_queue.get(timeout=CONTROL_CHECK_S)
            except queue.Empty:
                context_id, message = None, None
            if message is not None:
                self._serve_request(message, context_id)
                continue  # more messages may be queued: control checks when idle
            if self._finished():
                return

    def _fast_store(self, msg: Any, context_id: int) -> tuple[FastStore, Any] | None:
        """The server's ``fast_store`` and the presentation context, when ``msg`` is a C-STORE
        request it may serve; None for pynetdicom's way."""
        fast_store: FastStore | None = getattr(self._server, "fast_store", None)
        context = self._accepted_cx.get(context_id)
        if (
            fast_store is None
            or not isinstance(msg, C_STORE | StoreRequest)
            or context is None
            or self._sent_release
            or not msg.is_valid_request
            or (self.dimse.maximum_pdu_size and self.dimse.maximum_pdu_size < 512)
        ):
            return None
        return fast_store, context

    def serve_store_now(self, msg: Any, context_id: int) -> bool:
        """Serve a C-STORE request in the upper layer's thread as soon as it is complete, and
        send its answer from there (called by :meth:`PromptDul._complete_store`). False (the
        request is then queued for this association's thread) when the request is not one
        ``fast_store`` serves, or when messages wait before it, whose answers come first."""
        if not self.is_established or not self.dimse.msg_queue.empty():
            return False
        found = self._fast_store(msg, context_id)
        if found is None:
            return False
        self._store_and_answer(msg, context_id, *found)
        return True

    def _serve_request(self, msg: Any, context_id: int) -> None:
        found = self._fast_store(msg, context_id)
        if found is None:
            super()._serve_request(msg, context_id)
            return
        self._store_and_answer(msg, context_id, *found)

    def _store_and_answer(self, msg: Any, context_id: int, fast_store: FastStore, context: Any) -> None:
        """Call ``fast_store`` and send its status back in a C-STORE response."""
        try:
            status = fast_store(self, msg, str(context.transfer_syntax[0]))
        except Exception:
            LOGGER.exception("error in the C-STORE handler")
            status = 0xC211  # the status pynetdicom answers when a C-STORE handler fails
        if self.is_established:
            dul = self.dul
            send = dul.send_now if isinstance(dul, PromptDul) else dul.send_pdu
            send(
                encode_store_response(
                    context_id,
                    int(msg.MessageID),
                    str(msg.AffectedSOPClassUID),
                    str(msg.AffectedSOPInstanceUID),
                    int(status),
                    getattr(status, "error_comment", ""),
                )
            )

    def _finished(self) -> bool:
        """Handle a release, an abort, a dead upper layer or the network time-out."""
        from pynetdicom import evt

        if self.is_established and self.acse.is_release_requested():
            before_release = getattr(self._server, "before_release", None)
            if before_release is not None:  # e.g. the sink commits what it holds for this association
                before_release(self)
            self.acse.send_release(is_response=True)
            self.is_released = True
            self.is_established = False
            evt.trigger(self, evt.EVT_RELEASED, {})
            self.kill()
            return True
        if self.acse.is_aborted():
            self.dul.receive_pdu(wait=False)  # so EVT_ACSE_RECV handlers see the abort
            self.is_aborted = True
            self.is_established = False
            evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return True
        if not self.dul.is_alive():
            if self.is_aborted:  # the upper layer aborted after an error (_abort_after_error)
                evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return True
        if self.dul.idle_timer_expired():
            LOGGER.warning("DICOM network time-out; ending the association")
            if self.network_timeout_response == "A-RELEASE":
                self._is_paused = True
                self._reactor_checkpoint.wait()
                self.release()
                self._is_paused = False
            else:
                self.abort()
            self.kill()
            return True
        return False


class BulkReadSocket(AssociationSocket):
    """pynetdicom's association socket, reading with as few system calls as the network
    allows (pynetdicom reads 4 KiB at a time: 128 reads and copies per CT slice).

    :class:`PromptDul` reads PDUs itself; :meth:`recv` serves any other caller, into a buffer
    that grows with what has arrived rather than with what was asked for."""

    def recv(self, nr_bytes: int) -> bytearray:
        buffer = bytearray(min(nr_bytes, FIRST_CHUNK))
        received = 0
        while received < nr_bytes:
            if received == len(buffer):
                buffer.extend(bytes(min(len(buffer), nr_bytes - len(buffer))))
            with memoryview(buffer) as view:
                count = self.socket.recv_into(view[received:], len(buffer) - received)
            if not count:  # connection broken: what arrived, as pynetdicom does
                del buffer[received:]
                return buffer
            received += count
        return buffer


_SLOTS_LOCK = threading.Lock()


class BoundedAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with a listen backlog of :attr:`request_queue_size`
    connections instead of socketserver's 5: with 5, a handful of peers connecting at once made
    the kernel drop the next connection attempts (retried after 1 s, 3 s, 7 s...), the allowed
    hospital's among them, before :class:`PromptRequestHandler` could refuse any."""

    request_queue_size = 256


class PromptRequestHandler(RequestHandler):
    """Builds a :class:`PromptAssociation` for each incoming connection, configured as
    pynetdicom's own handler configures its associations, within the server's
    :class:`NetworkLimits` (its ``limits`` attribute): a connection over the number allowed in
    all or from its address gets an A-ASSOCIATE-RJ (transient, local limit exceeded) at once.
    While the server's ``refusing`` attribute is true (the listener is stopping), every new
    connection is refused so."""

    @property
    def limits(self) -> NetworkLimits:
        return getattr(self.server, "limits", None) or NetworkLimits()

    def handle(self) -> None:
        limits = self.limits
        address = str(self.client_address[0])
        with getattr(self.server, "slots_lock", _SLOTS_LOCK):
            refusal = None
            if getattr(self.server, "refusing", False):
                refusal = "the listener is stopping"
            else:
                open_now = self.server.active_associations
                from_address = sum(1 for assoc in open_now if assoc.requestor.address == address)
                if len(open_now) >= limits.max_associations:
                    refusal = f"{len(open_now)} connections open (limit {limits.max_associations})"
                elif from_address >= limits.max_associations_per_address:
                    refusal = (
                        f"{from_address} connections open from this address "
                        f"(limit {limits.max_associations_per_address})"
                    )
            if refusal is None:
                super().handle()  # starts the association's thread
                return
        LOGGER.warning("connection from %s refused: %s", address, refusal)
        refuse_connection(self.request)

    def _create_association(self) -> Association:
        from pynetdicom import evt

        assoc = PromptAssociation(self.ae, MODE_ACCEPTOR, self.limits)
        assoc._server = self.server
        assoc.name = f"AcceptorThread@{time.strftime('%Y%m%d%H%M%S')}"
        assoc.set_socket(BulkReadSocket(assoc, client_socket=self.request))

        ae, server = self.ae, self.server
        acceptor = assoc.acceptor
        acceptor.maximum_length = ae.maximum_pdu_size
        acceptor.ae_title = server.ae_title
        acceptor.address_info = self.local
        acceptor.implementation_class_uid = ae.implementation_class_uid
        acceptor.implementation_version_name = ae.implementation_version_name
        acceptor.supported_contexts = copy_contexts(server.contexts)
        assoc.requestor.address_info = self.remote

        for event, bound in server._handlers.items():
            if event.is_intervention:
                if bound:
                    assoc.bind(event, *bound)
            elif isinstance(event, evt.NotificationEvent):
                for handler, args in bound:
                    assoc.bind(event, handler, args)
        return assoc


def copy_contexts(contexts: list[PresentationContext]) -> list[PresentationContext]:
    """Copies of the server's presentation contexts for one association (negotiation sets their
    results, roles and identifiers). What ``copy.deepcopy`` gives, in a small part of its time:
    the UIDs are immutable strings and are shared, pydicom re-validated every one of the few
    thousand for each association."""
    copies = []
    for context in contexts:
        twin = PresentationContext.__new__(PresentationContext)
        twin.__dict__.update(context.__dict__)
        twin._transfer_syntax = list(context._transfer_syntax)
        copies.append(twin)
    return copies


def refuse_connection(sock: socket.socket) -> None:
    """Answer a connection with an A-ASSOCIATE-RJ (rejected transient, service provider
    presentation related, local limit exceeded) and close it, reading what the peer sent
    meanwhile for at most :data:`REFUSAL_DRAIN_S` so that it gets the answer (a close with
    unread bytes resets the connection)."""
    reject = A_ASSOCIATE_RJ()
    reject.result = 0x02
    reject.source = 0x03
    reject.reason_diagnostic = 0x02
    deadline = time.monotonic() + REFUSAL_DRAIN_S
    try:
        sock.settimeout(REFUSAL_DRAIN_S)
        sock.sendall(reject.encode())
        sock.shutdown(socket.SHUT_WR)
        drained = 0
        while drained < 1024 * 1024:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                break
            drained += len(chunk)
    except OSError:
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass
