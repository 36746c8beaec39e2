"""Demo planning data (called by ``manage.py seed_demo``; idempotent, no download).

The request whose first consultation is booked gets the AAPM TG-119 C-shape phantom (from the
pyRadPlan wheel that ``scripts/setup.d/20-planning-testdata.sh`` keeps in ``.cache/wheels``)
written as a real multi-slice CT series and RT Structure Set in its name, filed in its imaging
index; planning starts, the oncologist's prescription follows the review decision, and a plan is
calculated (here, by the seeding command, the same pipeline a worker runs): it waits for the
physicist's and the oncologist's approvals.
"""

from __future__ import annotations

import datetime
import tempfile
from decimal import Decimal
from pathlib import Path

import numpy as np
from django.db import transaction
from django.utils import timezone

from protonpath.accounts.models import Role, User
from protonpath.imaging import ingest
from protonpath.imaging.files import classify_file
from protonpath.imaging.models import ReceivedVia
from protonpath.imaging.selectors import structure_sets_for
from protonpath.planning import dicom_export, dicom_io, matrad_io
from protonpath.planning.ct import CT, Grid
from protonpath.planning.structures import Structure
from protonpath.referrals import services as referral_services
from protonpath.referrals.models import TreatmentRequest
from protonpath.treatment import services
from protonpath.treatment.models import Plan

#: coarse grid and spots, few iterations (a plan in a minute); layers spaced as department plans are
DEMO_SETTINGS = {"dose_grid_mm": 6.0, "spot_spacing_mm": 8.0, "layer_spacing_mm": "auto", "max_iterations": 80}


def tg119_folder(dest: Path, treatment_request: TreatmentRequest) -> list[Path]:
    """TG-119 (every other slice: 3 mm pixels, 5 mm slices) as CT + RTSTRUCT in the patient's name."""
    wheel = matrad_io.find_pyradplan_wheel()
    if wheel is None:
        return []
    phantom = matrad_io.load_tg119(wheel)
    ct = phantom.ct
    grid = Grid(ct.hu[::2].shape, ct.grid.origin_mm, (ct.grid.spacing_mm[0], ct.grid.spacing_mm[1], ct.grid.spacing_mm[2] * 2))
    small = CT(np.ascontiguousarray(ct.hu[::2]), grid)
    structures = [Structure(s.name, s.mask[::2].copy(), s.role) for s in phantom.structures]
    p = treatment_request.patient
    ctx = dicom_export.StudyContext(patient_id=f"PP{treatment_request.pk:05d}", patient_name=f"{p.last_name}^{p.first_name}")
    slices = dicom_export.ct_series_datasets(small, ctx)
    for ds in slices:
        ds.SeriesDescription = "Planning CT (demo, AAPM TG-119 phantom)"
        ds.AccessionNumber = treatment_request.accession_number
        ds.PatientBirthDate = p.birth_date.strftime("%Y%m%d")
    rs = dicom_export.rtstruct_dataset(structures, small.grid, ctx, slices)
    rs.AccessionNumber = treatment_request.accession_number
    rs.PatientBirthDate = p.birth_date.strftime("%Y%m%d")
    rs.SeriesDescription = "Structures (TG-119)"
    return dicom_io.write_datasets(slices, dest, "CT") + dicom_io.write_datasets([rs], dest, "RTSTRUCT")


def file_images(paths: list[Path], treatment_request: TreatmentRequest) -> None:
    with transaction.atomic():
        for path in paths:
            ingest.store_instance(classify_file(path), treatment_request=treatment_request, via=ReceivedVia.DEMO)


def demo_request(users: dict) -> TreatmentRequest:
    """A new demo request, accepted and with its first consultation booked: planning starts."""
    from protonpath.referrals.management.commands import seed_demo as base
    from protonpath.scheduling.models import Consultation, ConsultationKind, ConsultationStatus

    doctor, admin, onco = users["doctor"], users["admin"], users["oncologist"]
    r = referral_services.create_request(
        actor=doctor,
        patient_data=base._patient("Claire", "Moreau", "F", datetime.date(1971, 9, 23), "FR", "FR"),
        request_data=base._request("Sarcoma", "Paraspinal, lumbar", True),
    )
    base._add_file(doctor, r)
    referral_services.submit(actor=doctor, treatment_request=r)
    referral_services.mark_complete(actor=admin, treatment_request=r)
    referral_services.send_to_review(actor=admin, treatment_request=r)
    referral_services.decide(actor=onco, treatment_request=r, decision="accept", note="Validated indication.",
                             dose_gy=Decimal("50"), fractions=25)
    referral_services.send_decision(actor=admin, treatment_request=r)
    # Planning starts once the first consultation has been held: in the demo it was held on the
    # last working day, as the department's records would show it.
    held = timezone.localdate() - datetime.timedelta(days=1)
    while held.weekday() >= 5:
        held -= datetime.timedelta(days=1)
    start = timezone.make_aware(datetime.datetime.combine(held, datetime.time(9)))
    Consultation.objects.create(
        treatment_request=r, doctor=onco, start=start, end=start + datetime.timedelta(minutes=45),
        kind=ConsultationKind.FIRST, status=ConsultationStatus.DONE, booked_by=admin,
    )
    referral_services.perform(actor=admin, treatment_request=r, action="book_consultation")
    r.refresh_from_db()
    return r


def seed(stdout) -> None:
    if Plan.objects.exists():
        return
    users = {
        "doctor": User.objects.filter(role=Role.REFERRING_DOCTOR, is_active=True).order_by("pk").first(),
        "admin": User.objects.filter(role=Role.ADMIN_STAFF, is_active=True).order_by("pk").first(),
        "oncologist": User.objects.filter(role=Role.ONCOLOGIST, is_active=True).order_by("pk").first(),
        "physicist": User.objects.filter(role=Role.PHYSICIST, is_active=True).order_by("pk").first(),
    }
    if None in users.values() or matrad_io.find_pyradplan_wheel() is None:
        stdout.write("  treatment: no demo plan (accounts or the pyRadPlan wheel in .cache/wheels missing)")
        return
    physicist, oncologist = users["physicist"], users["oncologist"]
    r = demo_request(users)
    with tempfile.TemporaryDirectory(prefix="protonpath-demo-plan-") as tmp:
        file_images(tg119_folder(Path(tmp), r), r)
    referral_services.perform(actor=oncologist, treatment_request=r, action="start_planning")
    r.refresh_from_db()
    services.prescribe(actor=oncologist, treatment_request=r, target="OuterTarget", dose_gy=r.proposed_dose_gy,
                       fractions=r.proposed_fractions, note="From the review decision (demo).")
    ct = services.planning_ct_series(r)
    rs = structure_sets_for(ct)[0]
    setup = services.initial_setup(r, ct, rs, "adult_standard")
    setup["settings"] = dict(DEMO_SETTINGS)
    plan = services.create_plan(actor=physicist, treatment_request=r, ct_series=ct, rtstruct=rs,
                                category="adult_standard", setup=setup)
    # queued for the task worker that `make demo` starts: it calculates the plan in a minute or so
    services.start_calculation(actor=physicist, plan=plan)
    stdout.write(f"  treatment: {r.reference} in planning, plan v1 queued for the worker (then awaiting approval)")
