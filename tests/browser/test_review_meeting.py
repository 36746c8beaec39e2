"""The multidisciplinary review meeting in a real browser.

Administrative staff plan a meeting and put a complete file on its agenda (the file enters
review); an oncologist reads the triage and records the acceptance with dose and fractions; the
request's path moves on, and the minutes come out as a PDF.
"""

import pytest

from protonpath.department.models import AgendaItem, ReviewMeeting
from protonpath.referrals.models import State
from tests.browser.conftest import login
from tests.factories import PASSWORD, advance_to, make_request, meeting_day

pytestmark = pytest.mark.django_db(transaction=True)


def logout(page):
    page.click("header form button[type=submit]")
    page.wait_for_load_state("networkidle")


def test_staff_put_a_file_on_the_agenda_and_an_oncologist_accepts_it(page, screenshot, users):
    staff, oncologist = users["staff"], users["oncologist"]
    r = advance_to(make_request(users["patient"]), "complete", staff=staff, oncologist=oncologist)

    login(page, staff.username, PASSWORD)
    page.goto("/department/meetings/")
    form = page.locator("form#new-meeting")
    form.locator("input[name=starts_at]").fill(f"{meeting_day(2)}T14:00")
    form.locator("input[name=location]").fill("Salle de staff")
    form.locator("select[name=chair]").select_option(str(oncologist.pk))
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#ready")
    screenshot("meeting-planned")
    meeting = ReviewMeeting.objects.get()
    page.click(f'#ready button[data-ref="{r.reference}"]')
    page.wait_for_selector(".agenda-item")
    assert "is on the agenda" in page.inner_text(".messages")
    r.refresh_from_db()
    assert r.state == State.IN_REVIEW
    screenshot("file-on-agenda")
    logout(page)

    login(page, oncologist.username, PASSWORD)
    page.goto(f"/department/meetings/{meeting.pk}/")
    item = AgendaItem.objects.get()
    section = page.locator(f"#item-{item.pk}")
    assert "Candidate indication: Malignant cartilage tumours" in section.inner_text()
    section.locator("input[value=accepted]").check()
    section.locator("input[name$=dose_gy]").fill("74")
    section.locator("input[name$=fractions]").fill("37")
    section.locator("textarea[name$=note]").fill("Validated indication.")
    section.locator("button[type=submit]").click()
    page.wait_for_selector(f"#item-{item.pk} .decision-recorded")
    screenshot("decision-recorded")
    r.refresh_from_db()
    assert (r.state, r.proposed_fractions) == (State.ACCEPTED, 37)

    minutes = page.request.get(f"/department/meetings/{meeting.pk}/minutes.pdf")
    assert minutes.status == 200 and minutes.body().startswith(b"%PDF")
