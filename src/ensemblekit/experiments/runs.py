"""The one run-grid loop: every (point, seed) run of an experiment, in order, with resume.

An experiment lists its runs (:class:`Run`: a point -- a method, a grid point -- and a seed)
and hands :class:`RunGrid` the function that computes one. With a :class:`RecordStore`, each
finished run is written at once, atomically, as a JSON record (and, first, an optional sidecar
of tensors beside it); a rerun with the same folder reads those back and computes only what is
missing -- a record that is unreadable, or whose sidecar is, counts as missing -- so an
interrupted experiment loses at most the run in progress. A record whose ``"settings"`` (the
experiment's fingerprint) differ from today's is refused, naming the keys, instead of mixing
two protocols in one table. Progress: a line per finished run (and a bar on a terminal).

The benchmark and tune keep their records (paths in their modules); the diversity study and
the sweep run through the same loop without a store.
"""

from __future__ import annotations

import json
import pickle
import sys
import time
import zipfile
from collections.abc import Callable, Hashable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .._validation import check_int
from ..atomic import atomic_torch_save, atomic_write_text
from .workers import compute_in_workers, parallel_runs

Log = Callable[[str], None]


@dataclass(frozen=True)
class Run:
    """One run of a grid: ``point`` (a method name, a grid point...) trained with ``seed``.

    ``key``: hashable and unique in the grid; ``name``: how progress lines call it.
    """

    key: Hashable
    point: object
    seed: int
    name: str


@dataclass
class ParallelRuns:
    """Settings of an experiment whose runs may train side by side: ``jobs`` runs at once,
    each in its own worker process, or ``"auto"``: as many as the CPU cores hold at
    ``threads`` threads a run (one on CUDA). The results do not depend on it (:mod:`~ensemblekit.
    experiments.workers`). The default is one (no worker processes: a script calling the
    experiment needs no ``if __name__ == "__main__"`` guard); the command line runs
    ``"auto"``. A mixin listed before ``Settings``, whose ``validate`` it extends."""

    jobs: int | str = 1

    def validate(self) -> None:
        super().validate()
        if self.jobs != "auto":
            if isinstance(self.jobs, str):
                raise ValueError(f"jobs must be a whole number >= 1 or 'auto', got "
                                 f"{self.jobs!r}; pass e.g. --jobs 2 or --jobs auto")
            self.jobs = check_int("jobs", self.jobs, minimum=1)

    def parallel_runs(self, runs: int) -> int:
        """How many of ``runs`` runs to train at once."""
        return parallel_runs(self.jobs, runs=runs, device=self.device, threads=self.threads)


class ResumableRuns(ParallelRuns):
    """Settings of an experiment whose finished (point, seed) runs are kept under ``out`` and
    resumed: it runs ``seeds`` seeds; ``RESUME_FREE`` lists the keys a rerun may change freely."""

    RESUME_FREE: tuple[str, ...] = ()

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds))

    def fingerprint(self) -> dict:
        """The settings that decide a run's result (a resumed run must match them)."""
        values = self.to_dict()
        for key in self.RESUME_FREE:
            values.pop(key)
        return values


