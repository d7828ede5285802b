"""Compression reports (sparsity and bits per layer) and synaptic events, the energy proxy.

A synapse is *alive* when its mask (if any) keeps it and its weight is nonzero, the weights the forward
pass really uses and :func:`count_synaptic_events` counts: a weight that quantization moved to exactly 0
counts as pruned whether or not its layer has a mask, and a model loaded from its ``state_dict`` alone
(which keeps no masks) reports the same alive counts. Both agree while the masks hold; an optimizer
step without ``apply_masks``/``attach_masks`` revives pruned weights, which the forward pass (and so the
event count) uses again while the report, going by the mask, does not: it warns (``RuntimeWarning``)
when it sees this.

A layer's ``bits`` is what :func:`~nsnn.compress.quantize` recorded (``weight_bits``) while its alive
weights still lie on the values quantization gave them (``weight_levels``); once training has moved any
of them (fine-tuning after quantizing), the record is stale and the layer is reported at full precision
(32), and a checkpoint no longer records those bits (:func:`quantized_bits`).

Synaptic events per inference = Σ over presynaptic spikes of the spiking neuron's *surviving* fan-out:
each event is one weight read and one accumulate on neuromorphic hardware, so events (not MACs) track
energy and, on a CPU simulator, wall time. Dense = the same spikes through unpruned layers. An event is
any nonzero input entry: binary spikes count once each, but a real-valued input (a direct-encoded
image, an average-pooled spike map, ``eval_mode="expected"`` probabilities) is an event wherever it is
not exactly 0, so such layers count (nearly) dense.

    report = compression_report(model); print(report.format_table())
    events = synaptic_events(input_spike_counts, mask)               # STDP: [n_input] x [n_input, n_exc]
    per_layer = count_synaptic_events(model, x)                      # BPTT: x [T, B, ...] spikes
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nsnn.compress.prune import (
    BITS_BUFFER,
    LEVELS_BUFFER,
    MASK_BUFFER,
    alive_weights,
    mask_array,
    prunable_layers,
    weights_numpy,
    weights_on_levels,
)
from nsnn.compress.quantize import FULL_PRECISION_BITS
from nsnn.layers import evaluating


@dataclass(frozen=True)
class LayerStats:
    """One weight tensor: sizes ``weights`` / ``alive`` (nonzero and not masked out), ``bits`` per weight,
    ``distinct`` alive values."""

    name: str
    shape: tuple[int, ...]
    weights: int
    alive: int
    bits: int
    distinct: int

    @property
    def sparsity(self) -> float:
        """Fraction of the weights pruned (0 for a report without weights: nothing was removed)."""
        return 1.0 - self.alive / self.weights if self.weights else 0.0


def _percent(fraction: float) -> str:
    """``fraction`` as a percentage with one decimal that never rounds to exactly 0 or 100 %: a layer
    with one weight left is not shown as fully pruned (99.98 % -> ">99.9%")."""
    text = f"{fraction:.1%}"
    if fraction < 1 and text == "100.0%":
        return ">99.9%"
    if fraction > 0 and text == "0.0%":
        return "<0.1%"
    return text


@dataclass(frozen=True)
class CompressionReport:
    """Per-layer :class:`LayerStats` plus totals; ``format_table()`` for logs, ``to_rows()`` for CSV."""

    layers: tuple[LayerStats, ...]

    @property
    def weights(self) -> int:
        return sum(layer.weights for layer in self.layers)

    @property
    def alive(self) -> int:
        return sum(layer.alive for layer in self.layers)

    @property
    def sparsity(self) -> float:
        """Fraction of the weights pruned (0 for a report without weights: nothing was removed)."""
        return 1.0 - self.alive / self.weights if self.weights else 0.0

    @property
    def storage_bits(self) -> int:
        """Bits to store the surviving weights (values only, no index overhead)."""
        return sum(layer.alive * layer.bits for layer in self.layers)

    def to_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "layer": s.name,
                "shape": "x".join(map(str, s.shape)),
                "weights": s.weights,
                "alive": s.alive,
                "sparsity": round(s.sparsity, 6),
                "bits": s.bits,
                "distinct": s.distinct,
            }
            for s in self.layers
        ]

    def format_table(self) -> str:
        head = f"{'layer':<32} {'shape':>18} {'alive/weights':>22} {'sparsity':>9} {'bits':>5}"
        lines = [head, "-" * len(head)]
        for s in self.layers:
            lines.append(
                f"{s.name:<32} {'x'.join(map(str, s.shape)):>18} {f'{s.alive}/{s.weights}':>22} "
                f"{_percent(s.sparsity):>8} {s.bits:>5}"
            )
        lines.append(
            f"{'total':<32} {'':>18} {f'{self.alive}/{self.weights}':>22} {_percent(self.sparsity):>8}"
        )
        return "\n".join(lines)


def quantized_bits(module: nn.Module) -> int | None:
    """The bits :func:`~nsnn.compress.quantize` recorded for ``module``'s weight while its alive weights
    still lie on the values quantization gave them (``weight_levels``; without that record, while they
    take at most 2**bits values); None if never quantized or moved since (fine-tuning)."""
    bits = getattr(module, BITS_BUFFER, None)
    if bits is None:
        return None
    w, levels = module.weight, getattr(module, LEVELS_BUFFER, None)
    return (
        int(bits)
        if weights_on_levels(w, alive_weights(w, getattr(module, MASK_BUFFER, None)), bits, levels)
        else None
    )


def layer_stats(name: str, weight: Any, mask: Any = None, bits: int | None = None) -> LayerStats:
    """Stats of one weight array/tensor (any shape); alive = nonzero weights where ``mask`` (same shape,
    default all True) is True."""
    w = weights_numpy(weight) if isinstance(weight, torch.Tensor) else np.asarray(weight)
    alive = w != 0 if mask is None else (w != 0) & mask_array(mask)
    distinct = int(np.unique(w[alive]).size)
    return LayerStats(
        name=name,
        shape=tuple(int(d) for d in w.shape),
        weights=int(w.size),
        alive=int(alive.sum()),
        bits=FULL_PRECISION_BITS if bits is None else int(bits),
        distinct=distinct,
    )


def compression_report(
    target: nn.Module | Mapping[str, Any],
    masks: Mapping[str, Any] | None = None,
    bits: Mapping[str, int] | int | None = None,
) -> CompressionReport:
    """Report for a module (masks and bits from its buffers; a stale bits record is ignored, see the
    module docstring; a weight shared by several layers is one row, under its first layer's name) or a
    ``{name: weights}`` mapping.

    For mappings, ``masks`` default to all True and ``bits`` (one int or per name) to 32. Either way
    alive = nonzero and not masked out (module docstring).
    """
    if isinstance(target, nn.Module):
        stats, seen = [], set()
        for name, module in prunable_layers(target):
            if id(module.weight) in seen:  # a weight tied to an earlier layer's: counted once, there
                continue
            seen.add(id(module.weight))
            mask = getattr(module, MASK_BUFFER, None)
            if mask is not None and bool((module.weight.detach()[~mask.bool()] != 0).any()):
                warnings.warn(
                    f"{name}: pruned weights are nonzero again (an optimizer step without apply_masks or "
                    "attach_masks), and the forward pass uses them; this report counts them as pruned. "
                    "Call nsnn.compress.apply_masks(model) to prune them again.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            layer = layer_stats(name, module.weight, mask)
            bits = quantized_bits(module)
            if bits is not None:
                layer = dataclasses.replace(layer, bits=bits)
            stats.append(layer)
        return CompressionReport(tuple(stats))
    masks = masks or {}
    per_name = bits if isinstance(bits, Mapping) else dict.fromkeys(target, bits)
    return CompressionReport(
        tuple(layer_stats(name, w, masks.get(name), per_name.get(name)) for name, w in target.items())
    )


def synaptic_events(pre_spikes: Any, mask: Any) -> Any:
    """Σ_i spikes_i · fan_out_i for a connection ``mask`` ``[n_pre, n_post]``.

    ``pre_spikes`` ``[n_pre]`` gives a float; ``[n, n_pre]`` gives one count per example ``[n]``.
    """
    spikes = np.asarray(pre_spikes, dtype=np.float64)
    fan_out = np.asarray(mask, dtype=bool).sum(axis=1).astype(np.float64)
    if spikes.shape[-1] != fan_out.shape[0]:
        raise ValueError(f"pre_spikes has {spikes.shape[-1]} inputs but mask has {fan_out.shape[0]} rows")
    out = spikes @ fan_out
    return float(out) if out.ndim == 0 else out


def _layer_events(module: nn.Module, x: torch.Tensor, alive: torch.Tensor) -> float:
    """Events of one call: the 0/1 input through the 0/1 ``alive`` kernel, in float64 whatever the
    model's dtype or autocast (bfloat16 holds integers exactly only up to 256, float16 overflows)."""
    events = (x != 0).double()
    with torch.autocast(x.device.type, enabled=False):
        if isinstance(module, nn.Linear):
            return float(F.linear(events, alive).sum())
        # The layer's own convolution, so its padding mode (circular, reflect, ...) reaches the same outputs.
        return float(module._conv_forward(events, alive, None).sum())


@torch.no_grad()
def count_synaptic_events(
    model: nn.Module, inputs: torch.Tensor, n_samples: int | None = None
) -> dict[str, tuple[float, float]]:
    """Run ``model(inputs)`` in eval mode (BatchNorm on its running statistics, neurons in their
    ``eval_mode``; the model's train/eval flags are restored afterwards) and count, per Linear/Conv
    layer, synaptic events per sample: ``{layer: (events_through_surviving_weights, events_if_dense)}``.

    An event is a nonzero input entry times each alive weight it reaches (exact for conv: the binary
    input convolved with the binary alive-weight kernel; see the module docstring for real-valued
    inputs). ``n_samples`` defaults to ``inputs.shape[1]`` (time-first ``[T, B, ...]``).
    """
    n = inputs.shape[1] if n_samples is None else n_samples
    totals: dict[str, list[float]] = {}
    handles = []
    for name, module in prunable_layers(model):

        def hook(mod: nn.Module, args: tuple, _out: Any, name: str = name) -> None:
            alive = (mod.weight != 0).double()
            entry = totals.setdefault(name, [0.0, 0.0])
            entry[0] += _layer_events(mod, args[0], alive)
            entry[1] += _layer_events(mod, args[0], torch.ones_like(alive))

        handles.append(module.register_forward_hook(hook))
    try:
        with evaluating(model):  # an inference: no BatchNorm statistics updated, no training-mode firing
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return {name: (ev / n, dense / n) for name, (ev, dense) in totals.items()}
