"""Train a spiking network on dvs-cifar10 with nsnn (defaults: nsnn.training.recipes.RECIPES["dvs-cifar10"]).

python scripts/main_dvs_cifar10.py --help
"""

import sys

from nsnn.training.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main(dataset="dvs-cifar10"))
