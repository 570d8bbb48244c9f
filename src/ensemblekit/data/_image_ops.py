"""Batched image filters the corruptions are made of. Images are ``(B, C, H, W)`` float tensors.

Borders repeat the edge pixel (``replicate``) unless stated otherwise: it is valid for any kernel
size on any image size, which matters for 8x8 inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: ITU-R 601 luma weights, as in PIL's ``convert("L")``.
LUMA = (0.299, 0.587, 0.114)


def luminance(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` -> ``(B, 1, H, W)`` luma; a 1-channel batch is returned as is."""
    if images.shape[1] == 1:
        return images
    weights = images.new_tensor(LUMA).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def colour(rgb: tuple[float, float, float], channels: int, like: torch.Tensor) -> torch.Tensor:
    """An RGB colour as a ``(1, C, 1, 1)`` tensor; its luma when ``channels == 1``."""
    value = like.new_tensor(rgb).view(1, 3, 1, 1)
    return luminance(value) if channels == 1 else value


def filter2d(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate every channel with the same odd-sized ``(kh, kw)`` kernel (same output size)."""
    channels = images.shape[1]
    kh, kw = kernel.shape
    padded = F.pad(images, (kw // 2, kw // 2, kh // 2, kh // 2), mode="replicate")
    weight = kernel.to(images).expand(channels, 1, kh, kw)
    return F.conv2d(padded, weight, groups=channels)


def gaussian_kernel1d(sigma: float, *, truncate: float = 4.0) -> torch.Tensor:
    """Normalised 1D Gaussian taps, radius ``ceil(truncate * sigma)`` (at least 1)."""
    radius = max(1, int(math.ceil(truncate * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (taps / taps.sum()).float()


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with standard deviation ``sigma`` pixels (identity for sigma ~ 0)."""
    if sigma < 1e-3:
        return images
    taps = gaussian_kernel1d(sigma)
    blurred = filter2d(images, taps.view(1, -1))
    return filter2d(blurred, taps.view(-1, 1))


def disk_kernel(radius: float, alias_sigma: float) -> torch.Tensor:
    """A flat disk of ``radius`` pixels, anti-aliased, then softened by a Gaussian ``alias_sigma``.

    Each tap is the fraction of its pixel the disk covers (8x8 supersampling), so radii below
    one pixel still give a graded kernel instead of collapsing to a single tap.
    """
    supersample = 8
    half = int(math.ceil(radius)) + 2  # room for the softening Gaussian
    fine = (torch.arange((2 * half + 1) * supersample, dtype=torch.float64) + 0.5) / supersample
    fine = fine - (half + 0.5)
    inside = (fine.view(-1, 1) ** 2 + fine.view(1, -1) ** 2 <= radius**2).double()
    size = 2 * half + 1
    coverage = inside.view(size, supersample, size, supersample).mean(dim=(1, 3))
    if coverage.sum() == 0:  # radius far below a pixel: a point
        coverage[half, half] = 1.0
    kernel = coverage / coverage.sum()
    if alias_sigma >= 1e-3:
        taps = gaussian_kernel1d(alias_sigma, truncate=2.0).double()
        kernel = filter2d(kernel.view(1, 1, size, size), taps.view(1, -1))
        kernel = filter2d(kernel, taps.view(-1, 1)).view(size, size)
    return (kernel / kernel.sum()).float()


def pixel_grid(batch: int, height: int, width: int, device) -> torch.Tensor:
    """Pixel-centre coordinates ``(B, H, W, 2)`` as ``(x, y)`` in pixels."""
    ys = torch.arange(height, device=device, dtype=torch.float32)
    xs = torch.arange(width, device=device, dtype=torch.float32)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).expand(batch, height, width, 2)


def sample(images: torch.Tensor, coords: torch.Tensor, *, padding: str = "border") -> torch.Tensor:
    """Bilinear look-up of ``images`` at pixel coordinates ``coords`` (B, H', W', 2) as (x, y)."""
    height, width = images.shape[-2:]
    scale = coords.new_tensor([2.0 / width, 2.0 / height])
    normalised = (coords + 0.5) * scale - 1.0  # align_corners=False convention
    return F.grid_sample(
        images, normalised, mode="bilinear", padding_mode=padding, align_corners=False
    )


def motion_blur(
    images: torch.Tensor, radius: float, sigma: float, angles_deg: torch.Tensor
) -> torch.Tensor:
    """One-sided motion blur: mean of copies shifted 0, 1, ..., 2*ceil(radius) pixels along each
    image's angle, weighted ``exp(-d^2 / (2 sigma^2))`` (the kernel of ImageMagick's motion blur,
    which CIFAR-10-C uses). Shifts are sampled bilinearly, so sub-pixel scales stay graded.

    ``angles_deg``: ``(B,)`` angles in degrees, 0 = along +x, y pointing down.
    """
    distances = torch.arange(0, 2 * int(math.ceil(radius)) + 1, dtype=torch.float32)
    weights = torch.exp(-(distances**2) / (2.0 * sigma**2))
    keep = weights >= 1e-3 * weights[0]  # taps that cannot change a uint8 pixel are skipped
    distances, weights = distances[keep], weights[keep] / weights[keep].sum()
    angles = torch.deg2rad(angles_deg.float()).to(images.device)
    direction = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1).view(-1, 1, 1, 2)
    base = pixel_grid(images.shape[0], *images.shape[-2:], images.device)
    out = torch.zeros_like(images)
    for distance, weight in zip(distances.tolist(), weights.tolist(), strict=True):
        shifted = images if distance == 0 else sample(images, base + distance * direction)
        out = out + weight * shifted
    return out
