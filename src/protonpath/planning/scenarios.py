"""Uncertainty scenarios (setup shifts, range errors) and their dose-influence matrices.

A :class:`Scenario` is one realisation of the two classic PBS uncertainties:

* a **setup shift** ``shift_mm`` (patient x, y, z; LPS): the beams' isocentre, with its spots,
  lies ``shift_mm`` away from where it was planned, so the dose moves by ``shift_mm`` in the
  patient (the patient displaced by ``-shift_mm`` under a fixed beam);
* a **relative range error** ``range_error``: stopping powers off by a factor
  ``1 / (1 + range_error)``, so every water-equivalent depth is divided by ``1 + range_error``
  and the protons go ``range_error`` times their range further (``+0.035``: 3.5 % overshoot).

Each scenario's dose matrix comes from the same engine as the nominal one
(:func:`protonpath.planning.dose.compute_dose_matrix` with the shifted isocentre and scaled
depths) on the same voxels and spots, so scenarios share the row numbering of structures, the
spots and the beams; each matrix is kept as float32 :class:`~protonpath.planning.blocks.BlockRows`
over the rows objectives act on only (:func:`scenario_matrices`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from protonpath.planning.blocks import BlockRows
from protonpath.planning.ct import Grid
from protonpath.planning.dose import DoseMatrix, compute_dose_matrix, kernel_tables
from protonpath.planning.machine import Machine
from protonpath.planning.raytrace import (
    Beam,
    BeamView,
    source_to_surface_mm,
    water_equivalent_depth,
)
from protonpath.planning.spots import Spots

#: Scenario models of :func:`scenario_set`.
NOMINAL_ONLY = "nominal"
SHIFTS = "shifts"  # nominal + 6 shifts
RANGES = "ranges"  # nominal + 2 range errors
COMBINED = "combined"  # nominal, 6 shifts, 2 range errors, 12 shift x range: 21
SAMPLED = "sampled"  # nominal + Gaussian samples of shift and range
MODELS = (NOMINAL_ONLY, SHIFTS, RANGES, COMBINED, SAMPLED)


@dataclass(frozen=True)
class Scenario:
    """One setup shift (mm, patient axes) and relative range error, with its probability."""

    shift_mm: tuple = (0.0, 0.0, 0.0)
    range_error: float = 0.0
    weight: float = 1.0

    def __post_init__(self):
        shift = tuple(float(v) for v in self.shift_mm)
        if len(shift) != 3:
            raise ValueError("a setup shift has three components (x, y, z in mm)")
        if not self.range_error > -0.5 or not self.range_error < 0.5:
            raise ValueError("a relative range error must lie between -0.5 and 0.5")
        if not self.weight >= 0:
            raise ValueError("a scenario weight cannot be negative")
        object.__setattr__(self, "shift_mm", shift)
        object.__setattr__(self, "range_error", float(self.range_error))
        object.__setattr__(self, "weight", float(self.weight))

    @property
    def is_nominal(self) -> bool:
        return not any(self.shift_mm) and self.range_error == 0.0

    @property
    def label(self) -> str:
        if self.is_nominal:
            return "nominal"
        parts = []
        for axis, v in zip("xyz", self.shift_mm, strict=True):
            if v:
                parts.append(f"{axis}{v:+g}mm")
        if self.range_error:
            parts.append(f"range{100 * self.range_error:+g}%")
        return " ".join(parts)

    def to_dict(self) -> dict:
        return {
            "shift_mm": list(self.shift_mm),
            "range_error": self.range_error,
            "weight": self.weight,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Scenario:
        return cls(tuple(d["shift_mm"]), d["range_error"], d.get("weight", 1.0))


@dataclass(frozen=True)
class ScenarioSet:
    """Scenarios, the nominal one first; weights are normalised to sum to 1."""

    scenarios: tuple
    model: str = "custom"
    setup_mm: float = 0.0
    range_error: float = 0.0

    def __post_init__(self):
        sc = tuple(self.scenarios)
        if not sc:
            raise ValueError("a scenario set needs at least one scenario")
        if not sc[0].is_nominal:
            raise ValueError("the first scenario must be the nominal one")
        total = sum(s.weight for s in sc)
        if total <= 0:
            raise ValueError("scenario weights sum to zero")
        object.__setattr__(
            self, "scenarios", tuple(replace(s, weight=s.weight / total) for s in sc)
        )

    def __len__(self) -> int:
        return len(self.scenarios)

    def __iter__(self):
        return iter(self.scenarios)

    def __getitem__(self, i) -> Scenario:
        return self.scenarios[i]

    @property
    def weights(self) -> np.ndarray:
        return np.array([s.weight for s in self.scenarios])

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "setup_mm": self.setup_mm,
            "range_error": self.range_error,
            "scenarios": [s.to_dict() for s in self.scenarios],
        }

    @classmethod
    def from_dict(cls, d: dict) -> ScenarioSet:
        return cls(
            tuple(Scenario.from_dict(s) for s in d["scenarios"]),
            d.get("model", "custom"),
            float(d.get("setup_mm", 0.0)),
            float(d.get("range_error", 0.0)),
        )


def _axis_shifts(setup_mm: float):
    out = []
    for axis in range(3):
        for sign in (1.0, -1.0):
            s = [0.0, 0.0, 0.0]
            s[axis] = sign * setup_mm
            out.append(tuple(s))
    return out


def scenario_set(
    model: str = COMBINED,
    *,
    setup_mm: float = 3.0,
    range_error: float = 0.035,
    n_samples: int = 20,
    seed: int = 0,
) -> ScenarioSet:
    """A standard set of scenarios.

    Parameters
    ----------
    model : str
        ``nominal`` (1 scenario), ``shifts`` (nominal and +-``setup_mm`` along each patient axis:
        7), ``ranges`` (nominal and +-``range_error``: 3), ``combined`` (nominal, 6 shifts, 2 range
        errors and the 12 shift x range combinations: 21) or ``sampled`` (nominal and
        ``n_samples`` draws: shifts Gaussian with ``setup_mm`` standard deviation per axis, range
        errors Gaussian with ``range_error`` standard deviation; reproducible with ``seed``).
    setup_mm : float
        Setup shift (mm) along each axis.
    range_error : float
        Relative range error (0.035 for 3.5 %).

    All scenarios weigh the same (the stochastic objective's expectation).
    """
    if setup_mm < 0 or range_error < 0:
        raise ValueError("setup shift and range error are magnitudes (not negative)")
    nominal = Scenario()
    if model == NOMINAL_ONLY:
        return ScenarioSet((nominal,), model, 0.0, 0.0)
    shifts = _axis_shifts(setup_mm) if setup_mm else []
    ranges = [range_error, -range_error] if range_error else []
    if model == SHIFTS:
        sc = [nominal] + [Scenario(s) for s in shifts]
    elif model == RANGES:
        sc = [nominal] + [Scenario(range_error=r) for r in ranges]
    elif model == COMBINED:
        sc = (
            [nominal]
            + [Scenario(s) for s in shifts]
            + [Scenario(range_error=r) for r in ranges]
            + [Scenario(s, r) for s, r in itertools.product(shifts, ranges)]
        )
    elif model == SAMPLED:
        if n_samples < 1:
            raise ValueError("a sampled set needs at least one sample")
        rng = np.random.default_rng(seed)
        draws = rng.normal(size=(n_samples, 4))
        sc = [nominal] + [
            Scenario(tuple(setup_mm * d[:3]), float(np.clip(range_error * d[3], -0.2, 0.2)))
            for d in draws
        ]
    else:
        raise ValueError(f"unknown scenario model {model!r}; one of {', '.join(MODELS)}")
    return ScenarioSet(tuple(sc), model, float(setup_mm), float(range_error))


def parse_scenarios(text: str, setup_mm: float = 3.0, range_pct: float = 3.5) -> ScenarioSet:
    """Scenario set of a command-line value: a model name, or ``sampled:N``."""
    model, _, n = text.partition(":")
    kwargs = {"setup_mm": setup_mm, "range_error": range_pct / 100.0}
    if model == "21":
        model = COMBINED
    if n:
        kwargs["n_samples"] = int(n)
    return scenario_set(model.strip(), **kwargs)


def scenario_beams(beams: list[Beam], scenario: Scenario) -> list[Beam]:
    """The beams with their isocentre moved by the scenario's setup shift."""
    shift = np.asarray(scenario.shift_mm)
    return [Beam(b.gantry_deg, b.couch_deg, b.isocentre_mm + shift) for b in beams]


def scenario_views(
    spr: np.ndarray,
    ct_grid: Grid,
    beams: list[Beam],
    sad_mm: float,
    points_mm: np.ndarray,
    scenario: Scenario,
    traced: dict | None = None,
) -> list[BeamView]:
    """Each beam's view of the points in a scenario: rays traced from the shifted source,
    water-equivalent depths divided by ``1 + range_error``.

    ``traced`` caches the traced views by shift, so range errors on one shift trace once.
    """
    key = scenario.shift_mm
    if traced is not None and key in traced:
        views = traced[key]
    else:
        views = [
            water_equivalent_depth(spr, ct_grid, b, sad_mm, points_mm)
            for b in scenario_beams(beams, scenario)
        ]
        if traced is not None:
            traced[key] = views
    scale = 1.0 / (1.0 + scenario.range_error)
    if scale == 1.0:
        return views
    return [BeamView(v.u_mm, v.v_mm, v.axial_mm, v.wed_mm * scale) for v in views]


def scenario_dose_matrix(
    spr: np.ndarray,
    ct_grid: Grid,
    dose_grid: Grid,
    voxel_mask: np.ndarray,
    beams: list[Beam],
    spots: Spots,
    machine: Machine,
    scenario: Scenario,
    cut_level: float = 0.995,
    traced: dict | None = None,
) -> DoseMatrix:
    """Dose-influence matrix of a plan's spots in one scenario (same rows and columns as the
    nominal matrix on ``voxel_mask``)."""
    points = dose_grid.points_mm(np.flatnonzero(voxel_mask))
    views = scenario_views(spr, ct_grid, beams, machine.sad_mm, points, scenario, traced)
    shifted = scenario_beams(beams, scenario)
    tables = ssd = None
    if traced is not None:  # shared by the scenarios: kernel tables, and SSDs per shift
        if "tables" not in traced:
            traced["tables"] = kernel_tables(machine)
        tables = traced["tables"]
        key = ("ssd", scenario.shift_mm)
        if key not in traced:
            traced[key] = [
                source_to_surface_mm(
                    spr, ct_grid, beam, machine.sad_mm, spots.u_mm[on], spots.v_mm[on]
                )
                for b, beam in enumerate(shifted)
                for on in [spots.beam_index == b]
            ]
        ssd = traced[key]
    return compute_dose_matrix(
        spr,
        ct_grid,
        dose_grid,
        voxel_mask,
        shifted,
        spots,
        machine,
        cut_level=cut_level,
        views=views,
        tables=tables,
        ssd_mm=ssd,
    )


def stack_blocks(blocks: list[BlockRows]) -> tuple[BlockRows, list[BlockRows]]:
    """One block matrix with every scenario's rows one after the other (scenario ``s``, row
    ``r`` at ``s * n_rows + r``), and each scenario's matrix as a view into it (only the row
    pointers are copied), so one product serves all scenarios."""
    n_rows, n_cols = blocks[0].shape
    if any(b.shape != (n_rows, n_cols) for b in blocks):
        raise ValueError("scenario matrices must have the same shape")
    starts = np.cumsum([0] + [b.n_blocks for b in blocks]).astype(np.uint64)
    ptr = np.concatenate(
        [b.block_ptr[:-1] + starts[i] for i, b in enumerate(blocks)] + [starts[-1:]]
    ).astype(np.uint64)
    first_col = np.concatenate([b.first_col for b in blocks])
    values = np.concatenate([b.values for b in blocks])
    stacked = BlockRows(
        ptr, first_col, values, (n_rows * len(blocks), n_cols), sum(b.nnz for b in blocks)
    )
    views = []
    for i, b in enumerate(blocks):
        lo, hi = int(starts[i]), int(starts[i + 1])
        width = len(b.values) // max(b.n_blocks, 1) if b.n_blocks else 0
        views.append(
            BlockRows(
                ptr[i * n_rows : (i + 1) * n_rows + 1] - starts[i],
                first_col[lo:hi],
                values[lo * width : hi * width],
                b.shape,
                b.nnz,
            )
        )
    return stacked, views


class _Stack:
    """Scenario block matrices copied one after the other into arrays sized from the first
    (10 % spare, grown when short), so the peak holds the stack and one scenario's blocks."""

    def __init__(self, n_scenarios: int):
        self.n_scenarios = n_scenarios
        self.ptrs: list = []
        self.n = 0
        self.nnz = 0
        self.first_col = self.values = None

    def add(self, b: BlockRows) -> None:
        if self.first_col is None:
            self.shape, cap = b.shape, int(1.1 * b.n_blocks * self.n_scenarios) + 1
            self.first_col = np.empty(cap, dtype=np.uint32)
            self.values = np.empty(cap * (len(b.values) // max(b.n_blocks, 1)), np.float32)
            self.width = len(self.values) // cap
        if b.shape != self.shape:
            raise ValueError("scenario matrices must have the same shape")
        end = self.n + b.n_blocks
        if end > len(self.first_col):
            cap = int(1.2 * end) + 1
            self.first_col = np.resize(self.first_col, cap)
            self.values = np.resize(self.values, cap * self.width)
        self.first_col[self.n : end] = b.first_col
        self.values[self.n * self.width : end * self.width] = b.values
        self.ptrs.append(b.block_ptr[:-1] + np.uint64(self.n))
        self.n = end
        self.nnz += b.nnz

    def finish(self) -> BlockRows:
        ptr = np.concatenate(self.ptrs + [np.array([self.n], dtype=np.uint64)])
        rows = self.shape[0] * len(self.ptrs)
        return BlockRows(
            ptr.astype(np.uint64),
            self.first_col[: self.n],
            self.values[: self.n * self.width],
            (rows, self.shape[1]),
            self.nnz,
        )


def _views(stacked: BlockRows, n_scenarios: int) -> list[BlockRows]:
    """Each scenario's matrix as a view into the stacked one (row pointers copied)."""
    n_rows = stacked.shape[0] // n_scenarios
    width = len(stacked.values) // max(stacked.n_blocks, 1)
    views = []
    for i in range(n_scenarios):
        ptr = stacked.block_ptr[i * n_rows : (i + 1) * n_rows + 1]
        lo, hi = int(ptr[0]), int(ptr[-1])
        values = stacked.values[lo * width : hi * width]
        views.append(
            BlockRows(
                ptr - np.uint64(lo),
                stacked.first_col[lo:hi],
                values,
                (n_rows, stacked.shape[1]),
                int(np.count_nonzero(values)),
            )
        )
    return views


@dataclass
class ScenarioMatrices:
    """The dose-influence matrices of all scenarios on shared rows.

    Attributes
    ----------
    scenarios : ScenarioSet
    blocks : list of BlockRows
        One float32 block matrix per scenario, rows ``voxel_indices`` (views into
        ``stacked`` when built by :func:`scenario_matrices`).
    voxel_indices : ndarray
        Flat dose-grid index of each row (the same for every scenario).
    grid : Grid
        Dose grid.
    n_spots : int
    memory : dict
        Bytes kept (``blocks_bytes``), bytes the same matrices take as float64 CSR
        (``csr_float64_bytes``), rows kept and rows of the full matrix.
    """

    scenarios: ScenarioSet
    blocks: list
    voxel_indices: np.ndarray
    grid: Grid
    n_spots: int
    memory: dict = field(default_factory=dict)
    stacked: BlockRows | None = None

    def __post_init__(self):
        if self.stacked is None:
            self.stacked, self.blocks = stack_blocks(self.blocks)
        elif not self.blocks:
            self.blocks = _views(self.stacked, len(self.scenarios))

    def rows_of(self, mask: np.ndarray) -> np.ndarray:
        """Rows of the voxels of a dose-grid mask (voxels without a row are dropped)."""
        flat = np.zeros(self.grid.n_voxels, dtype=bool)
        flat[np.flatnonzero(mask)] = True
        return np.flatnonzero(flat[self.voxel_indices])

    def doses(self, weights: np.ndarray) -> list[np.ndarray]:
        """Dose of each scenario on the rows."""
        return np.split(self.stacked.matvec(weights), len(self.blocks))

    def dose_cubes(self, weights: np.ndarray) -> list[np.ndarray]:
        """Dose cube of each scenario (zero outside the rows)."""
        out = []
        for d in self.doses(weights):
            cube = np.zeros(self.grid.n_voxels)
            cube[self.voxel_indices] = d
            out.append(cube.reshape(self.grid.shape))
        return out


def _blocks_bytes(b: BlockRows) -> int:
    return int(b.block_ptr.nbytes + b.first_col.nbytes + b.values.nbytes)


def scenario_matrices(
    spr: np.ndarray,
    ct_grid: Grid,
    dose_grid: Grid,
    voxel_mask: np.ndarray,
    beams: list[Beam],
    spots: Spots,
    machine: Machine,
    scenarios: ScenarioSet,
    *,
    cut_level: float = 0.995,
    nominal: DoseMatrix | None = None,
    full_rows: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScenarioMatrices:
    """Dose-influence matrices of every scenario on the voxels of ``voxel_mask``.

    ``voxel_mask`` should hold only the voxels objectives act on (and those to evaluate).
    Each matrix is computed, turned into float32 blocks and its CSC form dropped before the
    next, so the peak is one CSC matrix above the blocks.  ``nominal``, a nominal matrix on the
    same voxels, is reused for the nominal scenario; ``full_rows`` (rows of the plan's full
    matrix) is only reported.
    """
    voxel_indices = np.flatnonzero(voxel_mask)
    traced: dict = {}
    stack = _Stack(len(scenarios))
    blocks_bytes = 0
    nnz = 0
    for i, sc in enumerate(scenarios):
        if sc.is_nominal and nominal is not None:
            if not np.array_equal(nominal.voxel_indices, voxel_indices):
                raise ValueError("the nominal matrix is on other voxels")
            dm = nominal
        else:
            dm = scenario_dose_matrix(
                spr, ct_grid, dose_grid, voxel_mask, beams, spots, machine, sc, cut_level, traced
            )
        nnz += dm.matrix.nnz
        b = BlockRows.from_matrix(dm.matrix)
        del dm
        blocks_bytes += _blocks_bytes(b)
        stack.add(b)
        del b
        if progress is not None:
            progress(i + 1, len(scenarios))
    memory = {
        "scenarios": len(scenarios),
        "rows": int(len(voxel_indices)),
        "full_rows": int(full_rows if full_rows is not None else len(voxel_indices)),
        "spots": int(len(spots)),
        "nonzeros": int(nnz),
        "blocks_bytes": int(blocks_bytes),
        "csr_float64_bytes": int(nnz * 12 + len(scenarios) * (len(voxel_indices) + 1) * 8),
    }
    return ScenarioMatrices(
        scenarios, [], voxel_indices, dose_grid, len(spots), memory, stack.finish()
    )
