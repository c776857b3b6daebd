import numpy as np
import pytest

from dreamflow_utils.core.geometry import (grid_side, n_cells, patch_indices, patch_origins, pool_cells, shift_images,
                                      translate)
from helpers import synthetic_data

DATA = synthetic_data()


@pytest.mark.parametrize("layout,stride,n", [("block", None, 9), ("overlap", None, 13), ("stride", 9, 9),
                                             ("stride", 4, 25), ("stride", 3, 49), ("stride", 2, 100),
                                             ("stride", 1, 400), ("stride", 19, 4)])
def test_origins(layout, stride, n):
    o = patch_origins(layout, stride)
    assert len(o) == n == len(set(o)) and all(0 <= r <= 19 and 0 <= c <= 19 for r, c in o)
    idx = patch_indices(layout, stride)
    assert idx.shape == (n, 81) and idx.min() >= 0 and idx.max() < 784


def test_the_logs_unit_order():
    """The log's loops run `for x: for y:`: positions go down the columns of the 3x3 grid first."""
    assert patch_origins("block")[:4] == [(0, 0), (9, 0), (18, 0), (0, 9)]
    assert patch_origins("overlap")[9:] == [(4, 4), (13, 4), (4, 13), (13, 13)]
    assert sorted(patch_origins("block")) == sorted(patch_origins("stride", 9))
    idx = patch_indices("block")
    assert list(idx[1][:3]) == [9 * 28, 9 * 28 + 1, 9 * 28 + 2]


@pytest.mark.parametrize("bad", [None, 0, 20, 2.5, True])
def test_bad_stride(bad):
    with pytest.raises(ValueError, match="stride"):
        patch_origins("stride", bad)


def test_pool_cells():
    cells = pool_cells("stride", 2, 2)  # 10x10 positions -> 5x5 cells
    assert n_cells("stride", 2, 2) == 25 and np.bincount(cells).tolist() == [4] * 25
    assert pool_cells("stride", 3, 2).max() == 15 and n_cells("stride", 3, 2) == 16  # 7x7 -> 4x4, ragged edge
    block = pool_cells("block", None, 2)  # column-major positions, cells row by row
    assert block.tolist() == [0, 0, 2, 0, 0, 2, 1, 1, 3] and grid_side("block") == 3
    with pytest.raises(ValueError, match="square"):
        pool_cells("overlap", None, 2)


def test_shift_images_and_translate():
    x = DATA[0][0][:50]
    rng = np.random.default_rng(0)
    assert np.array_equal(shift_images(x, 0, rng), x)
    s = shift_images(x, 2, rng)
    assert s.shape == x.shape and np.all(s.sum(axis=1) <= x.sum(axis=1) + 1e-9) and not np.array_equal(s, x)
    moved = translate(x, -2, -2)  # helpers' images have empty top and left 2-pixel borders
    assert np.allclose(moved.sum(axis=1), x.sum(axis=1)) and np.array_equal(translate(moved, 2, 2), x)
    img = np.zeros((1, 784))
    img[0, 10 * 28 + 10] = 1
    assert translate(img, 2, -3)[0, 12 * 28 + 7] == 1
