"""MIMO: slots, heads and the training contract; every backbone through build, a training step,
predict_members, save/load, compile_members and ONNX; seeded permutations that checkpoints
continue; two torchrun processes train what one does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ensemblekit as ek
from ensemblekit.checkpoint import read_checkpoint
from ensemblekit.layers.mimo import MIMOConv2d, MIMOLinear
from ensemblekit.members import repeat_members, split_members
from ensemblekit.methods import build_model, method_entries, method_entry, predict_members
from ensemblekit.methods.registry import get_method
from ensemblekit.train import CHECKPOINT_NAME, TrainConfig, train_model
from test_models import SMALL  # every backbone at a tiny width

sys.path.insert(0, str(Path(__file__).parent / "_scripts"))
from train_tiny import tiny_problem  # noqa: E402

SCRIPT = Path(__file__).parent / "_scripts" / "train_tiny.py"



def small(name: str, **options):
    channels, _, extra = SMALL[name]
    return build_model(name, "mimo", 5, channels, seed=0, **{"n": 3, **extra, **options})


def small_input(name: str, batch: int, seed: int = 0) -> torch.Tensor:
    channels, size, _ = SMALL[name]
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


def assert_close_to_scale(got: torch.Tensor, want: torch.Tensor, tolerance: float = 1e-5):
    """Equal up to float rounding at the tensor's scale (after one step on a 4-row batch,
    eval-mode BatchNorm can blow logits up to 1e4, where a per-entry rtol checks nothing
    meaningful about the small entries)."""
    assert got.shape == want.shape
    assert ((got - want).abs().max() / want.abs().max()).item() <= tolerance


def linear_mimo(n: int = 3, **options):
    """An MLP without hidden layers: one MIMOLinear that is both stem and head, and no
    BatchNorm, so train and eval forwards compute the same function."""
    return build_model("mlp", "mimo", 4, 6, hidden=(), n=n, seed=0, **options)


def slots_of(model, batch: int) -> torch.Tensor:
    """The draw of one training forward, read back through training_targets(arange): (M, R)."""
    model.train()
    model(torch.zeros(batch, *model.backbone.input_shape))
    return model.training_targets(torch.arange(batch)).view(model.num_members, -1)


@pytest.mark.parametrize("name", list(SMALL))
def test_every_backbone_trains_predicts_reloads_and_compiles(name, tmp_path):
    model = small(name, batch_repetitions=2)
    x, y = small_input(name, 4), torch.arange(4)
    optimizer = torch.optim.SGD(model.parameter_groups(weight_decay=1e-4, lr=0.05), lr=0.05)
    model.train()
    logits = model(x)
    targets = model.training_targets(y)
    assert logits.shape == (3 * 4 * 2, 5) and targets.shape == (24,)
    F.cross_entropy(logits, targets).backward()
    optimizer.step()
    with torch.no_grad():
        members = predict_members(model, x)
        model.eval()  # the stem reads x once, slot weights summed: M stacked copies, rounded
        stacked = split_members(model.backbone(repeat_members(x, 3)), 3)
        model.train()
    assert_close_to_scale(members, stacked)
    assert members.shape == (3, 4, 5) and model.training
    assert not any(getattr(m, "shared_input", False) for m in model.modules())

    path = ek.save(model, tmp_path / "mimo.pt")
    reloaded = ek.load(path)
    for (key, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items(),
                                strict=True):
        assert torch.equal(a, b), key
    with torch.no_grad():
        assert torch.equal(predict_members(reloaded, x), members)
    # the permutation generator travels: the next training forwards draw the same slots
    reloaded.train()
    assert torch.equal(reloaded(x), model(x))
    assert torch.equal(reloaded.training_targets(y), model.training_targets(y))

    fast = ek.compile_members(model, example_input=x[:2])
    with torch.no_grad():
        got = fast(small_input(name, 7, seed=1))
        want = predict_members(model, small_input(name, 7, seed=1))
    assert_close_to_scale(got, want)
    assert not any(isinstance(m, MIMOConv2d | MIMOLinear) for m in fast.networks[0].modules())


def test_compiled_mimo_is_a_single_model_with_m_heads():
    model = small("resnet20")
    single = build_model("resnet20", "single", 5, 3, seed=0, **SMALL["resnet20"][2])
    fast = ek.compile_members(model)
    network = fast.networks[0]
    # the stem reads the plain input; the head writes M*K; BatchNorm after convs is folded
    assert network.stem.in_channels == 3 and network.head.out_features == 15
    count = sum(p.numel() for p in network.parameters())
    bn = sum(p.numel() for m in single.modules() if isinstance(m, torch.nn.BatchNorm2d)
             for p in m.parameters())
    conv_biases = sum(m.out_channels for m in network.modules()
                      if isinstance(m, torch.nn.Conv2d) and m.bias is not None)
    single_count = sum(p.numel() for p in single.parameters())
    head = single.backbone.head
    assert count == single_count - bn + conv_biases + 2 * (head.weight.numel() + 5)
    assert fast.strategy == "mimo" and fast.num_members == 3
    # one network already: every strategy gives this one path, as for the single model
    assert ek.compile_members(model, strategy="loop").strategy == "mimo"


def test_one_slot_is_the_single_model():
    single = build_model("resnet20", "single", 5, 3, seed=4, **SMALL["resnet20"][2])
    mimo = build_model("resnet20", "mimo", 5, 3, seed=4, n=1, **SMALL["resnet20"][2])
    state = mimo.state_dict()
    assert set(state) - set(single.state_dict()) == {"slot_generator_state"}
    for key, value in single.state_dict().items():
        assert torch.equal(state[key], value), key
    x = small_input("resnet20", 6)
    with torch.no_grad():
        torch.testing.assert_close(predict_members(mimo, x), predict_members(single, x),
                                   rtol=0, atol=0)


def test_inference_feeds_the_same_input_to_every_slot():
    """With input_repetition=1 every training row shows all slots slot 0's example, so the
    training forward is the inference forward on the examples the targets name."""
    model = linear_mimo(batch_repetitions=2, input_repetition=1.0)
    x = torch.randn(5, 6)
    model.train()
    logits = model(x).view(3, 10, 4)
    order = model.training_targets(torch.arange(5)).view(3, 10)
    assert all(torch.equal(order[m], order[0]) for m in range(3))
    assert sorted(order[0].tolist()) == sorted(list(range(5)) * 2)
    with torch.no_grad():
        expected = predict_members(model, x[order[0]])
    torch.testing.assert_close(logits.detach(), expected, rtol=1e-6, atol=1e-6)
    # and inference is every slot reading x: sum_j W_mj x + b_m, computed independently
    weight = model.backbone.head.weight.detach().view(3, 4, 3, 6)
    bias = model.backbone.head.bias.detach().view(3, 4)
    manual = torch.einsum("mkjf,bf->mbk", weight, x) + bias[:, None]
    with torch.no_grad():
        torch.testing.assert_close(predict_members(model, x), manual, rtol=1e-5, atol=1e-6)


def test_training_rows_stack_each_slots_example_and_targets_follow():
    model = linear_mimo(batch_repetitions=3)
    x = torch.randn(8, 6)
    model.train()
    logits = model(x).detach().view(3, 24, 4)
    order = model.training_targets(torch.arange(8)).view(3, 24)
    for m in range(3):  # each slot sees every example batch_repetitions times
        assert sorted(order[m].tolist()) == sorted(list(range(8)) * 3)
    assert not torch.equal(order[0], order[1]) and not torch.equal(order[1], order[2])
    # row r of member m: W_m . concat_j x[order[j, r]] + b_m
    stacked = torch.cat([x[order[j]] for j in range(3)], dim=1)  # (24, 3*6)
    weight = model.backbone.head.weight.detach().view(3, 4, 18)
    bias = model.backbone.head.bias.detach().view(3, 4)
    expected = torch.einsum("mkf,rf->mrk", weight, stacked) + bias[:, None]
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-6)
    labels = torch.randint(0, 4, (8,))
    assert torch.equal(model.training_targets(labels), labels[order.reshape(-1)])


def test_input_repetition_shares_about_that_share_of_rows():
    model = linear_mimo(n=2, input_repetition=0.5)
    order = slots_of(model, 4000)
    shared = (order[0] == order[1]).float().mean().item()
    # chance coincidences add 1/4000 of the unshared rows
    assert 0.47 < shared < 0.53
    assert (slots_of(linear_mimo(n=2), 4000)[0] == order[0]).all()  # same permutations


def test_a_members_loss_trains_only_its_own_head_but_reaches_every_slot():
    """Member m's loss has zero gradient on the other members' head rows. The stem is shared:
    it sums every slot into one representation, so member m's loss also reaches the columns
    that read the other slots (MIMO's members are independent by training, not by
    construction: see the next test)."""
    model = small("lenet")
    model.train()
    x, y = small_input("lenet", 6), torch.randint(0, 5, (6,))
    logits = model(x).view(3, 6, 5)
    targets = model.training_targets(y).view(3, 6)
    head, stem = model.backbone.head, model.backbone.conv1
    for m in range(3):
        model.zero_grad()
        F.cross_entropy(logits[m], targets[m]).backward(retain_graph=True)
        rows = head.weight.grad.view(3, 5, -1)
        biases = head.bias.grad.view(3, 5)
        for other in range(3):
            own = other == m
            assert (rows[other].abs().sum() > 0) == own
            assert (biases[other].abs().sum() > 0) == own
        columns = stem.weight.grad.unflatten(1, (3, 1))
        assert all(columns[:, j].abs().sum() > 0 for j in range(3))


def test_training_teaches_head_m_to_read_slot_m():
    """Before training, every member's logits move as much when any slot's input changes;
    after training through the contract, member m follows slot m and all but ignores the
    others: the labels reached the right heads."""
    digits = ek.load_dataset("digits", "train")
    model = build_model("mlp", "mimo", 10, 1, input_size=8, hidden=(64,), n=3, seed=0)
    x = torch.stack([digits[i][0] for i in range(256)])

    def sensitivity() -> torch.Tensor:
        """S[m, j]: mean |change of member m's logits| when slot j reads other examples."""
        model.eval()
        tiled = repeat_members(x, 3)
        other = x[torch.randperm(256, generator=torch.Generator().manual_seed(0))]
        with torch.no_grad():
            base = model.backbone(tiled).view(3, 256, 10)
            changes = torch.zeros(3, 3)
            for j in range(3):
                swapped = tiled.clone().view(3, 256, *x.shape[1:])
                swapped[j] = other
                out = model.backbone(swapped.flatten(0, 1)).view(3, 256, 10)
                changes[:, j] = (out - base).abs().mean(dim=(1, 2))
        return changes

    def diagonal_ratio(changes):
        off = changes[~torch.eye(3, dtype=torch.bool)]
        return (changes.diagonal().min() / off.max()).item()

    assert diagonal_ratio(sensitivity()) < 1.5
    train_model(model, digits, TrainConfig(epochs=10, batch_size=64, lr=0.05, optimizer="adam",
                                           progress=False, threads=1))
    assert diagonal_ratio(sensitivity()) > 3.0


