"""Regression models deployed: compiled members and ONNX export agree with predict_members."""

from __future__ import annotations

import pytest
import torch

import ensemblekit as ek
from ensemblekit.members import GaussianMembers
from ensemblekit.methods import available_methods
from ensemblekit.metrics import moment_match

D = 2
SHAPES = {"mlp": (5,), "lenet": (1, 8, 8)}
OPTIONS = {"mlp": {"hidden": (64,)}, "lenet": {"input_size": 8, "width": 0.5}}


def regression_model(method: str, backbone: str = "mlp", **options):
    return ek.build_model(backbone, method, task="regression", num_outputs=D,
                          in_channels=SHAPES[backbone][0], seed=0,
                          **{**OPTIONS[backbone], **options})


def close(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-5) -> bool:
    """Within ``rtol`` of the largest magnitude (compiled paths reorder float sums)."""
    return bool((got - want).abs().max() <= rtol * want.abs().max().clamp_min(1.0))


@pytest.mark.parametrize("strategy", ["stacked", "loop"])
@pytest.mark.parametrize("method", available_methods())
def test_compiled_members_of_every_method_are_gaussian_members(method, strategy):
    model = regression_model(method)
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    fast = ek.compile_members(model, strategy=strategy)
    with torch.no_grad():
        want = ek.predict_members(model, x)
        got = fast(x)
        through = ek.predict_members(fast, x)
    assert isinstance(got, GaussianMembers) and fast.num_members == model.num_members
    assert got.means.shape == want.means.shape == (model.num_members, 7, D)
    assert close(got.means, want.means) and close(got.variances, want.variances)
    assert torch.equal(through.means, got.means)
    with pytest.raises(RuntimeError, match="inference-only"):
        fast.train()


@pytest.mark.parametrize("method", ["masksembles", "deep_ensemble"])
def test_compiled_lenet_members(method):
    model = regression_model(method, "lenet")
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    fast = ek.compile_members(model)
    with torch.no_grad():
        want, got = ek.predict_members(model, x), fast(x)
    assert close(got.means, want.means) and close(got.variances, want.variances)


@pytest.mark.parametrize("method", ["masksembles", "deep_ensemble", "mc_dropout"])
def test_onnx_export_gives_the_moment_matched_mixture(method, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = regression_model(method)
    x = torch.randn(9, 5, generator=torch.Generator().manual_seed(2))
    path = ek.export(model, tmp_path / "model.onnx", x[:3])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["mean", "total_variance",
                                                       "epistemic_variance"]
    got = [torch.from_numpy(v) for v in session.run(None, {"input": x.numpy()})]  # B=9: dynamic
    with torch.no_grad():
        moments = moment_match(*ek.predict_members(model, x))
    for have, want in zip(got, (moments.mean, moments.variance, moments.epistemic), strict=True):
        assert have.shape == (9, D)
        assert close(have.double(), want)
    assert bool((got[2] > 0).all()) == (model.num_members > 1)  # members disagree


def test_export_outputs_are_checked_per_task(tmp_path):
    model = regression_model("single")
    with pytest.raises(ValueError, match="regression model's.*probs"):
        ek.export(model, tmp_path / "m.pt2", torch.randn(2, 5), outputs=("probs",),
                  format="torch_export")
    path = ek.export(model, tmp_path / "m.pt2", torch.randn(2, 5), format="torch_export",
                     outputs=("member_means", "member_variances", "aleatoric_variance"))
    program = torch.export.load(path).module()
    x = torch.randn(4, 5)
    means, variances, aleatoric = program(x)
    with torch.no_grad():
        want = ek.predict_members(model, x)
    assert close(means, want.means) and close(variances, want.variances)
    assert close(aleatoric, want.variances.mean(0))
