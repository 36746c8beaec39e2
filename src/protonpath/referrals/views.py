"""Pages for requests for treatment. Thin: forms in, services and selectors do the work."""

from __future__ import annotations

import importlib

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import FileResponse, Http404, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent, Role
from protonpath.referrals import pathway, selectors, services
from protonpath.referrals.countries import country_name
from protonpath.referrals.forms import (
    DecisionForm,
    DocumentForm,
    MergeForm,
    NoteForm,
    PatientForm,
    ReusePatientForm,
    TreatmentRequestForm,
)
from protonpath.referrals.models import Patient, State

#: Steps taken in another app's section of the request page, which has an anchor named after the step.
LINKED_STEPS = frozenset({"send_to_review"})


def _errors(exc: ValidationError) -> str:
    return " ".join(exc.messages)


@login_required
def request_list(request):
    qs = selectors.visible_requests(request.user)
    state = request.GET.get("state", "")
    if state in State.values:
        qs = qs.filter(state=state)
    audit.record(actor=request.user, action=AuditEvent.Action.VIEW, object_type="referrals.treatmentrequest", summary="list")
    return render(request, "referrals/list.html", {"requests": qs[:500], "states": State.choices, "state": state})


@login_required
def queues(request):
    if not request.user.is_department_staff:
        raise PermissionDenied
    queues = selectors.work_queues(request.user)
    sections = [(key, selectors.QUEUE_LABELS[key], list(qs[:200])) for key, qs in queues.items()]
    audit.record(actor=request.user, action=AuditEvent.Action.VIEW, object_type="referrals.treatmentrequest", summary="queues")
    return render(request, "referrals/queues.html", {"sections": sections})


@login_required
def request_new(request):
    if request.user.role not in (Role.PATIENT, Role.REFERRING_DOCTOR, Role.ADMIN_STAFF):
        raise PermissionDenied
    initial_patient = {}
    initial_request = {}
    user = request.user
    existing = getattr(user, "patient_record", None) if user.role == Role.PATIENT else None
    if user.role == Role.PATIENT and user.fills_in_for_patient:
        # A parent or legal guardian fills in: the patient is not the account holder, whose
        # name goes in the guardian's part (a second child gets a blank patient part).
        initial_request = {
            "filled_by_guardian": True,
            "guardian_name": user.get_full_name(),
            "guardian_phone": user.phone,
            "guardian_email": user.email,
        }
        if existing is not None and "another" not in request.GET:
            initial_patient = {f: getattr(existing, f) for f in services.PATIENT_FIELDS}
        else:
            initial_patient = {"email": user.email, "phone": user.phone}
    elif existing is not None:
        initial_patient = {f: getattr(existing, f) for f in services.PATIENT_FIELDS}
    elif user.role == Role.PATIENT:
        initial_patient = {"first_name": user.first_name, "last_name": user.last_name, "email": user.email}
    if request.user.role == Role.REFERRING_DOCTOR:
        initial_request = {
            "addressee_name": request.user.get_full_name(),
            "addressee_institution": request.user.institution,
            "addressee_phone": request.user.phone,
            "addressee_email": request.user.email,
        }
    patient_form = PatientForm(request.POST or None, initial=initial_patient, prefix="patient")
    request_form = TreatmentRequestForm(
        request.POST or None, initial=initial_request, prefix="request", guardian_part=user.role == Role.PATIENT
    )
    reuse_form = None
    if request.method == "POST" and patient_form.is_valid() and request_form.is_valid():
        reuse_pk = None
        candidates = _reuse_candidates(request.user, patient_form.cleaned_data)
        if candidates:
            # The same person is already among this author's patients: ask before a second record.
            answered = "reuse-choice" in request.POST
            reuse_form = ReusePatientForm(request.POST if answered else None, candidates=candidates, prefix="reuse")
            if not answered or not reuse_form.is_valid():
                for pk, _label in candidates:
                    audit.record(
                        actor=request.user,
                        action=AuditEvent.Action.VIEW,
                        object_type="referrals.patient",
                        object_id=pk,
                        summary="offered for reuse",
                    )
                return render(request, "referrals/form.html", _form_context(patient_form, request_form, reuse_form))
            reuse_pk = reuse_form.reuse_pk()
        try:
            treatment_request = services.create_request(
                actor=request.user,
                patient_data=patient_form.cleaned_data,
                request_data=request_form.cleaned_data,
                reuse_patient=reuse_pk,
            )
        except ValidationError as exc:
            messages.error(request, _errors(exc))
        else:
            messages.success(request, _("Request %(ref)s created. Now add the medical file, then submit it.") % {"ref": treatment_request.reference})
            return redirect("referrals:detail", pk=treatment_request.pk)
    return render(request, "referrals/form.html", _form_context(patient_form, request_form, reuse_form))


