"""Train a spiking network on mnist with nsnn (defaults: nsnn.training.recipes.RECIPES["mnist"]).

python scripts/main_mnist.py --help
"""

import sys

from nsnn.training.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main(dataset="mnist"))
