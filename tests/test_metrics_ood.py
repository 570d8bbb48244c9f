"""OOD detection metrics and scores against scikit-learn and hand-computed cases."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from ensemblekit.metrics import (
    OOD_SCORES,
    aupr,
    aupr_in,
    auroc,
    expected_entropy,
    fpr_at_95_tpr,
    fpr_at_tpr,
    mutual_information,
    ood_scores,
    predictive_entropy,
    variation_ratio,
)
from test_metrics_data import random_member_probs

TOL = 1e-6


def sklearn_reference(scores_in, scores_out, tpr=0.95):
    scores = np.concatenate([scores_in, scores_out])
    is_out = np.concatenate([np.zeros(len(scores_in)), np.ones(len(scores_out))])
    fpr_curve, tpr_curve, _ = roc_curve(is_out, scores, drop_intermediate=False)
    return {
        "auroc": roc_auc_score(is_out, scores),
        "aupr": average_precision_score(is_out, scores),
        "aupr_in": average_precision_score(1 - is_out, -scores),
        "fpr": fpr_curve[np.argmax(tpr_curve >= tpr)],
    }


def ours(scores_in, scores_out, tpr=0.95):
    scores_in, scores_out = torch.as_tensor(scores_in), torch.as_tensor(scores_out)
    return {
        "auroc": auroc(scores_in, scores_out),
        "aupr": aupr(scores_in, scores_out),
        "aupr_in": aupr_in(scores_in, scores_out),
        "fpr": fpr_at_tpr(scores_in, scores_out, tpr),
    }


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["continuous", "heavy_ties", "unbalanced"])
def test_detection_metrics_match_sklearn(seed, kind):
    rng = np.random.default_rng(seed)
    if kind == "continuous":
        scores_in, scores_out = rng.normal(0, 1, 800), rng.normal(0.7, 1.2, 600)
    elif kind == "heavy_ties":
        scores_in, scores_out = rng.integers(0, 4, 800) / 4, rng.integers(1, 5, 500) / 4
    else:
        scores_in, scores_out = rng.normal(0, 1, 2000), rng.normal(1.5, 1, 37)
    reference = sklearn_reference(scores_in, scores_out)
    for name, value in ours(scores_in, scores_out).items():
        assert value == pytest.approx(reference[name], abs=TOL), name


@pytest.mark.parametrize("tpr", [0.05, 0.5, 0.9, 0.95, 1.0])
def test_fpr_at_any_tpr_matches_sklearn_roc_curve(tpr):
    rng = np.random.default_rng(11)
    scores_in, scores_out = rng.integers(0, 30, 300) / 7, rng.integers(5, 40, 200) / 7
    expected = sklearn_reference(scores_in, scores_out, tpr)["fpr"]
    assert ours(scores_in, scores_out, tpr)["fpr"] == pytest.approx(expected, abs=TOL)


def test_hand_computed_tiny_case():
    scores_in = torch.tensor([0.1, 0.4, 0.35])
    scores_out = torch.tensor([0.8, 0.4])
    # Pairs (out, in): 0.8 beats all three; 0.4 beats 0.1 and 0.35, ties 0.4 -> (3 + 2.5) / 6.
    assert auroc(scores_in, scores_out) == pytest.approx(5.5 / 6)
    # Thresholds 0.8: P=1, R=1/2; 0.4 (a tie block): P=2/3, R=1 -> 1/2 * 1 + 1/2 * 2/3.
    assert aupr(scores_in, scores_out) == pytest.approx(0.5 + 1 / 3)
    # TPR reaches 0.95 only at threshold 0.4, where one of three in-samples is flagged.
    assert fpr_at_95_tpr(scores_in, scores_out) == pytest.approx(1 / 3)


def test_perfect_and_reversed_separation():
    low, high = torch.arange(5.0), torch.arange(10.0, 15.0)
    assert auroc(low, high) == 1.0 and aupr(low, high) == 1.0 and aupr_in(low, high) == 1.0
    assert fpr_at_95_tpr(low, high) == 0.0
    assert auroc(high, low) == 0.0 and fpr_at_95_tpr(high, low) == 1.0


def test_all_scores_tied_gives_chance_values():
    scores_in, scores_out = torch.zeros(30), torch.zeros(10)
    assert auroc(scores_in, scores_out) == 0.5
    assert aupr(scores_in, scores_out) == pytest.approx(10 / 40)
    assert aupr_in(scores_in, scores_out) == pytest.approx(30 / 40)
    assert fpr_at_95_tpr(scores_in, scores_out) == 1.0


def test_integer_scores_are_accepted():
    scores_in, scores_out = torch.tensor([0, 1, 1, 2]), torch.tensor([1, 2, 3])
    reference = sklearn_reference(scores_in.numpy(), scores_out.numpy())
    assert auroc(scores_in, scores_out) == pytest.approx(reference["auroc"], abs=TOL)


@settings(max_examples=50, deadline=None)
@given(
    scores=st.lists(st.integers(-3, 3).map(float) | st.floats(-1e6, 1e6), min_size=1, max_size=40),
    seed=st.integers(0, 2**16),
)
def test_auroc_is_one_half_for_identical_score_distributions(scores, seed):
    # scores_out is a permutation of scores_in: every out-in comparison has its mirror image.
    scores_in = torch.tensor(scores, dtype=torch.float64)
    order = torch.randperm(len(scores), generator=torch.Generator().manual_seed(seed))
    assert auroc(scores_in, scores_in[order]) == 0.5


@settings(max_examples=40, deadline=None)
@given(
    scores_in=st.lists(st.integers(0, 5), min_size=1, max_size=30),
    scores_out=st.lists(st.integers(0, 5), min_size=1, max_size=30),
)
def test_detection_metrics_match_sklearn_on_small_tied_sets(scores_in, scores_out):
    scores_in, scores_out = np.array(scores_in, float), np.array(scores_out, float)
    reference = sklearn_reference(scores_in, scores_out)
    for name, value in ours(scores_in, scores_out).items():
        assert value == pytest.approx(reference[name], abs=TOL), name


def test_ood_scores_are_the_named_quantities():
    probs = random_member_probs(3, 50, 6, seed=0)
    mean = probs.mean(0)
    assert torch.allclose(ood_scores(probs, "msp"), 1 - mean.max(-1).values)
    assert torch.allclose(ood_scores(probs, "entropy"), predictive_entropy(probs))
    assert torch.allclose(ood_scores(probs, "mutual_information"), mutual_information(probs))
    assert torch.equal(ood_scores(probs, "variation_ratio"), variation_ratio(probs))
    # "entropy" is the entropy of the mean, not the mean member entropy (which is smaller).
    assert bool((ood_scores(probs, "entropy") > expected_entropy(probs)).all())
    assert set(OOD_SCORES) == {"msp", "entropy", "mutual_information", "variation_ratio",
                               "max_logit", "energy", "energy_members"}


def test_unknown_score_kind_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown kind 'logit'.*msp, entropy"):
        ood_scores(random_member_probs(3, 50, 6, seed=0), "logit")


def test_logit_scores_are_the_named_quantities():
    # numpy / scipy references: MaxLogit and Energy of the mean logits, mean member energy.
    from scipy.special import logsumexp

    logits = torch.randn(3, 50, 6, generator=torch.Generator().manual_seed(1)) * 4
    z = logits.double().numpy()
    expected = {"max_logit": -z.mean(0).max(-1), "energy": -logsumexp(z.mean(0), axis=-1),
                "energy_members": -logsumexp(z, axis=-1).mean(0)}
    for kind, reference in expected.items():
        got = ood_scores(logits, kind, from_logits=True)
        assert got.dtype == torch.float64 and np.allclose(got.numpy(), reference, atol=1e-12)
    # The probability kinds from logits are those of the softmax.
    probs = torch.softmax(logits.double(), -1)
    for kind in ("msp", "entropy", "mutual_information", "variation_ratio"):
        assert torch.allclose(ood_scores(logits, kind, from_logits=True), ood_scores(probs, kind))


def test_logit_scores_say_higher_is_more_ood():
    # A confident in-distribution logit vector has a larger max and logsumexp than a flat one.
    confident = torch.tensor([[[8.0, 0.0, 0.0]]])
    flat = torch.tensor([[[0.5, 0.4, 0.6]]])
    for kind in ("max_logit", "energy", "energy_members", "msp", "entropy"):
        assert ood_scores(flat, kind, from_logits=True) > ood_scores(confident, kind,
                                                                     from_logits=True), kind


def test_logit_scores_need_logits():
    with pytest.raises(ValueError, match="from_logits=True"):
        ood_scores(random_member_probs(3, 50, 6, seed=0), "energy")
    with pytest.raises(ValueError, match="NaN"):
        ood_scores(torch.tensor([[[0.0, float("nan")]]]), "energy", from_logits=True)
    with pytest.raises(ValueError, match="from_logits"):
        ood_scores(torch.zeros(1, 2, 3), "energy", from_logits="yes")


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.1])
def test_tpr_outside_unit_interval_is_rejected(bad):
    with pytest.raises(ValueError, match="tpr"):
        fpr_at_tpr(torch.zeros(3), torch.ones(3), bad)
