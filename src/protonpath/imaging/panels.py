"""The images section of a request's page (see referrals.views._panels)."""

from __future__ import annotations

from protonpath.imaging import selectors, services


def request_panels(request, treatment_request) -> list[dict]:
    user = request.user
    # The request page already checked that the user may see the request.
    studies = list(selectors.studies_of(treatment_request))
    report = selectors.check_report_of(treatment_request)
    return [
        {
            "template": "imaging/_panel.html",
            "context": {
                "studies": studies,
                "report": report,
                "show_details": selectors.may_see_check_details(user),
                "is_staff": user.is_department_staff,
                "can_view": selectors.may_view_images(user),
                "can_upload": services.may_upload(user, treatment_request),
                "inbox_count": selectors.inbox().count() if user.is_department_staff else 0,
                "instance_total": sum(s.instance_count for st in studies for s in st.series.all()),
            },
        }
    ]
