"""Operators and deconvolution on dask arrays, against independent oracles.

Oracles: np.pad + scipy.signal (tests/cases.py), dense matrices built from the
oracle's columns, torch.nn.functional for layers, dense normal equations and a
numpy Richardson-Lucy written from the formula.
"""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import scipy.signal

da = pytest.importorskip("dask.array")
import dask  # noqa: E402

import linconv  # noqa: E402
from linconv._dask import AxisPlan, ChunkedCorrelation, deconvolve_dask  # noqa: E402

from cases import (CASES, Case, case_params, dense_by_columns, oracle_convolve,  # noqa: E402
                   oracle_correlate, random_array)

SYNC = {"scheduler": "sync"}


@pytest.fixture(autouse=True)
def synchronous(request):
    """Tiny arrays: dask's synchronous scheduler (the cluster test brings its own)."""
    if "cluster" in request.node.name:
        yield
        return
    with dask.config.set(scheduler="sync"):
        yield


def uneven_chunks(rng, shape):
    """Random uneven chunks per axis (often smaller than the kernel span)."""
    return tuple(tuple(np.diff(np.unique([0, *rng.integers(1, n, 3), n])).tolist()) if n > 1
                 else (1,) for n in shape)


def test_import_linconv_does_not_import_dask():
    code = "import sys, linconv; print('dask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("case", case_params(CASES))
def test_case_table_on_dask(case):
    """Every geometry of the shared table, complex data and kernel, on chunks of 1 (smaller
    than the span) and random uneven sizes: forward, .H and .T equal the oracle."""
    rng = np.random.default_rng(abs(hash(case.id)) % 2**32)
    x = random_array(rng, case.input_shape, np.complex128)
    kernel = random_array(rng, case.kernel_shape, np.complex128)
    op = linconv.ConvolutionOperator(kernel, case.input_shape, case.mode, **case.options())
    expected = oracle_convolve(x, kernel, case)
    dense = dense_by_columns(lambda e: oracle_convolve(e, kernel, case), x.size,
                             case.input_shape, complex)
    y = random_array(rng, expected.shape, np.complex128)
    for chunks in (1, uneven_chunks(rng, x.shape)):
        out_chunks = chunks if isinstance(chunks, int) else uneven_chunks(rng, y.shape)
        result = op.apply(da.from_array(x, chunks=chunks))
        assert isinstance(result, da.Array)
        np.testing.assert_allclose(result.compute(**SYNC), expected, atol=1e-11)
        dy = da.from_array(y, chunks=out_chunks)
        np.testing.assert_allclose(op.H.apply(dy).compute(**SYNC).ravel(),
                                   dense.conj().T @ y.ravel(), atol=1e-11)
        np.testing.assert_allclose(op.T.apply(dy).compute(**SYNC).ravel(), dense.T @ y.ravel(),
                                   atol=1e-11)


def test_batches_and_float32():
    rng = np.random.default_rng(0)
    case = Case((17, 13), (4, 3), "same", "symmetric", (2, 1), (1, 2))
    kernel = rng.standard_normal((4, 3)).astype(np.float32)
    x = rng.standard_normal((3, 2, 17, 13)).astype(np.float32)
    op = linconv.ConvolutionOperator(kernel, (17, 13), "same", boundary="symmetric",
                                     stride=(2, 1), dilation=(1, 2), correlate=True)
    result = op.apply(da.from_array(x, chunks=(2, 1, 5, 4)))
    assert result.dtype == np.float32
    expected = np.stack([[oracle_correlate(f, kernel.astype(float), case) for f in b]
                         for b in x.astype(float)])
    np.testing.assert_allclose(result.compute(), expected, rtol=1e-5, atol=1e-5)
    # float64 data through a float32 operator computes in float64
    assert op.apply(da.from_array(x.astype(float), chunks=5)).dtype == np.float64


def test_dot_test_on_dask():
    rng = np.random.default_rng(1)
    op = linconv.ConvolutionOperator(rng.standard_normal((5, 4)), (41, 37), (3, 6),
                                     boundary="reflect", stride=(3, 2), dilation=(2, 1))
    x = da.from_array(rng.standard_normal(op.input_shape), chunks=(7, 9))
    y = da.from_array(rng.standard_normal(op.output_shape), chunks=(4, 5))
    Ax, AHy = op.apply(x), op.H.apply(y)
    lhs, rhs, nx, ny = dask.compute((Ax * y).sum(), (x * AHy).sum(), (Ax**2).sum(), (y**2).sum())
    assert abs(lhs - rhs) <= 1e-12 * np.sqrt(nx * ny)


def test_convolve_correlate_on_dask():
    rng = np.random.default_rng(2)
    x, kernel = rng.standard_normal((50, 40)), rng.standard_normal((6, 5))
    dx = da.from_array(x, chunks=(9, 13))
    for mode in ("full", "same", "valid"):
        y = linconv.convolve(dx, kernel, mode)
        assert isinstance(y, da.Array)
        np.testing.assert_allclose(y.compute(), scipy.signal.convolve(x, kernel, mode),
                                   atol=1e-11)
        np.testing.assert_allclose(linconv.correlate(dx, kernel, mode, method="fft").compute(),
                                   scipy.signal.correlate(x, kernel, mode), atol=1e-11)
    wrap = linconv.convolve(dx, kernel, "same", boundary="wrap").compute()
    expected = oracle_convolve(x, kernel, Case((50, 40), (6, 5), "same", "wrap"))
    np.testing.assert_allclose(wrap, expected, atol=1e-11)
    with pytest.raises(ValueError, match="same number of dimensions"):
        linconv.convolve(dx, np.ones(3))


