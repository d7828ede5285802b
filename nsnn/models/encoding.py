"""Input encoding (static image -> spike/current sequence) and output decoding (logits -> class).

Encoders turn ``[B, ...]`` into time-first ``[T, B, ...]``:

* ``"direct"``: the (normalised) input repeated T times, fed as a current to the first conv (NSNN's
  and most direct-training papers' choice);
* ``"poisson"``: rate coding, ``s_t ~ Bernoulli(clamp(x, 0, 1))`` independently per step and element,
  so inputs must be intensities in [0, 1] (not mean/std normalised).

Decoding follows NSNN: the net emits logits at every step, the prediction is the argmax of their
mean over time::

    logits = net(encode(images, T=4))          # [4, B, classes]
    labels = predict(logits)                   # [B]
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Encoder = Callable[[torch.Tensor, int, "torch.Generator | None"], torch.Tensor]


def _direct(x: torch.Tensor, T: int, generator: torch.Generator | None) -> torch.Tensor:
    return x.unsqueeze(0).repeat(T, *([1] * x.dim()))


def _poisson(x: torch.Tensor, T: int, generator: torch.Generator | None) -> torch.Tensor:
    if not x.is_floating_point():
        raise ValueError(f"poisson encoding needs float intensities in [0, 1], got dtype {x.dtype}")
    p = x.clamp(0.0, 1.0).unsqueeze(0).expand(T, *x.shape)
    return torch.bernoulli(p, generator=generator)


ENCODERS: dict[str, Encoder] = {"direct": _direct, "poisson": _poisson}


def encode(
    x: torch.Tensor, T: int, method: str = "direct", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Encode a batch ``x`` of shape ``[B, ...]`` as a time-first sequence ``[T, B, ...]``.

    ``method``: ``"direct"`` (x repeated T times, same dtype) or ``"poisson"`` (Bernoulli spikes with
    probability ``clamp(x, 0, 1)``, drawn from ``generator`` when given; same float dtype as x).

        seq = encode(images, T=4)                              # [4, B, C, H, W]
        spikes = encode(images, 8, "poisson", torch.Generator().manual_seed(0))
    """
    if method not in ENCODERS:
        raise ValueError(f"unknown encoding method {method!r}; choose from {sorted(ENCODERS)}")
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T (number of time steps) must be a positive int, got {T!r}")
    return ENCODERS[method](x, T, generator)


def predict(logits: torch.Tensor) -> torch.Tensor:
    """Class predictions ``[B]`` (int64) from per-step logits ``[T, B, classes]``: argmax of the time mean.

    Example::

        acc = (predict(net(encode(x, 4))) == y).float().mean()
    """
    if logits.dim() != 3:
        raise ValueError(f"predict expects logits [T, B, classes], got shape {tuple(logits.shape)}")
    return logits.mean(0).argmax(-1)
