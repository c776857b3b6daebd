"""A peer: Krotov & Hopfield's "Unsupervised learning by competing hidden units" (PNAS 2019)
as layer 1, with DreamFlow's layer 2 as its local read-out (layer1="krotov").

Layer 1 is C_s units that see the whole image, synapses S (C_s, 784) initialised N(0, 1)
(stored as w1 = S.T). Their rule, as in the authors' public notebook (the direct ancestor of
the log's code: the same `Nep`, `prec` and max-|update| scaling), per batch v (B, 784):

    I = (sign(S) |S|^(p-1)) v^T                       inputs of every unit, (C_s, B)
    g = +1 for each sample's strongest unit, -delta for its k-th strongest, 0 otherwise
    dS = g v - (sum_b g I) S,  S += eps * dS / max(max|dS|, prec)

with eps = kh_eps0 * (1 - epoch / kh_epochs) over the first `kh_epochs` epochs. I is one
BLAS product; the rest is one compiled pass (`_kh_update`): each sample's strongest and k-th
strongest unit by a running top-k (the notebook's full `argsort` picks the same units up to
exact ties), and only the rows of the units with g != 0, which alone change.

The code layer 2 reads is relu(I) ** kh_n (the activation the paper's classifier reads),
with `kh_top` only each sample's kh_top largest values of it, divided by its length with `norm`;
with `kh_center` the units see (learn from and code) each image minus its own mean pixel value. Layer 2 learns after layer 1, in the remaining epochs, by
the DreamFlow rule with the label input, exactly as for the shared layer 1
(`shared_reference`): per sample its `l2_winners` most active units (by argmax, one after the
other: ties go to the lower unit) keep their inputs s, the others are 0; each sample's
prediction sums its active units, pred = sum_t s_t * W[:, unit_t], and each active unit's
dW = W[:, unit] * the sum over the samples it is active in of s * err. `config.dtype`
"float32" halves the time of the matrix products (every array of the engine in float32).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..core.config import Config
from ..core.model import Weights, check_weights
from .base import check_kind, images, in_chunks, labels, predict_vote


class KrotovEngine:
    def __init__(self, config: Config, weights: Weights):
        self.config = config
        self.dtype = np.dtype(config.dtype)
        w1, w2, w3 = check_weights(config, weights)
        self.S = np.ascontiguousarray(w1.T, dtype=self.dtype)  # (C_s, 784): one row per unit, as the authors'
        self.Sp = self._power(self.S)
        self.w2, self.w3 = w2.astype(self.dtype), w3.astype(self.dtype)
        self.xi = config.xi
        self.batches = 0  # trained so far: the epoch is batches // (T_s // B)

    def _power(self, S):
        p = self.config.kh_p
        return np.sign(S) * np.abs(S) ** (p - 1)

    def weights(self) -> Weights:
        return Weights(*(np.array(w, dtype=np.float64) for w in (self.S.T, self.w2, self.w3)))

    def set_xi(self, xi: float) -> None:
        self.xi = xi

    def _input(self, v):
        """The images the units see: with kh_center each minus its own mean pixel value."""
        return v - v.mean(axis=1, keepdims=True) if self.config.kh_center else v

    # ----------------------------------------------------------------- layer 1
    def _kh_step(self, v, eps):
        c = self.config
        tot = np.ascontiguousarray((self.Sp @ v.T).T)  # (B, hid): I transposed (BLAS is fastest as Sp @ v.T)
        _kh_update(self.S, self.Sp, v, tot, c.kh_k, self.dtype.type(c.kh_delta), self.dtype.type(eps),
                   self.dtype.type(c.prec), self.dtype.type(c.kh_p), *self._work(len(v)))

    def _work(self, B):
        """Scratch of `_kh_update`: the slot of each unit (-1: untouched), the touched units, their
        dS rows and sums g * I."""
        if getattr(self, "_scratch", None) is None or self._scratch[2].shape[0] < 2 * B:
            hid, n = self.S.shape
            self._scratch = (np.full(hid, -1, np.int64), np.empty(2 * B, np.int64),
                             np.empty((2 * B, n), self.dtype), np.empty(2 * B, self.dtype))
        return self._scratch

    def _codes(self, v):
        c = self.config
        code = np.maximum(self._input(v) @ self.Sp.T, 0.0) ** c.kh_n
        if c.kh_top:  # keep each sample's kh_top largest values (a stable sort: ties to the lower unit)
            drop = np.argsort(-code, axis=1, kind="stable")[:, c.kh_top:]
            np.put_along_axis(code, drop, 0.0, axis=1)
        if c.norm:
            code = code / np.maximum(np.linalg.norm(code, axis=1, keepdims=True), 1e-12)
        return code

    # ----------------------------------------------------------------- layer 2
    def _err(self, target, pred):
        return (target - pred) / np.where(pred > self.config.prec, pred, 1)

    def _step(self, w, cols, grad):
        """w[:, cols] += xi / max(max|dW|, prec) * dW with dW = w[:, cols] * grad."""
        dw = w[:, cols] * grad
        w[:, cols] += (self.xi / max(np.max(np.abs(dw)), self.config.prec)) * dw

    @staticmethod
    def _pred(w, top, s):
        """Each sample's prediction (B, rows of w): the sum over its active units top[b] (in the
        order they won) of s * w[:, unit]."""
        pred = s[:, 0, None] * w[:, top[:, 0]].T
        for t in range(1, top.shape[1]):
            pred = pred + s[:, t, None] * w[:, top[:, t]].T
        return pred

    def _readout_step(self, v, lab):
        c = self.config
        B, k = len(v), c.l2_winners
        l1 = self._codes(v)
        l2_in = (self.w2.T @ l1.T).T + c.label_gain * self.w3[lab]  # the product in BLAS's fast orientation
        top, rest = np.empty((B, k), np.int64), l2_in.copy()
        for t in range(k):  # the k most active units, one after the other
            top[:, t] = rest.argmax(axis=1)
            rest[np.arange(B), top[:, t]] = -np.inf
        s = np.take_along_axis(l2_in, top, axis=1)  # (B, k) their inputs
        cols, inv = np.unique(top, return_inverse=True)
        cl = np.zeros((B, self.w3.shape[0]), self.dtype)
        cl[np.arange(B), lab] = c.label_gain
        # per active unit, the sum over the samples it is active in of s * err (a one-hot matrix
        # product over the entries (b, t), b by b: in sample order)
        member = (inv.reshape(-1)[None, :] == np.arange(len(cols))[:, None]).astype(self.dtype)  # (U, B * k)
        post = s.reshape(-1, 1)
        g2 = member @ (post * np.repeat(self._err(l1, self._pred(self.w2, top, s)), k, axis=0))
        g3 = member @ (post * np.repeat(self._err(cl, self._pred(self.w3, top, s)), k, axis=0))
        self._step(self.w2, cols, g2.T)
        self._step(self.w3, cols, g3.T)
        if c.unit_norm:
            self.w2[:, cols] /= np.maximum(np.linalg.norm(self.w2[:, cols], axis=0, keepdims=True), 1e-300)

    # ----------------------------------------------------------------- interface
    def train_batches(self, x, y):
        x = images(x).astype(self.dtype, copy=False)
        y = labels(y, len(x))
        c = self.config
        per_epoch = c.T_s // c.B
        for i in range(len(x) // c.B):
            v, lab = x[i * c.B:(i + 1) * c.B], y[i * c.B:(i + 1) * c.B]
            epoch = self.batches // per_epoch
            if epoch < c.kh_epochs:
                self._kh_step(self._input(v), c.kh_eps0 * (1 - epoch / c.kh_epochs))
            else:
                self._readout_step(v, lab)
            self.batches += 1

    def codes(self, x, kind: str = "value"):
        """"value": relu(I) ** kh_n (normalised with norm); "onehot": each sample's strongest unit as 1."""
        check_kind(kind, ("value", "onehot"))
        if kind == "onehot":
            def onehot(v):
                out = np.zeros((len(v), self.S.shape[0]))
                out[np.arange(len(v)), (self._input(v) @ self.Sp.T).argmax(axis=1)] = 1.0
                return out
            return in_chunks(onehot, images(x))
        return in_chunks(self._codes, images(x).astype(self.dtype, copy=False))

    def scores(self, x):
        return in_chunks(lambda v: (self.w2.T @ self._codes(v).T).T, images(x).astype(self.dtype, copy=False))

    def predict(self, x):
        return predict_vote(self.scores(x), self.w3, self.config.vote)


