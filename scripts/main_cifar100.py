"""Train a spiking network on cifar100 with nsnn (defaults: nsnn.training.recipes.RECIPES["cifar100"]).

python scripts/main_cifar100.py --help
"""

import sys

from nsnn.training.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main(dataset="cifar100"))
