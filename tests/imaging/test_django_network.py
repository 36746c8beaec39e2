"""The DICOM receiver against Debian's dcmtk as the real peer (echoscu, storescu, findscu).

The listener runs in threads of this process against the test database, so these tests commit
(``transaction=True``) for the listener's threads to see the rows.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from protonpath.accounts.models import AuditEvent
from protonpath.imaging import services
from protonpath.imaging.models import CheckReport, Instance, Study, Transfer
from tests.imaging.conftest import PATIENT_BIRTH, PATIENT_NAME, stamp
from tests.imaging.dicomdata import write_ct_series

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.dicom_peer]


def dcmtk(tool: str, *args: str, port: int, files=(), timeout: int = 60) -> subprocess.CompletedProcess:
    executable = shutil.which(tool)
    if executable is None:
        pytest.fail(f"dcmtk's {tool} is not installed (apt-get install dcmtk)")
    return subprocess.run(
        [executable, "-aet", "HOSPITAL_PACS", "-aec", settings.DICOM_AE_TITLE, *args, "127.0.0.1", str(port), *[str(f) for f in files]],
        capture_output=True, text=True, timeout=timeout,
    )


def storescu(listener, paths) -> subprocess.CompletedProcess:
    return dcmtk("storescu", port=listener.port, files=paths)


def test_echoscu_gets_an_answer(listener):
    result = dcmtk("echoscu", port=listener.port)
    assert result.returncode == 0, result.stderr


def test_instances_with_the_request_accession_land_on_that_request(listener, submitted, tmp_path):
    paths = write_ct_series(tmp_path / "ct", 22, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber=submitted.accession_number)

    result = storescu(listener, paths)

    assert result.returncode == 0, result.stderr
    # The listener re-checks the request once the association has ended (in its own thread).
    report = _wait_for(lambda: CheckReport.objects.filter(treatment_request=submitted).first())
    study = Study.objects.get()
    assert study.treatment_request_id == submitted.pk and study.accession_number == submitted.accession_number
    instances = Instance.objects.filter(series__study=study)
    assert instances.count() == 22
    assert set(instances.values_list("calling_ae_title", "received_via")) == {("HOSPITAL_PACS", "dicom")}
    # The dataset is kept as the peer sent it.
    kept = pydicom.dcmread(instances.get(instance_number=1).file.path)
    assert kept.SOPInstanceUID == pydicom.dcmread(paths[0]).SOPInstanceUID
    transfer = Transfer.objects.get()
    assert (transfer.stored, transfer.outcome, transfer.calling_ae_title) == (22, "complete", "HOSPITAL_PACS")
    assert report.fit_for_planning and report.instance_count == 22
    receipt = AuditEvent.objects.filter(actor=None, treatment_request_id=submitted.pk, via="dicom", summary__contains="HOSPITAL_PACS")
    assert receipt.exists()
    assert not list((tmp_path / "incoming").rglob("*.dcm"))  # moved into storage


def test_an_unknown_accession_goes_to_the_inbox_and_staff_match_it(listener, submitted, staff, tmp_path):
    paths = write_ct_series(tmp_path / "ct", 3, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber="NOSUCHACC")

    assert storescu(listener, paths).returncode == 0

    study = Study.objects.get()
    assert study.treatment_request is None and study.inbox_reason == "unknown accession number"
    services.match_study(actor=staff, study=study, treatment_request=submitted)
    study.refresh_from_db()
    assert study.treatment_request_id == submitted.pk
    assert AuditEvent.objects.filter(actor=staff, action="update", object_type="imaging.study", treatment_request_id=submitted.pk).exists()


def test_a_right_accession_with_another_patient_in_the_images_is_kept_out_of_the_request(listener, submitted, tmp_path):
    paths = write_ct_series(tmp_path / "ct", 2, patient_name="Martin^Lucas", birth_date="20170602")
    stamp(paths, AccessionNumber=submitted.accession_number)

    assert storescu(listener, paths).returncode == 0

    study = Study.objects.get()
    assert study.treatment_request is None
    assert study.inbox_reason == (
        f"patient identity differs from request {submitted.reference}: the family name in the images differs "
        "from the request; the birth date in the images differs from the request"
    )
    assert study.inbox_reason_code == "identity_differs"


def test_without_accession_images_wait_in_the_inbox(listener, submitted, tmp_path):
    paths = write_ct_series(tmp_path / "ct", 2, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber="")

    assert storescu(listener, paths).returncode == 0

    assert Study.objects.get().inbox_reason == "no accession number"
    assert not Study.objects.filter(treatment_request=submitted).exists()


def test_the_same_instances_sent_twice_are_duplicates_and_a_changed_one_is_refused(listener, submitted, tmp_path):
    paths = write_ct_series(tmp_path / "ct", 3, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber=submitted.accession_number)
    assert storescu(listener, paths).returncode == 0

    assert storescu(listener, paths).returncode == 0
    stamp(paths[:1], SeriesDescription="edited after sending")
    changed = storescu(listener, paths[:1])

    assert Instance.objects.count() == 3
    second, third = Transfer.objects.order_by("started_at", "id")[1:]
    assert (second.stored, second.duplicates) == (0, 3)
    assert (third.stored, third.refused) == (0, 1)
    assert "0xa900" in (changed.stdout + changed.stderr).lower() or changed.returncode != 0


def test_findscu_finds_the_study_by_accession(listener, submitted, tmp_path):
    paths = write_ct_series(tmp_path / "ct", 2, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber=submitted.accession_number, StudyDescription="HEAD CT")
    assert storescu(listener, paths).returncode == 0
    out = tmp_path / "answers"
    out.mkdir()

    result = dcmtk(
        "findscu", "-S", "-X", "-od", str(out),
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"AccessionNumber={submitted.accession_number}",
        "-k", "StudyInstanceUID", "-k", "StudyDescription", "-k", "ModalitiesInStudy",
        "-k", "NumberOfStudyRelatedInstances",
        port=listener.port,
    )

    assert result.returncode == 0, result.stderr
    answers = [pydicom.dcmread(p) for p in sorted(out.iterdir())]
    assert len(answers) == 1
    answer = answers[0]
    assert answer.StudyInstanceUID == pydicom.dcmread(paths[0]).StudyInstanceUID
    assert (answer.StudyDescription, answer.ModalitiesInStudy, str(answer.NumberOfStudyRelatedInstances)) == ("HEAD CT", "CT", "2")


def test_findscu_with_another_accession_finds_nothing(listener, submitted, tmp_path):
    paths = write_ct_series(tmp_path / "ct", 1, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber=submitted.accession_number)
    assert storescu(listener, paths).returncode == 0
    out = tmp_path / "answers"
    out.mkdir()

    result = dcmtk("findscu", "-S", "-X", "-od", str(out), "-k", "QueryRetrieveLevel=STUDY", "-k", "AccessionNumber=OTHER", "-k", "StudyInstanceUID", port=listener.port)

    assert result.returncode == 0 and list(out.iterdir()) == []


def test_a_transfer_cut_off_mid_study_keeps_what_arrived(listener, submitted, tmp_path):
    paths = write_ct_series(tmp_path / "ct", 5, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber=submitted.accession_number)
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title=settings.DICOM_AE_TITLE)
    assert assoc.is_established
    for path in paths[:3]:
        assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0
    assoc.abort()

    transfer = _wait_for(lambda: Transfer.objects.exclude(outcome="in_progress").first())
    assert (transfer.outcome, transfer.stored) == ("aborted", 3)
    assert Instance.objects.filter(series__study__treatment_request=submitted).count() == 3
    # The rest of the study, sent again later, completes it.
    assert storescu(listener, paths).returncode == 0
    assert Instance.objects.filter(series__study__treatment_request=submitted).count() == 5


def _wait_for(probe, seconds: float = 10.0):
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail("the listener did not record the end of the association")


def test_a_non_dicom_payload_is_refused_and_nothing_kept(listener, submitted, tmp_path):
    # storescu refuses to send a non-DICOM file itself; a peer sending a dataset without the UIDs
    # that place it in a study is refused by the listener.
    ds = pydicom.dcmread(write_ct_series(tmp_path / "ct", 1)[0])
    del ds.StudyInstanceUID
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title=settings.DICOM_AE_TITLE)
    status = assoc.send_c_store(ds)
    assoc.release()

    assert status.Status != 0
    assert not Instance.objects.exists()
    assert not [p for p in Path(tmp_path / "incoming").rglob("*.dcm")]


def test_logs_carry_no_patient_name_or_uid(listener, submitted, tmp_path, caplog):
    paths = write_ct_series(tmp_path / "ct", 2, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber=submitted.accession_number)
    uid = pydicom.dcmread(paths[0]).SOPInstanceUID
    with caplog.at_level("DEBUG"):
        assert storescu(listener, paths).returncode == 0
        _wait_for(lambda: CheckReport.objects.filter(treatment_request=submitted).first())
    text = caplog.text
    assert "HOSPITAL_PACS" in text  # the receipt is logged...
    assert "Idrissi" not in text and "Amina" not in text and uid not in text and PATIENT_BIRTH not in text


def test_images_for_a_cancelled_request_wait_in_the_inbox(listener, submitted, staff, tmp_path):
    from protonpath.referrals import services as referral_services

    referral_services.cancel(actor=staff, treatment_request=submitted, reason="Treated elsewhere.")
    paths = write_ct_series(tmp_path / "ct", 1, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber=submitted.accession_number)

    assert storescu(listener, paths).returncode == 0

    assert Study.objects.get().inbox_reason == f"request {submitted.reference} is closed"
    with pytest.raises(ValidationError):
        services.match_study(actor=staff, study=Study.objects.get(), treatment_request=submitted)
