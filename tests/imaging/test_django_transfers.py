"""A DICOM transfer left 'in progress' by a listener that died mid-association is closed as cut off
when the listener starts again (the instances it brought are kept)."""

from __future__ import annotations

import pydicom
import pytest
from django.core.management import call_command
from typer.testing import CliRunner

from protonpath.accounts.models import AuditEvent
from protonpath.imaging import services
from protonpath.imaging.ingest import NetworkReceiver
from protonpath.imaging.models import Instance, ReceivedVia, Transfer
from protonpath.imaging.scp import ReceivedInstance
from tests.imaging.conftest import PATIENT_BIRTH, PATIENT_NAME, stamp
from tests.imaging.dicomdata import write_ct_series

pytestmark = pytest.mark.django_db


@pytest.fixture
def interrupted(submitted, tmp_path):
    """Three instances received over one association whose end never came (the process died)."""
    paths = write_ct_series(tmp_path / "ct", 3, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber=submitted.accession_number)
    receiver = NetworkReceiver()
    for path in paths:
        ds = pydicom.dcmread(path)
        receiver.on_instance(ReceivedInstance(
            path=path, sop_class_uid=str(ds.SOPClassUID), sop_instance_uid=str(ds.SOPInstanceUID),
            transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID), calling_ae_title="MODALITY",
            called_ae_title="PROTONPATH", peer_address="192.0.2.7", peer_port=104, association_id="a1",
        ))
    transfer = Transfer.objects.get()
    assert (transfer.outcome, transfer.stored, transfer.instances.count()) == ("in_progress", 3, 3)
    return transfer


def test_start_up_marks_transfers_left_in_progress_as_cut_off_and_keeps_their_instances(interrupted, submitted):
    complete = Transfer.objects.create(via=ReceivedVia.DICOM, outcome=Transfer.Outcome.COMPLETE)

    closed = services.close_interrupted_transfers()

    assert [t.pk for t in closed] == [interrupted.pk]
    interrupted.refresh_from_db()
    assert interrupted.outcome == Transfer.Outcome.ABORTED and interrupted.stored == 3
    last = Instance.objects.filter(transfer=interrupted).latest("received_at").received_at
    assert interrupted.ended_at == last
    assert Instance.objects.filter(transfer=interrupted, series__study__treatment_request=submitted).count() == 3
    complete.refresh_from_db()
    assert complete.outcome == Transfer.Outcome.COMPLETE and complete.ended_at is None
    trail = AuditEvent.objects.filter(via="dicom")
    assert trail.filter(object_type="imaging.transfer", object_id=str(interrupted.pk),
                        summary__contains="cut off when the listener stopped: 3 instance(s) kept").exists()
    assert trail.filter(object_type="imaging.study", treatment_request_id=submitted.pk,
                        summary="3 instance(s) received over DICOM from AE MODALITY (aborted: the listener stopped)").exists()
    # The request's verdict now counts them, as at the end of an association.
    submitted.refresh_from_db()
    assert submitted.imaging_check.instance_count == 3
    # A second start finds nothing left to close.
    assert services.close_interrupted_transfers() == []


def test_an_upload_in_progress_is_not_the_listener_s(db, doctor):
    upload = Transfer.objects.create(via=ReceivedVia.UPLOAD, uploaded_by=doctor)
    assert services.close_interrupted_transfers() == []
    upload.refresh_from_db()
    assert upload.outcome == Transfer.Outcome.IN_PROGRESS


class _Listener:
    """Stands for the DICOM listener: notes what the transfer was when it started serving."""

    def __init__(self, transfer):
        self.transfer = transfer
        self.seen = None
        self.settings = type("S", (), {"ae_title": "PROTONPATH", "host": "127.0.0.1", "port": 11112})()

    def serve_forever(self):
        self.transfer.refresh_from_db()
        self.seen = self.transfer.outcome
        raise KeyboardInterrupt


def test_manage_py_dicom_listen_closes_them_before_listening(interrupted, monkeypatch, capsys):
    fake = _Listener(interrupted)
    monkeypatch.setattr("protonpath.imaging.management.commands.dicom_listen.build_listener", lambda **kw: fake)
    call_command("dicom_listen")
    assert fake.seen == Transfer.Outcome.ABORTED
    assert "1 transfer(s) left in progress by an earlier listener marked as cut off" in capsys.readouterr().out


def test_protonpath_dicom_listen_closes_them_before_listening(interrupted, monkeypatch):
    from protonpath.cli import build_app

    fake = _Listener(interrupted)
    monkeypatch.setattr("protonpath.imaging.ingest.build_listener", lambda **kw: fake)
    result = CliRunner().invoke(build_app(), ["dicom-listen"])
    assert result.exit_code == 0, result.output
    assert fake.seen == Transfer.Outcome.ABORTED
    assert "1 transfer(s) left in progress by an earlier listener marked as cut off" in result.output
