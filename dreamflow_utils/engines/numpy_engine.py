"""The fast engine: the reference's math on the model's few non-zeros.

- Each layer-1 unit sees only its 9x9 patch (the multiplicative update keeps the zeros
  outside it at zero), so its weights are stored as 81 numbers: W1[u] for unit u.
- Each cluster has one winner and layer 2 has one winner, so a sample's updates touch
  one column of w2 and w3 and one patch of W1 per active unit. The loops over those
  non-zeros are compiled with numba (`kernels`);
  nothing of size B x L x N1 is formed, and the forward pass skips the input's zero
  pixels. The work arrays (the updates, each the size of its weights; the batch's
  winners and layer-2 input) are allocated here, in numpy; the kernels' own scratch is
  O(N1 + N2 + 784) numbers.
- Parallel over the cores where the pieces are independent (clusters, layer-2 units, the
  w2/w3 update beside the w1 update), so the result does not depend on the thread count;
  runs side by side share the cores (`threads`).
"""
from __future__ import annotations

import numpy as np

from ..core.config import Config
from ..core.geometry import SIDE, patch_indices
from ..core.model import Weights, check_weights
from . import kernels
from .base import check_kind, images, in_chunks, labels, predict_vote


class NumpyEngine:
    def __init__(self, config: Config, weights: Weights):
        self.config = config
        self.xi = config.xi
        K, C = config.n_positions, config.C_s
        self.idx = patch_indices(config.layout, config.stride)  # (K, 81)
        self.overlap = len(np.unique(self.idx)) < self.idx.size  # do patches share pixels?
        self.unit_pixels = np.repeat(self.idx, C, axis=0)  # (N1, 81): each unit's patch
        w1, w2, w3 = check_weights(config, weights)  # shapes, finite, zero outside the patches
        self.W1 = np.take_along_axis(w1.T, self.unit_pixels, axis=1)  # (N1, 81)
        self.W1t = np.ascontiguousarray(self.W1.reshape(K, C, -1).transpose(0, 2, 1))  # (K, 81, C), kept equal
        self.w2t = w2.T.copy()  # (N2, N1): a winner's column is a row
        self.w3 = w3.copy()

    @property
    def w2(self) -> np.ndarray:
        """w2 (N1, N2): a view of the stored transpose."""
        return self.w2t.T

    def weights(self) -> Weights:
        w1t = np.zeros((self.config.N1, SIDE * SIDE))
        np.put_along_axis(w1t, self.unit_pixels, self.W1, axis=1)
        return Weights(w1t.T.copy(), self.w2.copy(), self.w3.copy())

    def set_xi(self, xi: float) -> None:
        self.xi = xi

    def _layer1(self, v):
        """Each cluster's winning unit and its output, both (K, n); see `kernels.layer1`."""
        unit, val = np.empty((len(self.idx), len(v)), np.int64), np.empty((len(self.idx), len(v)))
        kernels.layer1(v, self.idx, self.W1t, self.config.wta == "full_row", unit, val)
        return unit, val

    def _layer2(self, unit, val):
        """Layer-2 input without the label (n, N2)."""
        out = np.empty((unit.shape[1], self.w2t.shape[0]))
        kernels.layer2(unit, val, self.w2t, out)
        return out

    def train_batches(self, x, y):
        x = images(x)
        y = labels(y, len(x))
        K, B, N2 = len(self.idx), self.config.B, self.w2t.shape[0]
        work = (np.empty((K, B), np.int64), np.empty((K, B)), np.empty((B, N2)),
                *(np.zeros_like(w) for w in (self.W1, self.w2t, self.w3)))
        kernels.train_batches(x, y, self.idx, self.overlap, self.config.wta == "full_row", self.W1, self.W1t,
                              self.w2t, self.w3, self.xi, self.config.prec, *work)

    def codes(self, x, kind: str = "value"):
        """The layer-1 code (see `base`): "onehot" marks every cluster's winner, also one whose
        output is 0 (a blank patch under the log's quirk)."""
        check_kind(kind)
        return in_chunks(lambda v: self._codes(v, kind), images(x), 5000)

    def _codes(self, v, kind):
        n, K, C = len(v), len(self.idx), self.config.C_s
        if kind == "dense":
            patches = v[:, self.idx].transpose(1, 0, 2)
            return np.matmul(patches, self.W1t).transpose(1, 0, 2).reshape(n, K * C)
        out = np.zeros((n, self.config.N1))
        unit, val = self._layer1(v)
        rows = np.broadcast_to(np.arange(n), unit.shape)
        if kind == "value":
            np.add.at(out, (rows.ravel(), unit.ravel()), val.ravel())
        else:
            out[rows.ravel(), unit.ravel()] = 1.0
        return out

    def scores(self, x):
        return in_chunks(lambda v: self._layer2(*self._layer1(v)), images(x), 10000)

    def predict(self, x):
        return predict_vote(self.scores(x), self.w3, self.config.vote)
