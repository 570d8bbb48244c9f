"""Regression metrics against independent references: scipy.stats, numpy, scikit-learn,
properscoring, uncertainty-toolbox, netcal and TorchUncertainty (the optional ones skip with
the reason when absent). Tolerances are stated at each comparison; everything is float64."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats
from sklearn.metrics import mean_absolute_error, mean_squared_error, roc_auc_score

import ensemblekit as ek
from ensemblekit import metrics
from ensemblekit.members import GaussianMembers

TIGHT = 1e-12  # float64 transcriptions of the same formula


def ensemble(m=5, b=400, d=2, seed=0, spread=1.0):
    """Members (M, B, D) that disagree, targets (B, D) roughly consistent with them."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(b, d, generator=g, dtype=torch.float64)
    means = centre + spread * torch.randn(m, b, d, generator=g, dtype=torch.float64)
    variances = 0.2 + torch.rand(m, b, d, generator=g, dtype=torch.float64)
    targets = centre + 1.3 * torch.randn(b, d, generator=g, dtype=torch.float64)
    return means, variances, targets


def gaussian(b=500, d=1, seed=1):
    means, variances, targets = ensemble(1, b, d, seed)
    return means[0], variances[0], targets


# -- the ensemble of Gaussians ---------------------------------------------------------------

def test_moment_matching_follows_the_law_of_total_variance():
    means, variances, _ = ensemble()
    mu, s2 = means.numpy(), variances.numpy()
    moments = metrics.moment_match(means, variances)
    mean = mu.mean(0)
    np.testing.assert_allclose(moments.mean, mean, rtol=0, atol=TIGHT)
    # Deep Ensembles' formula, written independently.
    np.testing.assert_allclose(moments.variance, (s2 + mu**2).mean(0) - mean**2, rtol=1e-10)
    np.testing.assert_allclose(moments.aleatoric, s2.mean(0), rtol=TIGHT)
    np.testing.assert_allclose(moments.epistemic, np.var(mu, axis=0, ddof=0), rtol=1e-10)
    np.testing.assert_allclose(moments.aleatoric + moments.epistemic, moments.variance,
                               rtol=TIGHT)
    assert torch.equal(metrics.aleatoric_variance(means, variances), moments.aleatoric)
    assert torch.equal(metrics.epistemic_variance(means, variances), moments.epistemic)
    one = metrics.moment_match(means[:1], variances[:1])
    assert torch.equal(one.epistemic, torch.zeros_like(one.epistemic))


def test_mixture_log_prob_and_nll_match_scipy_logsumexp():
    means, variances, targets = ensemble()
    per_member = stats.norm.logpdf(targets.numpy(), means.numpy(), np.sqrt(variances.numpy()))
    expected = special.logsumexp(per_member.sum(-1), axis=0) - math.log(means.shape[0])
    log_prob = metrics.mixture_log_prob(means, variances, targets)
    np.testing.assert_allclose(log_prob, expected, rtol=0, atol=1e-10)
    assert metrics.mixture_nll(means, variances, targets) == pytest.approx(-expected.mean(),
                                                                           abs=1e-10)


def test_gaussian_nll_matches_scipy_and_uncertainty_toolbox():
    mean, var, targets = gaussian(d=3)
    mu, sd, y = mean.numpy(), np.sqrt(var.numpy()), targets.numpy()
    expected = -stats.norm.logpdf(y, mu, sd).sum(-1).mean()
    assert metrics.gaussian_nll(mean, var, targets) == pytest.approx(expected, abs=1e-10)
    uct = pytest.importorskip("uncertainty_toolbox", reason="optional metric reference")
    mean1, var1, y1 = (t[:, 0].numpy() for t in (mean, var, targets))
    assert metrics.gaussian_nll(mean[:, 0], var[:, 0], targets[:, 0]) == pytest.approx(
        uct.nll_gaussian(mean1, np.sqrt(var1), y1), abs=1e-10)


