"""The three phases of Diehl & Cook learning, with pruning and quantization woven into training.

* **train**: STDP on, θ adapting, weights normalised before every example. With ``prune_every = K``
  the X→Ae synapses are pruned after every K examples and after the last one, the sparsity growing
  linearly with the examples seen (``prune·b/n`` after b of n; each prune only removes more: the EE
  595 loop prune → keep training → prune); with ``prune_every = 0`` once after training. Pruned
  synapses never return, so the early prunes are kept gentle: at N = 400 and 8,000 examples, pruning
  every 2,000 reaches 18.75, 37.5 and 56.25 % inside training and 75 % at the end (README's
  benchmark table: the schedules' accuracies against dense, over four seeds). Quantization
  (``bits``): from the first compression point on, the network *transmits* the nearest k-bit level
  of each weight while STDP keeps updating a full-precision shadow weight (straight-through);
  deployment uses the quantized levels (:func:`deploy_weights`, which the frozen label/test networks
  hold and transmit unchanged).
* **label**: frozen network on training images; neuron → class from those responses only.
* **test**: frozen network on test images; prediction by the mean count of each class's neurons.

Progress bars (``progress``): True draws them, False not, None draws them only when stderr is a
terminal (tqdm's ``disable=None`` rule, as the BPTT trainer's default), so logs piped to a file stay
free of carriage-return lines; they get plain lines on stderr instead (:func:`progress_lines`): a
phase's start and end, each saved training block, each sweep cell.

Retry rule: an example that drew fewer than ``retry_min_spikes`` Ae spikes is presented again at
intensity + ``retry_intensity_step`` (+ 2 steps at the second retry, ...), up to ``retry_max`` times.
Frozen passes always do this, as in the original. Training does it with ``config.train_retry`` (on by
default, as in the original), but not where the original does: one compiled run per block has no
feedback, so the silent examples of a block are re-presented *after the whole block* (in their order,
STDP on, as further short runs of the same build, each attempt on the state the previous one left),
not right after their own failed presentation; the block's later examples have meanwhile been learned
from. The retried counts replace the silent ones in the returned responses. Without it
(``train_retry=False``), ~3 % of training examples at N = 400 draw < 5 spikes and get little STDP.

    result = train(engine, init_state(cfg), images, labels, cfg)
    ev = evaluate(engine, deployed(result.state, cfg), label_images, label_y, test_images, test_y, cfg)
"""

from __future__ import annotations

import itertools
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nsnn.compress import level_bits, prune_mask, quantize, synaptic_events
from nsnn.stdp.classify import accuracy, assign_labels, predict
from nsnn.stdp.config import FULL_PRECISION_BITS, STDPConfig, check_grid, levels_for_bits
from nsnn.stdp.engine import Engine, Phase, PhaseResult, derive_seed
from nsnn.stdp.state import NetworkState, image_rates

Log = Callable[[dict[str, Any]], None]
TRAIN, LABEL, TEST = 0, 1, 2  # phase ids in the seed paths: derive_seed(config.seed, phase, ...)


def phase_seed(config: STDPConfig, phase: int) -> int:
    """The seed of a run's ``phase`` (TRAIN, LABEL or TEST), from which its blocks and retry attempts
    derive theirs: ``derive_seed(phase_seed, block)``, ``derive_seed(block_seed, attempt)``."""
    return derive_seed(config.seed, phase)


def prune_points(n_train: int, prune_every: int) -> list[int]:
    """Example counts after which training prunes: every ``prune_every`` examples and at the end
    (empty: prune once after training). The prune after ``b`` examples reaches sparsity
    ``prune·b/n_train`` (:func:`train`), so the target is reached at the end of training."""
    if prune_every <= 0 or prune_every >= n_train:
        return []
    return [*range(prune_every, n_train, prune_every), n_train]


