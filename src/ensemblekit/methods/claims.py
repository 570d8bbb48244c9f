"""The papers' claims about the methods, as data: what the reports test and print.

A claim names the methods it speaks of by their registry names, the metrics it is tested on and
its text; :mod:`ensemblekit.stats.claims` evaluates each kind with a paired bootstrap over
seeds and test examples, in the order listed here, and leaves out a claim whose methods did not
all run. A new method's claims ("Masksembles vs Packed-Ensembles", "where each lands between
the single model and Deep Ensembles") are new entries here: nothing above ``methods/`` names
a method.

The kinds (every one is a conjunction: it holds only if each of its comparisons holds):

- :class:`Better`: ``better`` is better than ``worse`` on each metric;
- :class:`Between`: ``method`` lies between ``low`` and ``high``: ``low`` worse than
  ``method`` and ``method`` worse than ``high``, on each metric;
- :class:`Closer`: ``method`` is closer to ``near`` than to ``far``: ``|method - near| -
  |method - far| < 0`` on each metric; ``near`` may be :data:`IDENTICAL`, the floor of
  identical members (the member-similarity study's measures);
- :class:`Lands`: where ``method`` lands against each of ``others``: one :class:`Better`
  claim per other method, its text formatted with the methods' labels.

Metric names: the benchmark's claims are tested on ``accuracy``, ``nll``, ``ece``,
``shift_ece`` (the mean ECE over every corrupted set) and ``auroc`` (OOD, entropy of the mean
prediction); the member-similarity study's on ``accuracy``, ``ece``, ``nll``, ``auroc`` (OOD,
maximum softmax probability), ``disagreement``, ``mutual_information`` and
``cka_penultimate``. A metric a run did not measure (no OOD set, no corruptions) is left out
of the claim.
"""

from __future__ import annotations

from dataclasses import dataclass

#: ``Closer.near`` for "identical members": the measure's floor, by definition.
IDENTICAL = "floor"

#: Every metric the benchmark's claims are tested on, in the report's order.
BENCHMARK_METRICS = ("accuracy", "nll", "ece", "shift_ece", "auroc")


@dataclass(frozen=True)
class Better:
    """``better`` is better than ``worse`` on each of ``metrics``."""

    text: str
    better: str
    worse: str
    metrics: tuple[str, ...]

    @property
    def methods(self) -> tuple[str, ...]:
        return (self.better, self.worse)


@dataclass(frozen=True)
class Between:
    """``method`` lies between ``low`` (worse than it) and ``high`` (better than it), on each
    of ``metrics``: two comparisons per metric, ``(method, low)`` then ``(high, method)``."""

    text: str
    method: str
    low: str
    high: str
    metrics: tuple[str, ...]

    @property
    def methods(self) -> tuple[str, ...]:
        return (self.high, self.low, self.method)


@dataclass(frozen=True)
class Closer:
    """``method`` is closer to ``near`` (a method, or :data:`IDENTICAL`) than to ``far`` on
    each of ``metrics``: ``|method - near| - |method - far|`` below 0."""

    text: str
    method: str
    near: str
    far: str
    metrics: tuple[str, ...]

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(m for m in (self.method, self.near, self.far) if m != IDENTICAL)


@dataclass(frozen=True)
class Lands:
    """Where ``method`` lands against each of ``others``, metric by metric: one
    :class:`Better` claim ``method`` vs each other method that ran, its text ``text`` with
    ``{method}`` and ``{other}`` replaced by their labels ("holds" = better, "does not hold" =
    worse, "inconclusive" = the intervals cannot tell them apart)."""

    text: str
    method: str
    others: tuple[str, ...]
    metrics: tuple[str, ...]


@dataclass(frozen=True)
class ClaimSet:
    """The claims one report tests, in its order, and what it says when none could be."""

    claims: tuple
    unchecked: str


