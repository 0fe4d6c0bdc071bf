"""What keeps the out-of-core cg small: stencils that read their blocks from the stores of
the kept iterates, and halo pieces that are copies.  Oracles: np.pad + scipy.signal
(tests/cases.py) and the dense normal equations."""

import functools

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
import dask  # noqa: E402

import linconv  # noqa: E402
from linconv._dask import _halo_pieces, _Iterates, deconvolve_dask  # noqa: E402

from cases import Case, dense_by_columns, oracle_convolve, random_array  # noqa: E402


@pytest.fixture(autouse=True)
def synchronous():
    with dask.config.set(scheduler="sync"):
        yield


def _kept(tmp_path, x, chunks):
    """`x` written to a file and read back, as the cg keeps its iterates on disk."""
    with dask.config.set({"linconv.iterates": "disk",
                          "linconv.temporary-directory": str(tmp_path)}):
        store = _Iterates(1)
    kept, _ = store.keep({"x": da.from_array(x, chunks=chunks)})
    return kept["x"], store


@pytest.mark.parametrize("boundary", ["zero", "symmetric", "wrap"])
def test_stencils_read_kept_blocks_from_the_store(tmp_path, boundary):
    """op.apply and op.H.apply of a kept array: the block tasks read the store themselves
    (nothing in the graph depends on the array's own read tasks), with the oracle's
    values."""
    rng = np.random.default_rng(0)
    kernel = rng.random((4, 3))
    case = Case((23, 19), (4, 3), "same", boundary)
    x = rng.random((23, 19))
    kept, _ = _kept(tmp_path, x, (6, 5))
    op = linconv.ConvolutionOperator(kernel, x.shape, "same", boundary=boundary)
    y = op.apply(kept)
    np.testing.assert_allclose(y.compute(), oracle_convolve(x, kernel, case), atol=1e-12)
    if boundary == "zero":  # P inside the edge blocks: the stencil's input is the store
        assert not set(dict(y.__dask_graph__())) & set(dict(kept.__dask_graph__()))
    dense = dense_by_columns(lambda e: oracle_convolve(e, kernel, case), x.size, x.shape)
    kept_y, _ = _kept(tmp_path, y.compute(), (5, 7))
    np.testing.assert_allclose(op.H.apply(kept_y).compute().ravel(),
                               dense.T @ y.compute().ravel(), atol=1e-12)


@pytest.mark.parametrize("boundary", ["zero", "reflect"])
def test_stencils_read_a_users_zarr_store(tmp_path, boundary):
    """An array of ``da.from_zarr`` is read by the block tasks themselves (the stencil's
    wavefront of whole blocks would otherwise wait on the workers), with the oracle's
    values; a computed array of it is not mistaken for the store."""
    pytest.importorskip("zarr")
    from linconv._dask import _store_of
    rng = np.random.default_rng(1)
    kernel = rng.random((5, 4))
    x = rng.random((31, 26)).astype(np.float32)
    da.to_zarr(da.from_array(x, chunks=(8, 9)), str(tmp_path / "x.zarr"))
    stored = da.from_zarr(str(tmp_path / "x.zarr"))
    assert _store_of(stored) is not None
    assert _store_of(stored + 1) is None and _store_of(stored[:10]) is None
    y = linconv.convolve(stored, kernel.astype(np.float32), "same", boundary=boundary)
    if boundary == "zero":
        assert not set(dict(y.__dask_graph__())) & set(dict(stored.__dask_graph__()))
    case = Case(x.shape, kernel.shape, "same", boundary)
    np.testing.assert_allclose(y.compute(), oracle_convolve(x.astype(float), kernel, case),
                               rtol=1e-5, atol=1e-5)
    shifted = linconv.convolve(stored + 1, kernel.astype(np.float32), "same",
                               boundary=boundary)
    np.testing.assert_allclose(shifted.compute(),
                               oracle_convolve(x.astype(float) + 1, kernel, case),
                               rtol=1e-5, atol=1e-5)


def test_halo_pieces_are_copies():
    """A view would keep the whole block on the worker (and dask would count the view)."""
    block = np.arange(60.0).reshape(6, 10)
    pieces = _halo_pieces((0, 1), ((1, 2), (2, 0)), block)
    assert pieces and all(p.base is None for p in pieces.values())
    np.testing.assert_array_equal(pieces[(-1, 0)], block[-1:])
    np.testing.assert_array_equal(pieces[(1, 1)], block[:2, :0])


