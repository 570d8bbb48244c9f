"""The method contract: equivalences between points of the spectrum, predict_members, training
targets, member weights, parameter groups and parameter counts."""

import pytest
import torch
import torch.nn.functional as F

from ensemblekit.layers.batchensemble import BatchEnsembleConv2d, BatchEnsembleLinear
from ensemblekit.methods import EnsembleModel, build_model, predict_members


def resnet(method, **options):
    return build_model("resnet20", method, 10, 3, width=0.5, seed=0, **options)


def count(model):
    return sum(p.numel() for p in model.parameters())


def train_one_step(model, batch=8, channels=3):
    x, y = torch.randn(batch, channels, 8, 8), torch.randint(0, 10, (batch,))
    model.train()
    F.cross_entropy(model(x), model.training_targets(y)).backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
    model.zero_grad()


@pytest.mark.parametrize(
    "backbone, channels, shape",
    [
        ("resnet20", 3, {"width": 0.5}),
        ("lenet", 1, {"input_size": 8}),
        ("mlp", 1, {"input_size": 8}),
    ],
)
def test_masksembles_with_scale_one_is_the_single_model(backbone, channels, shape):
    def build(method, **options):
        return build_model(backbone, method, 10, channels, seed=0, **shape, **options)

    single = build("single")
    masks = build("masksembles", n=4, scale=1.0)
    train_one_step(single, channels=channels)
    missing, unexpected = masks.load_state_dict(single.state_dict(), strict=False)
    assert not unexpected and missing and all(key.endswith(".masks") for key in missing)
    x = torch.randn(5, channels, 8, 8)
    with torch.no_grad():
        reference = predict_members(single, x)[0]
        members = predict_members(masks, x)
    for member in members:
        torch.testing.assert_close(member, reference, rtol=1e-4, atol=1e-5)


def test_same_seed_gives_single_and_masksembles_the_same_weights():
    single, masks = resnet("single"), resnet("masksembles", n=2)
    masks_state = masks.state_dict()
    for key, value in single.state_dict().items():
        assert torch.equal(masks_state[key], value)


def test_batchensemble_with_unit_fast_weights_is_the_shared_model():
    single = resnet("single")
    be = resnet("batchensemble", n=3)
    train_one_step(single)
    be_state = be.state_dict()
    with torch.no_grad():
        for key, value in single.state_dict().items():
            if key.endswith(".bias") and be_state[key].ndim == 2:
                be_state[key].zero_()  # member biases: zero, and zero in the shared model too
                value.zero_()
            else:
                be_state[key].copy_(value)
        for module in be.modules():
            if isinstance(module, BatchEnsembleLinear | BatchEnsembleConv2d):
                module.r.fill_(1.0)
                module.s.fill_(1.0)
    be.load_state_dict(be_state)
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        reference = predict_members(single, x)[0]
        members = predict_members(be, x)
    assert members.shape == (3, 4, 10)
    for member in members:
        torch.testing.assert_close(member, reference, rtol=1e-4, atol=1e-5)


def test_parameter_counts_across_the_spectrum():
    single = count(resnet("single"))
    assert count(resnet("masksembles", n=4)) == single
    assert count(resnet("mc_dropout")) == single
    assert count(resnet("deep_ensemble", n=4)) == 4 * single
    be = count(resnet("batchensemble", n=4))
    assert single < be < 1.06 * single
    full_width = build_model("resnet20", "single", 10, 3, seed=0)
    full_width_be = build_model("resnet20", "batchensemble", 10, 3, n=4, seed=0)
    assert 1.0 < count(full_width_be) / count(full_width) < 1.04


@pytest.mark.parametrize(
    "method,options,multiple,rows",
    [
        ("single", {}, 1, 6),
        ("mc_dropout", {}, 1, 6),
        ("masksembles", {"n": 3}, 3, 6),
        ("batchensemble", {"n": 3}, 1, 18),
        ("batchensemble", {"n": 3, "tile_batch": False}, 3, 6),
        ("deep_ensemble", {"n": 3}, 1, 18),
    ],
)
def test_training_contract(method, options, multiple, rows):
    model = resnet(method, **options)
    assert isinstance(model, EnsembleModel) and model.method == method
    assert model.batch_multiple == multiple
    assert model.independent_member_batches is False
    x, y = torch.randn(6, 3, 8, 8), torch.arange(6)
    logits = model(x)
    targets = model.training_targets(y)
    assert logits.shape == (rows, 10) and targets.shape == (rows,)
    if rows == 18:  # tiled member-major: member m's rows are the whole batch
        assert torch.equal(targets, y.repeat(3))
    if multiple > 1:
        with pytest.raises(ValueError, match=f"multiple of {multiple}"):
            model(torch.randn(4, 3, 8, 8))


