"""Timing helpers shared by the benchmark scripts: medians, interleaved side by side.

Candidates are timed in one process and alternated round by round, so that noise from other
work on a shared machine hits all of them alike; compare ratios, not absolute times.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable

import torch


def median_ms(fn: Callable[[], object], *, repeats: int, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def interleaved_medians(
    candidates: dict[str, Callable[[], object]], *, rounds: int, per_round: int = 1, warmup: int = 3
) -> dict[str, float]:
    """Median ms per call of each candidate, alternating candidates every round."""
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            for _ in range(per_round):
                fn()
            samples[name].append((time.perf_counter() - start) / per_round)
    return {name: statistics.median(values) * 1000.0 for name, values in samples.items()}


def machine_line() -> str:
    """One line describing where the numbers were measured."""
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    return (
        f"{platform.machine()} {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
