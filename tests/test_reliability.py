"""Faults injected into real processes and real files: nothing that was finished is lost.

What is tried (each fault is recorded; the end of the pytest run prints the table):

- SIGKILL of a real subprocess at each step of an atomic checkpoint write (half the bytes in the
  temporary file; temporary file complete but not renamed; renamed but the folder not synced),
  and SIGKILL of forked writers at random moments while they rewrite a checkpoint in a loop:
  the file on disk always loads, bit-identical to the previous or the new model.
- SIGKILL of training (``tests/_scripts/train_tiny.py``) in the middle of writing its epoch-2
  checkpoint, and at random moments of a run: ``last.pt`` always holds the last finished
  epoch and resuming from it ends bit-identical to an uninterrupted run.
- Checkpoint files truncated at many lengths, with random bit flips and with zeroed blocks:
  loading raises ``ValueError`` naming the file, or (a flip in bytes nothing reads) gives the
  identical model -- never a silently different one; resuming from a damaged ``last.pt``
  raises and leaves the file as it was.
- SIGKILL of ``ensemblekit benchmark`` while it writes a finished seed's record and while it
  writes ``results.json``: finished seeds' records and the previous report stay intact, and
  rerunning the command resumes without retraining what was finished.

A stop inside a write is placed by ``INJECTOR``, a wrapper run in the subprocess: it patches
``tempfile.mkstemp``, ``os.fdopen`` and ``os.replace`` (what ``ensemblekit.atomic`` calls) to
write a marker file and sleep at the chosen point of the N-th write of the chosen file; the test
waits for the marker, then sends SIGKILL.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from tqdm import tqdm

from ensemblekit.checkpoint import load, read_checkpoint, save
from ensemblekit.cli import main as cli_main
from ensemblekit.methods import build_model
from ensemblekit.train import CHECKPOINT_NAME, TrainConfig, train_model

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL") or not hasattr(os, "fork"),
                                reason="needs POSIX SIGKILL and fork")

TRAIN_TINY = Path(__file__).parent / "_scripts" / "train_tiny.py"
EPOCHS = 6  # of train_tiny's 8 steps each: long enough for kills to land inside training
STEPS = 8  # train_tiny: 256 examples in batches of 32
WAIT_SECONDS = 300  # a subprocess start imports torch: slow on a busy machine

INJECTOR = r'''
"""Run ensemblekit, stopping inside the OCCURRENCE-th atomic write of a file named TARGET.

