"""Reading matRad-style files: phantoms (``ct``, ``cst``) and particle machines.

matRad stores cubes indexed ``[y, x, z]`` with structure voxels as 1-based column-major
linear indices; this module converts them to protonpath's ``[z, y, x]`` arrays.  The TG119
phantom and the generic proton machine ship inside the pyRadPlan wheel; :func:`find_pyradplan_wheel`
finds a downloaded wheel (see ``scripts/setup.d/20-planning-testdata.sh``) and the loaders read
the ``.mat`` members straight from the zip.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io as sio

from protonpath.planning.ct import CT, Grid
from protonpath.planning.machine import Machine, distal_depth_mm
from protonpath.planning.optimise import (
    SQUARED_DEVIATION,
    SQUARED_OVERDOSE,
    SQUARED_UNDERDOSE,
    Objective,
)
from protonpath.planning.structures import EXTERNAL, OAR, TARGET, Structure

TG119_MEMBER = "pyRadPlan/data/phantoms/TG119.mat"
GENERIC_PROTON_MEMBER = "pyRadPlan/data/machines/protons_Generic.mat"

_OBJECTIVE_KINDS = {
    "matRad_SquaredDeviation": SQUARED_DEVIATION,
    "matRad_SquaredOverdosing": SQUARED_OVERDOSE,
    "matRad_SquaredUnderdosing": SQUARED_UNDERDOSE,
}


@dataclass(frozen=True)
class Phantom:
    """A CT with its structures, optimisation priorities and objectives."""

    ct: CT
    structures: list
    priority: list
    objectives: list


def find_pyradplan_wheel() -> Path | None:
    """Path of a pyRadPlan wheel: ``$PROTONPATH_PYRADPLAN_WHEEL`` or ``.cache/wheels`` of this
    checkout (searched upwards from the working directory and from this file)."""
    env = os.environ.get("PROTONPATH_PYRADPLAN_WHEEL")
    if env and Path(env).is_file():
        return Path(env)
    starts = [Path.cwd(), Path(__file__).resolve()]
    for start in starts:
        for folder in [start, *start.parents]:
            wheels = sorted((folder / ".cache" / "wheels").glob("pyradplan-*.whl"))
            if wheels:
                return wheels[-1]
    return None


def read_wheel_member(wheel: Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(member)


def _load_mat(source) -> dict:
    if isinstance(source, bytes | bytearray):
        source = io.BytesIO(source)
    return sio.loadmat(source, simplify_cells=True)


def _matrad_cube_to_zyx(cube: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(cube, (2, 0, 1)))


def _field(struct, name):
    """``struct.name`` of a MATLAB struct read by SciPy (a dict or a ``mat_struct``)."""
    if isinstance(struct, dict):
        return struct.get(name)
    return getattr(struct, name, None)


def matrad_world_axes(ct: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World coordinates (mm) of the voxel centres along x, y and z, as matRad_getWorldAxes.

    matRad keeps the ``ct.x``/``ct.y``/``ct.z`` vectors when all three are present and not
    empty.  Otherwise the first voxel is at ``ct.dicomInfo.ImagePositionPatient`` when the file
    has it, and else at ``-(cubeDim([2 1 3]) / 2) .* resolution`` (that is
    ``-(nx/2 * dx, ny/2 * dy, nz/2 * dz)``), each axis then stepping by its resolution.
    """
    res = ct["resolution"]
    step = np.array([float(_field(res, "x")), float(_field(res, "y")), float(_field(res, "z"))])
    if "cubeDim" in ct and np.size(ct["cubeDim"]) == 3:
        ny, nx, nz = (int(v) for v in np.ravel(ct["cubeDim"]))
    else:
        hu = ct.get("cubeHU")
        hu = hu[0] if isinstance(hu, list | tuple) else hu
        ny, nx, nz = np.shape(hu)
    counts = (nx, ny, nz)
    given = [ct.get(k) for k in ("x", "y", "z")]
    if all(v is not None and np.size(v) > 0 for v in given):
        axes = tuple(np.atleast_1d(np.asarray(v, dtype=float)).ravel() for v in given)
        for name, axis, n in zip("xyz", axes, counts, strict=True):
            if axis.size != n:
                raise ValueError(
                    f"matRad ct.{name} has {axis.size} values for a cube of {n} voxels"
                )
        return axes
    position = _field(ct.get("dicomInfo"), "ImagePositionPatient") if "dicomInfo" in ct else None
    if position is not None and np.size(position) == 3:
        first = np.asarray(position, dtype=float).ravel()
    else:
        first = -(np.array(counts, dtype=float) / 2.0) * step
    return tuple(first[a] + step[a] * np.arange(counts[a]) for a in range(3))


