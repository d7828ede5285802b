"""CIFAR-10 and CIFAR-100 from the official "python version" folders, or their verified download.

Images come back as uint8 ``[N, 3, 32, 32]`` (the pickles store each row as three 32×32 channel planes)
with int64 labels ``[N]`` (CIFAR-100: the 100 fine labels)::

    download_cifar("data", "cifar10")                         # -> data/cifar-10-batches-py/
    train = load_cifar_folder("data", "cifar10", "train")     # 50,000 images
    load_cifar_classes("data", "cifar10")[:2]                 # ('airplane', 'automobile')

The batches are pickles; they are read with a restricted unpickler that only rebuilds numpy arrays,
dicts, lists and strings (``encoding="bytes"``; any pickle protocol), and only from the expected file
names. A file it cannot read raises :class:`DatasetError`, whatever the damage.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nsnn.data.base import DatasetError, ImageSet, dataset_error
from nsnn.data.download import download_file, extract_tar

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant's files live and which pickle keys hold what."""

    folder: str
    archive: str
    md5: str
    splits: dict[str, tuple[str, ...]]
    meta: str
    label_key: bytes
    names_key: bytes
    num_classes: int

    def describe(self) -> str:
        files = [f for names in self.splits.values() for f in names] + [self.meta]
        return (
            f"  <root>/{self.folder}/ (or that folder itself) holding {', '.join(files)}\n"
            f"  (the python version of CIFAR, {CIFAR_URL}{self.archive})"
        )


CIFAR_LAYOUTS = {
    "cifar10": CifarLayout(
        folder="cifar-10-batches-py",
        archive="cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        splits={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        meta="batches.meta",
        label_key=b"labels",
        names_key=b"label_names",
        num_classes=10,
    ),
    "cifar100": CifarLayout(
        folder="cifar-100-python",
        archive="cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        splits={"train": ("train",), "test": ("test",)},
        meta="meta",
        label_key=b"fine_labels",
        names_key=b"fine_label_names",
        num_classes=100,
    ),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles containers and numpy arrays only; any other global is refused."""

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.numeric", "_frombuffer"),  # arrays pickled with protocol 5
            ("numpy._core.numeric", "_frombuffer"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle global {module}.{name}")
        return super().find_class(module, name)


def _layout(name: str) -> CifarLayout:
    if name not in CIFAR_LAYOUTS:
        raise ValueError(f"CIFAR variant must be one of {sorted(CIFAR_LAYOUTS)}, got {name!r}")
    return CIFAR_LAYOUTS[name]


def find_cifar_folder(root: str | Path, name: str = "cifar10") -> Path | None:
    """``root/<folder>`` if it exists, else ``root`` if it holds the variant's files, else ``None``."""
    layout, root = _layout(name), Path(root)
    if (root / layout.folder).is_dir():
        return root / layout.folder
    if (root / layout.meta).is_file() or (root / layout.splits["test"][0]).is_file():
        return root
    return None


def _unpickle(path: Path, name: str, layout: CifarLayout) -> dict:
    if not path.is_file():
        raise dataset_error(name, path.parent, layout.describe(), f"file {path.name} missing")
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as e:  # damaged pickle bytes raise nearly anything (MemoryError, IndexError, ...)
        problem = f"corrupt file {path.name} ({type(e).__name__}: {e})"
        raise dataset_error(name, path.parent, layout.describe(), problem) from e
    if not isinstance(obj, dict):
        raise dataset_error(name, path.parent, layout.describe(), f"{path.name} does not hold a dict")
    return obj


def _integer_labels(labels: object) -> np.ndarray | None:
    """``labels`` as a 1-D int64 array if it is a 1-D list/array of integer values, else ``None``."""
    if not isinstance(labels, list | np.ndarray):
        return None
    try:
        array = np.asarray(labels)
    except ValueError:  # ragged nested lists
        return None
    if array.ndim != 1:
        return None
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.int64)
    if np.issubdtype(array.dtype, np.floating) and np.all(np.isfinite(array) & (array == np.round(array))):
        return array.astype(np.int64)
    return None


def _batch(path: Path, name: str, layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    obj = _unpickle(path, name, layout)
    data, labels = obj.get(b"data"), _integer_labels(obj.get(layout.label_key))
    ok = (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == 3 * 32 * 32
        and labels is not None
        and len(labels) == data.shape[0]
    )
    if not ok:
        problem = (
            f"{path.name} lacks uint8 b'data' [N, 3072] with N integer labels [N] "
            f"(a 1-D list or array) in {layout.label_key!r}"
        )
        raise dataset_error(name, path.parent, layout.describe(), problem)
    if labels.size and (labels.min() < 0 or labels.max() >= layout.num_classes):
        problem = f"{path.name} has labels outside [0, {layout.num_classes})"
        raise dataset_error(name, path.parent, layout.describe(), problem)
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar_folder(root: str | Path, name: str = "cifar10", split: str = "train") -> ImageSet:
    """Load ``split`` ("train" or "test") of ``name`` ("cifar10" or "cifar100") from ``root``.

    ``root`` is the folder holding ``cifar-10-batches-py/`` / ``cifar-100-python/`` or that folder
    itself. Returns uint8 images ``[N, 3, 32, 32]`` and int64 labels ``[N]``; a missing or corrupt
    file raises :class:`DatasetError` naming the path, the expected layout and ``--download``.
    """
    layout = _layout(name)
    if split not in layout.splits:
        raise ValueError(f"split must be one of {sorted(layout.splits)}, got {split!r}")
    folder = find_cifar_folder(root, name)
    if folder is None:
        raise dataset_error(name, root, layout.describe(), f"no {layout.folder} folder")
    parts = [_batch(folder / f, name, layout) for f in layout.splits[split]]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels))


def load_cifar_classes(root: str | Path, name: str = "cifar10", missing_ok: bool = False) -> tuple[str, ...]:
    """Class names from the variant's meta file (``batches.meta`` / ``meta``), index = label;
    ``missing_ok``: ``()`` for a folder without that file (e.g. a copy of the test split alone)."""
    layout = _layout(name)
    folder = find_cifar_folder(root, name)
    if folder is None:
        raise dataset_error(name, root, layout.describe(), f"no {layout.folder} folder")
    if missing_ok and not (folder / layout.meta).is_file():
        return ()
    names = _unpickle(folder / layout.meta, name, layout).get(layout.names_key)
    if not isinstance(names, list) or len(names) != layout.num_classes:
        problem = f"{layout.meta} lacks {layout.num_classes} {layout.names_key!r}"
        raise dataset_error(name, folder, layout.describe(), problem)
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def download_cifar(
    root: str | Path, name: str = "cifar10", base_url: str = CIFAR_URL, progress: bool | None = None
) -> Path:
    """Download the official archive into ``root`` (md5-verified), extract it safely, return the folder.

    An existing valid archive is reused without network access; an existing folder is returned as is.
    """
    layout, root = _layout(name), Path(root)
    if (root / layout.folder).is_dir():
        return root / layout.folder
    where = f"{layout.describe()}\n  (<root> = {root})"
    archive = download_file(
        base_url + layout.archive, root / layout.archive, layout.md5, progress=progress, layout=where
    )
    try:
        return extract_tar(archive, root, layout.folder)
    except DatasetError as e:
        raise dataset_error(name, root, layout.describe(), str(e)) from e
