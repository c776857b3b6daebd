"""The TensorFlow engine: the numpy engine's sparse math, written for TF2 graphs.

Same interface and semantics as `NumpyEngine` (and so the reference), `wta` quirk
included, in `config.dtype` ("float64" matches numpy to ~1e-12; "float32" is an option).

- Weights live in `tf.Variable`s: W1 as (K, C, 81), each unit's 9x9 patch weights (the
  multiplicative update keeps w1 zero outside a unit's patch), w2 (N1, N2), w3 (10, N2).
- `train_batches` converts x/y to tensors once and calls one `tf.function` that runs
  all its batches in a `tf.while_loop`, with the weights as loop variables (read once
  before the loop, assigned once after it), so there is no Python per batch.
  `config.jit_compile=True` compiles that function (and `predict`'s) with XLA.
- No item assignment: winners are index tensors (an explicit first-occurrence argmax,
  as numpy's, since TF's `tf.argmax` does not promise which index wins a tie, and ties
  are common: a blank patch gives a cluster of exact zeros); the log's quirk is
  `tf.where` on those indices; one-hot labels are `tf.one_hot`; layer 1's sparse
  output, the winners' predictions of their patches and the per-unit sums of the
  updates are `tf.math.unsorted_segment_sum`s; rows of w2/w3/W1 are `tf.gather`ed.
  Nothing of size B x L x N1 (or B x N1 x N2) is ever formed.
- TensorFlow is imported lazily (on the first engine or `configure_threads` call);
  the module changes no global TF state unless `configure_threads` is called.
- Runs on a GPU when TF sees one and on the CPU otherwise (TF's default placement).
  On a GPU, `unsorted_segment_sum` adds with atomics, so results can differ from
  numpy's in the last bits (run to run too); float64 still agrees to ~1e-12.
"""
from __future__ import annotations

import time

import numpy as np

from ..config import Config
from ..layouts import SIDE, patch_indices
from ..model import N_CLASSES, Weights

L = SIDE * SIDE
P = 81  # pixels per patch
_GRIDS = [(3, 0), (2, 4)]  # (n, offset): the n x n grid of 9x9 patches starting at (offset, offset)

_tf_module = None


def _tf():
    """Import TensorFlow on first use (only this module imports it)."""
    global _tf_module
    if _tf_module is None:
        import tensorflow as tf
        _tf_module = tf
    return _tf_module


def configure_threads(intra_op: int | None = None, inter_op: int | None = None) -> bool:
    """Set TF's CPU thread pools (process-wide). TF only accepts this before its runtime
    starts (before the first op or engine); returns False, changing nothing, when it is
    too late. Not called by the engine: on a 2-core machine TF's defaults (one pool per
    core) measured as fast as any setting (see `time_tensorflow`'s notes in the README
    of the benchmark), so it is offered for shared machines where fewer threads help."""
    tf = _tf()
    try:
        if intra_op is not None:
            tf.config.threading.set_intra_op_parallelism_threads(int(intra_op))
        if inter_op is not None:
            tf.config.threading.set_inter_op_parallelism_threads(int(inter_op))
    except RuntimeError:
        return False
    return True


