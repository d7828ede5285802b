"""The Diehl & Cook (2015) model as data: Brian2 equation strings plus a namespace built from the config.

Excitatory neurons (Ae), conductance-based LIF with adaptive threshold θ::

    τ_e dv/dt = (E_rest,e − v) + g_e (E_exc − v) + g_i (E_inh,e − v)      (clamped 5 ms after a spike)
    τ_ge dg_e/dt = −g_e,  τ_gi dg_i/dt = −g_i,  τ_θ dθ/dt = −θ            (θ constant when frozen)
    spike:  v > v_thresh,e − θ_offset + θ  and  t − t_last > 50 ms   →   v ← v_reset,e,  θ += θ₊

The 50 ms condition is the original's spike-blocking ``timer`` (``dtimer/dt = 0.1``, spike only when
``timer > 5 ms``, reset on each spike) written with Brian2's ``lastspike``. Inhibitory neurons (Ai) are
the same LIF without θ or g_i input. Synapses (``w`` in units of the leak conductance, g += w per spike):

* X→Ae, trace STDP (nearest-spike minimal triplet, Pfister & Gerstner 2006): on a pre spike
  ``w ← clip(w − η_pre·x_post1, 0, w_max)`` (depression), on a post spike
  ``w ← clip(w + η_post·x_pre·x_post2(t⁻), 0, w_max)`` (potentiation); traces reset to 1 at spikes.
  ``x_pre`` is per synapse (it is reset when the *delayed* spike arrives). A trace reset to 1 at each
  spike and decaying in between is ``x_pre(t) = exp(−(t − t_arrival)/τ_pre)``, so the synapse stores only
  the arrival time ``t_arrival`` of its last spike (initially far in the past: x_pre = 0) and the exponential
  is evaluated at post spikes, rarely, instead of decaying a trace at every one of the ~10⁶ pre events
  per example. The postsynaptic traces are the same for every synapse of a neuron, so they live on Ae
  (``x1``, ``x2``: identical values, computed once per neuron and step instead of once per event).
* normalisation once per example (at its first time step): ``w ← clip(w·w_sum / Σ_i w_ij, 0, w_max)``,
  the column sum coming from a summed variable evaluated on the example clock only.
* Ae→Ai one-to-one (g_e += w_exc_inh), Ai→Ae all-but-self (g_i += w_inh_exc).
* Quantize-on-transmit (training with ``bits``): the conductance sent is the nearest level
  ``w_step·⌈w/w_step − ½⌉`` of the full-precision (shadow) weight that STDP keeps updating (a tie goes to
  the lower level, as when the weights are deployed).

Input: Poisson neurons whose rates come from a 2-D ``TimedArray`` (one row per example), gated to the
presentation window, ``rate_i(t) = stim(t, i)·[t mod T_example < T_present]`` (in whole steps); the rate
is refreshed on a coarse clock (gcd of presentation and rest). Brian2's ``PoissonGroup`` is a Bernoulli
process: in every step input i spikes with probability p_i = rate_i·dt (``INPUT_THRESHOLD``, one
``rand()`` per active input and step). Two samplers of exactly that process:

* ``"bernoulli"``: the per-step draw itself (also used by the classic loop, whose caller sets the rates).
* ``"countdown"`` (default): the gaps between spikes of a Bernoulli(p) process are i.i.d. geometric,
  P(k) = (1 − p)^(k−1)·p for k ≥ 1 steps, and ``k = ⌈ln U / ln(1 − p)⌉`` with U ~ U(0, 1] has exactly
  that law (P(k) = P((1−p)^k ≤ U < (1−p)^(k−1))). Each input stores the time step ``next_step`` of its
  next spike; the threshold is one integer comparison per input and step, and random numbers are drawn
  only at spikes (``next_step = now + k``) and whenever the rate is refreshed (``next_step = now − 1 + k``,
  so the current step may spike). Redrawing at a rate refresh is exact because the process is
  memoryless: the steps after any fixed step are a fresh Bernoulli(p) sequence. Silent inputs
  (rate 0) get ``next_step`` 10⁹ steps ahead (never within a run), so the threshold is a single integer
  comparison.

    eqs = exc_model(plastic=True)                 # the Ae model: membrane + adaptive threshold θ
    ns = namespace(STDPConfig())                  # name -> brian2 Quantity
"""

from __future__ import annotations

from typing import Any

from nsnn.stdp.config import STDPConfig

EXC_MEMBRANE = """
dv/dt = ((v_rest_e - v) + ge*(e_exc - v) + gi*(e_inh_e - v)) / tau_e : volt (unless refractory)
dge/dt = -ge/tau_ge : 1
dgi/dt = -gi/tau_gi : 1
"""
THETA_PLASTIC = """
dtheta/dt = -theta/tau_theta : volt
dx1/dt = -x1/tau_post1 : 1
dx2/dt = -x2/tau_post2 : 1
wsum : 1
"""
THETA_FROZEN = """
theta : volt (constant)
"""
EXC_THRESHOLD = "v > v_thresh_e - theta_offset + theta and (t - lastspike) > spike_block"
EXC_RESET = {True: "v = v_reset_e; theta += theta_plus; x1 = 1.; x2 = 1.", False: "v = v_reset_e"}

INH_MEMBRANE = """
dv/dt = ((v_rest_i - v) + ge*(e_exc - v)) / tau_i : volt (unless refractory)
dge/dt = -ge/tau_ge : 1
"""
INH_THRESHOLD = "v > v_thresh_i"
INH_RESET = "v = v_reset_i"

