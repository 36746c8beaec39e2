"""JSON API: the images received for a request and their check verdict (same rules as the pages)."""

from __future__ import annotations

from ninja import Router, Schema

from protonpath.imaging import selectors
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