def test_member_weights_differ_only_at_the_stem_slices_and_head_blocks():
    model = small("resnet20")
    weights = model.member_weights()
    single = sum(p.numel() for p in build_model("resnet20", "single", 5, 3, seed=0,
                                                **SMALL["resnet20"][2]).parameters())
    assert weights.shape == (3, single)
    differs = (weights != weights[0]).any(dim=0)
    stem, head = model.backbone.stem, model.backbone.head
    slot_size = stem.weight.numel() // 3
    head_size = (head.weight.numel() + head.bias.numel()) // 3
    assert int(differs.sum()) == slot_size + head_size
    assert differs[:slot_size].all() and differs[-head_size:].all()
    torch.testing.assert_close(weights[1, :slot_size],
                               stem.weight.detach()[:, 3:6].reshape(-1))
    shared = weights[:, ~differs]
    cosine = F.cosine_similarity(shared[0], shared[1], dim=0)
    assert cosine.item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("hidden", [(), (8,)])
def test_member_weights_of_linear_ends(hidden):
    """A linear stem gives member m the columns reading slot m; a head, the rows writing
    member m; one layer that is both, the block reading slot m into member m."""
    model = build_model("mlp", "mimo", 4, 6, hidden=hidden, n=3, seed=0)
    weights = model.member_weights()
    stem = model.backbone.hidden[0][0] if hidden else model.backbone.head
    head = model.backbone.head
    for m in range(3):
        columns = stem.weight.detach()[:, 6 * m:6 * (m + 1)]
        if not hidden:  # one layer: rows of member m, columns of slot m, then its bias
            block = columns[4 * m:4 * (m + 1)]
            expected = torch.cat([block.reshape(-1), head.bias.detach()[4 * m:4 * (m + 1)]])
        else:
            rows = head.weight.detach()[4 * m:4 * (m + 1)]
            expected = torch.cat([columns.reshape(-1), stem.bias.detach(), rows.reshape(-1),
                                  head.bias.detach()[4 * m:4 * (m + 1)]])
        assert torch.equal(weights[m], expected)


