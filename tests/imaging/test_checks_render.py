"""What the viewer shows staff checking images: windowed slices and contours in pixels."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image

from protonpath.imaging.checks import header_from_dataset
from protonpath.imaging.render import (
    Window,
    apply_window,
    encode_png,
    load_window_presets,
    modality_values,
    patient_to_pixel,
    render_slice,
    slice_contours,
)
from tests.imaging.dicomdata import pydicom_file, rt_example_dir


@pytest.fixture(scope="module")
def body_slice():
    """The one real CT slice of the dicompyler-core study, and the RTSTRUCT drawn on its series
    (the other 97 slices of ``rt_study`` reuse its pixels, so only this one matches its contours)."""
    example = rt_example_dir()
    return pydicom.dcmread(example / "ct.0.dcm"), pydicom.dcmread(example / "rtss.dcm")


def test_ct_values_are_hounsfield_units_and_presets_window_them(body_slice):
    ct, _ = body_slice
    hu = modality_values(ct)

    lung = render_slice(ct, "lung")
    bone = render_slice(ct, "bone")

    assert hu.min() < -900 and hu.max() > 300  # air around the patient, bone inside
    assert lung.shape == (512, 512) and lung.dtype == np.uint8
    soft = (hu > 0) & (hu < 80)
    assert bone[0, 0] == 0 and lung[0, 0] < 80  # air: black in bone window, dark in lung window
    assert lung[soft].mean() > bone[soft].mean()  # soft tissue is bright in lung window, dim in bone


def test_window_function_follows_the_standard():
    values = np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0])

    out = apply_window(values, Window(center=40, width=400))

    assert list(out) == [0, 0, 128, 255, 255]


def test_presets_come_from_the_data_file():
    presets = load_window_presets("CT")

    assert presets["lung"] == Window(-600, 1500, "lung")
    assert load_window_presets("XA") == {}


def test_an_unknown_preset_is_an_error():
    with pytest.raises(ValueError, match="no window preset"):
        render_slice(pydicom.dcmread(pydicom_file("MR_small.dcm")), "lung")


def test_png_bytes_decode_to_the_same_pixels(body_slice):
    image = render_slice(body_slice[0], "soft tissue")

    decoded = np.asarray(Image.open(io.BytesIO(encode_png(image))))

    assert np.array_equal(decoded, image)


def test_body_contour_encloses_tissue_and_lies_on_the_skin(body_slice):
    ct, rtstruct = body_slice
    header = header_from_dataset(ct)

    contours = slice_contours(rtstruct, header)

    body = [c for c in contours if c.roi_name == "BODY"]
    assert body, [c.roi_name for c in contours]
    points = body[0].points_px
    assert points.min() >= 0 and points.max() < 512
    hu = modality_values(ct)
    column, row = np.rint(points.mean(axis=0)).astype(int)
    assert hu[row, column] > -200  # the centroid of the body outline is inside the patient
    # Each skin point separates air outside from tissue inside: check along the line to the centroid.
    outside = np.rint(points + (points - points.mean(axis=0)) * 0.08).astype(int)
    inside = np.rint(points - (points - points.mean(axis=0)) * 0.08).astype(int)
    ok_out = [hu[r, c] < -500 for c, r in outside if 0 <= r < 512 and 0 <= c < 512]
    ok_in = [hu[r, c] > -500 for c, r in inside]
    assert np.mean(ok_out) > 0.8 and np.mean(ok_in) > 0.8


def test_contours_of_other_slices_are_not_drawn(body_slice):
    ct, rtstruct = body_slice
    header = header_from_dataset(ct)
    drawn = slice_contours(rtstruct, header)
    total = sum(len(roi.get("ContourSequence", [])) for roi in rtstruct.ROIContourSequence)

    assert 0 < len(drawn) < total


def test_patient_points_map_to_pixel_indices():
    header = header_from_dataset(pydicom.dcmread(pydicom_file("CT_small.dcm"), stop_before_pixels=True))
    origin = np.array(header.image_position_mm)
    row_step, column_step = header.pixel_spacing_mm
    row_direction = np.array(header.image_orientation[:3])
    column_direction = np.array(header.image_orientation[3:])
    point = origin + 10 * column_step * row_direction + 3 * row_step * column_direction

    assert patient_to_pixel(point[None, :], header)[0] == pytest.approx([10, 3])