def test_blocks_follow_the_input():
    """Stride 1 keeps the input's chunks (no rechunk) and the adjoint returns them."""
    op = linconv.ConvolutionOperator(np.ones((4, 3)), (30, 20), "same", boundary="edge")
    x = da.ones((30, 20), chunks=((8, 10, 12), (7, 13)))
    y = op.apply(x)
    assert y.chunks == x.chunks
    assert op.H.apply(y).chunks == x.chunks


@pytest.mark.parametrize("n, k, mode, stride, dilation", [
    (40, 5, "same", 3, 1), (40, 4, "full", 2, 3), (33, 7, "valid", 5, 1), (25, 2, (9, 0), 4, 1),
    (40, 9, "same", 1, 1)])
def test_plan_halos(n, k, mode, stride, dilation):
    """Every block's reads lie in its halo, and every halo comes from the next block only
    (the plan alone, no arrays)."""
    ax = linconv.ConvolutionOperator(np.ones(k), n, mode, stride=stride,
                                     dilation=dilation).geometry.axes[0]
    span = dilation * (k - 1) + 1
    for plan in (AxisPlan.for_input(ax, (3, 1, 7, 2) + (9,) * 5),
                 AxisPlan.for_output(ax, (1,) * ax.n_out)):
        o, p = np.array(plan.out_edges), np.array(plan.padded_edges)
        assert (o[0], o[-1], p[0], p[-1]) == (0, ax.n_out, 0, ax.padded_length)
        lo, hi = plan.forward_depth
        for j in range(plan.blocks):
            reads = (o[j] * stride, (o[j + 1] - 1) * stride + span)
            assert reads[0] >= p[j] - (lo if j else 0)
            assert reads[1] <= p[j + 1] + (hi if j < plan.blocks - 1 else 0)
            # outputs whose windows touch padded block j: inside the adjoint's halo
            touching = [i for i in range(ax.n_out)
                        if i * stride < p[j + 1] and i * stride + span > p[j]]
            if touching:
                assert touching[0] >= o[j] - (plan.adjoint_depth[0] if j else 0)
                assert touching[-1] < o[j + 1] + plan.adjoint_depth[1]
        if plan.blocks > 1:
            assert min(plan.padded_chunks) >= max(plan.forward_depth)
            assert min(plan.out_chunks) >= max(plan.adjoint_depth)


def test_layers_on_dask_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((6, 2, 3, 2))
    x = rng.standard_normal((5, 4, 11, 9))
    op = linconv.conv_operator(weight, (4, 11, 9), stride=(2, 1), padding=(1, 0),
                               dilation=(1, 2), groups=2)
    expected = F.conv2d(torch.tensor(x), torch.tensor(weight), stride=(2, 1), padding=(1, 0),
                        dilation=(1, 2), groups=2).numpy()
    dx = da.from_array(x, chunks=(2, 1, 3, 4))  # channels split: linconv joins them
    np.testing.assert_allclose(op.apply(dx).compute(), expected, atol=1e-11)
    # reflect padding mode, against torch's own padded conv
    op = linconv.conv_operator(weight[:, :, :, :1], (4, 11, 9), padding=(1, 0), groups=2,
                               padding_mode="reflect")
    padded = F.pad(torch.tensor(x), (0, 0, 1, 1), mode="reflect")
    np.testing.assert_allclose(op.apply(dx).compute(),
                               F.conv2d(padded, torch.tensor(weight[:, :, :, :1]),
                                        groups=2).numpy(), atol=1e-11)
    # the transposed layer and its adjoint (the conv itself)
    wt = rng.standard_normal((4, 3, 3, 3))
    opt = linconv.conv_transpose_operator(wt, (4, 11, 9), stride=2, padding=1, output_padding=1)
    out = F.conv_transpose2d(torch.tensor(x), torch.tensor(wt), stride=2, padding=1,
                             output_padding=1).numpy()
    np.testing.assert_allclose(opt.apply(dx).compute(), out, atol=1e-11)
    back = F.conv2d(torch.tensor(out), torch.tensor(wt), stride=2, padding=1).numpy()
    np.testing.assert_allclose(opt.H.apply(da.from_array(out, chunks=(3, 2, 5, 6))).compute(),
                               back, atol=1e-10)


def test_graph_pickles_small():
    """The graph carries sizes and weights, never an operator's spectra or matrices."""
    cloudpickle = pytest.importorskip("cloudpickle")
    op = linconv.ConvolutionOperator(np.ones((15, 15)), (1024, 1024), "same", method="fft")
    y = op.H.apply(op.apply(da.zeros((1024, 1024), chunks=512)))
    graph = dict(y.__dask_graph__())
    assert len(cloudpickle.dumps(graph)) < 300_000  # the fft spectrum alone is 8 MB
    chunked, adjoint, conjugate = ChunkedCorrelation.of(op.T)
    assert (adjoint, conjugate) == (True, True)
    assert len(pickle.dumps(chunked)) < 4_000


