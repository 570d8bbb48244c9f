"""The 19 CIFAR-10-C corruptions at 5 severities, on batches of [0, 1] images of any size.

``corrupt(images, kind, severity, seed=...)`` takes ``(B, C, H, W)`` float images in [0, 1]
(C = 1 or 3), returns the same shape in [0, 1], and is deterministic for a given seed and batch.
Apply it *before* normalising (see :mod:`ensemblekit.data.registry`).

The kinds, their published CIFAR-10-C parameters per severity and how those carry over to other
image sizes: :mod:`ensemblekit.data.corruption_severities`.

Where the published recipe relies on tools or files that are not dependencies here, the effect
is re-implemented from its description: ImageMagick's motion blur (the Gaussian-weighted
one-sided kernel, sampled bilinearly), skimage/OpenCV filters (in torch), and frost, which needs
bundled photographs: a procedural frost texture stands in (:func:`~._textures.frost_texture`).
Water spatter keeps the published droplet layer and tint but shades droplets with an emboss of
their mask instead of OpenCV's Canny/distance-transform/histogram-equalisation chain. The
maintained package ``imagecorruptions`` was not used: it implements the ImageNet-C severities
(too strong for 32x32 and below) and needs OpenCV and scikit-image.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .._validation import check_choice, check_finite, check_int, check_seed, check_tensor
from . import _image_ops as ops
from ._textures import frost_texture, plasma_fractal
from .corruption_severities import (
    CIFAR_SEVERITY_PARAMETERS,
    CORRUPTIONS,
    MUD_RGB,
    REFERENCE_SIDE,
    WATER_RGB,
    length_scale,
    smoothing_scale,
)


def corrupt(
    images: torch.Tensor, kind: str, severity: int, *, seed: int | None = None
) -> torch.Tensor:
    """Apply corruption ``kind`` at ``severity`` (1..5) to a batch of [0, 1] images.

    Args:
        images: ``(B, C, H, W)`` floating tensor in [0, 1], C = 1 or 3, any H, W >= 4, any device.
        kind: one of :data:`CORRUPTIONS`.
        severity: 1 (mild) to 5 (strong).
        seed: fixes all randomness (noise, angles, textures); the same seed and batch give the
            same output on any device. ``None`` draws a seed from torch's global generator.

    Returns:
        ``(B, C, H, W)`` tensor of the input's dtype and device, in [0, 1].
    """
    check_tensor("images", images, ndim=4)
    check_choice("corruption kind", kind, CORRUPTIONS)
    severity = check_int("severity", severity, minimum=1, maximum=5)
    if not images.is_floating_point():
        raise ValueError(
            f"images must be a floating tensor in [0, 1], got dtype {images.dtype}; "
            "convert uint8 images with images.float() / 255"
        )
    if images.shape[1] not in (1, 3):
        raise ValueError(
            f"images must have 1 or 3 channels (B, C, H, W), got shape {tuple(images.shape)}"
        )
    if min(images.shape[-2:]) < 4:
        raise ValueError(f"images must be at least 4x4 pixels, got shape {tuple(images.shape)}")
    check_finite("images", images)  # NaN passes the range test below and spreads silently
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(
            f"images must lie in [0, 1] (corrupt before normalising), got values in "
            f"[{float(images.min()):.3g}, {float(images.max()):.3g}]"
        )
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)))
    generator = torch.Generator().manual_seed(check_seed(seed))
    if images.shape[0] == 0:
        return images.clone()
    x = images.float()
    params = CIFAR_SEVERITY_PARAMETERS[kind][severity - 1]
    out = _CORRUPTIONS[kind](x, params, length_scale(x), generator)
    return out.clamp(0.0, 1.0).to(images.dtype)



def _rand(generator: torch.Generator, shape, like: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) drawn on the CPU generator (device-independent), moved to ``like``."""
    return torch.rand(shape, generator=generator).to(like.device)


