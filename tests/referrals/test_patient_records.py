"""One record per person: reuse on a new request, the list of possible duplicates, merging.

A referring doctor is offered only records of patients they referred (never another doctor's);
administrative staff see possible duplicates across all records and merge two records of the same
person in one transaction; patients and doctors never reach these pages.
"""

import datetime
import logging

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import translation

from protonpath.accounts.models import AuditEvent
from protonpath.referrals import selectors, services
from protonpath.referrals.identity import identity_key, normalise_name
from protonpath.referrals.models import Patient, TreatmentRequest
from tests.factories import make_request, patient_data, request_data

pytestmark = pytest.mark.django_db

ALL_ROLES = ["patient", "other_patient", "doctor", "other_doctor", "staff", "oncologist", "physicist", "head"]


def new_request(actor, reuse=None, **patient_overrides):
    return services.create_request(
        actor=actor, patient_data=patient_data(**patient_overrides), request_data=request_data(), reuse_patient=reuse
    )


def form_post(**extra):
    """The new-request form's fields, as the browser posts them."""
    data = {f"patient-{k}": (v.isoformat() if isinstance(v, datetime.date) else v) for k, v in patient_data().items()}
    for key, value in request_data().items():
        if isinstance(value, bool):
            if value:
                data[f"request-{key}"] = "on"
        else:
            data[f"request-{key}"] = value
    data.update(extra)
    return data


# The key -----------------------------------------------------------------------------------


def test_names_are_compared_without_case_accents_or_punctuation():
    assert normalise_name("  Élodie-D'ANGELO ") == normalise_name("elodie d angelo") == "elodie d angelo"
    assert normalise_name("Straße") == "strasse"
    born = datetime.date(1979, 3, 14)
    assert identity_key("EL-IDRISSI", "Amína", born) == identity_key("el idrissi", "AMINA", born)
    assert identity_key("El Idrissi", "Amina", born) != identity_key("El Idrissi", "Amina", datetime.date(1979, 3, 15))


def test_the_key_is_kept_up_to_date_on_save(doctor):
    r = new_request(doctor)
    patient = r.patient
    assert patient.identity_key == "el idrissi|amina|1979-03-14"
    patient.first_name = "Aminâ"
    patient.save(update_fields=["first_name"])
    patient.refresh_from_db()
    assert patient.identity_key == "el idrissi|amina|1979-03-14"
    patient.birth_date = datetime.date(1980, 1, 2)
    patient.save(update_fields=["birth_date"])
    patient.refresh_from_db()
    assert patient.identity_key.endswith("|1980-01-02")


# Reuse when a doctor starts a request ------------------------------------------------------


def test_a_doctor_reuses_a_patient_they_already_referred(doctor):
    first = new_request(doctor)
    candidates = selectors.reusable_patients(doctor, last_name="EL-IDRISSI", first_name="amina", birth_date=datetime.date(1979, 3, 14))
    assert list(candidates) == [first.patient]
    second = new_request(doctor, reuse=first.patient.pk, last_name="EL-IDRISSI", phone="+212 611 111 111")
    assert second.patient_id == first.patient_id
    assert Patient.objects.count() == 1
    first.patient.refresh_from_db()
    assert first.patient.phone == "+212 611 111 111"
    assert AuditEvent.objects.filter(action="update", object_type="referrals.patient", object_id=str(first.patient.pk)).exists()


def test_without_reuse_a_second_record_is_still_created(doctor):
    first = new_request(doctor)
    second = new_request(doctor)
    assert first.patient_id != second.patient_id


def test_a_doctor_is_never_offered_another_doctors_patient(doctor, other_doctor, patient):
    theirs = new_request(other_doctor)
    own_account = make_request(patient, complete=False, submit=False)  # same name, the patient's own record
    born = datetime.date(1979, 3, 14)
    assert not selectors.reusable_patients(doctor, last_name="El Idrissi", first_name="Amina", birth_date=born).exists()
    for pk in (theirs.patient.pk, own_account.patient.pk, 999999):
        with pytest.raises(ValidationError):
            new_request(doctor, reuse=pk)
        assert AuditEvent.objects.filter(actor=doctor, action="denied", object_type="referrals.patient", object_id=str(pk)).exists()
    theirs.patient.refresh_from_db()
    assert theirs.patient.phone == patient_data()["phone"]
    assert TreatmentRequest.objects.filter(submitted_by=doctor).count() == 0


