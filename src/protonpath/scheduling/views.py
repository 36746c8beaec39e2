"""Pages of the scheduling app. Thin: forms in, services and selectors do the work."""

from __future__ import annotations

from datetime import date, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent, Role
from protonpath.referrals import selectors as referral_selectors
from protonpath.scheduling import ical, selectors, services, slots
from protonpath.scheduling.forms import (
    BookingForm,
    CancelForm,
    CourseForm,
    DowntimeForm,
    SlotSearchForm,
)
from protonpath.scheduling.models import ConsultationKind, GantrySession, TreatmentCourse


def _errors(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _require_staff(user) -> None:
    if not user.is_department_staff:
        audit.record(actor=user, action=AuditEvent.Action.DENIED, object_type="scheduling.agenda")
        raise PermissionDenied


def _slot_picker(request, *, treatment_request, kind, doctor_initial=None, consultation=None):
    """Free slots for the doctor and day in the query string (default: first doctor, next open day)."""
    duration = consultation.duration_min if consultation else slots.DURATION_MINUTES[kind]
    days = selectors.next_days_with_hours(timezone.localdate() + timedelta(days=1), 10)
    initial = {
        "doctor": doctor_initial or selectors.oncologists().first(),
        "day": days[0] if days else None,
    }
    form = SlotSearchForm(request.GET or None, initial=initial)
    doctor, day = initial["doctor"], initial["day"]
    if request.GET and form.is_valid():
        doctor, day = form.cleaned_data["doctor"], form.cleaned_data["day"]
    free = selectors.free_slots(doctor, day, duration) if doctor and day else []
    closed_reason = ""
    if day and not slots.periods_on(day, selectors.consultation_hours()):
        closed_reason = (
            _("The department is closed on public holidays.")
            if slots.is_public_holiday(day)
            else _("No consultations on this day.")
        )
    return {
        "r": treatment_request,
        "form": form,
        "doctor": doctor,
        "day": day,
        "days": days,
        "free": free,
        "kind": kind,
        "kind_label": ConsultationKind(kind).label,
        "duration": duration,
        "closed_reason": closed_reason,
        "consultation": consultation,
    }


@login_required
def book(request, pk: int):
    """Staff pick a free slot and book a consultation for a request."""
    treatment_request = referral_selectors.get_request_for(request.user, pk, audit_view=False)
    kind = request.POST.get("kind") or request.GET.get("kind") or ConsultationKind.FIRST
    if kind not in ConsultationKind.values:
        raise Http404
    allowed = (
        services.FIRST_CONSULTATION_BOOKERS
        if kind == ConsultationKind.FIRST
        else services.CONSULTATION_MANAGERS
    )
    if request.user.role not in allowed:
        audit.record(
            actor=request.user,
            action=AuditEvent.Action.DENIED,
            obj=treatment_request,
            summary="book consultation",
        )
        raise PermissionDenied
    if request.method == "POST":
        form = BookingForm(request.POST)
        if form.is_valid():
            try:
                services.book_consultation(
                    actor=request.user,
                    treatment_request=treatment_request,
                    doctor=form.cleaned_data["doctor"],
                    start=form.cleaned_data["start"],
                    kind=kind,
                )
            except ValidationError as exc:
                messages.error(request, _errors(exc))
            else:
                messages.success(
                    request,
                    _(
                        "Consultation booked. The patient, the referring doctor and the oncologist are told by e-mail."
                    ),
                )
                return redirect("referrals:detail", pk=pk)
        else:
            messages.error(request, _("Please choose one of the free slots."))
    context = _slot_picker(request, treatment_request=treatment_request, kind=kind)
    audit.record(
        actor=request.user,
        action=AuditEvent.Action.VIEW,
        obj=treatment_request,
        summary="consultation slots",
    )
    return render(
        request, "scheduling/book.html", context, status=400 if request.method == "POST" else 200
    )


@login_required
def reschedule(request, pk: int):
    consultation = selectors.get_consultation_for(request.user, pk)
    if not services.may_manage_consultation(request.user, consultation):
        audit.record(
            actor=request.user,
            action=AuditEvent.Action.DENIED,
            obj=consultation,
            summary="reschedule",
        )
        raise PermissionDenied
    if request.method == "POST":
        form = BookingForm(request.POST)
        if form.is_valid():
            try:
                services.reschedule_consultation(
                    actor=request.user,
                    consultation=consultation,
                    start=form.cleaned_data["start"],
                    doctor=form.cleaned_data["doctor"],
                )
            except ValidationError as exc:
                messages.error(request, _errors(exc))
            else:
                messages.success(
                    request, _("Consultation moved. Everyone concerned is told by e-mail.")
                )
                return redirect("referrals:detail", pk=consultation.treatment_request_id)
        else:
            messages.error(request, _("Please choose one of the free slots."))
    context = _slot_picker(
        request,
        treatment_request=consultation.treatment_request,
        kind=consultation.kind,
        doctor_initial=consultation.doctor,
        consultation=consultation,
    )
    audit.record(
        actor=request.user,
        action=AuditEvent.Action.VIEW,
        obj=consultation,
        summary="reschedule slots",
    )
    return render(
        request, "scheduling/book.html", context, status=400 if request.method == "POST" else 200
    )


@login_required
@require_POST
def cancel(request, pk: int):
    consultation = selectors.get_consultation_for(request.user, pk)
    form = CancelForm(request.POST)
    try:
        if not services.may_cancel_consultation(request.user, consultation):
            raise PermissionDenied
        services.cancel_consultation(
            actor=request.user, consultation=consultation, reason=form.data.get("reason", "")
        )
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    else:
        messages.success(
            request, _("Consultation cancelled. Everyone concerned is told by e-mail.")
        )
    return redirect("referrals:detail", pk=consultation.treatment_request_id)


def _ics_response(content: str, filename: str) -> HttpResponse:
    response = HttpResponse(content.encode("utf-8"), content_type="text/calendar; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
def consultation_ics(request, pk: int):
    consultation = selectors.get_consultation_for(request.user, pk)
    if not selectors.may_see_consultations(request.user, consultation.treatment_request):
        raise Http404
    audit.record(
        actor=request.user,
        action=AuditEvent.Action.EXPORT,
        obj=consultation,
        treatment_request_id=consultation.treatment_request_id,
        summary="ics",
    )
    return _ics_response(
        ical.calendar([ical.consultation_event(consultation)]),
        f"consultation-{consultation.pk}.ics",
    )


@login_required
def request_ics(request, pk: int):
    """The patient's calendar (consultations and gantry sessions) as an iCalendar file."""
    treatment_request = referral_selectors.get_request_for(request.user, pk, audit_view=False)
    if not selectors.may_see_consultations(request.user, treatment_request):
        raise Http404
    events = []
    for entry in selectors.patient_calendar(treatment_request, for_user=request.user):
        events.append(
            ical.consultation_event(entry.obj)
            if entry.kind == "consultation"
            else ical.session_event(entry.obj)
        )
    audit.record(
        actor=request.user,
        action=AuditEvent.Action.EXPORT,
        obj=treatment_request,
        summary="calendar ics",
    )
    name = _("Appointments %(ref)s") % {"ref": treatment_request.reference}
    return _ics_response(ical.calendar(events, name=name), f"{treatment_request.reference}.ics")


@login_required
def consultation_list(request):
    """Upcoming consultations: an oncologist's own by default; staff choose the doctor."""
    _require_staff(request.user)
    doctors = selectors.oncologists()
    doctor = None
    if request.GET.get("doctor") == "all":
        doctor = None
    elif request.GET.get("doctor", "").isdigit():
        doctor = doctors.filter(pk=int(request.GET["doctor"])).first()
    elif request.user.role == Role.ONCOLOGIST:
        doctor = request.user
    consultations = selectors.upcoming_consultations(doctor)
    audit.record(
        actor=request.user,
        action=AuditEvent.Action.VIEW,
        object_type="scheduling.consultation",
        summary=f"list doctor={getattr(doctor, 'pk', 'all')}",
    )
    return render(
        request,
        "scheduling/consultations.html",
        {"consultations": consultations, "doctors": doctors, "doctor": doctor},
    )


@login_required
def agenda_today(request):
    _require_staff(request.user)
    return redirect("scheduling:agenda", day=timezone.localdate())


@login_required
def agenda(request, day: date):
    """The gantry's day for staff: sessions, downtimes, and the day's consultations."""
    _require_staff(request.user)
    data = selectors.gantry_agenda(day)
    audit.record(
        actor=request.user,
        action=AuditEvent.Action.VIEW,
        object_type="scheduling.agenda",
        summary=f"agenda {day.isoformat()}",
    )
    context = {
        "agenda": data,
        "previous": day - timedelta(days=1),
        "next": day + timedelta(days=1),
        "downtime_form": DowntimeForm(),
        "can_record": request.user.role in services.SESSION_RECORDERS,
        "now": timezone.now(),
    }
    return render(request, "scheduling/agenda.html", context)


@login_required
@require_POST
def downtime(request):
    if request.user.role not in services.SESSION_RECORDERS:
        raise PermissionDenied
    form = DowntimeForm(request.POST)
    if form.is_valid():
        try:
            _dt, created = services.record_downtime(
                actor=request.user,
                start=form.cleaned_data["start"],
                end=form.cleaned_data["end"],
                reason=form.cleaned_data["reason"],
            )
        except ValidationError as exc:
            messages.error(request, _errors(exc))
        else:
            messages.success(
                request,
                _("Downtime recorded; %(n)s sessions were moved to the end of their course.")
                % {"n": len(created)},
            )
        day = timezone.localtime(form.cleaned_data["start"]).date()
    else:
        messages.error(request, " ".join(e for errs in form.errors.values() for e in errs))
        day = timezone.localdate()
    return redirect("scheduling:agenda", day=day)


@login_required
@require_POST
def record_session(request, pk: int):
    if request.user.role not in services.SESSION_RECORDERS:
        raise PermissionDenied
    try:
        session = GantrySession.objects.get(pk=pk)
    except GantrySession.DoesNotExist:
        raise Http404 from None
    try:
        services.record_session(
            actor=request.user,
            session=session,
            outcome=request.POST.get("outcome", ""),
            note=request.POST.get("note", ""),
        )
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    else:
        messages.success(request, _("Session recorded."))
    return redirect("scheduling:agenda", day=timezone.localtime(session.start).date())


@login_required
@require_POST
def course_create(request, pk: int):
    treatment_request = referral_selectors.get_request_for(request.user, pk, audit_view=False)
    if request.user.role not in services.COURSE_PLANNERS:
        raise PermissionDenied
    form = CourseForm(request.POST)
    if form.is_valid():
        try:
            services.create_course(
                actor=request.user, treatment_request=treatment_request, **form.cleaned_data
            )
        except ValidationError as exc:
            messages.error(request, _errors(exc))
        else:
            messages.success(request, _("Treatment course saved."))
    else:
        messages.error(request, " ".join(e for errs in form.errors.values() for e in errs))
    return redirect("referrals:detail", pk=pk)


def _course_for(user, pk: int) -> TreatmentCourse:
    try:
        return TreatmentCourse.objects.select_related("treatment_request").get(
            pk=pk, treatment_request__in=referral_selectors.visible_requests(user)
        )
    except TreatmentCourse.DoesNotExist:
        raise Http404 from None


@login_required
@require_POST
def course_schedule(request, pk: int):
    course = _course_for(request.user, pk)
    if request.user.role not in services.COURSE_PLANNERS:
        raise PermissionDenied
    try:
        created = services.schedule_course(
            actor=request.user, course=course, move_planned=bool(request.POST.get("move_planned"))
        )
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    else:
        messages.success(
            request,
            ngettext("%(n)s session placed on the gantry.", "%(n)s sessions placed on the gantry.", len(created))
            % {"n": len(created)},
        )
    return redirect("referrals:detail", pk=course.treatment_request_id)


@login_required
@require_POST
def course_announce(request, pk: int):
    course = _course_for(request.user, pk)
    if request.user.role not in services.COURSE_PLANNERS:
        raise PermissionDenied
    try:
        count = services.announce_course(actor=request.user, course=course)
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    else:
        messages.success(
            request,
            ngettext("%(n)s session announced to the patient.", "%(n)s sessions announced to the patient.", count)
            % {"n": count},
        )
    return redirect("referrals:detail", pk=course.treatment_request_id)
