"""The member-similarity study's ``diversity.md`` and its tables, from the ``diversity.json``
content (:func:`ensemblekit.experiments.diversity.run_diversity`).

Values print as ``mean ± std`` over seeds with 4 decimals; a value that holds by definition
(the single model's identical members) as ``"<value> (floor)"``.
"""

from __future__ import annotations

from ..methods.claims import DIVERSITY_CLAIMS
from ..stats.claims import STUDY_N_BOOT, STUDY_N_BOOT_CKA
from ._format import pm
from .labels import method_label, short_label
from .verdicts import Row
from .verdicts import verdict_lines as write_verdict_lines

#: the options the header shows per method (the rest are in the JSON)
_HEADER_OPTIONS = ("p", "scale", "placement", "widen", "init", "epochs")
#: the keys of a verdict's comparison that are not a method's value
_COMPARISON_KEYS = ("metric", "reference", "closeness", "verdict")


def _pm(value: dict) -> str:
    return pm(value, digits=4, mark_floor=True)


def diversity_table(results: dict) -> str:
    """Markdown: one row per variant, clean-test function space, CKA and weight cosine."""
    lines = ["| variant | accuracy | disagreement | disagreement / error | KL | JS | MI | "
             "CKA penult. | CKA mid | weight cosine init -> trained | by construction |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for entry in results["variants"].values():
        clean = entry["sets"]["clean"]
        cells = [_pm(clean[key]) for key in ("accuracy", "disagreement",
                                             "disagreement_over_error", "kl", "js",
                                             "mutual_information")]
        cells += [_pm(cka["trained"]) for cka in entry["cka"].values()]
        cells.append(f"{_pm(entry['weights']['init']['overall'])} -> "
                     f"{_pm(entry['weights']['trained']['overall'])}")
        cells.append(entry["construction"])
        lines.append(f"| {entry['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def shift_table(results: dict) -> str:
    """Markdown: disagreement and mutual information on every evaluation set."""
    names = list(next(iter(results["variants"].values()))["sets"])
    header = " | ".join(f"{_set_caption(n)} dis. | {_set_caption(n)} MI" for n in names)
    lines = [f"| variant | {header} |", "|---|" + "---:|" * (2 * len(names))]
    for entry in results["variants"].values():
        cells = []
        for name in names:
            cells += [_pm(entry["sets"][name]["disagreement"]),
                      _pm(entry["sets"][name]["mutual_information"])]
        lines.append(f"| {entry['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def layer_table(results: dict) -> str:
    """Markdown: per layer, weight cosine at init and trained, its change, relative change
    (the floor, whose members are identical by definition, has no rows)."""
    lines = ["| variant | layer | cosine init | cosine trained | change | relative weight "
             "change |", "|---|---|---:|---:|---:|---:|"]
    for entry in results["variants"].values():
        weights = entry["weights"]
        if is_floor(entry):
            continue
        for name in weights["init"]["layers"]:
            lines.append(f"| {entry['label']} | {name} | {_pm(weights['init']['layers'][name])}"
                         f" | {_pm(weights['trained']['layers'][name])} | "
                         f"{_pm(weights['change']['layers'][name])} | "
                         f"{_pm(weights['relative_change']['layers'][name])} |")
    return "\n".join(lines)


def is_floor(entry: dict) -> bool:
    """Whether a variant is the floor: its members identical by definition (one member)."""
    return bool(entry["weights"]["init"]["overall"].get("by_definition"))


def verdict_lines(verdicts: list[dict]) -> list[str]:
    """Markdown bullets: each claim's verdict and the numbers behind it."""
    outro = []
    if verdicts:
        method, far = _compared(verdicts[0]["comparisons"][0])
        outro = [f"- Intervals: 95 % paired bootstrap over seeds and test examples "
                 f"({STUDY_N_BOOT} replicates; {STUDY_N_BOOT_CKA} for CKA); a comparison holds "
                 f"when |{short_label(method)} - reference| - |{short_label(method)} - "
                 f"{short_label(far)}| lies below 0 throughout."]
    return write_verdict_lines(verdicts, _verdict_row, unchecked=DIVERSITY_CLAIMS.unchecked,
                               bullets=True, outro=outro)


def _compared(comparison: dict) -> tuple[str, str]:
    """The claim's method and the one it should be farther from, as the record keys them
    (``{"metric", <method>: value, "reference": value, <far>: value, ...}``)."""
    method, far = [key for key in comparison if key not in _COMPARISON_KEYS]
    return method, far


def _verdict_row(claim: dict, comparison: dict) -> Row:
    method, far = _compared(comparison)
    m, r, f = short_label(method), short_label(claim["reference"]), short_label(far)
    return Row(metric=comparison["metric"], statement=f"|{m}-{r}| - |{m}-{f}|",
               values=f"{m} {comparison[method]:.4f}, {r} {comparison['reference']:.4f}, "
                      f"{f} {comparison[far]:.4f}",
               interval=comparison["closeness"], verdict=comparison["verdict"])


def _settings_text(settings: dict) -> str:
    """"MC-Dropout p=0.1, placement=dropout, 60 epochs; ..." for the report's header."""
    parts = []
    for method, options in settings.items():
        shown = [f"{key}={options[key]}" for key in _HEADER_OPTIONS[:-1] if key in options]
        parts.append(f"{method_label(method)} {', '.join(shown)}, {options['epochs']} epochs")
    return "; ".join(parts)


def diversity_markdown(results: dict) -> str:
    """The study's report: protocol, verdicts, the clean table, shift, parameter space per
    layer, fast-weight movement, figures and run time."""
    p = results["protocol"]
    seeds = len(results["seeds"])
    fast = [f"{e['label']}: {_pm(e['weights']['fast_weights']['relative_change'])} relative "
            f"change, deviation cosine {_pm(e['weights']['fast_weights']['deviation_cosine'])}"
            for e in results["variants"].values() if "fast_weights" in e["weights"]]
    figures = [f"![{name}]({name})" for name in results.get("figures", [])]
    return "\n".join([
        f"# Member similarity on {results['dataset']}", "",
        f"Backbone {p['backbone']}, {p['members']} members ({_settings_text(p['settings'])}; "
        f"otherwise {p['epochs']} epochs); {seeds} seed{'s' if seeds > 1 else ''} "
        "(mean ± std); each "
        f"pairwise value is the {p['pairs']}. Corrupted sets: {len(p['corruptions'])} kinds "
        f"pooled per severity {p['severities']}; OOD: {p['ood']} ({p['ood_status']}). The "
        "single model is the floor (identical members: disagreement, KL, JS, MI 0; CKA and "
        "cosine 1, by definition); the Deep Ensemble the reference for independent members.",
        "", "## Verdicts", "", *verdict_lines(results["verdicts"]), "",
        "## Clean test set", "", diversity_table(results), "",
        "## Disagreement and mutual information under shift", "", shift_table(results), "",
        "## Parameter space per layer", "", layer_table(results), "",
        "BatchEnsemble fast weights (r, s) during training: " + ("; ".join(fast) or "n/a")
        + ".", "", *figures, "",
        f"Run time: {results['seconds']:.0f} s.", ""])


def _set_caption(name: str) -> str:
    return {"clean": "clean", "ood": "OOD"}.get(name, name.replace("severity_", "sev. "))
