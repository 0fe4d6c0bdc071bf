"""The layer engines (GEMM, depthwise) and their plans, against torch and numpy oracles.

Every engine is run directly (not only the one "auto" picks) on a table of
layers covering groups (1, 2, depthwise, depth multiplier 2), strides,
dilations, padding modes, even kernels and 1-D/2-D/3-D.  Forward is checked
against ``torch.nn.functional.conv{1,2,3}d`` in float64 (after ``F.pad`` for the
non-zero padding modes), the adjoint against torch's autograd of the same
function (the vector-Jacobian product is ``A^T y``), complex weights through
torch on real and imaginary parts, plus dot tests.  The plans are checked
without data arrays: their phase placements and tap offsets against
``np.pad`` of the index map.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import linconv
from linconv._engines import DepthwiseEngine, GemmEngine
from linconv._geometry import Channels, Geometry
from linconv._plans import layer_plan

NUMPY_PAD = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
             "circular": "wrap"}

# (C_in, C_out, groups, spatial, kernel, keyword arguments of conv_operator)
LAYERS = [
    (4, 6, 1, (11,), (3,), dict(padding=1)),
    (3, 3, 3, (12,), (4,), dict(padding=2, stride=3, dilation=2)),
    (2, 4, 2, (10,), (9,), dict(padding=4, padding_mode="reflect")),  # no stacking
    (4, 4, 1, (9, 8), (3, 3), dict(padding=1)),
    (4, 6, 2, (9, 8), (3, 2), dict(padding=(1, 0), stride=(2, 1), dilation=(1, 2))),
    (4, 4, 4, (9, 8), (3, 3), dict(padding=1)),  # depthwise
    (4, 8, 4, (9, 8), (2, 2), dict(padding="same")),  # multiplier 2, even kernel
    (4, 8, 4, (10, 9), (3, 3), dict(padding=2, stride=2, dilation=2, padding_mode="reflect")),
    (3, 3, 3, (9, 8), (3, 4), dict(padding=(2, 3), stride=(2, 3), padding_mode="replicate")),
    (2, 2, 1, (7, 6), (3, 3), dict(padding=2, padding_mode="circular", dilation=(2, 1))),
    (1, 1, 1, (17, 16), (5, 5), dict(padding=4, stride=2, dilation=2)),  # single channel
    (2, 3, 1, (5, 6, 7), (2, 3, 2), dict(padding=1, stride=(1, 2, 2))),
    (4, 4, 4, (5, 4, 6), (3, 3, 3), dict(padding=1, stride=2, padding_mode="replicate")),
    (6, 6, 3, (8, 9), (3, 3), dict(padding=0, stride=2)),
]


def _id(layer):
    c_in, c_out, groups, spatial, kernel, kw = layer
    opts = "-".join(f"{k[0]}{v}".replace(" ", "").replace("(", "").replace(")", "")
                    .replace(",", "x") for k, v in kw.items())
    return (f"{c_in}to{c_out}-g{groups}-n{'x'.join(map(str, spatial))}-"
            f"k{'x'.join(map(str, kernel))}-{opts}")


@pytest.fixture(params=["numpy", "axpy", "axpy-pieces"])
def depthwise_path(request, monkeypatch):
    """The depthwise engine's three ways of running the taps: numpy on whole blocks of
    rows (short rows), BLAS axpy per row, and axpy on pieces of a row (long rows)."""
    from linconv import _engines
    monkeypatch.setattr(_engines, "DEPTHWISE_MIN_ROW", 0)  # the test layers are small
    monkeypatch.setattr(_engines, "AXPY_MIN", 10**9 if request.param == "numpy" else 1)
    if request.param == "axpy-pieces":  # pieces of 7 samples, one channel per block
        monkeypatch.setattr(_engines, "DEPTHWISE_BLOCK", 7)
        monkeypatch.setattr(_engines, "AXPY_CHUNK", 7)
    return request.param


def _engines_for(op, w):
    engines = [GemmEngine(op.geometry, w)]
    if op.geometry.channels.in_per_group == 1:
        engines.append(DepthwiseEngine(op.geometry, w))
    return engines


def _torch_function(layer):
    """x -> torch conv of the layer (as a function of a torch tensor)."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    c_in, c_out, groups, spatial, kernel, kw = layer
    kw = dict(kw)
    mode = kw.pop("padding_mode", "zeros")
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(spatial)]

    def run(x, w):
        if mode != "zeros":
            pads = kw["padding"]
            pads = (pads,) * len(spatial) if isinstance(pads, int) else pads
            x = F.pad(x, [p for p in reversed(pads) for _ in (0, 1)], mode=mode)
            return conv(x, w, groups=groups, **{**kw, "padding": 0})
        return conv(x, w, groups=groups, **kw)
    return torch, run


