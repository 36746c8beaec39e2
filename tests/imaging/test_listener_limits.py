"""The DICOM listener (``manage.py dicom_listen``, a process of its own) against hostile, stalled
and slow peers, and stopped by SIGTERM: bounded memory, a time limit for every stage, bounded
slots per address, a graceful stop. Real sockets, dcmtk's echoscu and storescu, the listener's
own VmRSS, stderr and exit status (issue 17, items 1, 2 and 4)."""

from __future__ import annotations

import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification

from tests.imaging.dicomdata import shared_rt_study, write_ct_series
from tests.imaging.listener_process import AE_TITLE, ListenerProcess, echoscu, migrated_database

pytestmark = [pytest.mark.dicom_peer, pytest.mark.slow]

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Path:
    return migrated_database(tmp_path_factory.mktemp("listener-limits-db"))


@pytest.fixture
def database(migrated, tmp_path) -> Path:
    """A fresh copy of the migrated database for each test."""
    return Path(shutil.copyfile(migrated, tmp_path / "db.sqlite3"))


@pytest.fixture(scope="module")
def rt_study(tmp_path_factory):
    return shared_rt_study(tmp_path_factory)


def closed_by_listener(sock: socket.socket, within: float) -> bytes:
    """Read until the listener closes the connection (fails if it is still open after
    ``within`` seconds); returns what the listener sent."""
    received = b""
    deadline = time.monotonic() + within
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"the listener kept the connection open for more than {within:g} s")
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def associate(port: int, *contexts, calling: str = "HOSPITAL"):
    ae = AE(ae_title=calling)
    for context in contexts or (Verification,):
        ae.add_requested_context(context, ImplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title=AE_TITLE)
    assert assoc.is_established
    return assoc


def wait_until(probe, seconds: float) -> float:
    """Seconds until ``probe()`` is true (fails after ``seconds``)."""
    start = time.monotonic()
    while not probe():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds:g} s")
        time.sleep(0.02)
    return time.monotonic() - start


def header(pdu_type: int, length: int) -> bytes:
    return struct.pack(">BBL", pdu_type, 0, length)


def no_traceback(listener: ListenerProcess) -> None:
    err = listener.stderr()
    assert "Traceback" not in err and "InvalidEventError" not in err, err[-3000:]


# --- 1. memory: a PDU length announced is never allocated ----------------------------------------


def test_announced_pdu_lengths_up_to_4_gib_are_refused_without_taking_memory(tmp_path, database):
    # a long request time-out: the connections must be closed for their length, not for time
    with ListenerProcess(tmp_path, database, DICOM_REQUEST_TIMEOUT_S="120") as listener:
        assert echoscu(listener.port).returncode == 0
        baseline = peak = listener.rss_kib()
        # before any association: requests, P-DATA and other PDUs announcing 1 MiB to 4 GiB
        for pdu_type, length in [(0x01, 256 * 1024 + 1), (0x01, MiB), (0x04, 0x10000000), (0x01, 0x7FFFFFFF), (0x01, 0xFFFFFFFF),
                                 (0x04, 0xFFFFFFFF), (0x05, 0xFFFFFFFF)]:
            with socket.create_connection(("127.0.0.1", listener.port)) as peer:
                peer.sendall(header(pdu_type, length) + b"\0" * 10)
                time.sleep(0.2)
                peak = max(peak, listener.rss_kib())
                answer = closed_by_listener(peer, within=10)
            assert answer[:1] == b"\x07", answer  # an A-ABORT, then the connection closed
            peak = max(peak, listener.rss_kib())
        # four at once, as in the issue
        peers = [socket.create_connection(("127.0.0.1", listener.port)) for _ in range(4)]
        for peer in peers:
            peer.sendall(header(0x01, 0xFFFFFFFF) + b"\0")
        time.sleep(0.2)
        peak = max(peak, listener.rss_kib())
        for peer in peers:
            closed_by_listener(peer, within=10)
            peer.close()
        # after the association: a P-DATA-TF longer than the 4 MiB negotiated
        assoc = associate(listener.port)
        assert assoc.acceptor.maximum_length == 4 * MiB
        assoc.dul.socket.socket.sendall(header(0x04, 4 * MiB + 1) + b"\0" * 10)
        wait_until(lambda: assoc.is_aborted or not assoc.is_established, 10)
        time.sleep(0.2)
        peak = max(peak, listener.rss_kib())
        # and the listener still serves
        assert echoscu(listener.port).returncode == 0
    assert peak - baseline < 32 * 1024, f"the listener grew by {(peak - baseline) // 1024} MiB"
    err = listener.stderr()
    assert "PDU of type 0x01 announcing 4294967295 bytes (limit 262144)" in err
    assert f"PDU of type 0x04 announcing {4 * MiB + 1} bytes (limit {4 * MiB})" in err
    no_traceback(listener)


