"""Your own network, end to end: convert -> train one epoch -> save -> load(into=) ->
compile_members -> export.

Four networks a user brings: a nested CNN with Dropout, torchvision's resnet18 (no Dropout:
``sites=["avgpool"]``), a small transformer encoder (Dropout on (B, T, F)) and a Conv1d
signal model. Each is converted, trained one epoch with ``ensemblekit.train_model``, saved,
reloaded on a fresh instance of the unconverted network (bit-identical ``predict_members``),
exported to ONNX and run in onnxruntime at two batch sizes, matching a NumPy reference of the
uncertainty outputs computed from ``predict_members`` to 1e-5. ``compile_members`` (Masksembles
and MC-Dropout) must reproduce ``predict_members`` to 1e-5 on the reloaded model, fanning the
members out at the first mask where that is exact.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ensemblekit as ek

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


class NestedCNN(nn.Module):
    """Dropouts inside a custom block and a nested Sequential; 1x8x8 digits."""

    def __init__(self):
        super().__init__()
        self.block = nn.ModuleDict({
            "conv": nn.Conv2d(1, 16, 3, padding=1), "bn": nn.BatchNorm2d(16),
            "drop": nn.Dropout2d(0.1),
        })
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(),
            nn.Sequential(nn.Dropout(0.2), nn.Linear(32, 10)),
        )

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.block["bn"](self.block["conv"](x))), 2)
        return self.head(self.block["drop"](x))


class TinyEncoder(nn.Module):
    """A digit's 8 rows as a sequence (B, T=8, F=8) through one transformer encoder layer."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.position = nn.Parameter(torch.randn(1, 8, 16) * 0.1)
        self.encoder = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.1,
                                                  batch_first=True)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        tokens = self.encoder(self.embed(x.reshape(-1, 8, 8)) + self.position)
        return self.head(tokens.mean(1))


class SignalNet(nn.Module):
    """Conv1d on (B, 1, 64) signals."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 8, 5, padding=2), nn.BatchNorm1d(8), nn.ReLU(),
            nn.Conv1d(8, 16, 5, stride=2, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(4),
        )
        self.classifier = nn.Linear(64, 3)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def resnet18():
    torchvision = pytest.importorskip("torchvision")
    return torchvision.models.resnet18(num_classes=10)


def network(name: str) -> nn.Module:
    torch.manual_seed(0)  # the fresh copy for load(into=) starts from other weights: reseeded
    return {"cnn": NestedCNN, "encoder": TinyEncoder, "signal": SignalNet,
            "resnet18": resnet18}[name]()


def digits(count: int):
    data = ek.load_dataset("digits", "train")
    images = torch.stack([data[i][0] for i in range(count)])
    labels = torch.tensor([int(data[i][1]) for i in range(count)])
    return images, labels


def signals(count: int):
    """Three classes of noisy sines (1, 2 or 4 cycles over 64 samples)."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(count) % 3
    time = torch.linspace(0, 2 * torch.pi, 64)
    cycles = torch.tensor([1.0, 2.0, 4.0])[labels]
    phase = torch.rand(count, 1, generator=generator) * 2 * torch.pi
    clean = torch.sin(cycles[:, None] * time + phase)
    return (clean + 0.3 * torch.randn(count, 64, generator=generator)).unsqueeze(1), labels


def images32(count: int):
    generator = torch.Generator().manual_seed(0)
    return torch.rand(count, 3, 32, 32, generator=generator), torch.arange(count) % 10


CASES = {
    # name: (network, data, converter)
    "cnn-masksembles": ("cnn", lambda: digits(128),
                        lambda net, x: ek.to_masksembles(net, 4, 2.0, example_input=x[:2],
                                                         seed=0)),
    "cnn-mc_dropout": ("cnn", lambda: digits(128),
                       lambda net, x: ek.to_mc_dropout(net, num_samples=4, seed=0)),
    "encoder-masksembles": ("encoder", lambda: digits(128),
                            lambda net, x: ek.to_masksembles(net, 4, 2.0, example_input=x[:2],
                                                             seed=0)),
    "encoder-mc_dropout": ("encoder", lambda: digits(128),
                           lambda net, x: ek.to_mc_dropout(net, num_samples=4, seed=1)),
    "signal-batchensemble": ("signal", lambda: signals(96),
                             lambda net, x: ek.to_batchensemble(net, 4)),
    "signal-masksembles": ("signal", lambda: signals(96),
                           lambda net, x: ek.to_masksembles(net, 4, 2.0, example_input=x[:2],
                                                            seed=0, sites=["features.4"])),
    "resnet18-masksembles": ("resnet18", lambda: images32(8),
                             lambda net, x: ek.to_masksembles(net, 4, 2.0, example_input=x[:2],
                                                              seed=0, sites=["avgpool"])),
}