def test_block_operators_share_one_spectrum():
    """The interior and edge blocks, forward and adjoint, of a float32 FFT blur round up
    to one transform grid: one spectrum in the process, not one per block geometry.
    Kernels and dtypes that differ get spectra of their own (scipy.signal oracle)."""
    import scipy.signal
    from linconv._dask import _cached_transform_pair, _local_operator
    _local_operator.cache_clear()
    _cached_transform_pair.cache_clear()
    rng = np.random.default_rng(2)
    x = rng.random((600, 600)).astype(np.float32)
    dx = da.from_array(x, chunks=200)
    results = {}
    for name, kernel in {"a": rng.random((7, 7)), "b": rng.random((7, 7))}.items():
        op = linconv.ConvolutionOperator(kernel.astype(np.float32), x.shape, "same",
                                         method="fft")
        results[name] = kernel, op.apply(dx).compute(), op.H.apply(dx).compute()
    assert _local_operator.cache_info().currsize >= 6  # interior and edge geometries
    assert _cached_transform_pair.cache_info().currsize == 2  # one spectrum per kernel
    for kernel, y, z in results.values():
        k32 = kernel.astype(np.float32).astype(np.float64)
        np.testing.assert_allclose(y, scipy.signal.convolve(x, k32, "same"), atol=2e-4)
        full = scipy.signal.correlate(x.astype(np.float64), k32, "full")
        np.testing.assert_allclose(z, full[3:-3, 3:-3], atol=2e-4)


def _dense_cg(N, b, iterations, x0=None):
    """Textbook CG on ``N x = b`` from `x0` (zero by default; Hestenes-Stiefel),
    `iterations` steps."""
    x = np.zeros_like(b) if x0 is None else x0.copy()
    r = b - N @ x
    p, gamma = r.copy(), r @ r
    for _ in range(iterations):
        q = N @ p
        alpha = gamma / (p @ q)
        x, r = x + alpha * p, r - alpha * q
        gamma, old = r @ r, gamma
        p = r + gamma / old * p
    return x


@pytest.mark.parametrize("mode, start, weighted, boundary", [("valid", None, False, "zero"),
                                                             ("same", "x0", False, "zero"),
                                                             ("same", None, True, "zero"),
                                                             ("same", None, True, "reflect"),
                                                             ("full", "x0", False, "edge")])
def test_cg_on_disk_equals_cg_in_memory(tmp_path, mode, start, weighted, boundary):
    """The passes of the iterates on disk compute the iterates of the one pass in memory,
    and both those of a textbook CG on the dense normal equations (from zero: the first
    update reads x from its task's input, the rest from the stores; from x0: all of them
    from the stores; with weights, kept on disk and read by the tasks that use them)."""
    rng = np.random.default_rng(3)
    kernel = rng.random((5, 5))
    kernel /= kernel.sum()
    shape = (24, 22)
    case = Case(shape, (5, 5), mode, boundary)
    A = dense_by_columns(lambda e: oracle_convolve(e, kernel, case), int(np.prod(shape)), shape)
    y = A @ rng.random(A.shape[1])
    out_shape = {"same": shape, "valid": (20, 18), "full": (28, 26)}[mode]
    w = rng.uniform(0.2, 2.0, y.size) if weighted else np.ones(y.size)
    damp, iterations = 0.5, 6
    x0 = rng.random(A.shape[1]) if start else None
    expected = _dense_cg(A.T @ (w[:, None] * A) + damp**2 * np.eye(A.shape[1]), A.T @ (w * y),
                         iterations, x0)
    results = {}
    for where in ("memory", "disk"):
        with dask.config.set({"linconv.iterates": where,
                              "linconv.temporary-directory": str(tmp_path)}):
            weights = da.from_array(w.reshape(out_shape), chunks=(7, 9)) if weighted else None
            result = deconvolve_dask(da.from_array(y.reshape(out_shape), chunks=(12, 10)),
                                     kernel, mode=mode, boundary=boundary, damp=damp,
                                     solver="cg", tol=1e-14,
                                     maxiter=iterations, weights=weights, x0=None if x0 is None
                                     else da.from_array(x0.reshape(shape), chunks=(12, 10)))
            assert f"iterates {'on disk' if where == 'disk' else 'in memory'}" in result.message
            assert result.iterations == iterations
            results[where] = (result.x.compute(), result.residual_norms)
    (xm, nm), (xd, nd) = results["memory"], results["disk"]
    np.testing.assert_allclose(xd, xm, rtol=0, atol=1e-12)
    np.testing.assert_allclose(nd, nm, rtol=1e-12)
    np.testing.assert_allclose(xd.ravel(), expected, atol=1e-10)
    misfit = A @ expected - y
    assert nd[-1] == pytest.approx(np.sqrt(misfit @ (w * misfit) + damp**2 * expected @ expected),
                                   rel=1e-10)


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_keep_returns_arrays_scalars_and_dots(tmp_path, where):
    """_Iterates.keep of arrays of two shapes with uneven chunks: the arrays back, the
    scalars' values, then the dots in the order given (numpy's dot products)."""
    rng = np.random.default_rng(4)
    a, b, u, v = rng.random((23, 19)), rng.random((9, 30)), rng.random((23, 19)), \
        rng.random((9, 30))
    with dask.config.set({"linconv.iterates": where,
                          "linconv.temporary-directory": str(tmp_path)}):
        store = _Iterates(1)
    arrays = {"a": da.from_array(a, chunks=(6, (4, 15))), "b": da.from_array(b, chunks=4)}
    kept, values = store.keep(arrays, [arrays["a"].sum()], dots=[
        ("b", da.from_array(v, chunks=5)), ("a", da.from_array(u, chunks=7)),
        ("a", arrays["a"])])
    np.testing.assert_array_equal(kept["a"].compute(), a)
    np.testing.assert_array_equal(kept["b"].compute(), b)
    np.testing.assert_allclose(values, [a.sum(), np.vdot(b, v), np.vdot(a, u), np.vdot(a, a)],
                               rtol=1e-13)


