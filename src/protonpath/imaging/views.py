"""Pages and endpoints for images: upload, viewer, contours, inbox, de-identified export. Thin:
selectors decide what a user may see (404 otherwise), services do the work, all is audited."""

from __future__ import annotations

import pydicom
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from protonpath.accounts import audit
from protonpath.accounts.models import AuditEvent
from protonpath.imaging import selectors, services, viewing
from protonpath.imaging.files import UploadRefused
from protonpath.imaging.forms import MatchForm, WindowForm
from protonpath.imaging.panels import request_panels
from protonpath.referrals.models import TreatmentRequest
from protonpath.referrals.selectors import get_request_for


def _refusal_lines(refused: UploadRefused) -> list[str]:
    return [str(p) for p in refused.problems[:50]] + (
        [_("… and %(n)d more problems") % {"n": len(refused.problems) - 50}] if len(refused.problems) > 50 else []
    )


@login_required
@require_POST
def upload(request, pk: int):
    treatment_request = get_request_for(request.user, pk, audit_view=False)
    # With script, upload.js sends every file as "files" with its folder path in "paths"; without,
    # a folder's files come flattened as "folder".
    files = request.FILES.getlist("files") + request.FILES.getlist("folder")
    paths = request.POST.getlist("paths")
    errors: list[str] = []
    summary = None
    try:
        summary = services.upload_study(
            actor=request.user, treatment_request=treatment_request, files=files, relative_paths=paths or None
        )
    except UploadRefused as refused:
        errors = _refusal_lines(refused)
    except PermissionDenied as denied:
        errors = [str(denied) or _("You may not do this.")]
    if summary is not None:
        notice = _("Images received: %(stored)d new instance(s), %(dup)d duplicate(s) skipped.") % {
            "stored": summary.stored, "dup": summary.duplicates,
        }
    if request.htmx:
        panel = request_panels(request, treatment_request)[0]
        panel["context"].update({"upload_errors": errors, "upload_notice": "" if errors else notice})
        return render(
            request, "imaging/_panel.html", {"panel": panel["context"], "r": treatment_request}, status=400 if errors else 200
        )
    if errors:
        messages.error(request, _("The upload was refused; nothing was kept.") + " " + "; ".join(errors[:10]))
    else:
        messages.success(request, notice)
    return redirect("referrals:detail", pk=pk)


@login_required
@require_POST
def recheck(request, pk: int):
    treatment_request = get_request_for(request.user, pk, audit_view=False)
    if not request.user.is_department_staff:
        raise PermissionDenied
    services.refresh_check_report(treatment_request)
    audit.record(actor=request.user, action=AuditEvent.Action.UPDATE, obj=treatment_request, summary="images re-checked")
    messages.success(request, _("The images were checked again."))
    return redirect("referrals:detail", pk=pk)


# --- viewer -----------------------------------------------------------------------------------


@login_required
@require_GET
def series_viewer(request, pk: int):
    series = selectors.get_series_for(request.user, pk)
    audit.record(actor=request.user, action=AuditEvent.Action.VIEW, obj=series.study, summary=f"viewer, series {series.pk}")
    return render(
        request,
        "imaging/viewer.html",
        {"series": series, "study": series.study, "r": series.study.treatment_request, "presets": viewing.PRESETS},
    )


@login_required
@require_GET
def series_slices(request, pk: int):
    series = selectors.get_series_for(request.user, pk)
    slices = selectors.slices_of(series)
    audit.record(actor=request.user, action=AuditEvent.Action.VIEW, obj=series.study, summary=f"slice list, series {series.pk}")
    return JsonResponse(
        {
            "series": series.pk,
            "modality": series.modality,
            "description": series.description,
            "presets": {k: {"center": c, "width": w} for k, (c, w) in viewing.PRESETS.items()},
            "slices": [
                {
                    "index": index,
                    "instance": instance.pk,
                    "number": instance.instance_number,
                    "position_mm": instance.slice_position_mm,
                    "rows": instance.header.get("rows"),
                    "columns": instance.header.get("columns"),
                    "image": reverse("imaging:instance_png", args=[instance.pk]),
                }
                for index, instance in enumerate(slices)
            ],
            "contours": reverse("imaging:series_contours", args=[series.pk]),
        }
    )


