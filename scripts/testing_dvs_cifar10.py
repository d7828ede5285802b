"""Evaluate a trained dvs-cifar10 checkpoint: clean test accuracy in stochastic/deterministic/expected mode.

python scripts/testing_dvs_cifar10.py --snapshot runs/<run>/best.pt --eval-mode stochastic --n_ensembles 8
"""

import sys

from nsnn.training.cli import test_main

if __name__ == "__main__":
    sys.exit(test_main(dataset="dvs-cifar10"))
