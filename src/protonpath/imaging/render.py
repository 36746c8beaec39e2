"""What the browser viewer shows: 8-bit slices under a window, and RTSTRUCT contours in pixels.

Pure functions on pydicom datasets and numpy arrays; the web side only serves the PNG bytes
and draws the polygons over them.

Coordinates: contour points are in the patient system (LPS, mm); on a slice they become
(column, row) pixel coordinates through ImagePositionPatient, ImageOrientationPatient (row
direction first: the direction of increasing column index) and PixelSpacing (row spacing first,
then column spacing), as PS3.3 C.7.6.2.1.1 defines them.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from protonpath.imaging.checks import InstanceHeader, slice_normal


@dataclass(frozen=True)
class Window:
    """A window in modality units (HU for CT): values below center - width/2 are black."""

    center: float
    width: float
    name: str = ""


def load_window_presets(modality: str = "CT") -> dict[str, Window]:
    """Named windows for a modality, from ``data/window_presets.json`` (empty if none)."""
    text = resources.files("protonpath.imaging").joinpath("data/window_presets.json").read_text()
    presets = json.loads(text).get(modality, {})
    return {name: Window(float(w["center"]), float(w["width"]), name) for name, w in presets.items()}


def modality_values(ds: Any) -> np.ndarray:
    """The slice's pixels in modality units (RescaleSlope and RescaleIntercept applied), float32."""
    pixels = ds.pixel_array.astype(np.float32)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return pixels * slope + intercept


def default_window(ds: Any, values: np.ndarray | None = None) -> Window:
    """The window the file suggests (first WindowCenter/WindowWidth), else its value range."""
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is not None and width is not None:
        return Window(_first_number(center), max(_first_number(width), 1.0), "from file")
    values = modality_values(ds) if values is None else values
    low, high = float(values.min()), float(values.max())
    return Window((low + high) / 2, max(high - low, 1.0), "full range")


def _first_number(value: Any) -> float:
    """WindowCenter and WindowWidth may hold several values; the first is the default."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """Map modality values to 0-255 by the linear window function of PS3.3 C.11.2.1.2.1."""
    center, width = window.center, max(window.width, 1.0)
    scaled = ((values - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def render_slice(ds: Any, window: Window | str | None = None) -> np.ndarray:
    """An 8-bit image of a CT/MR slice: rows x columns, 0 black, 255 white.

    Parameters
    ----------
    ds : pydicom.Dataset
        A single-frame image with pixel data.
    window : Window, str or None
        A window, the name of a preset of the slice's modality (``"lung"``), or None for the
        file's own window.
    """
    values = modality_values(ds)
    if isinstance(window, str):
        presets = load_window_presets(str(ds.get("Modality", "")))
        if window not in presets:
            raise ValueError(f"no window preset {window!r} for modality {ds.get('Modality')}")
        window = presets[window]
    if window is None:
        window = default_window(ds, values)
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        return 255 - apply_window(values, window)
    return apply_window(values, window)


def encode_png(image: np.ndarray) -> bytes:
    """A grayscale 8-bit PNG of a 2-D uint8 array (PNG specification, no image library)."""
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError("expected a 2-D uint8 array")
    height, width = image.shape
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


# --- contours ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SliceContour:
    """One closed polygon of an ROI on one slice.

    Attributes
    ----------
    roi_number : int
    roi_name : str
    color : tuple of int
        ROIDisplayColor (R, G, B), or a default.
    points_px : numpy.ndarray
        Shape (N, 2): (column, row) in pixels, sub-pixel precision.
    """

    roi_number: int
    roi_name: str
    color: tuple[int, int, int]
    points_px: np.ndarray


DEFAULT_COLOR = (255, 0, 0)


def patient_to_pixel(points_mm: np.ndarray, image: InstanceHeader) -> np.ndarray:
    """(column, row) pixel coordinates of patient points (N, 3) on an image's plane."""
    origin = np.asarray(image.image_position_mm, dtype=float)
    orientation = np.asarray(image.image_orientation, dtype=float)
    row_spacing, column_spacing = image.pixel_spacing_mm  # type: ignore[misc]
    offsets = np.asarray(points_mm, dtype=float) - origin
    columns = offsets @ orientation[:3] / column_spacing
    rows = offsets @ orientation[3:] / row_spacing
    return np.column_stack([columns, rows])


def slice_contours(rtstruct: Any, image: InstanceHeader) -> list[SliceContour]:
    """The contours of a structure set that lie on an image.

    A contour is on the image when it references the image's SOP Instance UID, or, if it
    references no image, when its points lie within half a slice thickness of the image plane.
    """
    names = {int(r.ROINumber): str(r.get("ROIName", "")) for r in rtstruct.get("StructureSetROISequence", [])}
    normal = slice_normal(image.image_orientation)  # type: ignore[arg-type]
    plane = float(np.dot(normal, image.image_position_mm))  # type: ignore[arg-type]
    tolerance = (image.slice_thickness_mm or 1.0) / 2
    found = []
    for roi in rtstruct.get("ROIContourSequence", []):
        number = int(roi.ReferencedROINumber)
        color = tuple(int(c) for c in roi.get("ROIDisplayColor", DEFAULT_COLOR))
        for contour in roi.get("ContourSequence", []):
            points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
            if not _on_image(contour, points, image, normal, plane, tolerance):
                continue
            found.append(SliceContour(number, names.get(number, ""), color, patient_to_pixel(points, image)))  # type: ignore[arg-type]
    return found


def _on_image(contour: Any, points: np.ndarray, image: InstanceHeader, normal: np.ndarray,
              plane: float, tolerance: float) -> bool:
    references = [str(i.ReferencedSOPInstanceUID) for i in contour.get("ContourImageSequence", [])]
    if references:
        return image.sop_instance_uid in references
    return bool(np.all(np.abs(points @ normal - plane) <= tolerance))


__all__ = [
    "SliceContour",
    "Window",
    "apply_window",
    "default_window",
    "encode_png",
    "load_window_presets",
    "modality_values",
    "patient_to_pixel",
    "render_slice",
    "slice_contours",
]