def test_bimodal_ensemble_mixture_and_moment_matched_nll_differ_both_ways():
    # Two confident members at -3 and +3 (variance 0.1): a bimodal mixture. Its moment-matched
    # Gaussian is N(0, 9.1): broad, one mode in the middle where the mixture has none.
    means = torch.tensor([[[-3.0]], [[3.0]]], dtype=torch.float64).expand(2, 2, 1)
    variances = torch.full((2, 2, 1), 0.1, dtype=torch.float64)
    at_mode, between = torch.tensor([[3.0]]), torch.tensor([[0.0]])
    moments = metrics.moment_match(means, variances)
    assert moments.variance[0, 0].item() == pytest.approx(9.1, abs=TIGHT)
    for target in (at_mode, between):
        mixture = metrics.mixture_nll(means[:, :1], variances[:, :1], target.double())
        reference = -(special.logsumexp(stats.norm.logpdf(target.item(), [-3, 3],
                                                          math.sqrt(0.1))) - math.log(2))
        assert mixture == pytest.approx(reference, abs=1e-10)
    near = metrics.mixture_nll(means[:, :1], variances[:, :1], at_mode)
    near_gaussian = metrics.gaussian_nll(moments.mean[:1], moments.variance[:1], at_mode)
    gap = metrics.mixture_nll(means[:, :1], variances[:, :1], between)
    gap_gaussian = metrics.gaussian_nll(moments.mean[:1], moments.variance[:1], between)
    # At a member's mode the mixture is far more likely: log 2 + 0.5 log(2 pi 0.1) = 0.461 nats
    # (the other member adds e^-180) against 0.5 log(2 pi 9.1) + 9 / 18.2 = 2.517 ...
    assert near == pytest.approx(math.log(2) + 0.5 * math.log(2 * math.pi * 0.1), abs=1e-12)
    assert near_gaussian == pytest.approx(0.5 * math.log(2 * math.pi * 9.1) + 9 / 18.2, abs=1e-12)
    # ... between the modes far less likely: 45 - 0.5 log(1 / (2 pi 0.1)) = 44.77 nats against
    # 2.02: the moment-matched Gaussian puts its mode where no member predicts anything.
    assert gap == pytest.approx(45 + 0.5 * math.log(2 * math.pi * 0.1), abs=1e-12)
    assert gap_gaussian == pytest.approx(0.5 * math.log(2 * math.pi * 9.1), abs=1e-12)


def test_rmse_and_mae_match_scikit_learn():
    mean, _, targets = gaussian(d=2)
    assert metrics.rmse(mean, targets) == pytest.approx(
        math.sqrt(mean_squared_error(targets.numpy().ravel(), mean.numpy().ravel())), abs=TIGHT)
    assert metrics.mae(mean, targets) == pytest.approx(
        mean_absolute_error(targets.numpy().ravel(), mean.numpy().ravel()), abs=TIGHT)


def test_gaussian_crps_matches_properscoring_and_numerical_integration():
    mean, var, targets = gaussian(b=50)
    mu, sd, y = mean.numpy().ravel(), np.sqrt(var.numpy().ravel()), targets.numpy().ravel()
    by_integration = np.mean([_crps_by_quadrature(lambda x, i=i: stats.norm.cdf(x, mu[i], sd[i]),
                                                  y[i], mu[i], 12 * sd[i])
                              for i in range(len(y))])
    crps = metrics.gaussian_crps(mean, var, targets)
    assert crps == pytest.approx(by_integration, abs=1e-8)
    properscoring = pytest.importorskip("properscoring", reason="optional metric reference")
    assert crps == pytest.approx(properscoring.crps_gaussian(y, mu, sd).mean(), abs=1e-12)


def test_mixture_crps_closed_form_matches_numerical_integration():
    means, variances, targets = ensemble(m=4, b=12, d=2, seed=3, spread=2.0)
    mu, sd, y = means.numpy(), np.sqrt(variances.numpy()), targets.numpy()
    expected = []
    for b, d in itertools.product(range(mu.shape[1]), range(mu.shape[2])):
        def cdf(x, b=b, d=d):
            return stats.norm.cdf(x, mu[:, b, d], sd[:, b, d]).mean()
        expected.append(_crps_by_quadrature(cdf, y[b, d], mu[:, b, d].mean(),
                                            12 * (sd[:, b, d].max() + np.ptp(mu[:, b, d]))))
    # quad's absolute error estimates are below 1e-9 here.
    assert metrics.mixture_crps(means, variances, targets) == pytest.approx(np.mean(expected),
                                                                          abs=1e-8)
    one = metrics.mixture_crps(means[:1], variances[:1], targets)
    assert one == pytest.approx(metrics.gaussian_crps(means[0], variances[0], targets), abs=TIGHT)


