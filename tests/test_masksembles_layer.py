"""Masksembles layers: equivalence with the published per-group computation, state_dict,
dtypes, rank checks and error messages."""

import pytest
import torch
from torch import nn

from ensemblekit import (
    Masksembles,
    Masksembles1d,
    Masksembles2d,
    Masksembles3d,
    generate_masks,
    repeat_members,
    split_members,
)


def published_forward(x, masks):
    """Naive reference of the published layer: split into n groups, multiply group i by mask i."""
    n = masks.shape[0]
    groups = torch.chunk(x, n, dim=0)
    out = []
    for i, group in enumerate(groups):
        shape = (1, masks.shape[1]) + (1,) * (x.ndim - 2)
        out.append(group * masks[i].to(x.dtype).view(shape))
    return torch.cat(out, dim=0)


@pytest.mark.parametrize(
    "layer_cls, shape",
    [
        (Masksembles1d, (8, 12)),
        (Masksembles1d, (8, 12, 5)),
        (Masksembles2d, (8, 12, 5, 3)),
        (Masksembles3d, (8, 12, 2, 3, 4)),
        (Masksembles, (8, 12, 2, 2, 2, 2)),
    ],
)
def test_forward_equals_published_per_group_reference(layer_cls, shape):
    layer = layer_cls(12, 4, 2.0, seed=3)
    x = torch.randn(shape)
    assert torch.equal(layer(x), published_forward(x, layer.masks))


def test_forward_equals_reference_in_train_and_eval():
    layer = Masksembles2d(16, 4, 3.0, seed=0)
    x = torch.randn(8, 16, 4, 4)
    expected = published_forward(x, layer.masks)
    assert torch.equal(layer.train()(x), expected)
    assert torch.equal(layer.eval()(x), expected)


def test_tiled_inference_gives_each_member_its_mask():
    layer = Masksembles1d(10, 3, 2.0, seed=1)
    x = torch.randn(5, 10)
    members = split_members(layer(repeat_members(x, 3)), 3)
    for m in range(3):
        assert torch.equal(members[m], x * layer.masks[m].float())


def test_masks_come_from_generate_masks_with_seed():
    assert torch.equal(Masksembles2d(32, 4, 2.0, seed=5).masks, generate_masks(32, 4, 2.0, seed=5))


def test_state_dict_holds_masks_and_restores_them_exactly():
    source = Masksembles2d(64, 4, 2.0, seed=1)
    assert "masks" in source.state_dict()
    target = Masksembles2d(64, 4, 2.0, seed=2)
    assert not torch.equal(source.masks, target.masks)
    target.load_state_dict(source.state_dict())
    assert torch.equal(source.masks, target.masks)
    x = torch.randn(8, 64, 3, 3)
    assert torch.equal(source(x), target(x))


def test_state_dict_round_trip_through_a_file(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), Masksembles2d(16, 4, 2.0, seed=0))
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(999)
    fresh = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), Masksembles2d(16, 4, 2.0))
    fresh.load_state_dict(torch.load(path, weights_only=True))
    x = torch.randn(4, 3, 6, 6)
    assert torch.equal(model(x), fresh(x))


def test_masks_buffer_moves_with_to():
    layer = Masksembles1d(8, 2, 2.0, seed=0).to(torch.float64)
    assert layer.masks.dtype == torch.bool  # bool buffers keep their dtype under .to(dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_output_keeps_input_dtype(dtype):
    layer = Masksembles2d(8, 2, 2.0, seed=0)
    x = torch.randn(4, 8, 3, 3).to(dtype)
    y = layer(x)
    assert y.dtype == dtype
    assert torch.equal(y, published_forward(x, layer.masks))


def test_backward_is_masked_gradient():
    layer = Masksembles2d(6, 2, 2.0, seed=0)
    x = torch.randn(4, 6, 2, 2, requires_grad=True)
    upstream = torch.randn(4, 6, 2, 2)
    layer(x).backward(upstream)
    assert torch.equal(x.grad, published_forward(upstream, layer.masks))


def test_non_contiguous_input():
    layer = Masksembles2d(8, 2, 2.0, seed=0)
    x = torch.randn(4, 3, 3, 8).permute(0, 3, 1, 2)
    assert torch.equal(layer(x), published_forward(x.contiguous(), layer.masks))


def test_scale_one_is_identity():
    layer = Masksembles2d(8, 4, 1.0, seed=0)
    x = torch.randn(8, 8, 2, 2)
    assert torch.equal(layer(x), x)


def test_batch_not_multiple_of_n_names_b_n_and_fix():
    layer = Masksembles2d(8, 4, 2.0, seed=0)
    with pytest.raises(ValueError) as info:
        layer(torch.randn(6, 8, 2, 2))
    message = str(info.value)
    assert "n=4" in message and "B=6" in message
    assert "repeat_members" in message and "drop_last=True" in message


def test_wrong_channel_count_names_expected_and_got():
    with pytest.raises(ValueError, match="channels=8 but got an input with 5 channels"):
        Masksembles2d(8, 2, 2.0)(torch.randn(4, 5, 2, 2))


@pytest.mark.parametrize(
    "layer_cls, shape",
    [
        (Masksembles1d, (4, 8, 2, 2)),
        (Masksembles2d, (4, 8)),
        (Masksembles2d, (4, 8, 2)),
        (Masksembles3d, (4, 8, 2, 2)),
        (Masksembles, (8,)),
    ],
)
def test_rank_checks(layer_cls, shape):
    layer = layer_cls(8, 2, 2.0, seed=0)
    with pytest.raises(ValueError, match="expects"):
        layer(torch.randn(shape))


@pytest.mark.parametrize(
    "args, fragment",
    [
        ((0, 2, 2.0), "channels must be an integer >= 1"),
        ((8, 0, 2.0), "n must be an integer >= 1"),
        ((8, 2, 0.9), "scale must satisfy 1.0 <= scale, got 0.9"),
        ((8, 2, float("nan")), "scale must be a finite number"),
    ],
)
def test_constructor_errors(args, fragment):
    with pytest.raises(ValueError) as info:
        Masksembles2d(*args)
    assert fragment in str(info.value)


def test_extra_repr_shows_channels_n_scale():
    assert repr(Masksembles2d(16, 4, 2.5)) == "Masksembles2d(channels=16, n=4, scale=2.5)"
