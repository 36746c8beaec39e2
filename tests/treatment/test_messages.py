"""Every plan error and stage reads in French; a code with params renders in the reader's language."""

from __future__ import annotations

from django.utils import translation

from protonpath.treatment.messages import ERRORS, STAGES, plan_error_message
from tests.translations import assert_every_sentence_reads_differently_in_french


def test_every_error_and_stage_has_a_french_translation():
    assert_every_sentence_reads_differently_in_french(ERRORS)
    assert_every_sentence_reads_differently_in_french({k: v for k, v in STAGES.items() if k != "optimisation"})


def test_error_codes_render_with_their_params_in_each_language():
    with translation.override("en"):
        assert plan_error_message("target_outside_ct", {"target": "PTV"}) == "The target “PTV” lies outside the CT slices."
    with translation.override("fr"):
        assert plan_error_message("target_outside_ct", {"target": "PTV"}) == "La cible «\u00a0PTV\u00a0» est en dehors des coupes du scanner."
        # an unknown code falls back to the generic sentence, never to a raw code
        assert plan_error_message("no_such_code", {}).startswith("Le calcul a échoué")
