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


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_the_quick_walk_judges_every_cut_as_the_structure_walk_does(path):
    """One walk now reads the header and checks the structure: on each test file cut at points
    through its elements (a header sequence included), the quick path refuses exactly the cuts
    the full structure walk refuses, with its words, and accepts the others."""
    from protonpath.imaging.files import _quick_read, dataset_structure_problem

    data = path.read_bytes()
    if _quick_read(data) is None:
        return  # read by pydicom, whose path runs the structure walk itself
    for cut in sorted({len(data) - 1, len(data) - 500, *range(300, min(len(data), 4000), 97)}):
        short = data[:cut]
        found = _quick_read(short)
        if found is None:
            continue  # given to pydicom (an element cut in the header), which walks it whole
        transfer_syntax = found[1]
        assert found[3] == dataset_structure_problem(short, part10=True, transfer_syntax_uid=transfer_syntax), cut


def test_a_header_sequence_left_open_is_refused_as_truncated_not_an_error(tmp_path):
    """An undefined-length sequence before the pixel data that the file ends inside is refused
    with the structure walk's words (it escaped the quick reader as an internal error before,
    which the listener answered as 'out of resources')."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    path = write_ct_series(tmp_path / "ct", 1)[0]
    ds = pydicom.dcmread(path)
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    ds.ReferencedImageSequence = Sequence([item])
    ds["ReferencedImageSequence"].is_undefined_length = True
    ds.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    assert quick_header(data) is not None
    start = data.index(b"\x08\x00\x40\x11")  # (0008,1140) Referenced Image Sequence
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: start + 40])  # inside its item
    with pytest.raises(FileRejected, match="truncated or corrupt"):
        classify_file(cut, quick=True)
