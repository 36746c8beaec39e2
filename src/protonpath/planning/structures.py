"""Delineated structures (targets, organs at risk) as voxel masks.

Contours are rasterised with the even-odd rule per slice: a voxel centre inside an odd number
of a slice's contours is inside the structure, so a contour drawn inside another one is a hole
(the way DICOM RTSTRUCT encodes holes), and separate islands on one slice simply add up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protonpath.planning.ct import Grid, resample_nearest

TARGET = "target"
OAR = "oar"
EXTERNAL = "external"


@dataclass(frozen=True)
class Structure:
    """A named voxel mask on a grid.

    Attributes
    ----------
    name : str
        ROI name, e.g. ``"PTV"``.
    mask : ndarray of bool, shape grid.shape
        Voxels whose centre lies inside the structure.
    role : str
        ``"target"``, ``"oar"`` or ``"external"`` (the body outline).
    """

    name: str
    mask: np.ndarray
    role: str = OAR

    def volume_cc(self, grid: Grid) -> float:
        return float(self.mask.sum() * grid.voxel_volume_mm3 / 1000.0)


def rasterise_slice(polygons_xy_mm, x_mm: np.ndarray, y_mm: np.ndarray) -> np.ndarray:
    """Even-odd fill of closed polygons on one axial slice.

    Parameters
    ----------
    polygons_xy_mm : sequence of ndarray, each (n_points, 2)
        Closed polygons (the last point joins the first), in patient ``(x, y)`` mm.
    x_mm, y_mm : ndarray
        Voxel-centre coordinates of the slice's columns and rows (ascending).

    Returns
    -------
    ndarray of bool, shape (len(y_mm), len(x_mm))
    """
    mask = np.zeros((len(y_mm), len(x_mm)), dtype=bool)
    for poly in polygons_xy_mm:
        poly = np.asarray(poly, dtype=float)
        if len(poly) < 3:
            continue
        mask ^= _fill_polygon(poly, x_mm, y_mm)
    return mask


def _fill_polygon(poly: np.ndarray, x_mm: np.ndarray, y_mm: np.ndarray) -> np.ndarray:
    """Crossing-number test of every voxel centre against one polygon (vectorised)."""
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    out = np.zeros((len(y_mm), len(x_mm)), dtype=bool)
    rows = np.nonzero((y_mm >= min(y0.min(), y1.min())) & (y_mm <= max(y0.max(), y1.max())))[0]
    if len(rows) == 0:
        return out
    yr = y_mm[rows][:, None]
    # half-open rule: an edge counts if the row lies in [min(y0,y1), max(y0,y1))
    spans = ((y0 <= yr) & (y1 > yr)) | ((y1 <= yr) & (y0 > yr))
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = x0 + (yr - y0) * (x1 - x0) / (y1 - y0)
    # a crossing at c flips the parity of every voxel centre at x >= c on its row
    rr, ee = np.nonzero(spans)
    first = np.searchsorted(x_mm, xc[rr, ee], side="left")
    flips = np.zeros((len(rows), len(x_mm) + 1), dtype=np.int32)
    np.add.at(flips, (rr, first), 1)
    out[rows] = (np.cumsum(flips[:, :-1], axis=1) % 2) == 1
    return out


def rasterise_contours(contours_mm, grid: Grid, slice_tolerance_mm: float | None = None):
    """Voxel mask of a structure given by planar contours.

    Parameters
    ----------
    contours_mm : sequence of ndarray, each (n_points, 3)
        Closed planar contours in patient ``(x, y, z)`` mm, each on one axial plane.
    grid : Grid
        Grid of the mask.
    slice_tolerance_mm : float, optional
        How far a contour plane may lie from a slice centre (default: half the slice spacing).

    Returns
    -------
    ndarray of bool, shape grid.shape
    """
    x, y, z = grid.axes_mm()
    tol = grid.spacing_mm[2] / 2 if slice_tolerance_mm is None else slice_tolerance_mm
    by_slice: dict[int, list] = {}
    for c in contours_mm:
        c = np.asarray(c, dtype=float)
        k = int(np.argmin(np.abs(z - c[0, 2])))
        if abs(z[k] - c[0, 2]) <= tol + 1e-6:
            by_slice.setdefault(k, []).append(c[:, :2])
    mask = np.zeros(grid.shape, dtype=bool)
    for k, polys in by_slice.items():
        mask[k] = rasterise_slice(polys, x, y)
    return mask


def resolve_overlaps(structures, priority=None) -> dict[str, np.ndarray]:
    """Voxel masks where each voxel belongs to one structure only, for optimisation.

    Targets win over organs at risk, which win over the external outline (or follow
    ``priority``, a list of names from highest to lowest).

    Returns
    -------
    dict of str to ndarray of bool
    """
    rank = {TARGET: 0, OAR: 1, EXTERNAL: 2}
    if priority is None:
        ordered = sorted(structures, key=lambda s: rank.get(s.role, 1))
    else:
        by_name = {s.name: s for s in structures}
        ordered = [by_name[n] for n in priority]
    taken = None
    out = {}
    for s in ordered:
        m = s.mask.copy() if taken is None else s.mask & ~taken
        out[s.name] = m
        taken = s.mask.copy() if taken is None else taken | s.mask
    return out


def structure_on_grid(structure: Structure, source: Grid, target: Grid) -> Structure:
    """The structure resampled (nearest voxel) onto another grid, e.g. the dose grid."""
    mask = resample_nearest(structure.mask, source, target).astype(bool)
    return Structure(structure.name, mask, structure.role)
