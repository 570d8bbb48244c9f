"""Each dataset's recipe: what its experiments run with when no config file or flag says
otherwise, read from ``configs/recipes/<dataset>.toml``.

A recipe file holds any of ``backbone``, ``width``, ``hidden``, ``epochs``, ``threads``, a
``[train]`` table (:class:`~ensemblekit.train.TrainConfig` fields), ``[method_options.<method>]``
tables (each method's own build options and epochs, applied with the recipe's backbone only),
and ``tuned``: the sentence the benchmark report prints about those tables while they run
unchanged. A file holding only ``same_as = "<dataset>"`` takes that dataset's recipe. A dataset
without a file takes its family's (the name before a ``-``: ``uci-concrete`` takes
``uci.toml``) if there is one, else ``image.toml``. Each value carries a comment naming where it
came from.

The files live in the repository's ``configs/recipes/`` folder, next to the package's source:
the package is meant to be installed editable (``pip install -e .``, as the README's set-up
does). A missing folder or file is a clear error, not a silent fallback.
"""

from __future__ import annotations

from pathlib import Path

import tomllib

#: Where the recipe files are: ``<repository>/configs/recipes`` (src/ensemblekit/experiments
#: is three levels below the repository root).
RECIPES_DIR = Path(__file__).resolve().parents[3] / "configs" / "recipes"
#: The recipe of a dataset without a file of its own.
FALLBACK = "image"
#: The keys a recipe file may hold.
RECIPE_KEYS = ("backbone", "width", "hidden", "epochs", "threads", "train", "method_options",
               "tuned", "same_as")


def recipe_for(dataset: str) -> dict:
    """The recipe of ``dataset`` as a dict (keys of :data:`RECIPE_KEYS` but ``same_as``):
    ``configs/recipes/<dataset>.toml``, else its family's ``<family>.toml`` (``<family>-...``
    names), else ``configs/recipes/image.toml``."""
    folder = Path(RECIPES_DIR)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"the recipes folder {folder} is missing: ensemblekit reads each dataset's defaults "
            "from the repository's configs/recipes/; install the package from a clone with "
            "`pip install -e .` (as the README does), or restore that folder")
    path = folder / f"{dataset}.toml"
    if not path.is_file() and "-" in dataset:
        path = folder / f"{dataset.partition('-')[0]}.toml"
    if not path.is_file():
        path = folder / f"{FALLBACK}.toml"
    return _read(path, seen=())


def read_toml(path: Path, what: str, missing: Exception) -> dict:
    """The TOML file ``path`` as a dict; ``missing`` raised if it is not a file, a
    ``ValueError`` naming ``what`` ("config file", "recipe file") if it is not valid TOML."""
    if not path.is_file():
        raise missing
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{what} {path} is not valid TOML: {error}") from None


def _read(path: Path, *, seen: tuple[str, ...]) -> dict:
    recipe = read_toml(path, "recipe file", FileNotFoundError(
        f"recipe file {path} is missing; restore it from the repository's configs/recipes/"))
    unknown = sorted(set(recipe) - set(RECIPE_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))} in recipe file "
                         f"{path}; valid keys are: {', '.join(RECIPE_KEYS)}")
    other = recipe.pop("same_as", None)
    if other is None:
        return recipe
    if recipe or not isinstance(other, str) or other in seen:
        raise ValueError(f"recipe file {path}: same_as must name another recipe (a string) "
                         "and be the file's only key, without a loop")
    return _read(path.parent / f"{other}.toml", seen=(*seen, path.stem))
