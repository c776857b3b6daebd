"""The TensorFlow engine: the numpy engine's sparse math, written for TF2 graphs.

Same interface and semantics as `NumpyEngine` (and so the reference), `wta` quirk
included, in `config.dtype` ("float64" matches numpy to ~1e-15; "float32" is an option).

- Weights live in `tf.Variable`s: W1 as (K, C, 81), each unit's 9x9 patch weights (the
  multiplicative update keeps w1 zero outside a unit's patch), w2 (N1, N2), w3 (10, N2).
- `train_batches` converts x/y to tensors once and calls one `tf.function` that runs
  all its batches in a `tf.while_loop`, with the weights as loop variables (read once
  before the loop, assigned once after it), so there is no Python per batch.
  `config.jit_compile=True` compiles that function (and `predict`'s) with XLA.
- No item assignment: winners are index tensors from `tf.math.argmax`, whose TF 2
  contract is numpy's (ties go to the first index; ties are common: a blank patch gives
  a cluster of exact zeros; tested); the log's quirk is
  `tf.where` on those indices; one-hot labels are `tf.one_hot`; layer 1's sparse
  output and the per-unit / per-winner sums of the updates are
  `tf.math.unsorted_segment_sum`s; rows of w2/w3/W1 are `tf.gather`ed; the two quirk
  units' extra terms are `tf.tensor_scatter_nd_add`s. Patches are cut from the image
  and added back into it by reshapes/transposes (the 3x3 grid of 9x9 patches tiles
  rows/cols 0..26, the overlap layout's 2x2 grid rows/cols 4..21; checked against
  `geometry.patch_indices` at construction). Nothing of size B x L x N1 (or B x N1 x N2)
  is ever formed.
- TensorFlow is imported lazily (on the first engine); the module changes no global
  TF state (TF's default thread pools measured the same as 1 or 2 threads here).
- Runs on a GPU when TF sees one and on the CPU otherwise (TF's default placement;
  untested on a GPU). On a GPU, `unsorted_segment_sum` adds with atomics, so results
  can differ from numpy's in the last bits (run to run too).

Speed on the 2-core development CPU (B=100, MNIST; `python -m dreamflow_utils.bench`
prints the table): 2.8-4.1x the numpy engine's time per batch in graph mode, 1.4-2.4x
with XLA (`jit_compile=True`), 1.0-1.4x with XLA in float32 (TF's ops are generic;
the numpy engine's numba loops are written for this model's sparsity); eager TF is
44-56x slower than numpy (one Python dispatch per op, ~240 ops per batch). XLA compiles
for 3-10 s per engine.
float32 drifts from float64 by ~2e-7 in the weights over a full 10-epoch run and gave
the same test predictions on the log's block C_s=10 N2=100 seed 0.
"""
from __future__ import annotations


import numpy as np

from ..core.config import N_CLASSES, Config
from ..core.geometry import SIDE, patch_indices
from ..core.model import Weights, check_weights
from .base import images, labels

L = SIDE * SIDE
P = 81  # pixels per patch
_GRIDS = [(3, 0), (2, 4)]  # (n, offset): an n x n grid of 9x9 patches starting at pixel (offset, offset)

_tf_module = None


def _tf():
    """Import TensorFlow on first use (only this module imports it)."""
    global _tf_module
    if _tf_module is None:
        try:
            import tensorflow as tf
        except ImportError as e:
            raise ImportError("engine='tensorflow' needs TensorFlow, an optional dependency: "
                              "pip install -e '.[tensorflow]'") from e
        _tf_module = tf
    return _tf_module