def uncertainty_reference(member_logits: torch.Tensor):
    """Mean probabilities, predictive entropy and mutual information, in float64 NumPy."""
    logits = member_logits.double().numpy()
    shifted = logits - logits.max(-1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)  # (M, B, K)
    mean = probs.mean(0)
    entropy = -(mean * np.log(np.where(mean > 0, mean, 1.0))).sum(-1)
    expected = -(probs * np.log(np.where(probs > 0, probs, 1.0))).sum(-1).mean(0)
    return mean, entropy, np.maximum(entropy - expected, 0.0)


@pytest.mark.parametrize(
    "case",
    [pytest.param(name, marks=pytest.mark.slow) if name.startswith("resnet18") else name
     for name in CASES],
)
def test_convert_train_save_load_export(case, tmp_path):
    name, make_data, convert = CASES[case]
    images, labels = make_data()
    model = convert(network(name), images)
    batch = 4 if len(images) < 32 else 32
    history = ek.train_model(model, (images, labels), ek.TrainConfig(
        epochs=1, batch_size=batch, optimizer="adamw", lr=3e-3, progress=False, threads=1))
    assert np.isfinite(history[0]["loss"])
    test_x = images[: min(len(images), 21)]
    with torch.no_grad():
        members = ek.predict_members(model, test_x)
    assert members.shape[:2] == (model.num_members, len(test_x))
    assert not torch.allclose(members[0], members[1])  # the members differ

    path = ek.save(model, tmp_path / "model.pt")
    again = ek.load(path, into=network(name))
    with torch.no_grad():
        assert torch.equal(ek.predict_members(again, test_x), members)

    fast = ek.compile_members(again, example_input=test_x[:2])
    # the CNN, the signal model and resnet18 fan out at their first mask; the encoder's
    # dropouts sit inside residual adds, so it runs tiled; BatchEnsemble's members become
    # dense networks, looped (a converted network has no layer map to stack them by)
    expected_strategy = "loop" if case.endswith("batchensemble") else (
        "tiled" if name == "encoder" else "fan-out")
    assert fast.strategy == expected_strategy
    with torch.no_grad():
        got = ek.predict_members(fast, test_x)
    scale = float(members.abs().max())
    assert float((got - members).abs().max()) <= 1e-5 * scale

    outputs = ("probs", "entropy", "mutual_information", "member_logits")
    onnx_path = ek.export(again, tmp_path / "model.onnx", test_x[:2], outputs=outputs)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for size in (3, len(test_x)):
        got = session.run(None, {"input": test_x[:size].numpy()})
        with torch.no_grad():
            logits = ek.predict_members(model, test_x[:size])
        expected = (*uncertainty_reference(logits), logits.numpy())
        for output, have, want in zip(outputs, got, expected, strict=True):
            assert have.shape == want.shape, output
            np.testing.assert_allclose(have, want, rtol=0, atol=1e-5, err_msg=output)


def test_torch_export_format_runs_at_any_batch_size(tmp_path):
    images, labels = signals(24)
    model = ek.to_mc_dropout(network("signal"), num_samples=3, sites=["features.2"], p=0.2,
                             seed=4)
    path = ek.export(model, tmp_path / "model.pt2", images[:2], format="torch_export",
                     outputs=("entropy", "probs"))
    program = torch.export.load(path).module()
    for size in (1, 9):
        with torch.no_grad():
            entropy, probs = program(images[:size])
            mean, expected_entropy, _ = uncertainty_reference(
                ek.predict_members(model, images[:size]))
        np.testing.assert_allclose(probs.numpy(), mean, rtol=0, atol=1e-5)
        np.testing.assert_allclose(entropy.numpy(), expected_entropy, rtol=0, atol=1e-5)


def test_export_refuses_bad_arguments(tmp_path):
    model = ek.to_masksembles(network("cnn"), 2, 2.0, example_input=torch.rand(2, 1, 8, 8))
    x = torch.rand(4, 1, 8, 8)
    with pytest.raises(ValueError, match="unknown format 'tflite'"):
        ek.export(model, tmp_path / "m.onnx", x, format="tflite")
    with pytest.raises(ValueError, match="at least 2 examples"):
        ek.export(model, tmp_path / "m.onnx", x[:1])
    with pytest.raises(ValueError, match="unknown outputs entry 'logits'"):
        ek.export(model, tmp_path / "m.onnx", x, outputs=("probs", "logits"))
    with pytest.raises(TypeError, match="build_model or an ensemblekit converter"):
        ek.export(network("cnn"), tmp_path / "m.onnx", x)
    dropout = ek.to_mc_dropout(network("cnn"), num_samples=2, seed=0)
    with pytest.raises(ValueError, match="members='compiled' does not apply to MC-Dropout"):
        ek.export(dropout, tmp_path / "m.onnx", x, members="compiled")
    assert not (tmp_path / "m.onnx").exists()
