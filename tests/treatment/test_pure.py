"""The treatment app's pure parts: structure names, templates, session length."""

from __future__ import annotations

import math

import numpy as np
import pytest

from protonpath.planning.delivery_time import fraction_delivery_time
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


def _spots(layers_per_field, spots_per_layer=30):
    from protonpath.planning import resources
    from protonpath.planning.spots import spots_from_arrays

    machine = resources.load_default_machine()
    beam, energy, u, v = [], [], [], []
    for b, layers in enumerate(layers_per_field):
        for k in range(layers):
            for j in range(spots_per_layer):
                beam.append(b)
                energy.append(machine.energies_mev[40 + 3 * k])
                u.append(5.0 * (j % 6))
                v.append(5.0 * (j // 6))
    return spots_from_arrays(machine, beam, energy, u, v)


def test_session_length_is_setup_plus_each_fields_overhead_and_model_delivery_time():
    d = catalog.delivery()
    spots = _spots([4, 4])
    weights = np.full(len(spots), 2.0)
    timing = fraction_delivery_time(spots, weights, n_beams=2)
    assert [f.energy_layers for f in timing.fields] == [4, 4]
    assert all(f.layer_switching_s > 0 and f.scanning_s > 0 and f.beam_on_s > 0 for f in timing.fields)
    seconds = 15 * 60 + sum(d["field_overhead_s"] + f.total_s for f in timing.fields)
    minutes = session.session_minutes([f.total_s for f in timing.fields], setup_minutes=15,
                                      field_overhead_s=d["field_overhead_s"], round_to_min=5)
    assert minutes == math.ceil(seconds / 60 / 5) * 5


def test_more_energy_layers_and_higher_weights_lengthen_delivery_and_empty_spots_do_not_count():
    few, many = _spots([2]), _spots([12])
    t_few = fraction_delivery_time(few, np.ones(len(few)), n_beams=1)
    t_many = fraction_delivery_time(many, np.ones(len(many)), n_beams=1)
    assert t_many.fields[0].layer_switching_s > t_few.fields[0].layer_switching_s
    assert t_many.total_s > t_few.total_s
    heavy = fraction_delivery_time(few, np.full(len(few), 50.0), n_beams=1)
    assert heavy.fields[0].beam_on_s > t_few.fields[0].beam_on_s
    weights = np.ones(len(many))
    weights[30:] = 0.0  # only the first layer's spots are delivered
    partial = fraction_delivery_time(many, weights, n_beams=1)
    assert (partial.fields[0].energy_layers, partial.fields[0].spots) == (1, 30)
    assert partial.fields[0].layer_switching_s == 0.0


def test_a_course_with_its_plans_session_length_overrides_the_category():
    import datetime

    from protonpath.scheduling.model import Course, session_duration_min

    day = default_gantry_day()
    base = Course("1", "adult_standard", 10, datetime.date(2027, 1, 4), datetime.date(2027, 1, 20))
    planned = Course("2", "adult_standard", 10, datetime.date(2027, 1, 4), datetime.date(2027, 1, 20),
                     session_min=25, first_session_min=45)
    assert session_duration_min(day, base, 2) == day.categories["adult_standard"].session_duration_min
    assert (session_duration_min(day, planned, 1), session_duration_min(day, planned, 2)) == (45, 25)
