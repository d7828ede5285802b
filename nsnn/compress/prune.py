"""Magnitude pruning with persistent masks, for numpy arrays, torch tensors and torch modules.

Rule (EE 595 / Rathi et al. 2019 proxy): a synapse dies when its magnitude is among the smallest
``sparsity`` fraction or when ``|w| <= threshold``. The count pruned from ``n`` ranked weights is exactly
``min(round(sparsity·n), n − 1)`` (Python's ``round``: halves to even), ties broken by position, so a
sparsity below 1 never removes the last live weight of a ranked group (``sparsity=0.95`` keeps 1 of 10,
and the only weight of a 1-weight tensor); with ``scope="global"``, a layer the global ranking would
empty keeps its largest live weight (one survivor more than the target per such layer). Only a
``threshold`` can empty a group. Masks only shrink: a pruned synapse (``mask=False``) stays dead whatever
its weight, and already-dead entries count towards the sparsity target. ``axis`` names the axes ranked
together (None = the whole array); e.g. ``axis=0`` on the STDP matrix ``[n_input, n_exc]`` gives every
neuron the same fan-in.

Torch modules: the ``weight`` of every ``nn.Linear`` / ``nn.ConvNd`` is pruned in place (``scope``:
``"layer"`` ranks each weight alone, ``"neuron"`` each output unit's incoming weights alone, a row of a Linear
weight or an output channel of a Conv, as ``axis`` = every axis but 0 does for arrays, and ``"global"`` all
layers together), its mask kept as a non-persistent buffer ``weight_mask`` (not in ``state_dict``, so
checkpoints load into fresh models unchanged). Optimizers do not know masks: call :func:`apply_masks` after
each ``optimizer.step()``, or once :func:`attach_masks` (an optimizer step post-hook that does it), so pruned
weights stay exactly zero through further training. Loading a ``weight`` by ``load_state_dict`` keeps the
layer's mask while the new weight is zero where pruned (e.g. an earlier state of the same pruned run,
fine-tuned or not), else drops mask and bits with a warning (they described the weights it replaces), so the
model is in the state a fresh model loading it would be; it keeps ``weight_bits`` while the new weight also
lies on the quantized levels, else drops them (with a warning unless the layer's own weights had already left
those levels in fine-tuning). Checkpoints of :mod:`nsnn.training`
record both (:func:`nsnn.compress.compression_state`), and ``load_model`` and ``--resume`` restore them; from
a bare state_dict, rebuild masks from its zeros with ``magnitude_prune(model, threshold=0.0)``.

    w, mask = magnitude_prune(w, sparsity=0.75, axis=0)          # numpy [n_input, n_exc]
    report = magnitude_prune(model, sparsity=0.5, scope="global"); attach_masks(model, optimizer)
"""

from __future__ import annotations

import numbers
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

SCOPES = ("layer", "global")  # of quantize too
PRUNE_SCOPES = ("neuron", *SCOPES)
MASK_BUFFER = "weight_mask"
BITS_BUFFER = "weight_bits"
LEVELS_BUFFER = "weight_levels"  # the values a quantized layer's alive weights took (1-D, sorted)
_LOAD_HOOK = "_nsnn_drops_weight_buffers_on_load"
LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def weights_numpy(weight: torch.Tensor) -> np.ndarray:
    """A weight tensor as a numpy array on the CPU (bfloat16, which numpy lacks, as float32)."""
    w = weight.detach().cpu()
    return (w.float() if w.dtype == torch.bfloat16 else w).numpy()


