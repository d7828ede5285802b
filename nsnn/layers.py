"""Glue for multi-step networks: stateless layers over ``[T, B, ...]``, state reset, eval modes.

    conv = SeqToANN(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64))
    y = conv(x)                                  # [T, B, 3, H, W] -> [T, B, 64, H, W]

``SeqToANN`` runs its layers once on the flattened ``[T·B, ...]`` tensor (so BatchNorm statistics
pool over time and batch) and restores the time axis.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import Tensor, nn

from nsnn.neurons.base import EVAL_MODES, SpikingNeuron

__all__ = ["SeqToANN", "evaluating", "neuron_eval_mode", "reset_net", "set_eval_mode"]


class SeqToANN(nn.Sequential):
    """Apply stateless modules to every time step at once: ``[T, B, ...] → [T, B, ...]``."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2:
            raise ValueError(f"SeqToANN expects [T, B, ...] (rank >= 2); got shape {tuple(x.shape)}")
        t, b = x.shape[:2]
        return super().forward(x.flatten(0, 1)).unflatten(0, (t, b))


def reset_net(model: nn.Module) -> None:
    """Reset the single-step state of every neuron inside ``model`` (nested containers included)."""
    for m in model.modules():
        if isinstance(m, SpikingNeuron):
            m.reset()


def _stochastic_neurons(model: nn.Module) -> list[SpikingNeuron]:
    return [m for m in model.modules() if isinstance(m, SpikingNeuron) and m.stochastic]


def set_eval_mode(model: nn.Module, mode: str) -> None:
    """Set ``eval_mode`` (stochastic | deterministic | expected) on every stochastic neuron."""
    if not isinstance(mode, str) or mode not in EVAL_MODES:
        raise ValueError(f"eval_mode must be one of {', '.join(EVAL_MODES)}; got {mode!r}")
    for m in _stochastic_neurons(model):
        m.eval_mode = mode


@contextlib.contextmanager
def neuron_eval_mode(model: nn.Module, mode: str) -> Iterator[nn.Module]:
    """:func:`set_eval_mode` inside the block; each neuron's own ``eval_mode`` is restored afterwards.

    Example::

        with neuron_eval_mode(net, "expected"):
            probabilities = net(x)
    """
    neurons = _stochastic_neurons(model)
    before = [n.eval_mode for n in neurons]
    set_eval_mode(model, mode)
    try:
        yield model
    finally:
        for n, previous in zip(neurons, before, strict=True):
            n.eval_mode = previous


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block, every module's own train/eval flag restored afterwards
    (``model.train(flag)`` would not restore submodules whose flags differed)."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags.items():
            module.train(flag)
