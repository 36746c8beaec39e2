"""DICOM export and import: RT Ion Plan, RT Dose, CT series and RT Structure Set round trips."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from protonpath.planning import dicom_export, dicom_io
from protonpath.planning.ct import CT, Grid
from protonpath.planning.raytrace import Beam
from protonpath.planning.resources import load_default_machine
from protonpath.planning.spots import spots_from_arrays
from protonpath.planning.structures import Structure

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def dcmdump(path: Path) -> str:
    exe = shutil.which("dcmdump")
    assert exe, "dcmtk's dcmdump is needed (Debian package dcmtk)"
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "E:" not in proc.stderr, proc.stderr
    return proc.stdout


@pytest.fixture()
def small_plan():
    m = load_default_machine()
    e = m.energies_mev
    beams = [
        Beam(0.0, 0.0, np.array([1.0, -2.0, 3.0])),
        Beam(90.0, 10.0, np.array([1.0, -2.0, 3.0])),
    ]
    spots = spots_from_arrays(
        m,
        [0, 0, 0, 1, 1],
        [e[40], e[40], e[35], e[50], e[45]],
        [-5.0, 5.0, 0.0, 2.5, -2.5],
        [0.0, 0.0, 5.0, 0.0, 0.0],
    )
    weights = np.array([1.5, 2.0, 0.5, 3.0, 1.0])
    return beams, spots, weights, m


def test_rt_ion_plan_is_readable_by_pydicom_and_dcmdump(tmp_path, small_plan):
    beams, spots, weights, m = small_plan
    ctx = dicom_export.StudyContext()
    ds = dicom_export.rt_ion_plan_dataset(
        beams, spots, weights, m, ctx, n_fractions=30, prescription_gy=60
    )
    (path,) = dicom_io.write_datasets([ds], tmp_path, "RTPLAN")
    back = pydicom.dcmread(path)
    assert back.SOPClassUID == dicom_export.RT_ION_PLAN_STORAGE
    assert back.FractionGroupSequence[0].NumberOfFractionsPlanned == 30
    assert len(back.IonBeamSequence) == 2
    b0 = back.IonBeamSequence[0]
    assert b0.RadiationType == "PROTON" and b0.ScanMode == "MODULATED"
    cps = b0.IonControlPointSequence
    assert len(cps) == 4  # two layers, two control points each
    assert cps[0].NominalBeamEnergy == pytest.approx(spots.energy_mev[0])
    assert cps[0].GantryAngle == 0.0 and list(cps[0].IsocenterPosition) == [1.0, -2.0, 3.0]
    layer_weights = [
        np.atleast_1d(np.asarray(cp.ScanSpotMetersetWeights, float)).sum() for cp in cps
    ]
    assert sum(layer_weights) == pytest.approx(weights[:3].sum())
    assert cps[-1].CumulativeMetersetWeight == pytest.approx(b0.FinalCumulativeMetersetWeight)
    assert list(cps[0].ScanSpotPositionMap) == [-5.0, 0.0, 5.0, 0.0]
    meterset = back.FractionGroupSequence[0].ReferencedBeamSequence[1].BeamMeterset
    assert meterset == pytest.approx(4.0e6)
    assert back.IonBeamSequence[1].IonControlPointSequence[0].PatientSupportAngle == 10.0
    text = dcmdump(path)
    assert "RTIonPlanStorage" in text and "IonControlPointSequence" in text


def test_rt_dose_round_trip_keeps_dose_and_geometry(tmp_path):
    grid = Grid((4, 5, 6), (-10.0, 20.0, -3.0), (2.0, 3.0, 2.5))
    rng = np.random.default_rng(0)
    dose = rng.uniform(0, 60, grid.shape)
    ctx = dicom_export.StudyContext()
    ds = dicom_export.rt_dose_dataset(dose, grid, ctx)
    (path,) = dicom_io.write_datasets([ds], tmp_path, "RTDOSE")
    back = pydicom.dcmread(path)
    got, got_grid = dicom_export.dose_from_rt_dose(back)
    assert np.allclose(got, dose, atol=60 / 2**31)
    assert got_grid.shape == grid.shape
    assert np.allclose(got_grid.origin_mm, grid.origin_mm) and np.allclose(
        got_grid.spacing_mm, grid.spacing_mm
    )
    text = dcmdump(path)
    assert "RTDoseStorage" in text and "GY" in text


def test_pydicom_ct_slice_is_read_in_hounsfield_units():
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    ct = dicom_io.ct_from_slices([ds])
    assert ct.hu.shape == (1, 128, 128)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.allclose(ct.hu[0], expected)
    assert np.allclose(ct.grid.origin_mm, [float(v) for v in ds.ImagePositionPatient])
    assert np.allclose(
        ct.grid.spacing_mm[:2], [float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0])]
    )


def downsampled_tg119(tg119, step=2):
    ct = tg119.ct
    grid = Grid(ct.hu[::step, ::step, ::step].shape, ct.grid.origin_mm, ct.grid.spacing_mm * step)
    small = CT(np.ascontiguousarray(ct.hu[::step, ::step, ::step]), grid)
    structures = [
        Structure(s.name, s.mask[::step, ::step, ::step].copy(), s.role) for s in tg119.structures
    ]
    return small, structures


def write_planning_folder(folder, ct, structures):
    ctx = dicom_export.StudyContext(patient_id="TG119", patient_name="PHANTOM^TG119")
    slices = dicom_export.ct_series_datasets(ct, ctx)
    dicom_io.write_datasets(slices, folder, "CT")
    rs = dicom_export.rtstruct_dataset(structures, ct.grid, ctx, slices)
    dicom_io.write_datasets([rs], folder, "RTSTRUCT")
    return ctx


def test_tg119_ct_and_structures_survive_a_dicom_round_trip(tmp_path, tg119):
    ct, structures = downsampled_tg119(tg119)
    write_planning_folder(tmp_path, ct, structures)
    images = dicom_io.read_planning_folder(tmp_path)
    assert images.ct.grid.shape == ct.grid.shape
    assert np.allclose(images.ct.grid.origin_mm, ct.grid.origin_mm)
    assert np.allclose(images.ct.grid.spacing_mm, ct.grid.spacing_mm)
    assert np.abs(images.ct.hu - np.rint(ct.hu)).max() == 0
    by_name = {s.name: s for s in images.structures}
    for s in structures:
        got = by_name[s.name].mask
        dice = 2 * (got & s.mask).sum() / (got.sum() + s.mask.sum())
        assert dice > 0.995, (s.name, dice)
    assert by_name["OuterTarget"].role == "target"
    assert images.context.patient_id == "TG119"
    text = dcmdump(tmp_path / "RTSTRUCT.dcm")
    assert "RTStructureSetStorage" in text


def test_c_shaped_target_keeps_its_hole_through_contours(tg119):
    # The TG119 target wraps around the core: on a slice through the middle the contours must
    # leave the core region empty.
    ct, structures = downsampled_tg119(tg119)
    target = next(s for s in structures if s.name == "OuterTarget")
    core = next(s for s in structures if s.name == "Core")
    k = int(np.argmax(target.mask.sum(axis=(1, 2))))
    x, y, _ = ct.grid.axes_mm()
    polys = dicom_export.mask_contours_mm(target.mask[k], x, y)
    from protonpath.planning.structures import rasterise_slice

    back = rasterise_slice(polys, x, y)
    assert np.array_equal(back, target.mask[k])
    assert not (back & core.mask[k]).any()
