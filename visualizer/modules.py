"""What a module *is* for the layer graph: its kind (conv, norm, neuron, ...) and its scalar attributes.

Spiking neurons are recognised as ``nsnn.neurons.SpikingNeuron`` instances when that module imports,
and otherwise by duck typing (a module with both ``threshold`` and ``tau`` attributes), so custom
neurons from other libraries appear as neurons too::

    layer_kind(nn.Conv2d(3, 8, 3))        # 'conv'
    module_attributes(NILIF(sigma=0.3))   # {'neuron_type': 'NILIF', 'tau': 2.0, 'noise': 'gaussian', ...}

Every attribute value is a GraphML-compatible scalar (``bool``, ``int``, ``float`` or ``str``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

Scalar = bool | int | float | str

# Layer kinds by module class, first match wins. Neurons are checked before this table.
_KINDS: tuple[tuple[str, tuple[type[nn.Module], ...]], ...] = (
    ("conv", (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)),
    (
        "norm",
        (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d),
    ),
    ("linear", (nn.Linear, nn.Bilinear)),
    (
        "pool",
        (
            nn.MaxPool1d,
            nn.MaxPool2d,
            nn.MaxPool3d,
            nn.AvgPool1d,
            nn.AvgPool2d,
            nn.AvgPool3d,
            nn.AdaptiveAvgPool1d,
            nn.AdaptiveAvgPool2d,
            nn.AdaptiveAvgPool3d,
            nn.AdaptiveMaxPool1d,
            nn.AdaptiveMaxPool2d,
            nn.AdaptiveMaxPool3d,
        ),
    ),
    ("reshape", (nn.Flatten, nn.Unflatten)),
    ("dropout", (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)),
    ("identity", (nn.Identity,)),
    ("activation", (nn.ReLU, nn.GELU, nn.Sigmoid, nn.Tanh, nn.SiLU, nn.LeakyReLU, nn.Softmax)),
)

_THRESHOLDS = ("threshold", "v_threshold")
_LEAKS = ("tau", "beta")
_NEURON_FIELDS = (
    "v_threshold",
    "beta",
    "tau",
    "threshold",
    "reset",
    "reset_mode",
    "stochastic",
    "detach_reset",
    "eval_mode",
    "step_mode",
    "surrogate",
)


def _spiking_neuron_class() -> type | None:
    try:
        from nsnn.neurons import SpikingNeuron
    except ImportError:
        return None
    return SpikingNeuron


def is_neuron(module: nn.Module) -> bool:
    """True for ``nsnn.neurons.SpikingNeuron`` instances, and by duck typing for any module with a
    threshold (``threshold``, spikingjelly's ``v_threshold``) and a leak (``tau``, snntorch's ``beta``).
    torch's own modules are never neurons (``nn.Softplus`` has ``beta`` and ``threshold``)."""
    base = _spiking_neuron_class()
    if base is not None and isinstance(module, base):
        return True
    if type(module).__module__.startswith("torch."):
        return False
    return any(hasattr(module, a) for a in _THRESHOLDS) and any(hasattr(module, a) for a in _LEAKS)


def is_single_step(module: nn.Module) -> bool:
    """Whether a neuron takes one ``[B, ...]`` step per call rather than a ``[T, B, ...]`` sequence:
    ``step_mode="s"`` (nsnn, spikingjelly), and every snntorch neuron (snntorch steps one input per
    call and has no multi-step mode)."""
    return getattr(module, "step_mode", None) == "s" or type(module).__module__.split(".")[0] == "snntorch"


def declared_step(module: nn.Module) -> bool | None:
    """Whether a neuron says it takes one step per call (:func:`is_single_step`), or None when it
    declares no step mode (a duck-typed neuron: see :func:`visualizer.trace.single_step_neurons`)."""
    if is_single_step(module) or getattr(module, "step_mode", None) is not None:
        return is_single_step(module)
    return None


def flattens_time(module: nn.Module) -> bool:
    """Whether ``module`` is a ``SeqToANN`` that folds the time axis of its ``[T, B, ...]`` input into
    the batch (``T·B``) around its children: one in ``step_mode="s"`` runs one ``[B, ...]`` step as it
    is."""
    return type(module).__name__.startswith("SeqToANN") and getattr(module, "step_mode", "m") != "s"


