"""Packed-Ensembles: the layers against independent references, the two equivalences with shared
weights (alpha = n, gamma = 1 is a deep ensemble; n = alpha = gamma = 1 the single model),
member independence, and the method first-class on every backbone (train step, predict_members,
save/load, compile_members, ONNX, DDP)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ensemblekit as ek
from ensemblekit.layers.packed import (
    MIN_GROUP_CHANNELS,
    PackedConv2d,
    PackedLinear,
    grouped_linear,
    member_batchnorm,
    packed_gamma,
    packed_width,
)
from ensemblekit.methods import PackedEnsembleModel, available_methods, build_model
from ensemblekit.methods import predict_members as members_of
from ensemblekit.methods.registry import method_entry
from test_compile_members import randomise_batchnorm
from test_ddp import run as run_tiny
from test_models import SMALL


def small(name: str, method: str = "packed_ensemble", seed: int = 0, **options):
    in_channels, _, extra = SMALL[name]
    return build_model(name, method, 5, in_channels, seed=seed, **{**extra, **options})


def small_input(name: str, batch: int = 6, seed: int = 1) -> torch.Tensor:
    in_channels, size, _ = SMALL[name]
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, in_channels, size, size, generator=generator)


def labels(batch: int = 6, seed: int = 2) -> torch.Tensor:
    return torch.randint(0, 5, (batch,), generator=torch.Generator().manual_seed(seed))


def sgd_step(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One SGD step (momentum, weight decay, BatchNorm in training mode) through the one
    training contract; returns the loss."""
    optimizer = torch.optim.SGD(model.parameter_groups(weight_decay=0.01, lr=0.05), lr=0.05,
                                momentum=0.9)
    model.train()
    loss = F.cross_entropy(model(x), model.training_targets(y))
    loss.backward()
    optimizer.step()
    return loss


