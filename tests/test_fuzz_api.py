"""Bad input across the public API, fuzzed with hypothesis.

The contract every test here checks: a bad argument raises ``ValueError`` or ``TypeError``
(``FileNotFoundError`` for missing files) whose message names the parameter or the thing that
is wrong -- never ``IndexError``/``RuntimeError``/``KeyError``/``ZeroDivisionError`` from inside
torch, never a NaN metric nobody asked for. Each strategy draws valid and invalid values side by
side, so the same tests also check that valid calls work (a check that rejected everything
would pass the first half) and do not modify their inputs.

An argument is an :class:`Arg`: its value and, when it is invalid, the patterns (regular
expressions) of which the error message must contain at least one.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ensemblekit.metrics as metrics
from ensemblekit import (
    Masksembles,
    Masksembles1d,
    Masksembles2d,
    Masksembles3d,
    generate_masks,
    repeat_members,
    split_members,
)
from ensemblekit.checkpoint import load, save
from ensemblekit.compile import STRATEGIES, compile_members
from ensemblekit.data import CORRUPTIONS, available_datasets, corrupt, load_dataset
from ensemblekit.evaluate import evaluate_model
from ensemblekit.masks import mask_size
from ensemblekit.methods import available_methods, build_model, predict_members
from ensemblekit.train import TrainConfig, train_model

FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(FUZZ, max_examples=25)


class Arg(NamedTuple):
    value: object
    needles: tuple[str, ...] = ()  # empty: a valid value

    @property
    def bad(self) -> bool:
        return bool(self.needles)


def good(strategy) -> st.SearchStrategy:
    return strategy.map(Arg)


def bad(strategy, *needles: str) -> st.SearchStrategy:
    return strategy.map(lambda value: Arg(value, needles))


def either(valid, invalid) -> st.SearchStrategy:
    """Valid three times in four: calls with several arguments are then often fully valid."""
    return st.sampled_from([True, True, True, False]).flatmap(
        lambda ok: valid if ok else invalid)


def mutation_of(table: dict) -> st.SearchStrategy:
    """A key of ``table``: "none" (no mutation) half of the time."""
    return st.one_of(st.just("none"), st.sampled_from(sorted(set(table) - {"none"})))


def bad_int(minimum: int, maximum: int | None = None, *, none_ok: bool = False):
    """Anything ``check_int(name, ..., minimum, maximum)`` must refuse."""
    parts = [st.integers(max_value=minimum - 1), st.floats(), st.text(max_size=3),
             st.booleans(), st.just(torch.tensor(1))]
    if maximum is not None:
        parts.append(st.integers(min_value=maximum + 1))
    if not none_ok:
        parts.append(st.none())
    return st.one_of(parts)


def bad_float(minimum=None, maximum=None, *, min_inclusive=True, max_inclusive=True):
    """Anything ``check_float(name, ..., minimum, maximum)`` must refuse."""
    parts = [st.sampled_from([math.nan, math.inf, -math.inf]), st.text(max_size=3),
             st.none(), st.booleans()]
    if minimum is not None:
        parts.append(st.floats(max_value=minimum, exclude_max=min_inclusive, allow_nan=False))
    if maximum is not None:
        parts.append(st.floats(min_value=maximum, exclude_min=max_inclusive, allow_nan=False))
    return st.one_of(parts)


def word(name: str) -> str:
    return rf"(?<![\w.]){re.escape(name)}(?!\w)"


FORBIDDEN = (IndexError, RuntimeError, KeyError, ZeroDivisionError, AttributeError,
             AssertionError)


def check_call(log, target: str, call, args: dict[str, Arg], *,
               errors=(ValueError, TypeError)):
    """Run ``call()``; with any bad argument it must raise one of ``errors`` whose message
    matches a needle of a bad argument; with none it must return (the result is returned)."""
    wrong = {name: arg for name, arg in args.items() if arg.bad}
    try:
        result = call()
    except errors as error:
        if not wrong:
            raise AssertionError(f"{target} refused valid arguments: {error!r}") from error
        needles = [needle for arg in wrong.values() for needle in arg.needles]
        message = str(error)
        assert any(re.search(needle, message) for needle in needles), (
            f"{target}: {type(error).__name__}({message!r}) names none of {needles} "
            f"(bad: {sorted(wrong)})"
        )
        log("input", target, f"rejected: {type(error).__name__}")
        return None
    except FORBIDDEN as error:
        raise AssertionError(
            f"{target} raised {type(error).__name__} from deep inside for "
            f"{ {name: arg.value for name, arg in args.items()} }: {error}"
        ) from error
    assert not wrong, f"{target} accepted bad {({n: a.value for n, a in wrong.items()})}"
    log("input", target, "valid: result checked")
    return result


def unchanged(*tensors: torch.Tensor):
    """Copies to compare with after a call: no public function may write into its inputs."""
    return [t.clone() if isinstance(t, torch.Tensor) else t for t in tensors]


def assert_unchanged(before, *tensors) -> None:
    for old, new in zip(before, tensors, strict=True):
        if isinstance(old, torch.Tensor):
            assert torch.equal(old, new) or (old.isnan() == new.isnan()).all(), \
                "the call modified its input"


# -- masks, layers, member layout ------------------------------------------------------------

CHANNELS = either(good(st.integers(1, 96) | st.integers(1, 96).map(np.int64)),
                  bad(bad_int(1), word("channels")))
NUM_MASKS = either(good(st.integers(1, 12)), bad(bad_int(1), word("n")))
SCALE = either(good(st.floats(1.0, 1e300) | st.integers(1, 50)), bad(bad_float(1.0), "scale"))
SEED = either(good(st.none() | st.integers(0, 2**62)), bad(bad_int(0, none_ok=True), "seed"))


@FUZZ
@given(channels=CHANNELS, n=NUM_MASKS, scale=SCALE, seed=SEED)
def test_generate_masks(channels, n, scale, seed, reliability_log):
    masks = check_call(
        reliability_log, "generate_masks",
        lambda: generate_masks(channels.value, n.value, scale.value, seed=seed.value),
        dict(channels=channels, n=n, scale=scale, seed=seed))
    if masks is not None:
        assert masks.dtype == torch.bool and masks.shape == (n.value, channels.value)
        assert masks.any(dim=0).all()  # every channel is used by some mask
        assert len(set(masks.sum(dim=1).tolist())) == 1  # equal mask sizes


@FUZZ
@given(channels=CHANNELS, n=NUM_MASKS, scale=SCALE, seed=SEED,
       layer=st.sampled_from([Masksembles, Masksembles1d, Masksembles2d, Masksembles3d]))
def test_masksembles_layer_arguments(layer, channels, n, scale, seed, reliability_log):
    module = check_call(
        reliability_log, f"{layer.__name__}(...)",
        lambda: layer(channels.value, n.value, scale.value, seed=seed.value),
        dict(channels=channels, n=n, scale=scale, seed=seed))
    if module is not None:
        assert module.masks.shape == (n.value, channels.value)


RANKS = {Masksembles: range(2, 7), Masksembles1d: (2, 3), Masksembles2d: (4,),
         Masksembles3d: (5,)}


@FUZZ
@given(layer=st.sampled_from(list(RANKS)), channels=st.integers(1, 6), n=st.integers(1, 4),
       groups=st.integers(0, 3), extra_rows=st.sampled_from([0, 0, 1]),
       channel_shift=st.sampled_from([0, 0, 0, 1]), trailing=st.integers(1, 3),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]),
       data=st.data())
def test_masksembles_layer_forward(layer, channels, n, groups, extra_rows, channel_shift,
                                   trailing, dtype, data, reliability_log):
    rank = data.draw(st.sampled_from(list(RANKS[layer])) | st.integers(0, 6), label="rank")
    module = layer(channels, n, 2.0, seed=0)
    rows = groups * n + extra_rows
    shape = [rows, channels + channel_shift, *[trailing] * max(0, rank - 2)][:rank]
    x = torch.rand(shape, dtype=torch.float32).to(dtype)
    needles = []
    if rank not in RANKS[layer] or rank < 2:
        needles.append(rf"{layer.__name__} (with dim=-?\d+ )?expects")
    elif channel_shift:
        needles.append(r"channels")
    elif extra_rows and rows % n:
        needles.append(r"multiple of n")
    before = unchanged(x)
    out = check_call(reliability_log, f"{layer.__name__}.forward", lambda: module(x),
                     {"x": Arg(x, tuple(needles))})
    assert_unchanged(before, x)
    if out is not None:
        assert out.shape == x.shape and out.dtype == x.dtype
        per_row = module.masks.repeat_interleave(rows // n, dim=0).to(dtype)
        assert torch.equal(out, x * per_row.view(rows, channels, *[1] * (rank - 2)))


@pytest.mark.parametrize("value", [[[1.0, 2.0]], np.ones((2, 3), dtype=np.float32), None, 3.0])
def test_masksembles_layer_rejects_non_tensors(value, reliability_log):
    check_call(reliability_log, "Masksembles1d.forward",
               lambda: Masksembles1d(3, 1, 2.0)(value), {"x": Arg(value, ("torch.Tensor",))})


TENSOR_OR_NOT = st.one_of(
    st.lists(st.integers(0, 4), min_size=0, max_size=4).map(lambda shape: torch.rand(shape)),
    st.sampled_from([[1.0, 2.0], np.ones(3), None, "x"]),
)


@FUZZ
@given(x=TENSOR_OR_NOT, n=NUM_MASKS)
def test_repeat_members(x, n, reliability_log):
    needles = ()
    if not isinstance(x, torch.Tensor):
        needles = ("torch.Tensor",)
    elif x.ndim == 0:
        needles = ("batch dimension",)
    tiled = check_call(reliability_log, "repeat_members", lambda: repeat_members(x, n.value),
                       {"x": Arg(x, needles), "n": n})
    if tiled is not None:
        assert tiled.shape == (n.value * x.shape[0], *x.shape[1:])
        assert torch.equal(split_members(tiled, n.value)[-1], x)


@FUZZ
@given(y=TENSOR_OR_NOT, n=NUM_MASKS)
def test_split_members(y, n, reliability_log):
    needles = ()
    if not isinstance(y, torch.Tensor):
        needles = ("torch.Tensor",)
    elif not n.bad and (y.ndim == 0 or y.shape[0] % n.value):
        needles = ("multiple of n",)
    split = check_call(reliability_log, "split_members", lambda: split_members(y, n.value),
                       {"y": Arg(y, needles), "n": n})
    if split is not None:
        assert split.shape == (n.value, y.shape[0] // n.value, *y.shape[1:])


# -- models and predictions ------------------------------------------------------------------

def option_strategies(backbone: str, method: str) -> dict[str, st.SearchStrategy]:
    """Valid-or-invalid values for each option ``build_model`` takes for this pair."""
    options = {
        "width": either(good(st.floats(0.25, 1.5)),
                        bad(bad_float(0.0, min_inclusive=False), "width")),
        "seed": either(good(st.integers(0, 2**31 - 1)),
                       bad(bad_int(0, none_ok=True), "seed")),
    }
    if backbone == "mlp":
        options["hidden"] = either(
            good(st.lists(st.integers(1, 8), min_size=1, max_size=2).map(tuple)),
            bad(st.sampled_from([(0,), (4, -1), "ab", 5, None, (2.5,)]), "hidden"))
    if backbone == "lenet":
        options["input_size"] = either(good(st.integers(4, 9)),
                                       bad(bad_int(4), "input_size"))
    if method != "single":
        options["n"] = either(good(st.integers(1, 3)), bad(bad_int(1), word("n")))
    if method == "masksembles":
        options["scale"] = either(good(st.floats(1.0, 1e6)), bad(bad_float(1.0), "scale"))
    if method == "mc_dropout":
        options["p"] = either(good(st.floats(0.0, 0.9)),
                              bad(bad_float(0.0, 1.0, max_inclusive=False), word("p")))
    if method == "batchensemble":
        options["init"] = either(good(st.sampled_from(["normal", "random_sign", "ones"])),
                                 bad(st.sampled_from(["Normal", "", None]), "init"))
        options["tile_batch"] = either(good(st.booleans()),
                                       bad(st.sampled_from(["yes", 1, None]), "tile_batch"))
    if method == "packed_ensemble":
        options["alpha"] = either(good(st.floats(0.25, 4.0)),
                                  bad(bad_float(0.0, min_inclusive=False), "alpha"))
        options["gamma"] = either(good(st.integers(1, 3)), bad(bad_int(1), "gamma"))
    if method == "mimo":
        options["input_repetition"] = either(
            good(st.floats(0.0, 1.0)),
            bad(bad_float(0.0, 1.0), "input_repetition"))
        options["batch_repetitions"] = either(good(st.integers(1, 3)),
                                              bad(bad_int(1), "batch_repetitions"))
    if method == "deep_ensemble":
        options["independent_batches"] = either(
            good(st.booleans()), bad(st.sampled_from(["no", 0]), "independent_batches"))
        options["inference"] = either(good(st.sampled_from(["auto", "loop", "vmap"])),
                                      bad(st.sampled_from(["fast", ""]), "inference"))
    # An option the pair does not take (another method's, or a typo) must be refused by name.
    options["scale" if method != "masksembles" else "scales"] = bad(st.just(2.0), "scale")
    options["bogus"] = bad(st.just(1), "bogus")
    return options


def masks_fit_somewhere(backbone: str, options: dict) -> bool:
    """Whether a Masksembles ``backbone`` built with ``options`` has a layer where each mask
    keeps at least 8 channels (or needs none: one member, scale 1), stated from the skip rule
    and the backbones' layer sizes (LeNet 6-16-120-84, MLP ``hidden``, times ``width``)."""
    n, scale = options.get("n", 4), options.get("scale", 2.0)
    if n == 1 or scale == 1.0:
        return True
    sizes = options.get("hidden", (64, 32, 16)) if backbone == "mlp" else (6, 16, 120, 84)
    width = options.get("width", 1.0)
    return any(mask_size(max(1, round(size * width)), n, scale) >= 8 for size in sizes)


