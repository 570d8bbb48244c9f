"""The member-similarity study: BatchEnsemble controls, member probes, weighted CKA, the run."""

from __future__ import annotations

import json

import pytest
import torch

import ensemblekit as ek
from ensemblekit.experiments import DiversitySettings
from ensemblekit.experiments.diversity import run_diversity, weight_record
from ensemblekit.experiments.member_probes import layer_columns, member_outputs
from ensemblekit.methods import method_entry
from ensemblekit.metrics import linear_cka, pairwise_cka, pairwise_disagreement
from ensemblekit.stats.weighted import weighted_cka

PNG = b"\x89PNG\r\n\x1a\n"


def lenet(method: str, seed: int = 0, **options):
    if method != "single":
        options.setdefault("n", 4)
    return ek.build_model("lenet", method, 10, 1, width=3.0, input_size=8, seed=seed, **options)


def digits(count: int = 64) -> torch.Tensor:
    images, _ = ek.data.as_tensors(ek.load_dataset("digits", "test"))
    return images[:count]


def off_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    return matrix[~torch.eye(len(matrix), dtype=torch.bool)]


def test_init_ones_members_are_identical_at_initialisation():
    model = lenet("batchensemble", init="ones")
    logits, features = member_outputs(model, digits())
    for member in range(1, 4):
        assert torch.equal(logits[member], logits[0])
        assert torch.equal(features["penultimate"][member], features["penultimate"][0])
    probs = logits.double().softmax(-1)
    assert off_diagonal(pairwise_disagreement(probs)).abs().max() == 0
    for key in ("penultimate", "mid"):
        torch.testing.assert_close(pairwise_cka(features[key]),
                                   torch.ones(4, 4, dtype=torch.float64))
    assert off_diagonal(ek.weight_similarity(model)).min() == pytest.approx(1.0)
    # A tiled batch gives every member the same rows, hence the same gradients: they stay equal.
    images, labels = digits(128), ek.data.as_tensors(ek.load_dataset("digits", "test"))[1][:128]
    ek.train_model(model, (images, labels), ek.TrainConfig(epochs=2, batch_size=32, lr=1e-3,
                                                           optimizer="adamw", progress=False,
                                                           threads=1, precision="fp32"))
    trained, _ = member_outputs(model, digits())
    assert all(torch.equal(trained[m], trained[0]) for m in range(4))


def test_normal_init_weight_cosine_is_set_by_construction():
    """E cos = (E r E s)^2 / (E r^2 E s^2) = 1 / 1.25^2 = 0.64 for r, s ~ N(1, 0.5^2)."""
    values = [float(off_diagonal(ek.weight_similarity(lenet("batchensemble", seed=seed))).mean())
              for seed in range(3)]
    assert abs(sum(values) / 3 - 0.64) < 0.05
    signs = off_diagonal(ek.weight_similarity(lenet("batchensemble", init="random_sign")))
    assert signs.abs().mean() < 0.1


@pytest.mark.parametrize("method", ["single", "mc_dropout", "masksembles", "batchensemble",
                                    "packed_ensemble", "mimo", "deep_ensemble"])
def test_layer_columns_cover_the_member_weights(method):
    model = lenet(method)
    weights = (model.member_weights(generator=torch.Generator().manual_seed(0))
               if method == "mc_dropout" else model.member_weights())
    columns = layer_columns(model)
    assert [name for name, _, _ in columns] == ["conv1", "conv2", "fc1", "fc2", "head"]
    assert not any(is_norm for _, _, is_norm in columns)
    assert columns[-1][1].stop == weights.shape[1]
    assert all(a[1].stop == b[1].start for a, b in zip(columns, columns[1:], strict=False))
    if method == "batchensemble":  # each layer's block is its effective weight, then bias
        head = model.backbone.head
        block = weights[:, columns[-1][1]]
        expected = torch.cat([head.effective_weight().reshape(4, -1), head.bias], dim=1)
        torch.testing.assert_close(block, expected.detach())
    if method == "packed_ensemble":  # each layer's block is the member's own layer
        for member in (0, 3):
            network = model.member_network(member)
            for name, cols, _ in columns:
                own = torch.cat([p.reshape(-1) for p in
                                 network.get_submodule(name).parameters(recurse=False)])
                assert torch.equal(weights[member, cols], own.detach())
    if method == "mimo":  # the head's block: the rows writing the member, and their bias
        weight, bias = model.backbone.head.member_blocks()
        expected = torch.cat([weight.reshape(4, -1), bias.reshape(4, -1)], dim=1)
        assert torch.equal(weights[:, columns[-1][1]], expected.detach())


