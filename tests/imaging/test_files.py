"""Reading uploads: real studies are accepted whole, anything bad refuses the whole upload."""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from pathlib import Path

import pydicom
import pytest

from protonpath.imaging.files import (
    UploadLimits,
    UploadRefused,
    classify_file,
    extract_zip,
    read_dicomdir,
    read_upload,
)
from tests.imaging.dicomdata import PYDICOM_FILES, pydicom_file, shared_rt_study


@pytest.fixture(scope="module")
def rt_study(tmp_path_factory):
    return shared_rt_study(tmp_path_factory)


def zip_folder(folder: Path, target: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, prefix + path.relative_to(folder).as_posix())
    return target


def refused_names(excinfo: pytest.ExceptionInfo[UploadRefused]) -> set[str]:
    return {problem.name for problem in excinfo.value.problems}


def test_a_folder_with_a_ct_series_and_its_rt_objects_is_read_whole(rt_study, tmp_path):
    folder = rt_study["CT"][0].parent

    result = read_upload([folder], tmp_path / "work")

    assert len(result.files) == 101
    assert {f.header.modality for f in result.files} == {"CT", "RTSTRUCT", "RTPLAN", "RTDOSE"}
    assert len(result.study_instance_uids) == 1
    assert all(f.part10 for f in result.files)


def test_a_zip_of_the_study_is_extracted_and_named_after_the_zip(rt_study, tmp_path):
    archive = zip_folder(rt_study["CT"][0].parent, tmp_path / "study.zip", prefix="export/")

    result = read_upload([archive], tmp_path / "work")

    assert len(result.files) == 101
    assert "study.zip:export/RTSTRUCT.dcm" in {f.name for f in result.files}
    assert all(f.path.is_relative_to(tmp_path / "work") for f in result.files)


def test_pdi_media_are_read_through_their_dicomdir_and_the_rest_is_ignored(tmp_path):
    media = PYDICOM_FILES / "dicomdirtests"
    referenced = read_dicomdir(media / "DICOMDIR")

    result = read_upload([media], tmp_path / "work")

    assert len(result.files) == len(referenced) == 31
    listed = {"/".join(parts) for parts in referenced}
    assert {f.name.removeprefix("dicomdirtests/") for f in result.files} == listed
    assert "dicomdirtests/DICOMDIR" in result.ignored
    # The second media folder inside is not referenced by the outer DICOMDIR: ignored, not read.
    assert any(name.startswith("dicomdirtests/TINY_ALPHA/") for name in result.ignored)


def test_a_dicomdir_that_lists_a_missing_file_refuses_the_media(tmp_path):
    media = tmp_path / "media"
    shutil.copytree(PYDICOM_FILES / "dicomdirtests", media)
    first = read_dicomdir(media / "DICOMDIR")[0]
    media.joinpath(*first).unlink()

    with pytest.raises(UploadRefused) as excinfo:
        read_upload([media], tmp_path / "work")

    assert excinfo.value.problems[0].name == "media/" + "/".join(first)
    assert "missing" in excinfo.value.problems[0].reason


def test_a_text_file_among_good_images_refuses_the_upload_and_names_it(tmp_path):
    folder = tmp_path / "upload"
    folder.mkdir()
    shutil.copy(pydicom_file("CT_small.dcm"), folder / "ct.dcm")
    (folder / "notes.txt").write_text("Referral letter, see attached CT.\n")

    with pytest.raises(UploadRefused) as excinfo:
        read_upload([folder], tmp_path / "work")

    assert refused_names(excinfo) == {"upload/notes.txt"}
    assert "not a DICOM file" in excinfo.value.problems[0].reason


@pytest.mark.parametrize("name", ["MR_truncated.dcm", "rtplan_truncated.dcm"])
def test_truncated_files_that_pydicom_reads_silently_are_refused(name, tmp_path):
    pydicom.dcmread(pydicom_file(name))  # pydicom itself raises nothing

    with pytest.raises(UploadRefused) as excinfo:
        read_upload([pydicom_file(name)], tmp_path / "work")

    assert "truncated" in excinfo.value.problems[0].reason


def test_a_file_cut_off_during_a_copy_is_refused(tmp_path):
    data = pydicom_file("CT_small.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) // 2])

    with pytest.raises(UploadRefused, match="cut.dcm: is truncated"):
        read_upload([cut], tmp_path / "work")


def test_an_empty_file_is_refused(tmp_path):
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")

    with pytest.raises(UploadRefused, match="empty.dcm: is empty"):
        read_upload([empty], tmp_path / "work")


def test_a_dataset_without_the_file_header_is_accepted_and_marked(tmp_path):
    result = read_upload([pydicom_file("rtstruct.dcm")], tmp_path / "work")

    (found,) = result.files
    assert found.header.modality == "RTSTRUCT"
    assert found.part10 is False


def test_the_same_file_twice_is_a_duplicate_not_an_error(tmp_path):
    folder = tmp_path / "upload"
    folder.mkdir()
    shutil.copy(pydicom_file("CT_small.dcm"), folder / "a.dcm")
    shutil.copy(pydicom_file("CT_small.dcm"), folder / "b.dcm")

    result = read_upload([folder], tmp_path / "work")

    assert [f.name for f in result.files] == ["upload/a.dcm"]
    assert [f.name for f in result.duplicates] == ["upload/b.dcm"]


def test_two_different_files_with_one_sop_instance_uid_are_refused(tmp_path):
    folder = tmp_path / "upload"
    folder.mkdir()
    shutil.copy(pydicom_file("CT_small.dcm"), folder / "a.dcm")
    altered = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    altered.SeriesDescription = "changed"
    altered.save_as(folder / "b.dcm")

    with pytest.raises(UploadRefused, match="same SOP Instance UID"):
        read_upload([folder], tmp_path / "work")


def test_system_litter_is_ignored(tmp_path):
    folder = tmp_path / "upload"
    (folder / "__MACOSX").mkdir(parents=True)
    shutil.copy(pydicom_file("CT_small.dcm"), folder / "ct.dcm")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "__MACOSX" / "._ct.dcm").write_bytes(b"\x00\x05\x16\x07")

    result = read_upload([folder], tmp_path / "work")

    assert len(result.files) == 1
    assert set(result.ignored) == {"upload/.DS_Store", "upload/__MACOSX/._ct.dcm"}


