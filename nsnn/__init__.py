"""nsnn: noisy spiking neural networks.

Noisy LIF neurons whose firing probability is the noise CDF and whose surrogate gradient is the
noise PDF, BPTT-trained spiking networks, a Brian2 STDP path with pruning and quantization, and a
topology visualizer. ``import nsnn`` needs only torch; Brian2, matplotlib and networkx load lazily.
"""

__version__ = "0.1.0"
