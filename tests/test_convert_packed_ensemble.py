"""to_packed_ensemble: your network's architecture as a Packed-Ensemble (issue 20, item 4).

torchvision's resnet18 (small input), a VGG-style net (BatchNorm, GroupNorm, LayerNorm,
in-place ReLU, flatten) and an MLP / a Conv1d signal net convert, and the result is a real
ensemble model: predict_members (M, B, K), member independence checked here by gradients (apart
from the converter's own check), each member's own network equal to its block, a train step,
save/load bit-exact, compile_members and ONNX. alpha = n, gamma = 1 packs n independent copies
of the architecture: with each copy's weights written into its member's rows, member m computes
copy m exactly. The channel rule is build_model's, and what cannot be packed is refused by name.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ensemblekit as ek
from ensemblekit.convert.packed_ensemble import check_member_independence

torchvision = pytest.importorskip("torchvision")

CLASSES = 5


def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=CLASSES)


def vgg() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.GroupNorm(2, 16), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16 * 2 * 2, 24), nn.LayerNorm(24),
        nn.ReLU(), nn.Dropout(0.1), nn.Linear(24, CLASSES))


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 32), nn.LayerNorm(32), nn.GELU(), nn.Linear(32, 16),
                         nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, CLASSES))


def signal() -> nn.Module:
    return nn.Sequential(nn.Conv1d(2, 8, 5, padding=2), nn.BatchNorm1d(8), nn.ReLU(),
                         nn.Conv1d(8, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveMaxPool1d(1),
                         nn.Flatten(), nn.Linear(8, CLASSES))


#: name -> (network, input shape of one example)
NETWORKS = {"resnet18": (resnet18, (3, 32, 32)), "vgg": (vgg, (3, 16, 16)),
            "mlp": (mlp, (10,)), "signal": (signal, (2, 20))}


def inputs(name: str, batch: int) -> torch.Tensor:
    shape = NETWORKS[name][1]
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(batch))


def converted(name: str, n: int = 4, **options):
    torch.manual_seed(1)
    return ek.to_packed_ensemble(NETWORKS[name][0](), n, example_input=inputs(name, 2),
                                 seed=3, **options)


def assert_members_independent(model, x: torch.Tensor, y: torch.Tensor) -> None:
    """Member m's loss has zero gradient on every other member's rows (dim 0) of every
    parameter, and some gradient on its own."""
    n = model.num_members
    model.train()
    logits = model(x).unflatten(0, (n, -1))
    parameters = list(model.parameters())
    for member in range(n):
        grads = torch.autograd.grad(F.cross_entropy(logits[member], y), parameters,
                                    retain_graph=True)
        own = 0.0
        for grad in grads:
            rows = grad.reshape(n, -1)
            assert torch.count_nonzero(torch.cat([rows[:member], rows[member + 1:]])) == 0
            own += float(rows[member].abs().sum())
        assert own > 0


@pytest.mark.parametrize("name", ["resnet18", "vgg", "mlp", "signal"])
def test_converted_network_is_a_packed_ensemble_model(name, tmp_path):
    model = converted(name)
    assert isinstance(model, ek.methods.PackedEnsembleModel) and model.num_members == 4
    x, y = inputs(name, 8), torch.arange(8) % CLASSES
    assert_members_independent(model, x, y)

    model.eval()  # each member's own network computes its block
    members = ek.predict_members(model, x)
    assert members.shape == (4, 8, CLASSES)
    with torch.no_grad():
        for member in (0, 3):
            own = model.member_network(member).eval()(x)
            torch.testing.assert_close(own, members[member], rtol=1e-5, atol=1e-5)

    model.train()  # one step through the training contract
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    before = [p.detach().clone() for p in model.parameters()]
    loss = F.cross_entropy(model(x), model.training_targets(y))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    moved = [not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)]
    # every parameter with a gradient moved (a conv bias right before BatchNorm has none but
    # rounding: ~1e-8, below float32's step for its value)
    assert all(m or p.grad.abs().max() < 1e-6
               for m, p in zip(moved, model.parameters(), strict=True))
    assert sum(moved) >= len(moved) - 1

    ek.save(model, tmp_path / "model.pt")  # reload on a fresh network: bit-exact
    reloaded = ek.load(tmp_path / "model.pt", into=NETWORKS[name][0]())
    assert reloaded.recipe == model.recipe
    state, again = model.state_dict(), reloaded.state_dict()
    assert state.keys() == again.keys()
    assert all(torch.equal(state[key], again[key]) for key in state)
    members = ek.predict_members(model, x)
    assert torch.equal(ek.predict_members(reloaded, x), members)

    fast = ek.compile_members(model)  # no example: the recipe's shape
    with torch.no_grad():
        torch.testing.assert_close(fast(x), members, rtol=1e-4, atol=1e-4)


# ~8-17 s each here (the first pays the exporter's import); the VGG-style net (packed conv,
# BatchNorm, GroupNorm, LayerNorm, linear) covers the path by default
@pytest.mark.parametrize("name", [pytest.param("resnet18", marks=pytest.mark.slow), "vgg",
                                  pytest.param("signal", marks=pytest.mark.slow)])
def test_onnx_export_runs_in_onnxruntime(name, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = converted(name).eval()
    path = ek.export(model, tmp_path / "model.onnx")
    x = inputs(name, 3)  # not the example's batch size
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs = session.run(None, {"input": x.numpy()})[0]
    expected = ek.predict_members(model, x).softmax(-1).mean(0)
    torch.testing.assert_close(torch.from_numpy(probs), expected, rtol=1e-5, atol=1e-5)


def test_heads_write_member_major_logits_and_first_layers_read_the_plain_input():
    model = converted("resnet18", gamma=2)
    net = model.backbone
    assert net.conv1.first and net.conv1.groups == 1 and net.conv1.out_channels == 128
    assert net.fc.out_features == 4 * CLASSES and net.fc.groups == 4  # the head: gamma 1
    assert net.layer1[0].conv1.gamma == 1  # 128 channels: groups of 64 need 512
    assert net.layer4[0].conv2.gamma == 2 and net.layer4[0].conv2.groups == 8
    assert net.layer4[0].downsample[0].in_channels == 512  # the shortcut: alpha * 256
    paths = [layer["path"] for layer in model.recipe["layers"]]
    assert paths[:2] == ["conv1", "bn1"] and paths[-1] == "fc"


@pytest.mark.parametrize("backbone, alpha, options", [
    ("mlp", 2.0, {"input_size": 4, "hidden": (256, 256)}),  # hidden.1 keeps gamma 2
    ("lenet", 1.5, {"input_size": 28})])  # widths rounded up to whole members
def test_the_channel_rule_is_build_models(backbone, alpha, options):
    """Converting the library's own single-model backbone gives build_model's Packed-Ensemble:
    the same layer shapes and groups (widths alpha*C rounded up to whole members, gamma kept
    only where groups read 64 channels or more)."""
    channels, size = (1 if backbone == "lenet" else 3), options["input_size"]
    single = ek.build_model(backbone, "single", CLASSES, channels, seed=0, **options)
    built = ek.build_model(backbone, "packed_ensemble", CLASSES, channels, seed=0, n=4,
                           alpha=alpha, gamma=2, **options)
    example = torch.randn(2, channels, size, size)
    model = ek.to_packed_ensemble(single.backbone, 4, alpha=alpha, gamma=2,
                                  example_input=example)
    shapes = {key: tuple(p.shape) for key, p in model.state_dict().items()}
    assert shapes == {key: tuple(p.shape) for key, p in built.state_dict().items()}
    grouped = [(name, m.groups) for name, m in built.backbone.named_modules()
               if hasattr(m, "groups")]
    assert grouped == [(name, model.backbone.get_submodule(name).groups) for name, _ in grouped]
    assert any(groups == 8 for _, groups in grouped) or backbone == "lenet"


@pytest.mark.parametrize("name", ["vgg", "mlp"])
def test_alpha_n_gamma_1_packs_independent_copies_of_the_architecture(name):
    """With alpha = n, member m is a full copy of the network: each of n independently
    initialised copies, written into its member's rows, is computed exactly by that member."""
    n = 3
    model = converted(name, n=n, alpha=float(n), gamma=1).eval()
    copies = []
    for member in range(n):
        torch.manual_seed(10 + member)
        copy = NETWORKS[name][0]().eval()
        with torch.no_grad():  # a few steps of BatchNorm statistics, so they are not trivial
            copy.train()(inputs(name, 16) * (member + 1))
        copies.append(copy.eval())
    state = model.backbone.state_dict()
    with torch.no_grad():
        for key, value in state.items():
            for member, copy in enumerate(copies):
                source = copy.state_dict()[key]
                if key.endswith("num_batches_tracked"):
                    value.copy_(source)
                else:
                    value.chunk(n)[member].copy_(source)
    x = inputs(name, 6)
    members = ek.predict_members(model, x)
    with torch.no_grad():
        for member, copy in enumerate(copies):
            torch.testing.assert_close(members[member], copy(x), rtol=1e-5, atol=1e-5)
    assert_members_independent(model, x, torch.arange(6) % CLASSES)


