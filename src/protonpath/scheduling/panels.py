"""The 'Appointments' section of a request's page: calendar, booking, course, earliest start."""

from __future__ import annotations

from protonpath.referrals.models import State
from protonpath.scheduling import selectors, services
from protonpath.scheduling.categories import default_category
from protonpath.scheduling.forms import CourseForm
from protonpath.scheduling.models import ConsultationKind, ConsultationStatus, SessionStatus

#: States in which staff see the gantry's 'earliest possible start' for a request.
EARLIEST_START_STATES = frozenset(
    {
        State.IN_REVIEW,
        State.ACCEPTED,
        State.QUOTE_SENT,
        State.QUOTE_ACCEPTED,
        State.PAID,
        State.CONSULTATION_BOOKED,
        State.PLANNING,
    }
)


def request_panels(request, treatment_request) -> list[dict]:
    user = request.user
    if not user.is_authenticated or not selectors.may_see_consultations(user, treatment_request):
        return []
    r = treatment_request
    entries = selectors.patient_calendar(r, for_user=user)
    for entry in entries:
        if entry.kind == "consultation" and entry.status == ConsultationStatus.BOOKED:
            entry.obj.can_cancel = services.may_cancel_consultation(user, entry.obj)
            entry.obj.can_move = services.may_manage_consultation(user, entry.obj)
    has_first = r.consultations.filter(
        kind=ConsultationKind.FIRST, status=ConsultationStatus.BOOKED
    ).exists()
    context = {
        "entries": entries,
        "can_book_first": user.role in services.FIRST_CONSULTATION_BOOKERS
        and not has_first
        and services._may_book_first(r)
        and (not r.is_international or services.has_passed_through_paid(r)),
        "can_book_follow_up": user.role in services.CONSULTATION_MANAGERS
        and r.is_open
        and r.consultations.exists(),
        "is_staff": user.is_department_staff,
    }
    if user.is_department_staff:
        course = selectors.course_of(r)
        context["course"] = course
        context["can_plan"] = (
            user.role in services.COURSE_PLANNERS and r.state in services.COURSE_STATES
        )
        if course is not None:
            active = course.sessions.filter(
                status__in=[SessionStatus.PLANNED, SessionStatus.ANNOUNCED, SessionStatus.DONE]
            )
            context["course_scheduled"] = active.exists()
            context["planned_count"] = active.filter(status=SessionStatus.PLANNED).count()
        elif context["can_plan"]:
            context["course_form"] = CourseForm(
                initial={
                    "fractions": r.proposed_fractions,
                    "category": default_category(r),
                }
            )
        if r.state in EARLIEST_START_STATES and not context.get("course_scheduled"):
            context["earliest"] = selectors.earliest_start(r)
    return [{"template": "scheduling/_panel.html", "context": context}]
