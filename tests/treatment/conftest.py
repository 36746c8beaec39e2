"""Fixtures of the treatment tests: a request in planning with the water phantom's CT and
RTSTRUCT filed in its imaging index, and its prescription."""

from __future__ import annotations

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from protonpath.imaging import services as imaging_services
from protonpath.referrals import services as referral_services
from protonpath.scheduling import services as scheduling
from protonpath.scheduling.calendar import is_working_day
from tests.factories import advance_to, make_request
from tests.facts import hold_first_consultation
from tests.treatment.cases import write_case


def _first_open_day() -> datetime.date:
    day = timezone.localdate() + datetime.timedelta(days=1)
    while not is_working_day(day):
        day += datetime.timedelta(days=1)
    return day


def in_planning(owner, *, staff, oncologist):
    r = advance_to(make_request(owner, covered_by_french_insurance=True), "accepted", staff=staff, oncologist=oncologist)
    referral_services.send_decision(actor=staff, treatment_request=r)
    start = timezone.make_aware(datetime.datetime.combine(_first_open_day(), datetime.time(8)))
    while True:
        try:
            scheduling.book_consultation(actor=staff, treatment_request=r, doctor=oncologist, start=start)
            break
        except ValidationError:
            start += datetime.timedelta(hours=1)
    hold_first_consultation(r, oncologist)
    referral_services.perform(actor=oncologist, treatment_request=r, action="start_planning")
    r.refresh_from_db()
    return r


def file_case(treatment_request, actor, folder, ct_slices: slice | None = None, **kwargs):
    """Upload the phantom's CT and RTSTRUCT into the request's index, as a physicist would."""
    p = treatment_request.patient
    paths = write_case(folder, patient_name=f"{p.last_name}^{p.first_name}", patient_id=f"PP{treatment_request.pk}",
                       accession_number=treatment_request.accession_number, **kwargs)
    files = [SimpleUploadedFile(f.name, f.read_bytes(), content_type="application/dicom")
             for f in [*paths["CT"][ct_slices or slice(None)], *paths["RTSTRUCT"]]]
    imaging_services.upload_study(actor=actor, treatment_request=treatment_request, files=files)
    return paths


@pytest.fixture
def planning_request(doctor, staff, oncologist, physicist, tmp_path):
    r = in_planning(doctor, staff=staff, oncologist=oncologist)
    file_case(r, physicist, tmp_path / "case")
    return r