argv: TARGET OCCURRENCE PHASE MARKER MODE ARGS...; PHASE: "mid-write" (half of the bytes
written to the temporary file), "before-rename" (temporary file complete), "after-rename"
(destination replaced, folder not yet synced). At the stop the script writes MARKER and sleeps.
MODE: "cli" (ensemblekit.cli.main(ARGS)), "script" (run the file ARGS[0] with argv ARGS) or
"code" (exec ARGS[0]).
"""
import os, runpy, sys, tempfile, time

target, occurrence, phase, marker, mode, *args = sys.argv[1:]
occurrence, seen, stopped = int(occurrence), 0, {}
real_mkstemp, real_fdopen, real_replace = tempfile.mkstemp, os.fdopen, os.replace


def stop():
    with open(marker, "w") as handle:
        handle.write(phase)
    time.sleep(3600)


def mkstemp(*args, **kwargs):
    global seen
    fd, name = real_mkstemp(*args, **kwargs)
    if kwargs.get("prefix") == f".{target}.":
        seen += 1
        if seen == occurrence:
            stopped.update(fd=fd, name=name)
    return fd, name


class HalfWriter:
    def __init__(self, handle):
        self.handle = handle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def write(self, data):
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        os.fsync(self.handle.fileno())
        stop()


def fdopen(fd, *args, **kwargs):
    handle = real_fdopen(fd, *args, **kwargs)
    return HalfWriter(handle) if phase == "mid-write" and fd == stopped.get("fd") else handle


def replace(source, destination, *args, **kwargs):
    ours = os.fspath(source) == stopped.get("name")
    if ours and phase == "before-rename":
        stop()
    real_replace(source, destination, *args, **kwargs)
    if ours and phase == "after-rename":
        stop()


tempfile.mkstemp, os.fdopen, os.replace = mkstemp, fdopen, replace
# Guarded, as a main program must be: the benchmark's worker processes (spawned) import this
# file again under another name, and must not run the command a second time.
if __name__ == "__main__":
    if mode == "cli":
        from ensemblekit.cli import main
        sys.exit(main(args))
    if mode == "script":
        sys.argv = args
        runpy.run_path(args[0], run_name="__main__")
    else:
        exec(args[0])
'''


# -- helpers ---------------------------------------------------------------------------------

class Stopped:
    """A subprocess run through ``INJECTOR``, to be killed once it reached its stop."""

    def __init__(self, folder: Path, target: str, occurrence: int, phase: str, mode: str,
                 *args: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        script = folder / "inject.py"
        script.write_text(INJECTOR)
        self.marker = folder / "stopped"
        self.log = folder / "stderr.txt"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(script), target, str(occurrence), phase, str(self.marker),
                 mode, *args],
                stdout=subprocess.DEVNULL, stderr=log,
                env={**os.environ, "OMP_NUM_THREADS": "1"})

    def kill_at_stop(self) -> None:
        """Wait for the marker, then SIGKILL; fail if the process ends on its own first."""
        deadline = time.monotonic() + WAIT_SECONDS
        try:
            while not self.marker.exists():
                assert self.process.poll() is None, (
                    f"the process ended (status {self.process.returncode}) before its stop: "
                    f"{self.log.read_text()[-3000:]}")
                assert time.monotonic() < deadline, "the process never reached its stop"
                time.sleep(0.02)
            self.process.send_signal(signal.SIGKILL)
        finally:
            if self.process.poll() is None and not self.marker.exists():
                self.process.kill()
            self.process.wait(timeout=60)
        assert self.process.returncode == -signal.SIGKILL


def fork_and_kill(work, delay: float = 0.0, *, marker: Path | None = None) -> bool:
    """Run ``work()`` in a forked child and SIGKILL it ``delay`` seconds after it started
    (after ``marker`` appeared, if given).

    The child uses one torch thread (as DataLoader workers do after a fork). Returns True if
    the kill landed, False if the child had already finished.
    """
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            torch.set_num_threads(1)
            # tqdm's write lock is a multiprocessing semaphore that a fork shares with the
            # parent: a child killed while holding it (a progress bar opening or closing)
            # would leave it taken and hang the parent's next bar. The child takes its own.
            tqdm.set_lock(threading.RLock())
            work()
            status = 0
        finally:
            os._exit(status)
    deadline = time.monotonic() + WAIT_SECONDS
    while marker is not None and not marker.exists():
        assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the child ended before its marker"
        assert time.monotonic() < deadline, "the child never wrote its marker"
        time.sleep(0.01)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status):
        assert os.WEXITSTATUS(status) == 0, "the forked child failed before the kill"
        return False
    assert os.WTERMSIG(status) == signal.SIGKILL
    return True


def same_model(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    one, two = a.state_dict(), b.state_dict()
    return one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one) \
        and a.config == b.config


def masksembles_mlp(seed: int) -> torch.nn.Module:
    return build_model("mlp", "masksembles", 4, 16, hidden=(32,), n=4, scale=2.0, seed=seed)


def hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# -- checkpoint writes -----------------------------------------------------------------------

SAVE_TWO_MODELS = """
import sys
from ensemblekit.checkpoint import save
from ensemblekit.methods import build_model
for seed in (0, 1):
    save(build_model("mlp", "masksembles", 4, 16, hidden=(32,), n=4, scale=2.0, seed=seed),
         sys.argv[-1])
