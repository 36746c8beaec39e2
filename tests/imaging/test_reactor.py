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
