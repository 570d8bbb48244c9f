"""Regression losses: values against scipy and torch, gradients against their closed forms
(beta-NLL: beta = 0 is the NLL, beta = 1 gives the mean the MSE's gradient), the variance head's
transform and its inverse, and the boundary checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from ensemblekit.losses import (
    REGRESSION_LOSSES,
    VARIANCE_FLOOR,
    beta_nll_loss,
    gaussian_nll_loss,
    inverse_positive_variance,
    mse_loss,
    positive_variance,
    regression_loss,
)


def batch(n=64, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    variance = (0.05 + 2 * torch.rand(n, d, generator=g, dtype=torch.float64)).requires_grad_()
    target = torch.randn(n, d, generator=g, dtype=torch.float64)
    return mean, variance, target


def grads(loss_fn, mean, variance, target, **options):
    mean, variance = mean.detach().requires_grad_(), variance.detach().requires_grad_()
    loss_fn(mean, variance, target, **options).backward()
    return mean.grad, variance.grad


def test_gaussian_nll_equals_scipy_and_torch():
    mean, variance, target = batch()
    mu, s2, y = (t.detach().numpy() for t in (mean, variance, target))
    per_element = -stats.norm.logpdf(y, mu, np.sqrt(s2))
    loss = gaussian_nll_loss(mean, variance, target)
    assert loss.item() == pytest.approx(per_element.mean(), abs=1e-12)
    assert gaussian_nll_loss(mean, variance, target, reduction="sum").item() == pytest.approx(
        per_element.sum(), abs=1e-10)
    np.testing.assert_allclose(gaussian_nll_loss(mean, variance, target, reduction="none")
                               .detach(), per_element, atol=1e-12)
    # torch's own, with the constant (full=True); its variance clamp (1e-6) is inactive here.
    assert loss.item() == pytest.approx(F.gaussian_nll_loss(mean, target, variance, full=True)
                                        .item(), abs=1e-12)


def test_beta_nll_weights_each_nll_by_the_detached_variance_power():
    mean, variance, target = batch()
    mu, s2, y = (t.detach().numpy() for t in (mean, variance, target))
    for beta in (0.0, 0.5, 1.0):
        expected = (s2**beta * -stats.norm.logpdf(y, mu, np.sqrt(s2))).mean()
        assert beta_nll_loss(mean, variance, target, beta=beta).item() == pytest.approx(
            expected, abs=1e-12)


def test_beta_nll_gradients_follow_seitzer_et_al():
    mean, variance, target = batch()
    n = mean.numel()
    mu, s2, y = mean.detach(), variance.detach(), target
    # beta = 0 is the plain NLL, gradients included.
    for ours, plain in zip(grads(beta_nll_loss, mean, variance, target, beta=0.0),
                           grads(gaussian_nll_loss, mean, variance, target), strict=True):
        torch.testing.assert_close(ours, plain, rtol=0, atol=1e-15)
    # beta = 1: the mean's gradient is that of 0.5 (mu - y)^2 -- the MSE's up to its factor 2.
    mean_grad, _ = grads(beta_nll_loss, mean, variance, target, beta=1.0)
    half_mse_grad, _ = grads(lambda m, v, t: 0.5 * ((m - t) ** 2).mean() + 0 * v.sum(),
                             mean, variance, target)
    torch.testing.assert_close(mean_grad, half_mse_grad, rtol=1e-12, atol=1e-15)
    # beta = 0.5 in closed form: the weight s2^beta takes no gradient (stop_gradient).
    mean_grad, var_grad = grads(beta_nll_loss, mean, variance, target, beta=0.5)
    torch.testing.assert_close(mean_grad, (mu - y) * s2**-0.5 / n, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(var_grad, s2**0.5 * 0.5 * (1 / s2 - (y - mu) ** 2 / s2**2) / n,
                               rtol=1e-12, atol=1e-15)
    # Plain NLL's mean gradient shrinks as 1/s2: where the variance is large the mean barely moves.
    nll_mean_grad, _ = grads(gaussian_nll_loss, mean, variance, target)
    torch.testing.assert_close(nll_mean_grad, (mu - y) / s2 / n, rtol=1e-12, atol=1e-15)


def test_mse_warm_up_trains_the_mean_and_keeps_the_variance_in_the_graph():
    mean, variance, target = batch()
    assert mse_loss(mean, variance, target).item() == pytest.approx(
        F.mse_loss(mean, target).item(), abs=1e-15)
    mean_grad, var_grad = grads(mse_loss, mean, variance, target)
    torch.testing.assert_close(mean_grad, 2 * (mean.detach() - target) / mean.numel())
    assert var_grad is not None and torch.equal(var_grad, torch.zeros_like(var_grad))


def test_regression_loss_picks_the_named_loss():
    mean, variance, target = batch()
    expected = {"gaussian_nll": gaussian_nll_loss(mean, variance, target),
                "beta_nll": beta_nll_loss(mean, variance, target, beta=0.3),
                "mse": mse_loss(mean, variance, target)}
    assert set(expected) == set(REGRESSION_LOSSES)
    for name, value in expected.items():
        assert torch.equal(regression_loss(mean, variance, target, loss=name, beta=0.3), value)
    assert torch.equal(regression_loss(mean, variance, target),
                       beta_nll_loss(mean, variance, target, beta=0.5))


def test_variance_head_is_softplus_plus_floor_and_inverts():
    raw = torch.linspace(-40, 40, 81, dtype=torch.float64)
    variance = positive_variance(raw)
    torch.testing.assert_close(variance, F.softplus(raw) + VARIANCE_FLOOR)
    assert variance.min().item() >= VARIANCE_FLOOR and VARIANCE_FLOOR == 1e-6
    targets = torch.tensor([2e-6, 1e-3, 1.0, 50.0, 1e4], dtype=torch.float64)
    torch.testing.assert_close(positive_variance(inverse_positive_variance(targets)), targets,
                               rtol=1e-9, atol=0)
    one = torch.tensor(1.0 + VARIANCE_FLOOR, dtype=torch.float64)
    # softplus(log(e - 1)) = 1: the raw value of a unit variance.
    assert inverse_positive_variance(one).item() == pytest.approx(math.log(math.e - 1), abs=1e-12)
    with pytest.raises(ValueError, match="exceed the floor"):
        inverse_positive_variance(torch.tensor([1e-7]))


@pytest.mark.parametrize("call, needle", [
    (lambda m, v, t: gaussian_nll_loss(m, v, t[:, 0]), "one shape"),
    (lambda m, v, t: gaussian_nll_loss(m, v, t.long()), "floating-point"),
    (lambda m, v, t: gaussian_nll_loss(m, v, t, reduction="avg"), "reduction"),
    (lambda m, v, t: beta_nll_loss(m, v, t, beta=1.5), "beta"),
    (lambda m, v, t: regression_loss(m, v, t, loss="laplace"), "loss"),
    (lambda m, v, t: positive_variance(m, floor=-1.0), "floor"),
    (lambda m, v, t: gaussian_nll_loss(m.detach().numpy(), v, t), "mean must be a torch"),
])
def test_bad_arguments_are_refused_by_name(call, needle):
    mean, variance, target = batch(n=4)
    with pytest.raises((ValueError, TypeError), match=needle):
        call(mean, variance, target)
