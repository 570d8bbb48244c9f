"""placement= and widen= for Masksembles and MC-Dropout, on every backbone: where the masks go,
how wide the masked layers get, and that every contract of the library still holds for each
combination (member-major training, predict_members, compile_members exactness, thin
sub-networks, save/load bit-exact)."""

import itertools

import pytest
import torch
import torch.nn.functional as F

import ensemblekit as ek
from ensemblekit.layers import Masksembles
from ensemblekit.masks import mask_size
from ensemblekit.methods import build_model, predict_members
from ensemblekit.methods.masksembles import MIN_MEMBER_CHANNELS, masks_fit, widened_channels
from test_compile_members import conv_work, randomise_batchnorm
from test_models import SMALL

COMBINATIONS = list(itertools.product(SMALL, ("all", "dropout"), (False, True)))
N, SCALE = 2, 2.0


def build(name, method, placement, widen, **options):
    in_channels, _, extra = SMALL[name]
    method_options = {"n": N, "scale": SCALE} if method == "masksembles" else {"n": 3, "p": 0.2}
    model = build_model(name, method, 5, in_channels, seed=0, placement=placement, widen=widen,
                        **{**extra, **method_options, **options})
    randomise_batchnorm(model)
    return model


def batch(name, size, seed=1):
    in_channels, spatial, _ = SMALL[name]
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(size, in_channels, spatial, spatial, generator=generator)


def masked_sites(model) -> set[str]:
    return {name for name, module in model.backbone.named_modules()
            if isinstance(module, Masksembles)}


#: the drop sites placement="dropout" may use, per backbone (module path patterns)
def is_classic(name: str, site: str, model) -> bool:
    if name == "lenet":
        return site in ("drop3", "drop4")
    if name == "mlp":
        return True
    blocks = len(model.backbone.blocks)
    if name in ("resnet20", "resnet18"):
        last_stage = {"resnet20": 3, "resnet18": 2}[name]
        index = int(site.split(".")[1]) if site.startswith("blocks.") else -1
        return index >= blocks - last_stage
    if name == "wrn28_10":
        return site.endswith(".drop2")
    if name == "resnet50":
        index = int(site.split(".")[1]) if site.startswith("blocks.") else -1
        return index >= blocks - 3 and site.endswith(".drop3")
    raise AssertionError(name)


@pytest.mark.parametrize("name", list(SMALL))
def test_dropout_placement_masks_only_the_classic_positions(name):
    everywhere = build(name, "masksembles", "all", False)
    classic = build(name, "masksembles", "dropout", False)
    sites = masked_sites(classic)
    assert sites, "placement='dropout' must leave some masks"
    assert all(is_classic(name, site, classic) for site in sites), sites
    assert sites <= masked_sites(everywhere)
    if name != "mlp":  # the MLP's every hidden layer is a classic dropout position
        assert sites < masked_sites(everywhere)
    assert classic.config["placement"] == "dropout" and classic.config["widen"] is False


@pytest.mark.parametrize("name", ["lenet", "resnet20", "wrn28_10"])
def test_mc_dropout_placement_puts_dropout_where_masksembles_puts_masks(name):
    masksembles = masked_sites(build(name, "masksembles", "dropout", False))
    dropout = build(name, "mc_dropout", "dropout", False)
    sites = {site for site, module in dropout.backbone.named_modules()
             if isinstance(module, torch.nn.modules.dropout._DropoutNd)}
    assert {site.rsplit(".", 1)[0] for site in sites} == masksembles


@pytest.mark.parametrize("name", list(SMALL))
def test_widen_gives_each_member_the_single_models_channels(name):
    narrow = build(name, "masksembles", "dropout", False)
    wide = build(name, "masksembles", "dropout", True)
    narrow_widths = sorted(m.channels for m in narrow.backbone.modules()
                           if isinstance(m, Masksembles))
    wide_layers = [m for m in wide.backbone.modules() if isinstance(m, Masksembles)]
    assert len(wide_layers) == len(narrow_widths)
    kept = sorted(int(m.masks[0].sum()) for m in wide_layers)
    assert kept == narrow_widths  # every member keeps what the unwidened layer had
    assert sum(p.numel() for p in wide.parameters()) > sum(p.numel() for p in narrow.parameters())


def test_mc_dropout_widen_is_one_over_keep():
    narrow = build("lenet", "mc_dropout", "dropout", False)
    wide = build("lenet", "mc_dropout", "dropout", True)
    assert narrow.backbone.fc1.out_features == 120 and wide.backbone.fc1.out_features == 150
    assert wide.backbone.conv1.out_channels == 6  # not a dropout site under placement=dropout


def test_skip_rule_is_eight_channels_per_member():
    assert not masks_fit(14, 4, 2.0) and masks_fit(15, 4, 2.0)  # masks of 7 and 8
    for channels, n, scale in [(6, 4, 2.0), (48, 4, 2.0), (100, 8, 4.0), (9, 2, 1.5)]:
        wide = widened_channels(channels, n, scale)
        assert mask_size(wide, n, scale) >= channels > mask_size(wide - 1, n, scale) or (
            wide == channels)
    model = build_model("lenet", "masksembles", 10, 1, input_size=8, n=4, scale=4.0, seed=0)
    # scale 4 keeps 37% per mask: conv2's 16 channels would leave 6 < 8, so only fc layers
    assert masked_sites(model) == {"drop3", "drop4"}
    assert all(int(m.masks.sum(1).min()) >= MIN_MEMBER_CHANNELS
               for m in model.backbone.modules() if isinstance(m, Masksembles))


