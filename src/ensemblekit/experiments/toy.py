"""Masksembles paper, Example 1: the spectrum from one model to an ensemble on a 2D problem.

One model per panel -- single model, MC-Dropout, Masksembles at increasing scale, Deep
Ensemble -- trained on the same points; each panel maps the predictive entropy (entropy of the
mean prediction) over a grid reaching well beyond the data. A single model is confident almost
everywhere away from the class boundary; the further along the spectrum, the more the
uncertainty grows away from the data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import plots
from .._validation import check_float, check_int, check_seed
from ..atomic import atomic_write_text
from ..data import as_tensors, dataset_info, load_dataset, toy_grid
from ..methods import method_entry
from ..metrics import predictive_entropy
from ..predict import predict
from .checks import as_list
from .config import Settings
from .pipeline import build, check_batch_size, train
from .roles import spectrum_landmarks, spectrum_subject
from .runs import Log
from .splits import load_experiment_data


@dataclass
class ToySettings(Settings):
    """``ensemblekit toy``: predictive-entropy maps on a 2D problem, one per method, in a row:
    the landmarks of the spectrum (:func:`~ensemblekit.experiments.roles.spectrum_landmarks`:
    single model, MC-Dropout, Deep Ensemble), the spectrum subject (Masksembles) at each of
    ``scales``, its knob."""

    dataset: str = "toy_moons"
    scales: list[float] = field(default_factory=lambda: [1.5, 2.0, 4.0, 8.0])
    seed: int = 0
    resolution: int = 120

    command = "toy"
    #: What a run writes under ``out``: the figure and the numbers.
    figure_file = "toy_entropy.png"
    json_file = "toy.json"

    def validate(self) -> None:
        super().validate()
        if dataset_info(self.dataset).is_image:
            raise ValueError(f"the toy experiment needs a 2D point dataset (toy_moons, "
                             f"toy_blobs), got image dataset {self.dataset!r}")
        self.scales = sorted({check_float("scale", s, minimum=1.0) for s in as_list(self.scales)})
        self.seed = check_seed(self.seed)
        self.resolution = check_int("resolution", self.resolution, minimum=10)


def toy_panels(settings: ToySettings) -> list[tuple[str, dict, str]]:
    """``(method, build options, title)`` for each panel, in spectrum order: the subject once
    per value of ``scales`` (its spectrum knob), every other landmark once; each titled by its
    registry entry from the options it runs with."""
    subject = spectrum_subject()
    panels = []
    for method in spectrum_landmarks():
        entry = method_entry(method)
        own = settings.method_settings(method)
        variants = ([{entry.spectrum_knob: value} for value in settings.scales]
                    if method == subject else [{}])
        for options in variants:
            title = (entry.label if entry.panel_title is None
                     else entry.panel_title({**own, **options}))
            panels.append((method, options, title))
    return panels


def member_probabilities(model, points: torch.Tensor, dataset: str) -> torch.Tensor:
    """Member probabilities ``(M, N, K)`` float64 of the inputs ``points`` (one pass)."""
    return torch.softmax(predict(model, points, dataset=dataset).logits.double(), dim=-1)


def run_toy(settings: ToySettings, *, log: Log = print) -> dict:
    """Train every panel's model, draw ``<out>/toy_entropy.png``, write ``<out>/toy.json``.

    ``toy.json`` holds, per panel, the test accuracy and the mean predictive entropy on the
    test points and on far-away points (the dataset's OOD ring).
    """
    out = Path(settings.out)
    panels = toy_panels(settings)
    models = [build(settings, method, seed=settings.seed, **options)
              for method, options, _ in panels]
    for model in models:
        check_batch_size(settings, model)
    data = load_experiment_data(settings, log=log)
    test_points, test_labels = data.test
    far_points = as_tensors(load_dataset(dataset_info(settings.dataset).ood, "test"))[0]
    grid = toy_grid(settings.dataset, settings.resolution, margin=0.6)
    maps, summary = [], []
    for (method, options, title), model in zip(panels, models, strict=True):
        training = train(settings, model, data, seed=settings.seed)
        probs_grid = member_probabilities(model, grid.points, settings.dataset)
        probs_test = member_probabilities(model, test_points, settings.dataset)
        probs_far = member_probabilities(model, far_points, settings.dataset)
        maps.append(predictive_entropy(probs_grid).reshape(len(grid.ys), len(grid.xs)).numpy())
        accuracy = float((probs_test.mean(0).argmax(-1) == test_labels).double().mean())
        summary.append({
            "method": method, **options, "title": title, "test_accuracy": accuracy,
            "entropy_test": float(predictive_entropy(probs_test).mean()),
            "entropy_far": float(predictive_entropy(probs_far).mean()),
            "train_seconds": training["seconds"],
        })
        log(f"{title}: test accuracy {accuracy:.3f}, mean entropy {summary[-1]['entropy_test']:.3f}"
            f" on test points, {summary[-1]['entropy_far']:.3f} far from the data")
    train_points, train_labels = data.train
    info = dataset_info(settings.dataset)
    figure = plots.entropy_maps(
        maps, [p[2] for p in panels], grid.xs.numpy(), grid.ys.numpy(),
        train_points.numpy(), train_labels.numpy(), out / settings.figure_file,
        max_entropy=float(np.log(info.num_classes)),
        title=f"Predictive entropy on {settings.dataset} ({settings.members} members): from one "
              "model to an ensemble")
    result = {"dataset": settings.dataset, "members": settings.members, "seed": settings.seed,
              "epochs": settings.epochs, "panels": summary, "figure": figure.name}
    atomic_write_text(out / settings.json_file, json.dumps(result, indent=1))
    return result
