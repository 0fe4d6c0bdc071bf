"""Breadth: a seeded random-geometry sweep against the np.pad oracle and the dot test."""

import zlib

import numpy as np
import pytest

import linconv
from cases import BOUNDARIES, Case, check_operator_contract, oracle_correlate, random_array


def random_cases(seed: int, count: int):
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


SWEEP = random_cases(seed=2026, count=300)


@pytest.mark.parametrize("case", SWEEP, ids=[c.id for c in SWEEP])
def test_random_geometry(case):
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    h = random_array(rng, case.kernel_shape, np.complex128)
    x = random_array(rng, case.input_shape, np.complex128)
    expected = oracle_correlate(x, h, case)
    A = linconv.correlation_matrix(h, case.input_shape, case.mode, **case.options())
    np.testing.assert_allclose(A @ x.ravel(), expected.ravel(), rtol=1e-12, atol=1e-12)
    op = linconv.ConvolutionOperator(h, case.input_shape, case.mode, correlate=True,
                                     **case.options())
    assert op.output_shape == expected.shape
    y = random_array(rng, op.shape[0], np.complex128)
    lhs, rhs = np.vdot(y, op @ x.ravel()), np.vdot(op.H @ y, x.ravel())
    assert abs(lhs - rhs) <= 1e-12 * np.linalg.norm(op @ x.ravel()) * np.linalg.norm(y) + 1e-300


def test_sweep_contract_on_a_subset():
    rng = np.random.default_rng(3)
    for case in SWEEP[:40]:
        h = random_array(rng, case.kernel_shape, np.complex128)
        op = linconv.ConvolutionOperator(h, case.input_shape, case.mode, **case.options())
        check_operator_contract(op, rng)