def test_errors_on_dask():
    x = da.ones((8, 8), chunks=4)
    op = linconv.ConvolutionOperator(np.ones((3, 3)), (8, 8))
    with pytest.raises(ValueError, match=r"`x` must have shape \(\*batch, 8, 8\)"):
        op.apply(da.ones((8, 7), chunks=4))
    pre = linconv.fft.preconditioner(linconv.ConvolutionOperator(np.ones((3, 3)), (8, 8),
                                                                 "same", boundary="wrap"))
    with pytest.raises(TypeError, match="does not support dask arrays"):
        pre.apply(x)
    k = np.ones((3, 3)) / 9
    with pytest.raises(ValueError, match="`solver` on a dask array must be"):
        deconvolve_dask(x, k, solver="lsqr", damp=0.1)
    with pytest.raises(ValueError, match="`regularizer` on a dask array"):
        deconvolve_dask(x, k, regularizer="gradient", damp=0.1)
    with pytest.raises(ValueError, match="`bounds` are not supported"):
        deconvolve_dask(x, k, bounds=(0, None), damp=0.1)
    with pytest.raises(ValueError, match="`preconditioner` is not supported"):
        deconvolve_dask(x, k, preconditioner=pre, damp=0.1)
    with pytest.raises(ValueError, match="`damp` must be 'auto' or 0 for richardson-lucy"):
        deconvolve_dask(x, k, solver="rl", damp=0.5)
    with pytest.raises(ValueError, match="`y` must be non-negative"):
        deconvolve_dask(-x, k, solver="rl", maxiter=2)
    with pytest.raises(ValueError, match="`damp` must be a non-negative finite number"):
        deconvolve_dask(x, k, damp=-1.0)
    with pytest.raises(ValueError, match="`x0` must have the image's shape"):
        deconvolve_dask(x, k, damp=0.1, x0=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="`callback` and `progress` are not supported"):
        deconvolve_dask(da.ones((2, 8, 8), chunks=4), k, damp=0.1, callback=print)


# -- deconvolution --------------------------------------------------------------------
def _problem(rng, shape=(20, 18), kshape=(5, 4), boundary="reflect", mode="same"):
    kernel = rng.random(kshape)
    kernel /= kernel.sum()
    case = Case(shape, kshape, mode, boundary)
    A = dense_by_columns(lambda e: oracle_convolve(e, kernel, case), int(np.prod(shape)), shape)
    return kernel, A


def test_cg_on_dask_solves_the_normal_equations():
    rng = np.random.default_rng(4)
    kernel, A = _problem(rng, mode="valid")  # unknown 20x18, data 16x15
    y = A @ rng.random(A.shape[1]) + 0.01 * rng.standard_normal(A.shape[0])
    damp = 0.3
    expected = np.linalg.solve(A.T @ A + damp**2 * np.eye(A.shape[1]), A.T @ y)
    seen = []
    result = deconvolve_dask(da.from_array(y.reshape(16, 15), chunks=(9, 7)), kernel,
                             mode="valid", boundary="reflect", damp=damp, solver="cg",
                             tol=1e-11, maxiter=100, callback=seen.append)
    assert isinstance(result.x, da.Array) and result.x.shape == (20, 18)
    assert result.converged and result.solver == "cg" and len(seen) == result.iterations
    np.testing.assert_allclose(result.x.compute().ravel(), expected, atol=1e-9)
    objective = np.sqrt(np.sum((A @ expected - y) ** 2) + damp**2 * np.sum(expected**2))
    assert result.residual_norms[-1] == pytest.approx(objective, rel=1e-9)
    assert np.all(np.diff(result.residual_norms) <= 1e-12)  # CGLS decreases the objective


@pytest.mark.parametrize("damp,tol", [(3e-3, 1e-2), (3e-2, 1e-2), (3e-1, 1e-2), (3e-2, 1e-4),
                                      (3e-1, 1e-6)])
