"""What each experiment runs with: defaults, TOML config files, command-line overrides, checks.

Precedence, lowest first: the experiment's defaults, the dataset's recipe (:data:`RECIPES`: the
backbone, epochs and optimiser that suit it), the TOML file given with ``--config``, and the
flags given on the command line. Everything is checked by :meth:`Settings.validate` before any
data is read or any model trained, so a bad value fails in a second with a one-line message.

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
BatchEnsemble ``init``; ...) and optionally ``epochs``; they take precedence over the global
``members``, ``scale``, ``dropout`` and ``epochs`` for that method. A command-line flag of one of
those global keys (``--members``, ``--scale``, ``--dropout``, ``--epochs``) overrides the matching
entries of the tables too, so that flags keep the last word.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from .._validation import check_choice, check_float, check_int, check_seed
from ..report import json_ready

#: The five points of the spectrum, in order from one model to independent models.
ALL_METHODS = ("single", "mc_dropout", "masksembles", "batchensemble", "deep_ensemble")
#: The methods with several members whose similarity the diversity study measures.
DIVERSITY_METHODS = ("mc_dropout", "masksembles", "batchensemble", "deep_ensemble")

#: The [method_options] key that sets the training epochs of one method (not a build option).
METHOD_EPOCHS = "epochs"
#: Global keys and the [method_options] entry each stands for: a flag of the global key given
#: on the command line replaces that entry in every table (flags have the last word).
_GLOBAL_OPTIONS = {"members": "n", "scale": "scale", "dropout": "p", "epochs": METHOD_EPOCHS}

#: TrainConfig fields every experiment sets itself (per run), so a config may not.
_RUN_OWNED = ("epochs", "seed", "progress", "device", "threads", "dataset", "augment",
              "normalize")

#: What suits each dataset when neither the config nor the command line says otherwise. The
#: digits recipe is sized so that the default benchmark (5 methods x 3 seeds, 15 corruptions x
#: 5 severities, OOD) finishes in under four minutes on two CPU cores (213-232 s measured on
#: 2026-12-01). A recipe's optional ``method_options`` (``{method: {option: value}}``, e.g. the
#: tables of an ``ensemblekit tune`` run's tuned.toml) apply with the recipe's backbone only.
RECIPES: dict[str, dict] = {
    "digits": {
        "backbone": "lenet",
        "width": 3.0,
        # Masksembles trains each member on 1/n of every batch, so it fits last: 30 epochs and
        # a half-epoch warm-up to a higher peak lr fit it (training NLL ~0.05; 0.20 after 20
        # epochs at 3e-3 without warm-up), and every other method fits at least as well.
        "epochs": 30,
        # Small models on small batches: one thread beats two that wait on each other.
        "threads": 1,
        "train": {"batch_size": 64, "optimizer": "adamw", "lr": 5e-3, "warmup_epochs": 0.5,
                  "weight_decay": 1e-4, "schedule": "cosine", "precision": "fp32"},
        # Each method's own knob, chosen on the validation split (never the test set) by
        # `ensemblekit tune --dataset digits --out runs/tune-digits` (2 seeds, 52 points,
        # lowest mean validation NLL per method): configs/tuned/digits-tune.md holds the grid,
        # its costs and Pareto fronts; configs/tuned/digits-tuned.toml the picks.
        "method_options": {
            "mc_dropout": {"p": 0.1, "placement": "dropout", "epochs": 60},
            "masksembles": {"scale": 1.5, "placement": "dropout", "widen": False, "epochs": 60},
            "batchensemble": {"init": "normal"},
        },
        # What the benchmark report says about these method_options while they run unchanged
        # (report.tuned_source).
        "tuned": "configs/tuned/digits-tuned.toml holds the picks, from `ensemblekit tune "
                 "--dataset digits --out runs/tune-digits` (2 seeds, lowest mean validation "
                 "NLL per method; the grid, costs and Pareto fronts in "
                 "configs/tuned/digits-tune.md).",
    },
    "mnist": {
        "backbone": "mlp",
        "epochs": 20,
        "train": {"batch_size": 128, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.0,
                  "schedule": "constant"},
    },
    "toy_moons": {
        "backbone": "mlp",
        "hidden": [64, 64, 64],
        "epochs": 60,
        "threads": 1,
        "train": {"batch_size": 64, "optimizer": "adamw", "lr": 3e-3, "weight_decay": 1e-4,
                  "schedule": "cosine", "precision": "fp32"},
    },
}
RECIPES["fashion_mnist"] = RECIPES["mnist"]
RECIPES["toy_blobs"] = RECIPES["toy_moons"]
#: Any other image dataset (CIFAR-10/100, SVHN, ImageNet-style folders): a CIFAR ResNet.
_IMAGE_RECIPE = {
    "backbone": "resnet20",
    "epochs": 200,
    "train": {"batch_size": 128, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
              "nesterov": True, "weight_decay": 5e-4, "schedule": "cosine"},
}


@dataclass
class Settings:
    """Keys every experiment shares. Subclasses add their own; ``None`` means "the recipe's".

    - ``dataset``, ``data_dir``, ``download``: what to train on and where its files are.
    - ``backbone``, ``width``, ``hidden``: the network (``hidden``: mlp layer sizes).
    - ``epochs``; ``train``: the optimiser, as :class:`~ensemblekit.train.TrainConfig` fields.
    - ``members``: M for every method with members; ``scale``: Masksembles' mask overlap;
      ``dropout``: MC-Dropout's rate p; ``independent_batches``: each deep-ensemble member
      follows its own data order (as in Lakshminarayanan et al.), else all share batches.
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
    #: whether the recipe's tuned ``method_options`` apply (not for ``tune``, which chooses
    #: them: its grid starts from the recipe's plain settings, so that rerunning the recorded
    #: tune command reproduces the tables it wrote)
    uses_recipe_method_options = True

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def from_sources(
        cls, config: str | os.PathLike | None = None, overrides: dict | None = None
    ) -> Settings:
        """Defaults < dataset recipe < TOML file ``config`` < ``overrides``; then validated.

        ``overrides`` maps key names to values; ``None`` values are ignored (a flag not given).
        Its ``"train"`` entry, if any, is merged into the ``[train]`` table key by key, its
        ``"method_options"`` entry method by method and key by key. An override of
        ``members``, ``scale``, ``dropout`` or ``epochs`` also removes the entry it stands for
        (``n``, ``scale``, ``p``, ``epochs``) from the config's ``[method_options]`` tables.
        The recipe's ``method_options`` (tables of the dataset's validated settings) lie under
        the config's, and lose every entry whose global key the config or an override sets.
        """
        values = load_config(config, cls) if config is not None else {}
        overrides = {key: value for key, value in (overrides or {}).items()
                     if value is not None}
        recipe_options = _recipe_method_options(cls, {**values, **overrides})
        if recipe_options:
            values["method_options"] = merge_method_options(
                recipe_options, values.get("method_options", {}))
        for key, value in overrides.items():
            if key == "train":
                values["train"] = {**values.get("train", {}), **value}
            elif key in ("method_options", "grid"):  # tables of tables: merged key by key
                values[key] = merge_method_options(values.get(key, {}), value)
            else:
                values[key] = value
                if key in _GLOBAL_OPTIONS and isinstance(values.get("method_options"), dict):
                    values["method_options"] = {
                        method: ({name: item for name, item in table.items()
                                  if name != _GLOBAL_OPTIONS[key]}
                                 if isinstance(table, dict) else table)
                        for method, table in values["method_options"].items()}
        check_keys(values, cls, source="settings")
        settings = cls(**values)
        settings.apply_recipe()
        settings.validate()
        return settings

    def apply_recipe(self) -> None:
        """Fill every key left at ``None`` (and missing ``[train]`` keys) from the recipe."""
        recipe = recipe_for(self.dataset)
        # A backbone other than the recipe's keeps its own sizes (width, hidden).
        own_backbone = self.backbone is None or self.backbone == recipe["backbone"]
        keys = ("backbone", "width", "hidden") if own_backbone else ()
        keys += ("epochs", "threads")
        for key in keys:
            if getattr(self, key) is None and key in recipe:
                setattr(self, key, recipe[key])
        self.train = {**recipe.get("train", {}), **self.train}
        if self.out is None:
            self.out = str(Path("runs") / f"{self.command}-{self.dataset}")

    # -- checking ---------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise ``ValueError`` (one line, naming the key and the fix) for any bad value."""
        from .. import data, models

        # Only labelled sets with a training split can be trained on (not OOD-only sets or
        # corrupted test sets such as cifar10_c).
        trainable = [name for name in data.available_datasets()
                     if data.dataset_info(name).num_classes > 0
                     and "train" in data.dataset_info(name).splits]
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
        self.method_options = check_method_options(self.method_options)
        self.train_config(seed=0)  # TrainConfig checks its own fields

    def train_config(self, *, seed: int, method: str | None = None):
        """The :class:`~ensemblekit.train.TrainConfig` of one run (of ``method``: its
        ``[method_options]`` epochs, if set, replace the global ``epochs``)."""
        from ..train import TrainConfig

        check_keys(self.train, TrainConfig, source="[train] table",
                   valid=train_keys())
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
        """Keyword options of ``build_model`` for ``method`` under these settings: the global
        keys, then the method's ``[method_options]`` table over them (without ``epochs``)."""
        from ..data import dataset_info

        info = dataset_info(self.dataset)
        options: dict = {"seed": seed}
        if self.width is not None:
            options["width"] = self.width
        if self.backbone in ("lenet", "mlp") and info.image_size is not None:
            options["input_size"] = list(info.image_size)
        if self.hidden is not None:
            options["hidden"] = list(self.hidden)
        if method != "single":
            options["n"] = self.members
        if method == "masksembles":
            options["scale"] = self.scale
        if method == "mc_dropout":
            options["p"] = self.dropout
        if method == "deep_ensemble":
            options["independent_batches"] = self.independent_batches
        own = {key: value for key, value in self.method_options.get(method, {}).items()
               if key != METHOD_EPOCHS}
        return {**options, **own}

    def method_settings(self, method: str) -> dict:
        """What ``method`` runs with, for a report: every build option of the method with
        defaults resolved (not ``seed``), ``epochs``, and the member's share of a masked layer:

        - ``drop_fraction``: the fraction of a drop site's channels one member does not see
          (Masksembles: ``1 - keep_fraction(n, scale)``; MC-Dropout: ``p``; 0 for the rest);
        - ``member_width``: a member's channels at a drop site over the single model's,
          nominal (before rounding to whole channels): ``1 - drop_fraction``, times the
          widening ``1 / (1 - drop_fraction)`` with ``widen`` (= 1.0).
        """
        from ..masks import keep_fraction
        from ..methods.build import method_defaults

        defaults = method_defaults(method)
        resolved = {**defaults, **self.model_options(method, seed=0)}
        resolved = {key: resolved[key] for key in defaults if key != "seed"}
        if method == "masksembles":
            drop = 1.0 - keep_fraction(resolved["n"], resolved["scale"])
        elif method == "mc_dropout":
            drop = float(resolved["p"])
        else:
            drop = 0.0
        width = 1.0 if resolved.get("widen") else 1.0 - drop
        return {**resolved, METHOD_EPOCHS: self.method_epochs(method),
                "drop_fraction": drop, "member_width": width}

    def to_dict(self) -> dict:
        """All keys as JSON-friendly values (what the report records as the protocol)."""
        return json_ready(dataclasses.asdict(self))


