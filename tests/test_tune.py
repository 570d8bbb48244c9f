"""ensemblekit tune: grid, Pareto fronts, budget picks, resume, and the config it writes."""

from __future__ import annotations

import itertools
import json
import random
import shutil

import pytest
import tomllib

from ensemblekit.cli import main
from ensemblekit.experiments import BenchmarkSettings, TuneSettings
from ensemblekit.experiments.tune import (
    expand_grid,
    pareto_front,
    pick_best,
    point_path,
    run_tune,
)

#: A tiny grid on digits: five points, one epoch each, cost timed briefly.
TINY = {
    "epochs": 1,
    "methods": ["single", "masksembles", "mc_dropout"],
    "grid": {"single": {"epochs_factor": [1.0]},
             "masksembles": {"scale": [2.0, 3.0], "placement": ["all"], "widen": [False],
                             "epochs_factor": [1.0]},
             "mc_dropout": {"p": [0.1, 0.3], "placement": ["all"], "epochs_factor": [1.0]}},
    "cost_seconds": 0.01,
    "cost_rounds": 2,
    "cost_batch": 16,
    "seeds": 1,
}


def tiny_settings(out, **changes) -> TuneSettings:
    return TuneSettings.from_sources(overrides={**TINY, "out": str(out), **changes})


class Log(list):
    def __call__(self, message: str) -> None:
        self.append(message)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tune")
    log = Log()
    result = run_tune(tiny_settings(out), log=log, command="ensemblekit tune (test)")
    return out, result, log


# -- the grid -----------------------------------------------------------------------------------

def test_the_grid_is_the_product_of_each_methods_lists():
    settings = TuneSettings.from_sources(overrides={"methods": ["masksembles", "mc_dropout",
                                                                "batchensemble", "single"]})
    points = expand_grid(settings)
    grid = settings.grid
    expected = [(method, dict(zip(grid[method], values, strict=True)))
                for method in ("masksembles", "mc_dropout", "batchensemble", "single")
                for values in itertools.product(*grid[method].values())]
    found = [(point["method"], {**point["options"], "epochs_factor": point["epochs_factor"]})
             for point in points]
    assert found == expected
    # The default grid: every method over 1x and 2x the recipe's epochs (the same procedure
    # for each), times its own knobs.
    assert {tuple(grid[method]["epochs_factor"]) for method in grid} == {(1.0, 2.0)}
    assert len(points) == 4 * 2 * 2 * 2 + 4 * 2 * 2 + 2 * 2 + 2
    assert all(point["epochs"] == round(point["epochs_factor"] * settings.epochs)
               for point in points)
    assert {point["epochs"] for point in points} == {settings.epochs, 2 * settings.epochs}


def test_epochs_factors_scale_the_methods_epochs_and_coinciding_points_are_kept_once():
    settings = TuneSettings.from_sources(overrides={
        "epochs": 10, "methods": ["masksembles"],
        "grid": {"masksembles": {"scale": [2.0], "placement": ["all"], "widen": [False],
                                 "epochs_factor": [1, 1.04, 2.5]}}})
    assert [point["epochs"] for point in expand_grid(settings)] == [10, 25]
    settings = TuneSettings.from_sources(overrides={
        "epochs": 10, "methods": ["masksembles"], "method_options": {"masksembles": {
            "epochs": 4}}, "grid": {"masksembles": {"epochs_factor": [1, 2]}}})
    assert sorted({point["epochs"] for point in expand_grid(settings)}) == [4, 8]


