"""What the browser viewer needs from a DICOM file: a windowed 8-bit PNG of a slice, and RTSTRUCT
contours in the pixel coordinates of each slice.

A thin adapter, Django-free, written while the core's ``render.py`` is not there; it takes pydicom
datasets and returns bytes and plain data. Coordinates: contour points are in the patient
coordinate system (LPS, mm); a slice maps them to (column, row) pixel indices with its
ImagePositionPatient (centre of the first pixel), ImageOrientationPatient (row and column
direction cosines) and PixelSpacing (row spacing, column spacing).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

#: Window presets as (centre, width) in Hounsfield units.
PRESETS: dict[str, tuple[float, float]] = {
    "soft_tissue": (40.0, 400.0),
    "brain": (40.0, 80.0),
    "bone": (400.0, 1800.0),
    "lung": (-600.0, 1500.0),
}


def modality_values(ds, frame: int = 0) -> np.ndarray:
    """The stored pixels of one frame in modality units (HU for CT), as float32.

    Raises
    ------
    ValueError
        If the file has no pixel data or pydicom cannot decode it (a compression without its
        plugin installed) or ``frame`` is out of range.
    """
    if "PixelData" not in ds:
        raise ValueError("the instance has no pixel data")
    try:
        pixels = ds.pixel_array
    except Exception as error:  # pydicom raises many kinds for codecs it lacks
        raise ValueError(f"the pixel data cannot be decoded ({type(error).__name__})") from error
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        if not 0 <= frame < frames:
            raise ValueError("no such frame")
        pixels = pixels[frame]
    if pixels.ndim != 2:
        raise ValueError("only greyscale images are shown")
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return pixels.astype(np.float32) * slope + intercept


def default_window(ds, values: np.ndarray) -> tuple[float, float]:
    """The window stored in the file, else soft tissue for CT, else the 1st-99th percentiles."""
    centre, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if centre is not None and width is not None:
        centre = centre[0] if not isinstance(centre, int | float) and hasattr(centre, "__getitem__") else centre
        width = width[0] if not isinstance(width, int | float) and hasattr(width, "__getitem__") else width
        if float(width) > 0:
            return float(centre), float(width)
    if str(ds.get("Modality", "")) == "CT":
        return PRESETS["soft_tissue"]
    low, high = np.percentile(values, [1, 99])
    return float((low + high) / 2), float(max(high - low, 1.0))


def windowed(values: np.ndarray, centre: float, width: float, invert: bool = False) -> np.ndarray:
    """Linear window: ``centre - width/2`` maps to 0, ``centre + width/2`` to 255 (uint8)."""
    width = max(float(width), 1.0)
    low = centre - width / 2
    scaled = np.clip((values - low) / width, 0.0, 1.0) * 255.0
    image = np.rint(scaled).astype(np.uint8)
    return 255 - image if invert else image


def slice_png(ds, *, centre: float | None = None, width: float | None = None, frame: int = 0) -> bytes:
    """A PNG of one slice with the given window (or the default one)."""
    values = modality_values(ds, frame)
    if centre is None or width is None:
        centre, width = default_window(ds, values)
    invert = str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1"
    buffer = io.BytesIO()
    Image.fromarray(windowed(values, centre, width, invert), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


# --- contours ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SliceGeometry:
    """Where a slice lies: origin (centre of the first pixel, mm), row and column direction
    cosines, spacing between rows and between columns (mm)."""

    origin: np.ndarray
    row_cosines: np.ndarray
    column_cosines: np.ndarray
    row_spacing_mm: float
    column_spacing_mm: float

    @classmethod
    def from_header(cls, position: Sequence[float], orientation: Sequence[float], spacing: Sequence[float]) -> SliceGeometry:
        return cls(
            origin=np.asarray(position, dtype=float),
            row_cosines=np.asarray(orientation[:3], dtype=float),
            column_cosines=np.asarray(orientation[3:], dtype=float),
            row_spacing_mm=float(spacing[0]),
            column_spacing_mm=float(spacing[1]),
        )

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_cosines, self.column_cosines)

    def to_pixels(self, points_mm: np.ndarray) -> np.ndarray:
        """(N, 3) patient points -> (N, 2) (column, row) pixel coordinates (fractional)."""
        offset = np.asarray(points_mm, dtype=float) - self.origin
        columns = offset @ self.row_cosines / self.column_spacing_mm
        rows = offset @ self.column_cosines / self.row_spacing_mm
        return np.stack([columns, rows], axis=1)

    def distance_mm(self, points_mm: np.ndarray) -> np.ndarray:
        """Signed distance of each point from the slice plane."""
        return (np.asarray(points_mm, dtype=float) - self.origin) @ self.normal


@dataclass(frozen=True)
class Contour:
    roi_number: int
    points_mm: np.ndarray  # (N, 3)
    image_uids: tuple[str, ...]  # ContourImageSequence references, when present


@dataclass(frozen=True)
class Structure:
    number: int
    name: str
    colour: tuple[int, int, int]
    contours: tuple[Contour, ...]


def structures(rtstruct) -> list[Structure]:
    """Closed planar contours of an RTSTRUCT dataset, by ROI, with names and display colours."""
    names = {int(r.ROINumber): str(r.get("ROIName", "")) for r in rtstruct.get("StructureSetROISequence", [])}
    found = []
    for roi in rtstruct.get("ROIContourSequence", []):
        number = int(roi.ReferencedROINumber)
        colour = tuple(int(c) for c in roi.get("ROIDisplayColor", [255, 0, 0]))[:3]
        contours = []
        for item in roi.get("ContourSequence", []):
            data = item.get("ContourData")
            if not data or len(data) < 9:
                continue
            uids = tuple(str(i.ReferencedSOPInstanceUID) for i in item.get("ContourImageSequence", []))
            contours.append(Contour(number, np.asarray(data, dtype=float).reshape(-1, 3), uids))
        found.append(Structure(number, names.get(number, str(number)), colour, tuple(contours)))  # type: ignore[arg-type]
    return found


def contours_on_slice(
    all_structures: Sequence[Structure], sop_instance_uid: str, geometry: SliceGeometry, tolerance_mm: float
) -> list[dict]:
    """The polygons to draw on one slice: contours that reference it, or that lie in its plane
    (within ``tolerance_mm``, half the slice spacing) when they reference no image."""
    drawn = []
    for structure in all_structures:
        polygons = []
        for contour in structure.contours:
            if contour.image_uids:
                on_slice = sop_instance_uid in contour.image_uids
            else:
                on_slice = bool(np.all(np.abs(geometry.distance_mm(contour.points_mm)) <= tolerance_mm))
            if on_slice:
                polygons.append(np.round(geometry.to_pixels(contour.points_mm), 2).tolist())
        if polygons:
            drawn.append({"number": structure.number, "name": structure.name, "colour": list(structure.colour), "polygons": polygons})
    return drawn
