"""Which registered methods play which part in the experiments, read from the registry.

No experiment names a method: each asks here (or the entries directly), so that a method
registered later takes its part with no other file changed.
"""

from __future__ import annotations

from ..methods import method_entries, method_with_role


def reference_method() -> str:
    """The single model: the floor and the reference of every cost ratio (role
    ``"reference"``)."""
    name = method_with_role("reference")
    if name is None:
        raise ValueError("no registered method plays the reference role (the single model); "
                         "register one with role=\"reference\"")
    return name


def spectrum_subject() -> str:
    """The method whose spectrum knob the sweep varies and the toy draws panel by panel (the
    first with a ``spectrum_knob``: Masksembles, the library's centre)."""
    for entry in method_entries():
        if entry.spectrum_knob is not None:
            return entry.name
    raise ValueError("no registered method has a spectrum_knob (Masksembles: scale); the "
                     "sweep and the toy need one")


def spectrum_landmarks() -> list[str]:
    """The points of the spectrum from one model to independent models, in registration
    order: the reference, the stochastic methods (MC-Dropout: many random masks), the methods
    with a spectrum knob, and the independent end (Deep Ensembles)."""
    return [entry.name for entry in method_entries()
            if entry.role or entry.stochastic or entry.spectrum_knob is not None]


def with_own_knobs() -> list[str]:
    """The methods with knobs of their own (a tune grid), whose settings a report states."""
    return [entry.name for entry in method_entries() if entry.tune_grid]
