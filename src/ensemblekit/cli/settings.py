"""The flags given on the command line as an experiment's Settings: a flag the chosen task's
experiment does not read is refused by name, the others override the config and the recipe."""

from __future__ import annotations

import dataclasses

from .._validation import check_int
from ..train import MAX_THREADS

_COMMON_KEYS = ("dataset", "data_dir", "download", "backbone", "width", "epochs", "members",
                "scale", "dropout", "device", "threads", "progress", "out",
                "validation_fraction")


#: Flags that one task's experiment reads and the other's does not.
_TASK_FLAGS = ("splits", "datasets", "resolution", "corruptions", "severities", "ood",
               "corrupted_dir", "checkpoints")


def flatten(values):
    """The groups of a repeatable names flag as one list; a lone 'all' or 'none' as itself."""
    if values is None:
        return None
    flat = [name for group in values for name in group]
    return flat[0] if len(flat) == 1 and flat[0] in ("all", "none") else flat


def _overrides(args, keys: tuple[str, ...]) -> dict:
    """The settings given on the command line (None: not given)."""
    values = {key: getattr(args, key, None) for key in keys}
    for key in ("methods", "corruptions", "references", "datasets"):
        if key in values:
            values[key] = flatten(values[key])
    if values.get("references") == "none":
        values["references"] = []
    train = {key: getattr(args, key) for key in ("batch_size", "lr")
             if getattr(args, key, None) is not None}
    values["train"] = train or None
    return values


def settings_from_args(args, settings_class, extra: tuple[str, ...]):
    """``settings_class`` from defaults, recipe, ``--config`` and the flags ``_COMMON_KEYS +
    extra``; sets torch's threads if ``--threads`` was given."""
    keys = {field.name for field in dataclasses.fields(settings_class)}
    for flag in _TASK_FLAGS:
        if getattr(args, flag, None) is not None and flag not in keys:
            raise ValueError(f"--{flag.replace('_', '-')} does not apply to `ensemblekit "
                             f"{args.command} --task {settings_class.task}`; drop it")
    # Runs train side by side unless told otherwise (a config's or a flag's jobs win): the
    # command line is a main program, which worker processes need.
    defaults = {"jobs": "auto"} if "jobs" in keys else None
    settings = settings_class.from_sources(args.config, _overrides(args, _COMMON_KEYS + extra),
                                           defaults=defaults)
    args.out = settings.out  # for the message of an interrupted run
    if settings.threads is not None:
        import torch

        # 100000 threads exhaust memory (stacks) and break the next import: refuse it here.
        torch.set_num_threads(check_int("threads", settings.threads, minimum=1,
                                        maximum=MAX_THREADS))
    return settings
