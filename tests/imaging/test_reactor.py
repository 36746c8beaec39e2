"""The listener's event-driven reactors and its C-STORE fast path (imaging/reactor.py)."""

from __future__ import annotations

import time

import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import CTImageStorage, Verification

from protonpath.imaging.reactor import PromptAssociation, encode_store_response
from protonpath.imaging.scp import STATUS_OUT_OF_RESOURCES, InstanceRefused
from tests.imaging.dicomdata import pydicom_file
from tests.imaging.test_scp import AE_TITLE, Recorder, start_listener

pytestmark = pytest.mark.dicom_peer

CT_CLASS = "1.2.840.10008.5.1.4.1.1.2"


def pynetdicom_store_response(context_id, message_id, class_uid, instance_uid, status) -> bytes:
    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = message_id
    primitive.AffectedSOPClassUID = class_uid
    primitive.AffectedSOPInstanceUID = instance_uid
    primitive.Status = status
    message = C_STORE_RSP()
    message.primitive_to_message(primitive)
    (pdata,) = list(message.encode_msg(context_id, 16382))
    return pdata.presentation_data_value_list[0][1]


@pytest.mark.parametrize(
    ("instance_uid", "status"),
    [("1.2.826.0.1.3680043.8.498.12345", 0x0000), ("1.2.3.4.5", 0xA900), ("1.22", 0xC000)],
)
def test_the_hand_written_store_response_is_byte_for_byte_pynetdicoms(instance_uid, status):
    ours = encode_store_response(7, 42, CT_CLASS, instance_uid, status)
    (pdv,) = ours.presentation_data_value_list
    assert pdv[0] == 7
    assert pdv[1] == pynetdicom_store_response(7, 42, CT_CLASS, instance_uid, status)

    decoded = C_STORE_RSP()
    assert decoded.decode_msg(ours)
    primitive = decoded.message_to_primitive()
    assert (primitive.MessageIDBeingRespondedTo, primitive.Status) == (42, status)
    assert (primitive.AffectedSOPClassUID, primitive.AffectedSOPInstanceUID) == (CT_CLASS, instance_uid)


def ct_dataset():
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.SOPInstanceUID = generate_uid()
    return ds


def associate(listener, *contexts, network_timeout=None):
    ae = AE(ae_title="HOSPITAL")
    for context in contexts or (CTImageStorage,):
        ae.add_requested_context(context, ImplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title=AE_TITLE)
    assert assoc.is_established
    return assoc


def store_series(listener, sink, n: int) -> list[int]:
    """``n`` CT instances over one association, released and ended at the sink; the statuses
    answered (the listener is stopped afterwards in any case)."""
    try:
        assoc = associate(listener)
        statuses = [assoc.send_c_store(ct_dataset()).Status for _ in range(n)]
        assoc.release()
        sink.wait_end()
    finally:
        listener.stop()
    return statuses


