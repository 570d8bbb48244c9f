"""The command line under bad arguments, fuzzed with hypothesis.

The contract: a user error exits with status 2 and says on stderr, in one line naming the flag
or setting and the fix, what was wrong -- no traceback, and nothing trained or written. Errors
that argparse finds itself (a non-number for a number flag) follow argparse's convention: a
usage line, then that one error line. The one deliberate exception is a missing dataset, whose
message goes on to show the expected folder layout.

Most calls run in-process through ``ensemblekit.cli.main(argv)``; two run the installed
console script in a real subprocess.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ensemblekit.checkpoint import save
from ensemblekit.cli import main
from ensemblekit.data import CORRUPTIONS, available_datasets
from ensemblekit.methods import available_methods, build_model
from ensemblekit.models import available_backbones

FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TRAINING = ("benchmark", "toy", "diversity", "sweep", "train", "tune")
NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=10)


def run(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` in this process -> (exit status, stdout, stderr). Any exception other
    than argparse's ``SystemExit`` propagates: the test then fails with its traceback."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exit_:
            status = exit_.code
    return status, out.getvalue(), err.getvalue()


def assert_user_error(status: int, err: str, needle: str, *, one_line: bool = True) -> str:
    """Status 2, no traceback, and an error line matching ``needle``; returns that line."""
    assert status == 2, f"exit status {status}, stderr: {err!r}"
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines, "nothing on stderr"
    if lines[0].startswith("usage:"):  # argparse: usage (possibly wrapped), then the error
        message = lines[-1]
        assert message.startswith("ensemblekit") and ": error: " in message, err
    else:
        message = lines[0]
        assert message.startswith("ensemblekit") and ": error: " in message, err
        if one_line:
            assert len(lines) == 1, f"more than one line on stderr: {err!r}"
    assert re.search(needle, message, flags=re.IGNORECASE), (
        f"the error line names none of {needle!r}: {message!r}")
    return message


def below(minimum: int):
    """Integer flag values below ``minimum``, and things that are not integers at all."""
    return st.integers(max_value=minimum - 1).map(str) | st.sampled_from(
        ["abc", "1.5", "", "nan", "1e3", "0x10"])


def bad_real(minimum: float, *, inclusive: bool = True, maximum: float | None = None):
    """Float flag values out of range, not finite, or not numbers. ``inclusive``: whether
    ``minimum`` itself is valid; ``maximum`` (if given) is never valid."""
    parts = [st.floats(max_value=minimum, exclude_max=inclusive, allow_nan=False,
                       allow_infinity=False).map(repr),
             st.sampled_from(["nan", "inf", "-inf", "abc", ""])]
    if maximum is not None:
        parts.append(st.floats(min_value=maximum, allow_nan=False, allow_infinity=False)
                     .map(repr))
    return st.one_of(parts)


def unknown(valid) -> st.SearchStrategy:
    valid = set(valid)
    return NAME.filter(lambda name: name not in valid and name not in ("all", "none", "auto"))


BAD_DEVICES = ["tpu", "gpu", "cuda:99", "cpu:x", "3"] + (
    [] if torch.cuda.is_available() else ["cuda"])

#: flag -> (subcommands, bad values, what the error line must name)
FLAGS = {
    "--dataset": (TRAINING + ("corrupt",), unknown(available_datasets()), "dataset"),
    "--backbone": (TRAINING, unknown(available_backbones()), "backbone"),
    "--width": (TRAINING, bad_real(0.0, inclusive=False), "width"),
    "--epochs": (TRAINING, below(1), "epochs"),
    "--members": (TRAINING, below(1), "members"),
    "--scale": (TRAINING, bad_real(1.0), "scale"),
    "--dropout": (TRAINING, bad_real(0.0, maximum=1.0), "dropout"),
    "--batch-size": (TRAINING + ("evaluate",), below(1), "batch.size"),
    "--lr": (TRAINING, bad_real(0.0, inclusive=False) | st.sampled_from(["1e39", "1e300"]),
             r"\blr\b"),
    "--device": (TRAINING, st.sampled_from(BAD_DEVICES), "device"),
    "--threads": (TRAINING, below(1) | st.sampled_from(["100000", str(2**40)]), "threads"),
    "--methods": (("benchmark", "diversity", "tune"), unknown(available_methods()), "method"),
    "--method": (("train",), unknown(available_methods()), "method"),
    "--references": (("sweep",), unknown(available_methods()), "method"),
    "--seeds": (("benchmark", "diversity", "sweep", "tune"), below(1), "seeds"),
    "--seed": (("toy", "train", "corrupt"), below(0), "seed"),
    "--corruptions": (("benchmark", "sweep", "evaluate", "corrupt"), unknown(CORRUPTIONS),
                      "corruption"),
    "--severities": (("benchmark", "sweep", "evaluate", "corrupt"),
                     below(1) | st.integers(min_value=6).map(str), "severit"),
    "--ood": (("benchmark", "sweep", "evaluate", "tune"), unknown(available_datasets()), "ood"),
    "--budget": (("tune",), NAME | st.sampled_from(["latency<1.3x", "latency<=0", "params<=-1x",
                                                    "flops<=inf", "latency<=1,latency<=2",
                                                    "speed<=2x", "latency<=1.3x,"]), "budget"),
    "--grid": (("tune",), st.sampled_from(["masksembles.scale=0.5", "mc_dropout.p=1.5",
                                           "masksembles.sacle=2", "bogus.n=2",
                                           "masksembles=2", "masksembles.scale=",
                                           "batchensemble.init=3", "masksembles.n=0"]),
               "grid|scale|sacle|bogus|init|METHOD.KEY"),
    "--mc-samples": (("benchmark", "evaluate"), below(1), "mc.samples"),
    "--scales": (("sweep", "toy"), bad_real(1.0), "scale"),
    "--ns": (("sweep",), below(1), r"\bn\b|--ns"),
    "--resolution": (("toy",), below(10), "resolution"),
    "--index": (("corrupt",), below(0) | st.integers(min_value=539).map(str), "index"),
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained digits model: evaluate's other arguments are checked against it."""
    model = build_model("lenet", "masksembles", 10, 1, input_size=8, width=2.0, n=2, seed=0)
    return save(model, tmp_path_factory.mktemp("checkpoint") / "model.pt",
                metadata={"dataset": "digits"})


