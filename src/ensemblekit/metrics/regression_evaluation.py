"""One pass over the members' Gaussians that gives every regression metric, chunk by chunk.

``RegressionAccumulator`` takes member means and variances (M, B, D) with targets (B, D) in as
many chunks as needed and keeps sums and four values per sample and output (never the members'
outputs); ``evaluate_regression`` is the one-shot wrapper. Each value equals, up to float64
rounding, the function of this package named beside it applied to the whole set (with
``mu, s2 = moment_match(member_means, member_vars)`` for the Gaussian view), however the
samples were split into chunks.

Keys of the returned dict (scalars are Python floats, curves lists):

- ``"n_samples"`` (B), ``"n_members"`` (M), ``"n_outputs"`` (D);
- accuracy of the mean ``mu``: ``"rmse"``, ``"mae"`` (``rmse``, ``mae``); ``"member_rmse"``
  (M,): each member's RMSE;
- proper scoring rules: ``"nll"`` of the mixture (``mixture_nll``), ``"nll_gaussian"`` of the
  moment-matched Gaussian (``gaussian_nll``), ``"crps"`` of the mixture (``mixture_crps``),
  ``"crps_gaussian"`` (``gaussian_crps``);
- intervals ``mu +- z sigma`` of the moment-matched Gaussian: ``"picp_68"``, ``"mpiw_68"``,
  ``"picp_95"``, ``"mpiw_95"`` (``picp``, ``mpiw`` at ``INTERVAL_LEVELS``);
- ``"calibration_error"`` and ``"calibration_curve"``: ``{"expected", "observed"}`` at
  ``levels`` (``quantile_calibration_error`` / ``_curve``); ``"ence"`` with ``"n_bins"`` and
  ``"ence_binning"`` (``ence``);
- ``"ause"`` and ``"sparsification"``: ``{"fraction", "model", "oracle"}`` at up to 100
  fractions, RMSE-based (``ause``, ``sparsification_curves``); ``"spearman"`` of sigma with
  ``|y - mu|`` (``spearman_std_error``);
- ``"aleatoric"``, ``"epistemic"``: the means over samples and outputs of the two parts of the
  predictive variance (``moment_match``);
- only when OOD members were given: ``"n_ood_samples"`` and ``"ood"``: ``{score: {"auroc",
  "aupr", "aupr_in", "fpr95"}}`` (OOD positive, as ``evaluate_predictions``) for each score of
  ``REGRESSION_OOD_SCORES``, a sample's score being the mean over its outputs of the epistemic
  variance (``"epistemic"``) or of the total predictive variance (``"variance"``); for one
  member the epistemic score is 0 everywhere and its values are None (null in JSON).

Everything is in the targets' units as given: un-standardise the members first
(``Standardization.to_original``) to report the original units.
"""

from __future__ import annotations

import torch

from .._validation import check_choice, check_int
from ..members import GaussianMembers
from ._inputs import check_gaussian_members, check_targets
from .evaluation import _BLOCK, _detection_summary, _iterable, _undefined_detection
from .gaussian import _gaussian_log_prob, _mixture_log_prob, _moments
from .regression import INTERVAL_LEVELS, _covered, _gaussian_crps, _mixture_crps, _z
from .regression_calibration import (
    CALIBRATION_LEVELS,
    ENCE_BINNINGS,
    _ence,
    _quantile_counts,
    check_levels,
)
from .sparsification import _ause, _curve_points, _sparsification, _spearman

#: The per-sample OOD scores of a regression ensemble, higher = more OOD.
REGRESSION_OOD_SCORES = ("epistemic", "variance")
_PER_SAMPLE = ("error", "variance", "aleatoric", "epistemic")