def test_mimo_layers_refuse_what_they_cannot_read():
    with pytest.raises(ValueError, match="stem=True, head=True or both"):
        MIMOLinear(4, 2, 3)
    stem = MIMOConv2d(2, 4, 3, 3)
    with pytest.raises(ValueError, match="member-major batch of M.R rows.*got shape .4, 2, 5, 5."):
        stem(torch.randn(4, 2, 5, 5))
    assert stem(torch.randn(6, 2, 5, 5)).shape == (2, 4, 3, 3)
    assert stem.slot_weights().shape == (3, 4, 2, 3, 3)


def test_permutations_are_seeded_advance_and_leave_the_global_rng_alone():
    first, again = slots_of(linear_mimo(), 16), slots_of(linear_mimo(), 16)
    assert torch.equal(first, again)
    other_seed = build_model("mlp", "mimo", 4, 6, hidden=(), n=3, seed=1)
    assert not torch.equal(slots_of(other_seed, 16), first)
    model = linear_mimo()
    state = torch.get_rng_state()
    draws = [slots_of(model, 16) for _ in range(3)]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(draws[0], first) and not torch.equal(draws[1], draws[0])
    # eval forwards draw nothing
    before = model.slot_generator_state.clone()
    model.eval()
    model(torch.randn(4, 6))
    assert torch.equal(model.slot_generator_state, before)


