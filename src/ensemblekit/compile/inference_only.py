"""The base of every compiled-members module: it computes member outputs and cannot be trained.

A compiled module holds copies of the model's weights taken by
:func:`~ensemblekit.compile.compile_members` (rearranged, folded or frozen); training it would
change those copies and leave the model apart, so ``.train()`` refuses and says what to do.
"""

from __future__ import annotations

from torch import nn


class InferenceOnlyMembers(nn.Module):
    """``(B, ...) -> (M, B, ...)`` member outputs; ``.train()`` raises, ``.eval()`` is a no-op.

    Subclasses set ``num_members`` and ``strategy`` (shown by ``repr``) and may set ``holds``:
    what the refusal says the module holds, after "inference-only".
    """

    #: predict_members and evaluate_model call it directly: it returns member logits
    returns_member_logits = True
    #: e.g. " (they hold copies of the weights, rearranged for inference)"
    holds = ""

    def train(self, mode: bool = True) -> InferenceOnlyMembers:
        if mode:
            raise RuntimeError(f"compiled members are inference-only{self.holds}: train the "
                               "original model, then call ensemblekit.compile_members(model) "
                               "again")
        return super().train(False)

    def extra_repr(self) -> str:
        return f"num_members={self.num_members}, strategy={self.strategy!r}"
