"""Compression shared by the STDP and BPTT networks: magnitude pruning with persistent masks, k-bit or
device-level quantization, sparsity/bits reports and synaptic-event counts (energy proxy).

Works on numpy arrays (the STDP X→Ae matrix) and on torch ``nn.Module`` Linear/Conv weights, and needs
only numpy and torch::

    from nsnn.compress import magnitude_prune, quantize, attach_masks
    w, mask = magnitude_prune(w, sparsity=0.75, axis=0); wq = quantize(w, bits=4, w_range=(0, 1), mask=mask)
    report = magnitude_prune(model, sparsity=0.5); attach_masks(model, optimizer); quantize(model, bits=8)

Checkpoints of :mod:`nsnn.training` keep a model's masks and bits (:func:`compression_state`), so a
compressed network saved with ``save_model`` tests, resumes and draws as compressed.
"""

from nsnn.compress.prune import (
    apply_masks,
    attach_masks,
    layer_mask,
    magnitude_prune,
    prunable_layers,
    prune_mask,
)
from nsnn.compress.quantize import (
    UniformLevels,
    level_bits,
    level_set,
    nearest_level,
    quantize,
    uniform_levels,
)
from nsnn.compress.report import (
    CompressionReport,
    LayerStats,
    compression_report,
    count_synaptic_events,
    layer_stats,
    synaptic_events,
)
from nsnn.compress.state import compression_state, restore_compression

__all__ = [
    "CompressionReport",
    "LayerStats",
    "UniformLevels",
    "apply_masks",
    "attach_masks",
    "compression_report",
    "compression_state",
    "count_synaptic_events",
    "layer_mask",
    "layer_stats",
    "level_bits",
    "level_set",
    "magnitude_prune",
    "nearest_level",
    "prunable_layers",
    "prune_mask",
    "quantize",
    "restore_compression",
    "synaptic_events",
    "uniform_levels",
]