def _randn(generator: torch.Generator, shape, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=generator).to(like.device)


def _uniform(generator: torch.Generator, low: float, high: float, count: int) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, generator=generator)


# ---- noise -------------------------------------------------------------------------------------


def _gaussian_noise(x, std, scale, generator):
    return x + std * _randn(generator, x.shape, x)


def _shot_noise(x, photons, scale, generator):
    counts = torch.poisson(x.cpu() * photons, generator=generator)
    return counts.to(x.device) / photons


def _impulse_noise(x, amount, scale, generator):
    # Salt and pepper in equal parts, each value independently (as skimage's "s&p").
    hit = _rand(generator, x.shape, x)
    out = torch.where(hit < amount / 2, torch.ones_like(x), x)
    return torch.where((hit >= amount / 2) & (hit < amount), torch.zeros_like(x), out)


def _speckle_noise(x, std, scale, generator):
    return x + x * std * _randn(generator, x.shape, x)


# ---- blur --------------------------------------------------------------------------------------




def _gaussian_blur(x, sigma, scale, generator):
    return ops.gaussian_blur(x, sigma * smoothing_scale(scale))


def _defocus_blur(x, params, scale, generator):
    radius, alias_sigma = params
    scale = smoothing_scale(scale)
    return ops.filter2d(x, ops.disk_kernel(radius * scale, alias_sigma * scale).to(x.device))


def _glass_blur(x, params, scale, generator):
    sigma, max_delta, passes = params
    reach = max_delta * scale  # how far a pixel may be taken from, in pixels
    x = ops.gaussian_blur(x, sigma * scale)
    for _ in range(passes):
        x = _local_shuffle(x, max(1, round(reach)), min(reach, 1.0), generator)
    return ops.gaussian_blur(x, sigma * scale)


def _local_shuffle(
    x: torch.Tensor, delta: int, step: float, generator: torch.Generator
) -> torch.Tensor:
    """Each pixel of the swept area takes the value found ``step * (dy, dx)`` pixels away, with
    ``dy, dx`` random integers in ``[-delta, delta - 1]`` (up and/or left for delta = 1).

    This is what the published sweep does in effect: it visits pixels from the bottom-right
    corner and "swaps" with a tuple assignment of NumPy views, which copies one way only, so
    every pixel receives its neighbour's value from before the pass. ``step`` < 1 (images
    below 32 px, where the published one-pixel reach would be a large fraction of the image)
    takes the value in between, bilinearly.
    """
    batch, _, height, width = x.shape
    rows = slice(delta + 1, height - delta + 1)
    cols = slice(delta + 1, width - delta + 1)
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return x
    offsets = torch.randint(-delta, delta, (batch, height, width, 2), generator=generator)
    coords = ops.pixel_grid(batch, height, width, x.device) + step * offsets.to(x.device)
    taken = ops.sample(x, coords)
    out = x.clone()
    out[..., rows, cols] = taken[..., rows, cols]
    return out


def _motion_blur(x, params, scale, generator):
    radius, sigma = params
    angles = _uniform(generator, -45.0, 45.0, x.shape[0])
    return ops.motion_blur(x, radius * scale, sigma * scale, angles)


def _zoom_blur(x, max_zoom, scale, generator):
    # Mean of the image and its centre zoomed by 1.00, 1.01, ... (each crop filling the frame).
    zooms = [1.0 + 0.01 * step for step in range(int(round((max_zoom - 1.0) / 0.01)))]
    batch, _, height, width = x.shape
    base = ops.pixel_grid(batch, height, width, x.device)
    centre = x.new_tensor([(width - 1) / 2, (height - 1) / 2])
    total = x.clone()
    for zoom in zooms:
        total = total + ops.sample(x, centre + (base - centre) / zoom)
    return total / (len(zooms) + 1)


# ---- weather -----------------------------------------------------------------------------------


