"""compile_members: Masksembles members on their own channels give exactly predict_members'
logits, for every backbone, at a fraction of the tiled model's work; inference-only."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ensemblekit.compile import CompiledMembers, compile_members, resolve_strategy
from ensemblekit.layers import Masksembles, Masksembles2d
from ensemblekit.methods import MasksemblesModel, build_model, predict_members
from ensemblekit.models import Backbone
from test_models import SMALL

# SMALL (test_models' backbones at small widths) keeps every width >= 2n = 8 at n=4, so
# Masksembles layers, not the skip rule, are exercised.


def relative_difference(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).abs().max() / expected.abs().max())


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Running statistics and affine parameters far from their initial values, so a wrong
    gather or fold of any of them shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                size = module.num_features
                module.running_mean.copy_(torch.randn(size, generator=generator))
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
                module.weight.copy_(torch.randn(size, generator=generator))
                module.bias.copy_(torch.randn(size, generator=generator))


def small_masksembles(name: str, n: int = 4, scale: float = 2.0, seed: int = 0):
    in_channels, _, options = SMALL[name]
    model = build_model(name, "masksembles", 5, in_channels, seed=seed, n=n, scale=scale, **options)
    randomise_batchnorm(model, seed)
    return model


def small_input(name: str, batch: int = 6, seed: int = 1) -> torch.Tensor:
    in_channels, size, _ = SMALL[name]
    return torch.randn(
        batch, in_channels, size, size, generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize("name", list(SMALL))
def test_compiled_members_equal_predict_members_for_every_backbone(name):
    model = small_masksembles(name)
    masked = [e for e in model.channel_masks() if not e.out_masks.all()]
    assert masked, "the test model must have masked layers"
    x = small_input(name)
    with torch.no_grad():
        expected = predict_members(model, x)
        for strategy in ("stacked", "loop"):
            got = compile_members(model, strategy=strategy)(x)
            assert got.shape == expected.shape == (4, 6, 5)
            assert relative_difference(got, expected) <= 1e-5, strategy


@pytest.mark.parametrize("name", ["lenet", "resnet20", "wrn28_10"])
def test_every_option_combination_is_exact(name):
    model = small_masksembles(name, n=3, scale=3.0)
    x = small_input(name, batch=5)
    with torch.no_grad():
        expected = predict_members(model, x)
        for strategy in ("stacked", "loop"):
            for channels_last in (False, True):
                for fold in (False, True):
                    got = compile_members(
                        model,
                        strategy=strategy,
                        channels_last=channels_last,
                        fold_batchnorm_into_conv=fold,
                    )(x)
                    options = (strategy, channels_last, fold)
                    assert relative_difference(got, expected) <= 1e-5, options


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 5),
    scale=st.floats(1.0, 4.0),
    batch=st.integers(1, 7),
    seed=st.integers(0, 2**16),
    name=st.sampled_from(["mlp", "lenet", "resnet20"]),
)
def test_exact_for_any_members_scale_and_batch(n, scale, batch, seed, name):
    model = small_masksembles(name, n=n, scale=scale, seed=seed)
    x = small_input(name, batch=batch, seed=seed)
    with torch.no_grad():
        expected = predict_members(model, x)
        got = compile_members(model)(x)
    assert got.shape == (n, batch, 5)
    assert relative_difference(got, expected) <= 1e-5


def test_auto_strategy_loops_over_deep_conv_nets_on_the_cpu():
    # width 1: every stage wide enough for masks at n=4 (width 0.5 leaves the 8-channel first
    # stage unmasked: a shared prefix, which stacking runs once)
    resnet = build_model("resnet20", "masksembles", 5, 3, seed=0, n=4, scale=2.0,
                         placement="all")
    assert resolve_strategy(resnet) == "loop"
    late = build_model("resnet20", "masksembles", 5, 3, seed=0, n=4, placement="dropout")
    assert resolve_strategy(late) == "stacked"
    assert resolve_strategy(small_masksembles("resnet20")) == "stacked"
    assert compile_members(resnet).strategy == "loop"
    assert len(compile_members(resnet).networks) == 4
    for name in ("mlp", "lenet"):
        model = small_masksembles(name)
        assert compile_members(model).strategy == resolve_strategy(model) == "stacked"
        assert len(compile_members(model).networks) == 1


def conv_work(module: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of every convolution in one forward of ``x``."""
    total = 0

    def count(conv, inputs, output):
        nonlocal total
        total += output.numel() * conv.weight[0].numel()

    handles = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        module(x)
    for handle in handles:
        handle.remove()
    return total


def test_members_do_about_k_squared_of_the_tiled_work():
    """resnet20 at n=4, scale=2: the tiled model convolves 4 full models; the compiled one
    about 4 * k^2 (k ~ 0.56) of one model, i.e. ~30% of the tiled work."""
    model = build_model("resnet20", "masksembles", 10, 3, seed=0, n=4, scale=2.0)
    single = build_model("resnet20", "single", 10, 3, seed=0)
    x = torch.randn(2, 3, 8, 8)
    compiled = compile_members(model, strategy="stacked", example_input=x)
    ratio = conv_work(compiled, x) / conv_work(single, x)
    assert 1.0 < ratio < 1.4  # tiled: 4.0


def test_training_mode_is_refused_with_a_clear_error():
    model = small_masksembles("lenet")
    compiled = compile_members(model)
    assert isinstance(compiled, CompiledMembers) and not compiled.training
    with pytest.raises(RuntimeError, match="inference-only.*compile_members"):
        compiled.train()
    assert compiled.eval() is compiled and not compiled.training
    compiled.training = True
    with pytest.raises(RuntimeError, match="inference-only"):
        compiled(small_input("lenet"))
    container = nn.Sequential(compile_members(model))
    with pytest.raises(RuntimeError, match="inference-only"):
        container.train()
    assert not any(p.requires_grad for p in compiled.parameters())


