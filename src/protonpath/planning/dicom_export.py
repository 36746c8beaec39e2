"""DICOM objects of a plan: RT Ion Plan, RT Dose (and CT series and RT Structure Set, to
export phantoms or round-trip structures).

The functions build :class:`pydicom.Dataset` objects in memory; writing them to files is done by
:mod:`protonpath.planning.dicom_io`.  Spot positions are written in the beam's eye view on the
isocentre plane (``ScanSpotPositionMap`` = ``u, v`` pairs in mm, see
:mod:`protonpath.planning.raytrace`), and meterset weights in 10^6 protons with the primary
dosimeter unit ``NP`` scaled accordingly (``BeamMeterset`` is in protons).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from protonpath.planning.ct import CT, Grid
from protonpath.planning.machine import Machine
from protonpath.planning.raytrace import Beam
from protonpath.planning.spots import Spots
from protonpath.planning.structures import EXTERNAL, TARGET, Structure

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
RT_ION_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.8"
PROTONS_PER_WEIGHT_UNIT = 1.0e6


@dataclass(frozen=True)
class StudyContext:
    """Identifiers shared by the objects of one plan (taken from the planning CT when known)."""

    patient_id: str = "ANON"
    patient_name: str = "ANONYMOUS"
    study_instance_uid: str = field(default_factory=generate_uid)
    frame_of_reference_uid: str = field(default_factory=generate_uid)
    study_id: str = "1"
    patient_position: str = "HFS"


def _base(sop_class_uid: str, modality: str, ctx: StudyContext, series_uid: str | None = None):
    now = _dt.datetime.now()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = ctx.patient_name
    ds.PatientID = ctx.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = ctx.study_instance_uid
    ds.StudyID = ctx.study_id
    ds.StudyDate = now.strftime("%Y%m%d")
    ds.StudyTime = now.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.AccessionNumber = ""
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SeriesNumber = 1
    ds.FrameOfReferenceUID = ctx.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "protonpath"
    ds.InstanceCreationDate = ds.StudyDate
    ds.InstanceCreationTime = ds.StudyTime
    return ds


def ct_series_datasets(ct: CT, ctx: StudyContext) -> list[Dataset]:
    """One CT image dataset per axial slice (HU stored as int16 with intercept 0)."""
    series_uid = generate_uid()
    x, y, z = ct.grid.axes_mm()
    dx, dy, _ = ct.grid.spacing_mm
    out = []
    hu = np.clip(np.rint(ct.hu), -32768, 32767).astype(np.int16)
    for k in range(ct.grid.shape[0]):
        ds = _base(CT_IMAGE_STORAGE, "CT", ctx, series_uid)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        ds.PatientPosition = ctx.patient_position
        ds.ImagePositionPatient = [float(x[0]), float(y[0]), float(z[k])]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceThickness = float(ct.grid.spacing_mm[2])
        ds.SliceLocation = float(z[k])
        ds.PixelSpacing = [float(dy), float(dx)]
        ds.Rows, ds.Columns = ct.grid.shape[1], ct.grid.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.PixelData = hu[k].tobytes()
        out.append(ds)
    return out


def mask_contours_mm(mask_slice: np.ndarray, x_mm: np.ndarray, y_mm: np.ndarray) -> list:
    """Closed polygons ``(n, 2)`` around a slice mask's voxel centres (holes included)."""
    import contourpy

    padded = np.pad(mask_slice.astype(np.float64), 1)
    dx = x_mm[1] - x_mm[0] if len(x_mm) > 1 else 1.0
    dy = y_mm[1] - y_mm[0] if len(y_mm) > 1 else 1.0
    xp = np.concatenate([[x_mm[0] - dx], x_mm, [x_mm[-1] + dx]])
    yp = np.concatenate([[y_mm[0] - dy], y_mm, [y_mm[-1] + dy]])
    gen = contourpy.contour_generator(xp, yp, padded, line_type="Separate", corner_mask=False)
    return [line[:-1] if np.allclose(line[0], line[-1]) else line for line in gen.lines(0.5)]


