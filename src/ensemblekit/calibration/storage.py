"""Saving a fitted scaler with its model: a small JSON dict in the checkpoint's metadata.

A scaler is a handful of numbers, so it travels as JSON inside the model checkpoint (no second
file, nothing unpickled)::

    ek.save(model, "model.pt", metadata={"calibration": scaler_metadata(scaler)})
    model = ek.load("model.pt")
    scaler = ek.checkpoint.load_scaler("model.pt")   # the same numbers, bit for bit

JSON writes float64 numbers with ``repr``, which reads back to the identical float, so the
reloaded scaler gives bit-identical outputs. Whether each scaler was fitted, and why not
(``fitted`` and ``reason``, or ``reasons`` per temperature for the ensemble scaler), travels
with it; metadata written before those entries existed reads as fitted. The scalers are also
ordinary modules whose numbers are buffers: ``torch.save(scaler.state_dict(), path)`` and
``load_state_dict(torch.load(path, weights_only=True))`` work as for any module (the
state_dict holds the numbers only, not ``fitted`` and ``reason``).
"""

from __future__ import annotations

import torch
from torch import nn

from .ensemble import EnsembleTemperatureScaler
from .temperature import TemperatureScaler
from .vector import VectorScaler

_KINDS = ("temperature", "vector", "ensemble_temperature")


def scaler_metadata(scaler: nn.Module) -> dict:
    """A JSON-serialisable description of a fitted scaler (``scaler_from_metadata`` inverts it)."""
    if isinstance(scaler, TemperatureScaler):
        return {"kind": "temperature", "temperature": scaler.temperature.item(),
                "fitted": scaler.fitted, "reason": scaler.reason}
    if isinstance(scaler, VectorScaler):
        return {"kind": "vector", "scale": scaler.scale.tolist(), "bias": scaler.bias.tolist(),
                "fitted": scaler.fitted, "reason": scaler.reason}
    if isinstance(scaler, EnsembleTemperatureScaler):
        return {"kind": "ensemble_temperature", "mode": scaler.mode,
                "temperatures": scaler.temperatures.tolist(), "fitted": list(scaler.fitted),
                "reasons": list(scaler.reasons)}
    raise TypeError(
        f"scaler must be a TemperatureScaler, VectorScaler or EnsembleTemperatureScaler, got "
        f"{type(scaler).__name__}"
    )


def scaler_from_metadata(metadata: dict) -> nn.Module:
    """The scaler that ``scaler_metadata`` described."""
    if not isinstance(metadata, dict) or metadata.get("kind") not in _KINDS:
        raise ValueError(
            f"metadata must be a dict from scaler_metadata with 'kind' one of {', '.join(_KINDS)}"
            f", got {metadata!r}"
        )
    outcome = {"fitted": metadata.get("fitted", True), "reason": metadata.get("reason")}
    try:
        if metadata["kind"] == "temperature":
            return TemperatureScaler(metadata["temperature"], **outcome)
        if metadata["kind"] == "vector":
            scale = torch.tensor(metadata["scale"], dtype=torch.float64)
            return VectorScaler(scale.numel(), scale,
                                torch.tensor(metadata["bias"], dtype=torch.float64), **outcome)
        return EnsembleTemperatureScaler(
            torch.tensor(metadata["temperatures"], dtype=torch.float64), metadata["mode"],
            fitted=metadata.get("fitted"), reasons=metadata.get("reasons"))
    except KeyError as missing:
        raise ValueError(f"scaler metadata {metadata!r} lacks the entry {missing}") from None