# --- 2. stalled peers: time limits and slots per address -----------------------------------------

STALL_LIMIT_S = 5


def test_33_stalled_connections_keep_neither_the_hospital_out_nor_their_slots(tmp_path, database):
    # the header and body limits end these stalls (the request limit is longer)
    limits = {"DICOM_REQUEST_TIMEOUT_S": str(3 * STALL_LIMIT_S), "DICOM_PDU_HEADER_TIMEOUT_S": str(STALL_LIMIT_S),
              "DICOM_PDU_BODY_TIMEOUT_S": str(STALL_LIMIT_S)}
    paths = write_ct_series(tmp_path / "ct", 3)
    with ListenerProcess(tmp_path, database, **limits) as listener:
        stalled = []
        for index in range(33):  # from another address of the loopback network
            peer = socket.create_connection(("127.0.0.1", listener.port), source_address=("127.0.0.2", 0))
            if index % 2:
                peer.sendall(b"\x01\x00\x00")  # 3 bytes of a PDU header
            else:
                peer.sendall(header(0x01, 60000) + b"\0" * 10)  # 10 bytes of a 60000-byte request
            stalled.append(peer)
        opened = time.monotonic()
        time.sleep(0.3)

        # the hospital gets in at once, while the stalled connections are still there
        echo = echoscu(listener.port, calling="HOSPITAL_PACS")
        echo_done = time.monotonic() - opened
        store = subprocess.run(
            ["storescu", "-aet", "HOSPITAL_PACS", "-aec", AE_TITLE, "127.0.0.1", str(listener.port), *map(str, paths)],
            capture_output=True, text=True, timeout=120,
        )
        # every stalled connection is closed, after its time limit at the latest
        for peer in stalled:
            closed_by_listener(peer, within=STALL_LIMIT_S + 10 - (time.monotonic() - opened))
            peer.close()
        all_closed = time.monotonic() - opened
        indexed = listener.query("SELECT count(*) FROM imaging_instance")[0][0]

    assert echo.returncode == 0, echo.stdout + echo.stderr
    assert echo_done < STALL_LIMIT_S, "the hospital got in only once the stalled connections were closed"
    assert store.returncode == 0, store.stdout + store.stderr
    assert indexed == 3
    assert all_closed < STALL_LIMIT_S + 10
    err = listener.stderr()
    # 8 slots for 127.0.0.2 (the default per address), each held until its time limit; the
    # others refused at once (or given a slot freed meanwhile, on a loaded machine)
    refused = err.count("connection from 127.0.0.2 refused: 8 connections open from this address (limit 8)")
    header_stalls = err.count(f"DICOM peer 127.0.0.2: PDU header incomplete after {STALL_LIMIT_S} s; association aborted")
    body_stalls = err.count(f"DICOM peer 127.0.0.2: PDU body incomplete after {STALL_LIMIT_S} s (10 of 60000 bytes); association aborted")
    assert refused + header_stalls + body_stalls == 33
    # the 8 first connections alternate the two stalls; on a loaded machine the listener may
    # register them in another order, so each kind holds at least 2 of the slots (both limits cut)
    assert refused >= 33 - 2 * 8 and header_stalls >= 2 and body_stalls >= 2
    no_traceback(listener)


