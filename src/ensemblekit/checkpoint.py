"""Checkpoints that rebuild a model from the file alone, for every method.

A checkpoint is a ``torch.save``'d dict with a format tag and version, the model's ``config``
(``build_model(**config)`` rebuilds the architecture) and its full ``state_dict`` -- Masksembles
masks, BatchEnsemble fast weights and every ensemble member included. A model made by a
converter of :mod:`ensemblekit.convert` has no config but a ``recipe`` (converter, options and
every site with its width, plain JSON data): ``load(path, into=network)`` replays it on a fresh
copy of your unconverted network (:func:`ensemblekit.convert.apply_recipe`) and loads the
weights; no code travels in the file. Training checkpoints
(written by :func:`ensemblekit.train.train_model` after every epoch) add the optimizer,
learning-rate schedule, gradient scaler, random-number-generator states and epoch, so a killed
run resumes exactly. ``load`` reads training checkpoints too.

Files are written atomically (temporary file, fsync, rename): a process killed mid-save leaves
the previous checkpoint intact. Before a file is read, the CRC-32 that the zip archive of
``torch.save`` stores for every member is verified (``torch.load`` itself does not), so a flipped
bit in a weight is an error, not a silently different model. Files are read with
``torch.load(weights_only=True)``, so reading an untrusted file runs no pickled code. Anything
that is not a complete, intact checkpoint of this format raises ``ValueError`` naming the file
and the problem.
"""

from __future__ import annotations

import copy
import json
import os
import zipfile
from pathlib import Path

import torch
from torch import nn

from ._validation import check_choice, check_device
from .atomic import atomic_torch_save
from .calibration import scaler_from_metadata
from .convert import apply_recipe
from .methods import build_model

FORMAT = "ensemblekit.checkpoint"
#: the newest format this module reads; it writes 1 for build_model models (unchanged since
#: version 1) and 2 for converted ones (version 1 readers cannot rebuild those)
FORMAT_VERSION = 2
_KINDS = ("model", "training")
_TRAINING_KEYS = ("optimizer", "scheduler", "epoch", "history", "rng", "data_order")
_LISTED = 8  # how many offending keys an error message spells out


def save(model: nn.Module, path: str | os.PathLike, *, metadata: dict | None = None) -> Path:
    """Write ``model`` (its ``config`` and full ``state_dict``) to ``path`` atomically.

    ``model`` must come from :func:`ensemblekit.methods.build_model` (anything with a
    JSON-serialisable ``.config`` that ``build_model(**config)`` accepts) or from a converter
    of :mod:`ensemblekit.convert` (its ``.recipe`` is stored). ``metadata`` is an optional
    JSON-serialisable dict stored alongside (dataset name, metrics, ...).
    """
    path = _check_destination(path)
    payload = _model_payload(model, kind="model", require_config=True)
    if metadata is not None:
        payload["metadata"] = _check_json("metadata", metadata)
    return atomic_torch_save(payload, path)


def load(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    *,
    into: nn.Module | None = None,
) -> nn.Module:
    """Rebuild the model stored at ``path`` (a :func:`save` or training checkpoint), in eval mode.

    A ``build_model`` model is rebuilt from the file alone. A converted model is rebuilt on
    ``into``, a fresh instance of the network it was converted from (unconverted, any weights:
    they are overwritten); ``into`` is converted in place, as the converter did, and wrapped.
    Building the model does not disturb the caller's random-number generators, and the stored
    tensors are copied in exactly: the reloaded model predicts bit-identically to the saved one.
    """
    if into is not None and not isinstance(into, nn.Module):
        raise TypeError(f"into must be a torch.nn.Module (your unconverted network), got "
                        f"{type(into).__name__}")
    payload = read_checkpoint(path, map_location=map_location)
    config, recipe = payload["model_config"], payload.get("recipe")
    if recipe is not None:
        model = _rebuild_converted(path, recipe, into)
    elif into is not None:
        raise ValueError(
            f"{path} holds a model built by ensemblekit.build_model, not one converted from "
            "your own network; drop into=: ensemblekit.load(path) rebuilds it from the file"
            if config is not None else
            f"{path} holds weights but neither a model config nor a conversion recipe; copy "
            "them into your model with ensemblekit.load_into(model, path)"
        )
    elif config is None:
        raise ValueError(
            f"{path} holds weights but no model config (the model was not built with "
            "ensemblekit.methods.build_model); build the same model yourself and call "
            "ensemblekit.checkpoint.load_into(model, path)"
        )
    else:
        # Building initialises weights (and may draw masks) from the global RNG; fork it so
        # loading a model leaves the caller's random stream where it was.
        with torch.random.fork_rng(devices=[]):
            try:
                model = build_model(**config)
            except (TypeError, ValueError, KeyError) as error:
                raise ValueError(
                    f"{path}: cannot rebuild the model from its stored config {config}: {error}"
                ) from error
    restore_state_dict(model, payload["state_dict"], source=str(path), file_config=config)
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    return model.eval()


