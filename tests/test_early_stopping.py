"""Validation accuracy per epoch and early stopping in train_model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from ensemblekit.methods import build_model
from ensemblekit.train import TrainConfig, train_model

sys.path.insert(0, str(Path(__file__).parent / "_scripts"))
from train_tiny import tiny_problem  # noqa: E402


def model(method: str = "mc_dropout"):
    options = {"mc_dropout": {"p": 0.2, "n": 4}, "single": {}}[method]
    return build_model("mlp", method, 4, 16, hidden=(32,), seed=0, **options)


def config(**overrides) -> TrainConfig:
    values = dict(epochs=12, batch_size=32, lr=0.05, schedule="constant", progress=False,
                  threads=1, weight_decay=0.0)
    values.update(overrides)
    return TrainConfig(**values)


def noisy_validation():
    """Held-out inputs with random labels: the accuracy wanders, so patience runs out."""
    images, _ = tiny_problem(96)
    labels = torch.randint(0, 4, (96,), generator=torch.Generator().manual_seed(5))
    return images.flip(0), labels


def accuracy_of(net, images, labels) -> float:
    from ensemblekit.methods import predict_members

    with torch.no_grad():
        probs = predict_members(net, images).softmax(-1).mean(0)
    return float((probs.argmax(-1) == labels).double().mean())


def test_validation_is_recorded_and_leaves_training_unchanged():
    train = tiny_problem()
    validation = tiny_problem(64)
    plain, watched = model(), model()
    history = train_model(plain, train, config(epochs=3))
    watched_history = train_model(watched, train, config(epochs=3), validation_data=validation)
    assert [r["loss"] for r in history] == [r["loss"] for r in watched_history]
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(),
                                                  watched.state_dict().values(), strict=True))
    assert all(0.0 <= r["val_accuracy"] <= 1.0 for r in watched_history)
    assert "val_accuracy" not in history[0]
    # The recorded number is the ensemble accuracy of the trained model (single: deterministic).
    single = model("single")
    record = train_model(single, train, config(epochs=2), validation_data=validation)[-1]
    assert record["val_accuracy"] == pytest.approx(accuracy_of(single, *validation))


@pytest.mark.parametrize("restore_best", [True, False])
def test_stops_after_patience_and_restores_the_chosen_epoch(restore_best):
    train, validation = tiny_problem(), noisy_validation()
    net = model("single")
    patience = 2
    history = train_model(net, train, config(early_stopping_patience=patience,
                                             restore_best=restore_best),
                          validation_data=validation)
    scores = [r["val_accuracy"] for r in history]
    best = scores.index(max(scores)) + 1
    assert len(history) < 12, "the noisy validation set should stop the run early"
    assert len(history) == best + patience
    # Each epoch after the best failed to beat it; every epoch before patience ran out did not.
    assert all(score <= scores[best - 1] for score in scores[best:])
    # The weights are those of a run of exactly that many epochs (constant schedule).
    expected_epochs = best if restore_best else len(history)
    reference = model("single")
    train_model(reference, train, config(epochs=expected_epochs))
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                  reference.state_dict().values(), strict=True))
    assert accuracy_of(net, *validation) == pytest.approx(scores[expected_epochs - 1])


def test_resume_after_an_early_stop_returns_the_best_weights(tmp_path):
    train, validation = tiny_problem(), noisy_validation()
    first = model("single")
    settings = config(early_stopping_patience=2)
    history = train_model(first, train, settings, validation_data=validation,
                          checkpoint_dir=tmp_path)
    again = model("single")
    resumed = train_model(again, train, settings, validation_data=validation,
                          checkpoint_dir=tmp_path, resume=True)
    assert resumed == history  # nothing left to train: patience had run out
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                  again.state_dict().values(), strict=True))


def test_patience_needs_validation_data_and_a_positive_count():
    with pytest.raises(ValueError, match="validation_data"):
        train_model(model("single"), tiny_problem(), config(early_stopping_patience=3))
    with pytest.raises(ValueError, match="early_stopping_patience"):
        config(early_stopping_patience=0)
    with pytest.raises(ValueError, match="restore_best"):
        config(restore_best="yes")
    with pytest.raises(ValueError, match="labels"):
        images, _ = tiny_problem(8)
        train_model(model("single"), tiny_problem(), config(epochs=1),
                    validation_data=(images, torch.full((8,), 9)))


def test_fast_weight_decay_and_multiplier_reach_the_optimizer_groups():
    from ensemblekit.train.optim import build_optimizer

    net = build_model("mlp", "batchensemble", 4, 16, hidden=(32,), seed=0, n=2)
    fast = {id(p) for name, p in net.named_parameters() if name.endswith((".r", ".s"))}
    reference = build_optimizer(net, config(weight_decay=5e-4))
    seed_code = build_optimizer(net, config(weight_decay=5e-4, fast_weight_decay=5e-4,
                                             fast_weight_lr_multiplier=1.0))
    for optimizer, decay, lr in ((reference, 0.0, 0.025), (seed_code, 5e-4, 0.05)):
        groups = [g for g in optimizer.param_groups if {id(p) for p in g["params"]} == fast]
        assert len(groups) == 1
        assert (groups[0]["weight_decay"], groups[0]["lr"]) == (decay, lr)
    with pytest.raises(ValueError, match="fast_weight_decay"):
        config(fast_weight_decay=-1.0)


def test_adam_is_coupled_l2_and_adamw_decoupled():
    train = tiny_problem(64)
    runs = {}
    for name in ("adam", "adamw"):
        net = model("single")
        train_model(net, train, config(epochs=1, optimizer=name, lr=1e-2, weight_decay=0.1))
        runs[name] = net
    # One Adam run by hand: torch.optim.Adam with the same batches gives the same weights.
    manual = model("single")
    optimizer = torch.optim.Adam(manual.parameters(), lr=1e-2, weight_decay=0.1)
    order = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    for index in order.split(32):
        loss = torch.nn.functional.cross_entropy(manual(train[0][index]), train[1][index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for a, b in zip(runs["adam"].parameters(), manual.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(runs["adam"].parameters(),
                                                      runs["adamw"].parameters(), strict=True))
