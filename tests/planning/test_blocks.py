"""The optimiser's block-row products against SciPy's, on matrices shaped to catch edges."""

import numpy as np
import pytest
import scipy.sparse as sp

from protonpath.planning import blocks
from protonpath.planning.blocks import WIDTH, BlockRows


def run_matrix(rng, n_rows, n_cols, runs_per_row=3, max_run=20, empty_every=5):
    """Rows made of runs of consecutive columns (as spots reach a voxel), some rows empty,
    runs that touch the last column."""
    rows, cols, vals = [], [], []
    for r in range(n_rows):
        if empty_every and r % empty_every == 0:
            continue
        for _ in range(runs_per_row):
            length = int(rng.integers(1, max_run + 1))
            start = int(rng.integers(0, max(n_cols - length, 0) + 1))
            if rng.random() < 0.2:
                start = max(n_cols - length, 0)  # a run ending at the last column
            for c in range(start, min(start + length, n_cols)):
                if rng.random() < 0.9:  # gaps inside runs
                    rows.append(r)
                    cols.append(c)
                    vals.append(rng.random())
    m = sp.coo_matrix((vals, (rows, cols)), shape=(n_rows, n_cols)).tocsr()
    m.sum_duplicates()
    return m


@pytest.mark.parametrize("n_rows,n_cols", [(1, 1), (7, 5), (40, 8), (300, 9), (500, 1237)])
def test_products_match_scipy(n_rows, n_cols):
    rng = np.random.default_rng(n_rows * 31 + n_cols)
    m = run_matrix(rng, n_rows, n_cols)
    b = BlockRows.from_matrix(m)
    assert b.shape == m.shape and b.nnz == m.nnz
    x = rng.random(n_cols)
    y = rng.random(n_rows)
    tol = 1e-5 * max(1.0, float(abs(m).sum()))  # values are stored in float32
    np.testing.assert_allclose(b.matvec(x), m @ x, atol=tol)
    np.testing.assert_allclose(b.rmatvec(y), m.T @ y, atol=tol)


def test_products_on_a_subset_of_rows():
    rng = np.random.default_rng(7)
    m = run_matrix(rng, 400, 777)
    b = BlockRows.from_matrix(m)
    rows = np.sort(rng.choice(400, 123, replace=False))
    x = rng.random(777)
    y = rng.random(len(rows))
    np.testing.assert_allclose(b.matvec(x, rows), (m @ x)[rows], rtol=1e-5, atol=1e-6)
    # y belongs to the listed rows, every other row counts as zero
    full_y = np.zeros(400)
    full_y[rows] = y
    np.testing.assert_allclose(b.rmatvec(y, rows), m.T @ full_y, rtol=1e-5, atol=1e-6)
    # an empty subset gives zeros, not an error
    assert b.matvec(x, np.array([], dtype=int)).shape == (0,)
    np.testing.assert_array_equal(b.rmatvec(np.zeros(0), np.array([], dtype=int)), 0.0)


def test_blocks_cover_runs_with_few_padding_zeros():
    # one row holding the 20 consecutive columns 3..22: three blocks (3, 11, 19)
    m = sp.csr_matrix((np.arange(1.0, 21.0), (np.zeros(20, int), np.arange(3, 23))), shape=(1, 30))
    b = BlockRows.from_matrix(m)
    assert b.n_blocks == 3
    np.testing.assert_array_equal(b.first_col, [3, 11, 19])
    assert b.fill == pytest.approx(20 / (3 * WIDTH))
    np.testing.assert_array_equal(b.values[:WIDTH], np.arange(1.0, 9.0))


def test_duplicates_and_unsorted_input_are_summed_without_touching_the_input():
    data = np.array([1.0, 2.0, 3.0, 4.0])
    indices = np.array([5, 1, 5, 0])
    indptr = np.array([0, 4])
    m = sp.csr_matrix((data, indices, indptr), shape=(1, 6))
    before = m.indices.copy()
    b = BlockRows.from_matrix(m)
    np.testing.assert_array_equal(m.indices, before)
    np.testing.assert_allclose(b.matvec(np.arange(6.0)), [2.0 * 1 + 4.0 * 5 + 4.0 * 0])


