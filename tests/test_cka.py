"""Linear CKA against a numpy transcription of Kornblith et al. (2019), eq. for linear kernels."""

import math

import numpy as np
import pytest
import torch

from ensemblekit.metrics import linear_cka, pairwise_cka


def numpy_linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """HSIC form with the centring matrix H: <HKH, HLH> / (|HKH| |HLH|), K = XX^T, L = YY^T."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    return float((k * l_).sum() / (np.linalg.norm(k) * np.linalg.norm(l_)))


def test_matches_the_gram_matrix_reference():
    rng = np.random.default_rng(0)
    for n, d1, d2 in [(50, 3, 7), (20, 40, 5), (2, 1, 1), (100, 16, 16)]:
        x = rng.normal(size=(n, d1))
        y = x[:, :1] @ rng.normal(size=(1, d2)) + rng.normal(size=(n, d2))
        expected = numpy_linear_cka(x, y)
        assert linear_cka(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(expected,
                                                                                    abs=1e-10)
        assert linear_cka(torch.from_numpy(x).float(), torch.from_numpy(y).float()) \
            == pytest.approx(expected, abs=1e-5)


def test_invariances_and_identity():
    torch.manual_seed(0)
    x = torch.randn(64, 10, dtype=torch.float64)
    y = torch.tanh(x @ torch.randn(10, 6, dtype=torch.float64))
    base = linear_cka(x, y)
    assert 0.0 < base < 1.0
    rotation, _ = torch.linalg.qr(torch.randn(10, 10, dtype=torch.float64))
    assert linear_cka(x @ rotation, y) == pytest.approx(base, abs=1e-12)
    assert linear_cka(x * 7.5, y / 3.0) == pytest.approx(base, abs=1e-12)
    assert linear_cka(x + 4.0, y) == pytest.approx(base, abs=1e-12)  # centred inside
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    # Not invariant to an anisotropic scaling: that is a different representation.
    scaled = x * torch.linspace(0.1, 10, 10, dtype=torch.float64)
    assert abs(linear_cka(scaled, y) - base) > 1e-3


def test_pairwise_matrix_matches_the_pairs():
    torch.manual_seed(1)
    features = torch.randn(3, 30, 5)
    features[2] = features[0] * 2.0
    matrix = pairwise_cka(features)
    assert matrix.shape == (3, 3) and matrix.dtype == torch.float64
    torch.testing.assert_close(matrix, matrix.T)
    assert matrix.diagonal().tolist() == [1.0, 1.0, 1.0]
    assert matrix[0, 1] == pytest.approx(numpy_linear_cka(features[0].double().numpy(),
                                                          features[1].double().numpy()))
    assert matrix[0, 2] == pytest.approx(1.0)


def test_constant_representation_is_nan_and_bad_input_raises():
    x = torch.randn(10, 3)
    assert math.isnan(linear_cka(torch.ones(10, 4), x))
    with pytest.raises(ValueError, match="same inputs"):
        linear_cka(x, torch.randn(9, 3))
    with pytest.raises(ValueError, match="2 dimensions"):
        linear_cka(torch.randn(10), x)
    with pytest.raises(ValueError, match="floating-point"):
        linear_cka(torch.ones(10, 3, dtype=torch.long), x)
    with pytest.raises(ValueError, match="NaN"):
        linear_cka(torch.full((10, 3), math.nan), x)
    with pytest.raises(ValueError, match="at least 2 inputs"):
        linear_cka(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        linear_cka(np.ones((10, 3)), x)
