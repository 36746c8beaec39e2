"""Pages of planning, as each role sees them (EN and FR)."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.urls import reverse

from protonpath.accounts.models import AuditEvent
from protonpath.imaging.selectors import structure_sets_for
from protonpath.treatment.models import Plan, PlanState
from protonpath.treatment.services import planning_ct_series

FAST = {"dose_grid_mm": "6", "spot_spacing_mm": "8", "layer_spacing_mm": "6", "max_iterations": "40"}


def walk_to_calculated(client, r, physicist, oncologist, capture):
    client.force_login(oncologist)
    resp = client.post(reverse("treatment:prescription", args=[r.pk]),
                       {"target": "PTV_60", "dose_gy": "60", "fractions": "30"})
    assert resp.status_code == 302
    client.force_login(physicist)
    ct = planning_ct_series(r)
    rs = structure_sets_for(ct)[0]
    resp = client.post(reverse("treatment:new_plan", args=[r.pk]),
                       {"ct_series": ct.pk, "rtstruct": rs.pk, "category": "adult_standard"})
    assert resp.status_code == 302, resp.content[:500]
    plan = Plan.objects.get(treatment_request=r)
    page = client.get(reverse("treatment:plan", args=[plan.pk]))
    assert page.status_code == 200
    return save_and_calculate(client, plan, capture)


def save_and_calculate(client, plan, capture, **fields):
    """The setup page's *Save and calculate* with two fields (90 and 270 deg), the FAST
    settings and ``fields``, run by the on-commit task; the plan once calculated."""
    form = {f"role-{i}": m["role"] for i, m in enumerate(plan.setup["structures"])}
    form.update({"beam-count": "2", "beam-0-gantry": "90", "beam-0-couch": "0", "beam-1-gantry": "270",
                 "beam-1-couch": "0", **FAST, **fields, "action": "save_and_calculate"})
    with capture(execute=True):
        resp = client.post(reverse("treatment:plan", args=[plan.pk]), form)
    assert resp.status_code == 302
    plan.refresh_from_db()
    assert plan.state == PlanState.CALCULATED, plan.error_code
    return plan


@pytest.mark.django_db
def test_physicist_plans_and_sees_dose_dvh_statistics_goals_then_two_approve(
    client, planning_request, physicist, oncologist, django_capture_on_commit_callbacks
):
    r = planning_request
    plan = walk_to_calculated(client, r, physicist, oncologist, django_capture_on_commit_callbacks)
    page = client.get(reverse("treatment:plan", args=[plan.pk])).content.decode()
    for marker in ('id="dose-slice"', "<svg", 'id="dose-statistics"', 'id="clinical-goals"', "D98", "V95",
                   'data-structure="PTV_60"', "Passed", 'id="session-length"'):
        assert marker in page, marker
    png = client.get(reverse("treatment:slice", args=[plan.pk, 6]))
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    z = zipfile.ZipFile(io.BytesIO(client.post(reverse("treatment:zip", args=[plan.pk])).content))
    assert sorted(z.namelist()) == ["RTDOSE.dcm", "RTPLAN.dcm", "RTSTRUCT.dcm"]
    assert AuditEvent.objects.filter(action=AuditEvent.Action.DOWNLOAD, object_type="treatment.plan").exists()
    client.post(reverse("treatment:plan", args=[plan.pk]), {"action": "approve"})
    plan.refresh_from_db()
    assert plan.state == PlanState.PHYSICIST_APPROVED
    client.force_login(oncologist)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("treatment:plan", args=[plan.pk]), {"action": "approve"})
    plan.refresh_from_db()
    assert plan.state == PlanState.APPROVED
    r.refresh_from_db()
    assert r.state == "scheduled"


@pytest.mark.django_db
def test_page_in_french(client, planning_request, physicist, oncologist, django_capture_on_commit_callbacks):
    plan = walk_to_calculated(client, planning_request, physicist, oncologist, django_capture_on_commit_callbacks)
    client.cookies["django_language"] = "fr"
    page = client.get(reverse("treatment:plan", args=[plan.pk]), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Objectifs cliniques" in page and "Statistiques de dose" in page
    assert "Histogramme dose-volume" in page


@pytest.mark.django_db
def test_failure_is_shown_in_the_readers_language(client, planning_request, physicist, oncologist):
    from protonpath.treatment import services

    services.prescribe(actor=oncologist, treatment_request=planning_request, target="PTV_60", dose_gy=60, fractions=30)
    ct = planning_ct_series(planning_request)
    rs = structure_sets_for(ct)[0]
    plan = services.create_plan(actor=physicist, treatment_request=planning_request, ct_series=ct, rtstruct=rs,
                                category="adult_standard", setup=services.initial_setup(planning_request, ct, rs, "adult_standard"))
    Plan.objects.filter(pk=plan.pk).update(state=PlanState.FAILED, error_code="worker_lost")
    client.force_login(physicist)
    en = client.get(reverse("treatment:progress", args=[plan.pk]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "The worker calculating this plan stopped" in en
    client.cookies["django_language"] = "fr"
    fr = client.get(reverse("treatment:progress", args=[plan.pk]), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Le processus" in fr


@pytest.mark.django_db
def test_roles_on_every_page(client, planning_request, users, physicist, oncologist, django_capture_on_commit_callbacks):
    r = planning_request
    plan = walk_to_calculated(client, r, physicist, oncologist, django_capture_on_commit_callbacks)
    urls = [
        reverse("treatment:prescription", args=[r.pk]),
        reverse("treatment:new_plan", args=[r.pk]),
        reverse("treatment:plan", args=[plan.pk]),
        reverse("treatment:progress", args=[plan.pk]),
        reverse("treatment:slice", args=[plan.pk, 0]),
    ]
    for name in ("patient", "other_patient", "doctor", "other_doctor"):
        client.force_login(users[name])
        for url in urls:
            assert client.get(url).status_code == 404, (name, url)
        assert client.post(reverse("treatment:zip", args=[plan.pk])).status_code == 404
        assert client.post(reverse("treatment:plan", args=[plan.pk]), {"action": "approve"}).status_code == 404
    for name in ("staff", "oncologist", "physicist", "head"):
        client.force_login(users[name])
        for url in urls:
            assert client.get(url).status_code == 200, (name, url)
    client.logout()
    for url in urls:
        assert client.get(url).status_code == 302  # to sign-in
    plan.refresh_from_db()
    assert plan.state == PlanState.CALCULATED
    assert AuditEvent.objects.filter(action=AuditEvent.Action.DENIED, object_type="treatment.plan").count() >= 8


@pytest.mark.django_db
def test_the_referring_doctor_sees_a_plain_summary_only(client, planning_request, doctor, physicist, oncologist,
                                                         django_capture_on_commit_callbacks):
    r = planning_request
    walk_to_calculated(client, r, physicist, oncologist, django_capture_on_commit_callbacks)
    client.force_login(doctor)
    page = client.get(reverse("referrals:detail", args=[r.pk])).content.decode()
    assert "60 Gy(RBE) to PTV_60 in 30 fractions" in page
    assert "The physicists are preparing the treatment plan." in page
    assert "Plan v1" not in page and reverse("treatment:plan", args=[1]) not in page


@pytest.mark.django_db
def test_setup_form_chooses_auto_or_fixed_layer_spacing_and_a_bad_value_loses_nothing(
    client, planning_request, physicist, oncologist
):
    r = planning_request
    client.force_login(oncologist)
    client.post(reverse("treatment:prescription", args=[r.pk]), {"target": "PTV_60", "dose_gy": "60", "fractions": "30"})
    client.force_login(physicist)
    ct = planning_ct_series(r)
    client.post(reverse("treatment:new_plan", args=[r.pk]),
                {"ct_series": ct.pk, "rtstruct": structure_sets_for(ct)[0].pk, "category": "adult_standard"})
    plan = Plan.objects.get(treatment_request=r)
    url = reverse("treatment:plan", args=[plan.pk])
    page = client.get(url).content.decode()
    assert '<option value="auto" selected>Automatic, from the Bragg peak' in page
    form = {f"role-{i}": m["role"] for i, m in enumerate(plan.setup["structures"])}
    form.update({"beam-count": "1", "beam-0-gantry": "90", "beam-0-couch": "0", "dose_grid_mm": "5", "action": "save"})

    def saved(**fields):
        assert client.post(url, {**form, **fields}).status_code == 302
        plan.refresh_from_db()
        return plan.setup["settings"]["layer_spacing_mm"]

    assert saved(layer_spacing_mode="fixed", layer_spacing_mm="4,5") == 4.5
    assert '<option value="fixed" selected>' in client.get(url).content.decode()
    assert saved(layer_spacing_mode="auto", layer_spacing_mm="4,5") == "auto"
    before = dict(plan.setup)
    for typed in ("fine", "0.5", ""):
        resp = client.post(url, {**form, "beam-0-gantry": "45", "dose_grid_mm": "7",
                                 "layer_spacing_mode": "fixed", "layer_spacing_mm": typed})
        assert resp.status_code == 200  # the form again, with the message and what was typed
        page = resp.content.decode()
        assert "The energy layer spacing is automatic or a fixed number of mm between 1 and 20." in page
        assert f'name="layer_spacing_mm" id="layer-spacing-mm" value="{typed}"' in page
        assert '<option value="fixed" selected>' in page
        assert 'name="beam-0-gantry" value="45' in page and 'name="dose_grid_mm" value="7' in page
        plan.refresh_from_db()
        assert plan.setup == before  # nothing saved
    client.cookies["django_language"] = "fr"
    resp = client.post(url, {**form, "layer_spacing_mode": "fixed", "layer_spacing_mm": "fine"}, HTTP_ACCEPT_LANGUAGE="fr")
    assert "L’espacement des couches d’énergie est automatique" in resp.content.decode()