def _recipe_method_options(settings_class, given: dict) -> dict:
    """The recipe's ``method_options`` for the dataset and backbone in ``given`` (none for a
    backbone other than the recipe's), less the entries of the global keys ``given`` sets."""
    recipe = recipe_for(given.get("dataset", settings_class.dataset))
    if not settings_class.uses_recipe_method_options:
        return {}
    if given.get("backbone", recipe["backbone"]) != recipe["backbone"]:
        return {}
    dropped = {_GLOBAL_OPTIONS[key] for key in given if key in _GLOBAL_OPTIONS}
    return {method: {key: value for key, value in table.items() if key not in dropped}
            for method, table in recipe.get("method_options", {}).items()}


def recipe_for(dataset: str) -> dict:
    """The defaults that suit ``dataset`` (see :data:`RECIPES`)."""
    if dataset in RECIPES:
        return RECIPES[dataset]
    return _IMAGE_RECIPE


def train_keys() -> list[str]:
    """The ``[train]`` keys a config may set: TrainConfig fields the experiment does not own."""
    from ..train import TrainConfig

    return [f.name for f in dataclasses.fields(TrainConfig) if f.name not in _RUN_OWNED]


def load_config(path: str | os.PathLike, settings_class: type[Settings]) -> dict:
    """Read TOML ``path`` for ``settings_class``: its keys, checked, as a dict."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} not found; pass the path of a .toml file "
                         "(see the configs/ folder)")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"config file {path} is not valid TOML: {error}") from None
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


def check_keys(values: dict, settings_class, *, source: str, valid=None) -> None:
    """Raise if ``values`` has a key that ``settings_class`` (or ``valid``) does not know."""
    if valid is None:
        valid = [f.name for f in dataclasses.fields(settings_class)]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise ValueError(f"unknown key{plural} {', '.join(map(repr, unknown))} in {source}; "
                         f"valid keys are: {', '.join(valid)}")


def method_option_keys(method: str) -> list[str]:
    """The keys of a ``[method_options.<method>]`` table: the method's ``build_model`` options
    (not ``seed``, set per run) and ``epochs``."""
    from ..methods.build import method_defaults

    return [key for key in method_defaults(method) if key != "seed"] + [METHOD_EPOCHS]


def check_method_options(method_options) -> dict:
    """``{method: {option: value}}`` checked: known methods, known keys, tables; ``epochs``,
    ``n``, ``scale``, ``p`` and ``widen`` checked here (the rest by ``build_model``). Returned
    with keys sorted so that equal tables compare (and fingerprint) equal."""
    if not isinstance(method_options, dict):
        raise ValueError("method_options must be a table of tables, e.g. "
                         f"[method_options.masksembles]; got {method_options!r}")
    check_keys(method_options, None, source="method_options", valid=list(ALL_METHODS))
    checked = {}
    for method in sorted(method_options):
        table = method_options[method]
        where = f"method_options.{method}"
        if not isinstance(table, dict):
            raise ValueError(f"{where} must be a table ([{where}] in TOML, a dict in Python), "
                             f"got {table!r}")
        check_keys(table, None, source=f"[{where}]", valid=method_option_keys(method))
        checked[method] = {key: check_option_value(f"{where}.{key}", key, table[key])
                           for key in sorted(table)}
    return checked


def check_option_value(name: str, key: str, value):
    """One ``[method_options]`` value checked (``epochs``, ``n``: int >= 1; ``scale``:
    >= 1; ``p``: in [0, 1); ``widen``: true/false); other keys are left to ``build_model``.
    ``name`` is how the error calls it."""
    if key in (METHOD_EPOCHS, "n"):
        return check_int(name, value, minimum=1)
    if key == "scale":
        return check_float(name, value, minimum=1.0)
    if key == "p":
        return check_float(name, value, minimum=0.0, maximum=1.0, max_inclusive=False)
    if key == "widen":
        return check_toml_flag(name, value)
    return value


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


def as_list(value) -> list:
    """A single name (str) or a sequence of names, as a list."""
    if isinstance(value, str):
        return [value]
    return list(value)


class ResumableRuns:
    """An experiment whose finished (point, seed) runs are kept under ``out`` and resumed: it
    runs ``seeds`` seeds; ``RESUME_FREE`` lists the keys a rerun may change freely."""

    RESUME_FREE: tuple[str, ...] = ()

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds))

    def fingerprint(self) -> dict:
        """The settings that decide a run's result (a resumed run must match them)."""
        values = self.to_dict()
        for key in self.RESUME_FREE:
            values.pop(key)
        return values


