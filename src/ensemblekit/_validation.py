"""Argument checks shared by the public API.

Every check raises ``ValueError`` (or ``TypeError`` for a wrong kind of object) whose message
names the parameter, the value received, and what would be valid, so a user can fix the call
without reading the source. Call these at the public boundary, before any work starts.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

import torch


def check_int(name: str, value, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an ``int`` if it is an integer in [minimum, maximum], else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            hint = f" (pass {int(value)} instead of {value!r})"
        else:
            hint = ""
        raise ValueError(
            f"{name} must be an integer{_range_text(minimum, maximum)}, got {value!r} "
            f"of type {type(value).__name__}{hint}"
        )
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an integer{_range_text(minimum, maximum)}, got {value}")
    return value


# torch generators take seeds below 2**64; the largest accepted seed leaves room for the seeds
# derived from it (deep-ensemble member m: seed + m; epoch e of training: seed + rank + 1000 e).
MAX_SEED = 2**63 - 1


def check_seed(value, name: str = "seed") -> int:
    """Return ``value`` as an ``int`` seed in [0, 2**63 - 1], else raise naming ``name``."""
    return check_int(name, value, minimum=0, maximum=MAX_SEED)


def check_float(
    name: str,
    value,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
) -> float:
    """Return ``value`` as a finite ``float`` inside the given bounds, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"{name} must be a real number{_range_text(minimum, maximum)}, got {value!r} "
            f"of type {type(value).__name__}"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(
            f"{name} must be a finite number{_range_text(minimum, maximum)}, got {value}"
        )
    too_low = minimum is not None and (value < minimum if min_inclusive else value <= minimum)
    too_high = maximum is not None and (value > maximum if max_inclusive else value >= maximum)
    if too_low or too_high:
        low = "" if minimum is None else f"{minimum} {'<=' if min_inclusive else '<'} "
        high = "" if maximum is None else f" {'<=' if max_inclusive else '<'} {maximum}"
        raise ValueError(f"{name} must satisfy {low}{name}{high}, got {value}")
    return value


def check_flag(name: str, value) -> bool:
    """Return ``value`` if it is a bool, else raise (a truthy string is not a flag)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def check_device(name: str, value) -> torch.device:
    """Return ``value`` as a ``torch.device`` that this machine has, else raise.

    Accepts what ``torch.device`` accepts (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a device);
    a CUDA or MPS device on a machine without one is an error here, not deep inside torch.
    """
    usage = f"{name} must be a device such as 'cpu', 'cuda' or 'cuda:1'"
    if not isinstance(value, (str, torch.device)):
        raise ValueError(f"{usage}, got {value!r} of type {type(value).__name__}")
    try:
        device = torch.device(value)
    except RuntimeError:
        raise ValueError(f"{usage}, got {value!r}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{name}={value!r}, but CUDA is not available on this machine; "
                             f"use {name}='cpu'")
        if device.index is not None and device.index >= count:
            raise ValueError(f"{name}={value!r}, but this machine has {count} CUDA device(s): "
                             f"cuda:0 to cuda:{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}={value!r}, but MPS is not available on this machine; use "
                         f"{name}='cpu'")
    return device


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; else raise listing the valid names."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid choices are: {', '.join(choices)}")
    return value


def check_sequence(name: str, value, *, of: str = "numbers") -> Sequence:
    """Return ``value`` if it is a list or tuple (not a string), else raise."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a sequence (tuple or list) of {of}, got {value!r}")
    return value


def check_tensor(name: str, value, *, ndim: int | tuple[int, ...] | None = None) -> torch.Tensor:
    """Check that ``value`` is a tensor (optionally of the given rank) and return it."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.ndim not in allowed:
            wanted = " or ".join(str(d) for d in allowed)
            raise ValueError(
                f"{name} must have {wanted} dimensions, got shape {tuple(value.shape)} "
                f"({value.ndim} dimensions)"
            )
    return value


def check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """Raise if a floating tensor holds NaN or inf (a silently wrong result otherwise)."""
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(
            f"{name} contains {bad} NaN or infinite value(s) (shape {tuple(value.shape)}); "
            "clean or drop those entries before calling"
        )
    return value


def _range_text(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
