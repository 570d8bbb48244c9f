"""Post-hoc calibration against scipy.optimize references written here, on synthetic logits."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize, minimize_scalar
from scipy.special import log_softmax, logsumexp

import ensemblekit as ek
from ensemblekit.calibration import (
    EnsembleTemperatureScaler,
    TemperatureScaler,
    VectorScaler,
    fit_ensemble_temperature,
    fit_temperature,
    fit_vector_scaling,
    nll_at_temperature,
    pooled_log_probs,
    scaler_from_metadata,
    scaler_metadata,
    temperature_scaled_metrics,
)
from ensemblekit.checkpoint import load_scaler
from ensemblekit.metrics import evaluate_predictions


def calibrated_data(n, k=10, seed=0, spread=2.0):
    """Logits whose softmax is the true label distribution, and labels drawn from it."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64) * spread
    labels = torch.multinomial(torch.softmax(logits, -1), 1, generator=g).squeeze(1)
    return logits, labels


def numpy_nll(logits, labels):
    return float(np.mean(logsumexp(logits, axis=1) - logits[np.arange(len(labels)), labels]))


def scipy_temperature(logits, labels, bounds=(1e-2, 1e2)):
    z, y = logits.double().numpy(), labels.numpy()
    result = minimize_scalar(lambda log_t: numpy_nll(z / math.exp(log_t), y), method="bounded",
                             bounds=tuple(math.log(b) for b in bounds),
                             options={"xatol": 1e-12, "maxiter": 2000})
    return math.exp(result.x)


@pytest.mark.parametrize("seed, true_temperature", [(0, 2.5), (1, 0.6), (2, 1.0), (3, 7.0)])
def test_temperature_matches_scipy(seed, true_temperature):
    logits, labels = calibrated_data(3000, seed=seed)
    over = (logits * true_temperature).float()
    assert fit_temperature(over, labels) == pytest.approx(scipy_temperature(over, labels),
                                                          rel=1e-6)


@pytest.mark.parametrize("true_temperature", [2.5, 0.5])
def test_recovers_a_known_temperature_within_one_percent(true_temperature):
    # Over-confident (T > 1) or under-confident logits of a calibrated model: T_true * z.
    # N large: the fitted T of calibrated logits has a std of 0.34% over seeds 0-5 here, so
    # 1% is about three standard deviations (this seed: 0.17% off).
    logits, labels = calibrated_data(150_000, seed=7)
    fitted = fit_temperature(logits * true_temperature, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.01)


def test_held_out_nll_falls():
    logits, labels = calibrated_data(8000, seed=4)
    over = logits * 3.0
    temperature = fit_temperature(over[:4000], labels[:4000])
    for part in (slice(0, 4000), slice(4000, None)):  # validation, then held-out test
        before = nll_at_temperature(over[part], labels[part], 1.0)
        after = nll_at_temperature(over[part], labels[part], temperature)
        assert after < before
        assert after == pytest.approx(numpy_nll(over[part].numpy() / temperature,
                                                labels[part].numpy()), abs=1e-12)


def test_a_minimiser_at_a_bound_is_not_applied():
    # Before: every sample right gave the bound T = 0.01, all wrong the upper bound. A bound is
    # not a fit: T = 1 with the reason (tests/test_temperature_identification.py has the rest).
    labels = torch.tensor([0, 1, 2, 1])
    separable = torch.nn.functional.one_hot(labels, 3).double() * 5
    with pytest.warns(ek.calibration.TemperatureNotIdentifiedWarning, match="T -> 0"):
        assert fit_temperature(separable, labels) == 1.0
    with pytest.warns(ek.calibration.TemperatureNotIdentifiedWarning, match="T grows"):
        assert fit_temperature(-separable, labels, bounds=(0.5, 20.0)) == 1.0
    with pytest.warns(ek.calibration.TemperatureNotIdentifiedWarning, match="chance"):
        assert fit_temperature(torch.zeros(4, 3), labels) == 1.0


def test_temperature_scaler_module():
    logits, labels = calibrated_data(2000, seed=5)
    scaler = TemperatureScaler.fit(logits * 2, labels)
    assert scaler.temperature.dtype == torch.float64
    assert torch.allclose(scaler(logits * 2), logits * 2 / scaler.temperature)
    assert "temperature=" in repr(scaler)
    batch = torch.randn(3, 4, 10)  # any leading shape, dtype kept
    assert scaler(batch).dtype == torch.float32 and scaler(batch).shape == (3, 4, 10)


