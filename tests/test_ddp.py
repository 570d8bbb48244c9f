"""Two gloo processes under real ``torchrun`` train the same weights as one process.

``batch_size`` is the global batch: each of the two processes takes 16 rows of every 32-row
batch and DistributedDataParallel averages their gradients, which is the gradient of the mean
loss over all 32 rows. The model is a Masksembles MLP (4 masks) without BatchNorm or dropout:
each process takes its half of every member group, so every (row, mask) pair of the one-process
run is trained, and nothing but float summation order separates the runs: they must agree to
1e-5. The same run with batch 16 in one process ends far away, so the tolerance is a real check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ensemblekit.checkpoint import read_checkpoint
from ensemblekit.train import CHECKPOINT_NAME, TrainConfig, train_model

sys.path.insert(0, str(Path(__file__).parent / "_scripts"))
from train_tiny import tiny_model, tiny_problem  # noqa: E402

SCRIPT = Path(__file__).parent / "_scripts" / "train_tiny.py"


def run(command: list[str], out: Path, *extra: str) -> tuple[dict, list]:
    """Run the tiny training script under ``command``; return its weights and history."""
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [*command, str(SCRIPT), "--out", str(out), "--epochs", "3", "--batch-size", "32",
         *extra],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    return torch.load(out / "weights.pt"), history


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_two_gloo_processes_match_one_process(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2"]
    single, single_history = run([sys.executable], tmp_path / "single")
    double, double_history = run(torchrun, tmp_path / "ddp", "--checkpoint-dir",
                                 str(tmp_path / "checkpoints"))
    for key in single:
        torch.testing.assert_close(double[key], single[key], rtol=0, atol=1e-5)
    # Losses and accuracies are reduced over both processes: the same numbers.
    for one, two in zip(single_history, double_history, strict=True):
        assert one["accuracy"] == two["accuracy"]
        assert one["loss"] == pytest.approx(two["loss"], abs=1e-6)

    # The main process wrote the checkpoint, with both processes' RNG states.
    payload = read_checkpoint(tmp_path / "checkpoints" / CHECKPOINT_NAME, kind="training")
    assert payload["epoch"] == 3 and len(payload["rng"]) == 2
    assert not torch.equal(payload["rng"][0]["torch"], payload["rng"][1]["torch"])

    # A 16-row batch in one process (what each rank sees) is a different optimisation and
    # ends far outside the tolerance: the check above could fail.
    halved = tiny_model()
    config = TrainConfig(epochs=3, batch_size=16, lr=0.1, schedule="cosine", warmup_epochs=1,
                         progress=False)
    train_model(halved, tiny_problem(), config)
    gap = max((halved.state_dict()[k] - single[k]).abs().max().item()
              for k in single if single[k].is_floating_point())
    assert gap > 1e-3


@pytest.mark.slow  # a second torchrun pair (~20 s on 2 cores) for the same sharding function
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_independent_member_batches_shard_per_member(tmp_path):
    """Deep ensemble members with their own data order: each process takes half of every
    member's block, so the two runs again train the same weights."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2"]
    single, _ = run([sys.executable], tmp_path / "single", "--method", "deep_ensemble")
    double, _ = run(torchrun, tmp_path / "ddp", "--method", "deep_ensemble")
    for key in single:
        torch.testing.assert_close(double[key], single[key], rtol=0, atol=1e-5)
