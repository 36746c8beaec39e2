"""Fixtures for the Django side of imaging: a request whose patient the test images name, uploads
made of real files, and the DICOM listener running in a thread against the test database."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.factories import make_request

#: The patient of factories.make_request, as a DICOM PN and DA.
PATIENT_NAME = "El Idrissi^Amina"
PATIENT_BIRTH = "19790314"


def stamp(paths, **attributes) -> list[Path]:
    """Set DICOM attributes (keyword=value) in files, in place."""
    for path in paths:
        ds = pydicom.dcmread(path)
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
        ds.save_as(path, enforce_file_format=False)
    return list(paths)


def as_uploads(paths, root: Path | None = None) -> list[SimpleUploadedFile]:
    return [SimpleUploadedFile(Path(p).name, Path(p).read_bytes(), content_type="application/dicom") for p in paths]


def zip_of(paths, root: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in paths:
            archive.write(path, Path(path).relative_to(root).as_posix())
    return buffer.getvalue()


@pytest.fixture
def submitted(doctor):
    """A submitted request by ``doctor`` for the patient Amina El Idrissi, born 1979-03-14, with
    its letters and no images yet."""
    return make_request(doctor, images=False)


@pytest.fixture
def listener(tmp_path):
    """The real DICOM listener (the settings' AE title) on a free port, filing into the test DB."""
    from protonpath.imaging.ingest import build_listener

    node = build_listener(host="127.0.0.1", port=0, incoming_dir=tmp_path / "incoming")
    node.start()
    yield node
    node.stop()