def scipy_vector_scaling(logits, labels):
    z, y = logits.double().numpy(), labels.numpy()
    n, k = z.shape
    onehot = np.eye(k)[y]

    def objective(params):
        w, b = params[:k], params[k:]
        u = z * w + b
        p = np.exp(log_softmax(u, axis=1))
        gradient = np.concatenate([((p - onehot) * z).mean(0), (p - onehot).mean(0)])
        return numpy_nll(u, y), gradient

    result = minimize(objective, np.r_[np.ones(k), np.zeros(k)], jac=True, method="L-BFGS-B",
                      options={"gtol": 1e-12, "ftol": 1e-16, "maxiter": 5000})
    w, b = result.x[:k], result.x[k:]
    return w, b - b.mean(), result.fun


def test_vector_scaling_matches_scipy():
    logits, labels = calibrated_data(3000, k=5, seed=6)
    distorted = logits * torch.tensor([3.0, 1.0, 0.5, 2.0, 1.5], dtype=torch.float64) + \
        torch.tensor([0.5, -0.3, 0.0, 0.2, -0.4], dtype=torch.float64)
    scale, bias = fit_vector_scaling(distorted.float(), labels)
    w, b, best = scipy_vector_scaling(distorted.float(), labels)
    assert np.allclose(scale.numpy(), w, atol=1e-5) and np.allclose(bias.numpy(), b, atol=1e-5)
    fitted = numpy_nll((distorted.float().double() * scale + bias).numpy(), labels.numpy())
    assert fitted == pytest.approx(best, abs=1e-9)
    assert fitted < numpy_nll(distorted.float().double().numpy(), labels.numpy())
    assert abs(bias.mean().item()) < 1e-12


def test_vector_scaler_module_and_held_out_nll():
    logits, labels = calibrated_data(8000, k=4, seed=8)
    distorted = logits * torch.tensor([2.5, 1.0, 3.0, 0.7], dtype=torch.float64)
    scaler = VectorScaler.fit(distorted[:4000], labels[:4000])
    test, test_labels = distorted[4000:], labels[4000:].numpy()
    assert numpy_nll(scaler(test).numpy(), test_labels) < numpy_nll(test.numpy(), test_labels)


def scipy_pooled_temperature(member_logits, labels):
    z, y = member_logits.double().numpy(), labels.numpy()
    pooled = logsumexp(log_softmax(z, axis=-1), axis=0) - math.log(z.shape[0])
    result = minimize_scalar(lambda log_t: numpy_nll(pooled / math.exp(log_t), y),
                             method="bounded", bounds=(math.log(1e-2), math.log(1e2)),
                             options={"xatol": 1e-12, "maxiter": 2000})
    return math.exp(result.x)