def _snow(x, params, scale, generator):
    mean, std, zoom, threshold, radius, sigma, blend = params
    batch, channels, height, width = x.shape
    # Flakes: thresholded noise, enlarged `zoom` times (never below one pixel per flake).
    zoom = max(zoom * scale, 1.0)
    small = (math.ceil(height / zoom), math.ceil(width / zoom))
    flakes = mean + std * _randn(generator, (batch, 1, *small), x)
    flakes = torch.nn.functional.interpolate(
        flakes, scale_factor=zoom, mode="bilinear", align_corners=False
    )
    top, left = (flakes.shape[-2] - height) // 2, (flakes.shape[-1] - width) // 2
    flakes = flakes[..., top : top + height, left : left + width]
    flakes = torch.where(flakes < threshold, torch.zeros_like(flakes), flakes).clamp(0.0, 1.0)
    angles = _uniform(generator, -135.0, -45.0, batch)
    flakes = ops.motion_blur(flakes, radius * scale, sigma * scale, angles)
    # Whiten the scene a little (snowy light), then add the falling flakes from both sides.
    bright = torch.maximum(x, ops.luminance(x) * 1.5 + 0.5)
    x = blend * x + (1 - blend) * bright
    return x + flakes + flakes.flip(dims=(-2, -1))


def _frost(x, params, scale, generator):
    image_weight, frost_weight = params
    texture = frost_texture(x.shape[0], *x.shape[-2:], scale, generator).to(x.device)
    if x.shape[1] == 1:
        texture = ops.luminance(texture)
    return image_weight * x + frost_weight * texture


def _fog(x, params, scale, generator):
    strength, decay = params
    fog = plasma_fractal(x.shape[0], *x.shape[-2:], decay, generator).to(x.device)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + strength * fog) * peak / (peak + strength)


def _spatter(x, params, scale, generator):
    mean, std, sigma, threshold, intensity, is_mud = params
    batch, channels, height, width = x.shape
    liquid = ops.gaussian_blur(
        mean + std * _randn(generator, (batch, 1, height, width), x), sigma * scale
    )
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if is_mud:
        # Opaque mud where the smoothed droplet mask is nearly full.
        mud = ops.gaussian_blur((liquid > threshold).float(), intensity * scale)
        mud = torch.where(mud < 0.8, torch.zeros_like(mud), mud)
        return x * (1 - mud) + mud * ops.colour(MUD_RGB, channels, x)
    # Water: droplets brighter towards their middle, lit from one side (emboss of the mask).
    inside = ops.gaussian_blur((liquid > 0).float(), 1.5 * scale)
    emboss = x.new_tensor([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])
    shade = (1.0 + ops.filter2d(inside, emboss)).clamp_min(0.0)
    water = liquid * inside * shade
    water = water / water.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6) * intensity
    return x + water * ops.colour(WATER_RGB, channels, x)


# ---- digital -----------------------------------------------------------------------------------


def _brightness(x, shift, scale, generator):
    # HSV value V = max channel raised by `shift`; hue and saturation fixed means every channel
    # scales by V'/V (black pixels become grey V').
    value = x.amax(dim=1, keepdim=True)
    new_value = (value + shift).clamp(0.0, 1.0)
    return torch.where(value > 0, x * new_value / value.clamp_min(1e-12), new_value.expand_as(x))


def _contrast(x, factor, scale, generator):
    means = x.mean(dim=(2, 3), keepdim=True)
    return (x - means) * factor + means


def _saturate(x, params, scale, generator):
    if x.shape[1] == 1:  # saturation acts on colour: go through RGB and back to luma
        return ops.luminance(_saturate(x.expand(-1, 3, -1, -1), params, scale, generator))
    factor, offset = params
    value = x.amax(dim=1, keepdim=True)
    minimum = x.amin(dim=1, keepdim=True)
    saturation = torch.where(value > 0, (value - minimum) / value.clamp_min(1e-12), 0.0)
    new_saturation = (saturation * factor + offset).clamp(0.0, 1.0)
    # Fixed hue and value: each channel's distance below V scales with saturation.
    coloured = value - (value - x) * new_saturation / saturation.clamp_min(1e-12)
    # Grey pixels have hue 0 (red) in HSV, so new saturation tints them red.
    red_hue = x.new_tensor([0.0, 1.0, 1.0]).view(1, 3, 1, 1)
    grey = value * (1 - new_saturation * red_hue)
    return torch.where(saturation > 0, coloured, grey)


