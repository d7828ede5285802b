"""CIFARNet (Wu et al. 2019, as used by NSNN) with spiking neurons between its fully connected layers.

Convs (3×3, each followed by a spiking neuron; BN only with ``bn=True``)::

    128, 256, A, 512, A, 1024, 512  ->  Flatten -> FC 1024 -> SN -> FC 512 -> SN -> FC classes

NSNN's version has no neuron between the FC layers, which collapses them into one linear map; here
each hidden FC layer spikes, as in the original. The flattened size is ``512·(H/4)·(W/4)`` from
``image_size`` (32768 at 32×32: 45.00M parameters, 45.01M with ``bn=True``). Input ``[T, B, C, H, W]``
-> ``[T, B, classes]``::

    net = create("cifarnet", num_classes=10, neuron="NILIF", bn=True)
    logits = net(encode(images, T=4))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nsnn.layers import SeqToANN
from nsnn.models.common import (
    NeuronSpec,
    check_input,
    conv_bn,
    image_hw,
    kaiming_init,
    pooled_hw,
    spike_driven_init,
    spiking_linear,
    time_first,
)
from nsnn.models.registry import register_model

CONV_LAYOUT: tuple[int | str, ...] = (128, 256, "A", 512, "A", 1024, 512)
FC_LAYOUT: tuple[int, ...] = (1024, 512)


class CIFARNet(nn.Module):
    """Conv3×3-SN stack (optionally with BN) and a spiking MLP head; see the module docstring.

    Args:
        neuron: recipe for every spiking layer (5 conv and 2 FC layers).
        image_size: input H×W (int or pair); sets the first FC layer's input size.
        bn: BatchNorm after every conv (then convs drop their bias). NSNN's CIFARNet has none.

    Convs are Kaiming-normal, fan_out with BN, and hidden FC layers fan_in. Without BN the first conv is
    Kaiming fan_in and every layer fed by spikes (the other convs, the hidden FC layers) gets
    :func:`~nsnn.models.common.spike_driven_init`, without which the stack is silent at init.

    Shapes: ``[T, B, in_channels, H, W] -> [T, B, num_classes]``.
    """

    def __init__(
        self,
        neuron: NeuronSpec,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int | Sequence[int] = 32,
        bn: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in CONV_LAYOUT:
            if item == "A":
                layers.append(SeqToANN(nn.AvgPool2d(2)))
            else:
                layers += [conv_bn(channels, item, bn=bn), neuron.build()]
                channels = item
        h, w = pooled_hw(image_size, CONV_LAYOUT.count("A"), type(self).__name__)
        self.sample_shape = (in_channels, *image_hw(image_size))
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [SeqToANN(nn.Flatten())]
        width = channels * h * w
        for hidden in FC_LAYOUT:
            head += [SeqToANN(spiking_linear(width, hidden)), neuron.build()]
            width = hidden
        head.append(SeqToANN(nn.Linear(width, num_classes)))
        self.classifier = nn.Sequential(*head)
        kaiming_init(self, conv_mode="fan_out" if bn else "fan_in")
        if not bn:
            convs = [m for m in self.features.modules() if isinstance(m, nn.Conv2d)]
            hidden = [m for m in self.classifier.modules() if isinstance(m, nn.Linear)][:-1]
            spike_driven_init(convs[1:] + hidden, neuron.threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, 5, type(self).__name__, self.sample_shape, steps=time_first(self))
        return self.classifier(self.features(x))


@register_model
def cifarnet(
    neuron: NeuronSpec,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int | list[int] = 32,
    bn: bool = False,
) -> CIFARNet:
    """CIFARNet with spiking FC layers; ``bn=True`` adds BatchNorm after each conv."""
    return CIFARNet(neuron, num_classes=num_classes, in_channels=in_channels, image_size=image_size, bn=bn)
