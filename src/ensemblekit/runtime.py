"""Where and how a model runs: CPU threads and torch settings, the device, eval mode.

A bottom-level module (torch, the standard library and :mod:`ensemblekit._validation` only), so
every layer of the package, the core included, can use it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import nn

from ._validation import check_int

#: More threads than cores only wait on each other; far more exhaust memory for stacks.
MAX_THREADS = os.cpu_count() or 1


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``, then restore (None: unchanged)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(check_int("threads", threads, minimum=1, maximum=MAX_THREADS))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def torch_settings(*, deterministic: bool, threads: int | None) -> Iterator[None]:
    """Run the block with torch's process-wide settings for a run, then restore them:
    ``deterministic`` kernels (cuDNN benchmarking off) when asked, ``threads`` CPU threads."""
    previous = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    if deterministic:
        # cuBLAS reads this when it first starts; set it early in the process to take effect.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    try:
        with cpu_threads(threads):
            yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.benchmark = previous[1]


def choose_device(device: str | torch.device | None, *, local_rank: int = 0) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks CUDA when available, else the CPU.

    A CUDA device without an index becomes ``cuda:local_rank``: each of the processes that
    ``torchrun`` starts on a node takes its own GPU.
    """
    if device is not None:
        chosen = torch.device(device)
    else:
        chosen = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if chosen.type == "cuda" and chosen.index is None:
        chosen = torch.device("cuda", local_rank)
    return chosen


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); the CPU for a model with none."""
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA runs asynchronously; the CPU does not)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with ``model`` in eval mode; afterwards every module that ``model`` held
    on entry gets back its own ``training`` flag (a model half in eval mode stays so).

    ``model.train()`` would not do: it sets every module to one mode, forgetting, for example,
    a frozen BatchNorm the caller had put in eval mode inside a training model.
    """
    modes = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for module, training in modes:
            module.training = training
