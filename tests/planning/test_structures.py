"""Contours rasterised to voxel masks: holes, islands, a real RTSTRUCT, overlaps."""

from pathlib import Path

import numpy as np
import pydicom

from protonpath.planning.ct import Grid
from protonpath.planning.dicom_io import structures_from_rtstruct
from protonpath.planning.structures import (
    EXTERNAL,
    OAR,
    TARGET,
    Structure,
    rasterise_contours,
    rasterise_slice,
    resolve_overlaps,
)

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def square(cx, cy, half):
    return np.array(
        [
            [cx - half, cy - half],
            [cx + half, cy - half],
            [cx + half, cy + half],
            [cx - half, cy + half],
        ]
    )


def test_square_covers_the_voxel_centres_inside():
    x = y = np.arange(-20.0, 21.0, 1.0)
    m = rasterise_slice([square(0, 0, 5.5)], x, y)
    assert m.sum() == 11 * 11
    assert m[20, 20] and not m[20, 26]


def test_a_contour_inside_another_is_a_hole():
    x = y = np.arange(-20.0, 21.0, 1.0)
    m = rasterise_slice([square(0, 0, 10.5), square(0, 0, 4.5)], x, y)
    assert m.sum() == 21 * 21 - 9 * 9
    assert not m[20, 20]  # centre is in the hole


def test_separate_contours_on_one_slice_add_up():
    x = y = np.arange(-20.0, 21.0, 1.0)
    m = rasterise_slice([square(-10, 0, 3.5), square(10, 0, 3.5)], x, y)
    assert m.sum() == 2 * 7 * 7


def test_circle_area_is_preserved():
    x = y = np.arange(-50.0, 50.5, 0.5)
    t = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    circle = np.column_stack([30 * np.cos(t) + 1.3, 30 * np.sin(t) - 2.1])
    area = rasterise_slice([circle], x, y).sum() * 0.25
    assert abs(area - np.pi * 30**2) / (np.pi * 30**2) < 0.01


def test_contours_go_to_their_slices_only():
    grid = Grid((5, 41, 41), (-20.0, -20.0, 0.0), (1.0, 1.0, 2.0))
    c0 = np.column_stack([square(0, 0, 5.5), np.full(4, 2.0)])
    c1 = np.column_stack([square(0, 0, 5.5), np.full(4, 6.0)])
    mask = rasterise_contours([c0, c1], grid)
    assert mask[1].sum() == 121 and mask[3].sum() == 121
    assert mask[0].sum() == mask[2].sum() == mask[4].sum() == 0


def test_pydicom_rtstruct_external_rectangle_is_rasterised():
    ds = pydicom.dcmread(PYDICOM_FILES / "rtstruct.dcm", force=True)
    grid = Grid((3, 171, 211), (-210.0, -170.0, -200.0), (2.0, 2.0, 10.0))
    structures = structures_from_rtstruct(ds, grid)
    # the two ISOCENTER ROIs are points, not closed contours: only "patient" is a volume
    assert [s.name for s in structures] == ["patient"]
    patient = structures[0]
    assert patient.role == EXTERNAL
    per_slice = patient.mask.sum(axis=(1, 2)) * 4.0  # mm^2
    assert np.allclose(per_slice, 400 * 300, rtol=0.02)


def test_overlaps_go_to_the_higher_priority_structure():
    a = np.zeros((1, 4, 4), bool)
    a[0, :2] = True
    b = np.ones((1, 4, 4), bool)
    out = resolve_overlaps(
        [Structure("BODY", b, EXTERNAL), Structure("PTV", a, TARGET), Structure("X", a, OAR)]
    )
    assert out["PTV"].sum() == 8 and out["X"].sum() == 0 and out["BODY"].sum() == 8
    out = resolve_overlaps(
        [Structure("PTV", a, TARGET), Structure("X", a, OAR)], priority=["X", "PTV"]
    )
    assert out["X"].sum() == 8 and out["PTV"].sum() == 0


DICOMPYLER_DATA = (
    Path(__file__).resolve().parents[2] / ".cache/dicom-testdata/dicompyler-core/example_data"
)


def test_real_breast_rtstruct_matches_an_independent_even_odd_fill():
    """dicompyler-core's example RTSTRUCT (scripts/setup.d/30-dicom-testdata.sh): lungs with up
    to seven contours on a slice, the body with four.  Every voxel agrees with matplotlib's
    point-in-polygon test combined by the even-odd rule."""
    from matplotlib.path import Path as MplPath

    rtss = DICOMPYLER_DATA / "rtss.dcm"
    assert rtss.exists(), "run scripts/setup.d/30-dicom-testdata.sh"
    ds = pydicom.dcmread(rtss, force=True)
    grid = Grid((98, 128, 128), (-275.0, -524.0, -122.44), (4.296876, 4.296876, 3.0))
    structures = {s.name: s for s in structures_from_rtstruct(ds, grid)}
    assert {"BODY", "Lt Lung", "Heart", "Tumor Bed"} <= set(structures)
    x, y, z = grid.axes_mm()
    xx, yy = np.meshgrid(x, y)
    centres = np.column_stack([xx.ravel(), yy.ravel()])
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    for rc in ds.ROIContourSequence:
        name = names[int(rc.ReferencedROINumber)]
        if name not in ("BODY", "Lt Lung", "Heart"):
            continue
        expected = np.zeros(grid.shape, bool)
        for c in rc.ContourSequence:
            pts = np.asarray(c.ContourData, float).reshape(-1, 3)
            k = int(np.argmin(np.abs(z - pts[0, 2])))
            if abs(z[k] - pts[0, 2]) > 1.5:
                continue
            inside = MplPath(pts[:, :2]).contains_points(centres).reshape(len(y), len(x))
            expected[k] ^= inside
        got = structures[name].mask
        disagree = (got ^ expected).sum()
        assert got.sum() > 1000
        assert disagree <= 1e-3 * expected.sum(), (name, disagree, expected.sum())
