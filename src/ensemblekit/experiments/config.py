"""What each experiment runs with: the settings every experiment shares, read from four
layers (:func:`resolve`: defaults < the dataset's recipe < a TOML config file < flags) and
checked by :meth:`Settings.validate` before any data is read or any model trained, so a bad
value fails in a second with a one-line message.

A config file holds the keys of one experiment at top level and the optimiser in a ``[train]``
table (any :class:`~ensemblekit.train.TrainConfig` field the experiment does not set itself)::

    command = "benchmark"          # optional; if present it must match the subcommand
    dataset = "cifar10"
    backbone = "resnet20"
    epochs = 200
    [train]
    optimizer = "sgd"
    lr = 0.1
    [method_options.masksembles]   # one method's own build_model options (and epochs)
    n = 4
    scale = 2.0

Unknown keys are an error that names the key and lists the valid ones.

``[method_options.<method>]`` tables hold a method's own ``build_model`` options (Masksembles
``n``, ``scale``, ``placement``, ``widen``; MC-Dropout ``p``, ``n``, ``placement``, ``widen``;
BatchEnsemble ``init``; ...), the backbone's (``width``...) and optionally ``epochs``; they take
precedence over the global keys the method answers to (its registry entry's ``global_keys``:
``members``, ``scale``, ``dropout``...) and ``epochs``. A flag of one of those global keys
(``--members``, ``--scale``, ``--dropout``, ``--epochs``) overrides the matching entries of the
tables too, so that flags keep the last word.

Each experiment's own settings class (its extra keys and checks) lives beside the experiment
(:class:`~ensemblekit.experiments.benchmark.BenchmarkSettings`...).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import data, models
from .._validation import check_choice, check_float, check_int
from ..methods import available_methods, method_entry
from ..methods.build import backbone_defaults, method_defaults
from ..report import json_ready
from ..train import TrainConfig
from .checks import (
    METHOD_EPOCHS,
    backbone_option_keys,
    check_keys,
    check_method_options,
    check_toml_flag,
    train_keys,
)
from .recipes import read_toml, recipe_for


@dataclass
class Settings:
    """Keys every experiment shares. Subclasses add their own; ``None`` means "the recipe's".

    - ``dataset``, ``data_dir``, ``download``: what to train on and where its files are.
    - ``backbone``, ``width``, ``hidden``: the network (``hidden``: mlp layer sizes).
    - ``epochs``; ``train``: the optimiser, as :class:`~ensemblekit.train.TrainConfig` fields.
    - ``members``: M for every method with members; ``scale``: Masksembles' mask overlap;
      ``dropout``: MC-Dropout's rate p; ``independent_batches``: each deep-ensemble member
      follows its own data order (as in Lakshminarayanan et al.), else all share batches.
      Which method reads which is its registry entry's ``global_keys``.
    - ``method_options``: ``{method: {option: value}}``, each method's own ``build_model``
      options and ``epochs``, over the global keys above (module docstring).
    - ``out``: output folder (default ``runs/<command>-<dataset>``); ``device``; ``threads``:
      torch CPU threads; ``progress``: a progress bar per training run.
    - ``validation_fraction``: the part of the training split held out for validation (fixed
      split seed, the same for every method and seed; see :mod:`ensemblekit.data.validation`);
      ``None``: the dataset's default (digits 0.2, others 0.1); 0: no validation split.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    backbone: str | None = None
    width: float | None = None
    hidden: list[int] | None = None
    epochs: int | None = None
    members: int = 4
    scale: float = 2.0
    dropout: float = 0.1
    independent_batches: bool = True
    out: str | None = None
    device: str | None = None
    threads: int | None = None
    progress: bool = False
    validation_fraction: float | None = None
    train: dict = field(default_factory=dict)
    method_options: dict = field(default_factory=dict)

    command = ""  # the subcommand these settings belong to
    #: the task the experiment runs (a class fact, not a key: classification records and
    #: fingerprints stay as they were); it decides which datasets it trains on
    task = "classification"
    #: whether the recipe's tuned ``method_options`` apply (not for ``tune``, which chooses
    #: them: its grid starts from the recipe's plain settings, so that rerunning the recorded
    #: tune command reproduces the tables it wrote)
    uses_recipe_method_options = True

    @classmethod
    def from_sources(
        cls, config: str | os.PathLike | None = None, overrides: dict | None = None, *,
        defaults: dict | None = None
    ) -> Settings:
        """The settings from defaults (the class's, under ``defaults``) < dataset recipe <
        TOML file ``config`` < ``overrides`` (the rules: :func:`resolve`), validated."""
        settings = cls(**resolve(cls, config, overrides, defaults=defaults))
        settings.validate()
        return settings

    # -- checking ---------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise ``ValueError`` (one line, naming the key and the fix) for any bad value."""
        # Only labelled sets of the experiment's task with a training split can be trained on
        # (not OOD-only sets, corrupted test sets such as cifar10_c, or another task's sets).
        trainable = [name for name in data.available_datasets()
                     if _trains_on(data.dataset_info(name), self.task)]
        if self.dataset in data.available_datasets() and self.dataset not in trainable:
            info = data.dataset_info(self.dataset)
            if _trains_on(info, info.task):  # a training set of another task: say which
                raise ValueError(f"dataset {self.dataset!r} is a {info.task} set, but "
                                 f"`{self.command or 'this experiment'}` runs {self.task} here; "
                                 f"pass --task {info.task} or pick one of: "
                                 f"{', '.join(trainable)}")
        check_choice("dataset", self.dataset, trainable)
        check_choice("backbone", self.backbone, models.available_backbones())
        if self.width is not None:
            check_float("width", self.width, minimum=0.0, min_inclusive=False)
        if self.hidden is not None:
            if self.backbone != "mlp":
                raise ValueError(f"hidden sets the layer sizes of the mlp backbone, but the "
                                 f"backbone is {self.backbone!r}; drop hidden or use mlp")
            self.hidden = [check_int("hidden size", size, minimum=1) for size in self.hidden]
        self.epochs = check_int("epochs", self.epochs, minimum=1)
        self.members = check_int("members", self.members, minimum=1)
        self.scale = check_float("scale", self.scale, minimum=1.0)
        self.dropout = check_float("dropout", self.dropout, minimum=0.0, maximum=1.0,
                                   max_inclusive=False)
        if self.threads is not None:
            self.threads = check_int("threads", self.threads, minimum=1)
        if self.validation_fraction is None:
            self.validation_fraction = data.default_validation_fraction(self.dataset)
        self.validation_fraction = check_float("validation_fraction", self.validation_fraction,
                                               minimum=0.0, maximum=1.0, max_inclusive=False)
        for key in ("download", "progress", "independent_batches"):
            check_toml_flag(key, getattr(self, key))
        self.method_options = check_method_options(self.method_options, self.backbone)
        self.train_config(seed=0)  # TrainConfig checks its own fields

    # -- what one run gets ------------------------------------------------------------------

    def train_config(self, *, seed: int, method: str | None = None) -> TrainConfig:
        """The :class:`~ensemblekit.train.TrainConfig` of one run (of ``method``: its
        ``[method_options]`` epochs, if set, replace the global ``epochs``)."""
        check_keys(self.train, TrainConfig, source="[train] table", valid=train_keys())
        epochs = self.method_epochs(method)
        train = dict(self.train)
        if train.get("schedule") == "multistep" and isinstance(train.get("milestones"), list) \
                and isinstance(epochs, int):
            # A run shorter than the recipe (--epochs 1, a quick check of a config) drops the
            # milestones it never reaches: the same learning rates, and a valid TrainConfig
            # (anything but an int is left for TrainConfig to reject).
            train["milestones"] = [m for m in train["milestones"]
                                   if not isinstance(m, int) or m < epochs]
            if not train["milestones"]:
                train["schedule"] = "constant"
        return TrainConfig(**train, epochs=epochs, seed=seed,
                           dataset=self.dataset, progress=self.progress, device=self.device,
                           threads=self.threads)

    def method_epochs(self, method: str | None) -> int:
        """Training epochs of ``method``: its ``[method_options]`` epochs, else ``epochs``."""
        return self.method_options.get(method, {}).get(METHOD_EPOCHS, self.epochs)

    def model_options(self, method: str, *, seed: int) -> dict:
        """Keyword options of ``build_model`` for ``method`` under these settings: the
        backbone's sizes, the global keys the method answers to (its registry entry's
        ``global_keys``), then its ``[method_options]`` table over them (without ``epochs``)."""
        info = data.dataset_info(self.dataset)
        options: dict = {"seed": seed}
        if self.width is not None:
            options["width"] = self.width
        if "input_size" in backbone_defaults(self.backbone) and info.image_size is not None:
            options["input_size"] = list(info.image_size)
        if self.hidden is not None:
            options["hidden"] = list(self.hidden)
        for key, option in method_entry(method).global_keys.items():
            options[option] = getattr(self, key)
        own = {key: value for key, value in self.method_options.get(method, {}).items()
               if key != METHOD_EPOCHS}
        return {**options, **own}

    def method_settings(self, method: str) -> dict:
        """What ``method`` runs with, for a report: every build option of the method with
        defaults resolved (not ``seed``), any backbone option its table sets, ``epochs``, and
        the member's share of a masked layer:

        - ``drop_fraction``: the fraction of a drop site's channels one member does not see
          (the registry entry's ``drop_fraction``: Masksembles ``1 - keep_fraction(n,
          scale)``, MC-Dropout ``p``, 0 for methods that mask nothing);
        - ``member_width``: a member's channels at a drop site over the single model's,
          nominal (before rounding to whole channels): ``1 - drop_fraction``, times the
          widening ``1 / (1 - drop_fraction)`` with ``widen`` (= 1.0).
        """
        defaults = method_defaults(method)
        options = self.model_options(method, seed=0)
        resolved = {**defaults, **options}
        resolved = {key: resolved[key] for key in defaults if key != "seed"}
        own = self.method_options.get(method, {})
        resolved.update({key: options[key] for key in backbone_option_keys(self.backbone)
                         if key in own and key not in resolved})
        drop = method_entry(method).drop_fraction(resolved)
        width = 1.0 if resolved.get("widen") else 1.0 - drop
        return {**resolved, METHOD_EPOCHS: self.method_epochs(method),
                "drop_fraction": drop, "member_width": width}

    def to_dict(self) -> dict:
        """All keys as JSON-friendly values (what the report records as the protocol)."""
        return json_ready(dataclasses.asdict(self))


