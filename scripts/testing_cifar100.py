"""Evaluate a trained cifar100 checkpoint: clean test accuracy in stochastic/deterministic/expected mode.

python scripts/testing_cifar100.py --snapshot runs/<run>/best.pt --eval-mode stochastic --n_ensembles 8
"""

import sys

from nsnn.training.cli import test_main

if __name__ == "__main__":
    sys.exit(test_main(dataset="cifar100"))