def check_prune_schedule(config: STDPConfig, n_train: int) -> None:
    """Refuse (ValueError) a schedule that prunes during training so far that a neuron's surviving
    weights, each at most ``w_max``, cannot sum to ``w_sum``: the normalization before the next example
    would then push every survivor to ``w_max`` and erase what the neuron learned. The prunes after the
    last example (and a prune once after training) are followed by no normalization."""
    during = [b for b in prune_points(n_train, config.prune_every) if b < n_train]
    if not during or config.prune_threshold is not None:  # what a threshold leaves is checked as it prunes
        return
    highest = config.prune * during[-1] / n_train
    kept = config.n_input - round(highest * config.n_input)  # as prune_mask counts, per neuron
    if kept * config.w_max < config.w_sum:
        limit = 1.0 - config.w_sum / (config.n_input * config.w_max)
        raise ValueError(
            f"prune {config.prune:g} every {config.prune_every} of {n_train} examples reaches sparsity "
            f"{highest:.4f} during training, leaving {kept} of {config.n_input} synapses per neuron, whose "
            f"weights (at most w_max={config.w_max:g}) cannot sum to w_sum={config.w_sum:g}: every one "
            f"would saturate. Keep the sparsity reached during training below {limit:.4f}, or prune once "
            "after training (prune_every=0)"
        )


def _warn_if_unnormalizable(state: NetworkState, config: STDPConfig) -> None:
    """Warn when some neuron keeps too few synapses for the normalization (a global or threshold prune
    during training, which is not spread evenly over the neurons)."""
    kept = state.mask.sum(axis=0)
    short = int((kept * config.w_max < config.w_sum).sum())
    if short:
        warnings.warn(
            f"the prune left {short} of {config.n_exc} neurons fewer synapses than the normalization "
            f"needs (w_sum={config.w_sum:g} at most w_max={config.w_max:g} each, down to {int(kept.min())} "
            "synapses): their surviving weights saturate at w_max in further training",
            stacklevel=3,
        )


def training_transmit_levels(config: STDPConfig) -> int | None:
    """How many uniform levels training transmits its weights at once it has compressed (k-bit
    ``bits``), or None: full precision, or explicit device ``levels`` (applied at deployment only)."""
    return 2**config.bits if config.levels is None and config.bits < FULL_PRECISION_BITS else None


def trains_dense(config: STDPConfig, n_train: int) -> bool:
    """Whether :func:`train` runs the dense full-precision network throughout: no compression during
    training, or compression points that neither prune nor quantize what is transmitted."""
    return not prune_points(n_train, config.prune_every) or (
        not config.prunes and training_transmit_levels(config) is None
    )


def compress_state(state: NetworkState, sparsity: float, config: STDPConfig) -> NetworkState:
    """Magnitude-prune the X→Ae synapses to ``sparsity`` (per neuron or global, ``config.prune_scope``),
    or with ``config.prune_threshold`` those whose weight is at most it (``sparsity`` unused)."""
    if config.prune_threshold is not None:
        return state.with_mask(prune_mask(state.w, threshold=config.prune_threshold, mask=state.mask))
    if sparsity <= 0:
        return state
    axis = 0 if config.prune_scope == "neuron" else None
    return state.with_mask(prune_mask(state.w, sparsity=sparsity, mask=state.mask, axis=axis))


def check_synapses_left(pruned: NetworkState, state: NetworkState, config: STDPConfig, when: str) -> None:
    """ValueError when pruning ``state`` left ``pruned`` no X→Ae synapse: nothing is left to simulate.
    Only ``config.prune_threshold`` does that (a fraction below 1 keeps each neuron's largest weight),
    set at or above every weight; the message names the largest. ``when`` says where it pruned
    (e.g. ``" after 4 of 8 training examples"``)."""
    if pruned.synapses:
        return
    alive = state.w[state.mask]
    largest = f": the largest weight was {alive.max():.4g}" if alive.size else ""
    raise ValueError(
        f"prune_threshold={config.prune_threshold} removed every X→Ae synapse{when}: nothing is left to "
        f"simulate (give a lower threshold{largest})"
    )


def show_progress(progress: bool | None) -> bool:
    """Whether to draw progress bars: ``progress``, or for None tqdm's ``disable=None`` rule (only when
    ``sys.stderr``, where the bars go, is a terminal)."""
    if progress is not None:
        return progress
    isatty = getattr(sys.stderr, "isatty", None)
    return isatty is None or bool(isatty())