@pytest.mark.parametrize(("grid", "message"), [
    ({"masksemble": {"scale": [2]}}, "unknown key 'masksemble' in grid"),
    ({"masksembles": {"p": [0.1]}}, "unknown key 'p' in \\[grid.masksembles\\]"),
    ({"masksembles": {"epochs": [10]}}, "valid keys are: n, scale, placement, widen, "
                                        "epochs_factor"),
    ({"masksembles": {"scale": []}}, "grid.masksembles.scale is empty"),
    ({"masksembles": {"scale": [2, 2.0]}}, "lists a value twice"),
    ({"masksembles": {"scale": [0.5]}}, "grid.masksembles.scale must"),
    ({"mc_dropout": {"p": [1.5]}}, "grid.mc_dropout.p must"),
    ({"masksembles": {"widen": ["yes"]}}, "grid.masksembles.widen must be true or false"),
    ({"masksembles": {"epochs_factor": [0]}}, "grid.masksembles.epochs_factor"),
    ({"masksembles": 3}, "grid.masksembles must be a table"),
])
def test_bad_grids_are_refused_before_any_work(grid, message):
    with pytest.raises(ValueError, match=message):
        TuneSettings.from_sources(overrides={"grid": grid})


def test_a_bad_option_value_is_refused_before_any_data_is_read(tmp_path):
    settings = tiny_settings(tmp_path, grid={"masksembles": {"placement": ["everywhere"]}})
    with pytest.raises(ValueError, match="everywhere"):
        run_tune(settings, log=Log())
    assert not (tmp_path / "points").exists()


# -- fronts and picks ---------------------------------------------------------------------------

def brute_force_front(costs, values) -> set[int]:
    def dominates(j, i):
        return (costs[j] <= costs[i] and values[j] <= values[i]
                and (costs[j] < costs[i] or values[j] < values[i]))

    return {i for i in range(len(costs))
            if not any(dominates(j, i) for j in range(len(costs)) if j != i)}


@pytest.mark.parametrize("seed", range(30))
def test_the_pareto_front_is_every_undominated_point_by_cost(seed):
    rng = random.Random(seed)
    size = rng.randint(1, 25)
    # few distinct values, so that ties in cost, in value and in both occur
    costs = [rng.choice([0.5, 1.0, 1.0, 1.3, 2.0, 4.0]) for _ in range(size)]
    values = [rng.choice([0.1, 0.2, 0.2, 0.3, 0.5]) for _ in range(size)]
    front = pareto_front(costs, values)
    assert set(front) == brute_force_front(costs, values)
    assert len(front) == len(set(front))
    assert [costs[i] for i in front] == sorted(costs[i] for i in front)


def test_pareto_front_by_hand():
    costs = [1.0, 2.0, 1.5, 3.0, 1.0, 2.0]
    values = [0.5, 0.2, 0.5, 0.1, 0.6, 0.2]
    assert pareto_front(costs, values) == [0, 1, 5, 3]
    with pytest.raises(ValueError, match="same length"):
        pareto_front([1.0], [1.0, 2.0])


def row(method, name, nll, latency, params=1.0, flops=1.0):
    return {"method": method, "id": name, "nll": {"mean": nll, "std": 0.0},
            "cost": {"latency_ratio": latency, "params_ratio": params,
                     "inference_flops_ratio": flops}}


def test_the_pick_is_the_lowest_validation_nll_within_the_budget():
    rows = [row("masksembles", "a", 0.10, 2.0), row("masksembles", "b", 0.12, 1.2),
            row("masksembles", "c", 0.15, 1.0, params=3.0), row("single", "s", 0.2, 1.0),
            row("masksembles", "d", 0.12, 1.1)]
    assert pick_best(rows, "masksembles", {})["id"] == "a"
    assert pick_best(rows, "masksembles", {"latency": 1.3})["id"] == "d"  # tie: faster
    assert pick_best(rows, "masksembles", {"latency": 1.05})["id"] == "c"
    assert pick_best(rows, "masksembles", {"latency": 1.05, "params": 1.5}) is None
    assert pick_best(rows, "single", {"latency": 1.0})["id"] == "s"


# -- a tiny run ---------------------------------------------------------------------------------

