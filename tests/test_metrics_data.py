"""Seeded random predictions shared by the metric tests (and a check that they are valid)."""

import torch


def random_member_probs(m, b, k, seed, sharpness=2.0):
    """(M, B, K) float64 member probabilities: softmax of N(0, sharpness^2) logits."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(m, b, k, generator=g, dtype=torch.float64) * sharpness
    return torch.softmax(logits, -1)


def random_probs(n, k, seed, *, sharpness=3.0, dtype=torch.float64):
    """(B, K) probabilities of one model and (B,) uniformly drawn labels."""
    probs = random_member_probs(1, n, k, seed, sharpness)[0]
    labels = torch.randint(0, k, (n,), generator=torch.Generator().manual_seed(seed + 1))
    return probs.to(dtype), labels


def test_generators_are_seeded_probabilities():
    probs = random_member_probs(3, 20, 5, seed=4)
    assert probs.shape == (3, 20, 5) and bool((probs >= 0).all())
    assert torch.allclose(probs.sum(-1), torch.ones(3, 20, dtype=torch.float64))
    assert torch.equal(probs, random_member_probs(3, 20, 5, seed=4))
    probs, labels = random_probs(30, 4, seed=1, dtype=torch.float32)
    assert probs.dtype == torch.float32 and int(labels.max()) < 4
