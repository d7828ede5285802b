"""Building blocks shared by the model zoo: the neuron recipe, conv-BN units, shape helpers.

Every spiking layer gets a *fresh* neuron built from one :class:`NeuronSpec` (never one shared
instance), and every stateless layer runs once over the flattened ``[T·B, ...]`` tensor through
:class:`nsnn.layers.SeqToANN`, so BatchNorm statistics pool batch and time (plain BN, as in NSNN)::

    spec = NeuronSpec("LIF", tau=2.0)
    unit = nn.Sequential(conv_bn(3, 64), spec.build())      # [T, B, 3, H, W] -> [T, B, 64, H, W]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from nsnn.layers import SeqToANN
from nsnn.neurons import SpikingNeuron, build_neuron


@dataclass(frozen=True)
class NeuronSpec:
    """How to build the neuron of every spiking layer (passed to :func:`nsnn.neurons.build_neuron`).

    ``kind`` is a key of :data:`nsnn.neurons.NEURONS`: ``"NILIF"`` (noisy LIF: fires with probability
    F(h − θ), F the CDF of ``noise`` with scale ``sigma``; surrogate = its PDF), ``"LIF"``
    (deterministic, surrogate = that PDF), ``"PLIF"`` (LIF with a learnable leak) or ``"NIPLIF"``
    (noisy firing + learnable leak). ``tau`` is the membrane time constant, ``threshold`` θ.
    ``noise`` is looked up in any case, as :func:`nsnn.noise.get_noise` does, and kept lower-case (its
    registered name), so that a model's recorded config names it as the training flags do.

        spec = NeuronSpec("NILIF", noise="logistic", sigma=0.2)
        lif1, lif2 = spec.build(), spec.build()                  # two independent modules
    """

    kind: str = "NILIF"
    noise: str = "gaussian"
    sigma: float = 0.3
    tau: float = 2.0
    threshold: float = 1.0
    reset: str = "hard"
    detach_reset: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.noise, str):
            object.__setattr__(self, "noise", self.noise.lower())

    def build(self) -> nn.Module:
        """A new neuron module in multi-step mode: ``[T, B, ...]`` currents -> spikes of equal shape."""
        return build_neuron(
            self.kind,
            noise=self.noise,
            sigma=self.sigma,
            tau=self.tau,
            threshold=self.threshold,
            reset=self.reset,
            detach_reset=self.detach_reset,
        )

    def as_kwargs(self) -> dict:
        """The keyword form used by :func:`nsnn.models.create` (``kind`` is spelled ``neuron``)."""
        kw = asdict(self)
        return {"neuron": kw.pop("kind"), **kw}


#: ``create()`` keywords that describe the neuron rather than the architecture.
NEURON_KWARGS: tuple[str, ...] = tuple(NeuronSpec().as_kwargs())


def conv_bn(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, bn: bool = True
) -> SeqToANN:
    """``Conv2d`` ("same" padding for odd kernels) + ``BatchNorm2d`` over ``[T·B]``; bias only without BN.

    ``[T, B, C_in, H, W] -> [T, B, C_out, ⌈H/stride⌉, ⌈W/stride⌉]``.
    """
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=not bn)
    return SeqToANN(conv, nn.BatchNorm2d(out_channels)) if bn else SeqToANN(conv)


def spiking_linear(in_features: int, out_features: int) -> nn.Linear:
    """A ``Linear`` that feeds a spiking layer: Kaiming-normal (fan_in, ReLU gain) weights, zero bias.

    Fan-in scaling keeps the drive of a hidden FC neuron at the scale of its (non-negative) spike
    input; PyTorch's default ``Linear`` init (√6 smaller std) leaves such layers nearly silent.
    Wrap it in :class:`SeqToANN` for ``[T, B, in_features] -> [T, B, out_features]``.
    """
    linear = nn.Linear(in_features, out_features)
    nn.init.kaiming_normal_(linear.weight, mode="fan_in", nonlinearity="relu")
    nn.init.zeros_(linear.bias)
    return linear


#: Spike rate assumed by :func:`spike_driven_init`.
SPIKE_INIT_RATE = 0.125


def spike_driven_init(layers: Sequence[nn.Module], threshold: float, rate: float = SPIKE_INIT_RATE) -> None:
    """Normal weights with std ``θ/√(rate·fan_in)`` and zero bias, for Conv2d/Linear layers that take
    spikes and drive spiking neurons without BatchNorm.

    Inputs spiking independently at ``rate`` then give every output a zero-mean drive whose std is θ at
    each step, whatever the depth. Kaiming's fan_in init (std √(2/fan_in)) sizes the drive for ReLU
    inputs; with sparse spikes it shrinks layer by layer, and a deep stack without BN falls silent at
    init (CIFARNet: spike rates 0.28, 0.13, 0.02, then 0 from the fourth layer on, constant logits, no
    gradient); at ``rate`` = 1/8 every layer keeps firing at 0.2-0.3.
    """
    if not rate > 0 or not threshold > 0:
        raise ValueError(f"rate and threshold must be > 0, got {rate} and {threshold}")
    for m in layers:
        if not isinstance(m, nn.Conv2d | nn.Linear):
            raise TypeError(f"spike_driven_init takes Conv2d/Linear layers, got {type(m).__name__}")
        fan_in = m.weight[0].numel()
        nn.init.normal_(m.weight, std=threshold / (rate * fan_in) ** 0.5)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``32 -> (32, 32)``, ``(48, 64) -> (48, 64)``; ValueError on anything else or sizes < 1."""

    def valid(s: object) -> bool:
        return isinstance(s, int) and not isinstance(s, bool) and s >= 1

    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    if not isinstance(size, Sequence) or len(size) != 2 or not all(valid(s) for s in size):
        raise ValueError(f"image_size must be a positive int or an (H, W) pair of them, got {image_size!r}")
    return (size[0], size[1])


