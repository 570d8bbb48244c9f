"""How alike are the members? The study of "Is BatchEnsemble a Single Model?" (2026), rebuilt.

Every variant (each method, plus the BatchEnsemble controls ``init="ones"`` and
``"random_sign"`` beside the reference ``"normal"``) is built, measured at initialisation,
trained under the common recipe and measured again, for each seed:

- **parameter space, against its own baseline**: cosine similarity of the members' flattened
  effective weights (``weight_similarity`` of ``model.member_weights()``), per layer and
  overall (the conv and linear layers; normalisation layers only per layer), at
  initialisation and after training, and the change between them; the relative change of the
  weights, and for BatchEnsemble that of its fast weights. Part of every value is
  set by construction (MC-Dropout's sampled masks, Masksembles' mask overlap, BatchEnsemble's
  fast-weight distribution, a Deep Ensemble's independent draws): the table says which.
- **representations**: linear CKA between members' hidden representations on the clean test
  set, the penultimate features (the head's input) and a mid-network layer, ``(M, M)`` per
  variant: it compares what the members compute on the data rather than how their weights are
  parametrised (a ReLU network's rescalings that move a factor from one layer to the next
  leave the function unchanged but the weight cosine not).
- **function space**: pairwise disagreement, disagreement / error, KL and JS between members'
  predictive distributions, and the per-sample mutual information, on the clean test set, the
  corrupted test sets (all kinds of one severity pooled, per severity) and the OOD set.

The single model is the **floor**: one model is identical to itself (disagreement, KL, JS and
mutual information 0, CKA and weight cosine 1, by definition); it is trained all the same,
because the first claim compares BatchEnsemble with it. The **Deep Ensemble** is the reference
for independent members.

Off-diagonal means over member pairs, then mean ± std over seeds. Verdicts on the seed paper's
two claims (:data:`ensemblekit.methods.claims.DIVERSITY_CLAIMS`) come from
:func:`ensemblekit.stats.study_verdicts`; the report from :mod:`ensemblekit.report.diversity`
and the figures from :mod:`ensemblekit.plots.diversity`.
"""

from __future__ import annotations

import json
import math
import time
from functools import partial
from pathlib import Path

import torch

from ..atomic import atomic_write_text
from ..data import normalizer
from ..methods import method_entry
from ..methods.claims import DIVERSITY_CLAIMS
from ..metrics import (
    ece,
    mutual_information,
    nll,
    pairwise_cka,
    pairwise_disagreement,
    pairwise_js,
    pairwise_kl,
    weight_similarity,
)
from ..plots.diversity import HEATMAPS, draw_all
from ..report import json_ready, mean_std
from ..report.diversity import diversity_markdown
from ..stats import study_verdicts
from .diversity_settings import DiversitySettings
from .member_probes import fast_weights, layer_columns, member_outputs
from .pipeline import build, check_batch_size, train
from .roles import with_own_knobs
from .runs import Log, Run, RunGrid
from .splits import corrupted_set, load_experiment_data

#: The function-space measures, ``(key, caption)``.
FUNCTION_MEASURES = (
    ("disagreement", "disagreement"),
    ("disagreement_over_error", "disagreement / error"),
    ("kl", "KL (nats)"),
    ("js", "JS (nats)"),
    ("mutual_information", "mutual information (nats)"),
)
#: Hidden representations compared by CKA, ``(key, caption)``.
REPRESENTATIONS = (("penultimate", "CKA, penultimate"), ("mid", "CKA, mid layer"))
#: What identical members give on each measure (the single-model floor, by definition).
FLOOR = {"disagreement": 0.0, "disagreement_over_error": 0.0, "kl": 0.0, "js": 0.0,
         "mutual_information": 0.0, "cka_penultimate": 1.0, "cka_mid": 1.0,
         "weight_similarity": 1.0}
#: The variants whose members' penultimate Gram matrices a claim's CKA verdict resamples.
GRAM_VARIANTS = frozenset(method for claim in DIVERSITY_CLAIMS.claims
                          if "cka_penultimate" in claim.metrics for method in claim.methods)


