"""The test oracle of layer1="clusters": the log's per-batch math written out densely, as
literally as possible.

Slow on purpose (B x L x N1 temporaries); every other clusters engine must agree with it.
"""
from __future__ import annotations

import numpy as np

from ..core.config import Config
from ..core.model import Weights, check_weights
from .base import check_kind, images, in_chunks, labels, predict_vote


class ReferenceEngine:
    def __init__(self, config: Config, weights: Weights):
        self.config = config
        self.w1, self.w2, self.w3 = check_weights(config, weights).copy()
        self.xi = config.xi
        K, C = config.n_positions, config.C_s
        c_i = np.zeros((K, config.N1))  # c_i[k] is 1 on cluster k's units
        for k in range(K):
            c_i[k, k * C:(k + 1) * C] = 1
        self.c_i = c_i.reshape(K, 1, -1)

    def weights(self) -> Weights:
        return Weights(self.w1, self.w2, self.w3).copy()

    def set_xi(self, xi: float) -> None:
        self.xi = xi

    def _layer1(self, v):
        """Winner-take-all inside each cluster; returns l1 (n, N1) and the winners' mask."""
        v_w1 = v @ self.w1
        if self.config.wta == "full_row":
            l1_clusters = v_w1 * self.c_i  # other clusters' units read 0: argmax may land there
        else:
            l1_clusters = np.where(self.c_i == 1, v_w1, -np.inf)
        l1_wins = np.argmax(l1_clusters, axis=2).T  # (n, K)
        n, K = l1_wins.shape
        l1_mask = np.zeros_like(v_w1)
        l1_mask[np.repeat(np.arange(n), K), l1_wins.reshape(-1)] = 1
        return v_w1 * l1_mask, l1_mask

    @staticmethod
    def _winner_only(x):
        mask = np.zeros_like(x)
        mask[np.arange(len(x)), np.argmax(x, axis=1)] = 1
        return x * mask

    def _update(self, w, post, target, pred):
        """dW = sum_b W * post_b * err_b, err = (target - pred) / pred, scaled to max |dW| = xi."""
        prec, xi = self.config.prec, self.xi
        err = (target - pred) / np.where(pred > prec, pred, 1)
        B = len(post)
        dw = np.sum(w * post.reshape(B, 1, -1) * err.reshape(B, -1, 1), axis=0)
        w += (xi / max(np.max(np.abs(dw)), prec)) * dw

    def train_batches(self, x, y):
        x = images(x)
        B = self.config.B
        clsfn_in = np.eye(self.w3.shape[0])[labels(y, len(x))]  # one-hot labels
        for i in range(len(x) // B):
            v, cl = x[i * B:(i + 1) * B], clsfn_in[i * B:(i + 1) * B]
            l1 = self._layer1(v)[0]
            l2 = self._winner_only(l1 @ self.w2 + cl @ self.w3)
            self._update(self.w2, l2, l1, l2 @ self.w2.T)
            self._update(self.w3, l2, cl, l2 @ self.w3.T)
            self._update(self.w1, l1, v, l1 @ self.w1.T)

    def codes(self, x, kind: str = "value"):
        check_kind(kind)
        x = images(x)
        if kind == "dense":
            return x @ self.w1
        return in_chunks(lambda v: self._layer1(v)[0 if kind == "value" else 1], x)

    def scores(self, x):
        return in_chunks(lambda v: self._layer1(v)[0] @ self.w2, images(x), 1000)

    def predict(self, x):
        return predict_vote(self.scores(x), self.w3, self.config.vote)
