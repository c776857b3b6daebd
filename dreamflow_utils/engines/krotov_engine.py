"""A peer: Krotov & Hopfield's "Unsupervised learning by competing hidden units" (PNAS 2019)
as layer 1, with DreamFlow's layer 2 as its local read-out (layer1="krotov").

Layer 1 is C_s units that see the whole image, synapses S (C_s, 784) initialised N(0, 1)
(stored as w1 = S.T). Their rule, as in the authors' public notebook (the direct ancestor of
the log's code: the same `Nep`, `prec` and max-|update| scaling), per batch v (B, 784):

    I = (sign(S) |S|^(p-1)) v^T                       inputs of every unit, (C_s, B)
    g = +1 for each sample's strongest unit, -delta for its k-th strongest, 0 otherwise
    dS = g v - (sum_b g I) S,  S += eps * dS / max(max|dS|, prec)

with eps = kh_eps0 * (1 - epoch / kh_epochs) over the first `kh_epochs` epochs. The order
statistics come from `np.argpartition` (the notebook's full `argsort` picks the same units up
to exact ties). Only the units with g != 0 change, so only their rows are updated.

The code layer 2 reads is relu(I) ** kh_n (the activation the paper's classifier reads),
divided by its length with `norm`. Layer 2 learns after layer 1, in the remaining epochs, by
the DreamFlow rule with the label input, exactly as for the shared layer 1
(`shared_reference`), summing over the batch per winning unit. `config.dtype` "float32"
halves the time of the matrix products (every array of the engine in float32).
"""
from __future__ import annotations

import numpy as np

from ..config import Config
from ..model import Weights, check_weights
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

    # ----------------------------------------------------------------- layer 1
    def _kh_step(self, v, eps):
        c = self.config
        hid, B = self.S.shape[0], len(v)
        tot = np.ascontiguousarray((self.Sp @ v.T).T)  # (B, hid): I transposed (BLAS is fastest as Sp @ v.T;
        top = np.argpartition(tot, (hid - c.kh_k, hid - 1), axis=1)  # each sample's ranking reads contiguous memory)
        first, kth = top[:, hid - 1], top[:, hid - c.kh_k]
        rows = np.unique(np.concatenate([first, kth]))
        g = np.zeros((len(rows), B), self.dtype)
        g[np.searchsorted(rows, first), np.arange(B)] = 1.0
        g[np.searchsorted(rows, kth), np.arange(B)] = -c.kh_delta
        xx = np.sum(g * tot[:, rows].T, axis=1)
        ds = g @ v - xx[:, None] * self.S[rows]
        nc = max(np.max(np.abs(ds)), c.prec)
        self.S[rows] += eps * ds / nc
        self.Sp[rows] = self._power(self.S[rows])

    def _codes(self, v):
        c = self.config
        code = np.maximum(v @ self.Sp.T, 0.0) ** c.kh_n
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

    def _readout_step(self, v, lab):
        c = self.config
        B = len(v)
        l1 = self._codes(v)
        l2_in = (self.w2.T @ l1.T).T + c.label_gain * self.w3[lab]  # the product in BLAS's fast orientation
        j = l2_in.argmax(axis=1)
        s = l2_in[np.arange(B), j]
        cols, inv = np.unique(j, return_inverse=True)
        cl = np.zeros((B, self.w3.shape[0]), self.dtype)
        cl[np.arange(B), lab] = c.label_gain
        # per winning unit, the sum over its samples of s * err (a one-hot matrix product: in sample order)
        member = (inv[None, :] == np.arange(len(cols))[:, None]).astype(self.dtype)  # (U, B)
        g2 = member @ (s[:, None] * self._err(l1, s[:, None] * self.w2[:, j].T))
        g3 = member @ (s[:, None] * self._err(cl, s[:, None] * self.w3[:, j].T))
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
                self._kh_step(v, c.kh_eps0 * (1 - epoch / c.kh_epochs))
            else:
                self._readout_step(v, lab)
            self.batches += 1

    def codes(self, x, kind: str = "value"):
        """"value": relu(I) ** kh_n (normalised with norm); "onehot": each sample's strongest unit as 1."""
        check_kind(kind, ("value", "onehot"))
        if kind == "onehot":
            def onehot(v):
                out = np.zeros((len(v), self.S.shape[0]))
                out[np.arange(len(v)), (v @ self.Sp.T).argmax(axis=1)] = 1.0
                return out
            return in_chunks(onehot, images(x))
        return in_chunks(self._codes, images(x).astype(self.dtype, copy=False))

    def scores(self, x):
        return in_chunks(lambda v: (self.w2.T @ self._codes(v).T).T, images(x).astype(self.dtype, copy=False))

    def predict(self, x):
        return predict_vote(self.scores(x), self.w3, self.config.vote)