def test_elementwise_reads_kept_arrays_in_its_tasks(tmp_path):
    """An element-wise step with a kept array does not depend on the store's read tasks
    (roots that wait in the scheduler's queue), with numpy's values."""
    from linconv._dask import _elementwise, _plus_scaled
    rng = np.random.default_rng(5)
    x, z = rng.random((17, 13)), rng.random((17, 13))
    kept, _ = _kept(tmp_path, x, (5, 6))
    out = _elementwise(functools.partial(_plus_scaled, 0.25), da.from_array(z, chunks=4), kept)
    assert not set(dict(out.__dask_graph__())) & set(dict(kept.__dask_graph__()))
    np.testing.assert_allclose(out.compute(), z + 0.25 * x, rtol=1e-15)


@pytest.mark.parametrize("solver, weighted, rule", [("cg", False, False), ("cg", True, False),
                                                    ("rl", True, False), ("rl", False, True)])
def test_stencil_blocks_have_one_reader_on_disk(tmp_path, monkeypatch, solver, weighted, rule):
    """With the iterates on disk, every block a stencil computes in an iteration is read by
    one task (a second reader, or a read task it waits for, keeps it on the worker); the
    solve still equals the one with the iterates in memory."""
    from dask.core import get_deps
    rng = np.random.default_rng(6)
    y = rng.random((30, 26)) * 50 + 5
    w = rng.uniform(0.5, 1.5, y.shape) if weighted else None
    kernel = linconv.datasets.gaussian_kernel(5, 1.0)
    readers = []
    compute = dask.compute

    def spy(*collections, **kwargs):
        for c in collections:
            if dask.is_dask_collection(c):
                graph = dict(c.__dask_graph__())
                _, dependents = get_deps(graph)
                readers.append([len(dependents[k]) for k in graph
                                if isinstance(k, tuple) and k[0].startswith("linconv-block-")])
        return compute(*collections, **kwargs)

    options = dict(solver=solver, weights=None if w is None else da.from_array(w, chunks=8),
                   maxiter=None if rule else 3, damp=0.3 if solver == "cg" else 0)
    results = {}
    for where in ("memory", "disk"):
        with dask.config.set({"linconv.iterates": where,
                              "linconv.temporary-directory": str(tmp_path)}):
            if where == "disk":
                monkeypatch.setattr(dask, "compute", spy)
            result = deconvolve_dask(da.from_array(y, chunks=(10, 9)), kernel, **options)
            results[where] = result.x.compute()
            monkeypatch.setattr(dask, "compute", compute)
    setup = 2 if solver == "rl" else 0  # Richardson-Lucy's checks of the data and start
    stencils = 2 if solver == "cg" else 3  # per iteration (cg: N r in one, and A x)
    assert sum(len(call) for call in readers[setup:]) >= stencils * 9 * 3  # 9 blocks, 3 its
    assert all(n == 1 for call in readers[setup:] for n in call)
    np.testing.assert_allclose(results["disk"], results["memory"], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape, kernel_shape, mode, dilation, chunks, dtype, weighted, damp", [
    ((23,), (5,), "same", 1, 7, np.float64, False, 0.0),  # a last chunk thinner than the halo
    ((23,), (4,), "valid", 1, 6, np.float64, True, 0.3),
    ((23,), (3,), "full", 2, 5, np.complex128, False, 0.1),
    ((6,), (5,), "same", 1, 3, np.float64, False, 0.0),  # chunks thinner than the halo
    ((6,), (5,), "full", 1, ((1, 5),), np.float64, True, 0.0),
    ((17, 19), (3, 4), "same", 1, (6, 7), np.float32, False, 0.0),
    ((17, 19), (3, 3), "full", 1, ((5, 6, 6), (19,)), np.float64, True, 0.2),
    ((16, 18), (2, 5), "valid", (1, 2), (8, 9), np.complex128, True, 0.0),
    ((20, 21), (4, 4), "same", (2, 1), ((1, 9, 10), (10, 10, 1)), np.complex64, False, 0.2),
    ((9, 8, 10), (3, 2, 3), "same", 1, (4, 4, 5), np.float64, False, 0.5),
])
def test_normal_operator_in_one_stencil(tmp_path, shape, kernel_shape, mode, dilation, chunks,
                                        dtype, weighted, damp):
    """``A^H W A v + damp^2 v`` in one stencil task per block (zero boundary, stride 1)
    equals the dense normal equations of the oracle's matrix, on every kind of block:
    interior (the kernel's autocorrelation), edge (outputs that do not exist), thin."""
    from linconv._dask import ChunkedCorrelation, _fused_normal, _one_stencil_normal, _regular
    rng = np.random.default_rng(7)
    kernel = random_array(rng, kernel_shape, dtype)
    case = Case(shape, kernel_shape, mode, "zero", 1, dilation)
    A = dense_by_columns(lambda e: oracle_convolve(e, kernel, case), int(np.prod(shape)), shape,
                         dtype)
    op = linconv.ConvolutionOperator(kernel, shape, mode, dilation=dilation)
    out_shape = op.output_shape
    v = random_array(rng, shape, dtype)
    w = rng.uniform(0.2, 2.0, out_shape) if weighted else np.ones(out_shape)
    kept = _kept(tmp_path, w, 4)[0] if weighted else None
    chunked = ChunkedCorrelation.of(op)[0]
    vd = da.from_array(v, chunks=chunks)
    assert _one_stencil_normal(chunked, vd, kept)
    expected = A.conj().T @ (w.ravel() * (A @ v.ravel())) + damp**2 * v.ravel()
    tol = 1e-5 if np.dtype(dtype).itemsize * (1 + (np.dtype(dtype).kind != "c")) <= 8 else 1e-12
    got = _fused_normal(chunked, vd, kept, damp**2).compute()
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got.ravel(), expected, rtol=0, atol=tol * np.abs(expected).max())
    if _regular(vd) is vd:  # the tasks write the store, and sum Re <v, N v>
        _, store = _kept(tmp_path, np.zeros_like(v), chunks)
        out = store._new(["out"], vd)["out"]
        dot = _fused_normal(chunked, vd, kept, damp**2, out).sum().compute()
        np.testing.assert_allclose(out[...].ravel(), expected, rtol=0,
                                   atol=tol * np.abs(expected).max())
        assert dot == pytest.approx(np.vdot(v.ravel(), expected).real, rel=tol)


