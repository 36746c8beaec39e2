"""Pages for patients from abroad. Thin: forms in, services and selectors do the work.

Whoever may not see a request gets 404 for its quotes, letters and travellers (never a hint
that they exist); staff-only pages answer 403 to the owner, who knows the request.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent
from protonpath.international import issuing, pdf, selectors, services
from protonpath.international.formatting import short_language
from protonpath.international.forms import (
    CompanionForm,
    DeclaredStayForm,
    DepartmentDetailsForm,
    PatientPassportForm,
    PaymentForm,
    QuoteBuildForm,
    RefuseForm,
    TariffForm,
    TravelPlanForm,
)
from protonpath.international.models import DeclaredStay, IssuedLetter, Tariff
from protonpath.referrals import selectors as referral_selectors


def _errors(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _request_for(user, pk: int, *, audit_view: bool = False):
    """The request if ``user`` sees it and may see its quotes (owner or department staff), else 404."""
    r = referral_selectors.get_request_for(user, pk, audit_view=audit_view)
    if not r.is_international or not selectors.may_see_quotes(user, r):
        raise Http404(_("No such request."))
    return r


def _require_manager(user) -> None:
    if not selectors.may_manage(user):
        raise PermissionDenied


def _pdf_response(data: bytes, filename: str) -> HttpResponse:
    response = HttpResponse(data, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


# Quotes ---------------------------------------------------------------------------------------


@login_required
def quote_new(request, pk: int):
    r = _request_for(request.user, pk)
    _require_manager(request.user)
    try:
        tariff, rows = services.tariff_in_force(timezone.localdate())
    except ValidationError as exc:
        messages.error(request, _errors(exc))
        return redirect("international:tariffs")
    labels = {code: row.label_en if request.LANGUAGE_CODE != "fr" else row.label_fr for code, row in rows.items()}
    fractions = r.proposed_fractions or 1
    initial = {
        "consultations": services.default_consultations(fractions),
        "anaesthesia": r.patient.is_child,
        "first_consultation_on": selectors.planned_first_consultation(r),
        "companions": r.companions.count(),
        **{code: services.DEFAULT_IMAGING.get(code, 0) for code in tariff.imaging_codes},
    }
    form = QuoteBuildForm(request.POST or None, initial=initial, imaging_codes=tariff.imaging_codes, imaging_labels=labels)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            quote = services.build_quote(
                actor=request.user,
                treatment_request=r,
                consultations=data["consultations"],
                imaging=form.imaging(),
                anaesthesia=data["anaesthesia"],
                first_consultation_on=data["first_consultation_on"],
                companions=data["companions"],
                return_journey_per_person_eur=data["return_journey_per_person_eur"],
            )
        except (ValidationError, PermissionDenied) as exc:
            messages.error(request, _errors(exc) if isinstance(exc, ValidationError) else _("You may not do this."))
        else:
            messages.success(request, _("Draft quote %(number)s built: check it, then send it.") % {"number": quote.number})
            return redirect("international:quote", pk=quote.pk)
    audit.record(actor=request.user, action=AuditEvent.Action.VIEW, obj=r, summary="quote builder")
    return render(request, "international/quote_new.html", {"r": r, "form": form, "tariff": tariff})


@login_required
def quote_detail(request, pk: int):
    quote = selectors.get_quote_for(request.user, pk)
    r = quote.treatment_request
    is_owner = referral_selectors.is_owner(request.user, r)
    context = {
        "quote": quote,
        "r": r,
        "lines": quote.lines.all(),
        "cost_lines": quote.cost_lines.all(),
        "is_owner": is_owner,
        "can_manage": selectors.may_manage(request.user),
        "can_answer": is_owner and quote.status == "sent" and r.state == "quote_sent",
        "refuse_form": RefuseForm(),
        "balance": selectors.quote_balance(quote) if quote.status == "accepted" else None,
        "payments": selectors.payments_of(quote) if quote.status == "accepted" else [],
        "pay": (
            selectors.payment_instructions(quote, short_language(request.LANGUAGE_CODE))
            if quote.status == "accepted"
            else None
        ),
    }
    return render(request, "international/quote_detail.html", context)


def _quote_action(request, pk: int, operation, success: str):
    quote = selectors.get_quote_for(request.user, pk, audit_view=False)
    try:
        operation(quote)
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    except PermissionDenied as exc:
        messages.error(request, str(exc) or _("You may not do this."))
    else:
        messages.success(request, success)
    return redirect("international:quote", pk=quote.pk)


@login_required
@require_POST
def quote_send(request, pk: int):
    return _quote_action(
        request, pk, lambda q: services.send_quote(actor=request.user, quote=q), _("Quote sent to the patient.")
    )


@login_required
@require_POST
def quote_accept(request, pk: int):
    return _quote_action(
        request,
        pk,
        lambda q: services.accept_quote(actor=request.user, quote=q),
        _("Thank you: you have accepted the quote. How to pay it is shown below; we book your first consultation once it is paid in full."),
    )


@login_required
@require_POST
def quote_refuse(request, pk: int):
    form = RefuseForm(request.POST)
    reason = form.data.get("reason", "")
    return _quote_action(
        request,
        pk,
        lambda q: services.refuse_quote(actor=request.user, quote=q, reason=reason),
        _("You have refused the quote. The department will contact you."),
    )


@login_required
def quote_pdf(request, pk: int):
    quote = selectors.get_quote_for(request.user, pk, audit_view=False)
    language = pdf.choose_language(request.GET.get("lang"), request.user)
    data = pdf.quote_pdf(quote, language=language)
    audit.record(actor=request.user, action=AuditEvent.Action.DOWNLOAD, obj=quote, summary=f"quote pdf {language}")
    return _pdf_response(data, pdf.pdf_filename("quote", quote.number, language))


# Payments -------------------------------------------------------------------------------------


@login_required
def payments(request, pk: int):
    quote = selectors.get_quote_for(request.user, pk, audit_view=False)
    _require_manager(request.user)
    form = PaymentForm(request.POST or None, initial={"paid_on": timezone.localdate()})
    warnings: list[str] = []
    if request.method == "POST" and form.is_valid():
        try:
            services.record_payment(
                actor=request.user, quote=quote, confirmed=request.POST.get("confirm") == "1", **form.cleaned_data
            )
        except services.PaymentNeedsConfirmation as held:
            warnings = held.messages
        except ValidationError as exc:
            messages.error(request, _errors(exc))
        else:
            messages.success(request, _("Recorded."))
            r = quote.treatment_request
            r.refresh_from_db()
            if selectors.quote_balance(quote).paid_in_full and r.state == "quote_accepted":
                messages.success(request, _("The quote is now paid in full: record the payment in full below to book the first consultation."))
            return redirect("international:payments", pk=quote.pk)
    audit.record(actor=request.user, action=AuditEvent.Action.VIEW, obj=quote, summary="payments")
    r = quote.treatment_request
    balance = selectors.quote_balance(quote)
    context = {
        "quote": quote,
        "r": r,
        "form": form,
        "warnings": warnings,
        "payments": selectors.payments_of(quote),
        "balance": balance,
        "can_record_full_payment": r.state == "quote_accepted" and balance.paid_in_full,
    }
    status = 400 if request.method == "POST" else 200
    return render(request, "international/payments.html", context, status=status)


@login_required
@require_POST
def full_payment(request, pk: int):
    r = _request_for(request.user, pk)
    try:
        services.record_full_payment(actor=request.user, treatment_request=r)
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    else:
        messages.success(request, _("Payment in full recorded: the first consultation can be booked."))
    return redirect("referrals:detail", pk=r.pk)


# Travellers, travel plan, letters ----------------------------------------------------------------


@login_required
def travellers(request, pk: int):
    r = _request_for(request.user, pk)
    companions = list(r.companions.all())
    companion_form = CompanionForm(prefix="companion")
    stay_form = DeclaredStayForm(prefix="stay", companions=companions)
    passport_form = PatientPassportForm(prefix="patient", initial={"passport_number": r.patient.passport_number})
    plan = getattr(r, "travel_plan", None)
    plan_form = TravelPlanForm(
        prefix="plan",
        initial={
            "first_consultation_on": selectors.planned_first_consultation(r),
            "medical_emergency": bool(plan and plan.medical_emergency),
        },
    )
    status = 200
    if request.method == "POST":
        try:
            if "companion-first_name" in request.POST:
                companion_form = CompanionForm(request.POST, prefix="companion")
                if companion_form.is_valid():
                    services.add_companion(actor=request.user, treatment_request=r, data=companion_form.cleaned_data)
                    messages.success(request, _("Accompanying person added."))
                    return redirect("international:travellers", pk=r.pk)
            elif "patient-passport_number" in request.POST:
                passport_form = PatientPassportForm(request.POST, prefix="patient")
                if passport_form.is_valid():
                    services.set_patient_passport(
                        actor=request.user, treatment_request=r, passport_number=passport_form.cleaned_data["passport_number"]
                    )
                    messages.success(request, _("Changes saved."))
                    return redirect("international:travellers", pk=r.pk)
            elif "stay-entry_on" in request.POST:
                stay_form = DeclaredStayForm(request.POST, prefix="stay", companions=companions)
                if stay_form.is_valid():
                    data = stay_form.cleaned_data
                    companion = next((c for c in companions if str(c.pk) == data["traveller"]), None)
                    services.add_declared_stay(
                        actor=request.user, treatment_request=r, entry_on=data["entry_on"], exit_on=data["exit_on"], companion=companion
                    )
                    messages.success(request, _("Earlier stay added."))
                    return redirect("international:travellers", pk=r.pk)
            elif "plan-first_consultation_on" in request.POST:
                plan_form = TravelPlanForm(request.POST, prefix="plan")
                if plan_form.is_valid():
                    services.set_travel_plan(actor=request.user, treatment_request=r, **plan_form.cleaned_data)
                    messages.success(request, _("Changes saved."))
                    return redirect("international:travellers", pk=r.pk)
        except ValidationError as exc:
            messages.error(request, _errors(exc))
        status = 400
    audit.record(actor=request.user, action=AuditEvent.Action.VIEW, obj=r, summary="travellers")
    context = {
        "r": r,
        "companions": companions,
        "stays": r.declared_stays.select_related("companion"),
        "companion_form": companion_form,
        "passport_form": passport_form,
        "stay_form": stay_form,
        "plan_form": plan_form,
        "can_edit": services._may_edit_travellers(request.user, r),
        "can_manage": selectors.may_manage(request.user),
        "assessment": selectors.visa_assessment(r),
    }
    return render(request, "international/travellers.html", context, status=status)


@login_required
@require_POST
def companion_delete(request, pk: int):
    companion = selectors.get_companion_for(request.user, pk)
    services.remove_companion(actor=request.user, companion=companion)
    messages.success(request, _("Removed."))
    return redirect("international:travellers", pk=companion.treatment_request_id)


@login_required
@require_POST
def stay_delete(request, pk: int):
    try:
        stay = DeclaredStay.objects.select_related("treatment_request").get(
            pk=pk, treatment_request__in=referral_selectors.visible_requests(request.user)
        )
    except DeclaredStay.DoesNotExist:
        raise Http404 from None
    _request_for(request.user, stay.treatment_request_id)
    services.remove_declared_stay(actor=request.user, stay=stay)
    messages.success(request, _("Removed."))
    return redirect("international:travellers", pk=stay.treatment_request_id)


def _letter_response(row) -> HttpResponse:
    reference = row.treatment_request.reference if row.traveller == "patient" else f"{row.treatment_request.reference}-{row.traveller}"
    kind = "attestation" if row.traveller == "patient" else "letter"
    filename = f"{kind}-{reference}-v{row.version}-{row.language}-{timezone.localtime(row.issued_at).date().isoformat()}.pdf"
    return _pdf_response(bytes(row.pdf), filename)


@login_required
def attestation(request, pk: int):
    r = _request_for(request.user, pk)
    language = pdf.choose_language(request.GET.get("lang"), request.user)
    try:
        row = issuing.issue_letter(actor=request.user, treatment_request=r, language=language)
    except ValidationError as exc:
        messages.error(request, _errors(exc))
        return redirect("referrals:detail", pk=r.pk)
    audit.record(actor=request.user, action=AuditEvent.Action.DOWNLOAD, obj=r, summary=f"consulate attestation v{row.version} {language}")
    return _letter_response(row)


@login_required
def companion_letter(request, pk: int):
    companion = selectors.get_companion_for(request.user, pk)
    language = pdf.choose_language(request.GET.get("lang"), request.user)
    try:
        row = issuing.issue_letter(
            actor=request.user, treatment_request=companion.treatment_request, companion=companion, language=language
        )
    except ValidationError as exc:
        messages.error(request, _errors(exc))
        return redirect("international:travellers", pk=companion.treatment_request_id)
    audit.record(actor=request.user, action=AuditEvent.Action.DOWNLOAD, obj=companion, summary=f"consulate letter v{row.version} {language}")
    return _letter_response(row)


@login_required
def issued_letter(request, pk: int):
    """An earlier (or the current) version of a letter, as it was issued."""
    row = IssuedLetter.objects.select_related("treatment_request").filter(pk=pk).first()
    if row is None:
        audit.record(actor=request.user, action=AuditEvent.Action.DENIED, object_type="international.issuedletter", object_id=str(pk))
        raise Http404(_("No such letter."))
    try:
        _request_for(request.user, row.treatment_request_id)
    except Http404:
        audit.record(actor=request.user, action=AuditEvent.Action.DENIED, obj=row)
        raise
    audit.record(
        actor=request.user, action=AuditEvent.Action.DOWNLOAD, obj=row, treatment_request_id=row.treatment_request_id,
        summary=f"consulate letter {row.traveller} v{row.version} {row.language}",
    )
    return _letter_response(row)


# Tariffs --------------------------------------------------------------------------------------


@login_required
def tariffs(request):
    if not request.user.is_department_staff:
        raise PermissionDenied
    form = TariffForm(request.POST or None, initial={"valid_from": timezone.localdate()})
    status = 200
    if request.method == "POST":
        _require_manager(request.user)
        if form.is_valid():
            try:
                services.add_tariff_price(actor=request.user, **form.cleaned_data)
            except ValidationError as exc:
                messages.error(request, _errors(exc))
            else:
                messages.success(request, _("New price recorded: it applies to quotes built from its date."))
                return redirect("international:tariffs")
        status = 400
    audit.record(actor=request.user, action=AuditEvent.Action.VIEW, object_type="international.tariff", summary="list")
    rows = Tariff.objects.all()
    today = timezone.localdate()
    in_force = {}
    for row in rows:
        if row.valid_from <= today and row.code not in in_force:
            in_force[row.code] = row.pk
    context = {"rows": rows, "in_force": set(in_force.values()), "form": form, "can_manage": selectors.may_manage(request.user)}
    return render(request, "international/tariffs.html", context, status=status)


# The department's details ------------------------------------------------------------------------


@login_required
def department_details(request):
    """Contact details, the letters' signatory and the bank details (administrative staff, head)."""
    if not selectors.may_manage(request.user):
        audit.record(actor=request.user, action=AuditEvent.Action.DENIED, object_type="international.departmentdetails")
        raise PermissionDenied
    details = selectors.department_details()
    form = DepartmentDetailsForm(request.POST or None, instance=details)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.save_department_details(actor=request.user, data=form.cleaned_data)
            except ValidationError as exc:
                messages.error(request, _errors(exc))
            else:
                messages.success(request, _("Changes saved."))
                return redirect("international:department_details")
        status = 400
    audit.record(actor=request.user, action=AuditEvent.Action.VIEW, object_type="international.departmentdetails")
    return render(request, "international/department_details.html", {"form": form}, status=status)