def test_training_targets_belong_to_the_forward_before_them():
    model = linear_mimo()
    with pytest.raises(RuntimeError, match=r"call model\(x\) first"):
        model.training_targets(torch.arange(4))
    model.train()
    model(torch.randn(4, 6))
    with pytest.raises(ValueError, match="y with 5 rows, but the last model.x. read a batch "
                                         "of 4"):
        model.training_targets(torch.arange(5))
    with pytest.raises(ValueError, match="0-dimensional"):
        model.training_targets(torch.tensor(1))
    model.eval()
    model(torch.randn(2, 6))
    assert torch.equal(model.training_targets(torch.tensor([7, 8])),
                       torch.tensor([7, 8, 7, 8, 7, 8]))


def test_width_factor_widens_every_hidden_layer_of_the_shared_body():
    # width_factor multiplies whatever width the recipe gives: LeNet 1.0 wide x 2 is LeNet 2.0
    # wide, layer for layer; the stem still reads n slots of the input, the head writes n*K
    wide = build_model("lenet", "mimo", 10, 1, seed=0, input_size=8, width=1.0, width_factor=2.0)
    same = build_model("lenet", "mimo", 10, 1, seed=0, input_size=8, width=2.0)
    plain = build_model("lenet", "mimo", 10, 1, seed=0, input_size=8, width=1.0)
    shapes = [p.shape for p in wide.parameters()]
    assert shapes == [p.shape for p in same.parameters()]
    assert shapes != [p.shape for p in plain.parameters()]
    assert wide.backbone.conv1.in_channels == 4 and wide.backbone.head.out_features == 40
    assert wide.config["width_factor"] == 2.0
    x = torch.randn(3, 1, 8, 8)
    assert predict_members(wide.eval(), x).shape == (4, 3, 10)


def test_bad_options_and_backbones_are_refused_by_name():
    with pytest.raises(ValueError, match=r"input_repetition must satisfy 0.0 <= "
                                         r"input_repetition <= 1.0, got 1.5"):
        linear_mimo(input_repetition=1.5)
    with pytest.raises(ValueError, match="batch_repetitions must be an integer"):
        linear_mimo(batch_repetitions=0)
    with pytest.raises(ValueError, match="n must be an integer"):
        linear_mimo(n=0)
    with pytest.raises(ValueError, match="width_factor must satisfy 0.0 < width_factor"):
        linear_mimo(width_factor=0.0)
    with pytest.raises(ValueError, match="shape"):
        linear_mimo().train()(torch.randn(4, 5))

    def unmarked(layers, seed):  # a backbone whose factory calls mark no stem and no head
        return torch.nn.Sequential(layers.linear(4, 8), torch.nn.ReLU(), layers.linear(8, 2))

    with pytest.raises(ValueError, match="marks 0 stem.s. and 0 head.s."):
        get_method("mimo")(unmarked, seed=0)


