"""Checks on uploaded documents: size, and type sniffed from the content, not from the name."""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _

from protonpath.referrals.models import DocumentKind

PDF, JPEG, PNG, TIFF, DICOM, ZIP, DOCX, ODT, TEXT = (
    "application/pdf",
    "image/jpeg",
    "image/png",
    "image/tiff",
    "application/dicom",
    "application/zip",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.oasis.opendocument.text",
    "text/plain",
)
REPORT_TYPES = frozenset({PDF, JPEG, PNG, TIFF, DOCX, ODT, TEXT})
#: DICOM images have one way in, the imaging upload (protonpath.imaging), which checks every file
#: (paths in zips, expansion ratio, DICOM structure) and indexes the images. The document kind
#: "Images (DICOM)" stays for the documents stored before, and takes no new file.
ALLOWED_TYPES = {kind: REPORT_TYPES for kind in DocumentKind.values if kind != DocumentKind.DICOM_IMAGES}
#: What goes through the imaging upload instead: a DICOM file or a zip (of a study, as a rule).
IMAGING_TYPES = frozenset({DICOM, ZIP})


def use_imaging_upload() -> ValidationError:
    return ValidationError(
        _(
            "DICOM images and zips are not added as documents: send them in the Images (DICOM) section "
            "of the request, which checks each file and indexes the images."
        ),
        code="use_imaging_upload",
    )


@dataclass(frozen=True)
class CheckedUpload:
    content_type: str
    size_bytes: int
    sha256: str


def sniff_content_type(head: bytes, file) -> str | None:
    """Recognise the formats a medical file holds from their first bytes."""
    # First: DICOM files may carry another format's header in their 128-byte preamble (TIFF).
    if len(head) >= 132 and head[128:132] == b"DICM":
        return DICOM
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return TIFF
    if head.startswith(b"PK\x03\x04"):
        return _zip_flavour(file)
    if head and _looks_like_text(head):
        return TEXT
    return None


def _zip_flavour(file) -> str | None:
    try:
        file.seek(0)
        with zipfile.ZipFile(file) as archive:
            names = set(archive.namelist())
            if "word/document.xml" in names:
                return DOCX
            if "mimetype" in names and archive.read("mimetype").strip() == b"application/vnd.oasis.opendocument.text":
                return ODT
            return ZIP
    except (zipfile.BadZipFile, OSError, KeyError):
        return None
    finally:
        file.seek(0)


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the end of the sample is still text.
        return exc.start >= len(head) - 3
    return True


def check_upload(file, *, kind: str) -> CheckedUpload:
    """Refuse files that are too large, empty or of a type the document kind does not take."""
    if kind not in DocumentKind.values:
        raise ValidationError(_("Unknown document kind."), code="kind")
    if kind == DocumentKind.DICOM_IMAGES:
        raise use_imaging_upload()
    size = file.size
    if size == 0:
        raise ValidationError(_("The file is empty."), code="empty")
    file.seek(0)
    head = file.read(4096)
    file.seek(0)
    content_type = sniff_content_type(head, file)
    # Before the size: a large study sent here is pointed to the imaging upload, not just refused.
    if content_type in IMAGING_TYPES:
        raise use_imaging_upload()
    limit = settings.PROTONPATH_MAX_DOCUMENT_BYTES
    if size > limit:
        raise ValidationError(
            _("The file is too large (%(size)s); the limit is %(limit)s.")
            % {"size": filesizeformat(size), "limit": filesizeformat(limit)},
            code="too_large",
        )
    if content_type is None or content_type not in ALLOWED_TYPES[kind]:
        raise ValidationError(
            _("Reports must be PDF, JPEG, PNG, TIFF, Word (.docx), OpenDocument (.odt) or plain text files."), code="type"
        )
    digest = hashlib.sha256()
    for chunk in file.chunks():
        digest.update(chunk)
    file.seek(0)
    return CheckedUpload(content_type=content_type, size_bytes=size, sha256=digest.hexdigest())
