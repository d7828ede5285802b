"""An in-memory batch loader: index, augment and normalise whole batches on the training device.

Datasets here fit in memory (CIFAR-10 train is 150 MB as uint8), so there are no workers and no
per-sample Python: each batch is one gather. Images travel as uint8 (4× less than float32), are
augmented on the device, then converted in place as ``x_float = x · scale + bias`` with
``scale = 1 / (255·std)`` and ``bias = −mean / std`` (per channel), i.e. ``(x/255 − mean) / std``.

Order and augmentation are pure functions of ``(seed, epoch, rank)``. Each pass over the loader draws the
next epoch (0, 1, 2, ... as ``DataLoader(shuffle=True)`` reshuffles every pass); ``set_epoch(e)`` makes
the next pass epoch ``e`` exactly, so a resumed run continues with the same batches. With
``world_size > 1`` every rank takes a strided shard of one shared permutation, as ``DistributedSampler``
does::

    loader = TensorLoader(train.images, train.labels, 128, shuffle=True, seed=1, device="cuda",
                          augment=Augment(crop_padding=4, flip=True), mean=CIFAR10_MEAN, std=CIFAR10_STD)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader: ...          # x float32 [B, 3, 32, 32] on cuda, y int64 [B]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from nsnn.data.base import ImageSet

Transform = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]

_ORDER_STREAM, _AUGMENT_STREAM = 0, 1


def _integer(name: str, value: object) -> int:
    """``value`` as an int (Python or numpy integers; not bool, not float, as torch's ``DataLoader``),
    else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from non-negative ints (``numpy.random.SeedSequence``)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0]) & (2**63 - 1)