class TensorFlowEngine:
    """`TensorFlowEngine(config, weights)`; `compiled=False` runs the same code eagerly
    (op by op, for benchmarks and debugging)."""

    def __init__(self, config: Config, weights: Weights, compiled: bool = True):
        tf = _tf()
        self.config = config
        K, C = config.n_clusters, config.C_s
        self.K, self.C, self.N1, self.N2 = K, C, config.N1, config.N2
        self.np_dtype = np.float32 if config.dtype == "float32" else np.float64
        self.dtype = tf.float32 if config.dtype == "float32" else tf.float64
        idx = patch_indices(config.layout)  # (K, 81)
        unit_pixels = np.repeat(idx, C, axis=0)  # (N1, 81)
        w1 = np.asarray(weights.w1, dtype=np.float64)
        if w1.shape != (L, self.N1):
            raise ValueError(f"w1 has shape {w1.shape}, expected {(L, self.N1)}")
        outside = w1.T.copy()
        np.put_along_axis(outside, unit_pixels, 0, axis=1)
        if np.any(outside):
            raise ValueError("w1 has non-zero weights outside each unit's patch; "
                             "the tensorflow engine needs the log's patch structure")
        W1 = np.take_along_axis(w1.T, unit_pixels, axis=1).reshape(K, C, P)
        w2, w3 = np.asarray(weights.w2, np.float64), np.asarray(weights.w3, np.float64)
        if w2.shape != (self.N1, self.N2) or w3.shape != (N_CLASSES, self.N2):
            raise ValueError(f"w2/w3 have shapes {w2.shape}/{w3.shape}, expected "
                             f"{(self.N1, self.N2)}/{(N_CLASSES, self.N2)}")
        self._unit_pixels = unit_pixels
        self.W1 = tf.Variable(W1.astype(self.np_dtype), name="W1")
        self.w2 = tf.Variable(w2.astype(self.np_dtype), name="w2")
        self.w3 = tf.Variable(w3.astype(self.np_dtype), name="w3")
        # constants
        self._groups = [(0, 9)] if K == 9 else [(0, 9), (9, 13)]  # clusters per _GRIDS entry
        self._check_geometry(idx)
        self._offsets = tf.constant((np.arange(K) * C)[:, None], tf.int32)  # (K, 1)
        self._not_first = tf.constant((np.arange(K) >= 1)[:, None])  # (K, 1)
        self._earlier = tf.constant(np.tri(K, k=-1, dtype=bool)[:, :, None])  # [k, k'] = k' < k
        B = config.B
        self._b = tf.constant(np.tile(np.arange(B), K), tf.int32)  # sample of each (k, b) entry
        self._xi = tf.constant(config.xi, self.dtype)
        self._prec = tf.constant(config.prec, self.dtype)
        self.compiled = compiled
        x_spec = tf.TensorSpec([None, L], self.dtype)
        y_spec = tf.TensorSpec([None], tf.int32)
        if compiled:
            jit = bool(config.jit_compile)
            self._train_fn = tf.function(self._train_chunk, input_signature=[x_spec, y_spec],
                                         jit_compile=jit)
            self._predict_fn = tf.function(self._predict_chunk, input_signature=[x_spec],
                                           jit_compile=jit)
        else:
            self._train_fn, self._predict_fn = self._train_chunk, self._predict_chunk

    def _check_geometry(self, idx):
        """The reshape-based patch maps must agree with layouts.patch_indices."""
        tf = _tf()
        pix = self._to_patches(tf.constant(np.arange(L, dtype=np.float64)[None]))
        cover = self._from_patches(tf.ones([self.K, 1, P], tf.float64))
        if not (np.array_equal(pix.numpy()[:, 0], idx)
                and np.array_equal(cover.numpy()[0], np.bincount(idx.ravel(), minlength=L))):
            raise AssertionError("TensorFlowEngine's patch geometry disagrees with layouts.patch_indices")

    # -- interface ---------------------------------------------------------------------

    def weights(self) -> Weights:
        W1 = self.W1.numpy().astype(np.float64).reshape(self.N1, P)
        w1t = np.zeros((self.N1, L))
        np.put_along_axis(w1t, self._unit_pixels, W1, axis=1)
        return Weights(w1t.T.copy(), self.w2.numpy().astype(np.float64),
                       self.w3.numpy().astype(np.float64))

    def train_batches(self, x, y):
        tf = _tf()
        n = (len(x) // self.config.B) * self.config.B
        if n == 0:
            return
        xt = tf.convert_to_tensor(np.asarray(x[:n], dtype=self.np_dtype))
        yt = tf.convert_to_tensor(np.asarray(y[:n], dtype=np.int32))
        self._train_fn(xt, yt)

    def predict(self, x, chunk=2000):
        tf = _tf()
        out = []
        for s in range(0, len(x), chunk):
            xt = tf.convert_to_tensor(np.asarray(x[s:s + chunk], dtype=self.np_dtype))
            out.append(self._predict_fn(xt).numpy().astype(np.int64))
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    # -- graph code ----------------------------------------------------------------------

    def _to_patches(self, v):
        """(n, 784) images -> (K, n, 81): each cluster's patch of each sample. By
        reshapes and transposes (the 3x3 grid tiles rows/cols 0..26, the overlap's 2x2
        grid rows/cols 4..21); a gather along axis 1 is ~6x slower on the CPU."""
        tf = _tf()
        img = tf.reshape(v, [-1, SIDE, SIDE])
        out = []
        for n, o in _GRIDS[:len(self._groups)]:
            g = tf.reshape(img[:, o:o + 9 * n, o:o + 9 * n], [-1, n, 9, n, 9])  # (b, y, r, x, c)
            out.append(tf.reshape(tf.transpose(g, [3, 1, 0, 2, 4]), [n * n, -1, P]))  # k = x*n + y
        return out[0] if len(out) == 1 else tf.concat(out, 0)

    def _from_patches(self, pp):
        """(K, n, 81) -> (n, 784): the patches added into the image (inverse of _to_patches
        where patches overlap: overlapping pixels get the sum)."""
        tf = _tf()
        img = 0
        for (n, o), (k0, k1) in zip(_GRIDS, self._groups):
            g = tf.transpose(tf.reshape(pp[k0:k1], [n, n, -1, 9, 9]), [2, 1, 3, 0, 4])  # (b, y, r, x, c)
            g = tf.reshape(g, [-1, 9 * n, 9 * n])
            img = img + tf.pad(g, [[0, 0], [o, SIDE - o - 9 * n], [o, SIDE - o - 9 * n]])
        return tf.reshape(img, [-1, L])

    def _layer1(self, patches, W1):
        """Winner-take-all per cluster. Returns the winning units (K, n), their outputs
        (K, n) and each cluster's own argmax unit (K, n). As the numpy engine: with
        wta="log" a cluster whose outputs are all <= 0 picks unit 0 (cluster 0 all < 0:
        unit C), and a unit picked twice for a sample keeps its output at its first
        occurrence only (counts once)."""
        tf = _tf()
        a = tf.matmul(patches, W1, transpose_b=True)  # (K, n, C)
        top = tf.reduce_max(a, axis=2)
        own = _argmax_first(a, top) + self._offsets
        if self.config.wta == "cluster":
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

    def _train_batch(self, v, labels, W1, w2, w3):
        tf = _tf()
        K, C, N1, N2, B = self.K, self.C, self.N1, self.N2, self.config.B
        log = self.config.wta == "log"
        b = self._b  # sample of each (cluster, sample) entry k*B + b
        patches = self._to_patches(v)  # (K, B, 81)
        unit, val, own = self._layer1(patches, W1)
        l2_in = self._layer2(unit, val, w2) + tf.gather(w3, labels)
        s = tf.reduce_max(l2_in, axis=1)  # layer 2's winner j per sample, output s
        j = _argmax_first(l2_in, s)
        # w2, w3: the winner predicts l1 and the label as s * (its column of w2 / w3)
        l1f = tf.math.unsorted_segment_sum(tf.reshape(val, [-1]), b * N1 + tf.reshape(unit, [-1]), B * N1)
        l1 = tf.reshape(l1f, [B, N1])
        l1_err = self._err(l1, s[:, None] * tf.gather(tf.transpose(w2), j))
        cl = tf.one_hot(labels, N_CLASSES, dtype=self.dtype)
        cl_err = self._err(cl, s[:, None] * tf.gather(tf.transpose(w3), j))
        grad = tf.math.unsorted_segment_sum(s[:, None] * tf.concat([l1_err, cl_err], 1), j, N2)
        new_w2 = self._step(w2, tf.transpose(grad[:, :N1]))
        new_w3 = self._step(w3, tf.transpose(grad[:, N1:]))
        # w1: each active unit predicts its own patch. The active units of cluster k are
        # its own argmax and, with wta="log", unit 0 (in cluster 0) / unit C (cluster 1)
        # when another cluster's quirk switched them on: those two are added densely.
        W1f = tf.reshape(W1, [N1, P])
        r = tf.reshape(own, [-1])
        r_val = tf.gather(l1f, b * N1 + r) if log else tf.reshape(val, [-1])  # l1 at own argmax
        v_pred = tf.reshape(r_val[:, None] * tf.gather(W1f, r), [K, B, P])
        if log:
            e0 = tf.where(own[0] != 0, l1[:, 0], tf.zeros_like(l1[:, 0]))  # (B,)
            eC = tf.where(own[1] != C, l1[:, C], tf.zeros_like(l1[:, C]))
            v_pred = tf.concat([v_pred[0:1] + e0[None, :, None] * W1f[0],
                                v_pred[1:2] + eC[None, :, None] * W1f[C], v_pred[2:]], 0)
        if len(self._groups) > 1:  # overlapping patches add up in the image
            v_pred = self._to_patches(self._from_patches(v_pred))
        v_err = self._err(patches, v_pred)  # (K, B, 81)
        grad1 = tf.math.unsorted_segment_sum(r_val[:, None] * tf.reshape(v_err, [K * B, P]), r, N1)
        if log:
            extra = tf.stack([tf.reduce_sum(e0[:, None] * v_err[0], 0),
                              tf.reduce_sum(eC[:, None] * v_err[1], 0)])
            grad1 = tf.tensor_scatter_nd_add(grad1, [[0], [C]], extra)
        new_W1 = tf.reshape(self._step(W1f, grad1), [K, C, P])
        return new_W1, new_w2, new_w3

    def _train_chunk(self, x, y):
        """All len(x) // B batches, in order, in one while loop."""
        tf = _tf()
        B = self.config.B
        nb = tf.shape(x)[0] // B
        xb = tf.reshape(x, [nb, B, L])
        yb = tf.reshape(y, [nb, B])

        def body(i, W1, w2, w3):
            return (i + 1, *self._train_batch(xb[i], yb[i], W1, w2, w3))

        _, W1, w2, w3 = tf.while_loop(lambda i, *_: i < nb, body,
                                      (tf.constant(0), self.W1.read_value(), self.w2.read_value(),
                                       self.w3.read_value()), parallel_iterations=1)
        self.W1.assign(W1)
        self.w2.assign(w2)
        self.w3.assign(w3)

    def _predict_chunk(self, x):
        tf = _tf()
        unit, val, _ = self._layer1(self._to_patches(x), self.W1.read_value())
        l2_in = self._layer2(unit, val, self.w2.read_value())
        s = tf.reduce_max(l2_in, axis=1)
        j = _argmax_first(l2_in, s)
        scores = s[:, None] * tf.gather(tf.transpose(self.w3.read_value()), j)
        return _argmax_first(scores, tf.reduce_max(scores, axis=1))


def _argmax_first(a, top):
    """argmax over the last axis, first occurrence on ties (numpy's rule); `top` is
    reduce_max(a, -1). A NaN counts as a maximum, as numpy's argmax does."""
    tf = _tf()
    n = a.shape[-1]
    hit = (a == top[..., None]) | tf.math.is_nan(a)
    idx = tf.reduce_min(tf.where(hit, tf.range(n, dtype=tf.int32), n), axis=-1)
    return tf.minimum(idx, n - 1)


# -- benchmarking ------------------------------------------------------------------------

def time_tensorflow(config: Config, x, y, n_batches: int = 50, repeats: int = 3,
                    compiled: bool = True, weights: Weights | None = None) -> float:
    """ms per training batch of a TensorFlowEngine for `config` (its dtype and
    jit_compile; `compiled=False` times eager TF), on the first n_batches * B samples of
    (x, y): one warm-up call (tracing / XLA compilation excluded), then the minimum over
    `repeats` timed calls of n_batches batches each."""
    from ..model import init_weights
    cfg = config if config.engine == "tensorflow" else config.replace(engine="tensorflow")
    engine = TensorFlowEngine(cfg, weights if weights is not None else init_weights(cfg), compiled=compiled)
    n = n_batches * cfg.B
    if len(x) < n:
        raise ValueError(f"need {n} samples for {n_batches} batches of {cfg.B}, got {len(x)}")
    x, y = x[:n], y[:n]
    engine.train_batches(x, y)  # warm-up: trace and compile for this shape
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        engine.train_batches(x, y)
        _sync(engine)
        best = min(best, time.perf_counter() - t)
    return 1000 * best / n_batches


def _sync(engine):
    engine.w2[0, 0].numpy()  # waits for queued (GPU) work


def benchmark_rows(configs, x, y, n_batches: int = 50, repeats: int = 3, eager: bool = False):
    """One dict per config and TF variant: {"layout", "C_s", "N2", "variant", "dtype",
    "ms_per_batch"}; variants "graph", "xla" (and "eager" if asked), each in float64 and
    float32. For the lead's bench table."""
    rows = []
    for cfg in configs:
        variants = [("eager", False, False)] if eager else []
        variants += [("graph", True, False), ("xla", True, True)]
        for dtype in ("float64", "float32"):
            for name, compiled, jit in variants:
                c = cfg.replace(engine="tensorflow", dtype=dtype, jit_compile=jit)
                ms = time_tensorflow(c, x, y, n_batches=min(n_batches, 10) if name == "eager" else n_batches,
                                     repeats=repeats, compiled=compiled)
                rows.append({"layout": cfg.layout, "C_s": cfg.C_s, "N2": cfg.N2, "variant": name,
                             "dtype": dtype, "ms_per_batch": ms})
    return rows
