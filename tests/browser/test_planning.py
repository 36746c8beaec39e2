"""Planning in a real browser, on a real task worker: the oncologist prescribes, the physicist
sets up the plan on the request's CT and RTSTRUCT, watches the progress, sees the dose over the
CT and the DVH, approves; the oncologist approves; the course appears on the gantry agenda with
the plan's session length. Screenshots of each step go to test-artifacts/screenshots/."""

from __future__ import annotations

import pytest
from django.utils import timezone

from protonpath.scheduling.models import SessionStatus, TreatmentCourse
from protonpath.treatment.models import Plan, PlanState
from tests.browser.conftest import login, task_worker, wait_for
from tests.factories import PASSWORD
from tests.treatment.conftest import file_case, in_planning


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_physicist_and_oncologist_plan_and_approve_in_the_browser(
    page, screenshot, settings, doctor, staff, oncologist, physicist, tmp_path
):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}  # from the start
    r = in_planning(doctor, staff=staff, oncologist=oncologist)
    file_case(r, physicist, tmp_path / "case", spacing_mm=4.0)
    with task_worker(settings):
        # the oncologist prescribes from the review's proposal
        login(page, oncologist.username, PASSWORD)
        page.goto(f"/requests/{r.pk}/")
        page.wait_for_selector("#treatment")
        page.click("#prescribe")
        page.fill("input[name=target]", "PTV_60")
        page.fill("input[name=dose_gy]", "60")
        page.fill("input[name=fractions]", "30")
        screenshot("oncologist-prescribes")
        page.click("#prescription-form button[type=submit]")
        page.wait_for_selector("#treatment .prescription")
        assert "60 Gy(RBE) to PTV_60 in 30 fractions" in page.inner_text("#treatment")

        # the physicist sets up the plan on the request's own images
        page.context.clear_cookies()
        login(page, physicist.username, PASSWORD)
        page.goto(f"/requests/{r.pk}/")
        page.click("#new-plan")
        screenshot("physicist-chooses-images")
        page.click("#new-plan-form button[type=submit]")
        page.wait_for_selector("#plan-setup")
        assert page.locator("#structure-mapping select[aria-label='PTV_60']").input_value() == "target"
        assert page.locator("#structure-mapping select[aria-label='Spinal Cord']").input_value() == "oar"
        page.fill("input[name=dose_grid_mm]", "3")
        page.fill("input[name=spot_spacing_mm]", "5")
        # the energy layers are spaced by the Bragg peak's width (the department's default)
        assert page.locator("#layer-spacing-mode").input_value() == "auto"
        page.fill("input[name=max_iterations]", "300")
        screenshot("plan-setup")
        page.click("#save-calculate")
        page.wait_for_selector("#plan-progress progress")
        wait_for(page, "document.querySelector('#plan-progress progress') && document.querySelector('#plan-progress progress').value > 0", timeout_s=120)
        screenshot("progress-bar")
        page.wait_for_selector("#plan-results", timeout=300_000)
        plan = Plan.objects.get(treatment_request=r)
        assert plan.state == PlanState.CALCULATED
        wait_for(page, "document.getElementById('dose-slice').complete && document.getElementById('dose-slice').naturalWidth > 0")
        assert page.locator("#dvh svg polyline").count() >= 3
        assert "D98" in page.inner_text("#dose-statistics")
        screenshot("dose-overlay-dvh-statistics")
        assert "Energy layers spaced automatically by 1 × the Bragg peak's width" in page.inner_text("#layer-spacing")
        page.locator("#clinical-goals").scroll_into_view_if_needed()
        screenshot("clinical-goals")
        page.click("#approve-plan")
        page.wait_for_selector(".plan-state[data-state=physicist_approved]")
        screenshot("physicist-approved")

        # the oncologist approves: the course is scheduled with the plan's session length
        page.context.clear_cookies()
        login(page, oncologist.username, PASSWORD)
        page.goto(f"/treatment/plans/{plan.pk}/")
        page.click("#approve-plan")
        page.wait_for_selector(".plan-state[data-state=approved]")
        screenshot("oncologist-approved")
        plan.refresh_from_db()
        course = TreatmentCourse.objects.get(treatment_request=r)
        assert course.session_minutes == plan.results["session_minutes"]
        second = course.sessions.filter(status=SessionStatus.PLANNED).order_by("start")[1]
        assert (second.end - second.start).total_seconds() / 60 == plan.results["session_minutes"]
        page.goto(f"/scheduling/agenda/{second.start.date().isoformat()}/")
        page.wait_for_selector("#gantry-sessions")
        agenda = page.inner_text("#gantry-sessions")
        assert str(r.patient) in agenda
        span = f"{timezone.localtime(second.start):%H:%M}–{timezone.localtime(second.end):%H:%M}"
        assert span in agenda  # the plan's session length, not the category's 30 min
        screenshot("gantry-agenda")

        page.goto(f"/treatment/plans/{plan.pk}/")
        with page.expect_navigation():
            page.select_option("form.lang select[name=language]", "fr")
        page.wait_for_selector("#plan-results")
        assert "Objectifs cliniques" in page.inner_text("#plan-results")
        assert "Couches d’énergie espacées automatiquement" in page.inner_text("#layer-spacing")
        screenshot("plan-in-french")