def prunable_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(name, module)`` for every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` (and subclasses) in ``model``."""
    for name, module in model.named_modules():
        if isinstance(module, LAYER_TYPES) and module.weight is not None:
            yield name or "<root>", module


def stored_weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """:func:`prunable_layers`, each checked to hold its ``weight`` as a Parameter: a weight computed
    from others in the forward pass (``weight_norm``, a parametrization, ``torch.nn.utils.prune``)
    would ignore the masks and levels written into it, so such a layer is a ValueError."""
    layers = list(prunable_layers(model))
    for name, module in layers:
        if not isinstance(module._parameters.get("weight"), nn.Parameter):
            raise ValueError(
                f"layer {name!r}: its weight is computed from other parameters in the forward pass "
                "(weight_norm, a parametrization or torch.nn.utils.prune), which would not see nsnn's "
                "masks or levels; remove that first (torch.nn.utils.parametrize.remove_parametrizations, "
                "torch.nn.utils.remove_weight_norm or torch.nn.utils.prune.remove)"
            )
    return layers


def _check_args(sparsity: float | None, threshold: float | None) -> None:
    if (sparsity is None) == (threshold is None):
        raise ValueError(
            "give exactly one of sparsity (fraction pruned, in [0, 1)) or threshold (|w| <= t dies)"
        )
    for key, value in (("sparsity", sparsity), ("threshold", threshold)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise ValueError(f"{key} must be a number, got {value!r}")
    if sparsity is not None and not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if threshold is not None and not threshold >= 0:  # NaN too
        raise ValueError(f"threshold must be >= 0, got {threshold}")


def _normalize_axes(axis: int | tuple[int, ...], ndim: int) -> tuple[int, ...]:
    """``axis`` as non-negative axes of an ``ndim``-dimensional array; ``ValueError`` out of range."""
    axes = tuple(int(a) for a in np.atleast_1d(axis))
    bad = [a for a in axes if not -ndim <= a < ndim]
    if bad:
        raise ValueError(f"axis {bad[0]} is out of range for weights of {ndim} dimensions")
    return tuple(a % ndim for a in axes)


def prune_mask(
    weights: np.ndarray,
    *,
    sparsity: float | None = None,
    threshold: float | None = None,
    mask: np.ndarray | None = None,
    axis: int | tuple[int, ...] | None = None,
) -> np.ndarray:
    """Alive mask (bool, same shape as ``weights``) after pruning; see the module docstring for the rule."""
    _check_args(sparsity, threshold)
    w = np.asarray(weights)
    alive = np.ones(w.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).copy()
    if alive.shape != w.shape:
        raise ValueError(f"mask shape {alive.shape} differs from weights shape {w.shape}")
    magnitude = np.abs(w.astype(np.float64))
    if threshold is not None:
        return alive & (magnitude > threshold)
    axes = tuple(range(w.ndim)) if axis is None else _normalize_axes(axis, w.ndim)
    kept = [a for a in range(w.ndim) if a not in axes]
    order = kept + list(axes)
    groups = int(np.prod([w.shape[a] for a in kept])) if kept else 1
    score = np.where(alive, magnitude, -np.inf).transpose(order).reshape(groups, -1)
    n = score.shape[1]
    dead = (score == -np.inf).sum(axis=1)  # a live NaN or +inf weight is not dead (it ranks last)
    quota = np.maximum(min(round(sparsity * n), max(n - 1, 0)), dead)
    rank = np.empty_like(score, dtype=np.int64)
    np.put_along_axis(rank, np.argsort(score, axis=1, kind="stable"), np.arange(n)[None, :], axis=1)
    keep = (rank >= quota[:, None]).reshape([w.shape[a] for a in order])
    return keep.transpose(np.argsort(order)) & alive


def _keep_largest(alive: np.ndarray, before: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``alive`` (any shape, like ``before`` and ``weights``), or, if it lost every synapse ``before``
    had, a copy keeping the largest-magnitude one of those."""
    if alive.any() or not before.any():
        return alive
    kept = alive.copy()
    kept.flat[np.argmax(np.where(before, np.abs(weights.astype(np.float64)), -np.inf))] = True
    return kept


def _prune_array(weights: Any, **kw: Any) -> tuple[Any, Any]:
    if isinstance(weights, torch.Tensor):
        mask = kw.pop("mask", None)
        mask_np = None if mask is None else mask_array(mask)
        alive = prune_mask(weights_numpy(weights), mask=mask_np, **kw)
        alive_t = torch.from_numpy(alive).to(weights.device)
        return weights.masked_fill(~alive_t, 0), alive_t  # 0, not NaN·0, where pruned
    alive = prune_mask(weights, **kw)
    return np.where(alive, weights, 0).astype(np.asarray(weights).dtype), alive


def mask_array(mask: Any) -> np.ndarray:
    """A mask given as a tensor or array (bool, or 0/1 of any dtype) as a numpy bool array."""
    values = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    return values.astype(bool)


def layer_mask(module: nn.Module) -> torch.Tensor:
    """The layer's persistent mask (all True if it was never pruned)."""
    mask = getattr(module, MASK_BUFFER, None)
    return torch.ones_like(module.weight, dtype=torch.bool) if mask is None else mask


def weights_on_levels(weight: torch.Tensor, alive: torch.Tensor, bits: Any, levels: Any) -> bool:
    """Whether ``weight``'s ``alive`` entries (a bool tensor like it) lie on a quantized layer's ``levels``
    (1-D; without that record, whether they take at most ``2**bits`` values)."""
    live = weight.detach()[alive.to(weight.device)]
    if levels is not None:
        return bool(torch.isin(live, levels.to(device=weight.device, dtype=weight.dtype)).all())
    return torch.unique(live).numel() <= 2 ** int(bits)


def alive_weights(weight: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Where ``weight`` is nonzero and not pruned (``mask``, like it, or None)."""
    alive = weight.detach() != 0
    return alive if mask is None else alive & mask.to(weight.device, torch.bool)


def _user_stacklevel() -> int:
    """``stacklevel`` pointing a warning raised in this module at its first caller outside this module and
    torch (e.g. the ``model.load_state_dict(...)`` line of a load-state-dict hook's warning)."""
    torch_dir = os.path.dirname(torch.__file__) + os.sep
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and (
        frame.f_code.co_filename == __file__ or frame.f_code.co_filename.startswith(torch_dir)
    ):
        frame, level = frame.f_back, level + 1
    return level


def _drop_weight_buffers(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """Load-state-dict pre-hook: keep the layer's mask if the loaded weight is zero where it was pruned, and
    its bits if the weight also lies on their levels; drop what no longer describes the weight."""
    weight = state_dict.get(prefix + "weight")
    held = [name for name in (MASK_BUFFER, BITS_BUFFER, LEVELS_BUFFER) if name in module._buffers]
    if weight is None or not held:
        return
    layer = prefix.rstrip(".") or type(module).__name__
    mask = getattr(module, MASK_BUFFER, None)
    if (
        not isinstance(weight, torch.Tensor)
        or weight.shape != module.weight.shape
        or (mask is not None and bool((weight.detach()[~mask.to(weight.device)] != 0).any()))
    ):
        for name in held:
            delattr(module, name)
        warnings.warn(
            f"load_state_dict gave the pruned/quantized layer {layer} a weight that is not zero where it was "
            "pruned: its mask and bits are dropped, as a fresh model's would be (re-prune it, e.g. "
            "magnitude_prune(model, threshold=0.0))",
            stacklevel=_user_stacklevel(),
        )
        return
    bits = getattr(module, BITS_BUFFER, None)
    if bits is None:
        return
    levels = getattr(module, LEVELS_BUFFER, None)
    if weights_on_levels(weight, alive_weights(weight, mask), bits, levels):
        return
    current = weights_on_levels(module.weight, alive_weights(module.weight, mask), bits, levels)  # else stale
    for name in (BITS_BUFFER, LEVELS_BUFFER):
        if name in module._buffers:
            delattr(module, name)
    if current:
        warnings.warn(
            f"load_state_dict gave the quantized layer {layer} a weight off its quantization levels: its "
            "bits are dropped (its mask is kept); quantize it again for a quantized model",
            stacklevel=_user_stacklevel(),
        )


def set_weight_buffer(module: nn.Module, name: str, value: torch.Tensor) -> None:
    """Register (or replace) ``module``'s non-persistent buffer ``name`` (``weight_mask`` /
    ``weight_bits``), which a later ``load_state_dict`` of the layer's weight drops."""
    if name in module._buffers:
        delattr(module, name)
    module.register_buffer(name, value, persistent=False)
    if not hasattr(module, _LOAD_HOOK):
        setattr(module, _LOAD_HOOK, module.register_load_state_dict_pre_hook(_drop_weight_buffers))


def _set_mask(module: nn.Module, mask: torch.Tensor) -> None:
    mask = mask.to(device=module.weight.device, dtype=torch.bool)
    set_weight_buffer(module, MASK_BUFFER, mask)
    with torch.no_grad():
        module.weight.masked_fill_(~mask, 0)


def _prune_module(model: nn.Module, *, sparsity: float | None, threshold: float | None, scope: str) -> Any:
    from nsnn.compress.report import compression_report

    if scope not in PRUNE_SCOPES:
        raise ValueError(f"scope must be one of {list(PRUNE_SCOPES)}, got {scope!r}")
    layers = stored_weight_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Linear/Conv layers to prune")
    # a weight tied between layers is ranked once and its layers share one mask
    tied: dict[int, list[nn.Module]] = {}
    for _, module in layers:
        tied.setdefault(id(module.weight), []).append(module)
    groups = list(tied.values())
    weights = [weights_numpy(group[0].weight) for group in groups]
    masks = [np.logical_and.reduce([layer_mask(m).cpu().numpy() for m in group]) for group in groups]
    if scope != "global":  # a neuron's incoming weights: every axis of [out, in, *kernel] but the first
        new = [
            prune_mask(
                w,
                sparsity=sparsity,
                threshold=threshold,
                mask=k,
                axis=tuple(range(1, w.ndim)) if scope == "neuron" else None,
            )
            for w, k in zip(weights, masks, strict=True)
        ]
    else:
        flat = prune_mask(
            np.concatenate([w.ravel() for w in weights]),
            sparsity=sparsity,
            threshold=threshold,
            mask=np.concatenate([k.ravel() for k in masks]),
        )
        bounds = np.cumsum([0] + [w.size for w in weights])
        new = [flat[a:b].reshape(w.shape) for a, b, w in zip(bounds[:-1], bounds[1:], weights, strict=True)]
        if sparsity is not None:
            new = [_keep_largest(*layer) for layer in zip(new, masks, weights, strict=True)]
    for group, alive in zip(groups, new, strict=True):
        for module in group:
            _set_mask(module, torch.from_numpy(alive))
    return compression_report(model)


def magnitude_prune(
    target: Any,
    *,
    sparsity: float | None = None,
    threshold: float | None = None,
    mask: Any = None,
    axis: int | tuple[int, ...] | None = None,
    scope: str = "layer",
) -> Any:
    """Prune by magnitude (give ``sparsity`` *or* ``threshold``).

    * numpy array / torch tensor → ``(pruned_weights, mask)`` (same type; ``mask`` and ``axis`` apply).
    * ``nn.Module`` → prunes every Linear/Conv weight in place (``scope="layer"``: each layer reaches
      ``sparsity``; ``"neuron"``: each output unit's incoming weights do, a Linear row or a Conv output
      channel, so every unit keeps the same fan-in; ``"global"``: one ranking over all layers), keeps the
      masks, returns a :class:`~nsnn.compress.report.CompressionReport`.
    """
    if isinstance(target, nn.Module):
        if mask is not None or axis is not None:
            raise ValueError("mask/axis apply to arrays; modules keep their own masks (weight_mask buffers)")
        return _prune_module(target, sparsity=sparsity, threshold=threshold, scope=scope)
    if isinstance(target, np.ndarray | torch.Tensor):
        return _prune_array(target, sparsity=sparsity, threshold=threshold, mask=mask, axis=axis)
    raise ValueError(
        f"cannot prune a {type(target).__name__}; expected a numpy array, a tensor or an nn.Module"
    )


@torch.no_grad()
def apply_masks(model: nn.Module) -> nn.Module:
    """Zero every pruned weight again (call after ``optimizer.step()``); returns ``model``."""
    for _, module in prunable_layers(model):
        mask = getattr(module, MASK_BUFFER, None)
        if mask is not None:
            module.weight.masked_fill_(~mask.bool(), 0)
    return model


def attach_masks(model: nn.Module, optimizer: torch.optim.Optimizer) -> Any:
    """Re-apply the masks after every ``optimizer.step()``; returns the hook handle (``.remove()``)."""
    return optimizer.register_step_post_hook(lambda *_: apply_masks(model))
