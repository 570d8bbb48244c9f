"""MC-Dropout inference: masks from the model's own seeded generator vs torch's dropout layers.

``predict_members`` on an MC-Dropout model keeps its dropout layers in eval mode and multiplies
each one's output by member masks drawn from a generator seeded on every call (reproducible,
global RNG untouched; :mod:`ensemblekit.methods.seeded_dropout`). Before, the dropout layers
were switched to train mode and drew their noise from the global RNG. This script times both
on the same model and batch, in one process, interleaved round by round (medians): compare the
ratio, not the milliseconds.

    python benchmarks/mc_dropout_sampling.py [--backbones lenet resnet20] [--rounds 7]
"""

from __future__ import annotations

import argparse

import torch

from _timing import interleaved_medians, machine_line
from ensemblekit.members import repeat_members, split_members
from ensemblekit.methods import build_model, predict_members
from ensemblekit.methods.mc_dropout import dropout_modules

#: backbone -> (in_channels, image size, members M, batch B)
CASES = {
    "lenet": (1, 28, 8, 256),
    "resnet20": (3, 32, 4, 64),
}


def global_rng_members(model, x: torch.Tensor) -> torch.Tensor:
    """The previous implementation: dropout layers in train mode, noise from the global RNG."""
    model.eval()
    for layer in dropout_modules(model.backbone):
        layer.train()
    members = model.num_members
    try:
        return split_members(model.backbone(repeat_members(x, members)), members)
    finally:
        model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line())
    print(f"{'backbone':10} {'M':>2} {'B':>4} {'global RNG ms':>14} {'seeded ms':>10} {'ratio':>6}")
    for name in args.backbones:
        channels, size, members, batch = CASES[name]
        options = {"input_size": size} if name == "lenet" else {}
        model = build_model(name, "mc_dropout", num_classes=10, in_channels=channels, n=members,
                            p=0.1, seed=0, **options).eval()
        x = torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            times = interleaved_medians(
                {"global": lambda m=model, x=x: global_rng_members(m, x),
                 "seeded": lambda m=model, x=x: predict_members(m, x)},
                rounds=args.rounds,
            )
        print(f"{name:10} {members:>2} {batch:>4} {times['global']:>14.1f} "
              f"{times['seeded']:>10.1f} {times['seeded'] / times['global']:>6.3f}")


if __name__ == "__main__":
    main()
