"""Small synthetic MNIST-like data for fast tests."""
import numpy as np


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
