"""Engines that simulate one *phase* (many consecutive examples) and return per-example spike counts.

* :class:`StandaloneEngine` (``target="standalone"``): Brian2 ``cpp_standalone``. A network is compiled
  once for a chunk of ``config.chunk`` examples; every run of the binary gets that chunk's input rates
  (``TimedArray``), the weights, θ, a fresh RNG seed and its length through ``device.run(run_args=...)``,
  so a phase of 8,000 examples is 16 runs of one build and the label, test and compressed-bit passes
  reuse the frozen build; a run of fewer examples than the chunk (a phase's last chunk, the retries of
  a few silent examples) stops after them instead of simulating silent padding. Carrying w and θ
  across chunks is exact; traces, membranes and conductances restart from their initial values each
  chunk (traces and conductances at 0, as the 150 ms rest nearly decays them; the excitatory membrane
  at its initial value, 40 mV below rest, so the example that starts a run draws ~10 % fewer spikes).
  A new build (incremental: only the changed C++ files recompile, ~10-30 s) is needed when the
  synapses change — so a training run pruned every K examples compiles once per segment between
  prunes — or when a phase switches between training and frozen equations.
  The generated code is patched. Three patches leave the simulation bit for bit the same: the spike
  queue queues one index range per run of equal-delay synapses (:func:`patch_spike_queue`; same events
  in the same order), the run loop reads the CPU clock once per run instead of per step
  (:func:`patch_run_loop`), and each threshold first checks each block of 64 neurons for a spike with
  one vectorized loop (:func:`patch_thresholds`). The fourth vectorizes the neurons' state updates
  (their refractoriness test rewritten in doubles, without which AVX2 CPUs kept them scalar), with
  glibc's SIMD ``exp`` where available (:func:`patch_state_updaters`; ``exp`` may differ in its last
  bits, which left every spike of the N = 400 runs unchanged).
* :class:`RuntimeEngine` (``"cython"`` / ``"numpy"``): Brian2 runtime mode, a new network for each
  chunk of ``config.chunk`` examples (w and θ carried over), so both engines restart the network's other
  state at the same examples and ``chunk`` changes results alike on both; no C++ toolchain needed beyond
  Cython's (none for numpy), good for small networks and tests.

Both count the response to example k as the Ae spikes in [k·T_example, (k+1)·T_example)::

    with make_engine(config, build_dir="runs/x/brian") as engine:
        result = engine.run(Phase(rates, state, plastic=True))
        result.counts.shape    # [n_examples, n_exc]
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from ctypes.util import find_library
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Protocol

import numpy as np
from brian2.codegen.cpp_prefs import get_compiler_and_args
from tqdm.auto import tqdm

from nsnn.io import hold_run_dir, release_run_dir
from nsnn.stdp._brian import b2
from nsnn.stdp.config import STDPConfig
from nsnn.stdp.network import DCNetwork, build_network
from nsnn.stdp.state import NetworkState, example_counts


@dataclass(frozen=True)
class Phase:
    """``rates`` ``[n, n_input]`` Hz for n consecutive examples, run from ``state``.

    ``plastic``: STDP + adaptive θ + normalisation (training); else weights and θ frozen.
    ``transmit_levels``: quantize-on-transmit (training with a full-precision shadow weight).
    """

    rates: np.ndarray
    state: NetworkState
    plastic: bool
    transmit_levels: int | None = None
    seed: int = 0
    desc: str = "simulate"


@dataclass(frozen=True)
class PhaseResult:
    """Spike ``counts`` ``[n, n_exc]``, the state afterwards, input/inhibitory spike totals, timings."""

    counts: np.ndarray
    state: NetworkState
    input_spikes: np.ndarray
    inh_spikes: int
    sim_seconds: float
    cpu_seconds: float
    build_seconds: float

    @property
    def n_examples(self) -> int:
        return int(self.counts.shape[0])

    @property
    def ms_per_example(self) -> float:
        return 1e3 * self.sim_seconds / max(self.n_examples, 1)


class Engine(Protocol):
    config: STDPConfig

    def run(self, phase: Phase, progress: bool = False) -> PhaseResult: ...

    def close(self) -> None: ...


def _child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def derive_seed(*path: int) -> int:
    """A seed in [0, 2³¹ − 1) for the random stream named by ``path`` (e.g. run seed, phase, block,
    attempt), hashed by numpy's ``SeedSequence``: distinct paths give unrelated seeds, so that the streams
    of different run seeds, phases, blocks and retry attempts do not coincide (an offset scheme such as
    seed + block would give seed 1's block 0 the stream of seed 0's block 1).

        derive_seed(0, 1, 3)  # run seed 0, phase 1, block 3
    """
    if any(not isinstance(p, (int, np.integer)) or p < 0 for p in path):
        raise ValueError(f"seed path entries must be integers >= 0, got {path!r}")
    word = int(np.random.SeedSequence([int(p) for p in path]).generate_state(1, np.uint32)[0])
    return word % (2**31 - 1)


@contextmanager
def _build_flags():
    """Compile with ``-fopenmp-simd`` (honour the ``omp simd`` pragma of :func:`patch_thresholds`; no
    OpenMP runtime), link with ``-ffast-math`` so the binary flushes denormals to zero (the conductances
    of silent neurons decay into the denormal range and would otherwise make their updates ~4x slower),
    and with glibc's vector math library when :func:`patch_state_updaters` may call it."""
    cpp = b2.prefs.codegen.cpp
    saved = {name: cpp[name] for name in ("extra_compile_args", "extra_compile_args_gcc", "extra_link_args")}
    if cpp.extra_compile_args is None:  # Brian2's default: the compiler family's list
        cpp.extra_compile_args_gcc = [*cpp.extra_compile_args_gcc, "-fopenmp-simd"]
    else:
        cpp.extra_compile_args = [*cpp.extra_compile_args, "-fopenmp-simd"]
    cpp.extra_link_args = [*cpp.extra_link_args, "-ffast-math", *(["-lmvec"] if have_libmvec() else [])]
    try:
        yield
    finally:
        for name, value in saved.items():
            cpp[name] = value


