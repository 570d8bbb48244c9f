"""The papers' claims, tested: the benchmark's orderings and the member-similarity study's
verdicts, each from a paired bootstrap over seeds and test examples (:mod:`.bootstrap`).

The claims themselves are data (:mod:`ensemblekit.methods.claims`): their text, kind, methods
and metrics. Here each kind is evaluated on a :class:`ClaimTable`: every (method, metric)'s mean
over seeds and its bootstrap replicates, computed once on draws shared by every method (that
is the pairing). A claim whose methods did not all run is left out; a metric the runs did not
measure is left out of the claim, and a claim left with no comparison is left out too. A
claim's verdict is the conjunction of its comparisons' (:func:`~.bootstrap.combine`).

Two record layouts, kept as ``results.json`` and ``diversity.json`` have always held them:

- :func:`orderings` (the benchmark): ``{"claim", "verdict", "comparisons": [{"metric",
  "statement", "values": {method: mean over seeds}, "difference": {"estimate", "low", "high",
  "level", "n_boot"}, "claimed": "positive" | "negative", "verdict"}]}``;
- :func:`study_verdicts` (the member-similarity study, :class:`~ensemblekit.methods.claims.
  Closer` claims): ``{"claim", "reference", "comparisons": [{"metric", <method>: value,
  "reference": value, <far>: value, "closeness": interval, "verdict"}], "verdict"}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch

from ..methods import method_entry
from ..methods.claims import (
    BENCHMARK_CLAIMS,
    BENCHMARK_METRICS,
    DIVERSITY_CLAIMS,
    IDENTICAL,
    Better,
    Between,
    ClaimSet,
    Closer,
    Lands,
)
from .bootstrap import (
    DEFAULT_N_BOOT,
    Interval,
    Metric,
    Resamples,
    closeness,
    combine,
    compare_replicates,
    draw_resamples,
    observed,
    replicates,
    verdict,
)
from .weighted import ACCURACY, AUROC, ECE, NLL, PAIRWISE_CKA, PER_SAMPLE_MEAN, SHIFT_ECE

#: The seed of the bootstrap draws behind the verdicts (fixed: the same report twice).
BOOTSTRAP_SEED = 0
#: What the benchmark's claims are tested on, in the report's order.
CLAIM_METRICS = BENCHMARK_METRICS
#: The OOD score whose AUROC the benchmark's claims use.
CLAIM_OOD_SCORE = "entropy"
#: Replicates of the member-similarity study's verdicts.
STUDY_N_BOOT = 2000
#: Replicates of its CKA comparison: each costs ``O(N^2)`` per member pair (Gram matrices).
STUDY_N_BOOT_CKA = 400


class ClaimTable:
    """Each (method, metric)'s mean over seeds and bootstrap replicates, computed once.

    ``methods``: the methods that ran (a claim naming another is left out); ``floors``:
    ``{metric: value}`` of identical members, for :data:`~ensemblekit.methods.claims.
    IDENTICAL`. :meth:`add` registers a metric: its :class:`~.bootstrap.Metric`, labels
    ``(N,)``, the shared :class:`~.bootstrap.Resamples` and ``{method: [values per seed]}``
    (the methods that measured it).
    """

    def __init__(self, methods, *, level: float = 0.95, floors: Mapping | None = None):
        self.methods = set(methods)
        self.level = level
        self.floors = dict(floors or {})
        self.sources: dict[str, tuple[Metric, torch.Tensor, Resamples, dict]] = {}
        self._cache: dict = {}

    def add(self, name: str, metric: Metric, labels: torch.Tensor, resamples: Resamples,
            runs: dict[str, list]) -> None:
        self.sources[name] = (metric, labels, resamples, runs)

    def ran(self, *methods: str) -> bool:
        return all(method in self.methods for method in methods)

    def measures(self, name: str, *methods: str) -> bool:
        """Whether metric ``name`` was measured for every one of ``methods`` (a floor for
        :data:`~ensemblekit.methods.claims.IDENTICAL`)."""
        if name not in self.sources:
            return False
        runs = self.sources[name][3]
        return all(name in self.floors if m == IDENTICAL else m in runs for m in methods)

    def metric(self, name: str) -> Metric:
        return self.sources[name][0]

    def value(self, method: str, name: str) -> tuple[float, torch.Tensor]:
        """(mean over seeds, replicates (B,)) of ``method`` on metric ``name``."""
        if (method, name) not in self._cache:
            metric, labels, resamples, runs = self.sources[name]
            self._cache[(method, name)] = (observed(metric, runs[method], labels),
                                           replicates(metric, runs[method], labels, resamples))
        return self._cache[(method, name)]

    def closeness(self, claim: Closer, name: str) -> tuple[tuple[float, float, float], Interval]:
        """The values of ``(method, near, far)`` on ``name`` and the interval of ``|method -
        near| - |method - far|``; ``near`` :data:`~ensemblekit.methods.claims.IDENTICAL`:
        the metric's floor, the same on every replicate."""
        m, m_reps = self.value(claim.method, name)
        f, f_reps = self.value(claim.far, name)
        if claim.near == IDENTICAL:
            n = self.floors[name]
            n_reps = torch.full_like(m_reps, n)
        else:
            n, n_reps = self.value(claim.near, name)
        return (m, n, f), closeness((m, n, f), (m_reps, n_reps, f_reps), level=self.level)


