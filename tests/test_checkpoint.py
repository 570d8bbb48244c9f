"""Checkpoints: every method reloads bit-identically; bad files fail with clear messages."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest
import torch

from ensemblekit import convert as ek_convert
from ensemblekit.checkpoint import FORMAT, load, load_into, read_checkpoint, save
from ensemblekit.methods import available_methods, build_model, predict_members
from ensemblekit.train import CHECKPOINT_NAME, TrainConfig, train_model

METHOD_OPTIONS = {
    "single": {},
    "mc_dropout": {"p": 0.3, "n": 5},
    "masksembles": {"n": 4, "scale": 2.0},
    "batchensemble": {"n": 4},
    "packed_ensemble": {"n": 4, "alpha": 2.0, "gamma": 2},
    "mimo": {"n": 3, "input_repetition": 0.25, "batch_repetitions": 2},
    "deep_ensemble": {"n": 3},
}


def digits_like(num_items: int = 64):
    generator = torch.Generator().manual_seed(7)
    return torch.rand(num_items, 1, 8, 8, generator=generator), torch.randint(
        0, 10, (num_items,), generator=generator
    )


def lenet(method: str, **options):
    return build_model("lenet", method, num_classes=10, in_channels=1, input_size=8, seed=3,
                       **{**METHOD_OPTIONS[method], **options})


def scramble_rng() -> None:
    torch.manual_seed(random.SystemRandom().randrange(2**31))
    torch.rand(17)
    np.random.seed(99)


def predictions(model, x) -> torch.Tensor:
    # MC-Dropout predictions are random draws: compare them under one fixed seed.
    torch.manual_seed(1234)
    with torch.no_grad():
        return predict_members(model, x)


def test_every_registered_method_is_covered():
    assert set(available_methods()) == set(METHOD_OPTIONS)


@pytest.mark.parametrize("method", sorted(METHOD_OPTIONS))
def test_round_trip_is_bit_identical_whatever_the_rng_state(method, tmp_path):
    model = lenet(method)
    # A few training steps move every parameter kind (fast weights, masks stay, BN stats move).
    train_model(model, digits_like(), TrainConfig(epochs=1, batch_size=16, lr=0.05,
                                                  progress=False,
                                                  threads=1))
    x = digits_like(20)[0]
    expected = predictions(model, x)
    path = save(model, tmp_path / "model.pt", metadata={"dataset": "digits"})

    scramble_rng()
    state_before = torch.get_rng_state()
    reloaded = load(path)
    assert torch.equal(torch.get_rng_state(), state_before)  # loading draws nothing
    assert reloaded.config == model.config
    assert not reloaded.training
    for (name, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name
    scramble_rng()
    assert torch.equal(predictions(reloaded, x), expected)
    assert read_checkpoint(path)["metadata"] == {"dataset": "digits"}


def test_masksembles_masks_travel_with_the_file(tmp_path):
    model = lenet("masksembles")
    mask_names = [name for name, _ in model.named_buffers() if name.endswith("masks")]
    assert mask_names
    for name in mask_names:  # replace the masks so a rebuilt-from-seed model would differ
        buffer = model.get_buffer(name)
        buffer.copy_(buffer.roll(1, dims=0))
    reloaded = load(save(model, tmp_path / "m.pt"))
    for name in mask_names:
        assert torch.equal(reloaded.get_buffer(name), model.get_buffer(name))


def test_training_checkpoints_load_as_models(tmp_path):
    model = lenet("masksembles")
    config = TrainConfig(epochs=1, batch_size=16, progress=False, threads=1)
    train_model(model, digits_like(), config, checkpoint_dir=tmp_path)
    reloaded = load(tmp_path / CHECKPOINT_NAME)
    x = digits_like(8)[0]
    assert torch.equal(predictions(reloaded, x), predictions(model, x))


def test_mismatched_architecture_is_explained(tmp_path):
    path = save(lenet("masksembles", n=4), tmp_path / "n4.pt")
    with pytest.raises(ValueError, match=r"n4\.pt does not fit") as error:
        load_into(lenet("masksembles", n=2), path)
    message = str(error.value)
    assert "shape mismatches" in message and "file (4," in message and "model (2," in message
    assert "n=4 in the file vs 2" in message
    with pytest.raises(ValueError, match="keys the file lacks") as error:
        load_into(lenet("batchensemble"), path)
    assert "keys the model lacks" in str(error.value)


def test_save_needs_a_config():
    with pytest.raises(ValueError, match="has no .config"):
        save(torch.nn.Linear(2, 2), "never-written.pt")


@pytest.fixture
def saved(tmp_path):
    return save(lenet("single"), tmp_path / "good.pt")


def test_truncated_file_is_a_value_error_naming_the_file(saved, tmp_path):
    data = saved.read_bytes()
    for size in (0, 10, len(data) // 2, len(data) - 1):
        broken = tmp_path / f"cut{size}.pt"
        broken.write_bytes(data[:size])
        with pytest.raises(ValueError, match=f"cut{size}.pt") as error:
            load(broken)
        assert "truncated" in str(error.value)


def test_foreign_files_are_value_errors(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")
    with pytest.raises(ValueError, match=r"notes\.pt is not a torch checkpoint"):
        load(text)

    other = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(2), "step": 3}, other)
    with pytest.raises(ValueError, match=r"other\.pt is not an ensemblekit checkpoint.*'step'"):
        load(other)

    bare = tmp_path / "bare.pt"
    torch.save(lenet("single").state_dict(), bare)
    with pytest.raises(ValueError, match="bare state_dict"):
        load(bare)

    pickled = tmp_path / "pickled.pt"
    # An arbitrary Python object: torch.load(weights_only=True) refuses to unpickle it.
    torch.save({"format": FORMAT, "thing": Fraction(1, 3)}, pickled)
    with pytest.raises(ValueError, match=r"pickled\.pt cannot be read"):
        load(pickled)

    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load(tmp_path / "missing.pt")


def test_newer_or_incomplete_format_is_explained(saved, tmp_path):
    payload = torch.load(saved)
    newer = tmp_path / "newer.pt"
    torch.save({**payload, "format_version": 99}, newer)
    with pytest.raises(ValueError, match="format version 99.*upgrade"):
        load(newer)
    incomplete = tmp_path / "incomplete.pt"
    torch.save({key: v for key, v in payload.items() if key != "state_dict"}, incomplete)
    with pytest.raises(ValueError, match="incomplete.*missing 'state_dict'"):
        load(incomplete)
    with pytest.raises(ValueError, match="a 'training' checkpoint is needed"):
        read_checkpoint(saved, kind="training")


class _CreatesAFile:
    """A pickle that, unpickled, would create a file: what a malicious checkpoint does."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_malicious_pickle_is_refused_without_running_it(saved, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    payload = torch.load(saved, weights_only=True)
    torch.save({**payload, "metadata": _CreatesAFile(marker)}, evil)
    with pytest.raises(ValueError, match=r"evil\.pt cannot be read"):
        load(evil)
    with pytest.raises(ValueError, match=r"evil\.pt cannot be read"):
        load(evil, into=torch.nn.Linear(2, 2))
    assert not marker.exists()
    # the file is really malicious: an unrestricted unpickler runs it
    handle = torch.load(evil, weights_only=False)["metadata"]
    handle.close()
    assert marker.exists()


