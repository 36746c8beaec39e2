"""Beam geometry and water-equivalent depth by ray tracing through the stopping-power image.

Beam geometry, patient head first supine, IEC 61217 angles:

* gantry angle 0 deg: the beam comes from anterior (source on the patient's -y side, LPS);
  gantry 90 deg: from the patient's left (+x);
* couch angle: rotation of the beam frame about the vertical (patient y) axis.

The beam's eye view (BEV) has lateral axes ``u`` (``(cos g, sin g, 0)`` at couch 0) and ``v``
(patient superior, +z), and spots are placed on the isocentre plane in ``(u, v)`` mm.  Rays
diverge from a virtual source at ``sad_mm`` upstream of the isocentre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from protonpath.planning.ct import Grid


@dataclass(frozen=True)
class Beam:
    """A treatment field: gantry and couch angles (deg) and isocentre (patient mm)."""

    gantry_deg: float
    couch_deg: float
    isocentre_mm: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "isocentre_mm", np.asarray(self.isocentre_mm, dtype=float))


@dataclass(frozen=True)
class BeamFrame:
    """Unit vectors of a beam in patient coordinates: ``direction`` (source to isocentre), ``u``,
    ``v`` (lateral BEV axes)."""

    direction: np.ndarray
    u: np.ndarray
    v: np.ndarray

    def source_mm(self, beam: Beam, sad_mm: float) -> np.ndarray:
        return beam.isocentre_mm - sad_mm * self.direction


def beam_frame(beam: Beam) -> BeamFrame:
    """Unit vectors of the beam's eye view for gantry and couch angles."""
    g = np.deg2rad(beam.gantry_deg)
    c = np.deg2rad(beam.couch_deg)
    direction = np.array([-np.sin(g), np.cos(g), 0.0])
    u = np.array([np.cos(g), np.sin(g), 0.0])
    v = np.array([0.0, 0.0, 1.0])
    rot = np.array([[np.cos(c), 0.0, np.sin(c)], [0.0, 1.0, 0.0], [-np.sin(c), 0.0, np.cos(c)]])
    return BeamFrame(rot @ direction, rot @ u, rot @ v)


@dataclass(frozen=True)
class BeamView:
    """Points seen from one beam.

    Attributes
    ----------
    u_mm, v_mm : ndarray
        Lateral position of each point projected from the source onto the isocentre plane.
    axial_mm : ndarray
        Distance of each point from the source along the central axis.
    wed_mm : ndarray
        Water-equivalent depth of each point along its ray from the source.
    """

    u_mm: np.ndarray
    v_mm: np.ndarray
    axial_mm: np.ndarray
    wed_mm: np.ndarray


def project_to_isocentre_plane(points_mm: np.ndarray, beam: Beam, sad_mm: float):
    """BEV ``(u, v)`` on the isocentre plane and axial distance from source of points ``(n,3)``."""
    frame = beam_frame(beam)
    rel = np.asarray(points_mm, dtype=float) - beam.isocentre_mm
    axial = rel @ frame.direction + sad_mm
    scale = sad_mm / axial
    return (rel @ frame.u) * scale, (rel @ frame.v) * scale, axial


@numba.njit(cache=True, inline="always")
def _trilinear(vol, fk, fj, fi):
    nz, ny, nx = vol.shape
    if fk < 0 or fj < 0 or fi < 0 or fk > nz - 1 or fj > ny - 1 or fi > nx - 1:
        return 0.0
    k0 = min(int(fk), nz - 2) if nz > 1 else 0
    j0 = min(int(fj), ny - 2) if ny > 1 else 0
    i0 = min(int(fi), nx - 2) if nx > 1 else 0
    dk = fk - k0
    dj = fj - j0
    di = fi - i0
    k1 = min(k0 + 1, nz - 1)
    j1 = min(j0 + 1, ny - 1)
    i1 = min(i0 + 1, nx - 1)
    c00 = vol[k0, j0, i0] * (1 - di) + vol[k0, j0, i1] * di
    c01 = vol[k0, j1, i0] * (1 - di) + vol[k0, j1, i1] * di
    c10 = vol[k1, j0, i0] * (1 - di) + vol[k1, j0, i1] * di
    c11 = vol[k1, j1, i0] * (1 - di) + vol[k1, j1, i1] * di
    c0 = c00 * (1 - dj) + c01 * dj
    c1 = c10 * (1 - dj) + c11 * dj
    return c0 * (1 - dk) + c1 * dk