def test_every_point_is_scored_on_validation_and_costed(tiny_run):
    out, result, _ = tiny_run
    assert [row["method"] for row in result["rows"]] == ["single", "masksembles",
                                                         "masksembles", "mc_dropout",
                                                         "mc_dropout"]
    for row_ in result["rows"]:
        record = json.loads(point_path(out, _point(row_), 0).read_text())
        assert record["validation_size"] == 250  # digits: 20 % of the 1258 training images
        assert 0.0 <= row_["accuracy"]["mean"] <= 1.0 and row_["nll"]["mean"] > 0
        assert row_["ood_auroc"] is not None and record["ood_name"] == "letters"
        assert row_["cost"]["params"] > 0 and row_["cost"]["latency_ratio"] > 0
        assert record["train"]["epochs"] == 1
    single = result["rows"][0]
    assert single["cost"]["latency_ratio"] == 1.0 and single["cost"]["params_ratio"] == 1.0
    assert {row_["cost"]["inference"] for row_ in result["rows"][1:3]} == {"compile_members"}
    for name in ("tune.md", "tune.json", "tune.csv", "pareto.png", "tuned.toml"):
        assert (out / name).stat().st_size > 0
    csv_lines = (out / "tune.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(result["rows"])
    assert "scale=2 placement=all widen=false" in (out / "tune.md").read_text()


def test_the_fronts_are_those_of_the_rows(tiny_run):
    _, result, _ = tiny_run
    rows = result["rows"]
    for kind, entry in (("latency", "latency_ratio"), ("params", "params_ratio"),
                        ("flops", "inference_flops_ratio")):
        for metric in ("nll", "ece"):
            expected = brute_force_front([r["cost"][entry] for r in rows],
                                         [r[metric]["mean"] for r in rows])
            assert {r["id"] for i, r in enumerate(rows) if i in expected} == set(
                result["fronts"][f"{kind}/{metric}"])


def test_the_written_config_is_taken_by_the_benchmark_as_is(tiny_run):
    out, result, _ = tiny_run
    text = (out / "tuned.toml").read_text()
    assert "VALIDATION split" in text and "ensemblekit tune (test)" in text
    assert tomllib.loads(text)["command"] == "benchmark"
    bench = BenchmarkSettings.from_sources(out / "tuned.toml")
    rows = {r["id"]: r for r in result["rows"]}
    for method in ("masksembles", "mc_dropout"):
        picked = rows[result["picks"][method]]
        options = bench.model_options(method, seed=0)
        for key, value in picked["options"].items():
            assert options[key] == value
        best = min((r for r in result["rows"] if r["method"] == method),
                   key=lambda r: r["nll"]["mean"])
        assert picked is best
    assert bench.epochs == 1 and bench.dataset == "digits"
    assert bench.train_config(seed=0).lr == TuneSettings.from_sources(
        overrides=TINY).train_config(seed=0).lr


def test_a_budget_restricts_the_picks_and_the_methods(tiny_run, tmp_path):
    out, result, _ = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    # MC-Dropout runs 4 full passes (4x the FLOPs); the single model is the unit
    log = Log()
    budgeted = run_tune(tiny_settings(copy, budget="flops<=1.01x"), log=log)
    assert not any("seed 0: val NLL" in line for line in log)  # nothing retrained
    assert budgeted["picks"]["mc_dropout"] is None
    assert budgeted["picks"]["single"] is not None
    for name in budgeted["picks"].values():
        if name is not None:
            row_ = next(r for r in budgeted["rows"] if r["id"] == name)
            assert row_["cost"]["inference_flops_ratio"] <= 1.01
    written = tomllib.loads((copy / "tuned.toml").read_text())
    assert "mc_dropout" not in written["methods"] and "single" in written["methods"]
    assert "mc_dropout" not in written.get("method_options", {})
    BenchmarkSettings.from_sources(copy / "tuned.toml")


def test_a_partial_run_continues_without_retraining_finished_points(tiny_run, tmp_path):
    out, result, _ = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    rows = result["rows"]
    lost = point_path(copy, _point(rows[1]), 0)
    lost.unlink()  # as if the run had been killed while training this point
    broken = point_path(copy, _point(rows[3]), 0)
    broken.write_text('{"point": ')  # an unreadable record is recomputed
    kept = point_path(copy, _point(rows[4]), 0)
    before = kept.read_bytes(), kept.stat().st_mtime_ns
    log = Log()
    again = run_tune(tiny_settings(copy), log=log)
    trained = [line for line in log if "seed 0: val NLL" in line]
    assert len(trained) == 2
    assert any("resuming" in line and "3 of 5" in line for line in log)
    assert (kept.read_bytes(), kept.stat().st_mtime_ns) == before
    assert lost.is_file() and json.loads(broken.read_text())["seed"] == 0
    # the same seed and settings train the same model: the lost point comes back the same
    assert again["rows"][1]["nll"] == rows[1]["nll"]


def test_a_larger_grid_reuses_the_finished_points(tiny_run, tmp_path):
    out, _, _ = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    log = Log()
    grid = {**TINY["grid"], "masksembles": {**TINY["grid"]["masksembles"],
                                            "scale": [2.0, 3.0, 4.0]}}
    result = run_tune(tiny_settings(copy, grid=grid), log=log)
    assert [line for line in log if "seed 0: val NLL" in line] == [
        next(line for line in log if "scale=4" in line)]
    assert len(result["rows"]) == 6


def test_other_settings_are_refused_naming_the_key(tiny_run, tmp_path):
    out, _, _ = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with pytest.raises(ValueError, match="train: .*'lr': 0.005.* there, .*'lr': 0.001.* now"):
        run_tune(tiny_settings(copy, train={"lr": 1e-3}), log=Log())
    with pytest.raises(ValueError, match="epochs: 1 there, 2 now"):
        run_tune(tiny_settings(copy, epochs=2), log=Log())


# -- the command line ---------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "message"), [
    (["tune", "--budget", "latency<1.3x"], "budget term 'latency<1.3x'"),
    (["tune", "--grid", "masksembles.sacle=2"], "unknown key 'sacle' in [grid.masksembles]"),
])
def test_the_command_refuses_bad_input_in_one_line(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "points").exists()


