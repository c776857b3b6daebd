"""Small data for fast tests: synthetic MNIST-like images, a learnable task, the real MNIST's folder."""
import os
from pathlib import Path

import numpy as np
import pytest


def synthetic_images(n, seed=0, blank_fraction=0.3):
    """n images (n, 784) in [0, 1]: sparse random ink, with whole 9x9 blocks blanked
    at random (the log's quirk needs clusters that see nothing) and the border empty."""
    rng = np.random.default_rng(seed)
    img = rng.uniform(0, 1, (n, 28, 28)) * (rng.uniform(size=(n, 28, 28)) < 0.25)
    img[:, :2], img[:, :, :2] = 0, 0
    for i in range(n):
        for r, c in np.argwhere(rng.uniform(size=(3, 3)) < blank_fraction):
            img[i, 9 * r:9 * r + 9, 9 * c:9 * c + 9] = 0
    return img.reshape(n, 784)


def synthetic_data(n_train=600, n_test=200, seed=0):
    rng = np.random.default_rng(seed + 1)
    return ((synthetic_images(n_train, seed), rng.integers(0, 10, n_train)),
            (synthetic_images(n_test, seed + 2), rng.integers(0, 10, n_test)))


def learnable_data(n_train=2000, n_test=500, seed=0, noise=0.1):
    """A task with a known answer: 10 classes, each a fixed random pattern of ink (a fifth of the
    pixels) at a random intensity, with a tenth of the pixels flipped to random ink or blank.
    A model that learns reaches ~100%; chance is 10%."""
    rng = np.random.default_rng(1000 + seed)
    protos = (rng.uniform(size=(10, 28, 28)) < 0.2).astype(float)
    protos[:, :2], protos[:, :, :2] = 0, 0

    def sample(n):
        y = rng.integers(0, 10, n)
        x = protos[y] * rng.uniform(0.5, 1.0, (n, 1, 1))
        x = np.where(rng.uniform(size=x.shape) < noise, rng.uniform(size=x.shape) * (x == 0), x)
        return x.reshape(n, 784), y

    return sample(n_train), sample(n_test)


REAL_MNIST = Path(os.environ.get("DREAMFLOW_MNIST") or Path(__file__).resolve().parents[2] / "shared/data/mnist")
needs_mnist = pytest.mark.skipif(not REAL_MNIST.exists(), reason=f"real MNIST not found at {REAL_MNIST}")