def study_variants(settings: DiversitySettings) -> list[dict]:
    """``[{"key", "method", "options", "label"}]``: each method, and after it its controls
    (``settings.controls``: variants its registry entry offers, e.g. other inits)."""
    variants = []
    for method in settings.methods:
        entry = method_entry(method)
        variants.append({"key": method, "method": method, "options": {},
                         "label": entry.label})
        for name in settings.controls.get(method, []):
            options = dict(entry.controls[name])
            described = ", ".join(f"{key} {value}" for key, value in options.items())
            variants.append({"key": f"{method}_{name}", "method": method, "options": options,
                             "label": f"{entry.label} ({described})"})
    return variants


def construction_note(variant: dict, settings: DiversitySettings) -> str:
    """What the variant's weight similarity is set to by construction, before any training
    (its method's registry entry's ``construction`` of the options it runs with)."""
    entry = method_entry(variant["method"])
    if entry.construction is None:
        return ""
    return entry.construction({**settings.method_settings(variant["method"]),
                               **variant["options"]})


# -- measuring one model -------------------------------------------------------------------


def function_space(logits: torch.Tensor, labels: torch.Tensor | None) -> dict:
    """The function-space measures of member logits ``(M, N, K)`` (labels ``(N,)`` or None:
    OOD), as off-diagonal means; plus the ensemble's ``accuracy``, ``nll``, ``ece`` (with
    labels) and the per-sample arrays the verdicts bootstrap over."""
    probs = torch.softmax(logits.double(), dim=-1)
    mean = probs.mean(0)
    members = probs.shape[0]
    votes = probs.argmax(-1)
    # Per sample: the fraction of ordered member pairs that disagree (mean over pairs).
    pairs = members * (members - 1)
    per_sample_disagreement = ((votes.unsqueeze(0) != votes.unsqueeze(1)).sum((0, 1)).double()
                               / pairs if pairs else torch.zeros(votes.shape[1]))
    information = mutual_information(probs)
    record = {
        "disagreement": off_diagonal_mean(pairwise_disagreement(probs)),
        "kl": off_diagonal_mean(pairwise_kl(probs)),
        "js": off_diagonal_mean(pairwise_js(probs)),
        "mutual_information": float(information.mean()),
        "per_sample": {"disagreement": per_sample_disagreement,
                       "mutual_information": information,
                       "msp_score": 1.0 - mean.max(-1).values},
    }
    if labels is not None:
        correct = mean.argmax(-1) == labels
        error = 1.0 - float(correct.double().mean())
        record["accuracy"] = 1.0 - error
        record["nll"] = nll(mean, labels)
        record["ece"] = ece(mean, labels)
        # An ensemble without errors has no ratio (recorded as null).
        record["disagreement_over_error"] = (record["disagreement"] / error if error > 0
                                             else math.nan)
        record["per_sample"].update(correct=correct, probs=mean, labels=labels)
    return record


def weight_record(weights: torch.Tensor, columns: list[tuple[str, slice, bool]]) -> dict:
    """Off-diagonal weight cosine of member weights ``(M, P)`` per layer, and ``overall``: over
    the conv and linear layers together. Normalisation layers are left out of the overall
    value (listed per layer): their scales start at 1 in every member, and in a ResNet-18 those
    ~10^4 ones outweigh the ~10^7 small conv weights in the norm (independent members would
    read as a cosine of 0.75 at initialisation)."""
    weighted = torch.cat([weights[:, cols] for _, cols, is_norm in columns if not is_norm],
                         dim=1)
    return {"overall": _cosine(weighted),
            "layers": {name: _cosine(weights[:, cols]) for name, cols, _ in columns}}


def off_diagonal_mean(matrix: torch.Tensor) -> float:
    """Mean over the M (M - 1) pairs i != j; nan for one member or a non-finite entry."""
    size = matrix.shape[0]
    if size < 2:
        return math.nan
    mask = ~torch.eye(size, dtype=torch.bool)
    return float(matrix[mask].mean())


def _cosine(weights: torch.Tensor) -> float:
    try:
        return off_diagonal_mean(weight_similarity(weights))
    except ValueError:  # a member without weights in this layer (all dropped): undefined
        return math.nan


def _member_weights(model, seed: int) -> torch.Tensor:
    with torch.no_grad():
        if method_entry(model.method).stochastic:
            # The same sampled masks before and after training: the change is the weights'.
            return model.member_weights(generator=torch.Generator().manual_seed(seed)).cpu()
        return model.member_weights().detach().cpu().clone()


