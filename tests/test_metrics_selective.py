"""Selective prediction metrics against plain numpy loops and an average over tie orders."""

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import ensemblekit
from ensemblekit.metrics import (
    SELECTIVE_COVERAGES,
    SELECTIVE_RISKS,
    augrc,
    aurc,
    coverage_at_risk,
    e_aurc,
    risk_at_coverage,
    risk_coverage_curve,
    selective_summary,
)
from ensemblekit.metrics.selective import coverage_key, risk_key

TOL = 1e-6


def reference_errors(confidence, correct):
    """E_i for i = 1..N by a loop: everything strictly more confident than the i-th sample is
    accepted, the rest of the i comes from its tie block at that block's error rate."""
    confidence, wrong = np.asarray(confidence, float), ~np.asarray(correct, bool)
    values = np.sort(confidence)[::-1]
    expected = []
    for i in range(1, len(values) + 1):
        above = confidence > values[i - 1]
        tied = confidence == values[i - 1]
        expected.append(wrong[above].sum() + (i - above.sum()) * wrong[tied].mean())
    return np.array(expected)


def reference_metrics(confidence, correct):
    errors = reference_errors(confidence, correct)
    n = len(errors)
    risk = errors / np.arange(1, n + 1)
    oracle = np.array([max(0, i - np.sum(correct)) / i for i in range(1, n + 1)])
    generalized = np.concatenate([[0.0], errors / n])
    coverage = np.arange(0, n + 1) / n
    area = sum((coverage[i] - coverage[i - 1]) * (generalized[i] + generalized[i - 1]) / 2
               for i in range(1, n + 1))
    metrics = {"aurc": risk.mean(), "e_aurc": risk.mean() - oracle.mean(), "augrc": area}
    for percent in (80, 90, 95):
        i = next(i for i in range(1, n + 1) if i / n >= percent / 100)
        metrics[f"risk_at_{percent}_coverage"] = risk[i - 1]
    for percent in (1, 2, 5):
        ok = [i / n for i in range(1, n + 1) if risk[i - 1] <= percent / 100]
        metrics[f"coverage_at_{percent}_risk"] = max(ok) if ok else 0.0
    return metrics


def sample(kind, seed, n=600):
    rng = np.random.default_rng(seed)
    correct = rng.random(n) < 0.9
    if kind == "continuous":
        confidence = rng.normal(0, 1, n) + 1.5 * correct
    elif kind == "ties":
        confidence = rng.integers(0, 6, n) + 2 * correct
    else:  # almost perfect: risks below 1% are reachable
        correct = rng.random(n) < 0.97
        confidence = rng.normal(0, 1, n) + 4 * correct
    return confidence.astype(np.float64), correct


def ours(confidence, correct):
    return selective_summary(torch.from_numpy(confidence), torch.from_numpy(correct))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", ["continuous", "ties", "separable"])
def test_summary_matches_the_reference_loop(kind, seed):
    confidence, correct = sample(kind, seed)
    expected = (reference_metrics(confidence, correct))
    assert (ours(confidence, correct)) == pytest.approx(expected, abs=TOL)


def test_single_functions_equal_the_summary():
    confidence, correct = sample("ties", 5)
    c, k = torch.from_numpy(confidence), torch.from_numpy(correct)
    summary = selective_summary(c, k)
    assert aurc(c, k) == summary["aurc"] and e_aurc(c, k) == summary["e_aurc"]
    assert augrc(c, k) == summary["augrc"]
    for coverage in SELECTIVE_COVERAGES:
        assert risk_at_coverage(c, k, coverage) == summary[risk_key(coverage)]
    for risk in SELECTIVE_RISKS:
        assert coverage_at_risk(c, k, risk) == summary[coverage_key(risk)]


@pytest.mark.parametrize("seed", range(4))
def test_ties_are_the_average_over_every_order_of_the_tied_samples(seed):
    # The expectation over uniformly random tie-breaking, enumerated exactly on 7 samples.
    rng = np.random.default_rng(seed)
    confidence = rng.integers(0, 3, 7).astype(float)
    correct = rng.random(7) < 0.6
    correct[:2] = True, False  # at least one right and one wrong
    orders = [p for p in itertools.permutations(range(7))
              if all(confidence[p[j]] >= confidence[p[j + 1]] for j in range(6))]
    per_order = []
    for order in orders:
        # Distinct, strictly decreasing scores in this order: no ties left to resolve.
        distinct = np.empty(7)
        distinct[list(order)] = np.arange(7, 0, -1)
        per_order.append(reference_metrics(distinct, correct))
    averaged = {key: np.mean([m[key] for m in per_order])
                for key in ("aurc", "e_aurc", "augrc")}
    got = ours(confidence, correct)
    assert {key: got[key] for key in averaged} == pytest.approx(averaged, abs=1e-12)


