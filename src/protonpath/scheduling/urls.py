from datetime import date

from django.urls import path, register_converter

from protonpath.scheduling import views


class IsoDateConverter:
    """A day of the calendar the pages can show: the day before and after it must exist too
    (agenda links), and times on it must be representable (the calendar's first and last days
    are not: 404, not a server error)."""

    regex = r"\d{4}-\d{2}-\d{2}"
    first, last = date(1900, 1, 1), date(2999, 12, 31)

    def to_python(self, value: str) -> date:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError(value) from None  # Django answers 404
        if not self.first <= day <= self.last:
            raise ValueError(value)
        return day

    def to_url(self, value) -> str:
        return value.isoformat() if isinstance(value, date) else str(value)


register_converter(IsoDateConverter, "isodate")

app_name = "scheduling"
urlpatterns = [
    path("agenda/", views.agenda_today, name="agenda_today"),
    path("agenda/<isodate:day>/", views.agenda, name="agenda"),
    path("downtimes/new/", views.downtime, name="downtime"),
    path("sessions/<int:pk>/record/", views.record_session, name="record_session"),
    path("requests/<int:pk>/book/", views.book, name="book"),
    path("requests/<int:pk>/calendar.ics", views.request_ics, name="request_ics"),
    path("requests/<int:pk>/course/", views.course_create, name="course_create"),
    path("courses/<int:pk>/schedule/", views.course_schedule, name="course_schedule"),
    path("courses/<int:pk>/announce/", views.course_announce, name="course_announce"),
    path("consultations/", views.consultation_list, name="consultations"),
    path("consultations/<int:pk>/reschedule/", views.reschedule, name="reschedule"),
    path("consultations/<int:pk>/cancel/", views.cancel, name="cancel"),
    path(
        "consultations/<int:pk>/consultation.ics", views.consultation_ics, name="consultation_ics"
    ),
]