def _raises_keyboard_interrupt(handler: object) -> bool:
    """Whether SIGINT ``handler`` raises KeyboardInterrupt: Python's default, or Brian2's handler over it
    (which calls it, its graceful stop being switched off by :func:`interrupts_raise`)."""
    return signal.default_int_handler in (handler, getattr(handler, "previous_handler", None))


class _RecordAndRaise:
    """The SIGINT handler of :func:`interrupts_raise`: records each Ctrl-C in ``caught`` (read by the
    checks of its block and of the blocks nested in it), then raises ``KeyboardInterrupt``."""

    def __init__(self) -> None:
        self.caught: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.caught.append(signum)
        raise KeyboardInterrupt


@contextmanager
def interrupts_raise() -> Iterator[Callable[[], None]]:
    """Ctrl-C raises ``KeyboardInterrupt`` in a simulation run inside this block (and kills a standalone
    binary built inside it). Brian2's default turns the first Ctrl-C into a graceful stop instead: the
    run, a compiled binary's too, ends early with success, and its partial state would read back like a
    finished phase, silently cutting a training block short.

    Yields a check that raises ``KeyboardInterrupt`` if a Ctrl-C came during the block; the engines call
    it before each chunk of examples, and leaving the block calls it. Python runs a signal handler
    wherever the main thread is, also in a finalizer or a weakref callback (Brian2 has them on the
    objects of every network dropped between chunks), where the KeyboardInterrupt it raises is lost
    ("Exception ignored"): on the cython target with small chunks one Ctrl-C in four let the run go on.
    Inside the block (main thread, where SIGINT raised KeyboardInterrupt) a handler that also records
    the Ctrl-C takes its place, and an interrupt lost that way is not printed. A process that ignores
    SIGINT keeps ignoring it. A block nested in another shares the enclosing block's record, so the
    checks of both raise a Ctrl-C lost inside it.
    """
    core = b2.prefs.core
    saved = core.stop_on_keyboard_interrupt
    core.stop_on_keyboard_interrupt = False
    previous, hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
    on_main = threading.current_thread() is threading.main_thread()
    handler = previous if on_main and isinstance(previous, _RecordAndRaise) else _RecordAndRaise()
    nested = handler is previous  # inside another block: its handler stays, recording for both
    caught = handler.caught

    def check() -> None:
        if caught:
            raise KeyboardInterrupt

    def drop_lost_interrupt(unraisable: sys.UnraisableHookArgs) -> None:
        if not (caught and isinstance(unraisable.exc_value, KeyboardInterrupt)):  # else raised by check
            hook(unraisable)

    ours = on_main and not nested and _raises_keyboard_interrupt(previous)
    if ours:
        signal.signal(signal.SIGINT, handler)
        sys.unraisablehook = drop_lost_interrupt
    try:
        yield check
    finally:
        core.stop_on_keyboard_interrupt = saved
        if ours:
            signal.signal(signal.SIGINT, previous)
            sys.unraisablehook = hook
    check()


