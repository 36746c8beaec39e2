"""Administrative staff book a patient's first consultation in a free slot, in a real browser.

Then the patient signs in and finds the appointment on the request page, with its calendar file.
Screenshots of each step are saved under test-artifacts/screenshots/.
"""

import datetime

import pytest
from django.core import mail
from django.utils import timezone

from protonpath.referrals import services as referral_services
from protonpath.referrals.models import State, TreatmentRequest
from protonpath.scheduling import selectors
from protonpath.scheduling.models import Consultation, ConsultationSlot
from tests.browser.conftest import login
from tests.factories import PASSWORD, advance_to, make_request


@pytest.mark.django_db(transaction=True)
def test_staff_book_a_first_consultation_in_a_free_slot(
    page, screenshot, patient, staff, oncologist
):
    r = advance_to(
        make_request(patient, covered_by_french_insurance=True),
        "accepted",
        staff=staff,
        oncologist=oncologist,
    )
    referral_services.send_decision(actor=staff, treatment_request=r)
    day = selectors.next_days_with_hours(timezone.localdate() + datetime.timedelta(days=1), 1)[0]
    mail.outbox.clear()

    login(page, staff.username, PASSWORD)
    page.goto(f"/requests/{r.pk}/")
    page.wait_for_selector("#appointments")
    screenshot("request-ready-for-consultation")

    page.click("#book-first")
    page.wait_for_selector("#slot-search")
    page.select_option("#id_doctor", str(oncologist.pk))
    page.fill("#id_day", day.isoformat())
    page.click("#slot-search button[type=submit]")
    page.wait_for_load_state("networkidle")
    slot_buttons = page.locator("button.slot")
    assert slot_buttons.count() == 20  # 08:00 to 17:30 for a one-hour consultation
    screenshot("free-slots")

    page.click("button.slot:text-is('10:30')")
    page.wait_for_load_state("networkidle")
    assert "Consultation booked" in page.inner_text(".messages")
    assert "10:30" in page.inner_text("#appointments")
    assert page.inner_text("#state") == "First consultation booked"
    screenshot("consultation-booked")

    consultation = Consultation.objects.get(treatment_request=r)
    start = timezone.make_aware(datetime.datetime.combine(day, datetime.time(10, 30)))
    assert (
        consultation.start == start
        and consultation.doctor == oncologist
        and consultation.booked_by == staff
    )
    assert ConsultationSlot.objects.filter(doctor=oncologist).count() == 2
    assert TreatmentRequest.objects.get(pk=r.pk).state == State.CONSULTATION_BOOKED
    assert any(oncologist.email in m.to for m in mail.outbox)
    assert any(
        r.patient.email in m.to and m.subject.startswith("Consultation booked") for m in mail.outbox
    )

    # The day's agenda lists it for staff.
    page.goto(f"/scheduling/agenda/{day.isoformat()}/")
    assert "10:30" in page.inner_text("#consultations")
    screenshot("agenda-of-the-day")

    # The slot is no longer offered.
    page.goto(
        f"/scheduling/requests/{r.pk}/book/?kind=follow_up&doctor={oncologist.pk}&day={day.isoformat()}"
    )
    assert page.locator("button.slot:text-is('10:30')").count() == 0
    assert page.locator("button.slot:text-is('11:30')").count() == 1

    # The patient sees the appointment and can download it.
    page.context.clear_cookies()
    login(page, patient.username, PASSWORD)
    page.goto(f"/requests/{r.pk}/")
    page.wait_for_selector("#appointments")
    assert "10:30" in page.inner_text("#appointments")
    with page.expect_download() as download:
        page.click(
            f"#appointments a[href='/scheduling/consultations/{consultation.pk}/consultation.ics']"
        )
    content = open(download.value.path(), encoding="utf-8").read()
    assert "BEGIN:VEVENT" in content and f"consultation-{consultation.uid}@protonpath" in content
    screenshot("patient-sees-the-appointment")
