"""Model zoo: spiking ResNets, VGGs, CIFARNet and MNIST nets, built by name with any nsnn neuron.

All models are time-first: input ``[T, B, C, H, W]`` (see :func:`encode`), output per-step logits
``[T, B, classes]`` (see :func:`predict`). The neuron of every spiking layer is chosen by
``neuron="NILIF"|"LIF"|"PLIF"`` and ``noise``, ``sigma``, ``tau``, ``threshold``::

    net = nsnn.models.create("spiking_resnet19", num_classes=10, neuron="NILIF", sigma=0.3)
    labels = nsnn.models.predict(net(nsnn.models.encode(images, T=2)))
"""

from torch import nn

from nsnn.models.cifarnet import CIFARNet
from nsnn.models.common import NEURON_KWARGS, NeuronSpec
from nsnn.models.encoding import ENCODERS, encode, predict
from nsnn.models.mnist import MNISTMLP, MNISTConvNet
from nsnn.models.registry import arch_kwargs, create, list_models, register_model
from nsnn.models.resnet import BasicBlock, SpikingResNet
from nsnn.models.vgg import SpikingVGG


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (shared tensors counted once); ``trainable_only`` skips frozen ones."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "ENCODERS",
    "MNISTMLP",
    "NEURON_KWARGS",
    "BasicBlock",
    "CIFARNet",
    "MNISTConvNet",
    "NeuronSpec",
    "SpikingResNet",
    "SpikingVGG",
    "arch_kwargs",
    "count_parameters",
    "create",
    "encode",
    "list_models",
    "predict",
    "register_model",
]
