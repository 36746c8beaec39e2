"""The department's initial directory (services, hours, team) from ``data/directory.json``.

Used by the data migration and by ``seed_demo``; it takes the model classes as arguments so that
a migration can pass its historical models. It never overwrites what staff have edited.
"""

from __future__ import annotations

import datetime
import json
from functools import lru_cache
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"


@lru_cache(maxsize=1)
def directory_data() -> dict:
    return json.loads((DATA_DIR / "directory.json").read_text(encoding="utf-8"))


def _time(text: str) -> datetime.time:
    hours, minutes = text.split(":")
    return datetime.time(int(hours), int(minutes))


def install_directory(*, service_model, hours_model, member_model, data: dict | None = None) -> dict[str, int]:
    """Create the services, their hours and the team when missing; returns what was created."""
    data = data or directory_data()
    created = {"services": 0, "hours": 0, "team": 0}
    for item in data["services"]:
        service, was_created = service_model.objects.get_or_create(
            code=item["code"],
            defaults={k: item[k] for k in ("name_en", "name_fr", "phone", "location_en", "location_fr")},
        )
        created["services"] += int(was_created)
        if not hours_model.objects.filter(service=service).exists():
            for weekday, opens, closes in item["hours"]:
                hours_model.objects.create(service=service, weekday=weekday, opens=_time(opens), closes=_time(closes))
                created["hours"] += 1
    if not member_model.objects.exists():
        for order, item in enumerate(data["team"], start=1):
            member_model.objects.create(
                title=item["title"],
                name=item["name"],
                role=item["role"],
                specialties_en=item["specialties_en"],
                specialties_fr=item["specialties_fr"],
                display_order=order * 10,
            )
            created["team"] += 1
    return created
