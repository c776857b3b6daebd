"""The fast engine of layer1="shared": `shared_reference`'s math on the model's few non-zeros.

- Layer 1 is the bank W (81, C_s) applied at every position (each patch normalised on the
  fly with patch_norm); each position has one winner, so a sample's code has at most one
  non-zero per position (per detector and cell when pooled), followed by the pixel side
  channel's non-zeros (pixels > 0), and layer 2's input is the sum of a few rows of w2
  (N1, N2), vectorised along N2. The forward pass skips the input's zero pixels and blank
  patches.
- Layer 2 has l2_winners active units per sample (the most active, found by argmax one after
  the other), so w2's update touches the batch's active columns only. Each sample's relative
  errors (its prediction summed over its active units) are computed once in the forward pass;
  the columns are updated on a transposed copy w2t (N2, N1), where a column is a contiguous
  row, and copied back into w2 row by row: both are kept equal (2 x N1 x N2 floats).
- The loops are compiled with numba (`shared_kernels`): the forward pass in parallel over
  groups of samples (one per thread), the updates over disjoint outputs (winning columns,
  detectors) when a batch's update is large enough to pay for it. Every number is computed
  by one thread in a fixed order, so the result does not depend on the thread count
  (`threads` chooses it).
- Work arrays are allocated per `train_batches` call: the largest are (B, N1) twice,
  (min(B * l2_winners, N2), N1), (B, N2) and (B, C_s, 81).
"""
from __future__ import annotations

import numba
import numpy as np

from ..core.config import Config
from ..core.geometry import patch_indices, pool_cells
from ..core.model import Weights, check_weights
from . import shared_kernels as sk
from .base import check_kind, images, labels, predict_vote


class SharedEngine:
    def __init__(self, config: Config, weights: Weights):
        self.config = config
        self.xi = config.xi
        W, w2, w3 = check_weights(config, weights)
        self.W = np.ascontiguousarray(W, dtype=np.float64).copy()  # (81, C_s)
        self.Wt = self.W.T.copy()  # (C_s, 81), kept equal
        self.w2 = np.ascontiguousarray(w2, dtype=np.float64).copy()  # (N1, N2), for the forward pass
        self.w2t = self.w2.T.copy()  # (N2, N1), for the update of the winners' columns; kept equal
        self.w3 = np.ascontiguousarray(w3, dtype=np.float64).copy()  # (10, N2)
        self.idx = np.ascontiguousarray(patch_indices(config.layout, config.stride), dtype=np.int64)  # (K, 81)
        K = len(self.idx)
        cells = pool_cells(config.layout, config.stride, config.pool) if config.pool > 1 else np.arange(K)
        self.cell_pos = np.argsort(cells, kind="stable").astype(np.int64)  # positions, cell by cell, ascending
        self.cell_ptr = np.concatenate([[0], np.cumsum(np.bincount(cells))]).astype(np.int64)
        self.M = int(sk.max_nonzeros(self.cell_ptr, config.C_s, float(config.pixels)))  # most non-zeros of an input
        self.parallel_update = sk.PARALLEL_UPDATE  # winners x N1 per batch from which updates run in parallel

    def weights(self) -> Weights:
        return Weights(self.W.copy(), self.w2.copy(), self.w3.copy())

    def set_xi(self, xi: float) -> None:
        self.xi = xi

    def _flags(self, kind="value"):
        """(patch_norm, pool_max, onehot, norm, pixels) of the layer-2 input `kind` ("value": the
        config's; "onehot": the winners as 1, not normalised)."""
        c = self.config
        onehot, norm = (True, False) if kind == "onehot" else (c.code == "onehot", c.norm)
        return c.patch_norm, c.pool_mode == "max", onehot, norm, float(c.pixels)

    def train_batches(self, x, y):
        x = images(x)
        y = labels(y, len(x))
        c = self.config
        B, C, k, (N1, N2) = c.B, c.C_s, c.l2_winners, self.w2.shape
        K, P, M, L = len(self.idx), self.idx.shape[1], self.M, self.w3.shape[0]
        U = min(B * k, N2)  # most active layer-2 units in a batch
        if len(x) < B:
            return
        work = (np.empty((B, K), np.int64), np.empty((B, K)),  # win, val
                np.empty((B, M), np.int64), np.empty((B, M)), np.empty(B, np.int64),  # code_i, code_v, nnz
                np.zeros((B, N1)), np.empty((B, N2)),  # l1, l2_in
                np.empty(B * k, np.int64), np.empty(B * k), np.empty((B, N1)), np.empty((B, L)),  # jw, sw, E2, R3
                np.full(N2, -1, np.int64), np.empty(U, np.int64), np.empty(U, np.int64),  # slot_of, won, fill
                np.empty(U + 1, np.int64), np.empty(B * k, np.int64),  # grp_ptr, grp_b
                np.empty((B, C, P)), np.zeros((B, C), np.bool_),  # P, touched
                np.empty((U, N1)), np.empty(U),  # G, gmax
                np.empty((C, P)), np.empty(C), np.empty((L, U)))  # E1, bmax, E3
        sk.train_batches(numba.get_num_threads(), self.parallel_update, x, y, self.idx, self.cell_ptr,
                         self.cell_pos, *self._flags(), float(c.label_gain), c.unit_norm, k, self.W, self.Wt,
                         self.w2, self.w2t, self.w3, float(self.xi), float(c.prec), *work)

    def _sparse_codes(self, x, kind):
        code_i, code_v = np.empty((len(x), self.M), np.int64), np.empty((len(x), self.M))
        nnz = np.empty(len(x), np.int64)
        sk.codes(x, self.idx, self.W, self.cell_ptr, self.cell_pos, *self._flags(kind), code_i, code_v, nnz)
        return code_i, code_v, nnz

    def codes(self, x, kind: str = "value"):
        """"value": layer 2's input (n, N1), side channel included; "onehot": the same with
        code="onehot" and no norm (which detector won where, pooled as configured), as
        `SharedReference.codes`."""
        check_kind(kind, ("value", "onehot"))
        x = images(x)
        code_i, code_v, nnz = self._sparse_codes(x, kind)
        out = np.zeros((len(x), self.w2.shape[0]))
        keep = np.arange(self.M)[None, :] < nnz[:, None]
        rows = np.broadcast_to(np.arange(len(x))[:, None], keep.shape)
        out[rows[keep], code_i[keep]] = code_v[keep]
        return out

    def scores(self, x):
        x = images(x)
        out = np.empty((len(x), self.w2.shape[1]))
        sk.scores(x, self.idx, self.W, self.cell_ptr, self.cell_pos, *self._flags(), self.w2, out)
        return out

    def predict(self, x, chunk: int = 2000):
        x = images(x)
        if len(x) == 0:
            return predict_vote(self.scores(x), self.w3, self.config.vote)
        return np.concatenate([predict_vote(self.scores(x[s:s + chunk]), self.w3, self.config.vote)
                               for s in range(0, len(x), chunk)])
