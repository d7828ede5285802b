"""DVS-CIFAR10 (CIFAR10-DVS) from preprocessed event-frame tensors.

nsnn does not convert the raw ``.aedat`` recordings; it reads the frames the reference preprocessing
produces (10 equal-event-count chunks per recording, 2 polarity channels, each frame divided by its
max, resized to 48×48; 7,000 train / 3,000 test). Two layouts are accepted, in ``root`` or
``root/dvs-cifar10``:

* one file per sample, ``train/{i}.pt`` and ``test/{i}.pt``, each ``torch.save([frames, label])`` with
  ``frames`` float ``[T, 2, H, W]`` and ``label`` in ``[0, 10)``, an int or a one-element tensor (the
  reference writes ``torch.Tensor([label])``, a float);
* one stacked file per split, ``train.pt`` / ``test.pt`` = ``{"frames": [N, T, 2, H, W], "labels": [N]}``,
  as written by :func:`pack_dvs_cifar10` (loads in seconds instead of 10,000 file opens).

Everything is read with ``torch.load(weights_only=True)``::

    pack_dvs_cifar10("data/dvs-cifar10")                 # once: per-sample files -> train.pt, test.pt
    train = load_dvs_folder("data", "train")             # images float [7000, 10, 2, 48, 48]
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from tqdm import tqdm

from nsnn.data.base import DatasetError, ImageSet, dataset_error, progress_off
from nsnn.io import TorchFileError, atomic_save_torch, load_torch

DVS_NUM_CLASSES = 10
DVS_SPLITS = ("train", "test")
DVS_FOLDER = "dvs-cifar10"
DVS_LAYOUT = """  <root>/ (or <root>/dvs-cifar10/) holding either
    train/0.pt ... train/<N-1>.pt and test/0.pt ... : each torch.save([frames, label]) with frames
      float [T, 2, H, W] (reference: T=10, 48x48) and label in [0, 10) (int or 1-element tensor)
    or train.pt and test.pt: {"frames": float [N, T, 2, H, W], "labels": int64 [N]} (pack_dvs_cifar10)
  (frames preprocessed from the CIFAR10-DVS .aedat recordings; nsnn does not download or convert them)"""


def _error(root: Path, problem: str) -> DatasetError:
    return dataset_error("dvs-cifar10", root, DVS_LAYOUT, problem, download=False)


def find_dvs_folder(root: str | Path) -> Path | None:
    """``root/dvs-cifar10`` or ``root`` itself, whichever holds a train split, else whichever holds a test
    split (a copy of the test split alone, which is all that testing a checkpoint reads); ``None`` if
    neither holds either."""
    root = Path(root)
    for split in DVS_SPLITS:
        for folder in (root / DVS_FOLDER, root):
            if (folder / f"{split}.pt").is_file() or (folder / split).is_dir():
                return folder
    return None


def _sample_files(folder: Path) -> list[Path]:
    """``0.pt … <N-1>.pt`` in index order; a gap or an index written twice (``5.pt``, ``05.pt``) is an
    error naming the file, not a silently shorter or duplicated set."""
    numbered = (p for p in folder.glob("*.pt") if re.fullmatch("[0-9]+", p.stem))  # not str.isdigit: "²"
    files = sorted(numbered, key=lambda p: (int(p.stem), p.name))
    for i, path in enumerate(files):
        if int(path.stem) != i:
            taken = int(path.stem) < i
            problem = (
                f"{path.name} repeats sample index {int(path.stem)} ({files[i - 1].name})"
                if taken
                else f"sample file {i}.pt is missing (the files run 0.pt … {len(files) - 1}.pt by count)"
            )
            raise _error(folder, problem)
    return files


def _label(value: object, path: Path) -> int:
    """An int, or a one-element tensor holding an integral value (the reference saves ``Tensor([c])``)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and float(value.item()).is_integer():
        value = int(value.item())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < DVS_NUM_CLASSES:
        raise _error(
            path.parent, f"{path.name} has label {value!r}, expected an int in [0, {DVS_NUM_CLASSES})"
        )
    return value


def _load(path: Path) -> object:
    try:
        return load_torch(path)
    except FileNotFoundError:
        raise _error(path.parent, f"{path.name} disappeared while loading") from None
    except TorchFileError as e:
        reason = f"{path.name} is not a torch file of tensors and plain data ({e.reason})"
        raise _error(path.parent, reason) from None


