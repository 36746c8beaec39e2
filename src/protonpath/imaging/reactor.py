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
"""

from __future__ import annotations

import copy
import logging
import queue
import select
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from pynetdicom._globals import MODE_ACCEPTOR
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationSocket, RequestHandler

LOGGER = logging.getLogger(__name__)

#: Longest sleep of the upper-layer thread when nothing happens (timers are checked after it).
TIMER_CHECK_S = 0.05
#: Longest wait of the acceptor thread for a DIMSE message before it checks release and abort.
CONTROL_CHECK_S = 0.005


class PromptDul(DULServiceProvider):
    """An upper-layer service provider that sleeps until there is something to do."""

    def __init__(self, assoc: Any):
        super().__init__(assoc)
        self._wake_receiver, self._wake_sender = socket.socketpair()
        self._wake_receiver.setblocking(False)
        self._wake_sender.setblocking(False)

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
                    # one primitive to send, or else one PDU received, per pass
                    if not self._process_recv_primitive() and self._is_transport_event():
                        self._idle_timer.restart()
                except Exception:
                    self._abort_after_error()
                    return
                try:
                    event = self.event_queue.get_nowait()
                except queue.Empty:
                    self._wait_for_work()
                    continue
                self.state_machine.do_action(event)
        finally:
            self._wake_receiver.close()
            self._wake_sender.close()

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
        raw = value.encode("ascii")
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

    def __init__(self, ae: Any, mode: str):
        super().__init__(ae, mode)
        self.dul = PromptDul(self)
        # the time-outs are applied to the upper layer's timers when set: set them again
        self.acse_timeout = self.ae.acse_timeout
        self.network_timeout = self.ae.network_timeout

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

    def _serve_request(self, msg: Any, context_id: int) -> None:
        fast_store: FastStore | None = getattr(self._server, "fast_store", None)
        context = self._accepted_cx.get(context_id)
        if (
            fast_store is None
            or not isinstance(msg, C_STORE)
            or context is None
            or self._sent_release
            or not msg.is_valid_request
            or (self.dimse.maximum_pdu_size and self.dimse.maximum_pdu_size < 512)
        ):
            super()._serve_request(msg, context_id)
            return
        try:
            status = fast_store(self, msg, str(context.transfer_syntax[0]))
        except Exception:
            LOGGER.exception("error in the C-STORE handler")
            status = 0xC211  # the status pynetdicom answers when a C-STORE handler fails
        if self.is_established:
            self.dul.send_pdu(
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
    """pynetdicom's association socket, reading each PDU with as few system calls as the
    network allows (pynetdicom reads 4 KiB at a time: 128 reads and copies per CT slice)."""

    def recv(self, nr_bytes: int) -> bytearray:
        buffer = bytearray(nr_bytes)
        view = memoryview(buffer)
        received = 0
        while received < nr_bytes:
            count = self.socket.recv_into(view[received:], nr_bytes - received)
            if not count:  # connection broken: what arrived, as pynetdicom does
                del view
                del buffer[received:]
                return buffer
            received += count
        return buffer


class PromptRequestHandler(RequestHandler):
    """Builds a :class:`PromptAssociation` for each incoming connection, configured as
    pynetdicom's own handler configures its associations."""

    def _create_association(self) -> Association:
        from pynetdicom import evt

        assoc = PromptAssociation(self.ae, MODE_ACCEPTOR)
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
        acceptor.supported_contexts = copy.deepcopy(server.contexts)
        assoc.requestor.address_info = self.remote

        for event, bound in server._handlers.items():
            if event.is_intervention:
                if bound:
                    assoc.bind(event, *bound)
            elif isinstance(event, evt.NotificationEvent):
                for handler, args in bound:
                    assoc.bind(event, handler, args)
        return assoc