@pytest.mark.parametrize("boundary", ["reflect", "symmetric", "edge", "wrap"])
@pytest.mark.parametrize("shape, kernel_shape, mode, dilation, chunks, dtype, weighted, damp", [
    ((23,), (5,), "same", 1, 7, np.float64, False, 0.0),  # a last chunk thinner than the halo
    ((23,), (4,), "full", 1, 6, np.float64, True, 0.3),
    ((23,), (3,), "same", 2, 8, np.complex128, False, 0.1),
    ((8,), (5,), "same", 1, 8, np.float64, True, 0.0),  # one block: every margin inside
    ((17, 19), (3, 4), "same", 1, (6, 7), np.float32, False, 0.0),
    ((17, 19), (3, 3), "full", 1, ((6, 6, 5), (19,)), np.float64, True, 0.2),
    ((18, 20), (4, 4), "same", (2, 1), ((9, 9), (10, 10)), np.complex64, False, 0.2),
    ((9, 10, 10), (3, 2, 3), "same", 1, (5, 5, 5), np.float64, True, 0.5),
])
def test_normal_operator_in_one_stencil_with_boundary_rules(
        tmp_path, boundary, shape, kernel_shape, mode, dilation, chunks, dtype, weighted, damp):
    """With a boundary rule the edge blocks extend their window by it, run ``L``, the
    weights and ``L^H``, and add the margins back onto the samples they copy: ``P^H C^H W
    C P v + damp^2 v`` of the oracle's matrix (np.pad and scipy), where the margins copy
    samples of their own edge block; elsewhere (wrap over several blocks) two stencils."""
    from linconv._dask import ChunkedCorrelation, _fused_normal, _one_stencil_normal
    rng = np.random.default_rng(8)
    kernel = random_array(rng, kernel_shape, dtype)
    case = Case(shape, kernel_shape, mode, boundary, 1, dilation)
    A = dense_by_columns(lambda e: oracle_convolve(e, kernel, case), int(np.prod(shape)), shape,
                         dtype)
    op = linconv.ConvolutionOperator(kernel, shape, mode, boundary=boundary, dilation=dilation)
    v = random_array(rng, shape, dtype)
    w = rng.uniform(0.2, 2.0, op.output_shape) if weighted else np.ones(op.output_shape)
    kept = _kept(tmp_path, w, 4)[0] if weighted else None
    chunked = ChunkedCorrelation.of(op)[0]
    vd = da.from_array(v, chunks=chunks)
    # np.pad's margins: one stencil exactly where they copy samples of their own edge block
    local = True
    for n, ax, c in zip(shape, op.geometry.axes, vd.chunks):
        source = np.pad(np.arange(n), (ax.lo, ax.hi), mode=boundary)
        local &= bool(np.all(source[:ax.lo] < c[0]) and np.all(source[ax.lo + n:] >= n - c[-1]))
    assert _one_stencil_normal(chunked, vd, kept) == local
    if not local:
        return
    expected = A.conj().T @ (w.ravel() * (A @ v.ravel())) + damp**2 * v.ravel()
    tol = 1e-5 if np.dtype(dtype).itemsize * (1 + (np.dtype(dtype).kind != "c")) <= 8 else 1e-12
    got = _fused_normal(chunked, vd, kept, damp**2).compute()
    np.testing.assert_allclose(got.ravel(), expected, rtol=0, atol=tol * np.abs(expected).max())


