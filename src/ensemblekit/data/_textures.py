"""Procedural textures for the weather corruptions: a plasma fractal (fog) and frost.

All randomness comes from the ``torch.Generator`` passed in (CPU), so a seed fixes the texture.
"""

from __future__ import annotations

import math

import torch

from ._image_ops import gaussian_blur


def plasma_fractal(
    batch: int, height: int, width: int, roughness_decay: float, generator: torch.Generator
) -> torch.Tensor:
    """Diamond-square height maps ``(B, 1, H, W)`` normalised to [0, 1] per image.

    The grid is the next power of two >= max(H, W) (then cropped); the random perturbation
    shrinks by ``roughness_decay ** 2`` per octave -- the same octave weighting as the plasma
    fractal behind CIFAR-10-C's fog (larger decay: smoother fog). The grid wraps around.
    """
    size = 1 << max(1, math.ceil(math.log2(max(height, width))))
    grid = torch.zeros(batch, size, size, dtype=torch.float64)
    step, amplitude = size, 1.0

    def noise(shape) -> torch.Tensor:
        return amplitude * (2.0 * torch.rand(shape, generator=generator, dtype=torch.float64) - 1.0)

    while step >= 2:
        half = step // 2
        corners = grid[:, ::step, ::step]
        # Square step: each square's centre is its four corners' mean plus noise.
        square = corners + corners.roll(-1, dims=1)
        square = square + square.roll(-1, dims=2)
        grid[:, half::step, half::step] = square / 4 + noise(square.shape)
        centres = grid[:, half::step, half::step]
        # Diamond step: each edge midpoint is the mean of its two corners and two centres.
        across = corners + corners.roll(-1, dims=2) + centres + centres.roll(1, dims=1)
        grid[:, ::step, half::step] = across / 4 + noise(across.shape)
        down = corners + corners.roll(-1, dims=1) + centres + centres.roll(1, dims=2)
        grid[:, half::step, ::step] = down / 4 + noise(down.shape)
        step, amplitude = half, amplitude / roughness_decay**2
    grid = grid[:, :height, :width]
    low = grid.amin(dim=(1, 2), keepdim=True)
    high = grid.amax(dim=(1, 2), keepdim=True)
    return ((grid - low) / (high - low).clamp_min(1e-12)).float().unsqueeze(1)


#: Frost is white with a faint blue cast, as in photographs of frost on a window.
FROST_TINT = (0.86, 0.93, 1.0)


def frost_texture(
    batch: int, height: int, width: int, length_scale: float, generator: torch.Generator
) -> torch.Tensor:
    """Synthetic frost ``(B, 3, H, W)`` in [0, 1]: crystal needles over a patchy icy haze.

    CIFAR-10-C blends crops of six frost *photographs*, which cannot ship here; this texture
    imitates them: a smooth plasma-fractal haze (0.1 .. 0.4) plus bright ice needles --
    clusters of straight strokes radiating from random seed points, each with two side
    branches at +-60 degrees, like dendritic frost. Needle lengths and widths scale with
    ``length_scale`` (1 at 32x32).
    """
    haze = 0.1 + 0.3 * plasma_fractal(batch, height, width, 2.0, generator)
    needles = torch.cat(
        [
            _needle_layer(min(16, batch - start), height, width, length_scale, generator)
            for start in range(0, batch, 16)  # bounded memory: distances are (B, S, H*W)
        ]
    )
    texture = (haze + needles).clamp(0.0, 1.0)
    tint = torch.tensor(FROST_TINT).view(1, 3, 1, 1)
    return texture * tint


def _needle_layer(
    batch: int, height: int, width: int, length_scale: float, generator: torch.Generator
) -> torch.Tensor:
    area_in_cifar_pixels = height * width / length_scale**2
    seeds = max(2, round(6 * area_in_cifar_pixels / 1024))
    per_seed = 6

    def uniform(low, high, *shape):
        return low + (high - low) * torch.rand(*shape, generator=generator)

    origin = torch.stack(
        [uniform(0, width, batch, seeds), uniform(0, height, batch, seeds)], dim=-1
    ).repeat_interleave(per_seed, dim=1)  # (B, N, 2)
    count = seeds * per_seed
    angle = uniform(0, 2 * math.pi, batch, count)
    length = uniform(3.0, 12.0, batch, count) * length_scale
    direction = torch.stack([angle.cos(), angle.sin()], dim=-1)
    tip = origin + length.unsqueeze(-1) * direction
    starts, ends = [origin], [tip]
    for turn in (math.pi / 3, -math.pi / 3):  # side branches from the needle's middle
        branch_angle = angle + turn
        branch = torch.stack([branch_angle.cos(), branch_angle.sin()], dim=-1)
        middle = origin + 0.5 * length.unsqueeze(-1) * direction
        starts.append(middle)
        ends.append(middle + 0.4 * length.unsqueeze(-1) * branch)
    start, end = torch.cat(starts, dim=1), torch.cat(ends, dim=1)  # (B, S, 2)
    brightness = uniform(0.45, 0.9, batch, count).repeat(1, 3)

    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32) + 0.5,
        torch.arange(width, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    pixels = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)  # (P, 2)
    segment = (end - start).unsqueeze(2)  # (B, S, 1, 2)
    relative = pixels.view(1, 1, -1, 2) - start.unsqueeze(2)  # (B, S, P, 2)
    along = (relative * segment).sum(-1) / segment.pow(2).sum(-1).clamp_min(1e-9)
    nearest = relative - along.clamp(0, 1).unsqueeze(-1) * segment
    distance_sq = nearest.pow(2).sum(-1)
    width_px = max(0.35, 0.5 * length_scale)
    strokes = brightness.unsqueeze(-1) * torch.exp(-distance_sq / (2 * width_px**2))
    layer = strokes.amax(dim=1).view(batch, 1, height, width)
    return gaussian_blur(layer, 0.3 * length_scale)
