"""Compiled (numba) loops of the shared engine (layer1="shared"): the oracle's math
(`shared_reference`) on the few non-zeros of each batch.

Forward pass, parallel over groups of samples (one group per thread; each sample's numbers
are computed by one thread in an order that does not depend on the grouping):
- layer 1: every position's patch (divided by its length with patch_norm) times the bank
  W (81, C), on the patch's non-zero pixels only (MNIST is mostly background; a blank patch
  is skipped: all its outputs are 0, so its winner outputs 0 and it switches nothing on);
  the winner per position;
- layer 2's input, sparse: (index, value) pairs in ascending index order, the code pooled
  per cell over the positions' winners, then normalised, then (pixels > 0) the non-zeros of
  the pixel side channel (`_side_channel`);
- layer 2's input times w2: its few rows of w2 (N1, N2) summed in index order (as a dot
  product sums), vectorised along N2 in tiles of `TILE` columns for the whole group of
  samples (the rows' tiles stay in cache), plus the label's w3 row when training; dense
  inputs (stride 1) go by rows of w2 instead, each row's tile read once per group
  (`_layer2_by_rows`, the same numbers);
- layer 2's k = l2_winners active units (argmax, then argmax of the rest, ...) and the
  sample's relative errors of w2 and w3 (`_errors`: pred sums its active units);
- the bank's error terms of the sample, summed per winning detector.

Updates: w2 active unit by active unit on its transposed copy w2t (N2, N1), where a unit's
column is a contiguous row (its samples' terms summed in sample order), then copied into
w2's columns row by row; the bank detector by detector (samples in order); w3 (10 rows)
serially. They run in parallel over those disjoint outputs only when the batch's work is
large enough to pay for a parallel region (`PARALLEL_UPDATE`): the numbers are the same
either way. Every update mirrors the oracle term by term: pred = the sum of post * w over
the sample's active units, err = (target - pred) / (pred if pred > prec else 1),
dW = w * sum(err * post), then ``w += xi / max(max|dW|, prec) * dW``; the maxima are
reduced serially. So the results do not depend on the thread count; they differ from the
oracle only in the order of sums with several non-zero terms (BLAS's, with its fused
multiply-adds), i.e. the last bits.

No fast-math flags: every sum keeps its written order and a NaN propagates as IEEE says
(a NaN in max |dW| makes the step NaN, so every weight the step updates becomes NaN; the
oracle's step also turns the weights it leaves unchanged into NaN).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..core.config import PIXEL_CHANNEL
from ..core.geometry import SIDE

# error_model="numpy": a float division follows IEEE instead of checking for a zero divisor
# (which would raise ZeroDivisionError and keeps LLVM from vectorising the update loops; no
# divisor here can be 0: it is pred > prec or 1). Not fast-math.
_jit = njit(cache=True, error_model="numpy")
_parallel = njit(parallel=True, cache=True, error_model="numpy")

TILE = 1024  # layer-2 columns per pass over a group of samples (their w2 rows' tiles stay in cache)
ROW_TILE = 2048  # the same for `_layer2_by_rows`
DENSE_CODE = 192  # mean non-zeros per code from which layer 2 goes by rows of w2
SAMPLES = 64  # samples per parallel task of the inference kernels
ROWS = 64  # rows of w2 per parallel task of the column copy
PARALLEL_UPDATE = 1 << 14  # w2 terms per batch (winners x N1) from which the update runs in parallel
HALF = SIDE // 2  # side of the image pooled over 2x2 blocks (the pixel side channel)


@_jit
def _argmax(a, n):
    """numpy's argmax of a[:n]: the first maximum, or the first NaN."""
    best, m = 0, a[0]
    if m != m:
        return 0
    for c in range(1, n):
        v = a[c]
        if v != v:
            return c
        if v > m:
            best, m = c, v
    return best