def _crps_by_quadrature(cdf, y, centre, half_width):
    """``int (F(x) - 1{x >= y})^2 dx`` over a range holding all the mass, split at y."""
    low, high = min(centre, y) - half_width, max(centre, y) + half_width
    below = integrate.quad(lambda x: cdf(x) ** 2, low, y, epsabs=1e-12, limit=200)[0]
    above = integrate.quad(lambda x: (1 - cdf(x)) ** 2, y, high, epsabs=1e-12, limit=200)[0]
    return below + above


def test_intervals_coverage_and_width_match_scipy():
    mean, var, targets = gaussian(b=2000, d=2)
    mu, sd, y = mean.numpy(), np.sqrt(var.numpy()), targets.numpy()
    for level in (0.68, 0.95):
        low, high = stats.norm.interval(level, mu, sd)
        lower, upper = metrics.gaussian_interval(mean, var, level)
        np.testing.assert_allclose(lower, low, atol=1e-12)
        np.testing.assert_allclose(upper, high, atol=1e-12)
        assert metrics.picp(mean, var, targets, level) == ((y >= low) & (y <= high)).mean()
        assert metrics.mpiw(mean, var, level) == pytest.approx((high - low).mean(), abs=TIGHT)
    assert metrics.INTERVAL_LEVELS == {"68": 0.68, "95": 0.95}


# -- calibration of sigma --------------------------------------------------------------------

def test_quantile_calibration_curve_matches_scipy_and_uncertainty_toolbox():
    mean, var, targets = gaussian(b=700)
    curve = metrics.quantile_calibration_curve(mean, var, targets)
    pit = stats.norm.cdf(targets.numpy(), mean.numpy(), np.sqrt(var.numpy())).ravel()
    levels = np.arange(1, 100) / 100
    np.testing.assert_allclose(curve["expected"], levels, atol=0)
    np.testing.assert_allclose(curve["observed"], (pit[None] <= levels[:, None]).mean(1), atol=0)
    error = metrics.quantile_calibration_error(mean, var, targets)
    assert error == pytest.approx(np.abs((pit[None] <= levels[:, None]).mean(1) - levels).mean(),
                                  abs=TIGHT)
    uct = pytest.importorskip("uncertainty_toolbox", reason="optional metric reference")
    from uncertainty_toolbox.metrics_calibration import get_proportion_lists_vectorized

    mu, sd, y = mean.numpy().ravel(), np.sqrt(var.numpy().ravel()), targets.numpy().ravel()
    # uncertainty-toolbox counts (mu - y) / sd <= z_p, the fraction ABOVE the (1 - p) quantile;
    # passing the targets as its predictions and the means as its targets counts
    # (y - mu) / sd <= z_p, which is F(y) <= p: Kuleshov's observed frequency.
    expected, observed = get_proportion_lists_vectorized(y, sd, mu, 100, prop_type="quantile")
    ours = metrics.quantile_calibration_curve(mean, var, targets, levels=expected)
    np.testing.assert_allclose(ours["observed"], observed, atol=0)
    assert metrics.quantile_calibration_error(mean, var, targets, levels=expected) == \
        pytest.approx(uct.mean_absolute_calibration_error(y, sd, mu, 100, vectorized=True,
                                                          prop_type="quantile"), abs=TIGHT)


def test_calibration_error_sees_overconfidence_and_not_a_calibrated_model():
    g = torch.Generator().manual_seed(5)
    mean = torch.zeros(20000, 1, dtype=torch.float64)
    targets = torch.randn(20000, 1, generator=g, dtype=torch.float64)
    calibrated = metrics.quantile_calibration_error(mean, torch.ones_like(mean), targets)
    overconfident = metrics.quantile_calibration_curve(mean, torch.full_like(mean, 0.25), targets)
    assert calibrated < 0.01  # sampling error only: sd of each p_hat <= 0.0036
    # sigma half the truth: too many targets in the lower tail, too few below the upper levels.
    assert overconfident["observed"][4] > 0.15 and overconfident["observed"][94] < 0.85


