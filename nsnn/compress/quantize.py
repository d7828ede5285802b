"""Weight quantization to k-bit uniform levels or to an explicit list of device levels.

``bits`` = k (1 to 31) gives 2**k evenly spaced levels spanning ``w_range = (low, high)``, both ends
included (k = 1: {low, high}); each weight moves to its nearest level (ties to the lower one). These
levels are never listed (:class:`UniformLevels`): the nearest one is computed from the weight, so time
and memory grow with the number of weights, not with 2**k. Levels are float64 and the result is cast
back to the weights' dtype, so beyond that dtype's precision (float32: 24 bits, bfloat16: 8) neighbouring
levels merge into the same value and a larger k changes nothing more. ``levels`` gives the levels
directly (e.g. a memristor's measured conductance states). ``bits >= 32`` without ``levels`` means full
precision (returned unchanged). Pruned weights (``mask=False``) stay exactly 0. Default range:
``(0, max|w|)`` for non-negative weights (as STDP's [0, w_max]), ``(−max|w|, max|w|)`` otherwise, over
the alive weights (per layer, or over all layers with ``scope="global"``). With the non-negative default
range 0 is a level (with the symmetric one, 2**k levels being even, it is not: pruned weights are the only
zeros): an alive weight nearest to it becomes 0 but stays in the mask (training may move it again),
while the compression report, synaptic-event counts and the visualizer's "zero" fraction, which all
count nonzero weights, count it as pruned.

Torch modules: every Linear/Conv ``weight`` is quantized in place and the bits per weight of its level
set (``k``, or ``ceil(log2(len(levels)))``) are kept as a non-persistent 0-d buffer ``weight_bits``
(what the report reads; ``load_state_dict`` of the weight drops it, as it drops pruning masks).

    wq = quantize(w, bits=4, w_range=(0.0, 1.0), mask=mask)      # STDP weights, 16 levels
    report = quantize(model, bits=8)                              # every conv/linear layer
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch import nn

from nsnn.compress.prune import (
    BITS_BUFFER,
    LEVELS_BUFFER,
    MASK_BUFFER,
    SCOPES,
    layer_mask,
    mask_array,
    set_weight_buffer,
    stored_weight_layers,
    weights_numpy,
)

FULL_PRECISION_BITS = 32


@dataclass(frozen=True)
class UniformLevels:
    """``2**bits`` evenly spaced levels from ``low`` to ``high`` (both included), described, not listed.

    Level ``i`` is ``i·step + low`` with ``step = (high − low) / (2**bits − 1)``, and the last one is
    exactly ``high``: the same float64 values as ``np.linspace(low, high, 2**bits)``.
    """

    bits: int
    low: float
    high: float

    def __post_init__(self) -> None:
        if not isinstance(self.bits, Integral) or not 1 <= self.bits < FULL_PRECISION_BITS:
            raise ValueError(
                f"bits must be an integer in [1, {FULL_PRECISION_BITS - 1}] for uniform levels, "
                f"got {self.bits!r}"
            )
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.high > self.low):
            raise ValueError(f"w_range must be finite with high > low, got ({self.low}, {self.high})")
        if not 0 < self.step < math.inf:
            raise ValueError(
                f"w_range ({self.low}, {self.high}) cannot hold {self.count} distinct float64 levels"
            )

    @property
    def count(self) -> int:
        return 2 ** int(self.bits)

    @property
    def step(self) -> float:
        return (float(self.high) - float(self.low)) / (self.count - 1)

    def nearest(self, x: np.ndarray) -> np.ndarray:
        """Each entry of ``x`` (any shape) at its nearest level (ties to the lower one), float64, same
        shape; O(x.size) time and memory whatever ``bits``. Entries beyond the range (±inf too) go to
        its end levels; NaN stays NaN."""
        low, step, top = float(self.low), self.step, self.count - 1
        x = np.clip(np.asarray(x, dtype=np.float64), low, float(self.high))
        below = np.clip(np.floor((x - low) / step), 0, top - 1)
        lower = below * step + low
        upper = np.where(below == top - 1, float(self.high), (below + 1) * step + low)
        return np.where(np.abs(upper - x) < np.abs(x - lower), upper, lower)


def uniform_levels(bits: int, low: float, high: float) -> np.ndarray:
    """The levels of ``UniformLevels(bits, low, high)`` listed, float64 ``[2**bits]`` (memory grows as
    2**bits: quantization never lists them)."""
    grid = UniformLevels(bits, low, high)
    return np.linspace(float(grid.low), float(grid.high), grid.count)


def level_bits(levels: Any) -> int:
    """Bits per weight to store one of ``levels``: ``bits`` for a :class:`UniformLevels`, else
    ``ceil(log2(n))`` for the n distinct values of a level list (at least 1). The one rule for every
    report of bits: BPTT layers, STDP runs with device levels, the visualizer."""
    if isinstance(levels, UniformLevels):
        return int(levels.bits)
    return max(1, math.ceil(math.log2(len(np.unique(np.asarray(levels, dtype=np.float64))))))


def nearest_level(x: np.ndarray, levels: np.ndarray | UniformLevels) -> np.ndarray:
    """Each entry of ``x`` replaced by its nearest entry of ``levels`` (ties go to the lower level;
    entries beyond the levels, ±inf too, go to the end ones); NaN stays NaN."""
    if isinstance(levels, UniformLevels):
        return levels.nearest(x)
    levels = np.unique(np.asarray(levels, dtype=np.float64))
    x = np.clip(np.asarray(x, dtype=np.float64), levels[0], levels[-1])
    if len(levels) == 1:
        return np.where(np.isnan(x), np.nan, levels[0])
    upper = np.clip(np.searchsorted(levels, x), 1, len(levels) - 1)
    lower = upper - 1
    pick_upper = np.abs(levels[upper] - x) < np.abs(x - levels[lower])
    return np.where(np.isnan(x), np.nan, np.where(pick_upper, levels[upper], levels[lower]))


def _pair(w_range: Any) -> tuple[float, float]:
    """``w_range`` as ``(low, high)``: two finite numbers, low < high; else ValueError."""
    try:
        low, high = (float(v) for v in w_range)
    except (TypeError, ValueError):
        raise ValueError(f"w_range must be a pair (low, high) of numbers, got {w_range!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"w_range must be finite with low < high, got {w_range!r}")
    return low, high


def _default_range(alive_values: np.ndarray) -> tuple[float, float]:
    """[0, max |w|] for non-negative weights, else [−max |w|, max |w|], over the finite ones (NaN and
    ±inf say nothing about where the levels should lie); [0, 1] if none is nonzero."""
    finite = alive_values[np.isfinite(alive_values)]
    top = float(np.abs(finite).max(initial=0.0)) or 1.0
    return (0.0, top) if finite.size == 0 or finite.min() >= 0 else (-top, top)


def level_set(
    bits: int | None, levels: Any, alive_values: np.ndarray, w_range: tuple[float, float] | None
) -> np.ndarray | UniformLevels | None:
    """The levels to use: ``levels`` (a :class:`UniformLevels`, or a list returned sorted and unique),
    else :class:`UniformLevels` for ``bits``, or None for full precision (``bits >= 32``)."""
    if isinstance(levels, UniformLevels):
        return levels
    if levels is not None:
        given = np.asarray(levels, dtype=np.float64)
        if given.ndim != 1 or given.size < 1 or not np.isfinite(given).all():
            raise ValueError(f"levels must be a flat list of at least one finite value, got {levels!r}")
        return np.unique(given)
    if bits is None:
        raise ValueError("give bits (k-bit uniform levels) or levels (explicit list)")
    if isinstance(bits, bool) or not isinstance(bits, Integral):
        raise ValueError(f"bits must be an integer, got {bits!r}")
    if bits < 1:
        raise ValueError(f"bits must be >= 1 ({FULL_PRECISION_BITS}+ = full precision), got {bits}")
    if bits >= FULL_PRECISION_BITS:
        return None
    low, high = w_range if w_range is not None else _default_range(alive_values)
    return UniformLevels(bits, low, high)


def _quantize_array(
    w: Any, *, bits: int | None, levels: Any, w_range: tuple[float, float] | None, mask: Any
) -> Any:
    is_tensor = isinstance(w, torch.Tensor)
    values = weights_numpy(w) if is_tensor else np.asarray(w)
    alive = np.ones(values.shape, dtype=bool) if mask is None else mask_array(mask)
    if alive.shape != values.shape:
        raise ValueError(f"mask shape {alive.shape} differs from weights shape {values.shape}")
    chosen = level_set(bits, levels, values[alive], w_range)
    out = values.astype(np.float64) if chosen is None else nearest_level(values, chosen)
    out = np.where(alive, out, 0.0).astype(values.dtype)
    return torch.from_numpy(out).to(device=w.device, dtype=w.dtype) if is_tensor else out


@torch.no_grad()
def _quantize_module(
    model: nn.Module, *, bits: int | None, levels: Any, w_range: tuple[float, float] | None, scope: str
) -> Any:
    from nsnn.compress.report import compression_report

    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {list(SCOPES)}, got {scope!r}")
    layers = stored_weight_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Linear/Conv layers to quantize")
    unmasked_zeros = [
        name
        for name, m in layers
        if getattr(m, MASK_BUFFER, None) is None and (m.weight == 0).float().mean().item() > 0.01
    ]
    if unmasked_zeros:  # a pruned model reloaded from its state_dict alone: its zeros are not dead
        warnings.warn(
            f"layers {unmasked_zeros} hold weights that are exactly 0 but no pruning mask, so they are "
            "quantized like live ones (with a symmetric range, away from 0); if they were pruned, rebuild "
            "the masks first with magnitude_prune(model, threshold=0.0), or load the model with "
            "nsnn.training.load_model, which restores them",
            stacklevel=3,
        )
    shared = None
    if scope == "global":
        alive = np.concatenate([weights_numpy(m.weight)[layer_mask(m).cpu().numpy()] for _, m in layers])
        shared = level_set(bits, levels, alive, w_range)
    for _, module in layers:
        mask = layer_mask(module)
        values = weights_numpy(module.weight)
        chosen = shared if scope == "global" else level_set(bits, levels, values[mask.cpu().numpy()], w_range)
        if chosen is None:
            continue
        module.weight.copy_(_quantize_array(module.weight, bits=None, levels=chosen, w_range=None, mask=mask))
        bits_tensor = torch.tensor(level_bits(chosen), dtype=torch.int64, device=module.weight.device)
        set_weight_buffer(module, BITS_BUFFER, bits_tensor)
        set_weight_buffer(module, LEVELS_BUFFER, torch.unique(module.weight.detach()[mask]))
    return compression_report(model)


def quantize(
    target: Any,
    *,
    bits: int | None = None,
    levels: Any = None,
    w_range: tuple[float, float] | None = None,
    mask: Any = None,
    scope: str = "layer",
) -> Any:
    """Quantize to ``2**bits`` uniform levels over ``w_range`` or to ``levels`` (a list or a
    :class:`UniformLevels`); see the module docstring for the rule.

    * numpy array / tensor → the quantized copy (same type, dtype and shape); ``mask=False`` entries → 0.
    * ``nn.Module`` → every Linear/Conv weight quantized in place (per layer, or ``scope="global"`` with
      one level set), pruning masks respected; returns a :class:`~nsnn.compress.report.CompressionReport`.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {list(SCOPES)}, got {scope!r}")
    if levels is not None and (bits is not None or w_range is not None):
        given = ", ".join(k for k, v in (("bits", bits), ("w_range", w_range)) if v is not None)
        raise ValueError(f"levels lists the levels itself; drop {given} (or drop levels)")
    if w_range is not None:
        w_range = _pair(w_range)
    if isinstance(target, nn.Module):
        if mask is not None:
            raise ValueError("modules use their own pruning masks (weight_mask buffers); do not pass mask")
        return _quantize_module(target, bits=bits, levels=levels, w_range=w_range, scope=scope)
    if isinstance(target, np.ndarray | torch.Tensor):
        return _quantize_array(target, bits=bits, levels=levels, w_range=w_range, mask=mask)
    raise ValueError(
        f"cannot quantize a {type(target).__name__}; expected a numpy array, a tensor or an nn.Module"
    )