def _torch_reference(layer, rng, batch):
    """``(op, w, x, y, A x, A^H y)`` for random data: the operator, and torch's layer and
    its gradient (the adjoint) as the oracle."""
    c_in, c_out, groups, spatial, kernel, kw = layer
    torch, run = _torch_function(layer)
    w = rng.standard_normal((c_out, c_in // groups) + kernel)
    op = linconv.conv_operator(w, (c_in,) + spatial, groups=groups, **kw)
    x = rng.standard_normal((batch,) + op.input_shape)
    y = rng.standard_normal((batch,) + op.output_shape)
    tx = torch.from_numpy(x).requires_grad_(True)
    out = run(tx, torch.from_numpy(w))
    (expected_adjoint,) = torch.autograd.grad(out, tx, torch.from_numpy(y))
    return op, w, x, y, out.detach().numpy(), expected_adjoint


@pytest.mark.parametrize("layer", LAYERS, ids=_id)
def test_engines_match_torch_forward_and_adjoint(layer, rng, depthwise_path):
    op, w, x, y, expected, expected_adjoint = _torch_reference(layer, rng, 2)
    # one channel per block on the last path: blocks shared among 3 threads
    with linconv.set_workers(3 if depthwise_path == "axpy-pieces" else 1):
        for engine in _engines_for(op, w):
            np.testing.assert_allclose(engine.forward(x), expected, rtol=1e-12, atol=1e-12,
                                       err_msg=engine.engine)
            np.testing.assert_allclose(engine.adjoint(y), expected_adjoint.numpy(),
                                       rtol=1e-12, atol=1e-12, err_msg=engine.engine)
    np.testing.assert_allclose(op.apply(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layer", [LAYERS[4], LAYERS[7], LAYERS[12]], ids=_id)
def test_engines_complex_weights_through_real_and_imaginary_parts(layer, rng, depthwise_path):
    c_in, c_out, groups, spatial, kernel, kw = layer
    torch, run = _torch_function(layer)
    shape = (c_out, c_in // groups) + kernel
    wr, wi = rng.standard_normal(shape), rng.standard_normal(shape)
    op = linconv.conv_operator(wr + 1j * wi, (c_in,) + spatial, groups=groups, **kw)
    xr, xi = (rng.standard_normal((2,) + op.input_shape) for _ in range(2))
    t = lambda a, b: run(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    expected = t(xr, wr) - t(xi, wi) + 1j * (t(xr, wi) + t(xi, wr))
    y = rng.standard_normal((2,) + op.output_shape) + 1j * rng.standard_normal(
        (2,) + op.output_shape)
    for engine in _engines_for(op, wr + 1j * wi):
        np.testing.assert_allclose(engine.forward(xr + 1j * xi), expected, rtol=1e-12,
                                   atol=1e-12, err_msg=engine.engine)
        lhs = np.vdot(y, engine.forward(xr + 1j * xi))
        rhs = np.vdot(engine.adjoint(y), xr + 1j * xi)
        assert abs(lhs - rhs) <= 1e-12 * abs(lhs), engine.engine


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (np.float64, 1e-13)])
@pytest.mark.parametrize("layer", LAYERS, ids=_id)
def test_engines_dot_test(layer, dtype, tol, rng, depthwise_path):
    c_in, c_out, groups, spatial, kernel, kw = layer
    w = rng.standard_normal((c_out, c_in // groups) + kernel).astype(dtype)
    op = linconv.conv_operator(w, (c_in,) + spatial, groups=groups, **kw)
    x = rng.standard_normal((3,) + op.input_shape).astype(dtype)
    y = rng.standard_normal((3,) + op.output_shape).astype(dtype)
    for engine in _engines_for(op, w):
        ax, aty = engine.forward(x), engine.adjoint(y)
        assert ax.dtype == aty.dtype == dtype
        lhs, rhs = float(np.vdot(y, ax)), float(np.vdot(aty, x))
        scale = np.linalg.norm(ax) * np.linalg.norm(y)
        assert abs(lhs - rhs) <= tol * scale, engine.engine


@pytest.mark.parametrize("dtype, rtol", [(np.float16, 2e-2), (np.float32, 1e-5),
                                         (np.complex64, 1e-5), (np.longdouble, 1e-12)])
@pytest.mark.parametrize("layer", [LAYERS[6], LAYERS[7]], ids=_id)
def test_depthwise_dtypes_and_non_contiguous_inputs(layer, dtype, rtol, rng, depthwise_path):
    """Every dtype (BLAS axpy for float32/complex64, numpy for float16/long double) on
    Fortran-ordered inputs, against torch in float64 (complex through real and imaginary
    parts); the dtype is kept."""
    c_in, c_out, groups, spatial, kernel, kw = layer
    torch, run = _torch_function(layer)
    parts = 2 if np.dtype(dtype).kind == "c" else 1
    w = [rng.standard_normal((c_out, 1) + kernel) for _ in range(parts)]
    x = [rng.standard_normal((2, c_in) + spatial) for _ in range(parts)]
    op = linconv.conv_operator(w[0], (c_in,) + spatial, groups=groups, **kw)
    y = [rng.standard_normal((2,) + op.output_shape) for _ in range(parts)]
    t = lambda a, b: run(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    if parts == 1:
        w, x, y = (np.asarray(v[0], dtype=dtype).astype(np.float64) for v in (w, x, y))
        expected = t(x, w)
        tx = torch.from_numpy(x).requires_grad_(True)
        (expected_adjoint,) = torch.autograd.grad(run(tx, torch.from_numpy(w)), tx,
                                                  torch.from_numpy(y))
        expected_adjoint = expected_adjoint.numpy()
    else:
        w, x, y = (v[0] + 1j * v[1] for v in (w, x, y))
        w, x, y = (v.astype(dtype).astype(np.complex128) for v in (w, x, y))
        expected = t(x.real, w.real) - t(x.imag, w.imag) + 1j * (t(x.real, w.imag) +
                                                                t(x.imag, w.real))
        expected_adjoint = None
    engine = DepthwiseEngine(op.geometry, w.astype(dtype))
    xf, yf = np.asfortranarray(x.astype(dtype)), np.asfortranarray(y.astype(dtype))
    assert not xf.flags.c_contiguous
    got = engine.forward(xf)
    assert got.dtype == dtype
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got.astype(expected.dtype), expected, rtol=0, atol=rtol * scale)
    back = engine.adjoint(yf)
    assert back.dtype == dtype and back.shape == x.shape
    if expected_adjoint is None:  # complex: the dot test <y, A x> = <A^H y, x>, in float64
        lhs = np.vdot(y, expected)
        rhs = np.vdot(back.astype(np.complex128), x)
        assert abs(lhs - rhs) <= rtol * np.linalg.norm(y) * np.linalg.norm(expected) * 10
    else:
        np.testing.assert_allclose(back.astype(np.float64), expected_adjoint, rtol=0,
                                   atol=rtol * np.abs(expected_adjoint).max())


def test_zero_taps_are_skipped_and_all_zero_weights_give_zeros(rng, depthwise_path):
    torch, run = _torch_function((4, 4, 4, (9, 8), (3, 3), dict(padding=1)))
    w = rng.standard_normal((4, 1, 3, 3))
    w[:, :, 0] = 0  # the first kernel row is zero for every channel
    op = linconv.conv_operator(w, (4, 9, 8), groups=4, padding=1)
    x = rng.standard_normal((2, 4, 9, 8))
    for engine in _engines_for(op, w):
        assert len(engine.plan.taps) == 6
        np.testing.assert_allclose(engine.forward(x), run(torch.from_numpy(x),
                                                          torch.from_numpy(w)).numpy(),
                                   atol=1e-12)
        zero = type(engine)(op.geometry, np.zeros_like(w))
        assert zero.plan.taps == ()
        assert not zero.forward(x).any() and not zero.adjoint(engine.forward(x)).any()


def test_empty_batch(rng, depthwise_path):
    w = rng.standard_normal((4, 1, 3, 3))
    op = linconv.conv_operator(w, (4, 9, 8), groups=4, padding=1)
    for engine in _engines_for(op, w):
        assert engine.forward(np.zeros((0, 4, 9, 8))).shape == (0, 4, 9, 8)
        assert engine.adjoint(np.zeros((0, 4, 9, 8))).shape == (0, 4, 9, 8)


def test_depthwise_rows_shorter_than_the_minimum_run_the_gemm(rng, monkeypatch):
    from linconv import _engines
    monkeypatch.setattr(_engines, "DEPTHWISE_MIN_ROW", 200)  # the grid: 11 x 10 = 110
    torch, run = _torch_function((4, 8, 4, (9, 8), (3, 3), dict(padding=1)))
    w = rng.standard_normal((8, 1, 3, 3))
    engine = DepthwiseEngine(linconv.conv_operator(w, (4, 9, 8), groups=4, padding=1).geometry,
                             w)
    assert isinstance(engine._short(110), GemmEngine) and engine._short(220) is None
    calls, gemm_forward = [], GemmEngine.forward

    def counted(self, x):
        calls.append(len(x))
        return gemm_forward(self, x)

    monkeypatch.setattr(GemmEngine, "forward", counted)
    for batch in (1, 2):  # 110 and 220 samples per row
        x = rng.standard_normal((batch, 4, 9, 8))
        np.testing.assert_allclose(engine.forward(x), run(torch.from_numpy(x),
                                                          torch.from_numpy(w)).numpy(),
                                   rtol=1e-12, atol=1e-12)
    assert calls == [1]


# -- the choice ---------------------------------------------------------------------
def test_auto_runs_depthwise_layers_on_the_depthwise_engine():
    w = np.ones((128, 1, 3, 3), dtype=np.float32)
    op = linconv.conv_operator(w, (128, 56, 56), groups=128, padding=1)
    assert op.method == "direct" and op.plan.engine == "depthwise"
    assert "ms" in op.plan.reason
    dense = linconv.conv_operator(np.ones((64, 64, 3, 3), np.float32), (64, 56, 56), padding=1)
    assert dense.plan.engine == "gemm"
    assert "(the depthwise engine needs 1)" in dense.plan.reason
    transposed = linconv.conv_transpose_operator(w, (128, 28, 28), stride=2, groups=128)
    assert transposed.plan is transposed.parent.plan
    assert transposed.plan.engine == "depthwise"


def test_plan_is_lazy_and_construction_is_cheap():
    w = np.ones((4, 1, 3, 3))
    op = linconv.conv_operator(w, (4, 100_000, 100_000), groups=4, padding=1, method="direct")
    assert op._engine._plan is None
    plan = op.plan  # sizes only: no array of the input's size
    assert plan.grid == (100_002, 100_002) and op._engine._plan is plan


# -- plans, without data ----------------------------------------------------------------
PLAN_GEOMETRIES = [
    ((3,), (10,), 1, 1, 1, "zero"),
    ((4,), (13,), (2, 1), 3, 2, "zero"),
    ((3, 2), (9, 8), 1, (2, 1), (1, 2), "zero"),
    ((3, 3), (10, 9), 2, 2, 2, "reflect"),
    ((2, 3, 2), (5, 6, 7), 1, (1, 2, 3), 1, "edge"),
    ((9,), (20,), 4, 1, 1, "wrap"),
]


@pytest.mark.parametrize("kernel, spatial, padding, stride, dilation, boundary",
                         PLAN_GEOMETRIES, ids=lambda v: str(v).replace(" ", ""))
def test_plan_reads_every_tap_where_numpy_pad_puts_it(kernel, spatial, padding, stride,
                                                       dilation, boundary):
    """Run the plan on index arrays: phase grids filled through the placements must
    hold, at ``i + offset[t]``, the padded sample ``i*s + j*d`` of np.pad's index map."""
    g = Geometry.from_args(kernel, spatial, padding, boundary, stride, dilation,
                           channels=Channels(2, 2, 2))
    for engine in ("gemm", "depthwise"):
        plan = layer_plan(g, range(int(np.prod(kernel))), engine, "test", 64)
        index = np.arange(int(np.prod(spatial))).reshape(spatial)
        pad_mode = {"zero": "constant", "edge": "edge", "reflect": "reflect", "wrap": "wrap"}
        padded = np.pad(index, g.pads, mode=pad_mode[boundary],
                        **({"constant_values": -1} if boundary == "zero" else {}))
        source = padded if plan.extend else index
        grids = np.full((plan.phases,) + plan.grid, -1)
        filled = np.zeros((plan.phases,) + plan.grid, dtype=int)
        for phase, src, tgt in plan.placements:
            grids[(phase,) + tgt] = source[src]
            filled[(phase,) + tgt] += 1
        assert filled.max() == 1
        assert filled.sum() == source.size  # every sample placed exactly once
        flat = np.concatenate([grids.reshape(plan.phases, -1),
                               np.full((plan.phases, plan.tail), -1)], axis=1)
        outputs = np.stack(np.meshgrid(*[np.arange(m) for m in plan.output_shape],
                                       indexing="ij"), -1).reshape(-1, len(spatial))
        grid_index = np.ravel_multi_index(outputs.T, plan.grid)
        for tap, phase, offset in zip(plan.taps, plan.phase, plan.offset):
            j = np.unravel_index(tap, kernel)
            want = padded[tuple(outputs[:, a] * g.strides[a] + j[a] * g.dilations[a]
                                for a in range(len(spatial)))]
            np.testing.assert_array_equal(flat[phase, grid_index + offset], want)


def test_plan_chunks_and_printing():
    g = Geometry.from_args((3, 3), (56, 56), 1, channels=Channels(64, 64))
    plan = layer_plan(g, range(9), "gemm", "because", block=1 << 20)
    assert plan.columns(9 * 64, 4) == (1 << 20) // (9 * 64 * 4) == 455
    assert plan.columns(10**6, 8) == 64  # at least 64 columns
    text = str(plan)
    assert "engine 'gemm' (because)" in text and "chunks of 1048576 bytes" in text
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.engine = "depthwise"


@pytest.mark.parametrize("block", [1, 64 * 8 * 5, 1 << 24])
def test_gemm_chunks_of_any_width_match_torch(block, rng, monkeypatch):
    """The GEMM's chunks: one grid sample wide (block 1: 64 columns), a width that does
    not divide the grid, and the whole grid in one chunk."""
    from linconv import _engines
    monkeypatch.setattr(_engines, "GEMM_BLOCK", block)
    op, w, x, y, expected, expected_adjoint = _torch_reference(LAYERS[4], rng, 5)
    engine = GemmEngine(op.geometry, w)
    assert engine.plan.block == block
    np.testing.assert_allclose(engine.forward(x), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(engine.adjoint(y), expected_adjoint.numpy(), rtol=1e-12,
                               atol=1e-12)


def test_channel_blocks_cover_every_channel_once():
    g = Geometry.from_args((3,), (10,), 1, channels=Channels(2, 2, 2))
    plan = layer_plan(g, range(3), "depthwise", block=100)
    for channels, m, length in ((7, 1, 30), (3, 2, 250), (1, 1, 1000), (5, 1, 20), (9, 2, 7)):
        blocks = plan.channel_blocks(channels, m, length)
        assert [c for c0, c1 in blocks for c in range(c0, c1)] == list(range(channels))
        assert all((c1 - c0) * m * length <= 100 or c1 - c0 == 1 for c0, c1 in blocks)
        assert len(blocks) == -(-channels // max(1, 100 // (m * length)))  # as few as fit
    assert plan.channel_blocks(0, 1, 30) == plan.channel_blocks(3, 1, 0) == []


@pytest.mark.parametrize("groups", [1, 4])
def test_float64_data_with_float32_weights_is_computed_in_float64(groups, rng):
    torch, run = _torch_function((4, 4, groups, (9, 8), (3, 3), dict(padding=1)))
    w = rng.standard_normal((4, 4 // groups, 3, 3)).astype(np.float32)
    op = linconv.conv_operator(w, (4, 9, 8), groups=groups, padding=1, method="direct")
    x = rng.standard_normal((2, 4, 9, 8))
    expected = run(torch.from_numpy(x), torch.from_numpy(w.astype(np.float64))).numpy()
    y = op.apply(x)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