def _trickle(sock: socket.socket, chunks, every_s: float, stop: threading.Event) -> None:
    for chunk in chunks:
        if stop.wait(every_s):
            return
        try:
            sock.sendall(chunk)
        except OSError:
            return


def test_peers_trickling_bytes_or_fragments_are_aborted_after_each_stage_limit(tmp_path, database):
    limit = 2.0
    env = {"DICOM_REQUEST_TIMEOUT_S": "30", "DICOM_PDU_HEADER_TIMEOUT_S": str(limit),
           "DICOM_PDU_BODY_TIMEOUT_S": str(limit), "DICOM_DIMSE_TIMEOUT_S": str(limit), "DICOM_IDLE_TIMEOUT_S": "60"}
    stop = threading.Event()
    with ListenerProcess(tmp_path, database, **env) as listener:
        # before the association: an A-ASSOCIATE-RQ header, one byte every 0.5 s
        peer = socket.create_connection(("127.0.0.1", listener.port))
        trickler = threading.Thread(target=_trickle, args=(peer, [bytes([b]) for b in header(0x01, 200)], 0.5, stop))
        started = time.monotonic()
        trickler.start()
        closed_by_listener(peer, within=limit + 5)
        before_association = time.monotonic() - started
        peer.close()

        # established associations: a P-DATA header byte by byte; a P-DATA body byte by byte;
        # whole PDUs, each a fragment of a command that never ends
        elapsed = {}
        for case in ("header", "body", "dimse"):
            assoc = associate(listener.port)
            raw = assoc.dul.socket.socket
            context_id = assoc.accepted_contexts[0].context_id
            if case == "header":
                chunks = [bytes([b]) for b in header(0x04, 100)]
            elif case == "body":
                raw.sendall(header(0x04, 100))
                chunks = [b"\0"] * 100
            else:
                item = struct.pack(">LBB", 2 + 8, context_id, 0x01) + b"\0" * 8  # command, not last
                chunks = [header(0x04, len(item)) + item] * 100
            trickler = threading.Thread(target=_trickle, args=(raw, chunks, 0.5, stop))
            started = time.monotonic()
            trickler.start()
            elapsed[case] = wait_until(lambda assoc=assoc: assoc.is_aborted or not assoc.is_established, limit + 5)
            assert assoc.is_aborted, case
        stop.set()
        assert echoscu(listener.port).returncode == 0

    assert limit - 0.5 < before_association < limit + 3
    for case, seconds in elapsed.items():
        assert limit - 0.5 < seconds < limit + 3, (case, seconds)
    err = listener.stderr()
    assert err.count("PDU header incomplete after 2 s") == 2
    assert "PDU body incomplete after 2 s (" in err
    assert "DIMSE message incomplete after 2 s" in err
    no_traceback(listener)


# --- 4. SIGTERM: a graceful stop ------------------------------------------------------------------


def _indexed(listener: ListenerProcess) -> int:
    return listener.query("SELECT count(*) FROM imaging_instance")[0][0]