class FlakySink(Recorder):
    """Refuses the first instance, fails on the second, keeps the rest."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __call__(self, instance):
        self.calls += 1
        if self.calls == 1:
            raise InstanceRefused("wrong patient", status=0xA900)
        if self.calls == 2:
            raise RuntimeError("database down")
        super().__call__(instance)


def test_statuses_from_the_sink_reach_the_peer_through_the_fast_path(tmp_path):
    sink = FlakySink()
    listener = start_listener(tmp_path, sink)
    try:
        assoc = associate(listener)
        statuses = [assoc.send_c_store(ct_dataset()).Status for _ in range(3)]
        assert [a for a in listener.ae.active_associations if isinstance(a, PromptAssociation)]
        assoc.release()
        summary = sink.wait_end()
    finally:
        listener.stop()
    assert statuses == [0xA900, STATUS_OUT_OF_RESOURCES, 0x0000]
    assert (summary.outcome, summary.stored, summary.refused) == ("released", 1, 2)


def test_echoes_go_through_pynetdicom_and_the_release_ends_the_transfer(tmp_path):
    recorder = Recorder()
    listener = start_listener(tmp_path, recorder)
    try:
        assoc = associate(listener, CTImageStorage, Verification)
        for _ in range(20):
            assert assoc.send_c_echo().Status == 0x0000
        assert assoc.send_c_store(ct_dataset()).Status == 0x0000
        assoc.release()
        summary = recorder.wait_end()
    finally:
        listener.stop()
    assert summary.outcome == "released" and summary.stored == 1
    assert not assoc.is_established


def test_an_idle_association_is_ended_by_the_network_time_out(tmp_path):
    recorder = Recorder()
    listener = start_listener(tmp_path, recorder, network_timeout_s=0.5)
    try:
        assoc = associate(listener)
        assert assoc.send_c_store(ct_dataset()).Status == 0x0000
        summary = recorder.wait_end()  # nothing more sent: the listener ends it
        deadline = time.monotonic() + 5
        while assoc.is_established and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        listener.stop()
    assert summary.stored == 1
    assert summary.outcome == "aborted"
    assert not assoc.is_established


def test_the_bulk_read_socket_reads_whole_pdus_and_returns_what_came_before_a_cut():
    import socket as socketlib
    import threading

    from protonpath.imaging.reactor import BulkReadSocket

    ours, peer = socketlib.socketpair()
    try:
        sock = BulkReadSocket(PromptAssociation(AE(), "acceptor"), client_socket=ours)
        payload = bytes(range(256)) * 2048  # 512 KiB, more than the socket buffers hold
        sender = threading.Thread(target=peer.sendall, args=(payload,))
        sender.start()
        assert sock.recv(len(payload)) == payload
        sender.join()
        peer.sendall(b"0123456789")
        peer.close()
        assert sock.recv(20) == bytearray(b"0123456789")
    finally:
        ours.close()


def test_a_request_for_128_storage_classes_with_every_transfer_syntax_is_accepted(tmp_path):
    """The cap on PDUs before the association (256 KiB) lets in the largest real request:
    this one is about 154 KiB."""
    from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts

    listener = start_listener(tmp_path, Recorder())
    try:
        ae = AE(ae_title="HOSPITAL")
        for context in AllStoragePresentationContexts[:128]:
            ae.add_requested_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        assoc = ae.associate("127.0.0.1", listener.port, ae_title=AE_TITLE)
        assert assoc.is_established
        assert len(assoc.accepted_contexts) == 128
        assert assoc.send_c_store(ct_dataset()).Status == 0x0000
        assoc.release()
    finally:
        listener.stop()


def test_a_message_larger_than_the_limit_is_aborted_and_nothing_kept(tmp_path):
    import numpy as np

    recorder = Recorder()
    # in 64 KiB PDUs: the message is counted as its fragments arrive
    listener = start_listener(tmp_path, recorder, max_message_bytes=1024 * 1024, maximum_pdu_size=65536)
    try:
        big = ct_dataset()
        big.Rows = big.Columns = 1024
        big.PixelData = np.zeros((1024, 1024), dtype=np.uint16).tobytes()  # 2 MiB
        assoc = associate(listener)
        status = assoc.send_c_store(big)
        deadline = time.monotonic() + 5
        while assoc.is_established and time.monotonic() < deadline:
            time.sleep(0.05)
        summary = recorder.wait_end()
        assert assoc.is_aborted and not status
        # an instance under the limit goes through on the next association
        assoc = associate(listener)
        assert assoc.send_c_store(ct_dataset()).Status == 0x0000
        assoc.release()
    finally:
        listener.stop()
    assert (summary.outcome, summary.stored) == ("aborted", 0)
    assert len(recorder.instances) == 1


def test_an_instance_in_many_pdus_is_written_whole_and_handed_over_as_written(tmp_path):
    """With 16 KiB PDUs a CT slice comes in about 10 fragments; all but the last go straight
    into the message being received (PromptDul._append_data_fragments)."""
    recorder = Recorder()
    listener = start_listener(tmp_path, recorder, maximum_pdu_size=16384)
    try:
        sent = [ct_dataset() for _ in range(3)]
        assoc = associate(listener)
        statuses = [assoc.send_c_store(ds).Status for ds in sent]
        assoc.release()
        recorder.wait_end()
    finally:
        listener.stop()
    assert statuses == [0x0000] * 3
    assert [r.sop_instance_uid for r in recorder.instances] == [ds.SOPInstanceUID for ds in sent]
    for received, ds in zip(recorder.instances, sent, strict=True):
        assert received.data == received.path.read_bytes()
        kept = pydicom.dcmread(received.path)
        assert kept.PixelData == ds.PixelData
        assert kept.SOPInstanceUID == ds.SOPInstanceUID
        assert kept.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian


def test_copied_presentation_contexts_are_deep_copies_that_negotiation_cannot_share():
    import copy

    from pynetdicom import AllStoragePresentationContexts

    from protonpath.imaging.reactor import copy_contexts
    from protonpath.imaging.scp import STORAGE_TRANSFER_SYNTAXES

    ae = AE()
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, STORAGE_TRANSFER_SYNTAXES)
    originals = ae.supported_contexts
    copies = copy_contexts(originals)
    deep = copy.deepcopy(originals)
    assert [vars(c) for c in copies] == [vars(c) for c in deep]
    copies[0].result = 0x00
    copies[0].context_id = 1
    copies[0].transfer_syntax = [ImplicitVRLittleEndian]
    assert originals[0].result is None and originals[0].context_id is None
    assert originals[0].transfer_syntax == list(STORAGE_TRANSFER_SYNTAXES)


def test_stores_are_served_in_the_upper_layer_thread_and_slots_are_made_ahead(tmp_path, monkeypatch):
    """A C-STORE complete in its last PDU is served where it was received (no hand-over to the
    acceptor's thread), and the journal's next batch of slots is made in its own thread before
    the current one runs out; nothing is left once the association ends."""
    import threading

    from protonpath.imaging import scp

    served_in, made_in = [], []
    serve_now = PromptAssociation.serve_store_now
    make_slots = scp.DicomListener._make_slots

    def recording_serve(self, msg, context_id):
        served_in.append(threading.current_thread() is self.dul)
        return serve_now(self, msg, context_id)

    def recording_make(self, transfer):
        made_in.append(threading.current_thread().name)
        return make_slots(self, transfer)

    monkeypatch.setattr(PromptAssociation, "serve_store_now", recording_serve)
    monkeypatch.setattr(scp.DicomListener, "_make_slots", recording_make)
    recorder = Recorder()
    listener = start_listener(tmp_path, recorder)
    try:
        assoc = associate(listener, CTImageStorage, Verification)
        for _ in range(30):
            assert assoc.send_c_store(ct_dataset()).Status == 0x0000
        assert assoc.send_c_echo().Status == 0x0000  # still pynetdicom's way
        assoc.release()
        summary = recorder.wait_end()
    finally:
        listener.stop()
    assert summary.stored == 30 and len(recorder.instances) == 30
    assert served_in == [True] * 30
    # batches of 4, 4, 8 and 16 slots: the first when the first instance came, the rest ahead of need
    assert not made_in[0].startswith("dicom-journal-slots") and made_in[1:] and all(
        name.startswith("dicom-journal-slots") for name in made_in[1:]
    )
    incoming = listener.settings.incoming_dir
    unused = [p for p in incoming.rglob(f"*{scp.SLOT_SUFFIX}") if p.stat().st_size == 0]
    assert unused == []


# --- the C-STORE-RQ command set decoder (decode_store_request) ------------------------------------


def pynetdicom_store_command(message_id, class_uid, instance_uid, priority, move_ae=None, move_id=None) -> bytes:
    """The command set pynetdicom encodes for a C-STORE-RQ (without the fragment's control byte)."""
    import io

    from pynetdicom.dimse_messages import C_STORE_RQ

    primitive = C_STORE()
    primitive.MessageID = message_id
    primitive.AffectedSOPClassUID = class_uid
    primitive.AffectedSOPInstanceUID = instance_uid
    primitive.Priority = priority
    if move_ae is not None:
        primitive.MoveOriginatorApplicationEntityTitle = move_ae
        primitive.MoveOriginatorMessageID = move_id
    primitive.DataSet = io.BytesIO(b"\x08\x00\x16\x00\x00\x00\x00\x00")
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    command = next(iter(message.encode_msg(1, 0))).presentation_data_value_list[0][1]
    assert command[0] & 0x03 == 0x03
    return bytes(command[1:])


def random_uid(rng) -> str:
    # odd and even lengths (odd ones padded with a NUL), 1 to 64 characters
    length = rng.randint(3, 64)
    uid = "1." + ".".join(str(rng.randint(0, 99999)) for _ in range(30))
    return uid[:length].rstrip(".")


def test_the_store_command_decoder_reads_what_pynetdicom_encodes_as_pynetdicom_does():
    import random

    from pynetdicom.dimse_messages import C_STORE_RQ as C_STORE_RQ_MESSAGE

    from protonpath.imaging.reactor import decode_store_request

    rng = random.Random(17)
    for number in range(300):
        move = number % 3 == 0
        fields = (
            rng.randint(0, 65535), random_uid(rng), random_uid(rng), rng.choice((0, 1, 2)),
            "".join(rng.choice("ABCXYZ_0189 ") for _ in range(rng.randint(1, 16))).strip() or "M" if move else None,
            rng.randint(0, 65535) if move else None,
        )
        command = pynetdicom_store_command(*fields)
        ours = decode_store_request(command)
        message = C_STORE_RQ_MESSAGE()
        message.encoded_command_set.write(command)
        from pynetdicom.dsutils import decode

        message.command_set = decode(message.encoded_command_set, True, True)
        theirs = message.message_to_primitive()
        assert ours is not None, fields
        for name in ("MessageID", "AffectedSOPClassUID", "AffectedSOPInstanceUID", "Priority",
                     "MoveOriginatorMessageID"):
            assert getattr(ours, name) == getattr(theirs, name), name
        theirs_ae = theirs.MoveOriginatorApplicationEntityTitle
        assert ours.MoveOriginatorApplicationEntityTitle == (theirs_ae.strip() if theirs_ae else None)


def store_command_elements(**changes):
    """A C-STORE-RQ command set element by element: (element, value bytes), changes applied
    (None removes an element), group length first and right."""
    import struct

    elements = {
        0x0002: b"1.2.840.10008.5.1.4.1.1.2\0", 0x0100: struct.pack("<H", 1), 0x0110: struct.pack("<H", 9),
        0x0700: struct.pack("<H", 0), 0x0800: struct.pack("<H", 0x0000), 0x1000: b"1.2.3.4.5\0",
    }
    for key, value in changes.items():
        number = int(key[1:], 16)
        if value is None:
            elements.pop(number, None)
        else:
            elements[number] = value
    return elements


def encode_elements(elements, group_length=True, order=None):
    import struct

    body = b"".join(
        struct.pack("<HHL", 0, number, len(elements[number])) + elements[number]
        for number in (order or sorted(elements))
    )
    return (struct.pack("<HHL", 0, 0, 4) + struct.pack("<L", len(body)) if group_length else b"") + body


def test_the_store_command_decoder_refuses_anything_else_or_odd():
    import random
    import struct

    from protonpath.imaging.reactor import decode_store_request

    good = encode_elements(store_command_elements())
    request = decode_store_request(good)
    assert request is not None and (request.MessageID, request.AffectedSOPInstanceUID) == (9, "1.2.3.4.5")
    assert decode_store_request(encode_elements(store_command_elements(), group_length=False)) is not None
    odd = [
        encode_elements(store_command_elements(x0100=struct.pack("<H", 0x0030))),  # a C-ECHO-RQ
        encode_elements(store_command_elements(x0100=struct.pack("<H", 0x8001))),  # a C-STORE-RSP
        encode_elements(store_command_elements(x0800=struct.pack("<H", 0x0101))),  # no data set
        encode_elements(store_command_elements(x0700=struct.pack("<H", 3))),  # no such priority
        encode_elements(store_command_elements(x0110=b"\x01")),  # a US of one byte
        encode_elements(store_command_elements(x0110=None)),  # no Message ID
        encode_elements(store_command_elements(x1000=None)),  # no SOP Instance UID
        encode_elements(store_command_elements(x0002=None)),
        encode_elements(store_command_elements(x0700=None)),
        encode_elements(store_command_elements(x1000=b"1.2.3.x\0")),  # not a UID
        encode_elements(store_command_elements(x1000=b"1." + b"2" * 70)),  # too long
        encode_elements(store_command_elements(x1000=b".1.2")),
        encode_elements(store_command_elements(x0600=b"DEST")),  # Move Destination: a C-MOVE's
        encode_elements(store_command_elements(x1030=b"BACK\\SLASH")),
        encode_elements(store_command_elements(x1030=b"A" * 17)),
        encode_elements(store_command_elements(), order=[0x0100, 0x0002, 0x0110, 0x0700, 0x0800, 0x1000]),
        encode_elements(store_command_elements()) + encode_elements({0x0110: struct.pack("<H", 1)}, False),
        good[:8] + struct.pack("<L", 10) + good[12:],  # a group length that is not the rest
        good + b"\x08\x00\x16\x00\x00\x00\x00\x00",  # an element of another group
        b"",
        b"\x00" * 7,
    ]
    for command in odd:
        assert decode_store_request(command) is None, command
    for cut in range(len(good)):
        assert decode_store_request(good[:cut]) is None
    rng = random.Random(6)
    for _ in range(3000):  # never raises, whatever the bytes
        mangled = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            mangled[rng.randrange(len(mangled))] = rng.randrange(256)
        request = decode_store_request(bytes(mangled))
        assert request is None or isinstance(request.MessageID, int)


# --- the data set written into its slot as it arrives --------------------------------------------


def pause_reactor(assoc) -> None:
    """Keep the requestor's own reactor from taking the responses (as its send_* methods do)."""
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        time.sleep(0.0001)


def get_response(assoc):
    _, response = assoc.dimse.get_msg(block=True)
    assoc._reactor_checkpoint.set()
    return response


def send_store_raw(assoc, command: bytes, dataset: bytes, fragment: int = 8192, last: bool = True):
    """Send a C-STORE-RQ's command set and data set as P-DATA-TF PDUs, fragment by fragment."""
    from pynetdicom.pdu_primitives import P_DATA

    pause_reactor(assoc)

    context_id = assoc.accepted_contexts[0].context_id
    primitive = P_DATA()
    primitive.presentation_data_value_list.append((context_id, b"\x03" + command))
    assoc.dul.send_pdu(primitive)
    for start in range(0, len(dataset), fragment):
        end = start + fragment
        primitive = P_DATA()
        control = b"\x02" if end >= len(dataset) and last else b"\x00"
        primitive.presentation_data_value_list.append((context_id, control + dataset[start:end]))
        assoc.dul.send_pdu(primitive)


def encoded_dataset(ds) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, ds)
    return buffer.getvalue()


def wait_for(condition, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_data_set_is_in_its_slot_before_its_last_fragment_and_sealed_once_whole(tmp_path):
    from protonpath.imaging.scp import SLOT_SUFFIX, journal_entry_digest

    recorder = Recorder()
    listener = start_listener(tmp_path, recorder, maximum_pdu_size=16384)
    incoming = listener.settings.incoming_dir
    try:
        ds = ct_dataset()
        dataset = encoded_dataset(ds)
        command = pynetdicom_store_command(5, CT_CLASS, ds.SOPInstanceUID, 0)
        assoc = associate(listener)
        send_store_raw(assoc, command, dataset[:-100], last=False)

        def written():
            return [p.read_bytes() for p in incoming.rglob(f"*{SLOT_SUFFIX}") if p.stat().st_size]

        wait_for(lambda: written() and len(written()[0]) >= len(dataset) - 100 - 8192)
        (partial,) = written()
        assert partial[128:132] != b"DICM"  # no header yet: the recovery would remove it
        assert dataset[: len(dataset) - 100 - 8192] in partial
        send_store_raw_tail(assoc, dataset[-100:])
        response = get_response(assoc)
        assert response.Status == 0x0000 and response.MessageIDBeingRespondedTo == 5
        assert assoc.send_c_store(ct_dataset()).Status == 0x0000  # and pynetdicom's own sender
        assoc.release()
        recorder.wait_end()
    finally:
        listener.stop()
    first = recorder.instances[0]
    on_disk = first.path.read_bytes()
    assert on_disk == first.data
    assert journal_entry_digest(on_disk) == first.dataset_digest
    assert on_disk.endswith(dataset)
    assert pydicom.dcmread(first.path).SOPInstanceUID == ds.SOPInstanceUID


def send_store_raw_tail(assoc, tail: bytes) -> None:
    from pynetdicom.pdu_primitives import P_DATA

    primitive = P_DATA()
    primitive.presentation_data_value_list.append((assoc.accepted_contexts[0].context_id, b"\x02" + tail))
    assoc.dul.send_pdu(primitive)


def test_a_transfer_aborted_half_way_leaves_no_slot_written(tmp_path):
    from protonpath.imaging.scp import SLOT_SUFFIX

    recorder = Recorder()
    listener = start_listener(tmp_path, recorder, maximum_pdu_size=16384)
    incoming = listener.settings.incoming_dir
    try:
        assoc = associate(listener)
        assert assoc.send_c_store(ct_dataset()).Status == 0x0000
        ds = ct_dataset()
        dataset = encoded_dataset(ds)
        half = len(dataset) // 2
        send_store_raw(assoc, pynetdicom_store_command(2, CT_CLASS, ds.SOPInstanceUID, 0), dataset[:half],
                       last=False)

        def partial():
            stored = recorder.instances[0].path
            return [p for p in incoming.rglob(f"*{SLOT_SUFFIX}") if p != stored and p.stat().st_size]

        wait_for(lambda: partial() and partial()[0].stat().st_size >= half - 8192)
        assoc._reactor_checkpoint.set()
        assoc.abort()
        summary = recorder.wait_end()
        wait_for(lambda: not [p for p in incoming.rglob(f"*{SLOT_SUFFIX}") if p != recorder.instances[0].path])
        assert recorder.instances[0].path.exists()
    finally:
        listener.stop()
    assert (summary.outcome, summary.stored) == ("aborted", 1)
    assert len(recorder.instances) == 1


@pytest.mark.parametrize(
    "command",
    [
        # decoded by pynetdicom, not by ours (an element a C-STORE-RQ does not carry): stored
        pytest.param(encode_elements(store_command_elements(x0600=b"DEST")), id="unusual-element"),
        # no group length: ours reads it
        pytest.param(encode_elements(store_command_elements(), group_length=False), id="no-group-length"),
    ],
)
def test_a_command_set_our_decoder_leaves_to_pynetdicom_is_still_stored(tmp_path, command):
    recorder = Recorder()
    listener = start_listener(tmp_path, recorder, maximum_pdu_size=16384)
    try:
        ds = ct_dataset()
        ds.SOPInstanceUID = "1.2.3.4.5"  # the command's
        dataset = encoded_dataset(ds)
        assoc = associate(listener)
        send_store_raw(assoc, command, dataset)
        response = get_response(assoc)
        assert response.Status == 0x0000 and response.MessageIDBeingRespondedTo == 9
        assoc.release()
        recorder.wait_end()
    finally:
        listener.stop()
    (received,) = recorder.instances
    assert received.path.read_bytes().endswith(dataset)
    assert received.sop_instance_uid == "1.2.3.4.5"


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        # the last UID cut short (and not ASCII): pydicom reads it, the listener refuses it
        pytest.param(encode_elements(store_command_elements())[:-4] + b"\xff\xff", 0xC000, id="cut-uid"),
        # no Command Field: pynetdicom's decoder fails (it used to end the upper layer's thread and
        # leave the peer waiting), the association is aborted
        pytest.param(encode_elements(store_command_elements(x0100=None)), None, id="no-command-field"),
    ],
)
def test_a_malformed_command_set_is_refused_or_aborted_and_the_listener_goes_on(tmp_path, command, answer):
    from protonpath.imaging.scp import SLOT_SUFFIX

    recorder = Recorder()
    listener = start_listener(tmp_path, recorder, maximum_pdu_size=16384)
    try:
        assoc = associate(listener)
        send_store_raw(assoc, command, encoded_dataset(ct_dataset()))
        if answer is None:
            assoc._reactor_checkpoint.set()
            wait_for(lambda: not assoc.is_established)
            assert assoc.is_aborted
        else:
            response = get_response(assoc)
            assert response.Status == answer
            assoc.release()
        summary = recorder.wait_end()
        assert (summary.stored, summary.outcome) == (0, "aborted" if answer is None else "released")
        assoc = associate(listener)
        assert assoc.send_c_store(ct_dataset()).Status == 0x0000
        assoc.release()
    finally:
        listener.stop()
    assert len(recorder.instances) == 1
    slots = [p for p in listener.settings.incoming_dir.rglob(f"*{SLOT_SUFFIX}") if p.stat().st_size]
    assert slots == [recorder.instances[0].path]


