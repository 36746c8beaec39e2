"""The solver's refusals in the reader's language (scheduling.messages renders code + params)."""

from __future__ import annotations

import dataclasses
import datetime
import html
import re
from datetime import date
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from protonpath.scheduling import baseline, messages, solver, validation
from protonpath.scheduling.config import clock_to_min, default_gantry_day
from protonpath.scheduling.model import (
    Downtime,
    InfeasibleReason,
    InfeasibleScheduleError,
)
from protonpath.scheduling.models import MachineDowntime
from tests.factories import PASSWORD
from tests.scheduling.builders import (
    FAST,
    START,
    course,
    invalid_courses,
    problem,
    short_anaesthesia_day,
)
from tests.scheduling.test_django_gantry import in_planning, make_course
from tests.translations import assert_every_sentence_reads_differently_in_french


def _errors() -> list[InfeasibleScheduleError]:
    """Real errors of the pure scheduler, covering every code."""
    errors = []
    short_day = short_anaesthesia_day()
    invalid = [
        *invalid_courses(),
        course("late-plan", ready=date(2026, 7, 20), due=date(2026, 7, 10)),
        course("weekend", ready=date(2026, 7, 11), due=date(2026, 7, 12)),
    ]
    one_session_day = dataclasses.replace(default_gantry_day(), closing_min=clock_to_min("09:40"))
    urgent = [course(n, due=date(2026, 7, 7), urgency="urgent") for n in ("u1", "u2")]
    closed = tuple(
        Downtime("G1", START + datetime.timedelta(days=n), 0, 24 * 60) for n in range(92)
    )
    attempts = [
        lambda: validation.validate_problem(
            dataclasses.replace(problem(*invalid), gantry_day=short_day)
        ),
        lambda: solver.solve(
            dataclasses.replace(problem(*urgent), gantry_day=one_session_day), FAST
        ),
        lambda: baseline.first_fit_schedule(problem(course("a"), downtimes=closed)),
    ]
    for attempt in attempts:
        with pytest.raises(InfeasibleScheduleError) as error:
            attempt()
        errors.append(error.value)
    return errors


def test_every_code_the_scheduler_emits_has_a_sentence_translated_into_french():
    codes = set()
    for module in (validation, solver, baseline):
        source = Path(module.__file__).read_text()
        codes |= set(re.findall(r'infeasible_reason\(\s*[\w.]+,\s*"([a-z_]+)"', source))
    assert codes == set(messages.INFEASIBLE_MESSAGES)
    emitted = {item.code for error in _errors() for item in error.items}
    assert emitted == codes
    assert_every_sentence_reads_differently_in_french(messages.INFEASIBLE_MESSAGES)


def test_the_english_rendering_is_the_scheduler_s_own_message():
    with translation.override("en"):
        for error in _errors():
            for item in error.items:
                assert messages.infeasible_message(item) == item.message
            assert messages.infeasible_text(error) == "; ".join(error.reasons)


def test_the_reasons_read_in_french():
    late = course("late-plan", ready=date(2026, 7, 20), due=date(2026, 7, 10))
    with pytest.raises(InfeasibleScheduleError) as error:
        solver.solve(problem(late), FAST)
    with translation.override("fr"):
        assert messages.infeasible_messages(error.value) == [
            "traitement late-plan\u00a0: le plan est prêt le 2026-07-20, "
            "après la date limite de début du 2026-07-10",
            "traitement late-plan\u00a0: aucun jour ouvré entre la date où le plan est prêt (2026-07-20) "
            "et la date limite de début (2026-07-10) dans l'horizon de planification",
        ]
        assert "\u00a0; traitement late-plan\u00a0: aucun jour ouvré" in messages.infeasible_text(error.value)
    late_start = InfeasibleReason(
        "7",
        "late_start",
        "english",
        {"urgency": "elective", "due_date": "2026-07-07", "first_date": "2026-07-09"},
    )
    with translation.override("fr"):
        assert messages.infeasible_message(late_start) == (
            "traitement 7 (programmé)\u00a0: ne peut pas commencer au plus tard le 2026-07-07 autour "
            "des autres séances du bras isocentrique\u00a0; début commun le plus tôt le 2026-07-09"
        )


def test_unknown_codes_and_plain_reasons_keep_their_english_text():
    with translation.override("fr"):
        assert messages.infeasible_message(
            InfeasibleReason("a", "newer_rule", "course a: newer")
        ) == ("course a: newer")
        assert messages.infeasible_message(
            InfeasibleReason("a", "no_room", "course a: no room", {})
        ) == ("course a: no room")
        error = InfeasibleScheduleError(["plain English"])
        assert messages.infeasible_text(error) == "plain English"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "language, expected",
    [
        (
            "fr",
            "Le planning du bras isocentrique n'a pas de place pour cela\u00a0: traitement {pk}\u00a0: pas de place avant le {end}",
        ),
        ("en", "The gantry schedule has no room for this: course {pk}: no room before {end}"),
    ],
)
def test_a_course_the_gantry_has_no_room_for_is_refused_in_the_reader_s_language(
    client, doctor, staff, oncologist, physicist, language, expected
):
    r = in_planning(doctor, staff, oncologist)
    course_row = make_course(r, physicist, fractions=3)
    # The gantry is down for the next two years: the course fits nowhere in the horizon.
    now = timezone.now()
    MachineDowntime.objects.create(
        start=now,
        end=now + datetime.timedelta(days=730),
        reason="Cyclotron replaced",
        recorded_by=staff,
    )
    assert client.login(username=physicist.username, password=PASSWORD)
    response = client.post(
        reverse("scheduling:course_schedule", args=[course_row.pk]),
        follow=True,
        HTTP_ACCEPT_LANGUAGE=language,
    )
    page = html.unescape(response.content.decode())
    found = re.search(r"(?:no room before|pas de place avant le) (\d{4}-\d{2}-\d{2})", page)
    assert found, page
    assert expected.format(pk=course_row.pk, end=found.group(1)) in page
    assert not course_row.sessions.exists()


def test_every_urgency_of_the_gantry_data_has_a_label_for_the_refusals():
    from protonpath.scheduling.models import Urgency

    assert set(Urgency.values) == set(default_gantry_day().urgencies)
    with translation.override("fr"):
        assert [messages._urgency(u) for u in ("urgent", "standard", "elective", "someday")] == [
            "urgent",
            "standard",
            "programmé",
            "someday",
        ]
