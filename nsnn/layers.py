"""Glue for multi-step networks: stateless layers over ``[T, B, ...]``, state reset, eval modes.

    conv = SeqToANN(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64))
    y = conv(x)                                  # [T, B, 3, H, W] -> [T, B, 64, H, W]

``SeqToANN`` runs its layers once on the flattened ``[T·B, ...]`` tensor (so BatchNorm statistics
pool over time and batch) and restores the time axis. :func:`set_step_mode` turns a whole network into
a per-step one (neurons stateful, ``SeqToANN`` layers on ``[B, ...]``) and back::

    set_step_mode(net, "s")
    out = torch.stack([net(x_t) for x_t in x])   # net(x) in "m", step by step (*)
    reset_net(net)                               # before the next sequence

(*) In eval mode, the same spikes for deterministic neurons. Stochastic ones fire by the same law but
from other draws: the fused multi-step kernels use their own random streams, the single step
``torch.rand``. In training mode a network with BatchNorm differs even without noise: each step's
``[B, ...]`` is normalised over B (multi-step: over T·B), and the running statistics are updated T times
per sequence instead of once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import Tensor, nn

from nsnn.neurons.base import EVAL_MODES, STEP_MODES, SpikingNeuron, _choices

__all__ = [
    "SeqToANN",
    "detach_net",
    "evaluating",
    "neuron_eval_mode",
    "reset_net",
    "set_eval_mode",
    "set_step_mode",
]


class SeqToANN(nn.Sequential):
    """Apply stateless modules to every time step at once: ``[T, B, ...] → [T, B, ...]``.

    With ``step_mode="s"`` (a network stepped one ``[B, ...]`` input per call, see
    :func:`set_step_mode`) the modules run on the input as it is. Spiking neurons have state over time
    and cannot go inside (they would take T·B as time): put them between ``SeqToANN`` blocks. Adding
    one is refused, and so is a forward of a block that got one through a nested container.
    """

    step_mode = _choices(STEP_MODES)

    def __init__(self, *modules: nn.Module, step_mode: str = "m") -> None:
        super().__init__(*modules)
        self.step_mode = step_mode

    @staticmethod
    def _refuse_neurons(module: object) -> None:
        if isinstance(module, nn.Module):
            neurons = [type(m).__name__ for m in module.modules() if isinstance(m, SpikingNeuron)]
            if neurons:
                raise ValueError(
                    f"SeqToANN is for stateless layers; {neurons[0]} keeps a membrane over time, which "
                    "T·B flattened would scramble: place the neuron after the SeqToANN block"
                )

    # every way nn.Sequential takes a module: add_module (init, append, extend, +=), __setattr__
    # (block[i] = m, block.name = m) and insert, which writes _modules itself
    def add_module(self, name: str, module: nn.Module | None) -> None:
        self._refuse_neurons(module)
        super().add_module(name, module)

    def __setattr__(self, name: str, value: object) -> None:
        self._refuse_neurons(value)
        super().__setattr__(name, value)

    def insert(self, index: int, module: nn.Module) -> SeqToANN:
        self._refuse_neurons(module)
        return super().insert(index, module)

    def __getitem__(self, idx: int | slice) -> nn.Module:
        item = super().__getitem__(idx)
        if isinstance(item, SeqToANN):  # a slice, rebuilt by __init__: it keeps the block's step mode
            item.step_mode = self.step_mode
        return item

    def forward(self, x: Tensor) -> Tensor:
        self._refuse_neurons(self)  # one put into a nested container after it joined this block
        if self.step_mode == "s":
            return super().forward(x)
        if x.dim() < 2:
            raise ValueError(f"SeqToANN expects [T, B, ...] (rank >= 2); got shape {tuple(x.shape)}")
        t, b = x.shape[:2]
        return super().forward(x.flatten(0, 1)).unflatten(0, (t, b))

    def extra_repr(self) -> str:
        return "step_mode='s'" if self.step_mode == "s" else ""


def reset_net(model: nn.Module) -> None:
    """Reset the single-step state of every neuron inside ``model`` (nested containers included)."""
    for m in model.modules():
        if isinstance(m, SpikingNeuron):
            m.reset()


def detach_net(model: nn.Module) -> None:
    """Cut every neuron's single-step membrane from its autograd graph, keeping its value: truncated
    BPTT over a long per-step sequence (``loss.backward()`` every K steps, then ``detach_net``)."""
    for m in model.modules():
        if isinstance(m, SpikingNeuron) and m.mem is not None:
            m.mem = m.mem.detach()


def set_step_mode(model: nn.Module, mode: str) -> None:
    """Set ``step_mode`` ("m": ``[T, B, ...]`` per call; "s": one ``[B, ...]`` step per call) on every
    neuron and :class:`SeqToANN` block of ``model``, and reset the neurons' single-step state."""
    if not isinstance(mode, str) or mode not in STEP_MODES:
        raise ValueError(f"step_mode must be one of {', '.join(map(repr, STEP_MODES))}; got {mode!r}")
    for m in model.modules():
        if isinstance(m, SpikingNeuron | SeqToANN):
            m.step_mode = mode
    reset_net(model)


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
