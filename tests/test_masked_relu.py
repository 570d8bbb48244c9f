"""Masksembles with activation="relu": ReLU and mask in one autograd node, equal to a ReLU
followed by the plain layer in values and gradients, for every rank, dtype and layout."""

import pytest
import torch
from torch import nn

from ensemblekit.layers import Masksembles, Masksembles1d, Masksembles2d, Masksembles3d
from ensemblekit.layers.masked_relu import masked_relu

SHAPES = [
    (Masksembles1d, (8, 12)),
    (Masksembles1d, (8, 12, 5)),
    (Masksembles2d, (8, 12, 5, 3)),
    (Masksembles3d, (8, 12, 2, 3, 4)),
    (Masksembles, (8, 12, 2, 2, 2, 2)),
]


def fused_and_unfused(layer_cls, channels=12, n=4, scale=2.0, seed=3):
    fused = layer_cls(channels, n, scale, seed=seed, activation="relu")
    unfused = nn.Sequential(nn.ReLU(), layer_cls(channels, n, scale, seed=seed))
    return fused, unfused


def values_and_input_gradient(module, x, upstream):
    x = x.detach().requires_grad_(True)
    y = module(x)
    y.backward(upstream)
    return y.detach(), x.grad


@pytest.mark.parametrize("layer_cls, shape", SHAPES)
def test_values_and_gradients_equal_relu_then_mask(layer_cls, shape):
    fused, unfused = fused_and_unfused(layer_cls)
    x, upstream = torch.randn(shape), torch.randn(shape)
    y, grad = values_and_input_gradient(fused, x, upstream)
    y_ref, grad_ref = values_and_input_gradient(unfused, x, upstream)
    assert torch.equal(y, y_ref) and torch.equal(grad, grad_ref)
    # Both gradient paths are non-trivial: kept active units pass, the rest are zero.
    assert (grad != 0).any() and (grad == 0).any()


def test_one_autograd_node():
    layer = Masksembles2d(8, 2, 2.0, seed=0, activation="relu")
    y = layer(torch.randn(4, 8, 3, 3, requires_grad=True))
    node = y.grad_fn
    while type(node).__name__ in ("ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0"):
        node = node.next_functions[0][0]
    assert "MaskedReLU" in type(node).__name__
    # its input is the (viewed) leaf: no separate ReLU or mask-multiply node in between
    upstream = {type(edge).__name__ for edge, _ in node.next_functions if edge is not None}
    assert not upstream & {"ReluBackward0", "MulBackward0"}


def test_gradcheck_and_double_backward_in_float64():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 2, 2, dtype=torch.float64, generator=generator)
    x = (x + 0.1 * x.sign()).requires_grad_(True)  # away from the kink at 0
    layer = Masksembles2d(6, 2, 2.0, seed=1, activation="relu")
    assert torch.autograd.gradcheck(layer, (x,))
    assert torch.autograd.gradgradcheck(layer, (x,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes(dtype):
    fused, unfused = fused_and_unfused(Masksembles2d, channels=8, n=2)
    x, upstream = torch.randn(4, 8, 3, 3).to(dtype), torch.randn(4, 8, 3, 3).to(dtype)
    y, grad = values_and_input_gradient(fused, x, upstream)
    y_ref, grad_ref = values_and_input_gradient(unfused, x, upstream)
    assert y.dtype == grad.dtype == dtype
    assert torch.equal(y, y_ref) and torch.equal(grad, grad_ref)


def test_bfloat16_autocast_trains_through_a_convolution():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    layer = Masksembles2d(8, 2, 2.0, seed=0, activation="relu")
    x = torch.randn(4, 3, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(conv(x))
        assert y.dtype == torch.bfloat16
        loss = y.float().square().sum()
    loss.backward()
    assert conv.weight.grad.dtype == torch.float32 and conv.weight.grad.abs().sum() > 0
    with torch.no_grad():
        reference = nn.Sequential(nn.ReLU(), Masksembles2d(8, 2, 2.0, seed=0))(conv(x))
    torch.testing.assert_close(y.float(), reference, rtol=2e-2, atol=2e-2)


def test_channels_last_stays_channels_last():
    fused, unfused = fused_and_unfused(Masksembles2d, channels=8, n=2)
    x = torch.randn(4, 8, 3, 5).contiguous(memory_format=torch.channels_last)
    upstream = torch.randn(4, 8, 3, 5).contiguous(memory_format=torch.channels_last)
    y, grad = values_and_input_gradient(fused, x, upstream)
    y_ref, grad_ref = values_and_input_gradient(unfused, x.contiguous(), upstream.contiguous())
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, y_ref) and torch.equal(grad, grad_ref)


def test_non_contiguous_upstream_gradient():
    layer = Masksembles2d(8, 2, 2.0, seed=0, activation="relu")
    x = torch.randn(4, 8, 3, 3)
    upstream = torch.randn(4, 3, 3, 8).permute(0, 3, 1, 2)
    _, grad = values_and_input_gradient(layer, x, upstream)
    expected = upstream * (layer(x) > 0)
    assert torch.equal(grad, expected)


def test_state_dict_is_the_plain_layers():
    fused = Masksembles2d(16, 4, 2.0, seed=1, activation="relu")
    plain = Masksembles2d(16, 4, 2.0, seed=2)
    assert list(fused.state_dict()) == list(plain.state_dict()) == ["masks"]
    plain.load_state_dict(fused.state_dict())
    assert torch.equal(plain.masks, fused.masks)


def test_bad_activation_names_the_choices():
    with pytest.raises(ValueError, match="activation must be None .* or 'relu'.*'gelu'"):
        Masksembles2d(8, 2, 2.0, activation="gelu")


def test_extra_repr_shows_the_activation():
    layer = Masksembles2d(16, 4, 2.5, activation="relu")
    assert repr(layer) == "Masksembles2d(channels=16, n=4, scale=2.5, activation='relu')"


def test_masked_relu_function_directly():
    x = torch.tensor([[-1.0, 2.0, 3.0], [4.0, -5.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    y = masked_relu(x, mask)
    assert torch.equal(y, torch.tensor([[0.0, 0.0, 3.0], [4.0, 0.0, 0.0]]))
    y.backward(torch.full_like(y, 7.0))
    assert torch.equal(x.grad, torch.tensor([[0.0, 0.0, 7.0], [7.0, 0.0, 0.0]]))


@pytest.mark.parametrize("channels_last", [False, True])
def test_infinities_and_nan_behave_as_relu_then_mask(channels_last):
    fused, unfused = fused_and_unfused(Masksembles2d, channels=6, n=2)
    x = torch.randn(4, 6, 2, 2)
    x[0, :, 0, 0], x[1, :, 0, 0], x[2, :, 0, 0] = float("nan"), float("inf"), -float("inf")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fused(x), unfused(x), rtol=0, atol=0, equal_nan=True)
