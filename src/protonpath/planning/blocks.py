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
* work is split between threads by blocks, not rows.

Values are float32 (the dose model is not more precise than that); sums are float64.
:meth:`BlockRows.compact` stores them in 16 bits instead, each block as integers times one
float32 scale (its largest value / 65535): an error below 1e-5 of the block's largest value,
and a third less memory to read per product (24 instead of 36 bytes per block), which is what
the products wait for.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from protonpath.planning.threads import work_parts

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
                values[k * width + indices[q] - first] += data[q]  # duplicates add up
                q += 1
            k += 1
    return first_col, values


def _threads() -> int:
    return numba.get_num_threads()


@contextmanager
def _slp_vectoriser():
    """numba's LLVM settings for the product kernels, while they compile: the SLP vectoriser on
    and the loop vectoriser off.

    With numba's defaults (SLP off, loop vectoriser on) LLVM vectorises a row's loop across
    consecutive blocks, gathering ``x`` one element per lane (``vgatherqpd``), and the products
    ran at about 4 ns per block.  The SLP vectoriser instead turns each block's eight columns
    into vector loads and fused multiply-adds: 1.4 ns per block for the forward product and
    the objective pass 2.5-3.5x faster on an AMD EPYC (AVX-512), about the time of reading
    the matrix.  The settings are numba's process-wide configuration; they are restored at
    once (these kernels compile eagerly, or load from numba's cache, at import).
    """
    saved = numba.config.SLP_VECTORIZE, numba.config.LOOP_VECTORIZE
    numba.config.SLP_VECTORIZE, numba.config.LOOP_VECTORIZE = 1, 0
    try:
        yield
    finally:
        numba.config.SLP_VECTORIZE, numba.config.LOOP_VECTORIZE = saved


def _product_kernel(*signatures):
    """Compile a product kernel now, for ``signatures``, under :func:`_slp_vectoriser`."""

    def compile_(function):
        with _slp_vectoriser():
            return numba.njit(list(signatures), cache=True, parallel=True, fastmath=True)(function)

    return compile_


_u64 = numba.types.Array(numba.uint64, 1, "C")
_u32 = numba.types.Array(numba.uint32, 1, "C")
_u16 = numba.types.Array(numba.uint16, 1, "C")
_i64 = numba.types.Array(numba.int64, 1, "C")
_i8 = numba.types.Array(numba.int8, 1, "C")
_f32 = numba.types.Array(numba.float32, 1, "C")
_f64 = numba.types.Array(numba.float64, 1, "C")


@numba.njit(cache=True, parallel=True)
def _csc_to_csr(indptr, indices, data, n_rows, n_threads):
    """CSR arrays (sorted columns, float32 values) of a canonical CSC matrix: each thread
    takes a range of columns, so that rows receive their columns in order."""
    n_cols = indptr.shape[0] - 1
    col_bounds = np.zeros(n_threads + 1, dtype=np.int64)
    for t in range(1, n_threads + 1):  # about the same number of non-zeros per thread
        goal = indptr[n_cols] * t // n_threads
        c = col_bounds[t - 1]
        while c < n_cols and indptr[c] < goal:
            c += 1
        col_bounds[t] = c
    col_bounds[n_threads] = n_cols
    counts = np.zeros((n_threads, n_rows), dtype=np.int64)
    for t in numba.prange(n_threads):
        for q in range(indptr[col_bounds[t]], indptr[col_bounds[t + 1]]):
            counts[t, indices[q]] += 1
    row_ptr = np.zeros(n_rows + 1, dtype=np.int64)
    for r in range(n_rows):
        total = row_ptr[r]
        for t in range(n_threads):  # counts become each thread's first slot in the row
            c = counts[t, r]
            counts[t, r] = total
            total += c
        row_ptr[r + 1] = total
    out_indices = np.empty(indptr[n_cols], dtype=np.int32)
    out_data = np.empty(indptr[n_cols], dtype=np.float32)
    for t in numba.prange(n_threads):
        slot = counts[t]
        for c in range(col_bounds[t], col_bounds[t + 1]):
            for q in range(indptr[c], indptr[c + 1]):
                r = indices[q]
                out_indices[slot[r]] = c
                out_data[slot[r]] = data[q]
                slot[r] += 1
    return row_ptr, out_indices, out_data


