"""accuracy, nll, brier and the calibration metrics against independent references."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, log_loss

from ensemblekit.metrics import (
    PROBABILITY_FLOOR,
    accuracy,
    adaptive_ece,
    brier,
    brier_per_sample,
    calibration_gaps,
    confidence_and_correct,
    ece,
    mce,
    nll,
    nll_per_sample,
    reliability_bins,
)
from test_metrics_data import random_probs

TOL = 1e-6


def numpy_bins(probs, labels, n_bins):
    """Straightforward equal-width binning: bin b is [b/n, (b+1)/n), the last one closed."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    confidence = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    edges = np.arange(n_bins + 1) / n_bins
    rows = []
    for b in range(n_bins):
        upper_ok = confidence < edges[b + 1] if b < n_bins - 1 else confidence <= edges[b + 1]
        members = (confidence >= edges[b]) & upper_ok
        if members.any():
            rows.append((members.sum(), correct[members].mean(), confidence[members].mean()))
        else:
            rows.append((0, 0.0, 0.0))
    return rows, len(confidence)


def numpy_ece(probs, labels, n_bins=15):
    rows, n = numpy_bins(probs, labels, n_bins)
    return sum(count / n * abs(acc - conf) for count, acc, conf in rows)


def numpy_mce(probs, labels, n_bins=15):
    rows, _ = numpy_bins(probs, labels, n_bins)
    return max(abs(acc - conf) for count, acc, conf in rows if count)


def numpy_adaptive_ece(probs, labels, n_bins=15):
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    confidence = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    order = np.argsort(confidence, kind="stable")
    total = 0.0
    for run in np.array_split(order, n_bins):
        if len(run):
            total += len(run) / len(order) * abs(correct[run].mean() - confidence[run].mean())
    return total


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", [2, 10])
def test_accuracy_nll_brier_match_sklearn_and_numpy(seed, k):
    probs, labels = random_probs(500, k, seed)
    p, y = probs.numpy(), labels.numpy()
    assert accuracy(probs, labels) == pytest.approx(accuracy_score(y, p.argmax(1)), abs=TOL)
    assert nll(probs, labels) == pytest.approx(log_loss(y, p, labels=range(k)), abs=TOL)
    onehot = np.eye(k)[y]
    assert brier(probs, labels) == pytest.approx(((p - onehot) ** 2).sum(1).mean(), abs=TOL)


def test_float32_probabilities_are_accepted_and_computed_in_float64():
    probs, labels = random_probs(400, 5, seed=7, dtype=torch.float32)
    true_probs = probs.double().numpy()[np.arange(400), labels.numpy()]
    assert nll(probs, labels) == pytest.approx(-np.log(true_probs).mean(), abs=TOL)


def test_hand_computed_tiny_case():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.5, 0.0]])
    labels = torch.tensor([0, 1, 1])
    # argmaxes 0, 2, 0 (tie -> lowest index): only the first is right.
    assert accuracy(probs, labels) == pytest.approx(1 / 3)
    assert nll(probs, labels) == pytest.approx(-(math.log(0.7) + math.log(0.3) + math.log(0.5)) / 3)
    brier_rows = [0.09 + 0.04 + 0.01, 0.01 + 0.49 + 0.36, 0.25 + 0.25 + 0.0]
    assert brier(probs, labels) == pytest.approx(sum(brier_rows) / 3)


def test_nll_floors_a_zero_probability_like_sklearn():
    probs = torch.tensor([[1.0, 0.0], [0.25, 0.75]], dtype=torch.float64)
    labels = torch.tensor([1, 1])
    expected = (-math.log(PROBABILITY_FLOOR) - math.log(0.75)) / 2
    assert nll(probs, labels) == pytest.approx(expected, rel=1e-12)
    assert nll(probs, labels) == pytest.approx(log_loss([1, 1], probs.numpy(), labels=[0, 1]))


