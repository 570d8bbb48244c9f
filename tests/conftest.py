"""Fixtures shared by the whole suite.

``one_thread`` (autouse): every test runs torch on one CPU thread. The test models and tensors
are tiny, and on a busy 2-core machine OpenMP threads spin-wait for a descheduled partner at
every parallel region, which made the same test up to tens of times slower with two threads.
A test that needs more threads sets them itself (the fixture restores the count afterwards).

``ensemblekit_command``: the argv that starts the installed console script in a real process
(``python -m ensemblekit.cli`` where the script is not installed beside this interpreter).

``reliability_log``: a record of what the fuzz and fault-injection tests tried, printed as a
table at the end.

Used by ``test_fuzz_api.py``, ``test_fuzz_cli.py`` and ``test_reliability.py``: each asks for
the session fixture ``reliability_log`` and calls ``reliability_log(kind, target, outcome)``
once per input fuzzed or fault injected. The terminal summary then shows, per (kind, target),
how many were tried and what came of them. Nothing is printed when no test recorded anything.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import torch

from ensemblekit.experiments import recipes as recipes_module

_RECORDS = pytest.StashKey[list]()


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ensemblekit_command() -> list[str]:
    script = shutil.which("ensemblekit", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "ensemblekit.cli"]


@pytest.fixture(scope="session")
def reliability_log(request):
    """``record(kind, target, outcome)``: kind is "input" (a fuzzed call) or "fault" (an
    injected failure); target names what was called or hurt; outcome is what happened."""
    records = request.config.stash.setdefault(_RECORDS, [])

    def record(kind: str, target: str, outcome: str) -> None:
        records.append((kind, target, outcome))

    return record


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    records = config.stash.get(_RECORDS, [])
    if not records:
        return
    outcomes: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for kind, target, outcome in records:
        outcomes[kind, target][outcome] += 1
    width = max(len(target) for _, target in outcomes)
    terminalreporter.section("reliability: inputs fuzzed and faults injected")
    terminalreporter.write_line(f"{'kind':6}  {'target':{width}}  {'tried':>5}  outcomes")
    for (kind, target), counts in sorted(outcomes.items()):
        summary = ", ".join(f"{outcome} x{n}" for outcome, n in counts.most_common())
        terminalreporter.write_line(
            f"{kind:6}  {target:{width}}  {sum(counts.values()):5}  {summary}"
        )
    faults = sum(1 for kind, _, _ in records if kind == "fault")
    terminalreporter.write_line(f"{len(records) - faults} inputs fuzzed, {faults} faults injected")


@pytest.fixture
def recipes(tmp_path, monkeypatch) -> Path:
    """A writable copy of ``configs/recipes/`` that the experiments read instead of the
    repository's (``ensemblekit.experiments.recipes.RECIPES_DIR``): edit its files to try
    another recipe."""
    folder = tmp_path / "recipes"
    shutil.copytree(recipes_module.RECIPES_DIR, folder)
    monkeypatch.setattr(recipes_module, "RECIPES_DIR", folder)
    return folder
