"""Which Masksembles skip rule measures better: 'each mask keeps >= 8 channels' (the library's)
or the authors' generator's 'C >= 10 channels'. Digits, validation split only (never the test
set), n=4, placement='all', 3 seeds, the digits recipe; two configurations where the rules
differ and one control where they agree.

    .venv/bin/python docs/experiments/skip_rule.py      # ~2.5 min on 2 CPU cores

Writes runs/skip-rule.json and prints the mean over seeds per configuration and rule.
"""
import json
import torch
import ensemblekit.methods.masksembles as ms
from ensemblekit.experiments import pipeline, protocol, splits
from ensemblekit.experiments.benchmark import BenchmarkSettings

rules = {"member>=8": ms.masks_fit, "C>=10": lambda c, n, s: c >= 10}
configs = [  # (backbone options, scale)
    ({"backbone": "lenet", "width": 3.0}, 4.0),   # conv1 18 ch: masks of 7 under C>=10
    ({"backbone": "lenet", "width": 1.0}, 2.0),   # conv1 6 (both skip), conv2 16: 9 (both mask)
    ({"backbone": "mlp", "width": 1.0}, 3.0),     # 16-wide layer: masks of 7 under C>=10
]
torch.set_num_threads(1)
out = {}
base = BenchmarkSettings.from_sources(overrides={"out": "runs/skip-rule"})
data = splits.load_experiment_data(base, log=lambda m: None)
for options, scale in configs:
    for rule_name, rule in rules.items():
        ms.masks_fit = rule
        rows = []
        for seed in range(3):
            s = BenchmarkSettings.from_sources(overrides={"out": "runs/skip-rule", **options})
            model = pipeline.build(s, "masksembles", seed=seed, n=4, scale=scale)
            sites = sum(isinstance(m, ms.Masksembles) for m in model.modules())
            fit = pipeline.train(s, model, data, seed=seed)
            val = protocol.validation_metrics(protocol.predict_splits(model, data, seed=seed,
                                                                      shift=False))
            rows.append({"sites": sites, "train_acc": fit["accuracy"], **val})
        key = f"{options['backbone']} x{options['width']:g} s={scale:g} {rule_name}"
        out[key] = rows
        mean = {k: sum(r[k] for r in rows) / 3 for k in rows[0]}
        print(key, {k: round(v, 4) for k, v in mean.items()}, flush=True)
json.dump(out, open("runs/skip-rule.json", "w"), indent=1)