@_jit
def _nanmax(m, v):
    """max(m, v) that keeps a NaN (as np.max does)."""
    if m != m or v != v:
        return np.nan
    return v if v > m else m


@_jit
def _times_weights(w, g):
    """g = w * g in place (a summed error term becomes dW); returns max |dW|."""
    m = 0.0
    for r in range(len(g)):
        d = w[r] * g[r]
        g[r] = d
        m = _nanmax(m, abs(d))
    return m


@_jit
def _scale(xi, m, prec):
    """The oracle's ``xi / max(m, prec)`` (Python's max: m unless prec > m, so a NaN stays)."""
    return xi / (prec if prec > m else m)


@_jit
def det_size(cell_ptr, C):
    """Most distinct winners in one cell: min(C, positions per cell)."""
    most = 0
    for cell in range(len(cell_ptr) - 1):
        most = max(most, cell_ptr[cell + 1] - cell_ptr[cell])
    return min(C, most)


@_jit
def max_nonzeros(cell_ptr, C, pixels):
    """Most non-zeros of one layer-2 input: the code's, plus the pixel side channel's (pixels > 0)."""
    return (len(cell_ptr) - 1) * det_size(cell_ptr, C) + (PIXEL_CHANNEL if pixels > 0 else 0)


@_jit
def _patch_norm(nz_x, m, pk):
    """A patch divided by its Euclidean length: its m non-zero pixels nz_x and all its pixels pk
    (a length that underflows to 0 divides by 1, as the oracle's)."""
    ss = 0.0
    for t in range(m):
        ss += nz_x[t] * nz_x[t]
    length = np.sqrt(ss)
    if length > 0.0:
        for t in range(m):
            nz_x[t] = nz_x[t] / length
        for q in range(len(pk)):
            pk[q] = pk[q] / length


@_jit
def _layer1(xb, idx, W, patch_norm, a, nz_q, nz_x, patch, win, val):
    """Each position's winning detector win[k] and its output val[k] for one image xb (784,);
    patch[k] gets the pixels of every position (divided by the patch's length with
    `patch_norm`).

    idx (K, 81) the patches' pixels, W (81, C) the bank. Sums over the patch's non-zero
    pixels in pixel order, four at a time (the same order of sums); the zero pixels add
    nothing."""
    K, P = idx.shape
    C = W.shape[1]
    for k in range(K):
        m = 0
        pk = patch[k]
        for q in range(P):  # the non-zero pixels, without branches
            xq = xb[idx[k, q]]
            pk[q] = xq
            nz_q[m] = q
            nz_x[m] = xq
            m += xq != 0.0
        if m == 0:  # blank: every output 0, the winner (detector 0) outputs 0
            win[k] = 0
            val[k] = 0.0
            continue
        if patch_norm:
            _patch_norm(nz_x, m, pk)
        a[:C] = 0.0
        t = 0
        while t + 4 <= m:
            w0, w1, w2, w3 = W[nz_q[t]], W[nz_q[t + 1]], W[nz_q[t + 2]], W[nz_q[t + 3]]
            x0, x1, x2, x3 = nz_x[t], nz_x[t + 1], nz_x[t + 2], nz_x[t + 3]
            for c in range(C):
                a[c] = a[c] + x0 * w0[c] + x1 * w1[c] + x2 * w2[c] + x3 * w3[c]
            t += 4
        for t in range(t, m):
            w0, x0 = W[nz_q[t]], nz_x[t]
            for c in range(C):
                a[c] += x0 * w0[c]
        best = _argmax(a, C)
        win[k] = best
        val[k] = a[best]