"""
#: phase -> which of the two models the file must hold after a kill there
PHASES = {"mid-write": 0, "before-rename": 0, "after-rename": 1}


def test_sigkill_at_each_step_of_a_checkpoint_write(tmp_path, reliability_log):
    runs = {}
    for phase in PHASES:  # all three processes at once: each start imports torch
        folder = tmp_path / phase
        runs[phase] = Stopped(folder, "model.pt", 2, phase, "code", SAVE_TWO_MODELS,
                              str(folder / "model.pt"))
    for phase, run in runs.items():
        run.kill_at_stop()
        path = run.marker.parent / "model.pt"
        model = load(path)  # a whole checkpoint, whatever the moment of the kill
        assert same_model(model, masksembles_mlp(PHASES[phase])), phase
        leftovers = hidden_leftovers(path.parent)
        assert len(leftovers) == (0 if phase == "after-rename" else 1), leftovers
        reliability_log("fault", f"checkpoint.save: SIGKILL {phase}",
                        "previous file intact" if PHASES[phase] == 0 else "new file complete")


def test_random_sigkills_while_a_checkpoint_is_rewritten(tmp_path, reliability_log):
    models = [masksembles_mlp(0), masksembles_mlp(1)]
    path = tmp_path / "model.pt"
    save(models[0], path)
    started = time.perf_counter()
    for _ in range(5):
        save(models[1], path)
    seconds_per_save = (time.perf_counter() - started) / 5
    rng = random.Random(1234)

    def rewrite_forever():
        for index in range(10**9):
            save(models[index % 2], path)

    for _ in range(20):
        # Between 1 and ~8 saves in: the kill lands at a random point of some write.
        assert fork_and_kill(rewrite_forever, seconds_per_save * rng.uniform(1.0, 8.0))
        reloaded = load(path)
        assert same_model(reloaded, models[0]) or same_model(reloaded, models[1])
        reliability_log("fault", "checkpoint.save in a loop: SIGKILL at a random moment",
                        "file loads, one whole version")


# -- training --------------------------------------------------------------------------------

def train_tiny_module():
    spec = importlib.util.spec_from_file_location("train_tiny", TRAIN_TINY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _argv(args: list[str]):
    saved_argv, saved_threads = sys.argv, torch.get_num_threads()
    sys.argv = [str(TRAIN_TINY), *args]
    try:
        yield
    finally:
        sys.argv = saved_argv
        torch.set_num_threads(saved_threads)  # train_tiny sets 1 thread for its process


def train_tiny(out: Path, *extra: str) -> None:
    """``train_tiny.py --out OUT --epochs EPOCHS ...`` in this process."""
    out.mkdir(parents=True, exist_ok=True)
    with _argv(["--out", str(out), "--epochs", str(EPOCHS), *extra]):
        train_tiny_module().main()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """An uninterrupted run: final weights, history, its duration, its last checkpoint, and
    the checkpoint of a run stopped at the start of epoch 4 (killed there, in a fork)."""
    out = tmp_path_factory.mktemp("uninterrupted")
    train_tiny(out, "--checkpoint-dir", str(out / "checkpoints"))  # also warms up
    started = time.perf_counter()
    train_tiny(out / "timed", "--checkpoint-dir", str(out / "timed"))
    seconds = time.perf_counter() - started
    stopped = out / "stopped"
    assert fork_and_kill(lambda: train_tiny(stopped, "--checkpoint-dir", str(stopped),
                                            "--stall-at-step", str(3 * STEPS + 1)),
                         marker=stopped / "stalled")
    assert read_checkpoint(stopped / CHECKPOINT_NAME, kind="training")["epoch"] == 3
    return {"weights": torch.load(out / "weights.pt"),
            "history": json.loads((out / "history.json").read_text()),
            "checkpoint": out / "checkpoints" / CHECKPOINT_NAME,
            "epoch3": stopped / CHECKPOINT_NAME, "seconds": seconds}


def assert_resumes_to_uninterrupted(out: Path, checkpoints: Path, uninterrupted: dict) -> None:
    train_tiny(out, "--checkpoint-dir", str(checkpoints), "--resume")
    weights = torch.load(out / "weights.pt")
    assert weights.keys() == uninterrupted["weights"].keys()
    for key, value in uninterrupted["weights"].items():
        assert torch.equal(weights[key], value), key
    assert json.loads((out / "history.json").read_text()) == uninterrupted["history"]


def test_sigkill_while_training_writes_its_checkpoint(tmp_path, uninterrupted, reliability_log):
    out, checkpoints = tmp_path / "run", tmp_path / "checkpoints"
    out.mkdir()
    run = Stopped(tmp_path / "inject", CHECKPOINT_NAME, 2, "mid-write", "script",
                  str(TRAIN_TINY), "--out", str(out), "--epochs", str(EPOCHS),
                  "--checkpoint-dir", str(checkpoints))
    run.kill_at_stop()
    # Killed half-way through writing epoch 2: last.pt is epoch 1's, whole and loadable.
    assert read_checkpoint(checkpoints / CHECKPOINT_NAME, kind="training")["epoch"] == 1
    assert len(hidden_leftovers(checkpoints)) == 1  # the half-written temporary file
    assert not (out / "weights.pt").exists()
    assert_resumes_to_uninterrupted(out, checkpoints, uninterrupted)
    reliability_log("fault", "train_model: SIGKILL mid-write of epoch 2's checkpoint",
                    "epoch 1 checkpoint intact; resume bit-identical")


def test_random_sigkills_during_training_resume_bit_identically(tmp_path, uninterrupted,
                                                              reliability_log):
    rng = random.Random(99)
    for trial in range(8):
        out, checkpoints = tmp_path / f"run{trial}", tmp_path / f"checkpoints{trial}"
        delay = uninterrupted["seconds"] * rng.uniform(0.0, 2.0)
        killed = fork_and_kill(
            lambda out=out, checkpoints=checkpoints: train_tiny(
                out, "--checkpoint-dir", str(checkpoints)), delay)
        path = checkpoints / CHECKPOINT_NAME
        epoch = read_checkpoint(path, kind="training")["epoch"] if path.exists() else 0
        assert 0 <= epoch <= EPOCHS
        assert_resumes_to_uninterrupted(out, checkpoints, uninterrupted)
        where = f"after epoch {epoch}" if killed else "after the run ended"
        reliability_log("fault", "train_model: SIGKILL at a random moment",
                        f"resumed {where}; bit-identical" if killed else
                        "kill came after the end; bit-identical")


def test_a_diverging_run_keeps_its_last_finite_checkpoint(tmp_path, reliability_log):
    """lr=1e4 drives the loss to NaN in epoch 2: training stops with a ValueError before that
    epoch's checkpoint is written, so last.pt still holds epoch 1's finite weights."""
    tiny = train_tiny_module()
    config = TrainConfig(epochs=EPOCHS, batch_size=32, lr=1e4, warmup_epochs=1,
                         progress=False, threads=1)
    with pytest.raises(ValueError, match=r"diverged in epoch (\d+).*lower the learning rate"
                       ) as error:
        train_model(tiny.tiny_model(), tiny.tiny_problem(), config, checkpoint_dir=tmp_path)
    epoch = int(re.search(r"epoch (\d+)", str(error.value)).group(1))
    assert epoch >= 2, "the test needs a run that diverges after its first checkpoint"
    payload = read_checkpoint(tmp_path / CHECKPOINT_NAME, kind="training")
    assert payload["epoch"] == epoch - 1
    assert all(torch.isfinite(value).all() for value in payload["state_dict"].values()
               if value.is_floating_point())
    reliability_log("fault", "train_model: loss diverges to NaN (lr=1e4)",
                    f"ValueError in epoch {epoch}; last.pt keeps epoch {epoch - 1}, finite")


# -- damaged checkpoint files ----------------------------------------------------------------

def damaged_copies(data: bytes, rng: random.Random):
    """(kind, bytes) pairs: truncations, single bit flips, zeroed 512-byte blocks."""
    lengths = {0, 1, 2, 4, 22, 100, len(data) - 1, len(data) - 22, len(data) // 2}
    lengths |= set(rng.sample(range(len(data)), 40))
    for length in sorted(lengths):
        yield "truncated", data[:length]
    for _ in range(150):
        flipped = bytearray(data)
        flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        yield "one bit flipped", bytes(flipped)
    for _ in range(20):
        start = rng.randrange(len(data))
        yield "512 bytes zeroed", data[:start] + bytes(min(512, len(data) - start)) + \
            data[start + 512:]


def test_damaged_checkpoint_files_never_load_as_a_different_model(tmp_path, uninterrupted,
                                                                  reliability_log):
    data = uninterrupted["checkpoint"].read_bytes()
    pristine = load(uninterrupted["checkpoint"])
    path = tmp_path / "damaged.pt"
    for kind, damaged in damaged_copies(data, random.Random(7)):
        path.write_bytes(damaged)
        try:
            model = load(path)
        except ValueError as error:
            assert str(path) in str(error)
            reliability_log("fault", f"checkpoint file {kind}", "ValueError naming the file")
            continue
        assert same_model(model, pristine), f"{kind}: loaded a different model"
        reliability_log("fault", f"checkpoint file {kind}", "loads identical (unread bytes)")


def test_resume_from_a_damaged_checkpoint_raises_and_keeps_it(tmp_path, uninterrupted,
                                                            reliability_log):
    """Damaged copies of the epoch-3 checkpoint: resuming raises (file kept as found) or, for
    bytes nothing reads, resumes to the uninterrupted result."""
    data = uninterrupted["epoch3"].read_bytes()
    out, path = tmp_path / "run", tmp_path / CHECKPOINT_NAME
    path.write_bytes(data)
    assert_resumes_to_uninterrupted(out, tmp_path, uninterrupted)  # the intact copy resumes
    samples = list(damaged_copies(data, random.Random(3)))
    for kind, damaged in samples[::8]:
        path.write_bytes(damaged)
        try:
            assert_resumes_to_uninterrupted(out, tmp_path, uninterrupted)
        except ValueError as error:
            assert str(path) in str(error)
            assert path.read_bytes() == damaged  # nothing overwrote it
            reliability_log("fault", f"resume from last.pt {kind}",
                            "ValueError naming it; file left as found")
            continue
        reliability_log("fault", f"resume from last.pt {kind}",
                        "resumed bit-identically (unread bytes)")


# -- the benchmark ---------------------------------------------------------------------------

def benchmark_argv(out: Path, seeds: int) -> list[str]:
    # --jobs 1: the seeds finish in order, so "seed 0 finished, seed 1 mid-write" is a state
    # the kill can aim at (side by side, either may finish first; the records are written by
    # this parent process either way: tests/test_workers.py covers the workers' end)
    return ["benchmark", "--methods", "single", "--seeds", str(seeds), "--epochs", "1",
            "--corruptions", "none", "--ood", "none", "--threads", "1", "--jobs", "1",
            "--out", str(out)]


def run_benchmark(out: Path, seeds: int) -> str:
    """``ensemblekit benchmark`` in this process; returns what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        assert cli_main(benchmark_argv(out, seeds)) == 0
    return printed.getvalue()