def test_cg_tol_stops_where_the_in_memory_cg_stops(damp, tol):
    """`tol` means what it means in memory: the solve stops at the first iterate whose
    normal residual (from the dense matrix) is within the in-memory cg's
    ``rtol = tol min(1, damp / sum|kernel|)`` of the right-hand side, near the
    iteration of scipy's cg (rounding moves both by a few at small damps)."""
    rng = np.random.default_rng(11)
    kernel, A = _problem(rng, shape=(30, 26), kshape=(7, 6), boundary="zero")
    y = A @ rng.random(A.shape[1]) + 1e-3 * rng.standard_normal(A.shape[0])
    seen = []
    with dask.config.set({"linconv.iterates": "memory"}):
        result = deconvolve_dask(da.from_array(y.reshape(30, 26), chunks=(11, 9)), kernel,
                                 damp=damp, solver="cg", tol=tol, maxiter=2000,
                                 callback=seen.append)
    normal, b = A.T @ A + damp**2 * np.eye(A.shape[1]), A.T @ y
    rtol = tol * min(1.0, damp / np.abs(kernel).sum())
    last, before = (np.linalg.norm(normal @ x.compute().ravel() - b) / np.linalg.norm(b)
                    for x in (seen[-1], seen[-2]))
    assert result.converged and last <= rtol * (1 + 1e-6) < before
    expected = linconv.deconvolve(y.reshape(30, 26), kernel, damp=damp, solver="cg",
                                  tol=tol, maxiter=2000, preconditioner=None)
    assert abs(result.iterations - expected.iterations) <= max(1, expected.iterations // 20)


def test_cg_iterates_on_disk(tmp_path):
    """Iterates in files (what "auto" picks when they would not fit): the same solve,
    checked against the dense normal equations; the files go with their arrays."""
    import gc
    from linconv._dask import _store_of
    rng = np.random.default_rng(10)
    kernel, A = _problem(rng, boundary="wrap")
    y = A @ rng.random(A.shape[1]) + 0.01 * rng.standard_normal(A.shape[0])
    w = rng.uniform(0.5, 2.0, A.shape[0])
    damp = 1.0  # well conditioned: a few iterations, each writing and reading the files
    expected = np.linalg.solve(A.T @ (w[:, None] * A) + damp**2 * np.eye(A.shape[1]),
                               A.T @ (w * (y - 0.1)))
    x0 = rng.random((20, 18))
    with dask.config.set({"linconv.iterates": "disk", "linconv.temporary-directory":
                          str(tmp_path)}):
        result = deconvolve_dask(da.from_array(y.reshape(20, 18), chunks=(7, 9)), kernel,
                                 boundary="wrap", damp=damp, weights=w.reshape(20, 18),
                                 background=0.1, x0=x0, solver="cg", tol=1e-10, maxiter=40)
        (root,) = tmp_path.iterdir()
        assert "on disk" in result.message and result.converged
        # the rest gone with the solver's store object
        assert [p.name for p in root.iterdir()] == [os.path.basename(_store_of(result.x).path)]
        np.testing.assert_allclose(result.x.compute().ravel(), expected, atol=1e-9)
    del result
    gc.collect()
    assert not list(tmp_path.iterdir())
    with dask.config.set({"linconv.iterates": "tape"}):
        with pytest.raises(ValueError, match="`linconv.iterates` must be 'auto', 'memory'"):
            deconvolve_dask(da.from_array(y.reshape(20, 18)), kernel, damp=damp, solver="cg")


def test_auto_iterates_follow_the_workers_memory():
    from linconv._dask import _Iterates, _memory_bytes
    memory = _memory_bytes()
    assert _Iterates(memory // 8).where == "memory"
    big = _Iterates(memory // 2)
    assert big.where == "disk"
    import os
    os.rmdir(big.root)


def test_iterates_on_disk_need_no_zarr(monkeypatch, tmp_path):
    """The iterates' files are linconv's own: a solve on disk without zarr installed equals
    the solve in memory."""
    import sys
    monkeypatch.setitem(sys.modules, "zarr", None)  # import zarr raises ImportError
    rng = np.random.default_rng(11)
    y = da.from_array(rng.random((21, 19)), chunks=(8, 7))
    kernel = linconv.datasets.gaussian_kernel(5, 1.0)
    x = {}
    for where in ("memory", "disk"):
        with dask.config.set({"linconv.iterates": where,
                              "linconv.temporary-directory": str(tmp_path)}):
            result = deconvolve_dask(y, kernel, damp=0.2, solver="cg", maxiter=4)
            assert ("on disk" in result.message) == (where == "disk")
            x[where] = result.x.compute()
    np.testing.assert_allclose(x["disk"], x["memory"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("boundary", ["zero", "reflect", "symmetric", "edge", "wrap"])
def test_edge_blocks_extend_and_fold_themselves(boundary):
    """Margins inside the edge blocks (P and P^H in the blocks' tasks, two tasks per block)
    and through the global gather/fold (chunks thinner than the margins, or "wrap"): both
    equal the oracle."""
    rng = np.random.default_rng(11)
    kernel = rng.standard_normal((5, 4))
    case = Case((23, 19), (5, 4), "same", boundary)
    x = rng.standard_normal((23, 19))
    op = linconv.ConvolutionOperator(kernel, x.shape, "same", boundary=boundary)
    dense = dense_by_columns(lambda e: oracle_convolve(e, kernel, case), x.size, x.shape)
    for chunks, local in (((8, 7), boundary != "wrap"), (((1, 21, 1), (1, 17, 1)), False)):
        chunked, _, _ = ChunkedCorrelation.of(op)
        plans = [AxisPlan.for_input(ax, c) for ax, c in
                 zip(op.geometry.axes, da.ones(x.shape, chunks=chunks).chunks)]
        assert chunked._edges_local(plans, da.ones(x.shape, chunks=chunks).chunks,
                                    forward=True) == local
        y = op.apply(da.from_array(x, chunks=chunks))
        np.testing.assert_allclose(y.compute(), oracle_convolve(x, kernel, case), atol=1e-11)
        back = op.H.apply(da.from_array(x, chunks=chunks))
        np.testing.assert_allclose(back.compute().ravel(), dense.T @ x.ravel(), atol=1e-11)
        if local:
            blocks = int(np.prod(y.numblocks))
            assert len(dict(y.__dask_graph__())) == 3 * blocks  # input, halo pieces, block


def test_cg_weights_background_and_float32():
    rng = np.random.default_rng(5)
    kernel, A = _problem(rng, boundary="zero")
    w = rng.random(A.shape[0])
    y = A @ rng.random(A.shape[1]) + 0.3
    damp = 0.3
    W = np.diag(w)
    expected = np.linalg.solve(A.T @ W @ A + damp**2 * np.eye(A.shape[1]), A.T @ W @ (y - 0.3))
    result = deconvolve_dask(da.from_array(y.reshape(20, 18).astype(np.float32), chunks=7),
                             kernel, damp=damp, weights=w.reshape(20, 18), background=0.3,
                             solver="cg", tol=1e-6, maxiter=60)
    assert result.x.dtype == np.float32
    np.testing.assert_allclose(result.x.compute().ravel(), expected, atol=1e-4)


def _numpy_rl(A, y, w, b, x, iterations):
    """Richardson-Lucy with Biggs-Andrews extrapolation, from the formulas (dense A)."""
    sensitivity, previous_step, previous_g = A.T @ w, x, None
    for _ in range(iterations):
        new = x * (A.T @ (w * y / (A @ x + b))) / sensitivity
        g = new - x
        alpha = 0.0 if previous_g is None else np.clip(
            g @ previous_g / (previous_g @ previous_g), 0, 1 - 1e-3)
        previous_g = g
        x, previous_step = np.maximum(new + alpha * (new - previous_step), 0), new
    return x


@pytest.fixture(params=["memory", "disk"])
def iterates(request, tmp_path):
    """The solvers' iterates persisted, or in files."""
    with dask.config.set({"linconv.iterates": request.param,
                          "linconv.temporary-directory": str(tmp_path)}):
        yield request.param


def test_richardson_lucy_on_dask_against_numpy(iterates):
    rng = np.random.default_rng(6)
    kernel, A = _problem(rng, boundary="symmetric")
    y = rng.poisson(A @ (50 * rng.random(A.shape[1])) + 2.0).astype(float)
    w = rng.random(A.shape[0])
    x0 = rng.random(A.shape[1]) + 0.5
    result = deconvolve_dask(da.from_array(y.reshape(20, 18), chunks=(6, 7)), kernel,
                             boundary="symmetric", solver="richardson-lucy", weights=w.reshape(
                                 20, 18), background=2.0, x0=x0.reshape(20, 18), maxiter=8)
    expected = _numpy_rl(A, y, w, 2.0, x0, 8)
    assert ("iterates on disk" in result.message) == (iterates == "disk")
    np.testing.assert_allclose(result.x.compute().ravel(), expected, rtol=1e-10)
    assert result.iterations == 8 and not result.converged  # maxiter, not a stopping rule
    assert result.residual_norms[-1] == pytest.approx(
        np.linalg.norm(np.sqrt(w) * (A @ expected + 2.0 - y)), rel=1e-10)
    # default start: the flat image with the data's flux, sum(w (y - b)) / sum(A^H w)
    ones = np.ones(A.shape[0])
    start = np.full(A.shape[1], (y - 1.0).sum() / (A.T @ ones).sum())
    result = deconvolve_dask(da.from_array(y.reshape(20, 18), chunks=10), kernel,
                             boundary="symmetric", solver="rl", background=1.0, maxiter=4)
    np.testing.assert_allclose(result.x.compute().ravel(),
                               _numpy_rl(A, y, ones, 1.0, start, 4), rtol=1e-10)
    assert np.all(result.x.compute() >= 0)


def test_richardson_lucy_stopping_rule_as_in_memory(iterates):
    """Without maxiter: the in-memory rule (risk estimate with a Monte-Carlo divergence),
    the same iterate and iteration count as linconv.deconvolve on the numpy array."""
    rng = np.random.default_rng(9)
    truth = np.zeros((32, 28))
    truth[8:24, 6:20] = 100.0
    truth[14:17, 10:13] = 400.0
    kernel = linconv.datasets.gaussian_kernel(7, 1.5)
    op = linconv.ConvolutionOperator(kernel, truth.shape, "same", boundary="reflect")
    y = rng.poisson(op.apply(truth) + 3.0).astype(float)
    options = dict(boundary="reflect", solver="rl", background=3.0)
    options["weights"] = (rng.random(y.shape) > 0.1) * rng.uniform(0.5, 1.5, y.shape)
    expected = linconv.deconvolve(y, kernel, **options)
    result = deconvolve_dask(da.from_array(y, chunks=(16, 15)), kernel, **options)
    assert ("iterates on disk" in result.message) == (iterates == "disk")
    assert (result.iterations, result.converged) == (expected.iterations, expected.converged)
    assert 5 < result.iterations < 60
    np.testing.assert_allclose(result.x.compute(), expected.x, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(result.residual_norms, expected.residual_norms, rtol=1e-10)


def test_probe_blocks_are_numpys_array():
    """The stopping rule's probe, generated block by block, is numpy's default_rng(0) array."""
    from linconv._dask import _probe_block
    shape = (7, 11, 13)
    expected = np.random.default_rng(0).choice(np.array([-1, 1], np.float32), shape)
    y = da.zeros(shape, chunks=((3, 4), (5, 1, 5), (2, 9, 2)), dtype=np.float32)
    import functools
    probe = y.map_blocks(functools.partial(_probe_block, shape, np.float32), dtype=np.float32)
    np.testing.assert_array_equal(probe.compute(), expected)


def test_auto_damp_and_frames():
    rng = np.random.default_rng(7)
    kernel, A = _problem(rng)
    frames = np.stack([(A @ rng.random(A.shape[1])).reshape(20, 18) for _ in range(3)])
    frames += 0.02 * rng.standard_normal(frames.shape)
    # one image up to 1024 per axis: the crop is the whole image
    single = deconvolve_dask(da.from_array(frames[0], chunks=8), kernel, boundary="reflect",
                             maxiter=5)
    assert single.damp == linconv.deconvolve(frames[0], kernel, boundary="reflect",
                                             solver="cg").damp
    assert "central 20x18 crop" in single.message
    # a stack: frame-parallel; damp per frame
    damp = 0.05
    result = deconvolve_dask(da.from_array(frames, chunks=(2, 8, 8)), kernel,
                             boundary="reflect", damp=damp, solver="cg", tol=1e-10)
    x, damps, converged = dask.compute(result.x, result.damp, result.converged)
    assert x.shape == frames.shape and damps.shape == (3,) and converged.all()
    for frame, estimate in zip(frames, x):
        expected = np.linalg.solve(A.T @ A + damp**2 * np.eye(A.shape[1]), A.T @ frame.ravel())
        np.testing.assert_allclose(estimate.ravel(), expected, atol=1e-7)
    auto = deconvolve_dask(da.from_array(frames, chunks=(1, 20, 18)), kernel,
                           boundary="reflect")
    damps = auto.damp.compute()
    assert damps.shape == (3,) and np.all(damps > 0)


@pytest.mark.parametrize("noise", [1e-1, 1e-3, 1e-6])
def test_auto_damp_is_the_in_memory_cgs(noise):
    """damp="auto" is the in-memory cg's choice, whose floor is 1e-3 ||A||, also for a
    separable kernel, where the in-memory default solver (svd) would go below it."""
    g = np.exp(-np.arange(-2, 3) ** 2 / 2.0)
    kernel = np.outer(g, g) / np.outer(g, g).sum()
    case = Case((20, 18), kernel.shape, "same", "reflect")
    A = dense_by_columns(lambda e: oracle_convolve(e, kernel, case), 360, (20, 18))
    rng = np.random.default_rng(12)
    y = A @ rng.random(360) + noise * rng.standard_normal(360)
    result = deconvolve_dask(da.from_array(y.reshape(20, 18), chunks=8), kernel,
                             boundary="reflect", noise_std=noise, maxiter=5)
    assert result.damp == linconv.deconvolve(y.reshape(20, 18), kernel, boundary="reflect",
                                             noise_std=noise, solver="cg").damp
    if noise < 1e-3:  # the floor binds: the residual at it (dense solve) exceeds the noise
        d = result.damp
        assert d == pytest.approx(1e-3)
        floored = np.linalg.solve(A.T @ A + d * d * np.eye(360), A.T @ y)
        assert np.sqrt(np.mean((A @ floored - y) ** 2)) > 2 * noise
        assert linconv.deconvolve(y.reshape(20, 18), kernel, boundary="reflect",
                                  noise_std=noise).damp < 0.2 * d  # svd's


def test_frames_take_the_in_memory_forms_of_the_options():
    """Per-frame damps, a background per frame or for all, weights of one frame, one x0 for
    all frames: each frame is the dense Tikhonov solve of its own problem."""
    rng = np.random.default_rng(13)
    kernel, A = _problem(rng)
    frames = np.stack([(A @ rng.random(A.shape[1])).reshape(20, 18) for _ in range(3)])
    damps = np.array([0.03, 0.1, 0.3])
    background = rng.uniform(0, 0.1, frames.shape)
    w = rng.uniform(0.5, 2.0, (20, 18))
    result = deconvolve_dask(da.from_array(frames, chunks=(1, 10, 9)), kernel,
                             boundary="reflect", damp=damps, background=background,
                             weights=w, x0=np.zeros((20, 18)), solver="cg", tol=1e-12,
                             maxiter=500)
    x, used = dask.compute(result.x, result.damp)
    np.testing.assert_array_equal(used, damps)
    W = np.diag(w.ravel())
    for frame, b, d, estimate in zip(frames, background, damps, x):
        expected = np.linalg.solve(A.T @ W @ A + d * d * np.eye(A.shape[1]),
                                   A.T @ W @ (frame - b).ravel())
        np.testing.assert_allclose(estimate.ravel(), expected, atol=1e-8)
    shared = deconvolve_dask(da.from_array(frames, chunks=(1, 10, 9)), kernel,
                             boundary="reflect", damp=0.1, background=background[0],
                             solver="cg", tol=1e-12, maxiter=500)
    for frame, estimate in zip(frames, shared.x.compute()):
        expected = np.linalg.solve(A.T @ A + 0.01 * np.eye(A.shape[1]),
                                   A.T @ (frame - background[0]).ravel())
        np.testing.assert_allclose(estimate.ravel(), expected, atol=1e-8)


def test_frames_report_the_solver_and_noise_and_check_options_at_once():
    rng = np.random.default_rng(14)
    g = np.exp(-np.arange(-2, 3) ** 2 / 2.0)
    kernel = np.outer(g, g) / np.outer(g, g).sum()
    frames = rng.random((3, 16, 16)) + 0.01 * rng.standard_normal((3, 16, 16))
    result = deconvolve_dask(da.from_array(frames, chunks=(1, 16, 16)), kernel)
    expected = linconv.deconvolve(frames, kernel)
    assert result.solver == expected.solver == "svd"
    np.testing.assert_allclose(result.noise_std.compute(), expected.noise_std, rtol=1e-12)
    assert result.residual_norms is None
    stack = da.from_array(frames, chunks=(1, 16, 16))
    for kwargs, match in (({"solver": "xx"}, "`solver` must be one of"),
                          ({"damp": -1.0}, "`damp` must be a non-negative"),
                          ({"tol": 5.0}, "`tol` must be a number in"),
                          ({"solver": "rl", "damp": 0.1}, "does not use `damp`"),
                          ({"solver": "svd", "boundary": "wrap", "x0": np.zeros((16, 16))},
                           "does not use `x0`")):
        with pytest.raises(ValueError, match=match):  # at the call, not at compute
            deconvolve_dask(stack, kernel, **kwargs)


@pytest.mark.parametrize("change,match", [
    (lambda y, w: (np.where(y > 0.9, np.nan, y), w), "`y` must be finite"),
    (lambda y, w: (np.where(w < 0.1, np.nan, y), w), "`y` must be finite"),  # even unweighted
    (lambda y, w: (y, w - 0.2), "`weights` must be finite, real and non-negative"),
    (lambda y, w: (y, np.where(w > 0.9, np.nan, w)), "`weights` must be finite, real"),
    (lambda y, w: (y, 0 * w), "`weights` are all zero"),
    (lambda y, w: (y, w + 0j), "`weights` must be finite, real and non-negative"),
])
@pytest.mark.parametrize("where", ["memory", "disk"])
def test_cg_refuses_the_data_the_in_memory_deconvolve_refuses(change, match, where, tmp_path):
    rng = np.random.default_rng(15)
    y, w = change(rng.random((16, 14)), rng.random((16, 14)))
    with pytest.raises(ValueError, match=match):
        linconv.deconvolve(y, np.ones((3, 3)) / 9, damp=0.05, weights=w, solver="cg")
    with dask.config.set({"linconv.iterates": where,
                          "linconv.temporary-directory": str(tmp_path)}):
        with pytest.raises(ValueError, match=match):
            deconvolve_dask(da.from_array(y, chunks=8), np.ones((3, 3)) / 9, damp=0.05,
                            weights=da.from_array(w, chunks=8), solver="cg", maxiter=3)
    with pytest.raises(ValueError, match="`noise_std` must be a positive finite number"):
        deconvolve_dask(da.from_array(y, chunks=8), np.ones((3, 3)) / 9, noise_std=-1.0)


def test_method_and_dtype_checks_reach_the_blocks():
    from linconv._dask import ChunkedCorrelation
    op = linconv.ConvolutionOperator(np.ones((3, 3)), (8, 8), "same", method="fft")
    assert ChunkedCorrelation.of(op)[0].method == "fft"
    assert ChunkedCorrelation.of(linconv.ConvolutionOperator(np.ones((3, 3)), (8, 8)))[0] \
        .method == "auto"  # each block chooses
    x = np.ones((8, 8))
    x[3, 4] = np.nan  # the FFT spreads a NaN over the whole image, a direct sum over 3x3
    assert np.isnan(op.apply(da.from_array(x, chunks=4)).compute()).sum() == 64
    with pytest.raises(TypeError, match="`x` must be a numeric array"):
        op.apply(da.zeros((8, 8), dtype="datetime64[s]"))


@pytest.mark.parametrize("kwargs", [{"damp": 0.1}, {"solver": "rl"}])
def test_noise_std_unused_warns_on_both_backends(kwargs):
    y = np.random.default_rng(16).random((12, 12))
    for data in (y, da.from_array(y, chunks=6)):
        with pytest.warns(UserWarning, match="`noise_std` is used only to choose damp='auto'"):
            result = linconv.deconvolve(data, np.ones((3, 3)) / 9, noise_std=0.5, maxiter=3,
                                        **kwargs)
        assert result.noise_std is None


@pytest.mark.parametrize("change,match", [
    (lambda y, kw: (y, dict(kw, maxiter=True)), "`maxiter` must be a positive integer"),
    (lambda y, kw: (y, dict(kw, preconditioner=None)), "does not use `preconditioner`"),
    (lambda y, kw: (np.where(kw["weights"] == 0, np.nan, y), kw), "`y` must be finite"),
])
def test_rl_refuses_what_the_in_memory_deconvolve_refuses(change, match):
    rng = np.random.default_rng(17)
    w = np.ones((16, 16))
    w[4, 4] = 0
    y, kwargs = change(rng.poisson(20, (16, 16)).astype(float), dict(weights=w, maxiter=3))
    for data in (y, da.from_array(y, chunks=8)):
        with pytest.raises(ValueError, match=match):
            linconv.deconvolve(data, np.ones((3, 3)) / 9, solver="rl", **kwargs)
    x = linconv.deconvolve(da.from_array(y, chunks=8), np.ones((3, 3)) / 9, solver="rl",
                           maxiter=3, tol=np.float32(1e-3)) if match.startswith("`max") else None
    assert x is None or x.iterations == 3  # numpy floats are numbers


def test_a_zero_dimensional_damp_is_a_number():
    y = np.random.default_rng(18).random((12, 12))
    for data in (y, da.from_array(y, chunks=6)):
        result = linconv.deconvolve(data, np.ones((3, 3)) / 9, damp=np.array(0.1), maxiter=3)
        assert result.damp == 0.1


def test_matvec_and_matmul_of_dask_vectors_stay_lazy():
    """scipy's matvec and ``@`` would compute a dask array into memory: they go through
    `apply` and return dask arrays, equal to the dense matrix's products."""
    rng = np.random.default_rng(19)
    kernel = rng.standard_normal((3, 4))
    op = linconv.ConvolutionOperator(kernel, (9, 8), "valid", boundary="reflect")
    dense = op.toarray()
    v, V = rng.standard_normal(72), rng.standard_normal((72, 3))
    u, U = rng.standard_normal(op.shape[0]), rng.standard_normal((op.shape[0], 2))
    for got, expected in ((op @ da.from_array(v, chunks=20), dense @ v),
                          (op.matvec(da.from_array(v, chunks=20)), dense @ v),
                          (op.dot(da.from_array(V, chunks=(20, 2))), dense @ V),
                          (op.matmat(da.from_array(V, chunks=(20, 2))), dense @ V),
                          (op.rmatvec(da.from_array(u, chunks=7)), dense.T @ u),
                          (op.rmatmat(da.from_array(U, chunks=7)), dense.T @ U),
                          (op.H @ da.from_array(u, chunks=7), dense.T @ u)):
        assert isinstance(got, da.Array)
        np.testing.assert_allclose(got.compute(), expected, atol=1e-12)
    with pytest.raises(ValueError, match="dimension mismatch"):
        op @ da.ones(71)


def test_the_errors_of_shapes_x0_and_per_frame_options():
    import warnings
    rng = np.random.default_rng(20)
    k = np.ones((3, 3)) / 9
    y = rng.random((12, 11))
    with pytest.raises(ValueError, match=r"`weights` must have the shape of `y` \(12, 11\)"):
        deconvolve_dask(da.from_array(y, chunks=5), k, damp=0.1, weights=np.ones((12, 10)))
    x0 = np.zeros((12, 11))
    x0[3, 4] = np.nan
    for data in (y, da.from_array(y, chunks=5)):
        with pytest.raises(ValueError, match="`x0` must be finite"):
            linconv.deconvolve(data, k, damp=0.1, solver="cg", x0=x0, maxiter=3)
    stack = da.from_array(rng.random((3, 12, 11)), chunks=(1, 12, 11))
    with pytest.raises(ValueError, match=r"`damp` must be a number or one per frame, shaped "
                                         r"like the stack's leading axes \(3,\)"):
        deconvolve_dask(stack, k, damp=np.array([0.1, 0.2]))
    with pytest.warns(UserWarning, match="`noise_std` is used only") as seen:
        result = linconv.deconvolve(stack, k, damp=0.1, noise_std=0.5, solver="cg", maxiter=3)
    assert len(seen) == 1 and seen[0].filename == __file__  # at the call, pointing here
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none more from the frames' tasks
        result.x.compute()


def test_local_cluster_processes():
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((64, 48))
    kernel = rng.standard_normal((5, 6))
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                  dashboard_address=":0", memory_limit="1GiB") as cluster, \
            distributed.Client(cluster):
        dx = da.from_array(x, chunks=(16, 20))
        y = linconv.convolve(dx, kernel, "same", boundary="wrap").compute()
        case = Case((64, 48), (5, 6), "same", "wrap")
        np.testing.assert_allclose(y, oracle_convolve(x, kernel, case), atol=1e-11)
        result = deconvolve_dask(dx, np.abs(kernel), damp=0.5, solver="cg", maxiter=2)
        on_cluster = result.x.compute()
    local = deconvolve_dask(dx, np.abs(kernel), damp=0.5, solver="cg", maxiter=2)
    np.testing.assert_allclose(on_cluster, local.x.compute(), rtol=1e-10, atol=1e-12)


def test_iterates_a_callback_keeps_are_not_overwritten(tmp_path):
    """The files of the iterates are written again once no array reads them: the lazy
    iterates a callback keeps still hold their own values after the solve (those of the
    solve with the iterates in memory)."""
    rng = np.random.default_rng(12)
    y = da.from_array(rng.random((24, 20)), chunks=(8, 10))
    kernel = linconv.datasets.gaussian_kernel(5, 1.0)
    seen = {}
    for where in ("memory", "disk"):
        seen[where] = []
        with dask.config.set({"linconv.iterates": where,
                              "linconv.temporary-directory": str(tmp_path)}):
            for solver in ("cg", "rl"):
                deconvolve_dask(y, kernel, damp=0.1 if solver == "cg" else 0, solver=solver,
                                maxiter=5, callback=seen[where].append)
        seen[where] = dask.compute(*seen[where])
    assert len(seen["disk"]) == 10
    for disk, memory in zip(seen["disk"], seen["memory"]):
        np.testing.assert_allclose(disk, memory, rtol=0, atol=1e-12)
    assert len({float(np.abs(x).sum()) for x in seen["disk"]}) == 10  # ten different iterates