def _relative_change(before: torch.Tensor, after: torch.Tensor) -> float:
    """Mean over members of ``|w_T - w_0| / |w_0|`` (rows of ``(M, P)``)."""
    norms = before.double().norm(dim=1)
    return float(((after.double() - before.double()).norm(dim=1) / norms).mean())


def _fast_weight_change(before: torch.Tensor | None, after: torch.Tensor | None) -> dict | None:
    """How far BatchEnsemble's fast weights moved: relative norm change, and the cosine between
    their deviations from 1 before and after (1: training only rescaled the initial draw)."""
    if before is None:
        return None
    before, after = before.double(), after.double()
    change = float((after - before).norm() / before.norm())
    deviation = before - 1.0
    cosine = (float(torch.nn.functional.cosine_similarity(deviation, after - 1.0, dim=0))
              if float(deviation.norm()) > 0 else math.nan)
    return {"relative_change": change, "deviation_cosine": cosine}


def measure_model(model, data, settings: DiversitySettings, *, seed: int,
                  with_shift: bool = True) -> dict:
    """Function space on every evaluation set, CKA matrices on the clean test set, member
    weights: ``{"sets": {set: record}, "cka": {rep: (M, M)}, "matrices": {...},
    "weights": (M, P), "fast": tensor or None}``."""
    normalize = normalizer(settings.dataset)
    images, labels = data.test
    common = dict(normalize=normalize, batch_size=settings.eval_batch_size, seed=seed)
    logits, features = member_outputs(model, images, **common)
    sets = {"clean": function_space(logits, labels)}
    cka = {}
    for key, _ in REPRESENTATIONS:
        if logits.shape[0] > 1:
            cka[key] = pairwise_cka(features[key][:, : settings.cka_samples])
        else:
            cka[key] = torch.ones(1, 1, dtype=torch.float64)
    probs = torch.softmax(logits.double(), -1)
    weights = _member_weights(model, seed)
    matrices = {"disagreement": pairwise_disagreement(probs), "kl": pairwise_kl(probs),
                "cka_penultimate": cka["penultimate"], "cka_mid": cka["mid"],
                "weight_similarity": weight_similarity(weights)}
    if with_shift:
        for severity in data.severities if data.shift_folder is not None else []:
            blocks = [corrupted_set(data, kind, severity) for kind in data.corruptions]
            shifted, _ = member_outputs(model, torch.cat([b[0] for b in blocks]), **common)
            sets[f"severity_{severity}"] = function_space(shifted, torch.cat([b[1] for b in
                                                                             blocks]))
        if data.ood is not None:
            ood_logits, _ = member_outputs(model, data.ood, **common)
            sets["ood"] = function_space(ood_logits, None)
    return {"sets": sets, "cka": {key: off_diagonal_mean(m) for key, m in cka.items()},
            "matrices": matrices, "weights": weights, "fast": fast_weights(model),
            "penultimate": features["penultimate"][:, : settings.cka_samples]}


# -- the study ----------------------------------------------------------------------------


