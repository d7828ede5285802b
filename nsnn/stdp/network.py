"""Build the Diehl & Cook network in Brian2 from a :class:`NetworkState` (any device, any target).

One builder serves every execution path: the standalone engine (one compiled run per chunk of examples,
values swapped through ``run_args``), the runtime engine (one network per chunk of examples) and the classic
per-example loop (``input="manual"``: the caller sets ``X.rates`` between runs). Only the surviving
X→Ae synapses are created (``connect(i=pre, j=post)``), so pruned networks do proportionally less work,
in the order of :func:`synapse_order` (by input, then delay), which keeps the synaptic events of one
time step in contiguous runs of memory.

    net = build_network(config, state, plastic=True, n_examples=100, rates=rates)
    net.net.run(net.duration, namespace=net.namespace)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from nsnn.stdp import equations as eq
from nsnn.stdp._brian import b2
from nsnn.stdp.config import STDPConfig
from nsnn.stdp.state import NetworkState

INPUT_MODES = ("timed", "manual")


@dataclass
class DCNetwork:
    """The Brian2 objects of one network, by role (names as in Diehl & Cook: X, Ae, Ai)."""

    net: b2.Network
    X: b2.NeuronGroup
    Ae: b2.NeuronGroup
    Ai: b2.NeuronGroup
    Sxe: b2.Synapses
    stim: b2.TimedArray | None
    spikes_e: b2.SpikeMonitor
    count_x: b2.SpikeMonitor
    count_i: b2.SpikeMonitor
    namespace: dict[str, Any]
    duration: b2.Quantity
    pre: np.ndarray
    post: np.ndarray


def _normalize_once_per_example(synapses: b2.Synapses, clock: b2.Clock) -> None:
    """Evaluate ``wsum_post`` and rescale ``w`` only on the example clock (first step of each example).

    Brian2 runs a summed variable on its *target's* clock (every 0.5 ms here: 0.3 s/example at N=400
    instead of ~0.02). No public API moves it, so the updater's clock is replaced; the normalisation runs
    right after it in the same slot (the updater has order target.order − 1). Verified with Brian2 2.9 in
    runtime and standalone mode (tests/test_stdp.py checks the resulting column sums).
    """
    updater = synapses.summed_updaters["wsum_post"]
    updater._clock = clock
    synapses.run_regularly(
        eq.NORMALIZE, clock=clock, when="groups", order=updater.order + 1, name=f"{synapses.name}_normalize"
    )


@b2.implementation(
    "cpp",
    """
    static inline double stop_run(const int64_t next_step, const int64_t stop_step)
    {
        if (next_step < stop_step)
            return 0.0;
        Network::_globally_stopped = true;
        return 1.0;
    }
    """,
)
@b2.check_units(next_step=1, stop_step=1, result=1)
def stop_run(next_step: Any, stop_step: Any) -> Any:
    """Standalone only: end the run once the next time step would be ``stop_step`` (returns 1 then).

    Sets Brian2's ``Network::_globally_stopped`` (the flag its Ctrl+C handler uses): the loop finishes
    the current step, exits, and the results (monitors, w, θ) are written as after a complete run, so a
    run stopped after k examples is exactly a run of k examples. (Python version for code generation
    checks only; the runtime engine builds networks of the exact length instead.)
    """
    return np.asarray(next_step >= stop_step, dtype=np.float64)


def synapse_order(state: NetworkState, dt_ms: float) -> tuple[np.ndarray, np.ndarray]:
    """Pre (input) and post (Ae) indices of the alive X→Ae synapses, sorted by (input, delay step, Ae).

    A spike of input i reaches its synapses with delay step d = round(delay/dt) all in the same later
    time step, so with this order the synapses processed together (and the weights and spike times they
    read and write) lie in one contiguous block per input instead of every ~21st element of the input's
    row: the same model, fewer cache misses (only the summation order of simultaneous g_e jumps changes).
    """
    pre, post = state.connectivity()
    steps = np.floor(state.delay_ms[pre, post] / dt_ms + 0.5).astype(np.int64)
    order = np.lexsort((post, steps, pre))
    return pre[order], post[order]


def input_group(
    config: STDPConfig, clock: b2.Clock, namespace: dict[str, Any], stim: b2.TimedArray | None
) -> b2.NeuronGroup:
    """The Poisson input layer X (``config.n_input`` neurons on ``clock``).

    With ``stim`` (``[n_examples, n_input]`` Hz, one row per example) the rates follow it, gated to the
    presentation window and refreshed on a coarse clock (gcd of presentation and rest), and spikes come
    from ``config.input_sampler``; without it the caller sets ``X.rates`` and the Bernoulli sampler is used.
    """
    c = config
    countdown = stim is not None and c.input_sampler == "countdown"
    X = b2.NeuronGroup(
        c.n_input,
        eq.COUNTDOWN_MODEL if countdown else eq.INPUT_MODEL,
        threshold=eq.COUNTDOWN_THRESHOLD if countdown else eq.INPUT_THRESHOLD,
        reset=eq.COUNTDOWN_RESET if countdown else None,
        clock=clock,
        name="X",
        namespace=namespace,
    )
    if stim is not None:
        gate_ms = math.gcd(round(c.t_present_ms / c.dt_ms), round(c.t_rest_ms / c.dt_ms)) * c.dt_ms
        X.run_regularly(
            eq.COUNTDOWN_RATES if countdown else eq.INPUT_RATES,
            clock=b2.Clock(dt=gate_ms * b2.ms, name="input_clock"),
            when="start",
            name="X_rates",
        )
    return X


def build_network(
    config: STDPConfig,
    state: NetworkState,
    *,
    plastic: bool,
    n_examples: int,
    rates: np.ndarray | None = None,
    transmit_levels: int | None = None,
    input: str = "timed",
    normalize: bool = True,
    run_controls: bool = False,
) -> DCNetwork:
    """Create the network for ``n_examples`` consecutive examples (``T_example`` each).

    ``plastic``: STDP, adaptive θ and per-example normalisation (training) or constant w and θ (label/test).
    ``rates``: ``[n_examples, n_input]`` Hz for the ``TimedArray`` (zeros when None: set later through
    ``run_args``). ``transmit_levels``: quantize-on-transmit with that many levels over [0, w_max].
    ``input="manual"``: the caller sets ``X.rates`` between runs (classic loop, always the Bernoulli
    sampler; ``"timed"`` uses ``config.input_sampler``); ``normalize=False``
    leaves weight normalisation to the caller too.
    ``run_controls``: add ``Ae.run_seed`` (standalone engine reseeds its RNG from it for each run) and
    ``Ae.stop_step`` (the run ends after that many time steps, :func:`stop_run`; default: the whole run).
    """
    if input not in INPUT_MODES:
        raise ValueError(f"input must be one of {list(INPUT_MODES)}, got {input!r}")
    pre, post = synapse_order(state, config.dt_ms)
    if pre.size == 0:  # before any Brian2 object is made: each would warn, unrun, as it is deleted
        raise ValueError("every X->Ae synapse is pruned; nothing to simulate")
    c = config
    clock = b2.Clock(dt=c.dt_ms * b2.ms, name="sim_clock")
    ns = eq.namespace(c, transmit_levels)
    if run_controls:
        ns["stop_run"] = stop_run
    stim = None
    if input == "timed":
        values = np.zeros((n_examples, c.n_input)) if rates is None else np.asarray(rates, dtype=np.float64)
        if values.shape != (n_examples, c.n_input):
            raise ValueError(f"rates must be [{n_examples}, {c.n_input}], got {list(values.shape)}")
        stim = b2.TimedArray(values * b2.Hz, dt=c.example_ms * b2.ms, name="stim")
        ns["stim"] = stim
    X = input_group(c, clock, ns, stim)

    exc_model = eq.exc_model(plastic) + (eq.RUN_CONTROLS if run_controls else "")
    Ae = b2.NeuronGroup(
        c.n_exc,
        exc_model,
        threshold=eq.EXC_THRESHOLD,
        reset=eq.EXC_RESET[plastic],
        refractory=c.refrac_e_ms * b2.ms,
        method=c.method,
        clock=clock,
        name="Ae",
        namespace=ns,
    )
    Ai = b2.NeuronGroup(
        c.n_inh,
        eq.INH_MEMBRANE,
        threshold=eq.INH_THRESHOLD,
        reset=eq.INH_RESET,
        refractory=c.refrac_i_ms * b2.ms,
        method=c.method_inh,
        clock=clock,
        name="Ai",
        namespace=ns,
    )
    Ae.v = (c.v_rest_e_mv - c.v_init_below_rest_mv) * b2.mV
    Ai.v = (c.v_rest_i_mv - c.v_init_below_rest_mv) * b2.mV
    Ae.theta = state.theta * b2.volt
    if run_controls:
        Ae.stop_step = n_examples * c.steps_per_example
        Ae.run_regularly(eq.STOP_CHECK, clock=clock, when="end", name="Ae_stop")

    in_network_norm = plastic and normalize
    model = (eq.STDP_MODEL + (eq.WEIGHT_SUM if in_network_norm else "")) if plastic else eq.FROZEN_MODEL
    Sxe = b2.Synapses(
        X,
        Ae,
        model=model,
        on_pre=eq.input_on_pre(plastic, transmit_levels is not None),
        on_post=eq.STDP_ON_POST if plastic else None,
        clock=clock,
        name="Sxe",
        namespace=ns,
    )
    Sxe.connect(i=pre, j=post)
    Sxe.w = state.w[pre, post]
    Sxe.delay = state.delay_ms[pre, post] * b2.ms
    if plastic:
        Sxe.t_arrival = eq.NO_SPIKE_S * b2.second
    objects: list[Any] = [X, Ae, Ai, Sxe]
    if in_network_norm:
        _normalize_once_per_example(Sxe, b2.Clock(dt=c.example_ms * b2.ms, name="example_clock"))

    Sei = b2.Synapses(Ae, Ai, on_pre=eq.EXC_TO_INH, clock=clock, name="Sei", namespace=ns)
    Sei.connect(j="i")
    Sie = b2.Synapses(Ai, Ae, on_pre=eq.INH_TO_EXC, clock=clock, name="Sie", namespace=ns)
    Sie.connect(condition="i != j")
    spikes_e = b2.SpikeMonitor(Ae, name="spikes_e")
    count_x = b2.SpikeMonitor(X, record=False, name="count_x")
    count_i = b2.SpikeMonitor(Ai, record=False, name="count_i")
    objects += [Sei, Sie, spikes_e, count_x, count_i]
    return DCNetwork(
        net=b2.Network(*objects, name="dc_net"),
        X=X,
        Ae=Ae,
        Ai=Ai,
        Sxe=Sxe,
        stim=stim,
        spikes_e=spikes_e,
        count_x=count_x,
        count_i=count_i,
        namespace=ns,
        duration=n_examples * c.example_ms * b2.ms,
        pre=pre,
        post=post,
    )