_INTERRUPTED_BUILD = "interrupted build"  # the network id of objects an interrupted build left unrun


@contextmanager
def quiet_interrupted_build() -> Iterator[None]:
    """Drop quietly the Brian2 objects a Ctrl-C inside this block (a network being built, up to its
    first run) leaves unrun. Brian2 logs a multi-line "getting deleted, but was never included in a
    network" warning for each object deleted without having joined a network run: such a Ctrl-C
    printed several after the run's "interrupted" message. On ``KeyboardInterrupt`` the objects
    created inside the block that never ran get a network id (``_network``, what a run gives them), so
    they are deleted without it; another error keeps Brian2's warnings."""
    before = set(b2.BrianObject.__instances__())
    try:
        yield
    except KeyboardInterrupt:
        for ref in set(b2.BrianObject.__instances__()) - before:
            obj = ref()
            if obj is not None and obj._network is None:
                obj._network = _INTERRUPTED_BUILD
        raise


# SHA-256 of the spikequeue.h that nsnn's queue replaces (Brian2 2.9.0's brian2/synapses/cspikequeue.cpp).
_BRIAN_QUEUE_SHA256 = frozenset({"f1d52276dc24695854047fd38cc301ccfe1130997562784ec64dd9f1a52089dc"})
SPIKE_QUEUE_HEADER = Path(__file__).with_name("spikequeue.h")


