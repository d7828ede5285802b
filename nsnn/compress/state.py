"""A model's compression (pruning masks and bit widths) as plain data, stored in a checkpoint beside its
``state_dict`` (whose keys stay those of an uncompressed model) and put back after the weights load.

Masks and ``weight_bits`` are non-persistent buffers (see :mod:`nsnn.compress.prune`), so a
``state_dict`` alone forgets them: a reloaded pruned model would train its pruned weights back and
report 32 bits. :func:`nsnn.training.checkpoint.make_checkpoint` records them and
:func:`nsnn.training.load_model` (and ``--resume``) restores them::

    ckpt["compression"] = compression_state(model)   # {layer: {"mask": bool tensor, "bits": int, ...}}
    model.load_state_dict(ckpt["model"]); restore_compression(model, ckpt["compression"])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nsnn.compress.prune import (
    BITS_BUFFER,
    LEVELS_BUFFER,
    MASK_BUFFER,
    _set_mask,
    prunable_layers,
    set_weight_buffer,
    stored_weight_layers,
)
from nsnn.compress.report import quantized_bits


def compression_state(model: nn.Module) -> dict[str, dict[str, Any]]:
    """For every pruned or quantized Linear/Conv layer of ``model`` (named as by
    :func:`~nsnn.compress.prunable_layers`): its mask (a bool tensor shaped like the weight, on the CPU)
    and/or, while its weights stay on their quantized values, its bits (an int) and those values (a 1-D
    tensor). Empty for an uncompressed model."""
    state: dict[str, dict[str, Any]] = {}
    for name, module in prunable_layers(model):
        entry: dict[str, Any] = {}
        mask = getattr(module, MASK_BUFFER, None)
        if mask is not None:
            entry["mask"] = mask.detach().to("cpu", torch.bool, copy=True)
        bits = quantized_bits(module)  # not a stale record of a layer trained since
        if bits is not None:
            entry["bits"] = bits
            levels = getattr(module, LEVELS_BUFFER, None)
            if levels is not None:
                entry["levels"] = levels.detach().to("cpu", copy=True)
        if entry:
            state[name] = entry
    return state


def restore_compression(model: nn.Module, state: Mapping[str, Mapping[str, Any]]) -> nn.Module:
    """Give ``model``'s layers the masks (its weights multiplied by them) and bits that
    :func:`compression_state` recorded; call it after loading the weights, which drops both. Returns
    ``model``. ``ValueError`` naming a layer ``model`` lacks, or a mask shaped unlike its weight."""
    layers = dict(stored_weight_layers(model))
    for name, entry in state.items():
        module = layers.get(name)
        if module is None:
            raise ValueError(f"the compression record names layer {name!r}, which the model lacks")
        mask = entry.get("mask")
        if mask is not None:
            if tuple(mask.shape) != tuple(module.weight.shape):
                raise ValueError(
                    f"the compression record's mask of {name!r} is {list(mask.shape)}, "
                    f"its weight {list(module.weight.shape)}"
                )
            _set_mask(module, mask)
        if entry.get("bits") is not None:
            bits = torch.tensor(int(entry["bits"]), dtype=torch.int64, device=module.weight.device)
            set_weight_buffer(module, BITS_BUFFER, bits)
            if entry.get("levels") is not None:
                levels = entry["levels"].to(module.weight.device, module.weight.dtype)
                set_weight_buffer(module, LEVELS_BUFFER, levels)
    return model