def read_record(path: Path, expected: dict, out) -> dict | None:
    """The finished record at ``path`` (None if absent or unreadable: it is recomputed).

    Raises ``ValueError`` naming every differing key if its ``"settings"`` differ from
    ``expected`` (a fingerprint), so that one output folder never mixes two protocols.
    """
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        recorded = record["settings"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        return None  # not a finished run's record: it is recomputed and overwritten
    differing = sorted(key for key in expected.keys() | recorded.keys()
                       if expected.get(key) != recorded.get(key))
    if differing:
        details = "; ".join(f"{key}: {recorded.get(key)!r} there, "
                            f"{expected.get(key)!r} now" for key in differing)
        raise ValueError(f"{out} holds finished runs with other settings ({details}); "
                         "rerun with those settings to resume, or pass a new --out")
    return record


def read_sidecar(path: Path) -> dict | None:
    """The tensors saved beside a record (loaded with ``weights_only=True``), or None if
    missing or unreadable."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile):
        return None  # a damaged file: the run is recomputed


@dataclass
class RecordStore:
    """Where a grid's finished runs are kept, and what makes one count as finished.

    ``path(run)``: the JSON record; ``sidecar(run)``: the tensors saved beside it (None: no
    sidecar); ``accepts(run, record)``: whether a fingerprint-matching record is this run's
    (e.g. a grid point's options); ``protocol_glob``: records under ``out`` that must all share
    the fingerprint, whether or not today's grid holds them.
    """

    out: Path
    fingerprint: dict
    path: Callable[[Run], Path]
    sidecar: Callable[[Run], Path] | None = None
    accepts: Callable[[Run, dict], bool] | None = None
    protocol_glob: str | None = None

    def check_folder(self) -> None:
        """Raise if any record under ``protocol_glob`` was computed under other settings."""
        if self.protocol_glob is not None:
            for path in sorted(Path(self.out).glob(self.protocol_glob)):
                read_record(path, self.fingerprint, self.out)

    def read(self, run: Run) -> tuple[dict, object] | None:
        """``(record, sidecar)`` of a finished run, or None if it is to be computed."""
        record = read_record(self.path(run), self.fingerprint, self.out)
        if record is None or (self.accepts is not None and not self.accepts(run, record)):
            return None
        if self.sidecar is None:
            return record, None
        saved = read_sidecar(self.sidecar(run))
        return None if saved is None else (record, saved)

    def write(self, run: Run, record: dict, extra) -> None:
        """The sidecar first, then the record: a record on disk always has its sidecar."""
        if self.sidecar is not None:
            atomic_torch_save(extra, self.sidecar(run))
        atomic_write_text(self.path(run), json.dumps(record, indent=1))


class RunGrid:
    """The runs of one experiment, with those already finished in ``store`` read back.

    ``records`` / ``extras``: ``{run.key: record}`` / ``{run.key: sidecar or what compute
    returned beside the record}``, filled as runs are read or computed; ``todo``: the runs
    still to compute. ``noun`` and ``list_finished`` shape the resume message.
    """

    def __init__(self, runs: list[Run], *, store: RecordStore | None = None, log: Log = print,
                 noun: str = "runs", list_finished: bool = True) -> None:
        self.runs, self.store, self.log = list(runs), store, log
        self.records: dict = {}
        self.extras: dict = {}
        if store is None:
            return
        store.check_folder()
        for run in self.runs:
            found = store.read(run)
            if found is not None:
                self.records[run.key], self.extras[run.key] = found
        if self.records:
            names = (" (" + ", ".join(run.name for run in self.runs if run.key in self.records)
                     + ")" if list_finished else "")
            log(f"resuming {store.out}: {len(self.records)} of {len(self.runs)} {noun} already "
                f"finished{names}; skipping them")

    @property
    def todo(self) -> list[Run]:
        return [run for run in self.runs if run.key not in self.records]

    def run(self, compute: Callable[[Run], tuple[dict, object]], *,
            summary: Callable[[Run, dict], str], desc: str = "runs", jobs: int = 1) -> dict:
        """Compute every run of ``todo`` (``compute(run) -> (record, extra)``), keep it in the
        store, log ``[i/n] summary (elapsed)``; return ``{key: record}`` of every run, in grid
        order.

        ``jobs`` > 1: that many runs at once, each in a worker process
        (:mod:`~ensemblekit.experiments.workers`; ``compute`` must then pickle); the runs are
        logged and stored as they finish, and the records are those of ``jobs=1``.
        """
        todo = self.todo
        started = time.perf_counter()
        if jobs > 1 and len(todo) > 1:
            jobs = min(jobs, len(todo))
            self.log(f"{jobs} runs at a time, each in its own process")
            finished = compute_in_workers(todo, compute, jobs)
        else:
            finished = ((run, compute(run)) for run in todo)
        # closing: a failure here (a record that cannot be written) stops the workers at once
        with closing(finished), tqdm(total=len(todo), desc=desc, unit="run", file=sys.stderr,
                                     disable=not todo or None) as bar:
            for index, (run, (record, extra)) in enumerate(finished, start=1):
                if self.store is not None:
                    self.store.write(run, record, extra)
                self.records[run.key], self.extras[run.key] = record, extra
                bar.update(1)
                self.log(f"[{index}/{len(todo)}] {summary(run, record)} "
                         f"({time.perf_counter() - started:.0f} s elapsed)")
        return {run.key: self.records[run.key] for run in self.runs}
