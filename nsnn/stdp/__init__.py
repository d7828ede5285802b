"""Unsupervised STDP (Diehl & Cook 2015) on Brian2, with pruning and quantization.

784 Poisson inputs → N excitatory conductance LIF neurons with adaptive threshold (plastic X→Ae
synapses, trace STDP, per-example normalisation) ↔ N inhibitory neurons (soft winner-take-all).
Training runs as one compiled Brian2 ``cpp_standalone`` program per chunk of examples (values swapped
through ``run_args``), built again only when the synapses change (after each ``prune_every`` pruning)
and once for the frozen label/test network; 51-57× faster than the classic per-example ``run()`` loop
at N = 400 (``bench/stdp.py``). The runtime targets (cython/numpy) stay available for small runs and
tests.

    from nsnn.stdp import STDPConfig, run_experiment, load_run
    summary = run_experiment(STDPConfig(n_exc=400, prune=0.75, prune_every=2000, bits=4), train, test,
                             run_dir="runs/stdp-400")
    run = load_run("runs/stdp-400")

Importing this package does not import Brian2; the engines, network builder and experiment functions
load it on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from nsnn.stdp.classify import accuracy, assign_labels, class_rates, predict
from nsnn.stdp.config import STDPConfig, levels_for_bits
from nsnn.stdp.runio import StdpRun, load_run, save_run
from nsnn.stdp.state import NetworkState, image_rates, init_state

_LAZY = {
    "run_experiment": "nsnn.stdp.experiment",
    "resume_experiment": "nsnn.stdp.experiment",
    "evaluate_run": "nsnn.stdp.experiment",
    "sweep_run": "nsnn.stdp.experiment",
    "retest_run": "nsnn.stdp.experiment",
    "train": "nsnn.stdp.pipeline",
    "evaluate": "nsnn.stdp.pipeline",
    "respond": "nsnn.stdp.pipeline",
    "sweep": "nsnn.stdp.pipeline",
    "deployed": "nsnn.stdp.pipeline",
    "compress_state": "nsnn.stdp.pipeline",
    "Phase": "nsnn.stdp.engine",
    "make_engine": "nsnn.stdp.engine",
    "StandaloneEngine": "nsnn.stdp.engine",
    "RuntimeEngine": "nsnn.stdp.engine",
    "build_network": "nsnn.stdp.network",
    "classic_train": "nsnn.stdp.classic",
}

__all__ = [
    "NetworkState",
    "STDPConfig",
    "StdpRun",
    "accuracy",
    "assign_labels",
    "class_rates",
    "image_rates",
    "init_state",
    "levels_for_bits",
    "load_run",
    "predict",
    "save_run",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nsnn.stdp' has no attribute {name!r}")