@dataclass
class BenchmarkSettings(ResumableRuns, Settings):
    """``ensemblekit benchmark``: every method x seed, trained and evaluated the same way.

    ``corruptions``: names, ``"all"`` (the 15 CIFAR-10-C benchmark kinds) or ``"none"``.
    ``ood``: a dataset name, ``"auto"`` (the dataset's registered pair) or ``"none"``.
    ``corrupted_dir``: a CIFAR-10-C-layout folder to evaluate shift on (e.g. the official
    CIFAR-10-C); by default the corrupted test sets are generated once into ``<out>/corrupted``.
    ``checkpoints``: keep per-epoch training checkpoints (a killed run resumes mid-training)
    and save every trained model under ``<out>/models``.
    """

    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    seeds: int = 3
    mc_samples: int | None = None
    corruptions: list[str] | str = "all"
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    ood: str = "auto"
    corrupted_dir: str | None = None
    checkpoints: bool = False
    eval_batch_size: int = 500

    command = "benchmark"

    #: Keys that do not change what a finished run computed: a rerun may change them freely.
    RESUME_FREE = ("methods", "seeds", "out", "data_dir", "download", "device", "threads",
                   "progress", "checkpoints", "corrupted_dir")

    def validate(self) -> None:
        super().validate()
        self.methods = check_methods(self.methods, ALL_METHODS)
        self.seeds = check_int("seeds", self.seeds, minimum=1)
        if self.mc_samples is not None:
            self.mc_samples = check_int("mc_samples", self.mc_samples, minimum=1)
        self.eval_batch_size = check_int("eval_batch_size", self.eval_batch_size, minimum=1)
        self.corruptions, self.severities = check_shift(self.dataset, self.corruptions,
                                                        self.severities)
        self.ood = check_ood(self.dataset, self.ood)
        check_toml_flag("checkpoints", self.checkpoints)

    def fingerprint(self) -> dict:
        values = super().fingerprint()
        if not values["method_options"]:
            # none set: the same runs as before the key existed, which then still resume
            values.pop("method_options")
        return values


