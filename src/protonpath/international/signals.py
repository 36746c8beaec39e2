"""When the gantry sessions or the first consultation of a request move, its consulate letters
are re-issued, after the change commits, by a task (see :func:`tasks.reissue_letters`).

Several sessions saved in one transaction enqueue several tasks; they run after the commit and
see the same final dates, so one new version is issued and the other tasks find nothing changed.
"""

from __future__ import annotations

from django.db import transaction

from protonpath.international.models import IssuedLetter


def _request_id(instance) -> int | None:
    course = getattr(instance, "course", None)
    if course is not None:
        return course.treatment_request_id
    return getattr(instance, "treatment_request_id", None)


def dates_changed(sender, instance, **kwargs) -> None:
    request_id = _request_id(instance)
    if request_id is None or not IssuedLetter.objects.filter(treatment_request_id=request_id).exists():
        return

    def reissue() -> None:
        from protonpath.international import tasks

        tasks.reissue_letters.enqueue(request_id)

    transaction.on_commit(reissue)
