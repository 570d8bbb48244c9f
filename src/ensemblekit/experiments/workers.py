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
``functools.partial`` of one. A worker is handed one run at a time, so that nothing is queued
behind a run in progress: when the parent stops early (a run failed, Ctrl-C, the caller
stopped reading) it terminates the workers at once, and a worker whose parent died (SIGKILL)
exits by itself instead of waiting forever.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing.connection import wait

import torch

from ..runtime import MAX_THREADS, choose_device

#: Seconds a worker is given to exit after the parent asked it to, before it is terminated.
JOIN_SECONDS = 10.0


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


class WorkerTraceback(Exception):
    """The traceback of an error raised in a worker process (the cause of the re-raised
    error: the parent's own traceback ends where it received it)."""


def compute_in_workers(runs: list, compute: Callable, jobs: int) -> Iterator[tuple]:
    """Yield ``(run, compute(run))`` for every run of ``runs``, as they finish, computed by
    ``jobs`` worker processes; runs start in the order given.

    The first run that raises stops the rest (the workers are terminated) and its error is
    raised here, with the worker's traceback as its cause.
    """
    context = multiprocessing.get_context("spawn")
    workers = []
    for _ in range(jobs):
        parent_end, worker_end = context.Pipe()
        process = context.Process(target=_serve, daemon=True,
                                  args=(compute, torch.get_num_threads(), worker_end))
        process.start()
        worker_end.close()
        workers.append((process, parent_end))
    waiting = deque(runs)
    busy: dict = {}  # parent_end -> (process, run)

    def hand_out(process, connection) -> None:
        """Send ``process`` the next waiting run, if any."""
        if waiting:
            busy[connection] = (process, waiting.popleft())
            connection.send(busy[connection][1])

    finished = False
    try:
        for process, connection in workers:
            hand_out(process, connection)
        while busy:
            # a worker's end is readable when it replied, and at EOF when it died
            for connection in wait(list(busy)):
                process, run = busy.pop(connection)
                result = _receive(connection, process, run)
                hand_out(process, connection)
                yield run, result
        finished = True
    finally:
        _stop(workers, gracefully=finished)


def _receive(connection, process, run):
    """The result a worker sent for ``run``; raises the error it sent instead."""
    try:
        ok, payload, text = connection.recv()
    except EOFError:
        process.join(JOIN_SECONDS)
        raise RuntimeError(f"the worker process computing {run!r} died (exit code "
                           f"{process.exitcode}) without a result") from None
    if not ok:
        raise payload from WorkerTraceback(text)
    return payload


def _stop(workers: list, *, gracefully: bool) -> None:
    """End every worker: asked to exit after a complete grid, stopped (SIGTERM) otherwise,
    killed if it has not exited after :data:`JOIN_SECONDS`."""
    for process, connection in workers:
        if gracefully:
            try:
                connection.send(None)
            except OSError:
                pass  # it has already exited
        elif process.is_alive():
            process.terminate()
    for process, connection in workers:
        process.join(JOIN_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()
        connection.close()


def _serve(compute: Callable, threads: int, connection) -> None:
    """A worker: compute each run the parent sends, reply ``(ok, result or error, traceback
    text)``; exit on ``None``, when the parent closes its end, or when the parent dies."""
    torch.set_num_threads(threads)
    # Ctrl-C is the parent's to handle (it stops the workers); a stop ends the worker through
    # SystemExit, so that its exit handlers release what it holds
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_stop)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()
    while True:
        try:
            run = connection.recv()
        except EOFError:
            return
        if run is None:
            return
        try:
            reply = (True, compute(run), "")
        except Exception as error:
            reply = (False, error, traceback.format_exc())
        try:
            connection.send(reply)  # pickled whole before a byte is written
        except Exception as unsent:  # a result or an error that does not pickle
            what = "result" if reply[0] else f"error ({type(reply[1]).__name__}: {reply[1]})"
            connection.send((False, RuntimeError(f"the {what} of {run!r} could not be sent "
                                                 f"to the parent process: {unsent}"),
                             reply[2]))


def _exit_on_stop(signum, frame) -> None:
    raise SystemExit(1)


def _exit_with(parent_sentinel) -> None:
    """Exit this worker at once when its parent process has ended (killed: it can neither
    send more runs nor read a result)."""
    wait([parent_sentinel])
    os._exit(1)
