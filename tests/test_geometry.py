"""The geometry's index arithmetic against np.pad and the contract's formulas."""

import numpy as np
import pytest

from cases import NUMPY_PAD_MODE
from linconv import Geometry
from linconv._pattern import pattern
from linconv._geometry import AxisGeometry


@pytest.mark.parametrize("boundary", list(NUMPY_PAD_MODE))
@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("lo,hi", [(0, 0), (1, 2), (4, 0), (7, 11), (0, 13)])
def test_extension_map_equals_np_pad(boundary, n, lo, hi):
    kwargs = {"constant_values": -1} if boundary == "zero" else {}
    expected = np.pad(np.arange(n), (lo, hi), mode=NUMPY_PAD_MODE[boundary], **kwargs)
    got = AxisGeometry(n, 1, lo=lo, hi=hi).extension_map(boundary)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("n,k,s,d,lo,hi", [(10, 3, 1, 1, 0, 0), (10, 3, 2, 1, 2, 2),
                                           (7, 4, 3, 2, 3, 0), (5, 5, 1, 1, 4, 4)])
def test_output_length_formula(n, k, s, d, lo, hi):
    ax = AxisGeometry(n, k, s, d, lo, hi)
    # count the positions where the dilated kernel fits, by brute force
    span = d * (k - 1) + 1
    fits = [i for i in range(0, n + lo + hi, s) if i + span <= n + lo + hi]
    assert ax.span == span and ax.n_out == len(fits)
    np.testing.assert_array_equal(ax.tap_positions()[:, -1], np.array(fits) + span - 1)


def test_geometry_is_frozen_and_hashable():
    g = Geometry.from_args((3, 3), (8, 8), "same", "wrap", 2, 1)
    assert g == Geometry.from_args((3, 3), (8, 8), "same", "wrap", (2, 2), (1, 1))
    assert len({g, Geometry.from_args((3, 3), (8, 8), "same", "wrap", 2, 1)}) == 1
    with pytest.raises(AttributeError):
        g.boundary = "zero"
    assert g.output_shape == (4, 4) and g.pads == ((1, 1), (1, 1))


@pytest.mark.parametrize("mode,pads", [("full", [(4, 4), (3, 3)]), ("same", [(2, 2), (2, 1)]),
                                       ("valid", [(0, 0), (0, 0)]), (3, [(3, 3), (3, 3)]),
                                       ([(1, 2), 3], [(1, 2), (3, 3)])])
def test_mode_to_padding(mode, pads):
    g = Geometry.from_args((5, 2), (9, 9), mode, dilation=(1, 3))  # spans 5 and 4
    assert [list(p) for p in g.pads] == [list(p) for p in pads]


def test_one_d_bare_pair_is_lo_hi():
    assert Geometry.from_args((3,), (9,), (1, 2)).pads == ((1, 2),)
    assert Geometry.from_args((3, 3), (9, 9), (1, 2)).pads == ((1, 1), (2, 2))


def test_pattern_coo_matches_dense_definition():
    """rows/indices/taps against a direct evaluation of A[i, j] = w[(j + lo - i*s)/d]."""
    g = Geometry.from_args((3,), (9,), (2, 1), stride=2, dilation=2)
    p = pattern(g)
    ax = g.axes[0]
    got = {(r, c): t for r, c, t in zip(p.rows(), p.indices, p.taps)}
    expected = {}
    for i in range(ax.n_out):
        for col in range(ax.n):
            q, r = divmod(col + ax.lo - i * ax.stride, ax.dilation)
            if r == 0 and 0 <= q < ax.k:
                expected[(i, col)] = q
    assert got == expected


OLD_NUMPY_PAD = tuple(int(v) for v in np.__version__.split(".")[:2]) < (2, 1)  # numpy#25926


def test_extension_index_reads_only_the_positions_asked_for():
    from linconv._geometry import AxisGeometry
    rng = np.random.default_rng(12)
    for boundary, mode in (("zero", "constant"), ("wrap", "wrap"), ("reflect", "reflect"),
                           ("symmetric", "symmetric"), ("edge", "edge")):
        for n in (1, 2, 3, 7):
            lo, hi = (int(v) for v in rng.integers(0, 3 * n + 4, 2))
            if OLD_NUMPY_PAD and mode in ("reflect", "symmetric") and max(lo, hi) >= n - 1:
                lo, hi = max(n - 2, 0), 0  # numpy < 2.1 pads several reflections wrongly
            kw = {"constant_values": -1} if mode == "constant" else {}
            if mode == "reflect" and n == 1:
                expected = np.zeros(n + lo + hi, int)
            else:
                expected = np.pad(np.arange(n), (lo, hi), mode=mode, **kw)
            ax = AxisGeometry(n, 1, lo=lo, hi=hi)
            positions = rng.integers(0, n + lo + hi, 20)
            np.testing.assert_array_equal(ax.extension_index(positions, boundary),
                                          expected[positions])


