"""The training loop: config checks, schedules, data paths, determinism, checkpoints."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from ensemblekit.checkpoint import read_checkpoint
from ensemblekit.methods import build_model
from ensemblekit.train import CHECKPOINT_NAME, TrainConfig, epoch_batches, lr_factor, train_model

sys.path.insert(0, str(Path(__file__).parent / "_scripts"))
from train_tiny import tiny_problem  # noqa: E402


def mlp() -> nn.Module:
    """A plain torch MLP (no ensemblekit attributes): trains as a single model."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


def quick(**overrides) -> TrainConfig:
    settings = dict(epochs=2, batch_size=32, lr=0.1, schedule="constant", progress=False,
                    threads=1)
    settings.update(overrides)
    return TrainConfig(**settings)


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [value.clone() for value in model.state_dict().values()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (dict(epochs=0), "epochs"),
        (dict(lr=0.0), "lr"),
        (dict(lr=-0.1), "lr"),
        (dict(batch_size=0), "batch_size"),
        (dict(optimizer="adagrad"), "valid choices are: sgd, adamw, adam"),
        (dict(schedule="step"), "valid choices are: multistep, cosine, constant"),
        (dict(schedule="multistep"), "milestones=(25, 50)"),
        (dict(schedule="multistep", milestones=(5,)), "milestones"),
        (dict(schedule="multistep", epochs=10, milestones=(6, 3)), "sort them"),
        (dict(momentum=0.0, nesterov=True), "nesterov=False"),
        (dict(warmup_epochs=2), "warmup_epochs"),
        (dict(precision="fp8"), "valid choices are: fp32, bf16, fp16"),
        (dict(augment="flip"), "augment must be a callable"),
    ],
)
def test_bad_config_raises_naming_the_fix(overrides, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        quick(**overrides)


class GroupedMLP(nn.Module):
    """A stand-in with the methods' training contract: batch_multiple and tiled targets."""

    def __init__(self, batch_multiple: int = 4, tiles: int = 1):
        super().__init__()
        self.batch_multiple, self.tiles = batch_multiple, tiles
        self.body = mlp()

    def forward(self, x):
        return self.body(x.repeat(self.tiles, 1))

    def training_targets(self, y):
        return y.repeat(self.tiles)


def test_batch_size_not_a_multiple_is_rejected_before_any_work():
    model = GroupedMLP(batch_multiple=4)
    before = weights(model)
    with pytest.raises(ValueError, match=r"multiple of 4.*use batch_size=32"):
        train_model(model, tiny_problem(), quick(batch_size=30))
    assert same(before, weights(model))


def test_training_targets_are_used_for_tiled_outputs():
    model = GroupedMLP(batch_multiple=1, tiles=3)
    history = train_model(model, tiny_problem(), quick(epochs=3))
    assert history[-1]["loss"] < history[0]["loss"]


def test_training_lowers_the_loss_and_reports_each_epoch():
    threads = torch.get_num_threads()
    history = train_model(mlp(), tiny_problem(), quick(epochs=6))  # threads=1 while training
    assert torch.get_num_threads() == threads
    assert [record["epoch"] for record in history] == list(range(1, 7))
    assert set(history[0]) == {"epoch", "loss", "accuracy", "lr", "seconds"}
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
    assert history[-1]["accuracy"] > history[0]["accuracy"]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_same_seed_gives_identical_weights_and_another_seed_does_not(optimizer):
    config = quick(optimizer=optimizer, lr=0.01 if optimizer == "adamw" else 0.1)
    first, second, other = mlp(), mlp(), mlp()
    history = train_model(first, tiny_problem(), config)
    history_again = train_model(second, tiny_problem(), config)
    train_model(other, tiny_problem(), quick(optimizer=optimizer, seed=1))
    assert same(weights(first), weights(second))
    assert [r["loss"] for r in history] == [r["loss"] for r in history_again]
    assert not same(weights(first), weights(other))


class ItemDataset(Dataset):
    """A map-style dataset read item by item (the DataLoader path)."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], int(self.labels[index])


def test_dataset_path_matches_tensor_path():
    images, labels = tiny_problem()
    from_tensors, from_dataset = mlp(), mlp()
    train_model(from_tensors, (images, labels), quick())
    train_model(from_dataset, ItemDataset(images, labels), quick())
    assert same(weights(from_tensors), weights(from_dataset))


def test_epoch_batches_cover_the_data_and_trim_the_last_batch():
    batches, groups = epoch_batches(GroupedMLP(batch_multiple=4), 70, 32, 4,
                                    torch.Generator().manual_seed(0), epoch=0, seed=0)
    assert groups == 4
    assert [len(b) for b in batches] == [32, 32, 4]  # 6 left over -> 4, a multiple of 4
    assert len(set(torch.cat(batches).tolist())) == 68


def test_independent_member_batches_follow_each_members_own_order():
    model = build_model("mlp", "deep_ensemble", num_classes=4, in_channels=16, n=3,
                        independent_batches=True, seed=0)
    batches, groups = epoch_batches(model, 40, 16, 2, torch.Generator(), epoch=0, seed=5)
    assert groups == 3
    # 40 = 16 + 16 + 8 per member; every block of a batch is one member's rows.
    assert [len(b) for b in batches] == [48, 48, 24]
    members = [torch.cat([b.view(3, -1)[m] for b in batches]) for m in range(3)]
    for order in members:
        assert sorted(order.tolist()) == list(range(40))  # each member sees every row once
    assert not torch.equal(members[0], members[1])
    again, _ = epoch_batches(model, 40, 16, 2, torch.Generator(), epoch=1, seed=5)
    assert not torch.equal(again[0], batches[0])  # a new order every epoch


def test_schedules():
    steps = 10
    multistep = quick(epochs=6, schedule="multistep", milestones=(2, 4), gamma=0.5)
    factors = [lr_factor(epoch * steps, multistep, steps) for epoch in range(6)]
    assert factors == [1, 1, 0.5, 0.5, 0.25, 0.25]
    cosine = quick(epochs=4, schedule="cosine", warmup_epochs=1)
    assert [lr_factor(s, cosine, steps) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert lr_factor(10, cosine, steps) == 1.0
    assert lr_factor(25, cosine, steps) == pytest.approx(0.5)
    assert lr_factor(39, cosine, steps) == pytest.approx(0.5 * (1 + math.cos(math.pi * 29 / 30)))
    assert lr_factor(17, quick(schedule="constant"), steps) == 1.0


def test_multistep_learning_rate_reaches_the_optimizer():
    config = quick(epochs=3, schedule="multistep", milestones=(1, 2), gamma=0.1)
    history = train_model(mlp(), tiny_problem(), config)
    # Each record holds the lr after the epoch's last step, i.e. the next epoch's lr.
    assert [r["lr"] for r in history] == pytest.approx([0.01, 0.001, 0.001])


def test_hooks_augment_then_normalize_and_reject_normalised_inputs():
    seen = []

    def augment(x):
        seen.append(("augment", float(x.min()) >= 0))
        return x.flip(-1)

    def normalize(x):
        seen.append(("normalize", None))
        return (x - 0.5) / 0.25

    train_model(mlp(), tiny_problem(), quick(epochs=1, augment=augment, normalize=normalize))
    assert seen[:2] == [("augment", True), ("normalize", None)]
    images, labels = tiny_problem()
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        train_model(mlp(), ((images - 0.5) / 0.25, labels), quick(normalize=normalize))


def test_bad_data_is_rejected():
    images, labels = tiny_problem()
    with pytest.raises(ValueError, match="integer class indices"):
        train_model(mlp(), (images, labels.float()), quick())
    with pytest.raises(ValueError, match="agree on N"):
        train_model(mlp(), (images, labels[:-1]), quick())
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        train_model(mlp(), (images, labels), quick(), resume=True)


def test_checkpoint_each_epoch_and_resume_of_a_finished_run(tmp_path):
    model = mlp()
    history = train_model(model, tiny_problem(), quick(epochs=2), checkpoint_dir=tmp_path)
    payload = read_checkpoint(tmp_path / CHECKPOINT_NAME, kind="training")
    assert payload["epoch"] == 2 and payload["format_version"] == 1
    assert set(payload["rng"][0]) == {"torch", "cuda", "numpy", "python"}
    # Resuming a finished run trains nothing more and restores its weights and history.
    fresh = mlp()
    resumed = train_model(fresh, tiny_problem(), quick(epochs=2), checkpoint_dir=tmp_path,
                          resume=True)
    assert same(weights(fresh), weights(model))
    assert resumed == history


def test_resume_with_a_different_config_explains(tmp_path):
    train_model(mlp(), tiny_problem(), quick(epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"config changed \(lr: 0.1 -> 0.2\)"):
        train_model(mlp(), tiny_problem(), quick(epochs=1, lr=0.2), checkpoint_dir=tmp_path,
                    resume=True)


def test_progress_bar_shows_loss_and_accuracy(capsys):
    train_model(mlp(), tiny_problem(), quick(epochs=1, progress=True))
    err = capsys.readouterr().err
    assert "loss=" in err and "acc=" in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="autocast/GradScaler need CUDA")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cuda(precision):
    model = mlp()
    history = train_model(model, tiny_problem(), quick(epochs=4, precision=precision,
                                                       device="cuda"))
    assert next(model.parameters()).dtype == torch.float32
    assert history[-1]["loss"] < history[0]["loss"]


@pytest.mark.slow  # torch.compile builds kernels with the C++ compiler: ~1 minute on CPU
def test_compiled_training_matches_eager():
    eager, compiled = mlp(), mlp()
    train_model(eager, tiny_problem(), quick())
    train_model(compiled, tiny_problem(), quick(compile=True))
    for a, b in zip(weights(eager), weights(compiled), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def digits():
    from ensemblekit.data import load_dataset

    return load_dataset("digits", "train")


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("single", {}),
        ("mc_dropout", {"p": 0.2}),
        ("masksembles", {"n": 4, "scale": 2.0}),
        ("batchensemble", {"n": 4}),
        ("mimo", {"n": 3, "batch_repetitions": 2}),
        ("deep_ensemble", {"n": 2}),
        ("deep_ensemble", {"n": 2, "independent_batches": True}),
    ],
)
def test_every_method_trains_on_digits_through_the_same_loop(method, options, digits):
    model = build_model("lenet", method, num_classes=10, in_channels=1, input_size=8, seed=0,
                        **options)
    before = weights(model)
    config = TrainConfig(epochs=2, batch_size=64, lr=0.05, dataset="digits", progress=False,
                         threads=1)
    history = train_model(model, digits, config)
    assert all(math.isfinite(r["loss"]) for r in history)
    assert history[-1]["loss"] < history[0]["loss"]
    changed = [not torch.equal(a, b) for a, b in zip(before, weights(model), strict=True)]
    assert sum(changed) >= len(changed) // 2
