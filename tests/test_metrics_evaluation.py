"""evaluate_predictions / PredictionAccumulator: one pass equals the individual metrics."""

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from ensemblekit.metrics import (
    OOD_SCORES,
    PredictionAccumulator,
    accuracy,
    adaptive_ece,
    aupr,
    aupr_in,
    auroc,
    brier,
    ece,
    evaluate_predictions,
    expected_entropy,
    fpr_at_95_tpr,
    mce,
    mutual_information,
    nll,
    ood_scores,
    pairwise_cosine,
    pairwise_disagreement,
    pairwise_js,
    pairwise_kl,
    predictive_entropy,
    reliability_bins,
    variation_ratio,
)

TOL = 1e-6


def logits_and_labels(m=4, n=1000, k=10, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=g)
    logits = torch.randn(m, n, k, generator=g) * scale
    logits[:, torch.arange(n), labels] += 2.0  # better than chance, so errors are informative
    return logits, labels


def off_diagonal_mean(matrix):
    m = matrix.shape[0]
    return ((matrix.sum() - matrix.diagonal().sum()) / (m * (m - 1))).item()


@pytest.fixture(scope="module")
def data():
    logits, labels = logits_and_labels()
    ood_logits = torch.randn(4, 700, 10, generator=torch.Generator().manual_seed(5)) * 1.5
    results = evaluate_predictions(logits, labels, ood_member_logits=ood_logits)
    return logits, labels, ood_logits, results


def test_scalars_equal_the_individual_functions(data):
    logits, labels, _, results = data
    member_probs = torch.softmax(logits.double(), -1)
    probs = member_probs.mean(0)
    expected = {
        "accuracy": accuracy(probs, labels),
        "nll": nll(probs, labels),
        "brier": brier(probs, labels),
        "ece": ece(probs, labels),
        "adaptive_ece": adaptive_ece(probs, labels),
        "mce": mce(probs, labels),
        "predictive_entropy": predictive_entropy(member_probs).mean().item(),
        "expected_entropy": expected_entropy(member_probs).mean().item(),
        "mutual_information": mutual_information(member_probs).mean().item(),
        "variation_ratio": variation_ratio(member_probs).mean().item(),
        "disagreement": off_diagonal_mean(pairwise_disagreement(member_probs)),
        "kl": off_diagonal_mean(pairwise_kl(member_probs)),
        "js": off_diagonal_mean(pairwise_js(member_probs)),
        "cosine": off_diagonal_mean(pairwise_cosine(member_probs)),
    }
    for name, value in expected.items():
        assert results[name] == pytest.approx(value, abs=TOL), name
    error = 1 - results["accuracy"]
    assert results["normalized_disagreement"] == pytest.approx(expected["disagreement"] / error)
    assert results["member_accuracy"] == pytest.approx(
        [accuracy(member_probs[m], labels) for m in range(4)]
    )
    for name, measure in [("kl", pairwise_kl), ("js", pairwise_js), ("cosine", pairwise_cosine)]:
        assert_close(results[f"{name}_matrix"], measure(member_probs).tolist(), TOL)
    reliability = reliability_bins(probs, labels)
    assert results["reliability"]["count"] == reliability["count"].tolist()
    assert results["reliability"]["accuracy"] == pytest.approx(reliability["accuracy"].tolist())
    assert (results["n_samples"], results["n_members"], results["n_classes"]) == (1000, 4, 10)


def test_nll_and_auroc_agree_with_sklearn(data):
    logits, labels, ood_logits, results = data
    probs = torch.softmax(logits.double(), -1).mean(0).numpy()
    assert results["nll"] == pytest.approx(log_loss(labels.numpy(), probs), abs=TOL)
    ood_probs = torch.softmax(ood_logits.double(), -1).mean(0).numpy()
    scores = np.concatenate([1 - probs.max(1), 1 - ood_probs.max(1)])
    is_out = np.r_[np.zeros(len(probs)), np.ones(len(ood_probs))]
    assert results["ood"]["msp"]["auroc"] == pytest.approx(roc_auc_score(is_out, scores), abs=TOL)
    reference = average_precision_score(is_out, scores)
    assert results["ood"]["msp"]["aupr"] == pytest.approx(reference, abs=TOL)


