"""The cost of each point of the spectrum, relative to the single model, on ResNet-20 at M = 4.

For every method: parameters, one training step (forward + backward + SGD step on a batch of
128 images of 32x32x3, with the method's own training contract) and M-member inference
(``predict_members`` on a batch of 256, under ``torch.no_grad``). All methods are timed in one
process, interleaved round by round (medians), so compare the ratios, not the milliseconds.

A second section (``--sections cost``) sets the cheap ensembles that run M members in one
forward against the single model on LeNet (1x28x28) and ResNet-20 (3x32x32): parameters,
inference FLOPs per sample, latency and peak memory of M = 4 members on a batch of
``--infer-batch``. MIMO runs through ``predict_members`` (the stem reads x once, its slot
weights summed), through its literal definition (M stacked copies of x into the stem: what
the summed stem saves) and through ``compile_members`` (summed stem, BatchNorm folded,
channels-last; also without each of the last two, to show where the gain is); the single
model also compiled the same way (a one-slot MIMO model: the single network, BatchNorm
folded, channels-last). Peak memory as in ``benchmarks/memory.py``: one fresh subprocess per
candidate.

    python benchmarks/methods.py [--device cuda] [--rounds 7] [--threads 1]
        [--sections spectrum cost] [--backbones lenet resnet20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

from _timing import interleaved_medians, machine_line
from ensemblekit.compile import compile_members
from ensemblekit.experiments.cost import flops_per_sample
from ensemblekit.members import repeat_members, split_members
from ensemblekit.methods import build_model, predict_members

MEMBERS = 4
METHODS = {
    "single": {},
    "mc_dropout": {"n": MEMBERS, "p": 0.1},
    "masksembles": {"n": MEMBERS, "scale": 2.0},
    "batchensemble": {"n": MEMBERS},
    "packed_ensemble": {"n": MEMBERS, "alpha": 2.0, "gamma": 1},
    "mimo": {"n": MEMBERS},
    "deep_ensemble": {"n": MEMBERS},
}
SECTIONS = ("spectrum", "cost")
#: the cost section's backbones: (in_channels, image size, build options), as in inference.py
COST_BACKBONES = {
    "lenet": (1, 28, {"input_size": 28}),
    "resnet20": (3, 32, {}),
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


def spectrum(args, device: torch.device) -> None:
    """Every method on ResNet-20: parameters, training step and predict_members."""
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


def cost_input(backbone: str, batch: int, device: torch.device) -> torch.Tensor:
    in_channels, size, _ = COST_BACKBONES[backbone]
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, in_channels, size, size, generator=generator).to(device)


def checked_compile(model, x: torch.Tensor, **options):
    """``compile_members(model, **options)``, checked against ``predict_members`` on ``x``;
    returns ``predict()``."""
    fast = compile_members(model, example_input=x[:2], **options)
    with torch.no_grad():
        expected = predict_members(model, x)
        error = float((fast(x) - expected).abs().max() / expected.abs().max())
    if not error <= 1e-5:
        raise AssertionError(f"compile_members({model.method}, {options}): relative "
                             f"difference {error:.2e}")
    return lambda: fast(x)


def cost_candidates(backbone: str, x: torch.Tensor) -> dict:
    """name -> ``make()`` returning ``(model whose parameters count, predict())``; a candidate
    is built only when asked for (one per subprocess for the peak memory)."""
    in_channels, _, options = COST_BACKBONES[backbone]

    def build(method: str, **method_options):
        model = build_model(backbone, method, 10, in_channels, seed=0, **options,
                            **method_options)
        return model.to(x.device).eval()

    def plain(method: str, **method_options):
        def make():
            model = build(method, **method_options)
            return model, lambda: predict_members(model, x)
        return make

    def stacked():
        model = build("mimo", n=MEMBERS)

        def predict():
            return split_members(model.backbone(repeat_members(x, MEMBERS)), MEMBERS)

        return model, predict

    def compiled(method: str, n: int, **compile_options):
        def make():
            model = build(method, n=n)
            return model, checked_compile(model, x, **compile_options)
        return make

    return {
        "single": plain("single"),
        "single (compiled: BN folded, NHWC)": compiled("mimo", 1),
        "mimo": plain("mimo", n=MEMBERS),
        "mimo (M stacked copies of x)": stacked,
        "mimo (compile_members)": compiled("mimo", MEMBERS),
        "mimo (compile_members, NCHW)": compiled("mimo", MEMBERS, channels_last=False),
        "mimo (compile_members, BN kept)": compiled("mimo", MEMBERS,
                                                    fold_batchnorm_into_conv=False),
    }


def peak_memory(args, backbone: str, name: str) -> float:
    """Peak MiB of one prediction of candidate ``name``, in a fresh subprocess."""
    command = [sys.executable, __file__, "--memory-child", backbone, name,
               "--infer-batch", str(args.infer_batch)]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}  # as memory.py: see its docstring
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{backbone} {name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])["peak"]


def cost(args, device: torch.device) -> None:
    """MIMO against the single model per backbone: params, FLOPs, latency, peak memory."""
    print(f"# cost of M = {MEMBERS} members in one forward, {machine_line()}, batch "
          f"{args.infer_batch}, {args.rounds} interleaved rounds")
    for backbone in args.backbones:
        x = cost_input(backbone, args.infer_batch, device)
        built = {name: make() for name, make in cost_candidates(backbone, x).items()}
        params = {name: sum(p.numel() for p in model.parameters())
                  for name, (model, _) in built.items()}
        flops = {name: flops_per_sample(lambda _, fn=predict: fn(), x)
                 for name, (_, predict) in built.items()}
        latency = interleaved_medians(
            {name: synchronised(predict, device) for name, (_, predict) in built.items()},
            rounds=args.rounds, warmup=2)
        peaks = ({name: peak_memory(args, backbone, name) for name in built}
                 if device.type == "cpu" else {})
        base = "single"
        print(f"\n## {backbone}\n")
        print("| candidate | params | x single | MFLOPs/sample | x single | latency ms | "
              "x single | peak MiB | x single |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name in built:
            peak = (f"{peaks[name]:.1f} | {peaks[name] / peaks[base]:.2f}" if peaks
                    else "- | -")
            print(f"| {name} | {params[name]:,} | {params[name] / params[base]:.3f} | "
                  f"{flops[name] / 1e6:.2f} | {flops[name] / flops[base]:.3f} | "
                  f"{latency[name]:.1f} | {latency[name] / latency[base]:.2f} | {peak} |")


def memory_child(args) -> None:
    """In the subprocess: the peak memory of one cost candidate, as JSON on stdout."""
    from memory import measure_prediction  # memory.py imports this module: import it late

    backbone, name = args.memory_child
    with torch.no_grad():
        result = measure_prediction(lambda: cost_candidates(
            backbone, cost_input(backbone, args.infer_batch, torch.device("cpu")))[name]()[1])
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--train-batch", type=int, default=128)
    parser.add_argument("--infer-batch", type=int, default=256)
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: torch's choice)"
    )
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--backbones", nargs="+", choices=list(COST_BACKBONES),
                        default=list(COST_BACKBONES), help="backbones of the cost section")
    parser.add_argument("--memory-child", nargs=2, metavar=("BACKBONE", "NAME"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args)
        return
    device = torch.device(args.device)
    if "spectrum" in args.sections:
        spectrum(args, device)
    if "cost" in args.sections:
        cost(args, device)


if __name__ == "__main__":
    main()
