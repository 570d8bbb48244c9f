"""``to_packed_ensemble``: your network's architecture as a Packed-Ensemble (Laurent et al.,
ICLR 2023): every conv / linear layer widened by ``alpha`` and split into ``n * gamma`` groups,
norms per member, ``n`` independent members in one network, as ``build_model(...,
"packed_ensemble")`` builds the library's backbones (:mod:`ensemblekit.methods.packed_ensemble`).

Three dry forwards of ``example_input`` do the channel bookkeeping and prove it:

1. on your network, which layers read the plain input (their input passed through no conv or
   linear layer: they stay one group, every member reading the whole input through its own
   output rows) and which write the output (the heads: ``n * K`` outputs, one group per
   member, member-major);
2. on the network with every layer pending, the width each layer actually receives (a linear
   layer after ``flatten`` reads ``packed channels x H x W`` features), from which it is built;
3. on the converted network, exactly: the output is ``(B, n*K)``, and the gradient of member
   m's logits on every other member's rows of every parameter is zero.

Anything that cannot be packed raises a ``ValueError`` naming the module and the fix: a
grouped or depthwise convolution, a module type without a packed version (attention,
embeddings, a parameter of its own outside a layer), a norm on the plain input, a width that
does not split into whole members, channels mixed outside the layers (``torch.cat`` of
branches, a channel shuffle, a mean over channels).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .._validation import check_float, check_int, check_seed, check_tensor
from ..layers.packed import PackedConv1d, PackedConv2d, PackedLinear, packed_gamma, packed_width
from ..layers.packed_norm import PackedGroupNorm, PackedLayerNorm
from ..methods.packed_ensemble import PackedEnsembleModel
from ..runtime import eval_mode
from ..submodules import replace_module
from ._sites import attach_recipe, check_module

#: the layers a Packed-Ensemble widens and groups (exact types: a subclass may change them)
_LAYERS = {nn.Conv1d: PackedConv1d, nn.Conv2d: PackedConv2d, nn.Linear: PackedLinear}
#: the norms it makes per member (BatchNorm is per channel, hence per member, as it is)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)
_SUPPORTED = (*_LAYERS, *_NORMS)
_FIX = ("convert a network of nn.Conv1d/2d, nn.Linear, BatchNorm/LayerNorm/GroupNorm and "
        "parameter-free modules, or use to_batchensemble / to_masksembles, which keep its "
        "layers as they are")


def _unsupported(module: nn.Module) -> str | None:
    """Why ``module`` blocks a Packed-Ensembles conversion, or None."""
    if isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params():
        return "it is a lazy module that has not been initialised; run one forward first"
    if isinstance(module, _SUPPORTED) and type(module) not in _SUPPORTED:
        return f"it subclasses {type(module).__mro__[1].__name__} and may change its behaviour"
    if type(module) in (nn.Conv1d, nn.Conv2d) and module.groups != 1:
        return (f"it is a grouped or depthwise convolution (groups={module.groups}); packing "
                "it would need groups within each member's groups, which is not supported: "
                "replace it by a dense convolution")
    if type(module) in _SUPPORTED:
        return None
    own = [name for name, _ in module.named_parameters(recurse=False)]
    own += [name for name, b in module.named_buffers(recurse=False) if b is not None]
    if own:
        return (f"{type(module).__name__} holds {', '.join(own)} and has no packed version "
                "here, so all members would share it")
    return None


def _roles(model: nn.Module, example_input: torch.Tensor) -> tuple[dict[str, dict], int]:
    """``{path: {"first": bool, "head": bool}}`` for every supported module the forward
    calls, in the order it calls them, and K, the network's outputs per example. A layer is
    first when its input passed through no conv / linear layer, a head when its output
    reaches the network's output through none: every layer's output is cut from the graph (a
    fresh leaf) and the parameters frozen, so input provenance is ``requires_grad`` and a head
    is a leaf the output's gradient reaches."""
    roles, leaves = {}, {}

    def before(path: str):
        def hook(module, inputs):
            fresh = not (isinstance(inputs[0], torch.Tensor) and inputs[0].requires_grad)
            roles.setdefault(path, {"first": True, "head": False})["first"] &= fresh
        return hook

    def after(path: str):
        def hook(module, inputs, output):
            leaf = output.detach().requires_grad_()
            leaves.setdefault(path, []).append(leaf)
            return leaf.clone()  # not a leaf itself, so an in-place ReLU after it works
        return hook

    handles, frozen = [], [(p, p.requires_grad) for p in model.parameters()]
    for path, module in model.named_modules():
        if type(module) in _SUPPORTED:
            handles.append(module.register_forward_pre_hook(before(path)))
            if type(module) in _LAYERS:
                handles.append(module.register_forward_hook(after(path)))
    try:
        for parameter, _ in frozen:
            parameter.requires_grad_(False)
        with eval_mode(model), torch.enable_grad():
            output = model(example_input.detach())
            _check_output(output, example_input)
            paths = [path for path, tensors in leaves.items() for _ in tensors]
            if not output.requires_grad:
                raise ValueError("to_packed_ensemble: the network's output does not depend on "
                                 "any nn.Linear or nn.Conv1d/2d layer; " + _FIX)
            grads = torch.autograd.grad(output.sum(), [t for ts in leaves.values() for t in ts],
                                        allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
        for parameter, requires_grad in frozen:
            parameter.requires_grad_(requires_grad)
    for path, grad in zip(paths, grads, strict=True):
        roles[path]["head"] |= grad is not None
    return roles, output.shape[1]


def _check_output(output, example_input: torch.Tensor) -> None:
    if not isinstance(output, torch.Tensor) or output.ndim != 2 \
            or output.shape[0] != example_input.shape[0]:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(
            f"to_packed_ensemble: the network returns {shape} on example_input of "
            f"{example_input.shape[0]} rows; it must return logits (B, K), one row per example"
        )


def _fail(path: str, reason: str) -> ValueError:
    return ValueError(f"to_packed_ensemble: cannot convert {path!r}: {reason}")


def _plan(module: nn.Module, path: str, role: dict, x: torch.Tensor, n: int, alpha: float,
          gamma: int) -> dict:
    """The recipe entry of the module at ``path`` that now receives ``x``: its packed sizes."""
    kind = type(module)
    if role["first"] and kind in _NORMS:
        raise _fail(path, "it normalises the network's plain input, which all members would "
                          "share; normalise the data before the network instead")
    if kind is nn.Linear:  # the packed dimension: features
        width = x.shape[-1]
    elif kind is nn.LayerNorm:  # its first normalised size
        width = x.shape[x.ndim - len(module.normalized_shape)]
    else:  # channels
        width = x.shape[1]
    if kind is nn.LayerNorm and tuple(x.shape[x.ndim - len(module.normalized_shape) + 1:]) \
            != tuple(module.normalized_shape[1:]):
        raise _fail(path, f"normalized_shape={tuple(module.normalized_shape)} spans more than "
                          "the packed channels and they no longer match its input "
                          f"{tuple(x.shape)}")
    if not role["first"] and width % n:
        raise _fail(path, f"it reads {width} channels, which do not split into n={n} members "
                          "(a size the network fixes outside its layers?)")
    if kind in _NORMS:
        return {"width": width}
    size_out = module.out_features if kind is nn.Linear else module.out_channels
    size_out = n * size_out if role["head"] else packed_width(size_out, alpha, n)
    groups = 1 if role["first"] or role["head"] else packed_gamma(width, size_out, n, gamma)
    return {"in": width, "out": size_out, "gamma": groups, "first": role["first"]}


def packed_layer(module: nn.Module, packed: dict, n: int, path: str = "") -> nn.Module:
    """The packed twin of ``module`` (a supported layer or norm) with the recipe entry's
    sizes ``packed``, freshly initialised."""
    kind = type(module)
    try:
        if kind is nn.Linear:
            return PackedLinear(packed["in"], packed["out"], n, gamma=packed["gamma"],
                                first=packed["first"], bias=module.bias is not None)
        if kind in _LAYERS:
            conv = _LAYERS[kind](
                packed["in"], packed["out"], module.kernel_size, n, gamma=packed["gamma"],
                first=packed["first"], stride=module.stride, padding=module.padding,
                dilation=module.dilation, bias=module.bias is not None,
                padding_mode=module.padding_mode)
            # torch's contiguous layout, as the network had: PackedConv2d's channels-last
            # weights would hand the next module channels-last maps, on which a forward's
            # x.view(B, -1) fails (compile_members runs channels-last: pass
            # channels_last=False for such a network)
            conv.weight = nn.Parameter(conv.weight.detach().contiguous())
            return conv
        if kind is nn.LayerNorm:
            return PackedLayerNorm((packed["width"], *module.normalized_shape[1:]), n,
                                   eps=module.eps, elementwise_affine=module.elementwise_affine,
                                   bias=module.bias is not None)
        if kind is nn.GroupNorm:
            return PackedGroupNorm(module.num_groups, packed["width"], n, eps=module.eps,
                                   affine=module.affine)
        return kind(packed["width"], eps=module.eps, momentum=module.momentum,
                    affine=module.affine, track_running_stats=module.track_running_stats)
    except ValueError as error:  # a width that does not split: name the module and the fix
        raise _fail(path, f"{error}; choose alpha so that the width splits, or fewer groups "
                          "in this layer") from None


class _Pending(nn.Module):
    """Stands at a layer's place during the sizing forward; builds its packed twin from the
    width it receives (:func:`_plan`) and runs it."""

    def __init__(self, path: str, original: nn.Module, role: dict, options: tuple) -> None:
        super().__init__()
        self.path, self.role, self.options = path, role, options
        self.original = [original]  # a list: not registered, so not in this module's tree
        self.entry: dict | None = None
        self.built: nn.Module | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.built is None:
            n, alpha, gamma = self.options
            original = self.original[0]
            packed = _plan(original, self.path, self.role, x, n, alpha, gamma)
            self.built = packed_layer(original, packed, n, self.path)
            self.entry = {"path": self.path, "layer": type(original).__name__, "packed": packed}
        return self.built(x)


def _sized(model: nn.Module, roles: dict, example_input: torch.Tensor, options: tuple
           ) -> list[dict]:
    """Replace every supported module by its packed twin, sized by a dry forward; the
    recipe's entries in forward order. On any failure the network is put back as it was."""
    pending = {path: _Pending(path, model.get_submodule(path), role, options)
               for path, role in roles.items()}
    for path, stand_in in pending.items():
        replace_module(model, path, stand_in)
    try:
        with eval_mode(model), torch.no_grad():
            model(example_input)
        uncalled = [path for path, stand_in in pending.items() if stand_in.built is None]
        if uncalled:
            raise _fail(uncalled[0], "the widened network's forward never called it (the "
                                     "forward's path depends on the widths?)")
    except Exception as error:
        for path, stand_in in pending.items():
            replace_module(model, path, stand_in.original[0])
        if isinstance(error, ValueError):  # ours: it names the module
            raise
        raise ValueError(  # a size the forward fixes (x.view(-1, 400), ...)
            f"to_packed_ensemble: the widened network's forward failed ({error}); it fixes a "
            "size outside its layers (x.view(-1, 400) instead of torch.flatten(x, 1)?) or "
            "mixes channels; " + _FIX) from error
    for path, stand_in in pending.items():
        replace_module(model, path, stand_in.built)
    return [stand_in.entry for stand_in in pending.values()]  # forward order


def check_member_independence(network: nn.Module, n: int, example_input: torch.Tensor,
                              classes: int) -> None:
    """Raise unless ``network`` maps ``example_input`` (B rows) to ``(B, n*K)``, K =
    ``classes``, and member m's logits (columns ``m*K:(m+1)*K``) have exactly zero gradient on
    every other member's rows (dim 0, member-major) of every parameter, for every m."""
    named = [(name, p) for name, p in network.named_parameters()]
    with eval_mode(network), torch.enable_grad():
        output = network(example_input)
        expected = (len(example_input), n * classes)
        if tuple(output.shape) != expected:
            raise ValueError(
                f"to_packed_ensemble: the widened network returns {tuple(output.shape)} on "
                f"example_input, not {expected} (B, n*K); it fixes a size outside its layers "
                "(x.view(-1, 400) or x.reshape(-1, 400) instead of torch.flatten(x, 1)?); "
                + _FIX)
        for member, logits in enumerate(output.chunk(n, dim=1)):
            grads = torch.autograd.grad(logits.sum(), [p for _, p in named], retain_graph=True,
                                        allow_unused=True)
            for (name, _), grad in reversed(list(zip(named, grads, strict=True))):
                if grad is None:
                    continue
                rows = grad.reshape(n, -1)
                leaks = [other for other in range(n)
                         if other != member and torch.count_nonzero(rows[other])]
                if leaks:
                    raise ValueError(
                        f"to_packed_ensemble: member {member}'s output depends on member "
                        f"{leaks[0]}'s part of {name.rpartition('.')[0]!r}: the network mixes "
                        "channels after that layer outside its conv / linear / norm layers "
                        "(torch.cat of branches, a channel shuffle or permute, a sum over "
                        "channels, attention), so its members cannot be packed apart; " + _FIX)


def to_packed_ensemble(
    model: nn.Module, n: int, *, alpha: float = 2.0, gamma: int = 1,
    example_input: torch.Tensor, seed: int | None = None,
) -> PackedEnsembleModel:
    """``model``'s architecture as a Packed-Ensemble of ``n`` members, in place.

    Every ``nn.Conv1d`` / ``nn.Conv2d`` / ``nn.Linear`` becomes a packed layer: hidden widths
    ``alpha * C`` rounded up to a multiple of n, ``n * gamma`` groups with gamma lowered per
    layer until each group reads at least 64 channels (``build_model``'s rule:
    :func:`~ensemblekit.layers.packed.packed_width`, ``packed_gamma``);
    the layers reading the plain input stay one group, the heads write ``n * K`` logits,
    member-major. BatchNorm is widened (per channel, so per member), LayerNorm and GroupNorm
    become their per-member versions (:mod:`ensemblekit.layers.packed_norm`); activations,
    pooling, flatten, dropout and residual adds stay. ``alpha = n, gamma = 1`` is a deep
    ensemble of ``model``'s architecture in one network.

    **Weights: the result is a fresh Packed-Ensemble**, initialised as torch initialises each
    layer (from ``seed`` when given, else torch's global generator), not a copy of ``model``'s
    weights: a member's layers have ``alpha / n`` of the width, so no trained weight has a
    place in them. Train it from scratch, as the paper does.

    ``example_input``: a batch like the ones you will predict on (2 rows suffice): the three
    dry forwards of the module docstring size every layer and check the result exactly; its
    shape and dtype (not its data) are kept in the recipe, so ``compile_members`` and
    ``export`` need no second example and ``ensemblekit.load(path, into=fresh_net)`` rebuilds
    the model without one.

    Returns:
        a :class:`~ensemblekit.methods.PackedEnsembleModel` with ``model`` as its backbone:
        ``model(x)`` ``(n*B, K)``, ``predict_members`` ``(n, B, K)``.
    """
    model = check_module(model)
    n = check_int("n", n, minimum=1)
    alpha = check_float("alpha", alpha, minimum=0.0, min_inclusive=False)
    gamma = check_int("gamma", gamma, minimum=1)
    example_input = check_tensor("example_input", example_input)
    if example_input.ndim == 0 or len(example_input) == 0:
        raise ValueError("example_input must be a batch (B, ...) of at least one row, e.g. "
                         "x[:2]")
    seed = None if seed is None else check_seed(seed)
    if type(model) in _SUPPORTED:
        raise ValueError(f"to_packed_ensemble: model is a single {type(model).__name__}; wrap "
                         "it (nn.Sequential(model)) so that it has a layer to replace")
    for path, module in model.named_modules():
        reason = _unsupported(module)
        if reason is not None:
            raise _fail(path or "the model", f"{reason}; {_FIX}")
    roles, classes = _roles(model, example_input)
    not_called = [path for path, module in model.named_modules()
                  if type(module) in _SUPPORTED and path not in roles]
    if not_called:
        raise _fail(not_called[0], "the dry forward on example_input never called it, so its "
                                   "width is unknown; remove it or pass an input that reaches it")
    originals = {path: model.get_submodule(path) for path in roles}
    rng = torch.random.fork_rng() if seed is not None else contextlib.nullcontext()
    with rng:
        if seed is not None:
            torch.manual_seed(seed)
        layers = _sized(model, roles, example_input, (n, alpha, gamma))
    try:
        check_member_independence(model, n, example_input, classes)
    except ValueError:
        for path, original in originals.items():  # the network as it was
            replace_module(model, path, original)
        raise
    recipe = {"converter": "to_packed_ensemble", "n": n, "alpha": alpha, "gamma": gamma,
              "layers": layers}
    return attach_recipe(PackedEnsembleModel(model, n, alpha=alpha, gamma=gamma), recipe,
                         example_input)


def packed_ensemble_from_recipe(model: nn.Module, recipe: dict,
                                layers: list[dict]) -> PackedEnsembleModel:
    """The model ``to_packed_ensemble`` made, rebuilt on a fresh ``model`` from its
    ``recipe`` (the recorded sizes; no dry forward)."""
    n = recipe["n"]
    for layer in layers:
        fresh = model.get_submodule(layer["path"])
        replace_module(model, layer["path"], packed_layer(fresh, layer["packed"], n,
                                                          layer["path"]))
    return PackedEnsembleModel(model, n, alpha=recipe["alpha"], gamma=recipe["gamma"])