def test_ood_entry_equals_the_detection_functions(data):
    logits, _, ood_logits, results = data
    assert set(results["ood"]) == set(OOD_SCORES)
    assert results["n_ood_samples"] == 700
    for kind in OOD_SCORES:
        scores_in = ood_scores(logits, kind, from_logits=True)
        scores_out = ood_scores(ood_logits, kind, from_logits=True)
        expected = {
            "auroc": auroc(scores_in, scores_out),
            "aupr": aupr(scores_in, scores_out),
            "aupr_in": aupr_in(scores_in, scores_out),
            "fpr95": fpr_at_95_tpr(scores_in, scores_out),
        }
        assert results["ood"][kind] == pytest.approx(expected, abs=TOL), kind


def test_chunked_streaming_equals_one_shot(data):
    logits, labels, ood_logits, one_shot = data
    sizes = [1, 99, 400, 500]  # uneven chunks, including a single sample
    chunks = list(zip(logits.split(sizes, dim=1), labels.split(sizes), strict=True))
    streamed = evaluate_predictions(iter(chunks), ood_member_logits=ood_logits.split(300, dim=1))
    assert json.loads(json.dumps(streamed)).keys() == one_shot.keys()  # JSON-ready
    assert_close(streamed, one_shot, 1e-12)


def assert_close(left, right, tol, where="results"):
    """Recursive comparison of nested dicts / lists of numbers (nan equals nan)."""
    if isinstance(right, dict):
        assert left.keys() == right.keys(), where
        for key in right:
            assert_close(left[key], right[key], tol, f"{where}[{key!r}]")
    elif isinstance(right, list):
        assert len(left) == len(right), where
        for i, (a, b) in enumerate(zip(left, right, strict=True)):
            assert_close(a, b, tol, f"{where}[{i}]")
    else:
        assert left == pytest.approx(right, abs=tol, nan_ok=True), where


def test_large_chunk_spans_several_internal_blocks():
    # More samples than one internal block: block boundaries must not change any number.
    logits, labels = logits_and_labels(m=2, n=40_000, k=3, seed=2)
    accumulator = PredictionAccumulator()
    accumulator.update(logits, labels)
    results = accumulator.compute()
    probs = torch.softmax(logits.double(), -1)
    assert results["ece"] == pytest.approx(ece(probs.mean(0), labels), abs=TOL)
    assert results["js"] == pytest.approx(off_diagonal_mean(pairwise_js(probs)), abs=TOL)
    assert accumulator.n_samples == 40_000


def test_single_member_has_no_pairs():
    logits, labels = logits_and_labels(m=1, n=200, k=4)
    results = evaluate_predictions(logits, labels)
    for key in ("disagreement", "normalized_disagreement", "kl", "js", "cosine"):
        assert math.isnan(results[key]), key
    assert results["mutual_information"] == pytest.approx(0.0, abs=1e-12)
    assert results["variation_ratio"] == 0.0


def test_extreme_logits_stay_finite():
    # Logit gaps of 1e4 underflow every softmax probability but one to exactly 0.
    logits = torch.tensor([[[1e4, 0.0, -1e4]], [[0.0, 1e4, 0.0]]])
    results = evaluate_predictions(logits, torch.tensor([2]))
    assert results["nll"] == pytest.approx(-math.log(torch.finfo(torch.float64).eps))
    for key in ("kl", "js", "cosine", "mutual_information", "expected_entropy"):
        assert math.isfinite(results[key]), key
    assert results["js"] == pytest.approx(math.log(2))


def test_perfect_ensemble_reports_nan_normalized_disagreement_without_error():
    labels = torch.arange(4) % 2
    logits = torch.nn.functional.one_hot(labels, 2).float().expand(3, -1, -1) * 20
    results = evaluate_predictions(logits, labels)
    assert results["accuracy"] == 1.0
    assert results["disagreement"] == 0.0
    assert math.isnan(results["normalized_disagreement"])


def test_accumulator_rejects_inconsistent_or_missing_input():
    accumulator = PredictionAccumulator()
    with pytest.raises(ValueError, match="call update"):
        accumulator.compute()
    logits, labels = logits_and_labels(m=3, n=10, k=5)
    accumulator.update(logits, labels)
    with pytest.raises(ValueError, match=r"expected \(M=3, \*, K=5\), got shape \(2, 10, 5\)"):
        accumulator.update(logits[:2], labels)
    with pytest.raises(ValueError, match="K=5"):
        accumulator.update_ood(torch.randn(3, 4, 6))
    accumulator.reset()
    accumulator.update_ood(torch.randn(2, 4, 6))  # after reset any shape is new
    with pytest.raises(ValueError, match="call update"):
        accumulator.compute()