def test_weights_are_copied_at_compile_time_and_recompiling_follows_training():
    model = small_masksembles("resnet20")
    x = small_input("resnet20")
    compiled = compile_members(model)
    with torch.no_grad():
        before = compiled(x)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    F.cross_entropy(model(small_input("resnet20", 8)), torch.randint(0, 5, (8,))).backward()
    optimizer.step()
    with torch.no_grad():
        after_training = predict_members(model, x)
        assert torch.equal(compiled(x), before)  # the old copy does not move
        assert relative_difference(before, after_training) > 1e-3
        assert relative_difference(compile_members(model)(x), after_training) <= 1e-5
    assert model.training  # compiling leaves the model's mode alone


def test_original_model_is_untouched():
    model = small_masksembles("resnet18")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    compile_members(model)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert sum(isinstance(m, Masksembles) for m in model.modules()) > 0


def test_batchnorm_is_folded_only_where_nothing_else_reads_the_conv():
    resnet = compile_members(small_masksembles("resnet20"), strategy="stacked")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in resnet.modules())
    # Pre-activation WRN: bn1 of all but the first block reads the residual stream (a sum).
    wrn = compile_members(small_masksembles("wrn28_10"), strategy="stacked")
    left = [m for m in wrn.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(left) == 12  # 11 block bn1 + final_bn; the other 13 folded
    kept = compile_members(
        small_masksembles("wrn28_10"), strategy="stacked", fold_batchnorm_into_conv=False
    )
    assert sum(isinstance(m, nn.BatchNorm2d) for m in kept.modules()) == 25


def test_float64_and_odd_batches():
    model = small_masksembles("lenet").double()
    x = small_input("lenet", batch=3).double()
    with torch.no_grad():
        expected = predict_members(model, x)
        got = compile_members(model)(x)
    assert got.dtype == torch.float64
    assert relative_difference(got, expected) <= 1e-12


def set_width_masks(model: MasksemblesModel, channels: int, masks: torch.Tensor) -> None:
    for module in model.modules():
        if isinstance(module, Masksembles) and module.channels == channels:
            module.masks.copy_(masks)


def test_members_keeping_different_numbers_of_channels_stay_exact():
    model = small_masksembles("lenet")  # widths 16, 120, 84 are masked
    generator = torch.Generator().manual_seed(3)
    masks = torch.rand(4, 16, generator=generator) < torch.tensor([[0.2], [0.5], [0.8], [1.0]])
    masks[:, 0] = True
    assert len(set(masks.sum(1).tolist())) > 1
    set_width_masks(model, 16, masks)
    set_width_masks(model, 84, torch.zeros(4, 84, dtype=torch.bool))  # a member-less width
    x = small_input("lenet")
    with torch.no_grad():
        expected = predict_members(model, x)
        assert relative_difference(compile_members(model)(x), expected) <= 1e-5


class TinyNet(Backbone):
    """A user backbone meeting the documented conditions."""

    def __init__(self, n: int, channel_mixing: bool = False, extra: nn.Module | None = None):
        super().__init__()
        self.input_shape = (2, None, None)
        self.stem = nn.Conv2d(2, 12, 3, padding=1)
        self.norm = nn.BatchNorm2d(12)
        self.drop = Masksembles2d(12, n, 2.0, seed=5)
        self.conv = nn.Conv2d(12, 12, 3, padding=1, bias=False)
        self.head = nn.Linear(12, 3)
        self.channel_mixing = channel_mixing
        self.extra = extra

    def forward(self, x):
        x = self.drop(F.relu(self.norm(self.stem(x))))
        x = self.drop(F.relu(self.conv(x)))
        if self.channel_mixing:  # reads dropped channels: breaks the conditions
            x = x + x.mean(dim=1, keepdim=True)
        return self.head(x.amax(dim=(2, 3)))


def test_user_backbone_meeting_the_conditions():
    model = MasksemblesModel(TinyNet(4), 4)
    randomise_batchnorm(model)
    x = torch.randn(5, 2, 6, 6)
    with torch.no_grad():
        expected = predict_members(model, x)
        assert relative_difference(compile_members(model)(x), expected) <= 1e-5


def test_user_backbones_breaking_the_conditions_are_refused():
    with pytest.raises(ValueError, match="do not reproduce predict_members.*per-channel"):
        compile_members(MasksemblesModel(TinyNet(4, channel_mixing=True), 4))
    with pytest.raises(NotImplementedError, match="'extra'.*GroupNorm"):
        compile_members(MasksemblesModel(TinyNet(4, extra=nn.GroupNorm(3, 12)), 4))
    # a network without layer_widths is compiled the generic way (tests/test_compile_any_
    # network.py), which needs an example of its input
    plain = nn.Sequential(nn.Conv2d(2, 8, 3), Masksembles2d(8, 2, 2.0))
    with pytest.raises(ValueError, match="needs example_input"):
        compile_members(MasksemblesModel(plain, 2))
    fast = compile_members(MasksemblesModel(plain, 2), example_input=torch.rand(2, 2, 5, 5))
    assert fast.strategy == "fan-out"


def test_bad_arguments():
    with pytest.raises(TypeError, match="needs an ensemble model.*got Linear"):
        compile_members(nn.Linear(3, 2))
    model = small_masksembles("mlp")
    with pytest.raises(ValueError, match="strategy"):
        compile_members(model, strategy="fast")
    with pytest.raises(ValueError, match="channels_last must be True or False"):
        compile_members(model, channels_last="yes")
