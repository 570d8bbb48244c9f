"""Converters on users' own (nested) models."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ensemblekit.convert import to_batchensemble, to_masksembles, to_mc_dropout
from ensemblekit.layers import Masksembles, Masksembles2d
from ensemblekit.layers.batchensemble import BatchEnsembleConv2d, BatchEnsembleLinear
from ensemblekit.members import repeat_members
from ensemblekit.methods import predict_members


class Features(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.bn = nn.BatchNorm2d(12)
        self.drop = nn.Dropout2d(0.2)

    def forward(self, x):
        return F.max_pool2d(self.drop(F.relu(self.bn(self.conv(x)))), 2)


class Net(nn.Module):
    """Dropouts at three depths: inside a custom module, a Sequential, and a nested Sequential."""

    def __init__(self):
        super().__init__()
        self.features = Features()
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(12 * 4 * 4, 20),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Dropout(0.3)),
            nn.Linear(16, 5),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def make_net():
    torch.manual_seed(0)
    net = Net()
    net.eval()
    return net


def test_to_masksembles_replaces_nested_dropouts_with_the_measured_widths():
    net = make_net()
    x = torch.randn(6, 3, 8, 8)
    with torch.no_grad():
        plain = net(x)
    model = to_masksembles(net, 2, 2.0, example_input=x[:1], seed=3)
    assert model.backbone is net and model.num_members == 2 and model.config is None
    layers = {name: m for name, m in net.named_modules() if isinstance(m, Masksembles)}
    assert {name: (type(m), m.channels) for name, m in layers.items()} == {
        "features.drop": (Masksembles2d, 12),
        "classifier.3": (Masksembles, 20),
        "classifier.4.2": (Masksembles, 16),
    }
    assert all(m.seed == 3 for m in layers.values())
    assert not any(isinstance(m, nn.Dropout) for m in net.modules())
    model.train()
    loss = F.cross_entropy(model(x), model.training_targets(torch.arange(6) % 5))
    loss.backward()
    with torch.no_grad():
        members = predict_members(model, x)
    assert members.shape == (2, 6, 5) and not torch.allclose(members[0], members[1])
    # scale 1: full masks, the converted model is the original one in eval mode
    same = to_masksembles(make_net(), 3, 1.0, example_input=x[:1])
    with torch.no_grad():
        for member in predict_members(same, x):
            torch.testing.assert_close(member, plain)


def test_to_masksembles_without_example_reads_widths_off_the_sequential():
    net = nn.Sequential(
        nn.Linear(6, 10), nn.ReLU(), nn.Dropout(0.1), nn.Linear(10, 8), nn.Tanh(), nn.Dropout()
    )
    model = to_masksembles(net, 2, 2.0)
    assert [m.channels for m in net.modules() if isinstance(m, Masksembles)] == [10, 8]
    assert model(torch.randn(4, 6)).shape == (4, 8)
    with pytest.raises(ValueError, match="'features.drop'.*pass example_input"):
        to_masksembles(make_net(), 2, 2.0)


@pytest.mark.filterwarnings("ignore:dropout2d. Received a 3D input")
def test_to_masksembles_errors_name_the_module():
    class Sequence(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)
            self.drop = nn.Dropout2d(0.1)

        def forward(self, x):  # (B, T, F): no channel maps for Dropout2d
            return self.drop(self.proj(x))

    with pytest.raises(ValueError, match="'drop' receives 3-D inputs"):
        to_masksembles(Sequence(), 2, 2.0, example_input=torch.randn(1, 5, 4))
    alpha = nn.Sequential(nn.Linear(4, 4), nn.AlphaDropout(0.1))
    with pytest.raises(ValueError, match="'1' is AlphaDropout"):
        to_masksembles(alpha, 2, 2.0, example_input=torch.randn(1, 4))
    with pytest.raises(ValueError, match="no nn.Dropout"):
        to_masksembles(nn.Linear(2, 2), 2, 2.0)


def test_masksembles_member_weights_need_a_built_backbone():
    model = to_masksembles(make_net(), 2, 2.0, example_input=torch.randn(1, 3, 8, 8))
    with pytest.raises(NotImplementedError, match="build_model"):
        model.member_weights()


def test_to_mc_dropout_keeps_dropout_active_at_inference():
    model = to_mc_dropout(make_net(), num_samples=5)
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        members = predict_members(model, x)
    assert members.shape == (5, 4, 5) and not torch.allclose(members[0], members[1])
    assert not model.backbone.features.drop.training  # mode restored
    with pytest.raises(ValueError, match="no dropout layer with p > 0"):
        to_mc_dropout(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.0)))


def test_to_batchensemble_copies_the_shared_weights():
    net = make_net()
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        plain = net(x)
    conv_weight = net.features.conv.weight.detach().clone()
    model = to_batchensemble(net, 3, init="ones")
    conv = net.features.conv
    assert isinstance(conv, BatchEnsembleConv2d) and torch.equal(conv.weight, conv_weight)
    linears = [m for m in net.modules() if isinstance(m, BatchEnsembleLinear)]
    assert len(linears) == 3 and not any(type(m) is nn.Linear for m in net.modules())
    with torch.no_grad():
        members = predict_members(model, x)
    for member in members:  # unit fast weights: every member is the original network
        torch.testing.assert_close(member, plain, rtol=1e-4, atol=1e-5)
    assert model.member_weights().shape == (3, sum(p.numel() for p in make_net().parameters()))
    model.train()
    logits = model(x)
    assert logits.shape == (9, 5)
    assert torch.equal(model.training_targets(torch.arange(3)), repeat_members(torch.arange(3), 3))
    diverse = to_batchensemble(make_net(), 2)
    with torch.no_grad():
        members = predict_members(diverse, x)
    assert not torch.allclose(members[0], members[1])


def test_to_batchensemble_refuses_layers_it_would_silently_share():
    nested = nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.ConvTranspose1d(1, 2, 3)))
    with pytest.raises(ValueError, match="'1.0'.*ConvTranspose1d"):
        to_batchensemble(nested, 2)
    attention = nn.Sequential(nn.Linear(4, 4), nn.MultiheadAttention(4, 2))
    with pytest.raises(ValueError, match="'1'.*projection weights"):
        to_batchensemble(attention, 2)
    with pytest.raises(ValueError, match="no nn.Linear or nn.Conv1d/2d/3d"):
        to_batchensemble(nn.Sequential(nn.ReLU()), 2)
    single_layer = to_batchensemble(nn.Linear(3, 2), 2)
    assert single_layer(torch.randn(4, 3)).shape == (8, 2)


def test_sites_insert_masks_after_chosen_modules_of_a_network_without_dropout():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4),
    ).eval()
    x = torch.randn(5, 3, 6, 6)
    with torch.no_grad():
        pooled = net[:4](x)
    model = to_masksembles(net, 2, 2.0, example_input=x[:1], seed=1,
                           sites=lambda path, module: isinstance(module, nn.AdaptiveAvgPool2d))
    assert [site["path"] for site in model.recipe["sites"]] == ["3"]
    assert isinstance(net[3], nn.Sequential) and isinstance(net[3][1], Masksembles2d)
    masks = net[3][1].masks.float()  # (2, 16)
    with torch.no_grad():
        members = net[:4](repeat_members(x, 2)).view(2, 5, 16, 1, 1)
    # member m's copy of the pooled features is the original times mask m, channel by channel
    torch.testing.assert_close(members, pooled.unsqueeze(0) * masks.view(2, 1, 16, 1, 1))
    with pytest.raises(ValueError, match="'nope', which is not a submodule"):
        to_masksembles(make_net(), 2, 2.0, example_input=x[:1], sites=["nope"])
    with pytest.raises(ValueError, match="sites needs example_input"):
        to_masksembles(make_net(), 2, 2.0, sites=["features.conv"])
    with pytest.raises(TypeError, match="sites must be"):
        to_masksembles(make_net(), 2, 2.0, example_input=x[:1], sites="features.conv")


def test_dropout_on_feature_last_sequences_masks_the_last_dim():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.1), nn.Linear(8, 3))
    x = torch.randn(4, 5, 6)  # (B, T, F)
    model = to_masksembles(net, 2, 2.0, example_input=x[:1], seed=0)
    layer = net[1]
    assert (type(layer), layer.channels, layer.dim) == (Masksembles, 8, -1)
    with torch.no_grad():
        hidden = net[0](x)
        members = predict_members(model, x)
    for m in range(2):  # member m = the network with its features masked by mask m at each step
        torch.testing.assert_close(members[m], net[2](hidden * layer.masks[m].float()))


def test_mc_dropout_sampling_is_seeded_batch_independent_and_leaves_the_global_rng():
    model = to_mc_dropout(make_net(), num_samples=4, seed=5)
    x = torch.randn(6, 3, 8, 8)
    state = torch.get_rng_state()
    with torch.no_grad():
        first, second, alone = (predict_members(model, x), predict_members(model, x),
                                predict_members(model, x[:2]))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, second) and not torch.allclose(first[0], first[1])
    torch.testing.assert_close(alone, first[:, :2], rtol=1e-5, atol=1e-6)
    other = to_mc_dropout(make_net(), num_samples=4, seed=6)
    with torch.no_grad():
        assert not torch.allclose(predict_members(other, x), first)
    # sites: dropout inserted after a chosen module of a network that has none
    plain = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    inserted = to_mc_dropout(plain, num_samples=3, sites=["1"], p=0.5, seed=0)
    assert isinstance(plain[1][1], nn.Dropout) and plain[1][1].p == 0.5
    with torch.no_grad():
        members = predict_members(inserted, torch.randn(5, 4))
    assert not torch.allclose(members[0], members[1])
    with pytest.raises(ValueError, match="'1' \\(AlphaDropout\\).*global RNG"):
        to_mc_dropout(nn.Sequential(nn.Linear(2, 2), nn.AlphaDropout(0.2)))


@pytest.mark.parametrize("conv", [nn.Conv1d, nn.Conv3d])
def test_to_batchensemble_converts_conv1d_and_conv3d(conv):
    torch.manual_seed(0)
    net = nn.Sequential(conv(2, 4, 3, padding=1, stride=2), nn.ReLU(), nn.Flatten(1),
                        nn.LazyLinear(3))
    x = torch.randn(3, 2, *([6] * (1 if conv is nn.Conv1d else 3)))
    net(x)  # initialise the lazy layer
    with torch.no_grad():
        plain = net(x)
    model = to_batchensemble(net, 2, init="ones")
    assert type(net[0]).__name__ == f"BatchEnsemble{conv.__name__}"
    with torch.no_grad():
        members = predict_members(model, x)
        for member in members:  # unit fast weights: each member is the original network
            torch.testing.assert_close(member, plain, rtol=1e-4, atol=1e-5)
        # member 1 with its own fast weights equals a plain conv with its effective kernel
        net[0].r.normal_()
        net[0].s.normal_()
        tiled = net[0](repeat_members(x, 2))[len(x):]
        reference = conv(2, 4, 3, padding=1, stride=2, bias=True)
        reference.weight.copy_(net[0].effective_weight()[1])
        reference.bias.copy_(net[0].bias[1])
        torch.testing.assert_close(tiled, reference(x), rtol=1e-4, atol=1e-5)