@numba.njit(cache=True, parallel=True)
def _csc_count_blocks(indptr, indices, n_rows, width, n_threads):
    """Blocks of each row of a CSC matrix (``counts[r + 1]``), straight from its columns.

    Columns are swept in order, each thread keeping the rows of its own range: a row's block
    starts at the first column not covered by its current block, as in :func:`_count_blocks`
    on the rows, without building the transposed (CSR) copy of the matrix.
    """
    n_cols = indptr.shape[0] - 1
    counts = np.zeros(n_rows + 1, dtype=np.int64)
    for t in numba.prange(n_threads):
        lo = n_rows * t // n_threads
        hi = n_rows * (t + 1) // n_threads
        current = np.full(hi - lo, -(1 << 40), dtype=np.int64)
        for c in range(n_cols):
            for q in range(indptr[c], indptr[c + 1]):
                r = np.int64(indices[q])
                if r < lo or r >= hi:
                    continue
                if c >= current[r - lo] + width:
                    current[r - lo] = c
                    counts[r + 1] += 1
    return counts


@numba.njit(cache=True, parallel=True)
def _csc_fill_blocks(indptr, indices, data, block_ptr, n_rows, width, n_threads):
    n_cols = indptr.shape[0] - 1
    n_blocks = block_ptr[n_rows]
    first_col = np.zeros(n_blocks, dtype=np.uint32)
    values = np.zeros(n_blocks * width, dtype=np.float32)
    for t in numba.prange(n_threads):
        lo = n_rows * t // n_threads
        hi = n_rows * (t + 1) // n_threads
        current = np.full(hi - lo, -(1 << 40), dtype=np.int64)
        slot = block_ptr[lo:hi] - 1  # the block each row is filling
        for c in range(n_cols):
            for q in range(indptr[c], indptr[c + 1]):
                r = np.int64(indices[q])
                if r < lo or r >= hi:
                    continue
                i = r - lo
                if c >= current[i] + width:
                    current[i] = c
                    slot[i] += 1
                    first_col[slot[i]] = c
                values[slot[i] * width + c - current[i]] += data[q]  # duplicates add up
    return first_col, values


@numba.njit(cache=True, inline="always")
def _level(value, inverse):
    """The 16-bit level of a non-negative ``value`` in a block whose largest value is
    ``65535 / inverse``: rounded to the nearest (a multiplication, not a division per value;
    both ways of building compact blocks use it, so they store the same levels)."""
    return np.uint16(
        min(max(value * inverse + np.float32(0.5), np.float32(0.0)), np.float32(65535.0))
    )


@numba.njit(cache=True)
def _flush(stage, at, k, q, scale, width):
    """Quantise the staged values ``stage[at:at + width]`` into block ``k`` and clear them."""
    top = np.float32(0.0)
    for j in range(width):
        top = max(top, abs(stage[at + j]))
    step = top / np.float32(65535.0)
    # a block of subnormal values (a far halo tail) has a step of 0 in float32: it stays 0
    if step > 0:
        scale[k] = step
        inverse = np.float32(65535.0) / top
        for j in range(width):
            q[k * width + j] = _level(stage[at + j], inverse)
    for j in range(width):
        stage[at + j] = 0.0


@numba.njit(cache=True, parallel=True)
def _csc_fill_blocks_q16(indptr, indices, data, block_ptr, n_rows, width, n_threads):
    """:func:`_csc_fill_blocks` writing compact blocks: a row's block is complete when the
    sweep reaches a column past it, so each row stages one block of float32 values only."""
    n_cols = indptr.shape[0] - 1
    n_blocks = block_ptr[n_rows]
    first_col = np.zeros(n_blocks, dtype=np.uint32)
    q = np.zeros(n_blocks * width, dtype=np.uint16)
    scale = np.zeros(n_blocks, dtype=np.float32)
    for t in numba.prange(n_threads):
        lo = n_rows * t // n_threads
        hi = n_rows * (t + 1) // n_threads
        # each row's current block's first column and number side by side: one cache line
        # per visit instead of two (the rows of a column come in no order)
        state = np.empty(2 * (hi - lo), dtype=np.int64)
        for i in range(hi - lo):
            state[2 * i] = -(1 << 40)
            state[2 * i + 1] = block_ptr[lo + i] - 1
        stage = np.zeros((hi - lo) * width, dtype=np.float32)
        for c in range(n_cols):
            for p in range(indptr[c], indptr[c + 1]):
                r = np.int64(indices[p])
                if r < lo or r >= hi:
                    continue
                i = r - lo
                current = state[2 * i]
                if c >= current + width:
                    k = state[2 * i + 1]
                    if k >= block_ptr[r]:
                        _flush(stage, i * width, k, q, scale, width)
                    current = c
                    state[2 * i] = c
                    state[2 * i + 1] = k + 1
                    first_col[k + 1] = c
                stage[i * width + c - current] += data[p]
        for i in range(hi - lo):
            k = state[2 * i + 1]
            if k >= block_ptr[lo + i]:
                _flush(stage, i * width, k, q, scale, width)
    return first_col, q, scale


