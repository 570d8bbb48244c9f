"""experiments.cost: FLOPs per sample, interleaved latency, cost ratios, budgets."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from ensemblekit.experiments.cost import (
    flops_per_sample,
    interleaved_latency,
    measure_costs,
    parse_budget,
    within_budget,
)
from ensemblekit.methods import build_model, predict_members

LENET = {"width": 1.0, "input_size": [8, 8], "seed": 0}


@pytest.mark.parametrize(("inputs", "outputs", "batch"), [(10, 7, 5), (64, 3, 1), (3, 33, 17)])
def test_a_linear_layer_costs_two_flops_per_multiply_add(inputs, outputs, batch):
    layer = nn.Linear(inputs, outputs)
    assert flops_per_sample(layer, torch.randn(batch, inputs)) == 2 * inputs * outputs


def test_a_convolution_costs_two_flops_per_multiply_add():
    conv = nn.Conv2d(3, 5, kernel_size=3, padding=1)
    # every output position: in_channels * k * k multiply-adds per output channel
    expected = 2 * 3 * 3 * 3 * 5 * 8 * 8
    assert flops_per_sample(conv, torch.randn(4, 3, 8, 8)) == expected


def test_tiled_members_cost_m_single_models_and_compiled_masksembles_less():
    x = torch.randn(6, 1, 8, 8)
    single = build_model("lenet", "single", 10, 1, **LENET)
    masksembles = build_model("lenet", "masksembles", 10, 1, n=4, scale=2.0, **LENET)
    one = flops_per_sample(lambda v: predict_members(single, v), x)
    assert flops_per_sample(lambda v: predict_members(masksembles, v), x) == 4 * one
    costs = measure_costs({"single": single, "masksembles": masksembles}, x,
                          reference="single", min_seconds=0.0, rounds=1)
    entry = costs["models"]["masksembles"]
    assert entry["inference"] == "compile_members"
    assert entry["flops_ratio"] == 4.0
    assert one < entry["inference_flops_per_sample"] < 4 * one


def test_flops_need_a_batch():
    with pytest.raises(ValueError, match="B >= 1"):
        flops_per_sample(nn.Linear(2, 2), torch.randn(0, 2))


def test_latency_is_timed_long_enough_and_ranks_slower_work_higher():
    def sleeper(seconds):
        return lambda: time.sleep(seconds)

    result = interleaved_latency({"short": sleeper(0.002), "long": sleeper(0.006)},
                                 min_seconds=0.06, rounds=3, warmup=1)
    for entry in result.values():
        assert entry["timed_seconds"] >= 0.06 * 0.9
        assert entry["calls"] >= 3
    # sleep() never returns early, and both see the same machine in the same rounds
    assert result["short"]["seconds"] >= 0.002
    assert result["long"]["seconds"] >= 0.006
    assert result["long"]["seconds"] > result["short"]["seconds"]


def test_measured_costs_are_ratios_to_the_single_model_of_the_same_path():
    x = torch.randn(8, 1, 8, 8)
    models = {
        "single": build_model("lenet", "single", 10, 1, **LENET),
        "ensemble": build_model("lenet", "deep_ensemble", 10, 1, n=3, **LENET),
        "masksembles": build_model("lenet", "masksembles", 10, 1, n=2, scale=2.0, **LENET),
    }
    costs = measure_costs(models, x, reference="single", min_seconds=0.01, rounds=2)
    entries = costs["models"]
    single_params = sum(p.numel() for p in models["single"].parameters())
    assert entries["single"]["params"] == single_params
    assert entries["ensemble"]["params"] == 3 * single_params
    assert entries["ensemble"]["params_ratio"] == 3.0
    assert entries["single"]["latency_ratio"] == 1.0
    times = costs["protocol"]["single_ms_per_batch"]
    assert set(times) == {"predict_members", "compile_members"}
    for entry in entries.values():
        reference = times[entry["inference"]]
        assert entry["latency_ratio"] == pytest.approx(entry["latency_ms_per_batch"] / reference)
        assert entry["latency_ratio_to_single"] == pytest.approx(
            entry["latency_ms_per_batch"] / times["predict_members"])
        assert entry["latency_ms_per_sample"] == pytest.approx(entry["latency_ms_per_batch"] / 8)
    assert costs["protocol"]["batch"] == 8


def test_measure_costs_needs_its_reference():
    with pytest.raises(ValueError, match="reference 'single' is not one of the models"):
        measure_costs({"other": nn.Linear(2, 2)}, torch.randn(4, 2), reference="single")


@pytest.mark.parametrize(("text", "expected"), [
    ("latency<=1.3x", {"latency": 1.3}),
    ("latency<=1.3x,params<=1.1x", {"latency": 1.3, "params": 1.1}),
    (" flops <= 2 , params<=1", {"flops": 2.0, "params": 1.0}),
])
def test_budgets_parse(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("latency<1.3x", "not KIND<=RATIO"),
    ("speed<=2x", "not KIND<=RATIO"),
    ("latency<=fast", "not KIND<=RATIO"),
    ("latency<=0x", "RATIO > 0"),
    ("latency<=-1", "RATIO > 0"),
    ("latency<=inf", "RATIO > 0"),
    ("latency<=1.3x,", "not KIND<=RATIO"),
    ("latency<=1.3,latency<=2", "limits latency twice"),
    ("", "budget must be a string"),
])
def test_malformed_budgets_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_budget(text)


def test_within_budget_checks_every_limit():
    cost = {"latency_ratio": 1.25, "params_ratio": 1.0, "inference_flops_ratio": 3.0}
    assert within_budget(cost, {})
    assert within_budget(cost, {"latency": 1.25})
    assert within_budget(cost, {"latency": 1.3, "params": 1.0})
    assert not within_budget(cost, {"latency": 1.2})
    assert not within_budget(cost, {"latency": 1.3, "flops": 2.0})


def test_masksembles_can_be_timed_tiled_beside_compiled():
    x = torch.randn(8, 1, 8, 8)
    single = build_model("lenet", "single", 10, 1, **LENET)
    masksembles = build_model("lenet", "masksembles", 10, 1, n=2, scale=2.0, **LENET)
    costs = measure_costs({"single": single, "compiled": masksembles, "tiled": masksembles},
                          x, reference="single", min_seconds=0.0, rounds=1, tiled=["tiled"])
    entries = costs["models"]
    assert (entries["compiled"]["inference"], entries["tiled"]["inference"]) == (
        "compile_members", "predict_members")
    assert entries["tiled"]["inference_flops_ratio"] == 2.0
    assert entries["tiled"]["latency_ratio"] == entries["tiled"]["latency_ratio_to_single"]
    with pytest.raises(ValueError, match="tiled names \\['other'\\]"):
        measure_costs({"single": single}, x, reference="single", tiled=["other"])
