"""MNIST from idx(.gz) files, and the embedded MNIST test set shipped inside the package.

The embedded set is the official MNIST *test* set (10,000 images, md5-checked). It is the zero-setup
default for demos, tests, BPTT and STDP runs, always split the same way::

    train, test = embedded_mnist_split()   # 8,000 / 2,000, by the permutation shipped with the set
    train.images.shape  # torch.Size([8000, 28, 28]), uint8

There is no other split of the embedded set anywhere in nsnn. The permutation is a file beside the images
(``split-8000-2000-idx1-i2.gz``: the first 8,000 indices train, the rest test; drawn once by
``torch.randperm(10000)`` under seed 0, torch 2.13), so the split never depends on the installed
torch's random number algorithm: a model tested under another version never sees its training images.

Full MNIST (60,000 / 10,000) is read from a folder of the four idx files, fetched with md5 verification
by :func:`download_mnist`::

    download_mnist("data")                       # -> data/MNIST/raw/*.gz
    train = load_mnist_folder("data", "train")   # [60000, 28, 28] uint8
"""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from nsnn.data.base import DatasetError, ImageSet, dataset_error
from nsnn.data.download import download_file

EMBEDDED_TRAIN_SIZE = 8000
EMBEDDED_SPLIT = "split-8000-2000-idx1-i2.gz"

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_EMBEDDED_MD5 = {
    **{name: MNIST_MD5[name] for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")},
    EMBEDDED_SPLIT: "462b2a5c4bcdbeb6264d1b16db4a492c",
}
MNIST_LAYOUT = """  <root>/MNIST/raw/ (or <root>/ or <root>/raw/) holding
    train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]
    t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]"""

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (optionally gzip-compressed) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"cannot read idx file {path}: {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path} is not an idx file (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    offset = 4 + 4 * ndim
    expected = math.prod(dims) * dtype.itemsize  # Python ints: np.prod wraps around for huge dims
    if len(data) - offset != expected:
        raise DatasetError(
            f"{path} is truncated or corrupt: {len(data) - offset} payload bytes, expected {expected}"
        )
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(dims)


def _spellings(stem: str) -> list[str]:
    """File names of ``stem`` in order of preference: gzip (what downloads verify) first."""
    dotted = stem.replace("-idx", ".idx")
    return [stem + ".gz", stem, dotted + ".gz", dotted]


def _find_pair(root: Path, img_stem: str, lbl_stem: str) -> tuple[Path, Path] | None:
    """Images and labels of one split from one copy: the first folder (``root/MNIST/raw``, ``root``,
    ``root/raw``) holding both, both spelled alike where it can (``.gz`` first), so that a stray
    uncompressed file beside a set of ``.gz`` files (or in another folder) never pairs labels of one
    copy with images of another. ``root/MNIST/raw`` comes first: it is the folder ``--download`` fills
    and verifies, so other files in ``root`` never shadow a verified download."""
    for folder in (root / "MNIST" / "raw", root, root / "raw"):
        pairs = list(zip(_spellings(img_stem), _spellings(lbl_stem), strict=True))
        pairs += [(i, lb) for i in _spellings(img_stem) for lb in _spellings(lbl_stem)]
        for img, lbl in pairs:
            if (folder / img).is_file() and (folder / lbl).is_file():
                return folder / img, folder / lbl
    return None


def load_mnist_folder(root: str | Path, split: str = "train") -> ImageSet:
    """Load MNIST ``split`` ("train" or "test") from a folder of the four standard idx(.gz) files.

    Accepted layouts, in order of preference: ``root/MNIST/raw/<file>[.gz]`` (torchvision's, and where
    :func:`download_mnist` puts them), ``root/<file>[.gz]`` or ``root/raw/<file>[.gz]``. A split's two
    files come from one folder (:func:`mnist_folder` names it); where a file is there both compressed
    and not, the ``.gz`` pair is read.
    """
    if split not in _FILES:
        raise ValueError(f"split must be one of {sorted(_FILES)}, got {split!r}")
    root = Path(root)
    img_stem, lbl_stem = _FILES[split]
    pair = _find_pair(root, img_stem, lbl_stem)
    if pair is None:
        problem = f"{split} files {img_stem}[.gz] / {lbl_stem}[.gz] not found (both in one folder)"
        raise dataset_error("MNIST", root, MNIST_LAYOUT, problem)
    return _load_files(root, *pair)


def mnist_folder(root: str | Path, split: str = "train") -> Path:
    """The folder :func:`load_mnist_folder` reads ``split`` from (``root`` itself if none holds it)."""
    if split not in _FILES:
        raise ValueError(f"split must be one of {sorted(_FILES)}, got {split!r}")
    pair = _find_pair(Path(root), *_FILES[split])
    return Path(root) if pair is None else pair[0].parent


def _load_files(root: Path, img_path: Path, lbl_path: Path) -> ImageSet:
    """One split from its two idx files, checked (errors name ``root`` and the layout)."""
    try:
        images, labels = read_idx(img_path), read_idx(lbl_path)
    except DatasetError as e:
        raise dataset_error("MNIST", root, MNIST_LAYOUT, f"corrupt file ({e})") from e
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        problem = f"files disagree (images {images.shape}, labels {labels.shape})"
        raise dataset_error("MNIST", root, MNIST_LAYOUT, problem)
    if images.dtype != np.uint8 or images.shape[1:] != (28, 28):
        problem = f"images are {images.dtype} {tuple(images.shape[1:])}, not uint8 28 x 28"
        raise dataset_error("MNIST", root, MNIST_LAYOUT, problem)
    if labels.dtype.kind not in "iu":
        problem = f"labels are {labels.dtype}, not integers"
        raise dataset_error("MNIST", root, MNIST_LAYOUT, problem)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        problem = f"labels span {labels.min()}..{labels.max()}, not 0..9"
        raise dataset_error("MNIST", root, MNIST_LAYOUT, problem)
    return ImageSet(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)))