def test_wrong_vector_lengths_are_refused():
    b = BlockRows.from_matrix(sp.random(10, 20, density=0.3, random_state=1, format="csr"))
    with pytest.raises(ValueError, match="20 values"):
        b.matvec(np.ones(19))
    with pytest.raises(ValueError, match="10 values"):
        b.rmatvec(np.ones(20))
    with pytest.raises(ValueError, match="3 values"):
        b.rmatvec(np.ones(4), np.array([1, 2, 3]))


def test_thread_split_balances_blocks_and_covers_every_row():
    # rows of 100, 1, 1, 100, 0 and 98 blocks
    block_ptr = np.array([0, 100, 101, 102, 202, 202, 300], dtype=np.uint64)
    rows = np.arange(6, dtype=np.uint64)
    bounds = blocks._split(block_ptr, rows, 3)
    assert list(bounds) == [0, 1, 4, 6]
    assert list(blocks._split(block_ptr, rows, 1)) == [0, 6]
    # a subset of rows, in their order
    assert list(blocks._split(block_ptr, np.array([0, 5], dtype=np.uint64), 2)) == [0, 1, 2]
    # more threads than rows: empty parts, every row still in exactly one part
    bounds = blocks._split(np.array([0, 5], dtype=np.uint64), np.array([0], dtype=np.uint64), 4)
    assert bounds[0] == 0 and bounds[-1] == 1 and np.all(np.diff(bounds) >= 0)
    # no rows at all
    assert list(blocks._split(block_ptr, np.zeros(0, dtype=np.uint64), 2)) == [0, 0, 0]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_dose_engines_csc_layout_is_transposed_in_parallel_like_scipy(threads, monkeypatch):
    rng = np.random.default_rng(threads)
    m = run_matrix(rng, 250, 300).tocsc()
    m.sort_indices()
    monkeypatch.setattr(blocks, "_threads", lambda: threads)
    indptr, indices, data = blocks._csc_to_csr(m.indptr, m.indices, m.data, m.shape[0], threads)
    ref = m.tocsr()
    ref.sort_indices()
    np.testing.assert_array_equal(indptr, ref.indptr)
    np.testing.assert_array_equal(indices, ref.indices)
    np.testing.assert_allclose(data, ref.data, rtol=1e-7)
    b = BlockRows.from_matrix(m)
    x = rng.random(300)
    np.testing.assert_allclose(b.matvec(x), m @ x, rtol=1e-5)


def test_csc_input_with_unsorted_rows_and_duplicates():
    # column 0 holds rows 2, 0, 2 (row 2 twice); column 1 holds rows 1, 0
    m = sp.csc_matrix(
        (np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([2, 0, 2, 1, 0]), np.array([0, 3, 5])),
        shape=(3, 2),
    )
    b = BlockRows.from_matrix(m)
    x = np.array([10.0, 100.0])
    np.testing.assert_allclose(b.matvec(x), [2.0 * 10 + 5.0 * 100, 4.0 * 100, 4.0 * 10])
    np.testing.assert_allclose(b.rmatvec(np.ones(3)), [6.0, 9.0])


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_blocks_built_from_columns_equal_those_built_from_rows(threads, monkeypatch):
    """The CSC path (no transposed copy) makes exactly the blocks of the CSR path."""
    rng = np.random.default_rng(10 + threads)
    m = run_matrix(rng, 240, 310).tocsc()
    monkeypatch.setattr(blocks, "_threads", lambda: threads)
    from_columns = BlockRows.from_matrix(m)
    from_rows = BlockRows.from_matrix(m.tocsr())
    np.testing.assert_array_equal(from_columns.block_ptr, from_rows.block_ptr)
    np.testing.assert_array_equal(from_columns.first_col, from_rows.first_col)
    np.testing.assert_allclose(from_columns.values, from_rows.values, rtol=1e-7)
    assert from_columns.nnz == from_rows.nnz == m.nnz


