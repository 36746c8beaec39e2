"""Checks that tell staff whether a study is fit for proton planning, with reasons.

Everything here works on :class:`InstanceHeader`, a plain record of the attributes that matter,
so the checks run from the database index as well as from files. Geometry is in the patient
coordinate system (LPS, millimetres): slices are ordered by the projection of
ImagePositionPatient on the slice normal (row direction x column direction), which is right for
any orientation, not only axial.

The thresholds (slice thickness, spacing tolerance, minimum slice count) are data, in
``data/planning_requirements.json``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date
from importlib import resources
from typing import Any, Literal

import numpy as np

Severity = Literal["blocking", "warning", "info"]
IMAGE_MODALITIES = frozenset({"CT", "MR", "PT"})
MODALITY_NAMES = {"PT": "PET"}


@dataclass(frozen=True)
class InstanceHeader:
    """The attributes of one instance that the index and the checks use.

    Positions and spacings are in millimetres in the patient coordinate system (LPS). Dates are
    DICOM DA strings (``YYYYMMDD``) as found, possibly empty. Build one with
    :func:`header_from_dataset`; store it with :meth:`to_dict`.
    """

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str = ""
    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    study_date: str = ""
    study_description: str = ""
    accession_number: str = ""
    series_description: str = ""
    series_number: int | None = None
    instance_number: int | None = None
    frame_of_reference_uid: str = ""
    image_position_mm: tuple[float, float, float] | None = None
    image_orientation: tuple[float, float, float, float, float, float] | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    slice_thickness_mm: float | None = None
    rows: int | None = None
    columns: int | None = None
    number_of_frames: int = 1
    referenced_frame_of_reference_uids: tuple[str, ...] = ()
    referenced_series_instance_uids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists). Every field is a scalar or a flat tuple of
        scalars, so one pass does what :func:`dataclasses.asdict` does, without its recursive deep
        copy (a tenth of the index writer's time for an instance received over the network)."""
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name in _HEADER_FIELDS
            for value in (getattr(self, name),)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InstanceHeader:
        """The inverse of :meth:`to_dict`; unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
        return cls(**values)


_HEADER_FIELDS = tuple(f.name for f in fields(InstanceHeader))


def header_from_dataset(ds: Any) -> InstanceHeader:
    """Read an :class:`InstanceHeader` from a pydicom dataset (pixel data not needed)."""
    return InstanceHeader(
        sop_class_uid=str(ds.get("SOPClassUID", "")),
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
        modality=str(ds.get("Modality", "") or ""),
        patient_name=str(ds.get("PatientName", "") or ""),
        patient_id=str(ds.get("PatientID", "") or ""),
        patient_birth_date=str(ds.get("PatientBirthDate", "") or ""),
        study_date=str(ds.get("StudyDate", "") or ""),
        study_description=str(ds.get("StudyDescription", "") or ""),
        accession_number=str(ds.get("AccessionNumber", "") or ""),
        series_description=str(ds.get("SeriesDescription", "") or ""),
        series_number=_int_or_none(ds.get("SeriesNumber")),
        instance_number=_int_or_none(ds.get("InstanceNumber")),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or ""),
        image_position_mm=_floats(ds.get("ImagePositionPatient"), 3),
        image_orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        pixel_spacing_mm=_floats(ds.get("PixelSpacing"), 2),
        slice_thickness_mm=_float_or_none(ds.get("SliceThickness")),
        rows=_int_or_none(ds.get("Rows")),
        columns=_int_or_none(ds.get("Columns")),
        number_of_frames=_int_or_none(ds.get("NumberOfFrames")) or 1,
        referenced_frame_of_reference_uids=_referenced_frames(ds),
        referenced_series_instance_uids=_referenced_series(ds),
    )


def _int_or_none(value: Any) -> int | None:
    """Counters such as InstanceNumber are only for display: a malformed one is dropped."""
    if value in (None, ""):
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    if value in (None, ""):
        return None
    return float(value)


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    if value in (None, ""):
        return None
    values = tuple(float(v) for v in value)
    if len(values) != count:
        raise ValueError(f"expected {count} numbers, found {len(values)}")
    return values


def _referenced_frames(ds: Any) -> tuple[str, ...]:
    return tuple(
        str(item.FrameOfReferenceUID)
        for item in ds.get("ReferencedFrameOfReferenceSequence", [])
        if item.get("FrameOfReferenceUID")
    )


def _referenced_series(ds: Any) -> tuple[str, ...]:
    found = []
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                if series.get("SeriesInstanceUID"):
                    found.append(str(series.SeriesInstanceUID))
    return tuple(found)


# --- requirements, findings, reports ----------------------------------------------------------


@dataclass(frozen=True)
class PlanningRequirements:
    """What a planning image series must satisfy; see ``data/planning_requirements.json``."""

    planning_modality: str = "CT"
    min_planning_slices: int = 20
    max_slice_thickness_mm: float = 3.0
    spacing_tolerance_mm: float = 0.05
    orientation_tolerance: float = 1e-4
    accepted_modalities: tuple[str, ...] = ("CT", "MR", "PT", "RTSTRUCT", "RTPLAN", "RTDOSE")


def load_planning_requirements() -> PlanningRequirements:
    """The department's requirements, from the versioned data file."""
    text = resources.files("protonpath.imaging").joinpath("data/planning_requirements.json").read_text()
    data = {k: v for k, v in json.loads(text).items() if not k.startswith("_")}
    data["accepted_modalities"] = tuple(data["accepted_modalities"])
    return PlanningRequirements(**data)