def _ence_reference(mu, sd, y, bins_of):
    """Levi et al.'s ENCE, written directly: (1/B) sum_b |RMV - RMSE| / RMV over non-empty bins."""
    gaps = []
    for members in bins_of(sd):
        if len(members):
            rmv = np.sqrt(np.mean(sd[members] ** 2))
            rmse = np.sqrt(np.mean((y[members] - mu[members]) ** 2))
            gaps.append(abs(rmv - rmse) / rmv)
    return np.mean(gaps)


def test_ence_matches_levi_et_al_and_netcal():
    mean, var, targets = gaussian(b=503)
    mu, sd, y = mean.numpy().ravel(), np.sqrt(var.numpy().ravel()), targets.numpy().ravel()
    equal_mass = _ence_reference(mu, sd, y, lambda s: np.array_split(np.argsort(s, kind="stable"),
                                                                     10))
    assert metrics.ence(mean, var, targets) == pytest.approx(equal_mass, abs=TIGHT)
    edges = np.linspace(sd.min(), sd.max(), 11)
    index = np.clip(np.searchsorted(edges, sd, side="right") - 1, 0, 9)
    equal_width = _ence_reference(mu, sd, y, lambda s: [np.flatnonzero(index == b)
                                                        for b in range(10)])
    ours = metrics.ence(mean, var, targets, binning="equal_width")
    assert ours == pytest.approx(equal_width, abs=TIGHT)
    netcal = pytest.importorskip("netcal.metrics", reason="optional metric reference (netcal)")
    assert ours == pytest.approx(float(netcal.ENCE(bins=10).measure((mu, sd), y)), abs=1e-10)
    # Two outputs: the mean of each output's ENCE.
    both = torch.cat([mean, 2 * mean], 1), torch.cat([var, var * 3], 1), torch.cat(
        [targets, targets], 1)
    assert metrics.ence(*both) == pytest.approx(
        (metrics.ence(mean, var, targets) + metrics.ence(*(t[:, 1:] for t in both))) / 2,
        abs=TIGHT)


# -- ranking by sigma ------------------------------------------------------------------------

def _sparsification_reference(errors, scores, kind):
    """Remove the k highest scores (k = 0..N-1), error of the rest / error of all."""
    per_point = errors**2 if kind == "rmse" else np.abs(errors)
    def curve(order):
        kept = [per_point[order[k:]].mean() for k in range(len(order))]
        ratio = np.array(kept) / per_point.mean()
        return np.sqrt(ratio) if kind == "rmse" else ratio
    return curve(np.argsort(-scores, kind="stable")), curve(np.argsort(-np.abs(errors),
                                                                       kind="stable"))


@pytest.mark.parametrize("kind", ["rmse", "mae"])
def test_sparsification_and_ause_match_a_direct_transcription(kind):
    mean, var, targets = gaussian(b=300)
    errors = (targets - mean).numpy().ravel()
    model, oracle = _sparsification_reference(errors, np.sqrt(var.numpy().ravel()), kind)
    n = len(errors)
    curves = metrics.sparsification_curves(mean, var, targets, error=kind, n_points=n)
    np.testing.assert_allclose(curves["fraction"], np.arange(n) / n, atol=0)
    np.testing.assert_allclose(curves["model"], model, atol=1e-12)
    np.testing.assert_allclose(curves["oracle"], oracle, atol=1e-12)
    expected = np.trapezoid(model - oracle, dx=1 / n)
    assert metrics.ause(mean, var, targets, error=kind) == pytest.approx(expected, abs=1e-12)
    # A sigma that ranks the errors perfectly is the oracle.
    perfect = (targets - mean).square() + 1e-3
    assert metrics.ause(mean, perfect, targets, error=kind) == pytest.approx(0.0, abs=1e-12)
    few = metrics.sparsification_curves(mean, var, targets, error=kind, n_points=10)
    np.testing.assert_allclose(few["fraction"], np.arange(10) / 10)
    np.testing.assert_allclose(few["model"], model[::30], atol=1e-12)


