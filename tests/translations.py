"""Assertions on the French catalogues shared by the apps' message tests."""

from django.utils import translation


def assert_every_sentence_reads_differently_in_french(catalogue):
    """Each lazy sentence of ``catalogue`` (key to sentence) has a French translation: its
    French rendering differs from its English one.  A failure names the key."""
    for key, sentence in catalogue.items():
        with translation.override("en"):
            english = str(sentence)
        with translation.override("fr"):
            assert str(sentence) != english, key
