"""The Django admin under the pages' role rules: every registered model, every staff role.

The staff accounts are made superusers here, the worst case: Django's own permissions then allow
everything, and only the department's role rules stand between a physicist and the tariff.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

from protonpath.accounts.admin_rules import RoleRulesAdmin

pytestmark = pytest.mark.django_db

A, ONC, P, H = "staff", "oncologist", "physicist", "head"
ALL = {A, ONC, P, H}
NONE: set[str] = set()

#: What each staff role may do with each model, as the pages allow it: view, add, change, delete.
EXPECTED = {
    "accounts.user": ({A}, {A}, {A}, {A}),
    "accounts.auditevent": ({A, H}, NONE, NONE, NONE),
    "accounts.apitoken": ({A}, {A}, {A}, {A}),
    "django_tasks_database.dbtaskresult": ({A}, NONE, NONE, NONE),
    "department.teammember": (ALL, {A, H}, {A, H}, {A, H}),
    "department.service": (ALL, {A, H}, {A, H}, {A, H}),
    "department.reviewmeeting": ({A, ONC, H}, {A, H}, {A, H}, {A, H}),
    "imaging.study": (ALL, NONE, NONE, NONE),
    "imaging.series": (ALL, NONE, NONE, NONE),
    "imaging.instance": (ALL, NONE, NONE, NONE),
    "imaging.transfer": (ALL, NONE, NONE, NONE),
    "imaging.checkreport": (ALL, NONE, NONE, NONE),
    "international.tariff": (ALL, {A, H}, {A, H}, {A, H}),
    "international.quote": (ALL, NONE, NONE, NONE),
    "international.payment": (ALL, NONE, NONE, NONE),
    "international.accompanyingperson": (ALL, NONE, NONE, NONE),
    "international.declaredstay": (ALL, NONE, NONE, NONE),
    "referrals.treatmentrequest": (ALL, {A, H}, {A, H}, NONE),
    "referrals.patient": (ALL, {A}, {A}, NONE),
    "scheduling.consultation": (ALL, NONE, {A, ONC, H}, NONE),
    "scheduling.treatmentcourse": (ALL, ALL, ALL, NONE),
    "scheduling.gantrysession": (ALL, NONE, {A, ONC, H}, NONE),
    "scheduling.machinedowntime": (ALL, NONE, {A, ONC, H}, {A, ONC, H}),
    "treatment.prescription": (ALL, NONE, NONE, NONE),
    "treatment.plan": (ALL, NONE, NONE, NONE),
}

REGISTRY = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label_lower)


@pytest.fixture
def superusers(users):
    for role in ALL:
        users[role].is_superuser = True
        users[role].save()
    return users


def test_every_registered_model_is_under_the_role_rules():
    labels = {model._meta.label_lower for model, _ in REGISTRY}
    # A model registered later must say who may use it here.
    assert labels == set(EXPECTED), labels ^ set(EXPECTED)
    for model, model_admin in REGISTRY:
        assert isinstance(model_admin, RoleRulesAdmin), model._meta.label_lower
        for inline in model_admin.inlines:
            assert issubclass(inline, RoleRulesAdmin), inline


@pytest.mark.parametrize("role", sorted(ALL))
@pytest.mark.parametrize("label", sorted(EXPECTED))
def test_each_model_admin_allows_each_staff_role_what_the_pages_allow(superusers, label, role):
    model_admin = next(a for m, a in REGISTRY if m._meta.label_lower == label)
    request = RequestFactory().get("/admin/")
    request.user = superusers[role]
    view, add, change, delete = EXPECTED[label]
    got = (
        model_admin.has_view_permission(request),
        model_admin.has_add_permission(request),
        model_admin.has_change_permission(request),
        model_admin.has_delete_permission(request),
    )
    assert got == (role in view or role in change, role in add, role in change, role in delete)
    assert model_admin.has_module_permission(request) == (role in view or role in change)


@pytest.mark.parametrize("role", ["patient", "doctor"])
def test_external_roles_get_nothing_even_if_flagged(users, role):
    user = users[role]
    request = RequestFactory().get("/admin/")
    request.user = user
    user.is_superuser = True  # not saved: save() would clear it
    for _model, model_admin in REGISTRY:
        assert not model_admin.has_view_permission(request)
        assert not model_admin.has_module_permission(request)


@pytest.fixture
def tariff(staff):
    from protonpath.international.models import Tariff

    return Tariff.objects.create(
        code="consultation", label_en="Consultation", label_fr="Consultation", unit_en="act", unit_fr="acte",
        unit_price_eur=Decimal("120.00"), valid_from=datetime.date(2030, 1, 1), created_by=staff,
    )


@pytest.mark.parametrize("role", [ONC, P])
def test_a_physicist_or_oncologist_cannot_change_or_delete_a_tariff_in_the_admin(client, superusers, tariff, role):
    """The defect: /admin/ let any staff account change or delete unused tariffs."""
    client.force_login(superusers[role])
    change = reverse("admin:international_tariff_change", args=[tariff.pk])
    delete = reverse("admin:international_tariff_delete", args=[tariff.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    page = client.get(change)
    assert page.status_code == 200 and b'name="unit_price_eur"' not in page.content  # read-only view
    client.post(change, {"code": "consultation", "unit_price_eur": "1.00", "valid_from": "2030-01-01"})
    tariff.refresh_from_db()
    assert tariff.unit_price_eur == Decimal("120.00")


def test_administrative_staff_still_correct_an_unused_tariff(client, superusers, tariff):
    client.force_login(superusers[A])
    delete = reverse("admin:international_tariff_delete", args=[tariff.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 302
    assert not type(tariff).objects.filter(pk=tariff.pk).exists()


@pytest.mark.parametrize("role", sorted(ALL))
def test_changelists_answer_as_the_rules_say(client, superusers, role):
    client.force_login(superusers[role])
    for model, _model_admin in REGISTRY:
        label = model._meta.label_lower
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        view, _add, change, _delete = EXPECTED[label]
        assert client.get(url).status_code == (200 if role in view | change else 403), (label, role)


def test_a_physicist_sees_in_the_admin_only_the_requests_the_pages_show(client, superusers):
    from protonpath.referrals.models import TreatmentRequest
    from tests.factories import make_request

    submitted = make_request(superusers["patient"])
    client.force_login(superusers[P])
    assert client.get(reverse("admin:referrals_treatmentrequest_change", args=[submitted.pk])).status_code == 302
    page = client.get(reverse("admin:referrals_treatmentrequest_changelist"))
    assert submitted.reference not in page.content.decode()
    assert TreatmentRequest.objects.filter(pk=submitted.pk).exists()
