"""Who sees what: every page and API endpoint of requests, for every role.

A patient or referring doctor sees only their own requests; typing another request's URL gives
404 (its existence is not revealed) and leaves a 'denied' line in the audit trail.
"""

import pytest
from django.urls import reverse

from protonpath.accounts.models import ApiToken, AuditEvent
from tests.factories import advance_to, make_request

pytestmark = pytest.mark.django_db

ALL_ROLES = ["patient", "other_patient", "doctor", "other_doctor", "staff", "oncologist", "physicist", "head"]


@pytest.fixture
def own_request(users):
    """A request by ``patient``, submitted, in its early states (physicists do not see it yet)."""
    return make_request(users["patient"])


@pytest.fixture
def doctors_request(users):
    return make_request(users["doctor"], covered_by_french_insurance=True)


def may_see(role: str, owner: str) -> bool:
    return role in (owner, "staff", "oncologist", "head")


def request_pages(r):
    document = r.documents.first()
    return [
        reverse("referrals:detail", args=[r.pk]),
        reverse("referrals:document", args=[document.pk]),
    ]


def api_get(client, url, user):
    _, raw = ApiToken.issue(user=user, name="test")
    return client.get(url, HTTP_AUTHORIZATION=f"Bearer {raw}")


@pytest.mark.parametrize("role", ALL_ROLES)
def test_request_pages_are_seen_only_by_the_owner_and_department_staff(client, users, own_request, doctors_request, role):
    client.force_login(users[role])
    for owner, r in (("patient", own_request), ("doctor", doctors_request)):
        for url in request_pages(r):
            response = client.get(url)
            expected = 200 if may_see(role, owner) else 404
            assert response.status_code == expected, (role, url)


@pytest.mark.parametrize("role", ALL_ROLES)
def test_api_request_endpoints_follow_the_same_rules(client, users, own_request, role):
    user = users[role]
    r = own_request
    document = r.documents.first()
    urls = [
        f"/api/requests/{r.pk}",
        f"/api/requests/{r.pk}/checklist",
        f"/api/requests/{r.pk}/history",
        f"/api/requests/{r.pk}/documents",
        f"/api/documents/{document.pk}/file",
    ]
    for url in urls:
        response = api_get(client, url, user)
        assert response.status_code == (200 if may_see(role, "patient") else 404), (role, url)


@pytest.mark.parametrize("role", ALL_ROLES)
def test_lists_show_only_visible_requests(client, users, own_request, doctors_request, role):
    client.force_login(users[role])
    page = client.get(reverse("referrals:list")).content.decode()
    listed = api_get(client, "/api/requests", users[role]).json()
    refs = {item["reference"] for item in listed}
    for owner, r in (("patient", own_request), ("doctor", doctors_request)):
        assert (r.reference in page) == may_see(role, owner), role
        assert (r.reference in refs) == may_see(role, owner), role


def test_physicists_see_requests_from_the_first_consultation_on(client, users, doctors_request):
    client.force_login(users["physicist"])
    url = reverse("referrals:detail", args=[doctors_request.pk])
    assert client.get(url).status_code == 404
    r = advance_to(doctors_request, "accepted", staff=users["staff"], oncologist=users["oncologist"])
    from protonpath.referrals import services

    services.perform(actor=users["staff"], treatment_request=r, action="book_consultation")
    assert client.get(url).status_code == 200


def test_denied_access_is_in_the_audit_trail(client, users, own_request):
    client.force_login(users["other_patient"])
    client.get(reverse("referrals:detail", args=[own_request.pk]))
    event = AuditEvent.objects.get(action="denied", actor=users["other_patient"])
    assert event.object_id == str(own_request.pk)


def test_viewing_and_downloading_are_in_the_audit_trail(client, users, own_request):
    client.force_login(users["oncologist"])
    client.get(reverse("referrals:detail", args=[own_request.pk]))
    document = own_request.documents.get(kind="doctor_letter")
    response = client.get(reverse("referrals:document", args=[document.pk]))
    assert b"".join(response.streaming_content).startswith(b"%PDF")
    actions = set(AuditEvent.objects.filter(actor=users["oncologist"]).values_list("action", flat=True))
    assert {"view", "download"} <= actions


@pytest.mark.parametrize("role", ["patient", "doctor", "physicist"])
def test_work_queues_are_for_staff_who_have_them(client, users, role):
    client.force_login(users[role])
    assert client.get(reverse("referrals:queues")).status_code in (403, 200 if role == "physicist" else 403)
    response = api_get(client, "/api/queues", users[role])
    assert response.status_code == (200 if role == "physicist" else 403)


def test_anonymous_visitors_are_sent_to_sign_in(client, own_request):
    response = client.get(reverse("referrals:detail", args=[own_request.pk]))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert client.get(f"/api/requests/{own_request.pk}").status_code == 401


def test_other_patients_cannot_act_through_the_pages(client, users, own_request):
    client.force_login(users["other_patient"])
    response = client.post(reverse("referrals:action", args=[own_request.pk, "cancel"]), {"note": "x"})
    assert response.status_code == 404
    own_request.refresh_from_db()
    assert own_request.state == "submitted"


def test_external_users_never_get_django_admin(users):
    for role in ("patient", "doctor"):
        user = users[role]
        user.is_staff = True
        user.save()
        user.refresh_from_db()
        assert not user.is_staff


def test_revoked_token_is_refused(client, users, own_request):
    token, raw = ApiToken.issue(user=users["patient"], name="t")
    token.revoked = True
    token.save()
    assert client.get(f"/api/requests/{own_request.pk}", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401