def _elastic_transform(x, params, scale, generator):
    """A random affine warp, then a smooth random displacement field (published parameters).

    One change: the published ladder shrinks the affine jitter from 8 % of the side
    (severity 1) to 3 % (severity 5) while the displacement field grows, and at 28-32 px the
    shrinking affine dominates, so severity 5 would move pixels *less* than severity 1. Here
    every severity keeps the severity-1 affine jitter (8 %) and adds the published
    displacement field on top, so each step up adds distortion.
    """
    alpha, sigma, _ = params
    batch, _, height, width = x.shape
    side = min(height, width)
    alpha, sigma = alpha * REFERENCE_SIDE * scale, sigma * REFERENCE_SIDE * scale
    jitter = CIFAR_SEVERITY_PARAMETERS["elastic_transform"][0][2] * side
    # Random affine: three points around the centre each moved by up to `jitter` pixels.
    centre = torch.tensor([width // 2, height // 2], dtype=torch.float64)
    arm = max(side // 3, 1)
    source = torch.stack([centre + arm, centre + torch.tensor([arm, -arm]), centre - arm])
    source = source.expand(batch, 3, 2)
    moved = source + jitter * (
        2 * torch.rand(batch, 3, 2, generator=generator, dtype=torch.float64) - 1
    )
    # Output pixel p shows input pixel A^-1 p, where A maps source points to moved points.
    ones = torch.ones(batch, 3, 1, dtype=torch.float64)
    forward = torch.linalg.solve(torch.cat([source, ones], -1), torch.cat([moved, ones], -1))
    inverse = torch.linalg.inv(forward).float().to(x.device)  # row-vector convention
    # Smooth random displacement field, then the affine; one bilinear lookup for both.
    field = 2 * _rand(generator, (batch, 2, height, width), x) - 1
    field = ops.gaussian_blur(field, sigma) * alpha if alpha > 0 else torch.zeros_like(field)
    coords = ops.pixel_grid(batch, height, width, x.device) + field.permute(0, 2, 3, 1)
    homogeneous = torch.cat([coords, torch.ones_like(coords[..., :1])], dim=-1)
    warped = (homogeneous.reshape(batch, -1, 3) @ inverse).view(batch, height, width, 3)[..., :2]
    return ops.sample(x, warped, padding="reflection")


def _pixelate(x, fraction, scale, generator):
    height, width = x.shape[-2:]
    small = (max(1, int(height * fraction)), max(1, int(width * fraction)))
    blocks = torch.nn.functional.interpolate(x, size=small, mode="area")
    return torch.nn.functional.interpolate(blocks, size=(height, width), mode="nearest")


def _jpeg_compression(x, quality, scale, generator):
    from torchvision.io import decode_jpeg, encode_jpeg  # torchvision: only for this kind

    pixels = (x * 255).round().to(torch.uint8).cpu()
    decoded = decode_jpeg(encode_jpeg(list(pixels), quality=quality))
    return torch.stack(decoded).to(x.device).float() / 255


_CORRUPTIONS: dict[str, Callable] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur,
    "glass_blur": _glass_blur,
    "motion_blur": _motion_blur,
    "zoom_blur": _zoom_blur,
    "snow": _snow,
    "frost": _frost,
    "fog": _fog,
    "brightness": _brightness,
    "contrast": _contrast,
    "elastic_transform": _elastic_transform,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
    "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur,
    "spatter": _spatter,
    "saturate": _saturate,
}
