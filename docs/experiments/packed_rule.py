"""Which Packed-Ensembles rule for widths that do not divide measures better on digits:
round alpha*C up to a multiple of n*gamma and keep gamma everywhere, TorchUncertainty's (alpha*C
rounded up to a multiple of n only, and gamma lowered layer by layer until the groups divide and
hold >= 64 channels; the library's, chosen by this measurement), or lowering gamma only where
the channels do not divide (no floor); with gamma 1 beside them as the reference.
Validation split only (never the test set), n=4, gamma=2, 3 seeds, the digits recipe (30
epochs, AdamW). TorchUncertainty lowers gamma in its convolutions only; here the same rule
applies to the hidden linear layers too (its linear layers refuse widths that do not divide).

    PYTHONPATH=src .venv/bin/python docs/experiments/packed_rule.py [--rules ...]
    # ~12 min on the shared 2-core machine; --rules runs a subset (seeded: the same numbers)

Where the rules differ: LeNet x3 (6-16-120-84 x 3 = 18-48-360-252): alpha=2 gives conv1 36
channels, not a multiple of 8 (rounded up: 40; lowered: conv2 reads 36 with gamma 1); alpha=3
gives conv1 54 and fc2 756 (56 and 760). Every group of these small nets holds fewer than 64
channels, so TorchUncertainty's floor turns gamma off everywhere but LeNet's fc2 (720 / 8 = 90
inputs per group at alpha 2). MLP 64-32-16 at alpha=2: every width divides by 8, so rounding
and lowering agree and only the floor differs.

Writes runs/packed-rule.json and prints the mean over seeds per configuration and rule.
"""
import argparse
import json
import math
from pathlib import Path

import torch

import ensemblekit.methods.packed_ensemble as pe
from ensemblekit.experiments import pipeline
from ensemblekit.experiments.settings import BenchmarkSettings
from ensemblekit.layers.packed import PackedConv2d, PackedLinear, packed_width

SEEDS = 3


def lowered_gamma(size_in: int, size_out: int, n: int, gamma: int, floor: int) -> int:
    """TorchUncertainty's loop: lower gamma while the groups do not divide or hold fewer than
    ``floor`` input channels (the output must divide too, or the layer cannot be built)."""
    while gamma > 1 and (size_in % (n * gamma) or size_out % (n * gamma)
                         or size_in // (n * gamma) < floor):
        gamma -= 1
    return gamma


def packed_layers(width, gamma_of):
    """Layer-factory methods: hidden widths ``width(self, C)``, each layer's groups per member
    ``gamma_of(self, size_in, size_out)``; first layer and head as in the library."""

    def site_channels(self, channels, *, classic=False):
        return width(self, channels)

    def conv(self, in_channels, out_channels, kernel_size, *, stride=1, padding=0, bias=False,
             stem=False):
        gamma = 1 if stem else gamma_of(self, in_channels, out_channels)
        return PackedConv2d(in_channels, out_channels, kernel_size, self.n, gamma=gamma,
                            first=stem, stride=stride, padding=padding, bias=bias)

    def linear(self, in_features, out_features, *, bias=True, stem=False, head=False):
        if head:
            return PackedLinear(in_features, self.n * out_features, self.n, first=stem,
                                bias=bias)
        gamma = 1 if stem else gamma_of(self, in_features, out_features)
        return PackedLinear(in_features, out_features, self.n, gamma=gamma, first=stem,
                            bias=bias)

    return site_channels, conv, linear


def lowering_rule(floor: int):
    """Widths round(alpha*C) up to a multiple of n; gamma lowered per layer (floor: channels)."""
    return packed_layers(lambda self, c: packed_width(c, self.alpha, self.n),
                         lambda self, i, o: lowered_gamma(i, o, self.n, self.gamma, floor))


def round_up_rule():
    """Widths alpha*C rounded up to a multiple of n*gamma; gamma kept on every layer."""
    return packed_layers(
        lambda self, c: self.n * self.gamma * math.ceil(
            packed_width(c, self.alpha, 1) / (self.n * self.gamma)),
        lambda self, i, o: self.gamma)


#: rule -> (the layer factory's site_channels, conv, linear; gamma asked for)
RULES = {"round up": (round_up_rule(), 2), "TU (>=64/group)": (lowering_rule(64), 2),
         "lower where needed": (lowering_rule(0), 2),
         "reference: gamma 1": (lowering_rule(64), 1)}  # no sub-groups at all
CONFIGS = [  # (backbone options, alpha, rules that differ there)
    ({"backbone": "lenet", "width": 3.0}, 2.0, list(RULES)),
    ({"backbone": "lenet", "width": 3.0}, 3.0, list(RULES)),
    ({"backbone": "mlp", "width": 1.0}, 2.0, ["round up", "TU (>=64/group)",
                                              "reference: gamma 1"]),
]


def layer_groups(model) -> str:
    """Each packed layer's groups per member, e.g. '1 2 2 2 1' (first layer and head: 1)."""
    return " ".join(str(1 if m.first else m.gamma) for m in model.modules()
                    if isinstance(m, PackedConv2d | PackedLinear))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rules", nargs="+", choices=list(RULES), default=list(RULES))
    chosen = parser.parse_args().rules
    torch.set_num_threads(1)
    Path("runs").mkdir(exist_ok=True)
    base = BenchmarkSettings.from_sources(overrides={"out": "runs/packed-rule"})
    data = pipeline.load_experiment_data(base, log=lambda message: None)
    out = {}
    for options, alpha, rules in CONFIGS:
        for rule in [rule for rule in rules if rule in chosen]:
            factory, gamma = RULES[rule]
            pe.PackedLayers.site_channels, pe.PackedLayers.conv, pe.PackedLayers.linear = factory
            rows = []
            for seed in range(SEEDS):
                settings = BenchmarkSettings.from_sources(
                    overrides={"out": "runs/packed-rule", **options})
                model = pipeline.build(settings, "packed_ensemble", seed=seed, n=4,
                                       alpha=alpha, gamma=gamma)
                fit = pipeline.train(settings, model, data, seed=seed)
                validation = pipeline.evaluate_validation(model, data, seed=seed)
                rows.append({"params": pipeline.count_parameters(model),
                             "train_acc": fit["accuracy"], **validation})
            key = f"{options['backbone']} x{options['width']:g} alpha={alpha:g} {rule}"
            out[key] = {"groups": layer_groups(model), "runs": rows}
            mean = {k: sum(r[k] for r in rows) / SEEDS for k in rows[0]}
            print(key, f"[groups/member {layer_groups(model)}]",
                  {k: round(v, 4) for k, v in mean.items()}, flush=True)
    Path("runs/packed-rule.json").write_text(json.dumps(out, indent=1))
    for key, record in out.items():  # spread over seeds
        nll = [run["nll"] for run in record["runs"]]
        print(f"{key}: validation NLL per seed {[round(v, 4) for v in nll]}")


if __name__ == "__main__":
    main()
