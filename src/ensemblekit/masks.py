"""Masksembles masks: N fixed binary channel masks whose size and overlap are set by ``scale``.

The published construction (Durasov et al., CVPR 2021) draws each of N masks as M ones among
L = M*S positions and drops positions no mask uses; it then resamples and binary-searches S
until exactly C positions survive. That rejection loop can fail outright. The construction here
is direct and always succeeds, and reproduces the statistics of the published one:

1. mask size ``m = round(C * keep)`` with ``keep = 1 / (S * (1 - (1 - 1/S)**N))``, the published
   keep fraction (every mask has exactly ``m`` ones);
2. coverage: a seeded permutation deals the C channels round-robin to the N masks, so every
   channel is used by at least one mask and no mask receives more than ``ceil(C/N) <= m``;
3. overlap: each mask is filled up to ``m`` with channels drawn uniformly from those it does
   not hold yet (one ``topk`` over random keys, so the whole thing is vectorised).

Channel usage is then 1 + (a nearly binomial count), which matches the zero-truncated binomial
of the published construction in mean exactly and in spread closely: mean pairwise IoU comes
out within a few percent of ``1 / (2S - 1)``.
"""

from __future__ import annotations

import math

import torch

from ._validation import check_float, check_int, check_seed, check_tensor


def keep_fraction(n: int, scale: float) -> float:
    """Expected fraction of channels each of ``n`` masks keeps at ``scale`` (published formula)."""
    if scale == 1.0 or n == 1:
        return 1.0
    inverse = 1.0 / scale
    if inverse > 1e-6:
        coverage = 1.0 - (1.0 - inverse) ** n  # as published: existing mask sizes stay the same
    else:
        # For a huge scale 1 - 1/S rounds towards 1 and the published expression cancels to 0
        # (ZeroDivisionError); the same quantity without cancellation tends to keep = 1/n.
        coverage = -math.expm1(n * math.log1p(-inverse))
    return 1.0 / (scale * coverage)


def mask_size(channels: int, n: int, scale: float) -> int:
    """Number of ones per mask: the published keep fraction, at least enough to cover C."""
    size = round(channels * keep_fraction(n, scale))
    return int(min(channels, max(size, math.ceil(channels / n))))


def generate_masks(
    channels: int, n: int, scale: float, *, seed: int | None = None
) -> torch.Tensor:
    """Build ``n`` binary channel masks of equal size covering all ``channels``.

    Args:
        channels: number of channels C the masks act on (>= 1).
        n: number of masks / ensemble members N (>= 1).
        scale: overlap control S >= 1. S = 1 gives N identical all-ones masks (a single
            model); large S gives nearly disjoint masks (an ensemble of thin models).
        seed: makes the masks deterministic, independent of the global RNG. ``None`` draws
            a seed from torch's global generator, so ``torch.manual_seed`` still controls it.

    Returns:
        ``torch.BoolTensor`` of shape (n, channels) on the CPU; row i is mask i.
    """
    channels = check_int("channels", channels, minimum=1)
    n = check_int("n", n, minimum=1)
    scale = check_float("scale", scale, minimum=1.0)
    if seed is not None:
        seed = check_seed(seed)
    else:
        seed = int(torch.randint(0, 2**62, (1,)).item())

    size = mask_size(channels, n, scale)
    if size == channels:
        return torch.ones(n, channels, dtype=torch.bool)

    generator = torch.Generator().manual_seed(seed)
    # Coverage: channel order[j] is dealt to mask j % n.
    order = torch.randperm(channels, generator=generator)
    dealt = torch.zeros(n, channels, dtype=torch.bool)
    dealt[torch.arange(channels) % n, order] = True
    # Overlap: random keys in [0, 1); dealt channels get key 2 so topk always keeps them.
    keys = torch.rand(n, channels, generator=generator)
    keys[dealt] = 2.0
    chosen = keys.topk(size, dim=1).indices
    masks = torch.zeros(n, channels, dtype=torch.bool)
    masks.scatter_(1, chosen, True)
    return masks


def mask_stats(masks: torch.Tensor) -> dict[str, float | list[float]]:
    """Summarise a mask set of shape (n, C).

    Returns a dict with ``keep_fraction`` (list, one per mask), ``mean_keep_fraction``,
    ``mean_iou`` / ``min_iou`` / ``max_iou`` over the n*(n-1)/2 mask pairs (1.0 when n == 1),
    and ``coverage`` (fraction of channels used by at least one mask).
    """
    check_tensor("masks", masks, ndim=2)
    if masks.shape[0] < 1 or masks.shape[1] < 1:
        raise ValueError(f"masks must have shape (n >= 1, C >= 1), got {tuple(masks.shape)}")
    binary = masks.to(torch.bool)
    if not masks.dtype == torch.bool and not torch.equal(binary.to(masks.dtype), masks):
        raise ValueError("masks must be binary (only 0 and 1 entries)")
    ones = binary.to(torch.float64)
    keep = ones.mean(dim=1)
    n = ones.shape[0]
    if n > 1:
        intersection = ones @ ones.T
        sizes = ones.sum(dim=1)
        union = sizes[:, None] + sizes[None, :] - intersection
        iou = intersection / union.clamp_min(1.0)
        pairs = iou[torch.triu_indices(n, n, offset=1).unbind()]
        mean_iou, min_iou, max_iou = pairs.mean().item(), pairs.min().item(), pairs.max().item()
    else:
        mean_iou = min_iou = max_iou = 1.0
    return {
        "keep_fraction": keep.tolist(),
        "mean_keep_fraction": keep.mean().item(),
        "mean_iou": mean_iou,
        "min_iou": min_iou,
        "max_iou": max_iou,
        "coverage": binary.any(dim=0).to(torch.float64).mean().item(),
    }