def test_per_sample_metrics_match_numpy_and_average_to_the_metric():
    probs, labels = random_probs(300, 6, seed=3, dtype=torch.float32)
    p, y = probs.double().numpy(), labels.numpy()
    rows = np.arange(len(y))
    per_nll = nll_per_sample(probs, labels)
    assert per_nll.shape == (300,) and per_nll.dtype == torch.float64
    np.testing.assert_allclose(per_nll.numpy(), -np.log(np.maximum(p[rows, y], 2.0 ** -52)),
                               rtol=1e-12)
    np.testing.assert_allclose(brier_per_sample(probs, labels).numpy(),
                               ((p - np.eye(6)[y]) ** 2).sum(1), atol=1e-12)
    confidence, correct = confidence_and_correct(probs, labels)
    np.testing.assert_array_equal(confidence.numpy(), p.max(1))
    np.testing.assert_array_equal(correct.numpy(), p.argmax(1) == y)
    # the scalar metrics are the means of the per-example ones, computed the same way
    assert nll(probs, labels) == per_nll.mean().item()
    assert brier(probs, labels) == brier_per_sample(probs, labels).mean().item()
    assert accuracy(probs, labels) == correct.double().mean().item()


@pytest.mark.parametrize("n_bins", [1, 4, 15])
def test_calibration_gaps_give_the_ece_and_a_weighted_ece(n_bins):
    probs, labels = random_probs(400, 5, seed=n_bins, sharpness=2.0)
    confidence, correct = confidence_and_correct(probs, labels)
    gaps = calibration_gaps(confidence, correct, n_bins)
    assert gaps.shape == (400, n_bins)
    assert gaps.sum(0).abs().sum().item() / 400 == pytest.approx(ece(probs, labels, n_bins),
                                                                 abs=1e-12)
    # each example sits in one bin: its row holds correct - confidence there, 0 elsewhere
    assert bool(((gaps != 0).sum(1) <= 1).all())
    np.testing.assert_allclose(gaps.sum(1).numpy(), (correct.double() - confidence).numpy())
    # integer weights = repeated examples: the weighted ECE is the ECE of the repeated set
    weights = torch.randint(0, 3, (400,), generator=torch.Generator().manual_seed(0))
    repeated = torch.repeat_interleave(torch.arange(400), weights)
    weighted = (weights.double() @ gaps).abs().sum() / weights.sum()
    assert weighted.item() == pytest.approx(ece(probs[repeated], labels[repeated], n_bins),
                                            abs=1e-12)
    # J sets of the same examples: one (N, J, n_bins) block per set
    stacked = calibration_gaps(torch.stack([confidence, confidence.flip(0)], 1),
                               torch.stack([correct, correct.flip(0)], 1), n_bins)
    assert stacked.shape == (400, 2, n_bins) and torch.equal(stacked[:, 0], gaps)


@pytest.mark.parametrize(("confidence", "correct", "match"), [
    (torch.tensor([0.5, 1.5]), torch.tensor([True, False]), "confidence must lie in"),
    (torch.tensor([0.5, float("nan")]), torch.tensor([True, False]), "confidence"),
    (torch.tensor([1, 0]), torch.tensor([True, False]), "confidence must be a floating"),
    (torch.tensor([0.5, 0.9]), torch.tensor([True]), "correct must have the shape"),
    (torch.zeros(2, 2, 2), torch.zeros(2, 2, 2, dtype=torch.bool), "confidence must have"),
])
def test_calibration_gaps_refuse_bad_input(confidence, correct, match):
    with pytest.raises(ValueError, match=match):
        calibration_gaps(confidence, correct)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_bins", [1, 5, 15])
def test_calibration_matches_numpy_reference(seed, n_bins):
    probs, labels = random_probs(1000, 10, seed, sharpness=1.0 + seed)
    assert ece(probs, labels, n_bins) == pytest.approx(numpy_ece(probs, labels, n_bins), abs=TOL)
    assert mce(probs, labels, n_bins) == pytest.approx(numpy_mce(probs, labels, n_bins), abs=TOL)
    reference = numpy_adaptive_ece(probs, labels, n_bins)
    assert adaptive_ece(probs, labels, n_bins) == pytest.approx(reference, abs=TOL)


