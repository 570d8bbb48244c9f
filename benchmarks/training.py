"""One training step of Masksembles, BatchEnsemble and a deep ensemble, relative to the single
model, on ResNet-20 (3x32x32, 10 classes) at M = 4 members.

A step is forward + cross-entropy + backward + SGD (momentum) on a batch of 128 with each
method's own training contract (``model(x)``, ``model.training_targets(y)``). All candidates are
timed in one process, interleaved round by round (medians), so compare the ratios.
Goal: Masksembles <= 1.05x single (it splits the batch among its members: one model's work
plus a mask multiply per drop site).

Every drop site applies the ReLU itself; Masksembles fuses it with the mask
(``Masksembles(..., activation="relu")``): ``relu(x) * mask`` is one autograd node whose backward
is a single threshold pass on its saved output. The "ReLU then mask" row runs the same model
with each fused drop site split into ``nn.ReLU`` and the plain mask multiply, as before that
fusion (a mask-multiply backward and then ReLU's, one more memory pass per drop site); the
script checks that both give the same gradients before timing, and prints how much each keeps
for the backward.

    python benchmarks/training.py [--rounds 15] [--batch 128] [--threads 1] [--device cuda]
"""

from __future__ import annotations

import argparse
import copy
import os

import torch
import torch.nn.functional as F
from torch import nn

from _timing import interleaved_medians
from ensemblekit.layers import Masksembles
from ensemblekit.methods import build_model
from inference import add_machine_arguments, start
from methods import training_step

MEMBERS = 4
#: label -> (method, options)
CANDIDATES = {
    "single": ("single", {}),
    "masksembles s=2": ("masksembles", {"n": MEMBERS, "scale": 2.0}),
    "masksembles s=3": ("masksembles", {"n": MEMBERS, "scale": 3.0}),
    "batchensemble (tiled batch, reference code)": ("batchensemble", {"n": MEMBERS}),
    "batchensemble (split batch, paper text)": (
        "batchensemble",
        {"n": MEMBERS, "tile_batch": False},
    ),
    "deep ensemble": ("deep_ensemble", {"n": MEMBERS}),
}


def relu_then_masks(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose fused drop sites run unfused: ``nn.ReLU``, then the plain
    mask multiply."""
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, Masksembles) and module.activation == "relu":
            module.activation = None
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, nn.Sequential(nn.ReLU(), module))
    return model


def gradient_difference(
    model: nn.Module, other: nn.Module, device: torch.device, batch: int
) -> float:
    """Largest difference between the two models' parameter gradients on one batch."""
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    for candidate in (model, other):
        candidate.train().zero_grad()
        F.cross_entropy(candidate(x), y).backward()
    pairs = zip(model.parameters(), other.parameters(), strict=True)
    return max(float((a.grad - b.grad).abs().max()) for a, b in pairs)


def saved_for_backward_mib(model: nn.Module, device: torch.device, batch: int) -> float:
    """MiB of tensors a training forward keeps for the backward (distinct storages)."""
    sizes = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        sizes[storage.data_ptr()] = storage.nbytes()
        return tensor

    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        F.cross_entropy(model.train()(x), model.training_targets(y))
    return sum(sizes.values()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=128)
    add_machine_arguments(parser)
    args = parser.parse_args()
    device = start(args, "training.py")
    models = {
        name: build_model("resnet20", method, 10, 3, seed=0, **options).to(device)
        for name, (method, options) in CANDIDATES.items()
    }
    unfused = relu_then_masks(models["masksembles s=2"])
    difference = gradient_difference(copy.deepcopy(models["masksembles s=2"]), unfused, device, 16)
    print(f"masksembles s=2, fused vs ReLU then mask: largest gradient difference {difference:g}")
    models["masksembles s=2, ReLU then mask (before)"] = unfused
    steps = {name: training_step(model, device, args.batch) for name, model in models.items()}
    for name in ("single", "masksembles s=2", "masksembles s=2, ReLU then mask (before)"):
        saved = saved_for_backward_mib(models[name], device, args.batch)
        print(f"{name}: {saved:.1f} MiB saved for the backward")
    times = interleaved_medians(steps, rounds=args.rounds, warmup=2)
    single = times["single"]
    print(f"\n## ResNet-20 training step, M={MEMBERS}, batch {args.batch}, fp32, {device.type}")
    print(f"{args.rounds} interleaved rounds\n")
    print("| method | median ms | x single |")
    print("|---|---:|---:|")
    for name, ms in times.items():
        print(f"| {name} | {ms:.1f} | {ms / single:.3f} |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
