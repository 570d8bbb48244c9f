"""Write MNIST-layout folders this machine can train on, to check the MNIST / Fashion-MNIST
recipes offline (torchvision's `<data-dir>/<MNIST|FashionMNIST>/raw/*-idx*-ubyte` files).

* `MNIST/`: scikit-learn's embedded 8x8 digits, upsampled to 28x28 (bilinear) and written as
  MNIST's idx files, the digits' fixed train/test split -- real handwriting, not MNIST itself:
  a check that the recipe runs end to end at MNIST's shape and fits, not MNIST's numbers. With
  `--mnist DIR` (a folder holding MNIST's four released `*-ubyte.gz` files, e.g. torchvision's
  `data/MNIST/raw`), the first `--train` / `--test` images of real MNIST instead: the issue-19
  check on a 4,000-image subset, on a machine that has MNIST.
* `FashionMNIST/`: real Fashion-MNIST from Debian's `dataset-fashion-mnist` package
  (`apt-get install dataset-fashion-mnist`: /usr/share/datasets/fashion-mnist), the first
  `--train` training and `--test` test images (class-balanced by construction of the release).

    .venv/bin/python docs/experiments/mnist_files.py --out data-check [--train 4000 --test 1000]
    .venv/bin/ensemblekit benchmark --dataset mnist --data-dir data-check --out runs/mnist-check

What these files gave with the MNIST recipe: docs/experiments/recipes-mnist.md.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import ensemblekit as ek

FASHION_RELEASE = Path("/usr/share/datasets/fashion-mnist")
FILES = {("train", "images"): "train-images-idx3-ubyte",
         ("train", "labels"): "train-labels-idx1-ubyte",
         ("test", "images"): "t10k-images-idx3-ubyte",
         ("test", "labels"): "t10k-labels-idx1-ubyte"}


def write_idx(path: Path, array: np.ndarray) -> None:
    """idx: magic 0x0000 | type 0x08 (uint8) | number of dimensions, then big-endian sizes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(size).to_bytes(4, "big") for size in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def read_idx(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes())
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def digits_as_mnist(raw: Path) -> None:
    for split in ("train", "test"):
        images, labels = ek.data.as_tensors(ek.load_dataset("digits", split))
        big = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
        pixels = (big.clamp(0, 1) * 255).round().to(torch.uint8)[:, 0].numpy()
        write_idx(raw / FILES[(split, "images")], pixels)
        write_idx(raw / FILES[(split, "labels")], labels.numpy().astype(np.uint8))
        print(f"MNIST/{split}: {len(labels)} digits upsampled to 28x28")


def release_subset(release: Path, raw: Path, counts: dict[str, int], name: str) -> None:
    """The first ``counts[split]`` images and labels of a released idx set (``*.gz``)."""
    for split, count in counts.items():
        images = read_idx(release / (FILES[(split, "images")] + ".gz"))[:count]
        labels = read_idx(release / (FILES[(split, "labels")] + ".gz"))[:count]
        write_idx(raw / FILES[(split, "images")], images)
        write_idx(raw / FILES[(split, "labels")], labels)
        print(f"{name}/{split}: {len(labels)} images, classes "
              f"{np.bincount(labels, minlength=10).tolist()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the data folder to write")
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--mnist", help="a folder with real MNIST's released *-ubyte.gz files: "
                        "write its subset instead of the digits")
    args = parser.parse_args()
    out = Path(args.out)
    counts = {"train": args.train, "test": args.test}
    (out / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
    if args.mnist:
        release_subset(Path(args.mnist), out / "MNIST" / "raw", counts, "MNIST")
    else:
        digits_as_mnist(out / "MNIST" / "raw")
    if FASHION_RELEASE.is_dir():
        (out / "FashionMNIST" / "raw").mkdir(parents=True, exist_ok=True)
        release_subset(FASHION_RELEASE, out / "FashionMNIST" / "raw", counts, "FashionMNIST")
    else:
        print(f"{FASHION_RELEASE} not found: apt-get install dataset-fashion-mnist for the "
              "real Fashion-MNIST subset")


if __name__ == "__main__":
    main()
