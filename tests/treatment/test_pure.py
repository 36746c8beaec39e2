"""The treatment app's pure parts: structure names, templates, session length."""

from __future__ import annotations

import pytest

from protonpath.scheduling.config import default_gantry_day
from protonpath.treatment import catalog, session


@pytest.mark.parametrize(
    ("name", "kind", "standard", "role"),
    [
        ("Spinal Cord", "ORGAN", "SpinalCord", "oar"),
        ("spinal_cord", "", "SpinalCord", "oar"),
        ("Lt Lung", "AVOIDANCE", "Lung_L", "oar"),
        ("BODY", "EXTERNAL", "External", "external"),
        ("PTV 60", "", "PTV_60", "target"),
        ("Tumor Bed", "CTV", "Tumor_Bed", "target"),
        ("Whatever", "", "Whatever", "oar"),
    ],
)
def test_structure_names_are_normalised(name, kind, standard, role):
    named = catalog.normalise(name, kind)
    assert (named.standard, named.role) == (standard, role)


def test_every_gantry_category_has_a_template_with_beams_and_goals():
    assert set(catalog.templates()) == set(default_gantry_day().categories)
    for template in catalog.templates().values():
        assert template["beams"] and template["goals"] and template["objectives"]
        assert template["objectives"][0]["structure"] == "target"


def test_session_length_adds_setup_fields_spots_and_layer_switches():
    d = catalog.delivery()
    one = session.session_minutes([(400, 10)], setup_minutes=15, spot_s=d["spot_s"], layer_switch_s=d["layer_switch_s"],
                                  field_overhead_s=d["field_overhead_s"], round_to_min=5)
    two = session.session_minutes([(400, 10), (400, 10)], setup_minutes=15, spot_s=d["spot_s"],
                                  layer_switch_s=d["layer_switch_s"], field_overhead_s=d["field_overhead_s"], round_to_min=5)
    assert one % 5 == 0 and two % 5 == 0
    assert 15 < one < two
    assert session.field_seconds(100, 5, spot_s=0.01, layer_switch_s=1.0) == pytest.approx(5.0)


def test_a_course_with_its_plans_session_length_overrides_the_category():
    import datetime

    from protonpath.scheduling.model import Course, session_duration_min

    day = default_gantry_day()
    base = Course("1", "adult_standard", 10, datetime.date(2027, 1, 4), datetime.date(2027, 1, 20))
    planned = Course("2", "adult_standard", 10, datetime.date(2027, 1, 4), datetime.date(2027, 1, 20),
                     session_min=25, first_session_min=45)
    assert session_duration_min(day, base, 2) == day.categories["adult_standard"].session_duration_min
    assert (session_duration_min(day, planned, 1), session_duration_min(day, planned, 2)) == (45, 25)
