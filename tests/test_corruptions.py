"""The 19 corruptions: every kind x severity on 8x8, 28x28 and 32x32, 1 and 3 channels, plus
checks of individual corruptions against independent references."""

from __future__ import annotations

import itertools

import matplotlib.colors
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ensemblekit.data import (
    BENCHMARK_CORRUPTIONS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    as_tensors,
    corrupt,
    corrupt_tensor,
    example_scene,
    make_corrupted,
)

SIZES = (8, 28, 32)
BLURS = ("gaussian_blur", "defocus_blur", "motion_blur", "zoom_blur", "glass_blur")


def _images(size: int, channels: int) -> torch.Tensor:
    """Two natural-looking images: the synthetic scene and a smooth random field."""
    scene = example_scene(size, channels=channels)
    coarse = torch.rand(1, channels, 4, 4, generator=torch.Generator().manual_seed(size))
    field = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[0]
    return torch.stack([scene, field]).clamp(0, 1)


def test_the_kinds_are_cifar10_c_then_the_extra_four():
    assert len(CORRUPTIONS) == 19 and len(set(CORRUPTIONS)) == 19
    assert BENCHMARK_CORRUPTIONS[0] == "gaussian_noise" and len(BENCHMARK_CORRUPTIONS) == 15
    assert EXTRA_CORRUPTIONS == ("speckle_noise", "gaussian_blur", "spatter", "saturate")


# Kinds whose published ladder does not grow at every step (the corruptions module's docstring
# says how each one stalls); every other kind must change the image more at each severity.
LADDERS_WITH_FLAT_STEPS = {
    "glass_blur", "motion_blur", "snow", "frost", "elastic_transform", "pixelate", "spatter",
    "saturate",
}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_every_kind_and_severity(kind, size, channels):
    images = _images(size, channels)
    change = []
    for severity in range(1, 6):
        out = corrupt(images, kind, severity, seed=3)
        assert out.shape == images.shape and out.dtype == images.dtype
        assert torch.isfinite(out).all()
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        assert torch.equal(corrupt(images, kind, severity, seed=3), out)  # deterministic per seed
        change.append(float((out - images).abs().mean()))
    assert change[4] > change[0], f"{kind}: severity 5 changed {change[4]:.4f} <= {change[0]:.4f}"
    assert change[4] > 1e-3, f"{kind}: severity 5 barely changes a {size}x{size} image"
    if kind not in LADDERS_WITH_FLAT_STEPS:
        assert change[0] > 1e-4, f"{kind}: severity 1 leaves a {size}x{size} image unchanged"
        steps = f"{kind}: change {[round(c, 5) for c in change]}"
        assert all(later > earlier for earlier, later in itertools.pairwise(change)), steps


# Corruptions that draw nothing at random: the seed cannot change them.
SEED_FREE = {
    "gaussian_blur",
    "defocus_blur",
    "zoom_blur",
    "brightness",
    "contrast",
    "pixelate",
    "jpeg_compression",
    "saturate",
}
RANDOM_KINDS = [kind for kind in CORRUPTIONS if kind not in SEED_FREE]


@pytest.mark.parametrize("kind", RANDOM_KINDS)
def test_seed_changes_the_random_draw(kind):
    images = _images(32, 3)
    assert not torch.equal(corrupt(images, kind, 5, seed=0), corrupt(images, kind, 5, seed=1))


def test_seed_none_follows_torch_manual_seed():
    images = _images(8, 1)
    torch.manual_seed(7)
    first = corrupt(images, "gaussian_noise", 3)
    torch.manual_seed(7)
    assert torch.equal(first, corrupt(images, "gaussian_noise", 3))


def test_dtype_is_kept():
    images = _images(8, 3).double()
    assert corrupt(images, "fog", 2, seed=0).dtype == torch.float64


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(kind="rain"), "corruption kind"),
        (dict(severity=0), "severity"),
        (dict(severity=6), "severity"),
        (dict(images=torch.rand(2, 3, 8, 8) * 2), r"\[0, 1\]"),
        (dict(images=torch.rand(2, 2, 8, 8)), "1 or 3 channels"),
        (dict(images=torch.zeros(2, 3, 8, 8, dtype=torch.uint8)), "floating"),
        (dict(images=torch.rand(3, 8, 8)), "4 dimensions"),
    ],
)
def test_bad_arguments_are_named(bad, match):
    arguments = dict(images=torch.rand(2, 3, 8, 8), kind="fog", severity=1) | bad
    with pytest.raises(ValueError, match=match):
        corrupt(arguments["images"], arguments["kind"], arguments["severity"], seed=0)


@pytest.mark.parametrize("kind", BLURS)
@pytest.mark.parametrize("size", [8, 32])
def test_blurs_keep_a_flat_image_flat(kind, size):
    flat = torch.full((2, 3, size, size), 0.37)
    torch.testing.assert_close(corrupt(flat, kind, 5, seed=0), flat)


