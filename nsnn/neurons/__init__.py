"""Spiking neurons: NILIF (noisy), LIF (deterministic), PLIF (learnable leak); all ``torch.nn`` modules.

Example::

    from nsnn.neurons import NILIF
    spikes = NILIF(noise="gaussian", sigma=0.3)(torch.randn(4, 32, 100))   # [T, B, N]
"""

from __future__ import annotations

from torch import nn

from nsnn.neurons.base import EVAL_MODES, STEP_MODES, SpikingNeuron
from nsnn.neurons.lif import LIF
from nsnn.neurons.nilif import NILIF
from nsnn.neurons.plif import PLIF
from nsnn.noise import Noise

__all__ = ["EVAL_MODES", "LIF", "NEURONS", "NILIF", "PLIF", "STEP_MODES", "SpikingNeuron", "build_neuron"]


def _nilif(noise: str | Noise, sigma: float, **kw: object) -> nn.Module:
    return NILIF(noise=noise, sigma=sigma, **kw)


def _lif(noise: str | Noise, sigma: float, **kw: object) -> nn.Module:
    return LIF(surrogate=noise, sigma=sigma, **kw)


def _plif(noise: str | Noise, sigma: float, **kw: object) -> nn.Module:
    return PLIF(surrogate=noise, sigma=sigma, **kw)


def _niplif(noise: str | Noise, sigma: float, **kw: object) -> nn.Module:
    return PLIF(noise=noise, sigma=sigma, **kw)


NEURONS = {"NILIF": _nilif, "LIF": _lif, "PLIF": _plif, "NIPLIF": _niplif}
"""Neuron kinds for model factories. LIF/PLIF use ``noise``'s PDF as surrogate; NILIF/NIPLIF fire
stochastically with that noise (NIPLIF = noisy firing + learnable leak)."""


def build_neuron(
    kind: str = "NILIF",
    *,
    noise: str | Noise = "gaussian",
    sigma: float = 0.3,
    tau: float = 2.0,
    threshold: float = 1.0,
    reset: str = "hard",
    detach_reset: bool = False,
) -> nn.Module:
    """A fresh neuron module of ``kind`` (one of :data:`NEURONS`), multi-step mode."""
    if not isinstance(kind, str) or kind not in NEURONS:
        raise ValueError(f"unknown neuron {kind!r}; valid choices: {', '.join(NEURONS)}")
    return NEURONS[kind](noise, sigma, tau=tau, threshold=threshold, reset=reset, detach_reset=detach_reset)