def test_a_symbolic_link_in_a_folder_is_refused(tmp_path):
    folder = tmp_path / "upload"
    folder.mkdir()
    shutil.copy(pydicom_file("CT_small.dcm"), folder / "ct.dcm")
    os.symlink("/etc/passwd", folder / "passwd.dcm")

    with pytest.raises(UploadRefused) as excinfo:
        read_upload([folder], tmp_path / "work")

    assert refused_names(excinfo) == {"upload/passwd.dcm"}


# --- hostile zips: refused before anything is written ----------------------------------------


def make_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("../../outside.dcm", "path traversal"),
        ("scans/../../outside.dcm", "path traversal"),
        ("..\\outside.dcm", "path traversal"),
        ("/etc/outside.dcm", "absolute path"),
        ("C:/outside.dcm", "absolute path"),
        ("inner.zip", "archive inside the zip"),
    ],
)
def test_a_zip_with_a_dangerous_entry_is_refused_whole(entry, reason, tmp_path):
    ct = pydicom_file("CT_small.dcm").read_bytes()
    archive = make_zip(tmp_path / "upload.zip", {"good.dcm": ct, entry: ct})
    work = tmp_path / "work"
    work.mkdir()

    with pytest.raises(UploadRefused) as excinfo:
        read_upload([archive], work)

    assert refused_names(excinfo) == {f"upload.zip:{entry}"}
    assert reason in excinfo.value.problems[0].reason
    assert list(work.iterdir()) == []
    assert not (tmp_path / "outside.dcm").exists()


def test_a_zip_with_a_symbolic_link_is_refused(tmp_path):
    archive_path = tmp_path / "links.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("ct.dcm", pydicom_file("CT_small.dcm").read_bytes())
        link = zipfile.ZipInfo("secret.dcm")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/shadow")

    with pytest.raises(UploadRefused, match="links.zip:secret.dcm: is a symbolic link"):
        read_upload([archive_path], tmp_path / "work")


def test_a_zip_bomb_is_refused_from_its_directory_without_extracting(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", {"scan.dcm": b"\x00" * (64 * 1024 * 1024)})
    assert archive.stat().st_size < 200_000
    work = tmp_path / "work"
    work.mkdir()

    with pytest.raises(UploadRefused, match="zip bomb"):
        read_upload([archive], work)

    assert list(work.iterdir()) == []


def test_a_zip_over_the_size_or_entry_limits_is_refused(tmp_path):
    ct = pydicom_file("CT_small.dcm").read_bytes()
    archive = make_zip(tmp_path / "many.zip", {f"IM{i}.dcm": ct for i in range(5)})

    with pytest.raises(UploadRefused, match="5 entries, more than 4"):
        read_upload([archive], tmp_path / "work1", limits=UploadLimits(max_entries=4))
    with pytest.raises(UploadRefused, match="would expand to"):
        read_upload([archive], tmp_path / "work2", limits=UploadLimits(max_total_bytes=len(ct) * 4))


def test_a_zip_whose_content_is_bad_leaves_nothing_behind(tmp_path):
    ct = pydicom_file("CT_small.dcm").read_bytes()
    archive = make_zip(tmp_path / "mixed.zip", {"ct.dcm": ct, "report.pdf": b"%PDF-1.4 not an image"})
    work = tmp_path / "work"
    work.mkdir()

    with pytest.raises(UploadRefused) as excinfo:
        read_upload([archive], work)

    assert refused_names(excinfo) == {"mixed.zip:report.pdf"}
    assert list(work.iterdir()) == []


def test_a_corrupt_zip_is_refused_with_its_name(tmp_path):
    ct = pydicom_file("CT_small.dcm").read_bytes()
    archive = make_zip(tmp_path / "broken.zip", {"ct.dcm": ct})
    data = bytearray(archive.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    archive.write_bytes(bytes(data))

    with pytest.raises(UploadRefused, match="broken.zip"):
        read_upload([archive], tmp_path / "work")


def test_extract_zip_writes_only_inside_its_folder(tmp_path):
    archive = make_zip(tmp_path / "ok.zip", {"a/b/ct.dcm": pydicom_file("CT_small.dcm").read_bytes()})

    written = extract_zip(archive, tmp_path / "out")

    assert written == [tmp_path / "out" / "a" / "b" / "ct.dcm"]
    assert classify_file(written[0]).header.modality == "CT"
