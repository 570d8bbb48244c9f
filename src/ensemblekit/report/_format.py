"""Numbers into text and JSON, one way each: ``mean_std`` over seeds, the ``mean ± std``
formatter every report uses, ``json_ready``, and small words.

:func:`pm` takes explicit options, one combination per report:

- the benchmark: ``pm(value, alone=<one seed>)`` -- 4 digits below 1 in magnitude, 3 above;
- the tune report: ``pm(value, digits=4, alone_if_exact=True)`` -- a std of exactly 0 (one
  seed) prints the mean alone;
- the member-similarity study: ``pm(value, digits=4, mark_floor=True)`` -- a value that holds
  by definition prints as ``"<mean:g> (floor)"``;
- the sweep: ``pm(value, digits=4)``.
"""

from __future__ import annotations

import math
from pathlib import Path


def mean_std(values) -> dict:
    """``{"mean", "std"}`` of a list of numbers (sample std; 0 for one value); both None when
    the values are None (a metric undefined for the method, e.g. mutual information of one
    member)."""
    if any(v is None for v in values):
        return {"mean": None, "std": None}
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    if len(values) < 2:
        return {"mean": mean, "std": 0.0}
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return {"mean": mean, "std": math.sqrt(variance)}


def pm(value: dict, *, digits: int | None = None, alone: bool = False,
       alone_if_exact: bool = False, mark_floor: bool = False) -> str:
    """``"mean ± std"`` of a ``{"mean", "std"}`` value; ``"n/a"`` when its mean is None (a
    metric undefined for the method).

    ``digits``: decimals of both numbers; None: 4 when ``|mean| < 1``, else 3. The mean
    alone when ``alone`` (one seed: a std of 0 says nothing), when the std is None, or with
    ``alone_if_exact`` when the std is exactly 0. ``mark_floor``: a value marked
    ``"by_definition"`` (identical members) prints as ``"<mean:g> (floor)"``.
    """
    mean, std = value.get("mean"), value.get("std")
    if mean is None:
        return "n/a"
    if mark_floor and value.get("by_definition"):
        return f"{mean:g} (floor)"
    if digits is None:
        digits = 4 if abs(mean) < 1 else 3
    if alone or std is None or (alone_if_exact and std == 0.0):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def json_ready(value, *, nonfinite_as_null: bool = False):
    """``value`` as JSON can hold it, recursively: dict keys as strings, tuples as lists, paths
    as strings; with ``nonfinite_as_null`` a nan or infinite float as None (JSON's null, where
    a study records "undefined")."""
    if isinstance(value, dict):
        return {str(key): json_ready(item, nonfinite_as_null=nonfinite_as_null)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item, nonfinite_as_null=nonfinite_as_null) for item in value]
    if isinstance(value, Path):
        return str(value)
    if nonfinite_as_null and isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def plural(count: int, noun: str) -> str:
    """``"1 epoch"``, ``"3 epochs"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def average(values) -> float:
    """The plain mean of numbers, as a float."""
    values = list(values)
    return float(sum(values) / len(values))