# Standalone run controls (set through run_args for every run of the binary): the RNG seed, and the step
# at which the run stops (``stop_run`` ends the simulation loop after that step's updates), so a run
# of k < chunk examples simulates k examples instead of padding the chunk with silent ones.
RUN_CONTROLS = """
run_seed : integer (shared, constant)
stop_step : integer (shared, constant)
stopped : 1 (shared)
"""
STOP_CHECK = "stopped = stop_run(timestep(t, sim_dt) + 1, stop_step)"

STDP_MODEL = """
w : 1
t_arrival : second
"""
WEIGHT_SUM = """
wsum_post = w : 1 (summed)
"""
TRANSMIT = {False: "ge_post += w", True: "ge_post += w_step*ceil(w/w_step - 0.5)"}
NO_SPIKE_S = -1e9  # initial t_arrival (s): exp(-(t - t_arrival)/tau_pre) == 0.0, i.e. x_pre = 0
STDP_ON_PRE = "t_arrival = t; w = clip(w - nu_pre*x1_post, 0, w_max)"
STDP_ON_POST = "w = clip(w + nu_post*exp((t_arrival - t)/tau_pre)*x2_post, 0, w_max)"
NORMALIZE = "w = clip(w * w_sum / (wsum_post + w_eps), 0, w_max)"

FROZEN_MODEL = "w : 1 (constant)"
EXC_TO_INH = "ge_post += w_exc_inh"
INH_TO_EXC = "gi_post += w_inh_exc"

INPUT_MODEL = "rates : Hz"
# Gate on integer steps: in floating point (t % t_example) < t_present misjudges ~11 % of the 50 ms
# refreshes at 350 + 150 ms (e.g. 0.85 s % 0.5 s < 0.35 s), adding or dropping 50 ms of presentation.
INPUT_RATES = "rates = stim(t, i) * int((timestep(t, sim_dt) % steps_example) < steps_present)"
INPUT_THRESHOLD = "rates > 0*Hz and rand() < rates*dt"

COUNTDOWN_MODEL = """
rates : Hz
next_step : integer
"""
# Geometric number of steps k >= 1 to the next spike at p = rates*sim_dt (capped: rate 0 never spikes).
GEOMETRIC_STEPS = (
    "int(clip(ceil(clip(log(1 - rand()) / log(1 - clip(rates*sim_dt, p_min, 1)), 0, max_steps)),"
    " 1, max_steps))"
)
COUNTDOWN_RATES = (
    f"{INPUT_RATES}\nnext_step = timestep(t, sim_dt) - 1"
    f" + int(rates > 0*Hz) * {GEOMETRIC_STEPS} + int(rates <= 0*Hz) * max_steps"
)
COUNTDOWN_THRESHOLD = "timestep(t, sim_dt) >= next_step"
COUNTDOWN_RESET = f"next_step = timestep(t, sim_dt) + {GEOMETRIC_STEPS}"


def exc_model(plastic: bool) -> str:
    """Ae model equations: membrane + adaptive (plastic) or constant (frozen) θ."""
    return EXC_MEMBRANE + (THETA_PLASTIC if plastic else THETA_FROZEN)


def input_on_pre(plastic: bool, quantized_transmit: bool) -> str:
    """X→Ae on_pre code: conductance jump (full or quantized), then STDP depression when plastic."""
    transmit = TRANSMIT[quantized_transmit]
    return f"{transmit}; {STDP_ON_PRE}" if plastic else transmit


def namespace(config: STDPConfig, transmit_levels: int | None = None) -> dict[str, Any]:
    """Brian2 quantities for every name used in the equations above."""
    from nsnn.stdp._brian import b2

    ms, mV = b2.ms, b2.mV
    c = config
    step = c.w_max / (transmit_levels - 1) if transmit_levels else c.w_max
    return {
        "v_rest_e": c.v_rest_e_mv * mV,
        "v_reset_e": c.v_reset_e_mv * mV,
        "v_thresh_e": c.v_thresh_e_mv * mV,
        "e_inh_e": c.e_inh_e_mv * mV,
        "tau_e": c.tau_e_ms * ms,
        "spike_block": c.spike_block_ms * ms,
        "theta_plus": c.theta_plus_mv * mV,
        "tau_theta": c.tau_theta_ms * ms,
        "theta_offset": c.theta_offset_mv * mV,
        "v_rest_i": c.v_rest_i_mv * mV,
        "v_reset_i": c.v_reset_i_mv * mV,
        "v_thresh_i": c.v_thresh_i_mv * mV,
        "tau_i": c.tau_i_ms * ms,
        "e_exc": c.e_exc_mv * mV,
        "tau_ge": c.tau_ge_ms * ms,
        "tau_gi": c.tau_gi_ms * ms,
        "w_max": c.w_max,
        "w_sum": c.w_sum,
        "w_eps": 1e-12,
        "w_step": step,
        "w_exc_inh": c.w_exc_inh,
        "w_inh_exc": c.w_inh_exc,
        "nu_pre": c.nu_pre,
        "nu_post": c.nu_post,
        "tau_pre": c.tau_pre_ms * ms,
        "tau_post1": c.tau_post1_ms * ms,
        "tau_post2": c.tau_post2_ms * ms,
        "sim_dt": c.dt_ms * ms,
        "steps_example": c.steps_per_example,
        "steps_present": round(c.t_present_ms / c.dt_ms),
        "p_min": 1e-12,
        "max_steps": 10**9,
    }
