"""nsnn: noisy spiking neural networks.

Noisy LIF neurons whose firing probability is the noise CDF and whose surrogate gradient is the
noise PDF, BPTT-trained spiking networks, a Brian2 STDP path with pruning and quantization, and a
topology visualizer. ``import nsnn`` needs only torch; the subpackages (``nsnn.models``,
``nsnn.training``, ``nsnn.data``, ``nsnn.compress``, ``nsnn.stdp``, ``nsnn.io``) are imported on first
use, and Brian2, matplotlib and networkx load lazily.

    import nsnn
    neuron = nsnn.NILIF(noise="gaussian", sigma=0.3)
    spikes = neuron(torch.randn(4, 32, 100))        # [T, B, N] -> [T, B, N]
"""

import importlib
from typing import Any

from nsnn.layers import SeqToANN, detach_net, neuron_eval_mode, reset_net, set_eval_mode, set_step_mode
from nsnn.neurons import LIF, NILIF, PLIF, SpikingNeuron, build_neuron
from nsnn.noise import Noise, get_noise, list_noises

__version__ = "0.1.0"

__all__ = [
    "LIF",
    "NILIF",
    "PLIF",
    "Noise",
    "SeqToANN",
    "SpikingNeuron",
    "build_neuron",
    "detach_net",
    "get_noise",
    "list_noises",
    "neuron_eval_mode",
    "reset_net",
    "set_eval_mode",
    "set_step_mode",
]

_SUBPACKAGES = ("compress", "data", "functional", "io", "models", "stdp", "training")


def __getattr__(name: str) -> Any:
    """``nsnn.models`` etc. after a plain ``import nsnn``: the subpackage, imported on first use."""
    if name in _SUBPACKAGES:
        return importlib.import_module(f"nsnn.{name}")
    raise AttributeError(f"module 'nsnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBPACKAGES))