#: The orderings the papers report, tested by ``ensemblekit benchmark``.
BENCHMARK_CLAIMS = ClaimSet(
    claims=(
        Better("Deep Ensembles are better calibrated than the single model",
               better="deep_ensemble", worse="single", metrics=("ece", "shift_ece")),
        Between("Masksembles lies between the single model and Deep Ensembles (single model "
                "worse than Masksembles, Masksembles worse than Deep Ensembles)",
                method="masksembles", low="single", high="deep_ensemble",
                metrics=BENCHMARK_METRICS),
        Closer("BatchEnsemble stays close to the single model (closer to it than to Deep "
               "Ensembles)", method="batchensemble", near="single", far="deep_ensemble",
               metrics=BENCHMARK_METRICS),
        Better("Deep Ensembles are better calibrated than MC-Dropout",
               better="deep_ensemble", worse="mc_dropout", metrics=("ece", "shift_ece")),
        Better("Deep Ensembles detect OOD inputs better than the single model",
               better="deep_ensemble", worse="single", metrics=("auroc",)),
        # the "between" claim already places Masksembles against single and Deep Ensembles
        Lands("{method} is better than {other} (where it lands: holds = better, does not "
              "hold = worse)", method="masksembles", others=("mc_dropout", "batchensemble"),
              metrics=BENCHMARK_METRICS),
        # the two cheap ensembles TorchUncertainty ships beside Masksembles (issue 20): where
        # each lands between the single model and Deep Ensembles, and Masksembles against each
        Between("Packed-Ensembles lies between the single model and Deep Ensembles (single "
                "model worse than Packed-Ensembles, Packed-Ensembles worse than Deep Ensembles)",
                method="packed_ensemble", low="single", high="deep_ensemble",
                metrics=BENCHMARK_METRICS),
        Between("MIMO lies between the single model and Deep Ensembles (single model worse "
                "than MIMO, MIMO worse than Deep Ensembles)",
                method="mimo", low="single", high="deep_ensemble", metrics=BENCHMARK_METRICS),
        Lands("{method} is better than {other} (where it lands: holds = better, does not "
              "hold = worse)", method="masksembles", others=("packed_ensemble", "mimo"),
              metrics=BENCHMARK_METRICS),
    ),
    unchecked="Not checked: these need the single model, Deep Ensembles and the method in "
              "question in the same run, with their per-example predictions.",
)

#: Every metric the regression benchmark's claims are tested on, in the report's order
#: (lower is better for each: RMSE, the mixture's NLL and CRPS, the quantile calibration error).
REGRESSION_METRICS = ("rmse", "nll", "crps", "calibration_error")

#: The orderings ``ensemblekit benchmark --task regression`` tests: Deep Ensembles' proper
#: scores against the single model's and MC-Dropout's (Lakshminarayanan et al. 2017, Table 1
#: and sec. 3.3: lower NLL than MC-Dropout on most UCI sets), and where each cheap ensemble
#: lands between the single model and Deep Ensembles, as the classification claims place them.
REGRESSION_CLAIMS = ClaimSet(
    claims=(
        Better("Deep Ensembles' NLL and CRPS are below the single model's",
               better="deep_ensemble", worse="single", metrics=("nll", "crps")),
        Better("Deep Ensembles' NLL is below MC-Dropout's", better="deep_ensemble",
               worse="mc_dropout", metrics=("nll",)),
        Between("Masksembles lies between the single model and Deep Ensembles (single model "
                "worse than Masksembles, Masksembles worse than Deep Ensembles)",
                method="masksembles", low="single", high="deep_ensemble",
                metrics=REGRESSION_METRICS),
        Lands("{method} is better than {other} (where it lands: holds = better, does not "
              "hold = worse)", method="masksembles",
              others=("mc_dropout", "batchensemble", "packed_ensemble", "mimo"),
              metrics=REGRESSION_METRICS),
    ),
    unchecked="Not checked: these need the single model, Deep Ensembles and the method in "
              "question in the same run, with their per-input predictions.",
)

#: The seed paper's two claims about BatchEnsemble ("Is BatchEnsemble a Single Model?"),
#: tested by ``ensemblekit diversity``. "Nearer to identical than to independent" is the
#: most generous reading of "near-identical": if it does not hold, no stricter reading does.
DIVERSITY_CLAIMS = ClaimSet(
    claims=(
        Closer("BatchEnsemble tracks a single model (accuracy, ECE, NLL, OOD AUROC: nearer to "
               "the single model than to the Deep Ensemble)", method="batchensemble",
               near="single", far="deep_ensemble", metrics=("accuracy", "ece", "nll", "auroc")),
        Closer("BatchEnsemble's members are near-identical (disagreement, mutual information, "
               "CKA: nearer to identical members than to the Deep Ensemble's)",
               method="batchensemble", near=IDENTICAL, far="deep_ensemble",
               metrics=("disagreement", "mutual_information", "cka_penultimate")),
    ),
    unchecked="Not checked: the verdicts need BatchEnsemble, the single model and the Deep "
              "Ensemble in the same run.",
)

#: Short names where a figure or a verdict line has little room (the label otherwise).
SHORT_LABELS = {"single": "single", "mc_dropout": "MCD", "masksembles": "MS",
                "batchensemble": "BE", "packed_ensemble": "PE", "mimo": "MIMO",
                "deep_ensemble": "DE"}
