"""Runs of a grid computed side by side, each in its own worker process.

A training run of the small recipes (digits: LeNet on 8x8 images) keeps one CPU core busy and
gains nothing from a second thread, so the cores of a machine are used by training several
runs at once instead. Each run is computed exactly as it would be in the parent process:
every run seeds itself (model, data order, sampling), and each worker runs torch with the
parent's number of CPU threads, so the records are bit-identical to computing the runs one
after another (``tests/test_workers.py`` checks it on the benchmark).

Workers are started with ``spawn`` (a fresh interpreter, not a ``fork`` of a process whose
torch thread pools may already run, which can deadlock); ``compute`` and what it closes over
are sent to each worker once, so they must pickle: a module-level function, or a
``functools.partial`` of one.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

import torch

from ..runtime import MAX_THREADS, choose_device

#: What a worker computes each run with (set once per worker by :func:`_start_worker`).
_worker_compute: Callable | None = None


def parallel_runs(jobs: int | str, *, runs: int, device: str | None,
                  threads: int | None = None) -> int:
    """How many runs to compute at once: ``jobs``, or for ``"auto"`` as many as the CPU cores
    hold at ``threads`` threads a run (None: torch's current count); one on CUDA (the runs
    would share one GPU). Never more than ``runs``."""
    if jobs == "auto":
        if choose_device(device).type == "cuda":
            return 1
        jobs = MAX_THREADS // (threads or torch.get_num_threads())
    return max(1, min(jobs, runs))


def _start_worker(compute: Callable, threads: int) -> None:
    """Initialise one worker: the parent's torch CPU threads, and the function of a run."""
    global _worker_compute
    torch.set_num_threads(threads)
    _worker_compute = compute


def _compute_in_worker(run):
    return _worker_compute(run)


def compute_in_workers(runs: list, compute: Callable, jobs: int) -> Iterator[tuple]:
    """Yield ``(run, compute(run))`` for every run of ``runs``, as they finish, computed by
    ``jobs`` worker processes; runs start in the order given.

    The first run that raises stops the rest (runs not yet started are cancelled, those in
    progress finish and are dropped) and its exception is raised here.
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_start_worker,
                             initargs=(compute, torch.get_num_threads())) as pool:
        pending: dict[Future, object] = {pool.submit(_compute_in_worker, run): run
                                         for run in runs}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in [f for f in pending if f in done]:  # submission order
                    run = pending.pop(future)
                    yield run, future.result()
        finally:
            for future in pending:
                future.cancel()
