"""Threads and processes: fork safety, shared operators, the worker count (issue 12)."""

import multiprocessing
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.fft
import scipy.signal

import linconv
import linconv._engines as engines



def _child_apply(op, x, queue):
    queue.put(op.apply(x))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_applies_after_a_banded_direct_apply(monkeypatch, rng):
    monkeypatch.setattr(engines, "BAND_MIN", 64)
    calls = []
    real = engines._pool
    monkeypatch.setattr(engines, "_pool", lambda workers: calls.append(workers) or real(workers))
    x = rng.standard_normal((96, 64))
    h = rng.standard_normal((3, 3))
    op = linconv.ConvolutionOperator(h, x.shape, "same", method="direct")
    with linconv.set_workers(2):
        parent = op.apply(x)  # the module's thread pool now has live threads
        assert calls, "the banded (threaded) path did not run"
        np.testing.assert_allclose(parent, scipy.signal.convolve(x, h, "same"), rtol=1e-12)
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_child_apply, args=(op, x, queue))
        child.start()
        try:
            result = queue.get(timeout=60)  # a deadlocked child never answers
        finally:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
    assert child.exitcode == 0
    np.testing.assert_allclose(result, parent, rtol=1e-13)


def _dtype_oracle(x, h, mode):
    return scipy.signal.convolve(x.astype(np.float64), h.astype(np.float64), mode)


@pytest.mark.parametrize("method", ["direct", "fft", "sparse"])
def test_eight_threads_share_one_operator(method, monkeypatch, rng):
    monkeypatch.setattr(engines, "BAND_MIN", 64)
    h = rng.standard_normal((5, 4)).astype(np.float32)
    shape = (48, 40)
    op = linconv.ConvolutionOperator(h, shape, "same", method=method)  # nothing computed yet
    inputs = [rng.standard_normal((2,) + shape).astype(np.float32 if i % 2 else np.float64)
              for i in range(8)]
    barrier = threading.Barrier(8)

    def work(x):
        barrier.wait(timeout=60)  # all eight reach first use together
        return op.apply(x), op.H.apply(x), op.T @ x[0].ravel()

    with linconv.set_workers(2), ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, inputs))
    for x, (forward, adjoint, transpose) in zip(inputs, results):
        tol = 1e-4 if x.dtype == np.float32 else 1e-12
        assert forward.dtype == x.dtype
        expected = np.stack([_dtype_oracle(xi, h, "same") for xi in x])
        np.testing.assert_allclose(forward, expected, rtol=tol, atol=tol * 10)
        # adjoint of the "same" convolution: correlation with the kernel, "same" window
        # of the full correlation (scipy's own anchor)
        full = np.stack([scipy.signal.correlate(xi.astype(np.float64), h.astype(np.float64),
                                                "full") for xi in x])
        lo = [k // 2 for k in h.shape]
        window = full[:, lo[0]:lo[0] + shape[0], lo[1]:lo[1] + shape[1]]
        np.testing.assert_allclose(adjoint, window, rtol=tol, atol=tol * 10)
        np.testing.assert_allclose(transpose, window[0].ravel(), rtol=tol, atol=tol * 10)


def test_available_cpus_follows_the_affinity_mask(monkeypatch):
    engines.available_cpus.cache_clear()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    try:
        assert engines.available_cpus() == 1
        assert linconv.get_workers() == 1
    finally:
        engines.available_cpus.cache_clear()
    if hasattr(os, "sched_getaffinity"):
        monkeypatch.undo()
        assert engines.available_cpus() <= len(os.sched_getaffinity(0))


def test_available_cpus_follows_the_cgroup_quota(monkeypatch, tmp_path):
    import builtins
    real_open = builtins.open
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")  # 1.5 CPUs

    def fake_open(path, *args, **kwargs):
        if str(path) == "/sys/fs/cgroup/cpu.max":
            return real_open(quota, *args, **kwargs)
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(builtins, "open", fake_open)
    engines.available_cpus.cache_clear()
    try:
        assert engines.available_cpus() == 2
        quota.write_text("max 100000\n")
        engines.available_cpus.cache_clear()
        assert engines.available_cpus() == 8
    finally:
        monkeypatch.undo()
        engines.available_cpus.cache_clear()


def test_fft_follows_scipy_and_linconv_worker_settings(monkeypatch, rng):
    x = rng.standard_normal((64, 64))
    h = rng.standard_normal((9, 9))
    expected = scipy.signal.convolve(x, h, "same")
    seen = []
    real = scipy.fft.rfftn

    def spy(*args, workers=None, **kwargs):
        seen.append(workers)
        return real(*args, workers=workers, **kwargs)
    monkeypatch.setattr(engines.sp_fft, "rfftn", spy)
    op = linconv.ConvolutionOperator(h, x.shape, "same", method="fft")
    with scipy.fft.set_workers(1):
        np.testing.assert_allclose(op.apply(x), expected, rtol=1e-12, atol=1e-12)
    assert seen and set(seen) == {1}
    seen.clear()
    with scipy.fft.set_workers(1), linconv.set_workers(2):  # linconv's own wins
        np.testing.assert_allclose(op.apply(x), expected, rtol=1e-12, atol=1e-12)
    assert set(seen) == {2}
    seen.clear()
    with linconv.set_workers(-1):
        op.apply(x)
    assert set(seen) == {engines.available_cpus()}
    with pytest.raises(ValueError, match=r"`workers` must be a non-zero integer; got 0"):
        with linconv.set_workers(0):
            pass


def test_set_workers_is_per_thread():
    seen = {}

    def other():  # a fresh thread: no setting of linconv's or scipy's
        seen["other"] = linconv.get_workers()
        seen["scipy"] = engines._scipy_workers()
    with linconv.set_workers(1):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert linconv.get_workers() == 1
    assert seen["scipy"] is None
    assert seen["other"] == engines.available_cpus()