@pytest.mark.parametrize("kind", ["continuous", "ties"])
def test_augrc_equals_the_auroc_identity(kind):
    # Traub et al. (2024): AUGRC = (1 - AUROC_f) acc (1 - acc) + (1 - acc)^2 / 2, with the
    # AUROC of confidence at ranking correct above wrong (ties as half credit).
    confidence, correct = sample(kind, 11)
    accuracy = correct.mean()
    identity = ((1 - roc_auc_score(correct, confidence)) * accuracy * (1 - accuracy)
                + (1 - accuracy) ** 2 / 2)
    assert ours(confidence, correct)["augrc"] == pytest.approx(identity, abs=1e-12)


def test_oracle_and_reversed_orders():
    correct = np.array([True] * 8 + [False] * 2)
    oracle = np.arange(10, 0, -1).astype(float)  # every correct sample more confident
    summary = ours(oracle, correct)
    assert summary["e_aurc"] == pytest.approx(0.0, abs=1e-15)
    assert summary["risk_at_80_coverage"] == 0.0
    assert summary["coverage_at_1_risk"] == 0.8
    worst = ours(oracle[::-1].copy(), correct)
    assert worst["risk_at_80_coverage"] == pytest.approx(2 / 8)
    assert worst["coverage_at_5_risk"] == 0.0  # the most confident sample is wrong
    assert worst["aurc"] > summary["aurc"]


def test_constant_confidence_is_the_error_rate_everywhere():
    correct = np.array([True, False, True, True])
    summary = ours(np.zeros(4), correct)
    assert summary["aurc"] == pytest.approx(0.25) and summary["e_aurc"] > 0
    for coverage in SELECTIVE_COVERAGES:
        assert summary[risk_key(coverage)] == pytest.approx(0.25)


def test_curve_has_one_point_per_distinct_confidence():
    confidence = torch.tensor([0.9, 0.9, 0.5, 0.7, 0.5, 0.5], dtype=torch.float64)
    correct = torch.tensor([True, False, True, True, False, True])
    coverage, risk, thresholds = risk_coverage_curve(confidence, correct)
    assert thresholds.tolist() == [0.9, 0.7, 0.5]
    assert coverage.tolist() == pytest.approx([2 / 6, 3 / 6, 1.0])
    assert risk.tolist() == pytest.approx([1 / 2, 1 / 3, 2 / 6])


def test_input_order_does_not_matter():
    confidence, correct = sample("ties", 3, n=200)
    permutation = np.random.default_rng(0).permutation(200)
    assert (ours(confidence, correct)) == pytest.approx(
        (ours(confidence[permutation], correct[permutation])), abs=1e-12)


def test_exported_from_the_package():
    assert ensemblekit.metrics.aurc is aurc
    assert ensemblekit.aurc is aurc and ensemblekit.augrc is augrc


@pytest.mark.parametrize("confidence, correct, match", [
    (torch.tensor([0.1, 0.2]), torch.tensor([1, 0]), "correct must be a bool tensor"),
    (torch.tensor([0.1, 0.2]), torch.tensor([True]), r"expected shape \(2,\)"),
    (torch.tensor([0.1, float("nan")]), torch.tensor([True, False]), "NaN"),
    (torch.zeros(2, 2), torch.tensor([True, False]), "1 dimensions"),
    (torch.tensor([]), torch.tensor([], dtype=torch.bool), "empty"),
])
def test_bad_input_is_rejected(confidence, correct, match):
    with pytest.raises(ValueError, match=match):
        aurc(confidence, correct)


@pytest.mark.parametrize("bad", [0.0, 1.5, math.nan])
def test_bad_coverage_is_rejected(bad):
    with pytest.raises(ValueError, match="coverage"):
        risk_at_coverage(torch.zeros(3), torch.ones(3, dtype=torch.bool), bad)
    with pytest.raises(ValueError, match="risk"):
        coverage_at_risk(torch.zeros(3), torch.ones(3, dtype=torch.bool), bad + 2)
