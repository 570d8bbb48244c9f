"""The member-study configs run as they are (one epoch) on tiny files in the real layouts."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from ensemblekit.cli import main
from ensemblekit.experiments import BenchmarkSettings, DiversitySettings
from test_data_formats import _write_idx

CONFIGS = Path(__file__).parent.parent / "configs"


def write_mnist(root: Path, folder: str, *, train: int, test: int, seed: int) -> None:
    """idx files (uint8) with balanced labels: every class in the validation split."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, count in (("train", train), ("t10k", test)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte",
                   rng.integers(0, 256, (count, 28, 28), dtype=np.uint8))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", (np.arange(count) % 10).astype(np.uint8))


def write_cifar10(root: Path, *, per_batch: int, seed: int) -> None:
    """The CIFAR-10 python pickles: five training batches and the test batch."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        entry = {"data": rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8),
                 "labels": (np.arange(per_batch) % 10).tolist()}
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(pickle.dumps(
        {"label_names": [f"class{i}" for i in range(10)]}))


def test_mnist_study_config_holds_the_protocol():
    settings = DiversitySettings.from_sources(CONFIGS / "mnist_member_study.toml")
    config = settings.train_config(seed=0, method="batchensemble")
    assert (settings.backbone, settings.hidden, settings.members, settings.dropout,
            settings.seeds, settings.epochs) == ("mlp", [64, 32, 16], 4, 0.05, 5, 75)
    assert (config.optimizer, config.lr, config.weight_decay) == ("adam", 1e-3, 1e-4)
    assert (config.schedule, config.milestones, config.gamma) == ("multistep", (25, 50), 0.1)
    assert (config.early_stopping_patience, config.restore_best) == (10, True)
    assert settings.controls == {"batchensemble": ["ones", "random_sign"]}
    for name in ("cifar10_resnet18_study", "cifar10_resnet18_diversity"):
        path = CONFIGS / f"{name}.toml"
        cls = BenchmarkSettings if name.endswith("study") else DiversitySettings
        cifar = cls.from_sources(path).train_config(seed=0)
        assert (cifar.optimizer, cifar.lr, cifar.momentum, cifar.nesterov, cifar.batch_size) \
            == ("sgd", 0.05, 0.9, True, 128)
        assert (cifar.weight_decay, cifar.fast_weight_decay, cifar.fast_weight_lr_multiplier) \
            == (5e-4, 5e-4, 1.0)
        assert (cifar.milestones, cifar.epochs) == ((25, 50), 75)
    # --epochs 1 keeps a valid schedule: the milestones it never reaches are dropped.
    short = DiversitySettings.from_sources(CONFIGS / "mnist_member_study.toml",
                                           overrides={"epochs": 1}).train_config(seed=0)
    assert (short.schedule, short.epochs) == ("constant", 1)


@pytest.mark.slow
def test_mnist_study_config_runs_one_epoch_on_idx_files(tmp_path, capsys):
    write_mnist(tmp_path / "data", "MNIST", train=200, test=30, seed=0)
    write_mnist(tmp_path / "data", "FashionMNIST", train=10, test=30, seed=1)
    out = tmp_path / "out"
    status = main(["diversity", "--config", str(CONFIGS / "mnist_member_study.toml"),
                   "--epochs", "1", "--seeds", "2", "--corruptions", "gaussian_noise",
                   "--data-dir", str(tmp_path / "data"), "--out", str(out), "--threads", "1"])
    assert status == 0, capsys.readouterr().err
    results = json.loads((out / "diversity.json").read_text())
    assert results["protocol"]["validation"] == 20  # 10 % of 200, stratified
    assert results["protocol"]["ood_status"] == "ok"
    assert len(results["variants"]) == 7 and len(results["verdicts"]) == 2
