"""Plans of the direct, FFT and sparse engines, and the factors S, C, P, checked without
running an engine: against brute-force counts over index ranges, numpy.pad and the
definitions of circular and overlap-save correlation.

The engines that execute these plans are checked against scipy and dense oracles in
test_engines.py and test_sweep.py; here each number of a plan is checked for what it
claims, so an off-by-one in a plan fails here by name.
"""

import itertools

import numpy as np
import pytest

import linconv
from cases import (CASES, Case, case_params, dense_by_columns, oracle_correlate, oracle_pads,
                   random_cases)
from linconv import _factors, _pattern
from linconv._geometry import Channels
from linconv._geometry import Geometry
from linconv._plans import (NDIMAGE_MODE, DirectPlan, FFTPlan, SparsePlan, direct_plan,
                            fft_plan, ndimage_pass)

BOUNDARIES = ("zero", "wrap", "reflect", "symmetric", "edge")


@pytest.mark.parametrize("rows,span,lead,mode,count", [
    (100, 3, 1, "mirror", 2), (100, 5, 0, "constant", 3), (100, 5, 4, "grid-wrap", 2),
    (64, 7, 3, "grid-wrap", 4), (37, 4, 2, "nearest", 3), (20, 9, 8, "grid-wrap", 1)])
def test_bands_redo_exactly_the_rows_that_read_across_a_seam(rows, span, lead, mode, count):
    """Brute force: output row r reads rows r - lead .. r + span - 1 - lead; those reads
    leave r's band (or, periodic, the array) exactly for the rows the plan redoes, and
    each redone row's source is that read range modulo the rows."""
    step = ndimage_pass((rows, 8), (lead, 1), (span, 3), (rows, 8), mode)
    bands = step.bands(count)
    assert bands.edges[0] == 0 and bands.edges[-1] == rows and len(bands.edges) == count + 1
    redone = {}
    for f0, f1, source in bands.redo:
        for r in range(f0, f1):
            redone[r] = source[r - f0 + bands.lead - lead:][:span]
    for r in range(rows):
        band = np.searchsorted(bands.edges, r, side="right") - 1
        reads = np.arange(r - lead, r + span - lead)
        lo, hi = bands.edges[band], bands.edges[band + 1]
        seam = (reads < lo) & (reads >= 0) | (reads >= hi) & (reads < rows)
        edge = (reads < 0) | (reads >= rows)
        crosses = seam.any() or (mode == "grid-wrap" and edge.any())
        assert (r in redone) == bool(crosses), r
        if r in redone:
            np.testing.assert_array_equal(redone[r], reads % rows)


def test_band_count_needs_work_and_rows():
    step = ndimage_pass((1000, 1000), (1, 1), (3, 3), (1000, 1000), "mirror")
    assert step.band_count(2, 1, 1 << 16) == 2
    assert step.band_count(8, 1, 1 << 16) == 8
    assert step.band_count(2, 1, 10**7) == 1     # too little work
    small = ndimage_pass((5, 10**6), (1, 1), (3, 3), (5, 10**6), "mirror")
    assert small.band_count(4, 1, 1 << 16) == 1  # fewer than two spans of rows per band


@pytest.mark.parametrize("n,lead,span,n_out,zero_lead", [
    (10, -2, 3, 4, False), (10, 5, 3, 4, False), (6, 1, 3, 9, False), (10, 2, 3, 10, True),
    (8, 0, 1, 8, False), (12, 7, 4, 3, True)])
def test_ndimage_pass_cut_and_pad_keep_the_correlation(n, lead, span, n_out, zero_lead, rng):
    """Definition: y[i] = sum_m w[m] x[i + m - lead] with zeros outside x; the pass's cut,
    pad and lead give the same y on its prepared input (numpy, not ndimage)."""
    x, w = rng.standard_normal(n), rng.standard_normal(span)
    padded = np.r_[np.zeros(3 * n + span), x, np.zeros(3 * n + span)]
    at = 3 * n + span
    expected = [sum(w[m] * padded[at + i + m - lead] for m in range(span)) for i in range(n_out)]
    step = ndimage_pass((n,), (lead,), (span,), (n_out,), "constant", zero_lead)
    prepared = x if step.crop is None else np.pad(x[slice(*step.crop[0])], step.pad[0])
    new_lead = step.origin[0] + span // 2
    assert 0 <= new_lead <= (0 if zero_lead else span - 1)
    assert len(prepared) == step.rows >= n_out + span - 1 - new_lead or len(prepared) >= n_out
    got = [sum(w[m] * prepared[i + m - new_lead] for m in range(span)
               if 0 <= i + m - new_lead < len(prepared)) for i in range(n_out)]
    np.testing.assert_allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("kernel,shape,mode,stride", [
    ((3, 3), (9, 8), "same", 1), ((4, 2), (7, 6), "full", (2, 1)), ((5,), (6,), (7, 2), 1),
    ((2, 3, 2), (4, 5, 3), "same", 1)])