def rtstruct_dataset(
    structures: list[Structure],
    grid: Grid,
    ctx: StudyContext,
    ct_slices: list[Dataset] | None = None,
) -> Dataset:
    """RT Structure Set with one closed planar contour set per structure."""
    ds = _base(RT_STRUCTURE_SET_STORAGE, "RTSTRUCT", ctx)
    ds.StructureSetLabel = "protonpath"
    ds.StructureSetDate = ds.StudyDate
    ds.StructureSetTime = ds.StudyTime
    x, y, z = grid.axes_mm()
    ref_for = Dataset()
    ref_for.FrameOfReferenceUID = ctx.frame_of_reference_uid
    if ct_slices:
        study = Dataset()
        study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
        study.ReferencedSOPInstanceUID = ctx.study_instance_uid
        series = Dataset()
        series.SeriesInstanceUID = ct_slices[0].SeriesInstanceUID
        series.ContourImageSequence = Sequence([_image_ref(s) for s in ct_slices])
        study.RTReferencedSeriesSequence = Sequence([series])
        ref_for.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([ref_for])
    rois, contours, observations = [], [], []
    for n, s in enumerate(structures, start=1):
        roi = Dataset()
        roi.ROINumber = n
        roi.ReferencedFrameOfReferenceUID = ctx.frame_of_reference_uid
        roi.ROIName = s.name
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        rois.append(roi)
        rc = Dataset()
        rc.ReferencedROINumber = n
        rc.ROIDisplayColor = [255, 0, 0] if s.role == TARGET else [0, 128, 255]
        seq = []
        for k in np.flatnonzero(s.mask.any(axis=(1, 2))):
            for poly in mask_contours_mm(s.mask[k], x, y):
                c = Dataset()
                c.ContourGeometricType = "CLOSED_PLANAR"
                c.NumberOfContourPoints = len(poly)
                pts = np.column_stack([poly, np.full(len(poly), z[k])])
                c.ContourData = [f"{v:.3f}" for v in pts.ravel()]
                if ct_slices:
                    c.ContourImageSequence = Sequence([_image_ref(ct_slices[k])])
                seq.append(c)
        rc.ContourSequence = Sequence(seq)
        contours.append(rc)
        obs = Dataset()
        obs.ObservationNumber = n
        obs.ReferencedROINumber = n
        obs.RTROIInterpretedType = {TARGET: "PTV", EXTERNAL: "EXTERNAL"}.get(s.role, "ORGAN")
        obs.ROIInterpreter = ""
        observations.append(obs)
    ds.StructureSetROISequence = Sequence(rois)
    ds.ROIContourSequence = Sequence(contours)
    ds.RTROIObservationsSequence = Sequence(observations)
    return ds


def _image_ref(image: Dataset) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID = image.SOPClassUID
    ref.ReferencedSOPInstanceUID = image.SOPInstanceUID
    return ref


def rt_ion_plan_dataset(
    beams: list[Beam],
    spots: Spots,
    weights: np.ndarray,
    machine: Machine,
    ctx: StudyContext,
    *,
    plan_label: str = "PBS",
    n_fractions: int = 1,
    prescription_gy: float | None = None,
    structure_set: Dataset | None = None,
    spot_sigma_mm: np.ndarray | None = None,
    range_shifter=None,
) -> Dataset:
    """RT Ion Plan of a PBS plan: one beam per field, two control points per energy layer.

    Parameters
    ----------
    beams : list of Beam
        Fields.
    spots : Spots
        All spots; weights are per fraction in 10^6 protons.
    weights : ndarray
        Spot weights.
    machine : Machine
        Treatment machine (name and virtual source distance).
    ctx : StudyContext
        Identifiers.
    plan_label : str
        RT Plan Label (16 characters at most).
    n_fractions : int
        Fractions planned.
    prescription_gy : float, optional
        Target prescription dose (total), written as a dose reference.
    structure_set : Dataset, optional
        Referenced RT Structure Set.
    spot_sigma_mm : ndarray, optional
        Spot sigma in air at the isocentre per spot (for ``ScanningSpotSize``, FWHM).
    range_shifter : protonpath.planning.proteus_one.RangeShifter, optional
        Range shifter inserted in every beam (``RangeShifterSequence`` and each control
        point's ``RangeShifterSettingsSequence``); default: the one the machine was built
        with, if any.
    """
    if range_shifter is None and machine.meta.get("range_shifter"):
        range_shifter = _range_shifter_of(machine)
    ds = _base(RT_ION_PLAN_STORAGE, "RTPLAN", ctx)
    ds.RTPlanLabel = plan_label[:16]
    ds.RTPlanName = plan_label
    ds.RTPlanDate = ds.StudyDate
    ds.RTPlanTime = ds.StudyTime
    ds.RTPlanGeometry = "PATIENT" if structure_set is not None else "TREATMENT_DEVICE"
    ds.ApprovalStatus = "UNAPPROVED"
    if structure_set is not None:
        ref = Dataset()
        ref.ReferencedSOPClassUID = structure_set.SOPClassUID
        ref.ReferencedSOPInstanceUID = structure_set.SOPInstanceUID
        ds.ReferencedStructureSetSequence = Sequence([ref])
    if prescription_gy is not None:
        dr = Dataset()
        dr.DoseReferenceNumber = 1
        dr.DoseReferenceStructureType = "SITE"
        dr.DoseReferenceType = "TARGET"
        dr.DeliveryMaximumDose = float(prescription_gy) * 1.1
        dr.TargetPrescriptionDose = float(prescription_gy)
        ds.DoseReferenceSequence = Sequence([dr])
    setup = Dataset()
    setup.PatientSetupNumber = 1
    setup.PatientPosition = ctx.patient_position
    ds.PatientSetupSequence = Sequence([setup])

    weights = np.asarray(weights, dtype=float)
    fg = Dataset()
    fg.FractionGroupNumber = 1
    fg.NumberOfFractionsPlanned = int(n_fractions)
    fg.NumberOfBeams = len(beams)
    fg.NumberOfBrachyApplicationSetups = 0
    ref_beams, ion_beams = [], []
    for b, beam in enumerate(beams):
        sel = np.flatnonzero(spots.beam_index == b)
        beam_weight = float(weights[sel].sum())
        rb = Dataset()
        rb.ReferencedBeamNumber = b + 1
        rb.BeamMeterset = beam_weight * PROTONS_PER_WEIGHT_UNIT
        ref_beams.append(rb)
        ion_beams.append(
            _ion_beam(b, beam, spots.subset(sel), weights[sel], machine, spot_sigma_mm, sel)
        )
        if range_shifter is not None:
            _add_range_shifter(ion_beams[-1], range_shifter)
    fg.ReferencedBeamSequence = Sequence(ref_beams)
    ds.FractionGroupSequence = Sequence([fg])
    ds.IonBeamSequence = Sequence(ion_beams)
    return ds


