"""MIMO (Havasi et al., ICLR 2021): one network with M input slots and M output heads.

The backbone's stem reads M inputs stacked on channels (M*C; M*features for the MLP) and its
head writes M*K logits (:mod:`ensemblekit.layers.mimo`); every other weight is shared by the
members. Training through the one contract::

    model.train()
    loss = F.cross_entropy(model(x), model.training_targets(y))

``model(x)`` gives each slot its own example: the batch repeated ``batch_repetitions`` times,
one random permutation per slot, and with probability ``input_repetition`` per row slot 0's
example in every slot (:mod:`ensemblekit.methods.mimo_slots`); it returns member-major logits
``(M*R, K)``, R = B * ``batch_repetitions``. ``training_targets(y)`` returns the labels in the
same order. **It must be called after the forward it belongs to**: it reads that forward's
draw (an error says so when there was none, or when ``y`` holds another number of rows). In
eval mode ``model(x)`` gives every slot the same example (``(M*B, K)``, targets ``y`` tiled),
which is what ``predict_members`` does: one forward gives M members ``(M, B, K)``, and the
stem reads ``x`` once with its slot weights summed instead of M stacked copies of it (a
single model's cost; equal to the stacked pass up to rounding).

The permutations come from a generator the model owns, seeded from the build seed; its state
is the buffer ``slot_generator_state``, advanced by every training forward and saved in
``state_dict``, so checkpoints (``ensemblekit.save``, ``train_model``'s resume) continue the
same permutations bit-identically. Under ``torch.distributed`` the processes draw one global
assignment over the gathered batch, so that two processes train what one does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .._validation import check_float, check_int, check_tensor
from ..layers.mimo import MIMO_LAYERS, MIMOConv2d, MIMOLinear, shared_slots
from ..members import repeat_members, split_members
from ..models.base import scaled_width
from ..models.factory import LayerFactory
from .base import EnsembleModel
from .mimo_slots import data_parallel_rank, draw_slots, gather_batch
from .registry import register_method

#: mixed into the build seed so the slot permutations are not drawn from the very stream that
#: initialised the weights
_SLOT_STREAM = 0x9E3779B97F4A7C15


class MIMOLayers(LayerFactory):
    """Single-model layers, but a stem reading ``n`` slots and a head writing ``n`` members,
    and every hidden width ``width_factor`` times the backbone's."""

    def __init__(self, n: int, width_factor: float = 1.0) -> None:
        self.n, self.width_factor = n, width_factor

    def site_channels(self, channels: int, *, classic: bool = False) -> int:
        # every hidden width of a backbone is asked for here (see PackedLayers): the M
        # subnetworks share one body, so a wider body gives each of them more room
        return scaled_width(channels, self.width_factor)

    def conv(self, in_channels, out_channels, kernel_size, *, stride=1, padding=0, bias=False,
             stem=False):
        if not stem:
            return super().conv(in_channels, out_channels, kernel_size, stride=stride,
                                padding=padding, bias=bias)
        return MIMOConv2d(in_channels, out_channels, kernel_size, self.n, stride=stride,
                          padding=padding, bias=bias)

    def linear(self, in_features, out_features, *, bias=True, stem=False, head=False):
        if not (stem or head):
            return super().linear(in_features, out_features, bias=bias)
        return MIMOLinear(in_features, out_features, self.n, stem=stem, head=head, bias=bias)


@dataclass(frozen=True)
class _Draw:
    """What ``training_targets`` needs from the forward before it."""

    batch: int  # rows of x (this process's share under torch.distributed)
    rows: torch.Tensor | None  # (M*R,) member-major example indices; None: all slots x
    rank: int = 0
    world: int = 1


