"""Bytes autograd holds for backward after a forward pass (shared by the benchmarks).

nbytes = held_for_backward(lambda: layer(x))     # distinct storages, counted once each
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


def held_for_backward(forward: Callable[[], Any]) -> int:
    """Bytes of the distinct storages autograd keeps for the backward of ``forward()``'s result, an
    input's own storage included when the graph keeps it. Only tensors still held once the forward
    has returned count: a graph built and dropped inside the forward (snntorch's reset builds one)
    keeps nothing, and a freed buffer whose address a later tensor reuses is not counted twice."""
    packed: list[weakref.ref[Tensor]] = []

    def pack(t: Tensor) -> Tensor:
        packed.append(weakref.ref(t))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    gc.collect()
    held: dict[int, int] = {}
    for ref in packed:
        t = ref()
        if t is not None:
            storage = t.untyped_storage()
            held[storage.data_ptr()] = storage.nbytes()
    del out
    return sum(held.values())
