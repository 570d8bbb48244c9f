"""Real networks convert as they are (issue 19, item 4): a ViT whose attention dropout is
functional (its ``nn.Dropout`` module never called, as in timm's ViT and Hugging Face's BERT)
and a transformer text classifier on int64 token ids go through ``to_masksembles`` without
``sites``, train one step through the contract, reload bit-exactly, compile and export to ONNX
without a second example (the recipe keeps the example's shape and dtype)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ensemblekit as ek
from ensemblekit.example_inputs import recorded_example

torchvision = pytest.importorskip("torchvision")

CLASSES = 5
VOCABULARY = 50


class FunctionalDropoutAttention(nn.Module):
    """timm-style self-attention: attention dropout applied through ``F.dropout`` with the rate
    of ``attn_drop``, an ``nn.Dropout`` module that is never called. Called as torchvision's
    ``EncoderBlock`` calls ``nn.MultiheadAttention``: ``(x, x, x, need_weights=False)``."""

    def __init__(self, dim: int, heads: int, p: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_drop = nn.Dropout(p)
        self.proj = nn.Linear(dim, dim)

    def forward(self, query, key, value, need_weights=False):
        """``(B, T, D) -> ((B, T, D), None)``; ``key``, ``value`` are ``query`` (self-attention)."""
        b, t, d = query.shape
        qkv = self.qkv(query).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, T, D/heads)
        attention = (q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5).softmax(-1)
        attention = F.dropout(attention, self.attn_drop.p, self.training)
        return self.proj((attention @ v).transpose(1, 2).reshape(b, t, d)), None


def tiny_vit() -> nn.Module:
    """torchvision's VisionTransformer (image 16, patch 4, 2 layers, 2 heads, hidden 32, mlp
    64) with each block's attention replaced by :class:`FunctionalDropoutAttention`."""
    torch.manual_seed(0)
    net = torchvision.models.VisionTransformer(
        image_size=16, patch_size=4, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
        num_classes=CLASSES, dropout=0.1, attention_dropout=0.1)
    for block in net.encoder.layers:
        block.self_attention = FunctionalDropoutAttention(32, 2, 0.1)
    return net


class TextClassifier(nn.Module):
    """Token ids ``(B, T)`` int64 -> logits ``(B, K)``: embedding, a 2-layer transformer
    encoder (dropout 0.1), mean over tokens, linear head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(VOCABULARY, 32)
        layer = nn.TransformerEncoderLayer(32, 2, 64, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(32, CLASSES)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens)).mean(1))


def images(batch: int) -> torch.Tensor:
    return torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(batch))


def tokens(batch: int) -> torch.Tensor:
    return torch.randint(0, VOCABULARY, (batch, 7), generator=torch.Generator().manual_seed(batch))


NETWORKS = {"vit": (tiny_vit, images), "text": (TextClassifier, tokens)}
ATTENTION_DROPOUTS = [f"encoder.layers.encoder_layer_{i}.self_attention.attn_drop"
                      for i in range(2)]


def converted(name: str):
    """The network ``name`` through ``to_masksembles`` without sites (n=4, scale 2)."""
    make, inputs = NETWORKS[name]
    if name == "vit":
        with pytest.warns(UserWarning, match="never called.*attn_drop.*left in place") as seen:
            model = ek.to_masksembles(make(), n=4, scale=2.0, example_input=inputs(4), seed=1)
        assert seen[0].filename == __file__  # the warning points at the caller's line
        return model
    return ek.to_masksembles(make(), n=4, scale=2.0, example_input=inputs(4), seed=1)


def test_the_vit_keeps_its_uncalled_attention_dropout_and_masks_every_called_one():
    model = converted("vit")
    assert model.recipe["not_called"] == ATTENTION_DROPOUTS
    for path in ATTENTION_DROPOUTS:  # left in place, as they were: they do nothing
        assert type(model.backbone.get_submodule(path)) is nn.Dropout
    masked = [site["path"] for site in model.recipe["sites"]]
    assert len(masked) == 7 and not set(masked) & set(ATTENTION_DROPOUTS)
    assert model.recipe["input"] == {"shape": [3, 16, 16], "dtype": "float32"}


def test_token_inputs_are_recorded_with_their_range():
    model = converted("text")
    assert model.recipe["not_called"] == []
    assert len(model.recipe["sites"]) == 6  # dropout, dropout1, dropout2 of both layers
    assert model.recipe["input"] == {"shape": [7], "dtype": "int64",
                                     "low": int(tokens(4).min()), "high": int(tokens(4).max())}
    example = recorded_example(model)
    assert example.dtype == torch.int64 and example.shape == (2, 7)
    assert int(example.min()) >= model.recipe["input"]["low"]
    assert int(example.max()) <= model.recipe["input"]["high"]


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_train_reload_and_compile_without_a_second_example(name, tmp_path):
    make, inputs = NETWORKS[name]
    model = converted(name)
    x, y = inputs(8), torch.arange(8) % CLASSES
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    loss = F.cross_entropy(model(x), model.training_targets(y))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    model.eval()
    members = ek.predict_members(model, inputs(6))
    assert members.shape == (4, 6, CLASSES)
    assert not torch.allclose(members[0], members[1])  # the masks make the members differ

    ek.save(model, tmp_path / "model.pt")
    reloaded = ek.load(tmp_path / "model.pt", into=make())
    assert reloaded.recipe == model.recipe
    state, again = model.state_dict(), reloaded.state_dict()
    assert state.keys() == again.keys()
    assert all(torch.equal(state[key], again[key]) for key in state)
    assert torch.equal(ek.predict_members(reloaded, inputs(6)), members)

    fast = ek.compile_members(model)  # no example_input: the recipe's shape
    with torch.no_grad():
        assert torch.allclose(fast(inputs(6)), members, atol=1e-5)


# ~10-15 s each here; the token network is the new case (int64 input), the float-image ONNX
# path is also covered by test_export.py, so the ViT's export runs with -m slow
@pytest.mark.parametrize("name", [pytest.param("vit", marks=pytest.mark.slow), "text"])
def test_onnx_export_without_a_second_example(name, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    _, inputs = NETWORKS[name]
    model = converted(name).eval()
    path = ek.export(model, tmp_path / "model.onnx")  # no example_input: the recipe's shape
    x = inputs(3)  # another batch size than the example's: the batch dimension is free
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs, _, _ = session.run(None, {"input": x.numpy()})
    expected = ek.predict_members(model, x).softmax(-1).mean(0)
    assert torch.allclose(torch.from_numpy(probs), expected, atol=1e-5)


class OnlyFunctionalDropout(nn.Module):
    """A network whose only dropout module is never called (it uses F.dropout)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(6, 8)
        self.drop = nn.Dropout(0.2)
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.dropout(self.hidden(x).relu(), self.drop.p, self.training))


