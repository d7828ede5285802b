"""Small SNNs for 28×28 digits: ``mnist_mlp`` (NSNN's ToyNet, wider) and ``mnist_convnet``.

``mnist_mlp``:     Flatten → Linear(784 → hidden) → SN → Linear(hidden → classes)
``mnist_convnet``: conv3×3(→w)-BN-SN → AP2 → conv3×3(w→2w)-BN-SN → AP2 → Linear(2w·7·7 → hidden) → SN
→ Linear(hidden → classes). Cheap enough to train on a laptop CPU in minutes (direct encoding, T=4).
Input ``[T, B, 1, 28, 28]`` -> logits ``[T, B, classes]``::

    net = create("mnist_convnet", neuron="NILIF")
    logits = net(encode(images.float() / 255, T=4))          # images [B, 1, 28, 28] uint8
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from nsnn.layers import SeqToANN
from nsnn.models.common import (
    NeuronSpec,
    check_input,
    check_width,
    conv_bn,
    image_hw,
    kaiming_init,
    pooled_hw,
    spiking_linear,
    time_first,
)
from nsnn.models.registry import register_model


class MNISTMLP(nn.Module):
    """One hidden spiking layer (Kaiming fan_in): ``[T, B, C, H, W]`` or ``[T, B, F]`` -> ``[T, B, K]``."""

    def __init__(
        self,
        neuron: NeuronSpec,
        *,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int | Sequence[int] = 28,
        hidden: int = 400,
    ) -> None:
        super().__init__()
        h, w = image_hw(image_size)
        check_width("hidden", hidden, type(self).__name__)
        self.sample_shape = (in_channels, h, w)
        self.hidden = SeqToANN(nn.Flatten(), spiking_linear(in_channels * h * w, hidden))
        self.sn = neuron.build()
        self.readout = SeqToANN(nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = time_first(self)
        lead = 2 if steps else 1  # [T, B] or, one step per call, [B]
        if x.dim() not in (lead + 1, lead + 3):
            if steps:
                expected = "time-first input [T, B, F] or [T, B, C, H, W]"
                hint = "; encode static images with nsnn.models.encode(x, T)"
            else:
                expected, hint = "one step [B, F] or [B, C, H, W]", " (single-step mode)"
            raise ValueError(f"MNISTMLP expects {expected}, got shape {tuple(x.shape)}{hint}")
        if x.dim() == lead + 1:  # flat features: as many as the built image has values
            features = math.prod(self.sample_shape)
            check_input(x, 3, type(self).__name__, (features,), steps=steps)
        else:
            check_input(x, 5, type(self).__name__, self.sample_shape, steps=steps)
        return self.readout(self.sn(self.hidden(x)))


class MNISTConvNet(nn.Module):
    """Two conv-BN-SN-pool stages and a spiking FC layer; see the module docstring.

    Args:
        width: channels of the first conv (the second has ``2·width``).
        hidden: units of the spiking FC layer.

    Init: convs Kaiming-normal (fan_out), the hidden FC layer Kaiming-normal (fan_in).
    Shapes: ``[T, B, in_channels, H, W] -> [T, B, num_classes]`` (H, W ≥ 4).
    """

    def __init__(
        self,
        neuron: NeuronSpec,
        *,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int | Sequence[int] = 28,
        width: int = 16,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        h, w = pooled_hw(image_size, 2, type(self).__name__)
        check_width("width", width, type(self).__name__)
        check_width("hidden", hidden, type(self).__name__)
        self.sample_shape = (in_channels, *image_hw(image_size))
        self.features = nn.Sequential(
            conv_bn(in_channels, width),
            neuron.build(),
            SeqToANN(nn.AvgPool2d(2)),
            conv_bn(width, 2 * width),
            neuron.build(),
            SeqToANN(nn.AvgPool2d(2)),
        )
        self.classifier = nn.Sequential(
            SeqToANN(nn.Flatten(), spiking_linear(2 * width * h * w, hidden)),
            neuron.build(),
            SeqToANN(nn.Linear(hidden, num_classes)),
        )
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, 5, type(self).__name__, self.sample_shape, steps=time_first(self))
        return self.classifier(self.features(x))


@register_model
def mnist_mlp(
    neuron: NeuronSpec,
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int | list[int] = 28,
    hidden: int = 400,
) -> MNISTMLP:
    """Flatten → Linear(784 → hidden) → SN → Linear(hidden → classes); 318,010 parameters by default."""
    return MNISTMLP(
        neuron, num_classes=num_classes, in_channels=in_channels, image_size=image_size, hidden=hidden
    )


@register_model
def mnist_convnet(
    neuron: NeuronSpec,
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int | list[int] = 28,
    width: int = 16,
    hidden: int = 128,
) -> MNISTConvNet:
    """Conv 16 → BN → SN → AP2 → conv 32 → BN → SN → AP2 → FC 128 → SN → FC classes (by default)."""
    return MNISTConvNet(
        neuron,
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        width=width,
        hidden=hidden,
    )