@FUZZ
@given(name=either(good(st.sampled_from(["mlp", "lenet"])),
                   bad(st.sampled_from(["MLP", "resnet", "", None, 3]), "backbone")),
       method=either(good(st.sampled_from(available_methods())),
                     bad(st.sampled_from(["masksemble", "ensemble", None]), "method")),
       num_classes=either(good(st.integers(1, 5)), bad(bad_int(1), "num_classes")),
       in_channels=either(good(st.integers(1, 3)), bad(bad_int(1), "in_channels")),
       data=st.data())
def test_build_model(name, method, num_classes, in_channels, data, reliability_log):
    strategies = option_strategies(name.value if not name.bad else "mlp",
                                   method.value if not method.bad else "single")
    chosen = data.draw(st.sets(st.sampled_from(sorted(strategies)), max_size=3), label="options")
    options = {key: data.draw(strategies[key], label=key) for key in sorted(chosen)}
    if (not name.bad and method.value == "masksembles"
            and not any(arg.bad for arg in options.values())
            and not masks_fit_somewhere(name.value, {k: a.value for k, a in options.items()})):
        # valid values, but no layer wide enough for masks of 8 channels (the skip rule):
        # refused, naming the drop site and the fix
        options["no drop site"] = Arg(None, ("drop site",))
    model = check_call(
        reliability_log, "build_model",
        lambda: build_model(name.value, method.value, num_classes.value, in_channels.value,
                            **{key: arg.value for key, arg in options.items()}),
        dict(name=name, method=method, num_classes=num_classes, in_channels=in_channels,
             **options))
    if model is not None:
        backbone = model.members[0] if method.value == "deep_ensemble" else model.backbone
        x = torch.rand(2, *backbone.input_shape)
        with torch.no_grad():
            logits = predict_members(model, x)
        assert logits.shape == (model.num_members, 2, num_classes.value)
        assert torch.isfinite(logits).all()
        assert build_model(**model.config).config == model.config


