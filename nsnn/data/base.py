"""The two types every loader returns, the one error they raise, and where datasets live by default.

``ImageSet`` is a pair of in-memory tensors (no per-sample Python objects), so a whole training set is
indexed with one gather::

    data = ImageSet(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.tensor([0, 1, 2, 3]))
    data.subset(torch.tensor([0, 2])).images.shape   # torch.Size([2, 3, 32, 32])
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

DATA_DIR_ENV = "NSNN_DATA_DIR"


class DatasetError(RuntimeError):
    """A dataset is missing or corrupt; the message names the path, the layout and the fix."""


def dataset_error(
    name: str, path: str | Path, layout: str, problem: str, download: bool = True
) -> DatasetError:
    """One message format for every missing/corrupt dataset: what, where, the expected layout, the fix."""
    fix = (
        "Pass --download (get_dataset(..., download=True)) to fetch it (delete a corrupt copy first), "
        "or put the files there by hand."
        if download
        else "There is no download for this dataset: prepare the files as described above."
    )
    return DatasetError(f"{name}: {problem} at {Path(path)}\nExpected layout:\n{layout}\n{fix}")


@dataclass(frozen=True)
class ImageSet:
    """A labelled set of images held as two tensors.

    ``images``: uint8 ``[N, H, W]`` (MNIST) or ``[N, C, H, W]`` (CIFAR), or float event frames
    ``[N, T, C, H, W]`` (DVS-CIFAR10); ``labels``: int64 ``[N]``.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.labels.ndim != 1 or self.images.ndim < 1 or self.images.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"ImageSet needs images [N, ...] and labels [N]; got images "
                f"{tuple(self.images.shape)} and labels {tuple(self.labels.shape)}"
            )
        if self.labels.is_floating_point() or self.labels.is_complex():
            raise ValueError(f"ImageSet labels must be integers, got {self.labels.dtype}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index])


def default_data_dir() -> Path:
    """``$NSNN_DATA_DIR`` if set (``~`` expanded), else ``./data``: where datasets are looked for and
    downloaded to."""
    return Path(os.environ.get(DATA_DIR_ENV, "data")).expanduser()


def progress_off(progress: bool | None) -> bool | None:
    """tqdm's ``disable`` for a ``progress`` flag: ``None`` = auto (a bar only on a TTY)."""
    return None if progress is None else not progress
