"""Demo data of the department: the directory (from the data file) and one review meeting."""

from __future__ import annotations

import datetime

from django.utils import timezone

from protonpath.accounts.models import Role, User
from protonpath.department import services
from protonpath.department.directory import install_directory
from protonpath.department.models import (
    AgendaItem,
    OpeningHours,
    ReviewMeeting,
    Service,
    TeamMember,
)
from protonpath.referrals.models import State, TreatmentRequest


def _next_weekday(day: datetime.date, weekday: int) -> datetime.date:
    return day + datetime.timedelta(days=(weekday - day.weekday()) % 7 or 7)


def seed(stdout) -> None:
    created = install_directory(service_model=Service, hours_model=OpeningHours, member_model=TeamMember)
    head = User.objects.filter(role=Role.HEAD).order_by("pk").first()
    admin = User.objects.filter(role=Role.ADMIN_STAFF).order_by("pk").first()
    oncologist = User.objects.filter(role=Role.ONCOLOGIST).order_by("pk").first()
    if head is not None:
        TeamMember.objects.filter(role="head", user__isnull=True).update(user=head)
    if admin is not None and not ReviewMeeting.objects.exists():
        thursday = _next_weekday(timezone.localdate(), 3)
        starts_at = timezone.make_aware(datetime.datetime.combine(thursday, datetime.time(14, 0)))
        chair = oncologist or head
        meeting = services.create_meeting(
            actor=admin,
            starts_at=starts_at,
            chair=chair,
            location="Salle de staff, CYCLHAD",
            attendees=[u for u in (head, oncologist) if u is not None],
        )
        waiting = TreatmentRequest.objects.filter(state__in=[State.IN_REVIEW, State.COMPLETE]).exclude(
            agenda_items__decision=""
        )
        for treatment_request in waiting:
            services.add_to_agenda(actor=admin, meeting=meeting, treatment_request=treatment_request)
        stdout.write(f"Department: review meeting on {thursday} with {AgendaItem.objects.filter(meeting=meeting).count()} files.")
    stdout.write(
        "Department: directory loaded ({services} services, {hours} opening periods, {team} team members created).".format(**created)
    )