MODELS = {method: build_model("mlp", method, 3, 4, hidden=(12,), seed=0,
                              **({} if method == "single" else {"n": 2}))
          for method in available_methods()}


@FUZZ
@given(method=st.sampled_from(sorted(MODELS)), rows=st.integers(0, 5),
       features=st.sampled_from([4] * 6 + [5]), rank=st.sampled_from([2] * 6 + [1, 3]),
       dtype=st.sampled_from([torch.float32] * 6 + [torch.float64, torch.int64, torch.bool]),
       num_samples=st.sampled_from([None] * 6 + [-1, 0, 1, 2, 3, "2"]))
def test_predict_members(method, rows, features, rank, dtype, num_samples, reliability_log):
    model = MODELS[method]
    x = torch.rand([rows, features, 2][:rank]).to(dtype)
    needles = []
    if num_samples is not None and (not isinstance(num_samples, int) or num_samples < 1 or (
            method != "mc_dropout" and num_samples != model.num_members)):
        needles.append("num_samples")
    if dtype != torch.float32:
        needles.append("dtype|floating-point")
    if rank != 2 or features != 4:
        needles.append("shape")
    before = unchanged(x)
    with torch.no_grad():
        logits = check_call(reliability_log, "predict_members",
                            lambda: predict_members(model, x, num_samples=num_samples),
                            {"x": Arg(x, tuple(needles))})
    assert_unchanged(before, x)
    if logits is not None:
        members = num_samples if num_samples is not None else model.num_members
        assert logits.shape == (members, rows, 3)


EXAMPLES = [
    Arg(None), Arg(torch.rand(3, 4)),
    Arg(torch.rand(0, 4), ("at least one example",)),
    Arg(torch.full((2, 4), math.nan), ("NaN",)),
    Arg(torch.rand(2, 5), ("shape",)),
    Arg(torch.ones(2, 4, dtype=torch.long), ("floating",)),
    Arg([[0.5] * 4], ("torch.Tensor",)),
]


@FEW
@given(model=either(good(st.sampled_from(sorted(MODELS))),
                    bad(st.sampled_from(["linear", "sequential"]), "ensemble model")),
       strategy=either(good(st.sampled_from(STRATEGIES)),
                       bad(st.sampled_from(["fast", "", None]), "strategy")),
       channels_last=either(good(st.booleans()),
                            bad(st.sampled_from(["yes", 1, None]), "channels_last")),
       fold=either(good(st.booleans()),
                   bad(st.sampled_from(["no", 0]), "fold_batchnorm_into_conv")),
       example=st.sampled_from(EXAMPLES[:2] * 3 + EXAMPLES[2:]))
def test_compile_members(model, strategy, channels_last, fold, example, reliability_log):
    not_ensembles = {"linear": torch.nn.Linear(4, 3), "sequential": torch.nn.Sequential()}
    source = not_ensembles[model.value] if model.bad else MODELS[model.value]
    compiled = check_call(
        reliability_log, "compile_members",
        lambda: compile_members(source, strategy=strategy.value,
                                channels_last=channels_last.value,
                                fold_batchnorm_into_conv=fold.value,
                                example_input=example.value),
        dict(model=model, strategy=strategy, channels_last=channels_last,
             fold_batchnorm_into_conv=fold, example_input=example))
    if compiled is not None:
        x = torch.rand(3, 4)
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), predict_members(source, x))


COMPILED = compile_members(MODELS["masksembles"])


@FUZZ
@given(rows=st.integers(0, 5), features=st.sampled_from([4] * 6 + [5]),
       rank=st.sampled_from([2] * 6 + [1, 3]),
       dtype=st.sampled_from([torch.float32] * 6 + [torch.float64, torch.int64, torch.bool]),
       wrap=st.sampled_from([None] * 8 + [list, np.asarray]))
