"""A training process SIGKILLed mid-epoch resumes to exactly the uninterrupted result.

The script (``_scripts/train_tiny.py``) trains a Masksembles MLP for 3 epochs of 8 steps and
checkpoints after each epoch. With ``--stall-at-step 12`` it writes a marker file and sleeps in
the middle of epoch 2, after the first checkpoint; the test then kills it with SIGKILL (no
clean-up code runs). A second process resumes from the checkpoint and must end with weights
bit-identical (``torch.equal``) to an uninterrupted run with the same seed, on CPU: the
checkpoint restores the weights, optimizer, schedule, data order and every RNG, and the resumed
process redoes epoch 2 from its start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ensemblekit.checkpoint import load, read_checkpoint
from ensemblekit.train import CHECKPOINT_NAME

SCRIPT = Path(__file__).parent / "_scripts" / "train_tiny.py"


def command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(SCRIPT), "--out", str(out), "--epochs", "3", *extra]


def finish(args: list[str]) -> None:
    completed = subprocess.run(args, capture_output=True, text=True, timeout=300,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert completed.returncode == 0, completed.stderr[-3000:]


def sigkill_once_written(args: list[str], marker: Path, *, poll: float) -> None:
    """Start ``args``, wait until ``marker`` exists, SIGKILL the process (no clean-up runs)."""
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, f"{marker} was never written"
            time.sleep(poll)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_sigkilled_run_resumes_to_bit_identical_weights(tmp_path):
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    reference.mkdir()
    interrupted.mkdir()
    checkpoints = tmp_path / "checkpoints"
    finish(command(reference))

    sigkill_once_written(
        command(interrupted, "--checkpoint-dir", str(checkpoints), "--stall-at-step", "12"),
        interrupted / "stalled", poll=0.05)  # the script writes it at step 12 and sleeps
    assert not (interrupted / "weights.pt").exists()

    # What the killed process left on disk is a complete checkpoint of epoch 1.
    payload = read_checkpoint(checkpoints / CHECKPOINT_NAME, kind="training")
    assert payload["epoch"] == 1
    assert load(checkpoints / CHECKPOINT_NAME).method == "masksembles"

    finish(command(interrupted, "--checkpoint-dir", str(checkpoints), "--resume"))
    expected = torch.load(reference / "weights.pt")
    resumed = torch.load(interrupted / "weights.pt")
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert torch.equal(expected[key], resumed[key]), key
    assert json.loads((interrupted / "history.json").read_text()) == json.loads(
        (reference / "history.json").read_text()
    )
    assert read_checkpoint(checkpoints / CHECKPOINT_NAME)["epoch"] == 3


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_sigkilled_train_command_resumes_with_the_resume_flag(tmp_path, ensemblekit_command):
    """`ensemblekit train`, SIGKILLed once its first per-epoch checkpoint is on disk, refuses
    to start over it without --resume, and with --resume ends where an uninterrupted run ends."""
    train = [*ensemblekit_command, "train", "--method", "masksembles", "--epochs", "12",
             "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    finish([*train, "--out", str(reference)])

    checkpoint = interrupted / "checkpoints" / CHECKPOINT_NAME
    sigkill_once_written([*train, "--out", str(interrupted)], checkpoint, poll=0.01)
    assert not (interrupted / "model.pt").exists(), "the run finished before it was killed"
    epoch = read_checkpoint(checkpoint, kind="training")["epoch"]
    assert 1 <= epoch < 12
    before = checkpoint.read_bytes()

    again = subprocess.run([*train, "--out", str(interrupted)], capture_output=True, text=True,
                           timeout=300, env=env)
    assert again.returncode == 2 and "pass --resume to continue it" in again.stderr
    assert checkpoint.read_bytes() == before  # the refused run wrote nothing over it

    finish([*train, "--out", str(interrupted), "--resume"])
    expected, resumed = load(reference / "model.pt"), load(interrupted / "model.pt")
    for (key, value), (_, other) in zip(expected.state_dict().items(),
                                        resumed.state_dict().items(), strict=True):
        assert torch.equal(value, other), key
    history = json.loads((interrupted / "train.json").read_text())["history"]
    assert [row["loss"] for row in history] == [
        row["loss"] for row in json.loads((reference / "train.json").read_text())["history"]]