class MIMOModel(EnsembleModel):
    """A backbone with a MIMO stem and head: M members in one forward.

    ``model(x)``: ``(B, ...) -> (M*R, K)`` member-major (training: R = B *
    ``batch_repetitions``, a slot assignment drawn per call; eval: R = B, every slot reads x).
    """

    method = "mimo"

    def __init__(self, backbone: nn.Module, n: int, *, input_repetition: float = 0.0,
                 batch_repetitions: int = 1, seed: int = 0) -> None:
        super().__init__(n)
        self.backbone = backbone
        self.input_repetition = input_repetition
        self.batch_repetitions = batch_repetitions
        generator = torch.Generator().manual_seed(seed ^ _SLOT_STREAM)
        #: the slot permutations' generator state (CPU ``torch.Generator.get_state()``)
        self.register_buffer("slot_generator_state", generator.get_state())
        self._draw: _Draw | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x)
        if hasattr(self.backbone, "check_input"):
            self.backbone.check_input(x)  # before any draw: a bad x moves no generator
        if not self.training:
            self._draw = _Draw(len(x), None)
            with shared_slots(self.backbone):
                return self.backbone(x)
        rank, world = data_parallel_rank()
        batch = gather_batch(x, rank, world, check_sizes=True)
        slots = self._draw_slots(len(batch))  # (M, R) over the global batch
        share = slots.shape[1] // world
        rows = slots[:, rank * share:(rank + 1) * share].reshape(-1).to(x.device)
        self._draw = _Draw(len(x), rows, rank, world)
        return self.backbone(batch[rows])

    # host-side bookkeeping of a CPU generator: torch.compile leaves it to Python
    @torch.compiler.disable
    def _draw_slots(self, batch: int) -> torch.Tensor:
        generator = torch.Generator()
        generator.set_state(self.slot_generator_state.cpu())
        slots = draw_slots(generator, batch, self.num_members, self.input_repetition,
                           self.batch_repetitions)
        self.slot_generator_state.copy_(generator.get_state())
        return slots

    def training_targets(self, y: torch.Tensor) -> torch.Tensor:
        """The labels of the rows of the last ``model(x)``, in its order: ``(M*R, ...)``.

        Call it after the forward it belongs to, with that batch's ``y`` ``(B, ...)``.
        """
        draw = self._draw
        if draw is None:
            raise RuntimeError(
                "MIMO's training_targets(y) returns the labels in the order the last "
                "model(x) drew its slots: call model(x) first, then training_targets(y) with "
                "the same batch's labels"
            )
        check_tensor("y", y)
        if y.ndim == 0 or y.shape[0] != draw.batch:
            rows = "a 0-dimensional tensor" if y.ndim == 0 else f"{y.shape[0]} rows"
            raise ValueError(
                f"training_targets(y) got y with {rows}, but the last model(x) read a batch "
                f"of {draw.batch}: pass the labels of the batch the forward just read"
            )
        if draw.rows is None:
            return repeat_members(y, self.num_members)
        labels = gather_batch(y, draw.rank, draw.world, check_sizes=False)
        return labels[draw.rows.to(labels.device)]

    def forward_members(self, x: torch.Tensor, num_samples: int | None) -> torch.Tensor:
        """``(M, B, K)``: every slot reads ``x``; one forward of the network, whose stem reads
        ``x`` once with its slot weights summed (:func:`~ensemblekit.layers.mimo.shared_slots`:
        equal to feeding M copies of ``x`` up to rounding, at a single model's cost)."""
        with shared_slots(self.backbone):
            return split_members(self.backbone(x), self.num_members)

    @torch.no_grad()
    def member_weights(self) -> torch.Tensor:
        """``(M, P)``, P the parameter count of a single model of the same widths: member m's
        stem is the weight columns reading slot m (the stem's bias shared), its head the rows
        writing member m and their bias; every other parameter is shared, so only those
        entries differ."""
        n = self.num_members
        pieces = []
        for module in self.backbone.modules():
            if isinstance(module, MIMOConv2d):
                pieces.append(module.slot_weights().reshape(n, -1))
                if module.bias is not None:
                    pieces.append(module.bias.reshape(1, -1).expand(n, -1))
                continue
            if isinstance(module, MIMOLinear):
                weight, bias = module.member_blocks()
                pieces.append(weight.reshape(n, -1))
                if bias is not None:
                    pieces.append(bias.reshape(n, -1))
                continue
            for parameter in module.parameters(recurse=False):
                pieces.append(parameter.reshape(1, -1).expand(n, -1))
        return torch.cat(pieces, dim=1)

    def member_weight_columns(self, module: nn.Module) -> int:
        """As :meth:`member_weights` lays them out: the stem's slot columns and bias, the
        head's member rows and bias block, every other module's parameters whole."""
        if isinstance(module, MIMOConv2d):
            bias = 0 if module.bias is None else module.bias.numel()
            return module.slot_weights()[0].numel() + bias
        if isinstance(module, MIMOLinear):
            weight, bias = module.member_blocks()
            return weight[0].numel() + (0 if bias is None else bias[0].numel())
        return super().member_weight_columns(module)

    def member_features(self, x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
        """``(M, B, ...)``: at inference every slot reads the same input and the body is
        shared, so every member reads the same representation (``x`` for each)."""
        return x.unsqueeze(0).expand(self.num_members, *x.shape)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, input_repetition={self.input_repetition:g}, "
                f"batch_repetitions={self.batch_repetitions}")