class TensorFlowEngine:
    """`TensorFlowEngine(config, weights)`, the interface of `NumpyEngine`.
    `compiled=False` runs the same code eagerly, op by op (benchmarks, debugging)."""

    chunk_rows = 2000  # samples handed to TF per compiled call (see train_batches)

    def __init__(self, config: Config, weights: Weights, compiled: bool = True):
        tf = _tf()
        self.config = config
        K, C, B = config.n_positions, config.C_s, config.B
        self.K, self.C, self.N1, self.N2, self.B = K, C, config.N1, config.N2, B
        self.log = config.wta == "full_row"
        self.np_dtype = np.float32 if config.dtype == "float32" else np.float64
        self.dtype = tf.float32 if config.dtype == "float32" else tf.float64
        idx = patch_indices(config.layout)  # (K, 81)
        unit_pixels = np.repeat(idx, C, axis=0)  # (N1, 81)
        w1, w2, w3 = check_weights(config, weights)  # shapes, finite, zero outside the patches
        self._unit_pixels = unit_pixels
        W1 = np.take_along_axis(w1.T, unit_pixels, axis=1).reshape(K, C, P)
        self.W1 = tf.Variable(W1.astype(self.np_dtype), name="W1")
        self.w2 = tf.Variable(w2.astype(self.np_dtype), name="w2")
        self.w3 = tf.Variable(w3.astype(self.np_dtype), name="w3")
        # clusters [k0, k1) of each grid in _GRIDS: patches overlap only across groups
        self._groups = [(0, 9)] if K == 9 else [(0, 9), (9, 13)]
        self._check_geometry(idx)
        self._offsets = tf.constant((np.arange(K) * C)[:, None], tf.int32)  # (K, 1)
        self._not_first = tf.constant((np.arange(K) >= 1)[:, None])  # (K, 1)
        self._earlier = tf.constant(np.tri(K, k=-1, dtype=bool)[:, :, None])  # [k, k'] = k' < k
        self._b = tf.constant(np.tile(np.arange(B), K), tf.int32)  # sample of entry k*B + b
        self._xi = tf.Variable(config.xi, dtype=self.dtype, trainable=False, name="xi")  # set_xi
        self._prec = tf.constant(config.prec, self.dtype)
        self.compiled = compiled
        x_spec = tf.TensorSpec([None, L], self.dtype)
        if compiled:
            jit = bool(config.jit_compile)
            self._train_fn = tf.function(self._train_chunk, jit_compile=jit, autograph=False,
                                         input_signature=[x_spec, tf.TensorSpec([None], tf.int32),
                                                          tf.TensorSpec([], tf.int32)])
            self._predict_fn = tf.function(self._predict_chunk, jit_compile=jit, autograph=False,
                                           input_signature=[x_spec])
        else:
            self._train_fn, self._predict_fn = self._train_chunk, self._predict_chunk

    def _check_geometry(self, idx):
        """The reshape-based patch maps must agree with geometry.patch_indices."""
        tf = _tf()
        pix = tf.concat(self._to_patches(tf.constant(np.arange(L, dtype=np.float64)[None])), 0)
        ones = [tf.ones([k1 - k0, 1, P], tf.float64) for k0, k1 in self._groups]
        cover = self._from_patches(ones)
        if not (np.array_equal(pix.numpy()[:, 0], idx)
                and np.array_equal(cover.numpy()[0], np.bincount(idx.ravel(), minlength=L))):
            raise AssertionError("TensorFlowEngine's patch geometry disagrees with geometry.patch_indices")

    # -- interface ---------------------------------------------------------------------

    def weights(self) -> Weights:
        W1 = self.W1.numpy().astype(np.float64).reshape(self.N1, P)
        w1t = np.zeros((self.N1, L))
        np.put_along_axis(w1t, self._unit_pixels, W1, axis=1)
        return Weights(w1t.T.copy(), self.w2.numpy().astype(np.float64),
                       self.w3.numpy().astype(np.float64))

    def train_batches(self, x, y):
        """len(x) // B consecutive batches, in order (a trailing partial batch is dropped).

        The data go to TF in slices of `chunk_rows` samples (one compiled call each, all
        its batches in one while loop): converting a whole 60000-sample epoch at once
        costs seconds (TF copies it into fresh memory), slices of ~16 MB reuse memory.
        With XLA the last slice is zero-padded to the same shape, so it compiles once."""
        tf = _tf()
        x = images(x)
        y = labels(y, len(x))
        B = self.B
        per_call = max(1, self.chunk_rows // B)
        n_batches = len(x) // B
        for first in range(0, n_batches, per_call):
            nb = min(per_call, n_batches - first)
            xs = np.asarray(x[first * B:(first + nb) * B], dtype=self.np_dtype)
            ys = np.asarray(y[first * B:(first + nb) * B], dtype=np.int32)
            if self.config.jit_compile and nb < per_call:
                xs, ys = _pad_rows(xs, per_call * B), _pad_rows(ys, per_call * B)
            self._train_fn(tf.convert_to_tensor(xs), tf.convert_to_tensor(ys), tf.constant(nb, tf.int32))

    def set_xi(self, xi: float) -> None:
        self._xi.assign(xi)

    def codes(self, x, kind: str = "value"):
        """The layer-1 code, computed by the numpy engine from this engine's weights (the
        same math; equal to ~1e-16 in float64)."""
        return self._numpy().codes(x, kind)

    def scores(self, x):
        """Layer 2's input without the label, computed as `codes`."""
        return self._numpy().scores(x)

    def _numpy(self):
        from .numpy_engine import NumpyEngine
        return NumpyEngine(self.config.replace(engine="numpy", dtype="float64", jit_compile=False), self.weights())

    def predict(self, x, chunk=2000):
        tf = _tf()
        x = images(x)
        out = []
        for s in range(0, len(x), chunk):
            xs = np.asarray(x[s:s + chunk], dtype=self.np_dtype)
            n = len(xs)
            if self.config.jit_compile and n < chunk and len(x) > chunk:
                xs = _pad_rows(xs, chunk)  # one shape, one XLA compilation
            out.append(self._predict_fn(tf.convert_to_tensor(xs)).numpy()[:n].astype(np.int64))
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    # -- graph code ----------------------------------------------------------------------

    def _to_patches(self, v):
        """(n, 784) images -> one (k1 - k0, n, 81) tensor per cluster group: each
        cluster's patch of each sample, cut by reshapes and a transpose (a gather along
        axis 1 is several times slower on the CPU)."""
        tf = _tf()
        img = tf.reshape(v, [-1, SIDE, SIDE])
        out = []
        for n, o in _GRIDS[:len(self._groups)]:
            g = tf.reshape(img[:, o:o + 9 * n, o:o + 9 * n], [-1, n, 9, n, 9])  # (b, y, r, x, c)
            out.append(tf.reshape(tf.transpose(g, [3, 1, 0, 2, 4]), [n * n, -1, P]))  # k = x*n + y
        return out

    def _from_patches(self, groups):
        """Inverse of _to_patches: (n, 784) images, overlapping patches added up."""
        tf = _tf()
        img = None
        for (n, o), pp in zip(_GRIDS, groups):
            g = tf.transpose(tf.reshape(pp, [n, n, -1, 9, 9]), [2, 1, 3, 0, 4])  # (b, y, r, x, c)
            pad = [o, SIDE - o - 9 * n]
            g = tf.pad(tf.reshape(g, [-1, 9 * n, 9 * n]), [[0, 0], pad, pad])
            img = g if img is None else img + g
        return tf.reshape(img, [-1, L])

    def _layer1(self, patches, W1):
        """Winner-take-all per cluster. Returns the winning units (K, n), their outputs
        (K, n) and each cluster's own argmax unit (K, n). As the numpy engine: with
        wta="full_row" a cluster whose outputs are all <= 0 picks unit 0 (cluster 0 all < 0:
        unit C), and a unit picked twice for a sample keeps its output at its first
        occurrence only (counts once)."""
        tf = _tf()
        a = [tf.matmul(p, W1[k0:k1], transpose_b=True) for p, (k0, k1) in zip(patches, self._groups)]
        a = a[0] if len(a) == 1 else tf.concat(a, 0)  # (K, n, C)
        top = tf.reduce_max(a, axis=2)
        own = _argmax_first(a) + self._offsets
        if not self.log:
            return own, top, own
        q0 = (top <= 0) & self._not_first  # -> unit 0, output a[0, :, 0]
        qC = (top < 0) & ~self._not_first  # cluster 0 -> unit C, output a[1, :, 0]
        unit = tf.where(q0, 0, tf.where(qC, self.C, own))
        val = tf.where(q0, a[0:1, :, 0], tf.where(qC, a[1:2, :, 0], top))
        repeat = tf.reduce_any((unit[:, None, :] == unit[None, :, :]) & self._earlier, axis=1)
        return unit, tf.where(repeat, tf.zeros_like(val), val), own

    def _layer2(self, unit, val, w2):
        """Layer-2 input without the label: sum over clusters of winner output x w2 row."""
        tf = _tf()
        return tf.reduce_sum(val[:, :, None] * tf.gather(w2, unit), axis=0)  # (n, N2)

    def _err(self, target, pred):
        tf = _tf()
        return (target - pred) / tf.where(pred > self._prec, pred, tf.ones_like(pred))

    def _step(self, w, grad):
        """w + xi * dW / max(max|dW|, prec) with dW = w * grad."""
        tf = _tf()
        dw = w * grad
        return w + (self._xi / tf.maximum(tf.reduce_max(tf.abs(dw)), self._prec)) * dw

    def _train_batch(self, v, labels, W1, w2, w2T, w3, w3T):
        """One batch; w2T/w3T are w2/w3 transposed (carried along to save transposes)."""
        tf = _tf()
        K, C, N1, N2, B = self.K, self.C, self.N1, self.N2, self.B
        b = self._b  # sample of each (cluster, sample) entry k*B + b
        patches = self._to_patches(v)
        unit, val, own = self._layer1(patches, W1)
        l2_in = self._layer2(unit, val, w2) + tf.gather(w3, labels)
        s = tf.reduce_max(l2_in, axis=1)  # layer 2's winner j per sample, output s
        j = _argmax_first(l2_in)
        # w2, w3: the winner predicts l1 and the label as s * (its column of w2 / w3)
        l1f = tf.math.unsorted_segment_sum(tf.reshape(val, [-1]), b * N1 + tf.reshape(unit, [-1]), B * N1)
        l1 = tf.reshape(l1f, [B, N1])
        l1_err = self._err(l1, s[:, None] * tf.gather(w2T, j))
        cl_err = self._err(tf.one_hot(labels, N_CLASSES, dtype=self.dtype), s[:, None] * tf.gather(w3T, j))
        grad = tf.math.unsorted_segment_sum(s[:, None] * tf.concat([l1_err, cl_err], 1), j, N2)
        new_w2T = self._step(w2T, grad[:, :N1])
        new_w3T = self._step(w3T, grad[:, N1:])
        # w1: each active unit predicts its own patch. The active units of cluster k are
        # its own argmax and, with wta="full_row", unit 0 (in cluster 0) and unit C (cluster 1)
        # when another cluster's quirk switched them on: those two are added separately.
        W1f = tf.reshape(W1, [N1, P])
        r = tf.reshape(own, [-1])
        r_val = tf.gather(l1f, b * N1 + r) if self.log else tf.reshape(val, [-1])  # l1 at own argmax
        v_pred = [tf.reshape(r_val[k0 * B:k1 * B, None] * tf.gather(W1f, r[k0 * B:k1 * B]), [k1 - k0, B, P])
                  for k0, k1 in self._groups]
        if self.log:
            e0 = tf.where(own[0] != 0, l1[:, 0], tf.zeros_like(l1[:, 0]))  # (B,)
            eC = tf.where(own[1] != C, l1[:, C], tf.zeros_like(l1[:, C]))
            v_pred[0] = tf.tensor_scatter_nd_add(
                v_pred[0], [[0], [1]], tf.stack([e0[:, None] * W1f[0], eC[:, None] * W1f[C]]))
        if len(self._groups) == 1:
            v_err = [self._err(patches[0], v_pred[0])]  # (K, B, 81)
        else:  # overlapping patches add up: the error is the image's, per pixel
            v_err = self._to_patches(self._err(v, self._from_patches(v_pred)))
        # per-unit sums; a group's entries only reach its own clusters' units
        grad1 = [tf.math.unsorted_segment_sum(r_val[k0 * B:k1 * B, None] * tf.reshape(e, [-1, P]),
                                              r[k0 * B:k1 * B] - k0 * C, (k1 - k0) * C)
                 for e, (k0, k1) in zip(v_err, self._groups)]
        grad1 = grad1[0] if len(grad1) == 1 else tf.concat(grad1, 0)  # (N1, 81)
        if self.log:
            extra = tf.stack([tf.reduce_sum(e0[:, None] * v_err[0][0], 0),
                              tf.reduce_sum(eC[:, None] * v_err[0][1], 0)])
            grad1 = tf.tensor_scatter_nd_add(grad1, [[0], [C]], extra)
        new_W1 = tf.reshape(self._step(W1f, grad1), [K, C, P])
        return new_W1, tf.transpose(new_w2T), new_w2T, tf.transpose(new_w3T), new_w3T

    def _train_chunk(self, x, y, nb):
        """The first nb batches of x (len(x) a multiple of B), in order, in one while loop."""
        tf = _tf()
        xb = tf.reshape(x, [-1, self.B, L])
        yb = tf.reshape(y, [-1, self.B])

        def body(i, *w):
            return (i + 1, *self._train_batch(xb[i], yb[i], *w))

        w2, w3 = self.w2.read_value(), self.w3.read_value()
        out = tf.while_loop(lambda i, *_: i < nb, body, (tf.constant(0), self.W1.read_value(), w2,
                                                          tf.transpose(w2), w3, tf.transpose(w3)),
                            parallel_iterations=1)
        self.W1.assign(out[1])
        self.w2.assign(out[2])
        self.w3.assign(out[4])

    def _predict_chunk(self, x):
        tf = _tf()
        unit, val, _ = self._layer1(self._to_patches(x), self.W1.read_value())
        l2_in = self._layer2(unit, val, self.w2.read_value())
        s = tf.reduce_max(l2_in, axis=1)
        j = _argmax_first(l2_in)
        scores = s[:, None] * tf.gather(tf.transpose(self.w3.read_value()), j)
        return _argmax_first(scores)


def _pad_rows(a, n):
    """a with zero rows appended up to n rows."""
    return np.concatenate([a, np.zeros((n - len(a), *a.shape[1:]), a.dtype)])


def _argmax_first(a):
    """argmax over the last axis, int32. Ties go to the first index, as numpy's: TF 2's
    `tf.math.argmax` documents "in case of identity returns the smallest index" (since
    TF 2.3, on TF and XLA CPU/GPU/TPU alike); tests/test_tensorflow_engine.py checks it
    against numpy on many ties, -0.0 == 0.0 included."""
    return _tf().math.argmax(a, axis=-1, output_type=_tf().int32)