def test_ause_with_mae_matches_torch_uncertainty():
    tu = pytest.importorskip("torch_uncertainty.metrics", reason="optional peer reference")
    mean, var, targets = gaussian(b=300)
    peer = tu.AUSE()
    peer.update(var.sqrt().ravel(), (targets - mean).abs().ravel())
    assert metrics.ause(mean, var, targets, error="mae") == pytest.approx(peer.compute().item(),
                                                                         abs=1e-10)


def test_tied_sigmas_are_removed_together_in_expectation():
    # All sigmas equal: the curve is the mean over every removal order (MAE: exactly linear).
    errors = np.array([0.1, -2.0, 0.5, 3.0, -0.7])
    mean = torch.zeros(5, 1, dtype=torch.float64)
    targets = torch.tensor(errors).unsqueeze(1)
    orders = list(itertools.permutations(range(5)))
    expected = np.mean([[np.abs(errors[list(order[k:])]).mean() / np.abs(errors).mean()
                         for k in range(5)] for order in orders], axis=0)
    curves = metrics.sparsification_curves(mean, torch.ones_like(mean), targets, error="mae")
    np.testing.assert_allclose(curves["model"], expected, atol=1e-12)
    np.testing.assert_allclose(curves["model"], np.ones(5), atol=1e-12)  # the "random" curve
    # Shuffling the input order changes nothing.
    shuffled = torch.tensor([2, 4, 0, 3, 1])
    again = metrics.sparsification_curves(mean, torch.ones_like(mean), targets[shuffled])
    np.testing.assert_allclose(again["model"], metrics.sparsification_curves(
        mean, torch.ones_like(mean), targets)["model"], atol=1e-12)


def test_spearman_matches_scipy_with_ties():
    mean, var, targets = gaussian(b=400)
    var = (var * 4).round() / 4  # many tied sigmas
    expected = stats.spearmanr(np.sqrt(var.numpy().ravel()),
                               np.abs((targets - mean).numpy().ravel())).statistic
    assert metrics.spearman_std_error(mean, var, targets) == pytest.approx(expected, abs=TIGHT)
    assert math.isnan(metrics.spearman_std_error(mean, torch.ones_like(var), targets))


# -- everything at once ----------------------------------------------------------------------

ISSUE_KEYS = {"rmse", "mae", "nll", "nll_gaussian", "crps", "picp_68", "mpiw_68", "picp_95",
              "mpiw_95", "calibration_error", "calibration_curve", "ence", "ause",
              "sparsification", "spearman", "aleatoric", "epistemic"}


def test_evaluate_regression_equals_each_function_and_streams():
    means, variances, targets = ensemble(m=4, b=333, d=2)
    result = ek.evaluate_regression(means, variances, targets)
    assert ISSUE_KEYS <= set(result)
    moments = metrics.moment_match(means, variances)
    mu, s2 = moments.mean, moments.variance
    expected = {
        "rmse": metrics.rmse(mu, targets), "mae": metrics.mae(mu, targets),
        "nll": metrics.mixture_nll(means, variances, targets),
        "nll_gaussian": metrics.gaussian_nll(mu, s2, targets),
        "crps": metrics.mixture_crps(means, variances, targets),
        "crps_gaussian": metrics.gaussian_crps(mu, s2, targets),
        "picp_68": metrics.picp(mu, s2, targets, 0.68), "mpiw_68": metrics.mpiw(mu, s2, 0.68),
        "picp_95": metrics.picp(mu, s2, targets, 0.95), "mpiw_95": metrics.mpiw(mu, s2, 0.95),
        "calibration_error": metrics.quantile_calibration_error(mu, s2, targets),
        "ence": metrics.ence(mu, s2, targets), "ause": metrics.ause(mu, s2, targets),
        "spearman": metrics.spearman_std_error(mu, s2, targets),
        "aleatoric": moments.aleatoric.mean().item(), "epistemic": moments.epistemic.mean().item(),
    }
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key
    assert result["member_rmse"] == pytest.approx([metrics.rmse(m, targets) for m in means],
                                                  abs=1e-12)
    assert result["calibration_curve"]["observed"] == pytest.approx(
        metrics.quantile_calibration_curve(mu, s2, targets)["observed"].tolist(), abs=0)
    assert (result["n_samples"], result["n_members"], result["n_outputs"]) == (333, 4, 2)
    chunks = [(means[:, i:i + 50], variances[:, i:i + 50], targets[i:i + 50])
              for i in range(0, 333, 50)]
    streamed = ek.evaluate_regression(chunks)
    for key, value in result.items():
        if isinstance(value, float):
            assert streamed[key] == pytest.approx(value, abs=1e-12), key
    members = GaussianMembers(means, variances)
    assert ek.evaluate_regression(*members, targets)["nll"] == result["nll"]


