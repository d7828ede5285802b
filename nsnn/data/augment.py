"""Batched data augmentation on the training device, one random draw per sample, no Python loop.

Every op takes a batch ``[B, ..., H, W]`` — ``[B, C, H, W]`` images or ``[B, T, C, H, W]`` DVS frames —
and applies one transform per sample, shared by all its channels and frames. Ops work on any dtype
(uint8 before normalisation, as the loader uses them: padding and cutout fill with raw 0 = black / no
events) and draw their randomness from an optional ``torch.Generator`` (on the generator's device),
so a seeded generator reproduces a batch exactly::

    g = torch.Generator().manual_seed(0)
    x = Augment(crop_padding=4, flip=True)(x, g)    # CIFAR training augmentation

Translations are index gathers: ``out[b, ..., i, j] = src[b, ..., rows[b, i], cols[b, j]]``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _check(x: torch.Tensor) -> None:
    if x.ndim < 3:
        raise ValueError(f"augmentation needs a batch [B, ..., H, W] (ndim >= 3), got {tuple(x.shape)}")


def _randint(high: int, n: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    return torch.randint(0, high, (n,), generator=generator, device=device).to(x.device)


def _gather(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``x [B, M, H', W']``, ``rows [B, H]``, ``cols [B, W]`` → ``[B, M, H, W]`` (one flat gather)."""
    b, m, h_src, w_src = x.shape
    h, w = rows.shape[1], cols.shape[1]
    index = (rows[:, :, None] * w_src + cols[:, None, :]).view(b, 1, h * w).expand(b, m, h * w)
    return x.reshape(b, m, h_src * w_src).gather(2, index).view(b, m, h, w)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad by ``padding`` on each side, then crop back to ``H×W`` at a per-sample random offset.

    Offsets ``oy, ox`` are uniform in ``[0, 2·padding]``; ``out[b] = pad(x)[b, ..., oy:oy+H, ox:ox+W]``
    (torchvision's ``RandomCrop(size, padding)``, batched). Shape and dtype are kept.
    """
    _check(x)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if padding == 0:
        return x
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    padded = F.pad(x.reshape(b, -1, h, w), (padding, padding, padding, padding))
    oy = _randint(2 * padding + 1, b, x, generator)
    ox = _randint(2 * padding + 1, b, x, generator)
    rows = oy[:, None] + torch.arange(h, device=x.device)
    cols = ox[:, None] + torch.arange(w, device=x.device)
    return _gather(padded, rows, cols).reshape(x.shape)


def random_roll(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Circularly shift each sample by ``(dy, dx)``, each uniform in ``[-max_shift, max_shift]``.

    ``out[b, ..., i, j] = x[b, ..., (i - dy) mod H, (j - dx) mod W]`` (``torch.roll`` per sample; the
    reference's DVS-CIFAR10 augmentation with ``max_shift = 5``).
    """
    _check(x)
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0:
        return x
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    dy = _randint(2 * max_shift + 1, b, x, generator) - max_shift
    dx = _randint(2 * max_shift + 1, b, x, generator) - max_shift
    rows = (torch.arange(h, device=x.device) - dy[:, None]) % h
    cols = (torch.arange(w, device=x.device) - dx[:, None]) % w
    return _gather(x.reshape(b, -1, h, w), rows, cols).reshape(x.shape)


def random_hflip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each sample left-right with probability ``p`` (``out[b] = x[b].flip(-1)`` or ``x[b]``)."""
    _check(x)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    device = generator.device if generator is not None else x.device
    flip = (torch.rand(x.shape[0], generator=generator, device=device) < p).to(x.device)
    return torch.where(flip.view(-1, *([1] * (x.ndim - 1))), x.flip(-1), x)


def cutout(
    x: torch.Tensor, size: int, generator: torch.Generator | None = None, fill: float = 0
) -> torch.Tensor:
    """Set one ``size×size`` square per sample to ``fill`` (DeVries & Taylor 2017).

    The square's centre ``(cy, cx)`` is uniform over the image; it covers rows
    ``[cy - size//2, cy - size//2 + size)`` (likewise columns), clipped at the borders.
    """
    _check(x)
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    if size == 0:
        return x
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    y0 = _randint(h, b, x, generator)[:, None] - size // 2
    x0 = _randint(w, b, x, generator)[:, None] - size // 2
    i, j = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    mask = ((i >= y0) & (i < y0 + size))[:, :, None] & ((j >= x0) & (j < x0 + size))[:, None, :]
    return x.reshape(b, -1, h, w).masked_fill(mask[:, None], fill).reshape(x.shape)


@dataclass(frozen=True)
class Augment:
    """A training augmentation: crop (zero padding), roll, horizontal flip, cutout, in that order.

    Each op is skipped when its setting is 0/False. ``Augment()(x, g)`` returns ``x`` unchanged.
    Example: CIFAR ``Augment(crop_padding=4, flip=True)``; DVS-CIFAR10 ``Augment(flip=True, roll=5)``.
    """

    crop_padding: int = 0
    roll: int = 0
    flip: bool = False
    cutout: int = 0

    def __post_init__(self) -> None:
        for name in ("crop_padding", "roll", "cutout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"Augment.{name} must be an integer >= 0 (pixels), got {value!r}")
            object.__setattr__(self, name, int(value))  # numpy integers as ints
        if not isinstance(self.flip, bool):
            raise ValueError(f"Augment.flip must be True or False, got {self.flip!r}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = random_crop(x, self.crop_padding, generator)
        x = random_roll(x, self.roll, generator)
        if self.flip:
            x = random_hflip(x, 0.5, generator)
        return cutout(x, self.cutout, generator)

    def describe(self) -> str:
        parts = [
            f"random crop (zero pad {self.crop_padding})" if self.crop_padding else "",
            f"random roll (±{self.roll} px)" if self.roll else "",
            "horizontal flip (p=0.5)" if self.flip else "",
            f"cutout ({self.cutout}×{self.cutout})" if self.cutout else "",
        ]
        return " + ".join(p for p in parts if p) or "none"
