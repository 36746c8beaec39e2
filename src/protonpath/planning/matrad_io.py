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


def _grid_from_matrad_ct(ct: dict) -> Grid:
    res = ct["resolution"]
    ny, nx, nz = (int(v) for v in ct["cubeDim"])
    if "x" in ct and np.size(ct["x"]) == nx:
        origin = (float(ct["x"][0]), float(ct["y"][0]), float(ct["z"][0]))
    else:  # matRad's default world frame: first voxel at one resolution step
        origin = (float(res["x"]), float(res["y"]), float(res["z"]))
    return Grid((nz, ny, nx), origin, (float(res["x"]), float(res["y"]), float(res["z"])))


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