@_jit
def _code(win, val, cell_ptr, cell_pos, C, pool_max, onehot, norm, det, dval, dcnt, code_i, code_v):
    """The sparse code layer 2 reads, from the winners: fills code_i, code_v (ascending
    indices cell * C + detector) and returns their number.

    A position's code is its winner's output ("value") or 1 if that output is not 0
    (`onehot`), 0 for the other detectors; cell `cell` pools positions
    cell_pos[cell_ptr[cell]:cell_ptr[cell + 1]] (ascending) by max or sum per detector
    (one position per cell: no pooling); `norm` divides by the Euclidean length (>= 1e-12)."""
    n = 0
    for cell in range(len(cell_ptr) - 1):
        lo, hi = cell_ptr[cell], cell_ptr[cell + 1]
        nd = 0  # distinct detectors with a non-zero code in this cell, ascending
        for t in range(lo, hi):
            k = cell_pos[t]
            v = val[k]
            if v == 0.0:
                continue
            if onehot:
                v = 1.0
            c = win[k]
            f = -1
            for e in range(nd):
                if det[e] == c:
                    f = e
                    break
            if f < 0:
                e = nd
                while e > 0 and det[e - 1] > c:
                    det[e], dval[e], dcnt[e] = det[e - 1], dval[e - 1], dcnt[e - 1]
                    e -= 1
                det[e], dval[e], dcnt[e] = c, v, 1
                nd += 1
            else:
                r = dval[f]
                if not pool_max:
                    dval[f] = r + v
                elif r == r and (v > r or v != v):  # np.max: the largest, a NaN wins
                    dval[f] = v
                dcnt[f] += 1
        for e in range(nd):
            r = dval[e]
            if pool_max and dcnt[e] < hi - lo and r < 0.0:  # the detector's 0 at its other positions
                r = 0.0
            if r != 0.0:
                code_i[n] = cell * C + det[e]
                code_v[n] = r
                n += 1
    if norm:
        ss = 0.0
        for e in range(n):
            ss += code_v[e] * code_v[e]
        length = np.sqrt(ss)
        den = 1e-12 if length < 1e-12 else length  # np.maximum(length, 1e-12), a NaN stays
        for e in range(n):
            code_v[e] = code_v[e] / den
    return n


