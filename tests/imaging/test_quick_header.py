"""The listener's quick header reader gives what pydicom gives, on every real DICOM file of the
test data it reads, and hands the others to pydicom."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest

from protonpath.imaging.checks import header_from_dataset
from protonpath.imaging.files import FileRejected, classify_file, quick_header
from tests.imaging.dicomdata import PYDICOM_FILES, RT_EXAMPLE, pydicom_file, write_ct_series

FILES = sorted(PYDICOM_FILES.rglob("*.dcm")) + sorted(RT_EXAMPLE.glob("*.dcm"))


def _pydicom_header(data: bytes):
    return header_from_dataset(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_quick_header_equals_pydicom_s_or_gives_way(path):
    data = path.read_bytes()
    found = quick_header(data)
    if found is None:
        return  # pydicom reads it (encodings and structures the quick reader leaves)
    header, transfer_syntax, media_class = found
    assert header == _pydicom_header(data)
    meta = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta
    assert (transfer_syntax, media_class) == (str(meta.get("TransferSyntaxUID", "")), str(meta.get("MediaStorageSOPClassUID", "")))


def test_the_common_files_are_read_quickly_and_the_others_given_to_pydicom():
    assert quick_header(pydicom_file("CT_small.dcm").read_bytes()) is not None
    assert quick_header(pydicom_file("MR_small.dcm").read_bytes()) is not None
    assert quick_header(pydicom_file("MR_small_bigendian.dcm").read_bytes()) is None  # big endian
    assert quick_header(pydicom_file("rtstruct.dcm").read_bytes()) is None  # RT references
    assert quick_header(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f") is None  # cut short
    assert quick_header(b"not dicom at all") is None
    read = sum(quick_header(p.read_bytes()) is not None for p in FILES)
    assert read >= len(FILES) // 2


def test_classify_file_quick_refuses_what_the_usual_path_refuses(tmp_path):
    path = write_ct_series(tmp_path / "ct", 1)[0]
    quick, usual = classify_file(path, quick=True), classify_file(path)
    assert (quick.header, quick.transfer_syntax_uid, quick.digest) == (usual.header, usual.transfer_syntax_uid, usual.digest)
    ds = pydicom.dcmread(path)
    del ds.SeriesInstanceUID
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(FileRejected, match="lacks SeriesInstanceUID"):
        classify_file(path, quick=True)
    truncated = Path(tmp_path / "cut.dcm")
    truncated.write_bytes(write_ct_series(tmp_path / "ct2", 1)[0].read_bytes()[:-500])
    with pytest.raises(FileRejected, match="truncated"):
        classify_file(truncated, quick=True)