def _load_samples(folder: Path, progress: bool | None) -> ImageSet:
    files = _sample_files(folder)
    if not files:
        raise _error(folder, "no <i>.pt sample files")
    frames = labels = None
    for i, path in enumerate(tqdm(files, desc=f"dvs-cifar10 {folder.name}", disable=progress_off(progress))):
        sample = _load(path)
        if not (
            isinstance(sample, list | tuple) and len(sample) == 2 and isinstance(sample[0], torch.Tensor)
        ):
            raise _error(folder, f"{path.name} does not hold [frames, label]")
        x = sample[0]
        if x.ndim != 4 or not x.is_floating_point():
            raise _error(
                folder, f"{path.name} frames are {x.dtype} {tuple(x.shape)}, expected float [T, 2, H, W]"
            )
        if frames is None:
            frames = torch.empty((len(files), *x.shape), dtype=x.dtype)
            labels = torch.empty(len(files), dtype=torch.int64)
        if x.shape != frames.shape[1:] or x.dtype != frames.dtype:
            raise _error(
                folder,
                f"{path.name} frames {x.dtype} {tuple(x.shape)} differ from "
                f"{files[0].name}'s {frames.dtype} {tuple(frames.shape[1:])}",
            )
        frames[i] = x
        labels[i] = _label(sample[1], path)
    return ImageSet(frames, labels)


def _load_stacked(path: Path) -> ImageSet:
    obj = _load(path)
    frames = obj.get("frames") if isinstance(obj, dict) else None
    labels = obj.get("labels") if isinstance(obj, dict) else None
    ok = (
        isinstance(frames, torch.Tensor)
        and isinstance(labels, torch.Tensor)
        and frames.ndim == 5
        and frames.is_floating_point()
        and labels.dtype == torch.int64
        and labels.shape == (frames.shape[0],)
    )
    if not ok:
        raise _error(
            path.parent, f"{path.name} is not {{'frames': float [N, T, 2, H, W], 'labels': int64 [N]}}"
        )
    if labels.numel() and (labels.min() < 0 or labels.max() >= DVS_NUM_CLASSES):
        raise _error(path.parent, f"{path.name} has labels outside [0, {DVS_NUM_CLASSES})")
    return ImageSet(frames, labels)


def load_dvs_folder(root: str | Path, split: str = "train", progress: bool | None = None) -> ImageSet:
    """Load DVS-CIFAR10 ``split`` as float frames ``[N, T, 2, H, W]`` and int64 labels ``[N]``.

    Prefers the stacked ``<split>.pt``; falls back to the per-sample ``<split>/<i>.pt`` files (sorted by
    ``i``). Raises :class:`DatasetError` naming the path and the expected layout when missing or corrupt,
    or when the frames do not have 2 channels and square ``H == W``.
    """
    if split not in DVS_SPLITS:
        raise ValueError(f"split must be one of {list(DVS_SPLITS)}, got {split!r}")
    path = _split_path(root, split)
    data = _load_stacked(path) if path.is_file() else _load_samples(path, progress)
    _, steps, channels, height, width = data.images.shape
    if channels != 2 or height != width:
        raise _error(
            path,
            f"{split} frames are [T, C, H, W] = {[steps, channels, height, width]}, expected 2 polarity "
            "channels and square frames [T, 2, H, H]",
        )
    return data


def load_dvs_splits(root: str | Path, progress: bool | None = None) -> tuple[ImageSet, ImageSet]:
    """Load the train and test splits (see :func:`load_dvs_folder`), whose frames must share one shape.

    Raises :class:`DatasetError` naming the test split's path when its ``[T, 2, H, W]`` differs from
    the training split's.
    """
    train = load_dvs_folder(root, "train", progress)
    test = load_dvs_folder(root, "test", progress)
    if test.images.shape[1:] != train.images.shape[1:]:
        raise _error(
            _split_path(root, "test"),
            f"test frames [T, C, H, W] = {list(test.images.shape[1:])} differ from the train frames "
            f"{list(train.images.shape[1:])}; both splits need the same [T, 2, H, W]",
        )
    return train, test


def _split_path(root: str | Path, split: str) -> Path:
    """The stacked ``<split>.pt`` if present, else the per-sample ``<split>/`` folder."""
    folder = find_dvs_folder(root)
    if folder is None:
        raise _error(Path(root), "no train/ or test/ folder, nor train.pt or test.pt")
    if (folder / f"{split}.pt").is_file():
        return folder / f"{split}.pt"
    if (folder / split).is_dir():
        return folder / split
    raise _error(folder, f"no {split}/ folder or {split}.pt")


def pack_dvs_cifar10(
    root: str | Path, dtype: torch.dtype | None = None, progress: bool | None = None
) -> dict[str, Path]:
    """Stack the per-sample files of each split into ``<folder>/<split>.pt`` (atomic write).

    ``dtype`` optionally converts the frames (``torch.float16`` halves memory and file size). Returns
    ``{split: path}``; later loads read the stacked files.
    """
    folder = find_dvs_folder(root)
    if folder is None:
        raise _error(Path(root), "no train/ folder")
    written = {}
    for split in DVS_SPLITS:
        data = _load_samples(folder / split, progress)
        frames = data.images if dtype is None else data.images.to(dtype)
        written[split] = atomic_save_torch({"frames": frames, "labels": data.labels}, folder / f"{split}.pt")
    return written
