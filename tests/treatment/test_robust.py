"""Robust planning in the plan pages: settings chosen in the forms (checked, stored, audited),
the worker's robustness evaluation kept on the plan, the DVH band chart and the worst-case goals
table for the roles that see plans, and the robust settings in the exported RT Ion Plan."""

from __future__ import annotations

import io

import pydicom
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from protonpath.accounts.models import AuditEvent
from protonpath.imaging.selectors import structure_sets_for
from protonpath.planning.robust_export import read_robust_settings
from protonpath.treatment import robust
from protonpath.treatment.models import Plan, PlanState
from protonpath.treatment.services import planning_ct_series
from tests.treatment.test_views import FAST, save_and_calculate

COMBINED = {"scenarios": "combined", "setup_mm": "3", "range_pct": "3.5", "robustness": "nominal"}


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"scenarios": "sampled"}, "robust_scenarios"),
        ({**COMBINED, "setup_mm": "abc"}, "robust_setup"),
        ({**COMBINED, "setup_mm": "-1"}, "robust_setup"),
        ({**COMBINED, "setup_mm": "10.5"}, "robust_setup"),
        ({**COMBINED, "setup_mm": "nan"}, "robust_setup"),
        ({**COMBINED, "range_pct": "12"}, "robust_range"),
        ({**COMBINED, "setup_mm": "0", "range_pct": "0"}, "robust_no_uncertainty"),
        ({**COMBINED, "robustness": "worst"}, "robust_mode"),
        ({"scenarios": "nominal", "robustness": "composite_worst_case"}, "robust_needs_scenarios"),
    ],
)
def test_robust_settings_refused(data, code):
    with pytest.raises(ValidationError) as exc:
        robust.clean(data)
    assert exc.value.code == code


def test_robust_settings_cleaned():
    assert robust.clean({}) == robust.NOMINAL_PLAN
    assert robust.clean({"scenarios": "nominal", "setup_mm": "99"}) == robust.NOMINAL_PLAN  # ignored without scenarios
    cleaned = robust.clean({**COMBINED, "setup_mm": "2,5", "robustness": "stochastic"})
    assert cleaned == {"scenarios": "combined", "setup_mm": 2.5, "range_pct": 3.5, "robustness": "stochastic"}
    scenarios = robust.scenarios_of(cleaned)
    assert len(scenarios) == 21 and scenarios.setup_mm == 2.5 and scenarios.range_error == pytest.approx(0.035)
    assert robust.scenarios_of(robust.NOMINAL_PLAN) is None
    with pytest.raises(ValidationError) as exc:
        robust.check_objectives(robust.NOMINAL_PLAN, {"objectives": [{"robustness": "stochastic"}]})
    assert exc.value.code == "robust_needs_scenarios"
    with pytest.raises(ValidationError):
        robust.check_objectives(cleaned, {"objectives": [{"robustness": "bogus"}]})
    assert robust.is_robust_optimisation(cleaned, {"objectives": [{}]})
    plain = {**cleaned, "robustness": "nominal"}
    assert not robust.is_robust_optimisation(plain, {"objectives": [{}]})
    assert robust.is_robust_optimisation(plain, {"objectives": [{}, {"robustness": "voxel_worst_case"}]})


def new_plan(client, r, physicist, oncologist, robust_fields):
    client.force_login(oncologist)
    client.post(reverse("treatment:prescription", args=[r.pk]), {"target": "PTV_60", "dose_gy": "60", "fractions": "30"})
    client.force_login(physicist)
    ct = planning_ct_series(r)
    rs = structure_sets_for(ct)[0]
    return client.post(reverse("treatment:new_plan", args=[r.pk]),
                       {"ct_series": ct.pk, "rtstruct": rs.pk, "category": "adult_standard", **robust_fields})


def calculate(client, plan, capture, robust_fields, **extra):
    return save_and_calculate(client, plan, capture, **robust_fields, **extra)


