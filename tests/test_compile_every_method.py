"""compile_members takes a model of every method: exact (predict_members' logits) on every
backbone and strategy, by the path the method registered; any other ensemble model runs its
own forward; the dispatch is a table from model class to compiler."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ensemblekit as ek
from ensemblekit.compile import (
    CompiledMembers,
    OwnForwardMembers,
    compile_members,
    compiled_classes,
    register_compiler,
    resolve_strategy,
)
from ensemblekit.compile.batchensemble import member_network
from ensemblekit.compile.dense import stack_networks
from ensemblekit.compile.registry import compiler_for
from ensemblekit.layers.batchensemble import BatchEnsembleConv2d
from ensemblekit.methods import (
    BatchEnsembleModel,
    DeepEnsembleModel,
    EnsembleModel,
    available_methods,
    build_model,
    predict_members,
)
from test_compile_members import randomise_batchnorm, relative_difference, small_input
from test_models import METHOD_OPTIONS, SMALL

#: test_models' options (M = 2 or 3), with 3 members for the dense methods
OPTIONS = {**METHOD_OPTIONS, "batchensemble": {"n": 3}, "deep_ensemble": {"n": 3}}
#: the path each built method takes by default on the CPU, per backbone kind
DEFAULT_PATH = {
    "single": lambda deep: "one network",
    # with placement="dropout" (the default) the ResNets' first dropout sits inside a residual
    # add, where fanning out is not exact: the self-check keeps the tiled pass
    "mc_dropout": lambda deep: "tiled" if deep else "fan-out",
    "masksembles": None,  # resolve_strategy: it also looks for a shared prefix
    "batchensemble": lambda deep: "loop" if deep else "stacked",
    "packed_ensemble": lambda deep: "loop" if deep else "stacked",
    "deep_ensemble": lambda deep: "loop" if deep else "stacked",
    "mimo": lambda deep: "mimo",
}
BACKBONES = ["mlp", "lenet", "resnet20", "wrn28_10"]


def small_model(name: str, method: str, **extra) -> EnsembleModel:
    in_channels, _, options = SMALL[name]
    model = build_model(name, method, 5, in_channels, seed=0, **options, **OPTIONS[method],
                        **extra)
    randomise_batchnorm(model)
    return model


def test_every_method_is_covered():
    assert set(OPTIONS) <= set(available_methods())
    for method in OPTIONS:
        assert compiler_for(small_model("mlp", method)) is not None, method


@pytest.mark.parametrize("method", sorted(OPTIONS))
@pytest.mark.parametrize("name", BACKBONES)
def test_every_method_compiles_exactly(name, method):
    model = small_model(name, method)
    x = small_input(name, batch=5)
    with torch.no_grad():
        expected = predict_members(model, x)
    deep = name != "mlp" and name != "lenet"
    strategies = ["auto", "loop", "stacked"] if method in ("batchensemble", "packed_ensemble",
                                                             "deep_ensemble") \
        else ["auto"]
    for strategy in strategies:
        fast = compile_members(model, strategy=strategy)
        if strategy != "auto":
            wanted = strategy
        elif method == "masksembles":
            wanted = resolve_strategy(model)
        else:
            wanted = DEFAULT_PATH[method](deep)
        assert fast.strategy == wanted
        with torch.no_grad():
            assert relative_difference(fast(x), expected) <= 1e-5, strategy
            assert fast(x[:0]).shape == (model.num_members, 0, 5)
        with pytest.raises(RuntimeError, match="inference-only"):
            fast.train()


@pytest.mark.parametrize("method", ["single", "batchensemble", "deep_ensemble"])
def test_batchnorm_is_folded_and_the_weights_are_copies(method):
    model = small_model("resnet20", method)
    x = small_input("resnet20", batch=4)
    fast = compile_members(model, strategy="loop" if method != "single" else "auto")
    assert isinstance(fast, CompiledMembers)
    # resnet20: every BatchNorm reads one convolution's output, so none is left
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    with torch.no_grad():
        before = fast(x)
        for parameter in model.parameters():
            parameter.add_(1.0)  # training the original changes nothing compiled
        assert torch.equal(fast(x), before)


def test_batchensemble_members_are_its_effective_weights():
    model = small_model("lenet", "batchensemble", init="random_sign")
    x = small_input("lenet", batch=4)
    with torch.no_grad():
        expected = predict_members(model, x)
        for member in range(model.num_members):
            network = member_network(model.backbone, member)
            assert not any(isinstance(m, BatchEnsembleConv2d) for m in network.modules())
            assert relative_difference(network(x), expected[member]) <= 1e-5
        # stacked: one grouped convolution per layer after the shared stem
        networks = [member_network(model.backbone, m) for m in range(model.num_members)]
        stacked = stack_networks(networks)
        assert stacked.conv1.groups == 1 and stacked.conv2.groups == model.num_members
        logits = stacked(x).unflatten(1, (model.num_members, -1)).transpose(0, 1)
        assert relative_difference(logits, expected) <= 1e-5


class _GroupedBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = BatchEnsembleConv2d(4, 4, 3, 2, padding=1, groups=2)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


def test_batchensemble_without_dense_members_runs_its_own_forward():
    model = BatchEnsembleModel(_GroupedBackbone(), 2)
    x = torch.randn(3, 4, 5, 5)
    fast = compile_members(model, example_input=x[:2])
    assert isinstance(fast, OwnForwardMembers) and fast.strategy == "own forward"
    with torch.no_grad():
        assert torch.equal(fast(x), predict_members(model, x))


class _Halves(EnsembleModel):
    """A method without a compiled path: two members, one per half of a linear layer."""

    method = "halves"

    def __init__(self):
        super().__init__(2)
        self.layer = nn.Linear(4, 6)

    def forward_members(self, x, num_samples):
        return self.layer(x).unflatten(1, (2, 3)).transpose(0, 1)


def test_other_ensemble_models_run_their_own_forward():
    model = _Halves()
    x = torch.randn(5, 4)
    fast = compile_members(model)  # no example needed: nothing to dry-run
    assert isinstance(fast, OwnForwardMembers) and fast.num_members == 2
    with torch.no_grad():
        expected = predict_members(model, x)
        assert torch.equal(fast(x), expected)
        assert torch.equal(predict_members(fast, x), expected)
        model.layer.weight.add_(1.0)
        assert torch.equal(fast(x), expected)  # a copy, as every compiled module
    with pytest.raises(RuntimeError, match="inference-only"):
        fast.train()
    assert model.training  # the original's mode is untouched


def test_a_method_registers_its_compiled_path():
    class Wider(DeepEnsembleModel):  # a subclass takes its parent's path ...
        pass

    model = small_model("mlp", "deep_ensemble")
    wider = Wider(list(model.members))
    assert compiler_for(wider) is compiler_for(model)
    assert DeepEnsembleModel in compiled_classes() and Wider not in compiled_classes()
    calls = []

    @register_compiler(_Halves)  # ... and a new method adds its own
    def compile_halves(halves, options):
        calls.append(options.strategy)
        return OwnForwardMembers(halves)

    try:
        fast = compile_members(_Halves(), strategy="loop", example_input=torch.randn(2, 4))
        assert calls == ["loop"] and fast.num_members == 2
        with pytest.raises(ValueError, match="already has a compiler"):
            register_compiler(_Halves)(compile_halves)
    finally:
        from ensemblekit.compile import registry

        del registry._COMPILERS[_Halves]


def test_stacking_needs_the_layer_map():
    model = small_model("mlp", "deep_ensemble")
    plain = DeepEnsembleModel([nn.Sequential(nn.Linear(4, 3)) for _ in range(2)])
    with pytest.raises(NotImplementedError, match="layer_widths.*strategy='loop'"):
        compile_members(plain, strategy="stacked", example_input=torch.randn(2, 4))
    fast = compile_members(plain, example_input=torch.randn(2, 4))  # auto: loop
    assert fast.strategy == "loop"
    x = torch.randn(3, 4)
    with torch.no_grad():
        assert torch.allclose(fast(x), predict_members(plain, x))
    assert compile_members(model, strategy="stacked").strategy == "stacked"


def test_a_network_without_input_shape_asks_for_an_example():
    plain = DeepEnsembleModel([nn.Sequential(nn.Linear(4, 3)) for _ in range(2)])
    with pytest.raises(ValueError, match="needs example_input=x\\[:2\\].*DeepEnsembleModel"):
        compile_members(plain)


def test_public_api_reexports():
    assert ek.compile_members is compile_members
