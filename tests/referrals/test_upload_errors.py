"""Every refusal of the "Add the document" form is shown, with and without script (issue 12, 1).

The server answered 400 with a clear message, but htmx 2 swaps no 4xx answer by default, so the
page showed nothing; without script the page redirected and lost what had been chosen. The
browser walk (tests/browser/test_request_walk.py) checks the same in Chromium.
"""

from __future__ import annotations

import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import translation

from protonpath.referrals.models import MedicalDocument
from tests.factories import PDF_BYTES, make_request

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english_afterwards():
    """Pages served in French leave French active in the thread: the next test starts in English."""
    with translation.override("en"):
        yield


def _post(client, r, data, **headers):
    return client.post(reverse("referrals:upload", args=[r.pk]), data, **headers)


def test_without_script_the_whole_page_comes_back_with_the_error_and_the_choices(client, patient):
    r = make_request(patient, complete=False, submit=False)
    client.force_login(patient)
    response = _post(
        client, r, {"kind": "imaging_report", "description": "MRI of March", "file": SimpleUploadedFile("x.pdf", b"\x00garbage")}
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "<html" in html and 'id="upload-error"' in html
    assert "The document was not added." in html and "Reports must be PDF" in html
    assert re.search(r'<option value="imaging_report" selected>', html)
    assert 'value="MRI of March"' in html
    assert MedicalDocument.objects.count() == 0


def test_a_file_too_large_is_refused_visibly(client, patient, settings):
    settings.PROTONPATH_MAX_DOCUMENT_BYTES = 100
    r = make_request(patient, complete=False, submit=False)
    client.force_login(patient)
    big = SimpleUploadedFile("big.pdf", PDF_BYTES + b"%" * 200)
    for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
        response = _post(client, r, {"kind": "doctor_letter", "file": big}, **headers)
        assert response.status_code == 400
        assert 'role="alert"' in response.content.decode()
        big.seek(0)
    assert MedicalDocument.objects.count() == 0


def test_a_missing_file_shows_the_field_error_in_the_fragment_and_in_french(client, patient):
    r = make_request(patient, complete=False, submit=False)
    client.force_login(patient)
    response = _post(client, r, {"kind": "doctor_letter"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    html = response.content.decode()
    assert "<html" not in html and 'id="medical-file"' in html
    assert "This field is required" in html and "The document was not added." in html
    client.cookies["django_language"] = "fr"
    french = _post(client, r, {"kind": "doctor_letter"}, HTTP_HX_REQUEST="true", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    with translation.override("fr"):
        assert "Le document n’a pas été ajouté." in french


def _htmx_swaps(config: dict, status: int) -> bool:
    """htmx 2's rule: the first entry of responseHandling whose code matches decides."""
    for entry in config["responseHandling"]:
        if re.search(entry["code"], str(status)):
            return bool(entry.get("swap"))
    return False


def test_every_page_tells_htmx_to_swap_refused_forms(client, patient):
    client.force_login(patient)
    html = client.get(reverse("referrals:list")).content.decode()
    found = re.search(r"<meta name=\"htmx-config\" content='([^']+)'>", html)
    assert found, "no htmx-config: htmx 2 drops 4xx answers"
    config = json.loads(found.group(1))
    assert _htmx_swaps(config, 400) and _htmx_swaps(config, 422)
    assert _htmx_swaps(config, 200) and not _htmx_swaps(config, 204)
    assert not _htmx_swaps(config, 403) and not _htmx_swaps(config, 500)
