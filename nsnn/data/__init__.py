"""Datasets: embedded MNIST (zero setup), MNIST/CIFAR folders or downloads, DVS-CIFAR10 frames."""

from nsnn.data.mnist import (
    DatasetError,
    ImageSet,
    embedded_mnist_split,
    load_embedded_mnist,
    load_mnist_folder,
    read_idx,
)

__all__ = [
    "DatasetError",
    "ImageSet",
    "embedded_mnist_split",
    "load_embedded_mnist",
    "load_mnist_folder",
    "read_idx",
]