def is_graph_leaf(module: nn.Module) -> bool:
    """A module that becomes one node: a neuron (its internals hidden) or a module without children
    other than its ``torch.nn.utils.parametrize`` parametrizations (e.g. a pruning mask: the layer
    stays one node, and its parametrized ``weight`` is the one counted)."""
    if is_neuron(module):
        return True
    parametrized = parametrize.is_parametrized(module)
    return all(parametrized and name == "parametrizations" for name, _ in module.named_children())


def owns_parameters(module: nn.Module) -> bool:
    """Whether ``module`` holds parameters of its own, not only through its children
    (``nn.MultiheadAttention``'s ``in_proj_weight``)."""
    return next(module.parameters(recurse=False), None) is not None


def layer_kind(module: nn.Module) -> str:
    """Kind of a leaf module: neuron, conv, norm, linear, pool, reshape, dropout, identity, activation
    or (anything else) module."""
    if is_neuron(module):
        return "neuron"
    for kind, classes in _KINDS:
        if isinstance(module, classes):
            return kind
    if isinstance(module, nn.Sequential | nn.ModuleList) and len(module) == 0:
        return "identity"
    return "module"


def to_scalar(value: Any) -> Scalar | None:
    """A GraphML-compatible scalar for ``value`` (one-element tensors unwrapped), or None if impossible."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None
        value = value.item()
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return to_scalar(value.item())
    if isinstance(value, tuple) and all(isinstance(v, int | float) for v in value):
        return str(list(value))
    return None


def neuron_attributes(module: nn.Module) -> dict[str, Scalar]:
    """Neuron type, leak, threshold, reset, and its noise family and sigma.

    A stochastic neuron (``stochastic`` True, or no such flag) reports its noise as ``noise``; a
    deterministic one (nsnn ``LIF``, ``PLIF(noise=None)``) fires without noise and reports the family of
    its surrogate gradient as ``surrogate`` (``noise`` is then ``"none"``).
    """
    attrs: dict[str, Scalar] = {"neuron_type": type(module).__name__}
    for field in _NEURON_FIELDS:
        value = to_scalar(getattr(module, field, None))
        if value is not None:
            attrs[field] = value
    noise = getattr(module, "noise", None)
    family: str | None = None
    if isinstance(noise, str):
        family = noise
    elif noise is not None and not isinstance(noise, torch.Tensor):
        family = str(getattr(noise, "name", type(noise).__name__))
    sigma = to_scalar(getattr(noise, "sigma", None)) if family else None
    sigma = sigma if sigma is not None else to_scalar(getattr(module, "sigma", None))
    if sigma is not None:
        attrs["sigma"] = sigma
    if getattr(module, "stochastic", True) or family is None:
        attrs["noise"] = family or "none"
    else:
        attrs["noise"] = "none"
        attrs["surrogate"] = family
        attrs.pop("eval_mode", None)
    return attrs


def stored_weight(module: nn.Module) -> torch.Tensor:
    """The tensor ``module.weight`` is made from and that lives as long as the module: a
    ``torch.nn.utils.parametrize`` layer computes a new ``weight`` at each access (whose ``id`` the next
    layer's may reuse once it is freed), from its ``original``, which is what tied layers share."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def weight_sparsity(module: nn.Module) -> float | None:
    """Fraction of exactly-zero entries of ``module.weight`` (conv/linear kernels, ndim ≥ 2), else None.

    ``module.weight`` is what the forward pass uses, so masks applied by ``torch.nn.utils.prune`` or
    by ``nsnn.compress`` are included.
    """
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() < 2 or weight.numel() == 0:
        return None
    return float((weight.detach() == 0).sum().item() / weight.numel())


def module_attributes(module: nn.Module) -> dict[str, Scalar]:
    """Scalar node attributes of one leaf module: kind, class, parameter count, sparsity, neuron fields."""
    kind = layer_kind(module)
    attrs: dict[str, Scalar] = {
        "kind": kind,
        "module_type": type(module).__name__,
        "params": int(sum(p.numel() for p in module.parameters())),
        "config": module.extra_repr(),
    }
    sparsity = weight_sparsity(module)
    if sparsity is not None:
        attrs["weight_sparsity"] = sparsity
        attrs["weights"] = int(module.weight.numel())
    if kind == "neuron":
        attrs.update(neuron_attributes(module))
    return attrs
