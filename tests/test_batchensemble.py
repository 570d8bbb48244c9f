"""BatchEnsemble layers against the per-member definition W_i = W * (s_i r_i^T)."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ensemblekit.layers.batchensemble import (
    BatchEnsembleConv2d,
    BatchEnsembleLinear,
    batchensemble_parameter_groups,
)
from ensemblekit.members import repeat_members


def _perturb(layer):
    """Make biases and fast weights distinct per member so a mix-up would show."""
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.3)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 4),
    batch=st.integers(1, 3),
    in_features=st.integers(1, 6),
    out_features=st.integers(1, 6),
    bias=st.booleans(),
)
def test_linear_is_each_member_with_its_effective_weight(n, batch, in_features, out_features, bias):
    torch.manual_seed(n * 100 + batch)
    layer = BatchEnsembleLinear(in_features, out_features, n, bias=bias)
    _perturb(layer)
    x = torch.randn(n * batch, in_features)
    y = layer(x)
    assert y.shape == (n * batch, out_features)
    for i in range(n):
        weight = layer.weight * torch.outer(layer.s[i], layer.r[i])
        expected = F.linear(x[i * batch : (i + 1) * batch], weight)
        if bias:
            expected = expected + layer.bias[i]
        torch.testing.assert_close(y[i * batch : (i + 1) * batch], expected)
    torch.testing.assert_close(layer.effective_weight()[n - 1], weight)


def test_linear_accepts_extra_dims_per_row():
    layer = BatchEnsembleLinear(5, 3, 2)
    x = torch.randn(4, 7, 5)
    y = layer(x)
    assert y.shape == (4, 7, 3)
    member1 = F.linear(x[2:], layer.effective_weight()[1]) + layer.bias[1]
    torch.testing.assert_close(y[2:], member1)


@pytest.mark.parametrize("stride,padding,groups", [(1, 1, 1), (2, 0, 1), (1, 1, 2)])
def test_conv_is_each_member_with_its_effective_kernel(stride, padding, groups):
    torch.manual_seed(0)
    n, batch = 3, 2
    layer = BatchEnsembleConv2d(4, 6, 3, n, stride=stride, padding=padding, groups=groups)
    _perturb(layer)
    x = torch.randn(n * batch, 4, 7, 7)
    y = layer(x)
    for i in range(n):
        rows = slice(i * batch, (i + 1) * batch)
        # conv(x * r_i) * s_i + b_i, written out with broadcasting
        scaled = x[rows] * layer.r[i].view(1, -1, 1, 1)
        out = F.conv2d(scaled, layer.weight, None, stride, padding, 1, groups)
        expected = out * layer.s[i].view(1, -1, 1, 1) + layer.bias[i].view(1, -1, 1, 1)
        torch.testing.assert_close(y[rows], expected, rtol=1e-4, atol=1e-5)
        if groups == 1:
            kernel = layer.effective_weight()[i]
            direct = F.conv2d(x[rows], kernel, layer.bias[i], stride, padding)
            torch.testing.assert_close(y[rows], direct, rtol=1e-4, atol=1e-5)


def test_unit_fast_weights_and_shared_bias_equal_the_plain_layers():
    torch.manual_seed(1)
    linear = nn.Linear(5, 4)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    be_linear = BatchEnsembleLinear(5, 4, 3, init="ones")
    be_conv = BatchEnsembleConv2d(3, 5, 3, 3, padding=1, init="ones")
    with torch.no_grad():
        for plain, be in ((linear, be_linear), (conv, be_conv)):
            be.weight.copy_(plain.weight)
            be.bias.copy_(plain.bias.expand_as(be.bias))
    x = torch.randn(2, 5)
    torch.testing.assert_close(be_linear(repeat_members(x, 3)), repeat_members(linear(x), 3))
    image = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(
        be_conv(repeat_members(image, 3)), repeat_members(conv(image), 3), rtol=1e-5, atol=1e-6
    )


def test_fast_weight_initialisations():
    torch.manual_seed(0)
    normal = BatchEnsembleLinear(400, 500, 8)
    values = torch.cat([normal.r.flatten(), normal.s.flatten()]).detach()
    assert abs(values.mean().item() - 1.0) < 0.02
    assert abs(values.std().item() - 0.5) < 0.02
    signs = BatchEnsembleConv2d(64, 64, 3, 4, init="random_sign")
    values = torch.cat([signs.r.flatten(), signs.s.flatten()]).detach()
    assert set(values.unique().tolist()) == {-1.0, 1.0}
    assert 0.35 < (values > 0).float().mean().item() < 0.65
    ones = BatchEnsembleLinear(3, 3, 2, init="ones")
    assert torch.equal(ones.r.detach(), torch.ones(2, 3))


def test_shapes_of_parameters_and_no_bias():
    layer = BatchEnsembleConv2d(3, 8, (3, 5), 4, bias=False)
    assert layer.weight.shape == (8, 3, 3, 5)
    assert layer.r.shape == (4, 3) and layer.s.shape == (4, 8)
    assert layer.bias is None
    assert "n=4" in repr(layer)
    assert BatchEnsembleLinear(3, 2, 5).bias.shape == (5, 2)


def test_bad_inputs_raise_clear_errors():
    linear = BatchEnsembleLinear(4, 2, 3)
    with pytest.raises(ValueError, match="multiple of n.*repeat_members"):
        linear(torch.randn(4, 4))
    with pytest.raises(ValueError, match="in_features=4"):
        linear(torch.randn(3, 5))
    conv = BatchEnsembleConv2d(3, 4, 3, 2)
    with pytest.raises(ValueError, match="4D input"):
        conv(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="in_channels=3"):
        conv(torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError, match="init"):
        BatchEnsembleLinear(2, 2, 2, init="uniform")
    with pytest.raises(ValueError, match="groups"):
        BatchEnsembleConv2d(3, 4, 3, 2, groups=2)


def test_parameter_groups_exempt_fast_weights_from_decay():
    torch.manual_seed(0)
    model = nn.Sequential(
        BatchEnsembleConv2d(3, 4, 3, 2, bias=False),
        nn.BatchNorm2d(4),
        nn.Flatten(),
        BatchEnsembleLinear(4 * 4 * 4, 3, 2),
    )
    groups = batchensemble_parameter_groups(model, weight_decay=0.1, lr=0.2)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert [g["lr"] for g in groups] == [0.2, pytest.approx(0.1)]
    fast = {id(p) for layer in (model[0], model[3]) for p in (layer.r, layer.s)}
    assert {id(p) for p in groups[1]["params"]} == fast
    everything = [id(p) for g in groups for p in g["params"]]
    assert sorted(everything) == sorted(id(p) for p in model.parameters())
    # With no gradient, one decayed SGD step shrinks shared weights and leaves r, s alone.
    optimizer = torch.optim.SGD(groups, lr=0.2)
    before_r, before_w = model[3].r.detach().clone(), model[3].weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    assert torch.equal(model[3].r.detach(), before_r)
    torch.testing.assert_close(model[3].weight.detach(), before_w * (1 - 0.2 * 0.1))
    plain = batchensemble_parameter_groups(nn.Linear(2, 2), 0.1, 0.2, fast_weight_lr_multiplier=1)
    assert len(plain) == 1 and len(plain[0]["params"]) == 2


def test_gradients_reach_every_member_fast_weight():
    layer = BatchEnsembleLinear(3, 2, 4)
    layer(repeat_members(torch.randn(5, 3), 4)).square().sum().backward()
    assert (layer.r.grad.abs().sum(dim=1) > 0).all()
    assert (layer.s.grad.abs().sum(dim=1) > 0).all()
    assert layer.weight.grad is not None