def progress_lines(progress: bool | None) -> bool:
    """Whether to print plain progress lines on stderr: by default (``progress`` None) when stderr is not
    a terminal (a log file, CI), where :func:`show_progress` draws no bars, so a long run is not silent
    until its end."""
    return progress is None and not show_progress(None)


def _progress_line(progress: bool | None, text: str) -> None:
    """Print ``text`` as a line on stderr when :func:`progress_lines` says so."""
    if progress_lines(progress):
        print(text, file=sys.stderr, flush=True)


def weight_bits(config: STDPConfig) -> int:
    """Bits per deployed X→Ae weight, as metrics.csv, summary.json and the CLI's ``--json`` report them.

    ``config.bits`` (32 and above: full precision) unless explicit device ``levels`` are deployed; then
    the bits that index them, ⌈log₂(distinct levels)⌉ (e.g. 5 levels: 3 bits).
    """
    if config.levels is None:
        return config.bits
    return level_bits(config.levels)


def deploy_weights(w: np.ndarray, mask: np.ndarray, levels: tuple[float, ...] | None) -> np.ndarray:
    """Weights as deployed: zero where pruned, each survivor at its nearest level (None: unchanged).

    A weight exactly halfway between two levels (equal distances in floating point) goes to the lower
    one (:func:`nsnn.compress.nearest_level`'s rule, shared with the BPTT networks): the smaller
    conductance, and between 0 and the first level a synapse that no longer transmits. Training's
    quantize-on-transmit (``w_step·⌈w/w_step − ½⌉`` in the network's equations) breaks ties the same way.
    """
    if levels is None:
        return np.where(mask, w, 0.0)
    return quantize(w, levels=np.asarray(levels), mask=mask)


def transmitting(state: NetworkState) -> np.ndarray:
    """The X→Ae synapses whose spikes deliver a conductance ``[n_input, n_exc]``: alive and with a
    nonzero weight (a survivor quantized to 0 is still simulated, but its events do nothing)."""
    return state.mask & (state.w != 0)


def deployed(state: NetworkState, config: STDPConfig) -> NetworkState:
    """The trained state with ``config``'s final sparsity and levels applied (what label/test use)."""
    state = compress_state(state, config.prune, config)
    return state.with_weights(deploy_weights(state.w, state.mask, config.weight_levels()))


@dataclass(frozen=True)
class TrainResult:
    """Final full-precision (shadow) ``state``, training responses ``[n, n_exc]`` and timings."""

    state: NetworkState
    counts: np.ndarray
    sim_seconds: float
    cpu_seconds: float
    build_seconds: float
    compressions: list[dict[str, Any]] = field(default_factory=list)
    retried: int = 0
    silenced: bool = False  # training warned that its quantized weights are mostly 0

    @property
    def ms_per_example(self) -> float:
        return 1e3 * self.sim_seconds / max(len(self.counts), 1)


@dataclass(frozen=True)
class TrainProgress:
    """Training as it stood after its first ``examples`` examples (a block's end): what :func:`train`
    needs to go on from there exactly as if it had not stopped (each block draws from its own seed)."""

    examples: int
    state: NetworkState
    counts: np.ndarray  # [examples, n_exc]
    compressed: bool
    compressions: list[dict[str, Any]]
    retried: int
    sim_seconds: float
    cpu_seconds: float
    build_seconds: float


def _blocks(n: int, chunk: int, points: list[int]) -> list[tuple[int, int]]:
    edges = sorted({0, n, *points, *range(0, n, chunk)})
    return list(itertools.pairwise(edges))