def test_tune_needs_a_validation_split():
    with pytest.raises(ValueError, match="validation_fraction is 0"):
        TuneSettings.from_sources(overrides={"validation_fraction": 0.0})


def test_a_malformed_grid_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["tune", "--grid", "masksembles-scale=2"])
    assert exit_.value.code == 2
    assert "is not METHOD.KEY=V1,V2" in capsys.readouterr().err


def test_the_command_writes_the_config_and_records_its_own_line(tmp_path, capsys):
    argv = ["tune", "--epochs", "1", "--methods", "single,masksembles", "--grid",
            "masksembles.scale=2", "--grid", "masksembles.placement=dropout", "--grid",
            "masksembles.widen=true", "--out", str(tmp_path)]
    assert main(argv) == 0
    text = (tmp_path / "tuned.toml").read_text()
    assert "# Produced by: ensemblekit tune --epochs 1 --methods single,masksembles" in text
    options = BenchmarkSettings.from_sources(tmp_path / "tuned.toml").model_options(
        "masksembles", seed=0)
    assert (options["scale"], options["placement"], options["widen"]) == (2.0, "dropout", True)
    assert "picked" in capsys.readouterr().out


def _point(row_: dict) -> dict:
    return {"method": row_["method"], "options": row_["options"], "epochs": row_["epochs"]}


def test_a_grid_may_vary_a_backbone_option():
    settings = TuneSettings.from_sources(overrides={
        "methods": ["batchensemble"], "grid": {"batchensemble": {"width": [1.0, 2.0],
                                                                 "epochs_factor": [1.0]}}})
    points = expand_grid(settings)
    assert sorted((p["options"]["init"], p["options"]["width"]) for p in points) == [
        ("normal", 1.0), ("normal", 2.0), ("random_sign", 1.0), ("random_sign", 2.0)]