class RegressionAccumulator:
    """Streams member Gaussians through every metric of ``evaluate_regression``.

    Usage::

        acc = RegressionAccumulator()
        for member_means, member_vars, targets in loader:   # (M, B, D), (M, B, D), (B, D)
            acc.update(member_means, member_vars, targets)
        for member_means, member_vars in ood_loader:         # optional, (M, B', D) each
            acc.update_ood(member_means, member_vars)
        results = acc.compute()

    Memory: four float64 values per sample and output (see ``per_sample``), two per OOD
    sample, and O(M + L) sums. M and D are fixed by the first update.
    """

    def __init__(self, n_bins: int = 10, *, levels=CALIBRATION_LEVELS,
                 ence_binning: str = "equal_mass"):
        self.n_bins = check_int("n_bins", n_bins, minimum=1)
        self.levels = check_levels(levels)
        self.ence_binning = check_choice("ence_binning", ence_binning, ENCE_BINNINGS)
        self._z = {name: _z(level) for name, level in INTERVAL_LEVELS.items()}
        self.reset()

    def reset(self) -> None:
        """Forget everything added so far."""
        self.n_members: int | None = None
        self.n_outputs: int | None = None
        self._per_sample: dict[str, list[torch.Tensor]] = {}
        self._ood_scores: dict[str, list[torch.Tensor]] = {}
        self._sums: dict[str, torch.Tensor] = {}

    @property
    def n_samples(self) -> int:
        """In-distribution samples added so far."""
        return sum(chunk.shape[0] for chunk in self._per_sample.get("error", []))

    @property
    def n_ood_samples(self) -> int:
        """OOD samples added so far."""
        return sum(chunk.numel() for chunk in self._ood_scores.get("variance", []))

    def update(self, member_means: torch.Tensor, member_vars: torch.Tensor,
               targets: torch.Tensor) -> None:
        """Add a chunk: member means and variances (M, B, D), targets (B, D) ((B,) if D = 1)."""
        means, variances = self._checked_members("", member_means, member_vars)
        targets = check_targets("targets", targets, shape=means.shape[1:]).to(means.device)
        for start in range(0, means.shape[1], _BLOCK):
            rows = slice(start, start + _BLOCK)
            self._add_block(means[:, rows], variances[:, rows], targets[rows])

    def update_ood(self, member_means: torch.Tensor, member_vars: torch.Tensor) -> None:
        """Add a chunk of out-of-distribution predictions: means and variances (M, B', D)."""
        means, variances = self._checked_members("ood_", member_means, member_vars)
        moments = _moments(means, variances)
        for name, values in _ood_scores(moments.epistemic, moments.variance).items():
            self._ood_scores.setdefault(name, []).append(values)

    def per_sample(self) -> dict[str, torch.Tensor]:
        """The per-sample values kept so far, in the order added (for plots and analyses).

        ``"error"`` ``y - mu``, ``"variance"`` (the moment-matched ``s2``), ``"aleatoric"``,
        ``"epistemic"``: float64 (N, D); once ``update_ood`` was called, ``"ood_scores"``:
        ``{score: (N_ood,)}`` for each of ``REGRESSION_OOD_SCORES``.
        """
        if self.n_samples == 0:
            raise ValueError(
                "RegressionAccumulator has no in-distribution predictions yet: call "
                "update(member_means, member_vars, targets) at least once first"
            )
        result = {name: torch.cat(self._per_sample[name]) for name in _PER_SAMPLE}
        if self._ood_scores:
            result["ood_scores"] = {name: torch.cat(chunks)
                                    for name, chunks in self._ood_scores.items()}
        return result

    def compute(self) -> dict:
        """Every metric over all chunks added so far (keys: see the module docstring)."""
        per_sample = self.per_sample()
        errors, variances = per_sample["error"], per_sample["variance"]
        sums = self._sums
        n, values = errors.shape[0], errors.numel()
        curve = sums["quantile_counts"].double().cpu() / values
        model, oracle = _sparsification(errors, variances, "rmse")
        results = {
            "n_samples": n,
            "n_members": self.n_members,
            "n_outputs": self.n_outputs,
            "rmse": (sums["squared_error"] / values).sqrt().item(),
            "mae": (sums["absolute_error"] / values).item(),
            "member_rmse": (sums["member_squared_error"] / values).sqrt().tolist(),
            "nll": (sums["nll"] / n).item(),
            "nll_gaussian": (sums["nll_gaussian"] / n).item(),
            "crps": (sums["crps"] / values).item(),
            "crps_gaussian": (sums["crps_gaussian"] / values).item(),
        }
        for name in INTERVAL_LEVELS:
            results[f"picp_{name}"] = (sums[f"covered_{name}"].double() / values).item()
            results[f"mpiw_{name}"] = (sums[f"width_{name}"] / values).item()
        results.update(
            calibration_error=(self.levels - curve).abs().mean().item(),
            calibration_curve={"expected": self.levels.tolist(), "observed": curve.tolist()},
            ence=_ence(errors, variances, self.n_bins, self.ence_binning),
            n_bins=self.n_bins,
            ence_binning=self.ence_binning,
            ause=_ause(model, oracle),
            sparsification={key: value.tolist()
                            for key, value in _curve_points(model, oracle, 100).items()},
            spearman=_spearman(variances.sqrt(), errors.abs()),
            aleatoric=(sums["aleatoric"] / values).item(),
            epistemic=(sums["epistemic"] / values).item(),
        )
        if "ood_scores" in per_sample:
            scores_in = _ood_scores(per_sample["epistemic"], variances)
            results["n_ood_samples"] = self.n_ood_samples
            results["ood"] = {
                name: _undefined_detection() if self.n_members == 1 and name == "epistemic"
                else _detection_summary(scores_in[name], per_sample["ood_scores"][name])
                for name in REGRESSION_OOD_SCORES
            }
        return results

    def _checked_members(self, prefix: str, member_means, member_vars):
        means, variances = check_gaussian_members(member_means, member_vars, prefix=prefix)
        n_members, _, n_outputs = means.shape
        if self.n_members is None:
            self.n_members, self.n_outputs = n_members, n_outputs
        elif (n_members, n_outputs) != (self.n_members, self.n_outputs):
            raise ValueError(
                f"{prefix}member_means must keep the (members, outputs) of earlier chunks: "
                f"expected (M={self.n_members}, *, D={self.n_outputs}), got shape "
                f"{tuple(means.shape)}"
            )
        return means, variances

    def _add_block(self, means: torch.Tensor, variances: torch.Tensor,
                   targets: torch.Tensor) -> None:
        moments = _moments(means, variances)
        errors = targets - moments.mean
        per_sample = {"error": errors, "variance": moments.variance,
                      "aleatoric": moments.aleatoric, "epistemic": moments.epistemic}
        for name, value in per_sample.items():
            self._per_sample.setdefault(name, []).append(value)
        std = moments.variance.sqrt()
        block_sums = {
            "squared_error": errors.square().sum(),
            "absolute_error": errors.abs().sum(),
            "member_squared_error": (targets - means).square().sum((1, 2)),
            "nll": -_mixture_log_prob(means, variances, targets).sum(),
            "nll_gaussian": -_gaussian_log_prob(errors, moments.variance).sum(),
            "crps": _mixture_crps(means, variances, targets).sum(),
            "crps_gaussian": _gaussian_crps(errors, moments.variance).sum(),
            "quantile_counts": _quantile_counts(errors, moments.variance,
                                                self.levels.to(errors.device)),
            "aleatoric": moments.aleatoric.sum(),
            "epistemic": moments.epistemic.sum(),
        }
        for name, z in self._z.items():
            block_sums[f"covered_{name}"] = _covered(errors, moments.variance, z).sum()
            block_sums[f"width_{name}"] = (2 * z * std).sum()
        for name, value in block_sums.items():
            self._sums[name] = self._sums[name] + value if name in self._sums else value


