"""L-BFGS-B with its per-iteration bookkeeping compiled (numba), for ``l <= x <= u``.

The algorithm of Byrd, Lu, Nocedal and Zhu (1995, "A limited memory algorithm for bound
constrained optimization"), written from the paper, with the projected subspace step of Morales
and Nocedal (2011) and the line search of Moré and Thuente (1994):

1. the limited-memory BFGS matrix in compact form ``B = theta I - W M W^T``,
   ``W = [Y, theta S]``, of the last ``k <= m`` pairs ``(s, y)`` (a pair joins only when
   ``s^T y > eps y^T y``); ``S`` and ``Y`` are kept as rows of a ring buffer, with their Gram
   matrices ``S^T S``, ``S^T Y`` over all variables and ``S^T S``, ``S^T Y``, ``Y^T Y`` over the
   free variables of the last subspace step, updated as pairs join (O(m n)) and as variables
   enter or leave that set (O(m^2) each);
2. the generalised Cauchy point: the first minimiser of the quadratic model along the projected
   steepest-descent path ``P(x - t g)``, walking the breakpoints in increasing order from a heap;
3. the model's minimiser over the variables free at that point (Sherman-Morrison-Woodbury on
   ``2k x 2k`` matrices), projected onto the box, or cut back to it along the step when the
   projection is not a descent direction;
4. a line search along ``d = xbar - x`` meeting the strong Wolfe conditions
   (``ftol = 1e-3``, ``gtol = 0.9``), first trial ``stp = 1`` (``min(1, 1/|d|)`` in the first
   iteration); a failed search drops the memory and starts again from steepest descent.

Stopping rules are SciPy's: the projected gradient's largest component at most ``pgtol``, or
the relative decrease ``(f_k - f_k+1) / max(|f_k|, |f_k+1|, 1)`` at most ``ftol``, or the
iteration or evaluation caps.  Everything between two evaluations of the objective is one
compiled call (the direction, one line-search step, the memory update), so the Python work per
iteration is a few calls; SciPy's ``setulb`` costs about 1 ms per call on 10,000 variables.

:func:`minimize` calls ``callback(Iterate)`` after each iteration; the callback may return a
new objective function, which is evaluated at the current point and used from then on with the
curvature memory kept (the spot-weight optimiser adds rows to its problem this way), or raise
:class:`StopIteration` to end the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np

EPS = float(np.finfo(np.float64).eps)
#: Most objective evaluations in one line search before it is given up (SciPy's 20).
MAX_LINE_SEARCH = 20
#: Moré-Thuente parameters: sufficient decrease, curvature, relative interval width.
LS_FTOL, LS_GTOL, LS_XTOL = 1e-3, 0.9, 0.1
BIG_STEP = 1e10

# line-search state, a float64 vector (indices)
_STX, _FX, _GX, _STY, _FY, _GY, _STMIN, _STMAX = 0, 1, 2, 3, 4, 5, 6, 7
_WIDTH, _WIDTH1, _FINIT, _GINIT, _GTEST, _STPMAX, _STAGE, _BRACKT = 8, 9, 10, 11, 12, 13, 14, 15
_LS_SIZE = 16

# line-search answers
LS_EVALUATE, LS_DONE, LS_FAILED = 0, 1, -1


@dataclass
class Iterate:
    """What the callback sees after each iteration (SciPy's ``intermediate_result``)."""

    x: np.ndarray
    fun: float
    nit: int
    nfev: int
    jac: np.ndarray | None = None


@dataclass
class Result:
    """The end of a run, named as :class:`scipy.optimize.OptimizeResult`."""

    x: np.ndarray
    fun: float
    jac: np.ndarray
    nit: int
    nfev: int
    success: bool
    message: str
    #: breakpoints passed, variables entering or leaving the free set, full recomputations of
    #: its Gram matrices, free variables: summed over the iterations (a diagnostic)
    counts: np.ndarray | None = None


# --------------------------------------------------------------------------------------------
# small dense algebra


@numba.njit(cache=True)
def _solve_in_place(a, b):
    """Solve ``a x = b`` (``b`` a matrix, overwritten by ``x``) by Gaussian elimination with
    partial pivoting; ``a`` is overwritten.  Returns False if ``a`` is singular."""
    n = a.shape[0]
    nrhs = b.shape[1]
    scale = 0.0
    for i in range(n):
        for j in range(n):
            scale = max(scale, abs(a[i, j]))
    if n == 0:
        return True
    if not scale > 0.0:
        return False
    for col in range(n):
        piv = col
        best = abs(a[col, col])
        for i in range(col + 1, n):
            if abs(a[i, col]) > best:
                best = abs(a[i, col])
                piv = i
        if not best > 1e-300 * scale or not np.isfinite(best):
            return False
        if piv != col:
            for j in range(n):
                a[col, j], a[piv, j] = a[piv, j], a[col, j]
            for j in range(nrhs):
                b[col, j], b[piv, j] = b[piv, j], b[col, j]
        inv = 1.0 / a[col, col]
        for i in range(col + 1, n):
            factor = a[i, col] * inv
            if factor != 0.0:
                for j in range(col + 1, n):
                    a[i, j] -= factor * a[col, j]
                for j in range(nrhs):
                    b[i, j] -= factor * b[col, j]
            a[i, col] = 0.0
    for col in range(n - 1, -1, -1):
        inv = 1.0 / a[col, col]
        for j in range(nrhs):
            acc = b[col, j]
            for i in range(col + 1, n):
                acc -= a[col, i] * b[i, j]
            b[col, j] = acc * inv
    return True


@numba.njit(cache=True)
def _middle(ss, sy, order, k, theta):
    """``M``, the inverse of ``K = [[-D, L^T], [L, theta S^T S]]`` in the pairs' age order
    (``order[a]`` the ring slot of the a-th oldest pair), or an empty matrix if singular.

    By blocks: with ``G = L D^-1`` and the Schur complement ``T = theta S^T S + L D^-1 L^T``
    (positive definite while every ``s_a^T y_a > 0``), ``M22 = T^-1``, ``M21 = T^-1 G``,
    ``M12 = M21^T`` and ``M11 = -D^-1 + G^T T^-1 G``: one ``k x k`` solve.
    """
    k2 = 2 * k
    dinv = np.empty(k)
    for i in range(k):
        dinv[i] = 1.0 / sy[order[i], order[i]]
    gmat = np.zeros((k, k))  # G[i, j] = L[i, j] / D[j], i > j
    for i in range(k):
        for j in range(i):
            gmat[i, j] = sy[order[i], order[j]] * dinv[j]
    t = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            acc = theta * ss[order[i], order[j]]
            for q in range(min(i, j)):  # (L D^-1 L^T)[i, j] = sum_q G[i, q] L[j, q]
                acc += gmat[i, q] * sy[order[j], order[q]]
            t[i, j] = acc
    rhs = np.zeros((k, 2 * k))
    for i in range(k):
        for j in range(k):
            rhs[i, j] = gmat[i, j]
        rhs[i, k + i] = 1.0
    if not _solve_in_place(t, rhs):
        return np.zeros((0, 0))
    mid = np.empty((k2, k2))
    for i in range(k):
        for j in range(k):
            mid[k + i, j] = rhs[i, j]  # M21
            mid[j, k + i] = rhs[i, j]  # M12
            mid[k + i, k + j] = rhs[i, k + j]  # M22
            acc = -dinv[i] if i == j else 0.0
            for q in range(k):
                acc += gmat[q, i] * rhs[q, j]  # (G^T T^-1 G)[i, j]
            mid[i, j] = acc
    return mid


@numba.njit(cache=True)
def _mat_vec(a, v, out):
    n = a.shape[0]
    for i in range(n):
        acc = 0.0
        for j in range(a.shape[1]):
            acc += a[i, j] * v[j]
        out[i] = acc


# --------------------------------------------------------------------------------------------
# vector kernels over the ring buffer


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _wt_times(s_ring, y_ring, order, k, theta, v, out):
    """``out = W^T v = [Y^T v, theta S^T v]`` (age order)."""
    n = v.shape[0]
    for a in range(k):
        p = order[a]
        acc_y = 0.0
        acc_s = 0.0
        for i in range(n):
            acc_y += y_ring[p, i] * v[i]
            acc_s += s_ring[p, i] * v[i]
        out[a] = acc_y
        out[k + a] = theta * acc_s


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _axpy2(a, u, b, v, out):
    """``out += a u + b v``."""
    for i in range(out.shape[0]):
        out[i] += a * u[i] + b * v[i]


@numba.njit(cache=True)
def _heap_push_down(keys, idx, size, pos):
    while True:
        left = 2 * pos + 1
        if left >= size:
            return
        small = left
        right = left + 1
        if right < size and keys[right] < keys[left]:
            small = right
        if keys[small] < keys[pos]:
            keys[pos], keys[small] = keys[small], keys[pos]
            idx[pos], idx[small] = idx[small], idx[pos]
            pos = small
        else:
            return


@numba.njit(cache=True)
def _heap_pop(keys, idx, size):
    """Remove the root of the heap of ``size`` entries (moved to position ``size - 1``)."""
    last = size - 1
    keys[0], keys[last] = keys[last], keys[0]
    idx[0], idx[last] = idx[last], idx[0]
    _heap_push_down(keys, idx, last, 0)


@numba.njit(cache=True)
def projected_gradient_norm(x, g, lo, hi):
    """Largest component of the projected gradient ``|P(x - g) - x|`` (SciPy's ``projgr``)."""
    norm = 0.0
    for i in range(x.shape[0]):
        gi = g[i]
        if gi < 0.0:
            if hi[i] < np.inf:
                gi = max(x[i] - hi[i], gi)
        elif lo[i] > -np.inf:
            gi = min(x[i] - lo[i], gi)
        norm = max(norm, abs(gi))
    return norm


# --------------------------------------------------------------------------------------------
# the search direction: Cauchy point and subspace step


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _gram_free(s_ring, y_ring, used, fss, fsy, fyy, fmask, free, counts):
    """Bring the free-variable Gram matrices (over ``fmask``) to the free set ``free``."""
    n = free.shape[0]
    n_changed = 0
    n_free = 0
    for i in range(n):
        if free[i]:
            n_free += 1
        if free[i] != (fmask[i] != 0.0):
            n_changed += 1
    counts[1] += n_changed
    if n_changed == 0:
        return
    m_used = used.shape[0]
    if n_changed * 4 > n_free or n_changed * 8 > n:
        counts[2] += 1
        # recompute over the free set, its columns gathered
        cols = np.empty(n_free, dtype=np.int64)
        c = 0
        for i in range(n):
            if free[i]:
                cols[c] = i
                c += 1
        block = np.empty((2 * m_used, n_free))
        for a in range(m_used):
            p = used[a]
            for c in range(n_free):
                block[a, c] = s_ring[p, cols[c]]
                block[m_used + a, c] = y_ring[p, cols[c]]
        gram = np.zeros((2 * m_used, 2 * m_used))
        for a in range(2 * m_used):
            for b in range(a, 2 * m_used):
                acc = 0.0
                for c in range(n_free):
                    acc += block[a, c] * block[b, c]
                gram[a, b] = acc
                gram[b, a] = acc
        for a in range(m_used):
            pa = used[a]
            for b in range(m_used):
                pb = used[b]
                fss[pa, pb] = gram[a, b]
                fsy[pa, pb] = gram[a, m_used + b]
                fyy[pa, pb] = gram[m_used + a, m_used + b]
    else:
        # the changed variables' columns gathered row by row (sorted, so each row of the ring
        # is read forwards), then their signed outer products
        changed = np.empty(n_changed, dtype=np.int64)
        sign = np.empty(n_changed)
        c = 0
        for i in range(n):
            if free[i] != (fmask[i] != 0.0):
                changed[c] = i
                sign[c] = 1.0 if free[i] else -1.0
                c += 1
        sv = np.empty((m_used, n_changed))
        yv = np.empty((m_used, n_changed))
        for a in range(m_used):
            row_s = s_ring[used[a]]
            row_y = y_ring[used[a]]
            for c in range(n_changed):
                sv[a, c] = row_s[changed[c]]
                yv[a, c] = row_y[changed[c]]
        for a in range(m_used):
            pa = used[a]
            for b in range(m_used):
                pb = used[b]
                acc_ss = 0.0
                acc_sy = 0.0
                acc_yy = 0.0
                for c in range(n_changed):
                    sa = sign[c] * sv[a, c]
                    acc_ss += sa * sv[b, c]
                    acc_sy += sa * yv[b, c]
                    acc_yy += sign[c] * yv[a, c] * yv[b, c]
                fss[pa, pb] += acc_ss
                fsy[pa, pb] += acc_sy
                fyy[pa, pb] += acc_yy
    for i in range(n):
        fmask[i] = 1.0 if free[i] else 0.0


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _direction(
    x,
    g,
    lo,
    hi,
    s_ring,
    y_ring,
    ss,
    sy,
    fss,
    fsy,
    fyy,
    fmask,
    order,
    k,
    theta,
    used,
    xbar,
    d,
    work,
    heap_keys,
    heap_idx,
    free,
    first,
    counts,
):
    """The point ``xbar`` of the model's minimisation and ``d = xbar - x``.

    ``counts`` gathers breakpoints passed, variables entering or leaving the free set, full
    recomputations of its Gram matrices and free variables (a diagnostic).
    Returns ``(g^T d, |d|, stpmax, ok)``: the directional derivative, the step's norm, the
    largest feasible step along ``d`` (1 in the first iteration) and False if the middle
    matrix was singular (the caller then drops the memory).
    """
    n = x.shape[0]
    k2 = 2 * k
    if k > 0:
        mid = _middle(ss, sy, order, k, theta)
        if mid.shape[0] != k2:
            return 0.0, 0.0, 0.0, False
    else:
        mid = np.zeros((0, 0))
    # ---- generalised Cauchy point ----
    # work holds the steepest-descent direction with fixed variables zeroed
    n_heap = 0
    fp = 0.0
    for i in range(n):
        gi = g[i]
        xi = x[i]
        active = False
        if lo[i] > -np.inf and hi[i] < np.inf and hi[i] - lo[i] <= 0.0:
            active = True
        elif lo[i] > -np.inf and xi - lo[i] <= 0.0 and gi >= 0.0:
            active = True
        elif hi[i] < np.inf and hi[i] - xi <= 0.0 and gi <= 0.0:
            active = True
        xbar[i] = xi
        if active or gi == 0.0:
            work[i] = 0.0
            free[i] = not active
            continue
        free[i] = True
        work[i] = -gi
        fp -= gi * gi
        if gi > 0.0 and lo[i] > -np.inf:
            heap_keys[n_heap] = (xi - lo[i]) / gi
            heap_idx[n_heap] = i
            n_heap += 1
        elif gi < 0.0 and hi[i] < np.inf:
            heap_keys[n_heap] = (hi[i] - xi) / -gi
            heap_idx[n_heap] = i
            n_heap += 1
    p = np.zeros(k2)
    c = np.zeros(k2)
    mp = np.zeros(k2)
    mc = np.zeros(k2)
    wb = np.zeros(k2)
    mw = np.zeros(k2)
    if k > 0:
        _wt_times(s_ring, y_ring, order, k, theta, work, p)
        _mat_vec(mid, p, mp)
    fpp = -theta * fp
    for j in range(k2):
        fpp -= p[j] * mp[j]
    fpp_floor = EPS * (-theta * fp)
    fpp = max(fpp, fpp_floor)
    dt_min = -fp / fpp if fpp > 0.0 else 0.0
    for pos in range(n_heap // 2 - 1, -1, -1):
        _heap_push_down(heap_keys, heap_idx, n_heap, pos)
    t_old = 0.0
    size = n_heap
    while size > 0:
        t_b = heap_keys[0]
        dt = t_b - t_old
        if dt_min < dt:
            break
        b = heap_idx[0]
        _heap_pop(heap_keys, heap_idx, size)
        counts[0] += 1
        size -= 1
        gb = g[b]
        if work[b] > 0.0:
            xbar[b] = hi[b]
        else:
            xbar[b] = lo[b]
        zb = xbar[b] - x[b]
        free[b] = False
        work[b] = 0.0
        for j in range(k2):
            c[j] += dt * p[j]
            mc[j] += dt * mp[j]
        wmc = 0.0
        wmp = 0.0
        wmw = 0.0
        if k > 0:
            for a in range(k):
                wb[a] = y_ring[order[a], b]
                wb[k + a] = theta * s_ring[order[a], b]
            _mat_vec(mid, wb, mw)
            for j in range(k2):
                wmc += wb[j] * mc[j]
                wmp += wb[j] * mp[j]
                wmw += wb[j] * mw[j]
        fp += dt * fpp + gb * gb + theta * gb * zb - gb * wmc
        fpp -= theta * gb * gb + 2.0 * gb * wmp + gb * gb * wmw
        fpp = max(fpp, fpp_floor)
        for j in range(k2):
            p[j] += gb * wb[j]
            mp[j] += gb * mw[j]
        dt_min = -fp / fpp if fpp > 0.0 else 0.0
        t_old = t_b
    dt_min = max(dt_min, 0.0)
    t_cp = t_old + dt_min
    for i in range(n):
        if work[i] != 0.0:
            xbar[i] = x[i] + t_cp * work[i]
            if xbar[i] < lo[i]:
                xbar[i] = lo[i]
            elif xbar[i] > hi[i]:
                xbar[i] = hi[i]
    for j in range(k2):
        c[j] += dt_min * p[j]
    # ---- subspace minimisation over the free variables ----
    # On the free set F the Cauchy point is x - t_cp g, so the reduced gradient is
    # r = (1 - theta t_cp) g_F - (W M c)_F and, with p = W^T d at the Cauchy point
    # (d = -g on F, 0 elsewhere), W_F^T r = -(1 - theta t_cp) p - (W_F^T W_F) M c: the step
    # du = -r / theta - W_F N^-1 M W_F^T r / theta^2 takes one product with W.
    n_free = 0
    for i in range(n):
        if free[i]:
            n_free += 1
    counts[3] += n_free
    if k > 0 and n_free > 0:
        _gram_free(s_ring, y_ring, used, fss, fsy, fyy, fmask, free, counts)
        _mat_vec(mid, c, mc)
        wfw = np.empty((k2, k2))  # W_F^T W_F
        for a in range(k):
            pa = order[a]
            for b in range(k):
                pb = order[b]
                wfw[a, b] = fyy[pa, pb]
                wfw[a, k + b] = theta * fsy[pb, pa]  # y_a . s_b
                wfw[k + a, b] = theta * fsy[pa, pb]  # s_a . y_b
                wfw[k + a, k + b] = theta * theta * fss[pa, pb]
        shrink = 1.0 - theta * t_cp
        wtr = np.empty(k2)
        for j in range(k2):
            acc = -shrink * p[j]
            for q in range(k2):
                acc -= wfw[j, q] * mc[q]
            wtr[j] = acc
        v = np.zeros((k2, 1))
        for j in range(k2):
            acc = 0.0
            for q in range(k2):
                acc += mid[j, q] * wtr[q]
            v[j, 0] = acc
        nmat = np.eye(k2)  # N = I - M (W_F^T W_F) / theta
        for i in range(k2):
            for j in range(k2):
                acc = 0.0
                for q in range(k2):
                    acc += mid[i, q] * wfw[q, j]
                nmat[i, j] -= acc / theta
        if _solve_in_place(nmat, v):
            u = np.empty(k2)
            for j in range(k2):
                u[j] = mc[j] / theta - v[j, 0] / (theta * theta)
            work[:] = 0.0
            for a in range(k):
                _axpy2(u[a], y_ring[order[a]], theta * u[k + a], s_ring[order[a]], work)
            descent = 0.0
            for i in range(n):
                if free[i]:
                    du = work[i] - shrink * g[i] / theta
                    work[i] = du
                    t = xbar[i] + du
                    if t < lo[i]:
                        t = lo[i]
                    elif t > hi[i]:
                        t = hi[i]
                    descent += g[i] * (t - x[i])
                else:
                    descent += g[i] * (xbar[i] - x[i])
            if descent < 0.0:
                for i in range(n):
                    if free[i]:
                        t = xbar[i] + work[i]
                        if t < lo[i]:
                            t = lo[i]
                        elif t > hi[i]:
                            t = hi[i]
                        xbar[i] = t
            else:  # not a descent direction: the step from xcp cut at the first bound
                alpha = 1.0
                for i in range(n):
                    if free[i]:
                        du = work[i]
                        if du < 0.0 and lo[i] > -np.inf:
                            alpha = min(alpha, min(lo[i] - xbar[i], 0.0) / du)
                        elif du > 0.0 and hi[i] < np.inf:
                            alpha = min(alpha, max(hi[i] - xbar[i], 0.0) / du)
                alpha = max(alpha, 0.0)
                for i in range(n):
                    if free[i]:
                        xbar[i] += alpha * work[i]
    # ---- the step ----
    gd = 0.0
    dd = 0.0
    stpmax = BIG_STEP
    for i in range(n):
        di = xbar[i] - x[i]
        d[i] = di
        gd += g[i] * di
        dd += di * di
        if not first:
            if di < 0.0 and lo[i] > -np.inf:
                room = lo[i] - x[i]
                if room >= 0.0:
                    stpmax = 0.0
                elif di * stpmax < room:
                    stpmax = room / di
            elif di > 0.0 and hi[i] < np.inf:
                room = hi[i] - x[i]
                if room <= 0.0:
                    stpmax = 0.0
                elif di * stpmax > room:
                    stpmax = room / di
    # xbar is in the box: the whole step is feasible whatever the rounding above
    stpmax = 1.0 if first else max(stpmax, 1.0)
    return gd, np.sqrt(dd), stpmax, True


# --------------------------------------------------------------------------------------------
# line search (Moré and Thuente)


@numba.njit(cache=True)
def _step(stx, fx, dx, sty, fy, dy, stp, fp, dp, brackt, stpmin, stpmax):
    """One safeguarded step of the Moré-Thuente interval update.  Returns the new
    ``(stx, fx, dx, sty, fy, dy, stp, brackt)``."""
    sgnd = dp * (dx / abs(dx)) if dx != 0.0 else dp
    if fp > fx:
        # higher value: a minimiser is bracketed; cubic, or halfway to the quadratic
        theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * np.sqrt(max((theta / s) ** 2 - (dx / s) * (dp / s), 0.0))
        if stp < stx:
            gamma = -gamma
        p = (gamma - dx) + theta
        q = ((gamma - dx) + gamma) + dp
        stpc = stx + (p / q) * (stp - stx)
        stpq = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2.0) * (stp - stx)
        if abs(stpc - stx) < abs(stpq - stx):
            stpf = stpc
        else:
            stpf = stpc + (stpq - stpc) / 2.0
        brackt = True
    elif sgnd < 0.0:
        # derivatives of opposite signs: bracketed; cubic or secant, the one further out
        theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * np.sqrt(max((theta / s) ** 2 - (dx / s) * (dp / s), 0.0))
        if stp > stx:
            gamma = -gamma
        p = (gamma - dp) + theta
        q = ((gamma - dp) + gamma) + dx
        stpc = stp + (p / q) * (stx - stp)
        stpq = stp + (dp / (dp - dx)) * (stx - stp)
        if abs(stpc - stp) > abs(stpq - stp):
            stpf = stpc
        else:
            stpf = stpq
        brackt = True
    elif abs(dp) < abs(dx):
        # same sign, derivative shrinking: cubic if it has a minimiser beyond stp
        theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * np.sqrt(max(0.0, (theta / s) ** 2 - (dx / s) * (dp / s)))
        if stp > stx:
            gamma = -gamma
        p = (gamma - dp) + theta
        q = (gamma + (dx - dp)) + gamma
        r = p / q
        if r < 0.0 and gamma != 0.0:
            stpc = stp + r * (stx - stp)
        elif stp > stx:
            stpc = stpmax
        else:
            stpc = stpmin
        stpq = stp + (dp / (dp - dx)) * (stx - stp)
        if brackt:
            stpf = stpc if abs(stpc - stp) < abs(stpq - stp) else stpq
            if stp > stx:
                stpf = min(stp + 0.66 * (sty - stp), stpf)
            else:
                stpf = max(stp + 0.66 * (sty - stp), stpf)
        else:
            stpf = stpc if abs(stpc - stp) > abs(stpq - stp) else stpq
            stpf = min(stpmax, stpf)
            stpf = max(stpmin, stpf)
    else:
        # same sign, derivative not shrinking: cubic towards sty, or to the end of the range
        if brackt:
            theta = 3.0 * (fp - fy) / (sty - stp) + dy + dp
            s = max(abs(theta), abs(dy), abs(dp))
            gamma = s * np.sqrt(max((theta / s) ** 2 - (dy / s) * (dp / s), 0.0))
            if stp > sty:
                gamma = -gamma
            p = (gamma - dp) + theta
            q = ((gamma - dp) + gamma) + dy
            stpf = stp + (p / q) * (sty - stp)
        elif stp > stx:
            stpf = stpmax
        else:
            stpf = stpmin
    if fp > fx:
        sty, fy, dy = stp, fp, dp
    else:
        if sgnd < 0.0:
            sty, fy, dy = stx, fx, dx
        stx, fx, dx = stp, fp, dp
    return stx, fx, dx, sty, fy, dy, stpf, brackt


@numba.njit(cache=True)
def _ls_start(ls, stp, f0, g0, stpmax):
    ls[_STX] = 0.0
    ls[_FX] = f0
    ls[_GX] = g0
    ls[_STY] = 0.0
    ls[_FY] = f0
    ls[_GY] = g0
    ls[_STMIN] = 0.0
    ls[_STMAX] = stp + 4.0 * stp
    ls[_WIDTH] = stpmax
    ls[_WIDTH1] = 2.0 * stpmax
    ls[_FINIT] = f0
    ls[_GINIT] = g0
    ls[_GTEST] = LS_FTOL * g0
    ls[_STPMAX] = stpmax
    ls[_STAGE] = 1.0
    ls[_BRACKT] = 0.0


@numba.njit(cache=True)
def _ls_update(ls, stp, f, gd):
    """The line search after the value ``f`` and slope ``gd`` at ``stp``: returns
    ``(LS_DONE, stp)`` when ``stp`` is accepted (strong Wolfe, or no better point can be
    told apart), else ``(LS_EVALUATE, next stp)``."""
    stpmin = 0.0
    stpmax = ls[_STPMAX]
    brackt = ls[_BRACKT] != 0.0
    ftest = ls[_FINIT] + stp * ls[_GTEST]
    gtest = ls[_GTEST]
    if ls[_STAGE] == 1.0 and f <= ftest and gd >= 0.0:
        ls[_STAGE] = 2.0
    # stopping: the strong Wolfe conditions, or the interval can't shrink any more
    if f <= ftest and abs(gd) <= LS_GTOL * -ls[_GINIT]:
        return LS_DONE, stp
    if brackt and (stp <= ls[_STMIN] or stp >= ls[_STMAX]):
        return LS_DONE, stp  # rounding errors
    if brackt and ls[_STMAX] - ls[_STMIN] <= LS_XTOL * ls[_STMAX]:
        return LS_DONE, stp  # interval within xtol
    if stp == stpmax and f <= ftest and gd <= gtest:
        return LS_DONE, stp
    if stp == stpmin and (f > ftest or gd >= gtest):
        return LS_DONE, stp
    stx, fx, gx = ls[_STX], ls[_FX], ls[_GX]
    sty, fy, gy = ls[_STY], ls[_FY], ls[_GY]
    if ls[_STAGE] == 1.0 and f <= fx and f > ftest:
        # the modified function psi(t) = f(t) - f(0) - gtest t while in the first stage
        stx, fxm, gxm, sty, fym, gym, stp, brackt = _step(
            stx,
            fx - stx * gtest,
            gx - gtest,
            sty,
            fy - sty * gtest,
            gy - gtest,
            stp,
            f - stp * gtest,
            gd - gtest,
            brackt,
            ls[_STMIN],
            ls[_STMAX],
        )
        fx, gx = fxm + stx * gtest, gxm + gtest
        fy, gy = fym + sty * gtest, gym + gtest
    else:
        stx, fx, gx, sty, fy, gy, stp, brackt = _step(
            stx, fx, gx, sty, fy, gy, stp, f, gd, brackt, ls[_STMIN], ls[_STMAX]
        )
    if brackt:
        if abs(sty - stx) >= 0.66 * ls[_WIDTH1]:
            stp = stx + 0.5 * (sty - stx)
        ls[_WIDTH1] = ls[_WIDTH]
        ls[_WIDTH] = abs(sty - stx)
        ls[_STMIN] = min(stx, sty)
        ls[_STMAX] = max(stx, sty)
    else:
        ls[_STMIN] = stp + 1.1 * (stp - stx)
        ls[_STMAX] = stp + 4.0 * (stp - stx)
    stp = max(stp, stpmin)
    stp = min(stp, stpmax)
    if (brackt and (stp <= ls[_STMIN] or stp >= ls[_STMAX])) or (
        brackt and ls[_STMAX] - ls[_STMIN] <= LS_XTOL * ls[_STMAX]
    ):
        stp = stx
    ls[_STX], ls[_FX], ls[_GX] = stx, fx, gx
    ls[_STY], ls[_FY], ls[_GY] = sty, fy, gy
    ls[_BRACKT] = 1.0 if brackt else 0.0
    return LS_EVALUATE, stp


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _ls_next(ls, stp, f, g, d, x, xbar, lo, hi, xt):
    """After the evaluation at ``stp``: the line search's answer and, when it asks for one,
    the next trial point in ``xt``."""
    gd = 0.0
    for i in range(d.shape[0]):
        gd += g[i] * d[i]
    if not (np.isfinite(f) and np.isfinite(gd)):
        # an infinite or undefined value: try a tenth of the step
        answer, stp = LS_EVALUATE, 0.1 * stp
    else:
        answer, stp = _ls_update(ls, stp, f, gd)
    if answer == LS_EVALUATE:
        _trial(stp, x, d, xbar, lo, hi, xt)
    return answer, stp


@numba.njit(cache=True)
def _trial(stp, x, d, xbar, lo, hi, xt):
    if stp == 1.0:
        xt[:] = xbar
        return
    for i in range(x.shape[0]):
        t = x[i] + stp * d[i]
        if t < lo[i]:
            t = lo[i]
        elif t > hi[i]:
            t = hi[i]
        xt[i] = t


# --------------------------------------------------------------------------------------------
# the memory


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _add_pair(x, xt, g, gt, s_ring, y_ring, ss, sy, fss, fsy, fyy, fmask, slots, state):
    """Take the step ``x -> xt`` (gradients ``g -> gt``): its pair joins the memory unless
    ``s^T y <= eps y^T y``; ``x`` and ``g`` become ``xt`` and ``gt``.

    ``slots`` is the ring's slots in age order (the first ``state[0]`` used), ``state`` holds
    ``(k, theta)``.  Returns True if the pair joined.
    """
    n = x.shape[0]
    m = s_ring.shape[0]
    k = int(state[0])
    sty = 0.0
    yty = 0.0
    for i in range(n):
        si = xt[i] - x[i]
        yi = gt[i] - g[i]
        sty += si * yi
        yty += yi * yi
    joined = sty > EPS * yty and sty > 0.0
    if joined:
        if k < m:
            q = slots[k]
            k += 1
        else:  # the oldest pair's slot takes the new one
            q = slots[0]
            for a in range(m - 1):
                slots[a] = slots[a + 1]
            slots[m - 1] = q
        for i in range(n):
            s_ring[q, i] = xt[i] - x[i]
            y_ring[q, i] = gt[i] - g[i]
        for a in range(k):
            p = slots[a]
            acc_ss = 0.0
            acc_sy = 0.0
            acc_ys = 0.0
            acc_fss = 0.0
            acc_fsy = 0.0
            acc_fys = 0.0
            acc_fyy = 0.0
            for i in range(n):
                sq = s_ring[q, i]
                yq = y_ring[q, i]
                sp = s_ring[p, i]
                yp = y_ring[p, i]
                w = fmask[i]
                acc_ss += sq * sp
                acc_sy += sq * yp
                acc_ys += sp * yq
                acc_fss += w * sq * sp
                acc_fsy += w * sq * yp
                acc_fys += w * sp * yq
                acc_fyy += w * yq * yp
            ss[q, p] = acc_ss
            ss[p, q] = acc_ss
            sy[q, p] = acc_sy  # s_q . y_p
            sy[p, q] = acc_ys  # s_p . y_q
            fss[q, p] = acc_fss
            fss[p, q] = acc_fss
            fsy[q, p] = acc_fsy
            fsy[p, q] = acc_fys
            fyy[q, p] = acc_fyy
            fyy[p, q] = acc_fyy
        state[0] = k
        state[1] = yty / sty
    x[:] = xt
    g[:] = gt
    return joined


# --------------------------------------------------------------------------------------------
# the driver


class _Memory:
    """The ring buffer of pairs and its Gram matrices (see :func:`_add_pair`)."""

    def __init__(self, n: int, m: int):
        self.s = np.zeros((m, n))
        self.y = np.zeros((m, n))
        self.ss = np.zeros((m, m))
        self.sy = np.zeros((m, m))
        self.fss = np.zeros((m, m))
        self.fsy = np.zeros((m, m))
        self.fyy = np.zeros((m, m))
        self.fmask = np.zeros(n)  # the free set the f* matrices are over
        self.slots = np.arange(m, dtype=np.int64)
        self.state = np.array([0.0, 1.0])  # k, theta

    @property
    def arrays(self) -> tuple:
        """The ring, its Gram matrices, the free set's mask and the slots in age order, in
        the order :func:`_direction` and :func:`_add_pair` take them."""
        return (
            self.s,
            self.y,
            self.ss,
            self.sy,
            self.fss,
            self.fsy,
            self.fyy,
            self.fmask,
            self.slots,
        )

    @property
    def k(self) -> int:
        return int(self.state[0])

    @property
    def theta(self) -> float:
        return float(self.state[1])

    def reset(self) -> None:
        """Forget every pair (the f* matrices stay valid for their free set)."""
        self.state[:] = (0.0, 1.0)


def _bound_vector(value, n: int, fill: float) -> np.ndarray:
    if value is None:
        return np.full(n, fill)
    out = np.asarray(value, dtype=np.float64)
    if out.ndim == 0:
        return np.full(n, float(out))
    if out.shape != (n,):
        raise ValueError(f"expected {n} bounds, got shape {out.shape}")
    out = out.copy()
    out[np.isnan(out)] = fill
    return out


def minimize(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    lower=0.0,
    upper=None,
    *,
    m: int = 10,
    maxiter: int = 15000,
    maxfun: int = 15000,
    ftol: float = 2.2e-9,
    pgtol: float = 1e-5,
    callback: Callable[[Iterate], Callable | None] | None = None,
    on_converged: Callable[[Iterate], Callable | None] | None = None,
) -> Result:
    """Minimise ``fun`` (returning value and gradient) over ``lower <= x <= upper``.

    ``lower``/``upper`` are scalars or vectors (``-inf``/``inf`` or ``None`` for no bound;
    default ``x >= 0``); ``x0`` is projected onto the box.  ``ftol`` and ``pgtol`` are SciPy's
    (``minimize(tol=t)`` sets both to ``t``).  ``callback(Iterate)`` runs after each iteration:
    raising :class:`StopIteration` ends the run there (``success`` False, as in SciPy); a
    returned callable becomes the objective from the current point on, the curvature memory
    kept (its value there is evaluated anew, and that iteration's decrease test is skipped); a
    returned ``(fun, f, grad)`` gives that value and gradient too (not counted in ``nfev``).
    ``on_converged(Iterate)`` runs when a stopping test (``pgtol``, ``ftol``) is met: returning
    a callable goes on with it as the objective, as above, instead of stopping.

    ``Iterate.x`` and ``Iterate.jac`` are the solver's own vectors, changed in place by the
    next iteration: copy them to keep them.
    """
    x = np.asarray(x0, dtype=np.float64).ravel().copy()
    n = x.shape[0]
    lo = _bound_vector(lower, n, -np.inf)
    hi = _bound_vector(upper, n, np.inf)
    if np.any(lo > hi):
        raise ValueError("a lower bound above its upper bound")
    np.clip(x, lo, hi, out=x)
    boxed = bool(np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)))
    f, g = fun(x)
    f = float(f)
    g = np.array(g, dtype=np.float64)  # a copy: the memory update writes into it
    nfev = 1
    nit = 0
    mem = _Memory(n, max(int(m), 1))
    xbar, d, work, xt = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    heap_keys, heap_idx = np.empty(n), np.empty(n, dtype=np.int64)
    free = np.zeros(n, dtype=np.bool_)
    ls = np.zeros(_LS_SIZE)
    counts = np.zeros(4, dtype=np.int64)
    success, message = False, ""
    if projected_gradient_norm(x, g, lo, hi) <= pgtol:
        return Result(x, f, g, 0, nfev, True, "projected gradient at most pgtol", counts)
    while True:
        if nit >= maxiter:
            message = "iteration limit reached"
            break
        if nfev >= maxfun:
            message = "evaluation limit reached"
            break
        k = mem.k
        gd, dnorm, stpmax, ok = _direction(
            x,
            g,
            lo,
            hi,
            *mem.arrays,
            k,
            mem.theta,
            mem.slots[:k],
            xbar,
            d,
            work,
            heap_keys,
            heap_idx,
            free,
            nit == 0,
            counts,
        )
        if not ok or not gd < 0.0:
            if k == 0:
                message = "no descent direction" if ok else "singular middle matrix"
                success = ok and dnorm == 0.0
                break
            mem.reset()  # steepest descent again
            continue
        stp = min(1.0 / dnorm, stpmax) if nit == 0 and not boxed else 1.0
        _ls_start(ls, stp, f, gd, stpmax)
        _trial(stp, x, d, xbar, lo, hi, xt)
        accepted = False
        for _ in range(MAX_LINE_SEARCH):
            ft, gt = fun(xt)
            nfev += 1
            answer, stp = _ls_next(ls, stp, float(ft), gt, d, x, xbar, lo, hi, xt)
            if answer == LS_DONE:
                accepted = float(ft) <= f
                break
        if not accepted or not np.isfinite(ft):
            if k == 0:
                message = "the line search found no acceptable point"
                break
            mem.reset()
            continue
        f_old = f
        f = float(ft)
        _add_pair(
            x,
            xt,
            g,
            np.asarray(gt, dtype=np.float64),
            *mem.arrays,
            mem.state,
        )
        nit += 1
        replaced = False
        if callback is not None:
            try:
                new_fun = callback(Iterate(x, f, nit, nfev, g))
            except StopIteration:
                message = "stopped by the callback"
                break
            if new_fun is not None:
                fun, f, evaluated = _replace(new_fun, x, g)
                nfev += evaluated
                replaced = True
        if projected_gradient_norm(x, g, lo, hi) <= pgtol:
            message = "projected gradient at most pgtol"
        elif not replaced and (f_old - f) <= ftol * max(abs(f_old), abs(f), 1.0):
            message = "relative reduction of f at most ftol"
        else:
            continue
        new_fun = None if on_converged is None else on_converged(Iterate(x, f, nit, nfev, g))
        if new_fun is None:
            success = True
            break
        fun, f, evaluated = _replace(new_fun, x, g)
        nfev += evaluated
        message = ""
        if projected_gradient_norm(x, g, lo, hi) <= pgtol:
            message, success = "projected gradient at most pgtol", True
            break
    return Result(x, f, g, nit, nfev, success, message, counts)


def _replace(new, x, g):
    """The objective a callback returned, as ``fun`` or ``(fun, f, grad)`` (its value and
    gradient at ``x`` known to the caller): returns ``(fun, f, evaluations)``, the gradient
    written into ``g``."""
    if callable(new):
        f, g_new = new(x)
        g[:] = g_new
        return new, float(f), 1
    fun, f, g_new = new
    g[:] = g_new
    return fun, float(f), 0
