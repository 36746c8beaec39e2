"""iCalendar (RFC 5545) export of consultations and gantry sessions, written by hand.

Lines end with CRLF and are folded at 75 octets (never inside a UTF-8 character); TEXT values
are escaped (backslash, semicolon, comma, newline); times are written in UTC (``...Z``), which
every calendar shows in its own time zone. Events carry a stable UID, so a moved or cancelled
appointment replaces the earlier one in the patient's calendar (with a higher SEQUENCE).
Events carry times, place and people, never medical content.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

PRODID = "-//protonpath//scheduling//EN"
UID_DOMAIN = "protonpath"


@dataclass(frozen=True)
class Event:
    uid: str
    start: datetime
    end: datetime
    summary: str
    location: str = ""
    description: str = ""
    status: str = "CONFIRMED"  # CONFIRMED, TENTATIVE or CANCELLED
    sequence: int = 0


def escape_text(value: str) -> str:
    """Escape a TEXT value (RFC 5545, 3.3.11)."""
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def fold(line: str) -> str:
    """Fold a content line into pieces of at most 75 octets joined by CRLF + space (3.1)."""
    pieces = []
    current = b""
    limit = 75
    for char in line:
        encoded = char.encode("utf-8")
        if len(current) + len(encoded) > limit:
            pieces.append(current.decode("utf-8"))
            current = b""
            limit = 74  # continuation lines start with a space
        current += encoded
    pieces.append(current.decode("utf-8"))
    return "\r\n ".join(pieces)


def utc_stamp(moment: datetime) -> str:
    if timezone.is_naive(moment):
        raise ValueError("iCalendar times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def event_lines(event: Event, now: datetime) -> list[str]:
    lines = [
        "BEGIN:VEVENT",
        f"UID:{event.uid}",
        f"DTSTAMP:{utc_stamp(now)}",
        f"DTSTART:{utc_stamp(event.start)}",
        f"DTEND:{utc_stamp(event.end)}",
        f"SEQUENCE:{event.sequence}",
        f"STATUS:{event.status}",
        f"SUMMARY:{escape_text(event.summary)}",
    ]
    if event.location:
        lines.append(f"LOCATION:{escape_text(event.location)}")
    if event.description:
        lines.append(f"DESCRIPTION:{escape_text(event.description)}")
    lines.append("END:VEVENT")
    return lines


def calendar(
    events: Iterable[Event],
    *,
    method: str | None = None,
    name: str = "",
    now: datetime | None = None,
) -> str:
    """A VCALENDAR document with ``events`` (CRLF line ends, folded lines)."""
    now = now or timezone.now()
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN"]
    if method:
        lines.append(f"METHOD:{method}")
    if name:
        lines.append(f"X-WR-CALNAME:{escape_text(name)}")
    for event in events:
        lines.extend(event_lines(event, now))
    lines.append("END:VCALENDAR")
    return "".join(fold(line) + "\r\n" for line in lines)


def _location() -> str:
    return settings.PROTONPATH_DEPARTMENT_NAME


def consultation_event(consultation) -> Event:
    doctor = consultation.doctor.get_full_name() or consultation.doctor.username
    return Event(
        uid=f"consultation-{consultation.uid}@{UID_DOMAIN}",
        start=consultation.start,
        end=consultation.end,
        summary=_("%(kind)s with %(doctor)s")
        % {"kind": consultation.get_kind_display(), "doctor": doctor},
        location=_location(),
        description=_("Request %(ref)s") % {"ref": consultation.treatment_request.reference},
        status="CANCELLED" if consultation.status == "cancelled" else "CONFIRMED",
        sequence=consultation.sequence,
    )


def session_event(session) -> Event:
    status = {"planned": "TENTATIVE", "missed": "CANCELLED", "cancelled": "CANCELLED"}.get(
        session.status, "CONFIRMED"
    )
    return Event(
        uid=f"session-{session.uid}@{UID_DOMAIN}",
        start=session.start,
        end=session.end,
        summary=_("Proton therapy session %(n)s") % {"n": session.fraction_number},
        location=_location(),
        status=status,
        sequence=session.sequence,
    )