def _ood_scores(epistemic: torch.Tensor, variance: torch.Tensor) -> dict[str, torch.Tensor]:
    """(N, D) epistemic and total variances -> {score: (N,)} means over the outputs."""
    return {"epistemic": epistemic.mean(1), "variance": variance.mean(1)}


def evaluate_regression(
    member_means,
    member_vars: torch.Tensor | None = None,
    targets: torch.Tensor | None = None,
    *,
    ood_member_means=None,
    ood_member_vars: torch.Tensor | None = None,
    n_bins: int = 10,
    levels=CALIBRATION_LEVELS,
    ence_binning: str = "equal_mass",
) -> dict:
    """Every regression metric in one pass (keys: see the module docstring).

    member_means: a tensor (M, N, D) with ``member_vars`` (M, N, D) (> 0) and ``targets``
    (N, D) (or (N,) for D = 1) -- for a ``GaussianMembers`` pair ``members``, call
    ``evaluate_regression(*members, targets)`` -- or an iterable of ``(member_means,
    member_vars, targets)`` chunks with the other two left out.
    ood_member_means: optional tensor (M, N', D) with ``ood_member_vars``, or an iterable of
    ``(member_means, member_vars)`` chunks (``GaussianMembers`` pairs); when given, the result
    has an ``"ood"`` entry (detection by epistemic and by total variance).
    n_bins, ence_binning: the ENCE's bins (see ``ence``); levels: the calibration curve's.
    """
    accumulator = RegressionAccumulator(n_bins, levels=levels, ence_binning=ence_binning)
    if isinstance(member_means, GaussianMembers):
        raise TypeError("member_means is a GaussianMembers pair: unpack it, "
                        "evaluate_regression(*members, targets)")
    if isinstance(member_means, torch.Tensor):
        if member_vars is None or targets is None:
            raise ValueError(
                "member_vars and targets are required with a member_means tensor: call "
                "evaluate_regression(member_means, member_vars, targets)"
            )
        accumulator.update(member_means, member_vars, targets)
    elif member_vars is not None or targets is not None:
        raise ValueError(
            "member_vars and targets must be left out when member_means is an iterable of "
            "(member_means, member_vars, targets) chunks"
        )
    else:
        for chunk in _iterable("member_means", member_means):
            if not (isinstance(chunk, tuple | list) and len(chunk) == 3):
                raise ValueError(
                    "member_means chunks must be (member_means, member_vars, targets) triples, "
                    f"got {type(chunk).__name__}"
                    + (f" of length {len(chunk)}" if isinstance(chunk, tuple | list) else "")
                )
            accumulator.update(*chunk)
    if isinstance(ood_member_means, torch.Tensor):
        if ood_member_vars is None:
            raise ValueError("ood_member_vars is required with an ood_member_means tensor")
        accumulator.update_ood(ood_member_means, ood_member_vars)
    elif ood_member_means is not None:
        if ood_member_vars is not None:
            raise ValueError(
                "ood_member_vars must be left out when ood_member_means is an iterable of "
                "(member_means, member_vars) chunks"
            )
        for chunk in _iterable("ood_member_means", ood_member_means):
            if not (isinstance(chunk, tuple | list) and len(chunk) == 2):
                raise ValueError("ood_member_means chunks must be (member_means, member_vars) "
                                 f"pairs, got {type(chunk).__name__}")
            accumulator.update_ood(*chunk)
    elif ood_member_vars is not None:
        raise ValueError("ood_member_vars was given without ood_member_means")
    return accumulator.compute()
