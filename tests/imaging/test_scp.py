"""The DICOM listener against dcmtk's echoscu, storescu and findscu, the peers hospitals use."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.sop_class import CTImageStorage

from protonpath.imaging.files import classify_file
from protonpath.imaging.scp import (
    SLOT_SUFFIX,
    AssociationSummary,
    DicomListener,
    InstanceRefused,
    ListenerSettings,
    ReceivedInstance,
    StudyQuery,
    encode_file_header,
    journal_entry_digest,
    matches_study,
)
from tests.imaging.dicomdata import pydicom_file, shared_rt_study

pytestmark = pytest.mark.dicom_peer
AE_TITLE = "PPTEST"

@pytest.fixture(scope="module")
def rt_study(tmp_path_factory):
    return shared_rt_study(tmp_path_factory)


class Recorder:
    """A storage sink and association-end callback that remember what they were given."""

    def __init__(self, refuse_modality: str | None = None):
        self.instances: list[ReceivedInstance] = []
        self.summaries: list[AssociationSummary] = []
        self.refuse_modality = refuse_modality
        self.lock = threading.Lock()
        self.ended = threading.Event()

    def __call__(self, instance: ReceivedInstance) -> None:
        if self.refuse_modality and instance.header().modality == self.refuse_modality:
            raise InstanceRefused("not wanted for this request")
        with self.lock:
            self.instances.append(instance)

    def end(self, summary: AssociationSummary) -> None:
        self.summaries.append(summary)
        self.ended.set()

    def wait_end(self) -> AssociationSummary:
        assert self.ended.wait(10), "the association never ended"
        return self.summaries[-1]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def start_listener(tmp_path: Path, recorder: Recorder, **settings) -> DicomListener:
    listener = DicomListener(
        ListenerSettings(incoming_dir=tmp_path / "incoming", ae_title=AE_TITLE, host="127.0.0.1", port=0, **settings),
        on_instance=recorder,
        find_studies=settings_find_studies,
        on_association_end=recorder.end,
    )
    listener.start()
    return listener


STUDIES = [
    {"StudyInstanceUID": "1.2.826.0.1.3680043.8.498.1", "PatientName": "Lefèvre^Anne", "PatientID": "PP-0001",
     "StudyDate": "20240105", "ModalitiesInStudy": "CT\\RTSTRUCT", "AccessionNumber": "RQ-17"},
    {"StudyInstanceUID": "1.2.826.0.1.3680043.8.498.2", "PatientName": "Roe^Rick", "PatientID": "PP-0002",
     "StudyDate": "20230611", "ModalitiesInStudy": "MR", "AccessionNumber": "RQ-18"},
]
QUERIES: list[StudyQuery] = []


def settings_find_studies(query: StudyQuery) -> list[dict[str, str]]:
    QUERIES.append(query)
    return STUDIES


@pytest.fixture
def listener(tmp_path, recorder):
    listener = start_listener(tmp_path, recorder)
    yield listener
    listener.stop()


def dcmtk(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def test_echoscu_gets_an_answer(listener, recorder):
    result = dcmtk("echoscu", "-aec", AE_TITLE, "-aet", "HOSPITAL", "127.0.0.1", str(listener.port))

    assert result.returncode == 0, result.stderr
    summary = recorder.wait_end()
    assert (summary.calling_ae_title, summary.outcome, summary.stored) == ("HOSPITAL", "released", 0)


def test_storescu_sends_a_ct_series_with_its_rt_objects_and_every_file_is_whole(listener, recorder, rt_study, tmp_path):
    sources = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for paths in rt_study.values() for p in paths}

    result = dcmtk("storescu", "-aec", AE_TITLE, "-aet", "HOSPITAL", "+sd", "127.0.0.1", str(listener.port),
                   str(rt_study["CT"][0].parent))

    assert result.returncode == 0, result.stderr
    summary = recorder.wait_end()
    assert (summary.stored, summary.refused, summary.outcome) == (101, 0, "released")
    assert {i.sop_instance_uid for i in recorder.instances} == set(sources)
    modalities = {classify_file(i.path).header.modality for i in recorder.instances}
    assert modalities == {"CT", "RTSTRUCT", "RTPLAN", "RTDOSE"}
    for instance in recorder.instances[::10]:
        stored, source = pydicom.dcmread(instance.path), pydicom.dcmread(sources[instance.sop_instance_uid])
        assert stored.file_meta.SourceApplicationEntityTitle == "HOSPITAL"
        assert stored.file_meta.MediaStorageSOPInstanceUID == source.SOPInstanceUID
        assert np.array_equal(stored.pixel_array, source.pixel_array)
    # the journal holds the instances handed over, each a whole sealed slot, and nothing else
    # (the slots made and never written are gone with the association)
    left = {p for p in (tmp_path / "incoming").rglob("*") if p.is_file()}
    assert left == {i.path for i in recorder.instances}
    assert all(p.name.endswith(SLOT_SUFFIX) and journal_entry_digest(p.read_bytes()) for p in left)


def test_a_file_written_by_the_listener_is_read_by_dcmdump(listener, recorder):
    dcmtk("storescu", "-aec", AE_TITLE, "127.0.0.1", str(listener.port), str(pydicom_file("rtplan.dcm")))
    recorder.wait_end()

    dump = dcmtk("dcmdump", "-M", str(recorder.instances[0].path))

    assert dump.returncode == 0, dump.stderr
    assert "RT Plan Storage" in dump.stdout or "RTPlanStorage" in dump.stdout
    assert "(0002,0016) AE [STORESCU]" in dump.stdout


def test_an_instance_the_sink_refuses_is_reported_to_the_peer_and_not_kept(tmp_path, rt_study):
    recorder = Recorder(refuse_modality="RTDOSE")
    listener = start_listener(tmp_path, recorder)
    try:
        dcmtk("storescu", "-nh", "-aec", AE_TITLE, "127.0.0.1", str(listener.port),
              str(rt_study["RTDOSE"][0]), str(rt_study["RTPLAN"][0]))
        summary = recorder.wait_end()
    finally:
        listener.stop()

    assert (summary.stored, summary.refused) == (1, 1)
    kept = list((tmp_path / "incoming" / summary.association_id).iterdir())
    assert [classify_file(p).header.modality for p in kept] == ["RTPLAN"]


@pytest.mark.parametrize(("calling", "called"), [("STRANGER", AE_TITLE), ("HOSPITAL", "SOMEONEELSE")])
def test_an_unknown_peer_or_a_wrong_called_title_is_rejected(tmp_path, recorder, calling, called):
    listener = start_listener(tmp_path, recorder, allowed_calling_ae_titles=frozenset({"HOSPITAL"}))
    try:
        result = dcmtk("echoscu", "-aec", called, "-aet", calling, "127.0.0.1", str(listener.port))
    finally:
        listener.stop()

    assert result.returncode != 0
    assert "Association Rejected" in result.stderr + result.stdout


def test_findscu_finds_studies_by_name_wildcard_and_date_range(listener, tmp_path):
    out = tmp_path / "responses"
    out.mkdir()
    QUERIES.clear()

    result = dcmtk("findscu", "-S", "-aec", AE_TITLE, "-aet", "PLANNING", "-X", "-od", str(out),
                   "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=LEF*", "-k", "StudyDate=20240101-",
                   "-k", "StudyInstanceUID", "-k", "ModalitiesInStudy", "-k", "AccessionNumber",
                   "127.0.0.1", str(listener.port))

    assert result.returncode == 0, result.stderr
    responses = [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]
    assert [r.StudyInstanceUID for r in responses] == ["1.2.826.0.1.3680043.8.498.1"]
    assert responses[0].AccessionNumber == "RQ-17"
    assert list(responses[0].ModalitiesInStudy) == ["CT", "RTSTRUCT"]
    assert QUERIES[-1].filters == {"PatientName": "LEF*", "StudyDate": "20240101-"}
    assert QUERIES[-1].calling_ae_title == "PLANNING"


def test_findscu_at_series_level_is_refused(listener):
    result = dcmtk("findscu", "-v", "-S", "-aec", AE_TITLE, "-k", "QueryRetrieveLevel=SERIES",
                   "-k", "SeriesInstanceUID", "127.0.0.1", str(listener.port))

    assert "Final Find Response (Error: DataSetDoesNotMatchSOPClass)" in result.stdout + result.stderr


# --- transfers cut off ------------------------------------------------------------------------


def test_storescu_killed_mid_study_keeps_what_was_complete_and_no_partial_file(listener, recorder, rt_study, tmp_path):
    sender = subprocess.Popen(
        ["storescu", "-aec", AE_TITLE, "+sd", "127.0.0.1", str(listener.port), str(rt_study["CT"][0].parent)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while len(recorder.instances) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(sender.pid, signal.SIGKILL)
    sender.wait()

    summary = recorder.wait_end()
    assert summary.outcome == "aborted"
    assert 10 <= summary.stored < 101
    kept = sorted((tmp_path / "incoming" / summary.association_id).iterdir())
    assert len(kept) == summary.stored == len(recorder.instances)
    for path in kept:
        classify_file(path)  # raises on any truncated file
        assert journal_entry_digest(path.read_bytes())  # whole, as sealed


def _c_store_pdus(dataset: pydicom.Dataset, context_id: int, max_pdu: int, message_id: int) -> list[bytes]:
    """The P-DATA PDUs of one C-STORE request, as they would cross the wire."""
    encoded = encode(dataset, True, True)
    primitive = C_STORE()
    primitive.MessageID = message_id
    primitive.AffectedSOPClassUID = dataset.SOPClassUID
    primitive.AffectedSOPInstanceUID = dataset.SOPInstanceUID
    primitive.Priority = 0
    primitive.DataSet = io.BytesIO(encoded)
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    pdus = []
    for p_data in message.encode_msg(context_id, max_pdu):
        pdu = P_DATA_TF()
        pdu.from_primitive(p_data)
        pdus.append(pdu.encode())
    return pdus


def test_a_connection_dropped_inside_an_instance_leaves_no_file_and_keeps_the_previous_one(listener, recorder, tmp_path):
    ae = AE(ae_title="HOSPITAL")
    ae.add_requested_context(CTImageStorage, ImplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title=AE_TITLE)
    assert assoc.is_established
    first = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    assert assoc.send_c_store(first).Status == 0x0000
    second = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    second.SOPInstanceUID = pydicom.uid.generate_uid()
    context_id = assoc.accepted_contexts[0].context_id
    pdus = _c_store_pdus(second, context_id, 4096, message_id=2)
    assert len(pdus) > 4
    raw = assoc.dul.socket.socket
    for pdu in pdus[: len(pdus) // 2]:  # the command and half the dataset, then the cable is pulled
        raw.sendall(pdu)
    raw.shutdown(socket.SHUT_RDWR)  # the client's own threads see the drop and end by themselves

    summary = recorder.wait_end()
    assert (summary.outcome, summary.stored) == ("aborted", 1)
    kept = list((tmp_path / "incoming" / summary.association_id).iterdir())
    assert kept == [recorder.instances[0].path]  # no slot for the cut instance, no slot unused
    assert pydicom.dcmread(kept[0]).SOPInstanceUID == first.SOPInstanceUID
    assert journal_entry_digest(kept[0].read_bytes())


def test_a_pynetdicom_scu_that_aborts_after_two_instances_leaves_both(listener, recorder, tmp_path):
    ae = AE(ae_title="HOSPITAL")
    ae.add_requested_context(CTImageStorage, ImplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title=AE_TITLE)
    sent = []
    for _ in range(2):
        ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        assert assoc.send_c_store(ds).Status == 0x0000
        sent.append(ds.SOPInstanceUID)
    assoc.abort()

    summary = recorder.wait_end()
    assert (summary.outcome, summary.stored) == ("aborted", 2)
    kept = list((tmp_path / "incoming" / summary.association_id).iterdir())
    assert sorted(str(pydicom.dcmread(p).SOPInstanceUID) for p in kept) == sorted(sent)


# --- pure parts -------------------------------------------------------------------------------


def test_the_file_header_is_a_valid_part10_header(tmp_path):
    source = pydicom_file("CT_small.dcm")
    original = pydicom.dcmread(source)
    body = source.read_bytes()
    dataset_start = 132 + 12 + original.file_meta.FileMetaInformationGroupLength
    path = tmp_path / "rebuilt.dcm"
    path.write_bytes(encode_file_header(sop_class_uid=original.SOPClassUID, sop_instance_uid=original.SOPInstanceUID,
                                        transfer_syntax_uid=original.file_meta.TransferSyntaxUID,
                                        source_ae_title="ODD") + body[dataset_start:])

    rebuilt = pydicom.dcmread(path)

    assert rebuilt.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert rebuilt.file_meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID
    assert rebuilt.file_meta.SourceApplicationEntityTitle == "ODD"
    assert np.array_equal(rebuilt.pixel_array, original.pixel_array)
    assert dcmtk("dcmdump", str(path)).returncode == 0


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["1", "2"]),
        ({"PatientName": "roe^*"}, ["2"]),
        ({"PatientName": "Lefevre*"}, []),  # DICOM matching compares characters: e is not è
        ({"PatientName": "Lef?vre^Anne"}, ["1"]),
        ({"StudyDate": "20230101-20231231"}, ["2"]),
        ({"StudyDate": "-20231231"}, ["2"]),
        ({"StudyDate": "20240105"}, ["1"]),
        ({"ModalitiesInStudy": "RTSTRUCT"}, ["1"]),
        ({"StudyInstanceUID": "1.2.826.0.1.3680043.8.498.2\\1.2.3"}, ["2"]),
        ({"AccessionNumber": "RQ-1"}, []),
        ({"AccessionNumber": "RQ-1*"}, ["1", "2"]),
    ],
)
def test_study_matching_follows_dicom_rules(filters, expected):
    found = [s["StudyInstanceUID"].rsplit(".", 1)[1] for s in STUDIES if matches_study(s, filters)]

    assert found == expected


def test_dcmtk_is_installed():
    """The peers these tests need; CI installs dcmtk from Debian."""
    for tool in ("storescu", "echoscu", "findscu", "storescp", "dcmdump"):
        assert shutil.which(tool), f"{tool} missing: apt-get install dcmtk"
