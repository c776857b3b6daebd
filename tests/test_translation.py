import numpy as np

from dreamflow_utils import Config, train
from dreamflow_utils.core.geometry import translate
from dreamflow_utils.studies.translation import code_shift_similarity, shifted_accuracy, translation_match, unit_patches
from helpers import synthetic_data

DATA = synthetic_data()


def test_unit_patches_round_trip():
    config = Config(layout="overlap", C_s=3, N2=5, B=20, T_s=200, Nep=1)
    w = train(config, DATA).weights
    p = unit_patches(w.w1, "overlap", 3)
    assert p.shape == (39, 9, 9)
    assert np.allclose(p[0], w.w1[:, 0].reshape(28, 28)[:9, :9])


def test_translation_match_identical_and_shifted_copies():
    rng = np.random.default_rng(0)
    bank = rng.uniform(0, 1, (4, 9, 9))
    copies = np.concatenate([bank] * 3)  # 3 clusters, the same 4 detectors
    r = translation_match(copies, 4, max_shift=1)
    assert np.isclose(r["score"], 1) and np.isclose(r["score_no_shift"], 1)
    big = rng.uniform(0, 1, (4, 13, 13))
    shifted = np.concatenate([big[:, :9, :9], big[:, 2:11, 1:10]])  # cluster 1 = cluster 0 moved by (2, 1)
    r = translation_match(shifted, 4, max_shift=2)
    assert np.isclose(r["score"], 1) and r["score_no_shift"] < 0.5 and r["best_shift_fraction"] == 1
    noise = translation_match(rng.uniform(0, 1, (40, 9, 9)), 4, max_shift=2)
    assert noise["score"] < 0.6 and noise["per_unit"].shape == (40,)


def test_code_shift_similarity_and_shifted_accuracy():
    x = DATA[1][0][:20]
    assert np.isclose(code_shift_similarity(lambda a: np.ones((len(a), 3)), x, 1), 1)  # a constant code
    pixels = code_shift_similarity(lambda a: a, x, 1)
    assert 0 < pixels < 0.5

    def halves(a):  # ink in the left and right halves: coarse pooling, nearly invariant to a 1-pixel shift
        img = a.reshape(len(a), 28, 28)
        return np.stack([img[:, :, :14].sum(axis=(1, 2)), img[:, :, 14:].sum(axis=(1, 2))], axis=1)

    assert pixels < code_shift_similarity(halves, x, 1) < 1
    # a 1-nearest-neighbour classifier of the unshifted images: perfect in place, lost when they move
    nearest = lambda a: np.argmin(((a[:, None, :] - x[None, :, :]) ** 2).sum(axis=2), axis=1)
    y = np.arange(20)
    assert shifted_accuracy(nearest, x, y, 0, 0) == 1.0
    assert shifted_accuracy(nearest, x, y, 3, -2) < 0.5
    assert np.array_equal(translate(translate(x, 0, 0), 0, 0), x)
