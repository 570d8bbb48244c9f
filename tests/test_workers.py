"""Runs trained side by side in worker processes give the records of runs trained one after
another, are stored and logged as they finish, and a failing run stops the grid with its
own error; how many run at once, and what a bad ``jobs`` is told."""

from __future__ import annotations

import json
import math
import multiprocessing
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ensemblekit.cli import main
from ensemblekit.experiments import BenchmarkSettings, run_benchmark
from ensemblekit.experiments.benchmark import predictions_path, run_path
from ensemblekit.experiments.runs import RecordStore, Run, RunGrid
from ensemblekit.experiments.workers import compute_in_workers, parallel_runs
from ensemblekit.runtime import MAX_THREADS


def factorial_record(run: Run) -> tuple[dict, None]:
    """A run's record computed in a worker (module level: it pickles by name)."""
    return {"value": math.factorial(run.point), "settings": {}}, None


def test_parallel_runs_counts_cores_per_run_and_never_exceeds_the_runs():
    assert parallel_runs(3, runs=10, device="cpu") == 3
    assert parallel_runs(3, runs=2, device="cpu") == 2
    threads = torch.get_num_threads()
    assert parallel_runs("auto", runs=1000, device="cpu") == max(1, MAX_THREADS // threads)
    assert parallel_runs("auto", runs=1000, device="cpu", threads=1) == MAX_THREADS
    assert parallel_runs("auto", runs=1000, device="cpu", threads=MAX_THREADS) == 1
    assert parallel_runs("auto", runs=1000, device="cuda") == 1  # one GPU: one run at a time


def test_workers_yield_every_run_in_the_order_of_finishing():
    runs = [Run(key=n, point=n, seed=0, name=str(n)) for n in (5, 3, 7, 1)]
    finished = dict((run.key, result) for run, result in
                    compute_in_workers(runs, factorial_record, 2))
    assert finished == {n: ({"value": math.factorial(n), "settings": {}}, None)
                        for n in (5, 3, 7, 1)}


def test_a_failing_run_stops_the_grid_with_its_own_error_and_keeps_the_finished(tmp_path):
    store = RecordStore(out=tmp_path, fingerprint={},
                        path=lambda run: tmp_path / f"{run.key}.json")
    # two workers: -1 can only start once 4 or 2 has finished, so one of them is stored
    runs = [Run(key=f"n{n}", point=n, seed=0, name=str(n)) for n in (4, 2, -1, 3)]
    messages: list[str] = []
    grid = RunGrid(runs, store=store, log=messages.append)
    with pytest.raises(ValueError, match="factorial"):
        grid.run(factorial_record, summary=lambda run, record: run.name, jobs=2)
    written = {path.stem for path in tmp_path.glob("*.json")}
    assert written & {"n4", "n2"} and written <= {"n4", "n2", "n3"}
    for name in written:
        assert json.loads((tmp_path / f"{name}.json").read_text())["value"] > 0
    again = RunGrid([run for run in runs if run.point != -1], store=store, log=messages.append)
    assert {run.key for run in again.todo} == {"n4", "n2", "n3"} - written
    assert messages[0] == "2 runs at a time, each in its own process"


def tiny(out, jobs):
    return BenchmarkSettings.from_sources(overrides={
        "methods": ["single", "mimo"], "seeds": 2, "epochs": 1, "members": 2,
        "corruptions": ["gaussian_noise"], "severities": [3], "threads": 1, "jobs": jobs,
        "out": str(out)})


def test_benchmark_in_two_workers_writes_the_records_of_one_process(tmp_path):
    results = {jobs: run_benchmark(tiny(tmp_path / f"jobs-{jobs}", jobs), log=print)
               for jobs in (1, 2)}
    for method in ("single", "mimo"):
        for seed in (0, 1):
            one, two = (json.loads(run_path(tmp_path / f"jobs-{jobs}", method, seed)
                                   .read_text()) for jobs in (1, 2))
            one["train"].pop("seconds"), two["train"].pop("seconds")
            assert one == two
            saved = [torch.load(predictions_path(tmp_path / f"jobs-{jobs}", method, seed),
                                weights_only=True) for jobs in (1, 2)]
            assert torch.equal(saved[0]["test_probs"], saved[1]["test_probs"])
    assert results[1]["methods"]["mimo"]["test"] == results[2]["methods"]["mimo"]["test"]


def test_jobs_is_not_part_of_a_run_s_fingerprint(tmp_path):
    assert "jobs" not in tiny(tmp_path, 2).fingerprint()
    assert tiny(tmp_path, 2).fingerprint() == tiny(tmp_path, 1).fingerprint()


@pytest.mark.parametrize("value", [0, -2, "many", 1.5])
def test_a_bad_jobs_is_refused_by_name(tmp_path, value):
    with pytest.raises(ValueError, match="jobs"):
        tiny(tmp_path, value)


def test_the_command_line_trains_side_by_side_unless_told(tmp_path, capsys):
    argv = ["benchmark", "--methods", "single", "--seeds", "2", "--epochs", "1",
            "--corruptions", "none", "--ood", "none", "--threads", "1"]
    assert main([*argv, "--out", str(tmp_path / "auto")]) == 0
    printed = capsys.readouterr().out
    expected = max(1, min(2, MAX_THREADS))
    assert (f"{expected} runs at a time" in printed) == (expected > 1)
    assert main([*argv, "--jobs", "1", "--out", str(tmp_path / "one")]) == 0
    assert "runs at a time" not in capsys.readouterr().out
    assert main([*argv, "--jobs", "0", "--out", str(tmp_path / "zero")]) == 2
    assert "jobs" in capsys.readouterr().err


def sleep_or_fail(run: Run) -> tuple[dict, None]:
    """Fails at once for a negative point; otherwise sleeps that many seconds."""
    if run.point < 0:
        raise ValueError(f"run {run.name} fails")
    time.sleep(run.point)
    return {"slept": run.point}, None


def test_a_failing_run_terminates_the_runs_in_progress_at_once():
    runs = [Run(key=n, point=p, seed=0, name=str(n)) for n, p in enumerate((60, -1, 60))]
    started = time.monotonic()
    with pytest.raises(ValueError, match="run 1 fails") as raised:
        list(compute_in_workers(runs, sleep_or_fail, 2))
    assert time.monotonic() - started < 30  # not the 60 s the other worker sleeps
    assert "sleep_or_fail" in str(raised.value.__cause__)  # the worker's traceback


STOPPED_PARENT = r'''
import os, sys, time
from ensemblekit.experiments.runs import Run
from ensemblekit.experiments.workers import compute_in_workers


def report_and_sleep(run):
    with open(os.path.join(sys.argv[1], f"worker-{os.getpid()}"), "w"):
        pass
    time.sleep(120)
    return {}, None


if __name__ == "__main__":
    runs = [Run(key=n, point=n, seed=0, name=str(n)) for n in range(4)]
    for _ in compute_in_workers(runs, report_and_sleep, 2):
        pass
'''


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
@pytest.mark.parametrize("stop", ["SIGINT", "SIGKILL"])
def test_workers_end_with_their_parent(tmp_path, stop):
    # Ctrl-C: the parent stops its workers and exits; SIGKILL: the workers notice and exit
    script = tmp_path / "grid.py"
    script.write_text(STOPPED_PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)],
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("worker-*"))) < 2:
        assert parent.poll() is None and time.monotonic() < deadline, parent.stderr.read()
        time.sleep(0.05)
    workers = [int(path.name.split("-")[1]) for path in tmp_path.glob("worker-*")]
    parent.send_signal(getattr(signal, stop))
    parent.wait(timeout=30)
    if stop == "SIGINT":
        assert "KeyboardInterrupt" in parent.stderr.read()
    deadline = time.monotonic() + 20
    while any(_running(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived its parent"
        time.sleep(0.05)


def test_a_record_that_cannot_be_written_stops_the_workers_at_once(tmp_path):
    (tmp_path / "taken").mkdir()  # the record's path is a folder: writing it fails
    store = RecordStore(out=tmp_path, fingerprint={}, path=lambda run: tmp_path / "taken")
    runs = [Run(key=n, point=p, seed=0, name=str(n)) for n, p in enumerate((0, 60))]
    started = time.monotonic()
    try:
        RunGrid(runs, store=store, log=lambda message: None).run(
            sleep_or_fail, summary=lambda run, record: run.name, jobs=2)
    except OSError as error:
        held = error  # its traceback keeps the grid's frame, and so its workers' generator
    assert isinstance(held, OSError)
    assert time.monotonic() - started < 30  # the 60 s run was stopped, not waited for
    assert not multiprocessing.active_children()  # and its worker is gone, not left running