@dataclass(frozen=True)
class Finding:
    """One observation for staff.

    Attributes
    ----------
    code : str
        Stable identifier (``missing_slices``, ``name_mismatch``...) for templates and tests.
    severity : {'blocking', 'warning', 'info'}
        Blocking findings make the study unfit for planning.
    message : str
        A sentence for staff, in English; never contains the patient's name or identifier.
    series_instance_uid : str
        The series concerned, or empty for the study.
    params : mapping
        The values quoted in ``message`` (numbers, modalities; JSON-ready), so that the web
        layer can say the same in another language from ``code`` and ``params``
        (``protonpath.imaging.messages``).
    """

    code: str
    severity: Severity
    message: str
    series_instance_uid: str = ""
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class SeriesReport:
    """Geometry and content of one series.

    Attributes
    ----------
    slice_count : int
        Distinct slice positions (frames of multi-frame images are not counted).
    slice_thicknesses_mm : tuple of float
        The distinct SliceThickness values found.
    spacing_mm : float or None
        Median distance between neighbouring slices along the normal.
    spacing_regular : bool
    missing_slices : int
        Slices that the gaps in the spacing imply are absent.
    orientation_consistent : bool
    """

    series_instance_uid: str
    modality: str
    description: str
    instance_count: int
    slice_count: int
    slice_thicknesses_mm: tuple[float, ...]
    spacing_mm: float | None
    spacing_regular: bool
    missing_slices: int
    orientation_consistent: bool
    frame_of_reference_uid: str
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class ExpectedIdentity:
    """Who the request for treatment is about, as plain data (from the referral, not DICOM)."""

    family_name: str
    given_names: str = ""
    birth_date: date | None = None


@dataclass(frozen=True)
class StudyReport:
    """The verdict shown to staff.

    Attributes
    ----------
    fit_for_planning : bool
        True when a planning series meets the requirements and nothing blocks.
    findings : tuple of Finding
        Every reason, blocking first.
    modalities : tuple of str
        Modalities present, in a fixed order (CT, MR, PT, RTSTRUCT, RTPLAN, RTDOSE, then others).
    series : tuple of SeriesReport
    planning_series_instance_uid : str
        The series chosen as planning CT, or empty.
    """

    fit_for_planning: bool
    findings: tuple[Finding, ...]
    modalities: tuple[str, ...]
    series: tuple[SeriesReport, ...]
    planning_series_instance_uid: str = ""

    @property
    def reasons(self) -> tuple[str, ...]:
        """The blocking findings' messages: why the study is not fit (empty when it is)."""
        return tuple(f.message for f in self.findings if f.severity == "blocking")


# --- series geometry --------------------------------------------------------------------------


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """Unit normal of a slice from ImageOrientationPatient (row cosines x column cosines)."""
    row = np.asarray(orientation[:3], dtype=float)
    column = np.asarray(orientation[3:], dtype=float)
    normal = np.cross(row, column)
    norm = np.linalg.norm(normal)
    if norm < 1e-6:
        raise ValueError("ImageOrientationPatient has parallel row and column directions")
    return normal / norm


def slice_positions_mm(headers: Sequence[InstanceHeader]) -> np.ndarray:
    """Each slice's position along the series normal (mm), in the order of ``headers``."""
    normal = slice_normal(headers[0].image_orientation)  # type: ignore[arg-type]
    positions = np.array([h.image_position_mm for h in headers], dtype=float)
    return positions @ normal