def test_ood_detection_by_epistemic_variance_reuses_the_project_auroc():
    means, variances, targets = ensemble(m=5, b=200, d=2, seed=2)
    far_means, far_vars, _ = ensemble(m=5, b=150, d=2, seed=3, spread=2.5)
    result = ek.evaluate_regression(means, variances, targets, ood_member_means=far_means,
                                    ood_member_vars=far_vars)
    scores_in = metrics.epistemic_variance(means, variances).mean(1)
    scores_out = metrics.epistemic_variance(far_means, far_vars).mean(1)
    auroc = result["ood"]["epistemic"]["auroc"]
    assert auroc == metrics.auroc(scores_in, scores_out)
    labels = np.r_[np.zeros(200), np.ones(150)]
    assert auroc == pytest.approx(roc_auc_score(labels, np.r_[scores_in, scores_out]), abs=1e-12)
    assert auroc > 0.9 and result["n_ood_samples"] == 150
    assert set(result["ood"]) == set(metrics.REGRESSION_OOD_SCORES)
    single = ek.evaluate_regression(means[:1], variances[:1], targets,
                                    ood_member_means=[(far_means[:1], far_vars[:1])])
    assert single["ood"]["epistemic"] == dict.fromkeys(("auroc", "aupr", "aupr_in", "fpr95"))
    assert single["ood"]["variance"]["auroc"] is not None


@pytest.mark.parametrize("call, needle", [
    (lambda m, v, y: metrics.mixture_nll(m, -v, y), "member_vars must be > 0"),
    (lambda m, v, y: metrics.mixture_nll(m, v[:, :-1], y), "one shape"),
    (lambda m, v, y: metrics.mixture_nll(m[0], v[0], y), "member_means must have 3"),
    (lambda m, v, y: metrics.mixture_nll(m, v, y[:-1]), "targets must have the predictions'"),
    (lambda m, v, y: metrics.mixture_nll(m, v, y.clone().fill_(math.nan)), "targets contains"),
    (lambda m, v, y: metrics.gaussian_nll(m[0], v[0, :, :1], y), "mean and var"),
    (lambda m, v, y: metrics.picp(m[0], v[0], y, level=95), "level"),
    (lambda m, v, y: metrics.ence(m[0], v[0], y, binning="quantile"), "binning"),
    (lambda m, v, y: metrics.quantile_calibration_curve(m[0], v[0], y, levels=[0.5, 0.2]),
     "strictly increasing"),
    (lambda m, v, y: ek.evaluate_regression(m, v), "targets are required"),
    (lambda m, v, y: ek.evaluate_regression([(m, v)]), "triples"),
    (lambda m, v, y: ek.evaluate_regression(GaussianMembers(m, v), y), "unpack"),
    (lambda m, v, y: ek.evaluate_regression(m, v, y, ood_member_means=m[:2], ood_member_vars=v[:2]),
     "keep the"),
    (lambda m, v, y: ek.evaluate_regression(m, v, y, ood_member_vars=v), "without"),
])
def test_bad_inputs_are_refused_with_the_parameter_named(call, needle):
    means, variances, targets = ensemble(m=3, b=10, d=2)
    with pytest.raises((ValueError, TypeError), match=needle):
        call(means, variances, targets)


def test_one_output_accepts_flat_targets_and_never_broadcasts():
    means, variances, targets = ensemble(m=3, b=10, d=1)
    flat = targets[:, 0]
    assert metrics.mixture_nll(means, variances, flat) == metrics.mixture_nll(means, variances,
                                                                              targets)
    assert metrics.rmse(means[0, :, 0], flat) == metrics.rmse(means[0], targets)
    with pytest.raises(ValueError, match="targets must have"):
        metrics.rmse(means[0], torch.zeros(10, 2, dtype=torch.float64))