def test_sigterm_during_a_storescu_transfer_lets_it_finish_refuses_new_associations_and_exits_0(
    tmp_path, database, rt_study
):
    study = tmp_path / "study"
    shutil.copytree(rt_study["CT"][0].parent, study)
    write_ct_series(study / "more", 200)
    sent = sum(1 for _ in study.rglob("*.dcm"))
    with ListenerProcess(tmp_path, database, DICOM_STOP_GRACE_S="120") as listener:
        sender = subprocess.Popen(
            ["storescu", "-v", "-aet", "HOSPITAL", "-aec", AE_TITLE, "+sd", "+r", "127.0.0.1", str(listener.port), str(study)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        wait_until(lambda: _indexed(listener) >= 5, 120)
        listener.signal(signal.SIGTERM)
        at_signal = _indexed(listener)
        wait_until(lambda: "stopping" in listener.stderr(), 10)
        refused = echoscu(listener.port)  # a new association while the listener stops
        output, _ = sender.communicate(timeout=300)
        code = listener.wait(timeout=150)
        indexed = _indexed(listener)
        transfers = listener.query("SELECT outcome, stored FROM imaging_transfer")

    assert at_signal < sent, "the transfer was over before the signal"
    assert refused.returncode != 0
    assert sender.returncode == 0, output[-3000:]
    assert output.count("Received Store Response (Success)") == sent
    assert code == 0
    assert indexed == sent
    assert transfers == [("complete", sent)]
    assert not list(listener.incoming.rglob("*.part"))
    assert not list(listener.incoming.rglob("*.dcm"))  # every file moved into storage
    assert "stopped" in listener.stdout()
    no_traceback(listener)


def test_sigterm_aborts_an_association_still_open_after_the_grace_and_exits_0_within_the_bound(tmp_path, database):
    grace = 1.0
    paths = write_ct_series(tmp_path / "ct", 3)
    with ListenerProcess(tmp_path, database, DICOM_STOP_GRACE_S=str(grace), DICOM_IDLE_TIMEOUT_S="300") as listener:
        assoc = associate(listener.port, CTImageStorage, calling="MODALITY")
        for path in paths[:2]:
            assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0x0000
        # the modality keeps the association open, as between two slices
        listener.signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = listener.wait(timeout=60)
        exited_after = time.monotonic() - signalled
        wait_until(lambda: assoc.is_aborted or not assoc.is_established, 5)
        indexed = _indexed(listener)
        transfers = listener.query("SELECT outcome, stored FROM imaging_transfer")

    assert code == 0
    assert grace <= exited_after < grace + 6
    assert assoc.is_aborted
    assert indexed == 2
    assert transfers == [("aborted", 2)]
    assert not list(listener.incoming.rglob("*.part"))
    assert "association from 127.0.0.1 aborted: the listener is stopping" in listener.stderr()
    no_traceback(listener)


def test_sigterm_with_a_short_grace_aborts_storescu_and_keeps_every_acknowledged_instance(tmp_path, database, rt_study):
    grace = 0.2
    study = tmp_path / "study"
    shutil.copytree(rt_study["CT"][0].parent, study)
    write_ct_series(study / "more", 300)
    sent = sum(1 for _ in study.rglob("*.dcm"))
    with ListenerProcess(tmp_path, database, DICOM_STOP_GRACE_S=str(grace)) as listener:
        sender = subprocess.Popen(
            ["storescu", "-v", "-aet", "HOSPITAL", "-aec", AE_TITLE, "+sd", "+r", "127.0.0.1", str(listener.port), str(study)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        wait_until(lambda: _indexed(listener) >= 5, 120)
        listener.signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = listener.wait(timeout=60)
        exited_after = time.monotonic() - signalled
        output, _ = sender.communicate(timeout=120)
        indexed = listener.query("SELECT sop_instance_uid FROM imaging_instance")
        transfers = listener.query("SELECT outcome, stored FROM imaging_transfer")

    acknowledged = output.count("Received Store Response (Success)")
    assert sender.returncode != 0  # storescu was cut off
    assert 5 <= acknowledged < sent
    # every acknowledged instance is indexed; at most the one being filed when the abort came
    # is indexed without its acknowledgement reaching the peer
    assert acknowledged <= len(indexed) <= acknowledged + 1
    assert transfers == [("aborted", len(indexed))]
    assert code == 0
    assert exited_after < grace + 6
    assert not list(listener.incoming.rglob("*.part"))
    assert not list(listener.incoming.rglob("*.dcm"))
    no_traceback(listener)
