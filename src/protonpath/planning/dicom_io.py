"""Reading and writing DICOM files for planning (the only file I/O of the planning package
besides its packaged data).

* :func:`read_ct_series` - a folder's CT slices (one series) into a :class:`~ct.CT`;
* :func:`read_rtstruct` - an RT Structure Set's closed planar contours rasterised on a grid;
* :func:`read_planning_folder` - both from one folder;
* :func:`write_datasets` - save datasets built by :mod:`dicom_export`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from protonpath.planning.ct import CT, Grid
from protonpath.planning.dicom_export import StudyContext
from protonpath.planning.structures import EXTERNAL, OAR, TARGET, Structure, rasterise_contours

TARGET_TYPES = {"PTV", "CTV", "GTV", "ITV"}


@dataclass(frozen=True)
class PlanningImages:
    """CT, structures and identifiers read from a folder."""

    ct: CT
    structures: list
    context: StudyContext
    ct_slices: list


def _read_all(folder: Path) -> list[Dataset]:
    out = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        try:
            out.append(pydicom.dcmread(path, force=True))
        except Exception:  # noqa: BLE001 - not a DICOM file: skip it
            continue
    return out


def ct_from_slices(slices: list[Dataset]) -> CT:
    """CT image from axial slices of one series (sorted by position along z)."""
    if not slices:
        raise ValueError("no CT slice")
    orient = np.asarray(slices[0].ImageOrientationPatient, dtype=float)
    if not np.allclose(orient, [1, 0, 0, 0, 1, 0], atol=1e-4):
        raise ValueError("only axial, axis-aligned CT images are supported")
    slices = sorted(slices, key=lambda s: float(s.ImagePositionPatient[2]))
    z = np.array([float(s.ImagePositionPatient[2]) for s in slices])
    if len(z) > 1:
        steps = np.diff(z)
        if np.any(steps <= 0) or np.ptp(steps) > 0.01 * steps.mean() + 1e-3:
            raise ValueError("CT slices must be evenly spaced")
        dz = float(steps.mean())
    else:
        dz = float(getattr(slices[0], "SliceThickness", 1.0) or 1.0)
    hu = np.stack(
        [
            s.pixel_array.astype(np.float32) * float(getattr(s, "RescaleSlope", 1))
            + float(getattr(s, "RescaleIntercept", 0))
            for s in slices
        ]
    )
    first = slices[0]
    origin = [float(v) for v in first.ImagePositionPatient]
    spacing = (float(first.PixelSpacing[1]), float(first.PixelSpacing[0]), dz)
    return CT(hu, Grid(hu.shape, origin, spacing))


def read_ct_series(folder) -> tuple[CT, list[Dataset]]:
    """The CT series of a folder (the one with most slices if several)."""
    cts = [d for d in _read_all(Path(folder)) if getattr(d, "Modality", "") == "CT"]
    if not cts:
        raise FileNotFoundError(f"no CT image in {folder}")
    by_series: dict[str, list] = {}
    for d in cts:
        by_series.setdefault(str(d.SeriesInstanceUID), []).append(d)
    slices = max(by_series.values(), key=len)
    slices = sorted(slices, key=lambda s: float(s.ImagePositionPatient[2]))
    return ct_from_slices(slices), slices


def structures_from_rtstruct(ds: Dataset, grid: Grid) -> list[Structure]:
    """Structures of an RT Structure Set rasterised on ``grid`` (closed planar contours only)."""
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    kinds = {
        int(o.ReferencedROINumber): str(getattr(o, "RTROIInterpretedType", "")).upper()
        for o in getattr(ds, "RTROIObservationsSequence", [])
    }
    out = []
    for rc in getattr(ds, "ROIContourSequence", []):
        number = int(rc.ReferencedROINumber)
        contours = []
        for c in getattr(rc, "ContourSequence", []):
            if str(getattr(c, "ContourGeometricType", "")) != "CLOSED_PLANAR":
                continue
            pts = np.asarray(c.ContourData, dtype=float).reshape(-1, 3)
            contours.append(pts)
        if not contours:
            continue
        kind = kinds.get(number, "")
        role = TARGET if kind in TARGET_TYPES else EXTERNAL if kind == "EXTERNAL" else OAR
        out.append(
            Structure(names.get(number, f"ROI {number}"), rasterise_contours(contours, grid), role)
        )
    return out


def read_rtstruct(path, grid: Grid) -> list[Structure]:
    """Structures of an RT Structure Set file rasterised on ``grid``."""
    return structures_from_rtstruct(pydicom.dcmread(path, force=True), grid)


def read_planning_folder(folder) -> PlanningImages:
    """CT series and RT Structure Set of a folder."""
    datasets = _read_all(Path(folder))
    cts = [d for d in datasets if getattr(d, "Modality", "") == "CT"]
    if not cts:
        raise FileNotFoundError(f"no CT image in {folder}")
    by_series: dict[str, list] = {}
    for d in cts:
        by_series.setdefault(str(d.SeriesInstanceUID), []).append(d)
    slices = sorted(
        max(by_series.values(), key=len), key=lambda s: float(s.ImagePositionPatient[2])
    )
    ct = ct_from_slices(slices)
    rts = [d for d in datasets if getattr(d, "Modality", "") == "RTSTRUCT"]
    if not rts:
        raise FileNotFoundError(f"no RT Structure Set in {folder}")
    first = slices[0]
    ctx = StudyContext(
        patient_id=str(getattr(first, "PatientID", "ANON")),
        patient_name=str(getattr(first, "PatientName", "ANONYMOUS")),
        study_instance_uid=str(first.StudyInstanceUID),
        frame_of_reference_uid=str(getattr(first, "FrameOfReferenceUID", ""))
        or StudyContext().frame_of_reference_uid,
        study_id=str(getattr(first, "StudyID", "1")),
        patient_position=str(getattr(first, "PatientPosition", "HFS") or "HFS"),
    )
    return PlanningImages(ct, structures_from_rtstruct(rts[0], ct.grid), ctx, slices)


def write_datasets(datasets, folder, prefix: str) -> list[Path]:
    """Write datasets as ``prefix[_NNN].dcm`` files in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    datasets = list(datasets)
    paths = []
    for i, ds in enumerate(datasets):
        name = f"{prefix}.dcm" if len(datasets) == 1 else f"{prefix}_{i + 1:04d}.dcm"
        path = folder / name
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