def run_diversity(settings: DiversitySettings, *, log: Log = print) -> dict:
    """Train every variant per seed and measure it; write ``diversity.json``, ``diversity.md``
    and the figures (``diversity_heatmaps.png``, ``diversity_shift.png``,
    ``diversity_layers.png``) into ``settings.out``.

    The (variant, seed) runs go through the one run-grid loop without a store: a run holds
    per-sample tensors and Gram matrices (about 128 MB at 2000 CKA samples), so the study is
    computed whole each time."""
    started = time.perf_counter()
    out = Path(settings.out)
    variants = study_variants(settings)
    for variant in variants:
        check_batch_size(settings, build(settings, variant["method"], seed=0,
                                         **variant["options"]))
    data = load_experiment_data(settings, ood=settings.ood, corruptions=settings.corruptions,
                                severities=settings.severities,
                                corrupted_dir=settings.corrupted_dir, log=log)
    grid = RunGrid([Run(key=(variant["key"], seed), point=variant, seed=seed,
                        name=f"{variant['key']} seed {seed}")
                    for variant in variants for seed in range(settings.seeds)], log=log)
    done = grid.run(partial(compute_run, settings, data), summary=_run_summary,
                    desc="diversity", jobs=settings.parallel_runs(len(grid.todo)))
    runs: dict[str, list[dict]] = {}
    for (key, _), run in done.items():
        runs.setdefault(key, []).append(run)
    results = {
        "dataset": settings.dataset,
        "seeds": list(range(settings.seeds)),
        "protocol": protocol(settings, data),
        "floor": FLOOR,
        "variants": {v["key"]: summarise_variant(v, runs[v["key"]], settings) for v in variants},
    }
    results["verdicts"] = study_verdicts(runs, floor=FLOOR, seed=0)
    for verdict in results["verdicts"]:
        log(f"verdict: {verdict['claim']}: {verdict['verdict']}")
    figures = draw_all(results, out)
    results["figures"] = [path.name for path in figures]
    results["seconds"] = time.perf_counter() - started
    atomic_write_text(out / "diversity.json",
                      json.dumps(json_ready(results, nonfinite_as_null=True), indent=1))
    atomic_write_text(out / "diversity.md", diversity_markdown(results))
    return results


def compute_run(settings: DiversitySettings, data, run: Run) -> tuple[dict, None]:
    """:func:`measure_run` of a grid's ``run`` (module level: it pickles for the workers)."""
    return measure_run(settings, run.point, run.seed, data), None


def measure_run(settings: DiversitySettings, variant: dict, seed: int, data) -> dict:
    """Build one variant with ``seed``, measure it, train it, measure it again: the run's
    summary (:func:`summarise_run`)."""
    model = build(settings, variant["method"], seed=seed, **variant["options"])
    columns = layer_columns(model)
    initial = measure_model(model, data, settings, seed=seed, with_shift=False)
    fit = train(settings, model, data, seed=seed)
    trained = measure_model(model, data, settings, seed=seed)
    run = summarise_run(initial, trained, columns, fit)
    run["members"] = model.num_members
    if variant["key"] in GRAM_VARIANTS and model.num_members > 1:
        # The CKA verdict resamples examples: it needs each member's Gram matrix.
        features = trained["penultimate"].double()
        run["grams"] = features @ features.transpose(1, 2)
    return run


def _run_summary(run: Run, record: dict) -> str:
    clean = record["sets"]["clean"]
    members = ("one member: the floor" if record["members"] == 1 else
               f"disagreement {clean['disagreement']:.4f}, CKA penultimate "
               f"{record['cka']['penultimate']:.3f}, weight cosine "
               f"{record['weights']['init']['overall']:.3f} -> "
               f"{record['weights']['trained']['overall']:.3f}")
    return (f"{run.name}: accuracy {clean['accuracy']:.3f}, {members} "
            f"({record['epochs']} epochs)")


def summarise_run(initial: dict, trained: dict, columns, fit: dict) -> dict:
    """One seed of one variant: the scalars of the study and the per-sample arrays."""
    weights = {"init": weight_record(initial["weights"], columns),
               "trained": weight_record(trained["weights"], columns)}
    layer_change = {name: _relative_change(initial["weights"][:, cols],
                                           trained["weights"][:, cols])
                    for name, cols, _ in columns}
    weights["relative_change"] = {
        "overall": _relative_change(initial["weights"], trained["weights"]),
        "layers": layer_change}
    weights["fast_weights"] = _fast_weight_change(initial["fast"], trained["fast"])
    return {
        "sets": trained["sets"],
        "init_clean": initial["sets"]["clean"],
        "cka": trained["cka"],
        "init_cka": initial["cka"],
        "weights": weights,
        "matrices": trained["matrices"],
        "init_matrices": initial["matrices"],
        "epochs": fit["epochs"],
        "train_loss": fit["loss"],
    }


