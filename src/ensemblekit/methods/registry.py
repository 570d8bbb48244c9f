"""The registry of methods: one :class:`MethodEntry` per method, registered on its builder.

A method builder has the signature ``builder(make_backbone, *, seed, **options) ->
EnsembleModel``. ``make_backbone(layers, seed)`` builds the chosen backbone from the method's
:class:`~ensemblekit.models.LayerFactory` with parameters initialised from ``seed``; the
builder's keyword options (``n``, ``scale``, ``p``...) are what :func:`ensemblekit.build_model`
accepts for the method.

Everything the layers above ``methods/`` (experiments, report, plots, cli) know about a
method lives in its entry: how it is labelled and drawn, which of the experiments' global
settings it answers to, whether its members are drawn at prediction time, its role in the
spectrum, the fraction of a drop site one member does not see, what its member similarity is
by construction, the knobs ``ensemblekit tune`` varies, the diversity study's controls, the
option that moves it along the spectrum and how a figure panel titles it.
Nothing outside ``methods/`` (and the layers, models, converters and ``compile/``) names a
method: it asks the registry. A new method is one module here with one ``@register_method``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..models.registry import Registry

#: the roles a method can play for the experiments (besides being compared)
ROLES = ("", "reference", "independent")


def _no_drop(options: Mapping) -> float:
    return 0.0


@dataclass(frozen=True)
class MethodEntry:
    """What the library knows about one method, beside its builder.

    Attributes:
        name: the registry name (``build_model(..., method=name)``).
        builder: ``builder(make_backbone, *, seed, **options) -> EnsembleModel``.
        label: how tables and figures name it ("Masksembles").
        color, marker: its matplotlib colour and marker in every figure.
        global_keys: the experiments' global settings it answers to, as ``{setting key:
            build option}`` (``{"members": "n", "scale": "scale"}``): a setting given there is
            passed as that option unless the method's own ``[method_options]`` table sets it.
            (``epochs`` applies to every method and is not listed.)
        stochastic: its members are drawn at prediction time (MC-Dropout): ``num_samples``
            applies, and every pass over a split is seeded.
        role: ``"reference"``: the single model, the floor every other method is read against
            (cost ratios, identical members); ``"independent"``: the independent-members end
            of the spectrum (Deep Ensembles); ``""``: neither.
        drop_fraction: ``options -> float``: the share of a drop site's channels one member
            does not see, from the method's resolved build options (0 for methods that mask
            nothing).
        construction: ``options -> str``: what its members' similarity is by construction,
            before any training (the diversity study prints it beside the measured values).
        tune_grid: ``{option: [values]}``: the build options ``ensemblekit tune`` varies by
            default (and ``"epochs_factor"``, a multiple of the recipe's epochs); empty: one
            reference point.
        controls: ``{suffix: {option: value}}``: variants the diversity study trains beside
            the method (e.g. other initialisations), named ``<name>_<suffix>``.
        compiled_inference: its inference path is :func:`ensemblekit.compile_members` (the
            cost measurement then times it both compiled and tiled).
        member_width: ``options -> float``: a member's channels at a hidden layer over the
            single model's, nominal (before rounding to whole channels), from the resolved
            build options (Packed-Ensembles: ``alpha / n``); None: derived from
            ``drop_fraction`` (``1 - drop_fraction``, or 1 for a method that widens).
        spectrum_knob: the build option that moves the method along the spectrum from one
            model (value 1) to independent members (Masksembles: ``"scale"``), or None. The
            sweep varies it against the number of members and the toy draws one panel per
            value; the first method with a knob is their subject.
        panel_title: ``options -> str``: how a figure panel names one model of the method from
            its resolved build options ("MC-Dropout (p=0.1)"); None: the label.
    """

    name: str
    builder: Callable
    label: str
    color: str = "#8c564b"
    marker: str = "x"
    global_keys: Mapping[str, str] = field(default_factory=dict)
    stochastic: bool = False
    role: str = ""
    drop_fraction: Callable[[Mapping], float] = _no_drop
    construction: Callable[[Mapping], str] | None = None
    tune_grid: Mapping[str, list] = field(default_factory=dict)
    controls: Mapping[str, Mapping] = field(default_factory=dict)
    compiled_inference: bool = False
    member_width: Callable[[Mapping], float] | None = None
    spectrum_knob: str | None = None
    panel_title: Callable[[Mapping], str] | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")


METHODS = Registry("method")
_ENTRIES: dict[str, MethodEntry] = {}


def register_method(name: str, *, label: str, **facts) -> Callable[[Callable], Callable]:
    """Decorator: register ``builder`` as method ``name`` with its :class:`MethodEntry` facts
    (``label`` and any other field but ``name`` and ``builder``)."""

    def decorate(builder: Callable) -> Callable:
        entry = MethodEntry(name=name, builder=builder, label=label, **facts)
        METHODS.register(name)(builder)
        _ENTRIES[name] = entry
        return builder

    return decorate


def unregister_method(name: str) -> None:
    """Remove method ``name`` (for tests that register a throwaway method)."""
    METHODS.get(name)  # raises, listing the valid names, for an unknown one
    del METHODS._builders[name]
    del _ENTRIES[name]


#: method names in registration order: the spectrum from single to deep_ensemble
available_methods = METHODS.names
get_method = METHODS.get


def method_entry(name: str) -> MethodEntry:
    """The :class:`MethodEntry` of method ``name``; unknown names raise listing the valid ones."""
    METHODS.get(name)
    return _ENTRIES[name]


def method_entries() -> list[MethodEntry]:
    """Every method's entry, in registration order."""
    return [_ENTRIES[name] for name in METHODS.names()]


def method_with_role(role: str) -> str | None:
    """The name of the (first registered) method playing ``role``, or None."""
    for entry in method_entries():
        if entry.role == role:
            return entry.name
    return None