def patch_spike_queue(directory: str | Path) -> bool:
    """Replace the generated project's spike queue with nsnn's, which queues one range per run of synapses.

    Brian2 copies every synaptic event of a spike into its delay slot one index at a time (~25 % of a
    dense N = 400 training run). ``spikequeue.h`` (next to this module, same interface) groups each
    source's synapses into runs of consecutive indices with equal delay once, at ``prepare`` (the X→Ae
    synapses of one input are stored sorted by delay, :func:`nsnn.stdp.network.synapse_order`: ~21
    runs), pushes one ``[begin, end)`` range per run however many synapses it holds, and expands the
    due ranges when the synapses' code asks for them: the same indices in the same order (identical
    simulation). Returns False, leaving Brian2's header, unless it is the exact Brian2 version this was
    checked against. Brian2 re-copies the original on every build, so this runs before every compile;
    its makefile does not track header dependencies, so the object files compiled so far are deleted
    whenever the directory's queue changes (a stamp file holds the header's hash).
    """
    header = Path(directory, "brianlib", "spikequeue.h")
    if hashlib.sha256(header.read_bytes()).hexdigest() not in _BRIAN_QUEUE_SHA256:
        return False
    ours = SPIKE_QUEUE_HEADER.read_text()
    header.write_text(ours)
    stamp = header.with_name("nsnn_spikequeue.stamp")
    digest = hashlib.sha256(ours.encode()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        for obj in Path(directory).rglob("*.o"):
            obj.unlink()
        stamp.write_text(digest)
    return True


# Brian2 2.9's Network::run reads the process CPU clock after every time step.
_STEP_CLOCK = re.compile(
    r"(        clock = next_clocks\(\);\n\n)"
    r"(        current = std::clock\(\);\n"
    r"        elapsed_realtime = \(double\)\(current - start\)/\(\d+ \* CLOCKS_PER_SEC\);\n)"
)
_LOOP_END = "    Network::_globally_running = false;\n"


def patch_run_loop(directory: str | Path) -> bool:
    """Read the CPU clock once after the simulation loop of ``network.cpp`` instead of after every step.

    ``std::clock()`` is a system call (``clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`` has no vDSO fast path),
    ~4 % of a silent N=400 network's time at one call per 0.5 ms step, and only the reported run time
    (``_last_run_time``) uses it: the simulation is unchanged. Returns False, leaving the file as is, when
    the loop differs (e.g. ``maximum_run_time`` set, which needs the clock in the loop, or OpenMP).
    """
    path = Path(directory, "network.cpp")
    text = path.read_text()
    match = _STEP_CLOCK.search(text)
    if match is None or "elapsed_realtime>" in text or text.count(_LOOP_END) != 1:
        return False
    text = text.replace(match.group(0), match.group(1), 1).replace(_LOOP_END, _LOOP_END + match.group(2))
    path.write_text(text)
    return True


@functools.cache
def have_libmvec() -> bool:
    """Whether glibc's vector math library (x86_64 Linux: SIMD ``exp``, ~4 ulp) can be linked; looked up
    (``ldconfig``) at the first build, not at import."""
    return sys.platform == "linux" and platform.machine() == "x86_64" and bool(find_library("mvec"))


_NEURON_LOOP = "    for(int _idx=0; _idx<_N; _idx++)\n"
_SIMD_EXP = 'extern "C" double exp(double) noexcept __attribute__((__simd__("notinbranch")));\n'
# Brian2 2.9's support function and its refractoriness test in a state update, ``_timestep(t − lastspike,
# dt) >= _lio_k``: the double → int64 conversion has no AVX2 instruction (AVX-512DQ has one), so on an
# AVX2 CPU it kept the whole neuron loop, exp included, scalar.
_TIMESTEP_FN = (
    "    static inline int64_t _timestep(double t, double dt)\n"
    "    {\n"
    "        return (int64_t)((t + 1e-3*dt)/dt);\n"
    "    }\n"
)
_TIMESTEP_AT_LEAST = (
    "    static inline bool _timestep_at_least(double t, double dt, int64_t n)\n"
    "    {\n"
    "        return std::trunc((t + 1e-3*dt)/dt) >= (double)n;\n"
    "    }\n"
)
_TIMESTEP_TEST = re.compile(r"_timestep\(([^;]*?), dt\) >= (_lio_\d+)")


def patch_state_updaters(directory: str | Path, *, vector_exp: bool | None = None) -> list[str]:
    """Let the compiler vectorize the per-neuron loop of every group's state update.

    Brian2 copies each state array's global pointer into a local ``__restrict`` pointer, which GCC does
    not take as proof that the arrays are distinct, so the loop would need more run-time overlap checks
    than it allows and stays scalar. Every state variable has its own array, so ``#pragma GCC ivdep``
    (no loop-carried dependences) is true and the loop vectorizes. The refractoriness test
    ``_timestep(t − lastspike, dt) >= n`` truncates to an int64, which AVX2 cannot do in a vector; it
    becomes ``trunc(q) >= n`` in doubles (``_timestep_at_least``: the same truth value for every q in
    int64 range and |n| < 2⁵³, so no spike changes), without which the loop stayed scalar on AVX2
    CPUs. With ``vector_exp`` the file also declares glibc's SIMD ``exp`` (libmvec), which Brian2's
    ``-fno-finite-math-only`` hides: the exponential-Euler factor ``exp(−dt·(1 + g_e + g_i)/τ_e)`` of
    every Ae neuron and step, the largest per-neuron cost left, is then computed 4 or 8 neurons at a
    time (default: where :func:`have_libmvec`). That ``exp`` is accurate to ~4 ulp instead of glibc's
    scalar ≤ 1 ulp (about half of all arguments give a result 1-3 ulp away), so membranes can differ
    from an unpatched build in their last bits; a spike would flip only if a membrane lay within those
    bits of threshold, and every reset erases the difference. Measured: four N = 400 training runs of
    8,000 examples gave bit-identical spikes, weights and thresholds with and without the patch.
    Returns the names of the patched files.
    """
    vector_exp = have_libmvec() if vector_exp is None else vector_exp
    patched: list[str] = []
    for path in sorted(Path(directory, "code_objects").glob("*_stateupdater_codeobject*.cpp")):
        text = path.read_text()
        if "GCC ivdep" in text or text.count(_NEURON_LOOP) != 1:
            continue
        head, body = text.split(_NEURON_LOOP, 1)
        if _TIMESTEP_FN in head and _TIMESTEP_TEST.search(body):
            head = head.replace(_TIMESTEP_FN, _TIMESTEP_FN + _TIMESTEP_AT_LEAST, 1)
            body = _TIMESTEP_TEST.sub(r"_timestep_at_least(\1, dt, \2)", body)
        text = head + "    #pragma GCC ivdep\n" + _NEURON_LOOP + body
        if vector_exp and "exp(" in body and "#include<cmath>\n" in text:
            text = text.replace("#include<cmath>\n", "#include<cmath>\n" + _SIMD_EXP, 1)
        path.write_text(text)
        patched.append(path.name)
    return patched


# Brian2 2.9's threshold loop: compute _cond per neuron, append the neuron to the spike space if true.
_THRESHOLD_LOOP = re.compile(
    r"(    long _count = 0;\n)"
    r"    for\(size_t _idx=0; _idx<N; _idx\+\+\)\n    \{\n"
    r"(.*?)"
    r"(        if\(_cond\) \{\n.*?\n        \}\n    \}\n)",
    re.S,
)


_RANDOM_CALL = re.compile(r"\b_(rand|randn|poisson|binomial\w*)\(")  # Brian2's random functions
_BLOCK = 64  # neurons per block of the threshold check


def patch_thresholds(directory: str | Path) -> list[str]:
    """Check each block of 64 neurons for a spike with one vectorizable loop before Brian2's loop.

    Brian2's threshold loop (a branch and a conditional append per neuron) cannot be vectorized, and
    most steps of the Ae and Ai groups have no spike, while the input group has a few among 784 inputs.
    The patched loop walks the group in blocks: a check loop evaluates the same ``_cond`` expression on
    the same values for the block and ORs it up; only if it found a spike does Brian2's unchanged loop
    body run over that block (appending spikes in the same increasing order). Both loops compile the
    same source expression, so the same IEEE operations decide each neuron (no spike is missed or
    added). The check is an ``omp simd`` OR-reduction: GCC vectorizes Brian2's ``&&`` conditions (Ae's
    threshold and spike-blocking test) only when told the reduction is safe. A condition that draws
    random numbers (the ``"bernoulli"`` input sampler's ``rand()``) is left unpatched: evaluating it
    twice would change the draws. Returns the names of the patched files.
    """
    patched: list[str] = []
    for path in sorted(Path(directory, "code_objects").glob("*_spike_thresholder_codeobject*.cpp")):
        text = path.read_text()
        match = _THRESHOLD_LOOP.search(text)
        if "_nsnn_any" in text or match is None:
            continue
        count, body, append = match.groups()
        if _RANDOM_CALL.search(body):  # a second evaluation would draw new numbers: leave it alone
            continue
        block_loop = "    for(size_t _idx=_nsnn_b; _idx<_nsnn_e; _idx++)\n    {\n"
        blocked = (
            f"{count}    for(size_t _nsnn_b=0; _nsnn_b<N; _nsnn_b+={_BLOCK})\n    {{\n"
            f"    const size_t _nsnn_e = _nsnn_b + {_BLOCK} < N ? _nsnn_b + {_BLOCK} : N;\n"
            "    char _nsnn_any = 0;\n    #pragma omp simd reduction(|:_nsnn_any)\n"
            f"{block_loop}{body}        _nsnn_any |= _cond;\n    }}\n"
            f"    if(_nsnn_any)\n{block_loop}{body}{append}    }}\n"
        )
        path.write_text(text[: match.start()] + blocked + text[match.end() :])
        patched.append(path.name)
    return patched


def missing_build_tools() -> list[str]:
    """The programs a standalone build runs that are not on PATH: Brian2's make command and the C++
    compiler make calls (``$CXX``, else make's default ``g++``). Empty off POSIX (Brian2 builds with
    MSVC there, which this does not look for)."""
    if os.name != "posix":
        return []
    make = shlex.split(b2.prefs.devices.cpp_standalone.make_cmd_unix)[0]
    compiler = shlex.split(os.environ.get("CXX") or "g++")[0]
    return [tool for tool in (make, compiler) if shutil.which(tool) is None]


def require_build_tools(config: STDPConfig, hint: str = "") -> None:
    """Raise ``FileNotFoundError`` (one line, ending with ``hint``) when ``config``'s target is the
    standalone one and a program its build runs is missing (:func:`missing_build_tools`)."""
    missing = missing_build_tools() if config.target == "standalone" else []
    if missing:
        raise FileNotFoundError(
            f"the standalone target compiles C++, but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not on PATH: install a C++ compiler and make "
            f"(Debian/Ubuntu: apt install build-essential; macOS: xcode-select --install){hint}"
        )


# Brian2 2.9's error for a failed make; the code is os.system's wait status.
_COMPILE_FAILED = re.compile(r"Project compilation failed \(error code: (\d+)\)")


def _interrupted_build(error: RuntimeError) -> bool:
    """Whether Brian2's compilation ``error`` is make stopped by Ctrl-C (SIGINT): killed by it, or the
    shell running it exiting with 128 + SIGINT."""
    match = _COMPILE_FAILED.search(str(error))
    if match is None or os.name != "posix":
        return False
    status = int(match.group(1))
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGINT
    return killed or (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGINT)


def compile_project(directory: str) -> None:
    """Compile the generated standalone project in ``directory`` (Brian2's ``compile_source``).

    Brian2 runs make through ``os.system``, which holds SIGINT off Python while make runs: a Ctrl-C
    stops make, and comes back as a failed compilation (a RuntimeError after make's whole output). It
    is raised as ``KeyboardInterrupt`` instead, as a Ctrl-C anywhere else in a run, and the output of
    the interrupted make is dropped; a real failure prints it as Brian2 does.
    """
    out, err = io.StringIO(), io.StringIO()
    failure: RuntimeError | None = None
    try:
        with redirect_stdout(out), redirect_stderr(err):  # Brian2 prints make's output on a failure
            b2.device.compile_source(directory, get_compiler_and_args()[0], debug=False, clean=False)
    except RuntimeError as e:
        if _interrupted_build(e):
            raise KeyboardInterrupt from None
        failure = e
    sys.stdout.write(out.getvalue())
    sys.stderr.write(err.getvalue())
    if failure is not None:
        raise failure


def _structure_key(state: NetworkState, phase: Phase) -> str:
    digest = hashlib.md5(np.packbits(state.mask).tobytes())
    digest.update(np.ascontiguousarray(state.delay_ms, dtype=np.float64).tobytes())
    return f"{phase.plastic}-{phase.transmit_levels}-{digest.hexdigest()}"


class StandaloneEngine:
    """Compile once per network structure, run the binary once per chunk of examples (``run_args``).

    Not re-entrant: Brian2's standalone device is process-global. ``close()`` (or leaving the ``with``
    block) reinitialises it and switches Brian2 back to the runtime device.
    """

    def __init__(self, config: STDPConfig, build_dir: str | Path) -> None:
        self.config = config
        self.build_dir = Path(build_dir)
        self._net: DCNetwork | None = None
        self._key = ""
        self._chunk = 0
        self._directory = ""
        self._checked_order = False
        self._holds_build_dir = False

    def __enter__(self) -> StandaloneEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._net is not None or b2.get_device() is b2.all_devices["cpp_standalone"]:
            b2.device.reinit()
            b2.set_device("runtime")
        self._net, self._key, self._chunk = None, "", 0
        if self._holds_build_dir:
            release_run_dir(self.build_dir)
            self._holds_build_dir = False

    def _build(self, phase: Phase, chunk: int) -> float:
        start = time.perf_counter()
        if not self._holds_build_dir:
            # Two processes in one build folder overwrite each other's inputs, binary and results; the
            # binary reads a missing input as defaults, so that would give wrong results, not an error.
            self.build_dir.mkdir(parents=True, exist_ok=True)
            self._holds_build_dir = hold_run_dir(
                self.build_dir,
                busy=f"build folder {self.build_dir} is in use by another process; give this run another one",
            )
        if self._net is not None:
            b2.device.reinit()
        directory = self.build_dir / ("train" if phase.plastic else "frozen")
        directory.mkdir(parents=True, exist_ok=True)
        self._directory = str(directory)
        b2.set_device("cpp_standalone", build_on_run=False, directory=self._directory)
        with quiet_interrupted_build():
            net = build_network(
                self.config,
                phase.state,
                plastic=phase.plastic,
                n_examples=chunk,
                transmit_levels=phase.transmit_levels,
                run_controls=True,
            )
            b2.device.apply_run_args()
            seed_array = b2.device.get_array_name(net.Ae.variables["run_seed"])
            threads = max(int(b2.prefs.devices.cpp_standalone.openmp_threads), 1)
            b2.device.insert_code(
                "main",
                f"for (int _i = 0; _i < {threads}; _i++) "
                f"brian::_random_generators[_i].seed((unsigned long) brian::{seed_array}[0] + _i);",
            )
            net.net.run(net.duration, namespace=net.namespace)
        with _build_flags():  # inside run's interrupts_raise: main.cpp installs no graceful-stop handler
            b2.device.build(directory=self._directory, compile=False, run=False, with_output=False)
        patch_spike_queue(directory)
        patch_run_loop(directory)
        patch_thresholds(directory)
        patch_state_updaters(directory)
        compile_project(self._directory)
        self._net, self._key, self._chunk = net, _structure_key(phase.state, phase), chunk
        self._checked_order = False
        return time.perf_counter() - start

    def _cleanup_run_args(self) -> None:
        b2.device.delete(code=False, data=False, run_args=True, directory=False)
        for lock in Path(self._directory, "static_arrays").glob("init_*.lock"):
            lock.unlink(missing_ok=True)

    def run(self, phase: Phase, progress: bool = False) -> PhaseResult:
        with interrupts_raise() as check_interrupt:
            return self._run(phase, progress, check_interrupt)

    def _run(self, phase: Phase, progress: bool, check_interrupt: Callable[[], None]) -> PhaseResult:
        rates = np.asarray(phase.rates, dtype=np.float64)
        n = rates.shape[0]
        wanted = max(min(self.config.chunk, n), 1)
        build_seconds = 0.0
        if self._net is None or self._key != _structure_key(phase.state, phase) or self._chunk < wanted:
            build_seconds = self._build(phase, wanted)
        net, chunk = self._net, self._chunk
        w = phase.state.w[net.pre, net.post]
        theta = phase.state.theta.copy()
        counts = np.zeros((n, self.config.n_exc), dtype=np.int32)
        input_spikes = np.zeros(self.config.n_input, dtype=np.int64)
        inh_spikes = 0
        sim, cpu = 0.0, 0.0
        with tqdm(total=n, desc=phase.desc, unit="ex", disable=not progress, leave=False) as bar:
            for run in range(math.ceil(n / chunk)):
                rows = rates[run * chunk : (run + 1) * chunk]
                padded = np.zeros((chunk, self.config.n_input))
                padded[: len(rows)] = rows
                args = {
                    net.stim: padded * b2.Hz,
                    net.Sxe.w: w,
                    net.Ae.theta: theta * b2.volt,
                    net.Ae.run_seed: derive_seed(phase.seed, run),
                    net.Ae.stop_step: len(rows) * self.config.steps_per_example,
                }
                check_interrupt()
                t0, c0 = time.perf_counter(), _child_cpu_seconds()
                try:
                    b2.device.run(
                        self._directory, results_directory="results", with_output=False, run_args=args
                    )
                    sim += time.perf_counter() - t0
                    cpu += _child_cpu_seconds() - c0
                finally:  # also after a Ctrl-C or a crash: no input files left behind
                    self._cleanup_run_args()
                self._check_order(net)
                spikes_t = np.asarray(net.spikes_e.t[:] / b2.second)
                block = example_counts(net.spikes_e.i[:], spikes_t, chunk, self.config.n_exc, self.config)
                counts[run * chunk : run * chunk + len(rows)] = block[: len(rows)]
                input_spikes += np.asarray(net.count_x.count[:], dtype=np.int64)
                inh_spikes += int(net.count_i.num_spikes)
                if phase.plastic:
                    w = np.asarray(net.Sxe.w[:], dtype=np.float64)
                    theta = np.asarray(net.Ae.theta[:] / b2.volt, dtype=np.float64)
                bar.update(len(rows))
        state = _new_state(phase, net, w, theta)
        return PhaseResult(counts, state, input_spikes, inh_spikes, sim, cpu, build_seconds)

    def _check_order(self, net: DCNetwork) -> None:
        if self._checked_order:
            return
        if not (np.array_equal(net.Sxe.i[:], net.pre) and np.array_equal(net.Sxe.j[:], net.post)):
            raise RuntimeError(
                "Brian2 created the X->Ae synapses in an unexpected order; weights passed "
                "through run_args would be misassigned"
            )
        self._checked_order = True


def _new_state(phase: Phase, net: DCNetwork, w_flat: np.ndarray, theta: np.ndarray) -> NetworkState:
    if not phase.plastic:
        return phase.state
    w = np.zeros_like(phase.state.w)
    w[net.pre, net.post] = w_flat
    return phase.state.with_weights(w, theta)


class RuntimeEngine:
    """Brian2 runtime mode (``target`` "cython" or "numpy"): one network and run per chunk of
    ``config.chunk`` examples, w and θ carried from one to the next, as the standalone engine's runs."""

    def __init__(self, config: STDPConfig, target: str | None = None) -> None:
        self.config = config
        self.target = target or config.target
        if self.target not in ("cython", "numpy"):
            raise ValueError(f"RuntimeEngine target must be 'cython' or 'numpy', got {self.target!r}")

    def __enter__(self) -> RuntimeEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release (networks are rebuilt per chunk)."""

    def run(self, phase: Phase, progress: bool = False) -> PhaseResult:
        if b2.get_device() is not b2.all_devices["runtime"]:
            b2.set_device("runtime")
        previous = b2.prefs.codegen.target
        b2.prefs.codegen.target = self.target
        try:
            with interrupts_raise() as check_interrupt:
                return self._run(phase, progress, check_interrupt)
        finally:
            b2.prefs.codegen.target = previous

    def _run(self, phase: Phase, progress: bool, check_interrupt: Callable[[], None]) -> PhaseResult:
        c = self.config
        rates = np.asarray(phase.rates, dtype=np.float64)
        n = rates.shape[0]
        step = max(min(c.chunk, n), 1)
        counts = np.zeros((n, c.n_exc), dtype=np.int32)
        input_spikes = np.zeros(c.n_input, dtype=np.int64)
        inh_spikes, sim, cpu, build_seconds = 0, 0.0, 0.0, 0.0
        state = phase.state
        b2.seed(phase.seed)  # once per phase: its chunks draw from the stream in turn
        with tqdm(total=n, desc=phase.desc, unit="ex", disable=not progress, leave=False) as bar:
            for done in range(0, n, step):
                todo = min(step, n - done)
                start = time.perf_counter()
                with quiet_interrupted_build():
                    net = build_network(
                        c,
                        state,
                        plastic=phase.plastic,
                        n_examples=todo,
                        rates=rates[done : done + todo],
                        transmit_levels=phase.transmit_levels,
                    )
                    net.net.run(0 * b2.ms, namespace=net.namespace)
                build_seconds += time.perf_counter() - start
                check_interrupt()
                t0, c0 = time.perf_counter(), time.process_time()
                net.net.run(todo * c.example_ms * b2.ms, namespace=net.namespace)
                sim, cpu = sim + time.perf_counter() - t0, cpu + time.process_time() - c0
                spikes_t = np.asarray(net.spikes_e.t[:] / b2.second)
                counts[done : done + todo] = example_counts(net.spikes_e.i[:], spikes_t, todo, c.n_exc, c)
                input_spikes += np.asarray(net.count_x.count[:], dtype=np.int64)
                inh_spikes += int(net.count_i.num_spikes)
                w = np.asarray(net.Sxe.w[:], dtype=np.float64)
                state = _new_state(phase, net, w, np.asarray(net.Ae.theta[:] / b2.volt, dtype=np.float64))
                bar.update(todo)
        return PhaseResult(counts, state, input_spikes, inh_spikes, sim, cpu, build_seconds)


def make_engine(config: STDPConfig, build_dir: str | Path | None = None) -> Engine:
    """The engine for ``config.target``; standalone builds go to ``build_dir`` (required for it).
    ``FileNotFoundError`` when the standalone target's make or C++ compiler is missing."""
    if config.target == "standalone":
        require_build_tools(config)
        if build_dir is None:
            raise ValueError("target='standalone' needs a build_dir for the generated C++ project")
        return StandaloneEngine(config, build_dir)
    return RuntimeEngine(config)
