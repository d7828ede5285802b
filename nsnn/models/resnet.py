"""Spiking ResNets (NSNN layouts): ``spiking_resnet19`` (tdBN-style, 12.63M) and ``spiking_resnet18/34``.

Post-activation BasicBlock on time-first tensors ``[T, B, C, H, W]``::

    out = SN(BN(conv3x3(SN(BN(conv3x3(x)))))  + shortcut(x))     # SN = fresh spiking neuron

with ``shortcut = BN(conv1x1(x, stride))`` when the stride or width changes, identity otherwise.
Convolutions and BN run once over ``[T·B, ...]``; only the neurons loop over time. The final layer is
a plain Linear (no output neuron), giving logits ``[T, B, classes]``::

    net = create("spiking_resnet18", num_classes=10, neuron="NILIF", sigma=0.3)
    logits = net(encode(images, T=2))                        # [2, B, 10]
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
    spiking_linear,
    time_first,
)
from nsnn.models.registry import register_model


class BasicBlock(nn.Module):
    """conv3×3-BN-SN-conv3×3-BN (+ shortcut) then SN; ``[T, B, C_in, H, W] -> [T, B, C_out, H/s, W/s]``."""

    def __init__(self, neuron: NeuronSpec, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv_bn1 = conv_bn(in_channels, out_channels, 3, stride)
        self.sn1 = neuron.build()
        self.conv_bn2 = conv_bn(out_channels, out_channels, 3, 1)
        self.shortcut = (
            conv_bn(in_channels, out_channels, 1, stride)
            if stride != 1 or in_channels != out_channels
            else nn.Identity()
        )
        self.sn2 = neuron.build()

    def zero_init_residual(self) -> None:
        """Zero the second BN's scale, so the block starts as SN(shortcut(x)) (Goyal et al. 2017)."""
        for m in self.conv_bn2.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.zeros_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_bn2(self.sn1(self.conv_bn1(x)))
        return self.sn2(out + self.shortcut(x))


class SpikingResNet(nn.Module):
    """Stem conv-BN-SN, stages of :class:`BasicBlock`, global average pool, Linear head.

    Args:
        neuron: recipe for every spiking layer.
        blocks, widths, strides: per stage, the number of blocks, their channels and the first block's
            stride (e.g. ``[2, 2, 2, 2]``, ``[64, 128, 256, 512]``, ``[1, 2, 2, 2]``).
        stem_channels, stem_kernel, stem_stride: the first conv (padding ``kernel // 2``).
        fc_hidden: if set, the head is Linear(width→fc_hidden) → SN → Linear(fc_hidden→classes),
            else a single Linear(width→classes).
        zero_init_residual: start every block's residual branch at zero (see :class:`BasicBlock`).

    Init: convs Kaiming-normal (fan_out), BN 1/0, the hidden FC layer Kaiming-normal (fan_in).
    Shapes: ``[T, B, in_channels, H, W] -> [T, B, num_classes]`` for any H, W ≥ 1.
    """

    def __init__(
        self,
        neuron: NeuronSpec,
        blocks: Sequence[int],
        widths: Sequence[int],
        strides: Sequence[int],
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        stem_channels: int = 64,
        stem_kernel: int = 3,
        stem_stride: int = 1,
        fc_hidden: int | None = None,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if not len(blocks) == len(widths) == len(strides):
            raise ValueError(f"blocks, widths, strides differ in length: {blocks}, {widths}, {strides}")
        if min(blocks, default=1) < 1 or min(strides, default=1) < 1:
            raise ValueError(
                f"every stage needs >= 1 block and a stride >= 1: blocks {blocks}, strides {strides}"
            )
        self.sample_shape = (in_channels, None, None)  # any size: global pooling
        self.stem = nn.Sequential(
            conv_bn(in_channels, stem_channels, stem_kernel, stem_stride), neuron.build()
        )
        stages, channels = [], stem_channels
        for n_blocks, width, stride in zip(blocks, widths, strides, strict=True):
            stage = [BasicBlock(neuron, channels, width, stride)]
            stage += [BasicBlock(neuron, width, width) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*stage))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.pool = SeqToANN(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        if fc_hidden is None:
            self.head = SeqToANN(nn.Linear(channels, num_classes))
        else:
            self.head = nn.Sequential(
                SeqToANN(spiking_linear(channels, fc_hidden)),
                neuron.build(),
                SeqToANN(nn.Linear(fc_hidden, num_classes)),
            )
        kaiming_init(self)
        if zero_init_residual:
            for block in self.modules():
                if isinstance(block, BasicBlock):
                    block.zero_init_residual()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, 5, type(self).__name__, self.sample_shape, steps=time_first(self))
        return self.head(self.pool(self.stages(self.stem(x))))


@register_model
def spiking_resnet19(
    neuron: NeuronSpec,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int | list[int] = 32,
    zero_init_residual: bool = False,
) -> SpikingResNet:
    """NSNN's ResNet-19: stem 3×3→64, blocks [3, 3, 2] at 128/256/512 (strides 1/2/2), FC 512→256→SN→classes.

    12.63M parameters for 10 classes. Size-agnostic (global pool); ``image_size`` is only validated.
    """
    image_hw(image_size)
    return SpikingResNet(
        neuron,
        [3, 3, 2],
        [128, 256, 512],
        [1, 2, 2],
        num_classes=num_classes,
        in_channels=in_channels,
        fc_hidden=256,
        zero_init_residual=zero_init_residual,
    )


def _resnet_type2(
    neuron: NeuronSpec,
    blocks: list[int],
    num_classes: int,
    in_channels: int,
    image_size: int | list[int],
    zero_init_residual: bool,
) -> SpikingResNet:
    small = max(image_hw(image_size)) <= 32
    return SpikingResNet(
        neuron,
        blocks,
        [64, 128, 256, 512],
        [1, 2, 2, 2],
        num_classes=num_classes,
        in_channels=in_channels,
        stem_kernel=3 if small else 7,
        stem_stride=1 if small else 2,
        zero_init_residual=zero_init_residual,
    )


@register_model
def spiking_resnet18(
    neuron: NeuronSpec,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int | list[int] = 32,
    zero_init_residual: bool = False,
) -> SpikingResNet:
    """ResNet-18 layout: blocks [2, 2, 2, 2] at 64/128/256/512 (strides 1/2/2/2), Linear 512→classes.

    Stem conv 3×3/1 for images ≤ 32 px, 7×7/2 for larger ones (e.g. 48×48 DVS). 11.17M parameters.
    """
    return _resnet_type2(neuron, [2, 2, 2, 2], num_classes, in_channels, image_size, zero_init_residual)


@register_model
def spiking_resnet34(
    neuron: NeuronSpec,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int | list[int] = 32,
    zero_init_residual: bool = False,
) -> SpikingResNet:
    """ResNet-34 layout: blocks [3, 4, 6, 3], otherwise as :func:`spiking_resnet18`. 21.28M parameters."""
    return _resnet_type2(neuron, [3, 4, 6, 3], num_classes, in_channels, image_size, zero_init_residual)
