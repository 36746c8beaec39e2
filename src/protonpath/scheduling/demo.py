"""Demo data: the first consultation and the gantry course of the demo's accepted request.

Idempotent: does nothing for a request that already has a consultation or a course.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from protonpath.accounts.models import Role, User
from protonpath.referrals.models import State, TreatmentRequest
from protonpath.scheduling import selectors, services, slots
from protonpath.scheduling.calendar import add_working_days
from protonpath.scheduling.models import Consultation, TreatmentCourse


def seed(stdout) -> None:
    admin = User.objects.filter(role=Role.ADMIN_STAFF, is_active=True).order_by("pk").first()
    doctor = selectors.oncologists().first()
    if admin is None or doctor is None:
        return
    for r in TreatmentRequest.objects.filter(state=State.CONSULTATION_BOOKED).order_by("pk"):
        if not Consultation.objects.filter(treatment_request=r).exists():
            for day in selectors.next_days_with_hours(timezone.localdate() + timedelta(days=1), 10):
                free = selectors.free_slots(doctor, day, slots.DURATION_MINUTES["first"])
                if free:
                    services.book_consultation(
                        actor=admin, treatment_request=r, doctor=doctor, start=free[0]
                    )
                    stdout.write(f"  scheduling: first consultation booked for request {r.pk}")
                    break
        if (
            not TreatmentCourse.objects.filter(treatment_request=r).exists()
            and r.proposed_fractions
        ):
            course = services.create_course(
                actor=admin,
                treatment_request=r,
                category="paediatric_awake" if r.patient.is_child else "adult_standard",
                ready_date=add_working_days(timezone.localdate(), 10),
            )
            sessions = services.schedule_course(actor=admin, course=course)
            stdout.write(
                f"  scheduling: {len(sessions)} gantry sessions planned for request {r.pk}"
            )
