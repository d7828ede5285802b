"""Datasets by name: one call returns train/test tensors plus everything a model and loader need.

::

    bundle = get_dataset("cifar10", data_dir="data", download=True)
    print(bundle.describe())
    train, val = bundle.train_val_split(0.1, seed=0)          # checkpoints are selected on val
    loader = bundle.loader(train, 128, train=True, seed=0, device="cuda")

Names: ``list_datasets()``. ``"mnist"`` without ``data_dir`` is the embedded MNIST test set split
8,000 / 2,000 (zero setup); with ``data_dir`` (or ``download``) it is full MNIST from that folder.
``test_only=True`` reads the test split alone (``bundle.train`` is None), as testing a checkpoint does::

    test = get_dataset("cifar10", data_dir="data", test_only=True).test   # a folder with test_batch is enough
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from nsnn.data.augment import Augment
from nsnn.data.base import DatasetError, ImageSet, default_data_dir
from nsnn.data.cifar import (
    CIFAR_LAYOUTS,
    download_cifar,
    find_cifar_folder,
    load_cifar_classes,
    load_cifar_folder,
)
from nsnn.data.dvs import DVS_NUM_CLASSES, find_dvs_folder, load_dvs_folder, load_dvs_splits
from nsnn.data.loader import TensorLoader
from nsnn.data.mnist import (
    download_mnist,
    embedded_mnist_dir,
    embedded_mnist_hint,
    embedded_mnist_split,
    load_mnist_folder,
    mnist_folder,
)
from nsnn.data.split import train_val_split

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
_CIFAR_NORM = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD), "cifar100": (CIFAR100_MEAN, CIFAR100_STD)}

T = TypeVar("T")


@dataclass(frozen=True)
class DatasetBundle:
    """Train/test sets of one dataset with its shape, normalisation and default training augmentation.

    ``mean``/``std`` are ``None`` for DVS frames (used raw, as the reference does). ``time_steps`` is the
    number of event frames per sample (DVS; batches are ``[B, T, C, H, W]``), ``None`` for static images.
    ``embedded``: the data is the package's embedded MNIST split, whose 8,000 training images belong
    to the official MNIST test set. ``train`` is None for a bundle of the test split alone
    (``get_dataset(..., test_only=True)``).
    """

    name: str
    train: ImageSet | None
    test: ImageSet
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    augment: Augment = field(default_factory=Augment)
    classes: tuple[str, ...] = ()
    source: str = ""
    time_steps: int | None = None
    embedded: bool = False

    def describe(self, normalise: str | None = None) -> str:
        """A few lines: sizes, sample shape and dtype, classes, source, normalisation, augmentation.

        ``normalise``: the normalisation line's text, where a caller's loaders apply another than the
        dataset's ``mean``/``std`` (a run's rate code applies none); None: the dataset's own.
        """
        shape = f"{self.in_channels}×{self.image_size}×{self.image_size}"
        if self.time_steps is not None:
            shape = f"T={self.time_steps} frames of {shape}"
        sizes = "test split only" if self.train is None else f"{len(self.train):,} train"
        lines = [
            f"{self.name}: {sizes} / {len(self.test):,} test, {shape} "
            f"{str(self.test.images.dtype).removeprefix('torch.')}, {self.num_classes} classes",
            f"  from: {self.source}",
            "  normalise: "
            + (
                normalise
                or (f"mean {self.mean}, std {self.std}" if self.mean is not None else "none (raw frames)")
            ),
            f"  train augmentation: {self.augment.describe()}",
        ]
        if self.classes:
            shown = ", ".join(self.classes[:10]) + (", ..." if len(self.classes) > 10 else "")
            lines.insert(1, f"  classes: {shown}")
        return "\n".join(lines)

    def train_val_split(
        self, val_fraction: float = 0.1, seed: int = 0, stratify: bool = True
    ) -> tuple[ImageSet, ImageSet]:
        """Hold out ``val_fraction`` of the training set (see :func:`nsnn.data.train_val_split`)."""
        if self.train is None:
            raise ValueError(f"this {self.name} bundle holds the test split alone (test_only=True)")
        return train_val_split(self.train, val_fraction, seed, stratify)

    def loader(self, data: ImageSet, batch_size: int, *, train: bool, **kwargs: Any) -> TensorLoader:
        """A :class:`TensorLoader` with this dataset's normalisation; ``train=True`` adds shuffling and
        the default augmentation. ``kwargs`` (seed, device, rank, world_size, drop_last, augment, ...)
        override the defaults."""
        options: dict[str, Any] = {
            "shuffle": train,
            "augment": self.augment if train else None,
            "mean": self.mean,
            "std": self.std,
        }
        options.update(kwargs)
        return TensorLoader(data.images, data.labels, batch_size, **options)


Builder = Callable[[Path | None, bool, bool | None, bool], DatasetBundle]
_BUILDERS: dict[str, Builder] = {}
_EMBEDDED_DEFAULT: set[str] = set()
_NO_DOWNLOAD: set[str] = set()
_EVENT_FRAMES: set[str] = set()


def register_dataset(
    name: str, *, embedded: bool = False, downloadable: bool = True, event_frames: bool = False
) -> Callable[[Builder], Builder]:
    """Decorator adding ``builder(data_dir, download, progress, test_only) -> DatasetBundle`` under
    ``name`` (``test_only``: read the test split alone and return ``train=None``). A builder without the
    ``test_only`` parameter (written for nsnn before it had one) is called without it and may return
    both splits.

    ``embedded``: without ``data_dir`` and ``download`` the builder returns data shipped with the package
    and reads no data folder (see :func:`reads_data_folder`). ``downloadable=False``: the builder
    ignores ``download``, there being no download (see :func:`downloadable`). ``event_frames``: its
    samples are event frames ``[T, C, H, W]`` (the bundle's ``time_steps`` is set), not static images
    (see :func:`holds_event_frames`).
    """

    def add(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"dataset {name!r} is already registered")
        _BUILDERS[name] = builder if _takes_test_only(builder) else _both_splits(builder)
        if embedded:
            _EMBEDDED_DEFAULT.add(name)
        if not downloadable:
            _NO_DOWNLOAD.add(name)
        if event_frames:
            _EVENT_FRAMES.add(name)
        return builder

    return add


def _takes_test_only(builder: Callable[..., DatasetBundle]) -> bool:
    """Whether ``builder`` can be passed four positional arguments (the fourth being ``test_only``)."""
    params = inspect.signature(builder).parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params) >= 4


def _both_splits(builder: Callable[[Path | None, bool, bool | None], DatasetBundle]) -> Builder:
    """A :data:`Builder` calling a three-argument ``builder`` (both splits, whatever ``test_only``)."""

    @functools.wraps(builder)
    def build(data_dir: Path | None, download: bool, progress: bool | None, test_only: bool) -> DatasetBundle:
        return builder(data_dir, download, progress)

    return build


def downloadable(name: str) -> bool:
    """Whether ``get_dataset(name, download=True)`` can fetch dataset ``name`` (DVS-CIFAR10 cannot)."""
    return name not in _NO_DOWNLOAD


def holds_event_frames(name: str) -> bool:
    """Whether dataset ``name``'s samples are event frames ``[T, C, H, W]`` (DVS-CIFAR10) rather than static
    images, known without loading it."""
    return name in _EVENT_FRAMES


def reads_data_folder(name: str, data_dir: str | Path | None = None, download: bool = False) -> bool:
    """Whether ``get_dataset(name, data_dir, download)`` reads a data folder (``data_dir``, or the default
    ``$NSNN_DATA_DIR`` / ``./data``) rather than data embedded in the package."""
    return data_dir is not None or download or name not in _EMBEDDED_DEFAULT


def list_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(_BUILDERS)


def get_dataset(
    name: str,
    data_dir: str | Path | None = None,
    download: bool = False,
    progress: bool | None = None,
    *,
    test_only: bool = False,
) -> DatasetBundle:
    """Load dataset ``name`` from ``data_dir`` (default ``$NSNN_DATA_DIR`` or ``./data``).

    With ``download=True`` a dataset that is not found is fetched (md5-verified) into ``data_dir``
    first. ``test_only``: read only the test split's files (``bundle.train`` is None), so a folder
    holding the test split alone is enough. Raises ``ValueError`` for an unknown name and
    :class:`DatasetError` (naming the path, the expected layout and ``--download``) when the data is
    missing or corrupt.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; choose from {list_datasets()}")
    folder = None if data_dir is None else Path(data_dir).expanduser()
    return _BUILDERS[name](folder, download, progress, test_only)


def _load_or_fetch(
    load: Callable[[Path], T], root: Path, fetch: Callable[[], Path], download: bool
) -> tuple[T, Path]:
    """``(load(root), root)``; if that fails and ``download``: ``fetch()`` (which verifies what it
    downloads and returns where it put it), then ``(load(folder), folder)`` from that folder, so that
    the files read are the ones just verified."""
    try:
        return load(root), root
    except DatasetError:
        if not download:
            raise
    folder = fetch()
    try:
        return load(folder), folder
    except DatasetError as e:
        raise DatasetError(
            f"{e}\n--download kept the files already in {folder}, and they do not load: delete that "
            "folder to fetch a fresh copy"
        ) from e


def _mnist_folder_flags(data_dir: Path | None, download: bool) -> str:
    """The flags that turned MNIST's embedded default off, as ``data_dir`` and ``download`` show them.
    Training passes the default data folder as ``data_dir`` whenever ``--download`` is given alone, so
    with ``--download`` that folder stands for ``--download`` and perhaps ``--data-dir``."""
    if not download:
        return "--data-dir"
    if data_dir is None:
        return "--download"
    if data_dir.expanduser().resolve() == default_data_dir().resolve():
        return "--download, and --data-dir if given,"
    return "--data-dir and --download"


@register_dataset("mnist", embedded=True)
def _mnist(data_dir: Path | None, download: bool, progress: bool | None, test_only: bool) -> DatasetBundle:
    if not reads_data_folder("mnist", data_dir, download):
        train, test = embedded_mnist_split()
        train = None if test_only else train
        source = f"embedded MNIST test set ({embedded_mnist_dir()}), fixed split 8,000 / 2,000"
    else:
        root = data_dir if data_dir is not None else default_data_dir()
        try:
            (train, test), folder = _load_or_fetch(
                lambda at: (
                    None if test_only else load_mnist_folder(at, "train"),
                    load_mnist_folder(at, "test"),
                ),
                root,
                lambda: download_mnist(root, progress=progress),
                download,
            )
        except DatasetError as e:
            raise DatasetError(f"{e}\n{embedded_mnist_hint(_mnist_folder_flags(data_dir, download))}") from e
        test_from = mnist_folder(folder, "test").resolve()
        train_from = test_from if test_only else mnist_folder(folder, "train").resolve()
        source = str(train_from) if train_from == test_from else f"train {train_from}, test {test_from}"
    return DatasetBundle(
        embedded=not reads_data_folder("mnist", data_dir, download),
        name="mnist",
        train=train,
        test=test,
        num_classes=10,
        in_channels=1,
        image_size=28,
        mean=MNIST_MEAN,
        std=MNIST_STD,
        classes=tuple(str(i) for i in range(10)),
        source=source,
    )


def _cifar(name: str) -> Builder:
    def build(data_dir: Path | None, download: bool, progress: bool | None, test_only: bool) -> DatasetBundle:
        base = data_dir if data_dir is not None else default_data_dir()
        (train, test, classes), root = _load_or_fetch(
            lambda at: (
                None if test_only else load_cifar_folder(at, name, "train"),
                load_cifar_folder(at, name, "test"),
                load_cifar_classes(at, name, missing_ok=test_only),
            ),
            base,
            lambda: download_cifar(base, name, progress=progress),
            download,
        )
        mean, std = _CIFAR_NORM[name]
        return DatasetBundle(
            name=name,
            train=train,
            test=test,
            num_classes=CIFAR_LAYOUTS[name].num_classes,
            in_channels=3,
            image_size=32,
            mean=mean,
            std=std,
            augment=Augment(crop_padding=4, flip=True),
            classes=classes,
            source=str(find_cifar_folder(root, name).resolve()),
        )

    return build


register_dataset("cifar10")(_cifar("cifar10"))
register_dataset("cifar100")(_cifar("cifar100"))


@register_dataset("dvs-cifar10", downloadable=False, event_frames=True)
def _dvs_cifar10(
    data_dir: Path | None, download: bool, progress: bool | None, test_only: bool
) -> DatasetBundle:
    """There is no download (``download`` is ignored); the DatasetError says how to prepare the frames."""
    root = data_dir if data_dir is not None else default_data_dir()
    if test_only:
        train, test = None, load_dvs_folder(root, "test", progress)
    else:
        train, test = load_dvs_splits(root, progress)
    _, steps, channels, size, _ = test.images.shape
    return DatasetBundle(
        name="dvs-cifar10",
        train=train,
        test=test,
        num_classes=DVS_NUM_CLASSES,
        in_channels=channels,
        image_size=size,
        mean=None,
        std=None,
        augment=Augment(roll=5, flip=True),
        source=str(find_dvs_folder(root).resolve()),
        time_steps=steps,
    )