@njit(cache=True, error_model="numpy")
def _kh_update(S, Sp, v, tot, k, delta, eps, prec, p, slot, rows, ds, gi):
    """One batch of Krotov & Hopfield's rule given I^T = tot (B, hid): S and Sp = sign(S) |S|^(p-1)
    updated in place on the touched rows. slot (hid,) must be -1 on entry (and is on exit)."""
    B, hid = tot.shape
    n = v.shape[1]
    topv, topi = np.empty(k, tot.dtype), np.empty(k, np.int64)
    nrows = 0
    for b in range(B):
        t = tot[b]
        m = 0  # topv[:m] holds the m largest so far, descending (ties: the earlier unit first)
        for u in range(hid):
            x = t[u]
            if m < k or x > topv[m - 1]:
                at = m if m < k else k - 1
                while at > 0 and x > topv[at - 1]:
                    if at < k:
                        topv[at], topi[at] = topv[at - 1], topi[at - 1]
                    at -= 1
                topv[at], topi[at] = x, u
                m = min(m + 1, k)
        for j in range(2):
            unit = topi[0] if j == 0 else topi[k - 1]
            g = 1.0 if j == 0 else -delta
            r = slot[unit]
            if r < 0:
                r = nrows
                slot[unit], rows[r] = r, unit
                ds[r, :] = 0.0
                gi[r] = 0.0
                nrows += 1
            for i in range(n):
                ds[r, i] += g * v[b, i]
            gi[r] += g * t[unit]
    mx = 0.0
    for r in range(nrows):
        Su = S[rows[r]]
        for i in range(n):
            d = ds[r, i] - gi[r] * Su[i]
            ds[r, i] = d
            mx = max(mx, abs(d))
    nc = max(mx, prec)
    for r in range(nrows):
        u = rows[r]
        for i in range(n):
            w = S[u, i] + eps * (ds[r, i] / nc)
            S[u, i] = w
            Sp[u, i] = np.sign(w) * np.abs(w) ** (p - 1)
        slot[u] = -1