def test_direct_adjoint_windows_cover_the_padded_domain_once(boundary, kernel, shape, mode,
                                                             stride):
    """Every padded sample lies in exactly one window once the slabs' later axes are
    folded (brute-force count), and the slab targets are numpy.pad's sources."""
    g = Geometry.from_args(kernel, shape, mode, boundary, stride)
    plan = direct_plan(g, "test")
    assert isinstance(plan, DirectPlan) and plan.strided == (np.max(stride) > 1)
    cover = np.zeros(g.padded_shape, dtype=int)
    for part in plan.adjoint:
        extent = list(part.shape)
        if part.axis is not None:  # later axes are folded before the slab is added
            for b in range(part.axis + 1, g.ndim):
                assert extent[b] == g.padded_shape[b]
        cover[tuple(slice(s, s + e) for s, e in zip(part.starts, extent))] += 1
        if part.axis is not None:
            ax = g.axes[part.axis]
            sources = np.pad(np.arange(ax.n), (ax.lo, ax.hi), _factors.NUMPY_PAD[boundary])
            start = part.starts[part.axis]
            np.testing.assert_array_equal(part.targets,
                                          sources[start:start + part.shape[part.axis]])
    if boundary == "zero":  # only the input's window is read back
        assert len(plan.adjoint) == 1
        inside = tuple(slice(ax.lo, ax.lo + ax.n) for ax in g.axes)
        assert cover[inside].min() == 1 and cover.sum() == g.input_size
    else:
        assert cover.min() == 1 and cover.max() == 1


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_direct_plan_forward_uses_ndimage_only_for_its_own_extension(boundary):
    inside = Geometry.from_args((3, 3), (20, 20), "same", boundary)
    plan = direct_plan(inside)
    assert plan.native and plan.forward.mode == NDIMAGE_MODE[boundary]
    wide = Geometry.from_args((3,), (20,), (5, 5), boundary)  # pads past the kernel span
    plan = direct_plan(wide)
    assert plan.native == (boundary == "zero") and plan.forward.mode == "constant"


@pytest.mark.parametrize("shape,kernel,mode,boundary,real", [
    ((37, 20), (5, 4), "full", "zero", True), ((16,), (3,), "same", "wrap", False),
    ((9, 9, 9), (3, 3, 3), 4, "reflect", True), ((100,), (7,), "valid", "edge", True)])
def test_fft_transforms_are_long_enough_for_linear_correlation(shape, kernel, mode, boundary,
                                                               real):
    """Circular correlation of length M equals the linear one on every output read iff
    M >= the padded length (every output's reads stay inside one period)."""
    g = Geometry.from_args(kernel, shape, mode, boundary)
    plan = fft_plan(g, real, "test")
    assert isinstance(plan, FFTPlan) and plan.blocks is None
    assert all(m >= n for m, n in zip(plan.shape, g.padded_shape))
    assert plan.extend == (boundary != "zero")
    assert plan.offsets == (tuple(ax.lo for ax in g.axes) if boundary == "zero"
                            else (0,) * g.ndim)
    assert plan.adjoint_crop == (g.spatial_input_shape if boundary == "zero"
                                 else g.padded_shape)


@pytest.mark.parametrize("n,k,mode,boundary,stride", [
    (100_000, 5, "same", "zero", 1), (70_001, 33, "full", "reflect", 3),
    (50_000, 9, "valid", "wrap", 2)])
def test_overlap_save_blocks_cover_every_output(n, k, mode, boundary, stride, rng):
    """The blocks' valid outputs tile 0..out_len (count * step >= out_len > (count-1) * step)
    and running the plan's numbers with numpy.fft equals numpy's valid correlation."""
    g = Geometry.from_args((k,), (n,), mode, boundary, stride)
    plan = fft_plan(g, True)
    assert plan.blocks is not None
    for blocks in plan.blocks:
        assert blocks.step == blocks.block - k + 1
        assert blocks.count * blocks.step >= blocks.out_len > (blocks.count - 1) * blocks.step
        assert blocks.need == (blocks.count - 1) * blocks.step + blocks.block
    forward = plan.blocks[0]
    assert forward.out_len == g.axes[0].sampled_length
    x, w = rng.standard_normal(g.axes[0].padded_length), rng.standard_normal(k)
    x = np.pad(x, (0, max(forward.need - len(x), 0)))
    spectrum = np.fft.rfft(np.r_[w, np.zeros(forward.block - k)])
    y = np.concatenate([np.fft.irfft(np.fft.rfft(x[b * forward.step:][:forward.block])
                                     * spectrum.conj(), forward.block)[:forward.step]
                        for b in range(forward.count)])[:forward.out_len]
    np.testing.assert_allclose(y, np.correlate(x[:forward.out_len + k - 1], w, "valid"),
                               atol=1e-9)