def _rebuild_converted(path, recipe: dict, into: nn.Module | None) -> nn.Module:
    """The converted model of ``recipe`` on the network ``into`` (weights not yet loaded)."""
    converter = recipe.get("converter")
    if into is None:
        raise ValueError(
            f"{path} holds a model that {converter} made from your own network, which the file "
            "does not contain (only its weights and the conversion recipe); pass a fresh "
            "instance of that network, unconverted: ensemblekit.load(path, into=MyNetwork())"
        )
    # Converting builds layers that draw from the global RNG (fast weights; masks have a
    # seed); fork it so loading leaves the caller's random stream where it was.
    with torch.random.fork_rng(devices=[]):
        try:
            return apply_recipe(into, recipe)
        except (TypeError, ValueError, KeyError) as error:
            raise ValueError(f"{path}: cannot rebuild the {converter} model on the "
                             f"{type(into).__name__} passed as into: {error}") from error


def load_into(
    model: nn.Module, path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> nn.Module:
    """Copy the weights stored at ``path`` (a checkpoint of this format, or a bare
    ``torch.save(model.state_dict(), path)`` file) into an existing ``model``; explain any
    mismatch."""
    payload = read_checkpoint(path, map_location=map_location, bare_state_dict=True)
    restore_state_dict(
        model, payload["state_dict"], source=str(path), file_config=payload["model_config"]
    )
    return model


def restore_state_dict(
    model: nn.Module, state_dict: dict, *, source: str, file_config: dict | None = None
) -> None:
    """``model.load_state_dict(state_dict)``, raising a ``ValueError`` that lists what differs.

    The message names missing and unexpected keys, keys whose shapes differ (file vs model),
    and the differing fields of the two configs when both are known.
    """
    own = model.state_dict()
    missing = sorted(own.keys() - state_dict.keys())
    unexpected = sorted(state_dict.keys() - own.keys())
    reshaped = [
        f"{key}: file {tuple(state_dict[key].shape)} vs model {tuple(own[key].shape)}"
        for key in own.keys() & state_dict.keys()
        if tuple(own[key].shape) != tuple(state_dict[key].shape)
    ]
    if missing or unexpected or reshaped:
        problems = []
        if missing:
            problems.append(f"keys the file lacks: {_shortlist(missing)}")
        if unexpected:
            problems.append(f"keys the model lacks: {_shortlist(unexpected)}")
        if reshaped:
            problems.append(f"shape mismatches: {_shortlist(sorted(reshaped))}")
        model_config = getattr(model, "config", None)
        if isinstance(file_config, dict) and isinstance(model_config, dict):
            differing = [
                f"{key}={file_config.get(key)!r} in the file vs {model_config.get(key)!r}"
                for key in sorted(file_config.keys() | model_config.keys())
                if file_config.get(key) != model_config.get(key)
            ]
            if differing:
                problems.append(f"config differs: {', '.join(differing)}")
        raise ValueError(
            f"{source} does not fit this model's architecture; " + "; ".join(problems)
            + ". Build the model with the file's config (ensemblekit.checkpoint.load rebuilds "
            "it for you)"
        )
    model.load_state_dict(state_dict)


def read_checkpoint(
    path: str | os.PathLike,
    *,
    map_location: str | torch.device = "cpu",
    kind: str | None = None,
    bare_state_dict: bool = False,
) -> dict:
    """Read and validate a checkpoint file; return its payload dict.

    ``kind="training"`` additionally requires the resume state that ``train_model`` writes.
    ``bare_state_dict=True`` also accepts a file holding only a ``state_dict`` (returned as the
    payload of a model checkpoint without config).
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for
    anything else: not a torch file, truncated, written by something else, newer format.
    """
    if kind is not None:
        check_choice("checkpoint kind", kind, _KINDS)
    if isinstance(map_location, (str, torch.device)):
        check_device("map_location", map_location)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    payload = _torch_load(path, map_location)
    if bare_state_dict and _is_state_dict(payload) and payload:
        return {"format": FORMAT, "format_version": 1, "kind": "model", "model_config": None,
                "state_dict": dict(payload)}
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an ensemblekit checkpoint: {_describe_foreign(payload)}")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{path} has checkpoint format version {version!r}; this ensemblekit reads versions "
            f"up to {FORMAT_VERSION}: upgrade ensemblekit to read it"
        )
    if kind is not None and payload.get("kind") in _KINDS and payload["kind"] != kind:
        raise ValueError(
            f"{path} is a {payload['kind']!r} checkpoint, but a {kind!r} checkpoint is needed "
            "(training checkpoints are the ones train_model writes into checkpoint_dir)"
        )
    required = ("kind", "model_config", "state_dict")
    if payload.get("kind") == "training":
        required += _TRAINING_KEYS
    problems = [f"missing {key!r}" for key in required if key not in payload]
    if payload.get("kind") not in _KINDS:
        problems.append(f"unknown kind {payload.get('kind')!r}")
    if not _is_state_dict(payload.get("state_dict", {})):
        problems.append("'state_dict' is not a dict of named tensors")
    if not isinstance(payload.get("model_config", {}), (dict, type(None))):
        problems.append("'model_config' is not a dict")
    if not isinstance(payload.get("recipe"), (dict, type(None))):
        problems.append("'recipe' is not a dict")
    if problems:
        raise ValueError(
            f"{path} is an incomplete ensemblekit checkpoint ({', '.join(problems)}); it was "
            "not written by ensemblekit.save or train_model"
        )
    return payload


