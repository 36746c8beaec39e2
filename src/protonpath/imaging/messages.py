"""The image checks' findings, and why a study waits in the inbox, in the reader's language.

:mod:`protonpath.imaging.checks` is pure (no Django): each :class:`~protonpath.imaging.checks.Finding`
carries a stable ``code``, an English ``message`` and the ``params`` that message quotes. Pages, the
API and error messages render the finding from ``code`` and ``params`` with the table below, in the
active language. A finding whose code is not in the table (or a report stored before its params
were) keeps the stored English text.

The inbox reasons of :func:`protonpath.imaging.ingest.route` (:class:`~protonpath.imaging.ingest.InboxReason`)
are stored the same way, as English text, code and params, and rendered by
:func:`inbox_reason_message` with :data:`INBOX_REASONS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.formats import get_format
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from protonpath.localised import coded_message

# code (or "code/part" where one code has variants) -> sentence with %(param)s placeholders.
# Millimetres (params named *_mm) are formatted by _formatted, in the language's decimal format.
MESSAGES: dict[str, Promise] = {
    "slice_without_position": _("%(count)s image(s) have no position or orientation"),
    "orientation_inconsistent": _("the images of this series do not share one orientation"),
    "matrix_inconsistent": _("the images of this series have different matrix sizes"),
    "duplicate_positions": _("%(count)s slice position(s) occur more than once"),
    "missing_slices": _("%(count)s slice(s) missing: %(gaps)s gap(s) wider than the %(spacing_mm)s mm spacing"),
    "irregular_spacing": _("slice spacing varies from %(min_mm)s to %(max_mm)s mm"),
    "several_patients": _("the images carry %(count)s different patient identities"),
    "name_absent": _("the images carry no patient name to compare"),
    "name_mismatch/family": _("the family name in the images differs from the request"),
    "name_mismatch/given": _("the given name in the images differs from the request"),
    "birth_date_absent": _("the images carry no birth date to compare"),
    "birth_date_mismatch": _("the birth date in the images differs from the request"),
    "no_images": _("no images have been received"),
    "modality_unexpected": _("images of modality %(modality)s are not used for planning"),
    "no_rtstruct": _("no RTSTRUCT received"),
    "no_mr": _("no MR received"),
    "no_pt": _("no PET received"),
    "no_planning_ct": _("no %(modality)s series received"),
    "too_few_slices": _("the planning %(modality)s has %(count)s slices, fewer than %(minimum)s"),
    "slice_thickness_absent": _("the planning series does not state its slice thickness"),
    "slices_too_thick": _("slices are %(thickness_mm)s mm thick, more than %(max_thickness_mm)s mm"),
    "slice_thickness_varies": _("slice thickness varies within the planning series"),
    "gaps_between_slices": _("slices %(thickness_mm)s mm thick are %(spacing_mm)s mm apart"),
    "structures_other_frame": _("the structure set refers to a frame of reference of no received image series"),
    "structures_other_series": _("the structure set was drawn on an image series that was not received"),
}


def _formatted(name: str, value: Any) -> Any:
    """Millimetres as checks.py writes them (thicknesses as %g, spacings with two decimals), with
    the language's decimal separator."""
    if not isinstance(value, float | int) or isinstance(value, bool) or not name.endswith("_mm"):
        return value
    text = f"{value:g}" if "thickness" in name else f"{value:.2f}"
    return text.replace(".", str(get_format("DECIMAL_SEPARATOR")))


def finding_message(code: str, params: Mapping[str, Any] | None = None, default: str = "") -> str:
    """The sentence for a finding in the active language; ``default`` (the stored English text)
    when the code is unknown or the params do not fit the sentence."""
    params = dict(params or {})
    key = f"{code}/{params['part']}" if "part" in params else code
    return coded_message(MESSAGES, key, {k: _formatted(k, v) for k, v in params.items()}, default or code)


def localised(finding: Any) -> dict[str, Any]:
    """A finding (a :class:`checks.Finding` or its stored dict) as a dict whose ``message`` is in
    the active language; the other keys are kept."""
    data = dict(finding) if isinstance(finding, Mapping) else {
        "code": finding.code,
        "severity": finding.severity,
        "message": finding.message,
        "series_instance_uid": finding.series_instance_uid,
        "params": dict(finding.params),
    }
    data["message"] = finding_message(data.get("code", ""), data.get("params"), data.get("message", ""))
    return data


# Why a study received over the network waits in the inbox (ingest.InboxReason codes).
INBOX_REASONS: dict[str, Promise] = {
    "no_accession_number": _("no accession number"),
    "unknown_accession_number": _("unknown accession number"),
    "request_closed": _("request %(reference)s is closed"),
    "identity_differs": _("patient identity differs from request %(reference)s"),
    # identity_differs with the identity findings that differ (name, birth date...).
    "identity_differs/details": _("patient identity differs from request %(reference)s: %(details)s"),
}
# Between the details of one reason (French puts a space before the semicolon).
DETAILS_SEPARATOR = pgettext_lazy("between the parts of one reason", "; ")


def inbox_reason_message(code: str, params: Mapping[str, Any] | None = None, default: str = "") -> str:
    """Why a study waits in the inbox, in the active language; ``default`` (the stored English
    text) when the code is unknown or the params do not fit the sentence."""
    params = dict(params or {})
    mismatches = params.pop("mismatches", None) or []
    fallback = default or code
    if not mismatches:
        return coded_message(INBOX_REASONS, code, params, fallback)
    try:
        params["details"] = str(DETAILS_SEPARATOR).join(
            finding_message(m.get("code", ""), m.get("params"), m.get("message", "")) for m in mismatches
        )
    except AttributeError:  # a stored mismatch that is not a mapping
        return fallback
    return coded_message(INBOX_REASONS, f"{code}/details", params, fallback)
