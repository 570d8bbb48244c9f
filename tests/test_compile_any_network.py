"""compile_members on your own network (converted): layers before the first mask run once,
the members fan out there; a network where that would be wrong runs tiled. Never a wrong answer;
predict_members and evaluate_model accept the compiled module."""

import copy

import pytest
import torch
import torchvision
from torch import nn

import ensemblekit as ek
from test_compile_members import conv_work


def nested_cnn() -> nn.Module:
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                             nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU()))
    return nn.Sequential(features, nn.Dropout2d(0.2), nn.Flatten(), nn.Linear(32 * 8 * 8, 64),
                         nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 10)).eval()


class ResidualDropout(nn.Module):
    """``x + dropout(f(x))``: what runs before the mask is added to what runs after it."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(64, 64)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        x = x.flatten(1)
        return self.head(x + self.drop(torch.relu(self.inner(x))))


def digits(batch: int) -> torch.Tensor:
    return torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(3))


def relative_error(fast, model, x) -> float:
    with torch.no_grad():
        expected = ek.predict_members(model, x)
        return float((ek.predict_members(fast, x) - expected).abs().max()
                     / expected.abs().max())


def test_a_converted_cnn_fans_out_at_its_first_mask_and_is_exact():
    model = ek.to_masksembles(nested_cnn(), n=4, scale=2.0, example_input=digits(4), seed=0)
    fast = ek.compile_members(model, example_input=digits(2))
    assert fast.strategy == "fan-out"
    for batch in (1, 5, 16):
        assert relative_error(fast, model, digits(batch)) < 1e-6  # batch-size kernels
    # the convolutions before the first mask ran on B rows, not M*B
    assert conv_work(fast, digits(6)) * 4 == conv_work(model.backbone, digits(24))
    with pytest.raises(RuntimeError, match="inference-only"):
        fast.train()


def test_torchvision_resnet18_with_a_site_after_avgpool_runs_its_trunk_once():
    torch.manual_seed(0)
    network = torchvision.models.resnet18(num_classes=10).eval()
    example = torch.rand(2, 3, 32, 32)
    model = ek.to_masksembles(network, n=4, scale=2.0, example_input=example, seed=0,
                              sites=["avgpool"])
    fast = ek.compile_members(model, example_input=example)
    assert fast.strategy == "fan-out"
    x = torch.rand(3, 3, 32, 32)
    assert relative_error(fast, model, x) < 1e-6
    plain = torchvision.models.resnet18(num_classes=10).eval()
    assert conv_work(fast, x) == conv_work(plain, x)  # one trunk for four members


def test_a_residual_across_the_mask_falls_back_to_the_tiled_pass():
    torch.manual_seed(0)
    model = ek.to_masksembles(ResidualDropout(), n=4, scale=2.0, example_input=digits(4),
                              seed=0)
    for example in (digits(1), digits(2)):  # one row must not let the add broadcast
        fast = ek.compile_members(model, example_input=example)
        assert fast.strategy == "tiled"
        assert relative_error(fast, model, digits(6)) < 1e-6


def test_a_converted_network_needs_an_example_input_unless_its_converter_recorded_one():
    unrecorded = ek.to_mc_dropout(nested_cnn(), num_samples=4, seed=0)  # converted without one
    with pytest.raises(ValueError, match="example_input=x\\[:2\\]"):
        ek.compile_members(unrecorded)
    recorded = ek.to_masksembles(nested_cnn(), n=4, scale=2.0, example_input=digits(4), seed=0)
    assert recorded.recipe["input"] == {"shape": [1, 8, 8], "dtype": "float32"}
    fast = ek.compile_members(recorded)  # self-checked on 2 random examples of that shape
    assert fast.strategy == "fan-out"
    assert relative_error(fast, recorded, digits(6)) < 1e-6


def test_evaluate_model_accepts_compiled_members():
    model = ek.build_model("lenet", "masksembles", 10, 1, input_size=8, n=4, seed=0,
                           placement="dropout")
    test = ek.load_dataset("digits", "test")
    compiled = ek.compile_members(copy.deepcopy(model))
    plain = ek.evaluate_model(model, test, dataset="digits")["test"]
    fast = ek.evaluate_model(compiled, test, dataset="digits")["test"]
    assert fast["accuracy"] == plain["accuracy"]
    assert fast["nll"] == pytest.approx(plain["nll"], abs=1e-6)
    with pytest.raises(ValueError, match="num_samples=None"):
        ek.predict_members(compiled, digits(2), num_samples=3)


@pytest.mark.parametrize("converted", [False, True])
def test_mc_dropout_compiles_to_its_seeded_members_with_the_trunk_once(converted):
    if converted:
        model = ek.to_mc_dropout(nested_cnn(), num_samples=6, seed=5)
        fast = ek.compile_members(model, example_input=digits(2))
    else:
        model = ek.build_model("lenet", "mc_dropout", 10, 1, input_size=8, n=6, p=0.2,
                               placement="dropout", seed=0)
        fast = ek.compile_members(model)
    assert fast.strategy == "fan-out"
    x = digits(7)
    with torch.no_grad():
        assert torch.equal(fast(x), ek.predict_members(model, x))
    assert conv_work(fast, x) * 6 == conv_work(model.backbone, digits(42))


def test_an_empty_or_nan_example_is_named_on_the_generic_path_too():
    built = ek.build_model("lenet", "mc_dropout", 10, 1, input_size=8, n=4, seed=0)
    converted = ek.to_masksembles(nested_cnn(), n=4, scale=2.0, example_input=digits(4), seed=0)
    for model in (built, converted):
        with pytest.raises(ValueError, match="at least one example"):
            ek.compile_members(model, example_input=torch.zeros(0, 1, 8, 8))
        with pytest.raises(ValueError, match="example_input"):
            ek.compile_members(model, example_input=torch.full((2, 1, 8, 8), float("nan")))
