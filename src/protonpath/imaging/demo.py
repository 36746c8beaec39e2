"""Demo images for the demo requests (called by ``manage.py seed_demo``; idempotent, no download).

- The first request (Amina El Idrissi): a 40-slice CT built from pydicom's CT_small.dcm (its
  pixels and header; new UIDs, slices 2.5 mm apart, the demo patient's name) and pydicom's
  MR_small.dcm: fit for planning.
- The second request: pydicom's CT_small.dcm and rtstruct.dcm as they are (another patient's
  images, one slice): not fit, and the reasons say why.
- The third request (first consultation booked, so physicists see it too): the dicompyler-core
  example (98-slice CT, RTSTRUCT, RTPLAN, RTDOSE) when ``scripts/setup.d/30-dicom-testdata.sh``
  has fetched it into ``.cache/``, so the viewer shows contours.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pydicom
from django.conf import settings
from django.db import transaction
from pydicom.uid import generate_uid

from protonpath.imaging import ingest, services
from protonpath.imaging.files import classify_file
from protonpath.imaging.models import Instance, ReceivedVia
from protonpath.referrals.models import TreatmentRequest

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
RT_EXAMPLE = Path(settings.PROJECT_DIR) / ".cache" / "dicom-testdata" / "dicompyler-core" / "example_data"


def _pn(treatment_request: TreatmentRequest) -> str:
    patient = treatment_request.patient
    return f"{patient.last_name}^{patient.first_name}"


def _ct_series(dest: Path, treatment_request: TreatmentRequest, count: int = 40, spacing_mm: float = 2.5) -> list[Path]:
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    seed = [treatment_request.reference]
    ds.StudyInstanceUID = generate_uid(entropy_srcs=seed + ["study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=seed + ["ct"])
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=seed + ["frame"])
    ds.PatientName = _pn(treatment_request)
    ds.PatientBirthDate = treatment_request.patient.birth_date.strftime("%Y%m%d")
    ds.AccessionNumber = treatment_request.accession_number
    ds.SliceThickness = spacing_mm
    ds.SeriesDescription = "Planning CT (demo, from pydicom CT_small)"
    x, y, z0 = (float(v) for v in ds.ImagePositionPatient)
    written = []
    for index in range(count):
        ds.SOPInstanceUID = generate_uid(entropy_srcs=seed + ["ct", str(index)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImagePositionPatient = [x, y, z0 + index * spacing_mm]
        ds.InstanceNumber = index + 1
        path = dest / f"CT{index + 1:03d}.dcm"
        ds.save_as(path, enforce_file_format=False)
        written.append(path)
    mr = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    mr.StudyInstanceUID = ds.StudyInstanceUID
    # Its own UIDs per request: several demo requests get this set (an instance is filed once).
    mr.SeriesInstanceUID = generate_uid(entropy_srcs=seed + ["mr"])
    mr.SOPInstanceUID = generate_uid(entropy_srcs=seed + ["mr", "0"])
    mr.file_meta.MediaStorageSOPInstanceUID = mr.SOPInstanceUID
    mr.PatientName, mr.PatientBirthDate = ds.PatientName, ds.PatientBirthDate
    mr.AccessionNumber = ds.AccessionNumber
    path = dest / "MR.dcm"
    mr.save_as(path, enforce_file_format=False)
    return [*written, path]


def _rt_example(dest: Path, treatment_request: TreatmentRequest) -> list[Path]:
    """The dicompyler-core study: the one real CT slice repeated at the positions the RTSTRUCT
    references (as in tests/imaging/dicomdata.py), plus RTSTRUCT, RTPLAN, RTDOSE; the demo
    patient's name and birth date in every file."""
    if not (RT_EXAMPLE / "rtss.dcm").exists():
        return []
    rtstruct = pydicom.dcmread(RT_EXAMPLE / "rtss.dcm")
    positions: dict[str, float] = {}
    for roi in rtstruct.ROIContourSequence:
        for contour in roi.get("ContourSequence", []):
            uid = str(contour.ContourImageSequence[0].ReferencedSOPInstanceUID)
            positions.setdefault(uid, float(contour.ContourData[2]))
    identity = {
        "PatientName": _pn(treatment_request),
        "PatientBirthDate": treatment_request.patient.birth_date.strftime("%Y%m%d"),
        "AccessionNumber": treatment_request.accession_number,
    }
    written = []
    ct = pydicom.dcmread(RT_EXAMPLE / "ct.0.dcm")
    for number, (uid, z) in enumerate(sorted(positions.items(), key=lambda item: item[1]), start=1):
        ct.SOPInstanceUID = uid
        ct.file_meta.MediaStorageSOPInstanceUID = uid
        x, y, _ = ct.ImagePositionPatient
        ct.ImagePositionPatient = [x, y, z]
        ct.SliceLocation = z
        ct.InstanceNumber = number
        for key, value in identity.items():
            setattr(ct, key, value)
        path = dest / f"RTCT{number:03d}.dcm"
        ct.save_as(path, enforce_file_format=False)
        written.append(path)
    for name in ("rtss.dcm", "rtplan.dcm", "rtdose.dcm"):
        ds = pydicom.dcmread(RT_EXAMPLE / name)
        for key, value in identity.items():
            setattr(ds, key, value)
        path = dest / name
        ds.save_as(path, enforce_file_format=False)
        written.append(path)
    return written


def _index(paths: list[Path], treatment_request: TreatmentRequest) -> int:
    stored = 0
    saved: list[str] = []
    try:
        with transaction.atomic():
            for path in paths:
                dicom_file = classify_file(path, path.name)
                if dicom_file is None:
                    continue
                result = ingest.store_instance(dicom_file, treatment_request=treatment_request, via=ReceivedVia.DEMO)
                saved.extend(result.saved_names)
                stored += 0 if result.duplicate else 1
    except BaseException:
        ingest.delete_saved(saved)
        raise
    services.refresh_check_report(treatment_request)
    return stored


def seed_request(treatment_request: TreatmentRequest, number: int) -> int:
    """The demo images of the ``number``-th demo request (0, 1 or 2, see above); 0 when it has some already.

    ``seed_demo`` calls this while it builds the requests, since a file is complete only once its
    images are indexed (a DICOM file is never a mere document).
    """
    if Instance.objects.filter(series__study__treatment_request=treatment_request).exists():
        return 0
    with tempfile.TemporaryDirectory(prefix="protonpath-demo-dicom-") as tmp:
        folder = Path(tmp)
        if number == 0:
            paths = _ct_series(folder, treatment_request)
        elif number == 1:
            paths = [PYDICOM_FILES / "CT_small.dcm", PYDICOM_FILES / "rtstruct.dcm"]
        else:
            # Without the fetched example (.cache), pydicom's CT still completes the file.
            paths = _rt_example(folder, treatment_request) or [PYDICOM_FILES / "CT_small.dcm"]
        return _index(paths, treatment_request)


def seed(stdout) -> None:
    requests = list(TreatmentRequest.objects.select_related("patient").order_by("created_at", "id")[:3])
    for number, treatment_request in enumerate(requests):
        count = seed_request(treatment_request, number)
        if count:
            stdout.write(f"Images: {count} DICOM instance(s) for {treatment_request.reference}")