class Concatenating(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.left, self.right = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3)
        self.mix = nn.Conv2d(8, 4, 1)
        self.head = nn.Linear(4, CLASSES)

    def forward(self, x):
        merged = torch.cat([self.left(x), self.right(x)], dim=1)
        return self.head(self.mix(merged).mean((2, 3)))


class Viewed(nn.Module):
    """Flattens with ``view``: to the batch (convertible), or to a size written in forward
    (widened, the batch doubles instead)."""

    def __init__(self, fixed: bool) -> None:
        super().__init__()
        self.fixed = fixed
        self.conv, self.head = nn.Conv2d(3, 4, 3), nn.Linear(4 * 14 * 14, CLASSES)

    def forward(self, x):
        maps = self.conv(x)
        return self.head(maps.view(-1, 4 * 14 * 14) if self.fixed else maps.view(len(x), -1))


def test_a_forward_that_views_to_the_batch_converts():
    model = ek.to_packed_ensemble(Viewed(fixed=False), 4, example_input=torch.randn(2, 3, 16, 16))
    x = torch.randn(3, 3, 16, 16)
    members = ek.predict_members(model, x)
    assert members.shape == (4, 3, CLASSES)
    with torch.no_grad():  # channels-last maps would not view: compile keeps the layout
        fast = ek.compile_members(model, channels_last=False)
        torch.testing.assert_close(fast(x), members, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make, needle", [
    (lambda: nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8), nn.Flatten(),
                           nn.LazyLinear(CLASSES)), r"cannot convert '1': .*depthwise"),
    (lambda: nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(1), nn.Unflatten(1, (8, 196)),
                           nn.MultiheadAttention(196, 2)), r"'3': MultiheadAttention holds"),
    (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(4, 4), nn.Flatten(),
                           nn.Linear(4 * 14 * 14, CLASSES)), r"cannot convert '1': .*GroupNorm"
     r".*num_channels=8 is not a multiple of 16.*choose alpha"),
    (lambda: nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3), nn.Flatten(),
                           nn.Linear(4 * 14 * 14, CLASSES)), r"'0': it normalises the .*plain"),
    (Concatenating, r"member 0's output depends on member 1's part of 'left'.*torch\.cat"),
    (lambda: Viewed(fixed=True),
     r"widened network returns \(4, 20\) on example_input, not \(2, 20\).*torch\.flatten"),
    (lambda: nn.Sequential(nn.Conv2d(3, 4, 3)), r"must return logits \(B, K\)"),
])
def test_refusals_name_the_module_and_leave_the_network_as_it_was(make, needle):
    net = make()
    before = {name: type(module) for name, module in net.named_modules()}
    with pytest.raises(ValueError, match=needle):
        ek.to_packed_ensemble(net, 4, alpha=2.0, example_input=torch.randn(2, 3, 16, 16))
    assert {name: type(module) for name, module in net.named_modules()} == before


