"""The cost of each point of the spectrum, relative to the single model, on ResNet-20 at M = 4.

For every method: parameters, one training step (forward + backward + SGD step on a batch of
128 images of 32x32x3, with the method's own training contract) and M-member inference
(``predict_members`` on a batch of 256, under ``torch.no_grad``). All methods are timed in one
process, interleaved round by round (medians), so compare the ratios, not the milliseconds.

    python benchmarks/methods.py [--device cuda] [--rounds 7] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from _timing import interleaved_medians, machine_line
from ensemblekit.methods import build_model, predict_members

MEMBERS = 4
METHODS = {
    "single": {},
    "mc_dropout": {"n": MEMBERS, "p": 0.1},
    "masksembles": {"n": MEMBERS, "scale": 2.0},
    "batchensemble": {"n": MEMBERS},
    "packed_ensemble": {"n": MEMBERS, "alpha": 2.0, "gamma": 1},
    "deep_ensemble": {"n": MEMBERS},
}


def synchronised(fn, device: torch.device):
    """``fn`` followed by a device synchronisation, so a timer sees the finished work."""
    if device.type != "cuda":
        return fn

    def run():
        fn()
        torch.cuda.synchronize(device)

    return run


def training_step(model, device: torch.device, batch: int):
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    optimizer = torch.optim.SGD(model.parameter_groups(5e-4, 0.05), lr=0.05, momentum=0.9)

    def step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), model.training_targets(y)).backward()
        optimizer.step()

    return synchronised(step, device)


def inference(model, device: torch.device, batch: int):
    x = torch.randn(batch, 3, 32, 32, device=device)

    def predict():
        with torch.no_grad():
            predict_members(model, x)

    return synchronised(predict, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--train-batch", type=int, default=128)
    parser.add_argument("--infer-batch", type=int, default=256)
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: torch's choice)"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    models = {
        method: build_model("resnet20", method, 10, 3, seed=0, **options).to(device)
        for method, options in METHODS.items()
    }
    forced = {
        f"deep_ensemble ({mode})": build_model(
            "resnet20", "deep_ensemble", 10, 3, n=MEMBERS, inference=mode, seed=0
        ).to(device)
        for mode in ("vmap", "loop")
    }
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    train_ms = interleaved_medians(
        {name: training_step(m, device, args.train_batch) for name, m in models.items()},
        rounds=args.rounds,
        warmup=2,
    )
    inference_models = {**models, **forced}
    infer_ms = interleaved_medians(
        {name: inference(m, device, args.infer_batch) for name, m in inference_models.items()},
        rounds=args.rounds,
        warmup=2,
    )

    print(f"# ResNet-20, M = {MEMBERS}, {machine_line()}, {args.rounds} interleaved rounds")
    print(
        f"train step: batch {args.train_batch} (fwd + bwd + SGD); "
        f"inference: predict_members on batch {args.infer_batch}\n"
    )
    print("| method | params | x single | train ms | x single | infer ms | x single |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in inference_models:
        count = params.get(name, params["deep_ensemble"])
        train = train_ms.get(name)
        train_cells = (
            f"{train:.1f} | {train / train_ms['single']:.2f}" if train is not None else "- | -"
        )
        print(
            f"| {name} | {count:,} | {count / params['single']:.2f} | {train_cells} | "
            f"{infer_ms[name]:.1f} | {infer_ms[name] / infer_ms['single']:.2f} |"
        )


if __name__ == "__main__":
    main()
