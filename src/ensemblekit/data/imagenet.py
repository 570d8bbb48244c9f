"""ImageNet (ILSVRC-2012) from an ImageFolder tree: ``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``.

Images differ in size, so the usual geometry happens when each image is loaded: training images
get a random-resized 224 crop and a horizontal flip, evaluation images a resize of the short side
to 256 and a centre 224 crop. Either way the result is a ``(3, 224, 224)`` float tensor in
[0, 1], not normalised (see :mod:`ensemblekit.data.registry`). ``"test"`` reads ``val/``: the
official test labels are not public, so the validation set is the test set by convention.
"""

from __future__ import annotations

from pathlib import Path

from torchvision import datasets
from torchvision import transforms as tv_transforms

from .registry import DatasetInfo, missing_data_error, register_dataset

IMAGENET_SIZE = 224
IMAGENET_RESIZE = 256

IMAGENET_INFO = DatasetInfo(
    name="imagenet",
    num_classes=1000,
    in_channels=3,
    image_size=(IMAGENET_SIZE, IMAGENET_SIZE),
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    splits=("train", "val", "test"),
    folder="imagenet",
    layout="""\
  {data_dir}/imagenet/
      train/n01440764/*.JPEG, train/n01443537/*.JPEG, ...  (one folder per class)
      val/n01440764/*.JPEG, ...  (the 50000 validation images sorted the same way)
  (ILSVRC-2012 from image-net.org, which requires registration)""",
    description="ImageNet ILSVRC-2012 (torchvision ImageFolder; 'test' reads val/)",
)


def imagenet_transform(train: bool):
    """The per-image geometry for ImageNet, ending in a float tensor in [0, 1]."""
    if train:
        geometry = [
            tv_transforms.RandomResizedCrop(IMAGENET_SIZE),
            tv_transforms.RandomHorizontalFlip(),
        ]
    else:
        geometry = [
            tv_transforms.Resize(IMAGENET_RESIZE),
            tv_transforms.CenterCrop(IMAGENET_SIZE),
        ]
    return tv_transforms.Compose([*geometry, tv_transforms.ToTensor()])


@register_dataset(IMAGENET_INFO)
def load_imagenet(split: str, data_dir: Path, download: bool, transform) -> datasets.ImageFolder:
    """ImageNet ``split`` as a torchvision ``ImageFolder`` (ImageNet cannot be downloaded here)."""
    folder = data_dir / IMAGENET_INFO.folder / ("train" if split == "train" else "val")
    if not folder.is_dir():
        raise missing_data_error(IMAGENET_INFO, data_dir, downloadable=False)
    steps = imagenet_transform(split == "train")
    if transform is not None:
        steps = tv_transforms.Compose([steps, transform])
    try:
        return datasets.ImageFolder(str(folder), transform=steps)
    except FileNotFoundError:  # the folder exists but holds no class folders / images
        raise missing_data_error(IMAGENET_INFO, data_dir, downloadable=False) from None