def label(method: str) -> str:
    """How the claims' texts name a method: its registry label."""
    return "identical members" if method == IDENTICAL else method_entry(method).label


def claims_that_ran(claims, table: ClaimTable) -> Iterator:
    """The claims in order, each :class:`~ensemblekit.methods.claims.Lands` as one
    :class:`~ensemblekit.methods.claims.Better` per other method, leaving out those whose
    methods did not all run."""
    for claim in claims:
        if isinstance(claim, Lands):
            for other in claim.others:
                if table.ran(claim.method, other):
                    text = claim.text.format(method=label(claim.method), other=label(other))
                    yield Better(text, better=claim.method, worse=other, metrics=claim.metrics)
        elif isinstance(claim, (Better, Between, Closer)):
            if table.ran(*claim.methods):
                yield claim
        else:
            raise TypeError(f"unknown claim kind {type(claim).__name__}: use Better, Between, "
                            "Closer or Lands (ensemblekit.methods.claims)")


def _pairs(claim) -> list[tuple[str, str, str]]:
    """``(better, worse, metric)`` of each comparison a Better or Between claim makes."""
    if isinstance(claim, Between):
        return [pair for name in claim.metrics
                for pair in ((claim.method, claim.low, name), (claim.high, claim.method, name))]
    return [(claim.better, claim.worse, name) for name in claim.metrics]


# -- the benchmark's orderings -----------------------------------------------------------------


def orderings(predictions: dict, *, n_boot: int | None = None, seed: int = BOOTSTRAP_SEED,
              level: float = 0.95, claims: ClaimSet = BENCHMARK_CLAIMS) -> list[dict]:
    """The orderings the papers report (``claims``), each tested by a paired bootstrap on
    every metric it speaks of.

    ``predictions``: ``{(method, seed): predictions}`` as saved by the benchmark; methods are
    compared on the seeds they all ran. Metrics (where present in every run): clean
    ``accuracy``, ``nll``, ``ece`` (``"test_probs"`` (N, K), ``"labels"`` (N,)); ``shift_ece``
    (mean ECE over every corruption kind and severity: ``"shift"`` ``"confidence"`` and
    ``"correct"`` (S, C, N)); ``auroc`` (OOD, :data:`CLAIM_OOD_SCORE` of the mean prediction:
    ``"ood_scores"``). Records: the module docstring's first layout.
    """
    table = _benchmark_table(predictions, n_boot=n_boot or DEFAULT_N_BOOT, seed=seed,
                             level=level)
    return tested_orderings(table, claims)


