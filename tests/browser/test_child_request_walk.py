"""Issue 12 in a real browser: a 9-year-old Algerian patient whose mother fills in everything.

The mother signs up as a parent (in French), names the child (not herself) on the request,
chooses Algeria by typing in the country filter, and adds herself as the accompanying person
the same way (typing "Algeria" used to save "AL", Albania). Without script, a refused document
comes back on the whole page with its error. Staff then find that planning and the first
session are not offered before the consultation is held and the first session given.
Screenshots of each step are saved under test-artifacts/screenshots/.
"""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from protonpath.accounts.models import User
from protonpath.international.models import AccompanyingPerson
from protonpath.referrals import services as referral_services
from protonpath.referrals.models import State, TreatmentRequest
from protonpath.scheduling import selectors as scheduling_selectors
from protonpath.scheduling import services as scheduling
from tests.browser.conftest import login
from tests.factories import PASSWORD, advance_to, make_request
from tests.facts import course_with_sessions, hold_first_consultation

pytestmark = pytest.mark.django_db(transaction=True)


def _nine_years_ago() -> datetime.date:
    today = timezone.localdate()
    return today.replace(year=today.year - 9) - datetime.timedelta(days=40)


def test_a_mother_fills_in_her_daughters_request_in_french(browser, live_server, screenshot, page, staff, oncologist):
    page.goto("/accounts/signup/")
    page.select_option("select[name=language]", "fr")
    page.wait_for_load_state("networkidle")
    page.fill("input[name=username]", "samia")
    page.fill("input[name=first_name]", "Samia")
    page.fill("input[name=last_name]", "Haddad")
    page.fill("input[name=email]", "samia@example.org")
    page.fill("input[name=phone]", "+213 555 00 00 00")
    page.check("input[name=role][value=guardian]")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    screenshot("signup-as-parent")
    page.click("main form button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert User.objects.get(username="samia").fills_in_for_patient

    page.goto("/requests/new/")
    assert "Rempli par un parent ou le représentant légal" in page.inner_text("#guardian")
    assert page.input_value("#id_patient-first_name") == ""  # not the mother's name
    assert page.input_value("#id_request-guardian_name") == "Samia Haddad"
    page.select_option("#id_request-guardian_relationship", "mother")
    page.fill("#id_patient-first_name", "Yasmine")
    page.fill("#id_patient-last_name", "Haddad")
    page.select_option("#id_patient-sex", "F")
    page.fill("#id_patient-birth_date", _nine_years_ago().isoformat())
    page.fill("#id_patient-birth_place", "Oran")
    # The country filter: any part of the name in the reader's language, without accents.
    nationality = page.locator("#id_patient-nationality")
    nationality.locator("xpath=preceding-sibling::input[@type='search'][1]").fill("algerie")
    assert nationality.input_value() == "DZ"
    page.locator("#id_patient-country_of_residence").locator("xpath=preceding-sibling::input[@type='search'][1]").fill("Algér")
    assert page.input_value("#id_patient-country_of_residence") == "DZ"
    page.fill("#id_patient-address", "3 rue Larbi Ben M'hidi, Oran")
    page.select_option("#id_request-request_type", "treatment")
    page.fill("#id_request-reason", "Médulloblastome : irradiation craniospinale.")
    page.fill("#id_request-addressee_name", "Dr Benali")
    page.fill("#id_request-addressee_phone", "+213 41 00 00 00")
    page.fill("#id_request-addressee_email", "benali@example.org")
    page.fill("#id_request-addressee_address", "CHU d'Oran")
    page.fill("#id_request-pathology_name", "Médulloblastome")
    page.fill("#id_request-pathology_location", "Fosse postérieure")
    screenshot("child-request-filled-by-mother")
    page.click("form.request-form button[type=submit]")
    page.wait_for_selector("#medical-file")
    r = TreatmentRequest.objects.get()
    assert (r.patient.first_name, r.patient.nationality, r.patient.country_of_residence) == ("Yasmine", "DZ", "DZ")
    assert r.filled_by_guardian and r.guardian_relationship == "mother"
    assert "Samia Haddad (Mère)" in page.inner_text("#guardian")
    assert "Algérie" in page.inner_text("main")
    screenshot("child-request-page")

    # The mother travels with her: nationality chosen the same way; "Algeria" is Algeria.
    r = advance_to(_submitted(r), "accepted", staff=staff, oncologist=oncologist)
    page.goto(f"/international/requests/{r.pk}/travellers/")
    page.fill("#id_companion-first_name", "Samia")
    page.fill("#id_companion-last_name", "Haddad")
    companion_country = page.locator("#id_companion-nationality")
    companion_country.locator("xpath=preceding-sibling::input[@type='search'][1]").fill("Algé")
    assert companion_country.input_value() == "DZ"
    page.select_option("#id_companion-relationship_kind", "parent")
    screenshot("companion-nationality-filter")
    page.click("#id_companion-first_name >> xpath=ancestor::form//button[@type='submit']")
    page.wait_for_load_state("networkidle")
    assert AccompanyingPerson.objects.get().nationality == "DZ"
    assert "Algérie" in page.inner_text("#companions")


def _submitted(r):
    """The mother's part of the medical file, added and submitted through the services."""
    from protonpath.imaging import services as imaging_services
    from protonpath.referrals.models import DocumentKind
    from tests.factories import pdf_upload, request_ct

    owner = r.submitted_by
    for kind, name in [(DocumentKind.DOCTOR_LETTER, "letter.pdf"), (DocumentKind.IMAGING_REPORT, "report.pdf")]:
        referral_services.add_document(actor=owner, treatment_request=r, kind=kind, file=pdf_upload(name, salt=name))
    # DICOM goes through the imaging upload and its checks only (issue 12, item 4).
    imaging_services.upload_study(actor=owner, treatment_request=r, files=[request_ct(r)])
    referral_services.submit(actor=owner, treatment_request=r)
    r.refresh_from_db()
    return r


def test_without_script_a_refused_document_shows_its_error(browser, live_server, screenshot, patient, tmp_path, request):
    r = make_request(patient, complete=False, submit=False)
    context = browser.new_context(base_url=live_server.url, locale="en-GB", java_script_enabled=False, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        login(page, patient.username, PASSWORD)
        page.goto(f"/requests/{r.pk}/")
        bad = tmp_path / "scan.pdf"
        bad.write_bytes(b"\x00\x01 not a pdf")
        form = page.locator("#medical-file form.upload")
        form.locator("select[name=kind]").select_option("imaging_report")
        form.locator("input[type=file]").set_input_files(str(bad))
        form.locator("button[type=submit]").click()
        page.wait_for_load_state("load")
        alert = page.locator("#upload-error")
        assert "The document was not added." in alert.inner_text() and "Reports must be PDF" in alert.inner_text()
        assert page.locator("#medical-file select[name=kind]").input_value() == "imaging_report"
        from tests.browser.conftest import ARTIFACTS

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-01-no-script-refused-upload.png"), full_page=True)
    finally:
        context.close()


def test_planning_and_first_session_wait_for_their_facts(page, screenshot, doctor, staff, oncologist, physicist):
    r = advance_to(make_request(doctor, covered_by_french_insurance=True), "accepted", staff=staff, oncologist=oncologist)
    referral_services.send_decision(actor=staff, treatment_request=r)
    day = scheduling_selectors.next_days_with_hours(timezone.localdate() + datetime.timedelta(days=3), 1)[0]
    start = timezone.make_aware(datetime.datetime.combine(day, datetime.time(9)))
    scheduling.book_consultation(actor=staff, treatment_request=r, doctor=oncologist, start=start)

    login(page, oncologist.username, PASSWORD)
    page.goto(f"/requests/{r.pk}/")
    assert page.locator("form.action-start_planning").count() == 0
    assert "first consultation has been held" in page.inner_text('.not-yet[data-action="start_planning"]')
    screenshot("planning-not-offered-before-consultation")

    hold_first_consultation(r, oncologist)
    page.reload()
    page.click("form.action-start_planning button")
    page.wait_for_load_state("networkidle")
    assert page.inner_text("#state") == "Planning"

    course = course_with_sessions(r, physicist, given=0, pending=3)
    first = course.sessions.order_by("start").first()
    first.start = timezone.now() + datetime.timedelta(days=42)  # 12 January, seen on 1 December
    first.end = first.start + datetime.timedelta(minutes=30)
    first.save(update_fields=["start", "end"])
    referral_services.perform(actor=staff, treatment_request=r, action="schedule_treatment")
    page.click("header form button[type=submit]")
    login(page, staff.username, PASSWORD)
    page.goto(f"/requests/{r.pk}/")
    assert page.locator("form.action-start_treatment").count() == 0
    assert "first session has been given" in page.inner_text('.not-yet[data-action="start_treatment"]')
    screenshot("first-session-not-offered-before-it-is-given")
    r.refresh_from_db()
    assert r.state == State.SCHEDULED
