"""The fast engine: the reference's math, exploiting the model's sparsity.

- Each layer-1 unit sees only its 9x9 patch (the multiplicative update keeps the zeros
  outside it at zero), so its weights are stored as 81 numbers: W1[u] for unit u.
- Each cluster has one winner and layer 2 has one winner, so every prediction and
  every update touches a handful of units: they are gathered, and the per-sample
  updates are summed per unit with `np.bincount`, never via B x L x N1 temporaries.

Its matrix products are small, so BLAS runs on one thread (more threads only contend:
4x slower per batch on 2 busy cores); run seeds in parallel processes instead.
"""
from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from ..config import Config
from ..layouts import SIDE, patch_indices
from ..model import Weights


class NumpyEngine:
    def __init__(self, config: Config, weights: Weights):
        self.config = config
        K, C = config.n_clusters, config.C_s
        self.idx = patch_indices(config.layout)  # (K, 81)
        self.unit_pixels = np.repeat(self.idx, C, axis=0)  # (N1, 81): each unit's patch
        w1 = np.asarray(weights.w1, dtype=np.float64)
        self.W1 = np.take_along_axis(w1.T, self.unit_pixels, axis=1)  # (N1, 81)
        outside = w1.T.copy()
        np.put_along_axis(outside, self.unit_pixels, 0, axis=1)
        if np.any(outside):
            raise ValueError("w1 has non-zero weights outside each unit's patch; "
                             "the numpy engine needs the log's patch structure")
        self.w2 = np.array(weights.w2, dtype=np.float64)
        self.w3 = np.array(weights.w3, dtype=np.float64)
        self.offsets = (np.arange(K) * C)[:, None]

    def weights(self) -> Weights:
        w1t = np.zeros((self.config.N1, SIDE * SIDE))
        np.put_along_axis(w1t, self.unit_pixels, self.W1, axis=1)
        return Weights(w1t.T.copy(), self.w2.copy(), self.w3.copy())

    def _layer1(self, v):
        """Winner-take-all per cluster. Returns the input patches (K, n, 81), the winning
        units (K, n) and their outputs (K, n); a unit that wins for two clusters (the
        log's quirk) keeps its output at its first occurrence only, so it counts once."""
        K, C = self.config.n_clusters, self.config.C_s
        n = len(v)
        patches = v[:, self.idx].transpose(1, 0, 2)
        a = np.matmul(patches, self.W1.reshape(K, C, -1).transpose(0, 2, 1))  # (K, n, C)
        win = a.argmax(axis=2)
        unit = win + self.offsets
        if self.config.wta == "cluster":
            return patches, unit, np.take_along_axis(a, win[..., None], 2)[..., 0]
        # The log's argmax runs over the full row with other clusters' units at 0: a
        # cluster with no positive output picks the row's first zero, which is unit 0;
        # for cluster 0 that is its own first zero, or unit C_s if all its outputs are < 0.
        top = np.take_along_axis(a, win[..., None], 2)[..., 0]
        unit[1:][top[1:] <= 0] = 0
        unit[0][top[0] < 0] = C
        val = a.reshape(K * n, C)[(unit // C) * n + np.arange(n), unit % C].reshape(K, n)
        repeat = (unit[:, None, :] == unit[None, :, :]) & np.tri(K, k=-1, dtype=bool)[:, :, None]
        return patches, unit, np.where(repeat.any(axis=1), 0.0, val)

    def _layer2(self, unit, val):
        """Layer-2 input without the label: sum of the winners' outputs times their w2 rows."""
        return np.einsum("kn,knj->nj", val, self.w2[unit])

    def _err(self, target, pred):
        return (target - pred) / np.where(pred > self.config.prec, pred, 1)

    def _step(self, w, grad):
        """w += xi * dW / max|dW| with dW = w * grad."""
        dw = w * grad
        w += (self.config.xi / max(np.max(np.abs(dw)), self.config.prec)) * dw

    def _train_batch(self, v, labels):
        K, C, B = self.config.n_clusters, self.config.C_s, len(v)
        N1, N2 = K * C, self.w2.shape[1]
        rows = np.arange(B)
        patches, unit, val = self._layer1(v)
        u, b, val = unit.ravel(), np.tile(rows, K), val.ravel()
        l2_in = self._layer2(unit, val.reshape(K, B)) + self.w3[labels]
        j = l2_in.argmax(axis=1)  # layer 2's winner per sample, with output s
        s = l2_in[rows, j]
        # w2, w3: the winner predicts l1 and the label as s * (its column of w2 / w3)
        l1 = np.bincount(b * N1 + u, val, minlength=B * N1).reshape(B, N1)
        l1_err = self._err(l1, s[:, None] * self.w2.T[j])
        cl = np.zeros((B, self.w3.shape[0]))
        cl[rows, labels] = 1
        cl_err = self._err(cl, s[:, None] * self.w3.T[j])
        grad = _sum_by(j, s[:, None] * np.hstack([l1_err, cl_err]), N2)
        self._step(self.w2, grad[:, :N1].T)
        self._step(self.w3, grad[:, N1:].T)
        # w1: each winner predicts its patch; overlapping patches add up
        v_pred = np.bincount((b[:, None] * SIDE * SIDE + self.unit_pixels[u]).ravel(),
                             (val[:, None] * self.W1[u]).ravel(), minlength=B * SIDE * SIDE)
        v_err = self._err(patches, v_pred.reshape(B, -1)[:, self.idx].transpose(1, 0, 2))
        self._step(self.W1, _sum_by(u, val[:, None] * v_err[u // C, b], N1))

    def train_batches(self, x, y):
        B = self.config.B
        with threadpool_limits(1, user_api="blas"):
            for i in range(len(x) // B):
                self._train_batch(x[i * B:(i + 1) * B], y[i * B:(i + 1) * B])

    def predict(self, x, chunk=2000):
        with threadpool_limits(1, user_api="blas"):
            return self._predict(x, chunk)

    def _predict(self, x, chunk):
        out = []
        for s in range(0, len(x), chunk):
            l2_in = self._layer2(*self._layer1(x[s:s + chunk])[1:])
            j = l2_in.argmax(axis=1)
            scores = l2_in[np.arange(len(j)), j][:, None] * self.w3.T[j]
            out.append(scores.argmax(axis=1))
        return np.concatenate(out)


def _sum_by(keys, rows, n_keys):
    """out[k] = sum of rows[i] over the i with keys[i] == k; shape (n_keys, rows.shape[1])."""
    D = rows.shape[1]
    flat = (keys[:, None] * D + np.arange(D)).ravel()
    return np.bincount(flat, rows.ravel(), minlength=n_keys * D).reshape(n_keys, D)
