"""Small planning cases written as real DICOM files (CT series + RT Structure Set) by the
planning package's own writers: a water box in air with a cubic target, an organ at risk behind
it and the body outline. Coarse (6 mm voxels) so a plan takes a few seconds on 2 cores.

Shared helpers live here (not in a conftest.py); test modules import them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from protonpath.planning import dicom_export, dicom_io
from protonpath.planning.ct import CT, Grid
from protonpath.planning.structures import EXTERNAL, OAR, TARGET, Structure


def water_phantom(spacing_mm: float = 6.0, tiny_oar: bool = False):
    """CT and structures: box of water 120 x 150 x 72 mm, target cube 36 mm at 50-86 mm depth."""
    s = spacing_mm
    x = np.arange(-72 + s / 2, 72, s)
    y = np.arange(-12 + s / 2, 162, s)
    z = np.arange(-36 + s / 2, 36, s)
    grid = Grid((len(z), len(y), len(x)), (x[0], y[0], z[0]), (s, s, s))
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    body = (np.abs(xx) < 60) & (yy > 0) & (yy < 150) & (np.abs(zz) < 36)
    hu = np.where(body, 0.0, -1000.0).astype(np.float32)
    target = (np.abs(xx) < 18) & (np.abs(zz) < 18) & (yy > 50) & (yy < 86)
    oar = (xx > 0) & (xx < 18) & (np.abs(zz) < 18) & (yy > 90) & (yy < 108)
    structures = [
        Structure("PTV_60", target, TARGET),
        Structure("Spinal Cord", oar, OAR),
        Structure("BODY", body, EXTERNAL),
    ]
    if tiny_oar:
        one = np.zeros_like(body)
        one[len(z) // 2, 3, len(x) // 2 + 5] = True
        structures.append(Structure("Tiny", one, OAR))
    return CT(hu, grid), structures


def write_case(folder: Path, *, patient_id: str = "PHANTOM", patient_name: str = "PHANTOM^WATER",
               spacing_mm: float = 6.0, tiny_oar: bool = False, study_uid: str | None = None,
               accession_number: str = "") -> dict[str, list[Path]]:
    """Write the phantom's CT slices and RTSTRUCT into ``folder``; returns modality -> paths."""
    ct, structures = water_phantom(spacing_mm, tiny_oar)
    kwargs = {"patient_id": patient_id, "patient_name": patient_name}
    if study_uid:
        kwargs["study_instance_uid"] = study_uid
    ctx = dicom_export.StudyContext(**kwargs)
    slices = dicom_export.ct_series_datasets(ct, ctx)
    rs = dicom_export.rtstruct_dataset(structures, ct.grid, ctx, slices)
    if accession_number:
        for ds in [*slices, rs]:
            ds.AccessionNumber = accession_number
    cts = dicom_io.write_datasets(slices, folder, "CT")
    rts = dicom_io.write_datasets([rs], folder, "RTSTRUCT")
    return {"CT": cts, "RTSTRUCT": rts}
