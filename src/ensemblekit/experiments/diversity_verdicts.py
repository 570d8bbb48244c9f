"""Verdicts of the member-similarity study on the seed paper's two claims about BatchEnsemble.

Both claims are read as "BatchEnsemble lies nearer to X than to the Deep Ensemble", tested with
the paired bootstrap of :mod:`ensemblekit.experiments.verdicts` (seeds and test examples drawn
with replacement, the same draws for every method). For a measure with replicate values
``be``, ``x`` and ``de`` the statistic is

    closeness = |be - x| - |be - de|

(< 0: BatchEnsemble is nearer to ``x``), and each comparison **holds** when its 95 % interval
lies below 0, **does not hold** when above 0, and is **inconclusive** otherwise; a claim holds
only if each of its comparisons holds (:func:`~ensemblekit.experiments.verdicts.combine`).

1. "BatchEnsemble tracks a single model": ``x`` is the single model, on the ensemble's test
   accuracy, ECE, NLL and OOD AUROC (maximum softmax probability score).
2. "Its members are near-identical": ``x`` is the floor of identical members (0 on
   disagreement and mutual information, 1 on CKA), on the clean test set's per-sample pairwise
   disagreement and mutual information, and the linear CKA of the penultimate features (its
   mean over member pairs, recomputed on every resample from the example weights). "Nearer to
   identical than to independent" is the most generous reading of "near-identical": if it does
   not hold, no stricter reading does.
"""

from __future__ import annotations

import torch

from .verdicts import (
    ACCURACY,
    AUROC,
    ECE,
    NLL,
    Metric,
    combine,
    draw_resamples,
    interval,
    observed,
    replicates,
    verdict,
)

#: Replicates of the claim-1 metrics and the per-sample function-space measures.
N_BOOT = 2000
#: Replicates of the CKA comparison: each costs ``O(N^2)`` per member pair (Gram matrices).
N_BOOT_CKA = 400
#: The variants the claims are about.
CLAIM_VARIANTS = ("batchensemble", "single", "deep_ensemble")


def _weighted_mean(values, labels, weights):
    return weights @ values.double() / weights.sum(1)


#: Mean over examples of a per-example measure (disagreement, mutual information).
PER_SAMPLE_MEAN = Metric("mean", False, _weighted_mean)


def weighted_cka(gram_x: torch.Tensor, gram_y: torch.Tensor, weights: torch.Tensor
                 ) -> torch.Tensor:
    """Linear CKA of two representations on every weighted resample: ``(B,)`` float64.

    ``gram_x = X X^T`` and ``gram_y = Y Y^T`` ``(N, N)`` (uncentred); ``weights (B, N)``. With
    ``p = w / sum w``, ``a = K p`` and ``alpha = p^T K p``, the weighted HSIC of K and L is
    ``p^T (K o L) p - 2 sum_i p_i a_i b_i + alpha beta`` (centring with the weighted mean,
    expanded), and CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)). Unit weights give
    :func:`ensemblekit.metrics.linear_cka`.
    """
    p = weights / weights.sum(1, keepdim=True)
    a, b = p @ gram_x, p @ gram_y

    def hsic(k, a_k, l_, b_l):
        return ((p @ (k * l_)) * p).sum(1) - 2 * (p * a_k * b_l).sum(1) \
            + (p * a_k).sum(1) * (p * b_l).sum(1)

    cross = hsic(gram_x, a, gram_y, b)
    return cross / (hsic(gram_x, a, gram_x, a) * hsic(gram_y, b, gram_y, b)).sqrt()


def _pairwise_cka(grams, labels, weights):
    members = grams.shape[0]
    values = [weighted_cka(grams[i], grams[j], weights)
              for i in range(members) for j in range(i + 1, members)]
    return torch.stack(values).mean(0)


#: Mean CKA over member pairs; values: the members' Gram matrices ``(M, N, N)``.
PAIRWISE_CKA = Metric("cka", True, _pairwise_cka)


def closeness(metric: Metric, be, near, de, labels, resamples, *, floor: float | None = None
              ) -> dict:
    """``|be - near| - |be - de|`` with its interval and verdict (claimed: below 0). ``near``:
    runs of the reference, or None with ``floor`` its constant value."""
    runs = {"be": be, "de": de}
    if near is not None:
        runs["near"] = near
    values = {key: observed(metric, value, labels) for key, value in runs.items()}
    draws = {key: replicates(metric, value, labels, resamples) for key, value in runs.items()}
    if near is None:
        values["near"] = floor
        draws["near"] = torch.full_like(draws["be"], floor)
    estimate = abs(values["be"] - values["near"]) - abs(values["be"] - values["de"])
    stat = (draws["be"] - draws["near"]).abs() - (draws["be"] - draws["de"]).abs()
    result = interval(estimate, stat)
    return {"metric": metric.name, "batchensemble": values["be"], "reference": values["near"],
            "deep_ensemble": values["de"], "closeness": result.to_dict(),
            "verdict": verdict(result, claimed="negative")}