def _form_context(patient_form, request_form, reuse_form=None) -> dict:
    return {"patient_form": patient_form, "request_form": request_form, "reuse_form": reuse_form, "editing": False}


def _reuse_candidates(user, patient_data: dict) -> list[tuple[int, str]]:
    """(id, label) of the records of this person that ``user`` already sees, with their requests."""
    if user.role == Role.PATIENT:
        return []
    patients = selectors.reusable_patients(
        user, last_name=patient_data["last_name"], first_name=patient_data["first_name"], birth_date=patient_data["birth_date"]
    )[:20]
    visible = selectors.visible_requests(user)
    candidates = []
    for patient in patients:
        references = list(visible.filter(patient=patient).order_by("created_at").values_list("reference", flat=True)[:10])
        label = _("%(name)s, born %(birth)s (requests: %(refs)s)") % {
            "name": patient,
            "birth": date_format(patient.birth_date, "SHORT_DATE_FORMAT"),
            "refs": ", ".join(references) or "—",
        }
        candidates.append((patient.pk, label))
    return candidates


@login_required
def request_edit(request, pk: int):
    treatment_request = selectors.get_request_for(request.user, pk, audit_view=False)
    patient_form = PatientForm(request.POST or None, instance=treatment_request.patient, prefix="patient")
    request_form = TreatmentRequestForm(
        request.POST or None, instance=treatment_request, prefix="request", guardian_part=request.user.role == Role.PATIENT
    )
    if request.method == "POST" and patient_form.is_valid() and request_form.is_valid():
        try:
            services.update_request(
                actor=request.user,
                treatment_request=treatment_request,
                patient_data=patient_form.cleaned_data,
                request_data=request_form.cleaned_data,
            )
        except ValidationError as exc:
            messages.error(request, _errors(exc))
        else:
            messages.success(request, _("Changes saved."))
            return redirect("referrals:detail", pk=pk)
    return render(
        request,
        "referrals/form.html",
        {"patient_form": patient_form, "request_form": request_form, "editing": True, "treatment_request": treatment_request},
    )


def _detail_context(request, treatment_request, **extra):
    user = request.user
    owner = selectors.is_owner(user, treatment_request)
    actions = pathway.available_actions(
        state=treatment_request.state, role=user.role, is_owner=owner, is_international=treatment_request.is_international
    )
    handled = [a for a in actions if a.handled_by and f"protonpath.{a.handled_by}" in settings.INSTALLED_APPS]
    actions = [a for a in actions if a not in handled]
    # A step whose facts are missing (the consultation not held yet...) is not offered: its reason is.
    not_yet = []
    for a in list(actions):
        reason = services.missing_fact(treatment_request, a.name)
        if reason:
            actions.remove(a)
            not_yet.append({"action": a, "reason": reason})
    decision_actions = [a for a in actions if a.name in ("accept", "decline", "request_information")]
    other_actions = [a for a in actions if a not in decision_actions]
    context = {
        "r": treatment_request,
        "checklist": selectors.checklist(treatment_request),
        "file_complete": selectors.is_file_complete(treatment_request),
        "documents": treatment_request.documents.select_related("uploaded_by"),
        "history": treatment_request.history.select_related("actor"),
        "actions": other_actions,
        "can_decide": bool(decision_actions),
        "decision_form": DecisionForm(),
        "document_form": DocumentForm(),
        "can_add_documents": services.may_add_documents(user, treatment_request),
        "can_edit": (owner or user.role == Role.ADMIN_STAFF) and treatment_request.state in services.EDITABLE_STATES,
        "can_send_decision": user.role in pathway.STAFF
        and treatment_request.state in pathway.DECISION_STATES
        and treatment_request.decision_sent_at is None,
        "is_owner": owner,
        "not_yet": not_yet,
        # Steps another app's section carries with the data they need (the meeting to send a
        # file to): the actions column links to that section.
        "elsewhere": [a for a in handled if a.name in LINKED_STEPS],
    }
    context["panels"] = _panels(request, treatment_request)
    context.update(extra)
    return context