@numba.njit(cache=True)
def _split(block_ptr, rows, parts):
    """Boundaries in ``rows`` giving each of ``parts`` threads about the same number of
    blocks (voxel rows of a target hold many more spots than rows at the edge of a field)."""
    n = rows.shape[0]
    total = 0
    for i in range(n):
        r = rows[i]
        total += np.int64(block_ptr[r + _U(1)] - block_ptr[r])
    bounds = np.full(parts + 1, n, dtype=np.int64)
    bounds[0] = 0
    t = 1
    done = 0
    for i in range(n):
        while t < parts and done * parts >= t * total:
            bounds[t] = i
            t += 1
        r = rows[i]
        done += np.int64(block_ptr[r + _U(1)] - block_ptr[r])
    return bounds


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
        Stored values that are not zero.
    scale : ndarray of float32, shape (n_blocks,), or None
        For compact storage (:meth:`compact`): ``values`` are uint16 and block ``k``'s values
        are ``values[k * WIDTH + j] * scale[k]``.
    """

    block_ptr: np.ndarray
    first_col: np.ndarray
    values: np.ndarray
    shape: tuple
    nnz: int
    scale: np.ndarray | None = None

    @classmethod
    def from_matrix(cls, matrix, compact: bool = False) -> BlockRows:
        """Build from any SciPy sparse matrix (or array); with ``compact``, in the compact
        storage of :meth:`compact` (from a CSC matrix without a float32 copy on the way)."""
        if matrix.shape[1] >= np.iinfo(np.uint32).max - WIDTH:
            raise ValueError("too many columns for 32-bit block columns")
        if compact and sp.issparse(matrix) and matrix.format == "csc":
            if matrix.nnz and float(matrix.data.min()) < 0.0:
                raise ValueError("compact storage holds non-negative values only (doses)")
            n_rows = int(matrix.shape[0])
            threads = max(1, min(_threads(), n_rows))
            counts = _csc_count_blocks(matrix.indptr, matrix.indices, n_rows, WIDTH, threads)
            block_ptr = np.cumsum(counts)
            first_col, values, scale = _csc_fill_blocks_q16(
                matrix.indptr, matrix.indices, matrix.data, block_ptr, n_rows, WIDTH, threads
            )
            nnz = int(np.count_nonzero(values))
            shape = tuple(matrix.shape)
            return cls(block_ptr.astype(np.uint64), first_col, values, shape, nnz, scale)
        if compact:
            return cls.from_matrix(matrix).compact()
        if sp.issparse(matrix) and matrix.format == "csc":
            # the dose engine's layout: blocks straight from the columns, in parallel, without
            # a transposed copy (which would hold every entry a second time at the peak)
            n_rows = int(matrix.shape[0])
            threads = max(1, min(_threads(), n_rows))
            counts = _csc_count_blocks(matrix.indptr, matrix.indices, n_rows, WIDTH, threads)
            block_ptr = np.cumsum(counts)
            first_col, values = _csc_fill_blocks(
                matrix.indptr, matrix.indices, matrix.data, block_ptr, n_rows, WIDTH, threads
            )
        else:
            csr = sp.csr_matrix(matrix)
            if not csr.has_sorted_indices:
                csr = csr.copy()
                csr.sort_indices()
            indptr, indices, data = csr.indptr, csr.indices, csr.data
            block_ptr = np.cumsum(_count_blocks(indptr, indices, WIDTH))
            first_col, values = _fill_blocks(indptr, indices, data, block_ptr, WIDTH)
        nnz = int(np.count_nonzero(values))
        return cls(block_ptr.astype(np.uint64), first_col, values, tuple(matrix.shape), nnz)

    def compact(self) -> BlockRows:
        """The same matrix with 16-bit values scaled per block (see the module docstring)."""
        if self.scale is not None:
            return self
        if len(self.values) and float(self.values.min()) < 0.0:
            raise ValueError("compact storage holds non-negative values only (doses)")
        values, scale = _quantise(self.values, WIDTH)
        return BlockRows(self.block_ptr, self.first_col, values, self.shape, self.nnz, scale)

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
        if self.scale is not None:
            return _block_matvec_q16(
                self.block_ptr, self.first_col, self.values, self.scale, padded, rows, bounds
            )
        return _block_matvec(self.block_ptr, self.first_col, self.values, padded, rows, bounds)

    def split(self, rows: np.ndarray | None = None):
        """The rows (uint64, every row for None) and their split between the product
        threads, for :meth:`objective`'s ``split`` (a caller computing the same rows over and
        over computes these once)."""
        return self._rows_and_bounds(rows)

    def _rows_and_bounds(self, rows):
        if rows is None:
            rows = np.arange(self.shape[0], dtype=np.uint64)
        else:
            rows = np.ascontiguousarray(rows, dtype=np.uint64)
        return rows, _split(self.block_ptr, rows, work_parts())

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
        n_out = self.shape[1] + WIDTH
        if self.scale is not None:
            out = _block_rmatvec_q16(
                self.block_ptr, self.first_col, self.values, self.scale, y, rows, bounds, n_out
            )
        else:
            out = _block_rmatvec(
                self.block_ptr, self.first_col, self.values, y, rows, bounds, n_out
            )
        return out[: self.shape[1]]

    def objective(self, x: np.ndarray, rows, term_ptr, kind, ref, coef, split=None):
        """Value and gradient (``matrix.T @ dC/dd``) of a sum of per-row dose terms, in one
        pass over the matrix: each row's dose, its terms' value and derivative, and the
        row's share of the gradient while its blocks are still in the cache (the separate
        forward and transposed products read the matrix twice).

        Row ``rows[i]`` (every row when ``rows`` is None) has the terms
        ``term_ptr[i]:term_ptr[i + 1]``, term ``p`` being ``coef[p] * (d - ref[p])^2``
        (:data:`TERM_DEVIATION`), the same over or under ``ref[p]`` only
        (:data:`TERM_OVERDOSE`, :data:`TERM_UNDERDOSE`) or ``coef[p] * d``
        (:data:`TERM_MEAN`) of the row's dose ``d``.  ``split`` is :meth:`split`'s answer
        for ``rows``, when the caller keeps it.
        """
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.shape[1],):
            raise ValueError(f"expected a vector of {self.shape[1]} values, got {x.shape}")
        padded = np.zeros(self.shape[1] + WIDTH)
        padded[: self.shape[1]] = x
        rows, bounds = self._rows_and_bounds(rows) if split is None else split
        if len(term_ptr) != len(rows) + 1:
            raise ValueError(f"expected {len(rows) + 1} term pointers, got {len(term_ptr)}")
        n_out = self.shape[1] + WIDTH
        terms = (
            np.ascontiguousarray(term_ptr, dtype=np.int64),
            np.ascontiguousarray(kind, dtype=np.int8),
            np.ascontiguousarray(ref, dtype=np.float64),
            np.ascontiguousarray(coef, dtype=np.float64),
        )
        if self.scale is not None:
            value, out = _block_objective_q16(
                self.block_ptr,
                self.first_col,
                self.values,
                self.scale,
                padded,
                rows,
                bounds,
                *terms,
                n_out,
            )
        else:
            value, out = _block_objective(
                self.block_ptr, self.first_col, self.values, padded, rows, bounds, *terms, n_out
            )
        return float(value), out[: self.shape[1]]


@numba.njit(cache=True, parallel=True)
def _quantise(values, width):
    n_blocks = values.shape[0] // width
    q = np.zeros(values.shape[0], dtype=np.uint16)
    scale = np.zeros(n_blocks, dtype=np.float32)
    for k in numba.prange(n_blocks):
        top = np.float32(0.0)
        for j in range(width):
            top = max(top, abs(values[k * width + j]))
        step = top / np.float32(65535.0)
        if step > 0:  # subnormal blocks stay 0 (see _flush)
            scale[k] = step
            inverse = np.float32(65535.0) / top
            for j in range(width):
                q[k * width + j] = _level(values[k * width + j], inverse)
    return q, scale


# The product kernels.  Each block is written out as eight columns, which the SLP vectoriser
# (see _slp_vectoriser) turns into vector loads and fused multiply-adds:
#
# * a row's dose keeps eight running sums, one per column of a block, summed at the row's end
#   (compact blocks: each value times its block's scale, so no sum per block);
# * the transposed product loads a block's eight values and the eight sums they add to before
#   storing any (numba gives LLVM no aliasing information, so a store between two loads of
#   the block would keep them apart).

_FORWARD = (_u64, _u32, _f32, _f64, _u64, _i64)
_FORWARD_Q16 = (_u64, _u32, _u16, _f32, _f64, _u64, _i64)


@_product_kernel(_FORWARD)
def _block_matvec(block_ptr, first_col, values, x, rows, bounds):
    out = np.zeros(rows.shape[0])
    for t in numba.prange(bounds.shape[0] - 1):
        for i in range(bounds[t], bounds[t + 1]):
            r = rows[i]
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


@_product_kernel(_FORWARD_Q16)
def _block_matvec_q16(block_ptr, first_col, values, scale, x, rows, bounds):
    out = np.zeros(rows.shape[0])
    for t in numba.prange(bounds.shape[0] - 1):
        for i in range(bounds[t], bounds[t + 1]):
            r = rows[i]
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
            k = _U(block_ptr[r])
            end = _U(block_ptr[r + _U(1)])
            while k < end:
                c = _U(first_col[k])
                o = k * _U(8)
                s = np.float64(scale[k])
                a0 += s * (values[o] * x[c])
                a1 += s * (values[o + _U(1)] * x[c + _U(1)])
                a2 += s * (values[o + _U(2)] * x[c + _U(2)])
                a3 += s * (values[o + _U(3)] * x[c + _U(3)])
                a4 += s * (values[o + _U(4)] * x[c + _U(4)])
                a5 += s * (values[o + _U(5)] * x[c + _U(5)])
                a6 += s * (values[o + _U(6)] * x[c + _U(6)])
                a7 += s * (values[o + _U(7)] * x[c + _U(7)])
                k += _U(1)
            out[i] = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
    return out


@numba.njit(cache=True, inline="always", fastmath=True)
def _add_block(acc, c, values, o, y):
    """``acc[c + j] += values[o + j] * y`` for the eight columns of one block."""
    v0 = values[o]
    v1 = values[o + _U(1)]
    v2 = values[o + _U(2)]
    v3 = values[o + _U(3)]
    v4 = values[o + _U(4)]
    v5 = values[o + _U(5)]
    v6 = values[o + _U(6)]
    v7 = values[o + _U(7)]
    b0 = acc[c]
    b1 = acc[c + _U(1)]
    b2 = acc[c + _U(2)]
    b3 = acc[c + _U(3)]
    b4 = acc[c + _U(4)]
    b5 = acc[c + _U(5)]
    b6 = acc[c + _U(6)]
    b7 = acc[c + _U(7)]
    acc[c] = b0 + v0 * y
    acc[c + _U(1)] = b1 + v1 * y
    acc[c + _U(2)] = b2 + v2 * y
    acc[c + _U(3)] = b3 + v3 * y
    acc[c + _U(4)] = b4 + v4 * y
    acc[c + _U(5)] = b5 + v5 * y
    acc[c + _U(6)] = b6 + v6 * y
    acc[c + _U(7)] = b7 + v7 * y


@_product_kernel((_u64, _u32, _f32, _f64, _u64, _i64, numba.int64))
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
                _add_block(acc, _U(first_col[k]), values, k * _U(8), yr)
                k += _U(1)
    out = partial[0].copy()
    for t in range(1, n_threads):
        out += partial[t]
    return out


@_product_kernel((_u64, _u32, _u16, _f32, _f64, _u64, _i64, numba.int64))
def _block_rmatvec_q16(block_ptr, first_col, values, scale, y, rows, bounds, n_out):
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
                _add_block(acc, _U(first_col[k]), values, k * _U(8), scale[k] * yr)
                k += _U(1)
    out = partial[0].copy()
    for t in range(1, n_threads):
        out += partial[t]
    return out


#: Objective kinds of :func:`objective_gradient`'s terms (the order of ``optimise.KINDS``).
TERM_DEVIATION, TERM_OVERDOSE, TERM_UNDERDOSE, TERM_MEAN = 0, 1, 2, 3


@numba.njit(cache=True, inline="always", fastmath=True)
def _row_terms(d, p0, p1, kind, ref, coef):
    """Value and dose derivative of a row's objective terms ``p0:p1`` at dose ``d``."""
    f = 0.0
    g = 0.0
    for p in range(p0, p1):
        c = coef[p]
        if kind[p] == TERM_MEAN:
            f += c * d
            g += c
            continue
        diff = d - ref[p]
        if kind[p] == TERM_OVERDOSE and diff < 0.0:
            diff = 0.0
        elif kind[p] == TERM_UNDERDOSE and diff > 0.0:
            diff = 0.0
        f += c * diff * diff
        g += 2.0 * c * diff
    return f, g


