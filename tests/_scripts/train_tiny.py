"""Train a tiny model through ``ensemblekit.train.train_model``; used by subprocess tests.

Runs the same under ``python`` and ``torchrun``. Writes ``weights.pt`` (the final state_dict)
and ``history.json`` into ``--out`` from the main process. ``--stall-at-step K`` makes the
process write ``--out/stalled`` and sleep at its K-th training step, so a test can SIGKILL it
at a known point in the middle of an epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from ensemblekit.methods import build_model
from ensemblekit.train import TrainConfig, train_model


def tiny_problem(num_items: int = 256, features: int = 16, classes: int = 4):
    """A fixed, learnable classification problem: labels from a random linear teacher."""
    generator = torch.Generator().manual_seed(1234)
    images = torch.rand(num_items, features, generator=generator)
    teacher = torch.randn(features, classes, generator=generator)
    labels = ((images - 0.5) @ teacher).argmax(dim=1)
    return images, labels


def tiny_model(method: str = "masksembles"):
    """An MLP (16-32-4) without BatchNorm or dropout: training is a function of the data order.

    Masksembles (4 masks on the 32 hidden units) by default: its batch is split into 4 member
    groups, which data-parallel sharding must preserve. Packed-Ensembles: a LeNet (no
    BatchNorm either) reading the 16 features as 1x4x4 images, so that grouped convolutions
    with channels-last weights go through DistributedDataParallel too.
    """
    if method == "packed_ensemble":
        return build_model("lenet", method, num_classes=4, in_channels=1, input_size=4,
                           seed=0, n=4, alpha=2.0)
    options = {
        "single": {},
        "masksembles": {"n": 4, "scale": 2.0},
        "deep_ensemble": {"n": 2, "independent_batches": True},
        "mimo": {"n": 3, "input_repetition": 0.25, "batch_repetitions": 2},
    }[method]
    return build_model("mlp", method, num_classes=4, in_channels=16, hidden=(32,), seed=0,
                       **options)


def tiny_data(method: str):
    """:func:`tiny_problem`, as 1x4x4 images for the model that reads images."""
    images, labels = tiny_problem()
    if method == "packed_ensemble":
        images = images.view(-1, 1, 4, 4)
    return images, labels


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument("--method", default="masksembles",
                        choices=("single", "masksembles", "deep_ensemble", "packed_ensemble",
                                 "mimo"))
    parser.add_argument("--checkpoint-dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--stall-at-step", type=int)
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = tiny_model(args.method)
    if args.stall_at_step is not None:
        calls = 0

        def stall(module, inputs):
            nonlocal calls
            calls += 1
            if calls == args.stall_at_step:
                (args.out / "stalled").write_text(str(calls))
                time.sleep(600)

        model.register_forward_pre_hook(stall)

    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=0.1, optimizer=args.optimizer,
        schedule="cosine", warmup_epochs=1, seed=args.seed, progress=False,
    )
    history = train_model(model, tiny_data(args.method), config, checkpoint_dir=args.checkpoint_dir,
                          resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save(model.state_dict(), args.out / "weights.pt")
        for record in history:
            record.pop("seconds")
        (args.out / "history.json").write_text(json.dumps(history))


if __name__ == "__main__":
    main()
