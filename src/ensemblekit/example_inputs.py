"""The example input a converter ran a network on, kept as its shape and dtype (not its data),
and a random batch like it for the functions that need one later.

A converter writes ``recipe["input"] = input_record(example_input)``; ``compile_members`` and
``export`` of the converted model then call :func:`recorded_example` instead of asking the
user for a second example. The record is JSON-serialisable (it travels in checkpoints)::

    {"shape": [3, 16, 16], "dtype": "float32"}                # the batch dimension left out
    {"shape": [7], "dtype": "int64", "low": 0, "high": 49}    # token ids: the values' range
"""

from __future__ import annotations

import torch
from torch import nn

#: rows of a recorded example: two, so that a tracer leaves the batch dimension free and a
#: broadcast across the batch shows up as a shape error
EXAMPLE_BATCH = 2


def input_record(example: torch.Tensor) -> dict:
    """``example``'s shape without its batch dimension, its dtype, and for integer inputs (token
    ids, class indices) the smallest and largest value, so that a random batch stays valid."""
    record = {"shape": list(example.shape[1:]), "dtype": str(example.dtype).removeprefix("torch.")}
    if not (example.is_floating_point() or example.is_complex()) and example.numel():
        record["low"], record["high"] = int(example.min()), int(example.max())
    return record


def example_from_record(record: dict, reference: torch.Tensor,
                        batch: int = EXAMPLE_BATCH) -> torch.Tensor:
    """A random ``(batch, *record["shape"])`` tensor on ``reference``'s device: standard normal
    in ``reference``'s dtype for a floating input (the model's own precision), else integers
    drawn uniformly from the recorded ``[low, high]`` in the recorded dtype. Seeded: the same
    example every call."""
    dtype = getattr(torch, record["dtype"])
    shape = (batch, *record["shape"])
    generator = torch.Generator().manual_seed(0)
    if dtype.is_floating_point or dtype.is_complex:
        return torch.randn(shape, generator=generator).to(reference)
    low, high = record.get("low", 0), record.get("high", 0)
    values = torch.randint(low, high + 1, shape, generator=generator)
    return values.to(device=reference.device, dtype=dtype)


def recorded_example(model: nn.Module, batch: int = EXAMPLE_BATCH) -> torch.Tensor | None:
    """A random batch like the example ``model``'s converter ran on, or ``None`` when the model
    holds no such record (built by ``build_model``, or converted without ``example_input``)."""
    record = (getattr(model, "recipe", None) or {}).get("input")
    if record is None:
        return None
    reference = next(model.parameters(), None)
    if reference is None:
        reference = torch.empty(0)
    return example_from_record(record, reference, batch)