def ensemble_data(m=4, n=3000, k=6, seed=9, temperature=3.0):
    logits, labels = calibrated_data(n, k=k, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    members = (logits + 0.7 * torch.randn(m, n, k, generator=g, dtype=torch.float64))
    return (members * temperature).float(), labels


def test_pool_then_calibrate_matches_scipy():
    member_logits, labels = ensemble_data()
    temperatures = fit_ensemble_temperature(member_logits, labels, mode="pool")
    assert temperatures.shape == (1,)
    assert temperatures.item() == pytest.approx(scipy_pooled_temperature(member_logits, labels),
                                                rel=1e-6)
    pooled = pooled_log_probs(member_logits)
    reference = logsumexp(log_softmax(member_logits.double().numpy(), -1), 0) - math.log(4)
    assert np.allclose(pooled.numpy(), reference, atol=1e-12)


def test_calibrate_members_then_pool_fits_each_member_alone():
    member_logits, labels = ensemble_data(m=3)
    temperatures = fit_ensemble_temperature(member_logits, labels, mode="members")
    assert temperatures.shape == (3,)
    for member, temperature in zip(member_logits, temperatures.tolist(), strict=True):
        assert temperature == pytest.approx(scipy_temperature(member, labels), rel=1e-6)
    scaler = EnsembleTemperatureScaler(temperatures, "members")
    scaled = scaler(member_logits)
    assert scaled.shape == member_logits.shape
    assert torch.allclose(scaled[1], member_logits[1] / temperatures[1].float())


def test_one_member_pool_equals_plain_temperature_scaling():
    member_logits, labels = ensemble_data(m=1)
    pooled = fit_ensemble_temperature(member_logits, labels, mode="pool").item()
    assert pooled == pytest.approx(fit_temperature(member_logits[0], labels), rel=1e-9)


@pytest.mark.parametrize("mode", ["pool", "members"])
def test_temperature_scaled_metrics(mode):
    member_logits, labels = ensemble_data(n=4000)
    ood = ensemble_data(n=500, seed=20)[0] * 0.3
    val, test = member_logits[:, :2000], member_logits[:, 2000:]
    results = temperature_scaled_metrics(val, labels[:2000], test, labels[2000:],
                                         ood_member_logits=ood, mode=mode)
    calibration = results["calibration"]
    assert calibration["mode"] == mode
    assert calibration["validation_nll"]["after"] <= calibration["validation_nll"]["before"]
    temperatures = torch.tensor(calibration["temperatures"], dtype=torch.float64)
    scaler = EnsembleTemperatureScaler(temperatures, mode)
    expected = evaluate_predictions(scaler(test), labels[2000:], ood_member_logits=scaler(ood))
    assert results["nll"] == pytest.approx(expected["nll"], abs=1e-12)
    raw = evaluate_predictions(test, labels[2000:])
    assert results["nll"] < raw["nll"] and results["ece"] < raw["ece"]  # T = 3 over-confidence
    if mode == "pool":  # one pooled prediction: the member-comparing scores are undefined
        assert results["n_members"] == 1 and results["ood"]["mutual_information"]["auroc"] is None
    else:
        assert isinstance(results["ood"]["mutual_information"]["auroc"], float)


def test_scalers_save_with_the_model(tmp_path):
    member_logits, labels = ensemble_data(m=2, n=500)
    scalers = [TemperatureScaler.fit(member_logits[0], labels),
               VectorScaler.fit(member_logits[0], labels),
               EnsembleTemperatureScaler.fit(member_logits, labels, mode="members")]
    model = ek.build_model("lenet", "single", num_classes=10, in_channels=1, input_size=8,
                           seed=0)
    for index, scaler in enumerate(scalers):
        path = tmp_path / f"model{index}.pt"
        ek.save(model, path, metadata={"calibration": scaler_metadata(scaler)})
        reloaded = load_scaler(path)
        assert type(reloaded) is type(scaler)
        inputs = member_logits if isinstance(scaler, EnsembleTemperatureScaler) else \
            member_logits[1]
        assert torch.equal(reloaded(inputs), scaler(inputs))
        # The buffers are a plain state_dict too, readable with weights_only=True.
        torch.save(scaler.state_dict(), tmp_path / "scaler.pt")
        state = torch.load(tmp_path / "scaler.pt", weights_only=True)
        fresh = scaler_from_metadata(scaler_metadata(scaler))
        fresh.load_state_dict(state)
        assert torch.equal(fresh(inputs), scaler(inputs))
    with pytest.raises(ValueError, match="holds no scaler"):
        ek.save(model, tmp_path / "plain.pt")
        load_scaler(tmp_path / "plain.pt")


@pytest.mark.parametrize("logits, labels, match", [
    (torch.randn(10), torch.zeros(10, dtype=torch.long), "2 dimensions"),
    (torch.randn(2, 10, 3), torch.zeros(10, dtype=torch.long), "2 dimensions"),
    (torch.tensor([[0.0, float("nan")], [1.0, 2.0]]), torch.tensor([0, 1]), "NaN"),
    (torch.randn(4, 3), torch.tensor([0, 1, 2, 3]), r"\[0, 2\].*label 3"),
    (torch.randn(4, 3), torch.tensor([0, 1, 2]), r"expected shape \(4,\)"),
    (torch.randn(4, 3), torch.tensor([0.0, 1.0, 2.0, 1.0]), "integer class indices"),
    (torch.softmax(torch.randn(4, 3), -1), torch.tensor([0, 1, 2, 1]), "take logits"),
    (torch.randn(4, 1), torch.zeros(4, dtype=torch.long), "at least 2 classes"),
    (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), "empty"),
])
def test_bad_input_is_rejected(logits, labels, match):
    with pytest.raises(ValueError, match=match):
        fit_temperature(logits, labels)
    if logits.ndim == 2:
        with pytest.raises(ValueError, match=match):
            fit_vector_scaling(logits, labels)
        with pytest.raises(ValueError, match=match):
            fit_ensemble_temperature(logits.unsqueeze(0), labels)


def test_bad_options_are_rejected():
    logits, labels = calibrated_data(50, k=3)
    with pytest.raises(ValueError, match="contain T = 1"):
        fit_temperature(logits, labels, bounds=(2.0, 10.0))
    with pytest.raises(ValueError, match="bounds"):
        fit_temperature(logits, labels, bounds=(0.1,))
    with pytest.raises(ValueError, match="unknown mode 'shared'"):
        fit_ensemble_temperature(logits.unsqueeze(0), labels, mode="shared")
    with pytest.raises(ValueError, match="temperature"):
        TemperatureScaler(0.0)
    with pytest.raises(ValueError, match="4 members"):
        EnsembleTemperatureScaler(torch.ones(3), "members")(torch.zeros(4, 2, 3))
    with pytest.raises(ValueError, match=r"expected \(M=1, N, K=3\)"):
        temperature_scaled_metrics(logits.unsqueeze(0), labels, torch.zeros(1, 5, 4), labels)
    with pytest.raises(TypeError, match="TemperatureScaler"):
        scaler_metadata(torch.nn.Identity())
