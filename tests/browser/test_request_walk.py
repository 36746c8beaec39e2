"""A foreign patient's request, from submission to acceptance, in a real browser.

Four people sign in in turn: the patient fills in the request and uploads the medical file (the
checklist updates live), administrative staff check the file and put it on review, an oncologist
accepts it with dose and fractions, and staff send the decision. Screenshots of each step are
saved under test-artifacts/screenshots/.
"""

import datetime
from pathlib import Path

import pydicom
import pytest
from django.utils import timezone

from protonpath.accounts.models import AuditEvent
from protonpath.department import services as department
from protonpath.department.models import AgendaItem
from protonpath.referrals.models import State, TreatmentRequest
from tests.browser.conftest import login
from tests.factories import PASSWORD, PDF_BYTES

pytestmark = pytest.mark.django_db(transaction=True)

CT = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"


def upload(page, kind: str, path: Path):
    form = page.locator("#medical-file form.upload")
    form.locator("select[name=kind]").select_option(kind)
    form.locator("input[type=file]").set_input_files(str(path))
    with page.expect_response(lambda r: "/documents/" in r.url and r.request.method == "POST"):
        form.locator("button[type=submit]").click()
    page.wait_for_selector(f'li.done[data-key="{kind}"]')


def upload_images(page, path: Path):
    """DICOM goes through the images section (its checks), never the document form."""
    form = page.locator("#imaging form.dicom-upload")
    form.locator("input[name=files]").set_input_files(str(path))
    with page.expect_response(lambda r: "/imaging/" in r.url and r.request.method == "POST"):
        form.locator("button[type=submit]").click()
    page.wait_for_selector("#imaging table.studies")
    page.reload()
    page.wait_for_selector('li.done[data-key="dicom_images"]')


def logout(page):
    page.click("header form button[type=submit]")
    page.wait_for_load_state("networkidle")


def test_foreign_patient_request_from_submission_to_acceptance(page, screenshot, users, tmp_path):
    patient, staff, oncologist = users["patient"], users["staff"], users["oncologist"]
    soon = timezone.now().replace(microsecond=0) + datetime.timedelta(days=2)
    department.create_meeting(actor=staff, starts_at=soon, chair=oncologist)
    later_meeting = department.create_meeting(actor=staff, starts_at=soon + datetime.timedelta(days=7), chair=oncologist)

    # The patient fills in the request.
    login(page, patient.username, PASSWORD)
    page.click("text=New request")
    page.fill("#id_patient-first_name", "Amina")
    page.fill("#id_patient-last_name", "El Idrissi")
    page.select_option("#id_patient-sex", "F")
    page.fill("#id_patient-birth_date", "1979-03-14")
    page.fill("#id_patient-birth_place", "Casablanca")
    page.select_option("#id_patient-nationality", "MA")
    page.fill("#id_patient-phone", "+212 600 000 000")
    page.fill("#id_patient-email", "amina@example.org")
    page.fill("#id_patient-address", "12 boulevard d'Anfa, Casablanca")
    page.select_option("#id_patient-country_of_residence", "MA")
    page.select_option("#id_request-request_type", "treatment")
    page.fill("#id_request-reason", "Skull base tumour close to the brainstem.")
    page.fill("#id_request-addressee_name", "Dr Benali")
    page.fill("#id_request-addressee_phone", "+212 500 000 000")
    page.fill("#id_request-addressee_email", "benali@example.org")
    page.fill("#id_request-addressee_address", "Centre d'oncologie, Casablanca")
    page.fill("#id_request-pathology_name", "Chordoma")
    page.fill("#id_request-pathology_location", "Clivus")
    screenshot("patient-fills-request")
    page.click("form.request-form button[type=submit]")
    page.wait_for_selector("#medical-file")
    assert "Draft" in page.inner_text("#state")

    # The medical file, with the checklist updating live.
    letter = tmp_path / "letter.pdf"
    letter.write_bytes(PDF_BYTES + b"% letter\n")
    report = tmp_path / "mri-report.pdf"
    report.write_bytes(PDF_BYTES + b"% report\n")
    # A refused file: the error shows in the page (htmx swaps the 400 answer), nothing is kept.
    garbage = tmp_path / "letter-scan.pdf"
    garbage.write_bytes(b"\x00\x01 not a pdf")
    form = page.locator("#medical-file form.upload")
    form.locator("select[name=kind]").select_option("doctor_letter")
    form.locator("input[type=file]").set_input_files(str(garbage))
    with page.expect_response(lambda r: "/documents/" in r.url and r.status == 400):
        form.locator("button[type=submit]").click()
    alert = page.wait_for_selector("#upload-error")
    assert "The document was not added." in alert.inner_text() and "Reports must be PDF" in alert.inner_text()
    assert page.locator("#medical-file select[name=kind]").input_value() == "doctor_letter"
    screenshot("refused-upload-shown")
    upload(page, "doctor_letter", letter)
    assert page.locator("#upload-error").count() == 0
    upload(page, "imaging_report", report)
    assert "dicom_images" not in page.locator("#medical-file select[name=kind]").inner_html()
    upload_images(page, CT)
    assert "The medical file is complete." in page.inner_text("#file-verdict")
    screenshot("medical-file-complete")
    page.click("form.action-submit button")
    page.wait_for_load_state("networkidle")
    assert "Submitted" in page.inner_text("#state")
    r = TreatmentRequest.objects.get()
    logout(page)

    # Administrative staff check the file and send it to review.
    login(page, staff.username, PASSWORD)
    assert r.reference in page.inner_text("#queue-files_to_check")
    screenshot("staff-queues")
    page.click(f"#queue-files_to_check >> text={r.reference}")
    page.click("form.action-mark_complete button")
    page.wait_for_load_state("networkidle")
    # "Send to the review meeting" asks which upcoming meeting; the file is on its agenda.
    assert page.locator("form.action-send_to_review").count() == 0
    page.select_option("form.agenda-add select[name=meeting]", str(later_meeting.pk))
    screenshot("staff-choose-review-meeting")
    page.click("form.agenda-add button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "In review" in page.inner_text("#state")
    assert AgendaItem.objects.get(treatment_request=r, decision="").meeting_id == later_meeting.pk
    logout(page)

    # The oncologist accepts it.
    login(page, oncologist.username, PASSWORD)
    page.click(f"#queue-files_for_review >> text={r.reference}")
    page.check("input[name=decision][value=accept]")
    page.fill("input[name=dose_gy]", "74")
    page.fill("input[name=fractions]", "37")
    page.fill("form.decision textarea[name=note]", "Chordoma of the clivus: validated adult indication.")
    screenshot("oncologist-decides")
    page.click("form.decision button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "Accepted" in page.inner_text("#state")
    logout(page)

    # Staff send the decision.
    login(page, staff.username, PASSWORD)
    page.click(f"#queue-decisions_to_send >> text={r.reference}")
    page.click("text=Send the decision to the patient and doctor")
    page.wait_for_load_state("networkidle")
    logout(page)

    # The patient sees the acceptance.
    login(page, patient.username, PASSWORD)
    page.click(f"text={r.reference}")
    assert "Accepted" in page.inner_text("#state")
    assert "74" in page.inner_text("main") and "37" in page.inner_text("main")
    screenshot("patient-sees-acceptance")

    r.refresh_from_db()
    assert r.state == State.ACCEPTED and r.decision_sent_at is not None
    assert [c.to_state for c in r.history.all()] == ["submitted", "complete", "in_review", "accepted"]
    assert AuditEvent.objects.filter(treatment_request_id=r.pk, action="transition").count() == 4
