"""Per-sample uncertainty decomposition against scipy and hand-computed cases."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import entropy as scipy_entropy

from ensemblekit.metrics import (
    expected_entropy,
    mutual_information,
    predictive_entropy,
    variation_ratio,
)
from test_metrics_data import random_member_probs

TOL = 1e-6


@pytest.mark.parametrize("seed", range(3))
def test_entropies_match_scipy(seed):
    probs = random_member_probs(4, 200, 7, seed)
    p = probs.numpy()
    entropy_of_mean = scipy_entropy(p.mean(0), axis=-1)
    mean_entropy = scipy_entropy(p, axis=-1).mean(0)
    assert predictive_entropy(probs).numpy() == pytest.approx(entropy_of_mean, abs=TOL)
    assert expected_entropy(probs).numpy() == pytest.approx(mean_entropy, abs=TOL)
    reference = entropy_of_mean - mean_entropy
    assert mutual_information(probs).numpy() == pytest.approx(reference, abs=TOL)


def test_single_model_probabilities_give_their_entropy():
    probs = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    expected = [math.log(2), 0.0, math.log(3)]
    assert predictive_entropy(probs).tolist() == pytest.approx(expected, abs=1e-7)


def test_two_confident_members_that_disagree():
    probs = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]], dtype=torch.float64)
    # Each member is certain (aleatoric 0); their mean is a coin flip (all epistemic).
    assert expected_entropy(probs).item() == 0.0
    assert predictive_entropy(probs).item() == pytest.approx(math.log(2))
    assert mutual_information(probs).item() == pytest.approx(math.log(2))
    assert variation_ratio(probs).item() == pytest.approx(0.5)


def test_variation_ratio_counts_votes_of_the_modal_class():
    # Member votes per sample: [0, 0, 0, 0], [0, 1, 1, 3], [0, 1, 2, 2] -> modes 4, 2, 2 of 4.
    votes = torch.tensor([[0, 0, 0], [0, 1, 1], [0, 1, 2], [0, 3, 2]])  # (M=4, B=3)
    probs = torch.nn.functional.one_hot(votes, 4).double() * 0.7 + 0.075
    assert variation_ratio(probs).tolist() == pytest.approx([0.0, 0.5, 0.5])


def test_variation_ratio_matches_numpy_mode_count():
    probs = random_member_probs(7, 300, 4, seed=5)
    votes = probs.argmax(-1).numpy()
    mode_count = np.array([np.bincount(votes[:, b], minlength=4).max() for b in range(300)])
    assert variation_ratio(probs).numpy() == pytest.approx(1 - mode_count / 7, abs=TOL)


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 6),
    b=st.integers(1, 20),
    k=st.integers(2, 8),
    sharpness=st.floats(0.0, 30.0),
    seed=st.integers(0, 2**16),
)
def test_mutual_information_is_non_negative_and_bounded(m, b, k, sharpness, seed):
    probs = random_member_probs(m, b, k, seed, sharpness)
    information = mutual_information(probs)
    assert bool((information >= 0).all())
    assert bool((information <= predictive_entropy(probs) + 1e-12).all())
    assert bool((predictive_entropy(probs) <= math.log(k) + 1e-12).all())


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 8),
    b=st.integers(1, 20),
    k=st.integers(2, 8),
    sharpness=st.floats(0.0, 30.0),
    seed=st.integers(0, 2**16),
)
def test_identical_members_have_no_epistemic_uncertainty(m, b, k, sharpness, seed):
    probs = random_member_probs(1, b, k, seed, sharpness).expand(m, -1, -1)
    assert mutual_information(probs).abs().max().item() <= 1e-12
    assert bool((variation_ratio(probs) == 0).all())
