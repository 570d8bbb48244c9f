"""Peak memory of M-member inference: the candidates of ``benchmarks/inference.py``.

Method (CPU): every candidate runs in a fresh subprocess. After building its model (and
compiling it) and one warm-up prediction, the child resets the kernel's peak-RSS counter
(``/proc/self/clear_refs``), predicts once more and reads the peak (``VmHWM``); the reported
inference peak is that minus the RSS just before the call. glibc's mmap threshold is pinned to
64 KiB in the child (``MALLOC_MMAP_THRESHOLD_``) so that freed tensors leave the RSS and the
numbers track live tensors rather than allocator caches. "Resident after build" is the RSS the
model (compiled copy only, for compile_members), the input and the warm-up leave behind,
above the RSS after ``import torch``.

    python benchmarks/memory.py [--backbones lenet resnet20] [--batch 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from _timing import machine_line
from inference import BACKBONES, benchmark_input, candidate_names, label, make_candidate


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field (VmRSS, VmHWM) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure_child(backbone: str, kind: str, scale: float | None, batch: int) -> dict:
    """Run in the subprocess: the memory of one candidate, in MiB."""
    return measure_prediction(lambda: make_candidate(
        backbone, kind, scale, benchmark_input(backbone, batch, torch.device("cpu"))))


def measure_prediction(make_predict) -> dict:
    """Run in a fresh subprocess: ``make_predict()`` builds a candidate and returns its
    ``predict()``; returns its resident memory after one warm-up call and the peak of the next
    call above that, in MiB (see the module docstring)."""
    start = status_kib("VmRSS")
    predict = make_predict()
    with torch.no_grad():
        predict()
        before = status_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        predict()
        peak = status_kib("VmHWM")
    return {"resident": (before - start) / 1024, "peak": (peak - before) / 1024}


def run_child(args, backbone: str, kind: str, scale: float | None) -> dict:
    command = [sys.executable, __file__, "--child", backbone, kind, str(scale)]
    command += ["--batch", str(args.batch)]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{backbone} {kind} s={scale} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", choices=list(BACKBONES), default=list(BACKBONES))
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument(
        "--child", nargs=3, metavar=("BACKBONE", "KIND", "SCALE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.child:
        backbone, kind, scale = args.child
        scale = None if scale == "None" else float(scale)
        print(json.dumps(measure_child(backbone, kind, scale, args.batch)))
        return
    print(f"# benchmarks/memory.py on {machine_line()}")
    print("peak RSS delta of one prediction, fresh subprocess per candidate (see the docstring)")
    for backbone in args.backbones:
        results = {
            label(kind, scale): run_child(args, backbone, kind, scale)
            for kind, scale in candidate_names()
        }
        single = results["single"]["peak"]
        print(f"\n## {backbone}, M=4, batch {args.batch}, fp32, CPU")
        print("\n| candidate | inference peak MiB | x single | resident after build MiB |")
        print("|---|---:|---:|---:|")
        for name, result in results.items():
            print(
                f"| {name} | {result['peak']:.1f} | {result['peak'] / single:.2f} | "
                f"{result['resident']:.1f} |"
            )


if __name__ == "__main__":
    main()