def _grid_from_matrad_ct(ct: dict) -> Grid:
    res = ct["resolution"]
    spacing = (float(_field(res, "x")), float(_field(res, "y")), float(_field(res, "z")))
    x, y, z = matrad_world_axes(ct)
    for name, axis, d in zip("xyz", (x, y, z), spacing, strict=True):
        if axis.size > 1 and not np.allclose(np.diff(axis), d, rtol=1e-4, atol=1e-4):
            raise ValueError(f"matRad ct.{name} is not a regular axis at the resolution {d:g} mm")
    return Grid((z.size, y.size, x.size), (x[0], y[0], z[0]), spacing)


def load_matrad_phantom(source) -> Phantom:
    """Phantom from a matRad ``.mat`` file (path, file object or bytes).

    Structures of type ``TARGET`` become targets, ``BODY``/``EXTERNAL`` names the external
    outline; matRad priorities (lower number wins) give the overlap order, and the ``cst``
    dose objectives are converted to :class:`Objective`.
    """
    data = _load_mat(source)
    ct = data["ct"]
    grid = _grid_from_matrad_ct(ct)
    hu = ct.get("cubeHU")
    if isinstance(hu, list | tuple):
        hu = hu[0]
    ct_obj = CT(_matrad_cube_to_zyx(np.asarray(hu, dtype=np.float32)), grid)
    structures, ranked, objectives = [], [], []
    ny, nx, nz = (int(v) for v in ct["cubeDim"])
    for row in data["cst"]:
        name, kind = str(row[1]), str(row[2]).upper()
        idx = np.atleast_1d(np.asarray(row[3] if not isinstance(row[3], list) else row[3][0]))
        flat = np.zeros(ny * nx * nz, dtype=bool)
        flat[idx.astype(np.int64) - 1] = True
        mask = _matrad_cube_to_zyx(flat.reshape((ny, nx, nz), order="F"))
        role = (
            TARGET
            if kind == "TARGET"
            else (EXTERNAL if name.upper() in ("BODY", "EXTERNAL") else OAR)
        )
        structures.append(Structure(name, mask, role))
        props = row[4]
        prio = getattr(props, "Priority", None)
        if prio is None and isinstance(props, dict):
            prio = props.get("Priority")
        ranked.append((float(prio) if prio is not None else 99.0, name))
        objs = row[5] if len(row) > 5 else []
        objs = objs if isinstance(objs, list | tuple | np.ndarray) else [objs]
        for o in objs:
            if o is None or (isinstance(o, np.ndarray) and o.size == 0):
                continue
            get = (
                (lambda k, o=o: o.get(k))
                if isinstance(o, dict)
                else (lambda k, o=o: getattr(o, k, None))
            )
            cls = str(get("className") or "").split(".")[-1]
            if cls in _OBJECTIVE_KINDS:
                objectives.append(
                    Objective(
                        name,
                        _OBJECTIVE_KINDS[cls],
                        float(np.atleast_1d(get("parameters"))[0]),
                        float(get("penalty")),
                    )
                )
    priority = [n for _, n in sorted(ranked, key=lambda t: t[0])]
    return Phantom(ct_obj, structures, priority, objectives)


_OBJECTIVE_CLASSES = {v: k for k, v in _OBJECTIVE_KINDS.items()}


def _zyx_to_matrad_cube(array: np.ndarray) -> np.ndarray:
    return np.transpose(np.asarray(array), (1, 2, 0))


def matrad_phantom_data(
    ct: CT, structures, priority=None, objectives=(), *, axes: bool = True
) -> dict:
    """A phantom as matRad's ``ct`` and ``cst`` variables, ready for :func:`scipy.io.savemat`.

    With ``axes=False`` the file has no ``ct.x``/``ct.y``/``ct.z`` and no DICOM position, as
    several of matRad's own phantoms: matRad then puts the first voxel at
    ``-cubeDim / 2 * resolution`` (see :func:`matrad_world_axes`), and ``ct.grid`` must be
    that grid for the file to describe the same phantom.
    """
    nz, ny, nx = ct.grid.shape
    dx, dy, dz = (float(v) for v in ct.grid.spacing_mm)
    matrad_ct = {
        "cubeHU": _zyx_to_matrad_cube(ct.hu).astype(np.float64),
        "resolution": {"x": dx, "y": dy, "z": dz},
        "cubeDim": np.array([ny, nx, nz], dtype=float),
        "numOfCtScen": 1.0,
    }
    if axes:
        x, y, z = ct.grid.axes_mm()
        matrad_ct.update({"x": x, "y": y, "z": z})
    else:
        expected = -(np.array([nx, ny, nz], dtype=float) / 2.0) * ct.grid.spacing_mm
        if not np.allclose(ct.grid.origin_mm, expected, atol=1e-6):
            raise ValueError(
                "without axes matRad puts the first voxel at -cubeDim/2 * resolution "
                f"{tuple(expected)}, not at {tuple(ct.grid.origin_mm)}"
            )
    order = list(priority or [s.name for s in structures])
    cst = np.empty((len(structures), 6), dtype=object)
    for i, s in enumerate(structures):
        cube = _zyx_to_matrad_cube(s.mask).astype(bool)
        voxels = np.flatnonzero(cube.ravel(order="F")).astype(np.float64) + 1.0
        rank = order.index(s.name) + 1 if s.name in order else len(order) + 1
        cst[i, 0] = float(i)
        cst[i, 1] = s.name
        cst[i, 2] = "TARGET" if s.role == TARGET else "OAR"
        cst[i, 3] = voxels.reshape(-1, 1)
        cst[i, 4] = {"Priority": float(rank), "alphaX": 0.1, "betaX": 0.05, "Visible": 1.0}
        objs = [o for o in objectives if o.structure == s.name and o.kind in _OBJECTIVE_CLASSES]
        cell = np.empty((1, len(objs)), dtype=object)
        for j, o in enumerate(objs):
            cell[0, j] = {
                "className": "DoseObjectives." + _OBJECTIVE_CLASSES[o.kind],
                "parameters": np.array([[float(o.dose_gy)]], dtype=object),
                "penalty": float(o.weight),
            }
        cst[i, 5] = cell
    return {"ct": matrad_ct, "cst": cst}


