"""Default flags per dataset: the scripts' defaults and ``run_training.sh``'s recipes.

CIFAR and DVS defaults are NSNN's published commands (``run_training.sh`` of the reference):
spiking ResNet-18, T=2, Adam 3e-3, batch 256, 300 epochs, cosine, σ=0.3 (CIFAR; the reference also
used AutoAugment, which nsnn does not ship: crop+flip only) and VGG-SNN, T=10, Adam 3e-4, batch 32,
210 epochs, σ=0.2 (DVS-CIFAR10). Differences from the reference: 10 % of the training set is held
out to select ``best.pt`` (the reference selected on the test set; ``--val-split 0`` trains on all).
The MNIST recipe is nsnn's: the embedded 8k/2k split, ``mnist_convnet``, T=4, on a CPU in minutes.

    defaults = RECIPES["cifar10"]              # dict of TrainConfig fields
"""

from __future__ import annotations

from typing import Any

_CIFAR: dict[str, Any] = {
    "model": "spiking_resnet18",
    "neuron": "NILIF",
    "noise": "gaussian",
    "sigma": 0.3,
    "timestep": 2,
    "epochs": 300,
    "minibatch": 256,
    "lr": 3e-3,
    "optim": "adam",
    "scheduler": "cosine",
    "reg": "no",
    "loss": "per_step_ce",
    "augment": True,
    "seed": 1,
}

RECIPES: dict[str, dict[str, Any]] = {
    "mnist": {
        "dataset": "mnist",
        "model": "mnist_convnet",
        "neuron": "NILIF",
        "sigma": 0.3,
        "timestep": 4,
        "epochs": 10,
        "minibatch": 64,
        "lr": 2e-3,
        "optim": "adam",
        "scheduler": "cosine",
        "augment": False,
        "seed": 1,
    },
    "cifar10": {"dataset": "cifar10", **_CIFAR},
    "cifar100": {"dataset": "cifar100", **_CIFAR},
    "dvs-cifar10": {
        "dataset": "dvs-cifar10",
        "model": "vggsnn",
        "neuron": "NILIF",
        "sigma": 0.2,
        "timestep": 10,
        "epochs": 210,
        "minibatch": 32,
        "lr": 3e-4,
        "optim": "adam",
        "scheduler": "cosine",
        "reg": "no",
        "augment": True,
        "seed": 1,
    },
}