def test_extend_with_several_reflections_matches_numpy_pad():
    from linconv._factors import extend
    from linconv._geometry import Geometry
    if OLD_NUMPY_PAD:
        pytest.skip("numpy < 2.1 pads several reflections wrongly (numpy#25926)")
    x = np.arange(3.0 * 2).reshape(3, 2)
    for boundary in ("reflect", "symmetric"):
        g = Geometry.from_args((3, 3), (3, 2), ((7, 2), (1, 9)), boundary)
        np.testing.assert_array_equal(extend(g, x), np.pad(x, ((7, 2), (1, 9)), mode=boundary))


def test_tensorflow_same_pads_follow_the_documented_rule():
    from linconv._geometry import Geometry
    # TensorFlow: out = ceil(n / s); pad_total = max((out - 1) * s + span - n, 0);
    # pad_before = pad_total // 2 (the odd sample after)
    assert Geometry.tensorflow_same_pads((3,), (7,), (2,), (1,)) == ((1, 1),)
    assert Geometry.tensorflow_same_pads((4,), (8,), (3,), (1,)) == ((1, 1),)
    assert Geometry.tensorflow_same_pads((2,), (5,), (1,), (1,)) == ((0, 1),)
    assert Geometry.tensorflow_same_pads((3,), (9,), (2,), (2,)) == ((2, 2),)
    assert Geometry.tensorflow_same_pads((1,), (10,), (3,), (1,)) == ((0, 0),)
    assert Geometry.tensorflow_same_pads((5,), (6,), (4,), (1,)) == ((1, 2),)


@pytest.mark.parametrize("n, k, mode, stride, dilation", [
    (11, 3, "same", 1, 1), (11, 4, "same", 1, 2), (11, 3, "valid", 2, 1), (9, 5, "full", 3, 1),
    (7, 2, (3, 1), 2, 2)])
def test_outputs_meeting_an_input_range(n, k, mode, stride, dilation):
    """The outputs whose windows (the dilated kernel's span) meet ``[start, stop)``: those
    whose row of the oracle's dense matrix, for an all-ones kernel as long as that span
    and the same pads and stride, has an entry in those columns."""
    from cases import Case, dense_by_columns, oracle_correlate, oracle_pads
    span = dilation * (k - 1) + 1
    pads = tuple(int(p) for p in oracle_pads(Case((n,), (k,), mode, "zero", stride, dilation))[0])
    case = Case((n,), (span,), pads, "zero", stride, 1)
    A = dense_by_columns(lambda e: oracle_correlate(e, np.ones(span), case), n, (n,))
    ax = Geometry.from_args((k,), (n,), mode, "zero", stride, dilation).axes[0]
    for start in range(n):
        for stop in range(start + 1, n + 1):
            rows = np.flatnonzero(A[:, start:stop].any(axis=1))
            o0, o1 = ax.outputs_meeting(start, stop)
            assert (max(o0, 0), min(o1, ax.n_out)) == (rows[0], rows[-1] + 1)


@pytest.mark.parametrize("n, k, mode, dilation", [
    (11, 3, "same", 1), (11, 4, "same", 2), (11, 3, "valid", 1), (9, 5, "full", 1),
    (7, 2, (3, 1), 2)])
def test_block_positions(n, k, mode, dilation):
    """A block's own padded positions are those np.pad's "edge" margins copy from it (its
    samples, and the margins at the axis's ends for the first and last blocks); the
    positions read are the windows of the outputs that read its own (stride 1)."""
    ax = Geometry.from_args((k,), (n,), mode, "zero", 1, dilation).axes[0]
    source = np.pad(np.arange(n), (ax.lo, ax.hi), mode="edge")
    margins = np.pad(np.zeros(n, bool), (ax.lo, ax.hi), constant_values=True)
    np.testing.assert_array_equal(ax.is_margin(np.arange(ax.padded_length)), margins)
    for start in range(n):
        for stop in range(start + 1, n + 1):
            (j0, j1), (p0, p1) = ax.block_positions(start, stop, start == 0, stop == n)
            own = np.flatnonzero((source >= start) & (source < stop))
            assert (j0, j1) == (own[0], own[-1] + 1)
            windows = [np.arange(o, o + ax.span) for o in range(ax.n_out)]
            read = np.concatenate([w for w in windows if np.any((w >= j0) & (w < j1))])
            assert (p0, p1) == (read.min(), read.max() + 1)