def assert_same_members(model, other, x: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(members_of(model, x), members_of(other, x), rtol=0,
                                   atol=1e-5)


# -- layers ----------------------------------------------------------------------------------

def test_packed_width_rounds_alpha_c_up_to_whole_members():
    assert packed_width(16, 2.0, 4) == 32
    assert packed_width(18, 2.0, 4) == 36
    assert packed_width(10, 1.1, 1) == 11         # 11.000000000000002 stays 11
    assert packed_width(3, 1.0, 4) == 4           # never below one channel per member
    assert packed_width(6, 1.5, 4) == 12          # 9 -> 12
    with pytest.raises(ValueError, match="alpha"):
        packed_width(8, 0.0, 4)


def test_packed_gamma_keeps_sub_groups_only_where_they_are_wide_and_divide():
    assert packed_gamma(512, 512, 4, 2) == 2      # 8 groups of 64
    assert packed_gamma(256, 256, 4, 2) == 1      # groups of 32: below the floor
    assert packed_gamma(1024, 1024, 4, 3) == 2    # 12 groups do not divide 1024
    assert packed_gamma(1024, 1020, 4, 2) == 1    # the output must divide too
    assert packed_gamma(40, 40, 4, 2, minimum=0) == 2
    assert packed_gamma(36, 36, 4, 2, minimum=0) == 1
    assert MIN_GROUP_CHANNELS == 64


def test_packed_conv_is_one_convolution_per_group():
    torch.manual_seed(0)
    layer = PackedConv2d(12, 8, 3, 2, gamma=2, padding=1, bias=True)
    assert layer.groups == 4 and layer.weight.shape == (8, 3, 3, 3)
    x = torch.randn(3, 12, 5, 5)
    blocks = [F.conv2d(xg, wg, bg, padding=1) for xg, wg, bg in
              zip(x.chunk(4, 1), layer.weight.chunk(4), layer.bias.chunk(4), strict=True)]
    torch.testing.assert_close(layer(x), torch.cat(blocks, 1), rtol=0, atol=1e-5)
    # member 1 owns output channels 4..7, computed from input channels 6..11 alone
    member = layer.member_layer(1)
    assert member.groups == 2 and member.in_channels == 6 and member.out_channels == 4
    torch.testing.assert_close(member(x[:, 6:]), layer(x)[:, 4:], rtol=0, atol=1e-5)
    assert "n=2, gamma=2, first=False" in repr(layer)


def test_first_packed_conv_reads_the_whole_input_through_member_rows():
    layer = PackedConv2d(3, 8, 3, 4, first=True, padding=1)
    assert layer.groups == 1
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(layer.member_layer(3)(x), layer(x)[:, 6:], rtol=0, atol=1e-5)


def test_packed_linear_is_a_block_diagonal_linear():
    torch.manual_seed(0)
    layer = PackedLinear(12, 6, 3)
    assert layer.weight.shape == (6, 4)
    x = torch.randn(5, 12)
    dense = torch.block_diag(*layer.weight.chunk(3))  # (6, 12), zero off the blocks
    torch.testing.assert_close(layer(x), F.linear(x, dense, layer.bias), rtol=0, atol=1e-5)
    torch.testing.assert_close(layer(x[None])[0], layer(x), rtol=0, atol=0)  # any leading dims
    torch.testing.assert_close(layer.member_layer(2)(x[:, 8:]), layer(x)[:, 4:], rtol=0,
                               atol=1e-5)
    grouped = PackedLinear(12, 8, 2, gamma=2)
    member = grouped.member_layer(1)  # two groups of its own
    assert isinstance(member, PackedLinear) and member.groups == 2
    torch.testing.assert_close(member(x[:, 6:]), grouped(x)[:, 4:], rtol=0, atol=1e-5)
    # nn.Linear's init on each group: uniform with bound 1/sqrt(in/G)
    wide = PackedLinear(400, 800, 4)
    assert wide.weight.abs().max() <= 1 / math.sqrt(100) and wide.bias.abs().max() <= 0.1
    assert wide.weight.abs().max() > 0.09
    first = PackedLinear(5, 8, 4, first=True)
    torch.testing.assert_close(first(x[:, :5]), F.linear(x[:, :5], first.weight, first.bias))
    no_bias = torch.randn(4, 2)
    torch.testing.assert_close(grouped_linear(x[:, :4], no_bias, None, 2),
                               torch.cat([x[:, :2] @ no_bias[:2].T, x[:, 2:4] @ no_bias[2:].T], 1))


def test_member_batchnorm_keeps_the_members_channels():
    norm = nn.BatchNorm2d(8)
    randomise_batchnorm(norm)
    norm.eval()
    x = torch.randn(2, 8, 3, 3)
    member = member_batchnorm(norm, 4, 2).eval()
    torch.testing.assert_close(member(x[:, 4:6]), norm(x)[:, 4:6])


@pytest.mark.parametrize("make, needle", [
    (lambda: PackedConv2d(10, 8, 3, 4), "in_channels=10 is not a multiple of 4"),
    (lambda: PackedConv2d(8, 12, 3, 4, gamma=2), "out_channels=12 is not a multiple of 8"),
    (lambda: PackedConv2d(3, 6, 3, 4, first=True), "out_channels=6"),
    (lambda: PackedLinear(6, 8, 4), "in_features=6 is not a multiple of 4 .*packed_width"),
    (lambda: PackedLinear(8, 8, 0), "n must be an integer >= 1"),
    (lambda: PackedLinear(8, 8, 2, gamma=1.5), "gamma must be an integer"),
])
def test_packed_layers_refuse_sizes_that_do_not_divide(make, needle):
    with pytest.raises(ValueError, match=needle):
        make()


def test_packed_linear_refuses_an_input_of_the_wrong_size():
    with pytest.raises(ValueError, match="in_features=8 but got an input of shape"):
        PackedLinear(8, 4, 2)(torch.randn(3, 6))


# -- the method ------------------------------------------------------------------------------

def test_registry_entry_states_the_methods_facts():
    assert available_methods() == ["single", "mc_dropout", "masksembles", "batchensemble",
                                   "packed_ensemble", "mimo", "deep_ensemble"]
    entry = method_entry("packed_ensemble")
    assert entry.label == "Packed-Ensembles" and entry.global_keys == {"members": "n"}
    others = [method_entry(name) for name in available_methods() if name != "packed_ensemble"]
    assert entry.marker not in {e.marker for e in others}
    assert entry.color not in {e.color for e in others}
    assert entry.member_width({"n": 4, "alpha": 2.0, "gamma": 1}) == 0.5
    assert "independent" in entry.construction({"n": 4, "alpha": 2.0, "gamma": 1})
    assert entry.compiled_inference and entry.drop_fraction({"n": 4, "alpha": 2.0}) == 0.0
    # every grid point builds on the small digits backbones and trains
    x = torch.rand(4, 1, 8, 8)
    for alpha in entry.tune_grid["alpha"]:
        for gamma in entry.tune_grid["gamma"]:
            for name, options in (("lenet", {"width": 3.0}), ("mlp", {})):
                model = build_model(name, "packed_ensemble", 10, 1, input_size=8, seed=0,
                                    alpha=alpha, gamma=gamma, **options)
                assert model(x).shape == (16, 10)


def test_parameters_scale_as_alpha_squared_over_n_gamma():
    single = sum(p.numel() for p in small("resnet20", "single").parameters())
    packed = {alpha: sum(p.numel() for p in small("resnet20", alpha=alpha).parameters())
              for alpha in (2.0, 4.0)}
    assert packed[2.0] / single == pytest.approx(1.0, abs=0.03)
    assert packed[4.0] / single == pytest.approx(4.0, abs=0.05)
    # a hidden layer wide enough for gamma = 2 (8 groups of 64 inputs) halves its weights
    wide = {gamma: small("mlp", hidden=(256, 256), gamma=gamma).backbone.hidden[1][0]
            for gamma in (1, 2)}
    assert (wide[1].gamma, wide[2].gamma) == (1, 2)
    assert wide[2].weight.numel() * 2 == wide[1].weight.numel() == 512 * 512 // 4
    # ResNet-20's groups stay below the floor: gamma 2 changes nothing there
    assert all(m.gamma == 1 for m in small("resnet20", gamma=2).modules()
               if isinstance(m, PackedConv2d))


def test_forward_is_member_major_and_targets_repeat():
    model = small("lenet", n=3).eval()
    x, y = small_input("lenet"), labels()
    with torch.no_grad():
        rows, members = model(x), members_of(model, x)
    assert rows.shape == (18, 5) and members.shape == (3, 6, 5)
    torch.testing.assert_close(rows, members.flatten(0, 1), rtol=0, atol=0)
    assert torch.equal(model.training_targets(y), y.repeat(3))


@pytest.mark.parametrize("name", ["mlp", "lenet", "resnet20"])
def test_alpha_n_gamma_1_is_a_deep_ensemble_in_one_network(name):
    """Each member's groups copied into a deep ensemble's members: the same logits, and after
    one SGD step (momentum, weight decay, BatchNorm in training mode) still the same."""
    packed = small(name, n=3, alpha=3.0, gamma=1)
    randomise_batchnorm(packed)
    deep = small(name, "deep_ensemble", n=3, seed=5)
    for index, member in enumerate(deep.members):
        member.load_state_dict(packed.member_network(index).state_dict())
    x, y = small_input(name), labels()
    assert_same_members(packed, deep, x)
    for model in (packed, deep):
        sgd_step(model, x, y)
    assert_same_members(packed, deep, x)
    # the same parameters, in the same order
    torch.testing.assert_close(packed.member_weights(), deep.member_weights(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["mlp", "lenet", "resnet20"])
def test_one_member_of_width_one_is_the_single_model(name):
    packed = small(name, n=1, alpha=1.0, gamma=1)
    randomise_batchnorm(packed)
    single = small(name, "single", seed=5)
    single.backbone.load_state_dict(packed.backbone.state_dict())  # strict: same layout
    x, y = small_input(name), labels()
    for model in (packed, single):
        sgd_step(model, x, y)
    assert_same_members(packed, single, x)


@pytest.mark.parametrize("name, options", [
    ("mlp", {"hidden": (256, 256), "n": 2}),  # hidden.1 keeps gamma 2: sub-groups too
    ("lenet", {"n": 3}), ("resnet20", {"n": 3})])
def test_a_members_loss_has_no_gradient_on_other_members(name, options):
    """Every parameter is member-major on dim 0; member m's loss reaches only its own rows
    (LeNet: fc1 reads the flattened conv maps, each member's channels contiguous)."""
    n = options["n"]
    model = small(name, alpha=2.0, gamma=2, **options).train()
    logits = model(small_input(name)).unflatten(0, (n, -1))
    parameters = list(model.parameters())
    for member in range(n):
        loss = F.cross_entropy(logits[member], labels())
        grads = torch.autograd.grad(loss, parameters, retain_graph=True)
        own = 0.0
        for grad in grads:
            rows = grad.reshape(n, -1)
            others = torch.cat([rows[:member], rows[member + 1:]])
            assert torch.count_nonzero(others) == 0
            own += float(rows[member].abs().sum())
        assert own > 0


def test_member_weights_are_each_members_own_network():
    model = small("mlp", hidden=(256, 256), n=4, gamma=2)
    assert model.backbone.hidden[1][0].gamma == 2
    weights = model.member_weights()
    for member in (0, 3):
        network = model.member_network(member)
        flat = torch.cat([p.reshape(-1) for p in network.parameters()])
        assert torch.equal(weights[member], flat)
    similarity = ek.weight_similarity(model)
    off = similarity[~torch.eye(4, dtype=torch.bool)]
    assert off.abs().max() < 0.1  # independent groups: cosine ~ 0 by construction


@pytest.mark.parametrize("options, needle", [
    ({"alpha": 0.0}, "alpha must satisfy"), ({"gamma": 0}, "gamma must be an integer >= 1"),
    ({"gamma": 1.5}, "gamma must be an integer"), ({"n": 0}, "n must be an integer >= 1"),
    ({"scale": 2.0}, "unknown option"),
])
def test_bad_options_are_refused_by_name(options, needle):
    with pytest.raises(ValueError, match=needle):
        small("mlp", **options)


# -- first-class on every backbone -------------------------------------------------------------

def trained(name: str, batch: int = 8):
    """A default Packed-Ensembles model (n=4, alpha=2, gamma=1) after two SGD steps through the
    one training contract (every weight and the BatchNorm statistics moved), and its batch."""
    torch.manual_seed(0)
    model = small(name)
    x, y = small_input(name, batch=batch), labels(batch)
    for _ in range(2):
        model.zero_grad()
        assert torch.isfinite(sgd_step(model, x, y))
    return model, x


@pytest.mark.parametrize("name", list(SMALL))
def test_every_backbone_trains_predicts_reloads_and_compiles_exactly(name, tmp_path):
    model, x = trained(name)
    with torch.no_grad():
        expected = members_of(model, x)
    assert expected.shape == (4, 8, 5)

    ek.save(model, tmp_path / "model.pt")
    loaded = ek.load(tmp_path / "model.pt")
    assert isinstance(loaded, PackedEnsembleModel)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with torch.no_grad():
        assert torch.equal(members_of(loaded, x), expected)

    scale = float(expected.abs().max())
    for strategy in ("stacked", "loop"):
        compiled = ek.compile_members(model, strategy=strategy, example_input=x[:2])
        with torch.no_grad():
            assert float((compiled(x) - expected).abs().max()) <= 1e-5 * scale, strategy


# ONNX export costs 2-9 s of CPU per backbone (dynamo tracing); LeNet is exported for every
# method in tests/test_export.py, ResNet-20 here by default, the rest with -m slow.
FAST_EXPORT = {"resnet20"}


@pytest.mark.parametrize("name", [name if name in FAST_EXPORT else
                                  pytest.param(name, marks=pytest.mark.slow) for name in SMALL])
def test_every_backbone_exports_to_onnx_at_any_batch_size(name, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model, x = trained(name)
    with torch.no_grad():
        expected = members_of(model, x)
    scale = float(expected.abs().max())
    path = ek.export(model, tmp_path / "model.onnx", x[:2],
                     outputs=("member_logits", "probs"))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size in (1, 8):
        logits, probs = session.run(None, {"input": x[:size].numpy()})
        np.testing.assert_allclose(logits, expected[:, :size].numpy(), rtol=0,
                                   atol=1e-5 * scale)
        np.testing.assert_allclose(probs, expected[:, :size].softmax(-1).mean(0).numpy(),
                                   rtol=0, atol=1e-5)


def test_compile_picks_the_loop_for_resnets_and_stacks_small_nets():
    assert ek.compile_members(small("resnet20")).strategy == "loop"
    assert len(ek.compile_members(small("resnet20")).networks) == 4
    for name in ("lenet", "mlp"):
        compiled = ek.compile_members(small(name))
        assert compiled.strategy == "stacked" and len(compiled.networks) == 1
    folded = ek.compile_members(small("resnet20"), strategy="stacked")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())


@pytest.mark.slow  # a torchrun pair: ~20 s on 2 cores
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_two_gloo_processes_train_the_same_packed_ensemble(tmp_path):
    """A packed LeNet (grouped convolutions with channels-last weights, no BatchNorm, whose
    per-process statistics would differ): each process takes half of every batch, every member
    sees both halves through DDP's averaged gradient, so the runs agree to float summation
    order (the tolerance is shown to be a real check in tests/test_ddp.py)."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2"]
    single, single_history = run_tiny([sys.executable], tmp_path / "single", "--method",
                                      "packed_ensemble")
    double, double_history = run_tiny(torchrun, tmp_path / "ddp", "--method", "packed_ensemble")
    assert any(key.endswith("weight") for key in single)
    for key in single:
        torch.testing.assert_close(double[key], single[key], rtol=0, atol=1e-5)
    for one, two in zip(single_history, double_history, strict=True):
        assert one["loss"] == pytest.approx(two["loss"], abs=1e-6)