def study_verdicts(runs: dict[str, list[dict]], *, seed: int = 0) -> list[dict]:
    """The two claims' verdicts from the study's runs (``{variant: [run per seed]}``, each run
    holding ``"sets"`` with per-sample arrays and ``"features"`` Gram matrices); an empty list
    when BatchEnsemble, the single model or the Deep Ensemble was not run."""
    if not all(key in runs for key in CLAIM_VARIANTS):
        return []
    be, single, de = (runs[key] for key in CLAIM_VARIANTS)
    seeds = len(be)
    clean = [[run["sets"]["clean"]["per_sample"] for run in group] for group in (be, single,
                                                                                  de)]
    labels = clean[0][0]["labels"]
    resamples = draw_resamples(len(labels), seeds, n_boot=N_BOOT, seed=seed)
    tracks = []
    for metric in (ACCURACY, ECE, NLL):
        probs = [[sample["probs"] for sample in group] for group in clean]
        tracks.append(closeness(metric, *probs, labels, resamples))
    if all("ood" in run["sets"] for group in (be, single, de) for run in group):
        scores = [[torch.cat([run["sets"]["clean"]["per_sample"]["msp_score"],
                              run["sets"]["ood"]["per_sample"]["msp_score"]]) for run in group]
                  for group in (be, single, de)]
        is_ood = torch.cat([torch.zeros(len(labels), dtype=torch.bool),
                            torch.ones(len(be[0]["sets"]["ood"]["per_sample"]["msp_score"]),
                                       dtype=torch.bool)])
        strata = draw_resamples(len(is_ood), seeds, n_boot=N_BOOT, seed=seed, strata=is_ood)
        tracks.append(closeness(AUROC, *scores, is_ood, strata))
    identical = []
    for key in ("disagreement", "mutual_information"):
        values = [[sample[key] for sample in group] for group in (clean[0], clean[2])]
        result = closeness(PER_SAMPLE_MEAN, values[0], None, values[1], labels, resamples,
                           floor=0.0)
        identical.append({**result, "metric": key})
    grams = [[run["grams"] for run in group] for group in (be, de)]
    cka_draws = draw_resamples(grams[0][0].shape[1], seeds, n_boot=N_BOOT_CKA, seed=seed)
    identical.append({**closeness(PAIRWISE_CKA, grams[0], None, grams[1],
                                  torch.zeros(grams[0][0].shape[1]), cka_draws, floor=1.0),
                      "metric": "cka_penultimate"})
    return [
        {"claim": "BatchEnsemble tracks a single model (accuracy, ECE, NLL, OOD AUROC: nearer "
                  "to the single model than to the Deep Ensemble)",
         "reference": "single", "comparisons": tracks,
         "verdict": combine([c["verdict"] for c in tracks])},
        {"claim": "BatchEnsemble's members are near-identical (disagreement, mutual "
                  "information, CKA: nearer to identical members than to the Deep Ensemble's)",
         "reference": "floor", "comparisons": identical,
         "verdict": combine([c["verdict"] for c in identical])},
    ]


def verdict_lines(verdicts: list[dict]) -> list[str]:
    """Markdown bullets: each claim's verdict and the numbers behind it."""
    if not verdicts:
        return ["Not checked: the verdicts need BatchEnsemble, the single model and the Deep "
                "Ensemble in the same run."]
    lines = []
    for claim in verdicts:
        reference = "single" if claim["reference"] == "single" else "floor"
        parts = []
        for c in claim["comparisons"]:
            ci = c["closeness"]
            parts.append(f"{c['metric']}: BE {c['batchensemble']:.4f}, {reference} "
                         f"{c['reference']:.4f}, DE {c['deep_ensemble']:.4f}; |BE-{reference}|"
                         f" - |BE-DE| = {ci['estimate']:+.4f} [{ci['low']:+.4f}, "
                         f"{ci['high']:+.4f}] ({c['verdict']})")
        lines.append(f"- {claim['claim']}: **{claim['verdict']}**. " + "; ".join(parts) + ".")
    lines.append("- Intervals: 95 % paired bootstrap over seeds and test examples "
                 f"({N_BOOT} replicates; {N_BOOT_CKA} for CKA); a comparison holds when "
                 "|BE - reference| - |BE - DE| lies below 0 throughout.")
    return lines
