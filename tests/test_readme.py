"""The README's Python examples run, in order, as one script: a user who copies them gets what
the README says. Run in a temporary folder so the checkpoints they write land there."""

from __future__ import annotations

import re
from pathlib import Path

import torch

import ensemblekit as ek

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_has_python_examples():
    assert len(python_blocks(README.read_text())) >= 6


def test_readme_examples_run_in_order(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for number, block in enumerate(python_blocks(README.read_text()), start=1):
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)
    printed = capsys.readouterr().out
    # The claims the comments make, checked on what the examples computed.
    assert tuple(namespace["masks"].shape) == (4, 64)
    assert tuple(namespace["out"].shape) == (8, 64, 16, 16)
    for name, members in [
        ("single", 1),
        ("mc_dropout", 8),
        ("masksembles", 4),
        ("batchensemble", 4),
        ("deep_ensemble", 4),
    ]:
        assert f"{name:14} M={members}  ({members}, 64, 10)" in printed
    assert tuple(namespace["member_logits"].shape) == (4, 1000, 10)
    again, model, images = namespace["again"], namespace["model"], namespace["images"]
    with torch.no_grad():
        assert torch.equal(ek.predict_members(again, images), ek.predict_members(model, images))
    assert (tmp_path / "runs" / "readme" / "model.pt").is_file()