_TERMS = (_i64, _i8, _f64, _f64, numba.int64)


@_product_kernel(_FORWARD + _TERMS)
def _block_objective(
    block_ptr, first_col, values, x, rows, bounds, term_ptr, kind, ref, coef, n_out
):
    n_parts = bounds.shape[0] - 1
    partial = np.zeros((n_parts, n_out))
    totals = np.zeros(n_parts)
    for t in numba.prange(n_parts):
        acc = partial[t]
        total = 0.0
        for i in range(bounds[t], bounds[t + 1]):
            p0 = term_ptr[i]
            p1 = term_ptr[i + 1]
            if p0 == p1:
                continue  # a row no objective acts on: its dose is not needed
            r = rows[i]
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
            d = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
            f, g = _row_terms(d, p0, p1, kind, ref, coef)
            total += f
            if g == 0.0:
                continue  # e.g. an organ voxel below its limit
            k = _U(block_ptr[r])
            while k < end:  # the row's blocks again, from the cache this time
                _add_block(acc, _U(first_col[k]), values, k * _U(8), g)
                k += _U(1)
        totals[t] = total
    out = partial[0].copy()
    for t in range(1, n_parts):
        out += partial[t]
    return totals.sum(), out


@_product_kernel(_FORWARD_Q16 + _TERMS)
def _block_objective_q16(
    block_ptr, first_col, values, scale, x, rows, bounds, term_ptr, kind, ref, coef, n_out
):
    n_parts = bounds.shape[0] - 1
    partial = np.zeros((n_parts, n_out))
    totals = np.zeros(n_parts)
    for t in numba.prange(n_parts):
        acc = partial[t]
        total = 0.0
        for i in range(bounds[t], bounds[t + 1]):
            p0 = term_ptr[i]
            p1 = term_ptr[i + 1]
            if p0 == p1:
                continue
            r = rows[i]
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
            k = _U(block_ptr[r])
            end = _U(block_ptr[r + _U(1)])
            while k < end:
                c = _U(first_col[k])
                o = k * _U(8)
                s = np.float64(scale[k])
                a0 += s * (values[o] * x[c])
                a1 += s * (values[o + _U(1)] * x[c + _U(1)])
                a2 += s * (values[o + _U(2)] * x[c + _U(2)])
                a3 += s * (values[o + _U(3)] * x[c + _U(3)])
                a4 += s * (values[o + _U(4)] * x[c + _U(4)])
                a5 += s * (values[o + _U(5)] * x[c + _U(5)])
                a6 += s * (values[o + _U(6)] * x[c + _U(6)])
                a7 += s * (values[o + _U(7)] * x[c + _U(7)])
                k += _U(1)
            d = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
            f, g = _row_terms(d, p0, p1, kind, ref, coef)
            total += f
            if g == 0.0:
                continue
            k = _U(block_ptr[r])
            while k < end:
                _add_block(acc, _U(first_col[k]), values, k * _U(8), scale[k] * g)
                k += _U(1)
        totals[t] = total
    out = partial[0].copy()
    for t in range(1, n_parts):
        out += partial[t]
    return totals.sum(), out
