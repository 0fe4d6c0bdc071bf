"""The out-of-core iterates' files: reads of any region equal numpy's slices, writes are of
whole blocks, and a file is written again only once no array reads it (a reused file
that an array still read would change that array's values silently)."""

import os
import pickle

import numpy as np
import pytest

from linconv._blockfile import BlockFile, FilePool


def _filled(tmp_path, x, chunks):
    f = BlockFile(str(tmp_path / "x.bin"), x.shape, chunks, x.dtype).create()
    for index in np.ndindex(*f.grid):
        region = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, chunks, x.shape))
        f[region] = x[region]
    return f


@pytest.mark.parametrize("shape, chunks", [((23,), (5,)), ((17, 13), (4, 6)), ((5, 9, 7), (2, 4, 7)),
                                           ((2, 10, 8), (2, 3, 3))])
def test_reads_equal_numpys_slices(tmp_path, shape, chunks):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    f = _filled(tmp_path, x, chunks)
    np.testing.assert_array_equal(f[...], x)
    for _ in range(40):
        a = [int(rng.integers(0, n)) for n in shape]
        b = [int(rng.integers(lo, n + 1)) for lo, n in zip(a, shape)]
        region = tuple(slice(lo, hi) for lo, hi in zip(a, b))
        np.testing.assert_array_equal(f[region], x[region])
    assert f[(0,) + (slice(None),) * (len(shape) - 1)].shape == x[0].shape
    np.testing.assert_array_equal(f[(-1,) + (slice(None),) * (len(shape) - 1)], x[-1])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(f))[...], x)  # tasks elsewhere


def test_complex_and_rewrites_in_place(tmp_path):
    x = (np.arange(30) + 1j * np.arange(30)).reshape(6, 5)
    f = _filled(tmp_path, x, (4, 5))
    f[4:6, 0:5] = -x[4:6]
    expected = x.copy()
    expected[4:6] = -x[4:6]
    np.testing.assert_array_equal(f[...], expected)
    assert os.path.getsize(f.path) == 2 * 4 * 5 * 16  # two slots of a whole block


def test_writes_take_whole_blocks(tmp_path):
    f = BlockFile(str(tmp_path / "x.bin"), (10, 10), (4, 4), np.float64).create()
    for region in [(slice(0, 3), slice(0, 4)), (slice(1, 5), slice(0, 4)), (slice(8, 9), slice(0, 4))]:
        with pytest.raises(ValueError, match="whole blocks"):
            f[region] = np.zeros((region[0].stop - region[0].start, 4))
    with pytest.raises(IndexError, match="step 1"):
        f[::2, :]
    with pytest.raises(IndexError, match="out of bounds"):
        f[10, :]


def test_pool_reuses_only_released_files(tmp_path):
    pool = FilePool(str(tmp_path))
    a = pool.take((6, 4), (3, 4), np.float32)
    b = pool.take((6, 4), (3, 4), np.float32)
    assert a.path != b.path
    pool.release(a.path, ((6, 4), (3, 4), np.dtype(np.float32).str))
    assert pool.take((6, 4), (3, 2), np.float32).path not in (a.path, b.path)  # other layout
    assert pool.take((6, 4), (3, 4), np.float32).path == a.path
    pool.release(a.path, ((6, 4), (3, 4), np.dtype(np.float32).str))
    pool.close()
    assert not os.path.exists(a.path) and os.path.exists(b.path)
    pool.release(b.path, ((6, 4), (3, 4), np.dtype(np.float32).str))  # after the close
    assert not os.path.exists(b.path)