def train(
    engine: Engine,
    state: NetworkState,
    images: np.ndarray,
    labels: np.ndarray | None,
    config: STDPConfig,
    *,
    progress: bool | None = False,
    log: Log | None = None,
    resume: TrainProgress | None = None,
    checkpoint: Callable[[TrainProgress], None] | None = None,
) -> TrainResult:
    """Unsupervised STDP over ``images`` (one pass, in order), pruning/quantizing on schedule.

    ``labels`` only feed the logged running accuracy (neurons assigned from all earlier training
    responses, scored on the next block before it joins them); learning never sees them.
    ``checkpoint`` gets the :class:`TrainProgress` after every block (its log rows written first, both
    before a Ctrl-C is let through); ``resume`` goes on from one (``state`` is then unused). The first
    compression point whose quantized weights leave most kept synapses at 0 warns
    (:func:`~nsnn.stdp.experiment.warn_if_quantization_silences`), so a run can be stopped early.
    """
    from tqdm.auto import tqdm

    from nsnn.stdp.experiment import warn_if_quantization_silences
    from nsnn.training.runtime import sigint_deferred

    n = len(images)
    check_prune_schedule(config, n)
    points = prune_points(n, config.prune_every)
    transmit = training_transmit_levels(config)
    counts = np.zeros((n, config.n_exc), dtype=np.int32)
    sim = cpu = build = 0.0
    compressions: list[dict[str, Any]] = []
    compressed = silenced = False
    retried = 0
    done = 0
    if resume is not None:
        if not 0 < resume.examples <= n or resume.counts.shape != (resume.examples, config.n_exc):
            raise ValueError(f"cannot resume after {resume.examples} of {n} training examples")
        done, state, counts[:done] = resume.examples, resume.state, resume.counts
        compressed, compressions, retried = resume.compressed, list(resume.compressions), resume.retried
        sim, cpu, build = resume.sim_seconds, resume.cpu_seconds, resume.build_seconds
    disabled = not show_progress(progress)
    started = time.perf_counter()
    _progress_line(progress, f"train: {n:,} examples" + (f", resumed after {done:,}" if done else ""))
    with tqdm(total=n, initial=done, desc="train", unit="ex", disable=disabled) as bar:
        for block, (a, b) in enumerate(_blocks(n, config.chunk, points)):
            if b <= done:
                continue
            phase = Phase(
                image_rates(images[a:b], config),
                state,
                plastic=True,
                transmit_levels=transmit if compressed else None,
                seed=derive_seed(phase_seed(config, TRAIN), block),
                desc="train",
            )
            results = [engine.run(phase)]
            state, counts[a:b] = results[0].state, results[0].counts
            if config.train_retry:
                retries = retry_silent(engine, state, images, counts, a, b, config, phase)
                state = retries[-1].state if retries else state
                results += retries
                retried += len(retries[0].counts) if retries else 0
            for result in results:
                sim, cpu = sim + result.sim_seconds, cpu + result.cpu_seconds
                build += result.build_seconds
            bar.update(b - a)
            trained = state
            if b in points:
                state = compress_state(state, config.prune * b / n, config)
                check_synapses_left(state, trained, config, f" after {b} of {n} training examples")
                if b < n and (config.prune_scope == "global" or config.prune_threshold is not None):
                    _warn_if_unnormalizable(state, config)
                compressed = True
                compressions.append({"examples": b, "sparsity": state.sparsity, "synapses": state.synapses})
                if transmit is not None and not silenced:
                    sent = deploy_weights(state.w, state.mask, config.weight_levels())
                    when = f" after {b:,} of {n:,} training examples"
                    silenced = warn_if_quantization_silences(
                        state.synapses, int(np.count_nonzero(sent)), config, when
                    )
            with sigint_deferred():  # the block's rows and its checkpoint: both, or neither
                if log is not None:
                    log(_train_row(counts, labels, a, b, trained, results, config))
                    if b in points:
                        log(
                            {
                                "phase": "compress",
                                "examples": b,
                                "synapses": state.synapses,
                                "sparsity": round(state.sparsity, 6),
                                "bits": config.bits if transmit is not None else FULL_PRECISION_BITS,
                            }
                        )
                if checkpoint is not None:
                    checkpoint(
                        TrainProgress(
                            b,
                            state,
                            counts[:b],  # final rows: later blocks and their retries write only after b
                            compressed,
                            list(compressions),
                            retried,
                            sim,
                            cpu,
                            build,
                        )
                    )
            block_ms = 1e3 * sum(r.sim_seconds for r in results) / (b - a)
            elapsed = time.perf_counter() - started
            _progress_line(
                progress, f"train: {b:,}/{n:,} examples, {block_ms:.1f} ms/example ({elapsed:.0f} s)"
            )
    _progress_line(progress, f"train: done ({time.perf_counter() - started:.0f} s)")
    return TrainResult(state, counts, sim, cpu, build, compressions, retried, silenced)


