"""Member diversity in function space (against scipy / numpy) and parameter space."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as scipy_entropy
from torch import nn

from ensemblekit.metrics import (
    PROBABILITY_FLOOR,
    diversity,
    normalized_disagreement,
    pairwise_cosine,
    pairwise_disagreement,
    pairwise_js,
    pairwise_kl,
    weight_similarity,
)
from test_metrics_data import random_member_probs

TOL = 1e-6


def numpy_pairwise(probs, per_sample):
    """(M, M) mean over samples of per_sample(p_i[b], p_j[b]), by plain loops."""
    p = probs.numpy()
    m, b = p.shape[:2]
    return np.array(
        [
            [np.mean([per_sample(p[i, s], p[j, s]) for s in range(b)]) for j in range(m)]
            for i in range(m)
        ]
    )


@pytest.mark.parametrize("seed", range(2))
def test_function_space_measures_match_references(seed):
    probs = random_member_probs(4, 60, 5, seed)
    p = probs.numpy()
    votes = p.argmax(-1)
    disagreement = np.array([[np.mean(votes[i] != votes[j]) for j in range(4)] for i in range(4)])
    assert pairwise_disagreement(probs).numpy() == pytest.approx(disagreement, abs=TOL)
    kl = numpy_pairwise(probs, lambda a, c: scipy_entropy(a, c))
    assert pairwise_kl(probs).numpy() == pytest.approx(kl, abs=TOL)
    js = numpy_pairwise(probs, lambda a, c: jensenshannon(a, c) ** 2)
    assert pairwise_js(probs).numpy() == pytest.approx(js, abs=TOL)
    cosine = numpy_pairwise(probs, lambda a, c: a @ c / np.linalg.norm(a) / np.linalg.norm(c))
    assert pairwise_cosine(probs).numpy() == pytest.approx(cosine, abs=TOL)


def test_normalized_disagreement_divides_by_the_ensemble_error():
    probs = random_member_probs(3, 80, 4, seed=9)
    labels = torch.randint(0, 4, (80,), generator=torch.Generator().manual_seed(1))
    error = np.mean(probs.mean(0).argmax(-1).numpy() != labels.numpy())
    expected = pairwise_disagreement(probs).numpy() / error
    assert normalized_disagreement(probs, labels).numpy() == pytest.approx(expected, abs=TOL)


def test_hand_computed_two_members():
    probs = torch.tensor(
        [[[0.5, 0.5], [1.0, 0.0]], [[0.9, 0.1], [0.0, 1.0]]], dtype=torch.float64
    )  # (M=2, B=2, K=2)
    # Votes: member 0 -> [0 (tie), 0], member 1 -> [0, 1]: they differ on one of two samples.
    assert pairwise_disagreement(probs)[0, 1].item() == 0.5
    kl_first = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    kl_second = 1.0 * math.log(1.0 / PROBABILITY_FLOOR)  # member 1 rules class 0 out
    assert pairwise_kl(probs)[0, 1].item() == pytest.approx((kl_first + kl_second) / 2)
    # Second sample: opposite certain members -> JS = log 2, cosine 0.
    js_first = jensenshannon([0.5, 0.5], [0.9, 0.1]) ** 2
    assert pairwise_js(probs)[0, 1].item() == pytest.approx((js_first + math.log(2)) / 2)
    cos_first = (0.45 + 0.05) / math.sqrt(0.5) / math.sqrt(0.82)
    assert pairwise_cosine(probs)[0, 1].item() == pytest.approx(cos_first / 2)


@settings(max_examples=30, deadline=None)
@given(
    m=st.integers(1, 5),
    b=st.integers(1, 15),
    k=st.integers(2, 6),
    sharpness=st.floats(0.0, 30.0),
    seed=st.integers(0, 2**16),
)
def test_pairwise_matrices_are_symmetric_with_fixed_diagonal(m, b, k, sharpness, seed):
    probs = random_member_probs(m, b, k, seed, sharpness)
    for measure in (pairwise_disagreement, pairwise_js):
        matrix = measure(probs)
        assert matrix.shape == (m, m)
        assert torch.equal(matrix, matrix.T)
        assert bool((matrix.diagonal() == 0).all())
        assert bool((matrix >= 0).all())
    assert bool((pairwise_js(probs) <= math.log(2) + 1e-12).all())
    kl = pairwise_kl(probs)
    assert bool((kl.diagonal() == 0).all()) and bool((kl >= 0).all())
    cosine = pairwise_cosine(probs)
    assert torch.allclose(cosine, cosine.T, atol=1e-12)
    assert bool((cosine.diagonal() == 1).all())
    assert bool(((cosine >= 0) & (cosine <= 1)).all())


def test_kl_is_not_symmetric():
    probs = torch.tensor([[[0.9, 0.1]], [[0.5, 0.5]]], dtype=torch.float64)
    kl = pairwise_kl(probs)
    assert kl[0, 1].item() == pytest.approx(scipy_entropy([0.9, 0.1], [0.5, 0.5]))
    assert kl[1, 0].item() == pytest.approx(scipy_entropy([0.5, 0.5], [0.9, 0.1]))
    assert kl[0, 1].item() != pytest.approx(kl[1, 0].item())


@pytest.mark.parametrize("columns_per_step", [7, 1 << 20])
def test_weight_similarity_of_a_tensor_matches_numpy(monkeypatch, columns_per_step):
    # A small step exercises the column-by-column Gram accumulation used for large networks.
    monkeypatch.setattr(diversity, "_WEIGHT_COLUMNS", columns_per_step)
    weights = torch.randn(5, 40, generator=torch.Generator().manual_seed(0))
    w = weights.double().numpy()
    unit = w / np.linalg.norm(w, axis=1, keepdims=True)
    similarity = weight_similarity(weights)
    assert similarity.dtype == torch.float64
    assert similarity.numpy() == pytest.approx(unit @ unit.T, abs=TOL)
    assert bool((similarity.diagonal() == 1).all())


class SharedWeightMasks(nn.Module):
    """A linear layer whose members see the input through fixed channel masks.

    Member i's effective weight is W restricted to its mask's input columns, zeros elsewhere:
    the contract every ensemble model of the library honours with member_weights().
    """

    def __init__(self, masks: torch.Tensor, out_features: int = 3):
        super().__init__()
        self.linear = nn.Linear(masks.shape[1], out_features, bias=False)
        self.register_buffer("masks", masks)

    def member_weights(self) -> torch.Tensor:
        effective = self.linear.weight.unsqueeze(0) * self.masks.unsqueeze(1)  # (M, out, in)
        return effective.flatten(1)


def test_weight_similarity_of_a_model_with_member_weights():
    masks = torch.tensor(
        [[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0]],
        dtype=torch.float32,
    )
    model = SharedWeightMasks(masks)
    similarity = weight_similarity(model)
    assert similarity.shape == (4, 4)
    assert similarity[0, 2].item() == pytest.approx(1.0)  # same mask: same member
    assert similarity[0, 1].item() == pytest.approx(0.0, abs=1e-12)  # disjoint masks
    # Member 3 contains members 0 and 1: cos = |W_0| / |W_3|.
    w = model.linear.weight.detach().double()
    expected = w[:, :2].norm() / w[:, :4].norm()
    assert similarity[0, 3].item() == pytest.approx(expected.item(), abs=TOL)
    assert torch.equal(similarity, weight_similarity(model.member_weights()))


def test_weight_similarity_rejects_what_it_cannot_compare():
    with pytest.raises(TypeError, match="member_weights"):
        weight_similarity(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="row 1 is all zeros"):
        weight_similarity(torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="2 dimensions"):
        weight_similarity(torch.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        weight_similarity(torch.tensor([[1.0, float("nan")], [1.0, 1.0]]))
