"""The paired bootstrap: vectorised replicates against a plain numpy loop over the same draws,
metrics against the library's and sklearn's, and verdicts that follow the interval."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from ensemblekit import metrics, stats
from ensemblekit.methods.claims import DIVERSITY_CLAIMS, IDENTICAL, ClaimSet
from ensemblekit.stats import bootstrap as v
from ensemblekit.stats import weighted as w


def numpy_ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    edges = np.arange(n_bins + 1) / n_bins
    index = np.clip(np.digitize(confidence, edges) - 1, 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        inside = index == b
        total += abs(correct[inside].sum() - confidence[inside].sum())
    return total / len(confidence)


def numpy_metric(name, values, labels):
    if name == "accuracy":
        return float((values.argmax(1) == labels).mean())
    if name == "nll":
        return float(-np.log(np.maximum(values[np.arange(len(labels)), labels],
                                        np.finfo(np.float64).eps)).mean())
    if name == "ece":
        return numpy_ece(values.max(1), values.argmax(1) == labels)
    if name == "auroc":
        return float(roc_auc_score(labels.astype(int), values))
    if name == "shift_ece":
        confidence, correct = values
        return float(np.mean([numpy_ece(confidence[:, j], correct[:, j])
                              for j in range(confidence.shape[1])]))
    raise KeyError(name)


def reference_interval(name, a_runs, b_runs, labels, n_boot, seed, strata=None, level=0.95):
    """The bootstrap written as a loop: the documented draws, then per replicate each drawn
    seed's metric on the drawn examples, the mean over drawn seeds, the difference."""
    rng = np.random.default_rng(seed)
    n_seeds, n = len(a_runs), len(labels)
    seed_index = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(strata == value)
                                                     for value in np.unique(strata)]
    drawn = [g[rng.integers(0, g.size, size=(n_boot, g.size))] for g in groups]
    differences = []
    for b in range(n_boot):
        index = np.concatenate([d[b] for d in drawn])

        def take(values, index=index):
            return tuple(x[index] for x in values) if isinstance(values, tuple) else values[index]

        a = np.mean([numpy_metric(name, take(a_runs[s]), labels[index]) for s in seed_index[b]])
        c = np.mean([numpy_metric(name, take(b_runs[s]), labels[index]) for s in seed_index[b]])
        differences.append(a - c)
    estimate = (np.mean([numpy_metric(name, x, labels) for x in a_runs])
                - np.mean([numpy_metric(name, x, labels) for x in b_runs]))
    low, high = np.percentile(differences, [50 * (1 - level), 50 * (1 + level)])
    return estimate, low, high


def probs_runs(rng, n, k, seeds, sharpness):
    return [rng.dirichlet(np.full(k, 1.0 / sharpness), size=n) for _ in range(seeds)]


def as_torch(values):
    if isinstance(values, tuple):
        return tuple(torch.from_numpy(np.asarray(x)) for x in values)
    return torch.from_numpy(np.asarray(values))


METRICS = {"accuracy": w.ACCURACY, "nll": w.NLL, "ece": w.ECE, "auroc": w.AUROC,
           "shift_ece": w.SHIFT_ECE}


@pytest.mark.parametrize("name", ["accuracy", "nll", "ece", "shift_ece", "auroc"])
def test_bootstrap_matches_a_numpy_loop_over_the_same_draws(name):
    rng = np.random.default_rng(7)
    n, k, seeds, n_boot = 37, 4, 3, 150
    strata = None
    if name == "auroc":
        labels = np.zeros(n, dtype=bool)
        labels[20:] = True
        a = [rng.normal(size=n) + labels * 1.0 for _ in range(seeds)]
        b = [np.round(rng.normal(size=n) + labels * 0.5, 1) for _ in range(seeds)]  # ties
        strata = labels
    elif name == "shift_ece":
        labels = rng.integers(0, k, size=n)
        a = [(rng.uniform(0.2, 1.0, size=(n, 5)), rng.uniform(size=(n, 5)) < 0.7)
             for _ in range(seeds)]
        b = [(rng.uniform(0.2, 1.0, size=(n, 5)), rng.uniform(size=(n, 5)) < 0.6)
             for _ in range(seeds)]
    else:
        labels = rng.integers(0, k, size=n)
        a, b = probs_runs(rng, n, k, seeds, 0.5), probs_runs(rng, n, k, seeds, 1.0)
    expected = reference_interval(name, a, b, labels, n_boot, seed=11, strata=strata)
    got = v.paired_bootstrap(METRICS[name], [as_torch(x) for x in a], [as_torch(x) for x in b],
                             torch.from_numpy(labels), n_boot=n_boot, seed=11,
                             strata=None if strata is None else torch.from_numpy(strata))
    assert (got.estimate, got.low, got.high) == pytest.approx(expected, abs=1e-12)
    assert got.n_boot == n_boot and got.level == 0.95
    again = v.paired_bootstrap(METRICS[name], [as_torch(x) for x in a],
                               [as_torch(x) for x in b], torch.from_numpy(labels),
                               n_boot=n_boot, seed=11,
                               strata=None if strata is None else torch.from_numpy(strata))
    assert again == got  # same seed, same interval


