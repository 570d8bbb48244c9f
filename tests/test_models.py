"""Backbones behind build_model: every method x backbone trains and predicts; configs rebuild;
the Masksembles placement contract holds (each member is exactly its thin sub-network)."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ensemblekit.layers import Masksembles
from ensemblekit.methods import available_methods, build_model, predict_members
from ensemblekit.models import available_backbones
from ensemblekit.submodules import replace_module

# name -> (in_channels, spatial size, extra options): small widths and inputs keep this fast
SMALL = {
    "mlp": (1, 8, {"input_size": 8}),
    "lenet": (1, 8, {"input_size": 8}),
    "resnet20": (3, 8, {"width": 0.5}),
    "resnet18": (3, 8, {"width": 0.125}),
    "wrn28_10": (3, 8, {"width": 0.1}),
    "resnet50": (3, 32, {"width": 0.125}),
}
METHOD_OPTIONS = {
    "single": {},
    "mc_dropout": {"n": 3, "p": 0.2},
    "masksembles": {"n": 2, "scale": 2.0},
    "batchensemble": {"n": 2},
    "packed_ensemble": {"n": 2, "alpha": 2.0, "gamma": 2},
    "mimo": {"n": 2, "batch_repetitions": 2},
    "deep_ensemble": {"n": 2},
}



def small_model(name, method, **options):
    in_channels, _, extra = SMALL[name]
    return build_model(
        name, method, 5, in_channels, seed=0, **{**extra, **METHOD_OPTIONS[method], **options}
    )


def small_input(name, batch=4):
    in_channels, size, _ = SMALL[name]
    return torch.randn(batch, in_channels, size, size)


def test_registries_hold_the_issue_names():
    assert set(available_backbones()) == set(SMALL)
    assert available_methods() == list(METHOD_OPTIONS)


@pytest.mark.parametrize("method", list(METHOD_OPTIONS))
@pytest.mark.parametrize("name", list(SMALL))
def test_every_method_and_backbone_trains_and_predicts(name, method):
    torch.manual_seed(0)
    model = small_model(name, method)
    x, y = small_input(name), torch.randint(0, 5, (4,))
    optimizer = torch.optim.SGD(model.parameter_groups(weight_decay=1e-4, lr=0.01), lr=0.01)
    model.train()
    logits = model(x)
    targets = model.training_targets(y)
    assert logits.shape == (targets.shape[0], 5)
    loss = F.cross_entropy(logits, targets)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    with torch.no_grad():
        members = predict_members(model, x)
    assert members.shape == (model.num_members, 4, 5)
    assert model.training  # mode restored
    assert model.member_weights().shape[0] == model.num_members


@pytest.mark.parametrize("method", list(METHOD_OPTIONS))
def test_config_is_json_and_rebuilds_the_same_model(method):
    model = small_model("lenet", method)
    config = model.config
    assert json.loads(json.dumps(config)) == config
    assert config["name"] == "lenet" and config["method"] == method and config["seed"] == 0
    rebuilt = build_model(**config)
    assert rebuilt.config == config
    original, again = model.state_dict(), rebuilt.state_dict()
    assert original.keys() == again.keys()
    assert all(torch.equal(original[k], again[k]) for k in original)


def test_seed_defaults_to_the_global_generator_and_is_recorded():
    torch.manual_seed(3)
    first = build_model("mlp", "single", 3, 4)
    torch.manual_seed(3)
    second = build_model("mlp", "single", 3, 4)
    assert first.config["seed"] == second.config["seed"]
    assert torch.equal(first.member_weights(), second.member_weights())
    third = build_model("mlp", "single", 3, 4, seed=first.config["seed"] + 1)
    assert not torch.equal(first.member_weights(), third.member_weights())
    assert first.config["hidden"] == [64, 32, 16]  # tuples stored as JSON lists


def test_unknown_names_and_options_list_the_valid_ones():
    with pytest.raises(ValueError, match="unknown backbone 'vgg'.*resnet20.*mlp"):
        build_model("vgg", "single", 10, 3)
    with pytest.raises(ValueError, match="unknown method 'swag'.*masksembles.*deep_ensemble"):
        build_model("resnet20", "swag", 10, 3)
    with pytest.raises(ValueError, match="unknown option.*scale.*valid options are: .*init"):
        build_model("resnet20", "batchensemble", 10, 3, scale=2.0)
    with pytest.raises(ValueError, match="width"):
        build_model("resnet20", "single", 10, 3, width=0)


@pytest.mark.parametrize(
    "name,in_channels,options,bad_input,expected",
    [
        ("resnet20", 3, {}, torch.randn(2, 1, 8, 8), r"\(B, 3, \*, \*\).*\(2, 1, 8, 8\)"),
        ("lenet", 1, {"input_size": 28}, torch.randn(2, 1, 8, 8), r"\(B, 1, 28, 28\)"),
        ("mlp", 1, {"input_size": 8}, torch.randn(2, 1, 7, 7), r"\(B, 1, 8, 8\)"),
        ("mlp", 1, {}, torch.randn(2, 5), r"\(B, 1\)"),
    ],
)
def test_wrong_input_shape_is_a_clear_error(name, in_channels, options, bad_input, expected):
    model = build_model(name, "single", 10, in_channels, **options)
    with pytest.raises(ValueError, match=expected):
        model(bad_input)


def test_lenet_and_mlp_work_on_8x8_and_28x28():
    for size in (8, 28):
        for name in ("lenet", "mlp"):
            model = build_model(name, "single", 10, 1, input_size=size, seed=0)
            assert model(torch.randn(2, 1, size, size)).shape == (2, 10)


def test_width_multiplier_scales_the_layers():
    narrow = build_model("resnet20", "single", 10, 3, seed=0)
    wide = build_model("resnet20", "single", 10, 3, width=2.0, seed=0)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 3.5 < count(wide) / count(narrow) < 4.1
    assert wide.backbone.stem.out_channels == 32


@pytest.mark.parametrize("name", list(SMALL))
def test_each_masksembles_member_is_its_thin_subnetwork(name):
    """Zeroing every weight outside member m's channel masks leaves member m's logits as they
    were: the placement contract (masks after every activation and on the residual stream,
    shared per width, never on input or logits) and channel_masks() agree."""
    torch.manual_seed(0)
    model = small_model(name, "masksembles", n=2, scale=3.0)
    x = small_input(name, batch=3)
    model.train()
    F.cross_entropy(model(small_input(name, 8)), torch.randint(0, 5, (8,))).backward()
    model.eval()  # BatchNorm statistics now differ from their initial values
    with torch.no_grad():
        reference = predict_members(model, x)
        rows = model.member_weights()
        for member in range(2):
            torch.nn.utils.vector_to_parameters(rows[member], model.backbone.parameters())
            torch.testing.assert_close(
                predict_members(model, x)[member], reference[member], rtol=1e-4, atol=1e-5
            )
    masked = [lm for lm in model.channel_masks() if not lm.in_masks.all() or not lm.out_masks.all()]
    assert masked, "no layer is masked at all"


def test_masksembles_placement_and_skip_rule():
    model = build_model("lenet", "masksembles", 10, 1, input_size=8, n=4, scale=2.0, seed=0,
                        placement="all")
    layers = [m for m in model.backbone.modules() if isinstance(m, Masksembles)]
    # conv1's 6 channels would leave each mask 3 (< 8): no masks there; 16 (masks of 9), 120
    # and 84 channels are masked.
    assert sorted(m.channels for m in layers) == [16, 84, 120]
    entries = {lm.name: lm for lm in model.channel_masks()}
    assert entries["conv1"].in_masks.all() and entries["conv1"].out_masks.all()  # skipped width
    assert entries["head"].out_masks.all()  # logits never masked
    assert not entries["conv2"].out_masks.all()
    # fc1 reads 16 channels of 2x2 flattened: each channel's mask spans its 4 features
    fc1_in = entries["fc1"].in_masks
    assert fc1_in.shape == (4, 64)
    assert torch.equal(fc1_in, entries["conv2"].out_masks.repeat_interleave(4, dim=1))

    resnet = small_model("resnet20", "masksembles", n=4, width=1.0, placement="all")
    by_width = {}
    for module in resnet.backbone.modules():
        if isinstance(module, Masksembles):
            by_width.setdefault(module.channels, []).append(module.masks)
    assert sorted(by_width) == [16, 32, 64]
    # at width 0.5 the 8-channel stage would leave each mask 4 channels: skipped
    narrow = small_model("resnet20", "masksembles", n=4, placement="all")
    assert sorted({m.channels for m in narrow.backbone.modules()
                   if isinstance(m, Masksembles)}) == [16, 32]
    for masks in by_width.values():
        assert len(masks) > 1 and all(torch.equal(masks[0], other) for other in masks)
    stem = {lm.name: lm for lm in resnet.channel_masks()}["stem"]
    assert stem.in_masks.all() and not stem.out_masks.all()


def relu_then_plain_masks(model):
    """A copy of a Masksembles model whose fused drop sites are split into ``nn.ReLU`` and a
    plain Masksembles layer with the same masks: how the backbones computed before their drop
    sites owned the ReLU."""
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, Masksembles):
            assert module.activation == "relu"
            plain = type(module)(module.channels, module.n, module.scale)
            plain.load_state_dict(module.state_dict())
            replace_module(model, name, nn.Sequential(nn.ReLU(), plain))
    return model


@pytest.mark.parametrize("name", list(SMALL))
def test_fused_drop_sites_compute_what_relu_then_masks_did(name):
    """Logits (training and tiled inference) and every gradient are bitwise those of ReLU
    followed by the mask multiply."""
    fused = small_model(name, "masksembles")
    unfused = relu_then_plain_masks(fused)
    x, y = small_input(name), torch.randint(0, 5, (4,))
    results = []
    for model in (fused, unfused):
        logits = model.train()(x)
        F.cross_entropy(logits, y).backward()
        grads = [p.grad for p in model.parameters()]
        with torch.no_grad():
            results.append((logits.detach(), grads, predict_members(model, x)))
    (logits, grads, members), (logits_ref, grads_ref, members_ref) = results
    assert torch.equal(logits, logits_ref) and torch.equal(members, members_ref)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_ref, strict=True))


@pytest.mark.parametrize("method", list(METHOD_OPTIONS))
def test_every_drop_site_applies_the_relu(method):
    """The backbone hands its drop sites the pre-activation: whatever the method, a drop site
    never lets a negative value through."""
    model = small_model("lenet", method).eval()
    backbone = model.members[0] if method == "deep_ensemble" else model.backbone
    seen = []
    for child_name in ("drop1", "drop2", "drop3", "drop4"):
        getattr(backbone, child_name).register_forward_hook(
            lambda module, inputs, out: seen.append((inputs[0], out))
        )
    with torch.no_grad():
        predict_members(model, small_input("lenet"))
    assert len(seen) >= 4
    assert all((inputs < 0).any() and (out >= 0).all() for inputs, out in seen)
