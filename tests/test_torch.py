"""from_torch against the torch modules themselves: forward, and the adjoint by autograd."""

import numpy as np
import pytest

import linconv

torch = pytest.importorskip("torch")
nn = torch.nn


def check_module(module, input_shape, batch=2):
    """op.apply + bias == module(x); op.H == the vector-Jacobian product of module."""
    module = module.double()
    op = linconv.from_torch(module, input_shape)
    x = torch.randn((batch,) + tuple(input_shape), dtype=torch.float64, requires_grad=True)
    y = module(x)
    bias = 0 if op.bias is None else (
        op.bias if isinstance(module, nn.Linear) else op.bias.reshape((-1,) + (1,) * (y.ndim - 2)))
    np.testing.assert_allclose(op.apply(x.detach().numpy()) + bias, y.detach().numpy(),
                               rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    (vjp,) = torch.autograd.grad(y, x, grad_outputs=g)
    np.testing.assert_allclose(op.H.apply(g.numpy()), vjp.numpy(), rtol=1e-12, atol=1e-12)
    return op


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Conv1d(2, 3, 4, stride=2, padding=1, dilation=2), (2, 13)),
    (lambda: nn.Conv1d(4, 2, 3, padding="same", groups=2, padding_mode="reflect"), (4, 9)),
    (lambda: nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"), (3, 7, 6)),
    (lambda: nn.Conv2d(2, 4, (2, 3), padding="same", padding_mode="replicate", bias=False),
     (2, 6, 5)),
    (lambda: nn.Conv2d(4, 4, 3, stride=(2, 1), padding=(1, 2), groups=4), (4, 8, 7)),
    (lambda: nn.Conv2d(2, 2, 3, padding="valid", dilation=2), (2, 9, 9)),
    (lambda: nn.Conv3d(2, 2, 2, stride=2, padding=1, padding_mode="circular"), (2, 4, 5, 3)),
])
def test_conv(make, shape):
    torch.manual_seed(0)
    module = make()
    op = check_module(module, shape)
    assert (op.bias is None) == (module.bias is None)
    assert op.weight.dtype == np.float64


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.ConvTranspose1d(2, 3, 3, stride=2, padding=1, output_padding=1), (2, 5)),
    (lambda: nn.ConvTranspose2d(4, 2, 3, stride=2, groups=2, dilation=2, bias=False), (4, 3, 4)),
    (lambda: nn.ConvTranspose2d(2, 3, (2, 3), stride=(3, 2), padding=(1, 0),
                                output_padding=(2, 1)), (2, 4, 3)),
    (lambda: nn.ConvTranspose3d(1, 2, 2, stride=2), (1, 2, 3, 2)),
])
def test_conv_transpose(make, shape):
    torch.manual_seed(1)
    check_module(make(), shape)


def test_linear_unfold_fold():
    torch.manual_seed(2)
    check_module(nn.Linear(5, 3), (5,))
    check_module(nn.Linear(4, 6, bias=False), (3, 4))  # over the last axis of (3, 4)
    op = check_module(nn.Unfold((2, 3), dilation=(1, 2), padding=1, stride=2), (2, 7, 8))
    assert op.bias is None
    fold = nn.Fold((7, 8), (2, 3), dilation=(1, 2), padding=1, stride=2)
    check_module(fold, op.output_shape)


def test_float32_module_keeps_float32_and_its_numbers():
    torch.manual_seed(3)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    op = linconv.from_torch(conv, (2, 5, 5))
    assert op.dtype == np.float32
    np.testing.assert_array_equal(op.weight, conv.weight.detach().numpy())
    x = torch.randn(1, 2, 5, 5)
    np.testing.assert_allclose(op.apply(x.numpy()) + op.bias[:, None, None],
                               conv(x).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_errors():
    with pytest.raises(TypeError, match="`module` must be torch.nn.Conv1d"):
        linconv.from_torch(nn.ReLU(), (3,))
    with pytest.raises(TypeError, match="`module` must be a torch.nn.Module"):
        linconv.from_torch(np.ones(3), (3,))
    with pytest.raises(ValueError, match="`input_shape` must be"):
        linconv.from_torch(nn.Conv2d(2, 2, 3), (1, 2, 8, 8))  # with a batch axis
    with pytest.raises(ValueError, match="in_features=5"):
        linconv.from_torch(nn.Linear(5, 2), (4,))
    with pytest.raises(ValueError, match=r"`input_shape` must be \(C \* 4, L\)"):
        linconv.from_torch(nn.Fold((4, 4), 2), (6, 9))
    with pytest.raises(ValueError, match="one column per window"):
        linconv.from_torch(nn.Fold((4, 4), 2), (8, 10))


def test_spectral_norm_is_not_the_operator_norm():
    """torch's spectral_norm normalises the reshaped (C_out, C_in k k) weight matrix
    (pytorch #13505); the layer's operator norm is another number."""
    torch.manual_seed(4)
    conv = nn.Conv2d(4, 4, 3, padding=1, bias=False).double()
    shape = (4, 8, 8)
    op = linconv.from_torch(conv, shape)
    dense = np.linalg.svd(op.toarray(), compute_uv=False)[0]
    true_norm = linconv.operator_norm(op)
    assert true_norm == pytest.approx(dense, rel=1e-10)
    sn = nn.utils.parametrizations.spectral_norm(conv, n_power_iterations=200)
    with torch.no_grad():
        sn(torch.zeros((1,) + shape, dtype=torch.float64))  # training mode: power iteration
    sigma = float(torch.linalg.matrix_norm(
        sn.parametrizations.weight.original.detach().reshape(4, -1), 2))
    normalised = linconv.from_torch(sn, shape)  # the weight after division by sigma
    assert sigma == pytest.approx(np.linalg.norm(op.weight.reshape(4, -1), 2), rel=1e-10)
    assert abs(sigma - true_norm) / true_norm > 0.1
    assert linconv.operator_norm(normalised) == pytest.approx(true_norm / sigma, rel=1e-6)
    assert linconv.operator_norm(normalised) != pytest.approx(1.0, abs=0.05)