def test_bad_placement_and_widen_are_named():
    with pytest.raises(ValueError, match="placement 'everywhere'.*all, dropout"):
        build_model("lenet", "masksembles", 10, 1, input_size=8, placement="everywhere")
    with pytest.raises(ValueError, match="widen must be True or False, got 'yes'"):
        build_model("lenet", "mc_dropout", 10, 1, input_size=8, widen="yes")


@pytest.mark.parametrize("name,placement,widen", COMBINATIONS)
def test_every_contract_holds_for_every_combination(name, placement, widen, tmp_path):
    model = build(name, "masksembles", placement, widen)
    # member-major training step
    model.train()
    x, y = batch(name, 2 * N), torch.randint(0, 5, (2 * N,))
    F.cross_entropy(model(x), model.training_targets(y)).backward()
    test = batch(name, 3, seed=2)
    with torch.no_grad():
        expected = predict_members(model, test)
    assert expected.shape == (N, 3, 5)
    # compile_members: exact
    fast = ek.compile_members(model, example_input=test)
    with torch.no_grad():
        got = fast(test)
    assert float((got - expected).abs().max() / expected.abs().max()) < 1e-5
    # thin sub-networks: zeroing every weight outside member m's masks keeps its logits
    rows = model.member_weights()
    with torch.no_grad():
        for member in range(N):
            torch.nn.utils.vector_to_parameters(rows[member], model.backbone.parameters())
            torch.testing.assert_close(predict_members(model, test)[member], expected[member],
                                       rtol=1e-4, atol=1e-5)
    similarity = ek.weight_similarity(model)
    assert similarity.shape == (N, N)
    # save / load: bit-exact
    model = build(name, "masksembles", placement, widen)
    path = tmp_path / "model.pt"
    ek.save(model, path)
    again = ek.load(path)
    assert again.config == model.config
    with torch.no_grad():
        assert torch.equal(predict_members(again, test), predict_members(model, test))


@pytest.mark.parametrize("name,placement,widen", COMBINATIONS)
def test_mc_dropout_every_combination_trains_predicts_and_reloads(name, placement, widen,
                                                                  tmp_path):
    model = build(name, "mc_dropout", placement, widen)
    model.train()
    x, y = batch(name, 4), torch.randint(0, 5, (4,))
    F.cross_entropy(model(x), model.training_targets(y)).backward()
    test = batch(name, 3, seed=2)
    with torch.no_grad():
        logits = predict_members(model, test)
    assert logits.shape == (3, 3, 5) and torch.isfinite(logits).all()
    rows = model.member_weights(generator=torch.Generator().manual_seed(0))
    assert rows.shape[0] == 3
    ek.save(model, tmp_path / "model.pt")
    again = ek.load(tmp_path / "model.pt")
    for mine, theirs in zip(model.state_dict().values(), again.state_dict().values(),
                            strict=True):
        assert torch.equal(mine, theirs)


@pytest.mark.parametrize("name", ["lenet", "resnet20", "resnet50"])
def test_shared_prefix_runs_the_unmasked_trunk_once(name):
    model = build(name, "masksembles", "dropout", False)
    test = batch(name, 3, seed=2)
    shared = ek.compile_members(model, strategy="stacked", example_input=test)
    unshared = ek.compile_members(model, strategy="stacked", share_prefix=False,
                                  example_input=test)
    with torch.no_grad():
        expected = predict_members(model, test)
        for fast in (shared, unshared):
            assert float((fast(test) - expected).abs().max() / expected.abs().max()) < 1e-5
    # the stem keeps its own width: computed once, not once per member
    stem_name = model.backbone.stem_name
    stem = shared.networks[0].get_submodule(stem_name)
    assert stem.weight.shape == model.backbone.get_submodule(stem_name).weight.shape
    shared_work = conv_work(shared.networks[0], test)
    assert shared_work < 0.6 * conv_work(unshared.networks[0], test)
    # the loop: the first member computes the prefix, the others reuse it
    loop = ek.compile_members(model, strategy="loop", example_input=test)
    loop_alone = ek.compile_members(model, strategy="loop", share_prefix=False,
                                    example_input=test)
    with torch.no_grad():
        for fast in (loop, loop_alone):
            assert float((fast(test) - expected).abs().max() / expected.abs().max()) < 1e-5
        assert torch.equal(loop(test), loop(test))  # the replay store is cleared per call
    assert conv_work(loop, test) < 0.6 * conv_work(loop_alone, test)


def test_wide_resnet_inner_masks_compile_without_sharing_and_stay_exact():
    model = build("wrn28_10", "masksembles", "dropout", False)
    test = batch("wrn28_10", 3, seed=2)
    fast = ek.compile_members(model, strategy="stacked", example_input=test)
    with torch.no_grad():
        expected = predict_members(model, test)
        assert float((fast(test) - expected).abs().max() / expected.abs().max()) < 1e-5