def tested_orderings(table: ClaimTable, claims: ClaimSet) -> list[dict]:
    """Each claim of ``claims`` whose methods ran, tested on ``table``'s metrics (records:
    the module docstring's first layout); a claim with no measured comparison is left out."""
    checked = []
    for claim in claims_that_ran(claims.claims, table):
        if isinstance(claim, Closer):
            comparisons = [_closeness_record(table, claim, name) for name in claim.metrics
                           if table.measures(name, claim.method, claim.near, claim.far)]
        else:
            comparisons = [_better_record(table, better, worse, name)
                           for better, worse, name in _pairs(claim)
                           if table.measures(name, better, worse)]
        verdict_ = combine([c["verdict"] for c in comparisons]) if comparisons else None
        checked.append({"claim": claim.text, "verdict": verdict_, "comparisons": comparisons})
    return [claim for claim in checked if claim["comparisons"]]


def _benchmark_table(predictions: dict, *, n_boot: int, seed: int, level: float) -> ClaimTable:
    """Clean and shift metrics: one set of draws over the test examples; AUROC: one over in-
    and out-of-distribution examples, resampled separately."""
    methods = list(dict.fromkeys(method for method, _ in predictions))
    seeds = sorted({s for _, s in predictions})
    runs = {m: [predictions[(m, s)] for s in seeds] for m in methods
            if all((m, s) in predictions for s in seeds)}
    table = ClaimTable(runs, level=level)
    if not runs:
        return table
    labels = next(iter(runs.values()))[0]["labels"]
    clean = draw_resamples(len(labels), len(seeds), n_boot=n_boot, seed=seed)
    for name, metric in (("accuracy", ACCURACY), ("nll", NLL), ("ece", ECE)):
        table.add(name, metric, labels, clean,
                  {m: [p["test_probs"] for p in group] for m, group in runs.items()})
    if all("shift" in p for group in runs.values() for p in group):
        table.add("shift_ece", SHIFT_ECE, labels, clean, {
            m: [(p["shift"]["confidence"].flatten(0, 1).T, p["shift"]["correct"].flatten(0, 1).T)
                for p in group] for m, group in runs.items()})
    if all(CLAIM_OOD_SCORE in p.get("ood_scores", {}) for group in runs.values()
           for p in group):
        scores = {m: [torch.cat([p["ood_scores"][CLAIM_OOD_SCORE]["in"],
                                 p["ood_scores"][CLAIM_OOD_SCORE]["out"]]) for p in group]
                  for m, group in runs.items()}
        first = next(iter(runs.values()))[0]["ood_scores"][CLAIM_OOD_SCORE]
        is_ood = torch.cat([torch.zeros(len(first["in"]), dtype=torch.bool),
                            torch.ones(len(first["out"]), dtype=torch.bool)])
        draws = draw_resamples(len(is_ood), len(seeds), n_boot=n_boot, seed=seed, strata=is_ood)
        table.add("auroc", AUROC, is_ood, draws, scores)
    return table


def _better_record(table: ClaimTable, better: str, worse: str, name: str) -> dict:
    (a, a_reps), (b, b_reps) = table.value(better, name), table.value(worse, name)
    metric = table.metric(name)
    result = compare_replicates(metric, names=(better, worse), observed_values=(a, b),
                                replicate_values=(a_reps, b_reps), level=table.level)
    return {"metric": name, "statement": f"{label(better)} better than {label(worse)}",
            "values": {better: a, worse: b}, "difference": result.difference.to_dict(),
            "claimed": "positive" if metric.higher_is_better else "negative",
            "verdict": result.verdict}


def _closeness_record(table: ClaimTable, claim: Closer, name: str) -> dict:
    (m, n, f), difference = table.closeness(claim, name)
    method, near, far = (label(claim.method), label(claim.near), label(claim.far))
    return {"metric": name, "statement": f"|{method} - {near}| - |{method} - {far}|",
            "values": {claim.method: m, claim.near: n, claim.far: f},
            "difference": difference.to_dict(), "claimed": "negative",
            "verdict": verdict(difference, claimed="negative")}


# -- the member-similarity study's verdicts ----------------------------------------------------


