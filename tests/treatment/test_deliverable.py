"""The department's plans are deliverable Proteus One plans: its machine data, the lateral
model checked against MCsquare by default, every spot at 0 or at least the minimum MU, a range
shifter recorded when one is used, and doses in Gy(RBE) with the physical dose optimised to the
prescription / 1.1."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from django.urls import reverse

from protonpath.planning import proteus_one
from protonpath.planning.let_rbe import CONSTANT_RBE

from .test_views import FAST, walk_to_calculated


def _dataset(field) -> pydicom.Dataset:
    with field.open("rb") as f:
        return pydicom.dcmread(io.BytesIO(f.read()))


@pytest.mark.django_db
def test_a_department_plan_is_deliverable_on_the_proteus_one(
    client, planning_request, physicist, oncologist, django_capture_on_commit_callbacks
):
    plan = walk_to_calculated(client, planning_request, physicist, oncologist, django_capture_on_commit_callbacks)
    res = plan.results
    assert res["machine"] == "Proteus One" and res["lateral_model"] == "halo-depth"
    data = proteus_one.load_proteus_one()
    mu = res["minimum_mu"]
    assert mu["min_mu_per_spot"] == data.min_mu_per_spot
    assert mu["active_spots_after"] == sum(f["spots"] for f in res["fields"])
    rtplan = _dataset(plan.rtplan_file)
    delivered = 0
    for ib in rtplan.IonBeamSequence:
        assert int(ib.NumberOfRangeShifters) == (0 if res["range_shifter"] is None else 1)
        for cp in ib.IonControlPointSequence[::2]:
            w = np.asarray(cp.ScanSpotMetersetWeights, dtype=float)
            spot_mu = proteus_one.weights_to_mu(w, float(cp.NominalBeamEnergy), data)
            assert np.all(spot_mu[w > 0] >= data.min_mu_per_spot * (1 - 1e-5))
            delivered += int(np.count_nonzero(w))
    assert delivered == mu["active_spots_after"]
    # the prescription is 60 Gy(RBE): the RT Dose is the RBE-weighted dose, the target's mean
    # is near it, and the physical dose under it is 1.1 times lower
    rtdose = _dataset(plan.rtdose_file)
    assert rtdose.DoseType == "EFFECTIVE" and "Gy(RBE)" in rtdose.DoseComment
    ptv = res["statistics"]["PTV_60"]
    assert abs(ptv["mean"] / 60.0 - 1) < 0.05
    effective = rtdose.pixel_array.max() * float(rtdose.DoseGridScaling)
    assert abs(effective / ptv["max"] - 1) < 0.01
    assert effective / CONSTANT_RBE < 0.97 * ptv["max"]
    # variable RBE for evaluation: LET_d and the McNamara and Wedenberg doses beside RBE 1.1
    rbe = res["variable_rbe"]
    assert rbe["models"] == ["constant", "mcnamara", "wedenberg"]
    target = rbe["structures"]["PTV_60"]
    assert target["let_max"] > target["let_mean"] > 1.0
    assert abs(target["constant"]["mean"] / ptv["mean"] - 1) < 0.01  # the same Gy(RBE)
    assert target["mcnamara"]["D95"] != target["constant"]["D95"]
    assert "BODY" not in rbe["structures"]
    page = client.get(reverse("treatment:plan", args=[plan.pk])).content.decode()
    for marker in ('id="variable-rbe"', "D95, McNamara", 'id="deliverability"', "Proteus One", 'id="minimum-mu"', 'id="range-shifter"',
                   'id="lateral-model"', "checked against Monte Carlo"):
        assert marker in page, marker
    client.cookies["django_language"] = "fr"
    fr = client.get(reverse("treatment:plan", args=[plan.pk]), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Délivrabilité" in fr and "Chaque spot délivré a au moins" in fr and "EBR variable" in fr


def _recalculate(client, plan, capture, **fields):
    """*New version and calculate* on a calculated plan; the new version."""
    from protonpath.treatment.models import Plan, PlanState

    form = {f"role-{i}": m["role"] for i, m in enumerate(plan.setup["structures"])}
    for i, b in enumerate(plan.setup["beams"]):
        form.update({f"beam-{i}-gantry": str(b["gantry_deg"]), f"beam-{i}-couch": str(b["couch_deg"])})
    form.update({"beam-count": str(len(plan.setup["beams"])), **FAST, **fields,
                 "action": "save_and_calculate"})
    with capture(execute=True):
        assert client.post(reverse("treatment:plan", args=[plan.pk]), form).status_code == 302
    new = Plan.objects.filter(treatment_request=plan.treatment_request).order_by("-version").first()
    assert new.state == PlanState.CALCULATED, new.error_code
    return new


@pytest.mark.django_db
def test_the_physicist_chooses_the_lateral_model(
    client, planning_request, physicist, oncologist, django_capture_on_commit_callbacks
):
    halo = walk_to_calculated(client, planning_request, physicist, oncologist, django_capture_on_commit_callbacks)
    single = _recalculate(client, halo, django_capture_on_commit_callbacks, lateral_model="single")
    assert single.version == halo.version + 1
    assert single.setup["settings"]["lateral_model"] == "single"
    assert single.results["lateral_model"] == "single"
    # the core Gaussian alone spreads less dose outside the field: a different plan
    assert single.results["statistics"]["PTV_60"] != halo.results["statistics"]["PTV_60"]
    # an unknown model is not stored (the form offers three)
    other = _recalculate(client, single, django_capture_on_commit_callbacks, lateral_model="triple")
    assert other.setup["settings"]["lateral_model"] == "single"