def save_matrad_phantom(path, ct: CT, structures, priority=None, objectives=(), *, axes=True):
    """Write a phantom as a matRad ``.mat`` file (see :func:`matrad_phantom_data`)."""
    sio.savemat(path, matrad_phantom_data(ct, structures, priority, objectives, axes=axes))


def load_tg119(wheel: Path | None = None) -> Phantom:
    """The AAPM TG119 C-shape phantom from the pyRadPlan wheel."""
    wheel = wheel or find_pyradplan_wheel()
    if wheel is None:
        raise FileNotFoundError(
            "no pyRadPlan wheel found: run scripts/setup.d/20-planning-testdata.sh "
            "or set PROTONPATH_PYRADPLAN_WHEEL"
        )
    return load_matrad_phantom(read_wheel_member(wheel, TG119_MEMBER))


def load_matrad_machine(source) -> Machine:
    """Particle machine from a matRad ``machine`` ``.mat`` file (single-Gaussian lateral model).

    Depths are shifted by each energy's ``offset``; the spot size in air comes from the first
    focus of ``initFocus``.
    """
    data = _load_mat(source)["machine"]
    meta = data["meta"]
    rows = data["data"]
    rows = rows if isinstance(rows, list) else [rows]
    energies, depths, idds, sigmas, peaks, r80s, foci = [], [], [], [], [], [], []
    focus_dist = None
    for r in rows:
        d = np.asarray(r["depths"], dtype=float) + float(r.get("offset", 0.0))
        idd = np.asarray(
            r["Z"] if not isinstance(r["Z"], dict) else r["Z"]["profileORG"], dtype=float
        )
        energies.append(float(r["energy"]))
        depths.append(d)
        idds.append(idd)
        sigmas.append(np.asarray(r["sigma"], dtype=float))
        peaks.append(float(r["peakPos"]) + float(r.get("offset", 0.0)))
        r80s.append(distal_depth_mm(d, idd, 0.8))
        focus = r["initFocus"]
        dist = np.atleast_2d(np.asarray(focus["dist"], dtype=float))[0]
        sig = np.atleast_2d(np.asarray(focus["sigma"], dtype=float))[0]
        if focus_dist is None:
            focus_dist = dist
        foci.append(np.interp(focus_dist, dist, sig))
    order = np.argsort(energies)
    return Machine(
        name=f"matRad {meta.get('name', '')} {meta.get('radiationMode', '')}".strip(),
        energies_mev=np.asarray(energies)[order],
        depths_mm=[depths[i] for i in order],
        idd=[idds[i] for i in order],
        sigma_mcs_mm=[sigmas[i] for i in order],
        peak_depth_mm=np.asarray(peaks)[order],
        range_r80_mm=np.asarray(r80s)[order],
        focus_distance_mm=focus_dist,
        focus_sigma_mm=np.asarray(foci)[order],
        sad_mm=float(meta["SAD"]),
        nozzle_to_isocentre_mm=float(meta.get("BAMStoIsoDist", 0.0)),
        fit_air_offset_mm=float(meta.get("fitAirOffset", 0.0)),
        source=str(meta.get("description", "matRad machine file")),
    )


def load_pyradplan_generic_proton_machine(wheel: Path | None = None) -> Machine:
    """matRad's generic proton machine from the pyRadPlan wheel."""
    wheel = wheel or find_pyradplan_wheel()
    if wheel is None:
        raise FileNotFoundError("no pyRadPlan wheel found")
    return load_matrad_machine(read_wheel_member(wheel, GENERIC_PROTON_MEMBER))