def test_bad_options_are_refused_by_name():
    with pytest.raises(ValueError, match="alpha"):
        ek.to_packed_ensemble(mlp(), 4, alpha=0.0, example_input=inputs("mlp", 2))
    with pytest.raises(ValueError, match="gamma"):
        ek.to_packed_ensemble(mlp(), 4, gamma=0, example_input=inputs("mlp", 2))
    with pytest.raises(TypeError, match="example_input"):
        ek.to_packed_ensemble(mlp(), 4, example_input=None)
    with pytest.raises(ValueError, match="already an ensemble model"):
        ek.to_packed_ensemble(converted("mlp"), 4, example_input=inputs("mlp", 2))


def test_the_independence_check_catches_a_leak():
    model = converted("mlp")
    check_member_independence(model.backbone, 4, inputs("mlp", 2), CLASSES)  # passes
    leaky = nn.Sequential(model.backbone[:6], _Roll(), model.backbone[6])
    with pytest.raises(ValueError, match=r"member 0's output depends on member 3's part of "
                                         r"'0\.4'"):
        check_member_independence(leaky, 4, inputs("mlp", 2), CLASSES)


class _Roll(nn.Module):
    """Shifts the features by one: member 0's first feature is member 3's last (after the
    BatchNorm at '4' of the MLP)."""

    def forward(self, x):
        return torch.roll(x, 1, dims=1)


def test_a_recipe_replays_only_on_the_network_it_came_from(tmp_path):
    model = converted("vgg")
    ek.save(model, tmp_path / "model.pt")
    with pytest.raises(ValueError, match="'0' is Linear, where the saved model had nn.Conv2d"):
        ek.load(tmp_path / "model.pt", into=nn.Sequential(*[nn.Linear(2, 2) for _ in range(14)]))