def download_mnist(
    root: str | Path, mirrors: Sequence[str] = MNIST_MIRRORS, progress: bool | None = None
) -> Path:
    """Fetch the four MNIST idx.gz files into ``root/MNIST/raw`` (md5-verified; kept if already valid).

    Each file is tried on every mirror in turn (a mirror is a URL prefix ending in ``/``); returns the
    folder. Raises :class:`DatasetError` listing the failures when no mirror delivers a file.
    """
    folder = Path(root) / "MNIST" / "raw"
    where = f"{MNIST_LAYOUT}\n  (<root> = {Path(root)})"
    for name, md5 in MNIST_MD5.items():
        download_file([m + name for m in mirrors], folder / name, md5, progress=progress, layout=where)
    return folder


def embedded_mnist_dir() -> Path:
    """The folder holding the embedded MNIST test set (inside the installed package)."""
    return Path(str(resources.files("nsnn.data") / "embedded"))


def load_embedded_mnist(verify: bool = True) -> ImageSet:
    """All 10,000 embedded MNIST test images ``[10000, 28, 28]`` uint8 and labels ``[10000]``."""
    folder = embedded_mnist_dir()
    if verify:
        for name, md5 in _EMBEDDED_MD5.items():
            path = folder / name
            if not path.is_file():
                raise DatasetError(f"embedded MNIST file missing: {path} (reinstall nsnn)")
            if hashlib.md5(path.read_bytes()).hexdigest() != md5:
                raise DatasetError(f"embedded MNIST file corrupt (md5 mismatch): {path} (reinstall nsnn)")
    img, lbl = (stem + ".gz" for stem in _FILES["test"])  # the files the md5s above are of
    return _load_files(folder, folder / img, folder / lbl)


def embedded_mnist_hint(flags: str) -> str:
    """The line a missing or undownloadable MNIST folder's error ends with: omit ``flags`` (those that
    turned the embedded default off, e.g. ``"--data-dir"``) to use the embedded split."""
    return f"(omit {flags} to use the embedded MNIST test set, split 8,000 / 2,000)"


def embedded_mnist_split() -> tuple[ImageSet, ImageSet]:
    """The one split of the embedded set: 8,000 train / 2,000 test by the shipped permutation."""
    full = load_embedded_mnist()  # md5-checks the permutation file too
    perm = torch.from_numpy(read_idx(embedded_mnist_dir() / EMBEDDED_SPLIT).astype(np.int64))
    return full.subset(perm[:EMBEDDED_TRAIN_SIZE]), full.subset(perm[EMBEDDED_TRAIN_SIZE:])
