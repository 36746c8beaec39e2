"""Department pages: the public directory, its editing, review meetings, minutes and activity.

Thin: forms in, services and selectors do the work. Roles that may not see a page get 403.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import get_language, ngettext
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent
from protonpath.department import charts, pdf, selectors, services
from protonpath.department.forms import (
    HoursFormSet,
    ItemDecisionForm,
    MeetingForm,
    ServiceFormSet,
    TeamFormSet,
)
from protonpath.department.models import ReviewMeeting
from protonpath.referrals import selectors as referrals_selectors


def _errors(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _require(user, roles) -> None:
    if not user.is_authenticated or user.role not in roles:
        audit.record(actor=user, action=AuditEvent.Action.DENIED, object_type="department", summary="page")
        raise PermissionDenied


# The public directory -------------------------------------------------------------------------


def about(request):
    context = {
        "team": selectors.team_by_role(),
        "services": selectors.services_with_hours(),
        "indications": selectors.indications_by_population(),
        "can_edit": request.user.is_authenticated and request.user.role in services.DIRECTORY_EDITORS,
    }
    return render(request, "department/about.html", context)


@login_required
def manage(request):
    _require(request.user, services.DIRECTORY_EDITORS)
    formsets = {
        "team": TeamFormSet(prefix="team"),
        "services": ServiceFormSet(prefix="services"),
        "hours": HoursFormSet(prefix="hours"),
    }
    classes = {"team": TeamFormSet, "services": ServiceFormSet, "hours": HoursFormSet}
    status = 200
    if request.method == "POST":
        section = request.POST.get("section", "")
        if section not in classes:
            messages.error(request, _("Unknown section."))
            return redirect("department:manage")
        formset = classes[section](request.POST, prefix=section)
        formsets[section] = formset
        if formset.is_valid():
            try:
                changed = services.save_directory_formset(actor=request.user, formset=formset)
            except ValidationError as exc:
                messages.error(request, _errors(exc))
                status = 400
            else:
                messages.success(request, _("Saved (%(n)s changes).") % {"n": changed})
                return redirect("department:manage")
        else:
            messages.error(request, _("Please correct the errors below."))
            status = 400
    return render(request, "department/manage.html", {"formsets": formsets}, status=status)


# Review meetings ------------------------------------------------------------------------------


@login_required
def meeting_list(request):
    meetings = selectors.meetings_for(request.user)
    may_organise = request.user.role in services.MEETING_ORGANISERS
    form = MeetingForm(request.POST or None) if may_organise else None
    status = 200
    if request.method == "POST":
        services.require_role(request.user, services.MEETING_ORGANISERS, object_type="department.reviewmeeting")
        if form.is_valid():
            data = form.cleaned_data
            try:
                meeting = services.create_meeting(
                    actor=request.user,
                    starts_at=data["starts_at"],
                    chair=data["chair"],
                    location=data["location"],
                    attendees=data["attendees"],
                )
            except ValidationError as exc:
                messages.error(request, _errors(exc))
                status = 400
            else:
                messages.success(request, _("Meeting planned."))
                return redirect("department:meeting", pk=meeting.pk)
        else:
            status = 400
    audit.record(actor=request.user, action=AuditEvent.Action.VIEW, object_type="department.reviewmeeting", summary="list")
    context = {
        "planned": meetings.filter(status=ReviewMeeting.Status.PLANNED).order_by("starts_at"),
        "held": meetings.filter(status=ReviewMeeting.Status.HELD).order_by("-starts_at")[:50],
        "form": form,
        "ready_count": selectors.requests_ready_for_agenda().count() if may_organise else None,
    }
    return render(request, "department/meetings.html", context, status=status)


def _meeting_context(request, meeting, **extra) -> dict:
    user = request.user
    may_organise = user.role in services.MEETING_ORGANISERS
    may_decide = user.role in services.DECIDERS
    rows = []
    for item in meeting.items.all():
        r = item.treatment_request
        rows.append(
            {
                "item": item,
                "r": r,
                "age": r.patient.age_on(timezone.localdate()),
                "triage": selectors.explain(selectors.triage_request(r)),
                "form": extra.get("forms", {}).get(item.pk) or (ItemDecisionForm(prefix=f"item{item.pk}") if may_decide else None),
            }
        )
    context = {
        "meeting": meeting,
        "rows": rows,
        "attendees": list(meeting.attendees.all()),
        "may_organise": may_organise,
        "may_decide": may_decide,
        "may_mark_held": meeting.status == ReviewMeeting.Status.PLANNED
        and (may_organise or meeting.chair_id == user.pk),
        "ready": list(selectors.requests_ready_for_agenda()[:100])
        if may_organise and meeting.status == ReviewMeeting.Status.PLANNED
        else [],
        "edit_form": extra.get("edit_form")
        or (
            MeetingForm(
                initial={
                    "starts_at": timezone.localtime(meeting.starts_at),
                    "location": meeting.location,
                    "chair": meeting.chair_id,
                    "attendees": [u.pk for u in meeting.attendees.all()],
                }
            )
            if may_organise
            else None
        ),
    }
    return context


@login_required
def meeting_detail(request, pk: int):
    meeting = selectors.get_meeting_for(request.user, pk)
    audit.record(actor=request.user, action=AuditEvent.Action.VIEW, obj=meeting)
    for item in meeting.items.all():
        audit.record(
            actor=request.user,
            action=AuditEvent.Action.VIEW,
            obj=item.treatment_request,
            summary=f"agenda of meeting {meeting.pk}",
        )
    return render(request, "department/meeting.html", _meeting_context(request, meeting))


@login_required
@require_POST
def meeting_edit(request, pk: int):
    meeting = selectors.get_meeting_for(request.user, pk)
    services.require_role(request.user, services.MEETING_ORGANISERS, obj=meeting, what="update meeting")
    form = MeetingForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.update_meeting(
                actor=request.user,
                meeting=meeting,
                starts_at=data["starts_at"],
                chair=data["chair"],
                location=data["location"],
                attendees=data["attendees"],
            )
        except ValidationError as exc:
            messages.error(request, _errors(exc))
        else:
            messages.success(request, _("Meeting updated."))
            return redirect("department:meeting", pk=pk)
    meeting = selectors.get_meeting_for(request.user, pk)
    return render(request, "department/meeting.html", _meeting_context(request, meeting, edit_form=form), status=400)


def _safe_next(request, fallback: str) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return fallback


@login_required
@require_POST
def agenda_add(request):
    services.require_role(request.user, services.MEETING_ORGANISERS, object_type="department.agendaitem", what="add")
    try:
        meeting = selectors.get_meeting_for(request.user, int(request.POST.get("meeting", "")))
    except ValueError:
        messages.error(request, _("Please choose a meeting."))
        return redirect(_safe_next(request, reverse("department:meetings")))
    treatment_request = referrals_selectors.get_request_for(request.user, request.POST.get("treatment_request"), audit_view=False)
    try:
        services.add_to_agenda(actor=request.user, meeting=meeting, treatment_request=treatment_request)
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    else:
        messages.success(request, _("Request %(ref)s is on the agenda.") % {"ref": treatment_request.reference})
    return redirect(_safe_next(request, reverse("department:meeting", args=[meeting.pk])))


@login_required
@require_POST
def agenda_remove(request, item_pk: int):
    item = selectors.get_item_for(request.user, item_pk)
    try:
        services.remove_from_agenda(actor=request.user, item=item)
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    else:
        messages.success(request, _("Removed from the agenda; the file stays in review."))
    return redirect("department:meeting", pk=item.meeting_id)


@login_required
@require_POST
def agenda_decide(request, item_pk: int):
    item = selectors.get_item_for(request.user, item_pk)
    services.require_role(request.user, services.DECIDERS, obj=item, what="record decision")
    form = ItemDecisionForm(request.POST, prefix=f"item{item.pk}")
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.record_decision(
                actor=request.user,
                item=item,
                decision=data["decision"],
                note=data["note"],
                dose_gy=data["dose_gy"],
                fractions=data["fractions"],
            )
        except ValidationError as exc:
            messages.error(request, f"{item.treatment_request.reference}: {_errors(exc)}")
        else:
            messages.success(request, _("Decision recorded for %(ref)s.") % {"ref": item.treatment_request.reference})
        return redirect(reverse("department:meeting", args=[item.meeting_id]) + f"#item-{item.pk}")
    meeting = selectors.get_meeting_for(request.user, item.meeting_id)
    context = _meeting_context(request, meeting, forms={item.pk: form})
    return render(request, "department/meeting.html", context, status=400)


@login_required
@require_POST
def meeting_held(request, pk: int):
    meeting = selectors.get_meeting_for(request.user, pk)
    try:
        services.mark_held(actor=request.user, meeting=meeting)
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    else:
        messages.success(request, _("The meeting is marked as held."))
    return redirect("department:meeting", pk=pk)


@login_required
def minutes_pdf(request, pk: int):
    meeting = selectors.get_meeting_for(request.user, pk)
    # The reader's language (as on the pages), or the one asked for: ?lang=fr / ?lang=en.
    languages = {code for code, _name in settings.LANGUAGES}
    asked = request.GET.get("lang", "")
    language = asked if asked in languages else (get_language() or request.user.preferred_language or "en")[:2]
    content = pdf.render_minutes(meeting, language=language)
    audit.record(actor=request.user, action=AuditEvent.Action.DOWNLOAD, obj=meeting, summary="minutes")
    for item in meeting.items.all():
        audit.record(
            actor=request.user,
            action=AuditEvent.Action.EXPORT,
            obj=item.treatment_request,
            summary=f"minutes of meeting {meeting.pk}",
        )
    response = HttpResponse(content, content_type="application/pdf")
    day = timezone.localtime(meeting.starts_at).strftime("%Y-%m-%d")
    response["Content-Disposition"] = f'attachment; filename="review-meeting-{day}-{meeting.pk}.pdf"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


# Activity -------------------------------------------------------------------------------------


def reference_sessions_label(year: int, sessions: int) -> str:
    """The chart's reference line: the year and its session count, with plural and grouping."""
    return ngettext("%(year)s: %(n)s session", "%(year)s: %(n)s sessions", sessions) % {
        "year": year, "n": number_format(sessions, 0, force_grouping=True)}


