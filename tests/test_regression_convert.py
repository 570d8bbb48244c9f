"""A user's regression network converted, trained, saved, loaded and predicted."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ensemblekit as ek
from ensemblekit.convert import to_batchensemble, to_masksembles, to_mc_dropout
from ensemblekit.losses import positive_variance
from ensemblekit.members import GaussianMembers
from ensemblekit.train import TrainConfig, train_model

D = 2


def network(outputs: int) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, outputs))


CONVERTERS = {
    "masksembles": lambda net, **kw: to_masksembles(net, 4, 2.0, seed=1, **kw),
    "mc_dropout": lambda net, **kw: to_mc_dropout(net, num_samples=4, seed=1, **kw),
    "batchensemble": lambda net, **kw: to_batchensemble(net, 4, **kw),
}


def data():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(32, 3, generator=generator)
    return x, torch.stack([x[:, 0], x[:, 1] - x[:, 2]], dim=1)


@pytest.mark.parametrize("noise", [None, "homoscedastic"])
@pytest.mark.parametrize("converter", sorted(CONVERTERS))
def test_converted_regression_network_end_to_end(converter, noise, tmp_path):
    outputs = D if noise else 2 * D
    x, y = data()
    model = CONVERTERS[converter](network(outputs), task="regression", num_outputs=D,
                                  noise=noise, example_input=x[:4])
    assert model.task == "regression" and model.num_outputs == D
    assert model.recipe["task"] == "regression" and model.recipe["noise"] == noise
    config = TrainConfig(epochs=2, batch_size=8, optimizer="adam", lr=1e-2, weight_decay=0.0,
                         precision="fp32", progress=False)
    history = train_model(model, (x, y), config)
    assert history[-1]["rmse"] < history[0]["rmse"] * 1.5  # trained, finite
    with torch.no_grad():
        members = ek.predict_members(model, x[:5])
    assert isinstance(members, GaussianMembers)
    assert members.means.shape == members.variances.shape == (4, 5, D)
    assert bool((members.variances > 0).all())
    if noise:  # one learned variance per output, the same for every example and member
        learned = positive_variance(model.backbone.raw_variance.detach())
        assert torch.equal(members.variances, learned.expand_as(members.variances))
        assert not torch.allclose(learned, torch.ones(D))  # trained away from its start
    path = ek.save(model, tmp_path / "converted.pt")
    loaded = ek.load(path, into=network(outputs))
    assert loaded.task == "regression" and loaded.num_outputs == D
    with torch.no_grad():
        again = ek.predict_members(loaded, x[:5])
    assert torch.equal(again.means, members.means)
    assert torch.equal(again.variances, members.variances)


def test_classification_recipe_is_unchanged():
    model = to_masksembles(network(5), 4, 2.0, seed=1)
    assert model.task == "classification"
    assert set(model.recipe) == {"converter", "n", "scale", "seed", "sites", "not_called"}


@pytest.mark.parametrize("arguments, fragment", [
    ({"task": "regression"}, "needs num_outputs=D"),
    ({"num_outputs": 2}, "num_outputs=2 applies to task='regression'"),
    ({"noise": "homoscedastic"}, "noise='homoscedastic' applies to task='regression'"),
    ({"task": "regression", "num_outputs": 2, "noise": "constant"}, "noise"),
])
def test_bad_task_arguments_are_refused_before_converting(arguments, fragment):
    net = network(2 * D)
    with pytest.raises(ValueError, match=fragment):
        to_mc_dropout(net, **arguments)
    assert isinstance(net[2], nn.Dropout)  # untouched


@pytest.mark.parametrize("noise, outputs", [(None, D), ("homoscedastic", 2 * D)])
def test_wrong_output_width_is_named_with_example_input(noise, outputs):
    with pytest.raises(ValueError, match=f"must output {D * (1 if noise else 2)} values"):
        to_batchensemble(network(outputs), 4, task="regression", num_outputs=D, noise=noise,
                         example_input=torch.randn(2, 3))


def test_converted_regression_masksembles_compiles_exactly():
    x, _ = data()
    model = to_masksembles(network(2 * D), 4, 2.0, seed=1, task="regression", num_outputs=D,
                           example_input=x[:4])
    fast = ek.compile_members(model)
    with torch.no_grad():
        want, got = ek.predict_members(model, x), fast(x)
    assert isinstance(got, GaussianMembers)
    assert torch.allclose(got.means, want.means, atol=1e-6)
    assert torch.allclose(got.variances, want.variances, atol=1e-6)