def test_no_drop_site_left_names_the_skipped_modules_and_suggests_sites():
    with pytest.raises(ValueError, match="never called.*'drop'.*no drop site remains.*sites="):
        ek.to_masksembles(OnlyFunctionalDropout(), n=2, scale=2.0, example_input=torch.randn(2, 6))
    with pytest.raises(ValueError, match="never called.*'drop'.*pass sites="):
        ek.to_mc_dropout(OnlyFunctionalDropout(), example_input=torch.randn(2, 6))
    model = ek.to_masksembles(OnlyFunctionalDropout(), n=2, scale=2.0, sites=["hidden"],
                              example_input=torch.randn(2, 6))
    assert model.recipe["not_called"] == []  # a site chosen by the user is never skipped
    with pytest.raises(ValueError, match="'drop' was not called"):
        ek.to_masksembles(OnlyFunctionalDropout(), n=2, scale=2.0, sites=["drop"],
                          example_input=torch.randn(2, 6))


def test_mc_dropout_lists_the_uncalled_dropout_and_needs_no_second_example(tmp_path):
    with pytest.warns(UserWarning, match="to_mc_dropout: .*never called.*attn_drop") as seen:
        model = ek.to_mc_dropout(tiny_vit(), num_samples=3, seed=2, example_input=images(2))
    assert seen[0].filename == __file__
    assert model.recipe["not_called"] == ATTENTION_DROPOUTS
    assert model.recipe["input"]["shape"] == [3, 16, 16]
    ek.save(model, tmp_path / "model.pt")
    reloaded = ek.load(tmp_path / "model.pt", into=tiny_vit())
    members = ek.predict_members(model, images(5))
    assert torch.equal(ek.predict_members(reloaded, images(5)), members)
    with torch.no_grad():
        assert torch.allclose(ek.compile_members(model)(images(5)), members, atol=1e-5)


def test_export_without_a_recorded_shape_asks_for_an_example_and_batchensemble_records_one(
        tmp_path):
    built = ek.build_model("mlp", "single", 3, 1, input_size=4, seed=0)
    with pytest.raises(ValueError, match="export needs example_input=x\\[:2\\].*records no input"):
        ek.export(built, tmp_path / "model.pt2", format="torch_export")
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(RuntimeError):  # the example is checked by a dry forward
        ek.to_batchensemble(net, 2, example_input=torch.randn(2, 5))
    model = ek.to_batchensemble(net, 2, example_input=torch.randn(2, 6))
    assert model.recipe["input"] == {"shape": [6], "dtype": "float32"}
    path = ek.export(model, tmp_path / "model.pt2", format="torch_export",
                     outputs=("member_logits",))
    x = torch.randn(3, 6)
    (got,) = torch.export.load(path).module()(x)
    assert torch.allclose(got, ek.predict_members(model, x), atol=1e-5)