@dataclass
class DiversitySettings(Settings):
    """``ensemblekit diversity``: how alike the members of each method are (parameter space at
    initialisation and trained, CKA of hidden representations, function space on clean,
    corrupted and OOD data), with the single model as the floor.

    ``batchensemble_controls``: fast-weight inits trained beside BatchEnsemble's own
    (``"ones"``: identical members at the start; ``"random_sign"``; ``[]`` for none).
    ``corruptions`` / ``severities`` / ``ood`` / ``corrupted_dir`` as in the benchmark;
    ``cka_samples``: CKA on the first this many test inputs; ``eval_batch_size``: inference
    batch.
    """

    methods: list[str] = field(default_factory=lambda: ["single", *DIVERSITY_METHODS])
    seeds: int = 3
    batchensemble_controls: list[str] = field(default_factory=lambda: ["ones", "random_sign"])
    corruptions: list[str] | str = "all"
    severities: list[int] = field(default_factory=lambda: [3, 5])
    ood: str = "auto"
    corrupted_dir: str | None = None
    cka_samples: int = 2000
    eval_batch_size: int = 500

    command = "diversity"

    def validate(self) -> None:
        from ..layers.batchensemble import FAST_WEIGHT_INITS

        super().validate()
        self.methods = check_methods(self.methods, ALL_METHODS)
        self.seeds = check_int("seeds", self.seeds, minimum=1)
        if self.members < 2:
            raise ValueError(f"members must be >= 2 to compare members, got {self.members}")
        self.batchensemble_controls = as_list(self.batchensemble_controls)
        for init in self.batchensemble_controls:
            check_choice("batchensemble_controls", init,
                         [name for name in FAST_WEIGHT_INITS if name != "normal"])
        if len(set(self.batchensemble_controls)) != len(self.batchensemble_controls):
            raise ValueError(f"batchensemble_controls lists an init twice: "
                             f"{self.batchensemble_controls}; list each once")
        self.corruptions, self.severities = check_shift(self.dataset, self.corruptions,
                                                        self.severities)
        self.ood = check_ood(self.dataset, self.ood)
        self.cka_samples = check_int("cka_samples", self.cka_samples, minimum=2)
        self.eval_batch_size = check_int("eval_batch_size", self.eval_batch_size, minimum=1)