@pytest.mark.parametrize("method", ["sparse", "direct", "fft", "auto"])
def test_every_engine_has_a_printable_plan_that_says_why(method):
    op = linconv.ConvolutionOperator(np.ones((3, 3)), (200, 200), "same", boundary="reflect",
                                     method=method)
    plan = op.plan
    assert plan.engine == op.method
    text = str(plan)
    assert text.startswith({"sparse": "SparsePlan", "direct": "DirectPlan",
                            "fft": "FFTPlan"}[op.method])
    assert (f"method={method!r} requested" in plan.reason if method != "auto"
            else plan.reason.startswith(f"auto: method {op.method!r} estimated"))
    assert op.T.plan is plan and op.H.plan is plan


def test_auto_says_why_it_picks_sparse_for_tiny_problems():
    op = linconv.ConvolutionOperator(np.ones(3), 10)
    assert isinstance(op.plan, SparsePlan) and "stored entries" in op.plan.reason
    assert op.plan.entries == 36


def test_plans_are_lazy_and_sizes_only():
    op = linconv.ConvolutionOperator(np.ones((5, 5)), (10**6, 10**6), "same", method="direct")
    assert op._engine._plan is None
    assert op.plan.forward.out_shape == (10**6, 10**6)
    op = linconv.ConvolutionOperator(np.ones((5, 5)), (10**6, 10**6), "same", method="fft")
    assert op._engine._plan is None and op.plan.shape[0] >= 10**6 + 4


# -- the factors on arrays, against numpy.pad and brute force --------------------------------
def _matrix_of(function, n_in):
    """Dense matrix of a linear function of a 1-D array, column by column."""
    return np.stack([function(e) for e in np.eye(n_in)], axis=1)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("pads", [(2, 1), (0, 4), (7, 9)])
def test_extend_adjoint_is_the_transpose_of_numpy_pad(boundary, pads, rng):
    n = 4
    g = Geometry.from_args((1,), (n,), pads, boundary)
    if boundary == "reflect" and max(pads) >= n - 1 and np.lib.NumpyVersion(
            np.__version__) < "2.1.0":
        pytest.skip("numpy < 2.1 pads several reflections wrongly (numpy#25926)")
    pad = _matrix_of(lambda e: np.pad(e, pads, _factors.NUMPY_PAD[boundary]), n)
    np.testing.assert_array_equal(_matrix_of(lambda e: _factors.extend(g, e), n), pad)
    y = rng.standard_normal((3, n + sum(pads)))
    np.testing.assert_allclose(_factors.extend_adjoint(g, y.copy()), y @ pad, atol=1e-12)


@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 3), (3, 2)])
def test_windows_taps_and_strides_follow_the_definition(stride, dilation, rng):
    """y[i] = sum_j w[j] xp[i s + j d] by brute force, from windows() and from tap_slices()."""
    g = Geometry.from_args((3, 2), (11, 9), "full", "zero", stride, dilation)
    xp = rng.standard_normal(g.padded_shape)
    w = rng.standard_normal(g.kernel_shape)
    expected = np.zeros(g.spatial_output_shape)
    for i, j in itertools.product(*map(range, g.spatial_output_shape)):
        for a, b in itertools.product(*map(range, g.kernel_shape)):
            expected[i, j] += w[a, b] * xp[i * g.strides[0] + a * g.dilations[0],
                                           j * g.strides[1] + b * g.dilations[1]]
    np.testing.assert_allclose(np.einsum("ijab,ab->ij", _factors.windows(g, xp), w), expected)
    by_taps = sum(wt * xp[s] for wt, s in zip(w.ravel(), _factors.tap_slices(g)))
    np.testing.assert_allclose(by_taps, expected)
    dense = rng.standard_normal(g.sampled_shape)
    kept = _factors.subsample(g, dense)
    np.testing.assert_array_equal(kept, dense[::g.strides[0], ::g.strides[1]])
    back = _factors.upsample(g, kept)
    assert back.shape == g.sampled_shape and back.sum() == pytest.approx(kept.sum())
    np.testing.assert_array_equal(back[::g.strides[0], ::g.strides[1]], kept)