@pytest.mark.parametrize("method", ["batchensemble", "deep_ensemble", "mc_dropout",
                                    "packed_ensemble", "mimo"])
def test_member_outputs_give_each_member_its_own_features(method):
    torch.manual_seed(0)
    model = lenet(method)
    logits, features = member_outputs(model, digits(10), batch_size=4, seed=3)
    assert logits.shape == (4, 10, 10)
    penultimate = features["penultimate"]
    assert penultimate.shape[:2] == (4, 10)
    # fc1 reads pooled conv2 maps; a packed member reads its alpha / n = half of them
    share = 2 if method == "packed_ensemble" else 1
    assert features["mid"].shape == (4, 10, 16 * 3 * 2 * 2 // share)
    # The head applied to member m's captured features gives member m's logits.
    for member in range(4):
        if method == "batchensemble":
            head = model.backbone.head
            expected = (penultimate[member] * head.r[member]) @ head.weight.T * head.s[member] \
                + head.bias[member]
        elif method == "deep_ensemble":
            expected = model.members[member].head(penultimate[member])
        elif method == "packed_ensemble":
            expected = model.member_network(member).head(penultimate[member])
        elif method == "mimo":
            weight, bias = model.backbone.head.member_blocks()
            expected = penultimate[member] @ weight[member].T + bias[member]
        else:
            expected = model.backbone.head(penultimate[member])
        torch.testing.assert_close(logits[member], expected.detach(), rtol=1e-4, atol=1e-5)
    # The same seed draws the same dropout masks.
    again, _ = member_outputs(model, digits(10), batch_size=4, seed=3)
    assert torch.equal(logits, again)


def test_packed_and_mimo_read_their_construction():
    """The study reads each against its registry entry's construction: Packed members are
    independent groups (conv / linear cosine ~ 0 at initialisation, each member's hidden
    representation exactly what its own network computes); MIMO members share everything but
    the ends (cosine exactly 1 on the body, ~ 0 on the stem's slot columns and the head's
    blocks, CKA exactly 1 on the shared representations)."""
    images = digits(32)
    packed = lenet("packed_ensemble", alpha=2.0, gamma=1)
    record = weight_record(packed.member_weights(), layer_columns(packed))
    assert all(abs(cosine) < 0.1 for cosine in record["layers"].values())
    assert abs(record["overall"]) < 0.05
    _, features = member_outputs(packed, images, batch_size=8)
    for member in (0, 2):
        network, seen = packed.member_network(member).eval(), {}
        network.head.register_forward_pre_hook(
            lambda m, inputs, seen=seen: seen.update(x=inputs[0]))
        with torch.no_grad():
            network(images)
        torch.testing.assert_close(features["penultimate"][member], seen["x"])
    assert "independent groups" in method_entry("packed_ensemble").construction(
        {"alpha": 2.0, "gamma": 1})

    mimo = lenet("mimo")
    record = weight_record(mimo.member_weights(), layer_columns(mimo))
    for name in ("conv2", "fc1", "fc2"):
        assert record["layers"][name] == pytest.approx(1.0, abs=1e-6)
    for name in ("conv1", "head"):
        assert abs(record["layers"][name]) < 0.2
    _, features = member_outputs(mimo, images, batch_size=8)
    for key in ("penultimate", "mid"):
        torch.testing.assert_close(pairwise_cka(features[key]),
                                   torch.ones(4, 4, dtype=torch.float64))
    construction = method_entry("mimo").construction({})
    assert "cosine 1 on the shared body" in construction and "CKA 1" in construction


def test_weighted_cka_is_linear_cka_of_the_resampled_rows():
    torch.manual_seed(0)
    x = torch.randn(30, 5, dtype=torch.float64)
    y = x @ torch.randn(5, 3, dtype=torch.float64) + 0.5 * torch.randn(30, 3,
                                                                       dtype=torch.float64)
    counts = torch.randint(0, 3, (2, 30)).double()
    counts[:, 0] += 1
    weights = torch.cat([torch.ones(1, 30, dtype=torch.float64), counts])
    values = weighted_cka(x @ x.T, y @ y.T, weights)
    assert values[0] == pytest.approx(linear_cka(x, y), abs=1e-12)
    for row in range(1, 3):
        index = torch.repeat_interleave(torch.arange(30), counts[row - 1].long())
        assert values[row] == pytest.approx(linear_cka(x[index], y[index]), abs=1e-10)


def test_diversity_study_writes_everything(tmp_path):
    settings = DiversitySettings.from_sources(overrides={
        "methods": ["single", "batchensemble", "deep_ensemble"], "seeds": 2, "epochs": 1,
        "controls": {"batchensemble": ["ones"]}, "corruptions": ["gaussian_noise"],
        "out": str(tmp_path), "threads": 1,
        # the digits recipe's BatchEnsemble init is the tune's pick (random_sign: cosine ~0 by
        # construction); the N(1, 0.5^2) init is the one whose members start alike
        "method_options": {"batchensemble": {"init": "normal"}}})
    results = run_diversity(settings, log=lambda message: None)
    variants = results["variants"]
    assert list(variants) == ["single", "batchensemble", "batchensemble_ones", "deep_ensemble"]
    assert list(variants["batchensemble"]["sets"]) == ["clean", "severity_3", "severity_5",
                                                        "ood"]
    ones = variants["batchensemble_ones"]
    assert ones["sets"]["clean"]["disagreement"]["mean"] == 0.0
    assert ones["cka"]["penultimate"]["init"]["mean"] == pytest.approx(1.0)
    assert ones["weights"]["init"]["overall"]["mean"] == pytest.approx(1.0)
    normal = variants["batchensemble"]["weights"]
    assert list(normal["init"]["layers"]) == ["conv1", "conv2", "fc1", "fc2", "head"]
    assert normal["init"]["overall"]["mean"] > variants["deep_ensemble"]["weights"]["init"][
        "overall"]["mean"] + 0.3
    assert variants["single"]["sets"]["clean"]["disagreement"]["by_definition"]
    assert 0 < variants["deep_ensemble"]["sets"]["ood"]["mutual_information"]["mean"]
    claims = [v["verdict"] for v in results["verdicts"]]
    assert len(claims) == 2 and all(c in ("holds", "does not hold", "inconclusive")
                                    for c in claims)
    saved = json.loads((tmp_path / "diversity.json").read_text())
    assert saved["verdicts"][1]["comparisons"][2]["metric"] == "cka_penultimate"
    markdown = (tmp_path / "diversity.md").read_text()
    assert "| BatchEnsemble (init ones) |" in markdown and "## Verdicts" in markdown
    for name in ("diversity_heatmaps.png", "diversity_shift.png", "diversity_layers.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
        assert f"]({name})" in markdown


def test_overall_weight_cosine_leaves_batchnorm_out():
    """BatchNorm scales start at 1 in every member: counted in, independent ResNet members
    would look alike; the overall value is over the conv and linear layers."""
    from ensemblekit.experiments.diversity import weight_record

    model = ek.build_model("resnet20", "deep_ensemble", 10, 3, n=2, seed=0)
    columns = layer_columns(model)
    norms = [name for name, _, is_norm in columns if is_norm]
    member = model.members[0]
    assert norms == [name for name, module in member.named_modules()
                     if isinstance(module, torch.nn.BatchNorm2d)]
    weights = model.member_weights()
    record = weight_record(weights, columns)
    everything = float(ek.weight_similarity(weights)[0, 1])
    assert abs(record["overall"]) < 0.05 < everything
    assert record["layers"][norms[0]] == pytest.approx(1.0)
