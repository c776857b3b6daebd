"""Compiled (numba) loops of the numpy engine: one pass over the few non-zeros of each batch.

Each update mirrors the reference's arithmetic term by term: with pred = s * w (the
winner's prediction; the reference's ``l2 @ w.T`` sums one non-zero product),
err = (target - pred) / (pred if pred > prec else 1), the reference's ``w * post * err``
summed over the batch in sample order, then ``w += xi / max(max|dW|, prec) * dW``.
What differs from the reference is only the order of the sums with several non-zero
terms (a patch's pixels in layer 1, the winners in layer 2, overlapping patches in the
reconstruction; BLAS orders them its own way), i.e. the last bits.
No fast-math flags at all: every sum keeps its written order, and a NaN or inf (a step size
too large for float64) propagates as IEEE arithmetic says, the same in every engine.

Parallel loops (`prange`) only split work whose pieces write disjoint outputs (clusters,
layer-2 units, the w2/w3 update beside the w1 update), so results do not depend on the
thread count (`threads` chooses it).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


# no fast-math: a NaN or inf propagates as IEEE says (train checks the weights); error_model="numpy"
# only drops numba's zero-divisor check (no divisor here is 0: it is pred > prec or 1), which lets
# LLVM vectorise the update loops
_FLAGS = dict(cache=True, error_model="numpy")
_jit = njit(**_FLAGS)
_parallel = njit(parallel=True, **_FLAGS)


@_parallel
def layer1(x, idx, W1t, log_quirk, unit, val):
    """Winner-take-all per cluster for inputs x (n, 784).

    idx (K, 81): each cluster's patch pixels; W1t (K, 81, C): its units' weights.
    Fills unit (K, n), the winning unit of each cluster (a global unit number), and
    val (K, n), its output; a unit that wins for two clusters (only via the log's quirk)
    keeps its output at its first cluster and 0 at the others, so it counts once.
    With `log_quirk`, a cluster with no positive output picks what the log's argmax over
    the full row picks, the row's first zero: unit 0 (or, for cluster 0 when all its
    outputs are negative, unit C)."""
    K, P, C = W1t.shape
    n = x.shape[0]
    first = np.empty((2, n))  # outputs of units 0 and C, for the quirk
    for kh in prange(2 * K):  # each cluster's first and second half of the samples
        k, h = kh // 2, kh % 2
        a = np.empty(C)
        nz_q = np.zeros(P + 1, np.int64)  # the patch's non-zero pixels (MNIST is mostly background)
        nz_x = np.zeros(P + 1)
        for b in range(h * (n // 2), n // 2 + h * (n - n // 2)):
            m = 0
            for q in range(P):
                xq = x[b, idx[k, q]]
                nz_q[m] = q
                nz_x[m] = xq
                m += xq != 0.0
            a[:] = 0.0
            t = 0
            while t + 4 <= m:  # four pixels per pass over a; same order of sums
                w0, w1, w2, w3 = W1t[k, nz_q[t]], W1t[k, nz_q[t + 1]], W1t[k, nz_q[t + 2]], W1t[k, nz_q[t + 3]]
                x0, x1, x2, x3 = nz_x[t], nz_x[t + 1], nz_x[t + 2], nz_x[t + 3]
                for c in range(C):
                    a[c] = a[c] + x0 * w0[c] + x1 * w1[c] + x2 * w2[c] + x3 * w3[c]
                t += 4
            for t in range(t, m):
                w0, x0 = W1t[k, nz_q[t]], nz_x[t]
                for c in range(C):
                    a[c] += x0 * w0[c]
            best = np.argmax(a)  # the first of equal maxima, as numpy's
            unit[k, b] = k * C + best
            val[k, b] = a[best]
            if k < 2:
                first[k, b] = a[0]
    for b in range(n):
        for k in range(K):
            if log_quirk and k > 0 and val[k, b] <= 0.0:
                unit[k, b], val[k, b] = 0, first[0, b]
            elif log_quirk and k == 0 and val[k, b] < 0.0:
                unit[k, b], val[k, b] = C, first[1, b]
            for k2 in range(k):
                if unit[k2, b] == unit[k, b]:
                    val[k, b] = 0.0


@_parallel
def layer2(unit, val, w2t, out):
    """Fills out (n, N2), layer 2's input without the label: the winners' outputs times
    their w2 rows. w2t is w2 transposed, (N2, N1)."""
    K, n = unit.shape
    for j in prange(w2t.shape[0]):
        row = w2t[j]
        for b in range(n):
            acc = 0.0
            for k in range(K):
                acc += val[k, b] * row[unit[k, b]]
            out[b, j] = acc


@_jit
def _step(w, dw, rows, xi, prec):
    """w += xi * dW / max(max|dW|, prec) on the given rows (dW is 0 elsewhere); dW is reset to 0."""
    m = prec
    for r in rows:
        for d in dw[r]:
            m = max(m, abs(d))
    scale = xi / m
    for r in rows:
        wr, dr = w[r], dw[r]
        for i in range(len(dr)):
            wr[i] += scale * dr[i]
            dr[i] = 0.0


@_jit
def _learn_w23(labels, unit, val, l2_in, w2t, w3, xi, prec, dw2t, dw3):
    """The w2 and w3 updates: layer 2's winner j (output s) predicts the layer-1 output as
    s * w2[:, j] and the one-hot label as s * w3[:, j]."""
    K, B = unit.shape
    N1 = w2t.shape[1]
    act = np.empty(K, np.int64)  # one sample's clusters with an active unit, by unit number
    won = np.zeros(w2t.shape[0], np.bool_)
    for b in range(B):
        j = np.argmax(l2_in[b])
        s = l2_in[b, j]
        won[j] = True
        # an inactive layer-1 unit's target is 0, so its err is -1 (pred > prec) or -pred;
        # the active units, in ascending order, split the row into runs of inactive ones
        n_act = 0
        for k in range(K):
            if val[k, b] != 0.0:
                at = n_act
                while at > 0 and unit[act[at - 1], b] > unit[k, b]:
                    act[at] = act[at - 1]
                    at -= 1
                act[at] = k
                n_act += 1
        w, d = w2t[j], dw2t[j]
        start = 0
        for a in range(n_act + 1):
            stop = unit[act[a], b] if a < n_act else N1
            for i in range(start, stop):
                p = s * w[i]
                d[i] += -p if p > prec else -(p * p)
            if a < n_act:
                p = s * w[stop]
                d[stop] += p * ((val[act[a], b] - p) / (p if p > prec else 1.0))
                start = stop + 1
        for c in range(w3.shape[0]):
            p = s * w3[c, j]
            dw3[c, j] += p * (((1.0 if c == labels[b] else 0.0) - p) / (p if p > prec else 1.0))
    _step(w2t, dw2t, np.flatnonzero(won), xi, prec)
    _step(w3, dw3, np.arange(w3.shape[0]), xi, prec)


@_jit
def _learn_w1(x, unit, val, idx, overlap, W1, W1t, xi, prec, dW1):
    """The w1 update: the active units predict the image, each its patch; where patches
    share pixels (overlap layout, or the log's quirk) their predictions add up."""
    K, B = unit.shape
    N1, P = W1.shape
    C = N1 // K
    img = np.zeros(x.shape[1])  # one sample's reconstruction, where patches share pixels
    shared = np.zeros(K, np.bool_)  # per patch: more than one active unit may predict it
    target, pred = np.empty(P), np.empty(P)  # one patch's pixels and their reconstruction
    learned = np.zeros(N1, np.bool_)
    for b in range(B):
        shared[:] = overlap
        for k in range(K):
            if unit[k, b] // C != k and val[k, b] != 0.0:  # the quirk: a second unit on a patch
                shared[unit[k, b] // C] = True
        for k in range(K):
            u, v = unit[k, b], val[k, b]
            if v != 0.0 and shared[u // C]:
                pix = idx[u // C]
                for q in range(P):
                    img[pix[q]] += v * W1[u, q]
        for k in range(K):
            u, v = unit[k, b], val[k, b]
            if v != 0.0:
                learned[u] = True
                pix, w, d = idx[u // C], W1[u], dW1[u]
                for q in range(P):
                    target[q] = x[b, pix[q]]
                    pred[q] = img[pix[q]] if shared[u // C] else w[q] * v
                for q in range(P):
                    p = pred[q]
                    d[q] += (w[q] * v) * ((target[q] - p) / (p if p > prec else 1.0))
        for k in range(K):
            if shared[unit[k, b] // C]:
                for pix in idx[unit[k, b] // C]:
                    img[pix] = 0.0
    rows = np.flatnonzero(learned)
    _step(W1, dW1, rows, xi, prec)
    for u in rows:
        W1t[u // C, :, u % C] = W1[u]


@_parallel
def train_batches(x, labels, idx, overlap, log_quirk, W1, W1t, w2t, w3, xi, prec, unit, val, l2_in, dW1, dw2t, dw3):
    """Train on consecutive batches of B samples of x (n, 784), labels (n,).

    Per batch: `layer1`, `layer2` plus the label's w3 row, then the updates of w2 and w3
    and of w1 side by side (both read only the forward pass; the log's order w2, w3, w1
    matters to none of them). W1 (N1, 81) is each unit's patch weights, W1t (K, 81, C)
    the same transposed, w2t (N2, N1) w2 transposed, w3 (10, N2): all updated in place.
    Work arrays: unit, val (K, B), l2_in (B, N2), and dW1, dw2t, dw3 zeroed, each the
    shape of its weights."""
    B = l2_in.shape[0]
    for i in range(len(x) // B):
        v, lab = x[i * B:(i + 1) * B], labels[i * B:(i + 1) * B]
        layer1(v, idx, W1t, log_quirk, unit, val)
        layer2(unit, val, w2t, l2_in)
        for b in range(B):
            l2_in[b] += w3[lab[b]]
        for task in prange(2):
            if task == 0:
                _learn_w23(lab, unit, val, l2_in, w2t, w3, xi, prec, dw2t, dw3)
            else:
                _learn_w1(v, unit, val, idx, overlap, W1, W1t, xi, prec, dW1)
