"""repeat_members / split_members: the member-major layout."""

import pytest
import torch

from ensemblekit import repeat_members, split_members


def test_repeat_is_member_major():
    x = torch.arange(6.0).reshape(3, 2)
    tiled = repeat_members(x, 4)
    assert tiled.shape == (12, 2)
    for m in range(4):
        assert torch.equal(tiled[m * 3 : (m + 1) * 3], x)


def test_split_inverts_repeat():
    x = torch.randn(5, 3, 2, 2)
    y = split_members(repeat_members(x, 3), 3)
    assert y.shape == (3, 5, 3, 2, 2)
    assert all(torch.equal(y[m], x) for m in range(3))


def test_split_rejects_indivisible_batch_with_fix():
    with pytest.raises(ValueError, match="multiple of n=4, got batch size 6.*repeat_members"):
        split_members(torch.zeros(6, 2), 4)


def test_errors_name_parameter():
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        repeat_members(torch.zeros(2, 2), 0)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        repeat_members([1, 2], 2)
