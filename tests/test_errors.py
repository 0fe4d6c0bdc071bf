"""Every bad argument gets a TypeError/ValueError that names it and the value received."""

import numpy as np
import pytest

import linconv

K3 = np.ones(3)
K33 = np.ones((3, 3))


@pytest.mark.parametrize("call,error,match", [
    # kernel
    (lambda: linconv.convolution_matrix(np.ones(0), 4), ValueError, r"`kernel` must not be empty"),
    (lambda: linconv.convolution_matrix(2.0, 4), ValueError, r"`kernel` must have at least one"),
    (lambda: linconv.convolution_matrix(np.ones(3, bool), 4), TypeError, r"`kernel` must be numeric, not bool"),
    (lambda: linconv.convolution_matrix(np.array(["a"]), 4), TypeError, r"`kernel` must have an integer"),
    (lambda: linconv.convolution_matrix(np.array([1, None]), 4), TypeError, r"linconv.symbolic"),
    (lambda: linconv.convolution_matrix([1.0, np.nan], 4), ValueError, r"`kernel` must be finite"),
    (lambda: linconv.convolution_matrix([[1, 2], [3]], 4), TypeError, r"`kernel` must be a numeric"),
    (lambda: linconv.convolution_matrix(K33, 4), ValueError, r"one axis per input axis \(1\).*\(3, 3\)"),
    # input_shape
    (lambda: linconv.convolution_matrix(K3, 0), ValueError, r"`input_shape` must be a non-empty.*\(0,\)"),
    (lambda: linconv.convolution_matrix(K3, ()), ValueError, r"`input_shape` must be a non-empty"),
    (lambda: linconv.convolution_matrix(K3, 4.0), TypeError, r"`input_shape` must be an int.*4.0"),
    (lambda: linconv.convolution_matrix(K3, (4.5,)), TypeError, r"`input_shape` must contain only integers"),
    # mode / padding
    (lambda: linconv.convolution_matrix(K3, 4, "sme"), ValueError, r"`mode` must be 'full', 'same', 'valid'.*'sme'"),
    (lambda: linconv.convolution_matrix(K3, 4, -1), ValueError, r"`mode` must be non-negative \(explicit padding\); got -1"),
    (lambda: linconv.convolution_matrix(K33, (4, 4), (1, 2, 3)), ValueError, r"one entry per axis \(2\)"),
    (lambda: linconv.convolution_matrix(K33, (4, 4), [(1, 2, 3), 1]), TypeError, r"`mode` entries must be"),
    (lambda: linconv.convolution_matrix(K3, 4, 1.5), TypeError, r"`mode` must be 'full'.*1.5"),
    (lambda: linconv.convolution_matrix(np.ones(5), 3, "valid"), ValueError, r"output would be empty along axis 0"),
    (lambda: linconv.convolution_matrix(K3, 4, "valid", dilation=2), ValueError, r"span 5"),
    # boundary
    (lambda: linconv.convolution_matrix(K3, 4, boundary="periodic"), ValueError, r"linconv calls this rule 'wrap'"),
    (lambda: linconv.convolution_matrix(K3, 4, boundary="mirror"), ValueError, r"'mirror'.*linconv calls this rule 'reflect'"),
    (lambda: linconv.convolution_matrix(K3, 4, boundary="nearest"), ValueError, r"'edge'"),
    (lambda: linconv.convolution_matrix(K3, 4, boundary="symm"), ValueError, r"'symmetric'"),
    (lambda: linconv.convolution_matrix(K3, 4, boundary="circular"), ValueError, r"'wrap'"),
    (lambda: linconv.convolution_matrix(K3, 4, boundary="replicate"), ValueError, r"'edge'"),
    (lambda: linconv.convolution_matrix(K3, 4, boundary="zeros"), ValueError, r"'zero'"),
    (lambda: linconv.convolution_matrix(K3, 4, boundary="bogus"), ValueError, r"`boundary` must be one of.*'bogus'"),
    (lambda: linconv.convolution_matrix(K3, 4, boundary=0), TypeError, r"`boundary` must be a string"),
    # stride / dilation
    (lambda: linconv.convolution_matrix(K3, 4, stride=0), ValueError, r"`stride` must be a positive integer.*got 0"),
    (lambda: linconv.convolution_matrix(K33, (4, 4), stride=(1, -2)), ValueError, r"`stride`.*\(1, -2\)"),
    (lambda: linconv.convolution_matrix(K33, (4, 4), stride=(1, 2, 3)), ValueError, r"`stride` must have one entry per axis \(2\)"),
    (lambda: linconv.convolution_matrix(K3, 4, stride=1.5), TypeError, r"`stride` must be an int"),
    (lambda: linconv.convolution_matrix(K3, 4, dilation=0), ValueError, r"`dilation` must be a positive integer.*got 0"),
    (lambda: linconv.convolution_matrix(K3, 4, dilation=True), TypeError, r"`dilation` must be an int"),
    # format / method / dtype
    (lambda: linconv.convolution_matrix(K3, 4, format="dense"), ValueError, r"`format` must be one of.*'dense'"),
    (lambda: linconv.ConvolutionOperator(K3, 4, method="magic"), ValueError, r"`method` must be one of.*'magic'"),
    (lambda: linconv.ConvolutionOperator(K3, 4, dtype=np.int32), ValueError, r"`dtype` must be float32.*int32"),
    (lambda: linconv.ConvolutionOperator(K3, 4, dtype="nonsense"), TypeError, r"`dtype` must be a numpy dtype"),
    (lambda: linconv.ConvolutionOperator([1j, 1], 4, dtype=np.float64), ValueError, r"imaginary part"),
    # data
    (lambda: linconv.ConvolutionOperator(K3, 4).apply(np.ones(5)), ValueError, r"`x` must have shape \(\*batch, 4\); got \(5,\)"),
    (lambda: linconv.ConvolutionOperator(K33, (4, 4)).apply(np.ones(4)), ValueError, r"`x` must have shape"),
    (lambda: linconv.convolve(np.ones((4, 4)), K3), ValueError, r"same number of dimensions.*\(4, 4\).*\(3,\)"),
    (lambda: linconv.convolve(np.array(["a", "b"]), K3), TypeError, r"`x` must be a numeric array"),
    (lambda: linconv.convolution_matrix(__import__("scipy.sparse").sparse.eye_array(3), (3, 3)),
     TypeError, r"`kernel` must be a dense array-like"),
])
def test_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_sparse_matrix_too_large_is_refused_before_allocating(monkeypatch):
    import linconv._validation as validation
    monkeypatch.setattr(validation, "available_memory", lambda: 10_000)
    monkeypatch.setattr(validation, "_SMALL", 0)
    with pytest.raises(MemoryError, match=r"ConvolutionOperator"):
        linconv.convolution_matrix(np.ones((5, 5)), (64, 64), "same")
    op = linconv.ConvolutionOperator(np.ones((5, 5)), (64, 64), "same", method="sparse")
    with pytest.raises(MemoryError, match=r"GiB.*matrix-free"):  # on first use
        op.apply(np.ones((64, 64)))


