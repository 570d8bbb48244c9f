"""When is a temperature identified by the validation data? Otherwise it is not applied (T = 1).

The validation NLL in ``b = 1/T`` has slope ``g(b) = mean_i (E_{softmax(b z_i)}[z_i] -
z_i[y_i])`` (:mod:`._solver`). A correctly classified example always pulls T down (its
``E[z] < z_y`` for every b), the harder the closer it is to the decision boundary (a
near-miss); only a misclassified example pulls T up, and only once b is large enough for its
softmax to favour the wrong class. The fitted T is the balance of the errors against the
near-misses. So T is **not identified** -- the fit returns T = 1, ``fitted=False`` and the
reason, and warns with :class:`TemperatureNotIdentifiedWarning` -- when:

1. the minimiser sits at a search bound (the slope keeps one sign): every validation example
   right, or wrong by too small a margin (the NLL keeps falling as T -> 0; on the default
   benchmark a split without error gave T = 0.010 and raised the test NLL from 0.045 to
   0.497), or the logits no better than chance (it keeps falling as T grows);
2. the split holds fewer than ``min_errors`` errors (default :data:`MIN_VALIDATION_ERRORS` =
   2): with one error the fit rests on that one example -- leaving it out sends T to the
   bound. ``benchmarks/temperature_identification.py`` (validation splits of 250, as the
   default benchmark's; two synthetic models, 60 draws per setting) measured it: with one
   error, leaving it out sends T to the bound (by construction), and under label noise
   (confidently wrong errors) the fitted T raised the test NLL on average (+0.0033); from
   two errors on, leaving one out moved T by a median 14% or less, and the fit lowered the
   test NLL on average in both models (-0.010 to -0.074 by error count). A larger minimum
   would throw away fits that help; pass ``min_errors`` to ask for more;
3. the fitted temperature does not beat the uniform prediction (T -> infinity) by a
   likelihood-ratio test at the 1% level, ``2 N (log K - NLL(T)) < 6.63``: the logits are no
   better than chance, and the interior minimiser is noise.

Errors are counted on the logits being scaled (the pooled prediction for an ensemble's
"pool" mode, each member's own for "members").
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import torch

from .._validation import check_int
from ._solver import mean_nll, temperature_root

#: default least number of validation errors a temperature is fitted on (module docstring)
MIN_VALIDATION_ERRORS = 2
#: the 99% quantile of chi-squared with one degree of freedom: the likelihood-ratio test of a
#: fitted temperature against the uniform prediction (b = 1/T = 0)
CHANCE_LIKELIHOOD_RATIO = 6.635


class TemperatureNotIdentifiedWarning(UserWarning):
    """A temperature fit was not applied (T = 1): the validation data do not identify T."""


@dataclass(frozen=True)
class TemperatureFit:
    """The outcome of one temperature fit.

    Attributes:
        temperature: the T to divide the logits by: the fitted one, or 1.0 when not fitted.
        fitted: whether the validation data identify T (:mod:`.identification`).
        reason: why it was not fitted (None when fitted).
        n_errors: validation examples whose argmax is not their label.
        n_validation: validation examples.
    """

    temperature: float
    fitted: bool
    reason: str | None
    n_errors: int
    n_validation: int

    def as_dict(self) -> dict:
        """The fit as a JSON-ready dict (the keys are the attribute names)."""
        return asdict(self)


def check_min_errors(min_errors) -> int:
    return check_int("min_errors", min_errors, minimum=0)


def checked_outcome(fitted, reason) -> tuple[bool, str | None]:
    """``(fitted, reason)`` of a scaler: a bool, and a str exactly when not fitted."""
    if not isinstance(fitted, bool):
        raise ValueError(f"fitted must be True or False, got {fitted!r}")
    if fitted and reason is not None:
        raise ValueError(f"a fitted scaler has no reason for not being fitted, got {reason!r}")
    if not fitted and not isinstance(reason, str):
        raise ValueError(f"a scaler that is not fitted needs the reason (a str), got {reason!r}")
    return fitted, reason


def identified_temperature(logits: torch.Tensor, labels: torch.Tensor, low_t: float,
                           high_t: float, min_errors: int) -> TemperatureFit:
    """The NLL-minimising T in ``[low_t, high_t]`` if the data identify it, else T = 1 with the
    reason (module docstring). logits: float64 (N, K); labels: int64 (N,). No warning here."""
    count, classes = logits.shape
    errors = int((logits.argmax(-1) != labels).sum())

    def not_fitted(reason: str) -> TemperatureFit:
        return TemperatureFit(1.0, False, reason, errors, count)

    temperature, side = temperature_root(logits, labels, low_t, high_t)
    if side == "low":
        return not_fitted(
            f"the validation NLL keeps falling as T -> 0, down to the search bound {low_t:g}: "
            f"{errors} of {count} validation examples are misclassified"
            + (" and none with a margin" if errors else "")
            + ", so no temperature is identified (a bound is not a fit)")
    if side == "high":
        return not_fitted(
            f"the validation NLL keeps falling as T grows, up to the search bound {high_t:g}: "
            "the logits are no better than chance on the validation split")
    if errors < min_errors:
        return not_fitted(
            f"only {errors} of {count} validation examples are misclassified, fewer than "
            f"min_errors={min_errors}: the temperature would rest on "
            f"{'that one example' if errors == 1 else 'too few examples'} (see "
            "ensemblekit.calibration.identification); use a larger validation split")
    gain = math.log(classes) - mean_nll(logits / temperature, labels)
    if 2 * count * gain < CHANCE_LIKELIHOOD_RATIO:
        return not_fitted(
            f"the logits are no better than chance on the validation split: the best "
            f"temperature ({temperature:.3g}) beats the uniform prediction by {gain:.3g} nats "
            f"per example, below a likelihood-ratio test at the 1% level "
            f"({CHANCE_LIKELIHOOD_RATIO / (2 * count):.3g} for {count} examples)")
    return TemperatureFit(temperature, True, None, errors, count)


def warn_not_fitted(reasons: list[str | None], what: str, *, stacklevel: int) -> None:
    """One :class:`TemperatureNotIdentifiedWarning` ``"<what>: <reasons>"`` for the fits whose
    reason is not None (``reasons``: one per fit; several are named "member i")."""
    missing = [(index, reason) for index, reason in enumerate(reasons) if reason is not None]
    if not missing:
        return
    if len(reasons) == 1:
        detail = missing[0][1]
    else:
        detail = "; ".join(f"member {index}: {reason}" for index, reason in missing)
    warnings.warn(f"{what}: {detail}", TemperatureNotIdentifiedWarning,
                  stacklevel=stacklevel + 1)
