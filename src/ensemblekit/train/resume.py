"""A checkpoint after every epoch, and exact resumption from it.

The file (``checkpoint_dir/last.pt``, written atomically by the main process) holds the model,
the optimizer, schedule and scaler states, every process's RNG states, the data-order
generator, the history and the config; resuming restores all of them, so a killed run ends with
the weights an uninterrupted one would have.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .. import checkpoint, distributed
from ..seeding import get_rng_state, seed_everything, set_rng_state
from .config import TrainConfig
from .optim import Optimisation

CHECKPOINT_NAME = "last.pt"

# Fields that may change between a run and its resumption without changing what it computes.
_RESUMABLE_CHANGES = ("progress", "compile", "device", "threads", "num_workers")


def save_checkpoint(path: Path, model: nn.Module, optimisation: Optimisation,
                    data_order: torch.Generator, config: TrainConfig, epoch: int,
                    history: list[dict], context: distributed.DistributedContext,
                    best_state: dict | None = None) -> None:
    """Write the state after ``epoch`` (1-based) epochs to ``path``.

    Collective: every rank hands its RNG state to the main process, which writes the file.
    """
    rng_states = distributed.all_gather_object(get_rng_state(), context)
    if context.is_main:
        checkpoint.save_training_checkpoint(
            path,
            model=model,
            optimizer=optimisation.optimizer.state_dict(),
            scheduler=optimisation.scheduler.state_dict(),
            scaler=optimisation.scaler.state_dict(),
            epoch=epoch,
            history=history,
            rng=rng_states,
            data_order=data_order.get_state(),
            train_config=_comparable(config),
            best_state=best_state,
        )


def resume_from(path: Path, model: nn.Module, optimisation: Optimisation,
                data_order: torch.Generator, config: TrainConfig,
                context: distributed.DistributedContext) -> tuple[int, list[dict], dict | None]:
    """Restore the run saved at ``path`` into ``model``, ``optimisation``, ``data_order`` and
    the global RNGs; return ``(epochs done, history, best weights or None)``.

    Raises ``ValueError`` if the file was written with a config that computes something else
    (only the fields of ``_RESUMABLE_CHANGES`` may differ) or for another model config.
    """
    payload = checkpoint.read_checkpoint(path, kind="training")
    saved, current = payload.get("train_config") or {}, _comparable(config)
    changed = sorted(key for key in current if saved.get(key) != current[key])
    if changed:
        details = ", ".join(f"{key}: {saved.get(key)!r} -> {current[key]!r}" for key in changed)
        raise ValueError(
            f"cannot resume from {path}: the training config changed ({details}); resume with "
            "the config that wrote the checkpoint, or use a new checkpoint_dir"
        )
    model_config = getattr(model, "config", None)
    if payload["model_config"] is not None and model_config is not None \
            and dict(model_config) != payload["model_config"]:
        raise ValueError(
            f"cannot resume from {path}: it was written for model config "
            f"{payload['model_config']}, not {dict(model_config)}"
        )
    checkpoint.restore_state_dict(model, payload["state_dict"], source=str(path),
                                  file_config=payload["model_config"])
    optimisation.optimizer.load_state_dict(payload["optimizer"])
    optimisation.scheduler.load_state_dict(payload["scheduler"])
    if "scaler" in payload:
        optimisation.scaler.load_state_dict(payload["scaler"])
    data_order.set_state(payload["data_order"])
    rng_states = payload["rng"]
    if len(rng_states) == context.world_size:
        set_rng_state(rng_states[context.rank])
    else:
        # A different number of processes cannot continue the old streams; start fresh ones
        # that still depend only on the seed and the epoch.
        seed_everything(config.seed + context.rank + 1000 * payload["epoch"])
    return payload["epoch"], list(payload["history"]), payload.get("best_state")


def _comparable(config: TrainConfig) -> dict:
    """The config's fields that decide what a run computes (a resumed run must match them)."""
    values = config.to_dict()
    for key in _RESUMABLE_CHANGES:
        values.pop(key)
    return values