def test_batchensemble_split_mode_gives_each_member_its_group():
    model = resnet("batchensemble", n=2, tile_batch=False).eval()
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        members = predict_members(model, x)
        split = model(torch.cat([x[:2], x[1:]]))  # member 0 sees x0, x1; member 1 sees x1, x2
    torch.testing.assert_close(split[:2], members[0, :2], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(split[2:], members[1, 1:], rtol=1e-4, atol=1e-5)


def test_predict_members_restores_modes_and_works_without_no_grad():
    model = resnet("masksembles", n=2)
    model.train()
    model.backbone.stem_bn.eval()  # a user's frozen BatchNorm stays frozen
    x = torch.randn(3, 3, 8, 8, requires_grad=True)
    members = predict_members(model, x)
    assert model.training and model.backbone.blocks.training
    assert not model.backbone.stem_bn.training
    members.sum().backward()
    assert x.grad is not None
    with torch.no_grad():
        again = predict_members(model, x)
    torch.testing.assert_close(again, members.detach())
    assert not torch.allclose(members[0], members[1])


def test_mc_dropout_members_are_stochastic_passes_with_bn_in_eval():
    model = resnet("mc_dropout", n=4, p=0.3)
    train_one_step(model)
    x = torch.randn(3, 3, 8, 8)
    stats = model.backbone.stem_bn.running_mean.clone()
    with torch.no_grad():
        default = predict_members(model, x)
        many = predict_members(model, x, num_samples=10)
    assert default.shape == (4, 3, 10) and many.shape == (10, 3, 10)
    assert not torch.allclose(many[0], many[1])  # dropout was active
    assert torch.equal(model.backbone.stem_bn.running_mean, stats)  # BatchNorm was in eval
    with torch.no_grad():
        p0 = resnet("mc_dropout", p=0.0)
        torch.testing.assert_close(*predict_members(p0, x, num_samples=2))


def test_mc_dropout_runs_eight_passes_by_default():
    model = build_model("lenet", "mc_dropout", 10, 1, input_size=8, seed=0)
    with torch.no_grad():
        members = predict_members(model, torch.randn(3, 1, 8, 8))
    assert model.num_members == 8 and members.shape == (8, 3, 10)


def test_a_seed_beyond_64_bits_is_refused_naming_seed():
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 9223372036854775807\]"):
        build_model("mlp", "single", 10, 1, input_size=8, seed=2**64)


def test_num_samples_is_for_mc_dropout_only():
    with pytest.raises(ValueError, match="mc_dropout only"):
        predict_members(resnet("masksembles", n=2), torch.randn(2, 3, 8, 8), num_samples=5)
    with pytest.raises(TypeError, match="build_model"):
        predict_members(torch.nn.Linear(2, 2), torch.randn(2, 2))


def test_member_weights_per_method():
    be = resnet("batchensemble", n=3)
    weights = be.member_weights()
    assert weights.shape == (3, count(resnet("single")))
    conv = be.backbone.stem
    first = conv.weight.numel()
    for m in range(3):
        expected = conv.weight * conv.s[m].view(-1, 1, 1, 1) * conv.r[m].view(1, -1, 1, 1)
        torch.testing.assert_close(weights[m, :first], expected.detach().flatten())
    assert not torch.allclose(weights[0], weights[1])

    masks = resnet("masksembles", n=3)
    rows = masks.member_weights()
    shared = torch.nn.utils.parameters_to_vector(masks.parameters()).detach()
    assert rows.shape == (3, shared.numel())
    kept = rows != 0
    assert torch.equal(rows[kept], shared.expand(3, -1)[kept])  # kept entries are unchanged
    assert 0.2 < kept.float().mean() < 0.9

    mc = resnet("mc_dropout", n=5, p=0.5)
    sample = mc.member_weights(generator=torch.Generator().manual_seed(0))
    assert sample.shape == (5, shared.numel()) and not torch.equal(sample[0], sample[1])
    assert resnet("single").member_weights().shape == (1, shared.numel())


def test_parameter_groups_per_method():
    for method in ("single", "mc_dropout", "masksembles", "deep_ensemble"):
        model = resnet(method)
        (group,) = model.parameter_groups(weight_decay=5e-4, lr=0.05)
        assert group["weight_decay"] == 5e-4 and group["lr"] == 0.05
        assert len(group["params"]) == len(list(model.parameters()))
    be = resnet("batchensemble", n=4)
    slow, fast = be.parameter_groups(5e-4, 0.05, fast_weight_lr_multiplier=0.25)
    assert fast["weight_decay"] == 0.0 and fast["lr"] == pytest.approx(0.0125)
    assert all(p.ndim == 2 and p.shape[0] == 4 for p in fast["params"])
    assert len(slow["params"]) + len(fast["params"]) == len(list(be.parameters()))
    with pytest.raises(ValueError, match="weight_decay"):
        be.parameter_groups(-1.0, 0.1)


def test_bad_method_options_raise():
    with pytest.raises(ValueError, match="scale"):
        resnet("masksembles", scale=0.5)
    with pytest.raises(ValueError, match="p must satisfy"):
        resnet("mc_dropout", p=1.0)
    with pytest.raises(ValueError, match="init"):
        resnet("batchensemble", init="zeros")
    with pytest.raises(ValueError, match="tile_batch must be True or False"):
        resnet("batchensemble", tile_batch="yes")
    with pytest.raises(ValueError, match="n must be an integer"):
        resnet("deep_ensemble", n=0)