def test_unit_weights_give_the_library_metrics():
    rng = np.random.default_rng(0)
    probs = torch.from_numpy(rng.dirichlet(np.full(6, 0.4), size=200))
    labels = torch.from_numpy(rng.integers(0, 6, size=200))
    assert w.ACCURACY(probs, labels) == pytest.approx(metrics.accuracy(probs, labels), abs=1e-15)
    assert w.NLL(probs, labels) == pytest.approx(metrics.nll(probs, labels), abs=1e-12)
    assert w.BRIER(probs, labels) == pytest.approx(metrics.brier(probs, labels), abs=1e-12)
    assert w.ECE(probs, labels) == pytest.approx(metrics.ece(probs, labels), abs=1e-12)
    scores_in = torch.from_numpy(np.round(rng.normal(size=150), 1))
    scores_out = torch.from_numpy(np.round(rng.normal(0.7, 1, size=90), 1))
    is_ood = torch.cat([torch.zeros(150, dtype=torch.bool), torch.ones(90, dtype=torch.bool)])
    assert w.AUROC(torch.cat([scores_in, scores_out]), is_ood) == pytest.approx(
        metrics.auroc(scores_in, scores_out), abs=1e-12)


def test_metric_from_function_gives_the_vectorised_replicates():
    rng = np.random.default_rng(3)
    probs = torch.from_numpy(rng.dirichlet(np.full(3, 0.5), size=30))
    labels = torch.from_numpy(rng.integers(0, 3, size=30))
    resamples = v.draw_resamples(30, 1, n_boot=40, seed=5)
    plain = v.metric_from_function("ece", metrics.ece, higher_is_better=False)
    assert torch.allclose(v.replicates(plain, [probs], labels, resamples),
                          v.replicates(w.ECE, [probs], labels, resamples), atol=1e-12)


def test_draws_keep_strata_sizes_and_count_every_draw():
    strata = torch.tensor([0] * 7 + [1] * 5)
    resamples = v.draw_resamples(12, 4, n_boot=50, seed=1, strata=strata)
    weights = resamples.example_weights
    assert torch.equal(weights[:, :7].sum(1), torch.full((50,), 7.0))
    assert torch.equal(weights[:, 7:].sum(1), torch.full((50,), 5.0))
    assert torch.equal(resamples.seed_counts.sum(1), torch.full((50,), 4.0))
    assert (resamples.n_boot, resamples.n_seeds, resamples.n_examples) == (50, 4, 12)


def test_clearly_separated_methods_hold_and_identical_ones_are_inconclusive():
    rng = np.random.default_rng(2)
    n, k = 300, 5
    labels = torch.from_numpy(rng.integers(0, k, size=n))
    good = [torch.nn.functional.one_hot(labels, k).double() * 0.9 + 0.02 for _ in range(3)]
    noise = [torch.from_numpy(rng.dirichlet(np.ones(k), size=n)) for _ in range(3)]
    resamples = v.draw_resamples(n, 3, n_boot=500, seed=0)
    for metric in (w.ACCURACY, w.NLL, w.ECE):
        result = v.compare(metric, better=good, worse=noise, labels=labels,
                           resamples=resamples, names=("good", "noise"))
        assert result.verdict == v.HOLDS, metric.name
        reverse = v.compare(metric, better=noise, worse=good, labels=labels,
                            resamples=resamples)
        assert reverse.verdict == v.DOES_NOT_HOLD, metric.name
        same = v.compare(metric, better=noise, worse=noise, labels=labels,
                         resamples=resamples)
        assert same.verdict == v.INCONCLUSIVE
        assert same.difference.low == same.difference.high == same.difference.estimate == 0
    record = result.to_dict()
    assert record["better"] == "good" and record["difference"]["high"] < 0  # ECE: lower


def test_verdict_follows_the_interval_and_combine_needs_every_part():
    def at(low, high):
        return v.Interval(0.0, low, high, 0.95, 100)

    assert v.verdict(at(0.01, 0.2), claimed="positive") == v.HOLDS
    assert v.verdict(at(-0.2, -0.01), claimed="positive") == v.DOES_NOT_HOLD
    assert v.verdict(at(-0.2, -0.01), claimed="negative") == v.HOLDS
    assert v.verdict(at(-0.01, 0.2), claimed="negative") == v.INCONCLUSIVE
    assert v.verdict(at(0.0, 0.2), claimed="positive") == v.INCONCLUSIVE  # touches 0
    assert v.combine([v.HOLDS, v.HOLDS]) == v.HOLDS
    assert v.combine([v.HOLDS, v.INCONCLUSIVE]) == v.INCONCLUSIVE
    assert v.combine([v.HOLDS, v.DOES_NOT_HOLD, v.INCONCLUSIVE]) == v.DOES_NOT_HOLD
    with pytest.raises(ValueError, match="claimed must be"):
        v.verdict(at(0, 1), claimed="up")
    with pytest.raises(ValueError, match="unknown verdict"):
        v.combine(["maybe"])


