"""Spiking VGGs for any input size: ``vgg11``, ``vgg16`` and NSNN/TET's DVS layout ``vggsnn``.

Each number in a layout is a conv3×3-BN-SN unit with that many channels, ``"A"`` a 2×2 average pool;
the classifier is one Linear on the flattened feature map, whose size is derived from ``image_size``
(each pool floors H and W by 2), so CIFAR's 32×32 works as well as DVS's 48×48 (NSNN hard-codes 48).
Input ``[T, B, C, H, W]`` -> logits ``[T, B, classes]``::

    net = create("vggsnn", num_classes=10)                   # 2×48×48 DVS frames
    logits = net(frames.transpose(0, 1))                     # frames [B, T, 2, 48, 48]
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
    time_first,
)
from nsnn.models.registry import register_model

POOL = "A"

LAYOUTS: dict[str, list[int | str]] = {
    "vgg11": [64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    "vgg16": [64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL],
    "vggsnn": [64, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
}


class SpikingVGG(nn.Module):
    """conv3×3-BN-SN stacks with average pools, then Flatten → Linear(C·h·w → classes).

    Args:
        neuron: recipe for every spiking layer.
        layout: channel counts and ``"A"`` (2×2 average pool), e.g. ``LAYOUTS["vgg11"]``.
        image_size: input H×W (int or pair); sets the classifier's input size.

    Convs have no bias (BN follows) and Kaiming-normal (fan_out) weights.
    Shapes: ``[T, B, in_channels, H, W] -> [T, B, num_classes]``.
    """

    def __init__(
        self,
        neuron: NeuronSpec,
        layout: Sequence[int | str],
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int | Sequence[int] = 32,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in layout:
            if item == POOL:
                layers.append(SeqToANN(nn.AvgPool2d(2)))
            elif isinstance(item, int) and item > 0:
                layers += [conv_bn(channels, item), neuron.build()]
                channels = item
            else:
                raise ValueError(f"layout entries must be positive ints or {POOL!r}, got {item!r}")
        h, w = pooled_hw(image_size, layout.count(POOL), type(self).__name__)
        self.sample_shape = (in_channels, *image_hw(image_size))
        self.features = nn.Sequential(*layers)
        self.classifier = SeqToANN(nn.Flatten(), nn.Linear(channels * h * w, num_classes))
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, 5, type(self).__name__, self.sample_shape, steps=time_first(self))
        return self.classifier(self.features(x))


@register_model
def vgg11(
    neuron: NeuronSpec,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int | list[int] = 32,
) -> SpikingVGG:
    """VGG-11 (8 conv-BN-SN, 5 average pools) + Linear; 9.23M parameters at 32×32, 10 classes."""
    return SpikingVGG(
        neuron, LAYOUTS["vgg11"], num_classes=num_classes, in_channels=in_channels, image_size=image_size
    )


@register_model
def vgg16(
    neuron: NeuronSpec,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int | list[int] = 32,
) -> SpikingVGG:
    """VGG-16 (13 conv-BN-SN, 5 average pools) + Linear; 14.72M parameters at 32×32, 10 classes."""
    return SpikingVGG(
        neuron, LAYOUTS["vgg16"], num_classes=num_classes, in_channels=in_channels, image_size=image_size
    )


@register_model
def vggsnn(
    neuron: NeuronSpec,
    *,
    num_classes: int = 10,
    in_channels: int = 2,
    image_size: int | list[int] = 48,
) -> SpikingVGG:
    """NSNN/TET "VGGSNN": 64, 128, A, 256, 256, A, 512, 512, A, 512, 512, A; Linear(512·3·3 → classes).

    Defaults are CIFAR10-DVS frames (2 polarity channels, 48×48); other sizes work too.
    """
    return SpikingVGG(
        neuron, LAYOUTS["vggsnn"], num_classes=num_classes, in_channels=in_channels, image_size=image_size
    )
