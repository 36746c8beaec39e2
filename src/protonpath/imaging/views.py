"""Pages and endpoints for images: upload, viewer, contours, inbox, de-identified export. Thin:
selectors decide what a user may see (404 otherwise), services do the work, all is audited."""

from __future__ import annotations

import numpy as np
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
from protonpath.imaging import render as rendering
from protonpath.imaging import selectors, services
from protonpath.imaging.checks import InstanceHeader
from protonpath.imaging.files import UploadRefused
from protonpath.imaging.forms import MatchForm, WindowForm
from protonpath.imaging.messages import DETAILS_SEPARATOR, localised
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
    warning = ""
    if summary is not None:
        notice = _("Images received: %(stored)d new instance(s), %(dup)d duplicate(s) skipped.") % {
            "stored": summary.stored, "dup": summary.duplicates,
        }
        warning = identity_warning(summary.identity_findings)
    if request.htmx:
        panel = request_panels(request, treatment_request)[0]
        panel["context"].update(
            {"upload_errors": errors, "upload_notice": "" if errors else notice, "upload_warning": warning}
        )
        return render(
            request, "imaging/_panel.html", {"panel": panel["context"], "r": treatment_request}, status=400 if errors else 200
        )
    if errors:
        messages.error(request, _("The upload was refused; nothing was kept.") + " " + "; ".join(errors[:10]))
    else:
        messages.success(request, notice)
        if warning:
            messages.warning(request, warning)
    return redirect("referrals:detail", pk=pk)


def identity_warning(findings) -> str:
    """The warning for an upload whose images may be another patient's ("" when none)."""
    if not findings:
        return ""
    reasons = [localised(f)["message"] for f in findings]
    return _(
        "Check these images: the patient in them may not be the patient of this request (%(reasons)s). "
        "They are kept, but cannot be used for planning until staff have checked them."
    ) % {"reasons": str(DETAILS_SEPARATOR).join(reasons)}


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
        {
            "series": series,
            "study": series.study,
            "r": series.study.treatment_request,
            "presets": rendering.load_window_presets(series.modality),
        },
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
            "presets": {
                name: {"center": w.center, "width": w.width}
                for name, w in rendering.load_window_presets(series.modality).items()
            },
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
    """One slice as a PNG, under the window of the query (``center``, ``width``) or the file's."""
    instance = selectors.get_instance_for(request.user, pk)
    form = WindowForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest(_("Invalid window."))
    center, width = form.cleaned_data["center"], form.cleaned_data["width"]
    window = rendering.Window(center, width) if center is not None and width is not None else None
    with instance.file.open("rb") as f:
        ds = pydicom.dcmread(f)
    if "PixelData" not in ds or int(ds.get("NumberOfFrames", 1) or 1) > 1:
        return HttpResponseBadRequest(_("This instance is not a single image slice."))
    try:
        png = rendering.encode_png(rendering.render_slice(ds, window))
    except Exception:  # a compression whose decoder is not installed, odd photometrics...
        return HttpResponseBadRequest(_("This slice cannot be shown."))
    audit.record(actor=request.user, action=AuditEvent.Action.VIEW, obj=instance.series.study, summary=f"slice image {instance.pk}")
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, max-age=600"
    return response


def _contours_by_slice(rtstruct, slices, structures: dict) -> dict[str, list[dict]]:
    """Polygons per slice (instance pk) of one structure set, grouped by ROI.

    Contours that name their image (ContourImageSequence) are projected on that image only;
    the others are left to :func:`render.slice_contours`, which finds the slices they lie on.
    Each contour's points are read once (reading them once per slice is slow on large sets).
    """
    geometry = {}
    for instance in slices:
        header = InstanceHeader.from_dict(instance.header)
        if header.image_position_mm and header.image_orientation and header.pixel_spacing_mm:
            geometry[instance.sop_instance_uid] = (instance, header)
    drawn: dict[str, dict[int, dict]] = {}

    def add(instance, number, points_px):
        entry = drawn.setdefault(str(instance.pk), {}).setdefault(number, {**structures[number], "polygons": []})
        entry["polygons"].append(np.round(points_px, 2).tolist())

    loose = []
    for roi in rtstruct.get("ROIContourSequence", []):
        number = int(roi.ReferencedROINumber)
        for contour in roi.get("ContourSequence", []):
            references = [str(i.ReferencedSOPInstanceUID) for i in contour.get("ContourImageSequence", [])]
            if not references:
                loose.append((roi, contour))
                continue
            targets = [geometry[uid] for uid in references if uid in geometry]
            if not targets or not contour.get("ContourData"):
                continue
            points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
            for instance, header in targets:
                add(instance, number, rendering.patient_to_pixel(points, header))
    if loose:
        subset = pydicom.Dataset()
        subset.StructureSetROISequence = rtstruct.get("StructureSetROISequence", [])
        items = []
        for roi, contour in loose:
            item = pydicom.Dataset()
            item.ReferencedROINumber = roi.ReferencedROINumber
            item.ROIDisplayColor = roi.get("ROIDisplayColor", list(rendering.DEFAULT_COLOR))
            item.ContourSequence = [contour]
            items.append(item)
        subset.ROIContourSequence = items
        for instance, header in geometry.values():
            for contour in rendering.slice_contours(subset, header):
                add(instance, contour.roi_number, contour.points_px)
    return {pk: list(by_roi.values()) for pk, by_roi in drawn.items()}


@login_required
@require_GET
def series_contours(request, pk: int):
    """RTSTRUCT contours in the pixel coordinates of each slice of the series."""
    series = selectors.get_series_for(request.user, pk)
    slices = selectors.slices_of(series)
    sets = selectors.structure_sets_for(series)
    structures: list[dict] = []
    by_slice: dict[str, list[dict]] = {}
    for instance in sets:
        with instance.file.open("rb") as f:
            rtstruct = pydicom.dcmread(f)
        names = {int(r.ROINumber): str(r.get("ROIName", "")) for r in rtstruct.get("StructureSetROISequence", [])}
        described = {}
        for roi in rtstruct.get("ROIContourSequence", []):
            number = int(roi.ReferencedROINumber)
            colour = [int(c) for c in roi.get("ROIDisplayColor", rendering.DEFAULT_COLOR)][:3]
            described[number] = {"number": number, "name": names.get(number, str(number)), "colour": colour}
        structures.extend(described.values())
        for slice_pk, drawn in _contours_by_slice(rtstruct, slices, described).items():
            by_slice.setdefault(slice_pk, []).extend(drawn)
    audit.record(actor=request.user, action=AuditEvent.Action.VIEW, obj=series.study, summary=f"contours, series {series.pk}")
    return JsonResponse(
        {"series": series.pk, "structure_sets": len(sets), "structures": structures, "slices": by_slice}
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
