"""Every file-backed dataset, loaded from tiny files written in its real on-disk format.

The fixture writes the official layouts (CIFAR python pickles, SVHN ``.mat``, MNIST idx,
CIFAR-10-C ``.npy``, an ImageFolder tree) and the tests go through ``load_dataset``, the same
code path users take.
"""

from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from ensemblekit.data import (
    CORRUPTIONS,
    as_tensors,
    corrupted_split,
    dataset_info,
    load_dataset,
    read_corrupted_folder,
    write_corrupted_folder,
)
from ensemblekit.data.vision import CIFAR10

FILE_BACKED = ["mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "cifar10_c", "imagenet"]


def _pixels(rng, shape):
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _write_cifar(root, rng, *, hundred: bool):
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir()
    written = {}
    names = (
        ["train", "test"] if hundred else [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    )
    for name in names:
        count = 3
        images = _pixels(rng, (count, 3 * 32 * 32))
        labels = rng.integers(0, 100 if hundred else 10, size=count).tolist()
        entry = {"data": images}
        if hundred:
            entry.update(fine_labels=labels, coarse_labels=[0] * count)
        else:
            entry["labels"] = labels
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle)
        written[name] = (images, labels)
    meta_name, key = ("meta", "fine_label_names") if hundred else ("batches.meta", "label_names")
    with open(folder / meta_name, "wb") as handle:
        pickle.dump({key: [f"class{i}" for i in range(100 if hundred else 10)]}, handle)
    return written


def _write_idx(path, array: np.ndarray):
    # idx: magic = 0x0000 | type 0x08 (uint8) | number of dimensions; then big-endian sizes.
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def _write_mnist(root, folder, rng):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    written = {}
    for prefix, count in (("train", 4), ("t10k", 3)):
        images, labels = _pixels(rng, (count, 28, 28)), rng.integers(0, 10, count).astype(np.uint8)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        written[prefix] = (images, labels)
    return written


def _write_svhn(root, rng):
    folder = root / "svhn"
    folder.mkdir()
    images = _pixels(rng, (32, 32, 3, 4))  # the .mat stores (H, W, C, N)
    labels = np.array([[10], [1], [5], [10]], dtype=np.uint8)  # 10 means digit 0
    scipy.io.savemat(folder / "test_32x32.mat", {"X": images, "y": labels})
    return images, labels


def _write_imagefolder(root, rng):
    for split in ("train", "val"):
        for index, wnid in enumerate(("n01440764", "n01443537")):
            folder = root / "imagenet" / split / wnid
            folder.mkdir(parents=True)
            image = Image.fromarray(_pixels(rng, (30 + 10 * index, 40, 3)))
            image.save(folder / f"{wnid}_{index}.JPEG", quality=95)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    written = {
        "cifar10": _write_cifar(root, rng, hundred=False),
        "cifar100": _write_cifar(root, rng, hundred=True),
        "mnist": _write_mnist(root, "MNIST", rng),
        "fashion_mnist": _write_mnist(root, "FashionMNIST", rng),
        "svhn": _write_svhn(root, rng),
    }
    _write_imagefolder(root, rng)
    # CIFAR-10-C in the official layout: (5 * N, 32, 32, 3) uint8 per kind + labels.npy.
    folder = root / "CIFAR-10-C"
    folder.mkdir()
    block = 2
    for kind in CORRUPTIONS:
        severity_of_row = np.repeat(np.arange(1, 6, dtype=np.uint8), block)
        images = np.broadcast_to(severity_of_row[:, None, None, None], (5 * block, 32, 32, 3))
        np.save(folder / f"{kind}.npy", np.ascontiguousarray(images))  # pixel = severity
    np.save(folder / "labels.npy", np.tile(np.array([3, 7], dtype=np.uint8), 5))
    return root, written


def test_cifar10_loads_official_pickles(data_dir):
    root, written = data_dir
    test = load_dataset("cifar10", "test", data_dir=root)
    images, labels = written["cifar10"]["test_batch"]
    image, label = test[1]
    expected = torch.from_numpy(images[1].reshape(3, 32, 32)).float() / 255
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    torch.testing.assert_close(image, expected)
    assert label == labels[1]
    assert len(load_dataset("cifar10", "train", data_dir=root)) == 15
    assert test.classes[0] == "class0"


def test_cifar100_uses_fine_labels(data_dir):
    root, written = data_dir
    test = load_dataset("cifar100", "test", data_dir=root)
    assert [test[i][1] for i in range(3)] == written["cifar100"]["test"][1]
    assert dataset_info("cifar100").num_classes == 100


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_family_loads_idx_files(data_dir, name):
    root, written = data_dir
    images, labels = written[name]["t10k"]
    test = load_dataset(name, "test", data_dir=root)
    image, label = test[2]
    assert image.shape == (1, 28, 28)
    torch.testing.assert_close(image[0], torch.from_numpy(images[2]).float() / 255)
    assert label == labels[2]
    assert len(load_dataset(name, "train", data_dir=root)) == 4


def test_svhn_loads_mat_and_maps_label_10_to_0(data_dir):
    root, written = data_dir
    images, _ = written["svhn"]
    test = load_dataset("svhn", "test", data_dir=root)
    assert [test[i][1] for i in range(4)] == [0, 1, 5, 0]
    image, _ = test[1]
    torch.testing.assert_close(image, torch.from_numpy(images[..., 1]).permute(2, 0, 1) / 255)


def test_imagenet_imagefolder_gives_224_crops(data_dir):
    root, _ = data_dir
    for split in ("train", "test"):
        dataset = load_dataset("imagenet", split, data_dir=root)
        image, label = dataset[1]
        assert image.shape == (3, 224, 224)
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        assert label == 1
    assert dataset.classes == ["n01440764", "n01443537"]


def test_cifar10_c_official_layout_blocks(data_dir):
    root, _ = data_dir
    one = load_dataset("cifar10_c", corrupted_split("fog", 3), data_dir=root)
    images, labels = as_tensors(one)
    assert images.shape == (2, 3, 32, 32)
    torch.testing.assert_close(images, torch.full_like(images, 3 / 255))  # severity-3 block
    assert labels.tolist() == [3, 7]
    every = load_dataset("cifar10_c", "fog", data_dir=root)
    assert len(every) == 10


def test_as_tensors_fast_path_matches_item_by_item(data_dir):
    root, _ = data_dir
    for name in ("cifar10", "mnist", "svhn"):
        fast = as_tensors(load_dataset(name, "test", data_dir=root))
        slow = as_tensors(load_dataset(name, "test", data_dir=root, transform=lambda x: x))
        torch.testing.assert_close(fast[0], slow[0])
        assert torch.equal(fast[1], slow[1])


def test_user_transform_runs_after_conversion(data_dir):
    root, _ = data_dir
    dataset = load_dataset("cifar10", "test", data_dir=root, transform=lambda x: x * 0 + 0.5)
    assert torch.all(dataset[0][0] == 0.5)


@pytest.mark.parametrize("name", FILE_BACKED)
def test_missing_files_raise_a_helpful_error(tmp_path, name):
    split = corrupted_split("fog", 1) if name == "cifar10_c" else "test"
    with pytest.raises(FileNotFoundError) as caught:
        load_dataset(name, split, data_dir=tmp_path)
    message = str(caught.value)
    info = dataset_info(name)
    assert repr(name) in message
    assert str(tmp_path / info.folder) in message  # the path searched
    assert "expected layout" in message and info.folder in message
    assert "download=True" in message and "--download" in message


def test_cifar_accepts_files_that_fail_torchvision_md5(data_dir):
    # The whole point of the subclass: the md5 of a small copy differs from the release.
    root, _ = data_dir
    assert CIFAR10(str(root), train=False).data.shape == (3, 32, 32, 3)


def test_written_folder_round_trips_and_reads_like_cifar10_c(tmp_path):
    rng = np.random.default_rng(1)
    images = torch.from_numpy(_pixels(rng, (3, 1, 8, 8))).float() / 255
    labels = torch.tensor([4, 0, 9])
    out = write_corrupted_folder((images, labels), tmp_path / "digits-c", ["fog", "contrast"])
    stored = np.load(out / "fog.npy")
    assert stored.shape == (15, 8, 8, 1) and stored.dtype == np.uint8
    assert np.load(out / "labels.npy").tolist() == labels.tolist() * 5
    block, block_labels = as_tensors(read_corrupted_folder(out, "contrast", 4))
    assert block.shape == (3, 1, 8, 8) and block_labels.tolist() == [4, 0, 9]
    # Same images as the lazy sets, up to uint8 rounding.
    from ensemblekit.data import make_corrupted

    lazy, _ = as_tensors(make_corrupted((images, labels), ["contrast"], [4])[("contrast", 4)])
    assert (block - lazy).abs().max() <= 0.5 / 255 + 1e-6


def test_written_folder_with_other_severities(tmp_path):
    images = torch.rand(2, 3, 8, 8)
    out = write_corrupted_folder((images, torch.tensor([1, 2])), tmp_path, ["brightness"], [2, 5])
    assert as_tensors(read_corrupted_folder(out, "brightness", 5))[0].shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="severity 1"):
        read_corrupted_folder(out, "brightness", 1)