def test_compiled_members_forward(rows, features, rank, dtype, wrap, reliability_log):
    x = torch.rand([rows, features, 2][:rank]).to(dtype)
    needles = []
    if wrap is not None:
        needles.append("torch.Tensor")
    if dtype != torch.float32:
        needles.append("dtype|floating-point")
    if rank != 2 or features != 4:
        needles.append("shape")
    value = x.tolist() if wrap is list else x.numpy() if wrap is not None else x
    with torch.no_grad():
        logits = check_call(reliability_log, "CompiledMembers.forward", lambda: COMPILED(value),
                            {"x": Arg(value, tuple(needles))})
        if logits is not None:
            torch.testing.assert_close(logits, predict_members(MODELS["masksembles"], x))


def test_nan_inputs_never_become_a_metric(reliability_log):
    """NaN flows through a model like through any torch module; the metrics stop it."""
    x = torch.rand(4, 4)
    x[2, 1] = math.nan
    for method, model in MODELS.items():
        with torch.no_grad():
            logits = predict_members(model, x)
        check_call(reliability_log, f"evaluate_predictions(predict_members({method}, NaN x))",
                   lambda logits=logits: metrics.evaluate_predictions(logits, torch.zeros(
                       4, dtype=torch.long)), {"logits": Arg(logits, ("NaN",))})


# -- metrics ---------------------------------------------------------------------------------

