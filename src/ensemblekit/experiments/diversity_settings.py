"""``ensemblekit diversity``'s settings: the methods compared, their controls, the evaluation
sets and the CKA sample (the study itself: :mod:`~ensemblekit.experiments.diversity`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._validation import check_choice, check_int
from ..methods import available_methods, method_entries, method_entry
from .checks import as_list, check_keys, check_methods, check_ood, check_shift
from .config import Settings
from .runs import ParallelRuns


def default_controls() -> dict[str, list[str]]:
    """``{method: [control]}``: every control each registered method offers (its registry
    entry's ``controls``: e.g. BatchEnsemble's other fast-weight inits ``ones`` and
    ``random_sign``)."""
    return {entry.name: list(entry.controls) for entry in method_entries() if entry.controls}


@dataclass
class DiversitySettings(ParallelRuns, Settings):
    """``ensemblekit diversity``: how alike the members of each method are (parameter space at
    initialisation and trained, CKA of hidden representations, function space on clean,
    corrupted and OOD data), with the single model as the floor.

    ``methods``: default every registered method. ``controls``: ``{method: [control]}``,
    variants trained beside a method of ``methods`` (its registry entry's ``controls``, named
    ``<method>_<control>``; default :func:`default_controls`, e.g. BatchEnsemble's fast-weight
    inits ``"ones"``: identical members at the start, and ``"random_sign"``; ``{}`` for none).
    ``corruptions`` / ``severities`` / ``ood`` / ``corrupted_dir`` as in the benchmark;
    ``cka_samples``: CKA on the first this many test inputs; ``eval_batch_size``: inference
    batch.
    """

    methods: list[str] = field(default_factory=available_methods)
    seeds: int = 3
    controls: dict = field(default_factory=default_controls)
    corruptions: list[str] | str = "all"
    severities: list[int] = field(default_factory=lambda: [3, 5])
    ood: str = "auto"
    corrupted_dir: str | None = None
    cka_samples: int = 2000
    eval_batch_size: int = 500

    command = "diversity"

    def validate(self) -> None:
        super().validate()
        self.methods = check_methods(self.methods)
        self.seeds = check_int("seeds", self.seeds, minimum=1)
        if self.members < 2:
            raise ValueError(f"members must be >= 2 to compare members, got {self.members}")
        self.controls = check_controls(self.controls)
        self.corruptions, self.severities = check_shift(self.dataset, self.corruptions,
                                                        self.severities)
        self.ood = check_ood(self.dataset, self.ood)
        self.cka_samples = check_int("cka_samples", self.cka_samples, minimum=2)
        self.eval_batch_size = check_int("eval_batch_size", self.eval_batch_size, minimum=1)


def check_controls(controls) -> dict[str, list[str]]:
    """``{method: [control]}`` checked: methods that offer controls, each control one of its
    entry's, listed once (a single name becomes a list)."""
    if not isinstance(controls, dict):
        raise ValueError(f"controls must be a table of lists, e.g. [controls] with batchensemble "
                         f"= [\"ones\"]; got {controls!r}")
    offering = [name for name in available_methods() if method_entry(name).controls]
    check_keys(controls, None, source="controls", valid=offering)
    checked = {}
    for method, names in controls.items():
        names = as_list(names)
        for name in names:
            check_choice(f"controls.{method}", name, list(method_entry(method).controls))
        if len(set(names)) != len(names):
            raise ValueError(f"controls.{method} lists a control twice: {names}; list each "
                             "once")
        checked[method] = names
    return checked