@numba.njit(cache=True, parallel=True)
def _march_cumulative(spr, origin, spacing, source, directions, start_mm, step_mm, n_steps):
    """Cumulative water-equivalent path ``W[ray, node]`` at distances ``start + node*step``."""
    n_rays = directions.shape[0]
    out = np.zeros((n_rays, n_steps + 1), dtype=np.float32)
    for r in numba.prange(n_rays):
        acc = 0.0
        for s in range(n_steps):
            dist = start_mm + (s + 0.5) * step_mm
            x = source[0] + dist * directions[r, 0]
            y = source[1] + dist * directions[r, 1]
            z = source[2] + dist * directions[r, 2]
            fi = (x - origin[0]) / spacing[0]
            fj = (y - origin[1]) / spacing[1]
            fk = (z - origin[2]) / spacing[2]
            acc += _trilinear(spr, fk, fj, fi) * step_mm
            out[r, s + 1] = acc
    return out


@numba.njit(cache=True, parallel=True)
def _lookup_wed(cum, u0, v0, du, dv, nu, nv, start_mm, step_mm, pu, pv, dist):
    n = pu.shape[0]
    out = np.empty(n, dtype=np.float32)
    n_nodes = cum.shape[1]
    for p in numba.prange(n):
        fu = (pu[p] - u0) / du
        fv = (pv[p] - v0) / dv
        a0 = min(max(int(np.floor(fu)), 0), nu - 2)
        b0 = min(max(int(np.floor(fv)), 0), nv - 2)
        wa = min(max(fu - a0, 0.0), 1.0)
        wb = min(max(fv - b0, 0.0), 1.0)
        fs = (dist[p] - start_mm) / step_mm
        s0 = min(max(int(np.floor(fs)), 0), n_nodes - 2)
        ws = min(max(fs - s0, 0.0), 1.0)
        acc = 0.0
        for da in range(2):
            for db in range(2):
                w = (wa if da else 1 - wa) * (wb if db else 1 - wb)
                ray = (a0 + da) * nv + (b0 + db)
                acc += w * (cum[ray, s0] * (1 - ws) + cum[ray, s0 + 1] * ws)
        out[p] = acc
    return out


def _ct_bounding_distances(grid: Grid, source: np.ndarray) -> tuple[float, float]:
    x, y, z = grid.axes_mm()
    corners = np.array([[a, b, c] for a in x[[0, -1]] for b in y[[0, -1]] for c in z[[0, -1]]])
    d = np.linalg.norm(corners - source, axis=1)
    centre = 0.5 * (corners.min(axis=0) + corners.max(axis=0))
    half_diag = 0.5 * np.linalg.norm(corners.max(axis=0) - corners.min(axis=0))
    dc = np.linalg.norm(centre - source)
    return max(dc - half_diag, 0.0), float(d.max())


def ray_directions(frame: BeamFrame, sad_mm: float, u_mm, v_mm) -> np.ndarray:
    """Unit directions ``(n, 3)`` from the source through isocentre-plane points ``(u, v)``."""
    u_mm = np.asarray(u_mm, dtype=float)[:, None]
    v_mm = np.asarray(v_mm, dtype=float)[:, None]
    vec = sad_mm * frame.direction + u_mm * frame.u + v_mm * frame.v
    return vec / np.linalg.norm(vec, axis=1, keepdims=True)