def test_circular_kernel_is_the_first_column_of_the_periodic_matrix(rng):
    """Circular convolution with the placed kernel equals the 'wrap' 'same' matrix (scipy's
    dense circulant oracle: the matrix applied to unit vectors)."""
    from scipy.ndimage import correlate1d
    w = rng.standard_normal(4)
    g = Geometry.from_args((4,), (9,), "same", "wrap", dilation=2)
    placed = _factors.circular_kernel(g, w)
    x = rng.standard_normal(9)
    circular = np.fft.ifft(np.fft.fft(placed) * np.fft.fft(x)).real
    dilated = np.zeros(7)
    dilated[::2] = w
    expected = correlate1d(x, dilated, mode="grid-wrap", origin=-(g.axes[0].lo - 3))
    np.testing.assert_allclose(circular, expected, atol=1e-12)


# -- the pattern of a subset of rows, against the dense oracle -------------------------------


@pytest.mark.parametrize("case", case_params(CASES + random_cases(13, 20)))
def test_pattern_of_some_rows_equals_those_rows_of_the_dense_matrix(case, rng):
    """pattern(rows=...) folded is exactly those rows of the matrix that np.pad + scipy
    give by unit impulses (in the order asked, repeats allowed)."""
    g = Geometry.from_args(case.kernel_shape, case.input_shape, oracle_pads(case),
                           case.boundary, case.stride, case.dilation)
    if g.output_size == 0:
        pytest.skip("no output")
    kernel = rng.standard_normal(case.kernel_shape)
    dense = dense_by_columns(lambda x: oracle_correlate(x, kernel, case), g.input_size,
                             case.input_shape)
    rows = rng.integers(0, g.output_size, 7)
    pattern = _pattern.pattern(g, rows=rows)
    local, cols, values = pattern.folded(pattern.values(kernel.reshape(-1)))
    got = np.zeros((len(rows), g.input_size))
    np.add.at(got, (local, cols), values)
    np.testing.assert_allclose(got, dense[rows], atol=1e-12)
    assert np.all(np.diff(pattern.indptr) >= 0) and pattern.indptr[-1] == pattern.nnz


def test_pattern_of_some_rows_with_channels_and_groups(rng):
    """Layer rows (channels, groups) against the block rule written out densely: block
    (o, c) is the single-channel matrix of weight[o, c % (C_in/g)] inside the group."""
    g = Geometry.from_args((2, 3), (5, 4), 1, "reflect", channels=Channels(4, 6, 2))
    weight = rng.standard_normal(g.weight_shape)
    case = Case((5, 4), (2, 3), ((1, 1), (1, 1)), "reflect")
    n_out, n_in = 6 * 4, 5 * 4  # per channel: (5 + 2 - 1) x (4 + 2 - 2)
    full = np.zeros((g.output_size, g.input_size))
    for o in range(6):
        for c in range(4):
            if c // 2 == o // 3:
                block = dense_by_columns(lambda x: oracle_correlate(x, weight[o, c % 2], case),
                                         n_in, (5, 4))
                full[o * n_out:(o + 1) * n_out, c * n_in:(c + 1) * n_in] = block
    rows = rng.integers(0, g.output_size, 9)
    pattern = _pattern.pattern(g, rows=rows)
    local, cols, values = pattern.folded(pattern.values(weight.reshape(6, 2, -1)))
    got = np.zeros((len(rows), g.input_size))
    np.add.at(got, (local, cols), values)
    np.testing.assert_allclose(got, full[rows], atol=1e-12)


@pytest.mark.parametrize("height,batch,grid,block", [
    (56, 8, (58, 58), 1 << 24), (56, 8, (58, 58), 1 << 16), (3, 5, (7, 9), 1 << 20),
    (10, 1, (12, 1000), 1 << 14)])
def test_gemm_slabs_cover_every_row_of_every_item_once(height, batch, grid, block):
    """Brute force: the slabs tile batch x height exactly once, and none holds more grid
    samples than a chunk (unless it is a single row)."""
    from linconv._plans import LayerPlan
    plan = LayerPlan("gemm", "", grid, 1, (0,), (0,), (0,), 0, False, (), grid, block)
    cover = np.zeros((batch, height), dtype=int)
    limit = plan.columns(64, 4)
    for b0, b1, r0, r1 in plan.slabs(height, batch, 64, 4):
        cover[b0:b1, r0:r1] += 1
        assert (b1 - b0) * (r1 - r0) * int(np.prod(grid[1:])) <= max(limit, np.prod(grid[1:]))
    assert cover.min() == 1 and cover.max() == 1