def small_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Dropout2d(0.2), torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 16),
        torch.nn.ReLU(), torch.nn.Linear(16, 10),
    )


CONVERTERS = {
    "masksembles": lambda net, x: ek_convert.to_masksembles(
        net, 4, 2.0, example_input=x[:1], seed=3, sites=["5"]),
    "mc_dropout": lambda net, x: ek_convert.to_mc_dropout(net, num_samples=4, seed=9,
                                                          sites=["6"], p=0.3),
    "batchensemble": lambda net, x: ek_convert.to_batchensemble(net, 2, tile_batch=False),
}


@pytest.mark.parametrize("converter", sorted(CONVERTERS))
def test_converted_models_reload_into_a_fresh_network_bit_identically(converter, tmp_path):
    images, labels = digits_like()
    model = CONVERTERS[converter](small_net(), images)
    train_model(model, (images, labels), TrainConfig(epochs=1, batch_size=16, lr=0.05,
                                                     progress=False, threads=1))
    path = save(model, tmp_path / "converted.pt")
    assert read_checkpoint(path)["recipe"] == model.recipe
    scramble_rng()
    fresh = small_net()
    state = torch.get_rng_state()
    again = load(path, into=fresh)
    assert torch.equal(torch.get_rng_state(), state)
    assert type(again) is type(model) and again.backbone is fresh and not again.training
    with torch.no_grad():
        assert torch.equal(predict_members(again, images), predict_members(model, images))
    with pytest.raises(ValueError, match="pass a fresh instance of that network"):
        load(path)
    with pytest.raises(ValueError, match="cannot rebuild the to_.* model on the Sequential"):
        load(path, into=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)))
    # a training checkpoint of a converted model reloads the same way
    train_model(model, (images, labels), TrainConfig(epochs=1, batch_size=16, progress=False,
                                                     threads=1), checkpoint_dir=tmp_path)
    resumed = load(tmp_path / CHECKPOINT_NAME, into=small_net())
    with torch.no_grad():
        assert torch.equal(predict_members(resumed, images), predict_members(model, images))


def test_into_is_for_converted_models_and_bare_state_dicts_load_into(saved, tmp_path):
    with pytest.raises(ValueError, match="built by ensemblekit.build_model.*drop into="):
        load(saved, into=torch.nn.Linear(2, 2))
    model = lenet("single")
    bare = tmp_path / "bare.pt"
    torch.save(model.state_dict(), bare)
    other = build_model("lenet", "single", num_classes=10, in_channels=1, input_size=8, seed=4)
    assert not torch.equal(other.state_dict()["backbone.head.weight"],
                           model.state_dict()["backbone.head.weight"])
    load_into(other, bare)
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value)


def test_a_tampered_recipe_is_a_value_error_naming_the_file(tmp_path):
    images, _ = digits_like(4)
    path = save(CONVERTERS["masksembles"](small_net(), images), tmp_path / "converted.pt")
    payload = torch.load(path, weights_only=True)
    for broken in ({**payload["recipe"], "converter": "to_magic"},
                   {**payload["recipe"], "sites": [{"path": "5", "action": "insert",
                                                    "layer": "Masksembles", "channels": "wide",
                                                    "dim": 1}]},
                   {key: value for key, value in payload["recipe"].items() if key != "scale"}):
        tampered = tmp_path / "tampered.pt"
        torch.save({**payload, "recipe": broken}, tampered)
        with pytest.raises(ValueError, match=r"tampered\.pt: cannot rebuild"):
            load(tampered, into=small_net())