def test_reliability_bins_match_numpy_reference():
    probs, labels = random_probs(700, 4, seed=3)
    bins = reliability_bins(probs, labels, n_bins=10)
    rows, _ = numpy_bins(probs, labels, 10)
    assert bins["edges"].tolist() == pytest.approx([b / 10 for b in range(11)])
    assert bins["count"].tolist() == [int(row[0]) for row in rows]
    assert bins["accuracy"].numpy() == pytest.approx([row[1] for row in rows], abs=TOL)
    assert bins["confidence"].numpy() == pytest.approx([row[2] for row in rows], abs=TOL)
    assert int(bins["count"].sum()) == 700


def test_confidence_of_exactly_one_lands_in_the_last_bin():
    probs = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    bins = reliability_bins(probs, labels, n_bins=15)
    assert bins["count"].tolist() == [0] * 14 + [3]
    assert bins["accuracy"][-1].item() == pytest.approx(2 / 3)
    # One bin of confidence 1 and accuracy 2/3: ECE = MCE = 1/3.
    assert ece(probs, labels) == pytest.approx(1 / 3)
    assert mce(probs, labels) == pytest.approx(1 / 3)


def test_confidence_on_an_inner_edge_opens_the_next_bin():
    # 0.6 = 3/5 is the lower edge of bin 3 of 5: bins are [lo, hi).
    probs = torch.tensor([[0.6, 0.4], [0.8, 0.2], [0.5, 0.5]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0])
    assert reliability_bins(probs, labels, n_bins=5)["count"].tolist() == [0, 0, 1, 1, 1]


def test_adaptive_bins_split_ties_by_input_order():
    # Four equal confidences, two bins: the first two samples form bin 0.
    probs = torch.tensor([[0.6, 0.4]] * 4, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    # bin 0: acc 1 vs 0.6; bin 1: acc 0 vs 0.6 -> (0.4 + 0.6) / 2
    assert adaptive_ece(probs, labels, n_bins=2) == pytest.approx(0.5)
    assert ece(probs, labels, n_bins=2) == pytest.approx(0.1)


def test_more_bins_than_samples_leaves_empty_bins_out():
    probs, labels = random_probs(3, 3, seed=0)
    assert adaptive_ece(probs, labels, n_bins=15) == pytest.approx(
        numpy_adaptive_ece(probs, labels, 15), abs=TOL
    )


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 60),
    k=st.integers(2, 6),
    sharpness=st.floats(0.0, 20.0),
    n_bins=st.integers(1, 20),
    seed=st.integers(0, 2**16),
)
def test_calibration_errors_lie_in_unit_interval(n, k, sharpness, n_bins, seed):
    probs, labels = random_probs(n, k, seed, sharpness=sharpness)
    for metric in (ece, adaptive_ece, mce):
        assert 0.0 <= metric(probs, labels, n_bins) <= 1.0
    assert ece(probs, labels, n_bins) <= mce(probs, labels, n_bins) + 1e-12


@settings(max_examples=40, deadline=None)
@given(
    groups=st.lists(
        st.tuples(st.integers(1, 12), st.integers(0, 12)).map(lambda t: (t[0], min(t[1], t[0]))),
        min_size=1,
        max_size=8,
    ),
    n_bins=st.integers(1, 20),
)
def test_ece_is_zero_for_perfectly_calibrated_predictions(groups, n_bins):
    # Each group: n samples at confidence c = hits / n (>= 1/2 so class 0 is the argmax) of
    # which exactly `hits` are right, so every bin's accuracy equals its mean confidence.
    rows, labels = [], []
    for size, hits in groups:
        hits = max(hits, (size + 1) // 2)
        confidence = hits / size
        rows += [[confidence, 1 - confidence]] * size
        labels += [0] * hits + [1] * (size - hits)
    probs = torch.tensor(rows, dtype=torch.float64)
    assert ece(probs, torch.tensor(labels), n_bins) == pytest.approx(0.0, abs=1e-12)
