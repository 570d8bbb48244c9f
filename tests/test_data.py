"""Registry, embedded datasets (digits, letters, toy), transforms, OOD pairs and previews."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch.utils.data import Subset, TensorDataset

from ensemblekit.data import (
    CORRUPTIONS,
    InMemoryDataset,
    Normalize,
    RandomCropFlip,
    as_tensors,
    augment,
    available_datasets,
    dataset_info,
    example_scene,
    load_dataset,
    normalize,
    normalizer,
    ood_dataset,
    ood_pairs,
    save_corruption_preview,
    toy_grid,
    train_augmentation,
)

EMBEDDED = ["digits", "letters", "toy_moons", "toy_blobs", "toy_moons_far", "toy_blobs_far"]
ALL = EMBEDDED + ["mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "cifar10_c", "imagenet"]
# Regression sets (tests/test_regression_data.py): embedded ones, then the UCI release's nine.
REGRESSION = ["diabetes", "toy_cubic", "toy_in_between", "toy_hetero_sine"]
UCI = ["uci-bostonHousing", "uci-concrete", "uci-energy", "uci-kin8nm",
       "uci-naval-propulsion-plant", "uci-power-plant", "uci-protein-tertiary-structure",
       "uci-wine-quality-red", "uci-yacht"]


def test_every_name_is_registered_with_consistent_info():
    # A session may register more UCI folders (register_uci_dataset); the built-ins are these.
    assert {name for name in available_datasets() if name not in UCI
            and not name.startswith("uci-")} == set(ALL + REGRESSION)
    assert set(UCI) <= set(available_datasets())
    for name in ALL:
        info = dataset_info(name)
        assert info.name == name
        assert len(info.mean) == len(info.std) == info.in_channels
        assert info.num_features == torch.Size(info.input_shape).numel()
        assert info.embedded == (name in EMBEDDED)
        assert info.task == "classification" and info.num_outputs == 0


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_datasets_load_offline_with_declared_shape(name, tmp_path):
    info = dataset_info(name)
    for split in info.splits:
        dataset = load_dataset(name, split, data_dir=tmp_path / "empty")
        images, labels = as_tensors(dataset)
        assert images.shape[1:] == info.input_shape
        assert labels.dtype == torch.long and labels.shape == (len(dataset),)
        image, label = dataset[0]
        assert image.shape == info.input_shape and isinstance(label, int)
        if info.num_classes:
            assert set(labels.tolist()) == set(range(info.num_classes))
        else:
            assert set(labels.tolist()) == {-1}  # OOD-only sets belong to no class
        if info.is_image:
            assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
        again, _ = as_tensors(load_dataset(name, split))
        assert torch.equal(images, again)  # fixed seeds: the same data every time


def test_digits_split_is_stratified_disjoint_and_normalisation_matches():
    train, train_labels = as_tensors(load_dataset("digits", "train"))
    test, test_labels = as_tensors(load_dataset("digits", "test"))
    assert len(train) + len(test) == 1797 and 530 <= len(test) <= 545
    assert torch.bincount(test_labels).min() >= 50  # every class well represented
    flat_train = {tuple(row.tolist()) for row in train.flatten(1)}
    overlap = sum(tuple(row.tolist()) in flat_train for row in test.flatten(1))
    assert overlap <= 3  # only a few exact duplicate images exist in the raw data
    info = dataset_info("digits")
    assert abs(float(train.mean()) - info.mean[0]) < 5e-4
    assert abs(float(train.std()) - info.std[0]) < 5e-4
    standardised = normalize(train, "digits")
    assert abs(float(standardised.mean())) < 2e-3 and abs(float(standardised.std()) - 1) < 2e-3


def test_letters_are_not_trivially_separable_from_digits():
    digits, _ = as_tensors(load_dataset("digits", "test"))
    letters, _ = as_tensors(load_dataset("letters", "test"))
    assert letters.shape[1:] == digits.shape[1:]
    # Same value grid (optdigits counts 0..16) and similar ink statistics.
    assert torch.equal((letters * 16).round(), letters * 16)
    assert abs(float(letters.mean()) - float(digits.mean())) < 0.06
    ink = lambda x: float((x > 0).float().mean())  # noqa: E731
    assert abs(ink(letters) - ink(digits)) < 0.08
    # Still a different population: the mean images differ clearly.
    assert float((letters.mean(0) - digits.mean(0)).abs().mean()) > 0.02


def test_toy_far_points_lie_outside_the_data():
    for name in ("toy_moons", "toy_blobs"):
        points, _ = as_tensors(load_dataset(name, "train"))
        far, _ = as_tensors(load_dataset(ood_dataset(name), "test"))
        centre = points.mean(0)
        radius = (points - centre).norm(dim=1).max()
        distance = (far - centre).norm(dim=1)
        assert float(distance.min()) >= 1.5 * float(radius) - 1e-4
        nearest = torch.cdist(far, points).min(dim=1).values
        assert float(nearest.min()) > 0.4 * float(radius)


def test_toy_grid_covers_the_data_with_margin():
    grid = toy_grid("toy_moons", resolution=50)
    assert grid.points.shape == (2500, 2) and grid.xs.shape == grid.ys.shape == (50,)
    points, _ = as_tensors(load_dataset("toy_moons", "train"))
    assert grid.xs[0] < points[:, 0].min() and grid.xs[-1] > points[:, 0].max()
    # Row-major over (ys, xs): point k is (xs[k % R], ys[k // R]).
    assert torch.equal(grid.points[51], torch.stack([grid.xs[1], grid.ys[1]]))
    with pytest.raises(ValueError, match="not a toy dataset"):
        toy_grid("digits")


def test_ood_pairs_exist_for_every_benchmark_dataset():
    pairs = ood_pairs()
    assert pairs["cifar10"] == "svhn" and pairs["cifar100"] == "svhn"
    assert pairs["mnist"] == "fashion_mnist" and pairs["digits"] == "letters"
    assert pairs["toy_moons"] == "toy_moons_far"
    for name, ood in pairs.items():
        assert ood in available_datasets()
        if dataset_info(name).is_image:
            assert dataset_info(ood).in_channels == dataset_info(name).in_channels
            assert dataset_info(ood).image_size == dataset_info(name).image_size
    with pytest.raises(ValueError, match="no out-of-distribution pair"):
        ood_dataset("imagenet")


def test_bad_names_and_splits_are_reported():
    with pytest.raises(ValueError, match="dataset name"):
        load_dataset("cifar11", "test")
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", "validation")


def test_as_tensors_handles_tensor_datasets_subsets_and_transforms():
    images, labels = torch.rand(6, 1, 4, 4), torch.arange(6)
    plain = InMemoryDataset(images, labels)
    assert as_tensors(plain)[0] is images
    assert torch.equal(as_tensors(TensorDataset(images, labels))[1], labels)
    picked = as_tensors(Subset(plain, [4, 1]))
    assert torch.equal(picked[0], images[[4, 1]]) and picked[1].tolist() == [4, 1]
    doubled = as_tensors(InMemoryDataset(images, labels, transform=lambda x: 2 * x))
    torch.testing.assert_close(doubled[0], 2 * images)
    compact = InMemoryDataset(torch.full((2, 1, 2, 2), 255, dtype=torch.uint8), labels[:2])
    assert torch.equal(as_tensors(compact)[0], torch.ones(2, 1, 2, 2))


def test_normalize_and_its_module_agree():
    images = torch.rand(4, 3, 32, 32)
    info = dataset_info("cifar10")
    expected = (images - torch.tensor(info.mean).view(1, 3, 1, 1)) / torch.tensor(info.std).view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(normalize(images, "cifar10"), expected)
    torch.testing.assert_close(Normalize("cifar10")(images), expected)
    assert isinstance(normalizer("digits"), Normalize)
    assert normalizer("toy_moons") is None  # raw coordinates


def test_training_augmentation_per_dataset():
    cifar = train_augmentation("cifar10")
    assert isinstance(cifar, RandomCropFlip) and cifar.padding == 4 and cifar.flip
    svhn = train_augmentation("svhn")
    assert svhn.padding == 4 and not svhn.flip
    assert train_augmentation("digits").padding == 1 and not train_augmentation("digits").flip
    assert train_augmentation("mnist") is None and train_augmentation("toy_moons") is None


def test_random_crop_flip_outputs_are_shifted_or_mirrored_crops():
    images = torch.rand(16, 3, 8, 8)
    out = augment(images, "cifar10", generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for image, result in zip(padded, out, strict=True):
        candidates = [
            crop
            for top in range(9)
            for left in range(9)
            for crop in (image[:, top : top + 8, left : left + 8],)
            for crop in (crop, crop.flip(-1))
        ]
        assert any(torch.equal(result, crop) for crop in candidates)
    again = augment(images, "cifar10", generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert not torch.equal(out, images)


def test_preview_png_has_a_cell_per_kind_and_severity(tmp_path):
    path = save_corruption_preview(
        example_scene(32), tmp_path / "preview.png", kinds=CORRUPTIONS[:3], severities=[1, 5]
    )
    with Image.open(path) as picture:
        width, height = picture.size
        assert picture.format == "PNG"
    assert width > height  # 3 columns (clean, 1, 5) wider than 3 short rows plus labels
    digits, _ = as_tensors(load_dataset("digits", "test"))
    save_corruption_preview(digits[:2], tmp_path / "digits.png", kinds=["fog"])
    assert (tmp_path / "digits.png").stat().st_size > 1000
