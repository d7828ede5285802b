"""Unsupervised STDP on MNIST (Diehl & Cook 2015) with pruning and quantization, Brian2 standalone.

python scripts/stdp_mnist.py --neurons 400 --prune 0.75 --bits 4 --out runs/stdp-400-p75-b4 --json
(flags: --help; the command line lives in nsnn.stdp.cli)
"""

from nsnn.stdp.cli import main

if __name__ == "__main__":
    main()