def test_reuse_needs_the_same_person(doctor):
    first = new_request(doctor)
    with pytest.raises(ValidationError):
        new_request(doctor, reuse=first.patient.pk, birth_date=datetime.date(1979, 3, 15))
    with pytest.raises(ValidationError):
        new_request(doctor, reuse=first.patient.pk, first_name="Samira")


def test_a_patient_cannot_reuse_someone_elses_record(doctor, patient):
    theirs = new_request(doctor)
    r = new_request(patient, reuse=theirs.patient.pk)
    assert r.patient_id != theirs.patient_id and r.patient.user == patient


def test_the_form_offers_the_doctors_own_patient_before_creating(client, doctor, other_doctor):
    new_request(other_doctor)  # another doctor's patient of the same name: never offered
    first = new_request(doctor)
    client.force_login(doctor)
    response = client.post(reverse("referrals:new"), form_post())
    assert response.status_code == 200
    page = response.content.decode()
    assert 'name="reuse-choice"' in page and first.reference in page
    assert page.count('name="reuse-choice"') == 2  # the doctor's record and "a new record"
    assert TreatmentRequest.objects.filter(submitted_by=doctor).count() == 1
    assert AuditEvent.objects.filter(actor=doctor, action="view", object_id=str(first.patient.pk), summary="offered for reuse").exists()

    response = client.post(reverse("referrals:new"), form_post(**{"reuse-choice": str(first.patient.pk)}))
    assert response.status_code == 302
    assert TreatmentRequest.objects.filter(submitted_by=doctor, patient=first.patient).count() == 2

    response = client.post(reverse("referrals:new"), form_post(**{"reuse-choice": "new"}))
    assert response.status_code == 302
    assert Patient.objects.filter(requests__submitted_by=doctor).distinct().count() == 2


def test_the_form_refuses_a_record_it_did_not_offer(client, doctor, other_doctor):
    theirs = new_request(other_doctor)
    new_request(doctor)
    client.force_login(doctor)
    response = client.post(reverse("referrals:new"), form_post(**{"reuse-choice": str(theirs.patient.pk)}))
    assert response.status_code == 200  # the offer again, with an error
    assert TreatmentRequest.objects.filter(patient=theirs.patient).count() == 1
    assert TreatmentRequest.objects.filter(submitted_by=doctor).count() == 1


def test_no_offer_when_the_doctor_has_no_such_patient(client, doctor):
    client.force_login(doctor)
    response = client.post(reverse("referrals:new"), form_post())
    assert response.status_code == 302


# The list of possible duplicates -----------------------------------------------------------


@pytest.fixture
def duplicates(doctor, other_doctor):
    """Two records of Amina El Idrissi (by two doctors), and one of another person."""
    a = new_request(doctor).patient
    b = new_request(other_doctor, last_name="EL-IDRISSI", first_name="Amína").patient
    new_request(doctor, first_name="Samira")
    return a, b


def test_possible_duplicates_are_found_across_all_records(duplicates):
    groups = selectors.duplicate_groups()
    assert len(groups) == 1
    assert {p.pk for p in groups[0].patients} == {p.pk for p in duplicates}


@pytest.mark.parametrize("role", ALL_ROLES)
def test_only_admin_staff_and_the_head_see_the_duplicates(client, users, duplicates, role):
    client.force_login(users[role])
    response = client.get(reverse("referrals:duplicates"))
    if role in ("staff", "head"):
        assert response.status_code == 200
        assert response.content.decode().count("<tr>") >= 3
        assert AuditEvent.objects.filter(actor=users[role], action="view", object_type="referrals.patient").exists()
    else:
        assert response.status_code == (403 if role in ("oncologist", "physicist") else 404)
        assert AuditEvent.objects.filter(actor=users[role], action="denied", object_type="referrals.patient").exists()


