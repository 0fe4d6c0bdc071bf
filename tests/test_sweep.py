"""Breadth: the seeded random-geometry sweep against the np.pad oracle and the dot test."""

import numpy as np
import pytest

import linconv
from cases import SWEEP, case_params, check_operator_contract, oracle_correlate, random_array


@pytest.mark.parametrize("case", case_params(SWEEP))
def test_random_geometry(case, rng):
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


def test_sweep_contract_on_a_subset(rng):
    for case in SWEEP[:40]:
        h = random_array(rng, case.kernel_shape, np.complex128)
        op = linconv.ConvolutionOperator(h, case.input_shape, case.mode, **case.options())
        check_operator_contract(op, rng)