@login_required
@require_GET
def instance_png(request, pk: int):
    instance = selectors.get_instance_for(request.user, pk)
    form = WindowForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest(_("Invalid window."))
    with instance.file.open("rb") as f:
        ds = pydicom.dcmread(f)
    try:
        png = viewing.slice_png(
            ds, centre=form.cleaned_data["center"], width=form.cleaned_data["width"], frame=form.cleaned_data["frame"] or 0
        )
    except ValueError as error:
        return HttpResponseBadRequest(str(error))
    audit.record(actor=request.user, action=AuditEvent.Action.VIEW, obj=instance.series.study, summary=f"slice image {instance.pk}")
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, max-age=600"
    return response


@login_required
@require_GET
def series_contours(request, pk: int):
    """RTSTRUCT contours in the pixel coordinates of each slice of the series."""
    series = selectors.get_series_for(request.user, pk)
    slices = selectors.slices_of(series)
    sets = selectors.structure_sets_for(series)
    loaded = []
    for instance in sets:
        with instance.file.open("rb") as f:
            loaded.extend(viewing.structures(pydicom.dcmread(f)))
    positions = [s.slice_position_mm for s in slices if s.slice_position_mm is not None]
    gaps = sorted(abs(b - a) for a, b in zip(positions, positions[1:], strict=False) if abs(b - a) > 1e-3)
    tolerance = (gaps[len(gaps) // 2] / 2) if gaps else 1.0
    by_slice = {}
    for instance in slices:
        header = instance.header
        if not (header.get("image_position_mm") and header.get("image_orientation") and header.get("pixel_spacing_mm")):
            continue
        geometry = viewing.SliceGeometry.from_header(
            header["image_position_mm"], header["image_orientation"], header["pixel_spacing_mm"]
        )
        drawn = viewing.contours_on_slice(loaded, instance.sop_instance_uid, geometry, tolerance)
        if drawn:
            by_slice[str(instance.pk)] = drawn
    audit.record(actor=request.user, action=AuditEvent.Action.VIEW, obj=series.study, summary=f"contours, series {series.pk}")
    return JsonResponse(
        {
            "series": series.pk,
            "structure_sets": len(sets),
            "structures": [{"number": s.number, "name": s.name, "colour": list(s.colour)} for s in loaded],
            "slices": by_slice,
        }
    )


# --- export -----------------------------------------------------------------------------------


@login_required
@require_POST
def study_export(request, pk: int):
    study = selectors.get_study_for(request.user, pk)
    data, name = services.export_deidentified(actor=request.user, study=study)
    response = HttpResponse(data, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


# --- inbox ------------------------------------------------------------------------------------


def _staff_only(user) -> None:
    if not user.is_department_staff:
        audit.record(actor=user, action=AuditEvent.Action.DENIED, object_type="imaging.study", summary="inbox")
        raise PermissionDenied


@login_required
@require_GET
def inbox(request):
    _staff_only(request.user)
    studies = list(selectors.inbox()[:500])
    audit.record(actor=request.user, action=AuditEvent.Action.VIEW, object_type="imaging.study", summary="inbox")
    return render(request, "imaging/inbox.html", {"studies": studies, "form": MatchForm()})


@login_required
@require_POST
def inbox_match(request, pk: int):
    _staff_only(request.user)
    study = selectors.get_inbox_study_for(request.user, pk)
    form = MatchForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(e for errs in form.errors.values() for e in errs))
        return redirect("imaging:inbox")
    reference = form.cleaned_data["reference"].strip().upper()
    treatment_request = TreatmentRequest.objects.filter(reference=reference).first()
    if treatment_request is None:
        messages.error(request, _("No request has the reference %(ref)s.") % {"ref": reference})
        return redirect("imaging:inbox")
    treatment_request = get_request_for(request.user, treatment_request.pk, audit_view=False)
    try:
        services.match_study(
            actor=request.user, study=study, treatment_request=treatment_request,
            confirm_no_identity=form.cleaned_data["confirm_no_identity"],
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("imaging:inbox")
    messages.success(request, _("The study is now filed under %(ref)s.") % {"ref": treatment_request.reference})
    return redirect("referrals:detail", pk=treatment_request.pk)
