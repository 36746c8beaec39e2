"""The DICOM listener's network limits and journal policy, read from the Django settings (see settings.py)."""

from __future__ import annotations

from typing import Any

#: ListenerSettings field -> Django setting.
SETTINGS = {
    "maximum_pdu_size": "DICOM_MAX_PDU_BYTES",
    "max_control_pdu_bytes": "DICOM_MAX_CONTROL_PDU_BYTES",
    "request_timeout_s": "DICOM_REQUEST_TIMEOUT_S",
    "pdu_header_timeout_s": "DICOM_PDU_HEADER_TIMEOUT_S",
    "pdu_body_timeout_s": "DICOM_PDU_BODY_TIMEOUT_S",
    "network_timeout_s": "DICOM_IDLE_TIMEOUT_S",
    "dimse_timeout_s": "DICOM_DIMSE_TIMEOUT_S",
    "acse_timeout_s": "DICOM_ACSE_TIMEOUT_S",
    "max_associations": "DICOM_MAX_ASSOCIATIONS",
    "max_associations_per_address": "DICOM_MAX_ASSOCIATIONS_PER_ADDRESS",
    "max_message_bytes": "DICOM_MAX_MESSAGE_BYTES",
    "stop_grace_s": "DICOM_STOP_GRACE_S",
    "fsync": "DICOM_FSYNC",
    "journal_reserve": "DICOM_JOURNAL_RESERVE",
    "journal_reserve_slot_bytes": "DICOM_JOURNAL_RESERVE_SLOT_BYTES",
    "journal_reserve_min_free_bytes": "DICOM_JOURNAL_RESERVE_MIN_FREE_BYTES",
}


def listener_limits_from_settings() -> dict[str, Any]:
    """Keyword arguments for :class:`~protonpath.imaging.scp.ListenerSettings`: every limit the
    settings set (an unset one keeps the listener's default)."""
    from django.conf import settings

    return {field: getattr(settings, name) for field, name in SETTINGS.items() if hasattr(settings, name)}
