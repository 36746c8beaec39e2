"""Why a study waits in the inbox, in the reader's language (ingest.InboxReason code + params,
imaging.messages.INBOX_REASONS), from real receipts over the DICOM network with dcmtk's storescu."""

from __future__ import annotations

import html
import importlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.urls import reverse
from django.utils import translation

from protonpath.imaging import ingest, messages
from protonpath.imaging.models import Study
from tests.factories import PASSWORD
from tests.imaging.conftest import PATIENT_BIRTH, PATIENT_NAME, stamp
from tests.imaging.dicomdata import write_ct_series
from tests.translations import assert_every_sentence_reads_differently_in_french


def _storescu(listener, paths) -> None:
    executable = shutil.which("storescu")
    if executable is None:
        pytest.fail("dcmtk's storescu is not installed (apt-get install dcmtk)")
    result = subprocess.run(
        [executable, "-aet", "HOSPITAL_PACS", "-aec", settings.DICOM_AE_TITLE, "127.0.0.1", str(listener.port),
         *[str(p) for p in paths]],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr


def _inbox_page(client, staff, language: str) -> str:
    assert client.login(username=staff.username, password=PASSWORD)
    response = client.get(reverse("imaging:inbox"), HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200
    return html.unescape(response.content.decode())


@pytest.mark.dicom_peer
@pytest.mark.django_db(transaction=True)
def test_the_inbox_says_why_in_french_and_in_english(listener, submitted, staff, client, tmp_path):
    # Another patient's images sent with the request's accession number, and a study without one.
    other = write_ct_series(tmp_path / "other", 2, patient_name="Martin^Lucas", birth_date="20170602")
    stamp(other, AccessionNumber=submitted.accession_number)
    bare = write_ct_series(tmp_path / "bare", 1, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(bare, AccessionNumber="")
    _storescu(listener, other)
    _storescu(listener, bare)
    assert set(Study.objects.values_list("inbox_reason_code", flat=True)) == {"identity_differs", "no_accession_number"}

    french = _inbox_page(client, staff, "fr")
    assert (
        f"l'identité du patient diffère de celle de la demande {submitted.reference}\u00a0: "
        "le nom de famille dans les images diffère de celui de la demande\u00a0; "
        "la date de naissance dans les images diffère de celle de la demande"
    ) in french
    assert "pas de numéro d'accession" in french
    assert "patient identity differs" not in french and "no accession number" not in french

    english = _inbox_page(client, staff, "en")
    assert (
        f"patient identity differs from request {submitted.reference}: the family name in the images differs "
        "from the request; the birth date in the images differs from the request"
    ) in english
    assert "no accession number" in english and "numéro d'accession" not in english


@pytest.mark.dicom_peer
@pytest.mark.django_db(transaction=True)
def test_images_for_a_closed_request_say_so_in_french(listener, submitted, staff, client, tmp_path):
    from protonpath.referrals import services as referral_services

    referral_services.cancel(actor=staff, treatment_request=submitted, reason="Treated elsewhere.")
    paths = write_ct_series(tmp_path / "ct", 1, patient_name=PATIENT_NAME, birth_date=PATIENT_BIRTH)
    stamp(paths, AccessionNumber=submitted.accession_number)
    _storescu(listener, paths)

    study = Study.objects.get()
    assert (study.inbox_reason_code, study.inbox_reason_params) == ("request_closed", {"reference": submitted.reference})
    assert f"la demande {submitted.reference} est close" in _inbox_page(client, staff, "fr")
    assert f"request {submitted.reference} is closed" in _inbox_page(client, staff, "en")


def test_every_reason_route_gives_has_a_sentence_translated_into_french():
    source = Path(ingest.__file__).read_text()
    codes = set(re.findall(r'InboxReason\(\s*"([a-z_]+)"', source))
    assert codes == {key.split("/")[0] for key in messages.INBOX_REASONS}
    assert_every_sentence_reads_differently_in_french(messages.INBOX_REASONS)


def test_the_english_rendering_is_the_stored_text():
    from protonpath.imaging import checks

    mismatch = checks.Finding("name_mismatch", "blocking", "the given name in the images differs from the request",
                              params={"part": "given"})
    reasons = [
        ingest.InboxReason("no_accession_number", "no accession number"),
        ingest.InboxReason("request_closed", "request PP-2026-00001 is closed", {"reference": "PP-2026-00001"}),
        ingest.identity_differs("PP-2026-00001", [mismatch]),
        ingest.identity_differs("PP-2026-00001", []),
    ]
    with translation.override("en"):
        for reason in reasons:
            assert messages.inbox_reason_message(reason.code, reason.params, "fallback") == reason.message
    with translation.override("fr"):
        assert messages.inbox_reason_message(reasons[2].code, reasons[2].params) == (
            "l'identité du patient diffère de celle de la demande PP-2026-00001\u00a0: "
            "le prénom dans les images diffère de celui de la demande"
        )


def test_reasons_without_a_known_code_keep_their_stored_text():
    with translation.override("fr"):
        assert messages.inbox_reason_message("", {}, "sent by a test") == "sent by a test"
        assert messages.inbox_reason_message("newer_reason", {}, "a newer reason") == "a newer reason"
        assert messages.inbox_reason_message("request_closed", {}, "request X is closed") == "request X is closed"


@pytest.mark.django_db
def test_the_migration_codes_the_reasons_stored_before_it():
    migration = importlib.import_module("protonpath.imaging.migrations.0002_inbox_reason_code")
    texts = ["no accession number", "unknown accession number", "request PP-2026-00007 is closed",
             "patient identity differs from request PP-2026-00007", "something else"]
    for number, text in enumerate(texts):
        Study.objects.create(study_instance_uid=f"1.2.3.{number}", inbox_reason=text)

    migration.code_old_reasons(apps, None)

    coded = {s.inbox_reason: (s.inbox_reason_code, s.inbox_reason_params) for s in Study.objects.all()}
    assert coded == {
        "no accession number": ("no_accession_number", {}),
        "unknown accession number": ("unknown_accession_number", {}),
        "request PP-2026-00007 is closed": ("request_closed", {"reference": "PP-2026-00007"}),
        "patient identity differs from request PP-2026-00007": ("identity_differs", {"reference": "PP-2026-00007"}),
        "something else": ("", {}),
    }
    with translation.override("fr"):
        shown = {s.inbox_reason: s.reason_display for s in Study.objects.all()}
    assert shown["patient identity differs from request PP-2026-00007"] == (
        "l'identité du patient diffère de celle de la demande PP-2026-00007"
    )
    assert shown["something else"] == "something else"