@pytest.mark.django_db
def test_new_plan_form_refuses_bad_robust_settings(client, planning_request, physicist, oncologist):
    r = planning_request
    resp = new_plan(client, r, physicist, oncologist, {**COMBINED, "setup_mm": "25"})
    assert resp.status_code == 200
    assert "The setup shift is a number of mm between 0 and 10." in resp.content.decode()
    assert 'name="setup_mm" value="25"' in resp.content.decode()  # what was typed stays in the form
    assert not Plan.objects.filter(treatment_request=r).exists()
    client.cookies["django_language"] = "fr"
    resp = client.post(reverse("treatment:new_plan", args=[r.pk]),
                       {"ct_series": planning_ct_series(r).pk, "rtstruct": structure_sets_for(planning_ct_series(r))[0].pk,
                        "category": "adult_standard", "scenarios": "nominal", "robustness": "stochastic"},
                       HTTP_ACCEPT_LANGUAGE="fr")
    assert "scénarios" in resp.content.decode()
    assert not Plan.objects.filter(treatment_request=r).exists()


@pytest.mark.django_db
def test_worker_evaluates_a_nominal_plan_and_the_page_shows_bands_and_worst_case(
    client, planning_request, users, physicist, oncologist, django_capture_on_commit_callbacks
):
    r = planning_request
    resp = new_plan(client, r, physicist, oncologist, {**COMBINED, "setup_mm": "4"})
    assert resp.status_code == 302
    plan = Plan.objects.get(treatment_request=r)
    assert plan.robust == {"scenarios": "combined", "setup_mm": 4.0, "range_pct": 3.5, "robustness": "nominal"}
    created = AuditEvent.objects.get(action=AuditEvent.Action.CREATE, object_type="treatment.plan", object_id=str(plan.pk))
    assert "scenarios: combined setup 4 mm range 3.5 %" in created.summary
    plan = calculate(client, plan, django_capture_on_commit_callbacks, {**COMBINED, "setup_mm": "4"})

    ev = plan.robustness
    assert not ev["optimised_robustly"]
    assert len(ev["per_scenario"]) == 21 and ev["per_scenario"][0]["scenario"] == "nominal"
    assert ev["roles"] == {"PTV_60": "target", "Spinal Cord": "oar"}  # the external contour is left out
    d95 = [s["structures"]["PTV_60"]["D95"] for s in ev["per_scenario"]]
    worst = ev["worst_case"]["PTV_60"]["D95"]
    assert worst["value"] == pytest.approx(min(d95)) and worst["nominal"] == pytest.approx(d95[0])
    assert worst["nominal"] == pytest.approx(plan.results["statistics"]["PTV_60"]["D95"], rel=1e-3)
    assert worst["value"] < worst["nominal"]  # a 4 mm shift of a 36 mm cube uncovers some of it
    cord = [s["structures"]["Spinal Cord"]["max"] for s in ev["per_scenario"]]
    assert ev["worst_case"]["Spinal Cord"]["max"]["value"] == pytest.approx(max(cord))
    for band in ev["dvh_bands"]:
        assert len(band["dose_gy"]) <= 100
        assert all(lo <= n + 1e-9 and n <= up + 1e-9 for lo, n, up in zip(band["lower"], band["nominal"], band["upper"], strict=True))

    url = reverse("treatment:plan", args=[plan.pk])
    page = client.get(url).content.decode()
    assert page.count('<polygon class="band"') == 2 and 'class="nominal"' in page
    assert "Robustness over 21 scenarios" in page and "Worst-case clinical goals" in page
    assert 'data-structure="PTV_60" data-statistic="D95"' in page
    assert 'data-structure="Spinal Cord" data-statistic="max"' in page
    # the setup's D98 goal (>= 95 % of 60 Gy) is shown with its worst case
    rows = robust.worst_case_rows(ev, plan.results["goals"])
    d98 = next(row for row in rows if row["structure"] == "PTV_60" and row["statistic"] == "D98")
    assert d98["goal"] == {"op": ">=", "limit": pytest.approx(57.0)}
    assert d98["passed"] is (d98["value"] >= 57.0)
    assert rows[0]["target"] and not rows[-1]["target"]

    client.cookies["django_language"] = "fr"
    fr = client.get(url, HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Robustesse sur 21\u00a0scénarios" in fr and "Objectifs cliniques au pire cas" in fr
    assert "Erreur de parcours (%)" in fr and "Décalage de positionnement (mm, par axe)" in fr
    from django.utils import translation

    with translation.override("fr"):
        for row in robust.worst_case_rows(ev, plan.results["goals"]):
            assert f"<td>{row['scenario']}</td>" in fr  # the worst scenarios' labels, in French
            assert "range" not in row["scenario"]
    del client.cookies["django_language"]

    for name in ("patient", "other_patient", "doctor", "other_doctor"):
        client.force_login(users[name])
        assert client.get(url).status_code == 404, name
    for name in ("staff", "oncologist", "head"):
        client.force_login(users[name])
        page = client.get(url).content.decode()
        assert 'id="worst-case-goals"' in page and 'id="dvh-bands"' in page, name
    assert AuditEvent.objects.filter(action=AuditEvent.Action.DENIED, object_type="treatment.plan").count() >= 4


@pytest.mark.django_db
def test_robust_optimisation_on_the_worker_and_the_exported_plan_carries_its_settings(
    client, planning_request, physicist, oncologist, django_capture_on_commit_callbacks
):
    r = planning_request
    assert new_plan(client, r, physicist, oncologist, {}).status_code == 302  # a nominal plan first
    plan = Plan.objects.get(treatment_request=r)
    assert plan.robust["scenarios"] == "nominal"
    # the target's objective composite worst case, set on the setup page; the rest as the plan (nominal)
    plan = calculate(client, plan, django_capture_on_commit_callbacks, COMBINED,
                     **{"objectives-0-robustness": "composite_worst_case"})
    assert plan.setup["objectives"][0]["robustness"] == "composite_worst_case"
    assert "robustness" not in plan.setup["objectives"][1]
    ev = plan.robustness
    assert ev["optimised_robustly"]
    robust_worst = ev["worst_case"]["PTV_60"]["D95"]["value"]
    nominal_plan_worst = ev["nominal_plan_worst_case"]["PTV_60"]["D95"]["value"]
    assert robust_worst > nominal_plan_worst  # what the robust optimisation is for
    assert AuditEvent.objects.filter(object_type="treatment.plan", object_id=str(plan.pk),
                                     summary__contains="scenarios: combined").exists()

    with plan.rtplan_file.open("rb") as f:
        ds = pydicom.dcmread(io.BytesIO(f.read()))
    record = read_robust_settings(ds)
    assert len(record["scenarios"]) == 21 and record["scenarios"].setup_mm == 3.0
    modes = {o["structure"]: o["robustness"] for o in record["objectives"]}
    assert modes["PTV_60"] == "composite_worst_case" and modes["Spinal Cord"] == "nominal"
    assert record["worst_case"]["PTV_60"]["D95"]["value"] == pytest.approx(robust_worst)
    assert record["settings"] == plan.robust

    # a plan without scenarios has no evaluation, no band chart and no private block
    client.force_login(physicist)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("treatment:plan", args=[plan.pk]), {
            **{f"role-{i}": m["role"] for i, m in enumerate(plan.setup["structures"])}, "beam-count": "2",
            "beam-0-gantry": "90", "beam-1-gantry": "270", **FAST, "scenarios": "nominal", "robustness": "nominal",
            "objectives-0-robustness": "", "action": "save_and_calculate"})
    newer = Plan.objects.get(treatment_request=r, version=2)
    assert newer.state == PlanState.CALCULATED and newer.robustness == {}
    assert 'id="dvh-bands"' not in client.get(reverse("treatment:plan", args=[newer.pk])).content.decode()
    with newer.rtplan_file.open("rb") as f:
        assert read_robust_settings(pydicom.dcmread(io.BytesIO(f.read()))) is None


def test_scenario_labels_in_the_readers_language():
    from django.utils import translation

    sc = {"shift_mm": [0.0, -3.0, 0.0], "range_error": 0.035}
    with translation.override("en"):
        assert robust.scenario_label(sc) == "y \u22123\u00a0mm, range +3.5\u00a0%"
        assert robust.scenario_label({"shift_mm": [0, 0, 0], "range_error": 0.0}) == "nominal"
    with translation.override("fr"):
        assert robust.scenario_label(sc) == "y \u22123\u00a0mm, parcours +3,5\u00a0%"
        assert robust.scenario_label({"shift_mm": [2.5, 0, 0], "range_error": 0.0}) == "x +2,5\u00a0mm"