@pytest.mark.parametrize("role", ALL_ROLES)
def test_only_admin_staff_reach_the_merge_page(client, users, duplicates, role):
    a, b = duplicates
    client.force_login(users[role])
    url = reverse("referrals:merge", args=[a.pk, b.pk])
    get = client.get(url)
    post = client.post(url, {"confirm": "on"})
    if role == "staff":
        assert get.status_code == 200
        assert post.status_code == 302
        assert not Patient.objects.filter(pk=b.pk).exists()
    else:
        expected = 403 if role in ("oncologist", "physicist", "head") else 404
        assert (get.status_code, post.status_code) == (expected, expected)
        assert Patient.objects.filter(pk=b.pk).exists()


def test_the_menu_shows_duplicates_to_admin_staff_and_head(client, users):
    url = reverse("referrals:duplicates")
    for role in ALL_ROLES:
        client.force_login(users[role])
        page = client.get(reverse("referrals:list")).content.decode()
        assert (f'href="{url}"' in page) == (role in ("staff", "head")), role


def test_anonymous_visitors_are_sent_to_sign_in(client, duplicates):
    a, b = duplicates
    for url in (reverse("referrals:duplicates"), reverse("referrals:merge", args=[a.pk, b.pk])):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# Merging -----------------------------------------------------------------------------------


def test_a_merge_moves_every_request_and_keeps_the_identity_in_the_trail(staff, duplicates, doctor, other_doctor, caplog):
    a, b = duplicates
    b_requests = set(b.requests.values_list("pk", flat=True))
    with caplog.at_level(logging.DEBUG):
        kept = services.merge_patients(actor=staff, keep=a, remove=b)
    assert kept.pk == a.pk
    assert not Patient.objects.filter(pk=b.pk).exists()
    assert b_requests <= set(a.requests.values_list("pk", flat=True))
    event = AuditEvent.objects.get(action="delete", object_type="referrals.patient", object_id=str(b.pk))
    assert "EL-IDRISSI" in event.summary and "1979-03-14" in event.summary and f"#{a.pk}" in event.summary
    assert "referrals.treatmentrequest=1" in event.summary
    assert AuditEvent.objects.filter(action="update", object_type="referrals.patient", object_id=str(a.pk)).exists()
    # Nothing personal in the logs.
    assert "EL-IDRISSI" not in caplog.text and "Amína" not in caplog.text and "1979" not in caplog.text
    # Each doctor still sees their own request, and only theirs.
    assert a.requests.count() == 2
    assert selectors.visible_requests(doctor).filter(patient=a).count() == 1
    assert selectors.visible_requests(other_doctor).filter(patient=a).count() == 1
    assert selectors.duplicate_groups() == []


def test_the_patients_own_account_follows_the_kept_record(staff, doctor, patient):
    own = make_request(patient, complete=False, submit=False).patient
    by_doctor = new_request(doctor).patient
    services.merge_patients(actor=staff, keep=by_doctor, remove=own)
    by_doctor.refresh_from_db()
    assert by_doctor.user == patient
    assert selectors.visible_requests(patient).count() == 2


def test_two_patients_own_accounts_are_never_merged(staff, patient, other_patient):
    a = make_request(patient, complete=False, submit=False).patient
    b = make_request(other_patient, complete=False, submit=False).patient
    with pytest.raises(ValidationError) as refused:
        services.merge_patients(actor=staff, keep=a, remove=b)
    assert "account" in " ".join(refused.value.messages)
    assert Patient.objects.filter(pk__in=[a.pk, b.pk]).count() == 2
    assert a.requests.count() == 1 and b.requests.count() == 1
    assert AuditEvent.objects.filter(actor=staff, action="denied", object_id=str(b.pk)).exists()


def test_different_birth_dates_are_never_merged(staff, doctor):
    a = new_request(doctor).patient
    b = new_request(doctor, birth_date=datetime.date(1979, 4, 14)).patient
    with pytest.raises(ValidationError):
        services.merge_patients(actor=staff, keep=a, remove=b)
    assert Patient.objects.filter(pk__in=[a.pk, b.pk]).count() == 2
    with pytest.raises(ValidationError):
        services.merge_patients(actor=staff, keep=a, remove=a)