def water_equivalent_depth(
    spr: np.ndarray,
    grid: Grid,
    beam: Beam,
    sad_mm: float,
    points_mm: np.ndarray,
    lateral_step_mm: float | None = None,
    step_mm: float | None = None,
) -> BeamView:
    """Water-equivalent depth of points along divergent rays from the beam's source.

    A fan of rays, regular on the isocentre plane, is marched through the stopping-power
    image (trilinear sampling, outside the image counts as vacuum) and each point's depth is
    interpolated between its four neighbouring rays.

    Parameters
    ----------
    spr : ndarray, shape grid.shape
        Stopping-power ratio to water.
    grid : Grid
        Grid of ``spr``.
    beam : Beam
        The field.
    sad_mm : float
        Virtual source to isocentre distance.
    points_mm : ndarray, shape (n, 3)
        Query points (e.g. dose-grid voxel centres) in patient mm.
    lateral_step_mm, step_mm : float, optional
        Ray spacing on the isocentre plane and marching step (default: the finest voxel
        spacing and half of it).

    Returns
    -------
    BeamView
    """
    frame = beam_frame(beam)
    source = frame.source_mm(beam, sad_mm)
    fine = float(grid.spacing_mm.min())
    lateral_step_mm = lateral_step_mm or fine
    step_mm = step_mm or fine / 2
    pu, pv, axial = project_to_isocentre_plane(points_mm, beam, sad_mm)
    dist = np.linalg.norm(np.asarray(points_mm, dtype=float) - source, axis=1)
    if len(pu) == 0:
        empty = np.zeros(0)
        return BeamView(empty, empty, empty, empty.astype(np.float32))
    u_axis = np.arange(pu.min() - lateral_step_mm, pu.max() + 2 * lateral_step_mm, lateral_step_mm)
    v_axis = np.arange(pv.min() - lateral_step_mm, pv.max() + 2 * lateral_step_mm, lateral_step_mm)
    uu, vv = np.meshgrid(u_axis, v_axis, indexing="ij")
    dirs = ray_directions(frame, sad_mm, uu.ravel(), vv.ravel())
    start, stop = _ct_bounding_distances(grid, source)
    stop = min(stop, float(dist.max()) + 2 * step_mm)
    n_steps = int(np.ceil((stop - start) / step_mm)) + 1
    cum = _march_cumulative(
        np.ascontiguousarray(spr, dtype=np.float32),
        grid.origin_mm,
        grid.spacing_mm,
        source,
        dirs,
        start,
        step_mm,
        n_steps,
    )
    wed = _lookup_wed(
        cum,
        u_axis[0],
        v_axis[0],
        lateral_step_mm,
        lateral_step_mm,
        len(u_axis),
        len(v_axis),
        start,
        step_mm,
        pu,
        pv,
        dist,
    )
    return BeamView(pu, pv, axial, wed)


@numba.njit(cache=True, parallel=True)
def _first_crossing(spr, origin, spacing, source, directions, start_mm, step_mm, n_steps, thr):
    n_rays = directions.shape[0]
    out = np.full(n_rays, np.nan)
    for r in numba.prange(n_rays):
        for s in range(n_steps):
            dist = start_mm + s * step_mm
            x = source[0] + dist * directions[r, 0]
            y = source[1] + dist * directions[r, 1]
            z = source[2] + dist * directions[r, 2]
            v = _trilinear(
                spr,
                (z - origin[2]) / spacing[2],
                (y - origin[1]) / spacing[1],
                (x - origin[0]) / spacing[0],
            )
            if v >= thr:
                out[r] = dist
                break
    return out


def source_to_surface_mm(
    spr: np.ndarray,
    grid: Grid,
    beam: Beam,
    sad_mm: float,
    u_mm,
    v_mm,
    threshold: float = 0.5,
    step_mm: float | None = None,
) -> np.ndarray:
    """Distance from the source to the skin along rays through ``(u, v)`` (NaN: misses)."""
    frame = beam_frame(beam)
    source = frame.source_mm(beam, sad_mm)
    step_mm = step_mm or float(grid.spacing_mm.min()) / 4
    start, stop = _ct_bounding_distances(grid, source)
    dirs = ray_directions(frame, sad_mm, u_mm, v_mm)
    n_steps = int(np.ceil((stop - start) / step_mm)) + 1
    return _first_crossing(
        np.ascontiguousarray(spr, dtype=np.float32),
        grid.origin_mm,
        grid.spacing_mm,
        source,
        dirs,
        start,
        step_mm,
        n_steps,
        threshold,
    )