@login_required
def activity(request):
    _require(request.user, selectors.ACTIVITY_VIEWERS)
    summary = selectors.activity_summary()
    states = [(label, n) for _value, label, n in summary["by_state"] if n]
    state_chart = charts.bar_chart(
        [str(label) for label, _n in states] or ["—"],
        [n for _label, n in states] or [0],
        title=_("Requests by state"),
        ylabel=_("requests"),
        horizontal=True,
    )
    years = summary["sessions_per_year"]
    recorded = dict(summary["recorded_sessions"] or [])
    reference_label = reference_sessions_label(summary["reference_year"], summary["reference_sessions"])
    if summary["recorded_sessions"] is None:
        labels = [str(summary["reference_year"])] + [str(year) for year, _s, _c in years]
        values = [summary["reference_sessions"]] + [s for _year, s, _c in years]
        sessions_chart = charts.bar_chart(
            labels,
            values,
            title=_("Sessions per year (estimate from prescribed fractions)"),
            ylabel=_("sessions"),
            reference=summary["reference_sessions"],
            reference_label=reference_label,
            muted=(0,),
        )
    else:
        sessions_chart = charts.grouped_bar_chart(
            [str(year) for year, _s, _c in years] or ["—"],
            [
                (_("estimate (prescribed fractions)"), [s for _year, s, _c in years] or [0]),
                (_("sessions given (recorded)"), [recorded.get(year, 0) for year, _s, _c in years] or [0]),
            ],
            title=_("Sessions per year"),
            ylabel=_("sessions"),
            reference=summary["reference_sessions"],
            reference_label=reference_label,
        )
    comparison = []
    for year, estimate, courses in years:
        # Given sessions when the year has any on record; before the records, the estimate.
        counted = recorded.get(year) or estimate
        comparison.append(
            (year, estimate, courses, recorded.get(year), round(100 * counted / summary["reference_sessions"], 1))
        )
    audit.record(actor=request.user, action=AuditEvent.Action.VIEW, object_type="department.activity", summary="activity")
    context = {
        "summary": summary,
        "state_chart": charts.data_uri(state_chart),
        "sessions_chart": charts.data_uri(sessions_chart),
        "comparison": comparison,
        "has_records": summary["recorded_sessions"] is not None,
    }
    return render(request, "department/activity.html", context)