@pytest.mark.parametrize("n_rows,n_cols", [(1, 1), (40, 8), (500, 1237)])
def test_compact_products_match_within_their_quantisation(n_rows, n_cols):
    """16-bit values scaled per block: each product within 1e-5 of the block's largest value
    (times the vector), on every row and on a subset."""
    rng = np.random.default_rng(n_rows)
    m = run_matrix(rng, n_rows, n_cols)
    m.data *= 10.0 ** rng.uniform(-6, 0, m.nnz)  # doses span orders of magnitude
    exact = BlockRows.from_matrix(m)
    small = exact.compact()
    assert small.values.dtype == np.uint16 and small.scale.shape == (exact.n_blocks,)
    assert small.compact() is small and small.nnz == exact.nnz
    x = rng.random(n_cols)
    y = rng.random(n_rows)
    bound = 1e-5 * np.abs(m).max(axis=1).toarray().ravel() * x.sum()
    assert np.all(np.abs(small.matvec(x) - m @ x) <= bound + 1e-15)
    rows = np.arange(0, n_rows, 3, dtype=np.uint64)
    assert np.all(np.abs(small.matvec(x, rows) - (m @ x)[rows.astype(int)]) <= bound[::3] + 1e-15)
    top = np.abs(m).max() * y.sum()
    np.testing.assert_allclose(small.rmatvec(y), m.T @ y, rtol=0, atol=1e-5 * top + 1e-15)


def test_compact_refuses_negative_values():
    m = sp.csr_matrix(np.array([[1.0, -2.0]]))
    with pytest.raises(ValueError, match="non-negative"):
        BlockRows.from_matrix(m).compact()


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_compact_blocks_built_from_columns_equal_compacted_blocks(threads, monkeypatch):
    """Quantised while the columns are swept (no float32 copy): the same blocks as building
    float32 blocks and compacting them, duplicates and unsorted rows included."""
    rng = np.random.default_rng(20 + threads)
    m = run_matrix(rng, 260, 330).tocsc()
    dup = sp.csc_matrix(
        (np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([2, 0, 2, 1, 0]), np.array([0, 3, 5])),
        shape=(3, 2),
    )
    monkeypatch.setattr(blocks, "_threads", lambda: threads)
    for matrix in (m, dup):
        direct = BlockRows.from_matrix(matrix, compact=True)
        via = BlockRows.from_matrix(matrix.tocsr()).compact()
        np.testing.assert_array_equal(direct.block_ptr, via.block_ptr)
        np.testing.assert_array_equal(direct.first_col, via.first_col)
        np.testing.assert_array_equal(direct.values, via.values)
        np.testing.assert_array_equal(direct.scale, via.scale)
    with pytest.raises(ValueError, match="non-negative"):
        BlockRows.from_matrix(sp.csc_matrix(np.array([[1.0, -2.0]])), compact=True)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_csc_matvec_matches_scipy_without_a_float64_copy(threads, monkeypatch):
    from protonpath.planning import dose

    rng = np.random.default_rng(30 + threads)
    m = run_matrix(rng, 200, 150).tocsc().astype(np.float32)
    x = rng.random(150)
    x[::4] = 0.0  # unused spots are skipped
    monkeypatch.setattr(dose.numba, "get_num_threads", lambda: threads)
    np.testing.assert_allclose(dose.csc_matvec(m, x), m.astype(np.float64) @ x, rtol=1e-6)
    with pytest.raises(ValueError, match="expected a vector of 150"):
        dose.csc_matvec(m, x[:-1])