def command_line(command: str, flag: str, value: str, out: Path, checkpoint: Path) -> list[str]:
    argv = [command] + ([str(checkpoint)] if command == "evaluate" else [])
    out_flag = ["--out", str(out / ("evaluation.json" if command == "evaluate" else "run"))]
    # A value starting with "-" must be attached, or argparse reads it as the next flag.
    return [*argv, *out_flag, f"{flag}={value}"]


@st.composite
def bad_flag(draw):
    flag = draw(st.sampled_from(sorted(FLAGS)), label="flag")
    commands, values, needle = FLAGS[flag]
    command = draw(st.sampled_from(commands), label="command")
    if flag == "--members" and command == "diversity":
        values = below(2)
    return command, flag, draw(values, label="value"), needle


@FUZZ
@given(case=bad_flag())
def test_bad_flag_values_exit_2_with_one_line_naming_the_flag(case, checkpoint,
                                                              reliability_log):
    command, flag, value, needle = case
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        status, _, err = run(command_line(command, flag, value, out, checkpoint))
        message = assert_user_error(status, err, rf"{needle}|{re.escape(flag)}")
        assert not (out / "run").exists() and not (out / "evaluation.json").exists(), \
            "the command started work before refusing its arguments"
    kind = "argparse" if "argument " in message else "ensemblekit"
    reliability_log("input", f"ensemblekit {command} {flag}", f"exit 2 ({kind})")


@settings(FUZZ, max_examples=40)
@given(cases=st.lists(bad_flag(), min_size=2, max_size=4, unique_by=lambda case: case[1]),
       command=st.sampled_from(["benchmark", "sweep", "train"]))
def test_several_bad_flags_name_one_of_them(cases, command, checkpoint, reliability_log):
    cases = [case for case in cases if command in FLAGS[case[1]][0]]
    if not cases:
        return
    with tempfile.TemporaryDirectory() as folder:
        argv = [command, "--out", str(Path(folder) / "run")]
        argv += [f"{flag}={value}" for _, flag, value, _ in cases]
        status, _, err = run(argv)
        needles = "|".join(rf"{needle}|{re.escape(flag)}" for _, flag, _, needle in cases)
        assert_user_error(status, err, needles)
        assert not (Path(folder) / "run").exists()
    reliability_log("input", f"ensemblekit {command} (several bad flags)", "exit 2")