def check_series(
    headers: Sequence[InstanceHeader], requirements: PlanningRequirements = PlanningRequirements()
) -> SeriesReport:
    """Geometry and consistency of one image series.

    Parameters
    ----------
    headers : sequence of InstanceHeader
        All instances of one series (any order).
    requirements : PlanningRequirements

    Returns
    -------
    SeriesReport
    """
    first = headers[0]
    uid = first.series_instance_uid
    base = dict(
        series_instance_uid=uid,
        modality=first.modality,
        description=first.series_description,
        instance_count=len(headers),
        frame_of_reference_uid=first.frame_of_reference_uid,
        slice_thicknesses_mm=tuple(sorted({h.slice_thickness_mm for h in headers if h.slice_thickness_mm is not None})),
    )
    if first.modality not in IMAGE_MODALITIES or any(h.number_of_frames > 1 for h in headers):
        return SeriesReport(
            **base, slice_count=len(headers), spacing_mm=None, spacing_regular=True,
            missing_slices=0, orientation_consistent=True,
        )
    findings: list[Finding] = []
    located = [h for h in headers if h.image_position_mm is not None and h.image_orientation is not None]
    if len(located) < len(headers):
        unlocated = len(headers) - len(located)
        findings.append(_finding("slice_without_position", "blocking",
                                 f"{unlocated} image(s) have no position or orientation", uid,
                                 count=unlocated))
    if not located:
        return SeriesReport(**base, slice_count=len(headers), spacing_mm=None, spacing_regular=False,
                            missing_slices=0, orientation_consistent=False, findings=tuple(findings))
    consistent = _orientation_consistent(located, requirements.orientation_tolerance)
    if not consistent:
        findings.append(_finding("orientation_inconsistent", "blocking",
                                 "the images of this series do not share one orientation", uid))
    if len({(h.rows, h.columns) for h in located}) > 1:
        findings.append(_finding("matrix_inconsistent", "blocking",
                                 "the images of this series have different matrix sizes", uid))
    positions = np.sort(slice_positions_mm(located))
    spacing, regular, missing, geometry_findings = _spacing(positions, requirements.spacing_tolerance_mm, uid)
    findings.extend(geometry_findings)
    return SeriesReport(
        **base, slice_count=len(np.unique(np.round(positions, 3))), spacing_mm=spacing,
        spacing_regular=regular, missing_slices=missing, orientation_consistent=consistent,
        findings=tuple(findings),
    )


def _orientation_consistent(headers: Sequence[InstanceHeader], tolerance: float) -> bool:
    orientations = np.array([h.image_orientation for h in headers], dtype=float)
    return bool(np.all(np.abs(orientations - orientations[0]) <= tolerance))


def _spacing(
    positions: np.ndarray, tolerance: float, uid: str
) -> tuple[float | None, bool, int, list[Finding]]:
    """Median spacing, regularity, slices missing from gaps, and what to tell staff."""
    if len(positions) < 2:
        return None, True, 0, []
    steps = np.diff(positions)
    findings = []
    duplicates = int(np.sum(steps <= 1e-3))
    if duplicates:
        findings.append(_finding("duplicate_positions", "blocking",
                                 f"{duplicates} slice position(s) occur more than once", uid, count=duplicates))
    steps = steps[steps > 1e-3]
    if len(steps) == 0:
        return None, False, 0, findings
    nominal = float(np.median(steps))
    regular = bool(np.all(np.abs(steps - nominal) <= tolerance))
    gaps = steps[steps > 1.5 * nominal]
    missing = int(np.sum(np.rint(gaps / nominal) - 1))
    if missing:
        findings.append(_finding("missing_slices", "blocking",
                                 f"{missing} slice(s) missing: {len(gaps)} gap(s) wider than the {nominal:.2f} mm spacing", uid,
                                 count=missing, gaps=len(gaps), spacing_mm=nominal))
    elif not regular:
        low, high = float(steps.min()), float(steps.max())
        findings.append(_finding("irregular_spacing", "blocking",
                                 f"slice spacing varies from {low:.2f} to {high:.2f} mm", uid,
                                 min_mm=low, max_mm=high))
    return nominal, regular, missing, findings


def _finding(code: str, severity: Severity, message: str, uid: str = "", **params: Any) -> Finding:
    """A finding; ``params`` are the values quoted in ``message`` (plain Python, JSON-ready)."""
    plain = {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}
    return Finding(code=code, severity=severity, message=message, series_instance_uid=uid, params=plain)


# --- identity ---------------------------------------------------------------------------------