@st.composite
def probability_case(draw, *, members: bool):
    """(probs, labels, logits): probabilities (M, B, K) or (B, K) from random logits."""
    shape = ([draw(st.integers(1, 4))] if members else []) + [draw(st.integers(1, 12)),
                                                              draw(st.integers(1, 5))]
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    spread = draw(st.sampled_from([1.0, 10.0, 1e3]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    logits = torch.randn(shape, generator=generator, dtype=torch.float64) * spread
    labels = torch.randint(0, shape[-1], shape[-2:-1], generator=generator)
    return torch.softmax(logits, -1).to(dtype), labels, logits.to(dtype)


def _poke(value: float):
    """A mutation that sets the middle entry of a (non-empty) tensor to ``value``."""
    def mutate(tensor, labels):
        tensor = tensor.clone()
        if tensor.numel():
            tensor.view(-1)[tensor.numel() // 2] = value
        return tensor, labels
    return mutate


def _relabel(labels: torch.Tensor, value: int) -> torch.Tensor:
    labels = labels.clone()
    labels[0] = value
    return labels


PROB_MUTATIONS = {
    "none": (lambda p, y: (p, y), ()),
    "NaN entry": (_poke(math.nan), ("NaN",)),
    "inf entry": (_poke(math.inf), ("infinite",)),
    "integer dtype": (lambda p, y: (p.long(), y), ("floating",)),
    "extra dimension": (lambda p, y: (p.unsqueeze(0).unsqueeze(0), y), ("dimensions",)),
    "no samples": (lambda p, y: (p[..., :0, :], y[:0]), ("empty",)),
    "not a tensor": (lambda p, y: (p.tolist(), y), ("torch.Tensor",)),
}
LABEL_MUTATIONS = {
    "float labels": (lambda p, y: (p, y.double()), ("integer",)),
    "label = K": (lambda p, y: (p, _relabel(y, p.shape[-1])), ("must lie in",)),
    "label = -1": (lambda p, y: (p, _relabel(y, -1)), ("must lie in",)),
    "one label short": (lambda p, y: (p, y[1:]), ("one label per sample",)),
    "2-D labels": (lambda p, y: (p, y[:, None]), ("dimensions",)),
    "labels not a tensor": (lambda p, y: (p, y.tolist()), ("torch.Tensor",)),
}

SCALAR_METRICS = {  # name: (function, valid range)
    "accuracy": (metrics.accuracy, (0.0, 1.0)),
    "nll": (metrics.nll, (0.0, 40.0)),
    "brier": (metrics.brier, (0.0, 2.0)),
    "ece": (metrics.ece, (0.0, 1.0)),
    "adaptive_ece": (metrics.adaptive_ece, (0.0, 1.0)),
    "mce": (metrics.mce, (0.0, 1.0)),
}


@pytest.mark.parametrize("name", sorted(SCALAR_METRICS))
@FEW
@given(case=probability_case(members=False),
       mutation=mutation_of({**PROB_MUTATIONS, **LABEL_MUTATIONS, "logits": None}),
       n_bins=either(good(st.just(15) | st.integers(1, 40)), bad(bad_int(1), "n_bins")))
def test_scalar_metrics(name, case, mutation, n_bins, reliability_log):
    function, (low, high) = SCALAR_METRICS[name]
    probs, labels, logits = case
    if mutation == "logits":  # the commonest mistake: logits where probabilities belong
        needles = ("softmax",)
        probs = logits if logits.shape[-1] > 1 else logits - 5
    else:
        mutate, needles = {**PROB_MUTATIONS, **LABEL_MUTATIONS}[mutation]
        probs, labels = mutate(probs, labels)
    kwargs = {"n_bins": n_bins.value} if "ece" in name or name == "mce" else {}
    if not kwargs:
        n_bins = Arg(15)
    before = unchanged(probs, labels)
    value = check_call(reliability_log, f"metrics.{name}",
                       lambda: function(probs, labels, **kwargs),
                       {"probs/labels": Arg(probs, needles), "n_bins": n_bins})
    assert_unchanged(before, probs, labels)
    if value is not None:
        assert isinstance(value, float) and low <= value <= high, value


MEMBER_METRICS = {  # name: (function, needs labels)
    "predictive_entropy": (metrics.predictive_entropy, False),
    "expected_entropy": (metrics.expected_entropy, False),
    "mutual_information": (metrics.mutual_information, False),
    "variation_ratio": (metrics.variation_ratio, False),
    "pairwise_disagreement": (metrics.pairwise_disagreement, False),
    "pairwise_kl": (metrics.pairwise_kl, False),
    "pairwise_js": (metrics.pairwise_js, False),
    "pairwise_cosine": (metrics.pairwise_cosine, False),
    "normalized_disagreement": (metrics.normalized_disagreement, True),
    **{f"ood_scores[{kind}]": (lambda p, kind=kind: metrics.ood_scores(p, kind), False)
       for kind in metrics.OOD_SCORES if kind not in metrics.LOGIT_OOD_SCORES},
}


@pytest.mark.parametrize("name", sorted(MEMBER_METRICS))
@FEW
@given(case=probability_case(members=True), data=st.data())
def test_member_metrics(name, case, data, reliability_log):
    function, with_labels = MEMBER_METRICS[name]
    table = {**PROB_MUTATIONS, **(LABEL_MUTATIONS if with_labels else {})}
    mutation = data.draw(mutation_of(table), label="mutation")
    mutate, needles = table[mutation]
    probs, labels = mutate(*case[:2])
    before = unchanged(probs, labels)
    call = (lambda: function(probs, labels)) if with_labels else (lambda: function(probs))
    value = check_call(reliability_log, f"metrics.{name}", call,
                       {"member_probs/labels": Arg(probs, needles)})
    assert_unchanged(before, probs, labels)
    if value is None:
        return
    if name == "normalized_disagreement":
        ensemble_wrong = probs.mean(0).argmax(-1).ne(labels).any()
        assert torch.isfinite(value).all() or not ensemble_wrong  # inf/nan only without errors
    else:
        assert torch.isfinite(value).all(), value
        assert (value >= -1e-12).all()


@st.composite
def score_case(draw):
    sizes = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    values = st.floats(-1e6, 1e6, allow_nan=False) | st.sampled_from([0.0, 0.5, 1.0])
    scores = [torch.tensor(draw(st.lists(values, min_size=n, max_size=n)),
                           dtype=draw(st.sampled_from([torch.float32, torch.float64])))
              for n in sizes]
    return scores


SCORE_MUTATIONS = {
    "none": (lambda s: s, ()),
    "NaN score": (lambda s: torch.cat([s, torch.tensor([math.nan], dtype=s.dtype)]), ("NaN",)),
    "inf score": (lambda s: torch.cat([s, torch.tensor([math.inf], dtype=s.dtype)]),
                  ("infinite",)),
    "empty": (lambda s: s[:0], ("empty",)),
    "2-D": (lambda s: s[None], ("dimensions",)),
    "bool": (lambda s: s > 0, ("real-valued",)),
    "list": (lambda s: s.tolist(), ("torch.Tensor",)),
}
OOD_METRICS = {"auroc": metrics.auroc, "aupr": metrics.aupr, "aupr_in": metrics.aupr_in,
               "fpr_at_95_tpr": metrics.fpr_at_95_tpr}


@pytest.mark.parametrize("name", [*sorted(OOD_METRICS), "fpr_at_tpr"])
@FEW
@given(scores=score_case(), side=st.sampled_from(["scores_in", "scores_out"]),
       mutation=mutation_of(SCORE_MUTATIONS),
       tpr=either(good(st.floats(0.01, 1.0)),
                  bad(bad_float(0.0, 1.0, min_inclusive=False), "tpr")))
def test_ood_metrics(name, scores, side, mutation, tpr, reliability_log):
    mutate, needles = SCORE_MUTATIONS[mutation]
    scores_in, scores_out = scores
    if side == "scores_in":
        scores_in = mutate(scores_in)
    else:
        scores_out = mutate(scores_out)
    if name == "fpr_at_tpr":
        def call():
            return metrics.fpr_at_tpr(scores_in, scores_out, tpr.value)
    else:
        tpr = Arg(0.95)

        def call():
            return OOD_METRICS[name](scores_in, scores_out)
    value = check_call(reliability_log, f"metrics.{name}", call,
                       {side: Arg(None, needles), "tpr": tpr})
    if value is not None:
        assert 0.0 <= value <= 1.0


@FEW
@given(weights=st.one_of(
    st.tuples(st.integers(1, 4), st.integers(1, 6)).map(lambda s: Arg(torch.randn(s) + 3)),
    bad(st.just(torch.zeros(3, 4)), "all zeros"),
    bad(st.just(torch.full((2, 3), math.nan)), "NaN"),
    bad(st.just(torch.ones(3)), "dimensions"),
    bad(st.just(torch.ones(2, 3, dtype=torch.long)), "floating-point"),
    bad(st.just(torch.ones(0, 3)), "non-empty"),
    bad(st.sampled_from(["weights", [[1.0]], None]), "tensor"),
))
def test_weight_similarity(weights, reliability_log):
    value = check_call(reliability_log, "metrics.weight_similarity",
                       lambda: metrics.weight_similarity(weights.value), {"weights": weights})
    if value is not None:
        assert torch.isfinite(value).all() and torch.allclose(value, value.T)


@st.composite
def logits_case(draw):
    """Member logits (M, B, K) of any float dtype and magnitude (up to 1e300 in float64)."""
    shape = draw(st.integers(1, 4)), draw(st.integers(1, 12)), draw(st.integers(1, 5))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16]))
    limit = {torch.float64: 1e300, torch.float32: 1e37, torch.float16: 6e4}[dtype]
    spread = draw(st.sampled_from([1.0, 30.0, 1e4, limit]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    logits = ((torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * spread)
    labels = torch.randint(0, shape[2], shape[1:2], generator=generator)
    return logits.to(dtype), labels


LOGIT_MUTATIONS = {
    "none": (lambda x, y: (x, y), ()),
    "NaN logit": (_poke(math.nan), ("NaN",)),
    "-inf logit": (_poke(-math.inf), ("infinite",)),
    "integer logits": (lambda x, y: (x.long(), y), ("floating",)),
    "(B, K) logits": (lambda x, y: (x[0], y), ("dimensions",)),
    "no samples": (lambda x, y: (x[:, :0], y[:0]), ("empty",)),
    **{name: mutation for name, mutation in LABEL_MUTATIONS.items() if name != "2-D labels"},
}
#: Documented NaN/inf: member comparisons need two members; the disagreement/error ratio
#: needs an error.
ONE_MEMBER_NAN = {"disagreement", "normalized_disagreement", "kl", "js", "cosine"}


@FUZZ
@given(case=logits_case(), mutation=mutation_of(LOGIT_MUTATIONS),
       ood=st.sampled_from(["none", "none", "valid", "valid", "NaN", "other K", "other M",
                            "empty"]),
       chunked=st.booleans(),
       n_bins=either(good(st.integers(1, 30)), bad(bad_int(1), "n_bins")))
def test_evaluate_predictions(case, mutation, ood, chunked, n_bins, reliability_log):
    mutate, needles = LOGIT_MUTATIONS[mutation]
    logits, labels = mutate(*case)
    ood_logits, ood_needles = None, ()
    if ood != "none" and isinstance(logits, torch.Tensor) and logits.ndim == 3:
        members, _, classes = logits.shape
        ood_logits = torch.randn(members + (ood == "other M"), 4 * (ood != "empty"),
                                 classes + (ood == "other K")) * 5
        if ood == "NaN":
            ood_logits[0, 0, 0] = math.nan
        ood_needles = {"valid": (), "NaN": ("NaN",), "other K": ("members, classes",),
                       "other M": ("members, classes",), "empty": ("empty",)}[ood]
    before = unchanged(logits, labels, ood_logits)

    def call():
        if chunked and isinstance(logits, torch.Tensor) and logits.ndim == 3 \
                and isinstance(labels, torch.Tensor) and len(labels) == logits.shape[1]:
            half = logits.shape[1] // 2
            chunks = [(logits[:, :half], labels[:half]), (logits[:, half:], labels[half:])]
            chunks = [chunk for chunk in chunks if chunk[1].numel()] or chunks[:1]
            return metrics.evaluate_predictions(chunks, ood_member_logits=ood_logits,
                                                n_bins=n_bins.value)
        return metrics.evaluate_predictions(logits, labels, ood_member_logits=ood_logits,
                                            n_bins=n_bins.value)

    result = check_call(reliability_log, "metrics.evaluate_predictions", call,
                        {"member_logits": Arg(logits, needles),
                         "ood_member_logits": Arg(ood_logits, ood_needles), "n_bins": n_bins})
    assert_unchanged(before, logits, labels, ood_logits)
    if result is None:
        return
    for key, value in result.items():
        if not isinstance(value, float) or math.isfinite(value):
            continue
        documented = (key in ONE_MEMBER_NAN and result["n_members"] == 1) or (
            key == "normalized_disagreement" and result["accuracy"] == 1.0)
        assert documented, f"{key} = {value} for finite logits {logits.dtype}"
    for kind, score in result.get("ood", {}).items():
        if result["n_members"] == 1 and kind in metrics.DISAGREEMENT_OOD_SCORES:
            assert all(v is None for v in score.values()), kind  # constant: undefined
            continue
        assert all(math.isfinite(v) for v in score.values())


# -- data ------------------------------------------------------------------------------------

@FEW
@given(name=either(good(st.sampled_from(["digits", "toy_moons"])),
                   bad(st.text(max_size=8).filter(lambda s: s not in available_datasets())
                       | st.sampled_from([None, 3, "Digits"]), "dataset")),
       split=either(good(st.sampled_from(["train", "test"])),
                    bad(st.sampled_from(["val", "Train", "", None]), "split")),
       download=either(good(st.just(False)), bad(st.sampled_from(["no", 0, None]), "download")),
       transform=either(good(st.none()), bad(st.sampled_from([3, "flip"]), "transform")),
       data_dir=either(good(st.none()), bad(st.sampled_from([3, 2.5, b"x"]), "data_dir")))
def test_load_dataset_arguments(name, split, download, transform, data_dir, reliability_log):
    dataset = check_call(
        reliability_log, "load_dataset",
        lambda: load_dataset(name.value, split.value, download=download.value,
                             transform=transform.value, data_dir=data_dir.value),
        dict(name=name, split=split, download=download, transform=transform,
             data_dir=data_dir))
    if dataset is not None:
        assert len(dataset) > 0


ON_DISK = {"cifar10": "test", "cifar100": "test", "mnist": "test", "fashion_mnist": "test",
           "svhn": "test", "cifar10_c": "fog-3", "imagenet": "val"}
DAMAGED_FILES = {  # a present but damaged copy of the official layout
    "cifar10": {f"cifar-10-batches-py/{name}": b"\x80\x04garbage" for name in (
        *(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")},
    "mnist": {f"MNIST/raw/{name}": b"\x00\x00\x08\x03garbage" for name in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte")},
    "svhn": {"svhn/test_32x32.mat": b"MATLAB 5.0 MAT-file, truncated"},
    "cifar10_c": {"CIFAR-10-C/fog.npy": b"\x93NUMPY\x01\x00garbage",
                  "CIFAR-10-C/labels.npy": b"\x93NUMPY"},
}


@pytest.mark.parametrize("name", sorted(ON_DISK))
def test_missing_dataset_names_the_folder_and_how_to_get_it(name, tmp_path, reliability_log):
    check_call(reliability_log, "load_dataset (files missing)",
               lambda: load_dataset(name, ON_DISK[name], data_dir=tmp_path),
               {"data_dir": Arg(tmp_path, (re.escape(str(tmp_path)),))},
               errors=(FileNotFoundError,))


@pytest.mark.parametrize("name", sorted(DAMAGED_FILES))
def test_damaged_dataset_files_raise_value_error(name, tmp_path, reliability_log):
    for relative, content in DAMAGED_FILES[name].items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(content)
    check_call(reliability_log, "load_dataset (files damaged)",
               lambda: load_dataset(name, ON_DISK[name], data_dir=tmp_path),
               {"files": Arg(tmp_path, ("truncated or corrupt",))}, errors=(ValueError,))


IMAGE_MUTATIONS = {
    "none": (lambda x: x, ()),
    "NaN pixel": (lambda x: _poke(math.nan)(x, None)[0], ("NaN",)),
    "above 1": (lambda x: x + 1.5, (r"\[0, 1\]",)),
    "normalised (negative)": (lambda x: x - 0.5, (r"\[0, 1\]",)),
    "uint8": (lambda x: (x * 255).to(torch.uint8), ("floating",)),
    "2 channels": (lambda x: torch.cat([x[:, :1], x[:, :1]], 1), ("channels",)),
    "3-D": (lambda x: x[:, 0], ("dimensions",)),
    "3x3 pixels": (lambda x: x[..., :3, :3], ("4x4",)),
    "not a tensor": (lambda x: x.tolist(), ("torch.Tensor",)),
}


@FUZZ
@given(batch=st.integers(0, 2), channels=st.sampled_from([1, 3]), height=st.integers(4, 10),
       width=st.integers(4, 10), dtype=st.sampled_from([torch.float32, torch.float64]),
       mutation=mutation_of(IMAGE_MUTATIONS),
       kind=either(good(st.sampled_from(CORRUPTIONS)),
                   bad(st.sampled_from(["rain", "Fog", "", None]), "corruption kind")),
       severity=either(good(st.integers(1, 5)), bad(bad_int(1, 5), "severity")),
       seed=either(good(st.integers(0, 2**31)), bad(bad_int(0, none_ok=True), "seed")))
def test_corrupt(batch, channels, height, width, dtype, mutation, kind, severity, seed,
                 reliability_log):
    mutate, needles = IMAGE_MUTATIONS[mutation]
    images = torch.rand(batch, channels, height, width, dtype=dtype)
    if batch == 0 and mutation in ("NaN pixel", "above 1", "normalised (negative)"):
        needles = ()  # an empty batch holds no value to be wrong
    images = mutate(images)
    before = unchanged(images)
    out = check_call(reliability_log, "corrupt",
                     lambda: corrupt(images, kind.value, severity.value, seed=seed.value),
                     {"images": Arg(images, needles), "kind": kind, "severity": severity,
                      "seed": seed})
    assert_unchanged(before, images)
    if out is not None:
        assert out.shape == images.shape and out.dtype == images.dtype
        assert torch.isfinite(out).all() and ((out >= 0) & (out <= 1)).all()


# -- training and evaluation -----------------------------------------------------------------

TRAIN_FIELDS = {
    "epochs": bad_int(1), "batch_size": bad_int(1),
    "optimizer": st.sampled_from(["rmsprop", "SGD", "", None]),
    "lr": bad_float(0.0, min_inclusive=False),
    "momentum": bad_float(0.0, 1.0, max_inclusive=False),
    "nesterov": st.sampled_from(["yes", 1, None]),
    "betas": st.sampled_from([(0.9,), (0.9, 1.0), (-0.1, 0.9), None, 0.9, "ab"]),
    "weight_decay": bad_float(0.0),
    "schedule": st.sampled_from(["step", "Cosine", None]),
    "milestones": st.sampled_from([(0,), (5, 2), (99,), 5, None, ("a",)]),
    "gamma": bad_float(0.0, min_inclusive=False),
    "warmup_epochs": bad_float(0.0, 3.0, max_inclusive=False),
    "precision": st.sampled_from(["fp8", "float32", None]),
    "seed": bad_int(0),
    "compile": st.sampled_from(["no", 0]),
    "deterministic": st.sampled_from(["no", 1]),
    "progress": st.sampled_from(["yes", None]),
    "device": st.sampled_from(["tpu", "gpu", "cuda:99", "", 3, "cpu:x"]
                              + ([] if torch.cuda.is_available() else ["cuda"])),
    "threads": bad_int(1, none_ok=True), "num_workers": bad_int(0),
    "dataset": st.sampled_from(["Digits", "cifar-10", ""]),
    "augment": st.sampled_from([3, "flip"]),
    "normalize": st.sampled_from([False, 3, "imagenet"]),
}


@FUZZ
@given(field=st.sampled_from(sorted(TRAIN_FIELDS)), data=st.data())
def test_train_config_names_the_bad_field(field, data, reliability_log):
    value = data.draw(TRAIN_FIELDS[field], label=field)
    base = dict(epochs=3, schedule="multistep" if field == "milestones" else "cosine",
                milestones=(1,) if field != "milestones" else value)
    check_call(reliability_log, "TrainConfig", lambda: TrainConfig(**{**base, field: value}),
               {field: Arg(value, (field.rstrip("s") if field == "milestones" else field,))})


@FUZZ
@given(epochs=st.integers(1, 5), batch_size=st.integers(1, 256),
       optimizer=st.sampled_from(["sgd", "adamw"]), lr=st.floats(1e-6, 10),
       schedule=st.sampled_from(["cosine", "constant", "multistep"]),
       warmup=st.floats(0.0, 0.99), seed=st.integers(0, 2**32),
       device=st.sampled_from([None, "cpu"]))
def test_valid_train_configs_are_accepted(epochs, batch_size, optimizer, lr, schedule, warmup,
                                          seed, device, reliability_log):
    milestones = (1,) if schedule == "multistep" and epochs > 1 else ()
    if schedule == "multistep" and not milestones:
        schedule = "constant"
    config = check_call(
        reliability_log, "TrainConfig",
        lambda: TrainConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                            schedule=schedule, milestones=milestones,
                            warmup_epochs=warmup * epochs, seed=seed, device=device), {})
    assert config.to_dict()["epochs"] == epochs


TINY = dict(hidden=(12,), seed=0)  # 12: masks of 8 at n=2, the skip rule's minimum


def tiny_problem(rows: int = 8):
    generator = torch.Generator().manual_seed(0)
    return torch.rand(rows, 4, generator=generator), torch.randint(0, 3, (rows,),
                                                                  generator=generator)


DATA_MUTATIONS = {
    "none": (lambda x, y: (x, y), ()),
    "NaN image": (lambda x, y: (_poke(math.nan)(x, y)[0], y), ("NaN",)),
    "inf image": (lambda x, y: (_poke(math.inf)(x, y)[0], y), ("infinite",)),
    "integer images": (lambda x, y: ((x * 255).long(), y), ("floating",)),
    "float64 images": (lambda x, y: (x.double(), y), ("dtype|float64",)),
    "5 features": (lambda x, y: (torch.cat([x, x[:, :1]], 1), y), ("shape",)),
    "label = K": (lambda x, y: (x, _relabel(y, 3)), ("labels",)),
    "label = -1": (lambda x, y: (x, _relabel(y, -1)), ("labels",)),
    "float labels": (lambda x, y: (x, y.float() + 0.5), ("labels",)),
    "one label short": (lambda x, y: (x, y[1:]), ("agree on N|pair must be|one label",)),
    "no examples": (lambda x, y: (x[:0], y[:0]), ("empty|non-empty",)),
    "labels not a tensor": (lambda x, y: (x, "labels"), ("torch.Tensor|labels|pair",)),
}


@FEW
@given(mutation=mutation_of(DATA_MUTATIONS),
       method=st.sampled_from(["single", "masksembles", "deep_ensemble"]),
       rows=st.integers(1, 12), batch_size=st.sampled_from([2, 4, 3]))
def test_train_model(mutation, method, rows, batch_size, reliability_log):
    mutate, needles = DATA_MUTATIONS[mutation]
    model = build_model("mlp", method, 3, 4, **TINY, **({} if method == "single" else {"n": 2}))
    images, labels = mutate(*tiny_problem(rows))
    config = TrainConfig(epochs=1, batch_size=batch_size, progress=False, threads=1)
    arguments = {"train_data": Arg(images, needles)}
    if method == "masksembles" and batch_size % 2:
        arguments["batch_size"] = Arg(batch_size, ("batch_size",))
    elif method == "masksembles" and rows < 2:
        # too few rows for one batch of the member groups: refused before a forward shows a
        # shape mutation, so either message names a real fault
        arguments["rows"] = Arg(rows, ("fewer than one training batch",))
    before = unchanged(images, labels)
    history = check_call(reliability_log, "train_model",
                         lambda: train_model(model, (images, labels), config), arguments)
    assert_unchanged(before, images, labels)
    if history is not None:
        assert len(history) == 1 and math.isfinite(history[0]["loss"])


def test_train_model_refuses_bad_checkpoint_and_resume_arguments(tmp_path, reliability_log):
    model, data = build_model("mlp", "single", 3, 4, **TINY), tiny_problem()
    config = TrainConfig(epochs=1, batch_size=4, progress=False, threads=1)
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for call, needle in [
        (lambda: train_model(model, data, config, checkpoint_dir=a_file), "checkpoint_dir"),
        (lambda: train_model(model, data, config, resume=True), "checkpoint_dir"),
        (lambda: train_model(model, data, {"epochs": 1}), "TrainConfig"),
        (lambda: train_model("model", data, config), "torch.nn.Module"),
        (lambda: train_model(model, "data", config), "train_data"),
    ]:
        check_call(reliability_log, "train_model", call, {"argument": Arg(None, (needle,))})


EVALUATED = build_model("mlp", "masksembles", 3, 4, n=2, **TINY)


@FUZZ
@given(mutation=mutation_of({key: value for key, value in DATA_MUTATIONS.items()
                             if key != "float64 images"}),
       batch_size=either(good(st.integers(1, 9)), bad(bad_int(1), "batch_size")),
       seed=either(good(st.integers(0, 99)), bad(bad_int(0), "seed")),
       n_bins=either(good(st.integers(1, 20)), bad(bad_int(1), "n_bins")),
       num_samples=either(good(st.sampled_from([None, 2])),
                          bad(st.sampled_from([0, 3, "2"]), "num_samples")),
       ood=st.sampled_from(["none", "valid", "valid", "NaN", "wrong shape"]))
def test_evaluate_model(mutation, batch_size, seed, n_bins, num_samples, ood, reliability_log):
    mutate, needles = DATA_MUTATIONS[mutation]
    images, labels = mutate(*tiny_problem())
    ood_data = {"none": None, "valid": torch.rand(5, 4), "NaN": torch.full((5, 4), math.nan),
                "wrong shape": torch.rand(5, 6)}[ood]
    ood_needles = {"none": (), "valid": (), "NaN": ("NaN",), "wrong shape": ("shape",)}[ood]
    result = check_call(
        reliability_log, "evaluate_model",
        lambda: evaluate_model(EVALUATED, (images, labels), ood_data=ood_data,
                               batch_size=batch_size.value, seed=seed.value,
                               n_bins=n_bins.value, num_samples=num_samples.value),
        {"test_data": Arg(images, needles), "ood_data": Arg(ood_data, ood_needles),
         "batch_size": batch_size, "seed": seed, "n_bins": n_bins, "num_samples": num_samples})
    if result is not None:
        for key in ("accuracy", "nll", "brier", "ece"):
            assert math.isfinite(result["test"][key])


@pytest.mark.parametrize(("arguments", "needle"), [
    (dict(corruptions=("rain",)), "corruption"),
    (dict(corruptions=("fog",), severities=()), "severities"),
    (dict(corruptions=("fog",), severities=(6,)), "severity"),
    (dict(severities=("3",)), "severity"),
    (dict(dataset="nope"), "dataset"),
    (dict(normalize=3), "normalize"),
])
def test_evaluate_model_shift_arguments(arguments, needle, reliability_log):
    model = build_model("lenet", "single", 10, 1, input_size=8, seed=0)
    data = torch.rand(4, 1, 8, 8), torch.arange(4)
    check_call(reliability_log, "evaluate_model",
               lambda: evaluate_model(model, data, **arguments),
               {"argument": Arg(arguments, (needle,))})


# -- checkpoints: bad arguments and foreign files (damaged files: test_reliability.py) ---------

def test_save_refuses_what_it_cannot_store(tmp_path, reliability_log):
    model = build_model("mlp", "single", 3, 4, **TINY)
    for call, needle in [
        (lambda: save("model", tmp_path / "a.pt"), "torch.nn.Module"),
        (lambda: save(torch.nn.Linear(2, 2), tmp_path / "a.pt"), "config"),
        (lambda: save(model, tmp_path / "a.pt", metadata={"x": object()}), "metadata"),
    ]:
        check_call(reliability_log, "checkpoint.save", call, {"argument": Arg(None, (needle,))})


def test_save_names_a_bad_path(tmp_path, reliability_log):
    model = build_model("mlp", "single", 3, 4, **TINY)
    for target in (tmp_path, 3):
        check_call(reliability_log, "checkpoint.save", lambda target=target: save(model, target),
                   {"path": Arg(target, ("path",))})


_DROP = object()


def _payload_variants(good_payload: dict) -> dict:
    """Files that torch can read but that are not (complete) ensemblekit checkpoints."""
    def edited(**changes):
        payload = {**good_payload, "model_config": dict(good_payload["model_config"])}
        for key, value in changes.items():
            target = payload
            if key.startswith("config_"):
                target, key = payload["model_config"], key[len("config_"):]
            if value is _DROP:
                target.pop(key)
            else:
                target[key] = value
        return payload

    return {
        "bare state_dict": (good_payload["state_dict"], "state_dict"),
        "a list": ([1, 2], "not a checkpoint"),
        "newer format version": (edited(format_version=99), "upgrade"),
        "no format": (edited(format=_DROP), "not an ensemblekit checkpoint"),
        "unknown kind": (edited(kind="weights"), "kind"),
        "training kind without resume state": (edited(kind="training"), "incomplete"),
        "unknown backbone in config": (edited(config_name="vgg"), "backbone"),
        "config n=0": (edited(config_n=0), r"\bn\b"),
        "config of another shape": (edited(config_hidden=[9]), "shape"),
        "config without name": (edited(config_name=_DROP), "config"),
    }


def test_load_refuses_foreign_and_incomplete_files(tmp_path, reliability_log):
    model = build_model("mlp", "masksembles", 3, 4, n=2, **TINY)
    good_path = save(model, tmp_path / "good.pt")
    good_payload = torch.load(good_path, weights_only=True)
    for name, (payload, needle) in _payload_variants(good_payload).items():
        path = tmp_path / f"{name.replace(' ', '-')}.pt"
        torch.save(payload, path)
        check_call(reliability_log, "checkpoint.load (foreign file)", lambda path=path: load(path),
                   {name: Arg(path, (needle,))})
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    for path in (tmp_path / "notes.txt", tmp_path / "missing.pt", tmp_path):
        check_call(reliability_log, "checkpoint.load (foreign file)", lambda path=path: load(path),
                   {"path": Arg(path, (re.escape(str(path)),))},
                   errors=(ValueError, FileNotFoundError))


def test_load_refuses_a_state_dict_of_the_wrong_structure(tmp_path, reliability_log):
    model = build_model("mlp", "single", 3, 4, **TINY)
    payload = torch.load(save(model, tmp_path / "good.pt"), weights_only=True)
    key = next(iter(payload["state_dict"]))
    for state_dict in (None, [1, 2], {**payload["state_dict"], key: "weights"}):
        torch.save({**payload, "state_dict": state_dict}, tmp_path / "odd.pt")
        check_call(reliability_log, "checkpoint.load (foreign file)",
                   lambda: load(tmp_path / "odd.pt"), {"state_dict": Arg(None, ("state_dict",))})


def test_load_names_a_bad_map_location(tmp_path, reliability_log):
    path = save(build_model("mlp", "single", 3, 4, **TINY), tmp_path / "good.pt")
    devices = ["tpu", "cuda:99"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in devices:
        check_call(reliability_log, "checkpoint.load", lambda d=device: load(path, map_location=d),
                   {"map_location": Arg(device, ("map_location",))})
