"""Sparse products for the optimiser: rows stored as short runs of consecutive columns.

A pencil beam's spots are numbered layer by layer and, in a layer, along the scan lines, so
the spots that reach one voxel come in runs of consecutive columns (about 18 on TG119).
:class:`BlockRows` stores each row as blocks of :data:`WIDTH` consecutive columns, each block
a starting column and ``WIDTH`` values (zeros where the run has a gap or ends early).  The
products then read ``x`` in contiguous slices the processor loads as one vector, instead of
one gathered element per non-zero as in CSR.  About 85 % of a block's values are non-zero on
the TG119 case, and the forward and transposed products run about twice as fast as CSR.

Two details matter for speed in numba:

* every index is unsigned (``np.uint64``): a signed index makes numba check for negative
  (wrap-around) indices on every access, which keeps LLVM from vectorising the block loops;
* work is split between threads by blocks, not rows (voxel rows of a target hold many more
  spots than rows at the edge of the field).

Values are float32 (the dose model is not more precise than that); sums are float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

#: Columns per block.
WIDTH = 8
_U = np.uint64


@numba.njit(cache=True, parallel=True)
def _count_blocks(indptr, indices, width):
    n_rows = indptr.shape[0] - 1
    counts = np.zeros(n_rows + 1, dtype=np.int64)
    for r in numba.prange(n_rows):
        q = indptr[r]
        end = indptr[r + 1]
        k = 0
        while q < end:
            first = indices[q]
            k += 1
            while q < end and indices[q] < first + width:
                q += 1
        counts[r + 1] = k
    return counts


@numba.njit(cache=True, parallel=True)
def _fill_blocks(indptr, indices, data, block_ptr, width):
    n_rows = indptr.shape[0] - 1
    n_blocks = block_ptr[n_rows]
    first_col = np.zeros(n_blocks, dtype=np.uint32)
    values = np.zeros(n_blocks * width, dtype=np.float32)
    for r in numba.prange(n_rows):
        q = indptr[r]
        end = indptr[r + 1]
        k = block_ptr[r]
        while q < end:
            first = indices[q]
            first_col[k] = first
            while q < end and indices[q] < first + width:
                values[k * width + indices[q] - first] = data[q]
                q += 1
            k += 1
    return first_col, values


def _split(work_ptr: np.ndarray, parts: int) -> np.ndarray:
    """Row boundaries giving each of ``parts`` threads about the same number of blocks."""
    goals = np.linspace(0, work_ptr[-1], parts + 1)
    bounds = np.searchsorted(work_ptr, goals, side="left").astype(np.int64)
    bounds[0], bounds[-1] = 0, len(work_ptr) - 1
    return np.maximum.accumulate(bounds)


@dataclass(frozen=True)
class BlockRows:
    """A sparse matrix stored row by row as blocks of :data:`WIDTH` consecutive columns.

    Attributes
    ----------
    block_ptr : ndarray of uint64, shape (n_rows + 1,)
        Row ``r``'s blocks are ``block_ptr[r]:block_ptr[r + 1]``.
    first_col : ndarray of uint32
        First column of each block.
    values : ndarray of float32, shape (n_blocks * WIDTH,)
        Each block's values, column ``first_col[k] + j`` at ``values[k * WIDTH + j]``.
    shape : tuple
        Shape of the matrix.
    nnz : int
        Non-zeros of the matrix it was built from.
    """

    block_ptr: np.ndarray
    first_col: np.ndarray
    values: np.ndarray
    shape: tuple
    nnz: int

    @classmethod
    def from_matrix(cls, matrix) -> BlockRows:
        """Build from any SciPy sparse matrix (or array)."""
        csr = sp.csr_matrix(matrix)
        if csr.shape[1] >= np.iinfo(np.uint32).max - WIDTH:
            raise ValueError("too many columns for 32-bit block columns")
        if not csr.has_canonical_format:  # sorted, unique column indices in each row
            csr = csr.copy()
            csr.sum_duplicates()
        block_ptr = np.cumsum(_count_blocks(csr.indptr, csr.indices, WIDTH))
        first_col, values = _fill_blocks(csr.indptr, csr.indices, csr.data, block_ptr, WIDTH)
        return cls(block_ptr.astype(np.uint64), first_col, values, csr.shape, int(csr.nnz))

    @property
    def n_blocks(self) -> int:
        return int(self.block_ptr[-1])

    @property
    def fill(self) -> float:
        """Fraction of stored values that are non-zeros of the matrix."""
        return self.nnz / max(self.n_blocks * WIDTH, 1)

    def matvec(self, x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """``matrix @ x`` in float64; with ``rows``, only those rows of it (in that order)."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.shape[1],):
            raise ValueError(f"expected a vector of {self.shape[1]} values, got {x.shape}")
        padded = np.zeros(self.shape[1] + WIDTH)
        padded[: self.shape[1]] = x
        rows, bounds = self._rows_and_bounds(rows)
        return _block_matvec(self.block_ptr, self.first_col, self.values, padded, rows, bounds)

    def _rows_and_bounds(self, rows):
        if rows is None:
            rows = np.arange(self.shape[0], dtype=np.uint64)
        else:
            rows = np.ascontiguousarray(rows, dtype=np.uint64)
        work = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(self.block_ptr[rows + 1] - self.block_ptr[rows], out=work[1:])
        return rows, _split(work, numba.get_num_threads())

    def rmatvec(self, y: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """``matrix.T @ y`` in float64.

        With ``rows``, ``y[i]`` belongs to row ``rows[i]`` and every other row's is zero (the
        optimiser's dose gradient vanishes on organ voxels below their limits).
        """
        y = np.ascontiguousarray(y, dtype=np.float64)
        expected = self.shape[0] if rows is None else len(rows)
        if y.shape != (expected,):
            raise ValueError(f"expected a vector of {expected} values, got {y.shape}")
        rows, bounds = self._rows_and_bounds(rows)
        out = _block_rmatvec(
            self.block_ptr, self.first_col, self.values, y, rows, bounds, self.shape[1] + WIDTH
        )
        return out[: self.shape[1]]


@numba.njit(cache=True, parallel=True, fastmath=True)
def _block_matvec(block_ptr, first_col, values, x, rows, bounds):
    out = np.zeros(rows.shape[0])
    for t in numba.prange(bounds.shape[0] - 1):
        for i in range(bounds[t], bounds[t + 1]):
            r = rows[i]
            # eight running sums, one per column of a block: LLVM turns them into one vector
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
            k = _U(block_ptr[r])
            end = _U(block_ptr[r + _U(1)])
            while k < end:
                c = _U(first_col[k])
                o = k * _U(8)
                a0 += values[o] * x[c]
                a1 += values[o + _U(1)] * x[c + _U(1)]
                a2 += values[o + _U(2)] * x[c + _U(2)]
                a3 += values[o + _U(3)] * x[c + _U(3)]
                a4 += values[o + _U(4)] * x[c + _U(4)]
                a5 += values[o + _U(5)] * x[c + _U(5)]
                a6 += values[o + _U(6)] * x[c + _U(6)]
                a7 += values[o + _U(7)] * x[c + _U(7)]
                k += _U(1)
            out[i] = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
    return out


@numba.njit(cache=True, parallel=True, fastmath=True)
def _block_rmatvec(block_ptr, first_col, values, y, rows, bounds, n_out):
    n_threads = bounds.shape[0] - 1
    partial = np.zeros((n_threads, n_out))
    for t in numba.prange(n_threads):
        acc = partial[t]
        for i in range(bounds[t], bounds[t + 1]):
            r = rows[i]
            yr = y[i]
            k = _U(block_ptr[r])
            end = _U(block_ptr[r + _U(1)])
            while k < end:
                c = _U(first_col[k])
                o = k * _U(8)
                for j in range(8):
                    acc[c + _U(j)] += values[o + _U(j)] * yr
                k += _U(1)
    out = partial[0].copy()
    for t in range(1, n_threads):
        out += partial[t]
    return out