def pooled_hw(image_size: int | Sequence[int], n_pools: int, what: str) -> tuple[int, int]:
    """Spatial size after ``n_pools`` 2×2 average pools (floor), ValueError if it reaches zero."""
    h, w = image_hw(image_size)
    h, w = h >> n_pools, w >> n_pools
    if h == 0 or w == 0:
        raise ValueError(
            f"{what} halves the image {n_pools} times; image_size={image_size!r} is too small "
            f"(needs at least {2**n_pools} px per side)"
        )
    return h, w


def check_width(name: str, value: int, model: str) -> None:
    """ValueError unless the layer size ``value`` (e.g. ``hidden``) is at least 1."""
    if value < 1:
        raise ValueError(f"{name} of {model} must be >= 1, got {value}")


def time_first(model: nn.Module) -> bool:
    """Whether ``model`` takes ``[T, B, ...]`` per call: False once :func:`nsnn.set_step_mode` put its
    neurons in single-step mode, where each call is one ``[B, ...]`` step."""
    return not any(isinstance(m, SpikingNeuron) and m.step_mode == "s" for m in model.modules())


def check_input(
    x: torch.Tensor,
    rank: int,
    model: str,
    sample: Sequence[int | None] | None = None,
    *,
    steps: bool = True,
) -> None:
    """Raise a helpful ValueError unless ``x`` is time-first with the given rank and, where ``sample``
    gives them, the per-sample sizes ``[C, H, W]`` the model was built for (``None``: any size).
    ``steps=False`` (single-step mode, see :func:`time_first`): one ``[B, ...]`` step of rank − 1."""
    if not steps:
        rank -= 1
    if x.dim() != rank:
        if not steps:
            layout = "[B, C, H, W]" if rank == 4 else "[B, ...]"
            raise ValueError(
                f"{model} is in single-step mode and expects one step {layout} (rank {rank}) per call, "
                f"got shape {tuple(x.shape)}"
            )
        layout = "[T, B, C, H, W]" if rank == 5 else "[T, B, ...]"
        raise ValueError(
            f"{model} expects time-first input {layout} (rank {rank}), got shape {tuple(x.shape)}; "
            "encode static images with nsnn.models.encode(x, T)"
        )
    per_sample = x.shape[2:] if steps else x.shape[1:]
    if sample is not None and any(
        want is not None and got != want for got, want in zip(per_sample, sample, strict=True)
    ):
        built = ", ".join("*" if s is None else str(s) for s in sample)
        raise ValueError(
            f"{model} was built for samples [{built}] (in_channels, image_size), got input of shape "
            f"{tuple(x.shape)}; build it for these with create(..., in_channels=, image_size=)"
        )


def kaiming_init(model: nn.Module, conv_mode: str = "fan_out") -> None:
    """Kaiming-normal (ReLU gain) conv weights, zero conv biases, BN weight 1 and bias 0.

    ``conv_mode="fan_out"`` (torchvision's choice) suits convs followed by BN, which fixes the forward
    scale anyway; convs without BN should use ``"fan_in"``, which preserves the forward scale.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=conv_mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
