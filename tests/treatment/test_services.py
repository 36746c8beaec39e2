"""Prescription, plan setup, calculation (immediate backend), approval, course and export."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from protonpath.accounts.models import AuditEvent
from protonpath.imaging.selectors import structure_sets_for
from protonpath.referrals.models import State
from protonpath.treatment import approval, services
from protonpath.treatment.models import Plan, PlanState
from protonpath.treatment.services import ct_series_of, planning_ct_series

FAST = {"dose_grid_mm": 6.0, "spot_spacing_mm": 8.0, "layer_spacing_mm": 6.0, "max_iterations": 40}


def make_plan(r, physicist, oncologist, *, fast=True):
    services.prescribe(actor=oncologist, treatment_request=r, target="PTV_60", dose_gy=60, fractions=30)
    ct = planning_ct_series(r)
    rs = structure_sets_for(ct)[0]
    setup = services.initial_setup(r, ct, rs, "adult_standard")
    if fast:
        setup["settings"] = dict(FAST)
    return services.create_plan(actor=physicist, treatment_request=r, ct_series=ct, rtstruct=rs,
                                category="adult_standard", setup=setup)


@pytest.mark.django_db
def test_setup_maps_structures_and_starts_from_the_category_template(planning_request, physicist, oncologist):
    plan = make_plan(planning_request, physicist, oncologist, fast=False)
    roles = {m["name"]: (m["standard"], m["role"]) for m in plan.setup["structures"]}
    assert roles["PTV_60"] == ("PTV_60", "target")
    assert roles["Spinal Cord"] == ("SpinalCord", "oar")
    assert roles["BODY"] == ("External", "external")
    assert plan.setup["target"] == "PTV_60"
    assert [b["gantry_deg"] for b in plan.setup["beams"]] == [90.0, 270.0]
    iso = plan.setup["beams"][0]["isocentre_mm"]
    assert abs(iso[0]) < 4 and abs(iso[1] - 68) < 4 and abs(iso[2]) < 4
    assert {o["structure"] for o in plan.setup["objectives"]} == {"PTV_60", "Spinal Cord"}
    assert any(g["structure"] == "Spinal Cord" and g["metric"] == "max" for g in plan.setup["goals"])
    assert plan.state == PlanState.DRAFT and plan.version == 1


@pytest.mark.django_db
def test_only_physicists_set_up_plans_and_only_oncologists_prescribe(planning_request, users):
    for name in ("patient", "doctor", "staff", "oncologist", "head"):
        with pytest.raises(PermissionDenied):
            services.create_plan(actor=users[name], treatment_request=planning_request, ct_series=None,
                                 rtstruct=None, category="adult_standard", setup={})
    for name in ("patient", "doctor", "staff", "physicist", "head"):
        with pytest.raises(PermissionDenied):
            services.prescribe(actor=users[name], treatment_request=planning_request, target="PTV", dose_gy=50, fractions=25)
    assert AuditEvent.objects.filter(action=AuditEvent.Action.DENIED, object_type="referrals.treatmentrequest").count() >= 10


@pytest.mark.django_db
def test_prescriptions_are_versioned(planning_request, oncologist):
    a = services.prescribe(actor=oncologist, treatment_request=planning_request, target="PTV", dose_gy=54, fractions=30)
    b = services.prescribe(actor=oncologist, treatment_request=planning_request, target="PTV", dose_gy="50.4", fractions=28)
    assert (a.version, b.version) == (1, 2)
    assert services.current_prescription(planning_request) == b
    with pytest.raises(ValidationError):
        services.prescribe(actor=oncologist, treatment_request=planning_request, target="PTV", dose_gy=50, fractions=0)


@pytest.mark.django_db
def test_bad_setups_get_clear_messages(planning_request, physicist, oncologist):
    services.prescribe(actor=oncologist, treatment_request=planning_request, target="PTV_60", dose_gy=60, fractions=30)
    ct = planning_ct_series(planning_request)
    rs = structure_sets_for(ct)[0]
    good = services.initial_setup(planning_request, ct, rs, "adult_standard")

    def refused(**kw):
        args = dict(actor=physicist, treatment_request=planning_request, ct_series=ct, rtstruct=rs,
                    category="adult_standard", setup=good)
        args.update(kw)
        with pytest.raises(ValidationError) as e:
            services.create_plan(**args)
        return e.value.code, e.value.messages[0]

    assert refused(ct_series=None)[0] == "no_ct"
    assert refused(rtstruct=None)[0] == "rtstruct_not_on_ct"
    no_target = {**good, "structures": [{**m, "role": "oar" if m["role"] == "target" else m["role"]} for m in good["structures"]]}
    assert refused(setup=no_target) == ("no_target", "No structure is mapped as the target.")
    empty = {**good, "target": "Ghost", "structures": [*good["structures"], {"name": "Ghost", "role": "target"}]}
    assert refused(setup=empty)[0] == "several_targets"
    only_ghost = {**empty, "structures": [{**m, "role": "ignore"} if m["name"] == "PTV_60" else m for m in empty["structures"]]}
    code, text = refused(setup=only_ghost)
    assert code == "target_empty" and "Ghost" in text
    assert refused(setup={**good, "beams": []})[0] == "no_beams"
    assert refused(setup={**good, "beams": [{"gantry_deg": "east"}]})[0] == "bad_beam"
    for spacing in ("fine", "0.2", "", None):
        bad = {**good, "settings": {**good["settings"], "layer_spacing_mm": spacing}}
        assert refused(setup=bad) == (
            "bad_layer_spacing", "The energy layer spacing is automatic or a fixed number of mm between 1 and 20.")
    assert not Plan.objects.exists()


@pytest.mark.django_db
def test_department_plans_space_layers_automatically_unless_the_setup_fixes_mm(
    planning_request, physicist, oncologist, django_capture_on_commit_callbacks
):
    plan = make_plan(planning_request, physicist, oncologist, fast=False)
    assert plan.setup["settings"]["layer_spacing_mm"] == "auto"  # the category's template
    quick = {"dose_grid_mm": 6.0, "spot_spacing_mm": 8.0, "max_iterations": 40}
    plans = {}
    for spacing in ("auto", 6.0):
        setup = {**plan.setup, "settings": {**plan.setup["settings"], **quick, "layer_spacing_mm": spacing}}
        plan = services.new_version(actor=physicist, plan=plan, setup=setup)
        assert Plan.objects.get(pk=plan.pk).setup["settings"]["layer_spacing_mm"] == spacing
        with django_capture_on_commit_callbacks(execute=True):
            services.start_calculation(actor=physicist, plan=plan)
        plan.refresh_from_db()
        assert plan.state == PlanState.CALCULATED, plan.error_code
        plans[spacing] = plan
    auto, fixed = plans["auto"].results, plans[6.0].results
    assert auto["layer_spacing"]["mode"] == "auto" and auto["layer_spacing"]["width"] == "W80"
    assert fixed["layer_spacing"]["mode"] == "fixed" and fixed["layer_spacing"]["mm"] == 6.0
    # the target (50-86 mm deep, narrow peaks): auto takes the Proteus One's energies 3 mm of
    # range apart, the fixed 6 mm every other one
    assert 2.5 < auto["layer_spacing"]["spacing_mm"][0] < 3.5
    assert fixed["layer_spacing"]["spacing_mm"][0] >= 6.0
    for a, f in zip(auto["fields"], fixed["fields"], strict=True):
        assert a["layers"] > 1.5 * f["layers"]


@pytest.mark.django_db
def test_target_outside_the_ct_is_refused(doctor, staff, oncologist, physicist, tmp_path):
    from tests.treatment.conftest import file_case, in_planning

    r = in_planning(doctor, staff=staff, oncologist=oncologist)
    file_case(r, physicist, tmp_path, ct_slices=slice(0, 2))  # z = -33, -27 mm; the target spans -18..18
    services.prescribe(actor=oncologist, treatment_request=r, target="PTV_60", dose_gy=60, fractions=30)
    ct = planning_ct_series(r)
    rs = structure_sets_for(ct)[0]
    setup = services.initial_setup(r, ct, rs, "adult_standard")
    with pytest.raises(ValidationError) as e:
        services.create_plan(actor=physicist, treatment_request=r, ct_series=ct, rtstruct=rs,
                             category="adult_standard", setup=setup)
    assert e.value.code == "target_outside_ct"
    assert "lies outside the CT slices" in e.value.messages[0]


@pytest.mark.django_db
def test_calculation_on_the_task_backend_fills_progress_results_and_files(
    planning_request, physicist, oncologist, django_capture_on_commit_callbacks
):
    plan = make_plan(planning_request, physicist, oncologist)
    with django_capture_on_commit_callbacks(execute=True):
        services.start_calculation(actor=physicist, plan=plan)
    plan.refresh_from_db()
    assert plan.state == PlanState.CALCULATED, plan.error_code
    assert plan.progress == 1.0 and plan.stage == "done"
    st = plan.results["statistics"]["PTV_60"]
    for key in ("D98", "D95", "D50", "D2", "mean", "max", "V95"):
        assert key in st
    assert 40 < st["mean"] < 80  # course dose, prescription 60 Gy
    assert {d["name"] for d in plan.results["dvhs"]} >= {"PTV_60", "Spinal Cord", "BODY"}
    assert {g["passed"] for g in plan.results["goals"]} <= {True, False}
    assert plan.results["session_minutes"] >= 15
    assert len(plan.rtplan_sha256) == 64
    import pydicom

    ds = pydicom.dcmread(plan.rtplan_file.open("rb"))
    assert ds.Modality == "RTPLAN" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.8"
    with pytest.raises(ValidationError):
        services.start_calculation(actor=physicist, plan=plan)


@pytest.mark.django_db
def test_two_person_approval_freezes_the_plan_schedules_the_course_and_files_the_plan(
    planning_request, physicist, oncologist, users, django_capture_on_commit_callbacks
):
    from protonpath.imaging.models import Instance
    from protonpath.scheduling.models import TreatmentCourse

    plan = make_plan(planning_request, physicist, oncologist)
    with django_capture_on_commit_callbacks(execute=True):
        services.start_calculation(actor=physicist, plan=plan)
    plan.refresh_from_db()
    with pytest.raises(ValidationError):
        approval.approve(actor=oncologist, plan=plan)  # the physicist first
    for name in ("patient", "doctor", "staff", "head"):
        with pytest.raises(PermissionDenied):
            approval.approve(actor=users[name], plan=plan)
    plan = approval.approve(actor=physicist, plan=plan)
    assert plan.state == PlanState.PHYSICIST_APPROVED
    with pytest.raises(ValidationError):
        services.update_setup(actor=physicist, plan=plan, setup=plan.setup)
    with django_capture_on_commit_callbacks(execute=True):
        plan = approval.approve(actor=oncologist, plan=plan)
    assert plan.state == PlanState.APPROVED
    r = planning_request
    r.refresh_from_db()
    assert r.state == State.SCHEDULED
    course = TreatmentCourse.objects.get(treatment_request=r)
    assert course.fractions == 30
    assert course.session_minutes == plan.results["session_minutes"]
    assert course.sessions.count() == 30
    modalities = set(Instance.objects.filter(series__study__treatment_request=r).values_list("series__modality", flat=True))
    assert {"CT", "RTSTRUCT", "RTPLAN", "RTDOSE"} <= modalities
    assert AuditEvent.objects.filter(object_type="treatment.plan", object_id=str(plan.pk), action=AuditEvent.Action.TRANSITION).count() == 2


@pytest.mark.django_db
def test_a_changed_rt_ion_plan_cannot_be_approved(planning_request, physicist, oncologist, django_capture_on_commit_callbacks):
    plan = make_plan(planning_request, physicist, oncologist)
    with django_capture_on_commit_callbacks(execute=True):
        services.start_calculation(actor=physicist, plan=plan)
    plan.refresh_from_db()
    plan = approval.approve(actor=physicist, plan=plan)
    with open(plan.rtplan_file.path, "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(ValidationError) as e:
        approval.approve(actor=oncologist, plan=plan)
    assert e.value.code == "digest"


@pytest.mark.django_db
def test_a_change_makes_a_new_version_that_supersedes(planning_request, physicist, oncologist, django_capture_on_commit_callbacks):
    plan = make_plan(planning_request, physicist, oncologist)
    with django_capture_on_commit_callbacks(execute=True):
        services.start_calculation(actor=physicist, plan=plan)
    plan.refresh_from_db()
    setup = {**plan.setup, "beams": [{"gantry_deg": 90.0, "couch_deg": 0.0, "isocentre_mm": None}]}
    v2 = services.new_version(actor=physicist, plan=plan, setup=setup)
    plan.refresh_from_db()
    assert (v2.version, v2.state, v2.supersedes_id) == (2, PlanState.DRAFT, plan.pk)
    assert plan.state == PlanState.SUPERSEDED
    assert plan.results  # never overwritten


@pytest.mark.django_db
def test_a_structure_set_drawn_on_another_ct_is_refused(planning_request, physicist, oncologist, tmp_path):
    from protonpath.imaging.models import Instance
    from tests.treatment.conftest import file_case

    file_case(planning_request, physicist, tmp_path / "second")  # another CT with its own frame of reference
    services.prescribe(actor=oncologist, treatment_request=planning_request, target="PTV_60", dose_gy=60, fractions=30)
    first, second = [s for s in ct_series_of(planning_request).order_by("pk") if structure_sets_for(s)]
    other_rs = structure_sets_for(second)[0]
    assert other_rs not in structure_sets_for(first)
    assert Instance.objects.filter(series__modality="RTSTRUCT", series__study__treatment_request=planning_request).count() == 2
    setup = services.initial_setup(planning_request, second, other_rs, "adult_standard")
    with pytest.raises(ValidationError) as e:
        services.create_plan(actor=physicist, treatment_request=planning_request, ct_series=first, rtstruct=other_rs,
                             category="adult_standard", setup=setup)
    assert e.value.code == "rtstruct_not_on_ct"
    assert e.value.messages == ["The structure set does not refer to the chosen CT series."]
