"""Post-hoc calibration for regression: variance scaling (closed form against a numerical
minimiser; identified or not applied) and split-conformal intervals (the quantile against
numpy's, coverage on exchangeable data over many draws)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import optimize, stats

import ensemblekit as ek
from ensemblekit import metrics
from ensemblekit.calibration import (
    MIN_VALIDATION_POINTS,
    VarianceScaler,
    conformal_intervals,
    conformal_quantile,
    fit_conformal,
    fit_variance_scaling,
    scale_members,
)
from ensemblekit.members import GaussianMembers


def overconfident(n, *, m=4, d=1, seed=0, true_scale=2.0):
    """Members whose moment-matched sigma is ``true_scale`` times too small, with targets."""
    g = torch.Generator().manual_seed(seed)
    means = 0.3 * torch.randn(m, n, d, generator=g, dtype=torch.float64)
    variances = 0.1 + torch.rand(m, n, d, generator=g, dtype=torch.float64)
    moments = metrics.moment_match(means, variances)
    noise = torch.randn(n, d, generator=g, dtype=torch.float64)
    return means, variances, moments.mean + true_scale * moments.variance.sqrt() * noise


def test_variance_scale_is_the_exact_nll_minimiser():
    means, variances, targets = overconfident(400)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an identified fit warns about nothing
        result = fit_variance_scaling(means, variances, targets)
    moments = metrics.moment_match(means, variances)
    mu, s2, y = (t.numpy().ravel() for t in (moments.mean, moments.variance, targets))
    numerical = optimize.minimize_scalar(
        lambda s: -stats.norm.logpdf(y, mu, s * np.sqrt(s2)).mean(), bounds=(0.01, 100),
        method="bounded", options={"xatol": 1e-10})
    assert result.fitted and result.reason is None and result.n_validation == 400
    assert result.scale == pytest.approx(numerical.x, abs=1e-6)
    assert 1.8 < result.scale < 2.2  # the sigma was made 2x too small
    assert result.validation_nll["after"] == pytest.approx(numerical.fun, abs=1e-10)
    assert result.validation_nll["after"] < result.validation_nll["before"]
    assert result.as_dict()["fitted"] is True


def test_scaling_dilates_the_mixture_about_its_mean():
    means, variances, _ = overconfident(50, m=5, d=2)
    scaled = scale_members(means, variances, 1.7)
    assert isinstance(scaled, GaussianMembers)
    before, after = metrics.moment_match(means, variances), metrics.moment_match(*scaled)
    torch.testing.assert_close(after.mean, before.mean, rtol=0, atol=1e-14)
    for part in ("variance", "aleatoric", "epistemic"):
        torch.testing.assert_close(getattr(after, part), 1.7**2 * getattr(before, part),
                                   rtol=1e-12, atol=0)


def test_scaler_fits_on_validation_and_fixes_test_coverage():
    val = overconfident(300, seed=1)
    test = overconfident(4000, seed=2)
    scaler = VarianceScaler.fit(*val)
    assert scaler.fitted and scaler.scale.dtype == torch.float64
    assert "scale" in scaler.state_dict() and "fitted=True" in repr(scaler)
    raw = ek.evaluate_regression(*test)
    calibrated = ek.evaluate_regression(*scaler(*test[:2]), test[2])
    assert raw["picp_95"] < 0.7 and abs(calibrated["picp_95"] - 0.95) < 0.02
    assert calibrated["nll"] < raw["nll"] and calibrated["rmse"] == pytest.approx(raw["rmse"])


@pytest.mark.parametrize("case, needle", [
    ("small", f"fewer than the {MIN_VALIDATION_POINTS}"),
    ("exact", "at or beyond the bounds"),
    ("wild", "at or beyond the bounds"),
])
def test_variance_scale_is_identified_or_not_applied(case, needle):
    n = MIN_VALIDATION_POINTS - 1 if case == "small" else 100
    means, variances, targets = overconfident(n)
    if case == "exact":  # every target predicted exactly: the minimiser is s = 0
        targets = metrics.moment_match(means, variances).mean
    if case == "wild":  # errors a thousand sigmas wide: s = 1000 is beyond the bound
        targets = targets * 1e4
    with pytest.warns(UserWarning, match="not applied"):
        result = fit_variance_scaling(means, variances, targets)
    assert result.scale == 1.0 and not result.fitted and needle in result.reason
    assert result.validation_nll["after"] == result.validation_nll["before"]
    with pytest.warns(UserWarning):
        scaler = VarianceScaler.fit(means, variances, targets)
    assert scaler.scale.item() == 1.0 and not scaler.fitted and needle in scaler.reason


def test_variance_scaling_arguments_are_checked():
    means, variances, targets = overconfident(30)
    with pytest.raises(ValueError, match="bounds"):
        fit_variance_scaling(means, variances, targets, bounds=(2.0, 3.0))
    with pytest.raises(ValueError, match="member_vars must be > 0"):
        fit_variance_scaling(means, -variances, targets)
    with pytest.raises(ValueError, match="scale"):
        scale_members(means, variances, 0.0)


# -- split conformal -------------------------------------------------------------------------

def test_conformal_quantile_is_the_finite_sample_corrected_quantile():
    scores = torch.rand(57, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for alpha in (0.05, 0.1, 0.32):
        level = math.ceil((57 + 1) * (1 - alpha)) / 57
        # The empirical distribution's quantile (inverted CDF): the ceil(n level)-th smallest.
        expected = np.quantile(scores.numpy(), level, axis=0, method="inverted_cdf")
        np.testing.assert_array_equal(conformal_quantile(scores, alpha), expected)
    with pytest.raises(ValueError, match="at least 19 calibration inputs"):
        conformal_quantile(scores[:18], 0.05)
    assert conformal_quantile(scores[:19, 0], 0.05) == scores[:19, 0].max()


def test_conformal_coverage_holds_on_exchangeable_data_over_many_draws():
    # A model whose sigma is 2x too small and whose mean is biased: conformal still covers.
    draws, n_cal, n_test, alpha = 300, 40, 100, 0.1
    coverages, gaussian = [], []
    for seed in range(draws):
        means, variances, targets = overconfident(n_cal + n_test, d=2, seed=seed)
        means = means + 0.2
        cal, test = slice(0, n_cal), slice(n_cal, None)
        result = conformal_intervals(means[:, cal], variances[:, cal], targets[cal],
                                     means[:, test], variances[:, test], targets[test],
                                     alpha=alpha)
        coverages.append(result.coverage)
        gaussian.append(result.gaussian_coverage)
    # With continuous scores the expected coverage is exactly k / (n + 1), k = ceil((n + 1)
    # (1 - alpha)): 37 / 41 = 0.9024, inside the guarantee [1 - alpha, 1 - alpha + 1 / (n + 1)]
    # = [0.9, 0.924]. The mean of 300 draws has a standard error of 0.002: 0.008 is 4 of them.
    k = math.ceil((n_cal + 1) * (1 - alpha))
    assert abs(np.mean(coverages) - k / (n_cal + 1)) < 0.008
    assert np.mean(coverages) >= 1 - alpha - 0.008
    assert np.mean(gaussian) < 0.8  # the uncalibrated interval under-covers badly


def test_conformal_intervals_are_mu_plus_minus_q_sigma():
    means, variances, targets = overconfident(200, d=2, seed=4)
    result = conformal_intervals(means[:, :100], variances[:, :100], targets[:100],
                                 means[:, 100:], variances[:, 100:])
    q = fit_conformal(means[:, :100], variances[:, :100], targets[:100])
    assert q.shape == (2,) and torch.equal(result.quantile, q)
    moments = metrics.moment_match(means[:, 100:], variances[:, 100:])
    torch.testing.assert_close(result.upper, moments.mean + q * moments.variance.sqrt())
    torch.testing.assert_close(result.lower, moments.mean - q * moments.variance.sqrt())
    assert result.coverage is None and result.nominal == pytest.approx(0.95)
    assert result.n_calibration == 100 and result.summary()["quantile"] == q.tolist()
    assert result.mpiw == pytest.approx((result.upper - result.lower).mean().item())
    with pytest.raises(ValueError, match="number of outputs"):
        conformal_intervals(means[:, :100, :1], variances[:, :100, :1], targets[:100, :1],
                            means[:, 100:], variances[:, 100:])
    with pytest.raises(ValueError, match="alpha"):
        fit_conformal(means, variances, targets, alpha=0.0)
