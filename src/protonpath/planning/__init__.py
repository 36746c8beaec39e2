"""Pencil-beam-scanning proton planning: a pure numpy/scipy/numba library.

Modules (each takes arrays and dataclasses and returns them):

``ct``            grids, CT images, HU to stopping-power-ratio calibration
``structures``    structure masks, contour rasterisation, overlap priorities
``machine``       beam model (depth doses, spot sizes) and its physics
``raytrace``      beam geometry and water-equivalent depth
``spots``         spot and energy-layer placement
``dose``          analytical pencil-beam dose, sparse dose-influence matrix
``optimise``      spot-weight optimisation (L-BFGS-B, analytic gradients)
``lbfgsb``        the bound-constrained L-BFGS-B it runs, bookkeeping compiled with numba
``dvh``           dose-volume histograms and statistics
``gamma``         gamma-index comparison of doses
``pipeline``      the steps of a whole plan
``scenarios``     setup-shift and range-error scenarios and their dose matrices
``robust``        robust objectives (stochastic, voxel-wise / composite worst case)
``robustness``    robustness evaluation: dose per scenario, DVH bands, worst-case goals
``robust_plan``   the steps of a robust plan
``robust_export`` robust settings in the RT Ion Plan (private block), plan read back
``dicom_export``  RT Ion Plan, RT Dose, RT Structure Set and CT datasets

Only ``resources`` (packaged data), ``matrad_io`` (matRad ``.mat`` files) and ``dicom_io``
(DICOM files) read or write files.
"""

from protonpath.planning.ct import CT, Grid, HuCalibration, hu_to_spr
from protonpath.planning.dose import DoseMatrix, compute_dose_matrix
from protonpath.planning.machine import Machine
from protonpath.planning.optimise import Objective, optimise_weights
from protonpath.planning.pipeline import PlanResult, PlanSettings, plan_pbs
from protonpath.planning.raytrace import Beam, water_equivalent_depth
from protonpath.planning.spots import Spots, place_spots
from protonpath.planning.structures import Structure

__all__ = [
    "CT",
    "Beam",
    "DoseMatrix",
    "Grid",
    "HuCalibration",
    "Machine",
    "Objective",
    "PlanResult",
    "PlanSettings",
    "Spots",
    "Structure",
    "compute_dose_matrix",
    "hu_to_spr",
    "optimise_weights",
    "place_spots",
    "plan_pbs",
    "water_equivalent_depth",
]
