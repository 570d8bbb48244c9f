"""MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100 and SVHN via torchvision, on their official layouts.

Each loader returns the torchvision dataset object itself (so ``.data``, ``.targets`` and
``.classes`` are there as usual) with ``transform`` set to convert images to float tensors in
[0, 1], followed by the caller's ``transform`` if one is given.

CIFAR and SVHN: torchvision checks each file against the md5 of the official release, which
also rejects a re-packed or test-sized copy in the same format. :class:`CIFAR10`,
:class:`CIFAR100` and :class:`SVHN` here are torchvision's classes with that check relaxed to
"the files are there"; downloads are still verified by torchvision.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import torchvision
from torchvision import transforms as tv_transforms

from .in_memory import PLAIN_TO_TENSOR
from .registry import (
    DatasetInfo,
    download_error,
    missing_data_error,
    register_dataset,
    unreadable_data_error,
)


class CIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR-10 that accepts any present copy of the official pickle batches."""

    def _check_integrity(self) -> bool:
        return _all_present(self.root, self.base_folder, self.train_list + self.test_list)

    def _load_meta(self) -> None:
        path = os.path.join(self.root, self.base_folder, self.meta["filename"])
        if not os.path.isfile(path):
            raise RuntimeError(f"CIFAR metadata file {path} not found")
        with open(path, "rb") as handle:
            self.classes = pickle.load(handle, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}


class CIFAR100(CIFAR10):
    """torchvision's CIFAR-100 (fine labels) with the same presence check."""

    base_folder = torchvision.datasets.CIFAR100.base_folder
    url = torchvision.datasets.CIFAR100.url
    filename = torchvision.datasets.CIFAR100.filename
    tgz_md5 = torchvision.datasets.CIFAR100.tgz_md5
    train_list = torchvision.datasets.CIFAR100.train_list
    test_list = torchvision.datasets.CIFAR100.test_list
    meta = torchvision.datasets.CIFAR100.meta


class SVHN(torchvision.datasets.SVHN):
    """torchvision's SVHN (label 10 mapped to digit 0) that accepts any present ``.mat`` file."""

    def _check_integrity(self) -> bool:
        return os.path.isfile(os.path.join(self.root, self.filename))


def _all_present(root: str, folder: str, files: list[list[str]]) -> bool:
    return all(os.path.isfile(os.path.join(root, folder, name)) for name, _ in files)


_CIFAR_LAYOUT = """\
  {data_dir}/cifar-10-batches-py/
      data_batch_1 ... data_batch_5, test_batch, batches.meta
  (the official "CIFAR-10 python version" archive, extracted)"""
_CIFAR100_LAYOUT = """\
  {data_dir}/cifar-100-python/
      train, test, meta
  (the official "CIFAR-100 python version" archive, extracted)"""
_SVHN_LAYOUT = """\
  {data_dir}/svhn/
      train_32x32.mat, test_32x32.mat [, extra_32x32.mat]
  (the official "Format 2: cropped digits" MATLAB files)"""
_MNIST_LAYOUT = """\
  {data_dir}/{folder}/raw/
      train-images-idx3-ubyte, train-labels-idx1-ubyte,
      t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte
  (the official idx files, uncompressed)"""

_CIFAR10_MEAN, _CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

CIFAR10_INFO = DatasetInfo(
    name="cifar10",
    num_classes=10,
    in_channels=3,
    image_size=(32, 32),
    mean=_CIFAR10_MEAN,
    std=_CIFAR10_STD,
    splits=("train", "test"),
    ood="svhn",
    crop_padding=4,
    hflip=True,
    folder="cifar-10-batches-py",
    layout=_CIFAR_LAYOUT,
    description="CIFAR-10 (torchvision, official python pickles)",
)
CIFAR100_INFO = DatasetInfo(
    name="cifar100",
    num_classes=100,
    in_channels=3,
    image_size=(32, 32),
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
    splits=("train", "test"),
    ood="svhn",
    crop_padding=4,
    hflip=True,
    folder="cifar-100-python",
    layout=_CIFAR100_LAYOUT,
    description="CIFAR-100, fine labels (torchvision, official python pickles)",
)
SVHN_INFO = DatasetInfo(
    name="svhn",
    num_classes=10,
    in_channels=3,
    image_size=(32, 32),
    mean=(0.4377, 0.4438, 0.4728),
    std=(0.1980, 0.2010, 0.1970),
    splits=("train", "test", "extra"),
    ood="cifar10",
    crop_padding=4,
    hflip=False,  # house numbers are not mirror-symmetric
    folder="svhn",
    layout=_SVHN_LAYOUT,
    description="SVHN cropped digits (torchvision, official .mat files)",
)
MNIST_INFO = DatasetInfo(
    name="mnist",
    num_classes=10,
    in_channels=1,
    image_size=(28, 28),
    mean=(0.1307,),
    std=(0.3081,),
    splits=("train", "test"),
    ood="fashion_mnist",
    folder="MNIST",
    layout=_MNIST_LAYOUT.replace("{folder}", "MNIST"),
    description="MNIST (torchvision, official idx files)",
)
FASHION_MNIST_INFO = DatasetInfo(
    name="fashion_mnist",
    num_classes=10,
    in_channels=1,
    image_size=(28, 28),
    mean=(0.2860,),
    std=(0.3530,),
    splits=("train", "test"),
    ood="mnist",
    folder="FashionMNIST",
    layout=_MNIST_LAYOUT.replace("{folder}", "FashionMNIST"),
    description="Fashion-MNIST (torchvision, official idx files)",
)


def _load_torchvision(
    info: DatasetInfo, build: Callable, data_dir: Path, download: bool, transform: Callable | None
):
    """``build(full_transform)`` with [0, 1] tensor images; "not found" becomes a clear error."""
    full_transform = (
        PLAIN_TO_TENSOR
        if transform is None
        else tv_transforms.Compose([PLAIN_TO_TENSOR, transform])
    )
    try:
        return build(full_transform)
    except (RuntimeError, OSError) as error:
        if download:  # torchvision reports a failed download as either kind
            raise download_error(info, error) from error
        if isinstance(error, RuntimeError) and "not found" in str(error):
            raise missing_data_error(info, data_dir) from None
        raise
    except Exception as error:  # pickle, idx or .mat parsing of a damaged file
        raise unreadable_data_error(info, data_dir, error) from error


def _register_train_test(info: DatasetInfo, dataset_class: type) -> None:
    """Register a torchvision class taking ``(root, train=..., transform=..., download=...)``."""

    @register_dataset(info)
    def load(split: str, data_dir: Path, download: bool, transform):
        def build(full_transform):
            return dataset_class(
                str(data_dir), train=split == "train", transform=full_transform, download=download
            )

        return _load_torchvision(info, build, data_dir, download, transform)


_register_train_test(CIFAR10_INFO, CIFAR10)
_register_train_test(CIFAR100_INFO, CIFAR100)
_register_train_test(MNIST_INFO, torchvision.datasets.MNIST)
_register_train_test(FASHION_MNIST_INFO, torchvision.datasets.FashionMNIST)


@register_dataset(SVHN_INFO)
def load_svhn(split: str, data_dir: Path, download: bool, transform):
    """SVHN ``split`` from ``data_dir/svhn/<split>_32x32.mat``."""

    def build(full_transform):
        root = str(data_dir / SVHN_INFO.folder)
        return SVHN(root, split=split, transform=full_transform, download=download)

    return _load_torchvision(SVHN_INFO, build, data_dir, download, transform)
