"""The approved plan goes to the OIS by C-STORE: dcmtk's storescp plays the OIS, dcmdump reads
what it received."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from protonpath.treatment import approval, services
from protonpath.treatment.models import PlanState
from tests.treatment.test_services import make_plan


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.dicom_peer
@pytest.mark.django_db
def test_approved_plan_is_sent_to_the_ois_by_c_store(settings, planning_request, physicist, oncologist, tmp_path,
                                                      django_capture_on_commit_callbacks):
    assert shutil.which("storescp") and shutil.which("dcmdump"), "dcmtk is installed by scripts/setup.sh"
    port = _free_port()
    received = tmp_path / "ois"
    received.mkdir()
    scp = subprocess.Popen(["storescp", "-aet", "OIS", "-od", str(received), "-uf", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        settings.PLAN_DESTINATION_AE = "OIS"
        settings.PLAN_DESTINATION_HOST = "127.0.0.1"
        settings.PLAN_DESTINATION_PORT = port
        plan = make_plan(planning_request, physicist, oncologist)
        with django_capture_on_commit_callbacks(execute=True):
            services.start_calculation(actor=physicist, plan=plan)
        plan.refresh_from_db()
        plan = approval.approve(actor=physicist, plan=plan)
        with django_capture_on_commit_callbacks(execute=True):  # the export task runs (immediate backend)
            plan = approval.approve(actor=oncologist, plan=plan)
        plan.refresh_from_db()
        assert plan.state == PlanState.APPROVED
        assert plan.export_status.endswith("sent"), plan.export_status
        files = sorted(received.iterdir())
        assert len(files) == 3
        dumps = {subprocess.run(["dcmdump", str(f)], capture_output=True, text=True, check=True).stdout for f in files}
        text = "\n".join(dumps)
        assert "RTIonPlanStorage" in text and "RTDoseStorage" in text and "RTStructureSetStorage" in text
        plan_dump = next(d for d in dumps if "(0008,0060) CS [RTPLAN]" in d)
        assert "IonBeamSequence" in plan_dump
        assert "(300a,0078) IS [30]" in plan_dump  # NumberOfFractionsPlanned from the prescription
    finally:
        scp.terminate()
        scp.wait(10)