def test_registry_entry():
    entry = method_entry("mimo")
    assert entry.label == "MIMO" and entry.global_keys == {"members": "n"}
    others = [e for e in method_entries() if e.name != "mimo"]
    assert entry.color not in {e.color for e in others}
    assert entry.marker not in {e.marker for e in others}
    assert "share every weight but the first and last layers" in entry.construction({})
    grid = dict(entry.tune_grid)
    assert set(grid) == {"input_repetition", "batch_repetitions", "width_factor",
                         "epochs_factor"}
    for option, values in grid.items():  # every grid value builds
        if option == "epochs_factor":  # the tuner's, not a build option
            continue
        for value in values:
            assert linear_mimo(**{option: value}).config[option] == value
    assert entry.compiled_inference and not entry.stochastic and entry.role == ""


class Crash(Exception):
    """A process dying mid-epoch, as far as the checkpoint on disk can tell."""


def test_checkpoints_carry_the_permutation_generator_through_resume(tmp_path):
    """A run that crashes mid-epoch 2 and resumes from its epoch-1 checkpoint ends
    bit-identical to an uninterrupted one; resumed with the generator state of a fresh model
    instead, it trains other permutations and ends elsewhere."""
    def model():
        return build_model("mlp", "mimo", 4, 16, hidden=(32,), n=3, batch_repetitions=2,
                           seed=0)

    config = TrainConfig(epochs=3, batch_size=32, lr=0.1, schedule="constant", progress=False,
                         threads=1)

    def crash_at_step_12(out):
        crashing, calls = model(), 0

        def crash(module, inputs):
            nonlocal calls
            calls += 1
            if calls == 12:  # 8 steps per epoch: in the middle of epoch 2
                raise Crash

        crashing.register_forward_pre_hook(crash)
        with pytest.raises(Crash):
            train_model(crashing, tiny_problem(), config, checkpoint_dir=out)
        assert read_checkpoint(out / CHECKPOINT_NAME, kind="training")["epoch"] == 1

    reference = model()
    train_model(reference, tiny_problem(), config)
    crash_at_step_12(tmp_path / "a")
    resumed = model()
    train_model(resumed, tiny_problem(), config, checkpoint_dir=tmp_path / "a", resume=True)
    for (key, a), (_, b) in zip(reference.state_dict().items(), resumed.state_dict().items(),
                                strict=True):
        assert torch.equal(a, b), key

    # the control: the same checkpoint with the generator state of a fresh model
    crash_at_step_12(tmp_path / "b")
    path = tmp_path / "b" / CHECKPOINT_NAME
    payload = read_checkpoint(path, kind="training")
    payload["state_dict"]["slot_generator_state"] = model().slot_generator_state
    torch.save(payload, path)
    rewound = model()
    train_model(rewound, tiny_problem(), config, checkpoint_dir=tmp_path / "b", resume=True)
    assert not torch.equal(rewound.backbone.head.weight, reference.backbone.head.weight)


def test_onnx_export_of_a_batchnorm_backbone_at_two_batch_sizes(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = small("resnet20")
    model.train()
    for _ in range(2):  # move the BatchNorm statistics away from their initial values
        x = small_input("resnet20", 8, seed=3)
        F.cross_entropy(model(x), model.training_targets(torch.arange(8) % 5)).backward()
    images = small_input("resnet20", 9, seed=2)
    path = ek.export(model, tmp_path / "mimo.onnx", images[:2], outputs=("member_logits",))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size in (1, 9):
        (logits,) = session.run(None, {"input": images[:size].numpy()})
        with torch.no_grad():
            expected = predict_members(model, images[:size]).numpy()
        assert logits.shape == (3, size, 5)
        np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)


@pytest.mark.slow  # two torchrun processes and two reference runs: 25-70 s on 2 busy cores
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_two_gloo_processes_train_what_one_does(tmp_path):
    """Each process holds half of every 32-row batch; MIMO gathers the batch, draws the slots
    over all 32 rows and computes its half of the rows: the weights agree with one process's
    to float summation order. A 16-row batch in one process (each rank's share, permuted
    alone) ends far away, so the tolerance is a real check."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(command, out, *extra):
        out.mkdir()
        done = subprocess.run([*command, str(SCRIPT), "--out", str(out), "--method", "mimo",
                               "--epochs", "3", *extra], capture_output=True, text=True,
                              timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        return torch.load(out / "weights.pt")

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2"]
    one = run([sys.executable], tmp_path / "one", "--batch-size", "32")
    two = run(torchrun, tmp_path / "two", "--batch-size", "32")
    halved = run([sys.executable], tmp_path / "halved", "--batch-size", "16")
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-5)
    assert torch.equal(two["slot_generator_state"], one["slot_generator_state"])
    gap = max((halved[k] - one[k]).abs().max().item() for k in one if one[k].is_floating_point())
    assert gap > 1e-3
