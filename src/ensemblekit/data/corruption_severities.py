"""The corruption kinds, their parameters per severity, and how those carry over to any size.

Severity parameters are the ones published with CIFAR-10-C for 32x32 images (Hendrycks &
Dietterich, ICLR 2019); they differ from the ImageNet-C ones. How they carry over to other sizes:

- Per-pixel corruptions (noises, brightness, contrast, saturate, JPEG quality) use them as is.
- Lengths in pixels (blur widths, shuffle distances, streak lengths, displacement fields, flake
  and droplet sizes) are multiplied by ``s = max(side / 32, 0.5)``, side = min(H, W): 0.875
  for 28x28 MNIST, 7 for 224x224. The floor matters for the 8x8 digits: with s = 1/4 every
  published length would be a fraction of a pixel and the five severities would collapse to
  near identity. The two isotropic smoothing filters (gaussian and defocus blur) never go below
  their published pixel widths (``s >= 1``): halved, they are sub-pixel on 8x8 and their low
  severities did nothing. Glass and motion blur, snow and spatter keep the floor of 1/2: at
  full pixel lengths they wipe out an 8x8 digit from severity 1 on.
- Where the published ladder itself does not grow at every step, neither does the change it
  makes (measured as mean absolute change on digits, MNIST-sized and 32x32 images): glass blur
  1-3 and 4-5 differ only by a sub-pixel pre-blur; motion blur 3 and 4 differ only in a radius
  beyond where the kernel's weights vanish; snow 4 has fewer, larger flakes than 3 (threshold
  0.6 vs 0.55), which on 8x8 changes less; elastic transform 1 and 2 differ by a sub-pixel
  displacement field; frost 4 dims the image without more frost; spatter
  turns from water (1-3) to mud (4-5); saturate 1-2 desaturate, 3-5 saturate, and does nothing to
  greyscale images until 4; pixelate rounds to whole pixels (8x8: 7, 7, 6, 6, 5 px).
- Relative quantities stay relative: zoom factors, the pixelation fraction, the elastic
  transform's affine jitter (a fraction of the side).
- One published parameter is not used as is: the elastic transform's affine jitter, which
  shrinks as severity grows; it stays at its severity-1 value (see
  ``corruptions._elastic_transform``).
"""

from __future__ import annotations

import torch

#: The 15 CIFAR-10-C corruptions, then the 4 extra ones released with them.
CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
    "speckle_noise",
    "gaussian_blur",
    "spatter",
    "saturate",
)
BENCHMARK_CORRUPTIONS = CORRUPTIONS[:15]
EXTRA_CORRUPTIONS = CORRUPTIONS[15:]
SEVERITIES = (1, 2, 3, 4, 5)

#: Published CIFAR-10-C parameters (32x32), one entry per severity 1..5.
CIFAR_SEVERITY_PARAMETERS: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # noise std
    "shot_noise": (500, 250, 100, 75, 50),  # photons per unit intensity
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # fraction of values hit
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),  # multiplicative noise std
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),  # sigma (px)
    # (sigma px, max shuffle distance px, shuffle passes)
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    # (disk radius px, anti-alias sigma px)
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    # (radius px, sigma px)
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    "zoom_blur": (1.06, 1.11, 1.16, 1.21, 1.26),  # zooms 1, 1.01, ... up to (excluded)
    # (flake mean, flake std, flake zoom, threshold, streak radius px, streak sigma px, blend)
    "snow": (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),  # image, frost weight
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),  # strength, roughness decay
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),  # added to HSV value
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # contrast factor
    # (displacement alpha, displacement sigma, affine jitter), as fractions of 32 px; see
    # corruptions._elastic_transform for the one change made to the affine jitter
    "elastic_transform": (
        (0.0, 0.0, 0.08),
        (0.05, 0.2, 0.07),
        (0.08, 0.06, 0.06),
        (0.1, 0.04, 0.05),
        (0.1, 0.03, 0.03),
    ),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # resize fraction
    "jpeg_compression": (80, 65, 58, 50, 40),  # JPEG quality
    # (drop mean, drop std, drop blur sigma px, threshold, intensity / mud blur, is_mud)
    "spatter": (
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ),
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),  # S * a + b
}

#: the side (px) of the images the published parameters are for
REFERENCE_SIDE = 32
#: the floor of the length scale s (module docstring)
MIN_LENGTH_SCALE = 0.5
#: spatter's tints: water (severities 1-3) and mud (4-5)
WATER_RGB = (175 / 255, 238 / 255, 238 / 255)  # pale turquoise
MUD_RGB = (63 / 255, 42 / 255, 20 / 255)


def length_scale(images: torch.Tensor) -> float:
    """The length scale s of ``images`` (B, C, H, W): ``max(min(H, W) / 32, 1/2)``."""
    return max(min(images.shape[-2:]) / REFERENCE_SIDE, MIN_LENGTH_SCALE)


def smoothing_scale(scale: float) -> float:
    """Length scale of the two isotropic smoothing filters: never below the published pixels.

    Their published widths (sigma 0.4-1.5 px) are already the smallest blurs a 32-px grid shows;
    halved for an 8x8 image they fall below a pixel and severities 1-4 of defocus blur left the
    digits unchanged (severity 4, a disk of radius 0.5, less than severity 3). At their
    published pixel sizes every severity blurs an 8x8 digit more than the one below it.
    """
    return max(scale, 1.0)