def _hsv_reference(images: torch.Tensor, edit) -> torch.Tensor:
    """Independent reference: matplotlib's RGB <-> HSV on (H, W, 3) arrays."""
    outs = []
    for image in images:
        hsv = matplotlib.colors.rgb_to_hsv(image.permute(1, 2, 0).double().numpy())
        edit(hsv)
        rgb = matplotlib.colors.hsv_to_rgb(np.clip(hsv, 0, 1))
        outs.append(torch.from_numpy(rgb).permute(2, 0, 1))
    return torch.stack(outs).float()


@pytest.mark.parametrize("severity, shift", [(1, 0.05), (2, 0.1), (3, 0.15), (4, 0.2), (5, 0.3)])
def test_brightness_matches_an_hsv_round_trip(severity, shift):
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    images[0, :, 0, 0] = 0.0  # a black pixel becomes grey

    def edit(hsv):
        hsv[..., 2] = np.clip(hsv[..., 2] + shift, 0, 1)

    expected = _hsv_reference(images, edit)
    torch.testing.assert_close(corrupt(images, "brightness", severity, seed=0), expected)


@pytest.mark.parametrize(
    "severity, factor, offset", [(1, 0.3, 0), (2, 0.1, 0), (3, 1.5, 0), (4, 2, 0.1), (5, 2.5, 0.2)]
)
def test_saturate_matches_an_hsv_round_trip(severity, factor, offset):
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    images[1, :, 2, 2] = 0.6  # a grey pixel: hue 0, so added saturation tints it red

    def edit(hsv):
        hsv[..., 1] = np.clip(hsv[..., 1] * factor + offset, 0, 1)

    expected = _hsv_reference(images, edit)
    torch.testing.assert_close(
        corrupt(images, "saturate", severity, seed=0), expected, atol=1e-5, rtol=1e-5
    )


def test_contrast_scales_deviations_from_each_channel_mean():
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    mean = images.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(
        corrupt(images, "contrast", 5, seed=0), (images - mean) * 0.15 + mean
    )


def test_gaussian_noise_has_the_published_std():
    grey = torch.full((16, 3, 32, 32), 0.5)
    residual = corrupt(grey, "gaussian_noise", 5, seed=0) - grey
    assert abs(float(residual.std()) - 0.10) < 0.003
    assert abs(float(residual.mean())) < 0.003


def test_impulse_noise_hits_the_published_fraction():
    grey = torch.full((16, 3, 32, 32), 0.5)
    out = corrupt(grey, "impulse_noise", 5, seed=0)
    hit = out != 0.5
    assert abs(float(hit.float().mean()) - 0.07) < 0.005
    assert set(out[hit].unique().tolist()) == {0.0, 1.0}


def test_shot_noise_is_unbiased_and_grows_with_severity():
    grey = torch.full((16, 1, 32, 32), 0.3)
    mild, strong = (corrupt(grey, "shot_noise", s, seed=0) for s in (1, 5))
    assert abs(float(strong.mean()) - 0.3) < 0.01
    assert float(strong.std()) > 2 * float(mild.std())


def test_pixelate_is_blocky():
    images = _images(32, 3)
    out = corrupt(images, "pixelate", 5, seed=0)[1]  # 32 -> 20 -> 32 (severity 5: 0.65)
    rows = {tuple(out[:, i].flatten().tolist()) for i in range(32)}
    cols = {tuple(out[:, :, j].flatten().tolist()) for j in range(32)}
    assert len(rows) == 20 and len(cols) == 20  # 20 distinct blocks across, 20 down


def test_corrupt_tensor_is_independent_of_chunk_boundaries_only_through_seeds():
    images = torch.rand(3, 3, 8, 8)
    direct = corrupt_tensor(images, "fog", 3, seed=5)
    assert torch.equal(direct, corrupt_tensor(images, "fog", 3, seed=5))
    assert not torch.equal(direct, corrupt_tensor(images, "fog", 3, seed=6))


def test_make_corrupted_is_lazy_and_keyed_by_kind_and_severity():
    images, labels = torch.rand(4, 1, 8, 8), torch.arange(4)
    sets = make_corrupted((images, labels), ["fog", "contrast"], [1, 5], seed=0)
    assert list(sets) == [("fog", 1), ("fog", 5), ("contrast", 1), ("contrast", 5)]
    shifted, shifted_labels = as_tensors(sets[("contrast", 5)])
    assert torch.equal(shifted_labels, labels)
    assert torch.equal(shifted, as_tensors(sets[("contrast", 5)])[0])
    with pytest.raises(KeyError):
        sets[("fog", 3)]


def test_make_corrupted_rejects_point_data():
    with pytest.raises(ValueError, match="image datasets"):
        make_corrupted((torch.rand(5, 2), torch.zeros(5, dtype=torch.long)))
