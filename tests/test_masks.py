"""generate_masks / mask_stats: statistics, determinism, edge cases, errors."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ensemblekit import generate_masks, mask_stats
from ensemblekit.masks import keep_fraction


def published_keep_fraction(n, scale):
    return 1.0 / (scale * (1.0 - (1.0 - 1.0 / scale) ** n))


@pytest.mark.parametrize("channels", [16, 64, 256, 512])
@pytest.mark.parametrize("n", [2, 4, 8])
@pytest.mark.parametrize("scale", [1.5, 2.0, 3.0, 5.0])
def test_statistics_match_published_construction(channels, n, scale):
    masks = generate_masks(channels, n, scale, seed=0)
    stats = mask_stats(masks)
    sizes = masks.sum(dim=1)
    assert masks.shape == (n, channels) and masks.dtype == torch.bool
    assert torch.all(sizes == sizes[0]), "every mask must have the same number of ones"
    assert stats["coverage"] == 1.0, "every channel must be used by some mask"
    expected_keep = published_keep_fraction(n, scale)
    # Rounding to whole channels, and at least ceil(C/n) ones so that n masks cover C.
    floor_keep = math.ceil(channels / n) / channels
    assert stats["mean_keep_fraction"] == pytest.approx(
        max(expected_keep, floor_keep), abs=0.5 / channels + 1e-9
    )


@pytest.mark.parametrize("n", [4, 8])
@pytest.mark.parametrize("scale", [1.5, 2.0, 3.0, 5.0])
def test_mean_iou_matches_published_expectation(n, scale):
    # Averaged over seeds on a wide layer so sampling noise is small.
    ious = [mask_stats(generate_masks(1024, n, scale, seed=s))["mean_iou"] for s in range(5)]
    mean_iou = sum(ious) / len(ious)
    assert mean_iou == pytest.approx(1.0 / (2.0 * scale - 1.0), rel=0.08)


def test_deterministic_per_seed_and_independent_of_global_rng():
    torch.manual_seed(1)
    a = generate_masks(128, 4, 2.0, seed=7)
    torch.manual_seed(12345)
    torch.rand(1000)
    b = generate_masks(128, 4, 2.0, seed=7)
    assert torch.equal(a, b)
    assert not torch.equal(a, generate_masks(128, 4, 2.0, seed=8))


def test_seed_none_follows_global_rng():
    torch.manual_seed(3)
    a = generate_masks(128, 4, 2.0)
    torch.manual_seed(3)
    b = generate_masks(128, 4, 2.0)
    c = generate_masks(128, 4, 2.0)
    assert torch.equal(a, b) and not torch.equal(b, c)


def test_scale_one_gives_identical_full_masks():
    masks = generate_masks(37, 5, 1.0, seed=0)
    assert masks.all() and masks.shape == (5, 37)


def test_single_mask_is_full():
    masks = generate_masks(37, 1, 3.0, seed=0)
    assert masks.shape == (1, 37) and masks.all()


def test_large_scale_gives_nearly_disjoint_masks():
    stats = mask_stats(generate_masks(400, 4, 50.0, seed=0))
    assert stats["max_iou"] < 0.05
    assert stats["mean_keep_fraction"] == pytest.approx(0.25, abs=0.01)


def test_mask_stats_on_hand_built_masks():
    masks = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0]], dtype=torch.bool)
    stats = mask_stats(masks)
    assert stats["keep_fraction"] == [0.5, 0.5]
    assert stats["mean_iou"] == pytest.approx(1 / 3)
    assert stats["coverage"] == 0.75


@settings(max_examples=200, deadline=None)
@given(
    channels=st.integers(1, 600),
    n=st.integers(1, 16),
    scale=st.floats(1.0, 20.0, allow_nan=False),
    seed=st.integers(0, 2**31),
)
def test_any_valid_parameters_give_valid_masks(channels, n, scale, seed):
    masks = generate_masks(channels, n, scale, seed=seed)
    sizes = masks.sum(dim=1)
    assert masks.shape == (n, channels)
    assert torch.all(sizes == sizes[0]) and sizes[0] >= 1
    assert masks.any(dim=0).all()
    assert 0 < keep_fraction(n, scale) <= 1.0


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"channels": 0, "n": 4, "scale": 2.0}, "channels must be an integer >= 1, got 0"),
        ({"channels": 16.0, "n": 4, "scale": 2.0}, "pass 16 instead of 16.0"),
        ({"channels": 16, "n": 0, "scale": 2.0}, "n must be an integer >= 1, got 0"),
        ({"channels": 16, "n": 2.5, "scale": 2.0}, "n must be an integer"),
        ({"channels": 16, "n": True, "scale": 2.0}, "n must be an integer"),
        ({"channels": 16, "n": 4, "scale": 0.5}, "scale must satisfy 1.0 <= scale, got 0.5"),
        ({"channels": 16, "n": 4, "scale": float("nan")}, "scale must be a finite number"),
        ({"channels": 16, "n": 4, "scale": float("inf")}, "scale must be a finite number"),
        ({"channels": 16, "n": 4, "scale": "2"}, "scale must be a real number"),
        ({"channels": 16, "n": 4, "scale": 2.0, "seed": -1},
         "seed must be an integer in [0, 9223372036854775807], got -1"),
        # torch's generators overflow at 2**64 with a message that names no parameter.
        ({"channels": 16, "n": 4, "scale": 2.0, "seed": 2**64},
         "seed must be an integer in [0, 9223372036854775807], got 18446744073709551616"),
    ],
)
def test_invalid_parameters_name_parameter_value_and_range(kwargs, fragment):
    with pytest.raises(ValueError) as info:
        generate_masks(**kwargs)
    assert fragment in str(info.value)


def test_mask_stats_rejects_non_binary_and_wrong_rank():
    with pytest.raises(ValueError, match="binary"):
        mask_stats(torch.tensor([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="2 dimensions"):
        mask_stats(torch.ones(4, dtype=torch.bool))