def test_instances_of_other_lengths_after_one_are_handed_over_exactly_as_sent(tmp_path):
    """The fast path makes each data set's buffer to the length of the association's last one:
    a shorter one after it keeps none of those zeros, a longer one grows past it, and one whose
    PDUs leave the fast path midway (pynetdicom's decoder appends) is whole too."""
    import numpy as np

    recorder = Recorder()
    listener = start_listener(tmp_path, recorder, maximum_pdu_size=16384)
    sizes = [512, 128, 128, 700, 64, 512]
    sent = []
    for side in sizes:
        ds = ct_dataset()
        ds.Rows = ds.Columns = side
        ds.PixelData = np.full((side, side), side, dtype=np.uint16).tobytes()
        sent.append(ds)
    try:
        assoc = associate(listener)
        statuses = [assoc.send_c_store(ds).Status for ds in sent]
        assoc.release()
        recorder.wait_end()
    finally:
        listener.stop()
    assert statuses == [0x0000] * len(sent)
    for received, ds in zip(recorder.instances, sent, strict=True):
        assert received.data == received.path.read_bytes()
        kept = pydicom.dcmread(received.path)
        assert kept.PixelData == ds.PixelData and kept.Rows == ds.Rows
        assert [e.tag for e in kept] == [e.tag for e in ds]  # nothing after the data set's last element


@pytest.mark.parametrize(
    ("context_id", "message_id", "sop_instance_uid", "status", "comment"),
    [(1, 1, "1.2.3.4", 0x0000, ""), (255, 65535, "1.2.826.0.1.3680043.2.1143.1", 0xA900, "reused UID"),
     (7, 42, "1.2.3", 0xC000, "odd")],
)
def test_the_answer_pdu_written_directly_is_pynetdicom_s(context_id, message_id, sop_instance_uid, status, comment):
    """PromptDul.send_now writes a C-STORE answer's P-DATA-TF itself: byte for byte what
    pynetdicom's PDU encoder gives, which its decoder reads back as the same answer."""
    from pynetdicom.pdu import P_DATA_TF

    from protonpath.imaging.reactor import encode_p_data_tf, encode_store_response

    primitive = encode_store_response(context_id, message_id, "1.2.840.10008.5.1.4.1.1.2", sop_instance_uid, status, comment)
    encoded = encode_p_data_tf(primitive)
    assert encoded == P_DATA_TF(primitive).encode()
    decoded = P_DATA_TF()
    decoded.decode(encoded)
    assert decoded.presentation_data_value_items[0].presentation_context_id == context_id
