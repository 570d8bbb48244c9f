"""Bad input to any metric -> ValueError (TypeError for a non-tensor) saying what was expected."""

import pytest
import torch

from ensemblekit.metrics import (
    accuracy,
    auroc,
    ece,
    evaluate_predictions,
    fpr_at_95_tpr,
    mutual_information,
    nll,
    normalized_disagreement,
    pairwise_kl,
    predictive_entropy,
)

PROBS = torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
LABELS = torch.tensor([1, 0, 0])
MEMBER_PROBS = PROBS.expand(2, -1, -1)


@pytest.mark.parametrize("metric", [accuracy, nll, ece])
@pytest.mark.parametrize(
    ("probs", "labels", "message"),
    [
        (PROBS, LABELS[:2], r"expected shape \(3,\), got \(2,\)"),
        (PROBS, LABELS.float(), "integer class indices.*got dtype torch.float32"),
        (PROBS, torch.tensor([1, 0, 2]), r"must lie in \[0, 1\] for 2 classes, got label 2"),
        (PROBS, torch.tensor([1, -1, 0]), "got label -1"),
        (PROBS, LABELS.unsqueeze(1), "labels must have 1 dimensions"),
        (PROBS * 2, LABELS, "sum to 1.*got a row summing to 2.*apply softmax"),
        (PROBS - 0.5, LABELS, "probabilities >= 0.*apply softmax"),
        (torch.tensor([[0.5, float("nan")]] * 3), LABELS, "NaN or infinite"),
        (torch.tensor([[float("inf"), 0.0]] * 3), LABELS, "NaN or infinite"),
        (torch.empty(0, 2), torch.empty(0, dtype=torch.long), r"must not be empty.*\(0, 2\)"),
        (MEMBER_PROBS, LABELS, r"probs must have 2 dimensions, got shape \(2, 3, 2\)"),
        (torch.tensor([[0, 1], [1, 0], [1, 0]]), LABELS, "floating-point.*torch.int64"),
    ],
)
def test_classification_input_errors(metric, probs, labels, message):
    with pytest.raises(ValueError, match=message):
        metric(probs, labels)


def test_non_tensor_is_a_type_error():
    with pytest.raises(TypeError, match="probs must be a torch.Tensor, got list"):
        nll([[0.5, 0.5]], LABELS)


def test_row_sum_tolerance_follows_the_dtype():
    slightly_off = torch.tensor([[0.5, 0.5 + 1e-5]])
    assert nll(slightly_off, torch.tensor([0])) > 0  # float32 rounding-level error is fine
    with pytest.raises(ValueError, match=r"within 1.5e-08 for torch.float64.*index \(0,\)"):
        nll(slightly_off.double(), torch.tensor([0]))


@pytest.mark.parametrize("metric", [mutual_information, pairwise_kl])
def test_member_probability_errors(metric):
    with pytest.raises(ValueError, match="member_probs must have 3 dimensions"):
        metric(PROBS)
    bad = MEMBER_PROBS.clone()
    bad[1, 2] = torch.tensor([0.9, 0.3])
    with pytest.raises(ValueError, match=r"summing to 1.2 at index \(1, 2\)"):
        metric(bad)
    with pytest.raises(ValueError, match="must not be empty"):
        metric(torch.empty(0, 3, 2))


def test_predictive_entropy_accepts_two_or_three_dimensions_only():
    assert predictive_entropy(PROBS).shape == (3,)
    with pytest.raises(ValueError, match="2 or 3 dimensions"):
        predictive_entropy(PROBS.reshape(-1))


def test_normalized_disagreement_checks_labels_against_members():
    with pytest.raises(ValueError, match=r"expected shape \(3,\), got \(4,\)"):
        normalized_disagreement(MEMBER_PROBS, torch.tensor([0, 1, 0, 1]))


@pytest.mark.parametrize("metric", [auroc, fpr_at_95_tpr])
def test_score_errors(metric):
    good = torch.tensor([0.1, 0.2])
    with pytest.raises(ValueError, match=r"scores_out must not be empty, got shape \(0,\)"):
        metric(good, torch.empty(0))
    with pytest.raises(ValueError, match="scores_in must have 1 dimensions"):
        metric(good.reshape(1, 2), good)
    with pytest.raises(ValueError, match="scores_in contains 1 NaN"):
        metric(torch.tensor([0.1, float("nan")]), good)
    with pytest.raises(ValueError, match="real-valued scores"):
        metric(good, torch.tensor([True, False]))


@pytest.mark.parametrize(
    ("logits", "message"),
    [
        (torch.randn(3, 2), r"member_logits must have 3 dimensions, got shape \(3, 2\)"),
        (torch.randint(0, 5, (2, 3, 2)), "floating-point"),
        (torch.full((2, 3, 2), float("-inf")), "12 NaN or infinite"),
        (torch.empty(2, 0, 2), "must not be empty"),
    ],
)
def test_logit_errors(logits, message):
    with pytest.raises(ValueError, match=message):
        evaluate_predictions(logits, torch.zeros(logits.shape[1] if logits.ndim == 3 else 3))


def test_ood_logits_are_checked_too():
    logits = torch.randn(2, 3, 2)
    with pytest.raises(ValueError, match="ood_member_logits contains 2 NaN"):
        evaluate_predictions(
            logits, LABELS, ood_member_logits=torch.tensor([[[0.0, float("nan")]]] * 2)
        )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_accepted(dtype):
    logits = torch.randn(3, 40, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(40) % 4
    exact = evaluate_predictions(logits.double(), labels)["nll"]
    assert evaluate_predictions(logits.to(dtype), labels)["nll"] == pytest.approx(exact, abs=0.01)
    probs = torch.softmax(logits.double(), -1).mean(0)
    assert nll(probs.to(dtype), labels) == pytest.approx(exact, abs=0.01)