CONFIGS = {  # a --config file's text -> what the error line must name
    "epochs = [": "not valid TOML",
    "bogus = 1": "bogus",
    'command = "evaluate"': "evaluate",
    'epochs = "ten"': "epochs",
    "train = 3": "train",
    "[train]\nfoo = 1": "foo",
    '[train]\nlr = "fast"': r"\blr\b",
    "[train]\nepochs = 3": "epochs",
    "[train]\nmomentum = 1.5": "momentum",
    "members = 0": "members",
    'dataset = "letters"': "letters",
}


@pytest.mark.parametrize("text", sorted(CONFIGS))
@pytest.mark.parametrize("command", ["benchmark", "train"])
def test_bad_config_files(text, command, tmp_path, reliability_log):
    config = tmp_path / "config.toml"
    config.write_text(text)
    status, _, err = run([command, "--config", str(config), "--out", str(tmp_path / "run")])
    assert_user_error(status, err, CONFIGS[text])
    assert not (tmp_path / "run").exists()
    reliability_log("input", f"ensemblekit {command} --config", "exit 2")


def test_missing_config_file(tmp_path, reliability_log):
    status, _, err = run(["train", "--config", str(tmp_path / "nope.toml")])
    assert_user_error(status, err, "config file")
    reliability_log("input", "ensemblekit train --config", "exit 2")


def damaged_checkpoints(folder: Path, good: Path) -> dict[str, Path]:
    data = good.read_bytes()
    files = {"missing": folder / "missing.pt", "a folder": folder,
             "empty": folder / "empty.pt", "text": folder / "notes.txt",
             "truncated": folder / "truncated.pt", "bare state_dict": folder / "weights.pt"}
    files["empty"].write_bytes(b"")
    files["text"].write_text("not a checkpoint")
    files["truncated"].write_bytes(data[: len(data) // 2])
    torch.save(torch.load(good, weights_only=True)["state_dict"], files["bare state_dict"])
    return files


def test_evaluate_refuses_what_is_not_a_checkpoint(checkpoint, tmp_path, reliability_log):
    for kind, path in damaged_checkpoints(tmp_path, checkpoint).items():
        status, _, err = run(["evaluate", str(path), "--out", str(tmp_path / "e.json")])
        assert_user_error(status, err, re.escape(str(path)))
        assert not (tmp_path / "e.json").exists()
        reliability_log("input", "ensemblekit evaluate CHECKPOINT", f"exit 2 ({kind})")


def test_evaluate_needs_to_know_the_dataset(tmp_path, reliability_log):
    path = save(build_model("lenet", "single", 10, 1, input_size=8, seed=0), tmp_path / "m.pt")
    status, _, err = run(["evaluate", str(path)])
    assert_user_error(status, err, "--dataset")
    reliability_log("input", "ensemblekit evaluate CHECKPOINT", "exit 2 (no dataset)")


@pytest.mark.parametrize("argv", [
    ["train", "--dataset", "cifar10"],
    ["benchmark", "--dataset", "mnist"],
    ["corrupt", "--dataset", "svhn"],
])
def test_missing_dataset_says_where_and_how(argv, tmp_path, reliability_log):
    status, _, err = run([*argv, "--data-dir", str(tmp_path), "--out", str(tmp_path / "run")])
    assert_user_error(status, err, "not found", one_line=False)
    assert str(tmp_path) in err and "--download" in err and "--data-dir" in err
    assert not (tmp_path / "run").exists()
    reliability_log("input", f"ensemblekit {argv[0]} (dataset missing)", "exit 2")


def test_no_command_and_unknown_command(reliability_log):
    for argv, needle in (([], "COMMAND"), (["bench"], "invalid choice"), (["--nope"], "nope")):
        status, out, err = run(argv)
        assert_user_error(status, err, needle)
        reliability_log("input", "ensemblekit (no or unknown command)", "exit 2")


def test_real_processes_exit_2_with_one_line_and_no_traceback(tmp_path, reliability_log,
                                                              ensemblekit_command):
    """The installed console script, as a user runs it (both processes at once: each start
    imports torch)."""
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 100)
    cases = {
        "train --epochs 0": (["train", "--epochs", "0", "--out", str(tmp_path / "run")],
                             "epochs must be an integer >= 1"),
        "evaluate GARBAGE": (["evaluate", str(garbage)], "not a torch checkpoint"),
    }
    processes = {name: subprocess.Popen([*ensemblekit_command, *argv], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                 for name, (argv, _) in cases.items()}
    for name, process in processes.items():
        out, err = process.communicate(timeout=300)
        assert_user_error(process.returncode, err, cases[name][1])
        reliability_log("input", "ensemblekit (real process)", f"exit 2 ({name})")
    assert not (tmp_path / "run").exists()