def present_with_retries(
    todo: np.ndarray,
    counts: np.ndarray,
    config: STDPConfig,
    present: Callable[[np.ndarray, int, float], np.ndarray],
    *,
    first: int = 0,
) -> np.ndarray:
    """The retry rule (module docstring) over the example indices ``todo``.

    For attempt k = ``first``..``retry_max``, ``present(indices, k, intensity + k·retry_intensity_step)``
    returns the responses ``[len(indices), n_exc]`` of the examples still silent (all of ``todo`` at the
    first attempt), which are written into ``counts`` in place. Returns the indices still silent after
    the last attempt.
    """
    for attempt in range(first, config.retry_max + 1):
        if todo.size == 0:
            break
        counts[todo] = present(todo, attempt, config.intensity + attempt * config.retry_intensity_step)
        todo = todo[counts[todo].sum(axis=1) < config.retry_min_spikes]
    return todo


def retry_silent(
    engine: Engine,
    state: NetworkState,
    images: np.ndarray,
    counts: np.ndarray,
    a: int,
    b: int,
    config: STDPConfig,
    phase: Phase,
) -> list[PhaseResult]:
    """Re-present the silent examples of training block ``[a, b)`` (the retry rule, module docstring).

    Attempts 1..retry_max run plastic, each from the state the previous run left, with the block
    ``phase``'s quantize-on-transmit setting. Writes the new responses into ``counts`` (rows of the
    whole training set) in place and returns the runs (``[0]`` retried every silent example of the block;
    ``[-1].state`` is the state afterwards); empty if none was silent.
    """
    results: list[PhaseResult] = []

    def present(todo: np.ndarray, attempt: int, intensity: float) -> np.ndarray:
        result = engine.run(
            Phase(
                image_rates(images[todo], config, intensity),
                results[-1].state if results else state,
                plastic=True,
                transmit_levels=phase.transmit_levels,
                seed=derive_seed(phase.seed, attempt),
                desc=f"{phase.desc} retry {attempt}",
            )
        )
        results.append(result)
        return result.counts

    silent = a + np.flatnonzero(counts[a:b].sum(axis=1) < config.retry_min_spikes)
    present_with_retries(silent, counts, config, present, first=1)
    return results


def _train_row(
    counts: np.ndarray,
    labels: np.ndarray | None,
    a: int,
    b: int,
    state: NetworkState,
    results: list[PhaseResult],
    config: STDPConfig,
) -> dict[str, Any]:
    block = counts[a:b].sum(axis=1)
    sim = sum(r.sim_seconds for r in results)
    cpu = sum(r.cpu_seconds for r in results)
    row = {
        "phase": "train",
        "examples": b,
        "synapses": state.synapses,
        "sparsity": round(state.sparsity, 6),
        "spikes_per_example": round(float(block.mean()), 3),
        "silent_fraction": round(float((block < config.retry_min_spikes).mean()), 4),
        "retried": results[1].n_examples if len(results) > 1 else 0,
        "ms_per_example": round(1e3 * sim / max(b - a, 1), 3),
        "cpu_ms_per_example": round(1e3 * cpu / max(b - a, 1), 3),
        "build_seconds": round(sum(r.build_seconds for r in results), 2),
    }
    if labels is not None and a > 0:
        assignments = assign_labels(counts[:a], labels[:a], config.n_classes)
        row["running_accuracy"] = round(accuracy(counts[a:b], labels[a:b], assignments, config.n_classes), 4)
    return row


@dataclass(frozen=True)
class Responses:
    """Frozen-network responses ``counts`` ``[n, n_exc]`` (the attempt each example ended with) and what
    all attempts cost: ``input_spikes`` ``[n_input]`` and the Ae and Ai spike totals."""

    counts: np.ndarray
    input_spikes: np.ndarray
    exc_spikes: int
    inh_spikes: int
    retried: int
    silent: int
    sim_seconds: float
    build_seconds: float

    @property
    def ms_per_example(self) -> float:
        return 1e3 * self.sim_seconds / max(len(self.counts), 1)