def normalised_name(text: str) -> str:
    """Case-, accent- and punctuation-free form of a name, for comparison only."""
    decomposed = unicodedata.normalize("NFKD", text)
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"[^0-9a-z]+", " ", letters.casefold()).strip()


def split_person_name(value: str) -> tuple[str, str]:
    """(family, given) from a DICOM PN value (``Family^Given^Middle^Prefix^Suffix``)."""
    alphabetic = value.split("=")[0]
    parts = alphabetic.split("^")
    return parts[0], parts[1] if len(parts) > 1 else ""


def check_identity(headers: Sequence[InstanceHeader], expected: ExpectedIdentity | None) -> list[Finding]:
    """Whether the patient in the images is the patient of the request.

    More than one distinct patient in a study blocks; so does a family name, first given name or
    birth date that differs from the request. An attribute absent from the images is a warning.
    Messages never quote the names.
    """
    findings: list[Finding] = []
    identities = Counter((normalised_name(h.patient_name), h.patient_birth_date) for h in headers)
    if len({name for name, _ in identities}) > 1 or len({d for _, d in identities if d}) > 1:
        findings.append(_finding("several_patients", "blocking",
                                 f"the images carry {len(identities)} different patient identities",
                                 count=len(identities)))
    if expected is None:
        return findings
    names = {h.patient_name for h in headers}
    for name in sorted(names):
        findings.extend(_compare_name(name, expected))
    for birth in sorted({h.patient_birth_date for h in headers}):
        findings.extend(_compare_birth_date(birth, expected))
    return findings


def _compare_name(dicom_name: str, expected: ExpectedIdentity) -> list[Finding]:
    family, given = (normalised_name(p) for p in split_person_name(dicom_name))
    if not family:
        return [_finding("name_absent", "warning", "the images carry no patient name to compare")]
    want_family = normalised_name(expected.family_name)
    want_given = normalised_name(expected.given_names).split()
    if family != want_family:
        return [_finding("name_mismatch", "blocking", "the family name in the images differs from the request",
                         part="family")]
    if want_given and given and given.split()[0] != want_given[0]:
        return [_finding("name_mismatch", "blocking", "the given name in the images differs from the request",
                         part="given")]
    return []


def _compare_birth_date(dicom_date: str, expected: ExpectedIdentity) -> list[Finding]:
    if not dicom_date.strip():
        return [_finding("birth_date_absent", "warning", "the images carry no birth date to compare")]
    if expected.birth_date is None:
        return []
    if dicom_date.strip() != expected.birth_date.strftime("%Y%m%d"):
        return [_finding("birth_date_mismatch", "blocking", "the birth date in the images differs from the request")]
    return []


# --- study verdict ----------------------------------------------------------------------------

MODALITY_ORDER = ("CT", "MR", "PT", "RTSTRUCT", "RTPLAN", "RTDOSE")


def modalities_present(headers: Sequence[InstanceHeader]) -> tuple[str, ...]:
    """Distinct modalities, CT/MR/PT/RTSTRUCT/RTPLAN/RTDOSE first in that order, then others."""
    found = {h.modality for h in headers if h.modality}
    ordered = [m for m in MODALITY_ORDER if m in found]
    return tuple(ordered + sorted(found - set(ordered)))


def assess_study(
    headers: Sequence[InstanceHeader],
    expected: ExpectedIdentity | None = None,
    requirements: PlanningRequirements | None = None,
) -> StudyReport:
    """The 'fit for planning' verdict for the images of one request, with reasons.

    Parameters
    ----------
    headers : sequence of InstanceHeader
        Every instance received for the request (one or more studies).
    expected : ExpectedIdentity, optional
        The patient of the request; without it, identity is only checked for consistency.
    requirements : PlanningRequirements, optional
        Defaults to :func:`load_planning_requirements`.

    Returns
    -------
    StudyReport
    """
    requirements = requirements or load_planning_requirements()
    if not headers:
        finding = _finding("no_images", "blocking", "no images have been received")
        return StudyReport(False, (finding,), (), ())
    by_series: dict[str, list[InstanceHeader]] = defaultdict(list)
    for header in headers:
        by_series[header.series_instance_uid].append(header)
    series = tuple(check_series(group, requirements) for group in by_series.values())
    findings = [f for report in series for f in report.findings]
    findings.extend(check_identity(headers, expected))
    findings.extend(_modality_findings(headers, requirements))
    planning, planning_findings = _choose_planning_series(series, requirements)
    findings.extend(planning_findings)
    findings.extend(_structure_findings(headers, series))
    findings.sort(key=lambda f: ("blocking", "warning", "info").index(f.severity))
    fit = planning is not None and not any(f.severity == "blocking" for f in findings)
    return StudyReport(
        fit_for_planning=fit,
        findings=tuple(findings),
        modalities=modalities_present(headers),
        series=series,
        planning_series_instance_uid=planning.series_instance_uid if planning else "",
    )


