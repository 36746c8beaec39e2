"""What the listener says about what it refuses (issue 17, item 5), with dcmtk's storescu and
echoscu as the peers: refusals counted in the transfer record, even when nothing else came;
duplicates logged as duplicates; rejected associations logged with who and why; a reused SOP
Instance UID answered with a clear status and Error Comment."""

from __future__ import annotations

import shutil
import subprocess

import pydicom
import pytest

from protonpath.accounts.models import AuditEvent
from protonpath.imaging.models import Instance, Transfer
from tests.imaging.conftest import PATIENT_BIRTH, PATIENT_NAME, stamp
from tests.imaging.dicomdata import write_ct_series
from tests.imaging.test_django_network import _wait_for, dcmtk, storescu

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.dicom_peer]


def _closed_transfer():
    return _wait_for(lambda: Transfer.objects.exclude(outcome="in_progress").order_by("-pk").first())


def _corrupt_files(folder, submitted, count=6):
    """Files dcmtk sends but that are no usable instance: half lack their StudyInstanceUID, half
    have a malformed ImagePositionPatient."""
    paths = write_ct_series(folder, count, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber=submitted.accession_number)
    for index, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        if index % 2:
            del ds.StudyInstanceUID
        else:
            ds.ImagePositionPatient = [1.0, 2.0]
        ds.save_as(path, enforce_file_format=False)
    return paths


def test_an_association_of_refused_instances_only_still_leaves_a_transfer_counting_them(listener, submitted, tmp_path):
    paths = _corrupt_files(tmp_path / "bad", submitted)

    result = dcmtk("storescu", "-v", "-nh", port=listener.port, files=paths)  # -nh: on after a refusal

    assert (result.stdout + result.stderr).count("Received Store Response (Error: CannotUnderstand)") == 6
    transfer = _closed_transfer()
    assert (transfer.stored, transfer.refused, transfer.duplicates, transfer.outcome) == (0, 6, 0, "complete")
    assert transfer.calling_ae_title == "HOSPITAL_PACS"
    assert not Instance.objects.exists()
    # the end-of-association audit line follows the transfer's close: wait for it too
    assert _wait_for(lambda: AuditEvent.objects.filter(object_type="imaging.transfer", object_id=str(transfer.pk),
                                                       summary__contains="6 instance(s) refused").exists())
    assert not [p for p in (tmp_path / "incoming").rglob("*") if p.is_file()]


def test_refused_instances_are_counted_beside_the_stored_ones(listener, submitted, tmp_path):
    good = write_ct_series(tmp_path / "good", 3, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(good, AccessionNumber=submitted.accession_number)
    bad = _corrupt_files(tmp_path / "bad", submitted)

    dcmtk("storescu", "-nh", port=listener.port, files=[*good, *bad])

    transfer = _closed_transfer()
    assert (transfer.stored, transfer.refused) == (3, 6)
    assert Instance.objects.count() == 3


def test_duplicates_are_logged_as_duplicates_not_as_stored(listener, submitted, tmp_path, caplog):
    paths = write_ct_series(tmp_path / "ct", 3, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber=submitted.accession_number)
    assert storescu(listener, paths).returncode == 0
    _closed_transfer()

    caplog.clear()
    with caplog.at_level("INFO", logger="protonpath.imaging.scp"):
        assert storescu(listener, paths).returncode == 0
        second = _wait_for(lambda: Transfer.objects.exclude(outcome="in_progress").filter(duplicates=3).first())

    assert (second.stored, second.duplicates) == (0, 3)
    ends = [r.getMessage() for r in caplog.records if "released:" in r.getMessage()]
    assert ends == ["association from HOSPITAL_PACS released: 0 stored, 3 duplicate(s), 0 refused"]
    assert Instance.objects.count() == 3


def test_a_rejected_association_is_logged_with_calling_ae_address_and_reason(listener, caplog):
    with caplog.at_level("INFO", logger="protonpath.imaging.scp"):
        assert dcmtk("echoscu", port=listener.port).returncode == 0  # accepted: not logged as rejected
        refused = subprocess.run(
            [shutil.which("echoscu"), "-aet", "STRANGER", "-aec", "NOT_OUR_TITLE", "127.0.0.1", str(listener.port)],
            capture_output=True, text=True, timeout=30,
        )
        assert refused.returncode != 0
        line = _logged(caplog, "rejecting association")  # logged just after the peer is answered
    assert line == ("rejecting association from AE STRANGER (127.0.0.1) calling AE NOT_OUR_TITLE: "
                    "called AE title not recognised")


def test_a_calling_ae_outside_the_allowed_list_is_logged_with_the_reason(tmp_path, caplog, settings):
    from protonpath.imaging.ingest import build_listener

    settings.DICOM_ALLOWED_CALLING_AE_TITLES = ["HOSPITAL_PACS"]
    node = build_listener(host="127.0.0.1", port=0, incoming_dir=tmp_path / "incoming")
    node.start()
    try:
        with caplog.at_level("INFO", logger="protonpath.imaging.scp"):
            refused = subprocess.run(
                [shutil.which("echoscu"), "-aet", "INTRUDER", "-aec", settings.DICOM_AE_TITLE, "127.0.0.1",
                 str(node.port)], capture_output=True, text=True, timeout=30,
            )
            line = _logged(caplog, "rejecting association")
    finally:
        node.stop()
    assert refused.returncode != 0
    assert line == (f"rejecting association from AE INTRUDER (127.0.0.1) calling AE "
                    f"{settings.DICOM_AE_TITLE}: calling AE title not recognised")


def _logged(caplog, text: str, seconds: float = 10.0) -> str:
    """The first log line containing ``text``, waiting for the listener's threads to write it."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [r.getMessage() for r in caplog.records if text in r.getMessage()]
        if found:
            return found[0]
        time.sleep(0.05)
    pytest.fail(f"nothing logged with {text!r}")


def _status_and_comment(result) -> str:
    return (result.stdout + result.stderr)


@pytest.mark.parametrize("change", ["content", "class"])
def test_a_reused_instance_uid_is_answered_cannot_understand_with_a_comment(listener, submitted, tmp_path, change):
    paths = write_ct_series(tmp_path / "ct", 2, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber=submitted.accession_number)
    assert storescu(listener, paths).returncode == 0
    _closed_transfer()
    ds = pydicom.dcmread(paths[0])
    if change == "content":
        ds.SeriesDescription = "edited after sending"
        expected = "SOP Instance UID already received with other content"
    else:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage
        ds.Modality = "MR"
        expected = "SOP Instance UID already received with another SOP Class"
    changed = tmp_path / "changed.dcm"
    ds.save_as(changed, enforce_file_format=False)

    result = dcmtk("storescu", "-d", port=listener.port, files=[changed])

    output = _status_and_comment(result)
    assert "0xc000" in output.lower(), output[-2000:]
    assert "a900" not in output.lower()
    assert expected in output
    assert Instance.objects.count() == 2
    third = _wait_for(lambda: Transfer.objects.exclude(outcome="in_progress").filter(refused=1).first())
    assert (third.stored, third.refused) == (0, 1)