def summarise_variant(variant: dict, runs: list[dict], settings: DiversitySettings) -> dict:
    """Mean ± std over seeds of every scalar; seed 0's matrices. A one-member model (the single
    model: identical to itself) is the floor on every pairwise measure, by definition."""
    single = runs[0]["members"] == 1
    sets = {}
    for name in runs[0]["sets"]:
        keys = [key for key, _ in FUNCTION_MEASURES] + ["accuracy", "nll", "ece"]
        sets[name] = {key: _over_seeds([r["sets"][name].get(key) for r in runs], single
                                       and key in FLOOR, FLOOR.get(key))
                      for key in keys if key in runs[0]["sets"][name]}
    init_clean = {key: _over_seeds([r["init_clean"].get(key) for r in runs], single
                                   and key in FLOOR, FLOOR.get(key))
                  for key in ("disagreement", "mutual_information", "accuracy")}
    cka = {key: {stage: _over_seeds([r[field][key] for r in runs], single, 1.0)
                 for stage, field in (("init", "init_cka"), ("trained", "cka"))}
           for key, _ in REPRESENTATIONS}
    weights = {}
    for stage in ("init", "trained"):
        weights[stage] = {
            "overall": _over_seeds([r["weights"][stage]["overall"] for r in runs], single, 1.0),
            "layers": {name: _over_seeds([r["weights"][stage]["layers"][name] for r in runs],
                                         single, 1.0)
                       for name in runs[0]["weights"][stage]["layers"]}}
    weights["change"] = {
        "overall": _over_seeds([r["weights"]["trained"]["overall"]
                                - r["weights"]["init"]["overall"] for r in runs], single, 0.0),
        "layers": {name: _over_seeds([r["weights"]["trained"]["layers"][name]
                                      - r["weights"]["init"]["layers"][name] for r in runs],
                                     single, 0.0)
                   for name in runs[0]["weights"]["init"]["layers"]}}
    weights["relative_change"] = {
        "overall": mean_std([r["weights"]["relative_change"]["overall"] for r in runs]),
        "layers": {name: mean_std([r["weights"]["relative_change"]["layers"][name]
                                   for r in runs])
                   for name in runs[0]["weights"]["relative_change"]["layers"]}}
    if runs[0]["weights"]["fast_weights"] is not None:
        weights["fast_weights"] = {
            key: _over_seeds([r["weights"]["fast_weights"][key] for r in runs], False, None)
            for key in ("relative_change", "deviation_cosine")}
    return {
        "label": variant["label"],
        "method": variant["method"],
        "options": variant["options"],
        "construction": construction_note(variant, settings),
        "epochs": [r["epochs"] for r in runs],
        "sets": sets,
        "init_clean": init_clean,
        "cka": cka,
        "weights": weights,
        "matrices": {key: _finite_or_none(runs[0]["matrices"][key]) for key, _, _ in HEATMAPS},
        "init_matrices": {key: _finite_or_none(runs[0]["init_matrices"][key])
                          for key, _, _ in HEATMAPS},
    }


def _over_seeds(values: list, floor: bool, floor_value) -> dict:
    """``{"mean", "std"}`` over seeds; the floor's value for the single model (its one member
    is identical to itself: the pairwise measures have no pairs to average); null when a seed
    has no finite value."""
    if floor:
        return {"mean": floor_value, "std": 0.0, "by_definition": True}
    if any(v is None or not math.isfinite(v) for v in values):
        return {"mean": None, "std": None}
    return mean_std(values)




def protocol(settings: DiversitySettings, data) -> dict:
    return {
        "backbone": settings.backbone, "width": settings.width, "hidden": settings.hidden,
        "members": settings.members, "masksembles_scale": settings.scale,
        "mc_dropout_p": settings.dropout, "epochs": settings.epochs, "train": settings.train,
        "method_options": settings.method_options,
        # what each method ran with (a recipe's or config's [method_options] included)
        # the methods with knobs of their own (a tune grid), whose settings the header states
        "settings": {method: settings.method_settings(method) for method in with_own_knobs()},
        "corruptions": data.corruptions, "severities": data.severities,
        "ood": data.ood_name, "ood_status": data.ood_status,
        "validation": None if data.validation is None else _size(data.validation),
        "cka_samples": min(settings.cka_samples, len(data.test[1])),
        "pairs": "off-diagonal mean over member pairs i != j",
    }


def _size(split) -> int:
    """Examples in a split: ``(images, labels)`` tensors or a Dataset."""
    return len(split[1]) if isinstance(split, tuple) else len(split)


def _finite_or_none(matrix: torch.Tensor) -> list:
    return [[float(v) if math.isfinite(v) else None for v in row] for row in matrix.tolist()]
