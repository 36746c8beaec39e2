"""Why the gantry schedule has no room for a course, in the reader's language.

The pure scheduler (:mod:`protonpath.scheduling.validation`, :mod:`~protonpath.scheduling.solver`,
:mod:`~protonpath.scheduling.baseline`) raises :class:`~protonpath.scheduling.model.InfeasibleScheduleError`
whose ``items`` each carry a course id, a stable ``code``, the English ``message`` and the ``params``
it quotes. Pages render each item from ``code`` and ``params`` with the table below, in the active
language; an item whose code is not in the table (or whose params do not fit) keeps its English text.
Dates and clock times are written as the scheduler writes them (ISO dates, ``HH:MM``) in every
language; an urgency is named by its label (:class:`protonpath.scheduling.models.Urgency`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from protonpath.localised import coded_message
from protonpath.scheduling.model import InfeasibleReason, InfeasibleScheduleError
from protonpath.scheduling.models import Urgency

# code -> sentence with %(param)s placeholders; course_id is the item's course.
INFEASIBLE_MESSAGES: dict[str, Promise] = {
    "unknown_category": _("course %(course_id)s: unknown indication category '%(category)s'"),
    "unknown_urgency": _("course %(course_id)s: unknown urgency '%(urgency)s'"),
    "unknown_gantry": _("course %(course_id)s: unknown gantry '%(gantry_id)s'"),
    "no_fraction": _("course %(course_id)s: needs at least one fraction"),
    "ready_after_due": _(
        "course %(course_id)s: ready date %(ready_date)s is after its due date %(due_date)s"
    ),
    "no_working_day": _(
        "course %(course_id)s: no working day between ready date %(ready_date)s and due date "
        "%(due_date)s within the planning horizon"
    ),
    "beyond_horizon": _(
        "course %(course_id)s: %(fraction_count)s consecutive working days from %(ready_date)s "
        "do not fit before the horizon end %(end_date)s"
    ),
    "session_window": _(
        "course %(course_id)s: a %(duration_min)s min session cannot start between %(earliest)s "
        "and %(latest)s and end by closing time %(closing)s"
    ),
    "usual_start_outside": _(
        "course %(course_id)s: usual start %(usual_start)s is outside the allowed start window "
        "%(earliest)s-%(latest)s"
    ),
    "duplicate_course": _("course %(course_id)s: appears twice"),
    "no_room": _("course %(course_id)s: no room before %(end_date)s"),
    "late_start": _(
        "course %(course_id)s (%(urgency)s): cannot start by its due date %(due_date)s around the "
        "gantry's other sessions; earliest joint start %(first_date)s"
    ),
}

#: Between the reasons of one error (French puts a space before the semicolon).
REASON_SEPARATOR = pgettext_lazy("between the reasons of one error", "; ")


def _urgency(value: Any) -> Any:
    """An urgency code as its label, in lower case as in a sentence ('urgent', 'programmé')."""
    if value in Urgency.values:
        return str(Urgency(value).label).lower()
    return value


def infeasible_message(item: InfeasibleReason) -> str:
    """One reason in the active language; its English ``message`` when the code is unknown or
    the params do not fit the sentence."""
    params = {"course_id": item.course_id, **item.params}
    if item.code == "late_start" and "urgency" in params:
        params["urgency"] = _urgency(params["urgency"])
    return coded_message(INFEASIBLE_MESSAGES, item.code, params, item.message)


def infeasible_messages(error: InfeasibleScheduleError | Iterable[InfeasibleReason]) -> list[str]:
    """Every reason of ``error`` (or of a list of items) in the active language."""
    items = error.items if isinstance(error, InfeasibleScheduleError) else error
    return [infeasible_message(item) for item in items]


def infeasible_text(error: InfeasibleScheduleError) -> str:
    """The reasons of ``error`` as one text, in the active language."""
    return str(REASON_SEPARATOR).join(infeasible_messages(error))