class TensorLoader:
    """Batches ``(x, y)`` from tensors already in memory, optionally sharded over ranks.

    Args:
        images: uint8 ``[N, H, W]`` (a channel dim is added), ``[N, C, H, W]``, or float frames
            ``[N, T, C, H, W]`` (DVS; used as they are, normalised only when ``mean``/``std`` are given).
        labels: integer ``[N]``.
        batch_size: samples per batch (per rank).
        shuffle: a fresh permutation per epoch from ``(seed, epoch)``; otherwise dataset order. The first
            pass is epoch 0 and each later one the next, unless :meth:`set_epoch` chose it.
        seed: non-negative; with the epoch it fixes order and augmentation.
        drop_last: drop the incomplete last batch and trim the dataset to a multiple of
            ``world_size``; otherwise pad the shards by wrapping around (as ``DistributedSampler``:
            with ``world_size > 1`` up to ``world_size − 1`` samples are seen twice).
        device: where batches are produced; with ``resident`` the whole set is moved there once.
        rank, world_size: this process's shard (rank ``r`` takes permutation positions
            ``r, r + world_size, ...``).
        augment: ``augment(x, generator) -> x`` applied on the device to the raw batch before
            normalisation, e.g. :class:`nsnn.data.Augment`; its generator lives on ``device``.
        mean, std: per-channel constants for ``(x/255 − mean)/std`` (``x − mean)/std`` for float input).
        resident: keep the dataset on ``device`` (default); ``False`` gathers on the host and copies
            each uint8 batch (pinned, non-blocking on CUDA).

    Yields ``x`` float32 ``[B, C, H, W]`` (or ``[B, T, C, H, W]``) and ``y`` int64 ``[B]`` on ``device``;
    ``len(loader)`` is the number of batches per epoch.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        device: str | torch.device = "cpu",
        rank: int = 0,
        world_size: int = 1,
        augment: Transform | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        resident: bool = True,
    ) -> None:
        if (
            images.ndim not in (3, 4, 5)
            or labels.ndim != 1
            or images.shape[0] != labels.shape[0]
            or images.shape[0] == 0
        ):
            raise ValueError(
                "need images [N, H, W], [N, C, H, W] or [N, T, C, H, W] and labels [N] with N > 0, "
                f"got {tuple(images.shape)}, {tuple(labels.shape)}"
            )
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise ValueError(f"images must be uint8 or floating point, got {images.dtype}")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(f"labels must be integers, got {labels.dtype}")
        batch_size, seed = _integer("batch_size", batch_size), _integer("seed", seed)
        rank, world_size = _integer("rank", rank), _integer("world_size", world_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        if images.ndim == 3:
            images = images.unsqueeze(1)
        self.device = torch.device(device)
        data_device = self.device if resident else torch.device("cpu")
        self._images = images.to(data_device)
        self._labels = labels.to(data_device, torch.int64)
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.rank, self.world_size, self.augment, self.resident = rank, world_size, augment, resident
        self.epoch = 0  # the epoch of the current pass, or of the next one after set_epoch
        self._drawn = False  # a pass over self.epoch has begun: the next one advances it
        self._scale, self._bias = self._affine(mean, std, images)

    def _affine(
        self, mean: Sequence[float] | None, std: Sequence[float] | None, images: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        unit = 255.0 if images.dtype == torch.uint8 else 1.0
        if mean is None or std is None:
            return (None, None) if unit == 1.0 else (torch.tensor(1.0 / unit, device=self.device), None)
        channels = images.shape[-3]
        m = torch.as_tensor(mean, dtype=torch.float64).flatten()
        s = torch.as_tensor(std, dtype=torch.float64).flatten()
        sizes_ok = m.numel() in (1, channels) and s.numel() in (1, channels)
        values_ok = bool(torch.isfinite(m).all() and torch.isfinite(s).all() and (s > 0).all())
        if not (sizes_ok and values_ok):
            raise ValueError(
                f"mean/std need 1 or {channels} finite entries (std > 0), "
                f"got mean={m.tolist()}, std={s.tolist()}"
            )
        scale = (1.0 / (unit * s)).expand(channels).reshape(channels, 1, 1)
        bias = (-m / s).expand(channels).reshape(channels, 1, 1)
        return scale.to(self.device, torch.float32), bias.to(self.device, torch.float32)

    @classmethod
    def from_set(cls, data: ImageSet, batch_size: int, **kwargs) -> TensorLoader:
        """``TensorLoader(data.images, data.labels, batch_size, **kwargs)``."""
        return cls(data.images, data.labels, batch_size, **kwargs)

    @property
    def dataset_size(self) -> int:
        return int(self._labels.shape[0])

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch (before dropping an incomplete last batch)."""
        n, w = self.dataset_size, self.world_size
        return n // w if self.drop_last else math.ceil(n / w)

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next pass reproduces (later passes follow
        with ``epoch + 1``, ...)."""
        epoch = _integer("epoch", epoch)
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch, self._drawn = epoch, False

    def indices(self) -> torch.Tensor:
        """This rank's dataset indices for the current epoch (:attr:`epoch`), in batch order (CPU int64)."""
        n, w = self.dataset_size, self.world_size
        if self.shuffle:
            g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, _ORDER_STREAM))
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        total = self.num_samples * w
        if total > n:
            order = order.repeat(math.ceil(total / n))
        return order[:total][self.rank :: w]

    def _generator(self) -> torch.Generator:
        g = torch.Generator(device=self.device)
        return g.manual_seed(derive_seed(self.seed, self.epoch, _AUGMENT_STREAM, self.rank))

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()  # a fresh tensor (the batch is a gather), so in-place ops below are safe
        if self._scale is not None:
            x.mul_(self._scale)
        return x if self._bias is None else x.add_(self._bias)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._drawn:  # a pass without set_epoch: the next epoch, not a replay of the last one
            self.epoch += 1
        self._drawn = True
        order = self.indices().to(self._images.device)
        generator = self._generator() if self.augment is not None else None
        copy = not self.resident and self.device.type != "cpu"
        pin = copy and self.device.type == "cuda"
        for k in range(len(self)):
            idx = order[k * self.batch_size : (k + 1) * self.batch_size]
            x, y = self._images.index_select(0, idx), self._labels.index_select(0, idx)
            if copy:
                x = (x.pin_memory() if pin else x).to(self.device, non_blocking=pin)
                y = (y.pin_memory() if pin else y).to(self.device, non_blocking=pin)
            if self.augment is not None:
                x = self.augment(x, generator)
            yield self._normalize(x), y
