"""JSON API: the images received for a request and their check verdict (same rules as the pages)."""

from __future__ import annotations

from django.utils.translation import gettext as _
from ninja import File, Router, Schema
from ninja.files import UploadedFile

from protonpath.imaging import selectors, services
from protonpath.imaging.files import UploadRefused
from protonpath.referrals.selectors import get_request_for

router = Router(tags=["imaging"])


class SeriesOut(Schema):
    id: int
    modality: str
    description: str
    instance_count: int


class StudyOut(Schema):
    id: int
    study_date: str | None
    description: str
    modalities: list[str]
    series: list[SeriesOut]


class FindingOut(Schema):
    code: str
    severity: str
    message: str  # in the request's language (Accept-Language)
    params: dict[str, str | int | float] = {}


class ImagesOut(Schema):
    studies: list[StudyOut]
    fit_for_planning: bool | None
    reasons: list[str] | None
    findings: list[FindingOut] | None


@router.get("/requests/{pk}/images", response=ImagesOut)
def request_images(request, pk: int):
    """Studies and series received for a request; the verdict for staff and referring doctors
    (findings in full for staff only)."""
    treatment_request = get_request_for(request.auth, pk)
    studies = [
        {
            "id": s.pk,
            "study_date": s.study_date.isoformat() if s.study_date else None,
            "description": s.description,
            "modalities": s.modality_list,
            "series": [
                {"id": x.pk, "modality": x.modality, "description": x.description, "instance_count": x.instance_count}
                for x in s.series.all()
            ],
        }
        for s in selectors.studies_of(treatment_request)
    ]
    report = selectors.check_report_of(treatment_request)
    user = request.auth
    show = report is not None and selectors.may_see_check_details(user)
    return {
        "studies": studies,
        "fit_for_planning": report.fit_for_planning if show else None,
        "reasons": [f["message"] for f in report.blocking] if show else None,
        "findings": report.localised_findings() if show and user.is_department_staff else None,
    }


class UploadOut(Schema):
    stored: int
    duplicates: int
    ignored: int
    studies: int


class UploadErrorOut(Schema):
    detail: str
    problems: list[str]


@router.post("/requests/{pk}/images", response={201: UploadOut, 400: UploadErrorOut, 403: dict, 404: dict})
def upload_images(request, pk: int, files: File[list[UploadedFile]]):
    """Send DICOM files or zips of a study (the API's one way in for images: documents take none).

    The same checks as the page's upload (paths in zips, expansion ratio, DICOM structure); the
    upload is accepted whole or refused whole, with one problem per offending file.
    """
    treatment_request = get_request_for(request.auth, pk, audit_view=False)
    try:
        summary = services.upload_study(actor=request.auth, treatment_request=treatment_request, files=files)
    except UploadRefused as refused:
        return 400, {"detail": _("The upload was refused; nothing was kept."), "problems": [str(p) for p in refused.problems[:50]]}
    return 201, {"stored": summary.stored, "duplicates": summary.duplicates, "ignored": summary.ignored, "studies": summary.studies}
