"""The classic per-example training loop of the Brian2 Diehl & Cook ports, kept as the speed baseline.

Runtime mode, and for every presentation: normalise the weights in numpy, set the input rates,
``run(350 ms)``, read the spike counts, zero the rates, ``run(150 ms)``; an example that drew < 5
spikes is presented again at intensity + 1. Two ``run()`` calls per presentation, each paying
Brian2's per-run Python overhead (~0.1 s). Same equations and state as the one-run engines
(:mod:`nsnn.stdp.network`), so the simulated work is the same; one thing besides the execution
differs: the loop counts the spikes of the 350 ms presentation, as the original does, where the engines
count the whole 500 ms example (the few spikes early in the rest, 4 % of them in one check at N = 100).

    result = classic_train(config, images, init_state(config))
    result.ms_per_example, result.counts.shape      # wall ms per example, [n, n_exc]
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from nsnn.stdp._brian import b2
from nsnn.stdp.config import STDPConfig
from nsnn.stdp.engine import interrupts_raise, quiet_interrupted_build
from nsnn.stdp.network import build_network
from nsnn.stdp.state import NetworkState, image_rates, normalize_columns


@dataclass(frozen=True)
class ClassicResult:
    """Final ``state``, spike ``counts`` ``[n, n_exc]``, wall and CPU seconds of the example loop."""

    state: NetworkState
    counts: np.ndarray
    seconds: float
    cpu_seconds: float

    @property
    def ms_per_example(self) -> float:
        return 1e3 * self.seconds / max(len(self.counts), 1)


def classic_train(
    config: STDPConfig,
    images: np.ndarray,
    state: NetworkState,
    *,
    target: str = "cython",
    retry: bool = True,
    progress: bool = False,
) -> ClassicResult:
    """Train one pass example by example (timings exclude construction and code generation).

    ``retry``: an example that drew fewer than ``config.retry_min_spikes`` spikes is presented again,
    louder by ``config.retry_intensity_step`` each time, at most ``config.retry_max`` times.
    """
    if target not in ("cython", "numpy"):
        raise ValueError(f"target must be 'cython' or 'numpy', got {target!r}")
    if b2.get_device() is not b2.all_devices["runtime"]:
        b2.set_device("runtime")
    previous = b2.prefs.codegen.target
    b2.prefs.codegen.target = target
    try:
        with interrupts_raise() as check_interrupt:  # Ctrl-C stops the loop, not one run() of it
            b2.seed(config.seed)
            with quiet_interrupted_build():
                net = build_network(
                    config, state, plastic=True, n_examples=1, input="manual", normalize=False
                )
                ns = net.namespace
                net.net.run(0 * b2.ms, namespace=ns)
            counts = np.zeros((len(images), config.n_exc), dtype=np.int32)
            present, rest = config.t_present_ms * b2.ms, config.t_rest_ms * b2.ms
            start, cpu = time.perf_counter(), time.process_time()
            for k in tqdm(range(len(images)), desc="classic", unit="ex", disable=not progress):
                check_interrupt()
                for attempt in range(1 + (config.retry_max if retry else 0)):
                    # before every presentation, retries included, as the original loop does
                    net.Sxe.w = normalize_columns(_dense(net, state), config)[net.pre, net.post]
                    intensity = config.intensity + attempt * config.retry_intensity_step
                    before = np.asarray(net.spikes_e.count[:])
                    net.X.rates = image_rates(images[k : k + 1], config, intensity)[0] * b2.Hz
                    net.net.run(present, namespace=ns)
                    counts[k] = np.asarray(net.spikes_e.count[:]) - before
                    net.X.rates = 0 * b2.Hz
                    net.net.run(rest, namespace=ns)
                    if counts[k].sum() >= config.retry_min_spikes:
                        break
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            theta = np.asarray(net.Ae.theta[:] / b2.volt, dtype=np.float64)
            return ClassicResult(state.with_weights(_dense(net, state), theta), counts, seconds, cpu)
    finally:
        b2.prefs.codegen.target = previous


def _dense(net, state: NetworkState) -> np.ndarray:
    w = np.zeros_like(state.w)
    w[net.pre, net.post] = np.asarray(net.Sxe.w[:])
    return w