def _check_ends(backbone: nn.Module, n: int) -> None:
    """A MIMO network needs exactly one stem (reads the slots) and one head (writes members)."""
    ends = [module for module in backbone.modules() if isinstance(module, MIMO_LAYERS)]
    stems = sum(isinstance(m, MIMOConv2d) or m.stem for m in ends)
    heads = sum(isinstance(m, MIMOLinear) and m.head for m in ends)
    if stems != 1 or heads != 1:
        raise ValueError(
            f"mimo needs a backbone whose LayerFactory calls mark exactly one layer stem=True "
            f"(it reads the {n} stacked inputs) and one head=True (it writes {n} blocks of "
            f"logits); this {type(backbone).__name__} marks {stems} stem(s) and {heads} "
            "head(s): mark them in its conv / linear calls"
        )


def _construction(options) -> str:
    return ("members share every weight but the first and last layers by construction: "
            "cosine 1 on the shared body, and CKA 1 on every hidden representation (at "
            "inference every slot reads the same input); only the stem's input slices (one "
            "per slot) and the head's output blocks (one per member) differ, drawn "
            "independently (cosine ~ 0 there)")


@register_method(
    "mimo", label="MIMO", color="#17becf", marker="P",
    global_keys={"members": "n"},
    construction=_construction,
    member_width=lambda options: options["width_factor"],
    # M subnetworks in one body need room and training (Havasi et al.: wider networks, batch
    # repetitions): at digits' defaults (LeNet 3.0 wide, 30 epochs, seed 0) the members reach
    # 0.50-0.85 accuracy on the training split itself, against 0.998 with input_repetition=1
    # and 1.000 with n=1: room, not a bug. Input repetition matters most (configs/tuned/).
    # width_factor multiplies the recipe's width (an absolute width would not fit every
    # recipe), epochs_factor its epochs.
    tune_grid={"input_repetition": [0.0, 0.5], "batch_repetitions": [1, 4],
               "width_factor": [1.0, 2.0], "epochs_factor": [1.0, 2.0]},
    compiled_inference=True,
)
def mimo(
    make_backbone: Callable, *, seed: int, n: int = 4, input_repetition: float = 0.0,
    batch_repetitions: int = 1, width_factor: float = 1.0,
) -> MIMOModel:
    """``n`` input slots and heads (members); in training, with probability
    ``input_repetition`` a row shows every slot the same example, and each batch is repeated
    ``batch_repetitions`` times under different permutations (uncertainty-baselines' CIFAR
    defaults: n=3, input_repetition=0, batch_repetitions=4); every hidden width of the
    backbone times ``width_factor`` (the paper widens its networks: the members share them)."""
    n = check_int("n", n, minimum=1)
    input_repetition = check_float("input_repetition", input_repetition, minimum=0.0,
                                   maximum=1.0)
    batch_repetitions = check_int("batch_repetitions", batch_repetitions, minimum=1)
    width_factor = check_float("width_factor", width_factor, minimum=0.0, min_inclusive=False)
    backbone = make_backbone(MIMOLayers(n, width_factor), seed)
    _check_ends(backbone, n)
    return MIMOModel(backbone, n, input_repetition=input_repetition,
                     batch_repetitions=batch_repetitions, seed=seed)