def _panels(request, treatment_request) -> list[dict]:
    """Sections other apps add to a request's page (triage, images, quote, schedule...).

    An app opts in with ``protonpath.<app>.panels.request_panels(request, treatment_request)``
    returning a list of ``{"template": ..., "context": {...}}`` (already permission-checked).
    """
    panels: list[dict] = []
    for app in settings.INSTALLED_APPS:
        if not app.startswith("protonpath.") or app == "protonpath.referrals":
            continue
        try:
            module = importlib.import_module(f"{app}.panels")
        except ModuleNotFoundError as exc:
            if exc.name != f"{app}.panels":
                raise
            continue
        panels.extend(module.request_panels(request, treatment_request))
    return panels


@login_required
def request_detail(request, pk: int):
    treatment_request = selectors.get_request_for(request.user, pk)
    return render(request, "referrals/detail.html", _detail_context(request, treatment_request))


@login_required
def document_upload(request, pk: int):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    treatment_request = selectors.get_request_for(request.user, pk, audit_view=False)
    form = DocumentForm(request.POST, request.FILES)
    error = ""
    if form.is_valid():
        try:
            services.add_document(
                actor=request.user,
                treatment_request=treatment_request,
                kind=form.cleaned_data["kind"],
                file=form.cleaned_data["file"],
                description=form.cleaned_data["description"],
            )
        except ValidationError as exc:
            error = _errors(exc)
        except PermissionDenied as exc:
            error = str(exc) or _("You may not do this.")
    else:
        error = " ".join(e for errs in form.errors.values() for e in errs)
    treatment_request.refresh_from_db()
    if not error:
        if request.htmx:
            return render(request, "referrals/_medical_file.html", _detail_context(request, treatment_request))
        messages.success(request, _("Document added."))
        return redirect("referrals:detail", pk=pk)
    # Refused: the form comes back with its errors and what was chosen (the file must be chosen
    # again: browsers never pre-fill a file input). 400, which htmx swaps (see base.html's
    # htmx-config); without script, the whole page again, with the errors at the form.
    shown = form if form.errors else DocumentForm(initial={"kind": request.POST.get("kind", ""), "description": request.POST.get("description", "")})
    context = _detail_context(request, treatment_request, upload_error=error, document_form=shown)
    template = "referrals/_medical_file.html" if request.htmx else "referrals/detail.html"
    return render(request, template, context, status=400)


@login_required
def document_download(request, pk: int):
    document = selectors.get_document_for(request.user, pk)
    audit.record(actor=request.user, action=AuditEvent.Action.DOWNLOAD, obj=document)
    response = FileResponse(document.file.open("rb"), as_attachment=True, filename=document.original_name)
    response["Content-Type"] = document.content_type
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
@require_POST
def document_delete(request, pk: int):
    document = selectors.get_document_for(request.user, pk)
    request_pk = document.treatment_request_id
    try:
        services.remove_document(actor=request.user, document=document)
    except PermissionDenied as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Document removed."))
    return redirect("referrals:detail", pk=request_pk)


def _run(request, pk: int, operation) -> object:
    treatment_request = selectors.get_request_for(request.user, pk, audit_view=False)
    # No transaction around the service: each one runs in its own, and a refusal it records in
    # the audit trail must not be rolled back with the refused change.
    try:
        operation(treatment_request)
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    except PermissionDenied as exc:
        messages.error(request, str(exc) or _("You may not do this."))
    else:
        messages.success(request, _("Done."))
    return redirect("referrals:detail", pk=pk)


@login_required
@require_POST
def request_action(request, pk: int, action: str):
    form = NoteForm(request.POST)
    note = form.data.get("note", "")
    operations = {
        "submit": lambda r: services.submit(actor=request.user, treatment_request=r),
        "resubmit": lambda r: services.resubmit(actor=request.user, treatment_request=r, note=note),
        "mark_incomplete": lambda r: services.mark_incomplete(actor=request.user, treatment_request=r, missing=note),
        "mark_complete": lambda r: services.mark_complete(actor=request.user, treatment_request=r),
        "send_to_review": lambda r: services.send_to_review(actor=request.user, treatment_request=r),
        "send_decision": lambda r: services.send_decision(actor=request.user, treatment_request=r),
        "cancel": lambda r: services.cancel(actor=request.user, treatment_request=r, reason=note),
    }
    operation = operations.get(action)
    if operation is None:
        if action not in pathway.ACTIONS:
            messages.error(request, _("Unknown action."))
            return redirect("referrals:detail", pk=pk)

        def operation(r):
            return services.perform(actor=request.user, treatment_request=r, action=action, note=note)

    return _run(request, pk, operation)


