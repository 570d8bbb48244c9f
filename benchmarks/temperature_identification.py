"""How many validation errors does a temperature need? The study behind ``MIN_VALIDATION_ERRORS``.

Validation splits of 250 examples (the default benchmark's), 10 classes, from two synthetic
models whose right temperature is known only through a large test set (20,000 examples):

* ``label noise``: logits ``a * onehot(c) + 1.5 * noise``, the label c except with probability
  eps another class (errors confidently wrong; T = 1 is over-confident by construction);
* ``over-confident``: calibrated logits u (labels drawn from ``softmax(u)``) times 2, so the
  right T is 2 (errors drawn from the model itself).

For each draw: k, the validation errors; the minimiser T of the validation NLL (exact solve,
no identification rule); the test NLL at T minus the test NLL at T = 1 (negative: the fit
helps); and how far T moves when one validation error is left out (the largest
``|log(T_without / T)|`` over up to six errors). Grouped by k. Not a timing: run it as it is,

    python benchmarks/temperature_identification.py [--draws 60]
"""

from __future__ import annotations

import argparse
import collections
import math

import torch

from ensemblekit.calibration._solver import mean_nll, temperature_root

CLASSES, VALIDATION, TEST = 10, 250, 20_000
LOW, HIGH = 1e-2, 1e2


def label_noise(n: int, a: float, eps: float, g: torch.Generator):
    c = torch.randint(0, CLASSES, (n,), generator=g)
    z = torch.randn(n, CLASSES, generator=g, dtype=torch.float64) * 1.5 + a * \
        torch.nn.functional.one_hot(c, CLASSES)
    flip = torch.rand(n, generator=g) < eps
    other = (c + torch.randint(1, CLASSES, (n,), generator=g)) % CLASSES
    return z, torch.where(flip, other, c)


def over_confident(n: int, a: float, eps: float, g: torch.Generator):
    c = torch.randint(0, CLASSES, (n,), generator=g)
    u = torch.randn(n, CLASSES, generator=g, dtype=torch.float64) + a * \
        torch.nn.functional.one_hot(c, CLASSES)
    labels = torch.multinomial(torch.softmax(u, -1), 1, generator=g).squeeze(1)
    return 2.0 * u, labels


#: model -> (draw, [(a, eps), ...]): settings spanning about 1 to 15 validation errors
MODELS = {
    "label noise": (label_noise, [(a, eps) for a in (6.0, 10.0)
                                  for eps in (0.005, 0.01, 0.02, 0.04)]),
    "over-confident": (over_confident, [(a, 0.0) for a in (7.0, 8.0, 9.0, 10.0)]),
}


def fit(z: torch.Tensor, y: torch.Tensor) -> float | None:
    return temperature_root(z, y, LOW, HIGH)[0]


def leave_one_error_out(z: torch.Tensor, y: torch.Tensor, t: float) -> float:
    """The largest |log(T without one error / T)| over up to six errors (inf at a bound)."""
    moves = []
    for index in (z.argmax(-1) != y).nonzero().squeeze(1).tolist()[:6]:
        keep = torch.ones(len(y), dtype=torch.bool)
        keep[index] = False
        other = fit(z[keep], y[keep])
        moves.append(math.inf if other is None else abs(math.log(other / t)))
    return max(moves)


def study(name: str, draws: int, seed: int) -> None:
    draw, settings = MODELS[name]
    g = torch.Generator().manual_seed(seed)
    rows = collections.defaultdict(list)
    for a, eps in settings:
        test_z, test_y = draw(TEST, a, eps, g)
        raw = mean_nll(test_z, test_y)
        for _ in range(draws):
            z, y = draw(VALIDATION, a, eps, g)
            errors = int((z.argmax(-1) != y).sum())
            t = fit(z, y)
            if errors == 0 or t is None:
                continue  # no interior minimiser: not identified whatever the minimum
            rows[min(errors, 10)].append((mean_nll(test_z / t, test_y) - raw,
                                          leave_one_error_out(z, y, t)))
    print(f"\n## {name}: {len(settings)} settings x {draws} validation draws of {VALIDATION}")
    print("\n| validation errors | draws | test NLL at T - at T=1 (mean) | draws where it rose | "
          "leave one error out: median max abs log T change |")
    print("|---:|---:|---:|---:|---:|")
    for errors in sorted(rows):
        values = rows[errors]
        moves = sorted(move for _, move in values)
        label = f">= {errors}" if errors == 10 else str(errors)
        print(f"| {label} | {len(values)} | {sum(d for d, _ in values) / len(values):+.4f} | "
              f"{sum(d > 0 for d, _ in values) / len(values):.0%} | "
              f"{moves[len(moves) // 2]:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in MODELS:
        study(name, args.draws, args.seed)


if __name__ == "__main__":
    main()
