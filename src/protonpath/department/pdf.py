"""The review meeting's minutes as a PDF (WeasyPrint, A4), in the reader's language."""

from __future__ import annotations

from django.template.loader import render_to_string
from django.utils import timezone, translation

from protonpath.department import selectors
from protonpath.department.models import ReviewMeeting


def minutes_context(meeting: ReviewMeeting) -> dict:
    items = []
    for item in meeting.items.all():
        r = item.treatment_request
        items.append(
            {
                "item": item,
                "reference": r.reference,
                "patient": selectors.minimised_patient(r),
                "pathology": r.pathology_name,
                "location": r.pathology_location,
                "request_type": r.get_request_type_display(),
                "triage": selectors.explain(selectors.triage_request(r, on=timezone.localtime(meeting.starts_at).date())),
            }
        )
    return {"meeting": meeting, "items": items, "attendees": list(meeting.attendees.all()), "generated_at": timezone.now()}


def render_minutes(meeting: ReviewMeeting, *, language: str) -> bytes:
    """The minutes of ``meeting`` as PDF bytes; only initials and birth year identify patients."""
    from weasyprint import HTML

    with translation.override(language):
        html = render_to_string("department/minutes_pdf.html", minutes_context(meeting))
    return HTML(string=html).write_pdf()