def record_path(out: Path, seed: int) -> Path:
    return out / "runs" / "single" / f"seed-{seed}.json"


def test_sigkill_during_benchmark_writes_keeps_finished_work(tmp_path, reliability_log):
    # (a) killed half-way through writing seed 1's record (seed 0's is finished)
    record_run = tmp_path / "record"
    killed_in_record = Stopped(tmp_path / "inject-record", "seed-1.json", 1, "mid-write", "cli",
                               *benchmark_argv(record_run, 2))
    # (b) killed half-way through rewriting results.json of a finished 1-seed benchmark
    report_run = tmp_path / "report"
    run_benchmark(report_run, 1)
    report_before = {name: (report_run / name).read_bytes()
                     for name in ("results.json", "results.csv", "report.md")}
    killed_in_report = Stopped(tmp_path / "inject-report", "results.json", 1, "mid-write",
                               "cli", *benchmark_argv(report_run, 2))

    killed_in_record.kill_at_stop()
    seed0 = record_path(record_run, 0).read_bytes()
    assert json.loads(seed0)["seed"] == 0
    assert not record_path(record_run, 1).exists()
    assert not (record_run / "results.json").exists()
    printed = run_benchmark(record_run, 2)
    assert "1 of 2 runs already finished" in printed
    assert record_path(record_run, 0).read_bytes() == seed0  # kept, not retrained
    assert json.loads((record_run / "results.json").read_text())["methods"]["single"]
    reliability_log("fault", "benchmark: SIGKILL mid-write of a seed's record",
                    "finished seed kept; rerun trained only the missing one")

    killed_in_report.kill_at_stop()
    for name, content in report_before.items():
        assert (report_run / name).read_bytes() == content, f"{name} changed"
    json.loads((report_run / "results.json").read_text())  # still a whole JSON document
    seed1 = record_path(report_run, 1).read_bytes()
    assert json.loads(seed1)["seed"] == 1  # finished before the report was written
    printed = run_benchmark(report_run, 2)
    assert "2 of 2 runs already finished" in printed
    assert record_path(report_run, 1).read_bytes() == seed1
    results = json.loads((report_run / "results.json").read_text())
    assert results != json.loads(report_before["results.json"])  # now over both seeds
    reliability_log("fault", "benchmark: SIGKILL mid-write of results.json",
                    "previous report intact; rerun only re-aggregated")
