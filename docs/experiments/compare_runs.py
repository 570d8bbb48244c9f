#!/usr/bin/env python3
"""Compare two ensemblekit run folders, ignoring timing:
``python docs/experiments/compare_runs.py BASE NEW``.

Every ``.json``, ``.csv``, ``.md`` and ``.toml`` file under BASE (recursively; figures and
``.pt`` files are not compared) must exist under NEW with the same content outside timing
fields. Prints every difference and exits 1 if there is any (2 on bad arguments), 0 otherwise.

What counts as timing (it changes from run to run on the same machine):

- JSON: any key whose ``_``-separated words include ``seconds``, ``latency``, ``ms`` or
  ``timed`` (``latency_ms_per_sample``, ``latency_ratio``, ``latency_ratio_to_single``,
  ``single_ms_per_batch``, ``timed_calls``, ``train_seconds``, ``seconds``...), dropped with
  everything under it; a Pareto front over latency (key ``latency/<metric>``, and
  ``latency/...`` entries in a ``fronts`` list): which points lie on it depends on the timings.
- CSV: a column whose header is such a key; a row whose ``metric`` cell is such a key
  (``results.csv``); ``latency/...`` words in a ``fronts`` cell.
- Markdown: table columns whose header names latency, ms, seconds, "x single" or "train s";
  the sections under a heading that names latency (``## Pareto front: latency vs ...``);
  ``front latency/...`` marks; "Run time: N s"; the measured compiled/plain ratio sentence.
- TOML: ``latency N`` in comments.

Numbers are compared as text (bit for bit): JSON floats as Python reads them (repr round
trips), CSV/markdown cells as written. The absolute path of each folder is read as "<out>" in
its own files (a run records its ``--out``: rerunning on a copy changes only that).
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
import sys
from pathlib import Path

TIMING_WORDS = {"seconds", "latency", "ms", "timed"}
MASK = "<timing>"
OUT = "<out>"
TIMING_HEADER = re.compile(r"latency|\bms\b|seconds|x single|^train s$")
TIMING_TEXT = (
    re.compile(r"Run time: \S+ s"),
    re.compile(r"[\d.]+x the single model's predict_members time"),
    re.compile(r"latency [\d.]+"),
)
#: A mark in a table cell's comma-separated list that depends on the timings.
TIMING_MARK = re.compile(r"^front latency/")
SUFFIXES = (".json", ".csv", ".md", ".toml")


def is_timing_key(key: str) -> bool:
    return bool(TIMING_WORDS & set(str(key).split("_"))) or str(key).startswith("latency/")


def strip_json(value):
    """``value`` without its timing keys (recursively)."""
    if isinstance(value, dict):
        return {key: strip_json(item) for key, item in value.items() if not is_timing_key(key)}
    if isinstance(value, list):
        return [strip_json(item) for item in value
                if not (isinstance(item, str) and item.startswith("latency/"))]
    return value


def json_differences(base, new, where: str = "") -> list[str]:
    if isinstance(base, dict) and isinstance(new, dict):
        found = []
        for key in dict.fromkeys([*base, *new]):
            if key not in new:
                found.append(f"{where}/{key}: only in BASE")
            elif key not in base:
                found.append(f"{where}/{key}: only in NEW")
            else:
                found += json_differences(base[key], new[key], f"{where}/{key}")
        if not found and list(base) != list(new):
            found.append(f"{where}: same keys in another order: {list(base)} vs {list(new)}")
        return found
    if isinstance(base, list) and isinstance(new, list):
        if len(base) != len(new):
            return [f"{where}: {len(base)} items in BASE, {len(new)} in NEW"]
        found = []
        for index, (a, b) in enumerate(zip(base, new, strict=True)):
            found += json_differences(a, b, f"{where}[{index}]")
        return found
    if type(base) is not type(new) or base != base or new != new or base != new:
        if base != base and new != new:  # nan in both
            return []
        return [f"{where}: {base!r} (BASE) != {new!r} (NEW)"]
    return []


def csv_rows(text: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return rows
    header = rows[0]
    timing_columns = {i for i, name in enumerate(header) if is_timing_key(name)}
    metric = header.index("metric") if "metric" in header else None
    fronts = header.index("fronts") if "fronts" in header else None
    kept = []
    for row in rows:
        if metric is not None and row is not header and len(row) > metric \
                and is_timing_key(row[metric]):
            continue
        row = [MASK if i in timing_columns else cell for i, cell in enumerate(row)]
        if fronts is not None and row is not header and len(row) > fronts:
            row[fronts] = " ".join(w for w in row[fronts].split() if not w.startswith("latency/"))
        kept.append(row)
    return kept


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]


def _untimed(cell: str) -> str:
    """A table cell without its timing-dependent marks and sentences."""
    cell = ", ".join(item for item in cell.split(", ") if not TIMING_MARK.match(item))
    for pattern in TIMING_TEXT:
        cell = pattern.sub(MASK, cell)
    return cell


def markdown_lines(text: str) -> list[str]:
    lines = text.split("\n")
    kept, timing_columns, skipping, level = [], set(), False, 0
    for index, line in enumerate(lines):
        heading = re.match(r"^(#+) ", line)
        if heading:
            depth = len(heading.group(1))
            if skipping and depth > level:
                continue
            skipping = "latency" in line.lower()
            level = depth
            if skipping:
                kept.append(f"{line} {MASK} (section skipped)")
                continue
        elif skipping:
            continue
        if line.startswith("|"):
            following = lines[index + 1] if index + 1 < len(lines) else ""
            if re.fullmatch(r"\|[-:|]+\|?", following):  # a header row
                timing_columns = {i for i, cell in enumerate(_cells(line))
                                  if TIMING_HEADER.search(cell)}
            elif not re.fullmatch(r"\|[-:|]+\|?", line):
                cells = _cells(line)
                line = "| " + " | ".join(MASK if i in timing_columns else _untimed(cell)
                                         for i, cell in enumerate(cells)) + " |"
                kept.append(line)
                continue
        else:
            timing_columns = set()
        for pattern in TIMING_TEXT:
            line = pattern.sub(MASK, line)
        kept.append(line)
    return kept


def toml_lines(text: str) -> list[str]:
    lines = []
    for line in text.split("\n"):
        for pattern in TIMING_TEXT:
            line = pattern.sub(MASK, line)
        lines.append(line)
    return lines


def text_differences(base: list[str], new: list[str]) -> list[str]:
    if base == new:
        return []
    return [line for line in difflib.unified_diff(base, new, "BASE", "NEW", lineterm="", n=0)
            if not line.startswith(("---", "+++"))]


def compare_file(base: Path, new: Path, base_dir: Path, new_dir: Path) -> list[str]:
    # a run writes its own output folder into its files (commands, config paths): the two
    # folders are the same place
    base_text = base.read_text().replace(str(base_dir.resolve()), OUT)
    new_text = new.read_text().replace(str(new_dir.resolve()), OUT)
    if base.suffix == ".json":
        return json_differences(strip_json(json.loads(base_text)),
                                strip_json(json.loads(new_text)))
    if base.suffix == ".csv":
        return text_differences([",".join(r) for r in csv_rows(base_text)],
                                [",".join(r) for r in csv_rows(new_text)])
    if base.suffix == ".md":
        return text_differences(markdown_lines(base_text), markdown_lines(new_text))
    return text_differences(toml_lines(base_text), toml_lines(new_text))


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not all(Path(a).is_dir() for a in argv):
        print(__doc__.split("\n")[0], file=sys.stderr)
        print("usage: compare_runs.py BASE_DIR NEW_DIR (two existing folders)", file=sys.stderr)
        return 2
    base_dir, new_dir = map(Path, argv)
    files = sorted(p for p in base_dir.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    differing = 0
    for base in files:
        relative = base.relative_to(base_dir)
        new = new_dir / relative
        if not new.is_file():
            print(f"{relative}: missing in {new_dir}")
            differing += 1
            continue
        found = compare_file(base, new, base_dir, new_dir)
        if found:
            differing += 1
            print(f"{relative}: {len(found)} difference(s) outside timing fields")
            for line in found[:200]:
                print(f"  {line}")
            if len(found) > 200:
                print(f"  ... and {len(found) - 200} more")
    print(f"compared {len(files)} file(s): {differing} differ outside timing fields")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
