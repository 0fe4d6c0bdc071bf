"""Shared geometry cases and independent oracles for every backend's tests.

The oracles here use only numpy and scipy (np.pad, zero-inserted kernels,
scipy.signal.correlate, strided slicing, dense linear algebra); they never call
linconv, so a linconv bug cannot hide in them.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

import numpy as np
import scipy.signal

NUMPY_PAD_MODE = {"zero": "constant", "wrap": "wrap", "reflect": "reflect",
                  "symmetric": "symmetric", "edge": "edge"}
BOUNDARIES = tuple(NUMPY_PAD_MODE)


@dataclass(frozen=True)
class Case:
    """One convolution geometry: input shape, kernel shape and the keyword arguments."""

    input_shape: tuple
    kernel_shape: tuple
    mode: object = "full"
    boundary: str = "zero"
    stride: object = 1
    dilation: object = 1
    kwargs: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def id(self) -> str:
        def dims(shape):
            return "x".join(map(str, shape))

        def value(v):
            return str(v).replace(" ", "").replace("(", "").replace(")", "").replace(
                "[", "").replace("]", "").replace(",", "x")
        mode = self.mode if isinstance(self.mode, str) else f"pad{value(self.mode)}"
        return (f"n{dims(self.input_shape)}-k{dims(self.kernel_shape)}-{mode}-"
                f"s{value(self.stride)}-d{value(self.dilation)}-{self.boundary}")

    def options(self) -> dict:
        return dict(boundary=self.boundary, stride=self.stride, dilation=self.dilation)


def _c(n, k, mode="full", boundary="zero", stride=1, dilation=1):
    as_t = (lambda v: (v,) if isinstance(v, int) else tuple(v))
    return Case(as_t(n), as_t(k), mode, boundary, stride, dilation)


#: The shared table, reused by every backend's tests.
CASES = [
    # 1-D: every mode, odd and even kernels, kernels longer than the input
    _c(7, 3, "full"), _c(7, 4, "same"), _c(7, 3, "valid"), _c(8, 5, "same"),
    _c(4, 6, "full"), _c(4, 6, "same"), _c(5, 1, "valid"), _c(1, 1, "full"),
    # 1-D explicit padding, stride, dilation
    _c(9, 3, (2, 1)), _c(9, 3, 0, stride=2), _c(7, 4, "same", stride=2, dilation=2),
    _c(10, 3, "full", stride=3, dilation=2), _c(6, 2, "valid", stride=4),
    # 1-D boundaries, with pads wider than the input
    *[_c(7, 4, "same", b, 2, 2) for b in BOUNDARIES],
    *[_c(3, 5, "full", b) for b in BOUNDARIES],
    *[_c(4, 3, (9, 6), b) for b in BOUNDARIES],
    _c(1, 3, "same", "reflect"), _c(2, 3, (5, 4), "reflect"),
    # 2-D
    _c((6, 5), (3, 3), "same"), _c((6, 5), (2, 4), "same"), _c((5, 7), (3, 2), "full"),
    _c((8, 8), (3, 3), "valid", stride=2), _c((9, 7), (3, 2), "same", dilation=(2, 1)),
    _c((6, 5), (1, 3), "same"), _c((3, 4), (5, 5), "full"), _c((3, 4), (5, 5), "same"),
    _c((7, 6), (3, 3), [(1, 2), 0]), _c((7, 6), (2, 3), ((0, 3), (2, 1)), stride=(1, 2)),
    *[_c((6, 5), (3, 4), "same", b, (2, 1), (1, 2)) for b in BOUNDARIES],
    *[_c((3, 2), (4, 3), "full", b) for b in BOUNDARIES],
    # 3-D
    _c((4, 5, 3), (3, 2, 3), "same"), _c((4, 3, 5), (2, 2, 2), "full", stride=(1, 2, 2)),
    _c((5, 4, 4), (3, 1, 2), "valid", dilation=(2, 1, 1)),
    *[_c((4, 3, 5), (3, 2, 3), "same", b, (2, 1, 1), (1, 1, 2)) for b in BOUNDARIES],
]


def case_params(cases=CASES):
    import pytest
    return [pytest.param(c, id=c.id) for c in cases]


# -- the seeded random-geometry generator, for breadth ------------------------
def random_cases(seed: int, count: int) -> list[Case]:
    """`count` random geometries from `seed`: 1- to 3-D, every mode and boundary,
    explicit pads up to twice the input, strides and dilations up to 3.

    Geometries with no output (a "valid" or padded input shorter than the
    dilated kernel) are skipped.
    """
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        ndim = int(rng.choice([1, 1, 2, 2, 3]))
        n = tuple(int(v) for v in rng.integers(1, 9 if ndim < 3 else 5, ndim))
        k = tuple(int(v) for v in rng.integers(1, 6 if ndim < 3 else 4, ndim))
        stride = tuple(int(v) for v in rng.integers(1, 4, ndim))
        dilation = tuple(int(v) for v in rng.integers(1, 4, ndim))
        kind = rng.integers(4)
        if kind == 3:
            mode = [tuple(int(p) for p in rng.integers(0, 2 * nn + 3, 2)) for nn in n]
        else:
            mode = ["full", "same", "valid"][kind]
        case = Case(n, k, mode, str(rng.choice(BOUNDARIES)), stride, dilation)
        spans = [d * (kk - 1) + 1 for kk, d in zip(k, dilation)]
        if mode == "valid" and any(s > nn for s, nn in zip(spans, n)):
            continue
        if isinstance(mode, list) and any(nn + lo + hi < s for nn, (lo, hi), s
                                          in zip(n, mode, spans)):
            continue
        cases.append(case)
    return cases


#: The shared random sweep: 300 seeded geometries, for any backend's breadth test.
SWEEP = random_cases(seed=2026, count=300)


# -- the np.pad oracle --------------------------------------------------------
def oracle_pads(case: Case) -> list[tuple[int, int]]:
    """Padding per axis from the contract's formulas (written out independently)."""
    ndim = len(case.input_shape)
    dil = np.broadcast_to(case.dilation, ndim)
    spans = [d * (k - 1) + 1 for k, d in zip(case.kernel_shape, dil)]
    if case.mode == "valid":
        return [(0, 0)] * ndim
    if case.mode == "full":
        return [(s - 1, s - 1) for s in spans]
    if case.mode == "same":
        return [(s // 2, (s - 1) // 2) for s in spans]
    if isinstance(case.mode, int):
        return [(case.mode, case.mode)] * ndim
    if ndim == 1 and len(case.mode) == 2 and all(isinstance(m, int) for m in case.mode):
        return [tuple(case.mode)]
    return [(m, m) if isinstance(m, int) else tuple(m) for m in case.mode]


def dilate(kernel: np.ndarray, dilation) -> np.ndarray:
    """Zero-insert `dilation - 1` zeros between taps on every axis."""
    dil = np.broadcast_to(dilation, kernel.ndim)
    out = np.zeros([d * (k - 1) + 1 for k, d in zip(kernel.shape, dil)], kernel.dtype)
    out[tuple(slice(None, None, d) for d in dil)] = kernel
    return out


def oracle_correlate(x: np.ndarray, kernel: np.ndarray, case: Case) -> np.ndarray:
    """np.pad, then scipy's valid correlation with the dilated kernel, then strided slicing.

    scipy conjugates the second argument; linconv's correlation does not.
    """
    pads = oracle_pads(case)
    xp = np.pad(x, pads, mode=NUMPY_PAD_MODE[case.boundary])
    full = scipy.signal.correlate(xp, np.conj(dilate(kernel, case.dilation)), "valid",
                                  method="direct")
    stride = np.broadcast_to(case.stride, x.ndim)
    return full[tuple(slice(None, None, s) for s in stride)]


def oracle_convolve(x, kernel, case):
    return oracle_correlate(x, np.flip(kernel), case)


def dense_by_columns(apply, n_in: int, in_shape, dtype=float) -> np.ndarray:
    """The dense matrix of a linear map, column by column from unit impulses."""
    eye = np.eye(n_in, dtype=dtype)
    return np.stack([np.ravel(apply(e.reshape(in_shape))) for e in eye], axis=1)


def random_array(rng, shape, dtype=np.float64):
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    if dtype.kind in "iu":
        return rng.integers(-5, 6, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


# -- the operator contract ----------------------------------------------------
def check_operator_contract(op, rng, rtol=1e-12):
    """Dot test, .T vs .H, matmat vs matvec, batch apply and pickling of `op`."""
    m, n = op.shape
    assert m == np.prod(op.output_shape) and n == np.prod(op.input_shape)
    cdtype = np.result_type(op.dtype, np.complex64)
    x = random_array(rng, n, cdtype)
    y = random_array(rng, m, cdtype)
    Ax, AHy = op @ x, op.H @ y
    assert Ax.dtype == np.result_type(x, op.dtype)
    # dot test: <A x, y> == <x, A^H y>
    lhs, rhs = np.vdot(y, Ax), np.vdot(AHy, x)
    scale = np.linalg.norm(Ax) * np.linalg.norm(y) + 1e-300
    assert abs(lhs - rhs) <= rtol * scale, (lhs, rhs)
    # .T never conjugates, .H always does: A^T y == conj(A^H conj(y))
    np.testing.assert_allclose(op.T @ y, np.conj(op.H @ np.conj(y)), rtol=rtol, atol=rtol * scale)
    assert op.T.shape == op.H.shape == (n, m)
    assert op.T.T.shape == op.shape and op.H.H.shape == op.shape
    np.testing.assert_allclose(op.H.H @ x, Ax, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(op.T.T @ x, Ax, rtol=rtol, atol=rtol * scale)
    # matmat equals column-wise matvec, for both directions
    X = random_array(rng, (n, 3), op.dtype)
    Y = random_array(rng, (m, 3), op.dtype)
    np.testing.assert_allclose(op.matmat(X), np.stack([op.matvec(c) for c in X.T], 1),
                               rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(op.rmatmat(Y), np.stack([op.rmatvec(c) for c in Y.T], 1),
                               rtol=rtol, atol=rtol * scale)
    # batch apply equals item-wise matvec
    batch = random_array(rng, (2, 3) + tuple(op.input_shape), op.dtype)
    out = op.apply(batch)
    assert out.shape == (2, 3) + tuple(op.output_shape)
    np.testing.assert_allclose(out[1, 2].ravel(), op.matvec(batch[1, 2].ravel()),
                               rtol=rtol, atol=rtol * scale)
    # the sparse matrix is the operator
    np.testing.assert_allclose(op.tosparse() @ x, Ax, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(op.T.tosparse() @ y, op.T @ y, rtol=rtol, atol=rtol * scale)
    # pickling round trip
    clone = pickle.loads(pickle.dumps(op))
    np.testing.assert_array_equal(clone @ x, Ax)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(op.H)) @ y, AHy)