@login_required
@require_POST
def request_decide(request, pk: int):
    form = DecisionForm(request.POST)
    if not form.is_valid():
        treatment_request = selectors.get_request_for(request.user, pk, audit_view=False)
        context = _detail_context(request, treatment_request, decision_form=form)
        return render(request, "referrals/detail.html", context, status=400)
    data = form.cleaned_data
    return _run(
        request,
        pk,
        lambda r: services.decide(
            actor=request.user,
            treatment_request=r,
            decision=data["decision"],
            note=data["note"],
            dose_gy=data["dose_gy"],
            fractions=data["fractions"],
        ),
    )


# Patient records: possible duplicates and merging ------------------------------------------


def _patients_access(request, roles, what: str) -> None:
    """Refuse (and record it) unless the user's role is in ``roles``; outsiders get a plain 404."""
    user = request.user
    if user.role in roles:
        return
    audit.record(actor=user, action=AuditEvent.Action.DENIED, object_type="referrals.patient", summary=what)
    if not user.is_department_staff:
        raise Http404
    raise PermissionDenied


@login_required
def patient_duplicates(request):
    _patients_access(request, selectors.DUPLICATE_VIEWERS, "duplicates")
    groups = selectors.duplicate_groups()
    audit.record(
        actor=request.user,
        action=AuditEvent.Action.VIEW,
        object_type="referrals.patient",
        summary=f"duplicates: {sum(len(g.patients) for g in groups)} records in {len(groups)} groups",
    )
    may_merge = request.user.role in selectors.PATIENT_MERGERS
    rows = []
    for group in groups:
        pairs = []
        if may_merge:
            for keep in group.patients:
                for remove in group.patients:
                    if keep.pk != remove.pk:
                        pairs.append({"keep": keep, "remove": remove, "refusal": services.merge_refusal(keep, remove)})
        rows.append({"patients": group.patients, "pairs": pairs})
    return render(request, "referrals/duplicates.html", {"groups": rows, "may_merge": may_merge})


@login_required
def patient_merge(request, keep: int, remove: int):
    _patients_access(request, selectors.PATIENT_MERGERS, "merge")
    # Two exact lookups, not pk__in: Django turns an id past the column's range into "no such
    # row" for an exact lookup, where an IN list reaches the database and fails (a 500).
    patients = {p.pk: p for p in Patient.objects.filter(Q(pk=keep) | Q(pk=remove)).select_related("user")}
    if keep == remove or len(patients) != 2:
        audit.record(actor=request.user, action=AuditEvent.Action.DENIED, object_type="referrals.patient", object_id=remove, summary="merge")
        raise Http404
    kept, removed = patients[keep], patients[remove]
    form = MergeForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            try:
                services.merge_patients(actor=request.user, keep=kept, remove=removed)
            except ValidationError as exc:
                messages.error(request, _errors(exc))
            else:
                messages.success(request, _("The two records are now one (record %(pk)s).") % {"pk": keep})
                return redirect("referrals:duplicates")
    else:
        for patient in (kept, removed):
            audit.record(actor=request.user, action=AuditEvent.Action.VIEW, obj=patient, summary="merge preview")
    sides = [{"patient": p, "requests": p.requests.order_by("created_at")} for p in (kept, removed)]
    comparison = [
        {
            "label": Patient._meta.get_field(name).verbose_name,
            "kept": _shown(kept, name),
            "removed": _shown(removed, name),
            "differs": getattr(kept, name) != getattr(removed, name),
        }
        for name in services.PATIENT_FIELDS
    ]
    context = {
        "kept": kept,
        "removed": removed,
        "sides": sides,
        "comparison": comparison,
        "refusal": services.merge_refusal(kept, removed),
        "form": form,
    }
    return render(request, "referrals/merge.html", context, status=400 if request.method == "POST" else 200)


def _shown(patient: Patient, name: str):
    """A patient's field as a reader expects it (the sex and countries by name, not code)."""
    if name == "sex":
        return patient.get_sex_display()
    if name in ("nationality", "country_of_residence"):
        return country_name(getattr(patient, name))
    return getattr(patient, name)