def test_unpaired_inputs_are_refused():
    labels = torch.zeros(5, dtype=torch.long)
    probs = torch.full((5, 2), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match="same seeds"):
        v.paired_bootstrap(w.ACCURACY, [probs, probs], [probs], labels)
    resamples = v.draw_resamples(5, 2, n_boot=10)
    with pytest.raises(ValueError, match="n_seeds=1"):
        v.replicates(w.ACCURACY, [probs], labels, resamples)
    with pytest.raises(ValueError, match="strata must have shape"):
        v.draw_resamples(5, 1, strata=torch.zeros(4))


def test_closeness_is_the_difference_of_absolute_gaps_per_replicate():
    reps = (torch.tensor([0.50, 0.52, 0.49, 0.51]), torch.tensor([0.50, 0.50, 0.50, 0.50]),
            torch.tensor([0.40, 0.60, 0.45, 0.55]))
    result = v.closeness((0.5, 0.5, 0.45), reps)
    m, near, far = (x.numpy() for x in reps)
    expected = np.abs(m - near) - np.abs(m - far)
    assert result.estimate == pytest.approx(-0.05)
    assert (result.low, result.high) == pytest.approx(tuple(np.percentile(expected, [2.5, 97.5])))
    assert v.verdict(result, claimed="negative") == v.HOLDS


def _study_run(quality: float, *, n=400, k=3, identical_members: bool, seed: int,
               features_of=40):
    """One seed of a study variant: the ensemble right on the first round(q n) examples of a
    fixed order (confidence 0.99: ECE falls as accuracy rises), per-sample disagreement / MI,
    and the members' penultimate Gram matrices of the first ``features_of`` examples
    (identical members: one representation repeated)."""
    rng = np.random.default_rng(seed)
    labels = torch.arange(n) % k
    right = torch.zeros(n, dtype=torch.bool)
    right[: round(quality * n)] = True
    predicted = torch.where(right, labels, (labels + 1) % k)
    probs = torch.full((n, k), 0.01 / (k - 1), dtype=torch.float64)
    probs[torch.arange(n), predicted] = 0.99
    features = torch.from_numpy(rng.normal(size=(3, features_of, 5)))
    if identical_members:
        features = features[:1].expand(3, features_of, 5)
    spread = 0.0 if identical_members else 0.3
    per_sample = {"probs": probs, "labels": labels, "disagreement": torch.full((n,), spread),
                  "mutual_information": torch.full((n,), spread / 2)}
    return {"sets": {"clean": {"per_sample": per_sample}},
            "grams": features @ features.transpose(1, 2)}


def test_study_verdicts_test_the_diversity_claims_with_their_floor():
    floor = {"disagreement": 0.0, "mutual_information": 0.0, "cka_penultimate": 1.0}
    runs = {name: [_study_run(q, identical_members=same, seed=s) for s in range(2)]
            for name, q, same in (("single", 0.80, True), ("batchensemble", 0.82, True),
                                  ("deep_ensemble", 0.95, False))}
    verdicts = stats.study_verdicts(runs, floor=floor, seed=0)
    assert [v_["claim"] for v_ in verdicts] == [c.text for c in DIVERSITY_CLAIMS.claims]
    tracks, identical = verdicts
    assert list(tracks) == ["claim", "reference", "comparisons", "verdict"]
    assert tracks["reference"] == "single" and identical["reference"] == IDENTICAL
    # no OOD set here: the AUROC comparison is left out, the others hold
    assert [c["metric"] for c in tracks["comparisons"]] == ["accuracy", "ece", "nll"]
    assert list(tracks["comparisons"][0]) == ["metric", "batchensemble", "reference",
                                              "deep_ensemble", "closeness", "verdict"]
    assert tracks["comparisons"][0]["batchensemble"] == pytest.approx(0.82, abs=0.01)
    assert tracks["verdict"] == v.HOLDS
    # identical members sit on the floor of every measure
    assert [c["metric"] for c in identical["comparisons"]] == [
        "disagreement", "mutual_information", "cka_penultimate"]
    assert [c["reference"] for c in identical["comparisons"]] == [0.0, 0.0, 1.0]
    assert identical["comparisons"][2]["batchensemble"] == pytest.approx(1.0)
    assert identical["verdict"] == v.HOLDS
    # without the single model only the claim that does not need it is tested
    partial = stats.study_verdicts({key: runs[key] for key in ("batchensemble",
                                                               "deep_ensemble")}, floor=floor)
    assert [v_["reference"] for v_ in partial] == [IDENTICAL]


def test_claims_of_an_unknown_kind_are_refused():
    with pytest.raises(TypeError, match="unknown claim kind"):
        stats.orderings({}, claims=ClaimSet(claims=("a sentence",), unchecked=""))
