"""The one writer of verdict lines: each claim's verdict and the comparisons behind it, every
difference with its bootstrap interval (the records of :mod:`ensemblekit.stats.claims`).

A report turns each comparison into a :class:`Row` of text (its metric, what is compared, the
values, the interval, the verdict) and picks a layout: a table per claim (the benchmark) or one
bullet per claim (the member-similarity study).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from .labels import method_label


@dataclass(frozen=True)
class Row:
    """One comparison as text: ``interval`` is ``{"estimate", "low", "high"}``."""

    metric: str
    statement: str
    values: str
    interval: dict
    verdict: str


def comparison_row(comparison: dict, metric_labels: Mapping[str, str]) -> Row:
    """The :class:`Row` of one benchmark comparison (``{"metric", "statement", "values",
    "difference", "claimed", "verdict"}``): its claimed side of 0 in the statement, each
    method's value by its label; ``metric_labels`` names the metrics."""
    side = "< 0" if comparison["claimed"] == "negative" else "> 0"
    statement = comparison["statement"].replace("|", "\\|")  # a bare | would end the cell
    return Row(metric=metric_labels[comparison["metric"]],
               statement=f"{statement} (difference {side})",
               values=" vs ".join(f"{method_label(m)} {v:.4f}"
                                  for m, v in comparison["values"].items()),
               interval=comparison["difference"], verdict=comparison["verdict"])


def bootstrap_intro(boot: dict, *, resampled_note: str = "", recomputed: str = "",
                    notes: str = "") -> list[str]:
    """The paragraph before a benchmark's verdicts: how the bootstrap drew (``boot``: its
    ``n_boot``, ``seed``, ``resampled`` and ``level``) and what the three verdicts mean;
    ``resampled_note``, ``recomputed`` and ``notes`` add a report's own words in place."""
    return [
        f"Each verdict comes from a paired bootstrap ({boot['n_boot']} replicates, seed "
        f"{boot['seed']}): {boot['resampled']}{resampled_note}; every metric is recomputed on "
        f"each replicate{recomputed} and averaged over the drawn "
        f"seeds. Intervals: {boot['level']:.0%} percentile intervals of the difference. "
        "**holds**: the interval lies entirely on the claimed side of 0; **does not "
        "hold**: entirely on the other side; **inconclusive**: it contains 0. A claim made "
        f"of several comparisons holds only if every one holds.{notes}", ""]


def interval_text(interval: dict) -> str:
    """``"+0.0123 [-0.0040, +0.0301]"``: the estimate and its interval, signed."""
    return (f"{interval['estimate']:+.4f} [{interval['low']:+.4f}, "
            f"{interval['high']:+.4f}]")


def verdict_lines(claims: list[dict], row: Callable[[dict, dict], Row], *, unchecked: str,
                  bullets: bool = False, intro: Iterable[str] = (),
                  outro: Iterable[str] = ()) -> list[str]:
    """Markdown lines of ``claims`` (``{"claim", "verdict", "comparisons"}`` records), each
    comparison through ``row(claim, comparison)``; ``unchecked`` alone when there are none.

    Table layout: ``intro``, then per claim its verdict in bold and a table of its rows.
    Bullet layout: per claim one bullet, its verdict in bold and every row after it, then
    ``outro``.
    """
    if not claims:
        return [unchecked]
    lines = list(intro)
    for claim in claims:
        rows = [row(claim, comparison) for comparison in claim["comparisons"]]
        if bullets:
            parts = [f"{r.metric}: {r.values}; {r.statement} = {interval_text(r.interval)} "
                     f"({r.verdict})" for r in rows]
            lines.append(f"- {claim['claim']}: **{claim['verdict']}**. " + "; ".join(parts)
                         + ".")
            continue
        lines += [f"**{claim['claim']}: {claim['verdict']}.**", "",
                  "| metric | claim | values | difference [95% interval] | verdict |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r.metric} | {r.statement} | {r.values} | {interval_text(r.interval)} | "
                  f"{r.verdict} |" for r in rows]
        lines.append("")
    if not bullets:
        lines.pop()  # no blank line after the last table
    return lines + list(outro)