def test_huge_matrix_refused_on_this_machine():
    # 10^6 x 10^6 pixels with a 31x31 kernel: about 10^15 entries
    with pytest.raises(MemoryError, match=r"matrix-free"):
        linconv.convolution_matrix(np.ones((31, 31)), (10**6, 10**6), "same")


@pytest.mark.parametrize("call", [
    lambda: linconv.unfold(np.broadcast_to(np.float32(0), (64, 20000, 20000)), 3, padding=1),
    lambda: linconv.fold(np.broadcast_to(np.float32(0), (64 * 9, 20000 * 20000)),
                         (20000, 20000), 3, padding=1)])
def test_unfold_and_fold_refuse_huge_inputs_with_a_message(call):
    with pytest.raises(MemoryError, match=r"(un)?fold of 64 channel\(s\).*GiB.*matrix-free"):
        call()


@pytest.mark.parametrize("call,match", [
    (lambda: linconv.ConvolutionOperator(np.ones((3, 3)), (5, 5), -1),
     r"`mode` must be non-negative \(explicit padding\); got -1$"),
    (lambda: linconv.conv_operator(np.ones((1, 1, 3, 3)), (1, 5, 5), padding=(1, (0, -2))),
     r"`padding` must be non-negative \(explicit padding\); got \(1, \(0, -2\)\)$")])
def test_negative_padding_reports_the_value_given(call, match):
    with pytest.raises(ValueError, match=match):
        call()