def _trains_on(info, task: str) -> bool:
    """Whether a dataset is a training set of ``task``: labelled (classes, or regression
    targets) and with a training split."""
    if "train" not in info.splits or info.task != task:
        return False
    return info.num_classes > 0 or info.is_regression


def resolve(settings_class: type[Settings], config: str | os.PathLike | None = None,
            overrides: dict | None = None, *, defaults: dict | None = None) -> dict:
    """The keyword arguments of ``settings_class`` from four layers, lowest first.

    The rules, stated here once:

    1. **Defaults**: the class's field defaults, under the caller's ``defaults`` (the command
       line runs ``jobs="auto"``); ``out`` defaults to ``runs/<command>-<dataset>``.
    2. **The dataset's recipe** (:func:`~ensemblekit.experiments.recipes.recipe_for` of the
       dataset the layers above choose): it fills ``epochs`` and ``threads``, and
       ``backbone``, ``width``, ``hidden`` unless another backbone is chosen (which keeps its
       own sizes); its ``[train]`` keys lie under the config's and the flags'; its
       ``[method_options]`` tables (only for classes with ``uses_recipe_method_options``, and
       only with the recipe's backbone) lie under the config's, less every entry whose global
       key the config or a flag sets.
    3. **The TOML file** ``config`` (:func:`load_config`): its keys over the recipe's.
    4. **Overrides** (the flags; ``None`` values are flags not given), over everything:
       ``train`` is merged key by key, ``method_options`` and ``grid`` method by method and
       key by key, in the order given; an override of a global key (``members``, ``scale``,
       ``dropout``... as each method's registry entry maps it, and ``epochs``) also removes the
       entry it stands for (``n``, ``scale``, ``p``, ``epochs``...) from every
       ``[method_options]`` table already there, so that flags have the last word.

    Unknown keys raise, naming them. Values are checked later, by ``validate``.
    """
    # the caller's defaults lie under everything else: never "given" (which decides the
    # recipe's tables), only filled in where no other layer set the key
    field_defaults = {**{f.name: f.default for f in dataclasses.fields(settings_class)
                         if f.default is not dataclasses.MISSING}, **(defaults or {})}
    values = load_config(config, settings_class) if config is not None else {}
    overrides = {key: value for key, value in (overrides or {}).items() if value is not None}
    given = {**values, **overrides}
    recipe = recipe_for(given.get("dataset", settings_class.dataset))
    backbone = given.get("backbone", field_defaults.get("backbone"))
    recipe_backbone = backbone is None or backbone == recipe.get("backbone")
    tables = recipe.get("method_options", {})
    if tables and settings_class.uses_recipe_method_options and recipe_backbone:
        tables = {method: _without_globals(method, table, given)
                  for method, table in tables.items()}
        values["method_options"] = merge_method_options(tables, values.get("method_options", {}))
    for key, value in overrides.items():
        if key == "train":
            values["train"] = {**values.get("train", {}), **value}
        elif key in ("method_options", "grid"):  # tables of tables: merged key by key
            values[key] = merge_method_options(values.get(key, {}), value)
        else:
            values[key] = value
            if isinstance(values.get("method_options"), dict):
                values["method_options"] = {
                    method: _without_globals(method, table, {key: value})
                    for method, table in values["method_options"].items()}
    check_keys({**(defaults or {}), **values}, settings_class, source="settings")
    filled = ("backbone", "width", "hidden") if recipe_backbone else ()
    for key in (*filled, "epochs", "threads"):
        if values.get(key, field_defaults.get(key)) is None and key in recipe:
            values[key] = recipe[key]
    values["train"] = {**recipe.get("train", {}), **values.get("train", {})}
    if values.get("out", field_defaults.get("out")) is None:
        dataset = values.get("dataset", field_defaults.get("dataset"))
        values["out"] = str(Path("runs") / f"{settings_class.command}-{dataset}")
    return {**(defaults or {}), **values}


