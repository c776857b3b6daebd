"""The test oracle of layer1="shared": the weight-shared model's per-batch math written out
densely and literally (slow on purpose; the compiled `shared_engine` must agree with it).

The model (the "uses symmetry" answer to the log's conclusion). Layer 1 is one bank W
(81, C_s) of 9x9 detectors applied at every patch position of the layout
(`geometry.patch_origins`); with patch_norm each patch is first divided by its Euclidean
length (a blank patch, length 0, stays 0). At each position the detectors compete: the winner
keeps its output, the others output 0 (a blank patch, all outputs 0, switches nothing on: its
winner's output is 0). The code: per position the winner's output ("value") or 1 for a
non-zero winner ("onehot"); with pool > 1 max- or sum-pooled, per detector, over the positions
of each pool x pool square of the grid (`geometry.pool_cells`); with norm, divided by its
Euclidean length (at least 1e-12). Layer 2's input is the code (cells x C_s values) and, with
pixels > 0, the pixel side channel after it: pixels * p, p the image average-pooled over 2x2
blocks (196 values, row by row) divided by its Euclidean length (an all-zero image: 0).
N1 = cells x C_s (+ 196).

Learning is the DreamFlow rule everywhere: for each weight matrix,
``dW = W * sum_b post_b (x) err_b`` with ``err = (target - pred) / (pred if pred > prec else 1)``,
then ``W += xi / max(max|dW|, prec) * dW``. Layer 2 and the label layer as in the log (the
label enters as label_gain * one-hot, also as w3's target): per sample the l2_winners most
active layer-2 units (by argmax, one after the other: ties go to the lower unit) keep their
inputs, the others are 0 (l2); pred = l2 @ W.T sums over the active units, post = l2; w2
(target: layer 2's whole input, side channel included) first, then w3, both from the same
forward pass; with unit_norm every layer-2 unit active in the batch rescales its w2 column to
unit length. The bank: every active position's winner reconstructs its own (normalised) patch,
``pred = output * W[:, winner]``, post = its output; the terms of all positions and samples
are summed into one dW of the bank (the log's overlap layout instead adds the
reconstructions of overlapping patches before taking the error; here each patch is
reconstructed by its own winner, which is what makes dense strides possible; on the block
grid the two coincide).
"""
from __future__ import annotations

import numpy as np

from ..core.config import Config
from ..core.geometry import SIDE, patch_indices, pool_cells
from ..core.model import Weights, check_weights
from .base import check_kind, images, in_chunks, labels, predict_vote


class SharedReference:
    def __init__(self, config: Config, weights: Weights):
        self.config = config
        self.W, self.w2, self.w3 = check_weights(config, weights).copy()
        self.xi = config.xi
        self.idx = patch_indices(config.layout, config.stride)  # (K, 81)
        K = len(self.idx)
        self.cells = pool_cells(config.layout, config.stride, config.pool) if config.pool > 1 else np.arange(K)
        self.n_cells = self.cells.max() + 1

    def weights(self) -> Weights:
        return Weights(self.W, self.w2, self.w3).copy()

    def set_xi(self, xi: float) -> None:
        self.xi = xi

    def _layer1(self, v):
        """Patches (n, K, 81), normalised with patch_norm, and the winners' outputs (n, K, C_s): 0
        but at each position's winner."""
        patches = v[:, self.idx]
        if self.config.patch_norm:
            length = np.linalg.norm(patches, axis=2, keepdims=True)
            patches = patches / np.where(length > 0, length, 1)
        a = patches @ self.W  # (n, K, C)
        mask = np.zeros_like(a)
        np.put_along_axis(mask, a.argmax(axis=2)[..., None], 1.0, axis=2)
        return patches, a * mask

    def _code(self, out):
        """The code (n, cells x C) from the winners' outputs (n, K, C)."""
        c = self.config
        code = out if c.code == "value" else (out != 0).astype(np.float64)
        if c.pool > 1:
            pool = np.max if c.pool_mode == "max" else np.sum
            code = np.stack([pool(code[:, self.cells == cell], axis=1) for cell in range(self.n_cells)], axis=1)
        code = code.reshape(len(out), -1)
        if c.norm:
            code = code / np.maximum(np.linalg.norm(code, axis=1, keepdims=True), 1e-12)
        return code

    def _input(self, v, out):
        """Layer 2's input (n, N1): the code, then (pixels > 0) the pixel side channel of the images v."""
        code = self._code(out)
        if self.config.pixels > 0:
            p = v.reshape(len(v), SIDE // 2, 2, SIDE // 2, 2).mean(axis=(2, 4)).reshape(len(v), -1)
            length = np.linalg.norm(p, axis=1, keepdims=True)
            code = np.concatenate([code, self.config.pixels * (p / np.where(length > 0, length, 1))], axis=1)
        return code

    def _update(self, w, post, err):
        """w += xi / max(max|dW|, prec) * dW with dW = w * sum_b post_b (x) err_b."""
        dw = w * np.einsum("bi,bj->ij", err, post)
        w += (self.xi / max(np.max(np.abs(dw)), self.config.prec)) * dw

    def _err(self, target, pred):
        return (target - pred) / np.where(pred > self.config.prec, pred, 1)

    def train_batches(self, x, y):
        x = images(x)
        y = labels(y, len(x))
        c = self.config
        B, C = c.B, c.C_s
        cl_all = c.label_gain * np.eye(self.w3.shape[0])[y]  # the label input
        for i in range(len(x) // B):
            v, cl = x[i * B:(i + 1) * B], cl_all[i * B:(i + 1) * B]
            patches, out = self._layer1(v)
            l1 = self._input(v, out)
            l2_in = l1 @ self.w2 + cl @ self.w3
            active = np.zeros(l2_in.shape, bool)
            for _ in range(c.l2_winners):  # the most active units, one after the other
                active[np.arange(B), np.where(active, -np.inf, l2_in).argmax(axis=1)] = True
            l2 = np.where(active, l2_in, 0.0)
            err2 = self._err(l1, l2 @ self.w2.T)
            err3 = self._err(cl, l2 @ self.w3.T)
            self._update(self.w2, l2, err2)
            self._update(self.w3, l2, err3)
            if c.unit_norm:
                won = np.flatnonzero(active.any(axis=0))
                self.w2[:, won] /= np.maximum(np.linalg.norm(self.w2[:, won], axis=0, keepdims=True), 1e-300)
            # the bank: every position's winner reconstructs its own (normalised) patch
            pred = np.einsum("bkc,qc->bkq", out, self.W)  # (B, K, 81): output * W[:, winner]
            err1 = self._err(patches, pred)
            self._update(self.W, out.reshape(-1, C), err1.reshape(-1, err1.shape[2]))

    def codes(self, x, kind: str = "value"):
        """"value": layer 2's input (the code, then the pixel side channel with pixels > 0);
        "onehot": the same with code="onehot" and no norm (which detector won where, pooled as
        configured)."""
        check_kind(kind, ("value", "onehot"))
        if kind == "onehot":
            return SharedReference(self.config.replace(code="onehot", norm=False), self.weights()).codes(x)
        return in_chunks(lambda v: self._input(v, self._layer1(v)[1]), images(x), 200)

    def scores(self, x):
        return self.codes(x) @ self.w2

    def predict(self, x):
        return predict_vote(self.scores(x), self.w3, self.config.vote)