@dataclass
class SweepSettings(Settings):
    """``ensemblekit sweep``: Masksembles over a grid of ``scales`` x ``ns`` (member counts),
    with ``references`` (other methods, ``members`` members) drawn as horizontal lines."""

    scales: list[float] = field(default_factory=lambda: [1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
    ns: list[int] = field(default_factory=lambda: [2, 4, 8])
    references: list[str] = field(default_factory=lambda: ["single", "mc_dropout",
                                                            "deep_ensemble"])
    seeds: int = 1
    corruptions: list[str] | str = field(default_factory=lambda: [
        "gaussian_noise", "defocus_blur", "fog", "contrast", "elastic_transform"])
    severities: list[int] = field(default_factory=lambda: [3, 5])
    ood: str = "auto"

    command = "sweep"

    def validate(self) -> None:
        super().validate()
        self.scales = sorted({check_float("scale", s, minimum=1.0) for s in as_list(self.scales)})
        self.ns = sorted({check_int("n", n, minimum=1) for n in as_list(self.ns)})
        if not self.scales or not self.ns:
            raise ValueError("scales and ns must each hold at least one value")
        self.references = check_methods(self.references, ALL_METHODS, allow_empty=True)
        if "masksembles" in self.references:
            raise ValueError("references lists the other methods; masksembles is the sweep "
                             "itself: remove it from references")
        self.seeds = check_int("seeds", self.seeds, minimum=1)
        self.corruptions, self.severities = check_shift(self.dataset, self.corruptions,
                                                        self.severities)
        self.ood = check_ood(self.dataset, self.ood)


@dataclass
class ToySettings(Settings):
    """``ensemblekit toy``: predictive-entropy maps on a 2D problem, one per method, in a row:
    single model, MC-Dropout, Masksembles at each of ``scales``, Deep Ensemble."""

    dataset: str = "toy_moons"
    scales: list[float] = field(default_factory=lambda: [1.5, 2.0, 4.0, 8.0])
    seed: int = 0
    resolution: int = 120

    command = "toy"

    def validate(self) -> None:
        super().validate()
        from ..data import dataset_info

        if dataset_info(self.dataset).is_image:
            raise ValueError(f"the toy experiment needs a 2D point dataset (toy_moons, "
                             f"toy_blobs), got image dataset {self.dataset!r}")
        self.scales = sorted({check_float("scale", s, minimum=1.0) for s in as_list(self.scales)})
        self.seed = check_seed(self.seed)
        self.resolution = check_int("resolution", self.resolution, minimum=10)


@dataclass
class TrainSettings(Settings):
    """``ensemblekit train``: one ``method`` model trained with ``seed``.

    ``resume``: continue from ``<out>/checkpoints/last.pt`` (written after every epoch) instead
    of refusing to start over it.
    """

    method: str = "masksembles"
    seed: int = 0
    resume: bool = False

    command = "train"

    def validate(self) -> None:
        super().validate()
        self.method = check_methods([self.method], ALL_METHODS)[0]
        self.seed = check_seed(self.seed)
        check_toml_flag("resume", self.resume)


#: ``ensemblekit tune``'s default grid: each method's own knobs (a method absent here, such as
#: single or deep_ensemble, is one reference point). ``epochs_factor`` multiplies ``epochs``:
#: Masksembles trains each member on 1/n of every batch and under-fits at the recipe's epochs
#: (digits, LeNet x3, one seed: validation NLL 0.103 -> 0.041 at scale 2 with masks
#: everywhere, 0.028 -> 0.016 with placement "dropout", from 30 to 60 epochs).
#: ``epochs_factor`` is offered to the two methods that train on part of the signal and fit
#: last (Masksembles: each member sees 1/n of every batch; MC-Dropout: a fraction p of every
#: unit dropped); single, BatchEnsemble and Deep Ensembles reach ~100% training accuracy at
#: the recipe's epochs (the tune table's train accuracy column shows it).
TUNE_GRID: dict[str, dict[str, list]] = {
    "masksembles": {"scale": [1.5, 2.0, 3.0, 4.0], "placement": ["all", "dropout"],
                    "widen": [False, True], "epochs_factor": [1.0, 2.0]},
    "mc_dropout": {"p": [0.05, 0.1, 0.2, 0.3], "placement": ["all", "dropout"],
                   "epochs_factor": [1.0, 2.0]},
    "batchensemble": {"init": ["normal", "random_sign"]},
}
#: The grid key that scales a method's training epochs (not a build option).
EPOCHS_FACTOR = "epochs_factor"


@dataclass
class TuneSettings(ResumableRuns, Settings):
    """``ensemblekit tune``: every ``grid`` point of each method, trained and scored on the
    validation split (never the test set), beside its measured inference cost.

    ``grid``: ``{method: {option: [values]}}``, each method's grid as lists of its
    ``build_model`` options and ``epochs_factor`` (multiplies ``epochs``); a table given in a
    config (``[grid.masksembles]``) replaces the default lists key by key (:data:`TUNE_GRID`);
    a method of ``methods`` without a grid is one point. ``budget``: e.g.
    ``"latency<=1.3x,params<=1.1x"``: the pick per method is the lowest validation NLL among the
    points within it (kinds: latency, params, flops; ratios to the single model). ``ood``:
    the OOD set scored against the validation split. ``cost_batch``: examples per timed
    call; ``cost_seconds``: least timed work per model; ``cost_rounds``: timing rounds.
    """

    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    seeds: int = 2  # the digits validation split is 250 images: one seed's pick is noisy
    grid: dict = field(default_factory=dict)
    budget: str | None = None
    ood: str = "auto"
    eval_batch_size: int = 500
    cost_batch: int = 256
    cost_seconds: float = 0.3
    cost_rounds: int = 5

    command = "tune"
    uses_recipe_method_options = False

    #: Keys that do not change a finished grid point's result: a rerun may change them freely
    #: (a point's own options are part of its record, so a changed grid resumes too).
    RESUME_FREE = ("methods", "seeds", "out", "data_dir", "download", "device", "threads",
                   "progress", "grid", "budget", "cost_batch", "cost_seconds", "cost_rounds")

    def validate(self) -> None:
        from .cost import parse_budget

        super().validate()
        self.methods = check_methods(self.methods, ALL_METHODS)
        self.seeds = check_int("seeds", self.seeds, minimum=1)
        self.grid = check_grid(merge_method_options(TUNE_GRID, self.grid))
        if self.budget is not None:
            parse_budget(self.budget)
        self.ood = check_ood(self.dataset, self.ood)
        self.eval_batch_size = check_int("eval_batch_size", self.eval_batch_size, minimum=1)
        self.cost_batch = check_int("cost_batch", self.cost_batch, minimum=2)
        self.cost_seconds = check_float("cost_seconds", self.cost_seconds, minimum=0.0)
        self.cost_rounds = check_int("cost_rounds", self.cost_rounds, minimum=1)
        if not self.validation_fraction:
            raise ValueError("tune scores every configuration on the validation split, but "
                             "validation_fraction is 0; set it above 0 (default: the "
                             "dataset's, e.g. 0.2 for digits)")


def check_grid(grid) -> dict:
    """``{method: {option: [values]}}`` checked: known methods and keys (a method's
    ``[method_options]`` keys, with ``epochs_factor`` for ``epochs``), non-empty lists without
    repeats (a single value becomes a list), every value checked as in ``[method_options]``."""
    if not isinstance(grid, dict):
        raise ValueError(f"grid must be a table of tables, e.g. [grid.masksembles]; got {grid!r}")
    check_keys(grid, None, source="grid", valid=list(ALL_METHODS))
    checked = {}
    for method in grid:
        table = grid[method]
        if not isinstance(table, dict):
            raise ValueError(f"grid.{method} must be a table ([grid.{method}] in TOML), got "
                             f"{table!r}")
        valid = [key for key in method_option_keys(method) if key != METHOD_EPOCHS]
        check_keys(table, None, source=f"[grid.{method}]", valid=[*valid, EPOCHS_FACTOR])
        values = {}
        for key, items in table.items():
            items = items if isinstance(items, list) else [items]
            if not items:
                raise ValueError(f"grid.{method}.{key} is empty; give at least one value")
            if key == EPOCHS_FACTOR:
                items = [check_float(f"grid.{method}.{key}", item, minimum=0.0,
                                     min_inclusive=False) for item in items]
            else:
                items = [check_option_value(f"grid.{method}.{key}", key, item)
                         for item in items]
            if len({json_key(item) for item in items}) != len(items):
                raise ValueError(f"grid.{method}.{key} lists a value twice: {items}; list "
                                 "each once")
            values[key] = items
        checked[method] = values
    return checked


def json_key(value) -> str:
    """A value as a JSON string, so that 1, 1.0 and True stay apart when compared."""
    return json.dumps(value, sort_keys=True)


#: The settings class of each subcommand that trains models.
SETTINGS = {cls.command: cls for cls in (BenchmarkSettings, DiversitySettings, SweepSettings,
                                         ToySettings, TrainSettings, TuneSettings)}


def check_toml_flag(name: str, value) -> bool:
    """``value`` if it is a bool, else raise in the config file's spelling (true / false)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def check_methods(methods, allowed, *, allow_empty: bool = False) -> list[str]:
    """Method names as a list: each known, no repeats, at least one (unless allowed)."""
    from ..methods import available_methods

    methods = as_list(methods)
    known = [name for name in available_methods() if name in allowed]
    for name in methods:
        check_choice("method", name, known)
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods lists a method twice: {methods}; list each once")
    if not methods and not allow_empty:
        raise ValueError(f"methods must name at least one of: {', '.join(known)}")
    return methods


def check_shift(dataset: str, corruptions, severities) -> tuple[list[str], list[int]]:
    """Resolve ``"all"`` / ``"none"`` and check corruption names and severities 1..5."""
    from ..data import BENCHMARK_CORRUPTIONS, CORRUPTIONS, dataset_info

    if corruptions == "all":
        corruptions = list(BENCHMARK_CORRUPTIONS)
    elif corruptions == "none":
        corruptions = []
    corruptions = as_list(corruptions)
    for kind in corruptions:
        check_choice("corruption", kind, CORRUPTIONS)
    if len(set(corruptions)) != len(corruptions):
        raise ValueError(f"corruptions lists a kind twice: {corruptions}; list each once")
    severities = sorted({check_int("severity", s, minimum=1, maximum=5)
                         for s in as_list(severities)})
    if corruptions and not severities:
        raise ValueError("severities must hold at least one of 1..5 when corruptions are set")
    if corruptions and not dataset_info(dataset).is_image:
        raise ValueError(f"corruptions apply to images; dataset {dataset!r} holds points: "
                         "set corruptions to \"none\"")
    return corruptions, severities


def check_ood(dataset: str, ood: str) -> str:
    """Resolve ``"auto"`` to the dataset's OOD pair (or ``"none"``) and check the name."""
    from ..data import available_datasets, dataset_info

    if ood == "auto":
        return dataset_info(dataset).ood or "none"
    if ood == "none":
        return ood
    check_choice("ood dataset", ood, [*available_datasets(), "none", "auto"])
    if ood == dataset:
        raise ValueError(f"the OOD set must differ from the dataset itself ({dataset!r})")
    return ood
