"""The ``ensemblekit`` command line: user errors, a tiny benchmark end to end, resumption."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ensemblekit
from ensemblekit import cli
from ensemblekit.experiments import benchmark
from ensemblekit.metrics import DISAGREEMENT_OOD_SCORES, OOD_SCORES

# The smallest benchmark that still exercises every part: 2 methods, 1 seed, 1 epoch,
# 2 corruption kinds at 2 severities, and the digits' OOD set.
TINY = ["benchmark", "--methods", "single", "masksembles", "--seeds", "1", "--epochs", "1",
        "--corruptions", "gaussian_noise", "contrast", "--severities", "1", "3",
        "--threads", "1"]


def run(argv, capsys):
    """``main(argv)`` -> (exit status, stdout, stderr)."""
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "run"
    status = cli.main([*TINY, "--out", str(out)])
    assert status == 0
    return out


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--methods", "single", "bogus"], "valid choices are: single, mc_dropout"),
        (["--dataset", "nope"], "valid choices are: cifar10, cifar100, mnist"),
        (["--dataset", "letters"], "unknown dataset 'letters'"),
        (["--scale", "0.5"], "scale must satisfy 1.0 <= scale"),
        (["--epochs", "0"], "epochs must be an integer >= 1"),
        (["--seeds", "0"], "seeds must be an integer >= 1"),
        (["--members", "0"], "members must be an integer >= 1"),
        (["--methods", "masksembles", "--batch-size", "30"], "use --batch-size 32"),
        (["--corruptions", "rain"], "valid choices are: gaussian_noise"),
        (["--severities", "6"], "severity must be an integer in [1, 5]"),
        (["--ood", "nowhere"], "valid choices are"),
        (["--backbone", "vgg"], "unknown backbone 'vgg'; valid choices are: resnet20"),
    ],
)
def test_bad_arguments_exit_2_with_the_fix_and_no_traceback(flags, needle, tmp_path, capsys):
    out = tmp_path / "out"
    status, _, err = run(["benchmark", *flags, "--out", str(out)], capsys)
    assert status == 2
    assert needle in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (out / "runs").exists()  # refused before any training


def test_a_malformed_flag_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["benchmark", "--members", "four"])
    assert exit_info.value.code == 2
    assert "invalid int value: 'four'" in capsys.readouterr().err


def test_unknown_config_key_names_it_and_the_valid_ones(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text('dataset = "digits"\nepoch = 3\n')
    status, _, err = run(["benchmark", "--config", str(config)], capsys)
    assert status == 2
    assert "unknown key 'epoch'" in err and "valid keys are: dataset, data_dir" in err


def test_unknown_train_key_in_config(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text('[train]\nlearning_rate = 0.1\n')
    status, _, err = run(["benchmark", "--config", str(config)], capsys)
    assert status == 2
    assert "unknown key 'learning_rate'" in err and "lr" in err


def test_config_for_another_command_is_refused(tmp_path, capsys):
    config = tmp_path / "toy.toml"
    config.write_text('command = "toy"\n')
    status, _, err = run(["benchmark", "--config", str(config)], capsys)
    assert status == 2
    assert "is for the 'toy' command" in err


def test_flags_override_the_config(tmp_path):
    from ensemblekit.experiments import BenchmarkSettings

    config = tmp_path / "c.toml"
    config.write_text('command = "benchmark"\nepochs = 7\nseeds = 2\n[train]\nlr = 0.2\n')
    settings = BenchmarkSettings.from_sources(config, {"epochs": 3, "train": {"batch_size": 32}})
    assert (settings.epochs, settings.seeds) == (3, 2)
    assert settings.train["lr"] == 0.2 and settings.train["batch_size"] == 32
    assert settings.train["optimizer"] == "adamw"  # the digits recipe fills the rest


def test_tiny_benchmark_writes_results_report_and_figures(tiny_run):
    results = json.loads((tiny_run / "results.json").read_text())
    assert results["dataset"] == "digits" and results["seeds"] == [0]
    assert list(results["methods"]) == ["single", "masksembles"]
    for entry in results["methods"].values():
        assert entry["params"] > 0
        for metric in ("accuracy", "nll", "brier", "ece"):
            assert set(entry["test"][metric]) == {"mean", "std"}
        assert list(entry["shift"]) == ["1", "3"]
        for severity in entry["shift"].values():
            for metric in ("accuracy", "nll", "ece"):
                assert 0 <= severity[metric]["mean"] and severity[metric]["std"] == 0.0
        assert set(entry["ood"]) == set(OOD_SCORES)
        for name, score in entry["ood"].items():
            if entry["num_members"] == 1 and name in DISAGREEMENT_OOD_SCORES:
                assert score["auroc"] == {"mean": None, "std": None}  # constant: undefined
                continue
            assert 0 <= score["auroc"]["mean"] <= 1 and {"aupr", "fpr95"} <= set(score)
        assert "inference_ms_per_sample" not in entry  # one timed batch: noise, not a cost
        assert entry["cost"]["latency_ratio"] > 0 and entry["calibrated"]["temperature"]
    report = (tiny_run / "report.md").read_text()
    for fact in ("gaussian_noise, contrast", "severities 1, 3", "letters", "1 epoch",
                 "Seeds: 0"):
        assert fact in report
    csv_lines = (tiny_run / "results.csv").read_text().splitlines()
    assert csv_lines[0] == "method,section,group,metric,mean,std"
    assert any(line.startswith("masksembles,shift,3,ece,") for line in csv_lines)
    for name in ("shift_vs_severity.png", "risk_coverage.png", "reliability.png",
                 "ood_histograms.png"):
        assert (tiny_run / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"figures/{name}" in report


def test_rerun_skips_finished_runs(tiny_run, capsys, monkeypatch):
    trained = []
    monkeypatch.setattr(benchmark, "run_one", lambda *a, **k: trained.append(a) or {})
    status, out, _ = run([*TINY, "--out", str(tiny_run)], capsys)
    assert status == 0
    assert trained == []
    assert "2 of 2 runs already finished" in out
    assert "single" in out and "masksembles" in out  # the table is printed again


def test_interrupted_benchmark_keeps_finished_runs_and_resumes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    # --jobs 1: the runs in this process, where the patched run_one below is the one called
    # (a worker process imports the real one); the store and resume are the same either way
    argv = ["benchmark", "--methods", "single", "--seeds", "2", "--epochs", "1",
            "--corruptions", "none", "--ood", "none", "--threads", "1", "--jobs", "1",
            "--out", str(out)]
    real_run_one = benchmark.run_one
    calls = []

    def interrupted_second_run(settings, method, seed, data):
        calls.append((method, seed))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run_one(settings, method, seed, data)

    monkeypatch.setattr(benchmark, "run_one", interrupted_second_run)
    status, _, err = run(argv, capsys)
    assert status == 130 and "rerun the same command to resume" in err
    assert benchmark.run_path(out, "single", 0).is_file()
    assert not benchmark.run_path(out, "single", 1).exists()

    calls.clear()
    monkeypatch.setattr(benchmark, "run_one", lambda *a, **k: calls.append(a[1:3]) or
                        real_run_one(*a, **k))
    status, printed, _ = run(argv, capsys)
    assert status == 0
    assert calls == [("single", 1)]  # seed 0 was not trained again
    assert "1 of 2 runs already finished (single/seed-0)" in printed
    assert json.loads((out / "results.json").read_text())["seeds"] == [0, 1]


def test_rerun_with_other_settings_is_refused(tiny_run, capsys):
    argv = [*TINY, "--out", str(tiny_run)]
    argv[argv.index("--epochs") + 1] = "2"
    status, _, err = run(argv, capsys)
    assert status == 2
    assert "epochs: 1 there, 2 now" in err


def test_missing_ood_set_is_reported_and_skipped(tmp_path, capsys):
    out = tmp_path / "run"
    status, printed, _ = run(["benchmark", "--methods", "single", "--seeds", "1", "--epochs",
                              "1", "--corruptions", "none", "--ood", "svhn", "--data-dir",
                              str(tmp_path / "empty"), "--threads", "1", "--out", str(out)],
                             capsys)
    assert status == 0
    assert "OOD set 'svhn' is not available" in printed
    results = json.loads((out / "results.json").read_text())
    assert "ood" not in results["methods"]["single"]
    assert results["protocol"]["ood_status"].startswith("missing")
    assert "OOD: not evaluated" in (out / "report.md").read_text()


def test_train_evaluate_and_corrupt_commands(tmp_path, capsys):
    status, printed, _ = run(["train", "--method", "batchensemble", "--epochs", "1",
                              "--threads", "1", "--out", str(tmp_path / "t")], capsys)
    assert status == 0 and (tmp_path / "t" / "model.pt").is_file()
    history = json.loads((tmp_path / "t" / "train.json").read_text())["history"]
    assert len(history) == 1

    status, printed, _ = run(["evaluate", str(tmp_path / "t" / "model.pt"), "--corruptions",
                              "fog", "--severities", "2"], capsys)
    assert status == 0
    record = json.loads((tmp_path / "t" / "evaluation.json").read_text())
    assert record["dataset"] == "digits" and list(record["shift"]) == ["2"]
    assert "OOD vs letters" in printed

    status, _, _ = run(["corrupt", "--corruptions", "fog", "pixelate", "--severities", "1",
                        "5", "--out", str(tmp_path / "c")], capsys)
    assert status == 0
    for name in ("fog.npy", "pixelate.npy", "labels.npy", "preview.png"):
        assert (tmp_path / "c" / name).is_file()


def test_evaluate_a_missing_checkpoint(tmp_path, capsys):
    status, _, err = run(["evaluate", str(tmp_path / "none.pt")], capsys)
    assert status == 2 and "no checkpoint at" in err


def test_python_dash_m_runs_the_same_command_line(capsys):
    # `python -m ensemblekit.cli` (the fallback where the script is not installed) must reach
    # the same main: no COMMAND is the same one-line usage error with status 2.
    status, _, expected = run([], capsys)
    source = str(Path(ensemblekit.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [source, *filter(None, [os.environ.get("PYTHONPATH")])])}
    finished = subprocess.run([sys.executable, "-m", "ensemblekit.cli"], capture_output=True,
                              text=True, env=env, timeout=120)
    assert status == 2 and "a COMMAND is required" in expected
    assert (finished.returncode, finished.stderr) == (status, expected)