def _ion_beam(b, beam, spots, weights, machine, spot_sigma_mm, sel) -> Dataset:
    ib = Dataset()
    ib.BeamNumber = b + 1
    ib.BeamName = f"G{beam.gantry_deg:g}"[:16]
    ib.BeamType = "STATIC"
    ib.RadiationType = "PROTON"
    ib.TreatmentMachineName = machine.name[:16]
    ib.PrimaryDosimeterUnit = "NP"
    ib.TreatmentDeliveryType = "TREATMENT"
    ib.ScanMode = "MODULATED"
    ib.VirtualSourceAxisDistances = [machine.sad_mm, machine.sad_mm]
    for tag in (
        "NumberOfWedges",
        "NumberOfCompensators",
        "NumberOfBoli",
        "NumberOfBlocks",
        "NumberOfRangeShifters",
        "NumberOfLateralSpreadingDevices",
        "NumberOfRangeModulators",
    ):
        setattr(ib, tag, 0)
    ib.PatientSupportType = "TABLE"
    ib.ReferencedPatientSetupNumber = 1
    total = float(weights.sum())
    ib.FinalCumulativeMetersetWeight = total
    cps = []
    cumulative = 0.0
    layers = []
    for e in spots.energy_index:
        if e not in layers:
            layers.append(e)
    for e in layers:
        on = spots.energy_index == e
        layer_w = weights[on]
        for first in (True, False):
            cp = Dataset()
            cp.ControlPointIndex = len(cps)
            cp.NominalBeamEnergy = float(spots.energy_mev[on][0])
            cp.NominalBeamEnergyUnit = "MEV"
            cp.CumulativeMetersetWeight = cumulative
            cp.ScanSpotTuneID = "1"
            cp.NumberOfScanSpotPositions = int(on.sum())
            cp.ScanSpotPositionMap = [
                float(f"{v:.3f}") for v in np.column_stack([spots.u_mm[on], spots.v_mm[on]]).ravel()
            ]
            cp.ScanSpotMetersetWeights = [
                float(f"{w:.6g}") for w in (layer_w if first else 0 * layer_w)
            ]
            if spot_sigma_mm is not None:
                fwhm = 2.3548 * float(np.mean(spot_sigma_mm[sel][on]))
                cp.ScanningSpotSize = [fwhm, fwhm]
            cp.NumberOfPaintings = 1
            if len(cps) == 0:
                cp.GantryAngle = float(beam.gantry_deg)
                cp.GantryRotationDirection = "NONE"
                cp.BeamLimitingDeviceAngle = 0.0
                cp.BeamLimitingDeviceRotationDirection = "NONE"
                cp.PatientSupportAngle = float(beam.couch_deg)
                cp.PatientSupportRotationDirection = "NONE"
                cp.IsocenterPosition = [float(f"{v:.3f}") for v in beam.isocentre_mm]
                cp.TableTopPitchAngle = 0.0
                cp.TableTopPitchRotationDirection = "NONE"
                cp.TableTopRollAngle = 0.0
                cp.TableTopRollRotationDirection = "NONE"
            if first:
                cumulative += float(layer_w.sum())
            cps.append(cp)
    ib.NumberOfControlPoints = len(cps)
    ib.IonControlPointSequence = Sequence(cps)
    return ib