def _modality_findings(headers: Sequence[InstanceHeader], requirements: PlanningRequirements) -> list[Finding]:
    present = modalities_present(headers)
    findings = [
        _finding("modality_unexpected", "warning", f"images of modality {m} are not used for planning", modality=m)
        for m in present if m not in requirements.accepted_modalities
    ]
    for optional in ("RTSTRUCT", "MR", "PT"):
        if optional not in present:
            name = MODALITY_NAMES.get(optional, optional)
            findings.append(_finding(f"no_{optional.lower()}", "info", f"no {name} received", modality=name))
    return findings


def _choose_planning_series(
    series: Sequence[SeriesReport], requirements: PlanningRequirements
) -> tuple[SeriesReport | None, list[Finding]]:
    """The planning CT: the series of the planning modality with the most slices."""
    candidates = [s for s in series if s.modality == requirements.planning_modality]
    if not candidates:
        modality = requirements.planning_modality
        return None, [_finding("no_planning_ct", "blocking", f"no {modality} series received", modality=modality)]
    chosen = max(candidates, key=lambda s: s.slice_count)
    findings = []
    uid = chosen.series_instance_uid
    if chosen.slice_count < requirements.min_planning_slices:
        findings.append(_finding("too_few_slices", "blocking",
                                 f"the planning {chosen.modality} has {chosen.slice_count} slices, "
                                 f"fewer than {requirements.min_planning_slices}", uid,
                                 modality=chosen.modality, count=chosen.slice_count,
                                 minimum=requirements.min_planning_slices))
    thickest = max(chosen.slice_thicknesses_mm, default=None)
    if thickest is None:
        findings.append(_finding("slice_thickness_absent", "warning", "the planning series does not state its slice thickness", uid))
    elif thickest > requirements.max_slice_thickness_mm + 1e-6:
        findings.append(_finding("slices_too_thick", "blocking",
                                 f"slices are {thickest:g} mm thick, more than {requirements.max_slice_thickness_mm:g} mm", uid,
                                 thickness_mm=thickest, max_thickness_mm=requirements.max_slice_thickness_mm))
    if len(chosen.slice_thicknesses_mm) > 1:
        findings.append(_finding("slice_thickness_varies", "warning", "slice thickness varies within the planning series", uid))
    if chosen.spacing_mm and thickest and chosen.spacing_mm > thickest + requirements.spacing_tolerance_mm:
        findings.append(_finding("gaps_between_slices", "warning",
                                 f"slices {thickest:g} mm thick are {chosen.spacing_mm:.2f} mm apart", uid,
                                 thickness_mm=thickest, spacing_mm=chosen.spacing_mm))
    return chosen, findings


def _structure_findings(headers: Sequence[InstanceHeader], series: Sequence[SeriesReport]) -> list[Finding]:
    """An RTSTRUCT must be drawn on images we have, in their frame of reference."""
    frames = {s.frame_of_reference_uid for s in series if s.modality in IMAGE_MODALITIES}
    image_series = {s.series_instance_uid for s in series if s.modality in IMAGE_MODALITIES}
    findings = []
    for header in headers:
        if header.modality != "RTSTRUCT":
            continue
        uid = header.series_instance_uid
        if header.referenced_frame_of_reference_uids and not frames & set(header.referenced_frame_of_reference_uids):
            findings.append(_finding("structures_other_frame", "warning",
                                     "the structure set refers to a frame of reference of no received image series", uid))
        elif header.referenced_series_instance_uids and not image_series & set(header.referenced_series_instance_uids):
            findings.append(_finding("structures_other_series", "warning",
                                     "the structure set was drawn on an image series that was not received", uid))
    return findings


__all__ = [
    "ExpectedIdentity",
    "Finding",
    "InstanceHeader",
    "PlanningRequirements",
    "SeriesReport",
    "StudyReport",
    "assess_study",
    "check_identity",
    "check_series",
    "header_from_dataset",
    "load_planning_requirements",
    "modalities_present",
    "normalised_name",
    "slice_normal",
    "slice_positions_mm",
    "split_person_name",
]
