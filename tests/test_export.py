"""ensemblekit.export on every method of build_model: the ONNX graph and the torch.export
program compute predict_members' uncertainty outputs at any batch size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ensemblekit as ek
from ensemblekit.methods import available_methods
from test_user_networks import uncertainty_reference

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

OPTIONS = {
    "single": {},
    "mc_dropout": {"p": 0.3, "n": 3},
    "masksembles": {"n": 4, "scale": 2.0},
    "batchensemble": {"n": 2},
    "packed_ensemble": {"n": 4, "alpha": 2.0},
    "mimo": {"n": 3},
    "deep_ensemble": {"n": 2},
}


def test_every_method_is_covered():
    assert set(OPTIONS) == set(available_methods())


@pytest.mark.parametrize("method", sorted(OPTIONS))
def test_onnx_graph_matches_predict_members(method, tmp_path):
    model = ek.build_model("lenet", method, num_classes=10, in_channels=1, input_size=8, seed=0,
                           **OPTIONS[method])
    images = torch.rand(13, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    model.train()  # export traces in eval mode and gives every module its mode back
    path = ek.export(model, tmp_path / "model.onnx", images[:2],
                     outputs=("mutual_information", "probs", "entropy"))
    assert model.training and all(module.training for module in model.modules())
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [output.name for output in session.get_outputs()] == [
        "mutual_information", "probs", "entropy"]
    for size in (1, 13):
        information, probs, entropy = session.run(None, {"input": images[:size].numpy()})
        with torch.no_grad():
            mean, expected_entropy, expected_information = uncertainty_reference(
                ek.predict_members(model, images[:size]))
        np.testing.assert_allclose(probs, mean, rtol=0, atol=1e-5)
        np.testing.assert_allclose(entropy, expected_entropy, rtol=0, atol=1e-5)
        np.testing.assert_allclose(information, expected_information, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", sorted(set(OPTIONS) - {"mc_dropout"}))
def test_compiled_members_export_for_every_method(method, tmp_path):
    # members="compiled" refuses what members="auto" would quietly replace by the model's own
    # forward: every method but MC-Dropout (masks baked in) has a compiled path to export.
    model = ek.build_model("lenet", method, num_classes=10, in_channels=1, input_size=8, seed=0,
                           **OPTIONS[method])
    images = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    path = ek.export(model, tmp_path / "model.pt2", images[:2], format="torch_export",
                     outputs=("member_logits",), members="compiled")
    program = torch.export.load(path).module()
    with torch.no_grad():
        (logits,) = program(images)
        expected = ek.predict_members(model, images)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)


def test_compiled_members_are_refused_where_they_do_not_apply(tmp_path):
    model = ek.build_model("lenet", "mc_dropout", num_classes=10, in_channels=1, input_size=8,
                           seed=0, **OPTIONS["mc_dropout"])
    with pytest.raises(ValueError, match="does not apply to MC-Dropout"):
        ek.export(model, tmp_path / "m.pt2", torch.rand(2, 1, 8, 8), format="torch_export",
                  members="compiled")
