"""Out-of-distribution pairs: which dataset plays "unknown inputs" for a model trained on another.

``ood_dataset(name)`` returns the *name* of the OOD set (no data is read), so configs and
reports can state the pair; load it with ``load_dataset(ood_dataset(name), "test")`` and
normalise it with the in-distribution statistics, ``normalize(images, name)``.

=================  ==================  =================================================
in-distribution    OOD set             why
=================  ==================  =================================================
cifar10, cifar10_c svhn                the standard pair in the literature
cifar100           svhn                same
svhn               cifar10             the reverse pair
mnist              fashion_mnist       same size and format, different content
fashion_mnist      mnist               the reverse pair
digits             letters             offline notMNIST analogue (see ``letters.py``)
toy_moons          toy_moons_far       points far from the data (see ``toy.py``)
toy_blobs          toy_blobs_far       same
=================  ==================  =================================================

ImageNet has no pair here: its usual OOD sets (ImageNet-O, iNaturalist, Textures) are separate
downloads; evaluate OOD on it by naming a set yourself.
"""

from __future__ import annotations

from .registry import available_datasets, dataset_info


def ood_dataset(name: str) -> str:
    """Name of the out-of-distribution test set paired with dataset ``name``.

    Raises ``ValueError`` for an unknown name, or a dataset with no registered pair.
    """
    info = dataset_info(name)
    if info.ood is None:
        paired = ", ".join(n for n in available_datasets() if dataset_info(n).ood is not None)
        raise ValueError(
            f"dataset {name!r} has no out-of-distribution pair; datasets with one: {paired}"
        )
    return info.ood


def ood_pairs() -> dict[str, str]:
    """Every registered ``{in-distribution name: OOD name}`` pair."""
    return {name: dataset_info(name).ood for name in available_datasets() if dataset_info(name).ood}
