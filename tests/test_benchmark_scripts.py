"""The benchmark scripts stay runnable and complete: every registered method has a row, and the
cheap-ensembles script's candidates build and predict (tiny batch, no timing)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from ensemblekit.methods import available_methods

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import cheap_ensembles  # noqa: E402
import methods as methods_benchmark  # noqa: E402


def test_every_registered_method_has_a_row():
    assert {method for method, _ in cheap_ensembles.METHODS.values()} == set(available_methods())
    assert set(methods_benchmark.METHODS) == set(available_methods())


def test_cheap_ensembles_candidates_predict_members():
    x = cheap_ensembles.benchmark_input("lenet", 2)
    built = {name: make() for name, make in cheap_ensembles.candidates("lenet", x).items()}
    assert {"packed_ensemble (compiled, stacked)", "packed_ensemble (compiled, loop)"} <= set(built)
    with torch.no_grad():
        for name, (predict, _, how) in built.items():
            members = 1 if name.startswith("single") else cheap_ensembles.MEMBERS
            assert predict(x).shape == (members, 2, 10), name
            assert how.startswith("compile_members") == ("(compiled" in name) or \
                name == cheap_ensembles.COMPILED


@pytest.mark.slow  # importing TorchUncertainty (and lightning) costs ~5 s of CPU
def test_peer_layers_compute_what_ours_compute():
    if cheap_ensembles.peer_reason():
        pytest.skip(cheap_ensembles.peer_reason())
    for _, base_in, base_out, size in cheap_ensembles.LAYER_SHAPES[2:5]:
        ours, peer = cheap_ensembles.layer_pair(base_in, base_out, size, "einsum")
        x = torch.randn((3, 2 * base_in) + ((size, size) if size else ()))
        with torch.no_grad():
            torch.testing.assert_close(ours(x), peer(x), rtol=1e-4, atol=1e-4)
