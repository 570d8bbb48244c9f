"""One training step of Masksembles, BatchEnsemble and a deep ensemble, relative to the single
model, on ResNet-20 (3x32x32, 10 classes) at M = 4 members.

A step is forward + cross-entropy + backward + SGD (momentum) on a batch of 128 with each
method's own training contract (``model(x)``, ``model.training_targets(y)``). All candidates are
timed in one process, interleaved round by round (medians), so compare the ratios.
Goal: Masksembles <= 1.05x single (it splits the batch among its members: one model's work
plus a mask multiply per drop site).

The last two rows measure a proposed fix, not the library as it is: every drop site of
ResNet-20 follows a ReLU, and a Masksembles layer that applies the ReLU itself can compute
``relu(x) * mask`` as one autograd node whose backward is a single threshold pass on its saved
output, instead of a mask-multiply backward followed by ReLU's backward (one memory pass per
drop site saved; gradients are bitwise equal, checked before timing). To run the unchanged
backbone code that way, those rows swap ``F.relu`` in ``ensemblekit.models.resnet`` for the
identity during their step and apply the ReLU in the drop sites (Identity ones become ReLU).

    python benchmarks/training.py [--rounds 15] [--batch 128] [--threads 1] [--device cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import types

import torch
import torch.nn.functional as F
from torch import nn

from _timing import interleaved_medians
from ensemblekit.layers import Masksembles
from ensemblekit.methods import build_model
from ensemblekit.models import resnet
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


class MaskedReLU(torch.autograd.Function):
    """``relu(x) * mask`` for a grouped ``x`` (n, B/n, C, ...) and mask (n, 1, C, 1...);
    backward: ``grad * (out > 0)``, one pass."""

    @staticmethod
    def forward(ctx, x, mask):
        out = x.clamp_min(0).mul_(mask)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(grad, out, 0), None


class ReLUMasksembles(nn.Module):
    """The proposed drop site: ReLU and the masks of ``layer`` in one autograd node."""

    def __init__(self, layer: Masksembles) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.layer.n
        grouped = x.reshape(n, x.shape[0] // n, *x.shape[1:])
        mask = self.layer.masks.to(x.dtype).view(n, 1, -1, *[1] * (x.ndim - 2))
        return MaskedReLU.apply(grouped, mask).reshape(x.shape)


#: ``torch.nn.functional`` with ReLU left to the drop sites
RELU_IN_DROP_SITES = types.SimpleNamespace(**{**vars(F), "relu": lambda x: x})


@contextlib.contextmanager
def relu_in_drop_sites(enabled: bool):
    """ResNet code runs with F.relu as the identity while ``enabled``."""
    original = resnet.F
    resnet.F = RELU_IN_DROP_SITES if enabled else original
    try:
        yield
    finally:
        resnet.F = original


def with_relu_in_drop_sites(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose drop sites apply the ReLU (fused with the mask)."""
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        parent, _, child = name.rpartition(".")
        if "drop" not in child:  # stem_drop, drop1, drop2 (a shortcut may be Identity too)
            continue
        fused = ReLUMasksembles(module) if isinstance(module, Masksembles) else nn.ReLU()
        setattr(model.get_submodule(parent), child, fused)
    return model


def check_same_gradients(model: nn.Module, fused: nn.Module, batch: int) -> float:
    """Largest gradient difference between the model and its fused copy on one batch."""
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    for candidate, enabled in ((model, False), (fused, True)):
        candidate.train().zero_grad()
        with relu_in_drop_sites(enabled):
            F.cross_entropy(candidate(x), y).backward()
    pairs = zip(model.parameters(), fused.parameters(), strict=True)
    return max(float((a.grad - b.grad).abs().max()) for a, b in pairs)


def proposal_step(model: nn.Module, device: torch.device, batch: int):
    step = training_step(model, device, batch)

    def run():
        with relu_in_drop_sites(True):
            step()

    return run


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
    steps = {name: training_step(model, device, args.batch) for name, model in models.items()}
    for name in ("single", "masksembles s=2"):
        fused = with_relu_in_drop_sites(models[name])
        difference = check_same_gradients(copy.deepcopy(models[name]), fused, 16)
        print(f"{name} with ReLU in its drop sites: largest gradient difference {difference:g}")
        steps[f"{name}, ReLU in drop sites (proposal)"] = proposal_step(fused, device, args.batch)
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