def _frozen_pass(
    engine: Engine,
    state: NetworkState,
    images: np.ndarray,
    config: STDPConfig,
    *,
    intensity: float,
    seed: int,
    desc: str,
    progress: bool,
) -> list[Any]:
    """Frozen responses in blocks of 10 chunks, so rates for 60k images are never all in memory."""
    block = 10 * config.chunk
    return [
        engine.run(
            Phase(
                image_rates(images[a : a + block], config, intensity),
                state,
                plastic=False,
                seed=derive_seed(seed, a),
                desc=desc,
            ),
            progress,
        )
        for a in range(0, len(images), block)
    ]


def respond(
    engine: Engine,
    state: NetworkState,
    images: np.ndarray,
    config: STDPConfig,
    *,
    seed: int = 0,
    desc: str = "respond",
    progress: bool | None = False,
) -> Responses:
    """Frozen pass over ``images`` with the Diehl & Cook retry rule (see the module docstring)."""
    shown = show_progress(progress)
    started = time.perf_counter()
    _progress_line(progress, f"{desc}: {len(images):,} examples")
    counts = np.zeros((len(images), config.n_exc), dtype=np.int32)
    input_spikes = np.zeros(config.n_input, dtype=np.int64)
    exc, inh, sim, build, retried = 0, 0, 0.0, 0.0, 0

    def present(todo: np.ndarray, attempt: int, intensity: float) -> np.ndarray:
        nonlocal exc, inh, sim, build, retried
        results = _frozen_pass(
            engine,
            state,
            images[todo],
            config,
            intensity=intensity,
            seed=derive_seed(seed, attempt),
            desc=desc if attempt == 0 else f"{desc} retry {attempt}",
            progress=shown,
        )
        for r in results:
            input_spikes[:] += r.input_spikes
            exc, inh = exc + int(r.counts.sum()), inh + r.inh_spikes
            sim, build = sim + r.sim_seconds, build + r.build_seconds
        if attempt == 1:
            retried = todo.size
        return np.concatenate([r.counts for r in results])

    silent = present_with_retries(np.arange(len(images)), counts, config, present)
    ms = 1e3 * sim / max(len(images), 1)
    _progress_line(progress, f"{desc}: done, {ms:.1f} ms/example ({time.perf_counter() - started:.0f} s)")
    return Responses(counts, input_spikes, exc, inh, retried, int(silent.size), sim, build)


@dataclass(frozen=True)
class Evaluation:
    """Label + test results: ``assignments`` ``[n_exc]``, accuracies (fractions), energy proxies."""

    assignments: np.ndarray
    accuracy: float
    label_accuracy: float
    predictions: np.ndarray
    label: Responses
    test: Responses
    events: dict[str, float]

    def summary(self) -> dict[str, Any]:
        n = max(len(self.test.counts), 1)
        return {
            "accuracy": self.accuracy,
            "label_accuracy": self.label_accuracy,
            "classes_assigned": int(np.unique(self.assignments[self.assignments >= 0]).size),
            "neurons_unassigned": int((self.assignments < 0).sum()),
            "test_retried": self.test.retried,
            "test_silent_fraction": self.test.silent / n,
            "ms_per_example_label": self.label.ms_per_example,
            "ms_per_example_test": self.test.ms_per_example,
            **self.events,
        }


