"""Robust planning in a real browser, on a real task worker: the physicist asks for the 21
scenarios and a composite worst-case robustness in the new-plan form, calculates, and reads the
DVH bands and the worst-case goals in English and in French. Screenshots of each step go to
test-artifacts/screenshots/."""

from __future__ import annotations

import pytest

from protonpath.treatment import services
from protonpath.treatment.models import Plan, PlanState
from tests.browser.conftest import login, task_worker, wait_for
from tests.factories import PASSWORD
from tests.treatment.conftest import file_case, in_planning


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_physicist_plans_robustly_and_reads_bands_and_worst_case_in_two_languages(
    page, screenshot, settings, doctor, staff, oncologist, physicist, tmp_path
):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}  # from the start
    r = in_planning(doctor, staff=staff, oncologist=oncologist)
    file_case(r, physicist, tmp_path / "case")
    services.prescribe(actor=oncologist, treatment_request=r, target="PTV_60", dose_gy=60, fractions=30)
    with task_worker(settings):
        login(page, physicist.username, PASSWORD)
        page.goto(f"/requests/{r.pk}/")
        page.click("#new-plan")
        # a setup shift out of bounds is refused, and what was typed stays
        page.check("input[name=scenarios][value=combined]")
        page.fill("#new-plan-form input[name=setup_mm]", "12")
        page.click("#new-plan-form button[type=submit]")
        page.wait_for_selector(".messages, [role=alert]")
        assert "between 0 and 10" in page.inner_text("main")
        assert not Plan.objects.filter(treatment_request=r).exists()
        page.check("input[name=scenarios][value=combined]")
        page.fill("#new-plan-form input[name=setup_mm]", "3")
        page.fill("#new-plan-form input[name=range_pct]", "3.5")
        page.select_option("#new-plan-form select[name=robustness]", "composite_worst_case")
        screenshot("new-plan-robust-settings")
        page.click("#new-plan-form button[type=submit]")
        page.wait_for_selector("#plan-setup")
        plan = Plan.objects.get(treatment_request=r)
        assert plan.robust["robustness"] == "composite_worst_case" and plan.robust["scenarios"] == "combined"
        assert page.locator("#plan-setup input[name=scenarios][value=combined]").is_checked()
        page.fill("input[name=dose_grid_mm]", "6")
        page.fill("input[name=spot_spacing_mm]", "8")
        page.select_option("#layer-spacing-mode", "fixed")
        page.fill("input[name=layer_spacing_mm]", "6")
        page.fill("input[name=max_iterations]", "60")
        page.locator("#robust-settings").scroll_into_view_if_needed()
        screenshot("plan-setup-robustness")
        page.click("#save-calculate")
        page.wait_for_selector("#plan-results", timeout=300_000)
        plan.refresh_from_db()
        assert plan.state == PlanState.CALCULATED and plan.robustness["optimised_robustly"]
        assert page.locator("#dvh-bands svg polygon.band").count() == 2
        assert page.locator("#dvh-bands svg polyline.nominal").count() == 2
        table = page.inner_text("#worst-case-goals")
        assert "PTV_60" in table and "D95" in table and "Spinal Cord" in table
        assert "Robustness over 21 scenarios" in page.inner_text("#robustness")
        page.locator("#robustness").scroll_into_view_if_needed()
        screenshot("bands-and-worst-case")

        with page.expect_navigation():
            page.select_option("form.lang select[name=language]", "fr")
        page.wait_for_selector("#plan-results")
        text = page.inner_text("#robustness")
        assert "Robustesse sur 21\u00a0scénarios" in text and "Objectifs cliniques au pire cas" in text
        wait_for(page, "document.querySelectorAll('#dvh-bands polygon.band').length === 2")
        page.locator("#robustness").scroll_into_view_if_needed()
        screenshot("bands-and-worst-case-in-french")
        page.locator("#robust-settings").scroll_into_view_if_needed()
        screenshot("robust-settings-in-french")
