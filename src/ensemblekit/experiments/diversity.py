"""How alike are the members? The study of "Is BatchEnsemble a Single Model?" (2026).

For each method with several members, trained on the same data under the same recipe, on the
clean test set:

- function space: pairwise disagreement of the members' argmax predictions, the same divided by
  the ensemble's error rate (normalised disagreement), and pairwise KL divergence between the
  members' predictive distributions;
- parameter space: cosine similarity of the members' flattened effective weights
  (``weight_similarity``; MC-Dropout members are sampled dropout masks applied to the weights,
  Masksembles members their masked weights, BatchEnsemble members ``W * s r^T``).

Each measure is summarised by its mean over the off-diagonal member pairs (mean ± std over
seeds); the (M, M) matrices of the first seed are drawn as heatmaps.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..atomic import atomic_write_text
from ..report import METHOD_LABELS, mean_std
from .pipeline import (
    Log,
    build,
    check_batch_size,
    load_experiment_data,
    member_probabilities,
    train,
)
from .settings import DiversitySettings

#: (key, caption, colour scale) of each heatmap row; None: one scale shared across methods.
MEASURES = (
    ("disagreement", "disagreement", None),
    ("normalized_disagreement", "disagreement / error", None),
    ("kl", "KL(p_i || p_j) (nats)", None),
    ("weight_similarity", "weight cosine", (0.0, 1.0)),
)


def member_similarity(model, images: torch.Tensor, labels: torch.Tensor, dataset: str, *,
                      seed: int = 0) -> dict:
    """Every measure of the study for one trained model: ``{measure: (M, M) tensor}`` plus
    ``"accuracy"`` (the ensemble's) and ``"member_accuracy"`` (per member)."""
    from ..metrics import pairwise_disagreement, pairwise_kl, weight_similarity

    probs = member_probabilities(model, images, dataset, seed=seed)
    disagreement = pairwise_disagreement(probs)
    error = float((probs.mean(0).argmax(-1) != labels).double().mean())
    generator = torch.Generator().manual_seed(seed)
    if getattr(model, "method", None) == "mc_dropout":
        weights = model.member_weights(generator=generator)
        similarity = weight_similarity(weights)
    else:
        similarity = weight_similarity(model)
    return {
        "disagreement": disagreement,
        # Divided here rather than by normalized_disagreement(), which is inf for an ensemble
        # without errors; recorded as null in that case.
        "normalized_disagreement": disagreement / error if error > 0 else
        torch.full_like(disagreement, math.nan),
        "kl": pairwise_kl(probs),
        "weight_similarity": similarity,
        "accuracy": 1.0 - error,
        "member_accuracy": (probs.argmax(-1) == labels).double().mean(1).tolist(),
    }


def off_diagonal_mean(matrix: torch.Tensor) -> float:
    """Mean over the M (M - 1) pairs i != j; nan for one member or a non-finite entry."""
    size = matrix.shape[0]
    if size < 2:
        return math.nan
    mask = ~torch.eye(size, dtype=torch.bool)
    return float(matrix[mask].mean())


def run_diversity(settings: DiversitySettings, *, log: Log = print) -> dict:
    """Train each method per seed, measure its members; write ``diversity.json``,
    ``diversity.md`` and ``diversity_heatmaps.png`` into ``settings.out``."""
    from .. import plots

    out = Path(settings.out)
    for method in settings.methods:
        check_batch_size(settings, build(settings, method, seed=0))
    data = load_experiment_data(settings, log=log)
    images, labels = data.test
    per_method: dict[str, list[dict]] = {}
    for method in settings.methods:
        for seed in range(settings.seeds):
            model = build(settings, method, seed=seed)
            train(settings, model, data, seed=seed)
            measures = member_similarity(model, images, labels, settings.dataset, seed=seed)
            per_method.setdefault(method, []).append(measures)
            log(f"{method} seed {seed}: accuracy {measures['accuracy']:.3f}, disagreement "
                f"{off_diagonal_mean(measures['disagreement']):.4f}, weight cosine "
                f"{off_diagonal_mean(measures['weight_similarity']):.4f}")
    results = {
        "dataset": settings.dataset,
        "seeds": list(range(settings.seeds)),
        "protocol": {"backbone": settings.backbone, "width": settings.width,
                     "hidden": settings.hidden, "members": settings.members,
                     "masksembles_scale": settings.scale, "mc_dropout_p": settings.dropout,
                     "epochs": settings.epochs, "train": settings.train,
                     "split": "test", "pairs": "off-diagonal mean over member pairs i != j"},
        "methods": {},
    }
    for method, runs in per_method.items():
        entry = {"accuracy": mean_std([r["accuracy"] for r in runs])}
        for key, _, _ in MEASURES:
            values = [off_diagonal_mean(r[key]) for r in runs]
            entry[key] = (mean_std(values) if all(math.isfinite(v) for v in values)
                          else {"mean": None, "std": None})
        entry["matrices"] = {key: _finite_or_none(runs[0][key]) for key, _, _ in MEASURES}
        entry["member_accuracy"] = runs[0]["member_accuracy"]
        results["methods"][method] = entry
    atomic_write_text(out / "diversity.json", json.dumps(results, indent=1))
    atomic_write_text(out / "diversity.md", diversity_markdown(results))
    plots.diversity_heatmaps(
        {m: {key: runs[0][key].numpy() for key, _, _ in MEASURES} for m, runs in
         per_method.items()},
        out / "diversity_heatmaps.png",
        rows=[(key, caption, limits) for key, caption, limits in MEASURES],
        title=f"Member similarity on the {settings.dataset} test set (seed 0)")
    return results


def diversity_table(results: dict) -> str:
    """Markdown table: one row per method, the off-diagonal means (mean ± std over seeds)."""
    lines = ["| method | accuracy | disagreement | disagreement / error | KL (nats) | "
             "weight cosine |", "|---|---:|---:|---:|---:|---:|"]
    for method, entry in results["methods"].items():
        cells = [_pm(entry[key]) for key in ("accuracy", "disagreement",
                                             "normalized_disagreement", "kl",
                                             "weight_similarity")]
        lines.append(f"| {METHOD_LABELS.get(method, method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def diversity_markdown(results: dict) -> str:
    p = results["protocol"]
    seeds = len(results["seeds"])
    return "\n".join([
        f"# Member similarity on {results['dataset']}", "",
        f"Backbone {p['backbone']}, {p['members']} members (Masksembles scale "
        f"{p['masksembles_scale']:g}, MC-Dropout p = {p['mc_dropout_p']:g}), {p['epochs']} "
        f"epochs; measured on the clean test set; each value is the {p['pairs']}, mean ± std "
        f"over {seeds} seed{'s' if seeds > 1 else ''}. Identical members: disagreement 0, "
        "KL 0, weight cosine 1.", "",
        diversity_table(results), "",
        "![member x member heatmaps](diversity_heatmaps.png)", ""])


def _pm(value: dict) -> str:
    if value["mean"] is None:
        return "n/a"
    return f"{value['mean']:.4f} ± {value['std']:.4f}"


def _finite_or_none(matrix: torch.Tensor) -> list:
    return [[float(v) if math.isfinite(v) else None for v in row] for row in matrix.tolist()]
