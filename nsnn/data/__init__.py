"""Datasets as in-memory tensors, batched augmentation and a device-side loader.

* ``get_dataset(name, data_dir=None, download=False)`` → :class:`DatasetBundle` for "mnist" (embedded
  MNIST test set split 8,000 / 2,000 when ``data_dir`` is None, else full MNIST), "cifar10", "cifar100",
  "dvs-cifar10" (``list_datasets()``); ``test_only=True`` reads the test split alone.
* Loaders for each format (idx, CIFAR python pickles, DVS frame tensors) and verified downloads.
* :class:`Augment` (random crop, roll, flip, cutout; per sample, on the device) and :class:`TensorLoader`
  (shuffle/shard/augment/normalise whole batches, reproducible from ``(seed, epoch)``).
* ``train_val_split``: the validation set that selects checkpoints is carved from the training set.

::

    bundle = get_dataset("mnist")
    loader = bundle.loader(bundle.train, 64, train=True)   # x float [64, 1, 28, 28], y int64 [64]
"""

from nsnn.data.augment import Augment, cutout, random_crop, random_hflip, random_roll
from nsnn.data.base import DatasetError, ImageSet, default_data_dir
from nsnn.data.cifar import CIFAR_LAYOUTS, download_cifar, load_cifar_classes, load_cifar_folder
from nsnn.data.download import download_file, extract_tar, md5_file
from nsnn.data.dvs import load_dvs_folder, load_dvs_splits, pack_dvs_cifar10
from nsnn.data.loader import TensorLoader
from nsnn.data.mnist import (
    download_mnist,
    embedded_mnist_hint,
    embedded_mnist_split,
    load_embedded_mnist,
    load_mnist_folder,
    mnist_folder,
    read_idx,
)
from nsnn.data.registry import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    MNIST_MEAN,
    MNIST_STD,
    DatasetBundle,
    downloadable,
    get_dataset,
    holds_event_frames,
    list_datasets,
    reads_data_folder,
    register_dataset,
)
from nsnn.data.split import split_indices, train_val_split

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "CIFAR_LAYOUTS",
    "MNIST_MEAN",
    "MNIST_STD",
    "Augment",
    "DatasetBundle",
    "DatasetError",
    "ImageSet",
    "TensorLoader",
    "cutout",
    "default_data_dir",
    "download_cifar",
    "download_file",
    "download_mnist",
    "downloadable",
    "embedded_mnist_hint",
    "embedded_mnist_split",
    "extract_tar",
    "get_dataset",
    "holds_event_frames",
    "list_datasets",
    "load_cifar_classes",
    "load_cifar_folder",
    "load_dvs_folder",
    "load_dvs_splits",
    "load_embedded_mnist",
    "load_mnist_folder",
    "md5_file",
    "mnist_folder",
    "pack_dvs_cifar10",
    "random_crop",
    "random_hflip",
    "random_roll",
    "read_idx",
    "reads_data_folder",
    "register_dataset",
    "split_indices",
    "train_val_split",
]