def test_the_refusals_are_translated(patient, other_patient, doctor):
    a = make_request(patient, complete=False, submit=False).patient
    b = make_request(other_patient, complete=False, submit=False).patient
    c = new_request(doctor, birth_date=datetime.date(1979, 4, 14)).patient
    with translation.override("fr"):
        accounts = services.merge_refusal(a, b)
        dates = services.merge_refusal(a, c)
    with translation.override("en"):
        assert services.merge_refusal(a, b) != accounts
        assert services.merge_refusal(a, c) != dates
    assert "compte" in accounts and "naissance" in dates


@pytest.mark.parametrize("role", ["patient", "doctor", "oncologist", "physicist", "head"])
def test_only_admin_staff_merge(users, duplicates, role):
    a, b = duplicates
    with pytest.raises(PermissionDenied):
        services.merge_patients(actor=users[role], keep=a, remove=b)
    assert Patient.objects.filter(pk=b.pk).exists()
    assert AuditEvent.objects.filter(actor=users[role], action="denied", object_type="referrals.patient").exists()


def test_the_merge_page_shows_the_refusal_and_merges_nothing(client, staff, patient, other_patient):
    a = make_request(patient, complete=False, submit=False).patient
    b = make_request(other_patient, complete=False, submit=False).patient
    client.force_login(staff)
    url = reverse("referrals:merge", args=[a.pk, b.pk])
    assert b"<form method=\"post\">" not in client.get(url).content
    response = client.post(url, {"confirm": "on"})
    assert response.status_code == 400
    assert Patient.objects.filter(pk__in=[a.pk, b.pk]).count() == 2


def test_the_merge_page_needs_confirmation_and_existing_records(client, staff, duplicates):
    a, b = duplicates
    client.force_login(staff)
    assert client.post(reverse("referrals:merge", args=[a.pk, b.pk]), {}).status_code == 400
    assert Patient.objects.filter(pk=b.pk).exists()
    assert client.get(reverse("referrals:merge", args=[a.pk, 999999])).status_code == 404
    assert client.get(reverse("referrals:merge", args=[a.pk, a.pk])).status_code == 404


def test_every_relation_to_patient_is_moved(staff, duplicates):
    """Other apps' relations are found from the model, so the merge needs no list of them."""
    relations = {(r.related_model._meta.label_lower, r.field.name) for r in services._patient_relations()}
    assert ("referrals.treatmentrequest", "patient") in relations
    a, b = duplicates
    services.merge_patients(actor=staff, keep=a, remove=b)
    for relation in services._patient_relations():
        assert not relation.related_model._base_manager.filter(**{relation.field.attname: b.pk}).exists()


def test_the_api_reuses_only_a_record_the_doctor_sees(client, doctor, other_doctor):
    from tests.referrals.test_api import Api, jsonable

    mine = new_request(doctor).patient
    theirs = new_request(other_doctor).patient
    api = Api(client, doctor)
    payload = {"patient": jsonable(patient_data()), "request": request_data()}
    assert api.post("/api/requests", {**payload, "reuse_patient_id": theirs.pk}).status_code == 400
    created = api.post("/api/requests", {**payload, "reuse_patient_id": mine.pk})
    assert created.status_code == 201
    assert TreatmentRequest.objects.get(pk=created.json()["id"]).patient_id == mine.pk
    assert theirs.requests.count() == 1


def test_the_pages_are_in_french(client, staff, duplicates):
    a, b = duplicates
    client.force_login(staff)
    with translation.override("fr"):  # the page's language is left active: restored on exit
        duplicates_page = client.get(reverse("referrals:duplicates"), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
        merge_page = client.get(reverse("referrals:merge", args=[a.pk, b.pk]), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Doublons possibles de patients" in duplicates_page and "Compte personnel du patient" in duplicates_page
    assert "Fusionner les dossiers" in merge_page and "Maroc" in merge_page