def evaluate(
    engine: Engine,
    state: NetworkState,
    label_images: np.ndarray,
    label_targets: np.ndarray,
    test_images: np.ndarray,
    test_targets: np.ndarray,
    config: STDPConfig,
    *,
    progress: bool | None = False,
) -> Evaluation:
    """Label on ``label_*`` (training data), then test on ``test_*`` with those assignments.

    ``events`` (per test example, summed over every attempt of the retry rule, as the hardware would run
    them): X→Ae synaptic events through the synapses that transmit
    (:func:`transmitting`: alive with a nonzero weight; a survivor that quantization set to 0 delivers
    nothing, and the BPTT report likewise counts nonzero weights), the same input spikes through a dense
    X→Ae, and the recurrent Ae→Ai + Ai→Ae events.
    """
    label = respond(
        engine,
        state,
        label_images,
        config,
        seed=phase_seed(config, LABEL),
        desc="label",
        progress=progress,
    )
    assignments = assign_labels(label.counts, label_targets, config.n_classes)
    test = respond(
        engine,
        state,
        test_images,
        config,
        seed=phase_seed(config, TEST),
        desc="test",
        progress=progress,
    )
    n = max(len(test_images), 1)
    exc_spikes = float(test.exc_spikes)  # every attempt's, like the input and Ai spikes
    events = {
        "input_events_per_inference": synaptic_events(test.input_spikes, transmitting(state)) / n,
        "input_events_per_inference_dense": float(test.input_spikes.sum()) * config.n_exc / n,
        "recurrent_events_per_inference": (exc_spikes + test.inh_spikes * (config.n_exc - 1)) / n,
        "exc_spikes_per_inference": exc_spikes / n,
    }
    return Evaluation(
        assignments=assignments,
        accuracy=accuracy(test.counts, test_targets, assignments, config.n_classes),
        label_accuracy=accuracy(label.counts, label_targets, assignments, config.n_classes),
        predictions=predict(test.counts, assignments, config.n_classes),
        label=label,
        test=test,
        events=events,
    )


def sweep(
    engine: Engine,
    state: NetworkState,
    label_images: np.ndarray,
    label_targets: np.ndarray,
    test_images: np.ndarray,
    test_targets: np.ndarray,
    config: STDPConfig,
    *,
    sparsities: tuple[float, ...] = (0.0, 0.5, 0.75, 0.9),
    bits: tuple[int, ...] = (32, 8, 4, 2),
    progress: bool | None = False,
    log: Log | None = None,
) -> list[dict[str, Any]]:
    """Accuracy of the trained network compressed after training: every sparsity × bits pair, frozen.

    One frozen build per sparsity (the synapses differ); the bit widths reuse it (weights via run_args).
    ``nonzero_synapses`` counts survivors whose level is not 0: at low bit widths the smallest weights
    round to 0, which acts as extra pruning (and can make rows of different sparsity identical). With
    ``config.prune_threshold`` the network is pruned at that weight instead (:func:`compress_state`;
    give one sparsity, unused), and its rows' ``sparsity`` is the one it left. A cell whose levels leave
    most kept synapses at 0 warns as it is done (:func:`~nsnn.stdp.experiment.warn_if_quantization_silences`,
    naming its sparsity), as a single evaluation does. A threshold that leaves no synapse is refused
    (:func:`check_synapses_left`).
    """
    from nsnn.stdp.experiment import warn_if_quantization_silences, weight_bits_label

    check_grid(sparsities, bits)
    rows = []
    cells = len(sparsities) * len(bits)
    _progress_line(progress, f"sweep: {cells} cell" + ("s" if cells > 1 else ""))
    inner = False if progress_lines(progress) else progress  # one line per cell, not per pass
    for sparsity in sparsities:
        pruned = compress_state(state, sparsity, config)
        check_synapses_left(pruned, state, config, "")
        for b in bits:
            w = deploy_weights(pruned.w, pruned.mask, levels_for_bits(b, config.w_max))
            ev = evaluate(
                engine,
                pruned.with_weights(w),
                label_images,
                label_targets,
                test_images,
                test_targets,
                config,
                progress=inner,
            )
            row = {
                "sparsity": sparsity if config.prune_threshold is None else round(pruned.sparsity, 6),
                "bits": b,
                "synapses": pruned.synapses,
                "nonzero_synapses": int(np.count_nonzero(w)),
                "accuracy": ev.accuracy,
                "label_accuracy": ev.label_accuracy,
                "ms_per_example_test": ev.test.ms_per_example,
                "input_events_per_inference": ev.events["input_events_per_inference"],
            }
            rows.append(row)
            if log is not None:
                log(row)
            cell = config.replace(bits=b, levels=None)
            _progress_line(
                progress,
                f"sweep: cell {len(rows)}/{cells} (sparsity {100 * row['sparsity']:.4g} %, "
                f"{weight_bits_label(cell)}): accuracy {100 * ev.accuracy:.2f} %",
            )
            when = f" at sparsity {100 * row['sparsity']:.4g} %"
            warn_if_quantization_silences(row["synapses"], row["nonzero_synapses"], cell, when)
    return rows
