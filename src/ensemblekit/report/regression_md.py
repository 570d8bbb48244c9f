"""The regression benchmark's ``report.md``: protocol, the test table with "+VS" rows,
variance scaling, conformal coverage beside nominal, validation and training fit, the claims'
verdicts and the figures; written beside ``results.json`` and ``results.csv``."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_write_text
from ..methods.claims import REGRESSION_CLAIMS
from ._format import plural
from .benchmark_tables import method_settings_lines
from .labels import method_label
from .regression import (
    CLAIM_LABELS,
    REGRESSION_FIGURES,
    regression_csv,
    regression_table,
    spread_of,
)
from .verdicts import Row, bootstrap_intro, comparison_row
from .verdicts import verdict_lines as write_verdict_lines


def regression_figure_names(results: dict) -> list[str]:
    """The figures the results allow (the verdicts' only with at least one checked claim)."""
    names = [name for name, _ in REGRESSION_FIGURES]
    if not results.get("orderings"):
        names.remove("verdicts.png")
    return names


def regression_markdown(results: dict) -> str:
    """The human-readable report of a regression benchmark (module docstring)."""
    p = results["protocol"]
    train = p["train"]
    seeds = results["seeds"]
    hidden = "-".join(map(str, p["hidden"])) if p["hidden"] else "default"
    lines = [f"# Regression benchmark on {p['dataset']}", "", "## Protocol", "",
             f"- Methods: {', '.join(method_label(m) for m in results['methods'])}; backbone "
             f"{p['backbone']}, hidden layers {hidden}; each member predicts a Gaussian "
             "(mean, softplus variance).",
             f"- Members: {p['members']} (Masksembles scale {p['masksembles_scale']:g}; "
             f"MC-Dropout p = {p['mc_dropout_p']:g} with {p['mc_samples']} stochastic "
             "passes), unless a method's own setting below says otherwise.",
             f"- Training: {plural(train['epochs'], 'epoch')}, batch {train['batch_size']}, "
             f"{train['optimizer']} lr {train['lr']:g}, weight decay "
             f"{train['weight_decay']:g}, {train['schedule']} schedule; loss "
             f"{_loss(train)}.",
             f"- Seeds: {', '.join(map(str, seeds))}."]
    if results.get("splits"):
        lines.append(f"- Splits: {', '.join(map(str, results['splits']))} of the release's "
                     "given train/test splits"
                     + ("; one hidden layer of n_hidden units and n_epochs from the set's "
                        "files (the published protocol)" if p["published_protocol"] else "")
                     + ".")
    lines += [f"- Every number: {p['spread']}"
              + ("" if len(seeds) > 1 or results.get("splits") else " (one seed: its value)")
              + f"; metrics in {p['units']}.",
              f"- Ensemble prediction: {p['aggregation']}.",
              f"- Validation: {p['validation_fraction']:.0%} of the training part held out at "
              "random (fixed split seed: the same inputs for every method and seed); it fits "
              "variance scaling and the conformal intervals, and chooses nothing else; the test "
              "set chooses nothing.", ""]
    lines += method_settings_lines(results) + [""] if p.get("method_settings") else []
    lines += ["## Test metrics", "", *regression_table(results), "",
              "RMSE, CRPS and MPIW in the target's units; NLL in nats (mixture of the members' "
              "Gaussians); PICP / MPIW: coverage and mean width of the moment-matched "
              "Gaussian's central 95% interval; cal. error: mean |p - observed| of the quantile "
              "calibration curve (99 levels); ENCE over 10 equal-mass bins of sigma; AUSE: "
              "area between the RMSE sparsification curve and the oracle's; Spearman: of sigma "
              "with |error|. A +VS row: the same models with the variance scale fitted on "
              "validation, over the runs (k of n) whose scale was identified.", ""]
    lines += variance_scaling_lines(results) + conformal_lines(results)
    lines += fit_lines(results)
    lines += ["## Verdicts", "", *verdict_lines(results), "", "## Figures", ""]
    captions = dict(REGRESSION_FIGURES)
    for name in regression_figure_names(results):
        lines += [f"![{captions[name]}](figures/{name})", "", f"*{captions[name]}.*", ""]
    return "\n".join(lines).rstrip() + "\n"


def _loss(train: dict) -> str:
    loss = train.get("loss", "beta_nll")
    if loss == "beta_nll":
        loss += f" (beta = {train.get('beta', 0.5):g})"
    if train.get("mse_warmup_epochs"):
        loss += f" after {plural(train['mse_warmup_epochs'], 'epoch')} of MSE warm-up"
    return loss


def variance_scaling_lines(results: dict) -> list[str]:
    """The "+VS" fits: the scale, how many runs identified it, validation NLL before / after."""
    text = spread_of(results)
    lines = ["### Variance scaling (+VS)", "",
             "One scale s per run (sigma -> s sigma about the mixture's mean), fitted in "
             "closed form to minimise the validation NLL of the moment-matched Gaussian; "
             "applied only when identified (at least 20 validation inputs, s strictly inside "
             "[0.01, 100]), else the run keeps s = 1 and stays out of the +VS row.", "",
             "| method | identified | s | validation NLL before | after |",
             "|---|---:|---:|---:|---:|"]
    reasons = set()
    for method, entry in results["methods"].items():
        scaled = entry.get("variance_scaled")
        if scaled is None:
            continue
        reasons.update(scaled["reasons"])
        nll = scaled["validation_nll"]
        lines.append(f"| {method_label(method)} | {scaled['identified']}/{scaled['runs']} | "
                     f"{text(scaled['scale'])} | {text(nll['before'])} | "
                     f"{text(nll['after'])} |")
    if reasons:
        lines += ["", "Not identified: " + "; ".join(sorted(reasons)) + "."]
    return lines + [""]


def conformal_lines(results: dict) -> list[str]:
    """Split-conformal coverage on test beside the nominal level and the Gaussian interval's."""
    entries = {m: e["conformal"] for m, e in results["methods"].items() if "conformal" in e}
    if not entries:
        return []
    text = spread_of({**results, "splits": None})
    nominal = next(iter(entries.values()))["nominal"]
    lines = ["### Conformal intervals", "",
             f"Split conformal at nominal coverage {nominal:.0%}: scores |y - mu| / sigma on "
             "the validation split, q their ceil((n + 1)(1 - alpha))-th smallest, test "
             "intervals mu +- q sigma; the plain Gaussian interval mu +- 1.96 sigma beside it "
             "(mean ± std over runs).", "",
             "| method | nominal | conformal coverage | conformal MPIW | q | Gaussian "
             "coverage |", "|---|---:|---:|---:|---:|---:|"]
    for method, c in entries.items():
        if not c["fitted"]:
            lines.append(f"| {method_label(method)} | {c['nominal']:.2f} | n/a | n/a | n/a "
                         f"| n/a |")
            continue
        lines.append(f"| {method_label(method)} | {c['nominal']:.2f} | "
                     f"{text(c['coverage'])} | {text(c['mpiw'])} | {text(c['quantile'])} | "
                     f"{text(c['gaussian_coverage'])} |")
    return lines + [""]


def fit_lines(results: dict) -> list[str]:
    """Validation metrics and the last epoch's training loss, so that under-fitting shows."""
    text = spread_of({**results, "splits": None})
    lines = ["### Validation and training fit", "",
             "| method | val RMSE | val NLL | val CRPS | train loss (last epoch) | epochs | "
             "train s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for method, entry in results["methods"].items():
        val = entry.get("validation", {})
        cells = [text(val.get(k)) for k in ("rmse", "nll", "crps")]
        lines.append(f"| {method_label(method)} | {' | '.join(cells)} | "
                     f"{text(entry['train']['loss'])} | {entry['train']['epochs']} | "
                     f"{text(entry['train']['seconds'])} |")
    return lines + [""]


def verdict_lines(results: dict) -> list[str]:
    """Markdown lines of ``results["orderings"]``: per claim its verdict and its comparisons."""
    claims = results.get("orderings") or []
    boot = results.get("bootstrap")
    split = "" if not boot or boot.get("split") is None else f" (split {boot['split']}'s runs)"
    intro = [] if not claims else bootstrap_intro(boot, resampled_note=split)
    return write_verdict_lines(claims, _verdict_row, unchecked=REGRESSION_CLAIMS.unchecked,
                               intro=intro)


def _verdict_row(claim: dict, comparison: dict) -> Row:
    return comparison_row(comparison, CLAIM_LABELS)


def write_regression_reports(out: str | Path, results: dict) -> None:
    """Write ``results.json``, ``results.csv`` and ``report.md`` into ``out`` (atomically)."""
    out = Path(out)
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    atomic_write_text(out / "results.csv", regression_csv(results))
    atomic_write_text(out / "report.md", regression_markdown(results))
