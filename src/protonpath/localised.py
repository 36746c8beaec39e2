"""Sentences rendered from a stable code and its params, in the active language.

The pure modules (image checks, scheduler) describe what they find as a code, an English message
and the params it quotes; each Django app keeps a table of translatable sentences by code and
renders them with :func:`coded_message`, falling back to the stored English text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def coded_message(table: Mapping[str, Any], key: str, params: Mapping[str, Any], fallback: str) -> str:
    """``table[key] % params`` in the active language (the sentences may be lazy translations);
    ``fallback`` when the key is unknown or the params do not fit the sentence."""
    template = table.get(key)
    if template is None:
        return fallback
    try:
        return str(template) % params
    except (KeyError, TypeError, ValueError):
        return fallback
