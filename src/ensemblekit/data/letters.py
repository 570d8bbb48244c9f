"""The offline out-of-distribution set for the digits: 8x8 letters made the way the digits were.

Why letters: they are the offline counterpart of the classic "notMNIST" pairing (letters as OOD
for digits) -- same kind of content (dark background, one bright glyph centred in the frame), so
a detector cannot win on trivial statistics such as brightness or blank borders, yet no letter is
a digit. ``O`` and ``I`` are left out because in many fonts they are drawn exactly like 0 and 1.

How: each image is a capital letter rendered with a font bundled with matplotlib (DejaVu, STIX,
Computer Modern; no files outside installed packages), rotated by up to 12 degrees, stretched,
given a pen width, binarised on a 32x32 grid and reduced like the optdigits scans behind the
digits: each 4x4 block counts its on-pixels (0..16), divided by 16. Generated with a fixed seed,
so every call returns the same images. Labels are -1 (no digit class).
"""

from __future__ import annotations

import os
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import torch

from .digits import DIGITS_INFO
from .in_memory import InMemoryDataset
from .registry import DatasetInfo, register_dataset

LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
LETTER_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralItalic.ttf",
    "cmss10.ttf",
    "cmr10.ttf",
)
LETTERS_SPLIT_SEEDS = {"train": 1, "test": 2}
LETTERS_SPLIT_SIZES = {"train": 1258, "test": 539}  # the digits' split sizes

LETTERS_INFO = DatasetInfo(
    name="letters",
    num_classes=0,
    in_channels=1,
    image_size=(8, 8),
    mean=DIGITS_INFO.mean,
    std=DIGITS_INFO.std,
    splits=("train", "test"),
    embedded=True,
    description="8x8 capital letters rendered like the digits (embedded OOD set for digits)",
)

_SCAN_SIZE = 32  # optdigits scans are 32x32 binary images
_BLOCK = 4  # ... counted in 4x4 blocks into 8x8


@register_dataset(LETTERS_INFO)
def load_letters_dataset(split: str, data_dir: Path, download: bool, transform) -> InMemoryDataset:
    """``(N, 1, 8, 8)`` letter images in [0, 1], labels -1; fixed per split."""
    images = render_letters(LETTERS_SPLIT_SIZES[split], seed=LETTERS_SPLIT_SEEDS[split])
    labels = torch.full((images.shape[0],), -1, dtype=torch.long)
    return InMemoryDataset(images, labels, transform=transform)


def render_letters(n: int, *, seed: int) -> torch.Tensor:
    """``n`` letter images ``(n, 1, 8, 8)``, values in {0, 1/16, ..., 1}; same seed, same images."""
    return torch.from_numpy(_render_letters(n, seed).copy())


@lru_cache(maxsize=4)
def _render_letters(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scans = np.stack([_letter_scan(rng) for _ in range(n)])
    blocks = scans.reshape(n, 8, _BLOCK, 8, _BLOCK).sum(axis=(2, 4))
    return (blocks / (_BLOCK * _BLOCK)).astype(np.float32)[:, None]


def _letter_scan(rng: np.random.Generator) -> np.ndarray:
    """One binary 32x32 scan of a random letter, size-normalised and centred like optdigits."""
    from PIL import Image, ImageDraw, ImageFilter

    font = _font(LETTER_FONTS[rng.integers(len(LETTER_FONTS))])
    letter = LETTERS[rng.integers(len(LETTERS))]
    canvas = Image.new("L", (128, 128), 0)
    ImageDraw.Draw(canvas).text((32, 16), letter, fill=255, font=font)
    canvas = canvas.rotate(rng.uniform(-12.0, 12.0), resample=Image.Resampling.BILINEAR)
    # Pen width: thicken most glyphs (printed strokes are thinner than the pen strokes).
    for _ in range(rng.choice([0, 1, 1, 2])):
        canvas = canvas.filter(ImageFilter.MaxFilter(3))
    glyph = np.asarray(canvas) > 127
    rows, cols = np.flatnonzero(glyph.any(1)), np.flatnonzero(glyph.any(0))
    glyph = glyph[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height = int(round(_SCAN_SIZE * rng.uniform(0.8, 1.0)))
    width = glyph.shape[1] * height / glyph.shape[0] * rng.uniform(0.7, 1.1)
    width = int(np.clip(round(width), 4, _SCAN_SIZE))
    resized = Image.fromarray(glyph.astype(np.uint8) * 255).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    scan = np.zeros((_SCAN_SIZE, _SCAN_SIZE), dtype=bool)
    top, left = (_SCAN_SIZE - height) // 2, (_SCAN_SIZE - width) // 2
    scan[top : top + height, left : left + width] = np.asarray(resized) > 127
    return scan


@cache
def _font(filename: str):
    import matplotlib
    from PIL import ImageFont

    return ImageFont.truetype(
        os.path.join(matplotlib.get_data_path(), "fonts", "ttf", filename), 64
    )
