"""Regression through the model: every method x {mlp, lenet} builds with a Gaussian head,
trains through the one contract and predicts GaussianMembers; classification is untouched."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import ensemblekit as ek
from ensemblekit.data.regression import RegressionDataset, Standardization
from ensemblekit.losses import positive_variance
from ensemblekit.members import GaussianMembers
from ensemblekit.methods import available_methods
from ensemblekit.methods.base import member_outputs
from ensemblekit.methods.task import gaussian_outputs
from ensemblekit.metrics import mixture_nll
from ensemblekit.train import TrainConfig, loop, train_model

D = 2
BACKBONES = {
    "mlp": ({"hidden": (24,)}, (3,)),
    "lenet": ({"input_size": 8, "width": 0.5}, (1, 8, 8)),
}
# masksembles needs a drop site whose masks keep >= 8 channels: a wider hidden layer
WIDER = {"masksembles": {"mlp": {"hidden": (64,)}}}


def build(method: str, backbone: str, *, num_outputs: int = D, **options):
    backbone_options, shape = BACKBONES[backbone]
    backbone_options = {**backbone_options, **WIDER.get(method, {}).get(backbone, {}), **options}
    model = ek.build_model(backbone, method, task="regression", num_outputs=num_outputs,
                           in_channels=shape[0], seed=0, **backbone_options)
    return model, shape


def fast_config(**changes) -> TrainConfig:
    values = dict(epochs=1, batch_size=8, optimizer="adam", lr=1e-2, weight_decay=0.0,
                  precision="fp32", progress=False)
    return TrainConfig(**{**values, **changes})


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("method", available_methods())
def test_every_method_builds_trains_predicts_and_reloads(method, backbone, tmp_path):
    model, shape = build(method, backbone)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(16, *shape, generator=generator)
    y = torch.randn(16, D, generator=generator)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = train_model(model, (x, y), fast_config())
    assert set(history[0]) == {"epoch", "loss", "rmse", "lr", "seconds", "objective"}
    assert history[0]["objective"] == "beta_nll"
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items()
               if v.is_floating_point())
    with torch.no_grad():
        members = ek.predict_members(model, x[:5])
    assert isinstance(members, GaussianMembers)
    m = model.num_members
    assert members.means.shape == members.variances.shape == (m, 5, D)
    assert bool((members.variances > 0).all())
    assert bool(torch.isfinite(members.means).all())
    # the one split: predict_members is gaussian_outputs of the raw member outputs
    with torch.no_grad():
        raw = member_outputs(model, x[:5])
    assert raw.shape == (m, 5, 2 * D)
    assert torch.equal(members.means, raw[..., :D])
    assert torch.equal(members.variances, positive_variance(raw[..., D:]))
    # save / load: rebuilt from the file alone, bit-identical predictions
    path = ek.save(model, tmp_path / "model.pt")
    loaded = ek.load(path)
    assert loaded.task == "regression" and loaded.num_outputs == D
    assert loaded.config == model.config
    with torch.no_grad():
        again = ek.predict_members(loaded, x[:5])
    assert torch.equal(again.means, members.means)
    assert torch.equal(again.variances, members.variances)


def test_classification_config_and_outputs_are_unchanged():
    model = ek.build_model("mlp", "masksembles", 10, 4, seed=3, hidden=(64,))
    assert "task" not in model.config and "num_outputs" not in model.config
    assert list(model.config)[:4] == ["name", "method", "num_classes", "in_channels"]
    assert model.task == "classification"
    logits = ek.predict_members(model, torch.randn(4, 4))
    assert isinstance(logits, torch.Tensor) and logits.shape == (4, 4, 10)
    # the same classifier built with the default task: same initialisation, same logits
    again = ek.build_model("mlp", "masksembles", 10, 4, seed=3, hidden=(64,),
                           task="classification")
    assert again.config == model.config
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 again.state_dict().values(), strict=True))


def test_regression_config_rebuilds_the_same_model():
    model, _ = build("deep_ensemble", "mlp", n=2)
    assert model.config["task"] == "regression" and model.config["num_outputs"] == D
    assert "num_classes" not in model.config
    rebuilt = ek.build_model(**model.config)
    assert rebuilt.task == "regression" and rebuilt.num_outputs == D
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 rebuilt.state_dict().values(), strict=True))


@pytest.mark.parametrize("arguments, fragment", [
    ({"num_classes": 3, "task": "regression", "num_outputs": 1}, "num_classes=3"),
    ({"task": "regression"}, "needs num_outputs"),
    ({"task": "regression", "num_outputs": 0}, "num_outputs"),
    ({"num_classes": 3, "num_outputs": 2}, "num_outputs=2 applies to task='regression'"),
    ({"task": "ranking", "num_outputs": 1}, "task"),
    ({}, "num_classes is missing"),
])
def test_bad_task_arguments_name_parameter_value_and_fix(arguments, fragment):
    with pytest.raises(ValueError, match=fragment):
        ek.build_model("mlp", "single", in_channels=3, **arguments)


def test_missing_in_channels_is_named():
    with pytest.raises(ValueError, match="in_channels is missing"):
        ek.build_model("mlp", "single", task="regression", num_outputs=1)


def test_gaussian_outputs_refuses_a_head_of_the_wrong_size():
    with pytest.raises(ValueError, match="needs 4 outputs per row"):
        gaussian_outputs(torch.zeros(3, 5), 2)


@pytest.mark.parametrize("method, options", [
    ("mimo", {"batch_repetitions": 2, "input_repetition": 0.5}),
    ("batchensemble", {}),
    ("deep_ensemble", {}),
    ("deep_ensemble", {"independent_batches": True}),
    ("packed_ensemble", {}),
])
def test_training_targets_tile_float_targets_as_labels(method, options):
    """Float targets (B, D) follow the rows of model(x) exactly as class labels do: each row's
    target is the target of the example whose label that row gets (MIMO: of its draw)."""
    model, _ = build(method, "mlp", **options)
    model.train()
    rows = 8 * (model.num_members if options.get("independent_batches") else 1)
    x = torch.randn(rows, 3)
    y = torch.randn(rows, D)
    outputs = model(x)
    index = model.training_targets(torch.arange(rows))
    targets = model.training_targets(y)
    assert targets.shape == (outputs.shape[0], D) and targets.dtype == torch.float32
    assert torch.equal(targets, y[index])


def test_one_dimensional_targets_train_a_one_output_model():
    model, _ = build("single", "mlp", num_outputs=1)
    x, y = torch.randn(16, 3), torch.randn(16)
    history = train_model(model, (x, y), fast_config())
    assert history[0]["rmse"] > 0


def test_losses_warm_up_and_choice():
    model, _ = build("single", "mlp")
    x, y = torch.randn(16, 3), torch.randn(16, D)
    history = train_model(model, (x, y), fast_config(epochs=3, mse_warmup_epochs=2,
                                                     loss="gaussian_nll"))
    assert [r["objective"] for r in history] == ["mse", "mse", "gaussian_nll"]


def test_mse_loss_is_the_squared_error_the_record_reports():
    model, _ = build("single", "mlp")
    x, y = torch.randn(16, 3), torch.randn(16, D)
    config = fast_config(batch_size=16, loss="mse", lr=1e-12)  # one step, weights ~ fixed
    with torch.no_grad():
        mean = gaussian_outputs(model(x), D).means
    expected = float((mean - y).square().mean())
    record = train_model(model, (x, y), config)[0]
    assert record["loss"] == pytest.approx(expected, rel=1e-5)
    assert record["rmse"] == pytest.approx(expected ** 0.5, rel=1e-5)


def test_regression_data_is_checked_before_training():
    model, _ = build("single", "mlp")
    x = torch.randn(16, 3)
    with pytest.raises(ValueError, match="float targets"):
        train_model(model, (x, torch.zeros(16, D, dtype=torch.long)), fast_config())
    with pytest.raises(ValueError, match="num_outputs=2"):
        train_model(model, (x, torch.zeros(16, 3)), fast_config())
    bad = torch.zeros(16, D)
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="targets"):
        train_model(model, (x, bad), fast_config())


def test_classifier_refuses_regression_training_fields():
    model = ek.build_model("mlp", "single", 3, 3, seed=0)
    data = (torch.randn(8, 3), torch.randint(0, 3, (8,)))
    with pytest.raises(ValueError, match="loss='mse'.*regression models"):
        train_model(model, data, fast_config(loss="mse"))


def test_train_config_fields_are_checked_and_classification_dict_unchanged():
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="huber")
    with pytest.raises(ValueError, match="beta"):
        TrainConfig(beta=1.5)
    with pytest.raises(ValueError, match="mse_warmup_epochs=3"):
        TrainConfig(epochs=3, mse_warmup_epochs=3)
    names = [field.name for field in dataclasses.fields(TrainConfig)]
    new = ["loss", "beta", "mse_warmup_epochs"]
    assert list(TrainConfig().to_dict()) == [name for name in names if name not in new]
    changed = TrainConfig(loss="gaussian_nll", mse_warmup_epochs=2).to_dict()
    assert changed["loss"] == "gaussian_nll" and changed["mse_warmup_epochs"] == 2
    assert "beta" not in changed


def test_regression_training_resumes_exactly(tmp_path, monkeypatch):
    """A run stopped after epoch 2 and resumed ends with the weights of an uninterrupted one
    (MIMO: its slot permutations, drawn from a checkpointed generator, and float targets)."""
    generator = torch.Generator().manual_seed(2)
    x, y = torch.randn(32, 3, generator=generator), torch.randn(32, D, generator=generator)
    config = fast_config(epochs=3, mse_warmup_epochs=1, loss="gaussian_nll")
    straight, _ = build("mimo", "mlp", batch_repetitions=2)
    whole = train_model(straight, (x, y), config)

    run = loop._Epochs.run

    def stop_at_third(self, epoch, bar):
        if epoch == 2:
            raise KeyboardInterrupt
        return run(self, epoch, bar)

    monkeypatch.setattr(loop._Epochs, "run", stop_at_third)
    interrupted, _ = build("mimo", "mlp", batch_repetitions=2)
    with pytest.raises(KeyboardInterrupt):
        train_model(interrupted, (x, y), config, checkpoint_dir=tmp_path)
    monkeypatch.setattr(loop._Epochs, "run", run)
    resumed, _ = build("mimo", "mlp", batch_repetitions=2)
    history = train_model(resumed, (x, y), config, checkpoint_dir=tmp_path, resume=True)
    assert [r["loss"] for r in history] == [r["loss"] for r in whole]
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(),
                                                 resumed.state_dict().values(), strict=True))
    saved = torch.load(tmp_path / "last.pt", weights_only=True)["train_config"]
    assert saved["loss"] == "gaussian_nll" and saved["mse_warmup_epochs"] == 1


def test_early_stopping_monitors_the_validation_mixture_nll():
    """Validation targets of the opposite sign: fitting the training targets makes the
    validation NLL worse after the first epoch, so training stops and restores epoch 1."""
    model, _ = build("masksembles", "mlp")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=generator)
    y = x[:, :D].clone()
    xv, yv = x[:16], -y[:16]
    history = train_model(model, (x, y), fast_config(epochs=6, early_stopping_patience=1),
                          validation_data=(xv, yv))
    nll = [record["val_nll"] for record in history]
    assert len(history) == 2 and nll[1] > nll[0]  # stopped early, on the NLL (lower is better)
    with torch.no_grad():
        members = ek.predict_members(model, xv)
    # the restored weights are epoch 1's: their mixture NLL is the one recorded then
    assert mixture_nll(*members, yv) == pytest.approx(nll[0], rel=1e-6)


def test_a_regression_dataset_trains_through_the_loader():
    """A regression Dataset with a transform is read item by item (DataLoader): its float
    targets arrive as (B, D) float32, as the in-memory path gives them."""
    generator = torch.Generator().manual_seed(4)
    x, y = torch.randn(32, 3, generator=generator), torch.randn(32, D, generator=generator)
    dataset = RegressionDataset(x, y, Standardization.fit(x, y), transform=lambda row: row)
    model, _ = build("batchensemble", "mlp")
    twin, _ = build("batchensemble", "mlp")
    through_loader = train_model(model, dataset, fast_config())
    in_memory = train_model(twin, (x, y), fast_config())
    assert through_loader[0]["loss"] == pytest.approx(in_memory[0]["loss"], rel=1e-6)


def test_the_classification_inference_loop_refuses_a_regression_model():
    model, _ = build("single", "mlp")
    with pytest.raises(ValueError, match="regression model: call ensemblekit.predict_members"):
        ek.evaluate_model(model, (torch.randn(4, 3), torch.randn(4, D)))