def test_evaluate_predictions_argument_forms():
    logits, labels = logits_and_labels(m=2, n=20, k=3)
    with pytest.raises(ValueError, match=r"labels are required.*\(20,\)"):
        evaluate_predictions(logits)
    with pytest.raises(ValueError, match="left out"):
        evaluate_predictions([(logits, labels)], labels)
    with pytest.raises(ValueError, match="pairs"):
        evaluate_predictions([logits])
    with pytest.raises(TypeError, match="iterable of chunks"):
        evaluate_predictions(3.0)
    with pytest.raises(ValueError, match="n_bins"):
        evaluate_predictions(logits, labels, n_bins=0)
    assert evaluate_predictions([(logits, labels)], n_bins=5)["n_bins"] == 5


def test_per_sample_values_for_plots():
    logits, labels = logits_and_labels(m=3, n=300, k=5, seed=4)
    ood_logits = torch.randn(3, 120, 5, generator=torch.Generator().manual_seed(6))
    accumulator = PredictionAccumulator()
    label_buffer = labels.clone()
    for start in range(0, 300, 100):
        label_buffer[:100] = labels[start : start + 100]
        accumulator.update(logits[:, start : start + 100], label_buffer[:100])
    label_buffer.fill_(0)  # a loader reusing its buffer must not change what was added
    accumulator.update_ood(ood_logits)
    values = accumulator.per_sample()
    member_probs = torch.softmax(logits.double(), -1)
    confidence, prediction = member_probs.mean(0).max(-1)
    assert torch.equal(values["label"], labels)
    assert torch.equal(values["prediction"], prediction)
    assert torch.equal(values["correct"], prediction == labels)
    assert torch.allclose(values["confidence"], confidence, atol=1e-12)
    for kind in OOD_SCORES:
        expected = ood_scores(logits, kind, from_logits=True)
        assert torch.allclose(values["scores"][kind], expected, atol=1e-12)
        expected = ood_scores(ood_logits, kind, from_logits=True)
        assert torch.allclose(values["ood_scores"][kind], expected, atol=1e-12)
    assert accumulator.compute()["accuracy"] == accuracy(member_probs.mean(0), labels)


def test_logit_ood_scores_agree_with_sklearn(data):
    from scipy.special import logsumexp

    logits, _, ood_logits, results = data
    z_in, z_out = logits.double().numpy(), ood_logits.double().numpy()
    references = {
        "max_logit": lambda z: -z.mean(0).max(-1),
        "energy": lambda z: -logsumexp(z.mean(0), axis=-1),
        "energy_members": lambda z: -logsumexp(z, axis=-1).mean(0),
    }
    is_out = np.r_[np.zeros(z_in.shape[1]), np.ones(z_out.shape[1])]
    for kind, score in references.items():
        scores = np.concatenate([score(z_in), score(z_out)])
        assert results["ood"][kind]["auroc"] == pytest.approx(
            roc_auc_score(is_out, scores), abs=TOL), kind
        assert results["ood"][kind]["aupr"] == pytest.approx(
            average_precision_score(is_out, scores), abs=TOL), kind


def test_single_member_disagreement_scores_are_none_not_numbers():
    logits, labels = logits_and_labels(m=1, n=300, k=5)
    ood_logits = torch.randn(1, 200, 5, generator=torch.Generator().manual_seed(3))
    results = evaluate_predictions(logits, labels, ood_member_logits=ood_logits)
    for kind in ("mutual_information", "variation_ratio"):
        assert results["ood"][kind] == {"auroc": None, "aupr": None, "aupr_in": None,
                                        "fpr95": None}
    for kind in ("msp", "entropy", "max_logit", "energy", "energy_members"):
        assert 0 <= results["ood"][kind]["auroc"] <= 1, kind
    assert json.loads(json.dumps(results))["ood"]["mutual_information"]["auroc"] is None
    # Two members: every score is a number again.
    two = evaluate_predictions(logits.expand(2, -1, -1), labels,
                               ood_member_logits=ood_logits.expand(2, -1, -1))
    assert isinstance(two["ood"]["variation_ratio"]["auroc"], float)


def test_selective_metrics_of_the_mean_prediction(data):
    from ensemblekit.metrics import selective_summary

    logits, labels, _, results = data
    probs = torch.softmax(logits.double(), -1).mean(0).numpy()
    confidence = torch.from_numpy(probs.max(1))
    correct = torch.from_numpy(probs.argmax(1) == labels.numpy())
    expected = selective_summary(confidence, correct)
    assert {key: results[key] for key in expected} == pytest.approx(expected, abs=1e-12)
    assert set(expected) >= {"aurc", "e_aurc", "augrc", "risk_at_95_coverage",
                             "coverage_at_5_risk"}