def global_options(method: str) -> dict[str, str]:
    """``{global setting key: [method_options] key}`` of ``method``: its registry entry's
    ``global_keys`` and ``epochs`` (every method's); none but ``epochs`` for an unknown name
    (the check of the tables names it)."""
    keys = method_entry(method).global_keys if method in available_methods() else {}
    return {**keys, METHOD_EPOCHS: METHOD_EPOCHS}


def _without_globals(method: str, table, given: dict):
    """``table`` (of ``method``) less the entries of the global keys that ``given`` sets."""
    if not isinstance(table, dict):
        return table  # not a table: the check of the tables names it
    dropped = {option for key, option in global_options(method).items() if key in given}
    return {name: item for name, item in table.items() if name not in dropped}


def load_config(path: str | os.PathLike, settings_class: type[Settings]) -> dict:
    """Read TOML ``path`` for ``settings_class``: its keys, checked, as a dict."""
    path = Path(path)
    values = read_toml(path, "config file", ValueError(
        f"config file {path} not found; pass the path of a .toml file (see the configs/ "
        "folder)"))
    command = values.pop("command", settings_class.command)
    if command != settings_class.command:
        raise ValueError(f"config file {path} is for the {command!r} command, not "
                         f"{settings_class.command!r}; run `ensemblekit {command} --config "
                         f"{path}`")
    check_keys(values, settings_class, source=f"config file {path}")
    if "train" in values:
        if not isinstance(values["train"], dict):
            raise ValueError(f"config file {path}: train must be a [train] table")
        check_keys(values["train"], None, source=f"[train] table of {path}",
                   valid=train_keys())
    return values


def merge_method_options(base: dict, extra: dict) -> dict:
    """``extra``'s ``[method_options]`` tables over ``base``'s, method by method, key by key."""
    merged = {method: dict(table) if isinstance(table, dict) else table
              for method, table in base.items()}
    for method, table in extra.items():
        if isinstance(table, dict) and isinstance(merged.get(method), dict):
            merged[method] = {**merged[method], **table}
        else:
            merged[method] = table
    return merged