def _range_shifter_of(machine):
    from protonpath.planning.proteus_one import range_shifter_of

    return range_shifter_of(machine)


def _add_range_shifter(ib: Dataset, shifter) -> None:
    """Record a range shifter in an ion beam (C.8.8.25: Range Shifter Sequence and settings)."""
    rs = Dataset()
    rs.RangeShifterNumber = 1
    rs.RangeShifterID = str(shifter.id)[:16]
    rs.RangeShifterType = "BINARY"
    rs.AccessoryCode = str(shifter.id)[:16]
    rs.RangeShifterDescription = (
        f"{shifter.material} {shifter.physical_thickness_mm:.1f} mm, "
        f"WET {shifter.water_equivalent_thickness_mm:.1f} mm"
    )
    ib.NumberOfRangeShifters = 1
    ib.RangeShifterSequence = Sequence([rs])
    for i, cp in enumerate(ib.IonControlPointSequence):
        if i == 0:
            st = Dataset()
            st.ReferencedRangeShifterNumber = 1
            st.RangeShifterSetting = "IN"
            st.IsocenterToRangeShifterDistance = float(shifter.isocentre_to_range_shifter_mm)
            st.RangeShifterWaterEquivalentThickness = float(shifter.water_equivalent_thickness_mm)
            cp.RangeShifterSettingsSequence = Sequence([st])


def rt_dose_dataset(
    dose_gy: np.ndarray,
    grid: Grid,
    ctx: StudyContext,
    plan: Dataset | None = None,
    summation: str = "PLAN",
    dose_type: str = "PHYSICAL",
    comment: str | None = None,
) -> Dataset:
    """RT Dose of a dose cube (Gy, indexed ``[z, y, x]``), stored as uint32 with a scaling.

    ``dose_type`` is ``PHYSICAL`` or ``EFFECTIVE`` (RBE-weighted, Gy(RBE)); ``comment`` goes to
    ``DoseComment`` (e.g. the RBE model).
    """
    if dose_type not in ("PHYSICAL", "EFFECTIVE"):
        raise ValueError("dose_type is PHYSICAL or EFFECTIVE")
    ds = _base(RT_DOSE_STORAGE, "RTDOSE", ctx)
    dose = np.clip(np.asarray(dose_gy, dtype=np.float64), 0.0, None)
    top = float(dose.max())
    scaling = top / (2**32 - 2) if top > 0 else 1.0
    pixels = np.rint(dose / scaling).astype(np.uint32)
    x, y, z = grid.axes_mm()
    ds.ImagePositionPatient = [float(x[0]), float(y[0]), float(z[0])]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [float(grid.spacing_mm[1]), float(grid.spacing_mm[0])]
    ds.SliceThickness = float(grid.spacing_mm[2])
    ds.GridFrameOffsetVector = [float(v - z[0]) for v in z]
    ds.FrameIncrementPointer = 0x3004000C
    ds.NumberOfFrames = grid.shape[0]
    ds.Rows, ds.Columns = grid.shape[1], grid.shape[2]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 32
    ds.BitsStored = 32
    ds.HighBit = 31
    ds.PixelRepresentation = 0
    ds.DoseUnits = "GY"
    ds.DoseType = dose_type
    if comment:
        ds.DoseComment = comment[:10240]
    ds.DoseSummationType = summation
    ds.DoseGridScaling = f"{scaling:.10e}"
    if plan is not None:
        ref = Dataset()
        ref.ReferencedSOPClassUID = plan.SOPClassUID
        ref.ReferencedSOPInstanceUID = plan.SOPInstanceUID
        ds.ReferencedRTPlanSequence = Sequence([ref])
    ds.PixelData = pixels.tobytes()
    return ds


def dose_from_rt_dose(ds: Dataset) -> tuple[np.ndarray, Grid]:
    """Dose cube (Gy) and grid of an RT Dose dataset (axis-aligned)."""
    frames = int(getattr(ds, "NumberOfFrames", 1))
    offsets = np.asarray(ds.GridFrameOffsetVector, dtype=float) if frames > 1 else np.zeros(1)
    dose = ds.pixel_array.reshape(frames, ds.Rows, ds.Columns) * float(ds.DoseGridScaling)
    dz = float(offsets[1] - offsets[0]) if frames > 1 else float(getattr(ds, "SliceThickness", 1))
    origin = np.asarray(ds.ImagePositionPatient, dtype=float)
    origin[2] += offsets[0]
    spacing = (float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0]), dz)
    return dose, Grid(dose.shape, origin, spacing)
