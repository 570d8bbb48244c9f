"""Deep ensembles: independent members, vectorised inference, per-member data order."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ensemblekit.members import split_members
from ensemblekit.methods import DeepEnsembleModel, build_model, predict_members
from ensemblekit.samplers import MemberBatchSampler


def resnet(method, **options):
    return build_model("resnet20", method, 10, 3, width=0.5, **options)


def test_members_are_single_models_with_consecutive_seeds_and_differ():
    ensemble = resnet("deep_ensemble", n=3, seed=7)
    weights = ensemble.member_weights()
    assert weights.shape[0] == 3
    for m in range(3):
        single = resnet("single", seed=7 + m)
        assert torch.equal(weights[m], single.member_weights()[0])
    assert not torch.allclose(weights[0], weights[1])
    with torch.no_grad():
        members = predict_members(ensemble, torch.randn(4, 3, 8, 8))
    assert not torch.allclose(members[0], members[1])


def test_vmap_inference_equals_the_loop_with_batchnorm_statistics():
    torch.manual_seed(0)
    ensemble = resnet("deep_ensemble", n=3, seed=0)
    ensemble.train()
    for _ in range(2):  # each member's BatchNorm running statistics move differently
        x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
        F.cross_entropy(ensemble(x), ensemble.training_targets(y)).backward()
    means = [m.stem_bn.running_mean for m in ensemble.members]
    assert not torch.allclose(means[0], means[1])
    ensemble.eval()
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        vectorised = ensemble.forward_members_vmap(x)
        looped = ensemble.forward_members_loop(x)
        predicted = predict_members(ensemble, x)
    torch.testing.assert_close(vectorised, looped, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(predicted, looped, rtol=1e-4, atol=1e-5)
    # the vectorised path leaves the members' own parameters in place and differentiable
    assert all(isinstance(p, nn.Parameter) for p in ensemble.parameters())
    ensemble.forward_members_vmap(x).sum().backward()
    assert all(m.stem.weight.grad is not None for m in ensemble.members)


class _NotVmappable(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, x):
        if self.linear.weight.abs().sum().item() < 0:  # vmap refuses .item() on a member tensor
            raise AssertionError
        return self.linear(x)


def test_inference_mode_choice():
    ensemble = resnet("deep_ensemble", n=2, seed=0).eval()
    x = torch.randn(2, 3, 8, 8)
    calls = []
    ensemble.forward_members_vmap = lambda x: calls.append("vmap") or torch.zeros(2, 2, 10)
    ensemble.forward_members_loop = lambda x: calls.append("loop") or torch.zeros(2, 2, 10)
    for mode in ("auto", "vmap", "loop"):
        ensemble.inference = mode
        predict_members(ensemble, x)
    assert calls == ["loop", "vmap", "loop"]  # auto: a loop on the CPU
    with pytest.raises(ValueError, match="inference"):
        resnet("deep_ensemble", inference="fast")


def test_loop_fallback_when_a_member_cannot_be_vmapped():
    ensemble = DeepEnsembleModel([_NotVmappable(), _NotVmappable()], inference="vmap")
    x = torch.randn(4, 3)
    with pytest.warns(RuntimeWarning, match="falling back to a loop"):
        members = predict_members(ensemble, x)
    torch.testing.assert_close(members, torch.stack([m(x) for m in ensemble.members]))
    predict_members(ensemble, x)  # no second warning, straight to the loop


def test_each_member_gets_the_gradient_of_its_own_loss():
    ensemble = resnet("deep_ensemble", n=3, seed=0)
    single = resnet("single", seed=1)  # member 1's twin
    x, y = torch.randn(6, 3, 8, 8), torch.randint(0, 10, (6,))
    ensemble.train(), single.train()
    F.cross_entropy(ensemble(x), ensemble.training_targets(y)).backward()
    F.cross_entropy(single(x), y).backward()
    for ours, theirs in zip(ensemble.members[1].parameters(), single.parameters(), strict=True):
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-4, atol=1e-6)


def test_independent_batches_through_the_member_batch_sampler():
    ensemble = resnet("deep_ensemble", n=2, seed=0, independent_batches=True)
    assert ensemble.independent_member_batches and ensemble.batch_multiple == 1
    data = TensorDataset(torch.randn(10, 3, 8, 8), torch.arange(10))
    sampler = MemberBatchSampler(len(data), 4, ensemble.num_members, seed=0)
    loader = DataLoader(data, batch_sampler=sampler)
    x, y = next(iter(loader))
    assert x.shape == (8, 3, 8, 8)
    assert torch.equal(ensemble.training_targets(y), y)
    ensemble.eval()
    with torch.no_grad():
        logits = ensemble(x)
        for m, rows in enumerate(split_members(x, 2)):
            torch.testing.assert_close(logits[m * 4 : (m + 1) * 4], ensemble.members[m](rows))
    with pytest.raises(ValueError, match="MemberBatchSampler"):
        ensemble(torch.randn(3, 3, 8, 8))
    with torch.no_grad():  # inference still takes an ordinary batch
        assert predict_members(ensemble, torch.randn(3, 3, 8, 8)).shape == (2, 3, 10)


def test_member_batch_sampler_orders():
    sampler = MemberBatchSampler(10, 4, 3, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3
    assert [len(b) for b in batches] == [12, 12, 6]  # M * B, last one M * 2
    per_member = [
        sum((split_members(torch.tensor(b), 3)[m].tolist() for b in batches), []) for m in range(3)
    ]
    for order in per_member:
        assert sorted(order) == list(range(10))  # each member sees every example once
    assert per_member[0] != per_member[1]
    assert list(MemberBatchSampler(10, 4, 3, seed=1)) == batches  # seeded: reproducible
    sampler.set_epoch(1)
    assert list(sampler) != batches
    dropped = MemberBatchSampler(10, 4, 3, seed=1, drop_last=True)
    assert len(dropped) == 2 and [len(b) for b in dropped] == [12, 12]
    with pytest.raises(ValueError, match="batch_size"):
        MemberBatchSampler(10, 0, 3)