def test_normal_operator_in_two_stencils_elsewhere(tmp_path):
    """Where one stencil does not apply (wrap over blocks, weights in memory, interior
    chunks thinner than the halo), the solver's two stencils run instead."""
    from linconv._dask import ChunkedCorrelation, _one_stencil_normal
    kernel = np.ones((5, 5)) / 25
    v = da.ones((20, 20), chunks=10)
    chunked = lambda **options: ChunkedCorrelation.of(
        linconv.ConvolutionOperator(kernel, (20, 20), "same", **options))[0]
    assert not _one_stencil_normal(chunked(boundary="wrap"), v, None)  # margins: far blocks
    assert _one_stencil_normal(chunked(boundary="reflect"), v, None)
    assert not _one_stencil_normal(chunked(stride=2), v, None)
    assert not _one_stencil_normal(chunked(), v, da.ones((20, 20), chunks=10))
    assert not _one_stencil_normal(chunked(), v.rechunk(((10, 3, 7), 10)), None)
    assert not _one_stencil_normal(chunked(), da.ones((2, 20, 20), chunks=10), None)
    assert _one_stencil_normal(chunked(), v, _kept(tmp_path, np.ones((20, 20)), 10)[0])


def test_richardson_lucy_on_disk_refuses_split_copies():
    """Richardson-Lucy's block functions read both copies of a block (the probe's
    product): arrays whose copies are split over blocks are refused, not summed wrongly."""
    from linconv._dask import _copies_in_one_block
    _copies_in_one_block(da.ones((2, 6), chunks=(2, 3)))
    with pytest.raises(RuntimeError, match="split over blocks"):
        _copies_in_one_block(da.ones((2, 6), chunks=(1, 3)))
