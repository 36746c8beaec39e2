"""Real DICOM files for the imaging tests, and series derived from them.

Two sources, both real files shipped by packages:

- pydicom's own test files (CT_small.dcm, MR_small.dcm, rtstruct.dcm, rtplan.dcm, rtdose.dcm, a
  DICOMDIR media folder, truncated files), read from the installed package, never downloaded;
- the dicompyler-core example set (PyPI source distribution, fetched into .cache/ by
  scripts/setup.d/30-dicom-testdata.sh): one 512x512 CT slice, the RTSTRUCT drawn on its
  98-slice series, the RTPLAN and the RTDOSE of the same patient.

Only one CT slice of the dicompyler set ships, so :func:`write_rt_study` rebuilds the 98-slice
series the RTSTRUCT was drawn on: the real slice's pixels and header, with the SOP Instance UIDs
and slice positions the RTSTRUCT references. Multi-slice series for geometry tests are derived
from CT_small.dcm the same way (new UIDs, positions along the normal).

Shared helpers live here (not in a conftest.py); test modules import them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

REPO = Path(__file__).resolve().parents[2]
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
RT_EXAMPLE = REPO / ".cache" / "dicom-testdata" / "dicompyler-core" / "example_data"
SETUP_SCRIPT = REPO / "scripts" / "setup.d" / "30-dicom-testdata.sh"


def pydicom_file(name: str) -> Path:
    """A file of pydicom's bundled test data (fails, never downloads, if absent)."""
    path = PYDICOM_FILES / name
    assert path.exists(), f"pydicom's bundled test file {name} is missing"
    return path


def rt_example_dir() -> Path:
    """The dicompyler-core example set; fetched by the setup script if this machine lacks it."""
    if not (RT_EXAMPLE / "rtss.dcm").exists():
        subprocess.run(["bash", str(SETUP_SCRIPT)], cwd=REPO, check=False, capture_output=True)
    if not (RT_EXAMPLE / "rtss.dcm").exists():
        pytest.fail(f"DICOM-RT test data missing: run {SETUP_SCRIPT.relative_to(REPO)}")
    return RT_EXAMPLE


def contour_slices(rtstruct: pydicom.Dataset) -> dict[str, float]:
    """SOP Instance UID -> slice z (mm) of every image the RTSTRUCT has contours on."""
    positions: dict[str, float] = {}
    for roi in rtstruct.ROIContourSequence:
        for contour in roi.get("ContourSequence", []):
            uid = contour.ContourImageSequence[0].ReferencedSOPInstanceUID
            positions.setdefault(uid, float(contour.ContourData[2]))
    return positions


def write_rt_study(dest: Path) -> dict[str, list[Path]]:
    """Write the dicompyler-core study: 98 CT slices, RTSTRUCT, RTPLAN, RTDOSE.

    Returns
    -------
    dict
        Modality -> written paths (CT sorted by position).
    """
    source = rt_example_dir()
    dest.mkdir(parents=True, exist_ok=True)
    rtstruct = pydicom.dcmread(source / "rtss.dcm")
    template = pydicom.dcmread(source / "ct.0.dcm")
    positions = contour_slices(rtstruct)
    cts = []
    for number, (uid, z) in enumerate(sorted(positions.items(), key=lambda item: item[1]), start=1):
        ds = template
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        x, y, _ = ds.ImagePositionPatient
        ds.ImagePositionPatient = [x, y, z]
        ds.SliceLocation = z
        ds.InstanceNumber = number
        path = dest / f"CT{number:03d}.dcm"
        ds.save_as(path, enforce_file_format=False)
        cts.append(path)
    others = {}
    for modality, name in (("RTSTRUCT", "rtss.dcm"), ("RTPLAN", "rtplan.dcm"), ("RTDOSE", "rtdose.dcm")):
        others[modality] = [Path(shutil.copyfile(source / name, dest / f"{modality}.dcm"))]
    return {"CT": cts, **others}


def write_ct_series(
    dest: Path,
    count: int,
    *,
    spacing_mm: float = 2.5,
    thickness_mm: float | None = None,
    skip: tuple[int, ...] = (),
    source: str = "CT_small.dcm",
    patient_name: str | None = None,
    birth_date: str | None = None,
) -> list[Path]:
    """A series derived from one real slice: new study/series/instance UIDs, slices along z.

    Parameters
    ----------
    dest : pathlib.Path
        Folder to write ``IM0001.dcm``... into (created).
    count : int
        Slices before ``skip`` removes some.
    spacing_mm, thickness_mm : float
        Distance between slice positions and SliceThickness (defaults to the spacing).
    skip : tuple of int
        Zero-based slice indices not written (to make missing slices).
    """
    dest.mkdir(parents=True, exist_ok=True)
    ds = pydicom.dcmread(pydicom_file(source))
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.SliceThickness = thickness_mm if thickness_mm is not None else spacing_mm
    if patient_name is not None:
        ds.PatientName = patient_name
    if birth_date is not None:
        ds.PatientBirthDate = birth_date
    x, y, z0 = (float(v) for v in ds.ImagePositionPatient)
    written = []
    for index in range(count):
        if index in skip:
            continue
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImagePositionPatient = [x, y, z0 + index * spacing_mm]
        ds.InstanceNumber = index + 1
        path = dest / f"IM{index + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=False)
        written.append(path)
    return written


_SHARED_STUDY: dict[str, list[Path]] = {}


def shared_rt_study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """The dicompyler-core study written once per test session, shared by every module that
    asks (read-only for tests). Each module wraps it in its own ``rt_study`` fixture."""
    if not _SHARED_STUDY:
        _SHARED_STUDY.update(write_rt_study(tmp_path_factory.mktemp("rt-study")))
    return _SHARED_STUDY


@pytest.fixture(scope="session")
def rt_study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """The shared study as a fixture, for modules that import it by name."""
    return shared_rt_study(tmp_path_factory)