def study_verdicts(runs: dict[str, list[dict]], *, floor: Mapping[str, float], seed: int = 0,
                   claims: ClaimSet = DIVERSITY_CLAIMS) -> list[dict]:
    """The study's claims (:class:`~ensemblekit.methods.claims.Closer`, each comparison
    claimed below 0) from its runs: ``{variant: [run per seed]}``, each run holding ``"sets"``
    with per-sample arrays (``"clean"`` and, with an OOD set, ``"ood"``) and, where the CKA
    verdict needs it, ``"grams"`` (the members' penultimate Gram matrices (M, N, N)).
    ``floor``: ``{measure: value}`` of identical members (0 disagreement, 1 CKA...). Records:
    the module docstring's second layout; an empty list when no claim's methods all ran."""
    table = _study_table(runs, floor=floor, seed=seed)
    checked = []
    for claim in claims_that_ran(claims.claims, table):
        if not isinstance(claim, Closer):
            raise TypeError(f"the member-similarity study tests Closer claims, got "
                            f"{type(claim).__name__} ({claim.text!r})")
        comparisons = []
        for name in claim.metrics:
            if table.measures(name, claim.method, claim.near, claim.far):
                (m, n, f), difference = table.closeness(claim, name)
                comparisons.append({"metric": name, claim.method: m, "reference": n,
                                    claim.far: f, "closeness": difference.to_dict(),
                                    "verdict": verdict(difference, claimed="negative")})
        if comparisons:
            checked.append({"claim": claim.text, "reference": claim.near,
                            "comparisons": comparisons,
                            "verdict": combine([c["verdict"] for c in comparisons])})
    return checked


def _study_table(runs: dict[str, list[dict]], *, floor: Mapping[str, float],
                 seed: int) -> ClaimTable:
    """The ensemble's accuracy, ECE, NLL (probabilities) and the per-sample disagreement and
    mutual information on the clean test set: one set of draws; OOD AUROC of the maximum
    softmax probability score: in- and out-of-distribution resampled separately; the mean
    pairwise CKA of the penultimate features: its own :data:`STUDY_N_BOOT_CKA` draws."""
    table = ClaimTable(runs, floors=floor)
    if not runs:
        return table
    clean = {key: [run["sets"]["clean"]["per_sample"] for run in group]
             for key, group in runs.items()}
    labels = next(iter(clean.values()))[0]["labels"]
    seeds = len(next(iter(runs.values())))
    resamples = draw_resamples(len(labels), seeds, n_boot=STUDY_N_BOOT, seed=seed)
    for name, metric in (("accuracy", ACCURACY), ("ece", ECE), ("nll", NLL)):
        table.add(name, metric, labels, resamples,
                  {key: [sample["probs"] for sample in samples] for key, samples in clean.items()})
    with_ood = {key: group for key, group in runs.items()
                if all("ood" in run["sets"] for run in group)}
    if with_ood:
        scores = {key: [torch.cat([run["sets"]["clean"]["per_sample"]["msp_score"],
                                   run["sets"]["ood"]["per_sample"]["msp_score"]])
                        for run in group] for key, group in with_ood.items()}
        out = next(iter(with_ood.values()))[0]["sets"]["ood"]["per_sample"]["msp_score"]
        is_ood = torch.cat([torch.zeros(len(labels), dtype=torch.bool),
                            torch.ones(len(out), dtype=torch.bool)])
        strata = draw_resamples(len(is_ood), seeds, n_boot=STUDY_N_BOOT, seed=seed,
                                strata=is_ood)
        table.add("auroc", AUROC, is_ood, strata, scores)
    for name in ("disagreement", "mutual_information"):
        table.add(name, PER_SAMPLE_MEAN, labels, resamples,
                  {key: [sample[name] for sample in samples] for key, samples in clean.items()})
    grams = {key: [run["grams"] for run in group] for key, group in runs.items()
             if all("grams" in run for run in group)}
    if grams:
        examples = next(iter(grams.values()))[0].shape[1]
        draws = draw_resamples(examples, seeds, n_boot=STUDY_N_BOOT_CKA, seed=seed)
        table.add("cka_penultimate", PAIRWISE_CKA, torch.zeros(examples), draws, grams)
    return table