@_jit
def _block_mean(xb, r):
    """The image xb (784,) average-pooled over 2x2 pixel blocks, value r (row by row)."""
    i = 2 * SIDE * (r // HALF) + 2 * (r % HALF)
    return (xb[i] + xb[i + 1] + xb[i + SIDE] + xb[i + SIDE + 1]) / 4.0


@_jit
def _side_channel(xb, pixels, n1, code_i, code_v, n):
    """Appends the pixel side channel of image xb to a sparse code of n entries: index n1 + r,
    value pixels * p[r] / |p| (|p| = 0: 1) of p the image's 2x2 block means, its non-zeros
    only; returns the new number of entries."""
    ss = 0.0
    for r in range(PIXEL_CHANNEL):
        pr = _block_mean(xb, r)
        ss += pr * pr
    length = np.sqrt(ss)
    den = length if length > 0.0 else 1.0  # np.where(length > 0, length, 1): a NaN divides by 1
    for r in range(PIXEL_CHANNEL):
        v = pixels * (_block_mean(xb, r) / den)
        if v != 0.0:
            code_i[n] = n1 + r
            code_v[n] = v
            n += 1
    return n


@_jit
def _input(xb, idx, W, cell_ptr, cell_pos, patch_norm, pool_max, onehot, norm, pixels, a, nz_q, nz_x, patch, win, val,
           det, dval, dcnt, code_i, code_v):
    """Layer 1 of image xb (`_layer1`: win, val, patch) and the sparse layer-2 input it gives
    (`_code`, then `_side_channel` with pixels > 0) in code_i, code_v; returns its length."""
    C = W.shape[1]
    _layer1(xb, idx, W, patch_norm, a, nz_q, nz_x, patch, win, val)
    n = _code(win, val, cell_ptr, cell_pos, C, pool_max, onehot, norm, det, dval, dcnt, code_i, code_v)
    if pixels > 0:
        n = _side_channel(xb, pixels, (len(cell_ptr) - 1) * C, code_i, code_v, n)
    return n


@_jit
def _layer2(code_i, code_v, nnz, w2, out, w3, labels, label_gain):
    """out[b] (N2,) = code b (nnz[b] non-zeros) times w2 (N1, N2), for every b of the group:
    its rows summed in index order, four at a time, tile by tile of columns; then, if
    `labels` is not empty, plus label_gain * w3[labels[b]] (the label's input, added last
    as the oracle adds it). (The column index is unsigned: numba then drops its
    negative-index check and LLVM vectorises the loops.)"""
    n_b, N2 = out.shape
    for j0 in range(0, N2, TILE):
        u0, u1 = np.uint64(j0), np.uint64(min(N2, j0 + TILE))
        for b in range(n_b):
            ci, cv, n = code_i[b], code_v[b], nnz[b]
            for j in range(u0, u1):
                out[b, j] = 0.0
            e = 0
            while e + 4 <= n:
                i0, i1, i2, i3 = ci[e], ci[e + 1], ci[e + 2], ci[e + 3]
                v0, v1, v2, v3 = cv[e], cv[e + 1], cv[e + 2], cv[e + 3]
                for j in range(u0, u1):
                    out[b, j] = out[b, j] + v0 * w2[i0, j] + v1 * w2[i1, j] + v2 * w2[i2, j] + v3 * w2[i3, j]
                e += 4
            for e in range(e, n):
                i0, v0 = ci[e], cv[e]
                for j in range(u0, u1):
                    out[b, j] += v0 * w2[i0, j]
            if len(labels):
                lab = labels[b]
                for j in range(u0, u1):
                    out[b, j] += label_gain * w3[lab, j]


@_jit
def _layer2_by_rows(code_i, code_v, nnz, w2, out, w3, labels, label_gain):
    """`_layer2` for dense codes (many non-zeros per sample, e.g. stride 1): the group's
    codes are turned around (for each row of w2, ascending, the samples that use it), so
    that each tile of a row is read once per group and added to every sample that uses it.
    Each sample's sum still adds its rows in ascending index order: the same numbers."""
    n_b, N2 = out.shape
    N1 = w2.shape[0]
    ptr = np.zeros(N1 + 1, np.int64)
    for b in range(n_b):
        for e in range(nnz[b]):
            ptr[code_i[b, e] + 1] += 1
    rows = np.empty(N1, np.int64)
    n_rows = 0
    for i in range(N1):
        if ptr[i + 1] > 0:
            rows[n_rows] = i
            n_rows += 1
        ptr[i + 1] += ptr[i]
    fill = ptr[:N1].copy()
    col_b, col_v = np.empty(ptr[N1], np.int64), np.empty(ptr[N1])
    for b in range(n_b):
        for e in range(nnz[b]):
            i = code_i[b, e]
            col_b[fill[i]] = b
            col_v[fill[i]] = code_v[b, e]
            fill[i] += 1
    for j0 in range(0, N2, ROW_TILE):
        u0, u1 = np.uint64(j0), np.uint64(min(N2, j0 + ROW_TILE))
        for b in range(n_b):
            for j in range(u0, u1):
                out[b, j] = 0.0
        for t in range(n_rows):
            i = rows[t]
            for s in range(ptr[i], ptr[i + 1]):
                b, v = col_b[s], col_v[s]
                for j in range(u0, u1):
                    out[b, j] += v * w2[i, j]
        if len(labels):
            for b in range(n_b):
                lab = labels[b]
                for j in range(u0, u1):
                    out[b, j] += label_gain * w3[lab, j]


@_jit
def _layer2_any(code_i, code_v, nnz, w2, out, w3, labels, label_gain):
    """`_layer2`, or `_layer2_by_rows` when the codes have more than `DENSE_CODE` non-zeros
    on average (the same numbers either way)."""
    if nnz.sum() > DENSE_CODE * len(nnz):
        _layer2_by_rows(code_i, code_v, nnz, w2, out, w3, labels, label_gain)
    else:
        _layer2(code_i, code_v, nnz, w2, out, w3, labels, label_gain)


@_jit
def _argmax_wide(a):
    """numpy's argmax of a long row a: the first maximum, or the first NaN; the maximum is
    found in four independent lanes (vectorisable), then its first occurrence."""
    n = len(a)
    if n < 8:
        return _argmax(a, n)
    m0, m1, m2, m3 = a[0], a[1], a[2], a[3]
    nan = (m0 != m0) | (m1 != m1) | (m2 != m2) | (m3 != m3)
    j = 4
    while j + 4 <= n:
        v0, v1, v2, v3 = a[j], a[j + 1], a[j + 2], a[j + 3]
        m0 = v0 if v0 > m0 else m0
        m1 = v1 if v1 > m1 else m1
        m2 = v2 if v2 > m2 else m2
        m3 = v3 if v3 > m3 else m3
        nan |= (v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3)
        j += 4
    for j in range(j, n):
        v = a[j]
        m0 = v if v > m0 else m0
        nan |= v != v
    if nan:
        return _argmax(a, n)
    m = max(max(m0, m1), max(m2, m3))
    for j in range(n):
        if a[j] == m:
            return j
    return 0


@_jit
def _bank_terms(patch, win, val, Wt, prec, pr_all, touched):
    """One sample's bank terms: every active position's winner c reconstructs its patch
    (patch[k], 81 pixels) as v * W[:, c]; pr_all[c] (81,) sums err * v over the positions c
    won (in position order), touched[c] marks them."""
    K, P = patch.shape
    touched[:] = False
    for k in range(K):
        v = val[k]
        if v == 0.0:  # its post is 0 for every detector
            continue
        c = win[k]
        pr = pr_all[c]
        if not touched[c]:
            touched[c] = True
            pr[:] = 0.0
        wc, pk = Wt[c], patch[k]
        for q in range(P):
            p = v * wc[q]
            pr[q] += ((pk[q] - p) / (p if p > prec else 1.0)) * v


@_parallel
def codes(x, idx, W, cell_ptr, cell_pos, patch_norm, pool_max, onehot, norm, pixels, code_i, code_v, nnz):
    """The sparse layer-2 inputs of x (n, 784): code_i, code_v (n, max non-zeros), nnz (n,)."""
    n = x.shape[0]
    K, P = idx.shape
    C = W.shape[1]
    D = det_size(cell_ptr, C)
    for blk in prange((n + SAMPLES - 1) // SAMPLES):
        a, nz_q, nz_x, patch = np.empty(C), np.empty(P, np.int64), np.empty(P), np.empty((K, P))
        win, val = np.empty(K, np.int64), np.empty(K)
        det, dval, dcnt = np.empty(D, np.int64), np.empty(D), np.empty(D, np.int64)
        for b in range(blk * SAMPLES, min(n, (blk + 1) * SAMPLES)):
            nnz[b] = _input(x[b], idx, W, cell_ptr, cell_pos, patch_norm, pool_max, onehot, norm, pixels, a, nz_q,
                            nz_x, patch, win, val, det, dval, dcnt, code_i[b], code_v[b])


@_parallel
def scores(x, idx, W, cell_ptr, cell_pos, patch_norm, pool_max, onehot, norm, pixels, w2, out):
    """Layer 2's input without the label, out (n, N2), for x (n, 784)."""
    n = x.shape[0]
    K, P = idx.shape
    C = W.shape[1]
    D = det_size(cell_ptr, C)
    M = max_nonzeros(cell_ptr, C, pixels)
    for blk in prange((n + SAMPLES - 1) // SAMPLES):
        b0, b1 = blk * SAMPLES, min(n, (blk + 1) * SAMPLES)
        a, nz_q, nz_x, patch = np.empty(C), np.empty(P, np.int64), np.empty(P), np.empty((K, P))
        win, val = np.empty(K, np.int64), np.empty(K)
        det, dval, dcnt = np.empty(D, np.int64), np.empty(D), np.empty(D, np.int64)
        code_i, code_v, nnz = np.empty((b1 - b0, M), np.int64), np.empty((b1 - b0, M)), np.empty(b1 - b0, np.int64)
        for b in range(b0, b1):
            nnz[b - b0] = _input(x[b], idx, W, cell_ptr, cell_pos, patch_norm, pool_max, onehot, norm, pixels, a,
                                 nz_q, nz_x, patch, win, val, det, dval, dcnt, code_i[b - b0], code_v[b - b0])
        _layer2_any(code_i, code_v, nnz, w2, out[b0:b1], w2[:0], nnz[:0], 0.0)


@_jit
def _errors(lb, w2t, w3, units, s, label, label_gain, prec, e2, r3):
    """One sample's relative errors: e2 (N1,) of w2's reconstruction of its layer-2 input lb,
    r3 (10,) of w3's of its label; pred = the sum over its active layer-2 units (in the order
    they won) of s * the unit's column, err = (target - pred) / (pred if pred > prec else 1)."""
    N1 = len(lb)
    w, s0 = w2t[units[0]], s[0]
    for r in range(N1):
        e2[r] = s0 * w[r]
    for t in range(1, len(units)):
        w, st = w2t[units[t]], s[t]
        for r in range(N1):
            e2[r] += st * w[r]
    for r in range(N1):
        p = e2[r]
        e2[r] = (lb[r] - p) / (p if p > prec else 1.0)
    for c in range(len(r3)):
        p = s[0] * w3[c, units[0]]
        for t in range(1, len(units)):
            p += s[t] * w3[c, units[t]]
        tv = label_gain if c == label else 0.0
        r3[c] = (tv - p) / (p if p > prec else 1.0)


@_jit
def _w2_terms(wj, g, entries, sw, E2, k):
    """One active layer-2 unit's update of its w2 column wj (N1,) (a row of w2t): into g, dW =
    wj * the sum over its entries (sample b = entry // k, in sample order) of E2[b] * s;
    returns max |dW|."""
    N1 = len(wj)
    g[:] = 0.0
    for e in entries:
        s, eb = sw[e], E2[e // k]
        for r in range(N1):
            g[r] += eb[r] * s
    return _times_weights(wj, g)


@_jit
def _update_task(task, n_won, won, w2t, G, grp_b, grp_ptr, sw, E2, k, touched, P, Wt, E1, gmax, bmax):
    """One independent piece of a batch's update: active unit `task`'s w2 column, or (task >= n_won)
    detector task - n_won of the bank."""
    if task < n_won:
        gmax[task] = _w2_terms(w2t[won[task]], G[task], grp_b[grp_ptr[task]:grp_ptr[task + 1]], sw, E2, k)
    else:
        bmax[task - n_won] = _bank_sum(task - n_won, touched, P, Wt, E1[task - n_won])


@_jit
def _bank_sum(c, touched, P, Wt, e1):
    """Detector c's update: into e1 (81,), dW = W[:, c] * its samples' terms summed in
    sample order; returns max |dW|."""
    PP = len(e1)
    e1[:] = 0.0
    for b in range(P.shape[0]):
        if touched[b, c]:
            pr = P[b, c]
            for q in range(PP):
                e1[q] += pr[q]
    return _times_weights(Wt[c], e1)


@_jit
def _w2_apply_norm(wj, g, s2):
    """w2t[j] (wj) += s2 * dW, then rescaled to unit length (unit_norm)."""
    N1 = len(wj)
    for r in range(N1):
        wj[r] = wj[r] + s2 * g[r]
    ss = 0.0
    for r in range(N1):
        ss += wj[r] * wj[r]
    length = np.sqrt(ss)
    den = 1e-300 if length < 1e-300 else length  # np.maximum(length, 1e-300)
    for r in range(N1):
        wj[r] = wj[r] / den


@_jit
def _apply_copy(w2t, G, cols, slots, s2, apply, w2, r0, r1):
    """For the rows r0..r1-1 of the winners' columns `cols` (ascending; their rows of G:
    `slots`): with `apply`, w2t[j, r] += s2 * G[slot, r]; then w2[r, j] = w2t[j, r]. Eight
    rows at a time (a cache line of w2t and G), row by row of w2: column by column would
    touch a new page of w2 per value."""
    for rb in range(r0, r1, 8):
        re = min(rb + 8, r1)
        for t in range(len(cols)):
            j, sl = cols[t], slots[t]
            for r in range(rb, re):
                w = w2t[j, r]
                if apply:
                    w = w + s2 * G[sl, r]
                    w2t[j, r] = w
                w2[r, j] = w


@_parallel
def train_batches(groups, par_min, x, y, idx, cell_ptr, cell_pos, patch_norm, pool_max, onehot, norm, pixels,
                  label_gain, unit_norm, k, W, Wt, w2, w2t, w3, xi, prec,
                  win, val, code_i, code_v, nnz, l1, l2_in, jw, sw, E2, R3, slot_of, won, fill, grp_ptr, grp_b,
                  P, touched, G, gmax, E1, bmax, E3):
    """Train on consecutive batches of B samples of x (n, 784), labels y (n,); the forward pass
    runs in `groups` parallel tasks (one per thread; any number gives the same numbers), the
    updates of w2 and the bank in parallel when the batch's active units x N1 >= par_min.

    Weights, updated in place: W (81, C) the bank and Wt (C, 81) its transpose, w2 (N1, N2)
    and w2t (N2, N1) its transpose (each pair kept equal), w3 (10, N2). Each sample has k
    active layer-2 units (`l2_winners`), its entries b * k .. b * k + k - 1. Work arrays
    (B = batch size, K positions, M = `max_nonzeros`, U = min(B * k, N2)): win, val (B, K) the
    winners, code_i, code_v (B, M), nnz (B,) the layer-2 inputs, l1 (B, N1) all 0 (the same,
    dense; reset after use), l2_in (B, N2), jw, sw (B * k,) layer 2's active units and their
    inputs, E2 (B, N1), R3 (B, 10) the samples' errors of w2 and w3; slot_of (N2,) all -1,
    won, fill (U,), grp_ptr (U + 1,), grp_b (B * k,) the batch's active units and their
    entries; P (B, C, 81), touched (B, C) the bank's terms per sample; G (U, N1), gmax (U,)
    w2's update per active unit; E1 (C, 81), bmax (C,) the bank's; E3 (10, U) w3's."""
    B = l2_in.shape[0]
    K, PP = idx.shape
    C = W.shape[1]
    N1 = w2.shape[0]
    n_lab = w3.shape[0]
    D = det_size(cell_ptr, C)
    groups = max(1, min(B, groups))
    for i in range(len(x) // B):
        off = i * B
        # the forward pass, the bank's terms and the samples' errors, a group of samples per task
        for grp in prange(groups):
            b0, b1 = grp * B // groups, (grp + 1) * B // groups
            a, nz_q, nz_x, patch = np.empty(C), np.empty(PP, np.int64), np.empty(PP), np.empty((K, PP))
            det, dval, dcnt = np.empty(D, np.int64), np.empty(D), np.empty(D, np.int64)
            for b in range(b0, b1):
                xb = x[off + b]
                m = _input(xb, idx, W, cell_ptr, cell_pos, patch_norm, pool_max, onehot, norm, pixels, a, nz_q, nz_x,
                           patch, win[b], val[b], det, dval, dcnt, code_i[b], code_v[b])
                _bank_terms(patch, win[b], val[b], Wt, prec, P[b], touched[b])
                nnz[b] = m
                for e in range(m):
                    l1[b, code_i[b, e]] = code_v[b, e]
            _layer2_any(code_i[b0:b1], code_v[b0:b1], nnz[b0:b1], w2, l2_in[b0:b1], w3, y[off + b0:off + b1],
                        label_gain)
            for b in range(b0, b1):
                row = l2_in[b]
                for t in range(k):  # the k most active units, one after the other
                    j = _argmax_wide(row)
                    jw[b * k + t] = j
                    sw[b * k + t] = row[j]
                    if t + 1 < k:
                        row[j] = -np.inf
                _errors(l1[b], w2t, w3, jw[b * k:(b + 1) * k], sw[b * k:(b + 1) * k], y[off + b], label_gain, prec,
                        E2[b], R3[b])
        # the batch's active units (in order of first activity) and their entries (ascending)
        n_won = 0
        for e in range(B * k):
            j = jw[e]
            if slot_of[j] < 0:
                slot_of[j] = n_won
                won[n_won] = j
                fill[n_won] = 0
                n_won += 1
            fill[slot_of[j]] += 1
        grp_ptr[0] = 0
        for sl in range(n_won):
            grp_ptr[sl + 1] = grp_ptr[sl] + fill[sl]
            fill[sl] = grp_ptr[sl]
        for e in range(B * k):
            sl = slot_of[jw[e]]
            grp_b[fill[sl]] = e
            fill[sl] += 1
        # w3: the samples' label errors summed per active unit (10 x B x k terms, serial)
        m3 = 0.0
        for sl in range(n_won):
            j = won[sl]
            for c in range(n_lab):
                acc = 0.0
                for t in range(grp_ptr[sl], grp_ptr[sl + 1]):
                    e = grp_b[t]
                    acc += R3[e // k, c] * sw[e]
                d = w3[c, j] * acc
                E3[c, sl] = d
                m3 = _nanmax(m3, abs(d))
        # w2 unit by unit (its samples in order) and the bank detector by detector; in
        # parallel when the work pays for a parallel region (the same numbers either way)
        if n_won * N1 >= par_min:
            for task in prange(n_won + C):
                _update_task(task, n_won, won, w2t, G, grp_b, grp_ptr, sw, E2, k, touched, P, Wt, E1, gmax, bmax)
        else:
            for task in range(n_won + C):
                _update_task(task, n_won, won, w2t, G, grp_b, grp_ptr, sw, E2, k, touched, P, Wt, E1, gmax, bmax)
        m2 = 0.0
        for sl in range(n_won):
            m2 = _nanmax(m2, gmax[sl])
        m1 = 0.0
        for c in range(C):
            m1 = _nanmax(m1, bmax[c])
        s2, s3, s1 = _scale(xi, m2, prec), _scale(xi, m3, prec), _scale(xi, m1, prec)
        slots = np.argsort(won[:n_won])  # the active units' columns in ascending order
        cols = won[slots]
        if n_won * N1 >= par_min:
            if unit_norm:
                for sl in prange(n_won):
                    _w2_apply_norm(w2t[won[sl]], G[sl], s2)
            for rb in prange((N1 + ROWS - 1) // ROWS):
                _apply_copy(w2t, G, cols, slots, s2, not unit_norm, w2, rb * ROWS, min(N1, (rb + 1) * ROWS))
        else:
            if unit_norm:
                for sl in range(n_won):
                    _w2_apply_norm(w2t[won[sl]], G[sl], s2)
            _apply_copy(w2t, G, cols, slots, s2, not unit_norm, w2, 0, N1)
        for b in range(B):  # reset the dense codes
            for e in range(nnz[b]):
                l1[b, code_i[b, e]] = 0.0
        for sl in range(n_won):
            j = won[sl]
            for c in range(n_lab):
                w3[c, j] += s3 * E3[c, sl]
            slot_of[j] = -1
        for c in range(C):
            for q in range(PP):
                w = W[q, c] + s1 * E1[c, q]
                W[q, c] = w
                Wt[c, q] = w