def save_training_checkpoint(path: str | os.PathLike, *, model: nn.Module, **state) -> Path:
    """Write a training checkpoint atomically: the model plus the resume state in ``state``.

    ``state`` must hold the keys ``optimizer``, ``scheduler``, ``epoch``, ``history``, ``rng``
    (one :func:`ensemblekit.seeding.get_rng_state` per process) and ``data_order`` (the
    data-order generator's state); extra keys (``scaler``, ``train_config``) are kept.
    """
    absent = [key for key in _TRAINING_KEYS if key not in state]
    if absent:
        raise ValueError(f"a training checkpoint needs {', '.join(absent)}")
    payload = _model_payload(model, kind="training", require_config=False)
    payload.update(state)
    return atomic_torch_save(payload, path)


def _model_payload(model: nn.Module, *, kind: str, require_config: bool) -> dict:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    config = getattr(model, "config", None)
    recipe = getattr(model, "recipe", None) if config is None else None
    if config is None and recipe is None and require_config:
        raise ValueError(
            f"{type(model).__name__} has no .config or .recipe, so the file could not rebuild "
            "it; build models with ensemblekit.methods.build_model or convert your network "
            "with ensemblekit.convert, or save a bare state_dict with "
            "torch.save(model.state_dict(), path)"
        )
    if config is not None:
        config = _check_json("model.config", dict(config))
    payload = {
        "format": FORMAT,
        "format_version": 1,
        "kind": kind,
        "model_config": config,
        "state_dict": model.state_dict(),
    }
    if recipe is not None:
        payload["recipe"] = _check_json("model.recipe", copy.deepcopy(dict(recipe)))
        payload["format_version"] = 2
    return payload


def _check_destination(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike), got "
                        f"{type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {path} is a folder; pass a file path such as {path / 'model.pt'}")
    return path


def _is_zipfile(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except (zipfile.BadZipFile, OSError, ValueError):  # a damaged end-of-archive record
        return False


def _check_integrity(path: Path) -> None:
    """Verify the CRC-32 of every member of the zip archive (``torch.load`` does not)."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except Exception as error:  # BadZipFile, EOFError, NotImplementedError, ...: damaged headers
        raise ValueError(
            f"{path} is corrupt: its zip structure cannot be read ({type(error).__name__}: "
            f"{error}); restore it from a copy or save the model again"
        ) from error
    if damaged is not None:
        raise ValueError(
            f"{path} is corrupt: {damaged!r} fails its CRC-32 check (bytes changed after it was "
            "written); restore it from a copy or save the model again"
        )


def _torch_load(path: Path, map_location) -> object:
    if not _is_zipfile(path):
        size = path.stat().st_size
        raise ValueError(
            f"{path} is not a torch checkpoint ({'empty file' if size == 0 else f'{size} bytes'} "
            "without the zip structure torch.save writes); it is truncated or a different kind "
            "of file"
        )
    _check_integrity(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(
            f"{path} cannot be read as an ensemblekit checkpoint: it is truncated, corrupt, or "
            f"holds objects other than tensors and plain containers "
            f"({type(error).__name__}: {reason[:200]})"
        ) from error


def _is_state_dict(value) -> bool:
    return isinstance(value, dict) and all(
        isinstance(key, str) and isinstance(tensor, torch.Tensor) for key, tensor in value.items()
    )


def _describe_foreign(payload) -> str:
    if not isinstance(payload, dict):
        return f"it holds a {type(payload).__name__}, not a checkpoint dict"
    if payload and all(isinstance(value, torch.Tensor) for value in payload.values()):
        return (
            "it looks like a bare state_dict (no 'format' key); build the model and call "
            "ensemblekit.load_into(model, path)"
        )
    keys = ", ".join(repr(key) for key in list(payload)[:_LISTED])
    return f"no {FORMAT!r} format key (top-level keys: {keys or 'none'})"


def _check_json(name: str, value: dict) -> dict:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be JSON-serialisable to be stored: {error}") from error
    return value


def _shortlist(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    return shown + (f" (and {len(items) - _LISTED} more)" if len(items) > _LISTED else "")


def load_scaler(path: str | os.PathLike, key: str = "calibration") -> nn.Module:
    """The scaler stored under ``metadata[key]`` of the checkpoint at ``path`` (written with
    ``ek.save(model, path, metadata={key: calibration.scaler_metadata(scaler)})``)."""
    metadata = read_checkpoint(path).get("metadata") or {}
    if key not in metadata:
        raise ValueError(
            f"{path} holds no scaler under metadata[{key!r}]; save one with ensemblekit.save("
            f"model, path, metadata={{{key!r}: scaler_metadata(scaler)}})"
        )
    return scaler_from_metadata(metadata[key])