def reference_objective(m, x, rows, term_ptr, kind, ref, coef):
    """Value and gradient of per-row terms from SciPy's products (two passes)."""
    dose = (m @ x)[rows]
    value = 0.0
    grad_dose = np.zeros(len(rows))
    for i in range(len(rows)):
        for p in range(term_ptr[i], term_ptr[i + 1]):
            if kind[p] == blocks.TERM_MEAN:
                value += coef[p] * dose[i]
                grad_dose[i] += coef[p]
                continue
            diff = dose[i] - ref[p]
            if kind[p] == blocks.TERM_OVERDOSE:
                diff = max(diff, 0.0)
            elif kind[p] == blocks.TERM_UNDERDOSE:
                diff = min(diff, 0.0)
            value += coef[p] * diff * diff
            grad_dose[i] += 2.0 * coef[p] * diff
    full = np.zeros(m.shape[0])
    np.add.at(full, rows, grad_dose)
    return value, m.T @ full


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_one_pass_objective_matches_two_products(compact, threads, monkeypatch):
    """Value and gradient of the four kinds of terms, rows with none, one or two terms, on
    every row and on a subset, in float32 and compact storage."""
    rng = np.random.default_rng(7 + threads)
    m = run_matrix(rng, 400, 300).tocsc()
    monkeypatch.setattr(blocks, "_threads", lambda: threads)
    b = BlockRows.from_matrix(m, compact=compact)
    x = rng.random(300)
    typical = float(np.median((m @ x)[m.getnnz(axis=1) > 0]))
    for rows in (None, np.sort(rng.choice(400, 150, replace=False))):
        n = 400 if rows is None else len(rows)
        n_terms = rng.integers(0, 3, n)  # 0, 1 or 2 terms per row
        term_ptr = np.concatenate([[0], np.cumsum(n_terms)])
        kind = rng.integers(0, 4, term_ptr[-1]).astype(np.int8)
        ref = typical * rng.uniform(0.5, 1.5, term_ptr[-1])
        coef = rng.uniform(0.1, 2.0, term_ptr[-1])
        value, grad = b.objective(x, rows, term_ptr, kind, ref, coef)
        every = np.arange(400) if rows is None else rows
        want_value, want_grad = reference_objective(m, x, every, term_ptr, kind, ref, coef)
        assert np.count_nonzero(grad) > 0
        tol = 1e-4 if compact else 1e-5
        assert value == pytest.approx(want_value, rel=tol)
        np.testing.assert_allclose(grad, want_grad, rtol=tol, atol=tol * np.abs(want_grad).max())
    with pytest.raises(ValueError, match="term pointers"):
        b.objective(x, None, np.zeros(5, dtype=np.int64), kind, ref, coef)


def test_compact_blocks_of_subnormal_values_are_zero_and_the_rest_is_kept():
    """A far halo tail can hold float32 subnormals (their 16-bit step underflows to 0): such
    a block is stored as zeros, with no division by zero, on both ways of building compact
    blocks."""
    tail = [4.1263e-41, 3e-41]
    one_row = np.zeros((1, 4), dtype=np.float32)
    one_row[0, :2] = tail
    dense = np.zeros((3, 2 * WIDTH), dtype=np.float32)
    dense[0, :2] = tail  # one block of subnormals only
    dense[1, :3] = [0.5, 1.0, 0.25]
    dense[2, WIDTH : WIDTH + 2] = [1e-42, 2.0]  # a subnormal beside a normal value
    for values, expected in ((one_row, [0.0]), (dense, [0.0, 1.75, 2.0])):
        m = sp.csc_matrix(values)
        x = np.ones(m.shape[1])
        for small in (
            BlockRows.from_matrix(m, compact=True),
            BlockRows.from_matrix(m.tocsr()).compact(),
        ):
            np.testing.assert_allclose(small.matvec(x), expected, rtol=1e-4, atol=1e-30)
            assert np.all(np.isfinite(small.scale))
    # the quantiser itself (inside the parallel kernels, where some threading layers hide the
    # error): a staged block of subnormals gives a zero step, no division by zero, and is cleared
    stage = np.zeros(WIDTH, dtype=np.float32)
    stage[:2] = tail
    q = np.zeros(WIDTH, dtype=np.uint16)
    scale = np.ones(1, dtype=np.float32)
    blocks._flush(stage, 0, 0, q, scale, WIDTH)
    assert not q.any() and not stage.any() and scale[0] == 1.0


def test_product_kernels_leave_numba_vectoriser_settings_as_they_were():
    """The product kernels compile with the SLP vectoriser on and the loop vectoriser off;
    numba's process-wide settings are restored afterwards, also when a compilation fails."""
    import numba

    before = numba.config.SLP_VECTORIZE, numba.config.LOOP_VECTORIZE
    with blocks._slp_vectoriser():
        assert (numba.config.SLP_VECTORIZE, numba.config.LOOP_VECTORIZE) == (1, 0)
    assert (numba.config.SLP_VECTORIZE, numba.config.LOOP_VECTORIZE) == before
    with pytest.raises(numba.core.errors.TypingError):
        blocks._product_kernel((numba.types.Array(numba.float64, 1, "C"),))(
            lambda x: x.no_such_attribute
        )
    assert (numba.config.SLP_VECTORIZE, numba.config.LOOP_VECTORIZE) == before
