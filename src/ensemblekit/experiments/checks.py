"""The checks every experiment's settings share: names, tables, shift and OOD choices.

Each raises ``ValueError`` with one line that names the key, the value and the fix, before any
data is read or any model trained.
"""

from __future__ import annotations

import dataclasses
import json

from .. import data
from .._validation import check_choice, check_float, check_int
from ..methods import available_methods
from ..methods.build import backbone_defaults, method_defaults
from ..train import TrainConfig

#: The [method_options] key that sets the training epochs of one method (not a build option).
METHOD_EPOCHS = "epochs"
#: TrainConfig fields every experiment sets itself (per run), so a config may not.
RUN_OWNED = ("epochs", "seed", "progress", "device", "threads", "dataset", "augment",
             "normalize")
#: Backbone options the dataset decides (the image size), never a method's table.
SET_BY_DATA = ("input_size",)


def check_toml_flag(name: str, value) -> bool:
    """``value`` if it is a bool, else raise in the config file's spelling (true / false)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def check_keys(values: dict, settings_class, *, source: str, valid=None) -> None:
    """Raise if ``values`` has a key that ``settings_class`` (or ``valid``) does not know."""
    if valid is None:
        valid = [f.name for f in dataclasses.fields(settings_class)]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise ValueError(f"unknown key{plural} {', '.join(map(repr, unknown))} in {source}; "
                         f"valid keys are: {', '.join(valid)}")


def train_keys() -> list[str]:
    """The ``[train]`` keys a config may set: TrainConfig fields the experiment does not own."""
    return [f.name for f in dataclasses.fields(TrainConfig) if f.name not in RUN_OWNED]


def as_list(value) -> list:
    """A single name (str) or a sequence of names, as a list."""
    if isinstance(value, str):
        return [value]
    return list(value)


def json_key(value) -> str:
    """A value as a JSON string, so that 1, 1.0 and True stay apart when compared."""
    return json.dumps(value, sort_keys=True)


def check_methods(methods, *, allow_empty: bool = False) -> list[str]:
    """Method names as a list: each registered, no repeats, at least one (unless allowed)."""
    methods = as_list(methods)
    known = available_methods()
    for name in methods:
        check_choice("method", name, known)
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods lists a method twice: {methods}; list each once")
    if not methods and not allow_empty:
        raise ValueError(f"methods must name at least one of: {', '.join(known)}")
    return methods


def check_shift(dataset: str, corruptions, severities) -> tuple[list[str], list[int]]:
    """Resolve ``"all"`` / ``"none"`` and check corruption names and severities 1..5."""
    if corruptions == "all":
        corruptions = list(data.BENCHMARK_CORRUPTIONS)
    elif corruptions == "none":
        corruptions = []
    corruptions = as_list(corruptions)
    for kind in corruptions:
        check_choice("corruption", kind, data.CORRUPTIONS)
    if len(set(corruptions)) != len(corruptions):
        raise ValueError(f"corruptions lists a kind twice: {corruptions}; list each once")
    severities = sorted({check_int("severity", s, minimum=1, maximum=5)
                         for s in as_list(severities)})
    if corruptions and not severities:
        raise ValueError("severities must hold at least one of 1..5 when corruptions are set")
    if corruptions and not data.dataset_info(dataset).is_image:
        raise ValueError(f"corruptions apply to images; dataset {dataset!r} holds points: "
                         "set corruptions to \"none\"")
    return corruptions, severities


def check_ood(dataset: str, ood: str) -> str:
    """Resolve ``"auto"`` to the dataset's OOD pair (or ``"none"``) and check the name."""
    if ood == "auto":
        return data.dataset_info(dataset).ood or "none"
    if ood == "none":
        return ood
    check_choice("ood dataset", ood, [*data.available_datasets(), "none", "auto"])
    if ood == dataset:
        raise ValueError(f"the OOD set must differ from the dataset itself ({dataset!r})")
    return ood


def backbone_option_keys(backbone: str | None) -> list[str]:
    """The options of ``backbone`` a method's table may set (``width``, ``hidden``...; not
    those the dataset decides); none for an unknown or unset backbone."""
    if backbone is None:
        return []
    try:
        defaults = backbone_defaults(backbone)
    except ValueError:  # an unknown backbone: Settings.validate names it
        return []
    return [key for key in defaults if key not in SET_BY_DATA]


def method_option_keys(method: str, backbone: str | None = None) -> list[str]:
    """The keys of a ``[method_options.<method>]`` table: the method's ``build_model`` options
    (not ``seed``, set per run), ``epochs``, then the options of ``backbone`` (a method added
    later, e.g. MIMO, may need its own width)."""
    own = [key for key in method_defaults(method) if key != "seed"]
    return [*own, METHOD_EPOCHS, *(key for key in backbone_option_keys(backbone)
                                   if key not in own)]


def check_method_options(method_options, backbone: str | None = None) -> dict:
    """``{method: {option: value}}`` checked: known methods, known keys, tables; ``epochs``,
    ``n``, ``scale``, ``p``, ``widen``, ``width`` and ``hidden`` checked here (the rest by
    ``build_model``). Returned with keys sorted so that equal tables compare (and
    fingerprint) equal."""
    if not isinstance(method_options, dict):
        raise ValueError("method_options must be a table of tables, e.g. "
                         f"[method_options.masksembles]; got {method_options!r}")
    check_keys(method_options, None, source="method_options", valid=available_methods())
    checked = {}
    for method in sorted(method_options):
        table = method_options[method]
        where = f"method_options.{method}"
        if not isinstance(table, dict):
            raise ValueError(f"{where} must be a table ([{where}] in TOML, a dict in Python), "
                             f"got {table!r}")
        check_keys(table, None, source=f"[{where}]", valid=method_option_keys(method, backbone))
        checked[method] = {key: check_option_value(f"{where}.{key}", key, table[key])
                           for key in sorted(table)}
    return checked


def check_option_value(name: str, key: str, value):
    """One ``[method_options]`` value checked (``epochs``, ``n``: int >= 1; ``scale``: >= 1;
    ``p``: in [0, 1); ``widen``: true/false; ``width``: > 0; ``hidden``: sizes >= 1); other
    keys are left to ``build_model``. ``name`` is how the error calls it."""
    if key in (METHOD_EPOCHS, "n"):
        return check_int(name, value, minimum=1)
    if key == "scale":
        return check_float(name, value, minimum=1.0)
    if key == "p":
        return check_float(name, value, minimum=0.0, maximum=1.0, max_inclusive=False)
    if key == "widen":
        return check_toml_flag(name, value)
    if key == "width":
        return check_float(name, value, minimum=0.0, min_inclusive=False)
    if key == "hidden":
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise ValueError(f"{name} must be a list of layer sizes, e.g. [64, 32], got "
                             f"{value!r}")
        return [check_int(f"{name} size", size, minimum=1) for size in value]
    return value


def check_run_keys(settings) -> None:
    """The keys every benchmark shares, checked in place: ``methods`` (registered, no
    repeats), ``seeds`` >= 1, ``mc_samples`` (None or >= 1), ``eval_batch_size`` >= 1."""
    settings.methods = check_methods(settings.methods)
    settings.seeds = check_int("seeds", settings.seeds, minimum=1)
    if settings.mc_samples is not None:
        settings.mc_samples = check_int("mc_samples", settings.mc_samples, minimum=1)
    settings.eval_batch_size = check_int("eval_batch_size", settings.eval_batch_size,
                                         minimum=1)
