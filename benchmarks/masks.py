"""Mask generation and Masksembles2d forward+backward, side by side with the peers.

Run: ``python benchmarks/masks.py`` (peers: ``pip install -e '.[peers]'``; missing ones are
reported and skipped). Every candidate is timed in the same process, interleaved round by
round so that machine noise hits all of them alike; we report medians and ratios.
"""

from __future__ import annotations

import argparse

import torch

from _timing import interleaved_medians, machine_line, median_ms
from ensemblekit import Masksembles2d, generate_masks


def load_peers(channels: int, n: int, scale: float) -> dict[str, torch.nn.Module]:
    peers = {}
    try:
        from masksembles.torch import Masksembles2D

        peers["masksembles (published)"] = Masksembles2D(channels, n, scale)
    except ImportError:
        print("  masksembles not installed: pip install -e '.[peers]'")
    try:
        from torch_uncertainty.layers.masksembles import Mask2d

        # Its constructor indexes factory_kwargs["device"] and ["dtype"] without defaults.
        peers["torch-uncertainty Mask2d"] = Mask2d(channels, n, scale, device="cpu", dtype=None)
    except ImportError:
        print("  torch-uncertainty not installed: pip install -e '.[peers]'")
    return peers


def bench_generation(repeats: int) -> None:
    print("\n## generate_masks(4096, 8, 2.0)")
    ours = median_ms(lambda: generate_masks(4096, 8, 2.0, seed=0), repeats=repeats)
    print(f"  ensemblekit            {ours:8.2f} ms  (goal < 10 ms)")
    try:
        from masksembles.common import generation_wrapper

        theirs = median_ms(lambda: generation_wrapper(4096, 8, 2.0), repeats=max(5, repeats // 4))
        print(f"  masksembles (published){theirs:8.2f} ms  ({theirs / ours:.1f}x ours)")
    except ImportError:
        pass


def bench_layer(batch: int, channels: int, size: int, n: int, scale: float, rounds: int) -> None:
    print(f"\n## forward+backward, B={batch}, C={channels}, {size}x{size}, n={n}, fp32, CPU")
    torch.manual_seed(0)
    x = torch.randn(batch, channels, size, size, requires_grad=True)
    upstream = torch.randn(batch, channels, size, size)
    ours = Masksembles2d(channels, n, scale, seed=0)
    # The floor: one elementwise multiply by a precomputed per-sample mask of the same values.
    floor_mask = ours.masks.float().repeat_interleave(batch // n, dim=0)[:, :, None, None]

    def step(forward):
        def run():
            x.grad = None
            out = forward(x)
            out.backward(upstream.to(out.dtype))

        return run

    candidates = {
        "plain multiply (floor)": step(lambda t: t * floor_mask),
        "ensemblekit Masksembles2d": step(ours),
    }
    for name, layer in load_peers(channels, n, scale).items():
        candidates[name] = step(layer)
    times = interleaved_medians(candidates, rounds=rounds, per_round=3)
    base = times["ensemblekit Masksembles2d"]
    floor = times["plain multiply (floor)"]
    print(f"  {'candidate':28s} {'median ms':>10s} {'vs ensemblekit':>15s}")
    for name, ms in times.items():
        print(f"  {name:28s} {ms:10.2f} {ms / base:14.2f}x")
    print(f"\n  ensemblekit / plain multiply = {base / floor:.3f} (goal <= 1.15)")
    for name in times:
        if name not in ("plain multiply (floor)", "ensemblekit Masksembles2d"):
            print(f"  {name} / ensemblekit = {times[name] / base:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per candidate")
    parser.add_argument("--repeats", type=int, default=50, help="repeats for mask generation")
    args = parser.parse_args()
    print(f"# benchmarks/masks.py on {machine_line()}")
    bench_generation(args.repeats)
    bench_layer(batch=128, channels=64, size=32, n=4, scale=2.0, rounds=args.rounds)


if __name__ == "__main__":
    main()
