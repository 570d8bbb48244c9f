"""The one writer of verdict lines: each claim's verdict and the comparisons behind it, every
difference with its bootstrap interval (the records of :mod:`ensemblekit.stats.claims`).

A report turns each comparison into a :class:`Row` of text (its metric, what is compared, the
values, the interval, the verdict) and picks a layout: a table per claim (the benchmark) or one
bullet per claim (the member-similarity study).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One comparison as text: ``interval`` is ``{"estimate", "low", "high"}``."""

    metric: str
    statement: str
    values: str
    interval: dict
    verdict: str


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
