"""Train a spiking network on cifar10 with nsnn (defaults: nsnn.training.recipes.RECIPES["cifar10"]).

python scripts/main_cifar10.py --help
"""

import sys

from nsnn.training.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main(dataset="cifar10"))
