"""nsnn.stdp: Diehl & Cook STDP on Brian2 — real behaviour on tiny networks (runtime numpy target) plus
one standalone build end to end."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import brian2 as b2
import numpy as np
import pytest
import torch

from nsnn.data import ImageSet
from nsnn.io import read_csv
from nsnn.stdp import (
    STDPConfig,
    accuracy,
    assign_labels,
    evaluate_run,
    init_state,
    levels_for_bits,
    load_run,
    predict,
    retest_run,
    run_experiment,
    sweep_run,
)
from nsnn.stdp import cli as stdp_cli
from nsnn.stdp.engine import (
    SPIKE_QUEUE_HEADER,
    Phase,
    PhaseResult,
    RuntimeEngine,
    StandaloneEngine,
    derive_seed,
    have_libmvec,
)
from nsnn.stdp.experiment import warn_if_quantization_silences
from nsnn.stdp.pipeline import (
    compress_state,
    deploy_weights,
    deployed,
    evaluate,
    prune_points,
    respond,
    train,
    trains_dense,
    transmitting,
    weight_bits,
)
from nsnn.stdp.runio import save_run, write_config
from nsnn.stdp.state import image_rates

ROOT = Path(__file__).resolve().parents[1]


def tiny(**changes) -> STDPConfig:
    """8x8 inputs, short presentations, 1 ms steps: ~0.1 s per example on the numpy target."""
    base = dict(
        n_input=64,
        n_exc=4,
        t_present_ms=60.0,
        t_rest_ms=30.0,
        dt_ms=1.0,
        intensity=8.0,
        w_sum=10.0,
        n_classes=4,
        retry_max=0,
        chunk=50,
        target="numpy",
        seed=0,
    )
    return STDPConfig(**{**base, **changes})


def bars(n: int, n_classes: int = 4, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class c lights rows 2c and 2c+1 of an 8x8 image (uint8); labels cycle through the classes."""
    labels = (np.arange(n) + offset) % n_classes
    images = np.zeros((n, 8, 8), dtype=np.uint8)
    for k, c in enumerate(labels):
        images[k, 2 * c : 2 * c + 2] = 255
    return images, labels


def stop_after_saving(monkeypatch: pytest.MonkeyPatch, examples: int | None = None) -> Callable[..., Any]:
    """Make ``runio.save_progress`` raise KeyboardInterrupt once it has saved a block (the block ending at
    ``examples``; None: the first), as a Ctrl-C right after it would; returns the real function."""
    from nsnn.stdp import runio

    saved = runio.save_progress

    def save_then_stop(run_dir, progress, digest):
        saved(run_dir, progress, digest)
        if examples is None or progress.examples == examples:
            raise KeyboardInterrupt

    monkeypatch.setattr(runio, "save_progress", save_then_stop)
    return saved


def test_config_validation_and_round_trip():
    for bad in (
        {"intensity": -1.0},
        {"rate_per_intensity_hz": -5.0},
        {"n_exc": 0},
        {"n_input": 0},
        {"bits": 0},
        {"bits": 17},  # up to 31 the listed levels took gigabytes (out of memory after training)
        {"bits": 64},  # 32 alone means full precision
        {"prune": 1.0},
        {"prune": -0.1},
        {"prune_every": -1},
        {"target": "gpu"},
        {"method": "magic"},
        {"chunk": 0},
        {"t_present_ms": 0.3},
        {"levels": (0.5, 2.0)},
        {"intensity": float("nan")},
        {"rate_per_intensity_hz": float("inf")},
        {"nu_pre": float("nan")},
        {"theta_plus_mv": float("nan")},
        {"seed": -1},
        {"n_exc": 2.5},
        {"bits": 2.5},
        {"prune_every": 2.5},
        {"retry_max": 1.5},
        {"chunk": "10"},
        {"v_thresh_e_mv": float("nan")},  # the voltages went unchecked: a NaN threshold never fires
        {"e_inh_e_mv": float("-inf")},
        {"intensity": "2"},  # was a bare TypeError
        {"train_retry": "no"},  # was taken as True
        {"target": 3},
    ):
        with pytest.raises(ValueError):
            STDPConfig(**bad)
    cfg = STDPConfig(n_exc=100, prune=0.75, prune_every=2000, bits=4)
    assert STDPConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    edited = STDPConfig.from_dict({**cfg.to_dict(), "bits": 4.0, "n_exc": 100.0})  # a hand-edited file
    assert edited == cfg and isinstance(edited.bits, int) and isinstance(edited.n_exc, int)
    assert cfg.weight_levels() == tuple(k / 15 for k in range(16))
    assert STDPConfig().weight_levels() is None
    assert len(STDPConfig(bits=16).weight_levels()) == 2**16
    with pytest.raises(ValueError, match=r"bits must be 1\.\.16 \(2\*\*bits uniform levels\) or 32"):
        levels_for_bits(24, 1.0)


def test_rates_follow_pixels_and_intensity():
    cfg = STDPConfig()
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    images[0, 0, 0] = 255
    rates = image_rates(images, cfg)
    assert rates.shape == (2, 784) and rates[0, 0] == pytest.approx(63.75) and rates[1].sum() == 0
    assert image_rates(images, cfg, intensity=3)[0, 0] == pytest.approx(95.625)
    with pytest.raises(ValueError):
        image_rates(np.zeros((1, 10, 10), dtype=np.uint8), cfg)
    with pytest.raises(ValueError, match="finite"):
        image_rates(images, cfg, intensity=float("nan"))


def test_classification_rules():
    counts = np.array([[5, 0, 1], [0, 4, 0], [6, 0, 0], [0, 0, 0]])
    labels = np.array([0, 1, 0, 1])
    assignments = assign_labels(counts, labels, n_classes=2)
    assert assignments.tolist() == [0, 1, 0]
    assert assign_labels(np.zeros((2, 2)), np.array([0, 1]), 2).tolist() == [-1, -1]
    assert predict(counts, assignments, 2).tolist() == [0, 1, 0, -1]
    assert accuracy(counts, labels, assignments, 2) == 0.75


def _ratio(w: np.ndarray, active: np.ndarray, neurons: np.ndarray) -> float:
    return float(w[active][:, neurons].mean() / w[~active][:, neurons].mean())


def test_stdp_raises_weights_of_coactive_inputs():
    """12 presentations of one bar with 10x the default learning rates (the defaults need thousands)."""
    rates = dict(nu_post=0.1, nu_pre=1e-3, intensity=12.0)
    images, _ = bars(12, n_classes=1)
    active = images[0].ravel() > 0
    engine = RuntimeEngine(tiny(**rates))
    state0 = init_state(engine.config)
    phase = Phase(image_rates(images, engine.config), state0, plastic=True, seed=1)
    learned = engine.run(phase)
    fired = np.flatnonzero(learned.counts.sum(axis=0) > 0)
    assert fired.size > 0 and learned.counts.sum() >= 10
    assert _ratio(learned.state.w, active, fired) > 1.5 * _ratio(state0.w, active, fired)

    no_ltp = RuntimeEngine(tiny(**{**rates, "nu_post": 0.0})).run(phase)
    assert _ratio(no_ltp.state.w, active, fired) < _ratio(state0.w, active, fired)
    assert (learned.state.theta[fired] > state0.theta[fired]).all()


def test_normalization_holds_column_sums():
    cfg = tiny(nu_pre=0.0, nu_post=0.0)
    state0 = init_state(cfg)
    assert not np.allclose(state0.w.sum(axis=0), cfg.w_sum)
    images, _ = bars(3)
    result = RuntimeEngine(cfg).run(Phase(image_rates(images, cfg), state0, plastic=True))
    np.testing.assert_allclose(result.state.w.sum(axis=0), cfg.w_sum, rtol=1e-9)
    assert result.counts.sum() > 0


def test_prune_points_end_with_the_last_training_example():
    assert prune_points(8000, 2000) == [2000, 4000, 6000, 8000]
    assert prune_points(7000, 2000) == [2000, 4000, 6000, 7000]
    assert prune_points(8000, 0) == prune_points(8000, 8000) == []


def test_pruned_synapses_stay_dead_through_training():
    from nsnn.stdp.network import build_network

    cfg = tiny(prune=0.6, prune_every=4, bits=2)
    images, labels = bars(12)
    result = train(RuntimeEngine(cfg), init_state(cfg), images, labels, cfg)
    # Every 4 examples and at the end, sparsity 0.6·b/12 after b examples: 0.2, 0.4, 0.6 per neuron.
    assert [c["examples"] for c in result.compressions] == [4, 8, 12]
    alive = [c["synapses"] for c in result.compressions]
    assert alive == [64 * 4 - 4 * round(f * 64) for f in (0.2, 0.4, 0.6)]
    state = result.state
    assert state.synapses == alive[-1] and (state.w[~state.mask] == 0).all()
    assert (state.mask.sum(axis=0) == 64 - round(0.6 * 64)).all()

    pruned = compress_state(init_state(cfg), 0.5, cfg)
    net = build_network(cfg, pruned, plastic=True, n_examples=1)
    assert len(net.Sxe) == pruned.synapses == 128
    again = RuntimeEngine(cfg).run(Phase(image_rates(images, cfg), pruned, plastic=True))
    assert (again.state.mask == pruned.mask).all() and (again.state.w[~pruned.mask] == 0).all()
    assert not np.allclose(again.state.w[pruned.mask], pruned.w[pruned.mask])


def test_quantized_weights_take_only_allowed_levels(tmp_path):
    cfg = tiny(prune=0.5, bits=2)
    state = init_state(cfg)
    out = deployed(state, cfg)
    assert set(np.unique(out.w[out.mask]).tolist()) <= set(cfg.weight_levels())
    assert (out.w[~out.mask] == 0).all() and out.sparsity == 0.5
    device = (0.0, 0.05, 0.2, 0.6)
    out = deployed(state, cfg.replace(levels=device))
    assert set(np.unique(out.w[out.mask]).tolist()) <= set(device)
    # ... and still after a save/load round trip (the state is stored in float64, as simulated).
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_config(run_dir, cfg.replace(levels=device), {})
    save_run(run_dir, out, np.zeros(cfg.n_exc, dtype=np.int64))
    loaded = load_run(run_dir).state
    assert set(np.unique(loaded.w[loaded.mask]).tolist()) <= set(device)
    assert np.array_equal(loaded.theta, out.theta) and np.array_equal(loaded.delay_ms, out.delay_ms)


def image_set(images: np.ndarray, labels: np.ndarray) -> ImageSet:
    import torch

    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels))


def test_runs_with_device_levels_report_the_bits_the_levels_need(tmp_path):
    """4 distinct device levels (one listed twice) need 2 bits: metrics.csv's label/test rows and
    summary.json (whose ``bits`` the CLI's --json prints) say 2, not 32; --bits runs report --bits."""
    cfg = tiny(levels=(0.0, 0.1, 0.3, 0.6, 0.3))
    summary = run_experiment(
        cfg, image_set(*bars(4)), image_set(*bars(2)), run_dir=tmp_path / "run", progress=False
    )
    assert (summary["bits"], summary["levels"]) == (2, 4)
    rows = [r for r in read_csv(tmp_path / "run" / "metrics.csv") if r["phase"] in ("label", "test")]
    assert [(r["phase"], r["bits"]) for r in rows] == [("label", "2"), ("test", "2")]
    device = {(0.0, 1.0): 1, (0.0, 0.2, 0.4, 0.6, 0.8): 3}
    assert {levels: weight_bits(cfg.replace(levels=levels)) for levels in device} == device
    assert weight_bits(tiny(bits=4, levels=(0.0, 0.5))) == 1
    assert (weight_bits(tiny(bits=4)), weight_bits(tiny())) == (4, 32)


def test_label_and_test_networks_transmit_exactly_the_deployed_levels(tmp_path, monkeypatch):
    """A run pruned and quantized to 2 bits during training: the frozen label and test networks hold
    exactly the saved deployed weights, all on the 4 levels, and a spike adds its synapse's ``w`` to
    g_e unchanged; training transmits quantized weights only after the first compression point."""
    from nsnn.stdp import engine as engine_module
    from nsnn.stdp.network import build_network

    built = []

    def recording_build(config, state, **kwargs):
        built.append((kwargs, build_network(config, state, **kwargs)))
        return built[-1][1]

    monkeypatch.setattr(engine_module, "build_network", recording_build)
    cfg = tiny(prune=0.5, prune_every=2, bits=2)
    run_experiment(cfg, image_set(*bars(4)), image_set(*bars(2)), run_dir=tmp_path, progress=False)
    saved = load_run(tmp_path).state
    assert [k["transmit_levels"] for k, _ in built if k["plastic"]] == [None, 4]
    frozen = [net for k, net in built if not k["plastic"]]
    assert len(frozen) == 2  # label, test
    for net in frozen:
        i, j, w = net.Sxe.i[:], net.Sxe.j[:], np.asarray(net.Sxe.w[:])
        assert len(w) == saved.synapses == 128 and saved.mask[i, j].all()
        np.testing.assert_array_equal(w, saved.w[i, j])
        assert set(np.unique(w).tolist()) <= set(cfg.weight_levels())
        assert net.Sxe.pre.code == "ge_post += w"


def test_the_runtime_engine_restarts_the_network_every_chunk_as_the_standalone_one(monkeypatch):
    # The runtime engine ran a phase as one network: label and test passes (10 chunks per engine run)
    # restarted every 10 chunks there but every chunk on standalone, so --chunk changed results unlike.
    from nsnn.stdp import engine as engine_module
    from nsnn.stdp.network import build_network

    built = []

    def recording_build(config, state, **kwargs):
        built.append((kwargs["n_examples"], state))
        return build_network(config, state, **kwargs)

    monkeypatch.setattr(engine_module, "build_network", recording_build)
    cfg = tiny(chunk=2)
    images, _ = bars(5)
    state0 = init_state(cfg)
    result = RuntimeEngine(cfg).run(Phase(image_rates(images, cfg), state0, plastic=True))
    assert [n for n, _ in built] == [2, 2, 1] and built[0][1] is state0
    assert not np.array_equal(built[1][1].w, state0.w)  # w and θ go on from chunk to chunk
    assert result.counts.shape == (5, 4) and result.counts[2:].sum() > 0
    built.clear()
    frozen = respond(RuntimeEngine(cfg), result.state, images, cfg)  # one engine run: 5 < 10 chunks
    assert [n for n, _ in built] == [2, 2, 1] and frozen.counts.shape == (5, 4)


def test_a_weight_halfway_between_two_levels_deploys_to_the_lower_level():
    levels = (0.0, 0.25, 0.5, 1.0)
    w = np.array([[0.125, 0.375, 0.75, 0.25, 0.7500001, 0.1249999, 1.0]])
    out = deploy_weights(w, np.ones(w.shape, dtype=bool), levels)
    assert out.tolist() == [[0.0, 0.25, 0.5, 0.25, 1.0, 0.0, 1.0]]
    one_bit = deploy_weights(np.array([[0.5, 0.5]]), np.array([[True, False]]), levels_for_bits(1, 1.0))
    assert one_bit.tolist() == [[0.0, 0.0]]
    # a config's device levels, unsorted and with a repeat; a tie between 0 and 0.25 stops transmitting
    cfg = tiny(levels=(0.5, 0.0, 1.0, 0.5, 0.25))
    state = init_state(cfg)
    ties = np.where(np.arange(cfg.n_input)[:, None] % 2 == 0, 0.375, 0.125) * np.ones(state.w.shape)
    out = deployed(state.with_weights(ties), cfg)
    assert (out.w[::2] == 0.25).all() and (out.w[1::2] == 0.0).all()
    assert not transmitting(out)[1::2].any() and transmitting(out)[::2].all()


def test_training_transmits_each_weight_at_its_nearest_level():
    """Quantize-on-transmit during training (the X→Ae on_pre code of a plastic network with transmit
    levels): one input spike adds each synapse's nearest level to g_e, a tie going to the lower level
    as in deployment, while the shadow weight itself is left as it is."""
    from nsnn.stdp.equations import input_on_pre, namespace

    cfg = tiny()
    ns = namespace(cfg, transmit_levels=5)  # levels 0, 0.25, 0.5, 0.75, 1 (exact in binary)
    w = np.array([0.1, 0.125, 0.2, 0.375, 0.6, 1.0])
    if b2.get_device() is not b2.all_devices["runtime"]:
        b2.set_device("runtime")
    previous = b2.prefs.codegen.target
    b2.prefs.codegen.target = "numpy"
    try:
        source = b2.SpikeGeneratorGroup(1, [0], [0.0] * b2.ms)
        post = b2.NeuronGroup(len(w), "ge : 1\nx1 : 1")
        syn = b2.Synapses(source, post, "w : 1\nt_arrival : second", on_pre=input_on_pre(False, True))
        syn.connect(i=0, j=np.arange(len(w)))
        syn.w = w
        b2.Network(source, post, syn).run(1 * b2.ms, namespace={"w_step": ns["w_step"]})
    finally:
        b2.prefs.codegen.target = previous
    np.testing.assert_array_equal(np.asarray(post.ge[:]), [0.0, 0.0, 0.25, 0.25, 0.5, 1.0])
    np.testing.assert_array_equal(np.asarray(syn.w[:]), w)


def test_events_count_only_synapses_whose_deployed_weight_is_nonzero(tmp_path):
    """2-bit levels {0, 1/3, 2/3, 1} round the smaller surviving initial weights (< 1/6) to 0: those
    synapses stay in the network but their events deliver nothing and are not counted (evaluate and
    evaluate_run alike), as the BPTT report counts nonzero weights."""
    cfg = tiny(prune=0.25, bits=2)
    final = deployed(init_state(cfg), cfg)
    zeroed = final.mask & (final.w == 0)
    assert zeroed.any() and (final.w[final.mask] != 0).any()
    images, labels = bars(2)
    ev = evaluate(RuntimeEngine(cfg), final, images, labels, images, labels, cfg)
    spikes = ev.test.input_spikes.astype(np.float64)
    assert (spikes @ zeroed).sum() > 0  # the zeroed survivors did receive spikes
    expected = spikes @ (final.w != 0).sum(axis=1) / len(images)
    assert ev.events["input_events_per_inference"] == pytest.approx(expected)
    assert expected < spikes @ final.mask.sum(axis=1) / len(images)
    write_config(tmp_path, cfg, {})
    save_run(tmp_path, final, ev.assignments)
    again = evaluate_run(tmp_path, image_set(images, labels))  # the same test pass, re-simulated
    assert again["input_events_per_inference"] == ev.events["input_events_per_inference"]


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_progress_bars_only_on_a_terminal_by_default(tmp_path, monkeypatch, capsys):
    """By default (progress=None, the CLI without --progress/--no-progress) bars are drawn only when
    stderr is a terminal, as in BPTT training: none in a log piped to a file, which gets plain lines
    instead, and --json's JSON line stays the last line of stdout."""
    cfg = tiny(chunk=2)
    images, labels = bars(4)
    data = image_set(images, labels)
    run_experiment(cfg, data, image_set(*bars(2)), run_dir=tmp_path / "run")
    logged = capsys.readouterr().err  # pytest's captured stderr is not a terminal
    # it printed nothing until the end: now each phase's start and end and each saved training block
    lines = [re.sub(r"[\d.]+ (ms/example|s\))", r"# \1", line) for line in logged.splitlines()]
    assert "\r" not in logged and lines == [
        "train: 4 examples",
        "train: 2/4 examples, # ms/example (# s)",
        "train: 4/4 examples, # ms/example (# s)",
        "train: done (# s)",
        "label: 4 examples",
        "label: done, # ms/example (# s)",
        "test: 2 examples",
        "test: done, # ms/example (# s)",
    ], logged
    engine, state = RuntimeEngine(cfg), init_state(cfg)
    respond(engine, state, images, cfg, desc="test", progress=False)
    assert capsys.readouterr().err == ""  # --no-progress: neither bars nor lines
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    train(engine, state, images, labels, cfg, progress=None)
    respond(engine, state, images, cfg, desc="test", progress=None)
    drawn = terminal.getvalue()
    assert "train: 100%" in drawn and "test: 100%" in drawn and "train: done" not in drawn  # bars only
    monkeypatch.undo()

    progress = []

    def fake_run(config, train_set, test_set, **kwargs):
        progress.append(kwargs["progress"])
        return cli_summary(synapses=8, nonzero_synapses=6, bits=2)

    monkeypatch.setattr("nsnn.stdp.run_experiment", fake_run)
    monkeypatch.setattr(stdp_cli, "load_data", lambda args: (None, None))
    for flags, expected in (([], None), (["--no-progress"], False), (["--progress"], True)):
        stdp_cli.main(["--out", str(tmp_path / f"cli{len(progress)}"), "--json", *flags])
        assert progress[-1] is expected
        assert json.loads(capsys.readouterr().out.splitlines()[-1])["bits"] == 2


def cli_summary(**figures) -> dict:
    """What the CLI reads from :func:`run_experiment`'s summary, for a stand-in run."""
    base = {"run_dir": "r", "accuracy": 0.5, "label_accuracy": 0.5, "ms_per_example_train": 1.0}
    return {**base, **figures}


def test_label_assignment_never_sees_test_data():
    cfg = tiny()
    engine = RuntimeEngine(cfg)
    images, labels = bars(8)
    state = train(engine, init_state(cfg), images, labels, cfg).state
    test_a, y_a = bars(4, offset=1)
    test_b = np.zeros_like(test_a)
    y_b = np.zeros_like(y_a)
    ev_a = evaluate(engine, state, images, labels, test_a, y_a, cfg)
    ev_b = evaluate(engine, state, images, labels, test_b, y_b, cfg)
    assert (ev_a.assignments == ev_b.assignments).all()
    assert (ev_a.assignments == assign_labels(ev_a.label.counts, labels, cfg.n_classes)).all()
    assert ev_a.accuracy == accuracy(ev_a.test.counts, y_a, ev_a.assignments, cfg.n_classes)
    assert ev_b.accuracy == 0.0 and (ev_b.predictions == -1).all()


def test_classic_loop_retries_a_silent_example_at_most_retry_max_times(monkeypatch):
    from nsnn.stdp import classic

    intensities = []

    def rates(images, config, intensity=None):
        intensities.append(intensity)
        if len(intensities) > 10:
            raise AssertionError("the classic loop keeps retrying")
        return image_rates(images, config, intensity)

    normalized = []

    def normalize(w, config):
        normalized.append(len(intensities))
        return classic_normalize(w, config)

    classic_normalize = classic.normalize_columns
    monkeypatch.setattr(classic, "image_rates", rates)
    monkeypatch.setattr(classic, "normalize_columns", normalize)
    cfg = tiny(retry_max=2)
    blank = np.zeros((1, 8, 8), dtype=np.uint8)  # never draws a spike
    result = classic.classic_train(cfg, blank, init_state(cfg), target="numpy")
    assert intensities == [8.0, 9.0, 10.0] and result.counts.sum() == 0
    assert normalized == [0, 1, 2]  # before every presentation, as the original loop
    intensities.clear()
    classic.classic_train(cfg, blank, init_state(cfg), target="numpy", retry=False)
    assert intensities == [8.0]


def test_retry_rule_re_presents_silent_examples():
    cfg = tiny(retry_max=2)
    images = np.zeros((3, 8, 8), dtype=np.uint8)
    out = respond(RuntimeEngine(cfg), init_state(cfg), images, cfg)
    assert (out.retried, out.silent) == (3, 3) and out.input_spikes.sum() == 0


class RecordingEngine:
    """Runs phases on a wrapped engine and keeps every Phase it was given and its result, in order."""

    def __init__(self, engine: RuntimeEngine) -> None:
        self.engine, self.config, self.phases, self.results = engine, engine.config, [], []

    def run(self, phase: Phase, progress: bool = False):
        self.phases.append(phase)
        self.results.append(self.engine.run(phase, progress))
        return self.results[-1]

    def close(self) -> None:
        self.engine.close()


class SilentEngine:
    """Answers every phase with no spikes (so every example is retried) and keeps the phases it got."""

    def __init__(self, config: STDPConfig) -> None:
        self.config, self.phases = config, []

    def run(self, phase: Phase, progress: bool = False) -> PhaseResult:
        self.phases.append(phase)
        n, c = len(phase.rates), self.config
        zeros = np.zeros((n, c.n_exc), dtype=np.int32)
        return PhaseResult(zeros, phase.state, np.zeros(c.n_input, dtype=np.int64), 0, 0.0, 0.0, 0.0)

    def close(self) -> None:
        pass


def test_every_random_stream_of_a_run_has_its_own_seed_and_run_seeds_share_none():
    """Training blocks, their retry attempts, the frozen passes' blocks and attempts: each phase run gets
    a distinct seed, and run seeds 0 and 1 share none (with seed + block, seed 1's block 0 reused seed 0's
    block 1 stream, so the four-seed figures were not independent)."""
    seeds = []
    for seed in (0, 1):
        cfg = tiny(seed=seed, chunk=1, retry_max=1)
        images, labels = bars(11)
        engine = SilentEngine(cfg)
        result = train(engine, init_state(cfg), images[:3], labels[:3], cfg)
        evaluate(engine, result.state, images, labels, images[:2], labels[:2], cfg)
        # train: 3 blocks + their retries; label: 11 images in blocks of 10, twice; test: 1 block, twice
        assert len(engine.phases) == 3 * 2 + 2 * 2 + 2
        seeds.append([p.seed for p in engine.phases])
        assert len(set(seeds[-1])) == len(seeds[-1])
    assert not set(seeds[0]) & set(seeds[1])
    with pytest.raises(ValueError, match="seed path"):
        derive_seed(1, -2)


def test_energy_proxies_count_every_attempt_of_the_retry_rule():
    cfg = tiny(retry_max=2, retry_min_spikes=1000)  # every example is presented three times
    images, labels = bars(4)
    engine = RecordingEngine(RuntimeEngine(cfg))
    ev = evaluate(engine, init_state(cfg), images, labels, images, labels, cfg)
    test_runs = engine.results[3:]  # label: attempts 0, 1, 2; then test: the same
    exc = sum(int(r.counts.sum()) for r in test_runs)
    inh = sum(r.inh_spikes for r in test_runs)
    assert exc > int(test_runs[-1].counts.sum())  # the earlier attempts spiked too
    assert ev.events["exc_spikes_per_inference"] == exc / 4
    assert ev.events["recurrent_events_per_inference"] == (exc + inh * (cfg.n_exc - 1)) / 4


def test_training_retry_re_presents_silent_examples_louder_and_learns_from_them():
    """At intensity 0 every training example is silent; retry 1 presents the block again at intensity
    12 (plastic, from the block's end state), retry 2 the examples still below 4 spikes at 24; the
    returned responses are the retried ones and STDP learned the bar from them."""
    cfg = tiny(
        intensity=0.0,
        retry_intensity_step=12.0,
        retry_min_spikes=4,
        retry_max=2,
        train_retry=True,
        nu_post=0.1,
        nu_pre=1e-3,
    )
    images, labels = bars(12, n_classes=1)
    engine = RecordingEngine(RuntimeEngine(cfg))
    state0 = init_state(cfg)
    result = train(engine, state0, images, labels, cfg)
    no_retry = cfg.replace(train_retry=False)
    plain = train(RuntimeEngine(no_retry), state0, images, labels, no_retry)

    assert plain.counts.sum() == 0 and plain.retried == 0
    assert len(engine.phases) == 3 and all(p.plastic for p in engine.phases)
    block, retry1, retry2 = engine.results
    assert not engine.phases[0].rates.any() and block.counts.sum() == 0
    np.testing.assert_allclose(engine.phases[1].rates, image_rates(images, cfg, intensity=12.0))
    assert engine.phases[1].state is block.state and engine.phases[2].state is retry1.state
    still = np.flatnonzero(retry1.counts.sum(axis=1) < 4)
    assert 0 < still.size < 12
    np.testing.assert_allclose(engine.phases[2].rates, image_rates(images[still], cfg, intensity=24.0))
    expected = retry1.counts.copy()
    expected[still] = retry2.counts
    assert result.retried == 12 and (result.counts == expected).all()
    assert result.state is retry2.state
    fired = np.flatnonzero(result.counts.sum(axis=0) > 0)
    assert (result.state.theta[fired] > plain.state.theta[fired]).all()
    # the silent first pass only normalised the weights; the retries moved them by STDP to the bar
    np.testing.assert_allclose(plain.state.w.sum(axis=0), cfg.w_sum, rtol=1e-9)
    active = images[0].ravel() > 0
    assert _ratio(result.state.w, active, fired) > 1.5 * _ratio(plain.state.w, active, fired)


def test_a_run_whose_training_stayed_dense_keeps_its_dense_weights(tmp_path):
    levels = (0.0, 0.2, 0.5, 1.0)  # device levels are applied at deployment, never in training
    assert trains_dense(tiny(levels=levels, prune_every=2), 4)
    assert trains_dense(tiny(prune=0.5, bits=4), 4)  # compressed once, after training
    assert not trains_dense(tiny(prune=0.5, prune_every=2), 4)
    assert not trains_dense(tiny(bits=4, prune_every=2), 4)  # transmits 4-bit levels after 2 examples
    data = image_set(*bars(4))
    run_experiment(tiny(levels=levels, prune_every=2), data, data, run_dir=tmp_path, progress=False)
    assert "w_xe_dense" in load_run(tmp_path).extra_weights  # so it can be swept (--from-run)
    empty = image_set(*bars(0))
    for train_set, test_set in ((empty, data), (data, empty)):  # refused before a run folder is made
        with pytest.raises(ValueError, match="needs training and test examples"):
            run_experiment(tiny(), train_set, test_set, run_dir=tmp_path / "empty", progress=False)
    assert not (tmp_path / "empty").exists()


def test_run_directory_round_trip_and_sweep(tmp_path):
    cfg = tiny()
    x, y = bars(8)
    xt, yt = bars(4, offset=2)
    import torch

    train_set = ImageSet(torch.from_numpy(x), torch.from_numpy(y))
    test_set = ImageSet(torch.from_numpy(xt), torch.from_numpy(yt))
    summary = run_experiment(
        cfg,
        train_set,
        test_set,
        run_dir=tmp_path,
        sweep=True,
        sweep_sparsities=(0.0, 0.5),
        sweep_bits=(2,),
        progress=False,
    )
    for name in (
        "config.json",
        "metrics.csv",
        "weights.npz",
        "assignments.csv",
        "summary.json",
        "receptive_fields.png",
        "weight_histogram.png",
        "sweep.csv",
        "sweep.png",
    ):
        assert (tmp_path / name).is_file(), name
    with np.load(tmp_path / "weights.npz") as npz:
        assert npz["w_xe"].dtype == np.float64 and npz["w_xe"].shape == (64, 4)
        assert (
            npz["mask"].dtype == bool and npz["theta"].shape == (4,) and npz["assignments"].dtype == np.int64
        )
        assert "w_xe_dense" in npz.files and "w_xe_initial" in npz.files
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["n_input"], config["n_exc"], config["w_exc_inh"]) == (64, 4, 10.4)
    assert [(r["sparsity"], r["bits"], r["synapses"]) for r in summary["sweep"]] == [
        (0.0, 2, 256),
        (0.5, 2, 128),
    ]
    run = load_run(tmp_path)
    assert run.config == cfg and run.state.synapses == 256
    assert summary["nonzero_synapses"] == int(np.count_nonzero(run.state.w)) > 0
    assert np.array_equal(run.state.theta, np.load(tmp_path / "weights.npz")["theta"])
    with pytest.raises(FileExistsError, match="already holds files"):  # a run never overwrites another
        run_experiment(cfg, train_set, test_set, run_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="n_label"):
        run_experiment(cfg, train_set, test_set, run_dir=tmp_path / "nolabel", n_label=0, progress=False)
    # Refused before anything trains or is written (a bad sweep cell came after training and lost the
    # run; bad data came after config.json, so a corrected retry met "already holds files").
    for bad, match in (
        ({"sweep": True, "sweep_bits": (32, 64)}, r"bits must be 1\.\.16"),
        ({"sweep": True, "sweep_sparsities": (0.5, 1.0)}, r"sweep sparsities must be numbers in \[0, 1\)"),
        ({"sweep": True, "sweep_bits": ()}, "a sweep needs >= 1 sparsity and >= 1 bit width"),
        ({"train_set": ImageSet(torch.zeros(8, 7, 7, dtype=torch.uint8), train_set.labels)}, "49 pixels"),
        (
            {"test_set": ImageSet(test_set.images, test_set.labels + 10)},
            r"labels must be integers in \[0, n_classes=4\)",
        ),
    ):
        args = {"train_set": train_set, "test_set": test_set, **bad}
        with pytest.raises(ValueError, match=match):
            run_experiment(cfg, run_dir=tmp_path / "refused", progress=False, **args)
        assert not (tmp_path / "refused").exists()
    with pytest.raises(ValueError, match=r"bits must be 1\.\.16"):
        sweep_run(tmp_path, train_set, test_set, run_dir=tmp_path / "refused", bits=(64,))
    again = evaluate_run(run, test_set)  # the run's own test pass, re-simulated with its seed
    assert again["n_test"] == 4 and again["accuracy"] == summary["accuracy"]
    assert again["input_events_per_inference"] == summary["input_events_per_inference"]  # same input spikes
    rows = sweep_run(
        run, train_set, test_set, run_dir=tmp_path / "sweep", sparsities=(0.75,), bits=(1,), progress=False
    )
    assert [(r["synapses"], r["bits"]) for r in rows] == [(64, 1)]
    assert (tmp_path / "sweep" / "sweep.csv").is_file()
    # one cell: its figures at the top of summary.json, as a training run's (only in "sweep" before)
    cell = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert (cell["accuracy"], cell["bits"], cell["n_test"]) == (rows[0]["accuracy"], 1, 4)
    assert cell["sweep"] == rows
    from visualizer.sources import load_source

    with pytest.raises(
        ValueError, match=f"an evaluation of the STDP run {re.escape(str(tmp_path.resolve()))}"
    ):
        load_source(tmp_path / "sweep")
    # the evaluation's config.json is the configuration evaluated, with the run and data it came from
    evaluated = json.loads((tmp_path / "sweep" / "config.json").read_text())
    assert (evaluated["prune"], evaluated["bits"], evaluated["n_exc"]) == (0.75, 1, 4)
    assert evaluated["run"] == {
        "sweep_of": str(tmp_path.resolve()),
        "data": "embedded",
        "n_label": 8,
        "n_test": 4,
        "sparsities": [0.75],
        "bits": [1],
    }
    assert summary["run_dir"] == str(tmp_path.resolve())  # absolute: valid from any working directory
    # the saved network as it is: the run's own label and test passes again, so its own figures
    row = retest_run(run, train_set, test_set, run_dir=tmp_path / "retest", progress=False)
    assert (row["accuracy"], row["label_accuracy"]) == (summary["accuracy"], summary["label_accuracy"])
    assert (row["synapses"], row["bits"], row["sparsity"]) == (256, 32, 0.0)
    assert json.loads((tmp_path / "retest" / "config.json").read_text())["run"]["sweep_of"] == str(
        tmp_path.resolve()
    )


def test_quantization_that_silences_most_synapses_warns():
    cfg = tiny(bits=2)  # levels 0, 1/3, 2/3, 1: weights below 1/6 round to 0
    with pytest.warns(UserWarning, match=r"left 40 of the 100 kept synapses nonzero: .* below 0.167"):
        warn_if_quantization_silences(100, 40, cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_quantization_silences(100, 50, cfg)  # half still transmit: no warning
        warn_if_quantization_silences(100, 10, tiny())  # full precision: a 0 weight is the trained one


def test_quantization_that_silences_training_warns_once_at_its_first_compression(tmp_path):
    # The warning came only after the whole run (label, test, figures), too late to stop it early.
    cfg = tiny(bits=1, prune_every=4)  # levels 0 and 1: every trained weight (mean w_sum/64) rounds to 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_experiment(cfg, image_set(*bars(12)), image_set(*bars(2)), run_dir=tmp_path / "run")
    silenced = [str(w.message) for w in caught if "quantization to 1 bit" in str(w.message)]
    assert len(silenced) == 1, silenced
    assert "left 0 of the 256 kept synapses nonzero after 4 of 12 training examples" in silenced[0]
    rows = [r for r in read_csv(tmp_path / "run" / "metrics.csv") if r["phase"] == "compress"]
    assert [(r["examples"], r["bits"]) for r in rows] == [("4", "1"), ("8", "1"), ("12", "1")]  # was empty


def test_each_sweep_cell_that_quantization_silences_warns(tmp_path, capsys):
    # A sweep's 2-bit cells left most synapses at 0 without a word; only a single evaluation warned.
    cfg = tiny()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_config(run_dir, cfg, {"n_train": 4, "n_label": 4, "n_test": 2, "data": "embedded"})
    state = init_state(cfg)  # weights below 0.3: 1 bit (levels 0, 1) rounds every one to 0
    save_run(run_dir, state, np.zeros(4, dtype=np.int64), extra_weights={"w_xe_dense": state.w})
    data = image_set(*bars(2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sweep_run(run_dir, data, data, run_dir=tmp_path / "grid", sparsities=(0.0, 0.5), bits=(1,))
        sweep_run(run_dir, data, data, run_dir=tmp_path / "cell", sparsities=(0.5,), bits=(1,))
    silenced = [str(w.message) for w in caught if "quantization to" in str(w.message)]
    assert [m.split(":")[0] for m in silenced] == [
        "quantization to 1 bit left 0 of the 256 kept synapses nonzero at sparsity 0 %",
        "quantization to 1 bit left 0 of the 128 kept synapses nonzero at sparsity 50 %",
        "quantization to 1 bit left 0 of the 128 kept synapses nonzero at sparsity 50 %",  # once, not twice
    ]
    logged = [line.split(": accuracy")[0] for line in capsys.readouterr().err.splitlines()]
    assert logged == [  # a log (stderr not a terminal) gets one line per cell, none per label/test pass
        "sweep: 2 cells",
        "sweep: cell 1/2 (sparsity 0 %, 1 bit)",
        "sweep: cell 2/2 (sparsity 50 %, 1 bit)",
        "sweep: 1 cell",
        "sweep: cell 1/1 (sparsity 50 %, 1 bit)",
    ]


def test_cli_rejects_bad_config(tmp_path):
    script = str(ROOT / "scripts" / "stdp_mnist.py")
    proc = subprocess.run([sys.executable, script, "--prune", "1.5"], capture_output=True, text=True)
    assert proc.returncode != 0 and "prune" in proc.stderr
    # a saved dense run is compressed once after training: no in-training schedule, no device levels
    proc = subprocess.run(
        [sys.executable, script, "--from-run", "runs/x", "--prune", "0.5", "--prune-every", "100"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "its own configuration; drop --prune-every" in proc.stderr
    proc = subprocess.run([sys.executable, script, "--label", "-4"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--label must be >= 1" in proc.stderr
    # a flag --from-run cannot apply is refused even when typed at its default value
    proc = subprocess.run(
        [sys.executable, script, "--from-run", "runs/x", "--target", "standalone"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "drop --target" in proc.stderr
    evaluation = tmp_path / "evaluation"  # what --from-run / --sweep write: no training of its own
    evaluation.mkdir()
    (evaluation / "config.json").write_text(json.dumps({"run": {"sweep_of": "runs/dense", "n_test": 5}}))
    proc = subprocess.run(
        [sys.executable, script, "--from-run", str(evaluation)], capture_output=True, text=True
    )
    assert (
        proc.returncode == 2
        and "not a trained run; give the run it evaluated: --from-run runs/dense" in proc.stderr
    )
    bptt = tmp_path / "bptt"  # a BPTT run's config.json has no "run" section
    bptt.mkdir()
    (bptt / "config.json").write_text(json.dumps({"dataset": "mnist", "model": "mnist_mlp"}))
    proc = subprocess.run([sys.executable, script, "--from-run", str(bptt)], capture_output=True, text=True)
    assert proc.returncode == 2 and "is not an STDP run: its config.json has no 'run' section" in proc.stderr
    for argv, message in (
        (["--levels", "0", "0.5", "1", "--bits", "4"], "give one of them"),
        (["--train", "40", "--label", "100"], "--label 100 exceeds the 40 training examples"),
        (["--bits", "24"], "bits must be 1..16"),
        (["--neurons", "0"], "--neurons must be >= 1, got 0"),
        (
            ["--prune-every", "50"],
            "give --prune > 0 (or --prune-threshold) or --bits < 32 as well",
        ),  # was a dense run
        (["--prune-every", "50", "--levels", "0", "1"], "--levels are applied at deployment only"),
        (["--download"], "give --data-dir too"),
    ):
        proc = subprocess.run([sys.executable, script, *argv], capture_output=True, text=True)
        assert proc.returncode in (1, 2) and message in proc.stderr, (argv, proc.stderr[-500:])
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    proc = subprocess.run(
        [sys.executable, script, "--out", str(blocked / "run")], capture_output=True, text=True
    )
    assert (
        proc.returncode == 1
        and "cannot make the run folder" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    for source in ([], ["--from-run", "runs/x"]):  # a sweep runs its own grid, never one given cell
        argv = [sys.executable, script, *source, "--sweep", "--prune", "0.5", "--bits", "4"]
        proc = subprocess.run(argv, capture_output=True, text=True)
        assert proc.returncode == 2 and "drop --prune, --prune-threshold, --bits and --levels" in proc.stderr


def test_cli_help_shows_the_defaults():
    # stdp_mnist.py --help named no defaults, unlike the BPTT scripts' "(default: ...)".
    text = " ".join(stdp_cli.build_parser().format_help().split()).split("show this help message and exit")[1]
    for flag, default in (
        ("--neurons NEURONS excitatory (= inhibitory) neurons N", "400"),
        ("--bits BITS", "32"),
        ("--chunk CHUNK", "500"),
        ("--seed SEED", "0"),
        ("--target {standalone,cython,numpy}", "standalone"),
        ("--retry-max RETRY_MAX", "3"),
        ("--prune-scope {neuron,global}", "neuron"),
        ("--train TRAIN", "8000"),
    ):
        help_of = text[text.index(flag) :].split(" --", 1)[0]
        assert f"(default: {default}" in help_of or f"default: {default}," in help_of, help_of
    assert "Outputs (run directory): config.json, metrics.csv" in stdp_cli.build_parser().format_help()


def test_cli_names_the_flag_to_omit_for_the_embedded_split_when_data_dir_has_no_mnist(tmp_path, monkeypatch):
    # The hint was moved into nsnn.data's registry, which this CLI does not load through: it was lost.
    from nsnn.data import DatasetError

    def offline(root, progress=None):
        raise DatasetError("could not download MNIST (offline)")

    monkeypatch.setattr("nsnn.data.download_mnist", offline)
    for extra, flags in (([], "--data-dir"), (["--download"], "--data-dir and --download")):
        with pytest.raises(SystemExit) as failed:
            stdp_cli.main(["--data-dir", str(tmp_path / "none"), *extra, "--out", str(tmp_path / "run")])
        assert f"(omit {flags} to use the embedded MNIST test set" in str(failed.value), failed.value
    assert not (tmp_path / "run").exists()


def test_cli_prints_the_library_warnings_plainly(tmp_path):
    # Brian2 turns Python warnings into its own log lines once imported; the CLI prints them itself.
    # In a fresh process: Brian2 first imported during the run took the warnings over (a pytest process
    # has it loaded already, which hid that).
    code = """
import sys
import nsnn.stdp
from nsnn.stdp import cli
from nsnn.stdp.experiment import warn_if_quantization_silences
assert "brian2" not in sys.modules
def fake_run(config, train_set, test_set, **kwargs):
    import brian2  # what a real run imports
    warn_if_quantization_silences(100, 0, config)
    print("still running", file=sys.stderr)
    raise SystemExit(0)
nsnn.stdp.run_experiment = fake_run
cli.load_data = lambda args: (None, None)
cli.main(["--out", sys.argv[1], "--bits", "1", "--json"])
"""
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    warned = "warning: quantization to 1 bit left 0 of the 100 kept synapses nonzero"
    assert warned in proc.stderr and "py.warnings" not in proc.stderr
    assert proc.stderr.index(warned) < proc.stderr.index("still running")  # as it comes, not at the end


def test_cli_quantizes_during_training_without_pruning():
    # the library quantizes on transmit from the first compression point whether or not it prunes
    args = stdp_cli.parse_args(["--prune-every", "50", "--bits", "4"])
    assert (args.prune_every, args.prune, args.bits) == (50, 0.0, 4)


def test_cli_names_data_sizes_taken_from_the_saved_run(tmp_path):
    source = tmp_path / "big"
    source.mkdir()
    run_info = {"n_train": 9000, "n_label": 9000, "n_test": 100, "data": "embedded"}
    (source / "config.json").write_text(json.dumps({**tiny().to_dict(), "run": run_info}))
    args = stdp_cli.parse_args(["--from-run", str(source)])
    assert args.inherited == {"train", "label", "test"}
    with pytest.raises(SystemExit, match=r"--train 9000 \(the saved run's; give --train to choose\)"):
        stdp_cli.load_data(args)
    args = stdp_cli.parse_args(["--from-run", str(source), "--train", "50"])
    train_set, test_set = stdp_cli.load_data(args)
    assert (args.label, len(train_set.labels), len(test_set.labels)) == (None, 50, 100)


def test_ctrl_c_during_training_ends_the_script_without_a_summary(tmp_path):
    # Brian2's default handler turned Ctrl-C into a graceful stop of the current run(): the script went
    # on with a shortened training block and saved the result as complete, with exit code 0.
    script = str(ROOT / "scripts" / "stdp_mnist.py")
    argv = [sys.executable, script, "--target", "numpy", "--neurons", "10", "--train", "400", "--test", "10"]
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [*argv, "--out", str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 300
        while not (run / "config.json").is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (run / "config.json").is_file() and proc.poll() is None  # the run has begun (else no test)
        time.sleep(2.0)  # inside the training phase (400 examples take far longer)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err.decode()[-2000:]
    assert "interrupted" in err.decode() and not (run / "summary.json").exists()


def test_a_run_started_with_sigint_ignored_ignores_it(tmp_path):
    # A background job (SIGINT ignored, as for `cmd &` in a script) crashed at a `kill -INT` inside
    # Brian2's handler, which called the SIG_IGN it replaced ("'Handlers' object is not callable").
    from nsnn.training.runtime import sigint_deferred

    script = str(ROOT / "scripts" / "stdp_mnist.py")
    run = tmp_path / "run"
    argv = [sys.executable, script, "--target", "numpy", "--neurons", "2", "--train", "4", "--test", "2"]
    proc = subprocess.Popen(
        [*argv, "--chunk", "2", "--out", str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "config.json").is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        while proc.poll() is None and time.monotonic() < deadline:  # through training, labelling, testing
            proc.send_signal(signal.SIGINT)
            time.sleep(0.1)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and (run / "summary.json").is_file(), err.decode()[-2000:]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with sigint_deferred():  # where a training block's rows and progress are saved
            os.kill(os.getpid(), signal.SIGINT)
    except KeyboardInterrupt:
        pytest.fail("sigint_deferred raised KeyboardInterrupt for a SIGINT the process ignores")
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize(
    "code",
    [
        "import nsnn.stdp.network",
        "from nsnn.stdp import STDPConfig, equations\nequations.namespace(STDPConfig())",
    ],
    ids=["network", "equations"],
)
def test_importing_any_nsnn_module_that_uses_brian2_keeps_an_ignored_sigint_ignored(code):
    # Only nsnn.stdp.engine put back the disposition Brian2's import replaced: a program importing only the
    # public build_network (or the equations' namespace) in a job started with SIGINT ignored crashed at
    # a `kill -INT` ("'Handlers' object is not callable").
    check = f"{code}\nimport signal, sys\nsys.exit(signal.getsignal(signal.SIGINT) is not signal.SIG_IGN)"
    proc = subprocess.run(
        [sys.executable, "-c", check],
        cwd=ROOT,
        capture_output=True,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


class CtrlCInFinalizer:
    """Sends this process a SIGINT in its finalizer, where the KeyboardInterrupt a handler raises is lost."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs in here
            pass


def test_a_ctrl_c_lost_in_a_finalizer_still_stops_the_run(monkeypatch):
    # Python runs a signal handler wherever the interpreter is, also in a finalizer or a weakref callback
    # (Brian2 has them on the objects of every network dropped between chunks), which loses the
    # KeyboardInterrupt it raises: on the cython target about one Ctrl-C in four let the run go on.
    from nsnn.stdp import engine as engine_module
    from nsnn.stdp.network import build_network

    built, lost = [], []

    def build_after_a_lost_ctrl_c(config, state, **kwargs):
        built.append(kwargs["n_examples"])
        if len(built) == 1:
            CtrlCInFinalizer()  # dropped at once: its finalizer runs
        return build_network(config, state, **kwargs)

    monkeypatch.setattr(engine_module, "build_network", build_after_a_lost_ctrl_c)
    monkeypatch.setattr(sys, "unraisablehook", lost.append)
    handler = signal.getsignal(signal.SIGINT)
    cfg = tiny(chunk=2)
    with pytest.raises(KeyboardInterrupt):
        RuntimeEngine(cfg).run(Phase(image_rates(bars(6)[0], cfg), init_state(cfg), plastic=True))
    assert built == [2]  # stopped before simulating the chunk
    assert not lost  # the lost KeyboardInterrupt is not printed ("Exception ignored in ...")
    assert signal.getsignal(signal.SIGINT) is handler and sys.unraisablehook == lost.append  # given back


def test_a_ctrl_c_lost_inside_nested_interrupt_blocks_is_raised_by_the_inner_check(monkeypatch):
    # An inner interrupts_raise found the outer block's handler instead of Python's or Brian2's default
    # and switched its own record off: its check could never raise a Ctrl-C lost inside it.
    from nsnn.stdp.engine import interrupts_raise

    lost: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", lost.append)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), interrupts_raise() as outer_check:  # raised again on leaving
        with interrupts_raise() as check:
            CtrlCInFinalizer()  # dropped at once: the KeyboardInterrupt of its finalizer is lost
            with pytest.raises(KeyboardInterrupt):
                check()
        pytest.fail("leaving the inner block did not raise the lost Ctrl-C")
    with pytest.raises(KeyboardInterrupt):
        outer_check()
    assert not lost  # not printed ("Exception ignored in ...")
    assert signal.getsignal(signal.SIGINT) is handler and sys.unraisablehook == lost.append  # given back


def test_a_ctrl_c_while_a_network_is_built_drops_its_unrun_objects_quietly(monkeypatch):
    # Brian2 warned of each object of the interrupted build as it was deleted, unrun ("... is getting
    # deleted, but was never included in a network", several lines each), after "interrupted".
    import gc

    from brian2.utils.logger import catch_logs

    cfg = tiny()
    phase = Phase(image_rates(bars(1)[0], cfg), init_state(cfg), plastic=False)
    for error, warned in ((KeyboardInterrupt, False), (RuntimeError, True)):  # only a Ctrl-C is quiet

        def stop(self, *args, error=error, **kwargs):
            raise error

        with catch_logs() as logs:
            with monkeypatch.context() as patched:
                patched.setattr(b2.Network, "before_run", stop)  # the network's first run
                with pytest.raises(error):
                    RuntimeEngine(cfg).run(phase)
            gc.collect()
        assert any(name.endswith("unused_brian_object") for _, name, _ in logs) is warned, logs


def test_ctrl_c_during_a_standalone_build_ends_the_script_as_an_interrupt(tmp_path, monkeypatch, capsys):
    # make stopped by Ctrl-C came back as Brian2's "Project compilation failed" (after make's output)
    # and exit status 1, not as an interrupt. Here make is a shell killed by SIGINT, as a Ctrl-C does.
    make = "devices.cpp_standalone.make_cmd_unix"
    monkeypatch.setitem(b2.prefs, make, "sh -c 'echo g++ main.cpp; kill -INT $$'")
    argv = ["--target", "standalone", "--neurons", "2", "--train", "2", "--test", "1", "--chunk", "2"]
    with pytest.raises(SystemExit) as stop:
        stdp_cli.main([*argv, "--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert stop.value.code == 130 and "interrupted before any progress was saved" in err
    assert not (tmp_path / "run").exists()  # nothing to resume: the same command can be run again
    assert "compilation failed" not in out + err and "g++" not in out + err
    monkeypatch.setitem(b2.prefs, make, "sh -c 'echo g++: error; exit 2'")  # a failure: reported as it was
    with pytest.raises(RuntimeError, match="compilation failed"):
        stdp_cli.main([*argv, "--out", str(tmp_path / "failed")])
    assert "g++: error" in capsys.readouterr().out


def test_a_missing_cxx_compiler_is_reported_before_the_run_folder_is_made(tmp_path, monkeypatch):
    # Brian2's compilation error came at the first build, leaving a run folder without a run.
    monkeypatch.setenv("CXX", "nsnn-missing-compiler")
    argv = ["--target", "standalone", "--neurons", "2", "--train", "2", "--test", "1"]
    expected = r"^error: .* nsnn-missing-compiler is not on PATH: install a C\+\+ compiler .*--target numpy"
    with pytest.raises(SystemExit, match=expected):
        stdp_cli.main([*argv, "--out", str(tmp_path / "run")])
    data = ImageSet(*(torch.from_numpy(a) for a in bars(2)))
    with pytest.raises(FileNotFoundError, match=r"build-essential.*target='numpy'"):
        run_experiment(tiny(target="standalone"), data, data, run_dir=tmp_path / "library")
    assert not (tmp_path / "run").exists() and not (tmp_path / "library").exists()
    stdp_cli.main(["--target", "numpy", *argv[2:], "--out", str(tmp_path / "numpy")])  # needs no compiler


def test_cli_from_run_json_has_the_contract_keys(tmp_path, monkeypatch, capsys):
    source = tmp_path / "dense"
    source.mkdir()
    summary = {"accuracy": 0.8, "ms_per_example_train": 9.5, "synapses": 313600, "bits": 32}
    (source / "summary.json").write_text(json.dumps(summary))
    run_info = {"n_train": 40, "n_label": 30, "n_test": 12, "data": "/data/mnist"}
    (source / "config.json").write_text(json.dumps({**tiny().to_dict(), "run": run_info}))
    state = init_state(tiny())
    save_run(source, state, np.zeros(tiny().n_exc, dtype=np.int64), {"w_xe_dense": state.w})
    cell = {"sparsity": 0.75, "bits": 4, "synapses": 64, "nonzero_synapses": 60, "accuracy": 0.7}
    monkeypatch.setattr("nsnn.stdp.sweep_run", lambda *a, **k: [cell])
    data_flags = []
    monkeypatch.setattr(
        stdp_cli,
        "load_data",
        lambda args: data_flags.append((args.train, args.label, args.test, args.data_dir)) or (None, None),
    )
    for extra, expected in (([], cell), (["--sweep"], summary)):
        argv = ["--from-run", str(source), "--out", str(tmp_path / f"eval{len(extra)}"), "--json", *extra]
        stdp_cli.main(argv)
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert result["ms_per_example_train"] == 9.5
        assert {k: result[k] for k in ("accuracy", "synapses", "bits")} == {
            k: expected[k] for k in ("accuracy", "synapses", "bits")
        }
    # the saved run's own data unless given
    assert data_flags == [(40, 30, 12, "/data/mnist")] * 2
    stdp_cli.main(["--from-run", str(source), "--out", str(tmp_path / "eval-test"), "--test", "5"])
    assert data_flags[-1] == (40, 30, 5, "/data/mnist")
    monkeypatch.chdir(tmp_path)  # a relative --data-dir is used (and recorded) absolute
    stdp_cli.main(["--from-run", str(source), "--out", str(tmp_path / "eval-rel"), "--data-dir", "mnist"])
    assert data_flags[-1] == (40, 30, 12, str(tmp_path / "mnist"))
    # a --train given alone: labels on all of it, not on the saved run's 30 (nor refused if fewer)
    stdp_cli.main(["--from-run", str(source), "--out", str(tmp_path / "eval-train"), "--train", "20"])
    assert data_flags[-1] == (20, None, 12, "/data/mnist")

    # a run compressed after training, evaluated with no --prune / --bits: said to be its dense weights
    compressed = tmp_path / "compressed"
    compressed.mkdir()
    (compressed / "config.json").write_text(
        json.dumps({**tiny(prune=0.5, bits=4).to_dict(), "run": run_info})
    )
    save_run(compressed, state, np.zeros(tiny().n_exc, dtype=np.int64), {"w_xe_dense": state.w})
    stdp_cli.main(["--from-run", str(compressed), "--out", str(tmp_path / "eval-dense")])
    assert "evaluates the run's dense weights as they were before compression" in capsys.readouterr().out
    stdp_cli.main(["--from-run", str(compressed), "--out", str(tmp_path / "eval-p"), "--prune", "0.5"])
    assert "before compression" not in capsys.readouterr().out

    # a run pruned during training keeps no dense weights: compressing it afresh is refused before any
    # folder is made; without --prune / --bits / --sweep its saved network is evaluated
    pruned = tmp_path / "pruned"
    pruned.mkdir()
    (pruned / "config.json").write_text(json.dumps({**tiny().to_dict(), "run": run_info}))
    save_run(pruned, state, np.zeros(tiny().n_exc, dtype=np.int64))
    for extra, asked in (
        (["--prune", "0.5"], "--prune/--prune-threshold/--bits"),  # --levels: refused for any --from-run
        (["--sweep"], "--sweep"),
    ):
        with pytest.raises(SystemExit, match=f"compressed during training .* drop {asked} to evaluate"):
            stdp_cli.main(["--from-run", str(pruned), "--out", str(tmp_path / "never"), *extra])
    capsys.readouterr()
    with pytest.raises(SystemExit):  # what that message leaves out: any --from-run refuses it
        stdp_cli.main(["--from-run", str(pruned), "--out", str(tmp_path / "never"), "--levels", "0", "1"])
    assert "drop --levels" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
    retested = []
    monkeypatch.setattr("nsnn.stdp.retest_run", lambda run, *a, **k: retested.append(run.run_dir) or cell)
    result = stdp_cli.main(["--from-run", str(pruned), "--out", str(tmp_path / "retest")])
    assert retested == [pruned] and result["accuracy"] == 0.7
    assert "evaluating its saved network" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        stdp_cli.main(["--from-run", str(tmp_path / "nowhere")])
    assert "no readable STDP run config.json" in capsys.readouterr().err
    # without --out: a folder named for what it holds, an evaluation of the run compressed
    monkeypatch.chdir(tmp_path)
    stdp_cli.main(["--from-run", str(source), "--prune", "0.5"])
    assert [p.name.startswith("stdp-compress-") for p in (tmp_path / "runs").iterdir()] == [True]


@pytest.mark.slow
def test_standalone_build_runs_end_to_end(tmp_path):

    cfg = tiny(target="standalone", chunk=3)
    images, _ = bars(5)
    state0 = init_state(cfg)
    rates = image_rates(images, cfg)
    with StandaloneEngine(cfg, tmp_path / "build") as engine:
        first = engine.run(Phase(rates, state0, plastic=True, seed=3))
        repeat = engine.run(Phase(rates, state0, plastic=True, seed=3))
        other = engine.run(Phase(rates, state0, plastic=True, seed=4))
        part = engine.run(Phase(rates[:2], state0, plastic=True, seed=3))
        assert first.build_seconds > 0 and repeat.build_seconds == part.build_seconds == 0
        frozen = respond(engine, first.state, images, cfg)
    assert b2.get_device() is b2.all_devices["runtime"] and b2.prefs.core.stop_on_keyboard_interrupt
    for phase in ("train", "frozen"):  # the generated code was patched (the patches leave it unchanged)
        project = tmp_path / "build" / phase
        assert (project / "brianlib" / "spikequeue.h").read_text() == SPIKE_QUEUE_HEADER.read_text()
        (thresholder,) = (project / "code_objects").glob("Ae_spike_thresholder_codeobject*.cpp")
        assert "if(_nsnn_any)" in thresholder.read_text() and "omp simd" in thresholder.read_text()
        (updater,) = (project / "code_objects").glob("Ae_stateupdater_codeobject*.cpp")
        assert "#pragma GCC ivdep" in updater.read_text()
        assert ("__simd__" in updater.read_text()) == have_libmvec()
        for group in ("Ae", "Ai"):  # refractoriness tested in doubles, so AVX2 can vectorize the loop
            (code,) = (project / "code_objects").glob(f"{group}_stateupdater_codeobject*.cpp")
            loop = code.read_text().split("#pragma GCC ivdep")[1]
            assert "_timestep_at_least(t - lastspike, dt, _lio_" in loop and "_timestep(" not in loop
        # built without Brian2's graceful-stop SIGINT handler: Ctrl-C kills the binary instead of ending
        # its run early with success (which would read back as a finished, silently shortened phase)
        assert "std::signal(SIGINT" not in (project / "main.cpp").read_text()
        network = (project / "network.cpp").read_text()
        step_end, after_loop = network.split("clock = next_clocks();")[-1].split("_globally_running = false;")
        assert "std::clock()" not in step_end and "std::clock()" in after_loop
    assert first.counts.shape == (5, 4) and first.counts.sum() > 0
    assert (first.counts == repeat.counts).all() and not (first.counts == other.counts).all()
    # 2 examples in a 3-example build stop after them: same spikes, no silent padding simulated
    assert (part.counts == first.counts[:2]).all() and part.input_spikes.sum() < first.input_spikes.sum()
    assert np.abs(first.state.w.sum(axis=0) - cfg.w_sum).max() < 0.05 * cfg.w_sum
    assert not np.allclose(first.state.w, state0.w) and (first.state.theta > state0.theta).any()
    assert frozen.counts.shape == (5, 4) and frozen.counts.sum() > 0


_THRESHOLDER = """    long _count = 0;
    for(size_t _idx=0; _idx<N; _idx++)
    {
        const double v = _ptr_array_G_v[_idx];
        const char _cond = COND;

        if(_cond) {
            _ptr_array_G__spikespace[_count++] = _idx;
        }
    }
    _ptr_array_G__spikespace[N] = _count;
"""


@pytest.mark.slow
def test_excitatory_state_update_vectorizes_with_the_vector_exp(tmp_path):
    """At 64 neurons (4 are fewer than one vector of the loop) the patched Ae update compiles to a
    vectorized loop: its object calls glibc's SIMD exp. On AVX2 the refractoriness test's double → int64
    conversion kept it scalar before it was rewritten in doubles."""
    cfg = tiny(target="standalone", chunk=1, n_exc=64)
    images, _ = bars(1)
    with StandaloneEngine(cfg, tmp_path / "build") as engine:
        engine.run(Phase(image_rates(images, cfg), init_state(cfg), plastic=True))
    (obj,) = (tmp_path / "build" / "train" / "code_objects").glob("Ae_stateupdater_codeobject*.o")
    vector_exp = re.search(rb"_ZGV\w+_exp", obj.read_bytes())
    assert bool(vector_exp) == have_libmvec()


def test_threshold_patch_skips_conditions_that_draw_random_numbers(tmp_path):
    from nsnn.stdp.engine import patch_thresholds

    code = tmp_path / "code_objects"
    code.mkdir()
    (code / "A_spike_thresholder_codeobject.cpp").write_text(_THRESHOLDER.replace("COND", "v > 1.0"))
    bernoulli = _THRESHOLDER.replace("COND", "_rand(_vectorisation_idx) < v")
    (code / "X_spike_thresholder_codeobject.cpp").write_text(bernoulli)
    assert patch_thresholds(tmp_path) == ["A_spike_thresholder_codeobject.cpp"]
    patched = (code / "A_spike_thresholder_codeobject.cpp").read_text()
    assert patched.count("const char _cond = v > 1.0;") == 2 and "if(_nsnn_any)" in patched
    assert (code / "X_spike_thresholder_codeobject.cpp").read_text() == bernoulli
    assert patch_thresholds(tmp_path) == []  # already patched


def _input_trains(cfg: STDPConfig, rates: np.ndarray, seed: int) -> np.ndarray:
    """Spike raster ``[steps, n_input]`` (bool) of the input layer X alone, numpy target."""

    from nsnn.stdp import equations as eq
    from nsnn.stdp.network import input_group

    b2.set_device("runtime")
    b2.prefs.codegen.target = "numpy"
    b2.seed(seed)
    ns = eq.namespace(cfg)
    ns["stim"] = b2.TimedArray(rates * b2.Hz, dt=cfg.example_ms * b2.ms, name="stim")
    X = input_group(cfg, b2.Clock(dt=cfg.dt_ms * b2.ms, name="sim_clock"), ns, ns["stim"])
    monitor = b2.SpikeMonitor(X)
    steps = round(rates.shape[0] * cfg.example_ms / cfg.dt_ms)
    b2.Network(X, monitor).run(steps * cfg.dt_ms * b2.ms, namespace=ns)
    raster = np.zeros((steps, cfg.n_input), dtype=bool)
    raster[np.round(monitor.t[:] / b2.ms / cfg.dt_ms).astype(int), monitor.i[:]] = True
    return raster


def test_countdown_input_is_the_bernoulli_poisson_process():
    """The geometric-countdown sampler vs Brian2's per-step Bernoulli draw (p = rate·dt), same rates.

    Inputs 0-4 hold one rate throughout (0 to 200 Hz, p up to 0.1), inputs 5-9 get a new random rate
    every example; rates are re-drawn every 10 ms (gate clock), so the redraw on refresh is exercised
    ~2,000 times. Checked for both samplers: spike totals per input against Σp (z-test), per-example
    count variance against the binomial n·p·(1−p), no memory (P(spike | k steps since the last spike)
    = p for k = 1..4), silence at rate 0 and during the rest; and the two samplers against each other.
    """
    base = tiny(n_input=10, dt_ms=0.5, t_present_ms=40.0, t_rest_ms=10.0)
    rng = np.random.default_rng(0)
    n_examples = 400
    rates = np.zeros((n_examples, 10))
    rates[:, :5] = [0.0, 10.0, 50.0, 100.0, 200.0]
    rates[:, 5:] = rng.uniform(0.0, 150.0, (n_examples, 5))
    per_example = round(base.example_ms / base.dt_ms)
    present = np.arange(n_examples * per_example) % per_example < round(base.t_present_ms / base.dt_ms)
    p = np.repeat(rates, per_example, axis=0) * base.dt_ms * 1e-3 * present[:, None]
    counts = {}
    for sampler in ("countdown", "bernoulli"):
        raster = _input_trains(base.replace(input_sampler=sampler), rates, seed=5)
        assert not raster[:, 0].any() and not raster[~present].any()
        z = (raster.sum(0) - p.sum(0)) / np.sqrt((p * (1 - p)).sum(0) + 1e-12)
        assert np.abs(z).max() < 4.5, (sampler, z)
        per = raster.reshape(n_examples, per_example, 10).sum(1)
        n_steps = present[:per_example].sum()
        for i in (2, 3, 4):
            q = p[present, i][0]
            assert abs(per[:, i].var(ddof=1) / (n_steps * q * (1 - q)) - 1) < 0.3, (sampler, i)
        for i in (3, 4):
            q = p[present, i][0]
            spikes = np.flatnonzero(raster[:, i])
            for lag in range(1, 5):
                after = spikes + lag
                after = after[(after < len(present)) & present[np.minimum(after, len(present) - 1)]]
                no_spike_between = np.array([not raster[s - lag + 1 : s, i].any() for s in after])
                hits = raster[after[no_spike_between], i]
                sigma = np.sqrt(q * (1 - q) / hits.size)
                assert abs(hits.mean() - q) < 4.5 * sigma, (sampler, i, lag, hits.mean(), q)
        counts[sampler] = raster.sum(0)
    var = 2 * (p * (1 - p)).sum(0) + 1e-12
    assert (np.abs(counts["countdown"] - counts["bernoulli"]) / np.sqrt(var)).max() < 4.5


def test_arrival_time_trace_equals_event_driven_trace():
    """x_pre = exp(-(t - t_arrival)/τ_pre) (nsnn) gives the weights of Brian2's event-driven trace.

    Random pre and post spike times, per-synapse delays; the post group resets x1 = x2 = 1 in its reset
    as Ae does, so depression, potentiation and their same-step ordering are all exercised.
    """

    from nsnn.stdp import equations as eq

    b2.set_device("runtime")
    b2.prefs.codegen.target = "numpy"
    cfg = tiny(nu_pre=0.015, nu_post=0.05)
    rng = np.random.default_rng(1)
    n_pre, n_post, steps = 6, 3, 400
    pre_steps = np.sort(rng.choice(steps * n_pre, 80, replace=False))
    fire = np.zeros((steps, n_post))
    fire[rng.integers(0, steps, 40), rng.integers(0, n_post, 40)] = 1.0
    results = []
    for model, on_pre, on_post, init in (
        (eq.STDP_MODEL, eq.STDP_ON_PRE, eq.STDP_ON_POST, {"t_arrival": eq.NO_SPIKE_S * b2.second}),
        (
            "w : 1\ndpre/dt = -pre/tau_pre : 1 (event-driven)",
            "pre = 1.; w = clip(w - nu_pre*x1_post, 0, w_max)",
            "w = clip(w + nu_post*pre*x2_post, 0, w_max)",
            {},
        ),
    ):
        ns = eq.namespace(cfg)
        ns["fire"] = b2.TimedArray(fire, dt=cfg.dt_ms * b2.ms)
        clock = b2.Clock(dt=cfg.dt_ms * b2.ms)
        src = b2.SpikeGeneratorGroup(
            n_pre, pre_steps % n_pre, pre_steps // n_pre * cfg.dt_ms * b2.ms, clock=clock
        )
        post = b2.NeuronGroup(
            n_post,
            "dx1/dt = -x1/tau_post1 : 1\ndx2/dt = -x2/tau_post2 : 1",
            threshold="fire(t, i) > 0",
            reset="x1 = 1.; x2 = 1.",
            clock=clock,
            namespace=ns,
        )
        syn = b2.Synapses(src, post, model, on_pre=on_pre, on_post=on_post, clock=clock, namespace=ns)
        syn.connect()
        syn.w = 0.5
        syn.delay = np.arange(n_pre * n_post) % 4 * cfg.dt_ms * b2.ms
        for name, value in init.items():
            setattr(syn, name, value)
        b2.Network(src, post, syn).run(steps * cfg.dt_ms * b2.ms, namespace=ns)
        results.append(np.asarray(syn.w[:]))
    assert (results[0] > 0.5).any() and (results[0] < 0.5).any()
    np.testing.assert_allclose(results[0], results[1], rtol=0, atol=1e-12)


def _brian_spike_queue() -> Path:
    import inspect

    import brian2.synapses

    return Path(inspect.getsourcefile(brian2.synapses.Synapses)).with_name("cspikequeue.cpp")


def test_spike_queue_patch_replaces_brians_queue_and_recompiles(tmp_path):
    """Brian2's queue is replaced by nsnn's; the object files go whenever the directory's queue changes."""
    import shutil

    from nsnn.stdp.engine import patch_spike_queue

    lib = tmp_path / "brianlib"
    lib.mkdir()
    shutil.copy(_brian_spike_queue(), lib / "spikequeue.h")
    stale = tmp_path / "code_objects" / "Sxe_pre_push_spikes.o"
    stale.parent.mkdir()
    stale.write_bytes(b"")
    assert patch_spike_queue(tmp_path)
    assert (lib / "spikequeue.h").read_text() == SPIKE_QUEUE_HEADER.read_text()
    assert not stale.exists()
    stale.write_bytes(b"")
    shutil.copy(_brian_spike_queue(), lib / "spikequeue.h")  # Brian2 re-copies the original at every build
    assert patch_spike_queue(tmp_path) and stale.exists()
    (lib / "nsnn_spikequeue.stamp").write_text("hash of an older nsnn queue")
    shutil.copy(_brian_spike_queue(), lib / "spikequeue.h")
    assert patch_spike_queue(tmp_path) and not stale.exists()
    (lib / "spikequeue.h").write_text("// another Brian2 version\n")
    assert not patch_spike_queue(tmp_path)


_QUEUE_DIFF = r"""
#include <algorithm>
#include <cassert>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <map>
#include <random>
#include <utility>
#include <vector>
#include <assert.h>
#include <stdint.h>
namespace brian {
#include "brian_queue.h"
}
namespace nsnn {
#include "nsnn_queue.h"
}

// Both queues, driven as Brian2's SynapticPathway drives them (advance, push, peek twice per step; here
// also a peek before the push at every 5th step), must deliver the same synapse indices in the same
// order at every step.
int main() {
    std::mt19937 rng(7);
    const double dt = 0.5e-3;
    int checked = 0;
    for (int layout = 0; layout < 4; layout++) {  // sorted by (source, delay) | random order; scalar delay
        const int start = 5, stop = 35, n_syn = 600;
        std::vector<int32_t> sources(n_syn);
        std::vector<double> delays(n_syn);
        for (int i = 0; i < n_syn; i++) {
            sources[i] = start + (int)(rng() % (stop - start));
            delays[i] = (rng() % 21) * dt + ((int)(rng() % 3) - 1) * 1e-9 * dt;  // round to 0..20 steps
        }
        if (layout == 0) {  // the X->Ae layout: by source, then delay
            std::vector<int> order(n_syn);
            for (int i = 0; i < n_syn; i++) order[i] = i;
            std::sort(order.begin(), order.end(), [&](int a, int b) {
                return std::make_pair(sources[a], delays[a]) < std::make_pair(sources[b], delays[b]);
            });
            std::vector<int32_t> s2(n_syn);
            std::vector<double> d2(n_syn);
            for (int i = 0; i < n_syn; i++) { s2[i] = sources[order[i]]; d2[i] = delays[order[i]]; }
            sources = s2;
            delays = d2;
        }
        if (layout == 3) std::sort(sources.begin(), sources.end());
        const int n_delays = layout >= 2 ? 1 : n_syn;
        brian::CSpikeQueue a(start, stop);
        nsnn::CSpikeQueue b(start, stop);
        a.prepare(delays.data(), n_delays, sources.data(), n_syn, dt);
        b.prepare(delays.data(), n_delays, sources.data(), n_syn, dt);
        for (int step = 0; step < 300; step++) {
            std::vector<int32_t> spikes;  // sorted, some outside [start, stop)
            for (int k = 0; k < 40; k++)
                if (rng() % 4 == 0) spikes.push_back(k);
            a.advance();
            b.advance();
            if (step % 5 == 0 && *a.peek() != *b.peek()) return 2;  // peeked before this step's push
            a.push(spikes.data(), (int)spikes.size());
            b.push(spikes.data(), (int)spikes.size());
            const std::vector<int32_t> first = *b.peek();
            if (*a.peek() != *b.peek() || first != *b.peek()) {
                std::printf("layout %d step %d: %zu vs %zu events\n", layout, step, a.peek()->size(),
                            b.peek()->size());
                return 1;
            }
            checked += (int)first.size();
        }
    }
    std::printf("%d\n", checked);
    return 0;
}
"""


def test_spike_queue_delivers_brians_events_in_brians_order(tmp_path):
    """nsnn's range queue against Brian2's own CSpikeQueue, compiled side by side: same events, same order."""
    import shutil

    shutil.copy(_brian_spike_queue(), tmp_path / "brian_queue.h")
    shutil.copy(SPIKE_QUEUE_HEADER, tmp_path / "nsnn_queue.h")
    (tmp_path / "stdint_compat.h").write_text("#include <stdint.h>\n")
    (tmp_path / "diff.cpp").write_text(_QUEUE_DIFF)
    subprocess.run(["g++", "-O1", "-o", "diff", "diff.cpp"], cwd=tmp_path, check=True)  # as cpp_standalone
    out = subprocess.run(["./diff"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
    assert int(out.stdout) > 10_000  # events compared


def test_save_run_refuses_extra_arrays_it_could_not_read_back(tmp_path):
    # a key without the w_xe_ prefix was written and then dropped by load_run; "theta" replaced the
    # network's own thresholds
    from nsnn.stdp.runio import save_run
    from nsnn.stdp.state import init_state

    state = init_state(tiny())
    for key in ("theta", "dense"):
        with pytest.raises(ValueError, match="extra_weights keys must start with 'w_xe_'"):
            save_run(tmp_path, state, np.zeros(4, dtype=np.int64), extra_weights={key: state.w})
    assert not (tmp_path / "weights.npz").exists()


def test_threshold_pruning_during_training_removes_every_weight_at_most_the_threshold():
    # The STDP path pruned only by fraction; the seed's loop prunes by a weight threshold.
    cfg = tiny(prune_threshold=0.12, prune_every=4)
    state = init_state(cfg)
    once = compress_state(state, 0.0, cfg)  # the sparsity argument is unused with a threshold
    assert np.array_equal(once.mask, state.w > 0.12) and 0 < once.synapses < state.synapses
    images, labels = bars(12)
    result = train(RuntimeEngine(cfg), init_state(cfg), images, labels, cfg)
    assert [c["examples"] for c in result.compressions] == [4, 8, 12]
    alive = [c["synapses"] for c in result.compressions]
    assert alive == sorted(alive, reverse=True) and alive[-1] < 64 * 4
    final = result.state  # the last prune is after the last example: no weight at most 0.12 survives
    assert (final.w[final.mask] > 0.12).all() and (final.w[~final.mask] == 0).all()
    assert not trains_dense(cfg, 12) and cfg.compressed


def test_prune_threshold_validation_and_cli():
    for bad, match in (
        ({"prune_threshold": -0.1}, "prune_threshold is a weight in"),
        ({"prune_threshold": 1.0}, "prune_threshold is a weight in"),
        ({"prune_threshold": float("nan")}, "prune_threshold must be a finite number"),
        ({"prune_threshold": 0.1, "prune": 0.5}, "not both"),
    ):
        with pytest.raises(ValueError, match=match):
            STDPConfig(**bad)
    assert STDPConfig.from_dict(STDPConfig(prune_threshold=0.05).to_dict()).prune_threshold == 0.05
    assert STDPConfig.from_dict({"n_exc": 4}).prune_threshold is None  # runs saved before the field
    args = stdp_cli.parse_args(["--prune-threshold", "0.05", "--prune-every", "100"])
    assert stdp_cli._config(args).prune_threshold == 0.05
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "stdp_mnist.py"), "--prune-threshold", "0.05", "--sweep"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "drop --prune, --prune-threshold" in proc.stderr


def test_from_run_prunes_at_a_weight_threshold_as_training_does(tmp_path, monkeypatch):
    # --from-run refused --prune-threshold, which training takes; and a sweep of a run pruned at a
    # threshold after training pruned every cell at that run's threshold, whatever its sparsity.
    data = image_set(*bars(8))
    run_experiment(tiny(prune_threshold=0.12), data, data, run_dir=tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    rows = sweep_run(run, data, data, run_dir=tmp_path / "grid", sparsities=(0.0, 0.5), bits=(32,))
    assert [r["synapses"] for r in rows] == [256, 128]
    monkeypatch.setattr(stdp_cli, "load_data", lambda args: (data, data))
    argv = ["--from-run", str(tmp_path / "run"), "--prune-threshold", "0.2", "--bits", "4", "--json"]
    result = stdp_cli.main([*argv, "--out", str(tmp_path / "w")])
    kept = int((run.extra_weights["w_xe_dense"] > 0.2).sum())
    assert 0 < kept < 256 and (result["synapses"], result["bits"]) == (kept, 4)
    assert result["sparsity"] == round(1 - kept / 256, 6)  # the one the threshold left
    evaluated = json.loads((tmp_path / "w" / "config.json").read_text())
    assert (evaluated["prune_threshold"], evaluated["prune"], evaluated["bits"]) == (0.2, 0.0, 4)
    assert evaluated["run"]["prune_threshold"] == 0.2 and "sparsities" not in evaluated["run"]
    for extra, message in (
        (["--prune", "0.5"], "not both"),
        (["--prune-threshold", "1.5"], r"prune_threshold is a weight in \[0, w_max=1\)"),
    ):
        with pytest.raises(SystemExit, match=message):
            stdp_cli.main([*argv, *extra, "--out", str(tmp_path / "refused")])
        assert not (tmp_path / "refused").exists()  # refused before the folder is made
    with pytest.raises(
        ValueError, match=r"give sparsities \(fractions\) or prune_threshold \(a weight\), not both"
    ):
        sweep_run(run, data, data, run_dir=tmp_path / "both", sparsities=(0.5,), prune_threshold=0.2)


def test_a_prune_threshold_that_removes_every_dense_synapse_is_refused_before_anything_is_written(
    tmp_path, monkeypatch
):
    # A --prune-threshold below w_max but at or above every dense weight of the --from-run run made the
    # folder, printed Brian2's "never included in a network" warnings, then stopped late with "every
    # X->Ae synapse is pruned", leaving a config.json and metrics.csv to delete by hand.
    import gc

    from brian2.utils.logger import catch_logs

    from nsnn.stdp.network import build_network
    from nsnn.stdp.pipeline import sweep

    images, labels = bars(4)
    data = image_set(images, labels)
    run_experiment(tiny(), data, data, run_dir=tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    threshold = float(run.extra_weights["w_xe_dense"].max())  # below w_max = 1: passes the range check
    message = re.escape(
        f"prune_threshold={threshold} removed every X→Ae synapse of the dense network of {run.run_dir}: "
        f"nothing is left to simulate (give a lower threshold: the largest weight was {threshold:.4g})"
    )
    with pytest.raises(ValueError, match=message):
        sweep_run(run, data, data, run_dir=tmp_path / "api", prune_threshold=threshold)
    assert not (tmp_path / "api").exists()
    monkeypatch.setattr(stdp_cli, "load_data", lambda args: (data, data))
    argv = ["--from-run", str(run.run_dir), "--prune-threshold", str(threshold)]
    with pytest.raises(SystemExit, match=message):
        stdp_cli.main([*argv, "--out", str(tmp_path / "cli")])
    assert not (tmp_path / "cli").exists()  # refused before the folder is made
    cfg = tiny(prune_threshold=threshold)
    with pytest.raises(ValueError, match="removed every X→Ae synapse: nothing is left to simulate"):
        sweep(RuntimeEngine(cfg), run.state, images, labels, images, labels, cfg, sparsities=(0.0,))
    with catch_logs() as logs:  # nothing made before an empty network is refused: nothing warns
        with pytest.raises(ValueError, match="every X->Ae synapse is pruned"):
            build_network(cfg, compress_state(run.state, 0.0, cfg), plastic=False, n_examples=1)
        gc.collect()
    assert not logs, logs


def test_a_prune_schedule_that_defeats_the_normalization_is_refused(tmp_path):
    # Pruned during training below w_sum/w_max = 78 synapses, a neuron's normalization pushed every
    # surviving weight to w_max, erasing what it had learned.
    from nsnn.stdp.pipeline import check_prune_schedule

    with pytest.raises(ValueError, match="leaving 49 of 784 synapses per neuron"):
        check_prune_schedule(STDPConfig(prune=0.95, prune_every=100), 8000)
    check_prune_schedule(STDPConfig(prune=0.95, prune_every=2000), 8000)  # at most 0.71 during training
    check_prune_schedule(STDPConfig(prune=0.99), 8000)  # once after training: no normalization follows
    images, labels = bars(4)
    data = ImageSet(torch.from_numpy(images), torch.from_numpy(labels))
    with pytest.raises(ValueError, match="cannot sum to w_sum=30"):  # 0.9·3/4 leaves 21 of 64
        run_experiment(tiny(prune=0.9, prune_every=1, w_sum=30.0), data, data, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    cfg = tiny(prune_threshold=0.28, prune_every=4)  # what a threshold leaves is known only as it prunes
    images, labels = bars(8)
    with pytest.warns(UserWarning, match="left 4 of 4 neurons fewer synapses than the normalization needs"):
        train(RuntimeEngine(cfg), init_state(cfg), images, labels, cfg)
    cfg = tiny(prune_threshold=0.5, prune_every=4)  # above every weight: nothing left to simulate
    with pytest.raises(ValueError, match="removed every X→Ae synapse after 4 of 8 training examples"):
        train(RuntimeEngine(cfg), init_state(cfg), images, labels, cfg)


def test_evaluating_an_embedded_run_on_another_test_set_warns_of_its_training_images(tmp_path):
    # The embedded split is the official MNIST test set: a run trained on it and re-tested on a full
    # MNIST folder was scored on images it learned from, silently.
    from nsnn.data import embedded_mnist_split
    from nsnn.stdp.experiment import _evaluation_setup

    cfg = STDPConfig(n_exc=2, target="numpy")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_config(run_dir, cfg, {"n_train": 100, "data": "embedded"})
    save_run(run_dir, init_state(cfg), np.zeros(2, dtype=np.int64))
    train_split, test_split = embedded_mnist_split()
    # Only the run's 100 training images count: the split's later ones were counted too ("5 of the 7").
    images = torch.cat([train_split.images[:3], train_split.images[100:102], test_split.images[:2]])
    mixed = ImageSet(images, torch.arange(7) % 10)
    found = "3 of the 7 test images of /data/mnist are among the 100 images of the embedded MNIST split it"
    with pytest.warns(UserWarning, match=found):
        _evaluation_setup(run_dir, train_split, mixed, tmp_path / "a", None, "/data/mnist")
    unseen = ImageSet(torch.cat([train_split.images[100:108], test_split.images[:2]]), torch.arange(10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _evaluation_setup(run_dir, train_split, mixed, tmp_path / "b", None, None)  # its own data
        _evaluation_setup(run_dir, train_split, mixed, tmp_path / "c", None, "embedded")
        _evaluation_setup(run_dir, train_split, unseen, tmp_path / "e", None, "/data/mnist")  # none it saw
    floats = ImageSet(mixed.images.float() / 255, mixed.labels)  # not comparable with the uint8 split
    with pytest.warns(UserWarning, match="may include some of the 100 images"):
        _evaluation_setup(run_dir, train_split, floats, tmp_path / "f", None, "/data/mnist")
    empty = ImageSet(train_split.images[:0], train_split.labels[:0])
    with pytest.raises(ValueError, match="an evaluation needs label"):
        _evaluation_setup(run_dir, empty, mixed, tmp_path / "d", None, None)


def test_small_api_validation():
    with pytest.raises(ValueError, match="labels must be integers"):
        assign_labels(np.array([[0, 5], [5, 0], [0, 5]]), np.array([0.0, 2.9, 0.0]), 10)
    cfg = tiny()
    with pytest.raises(ValueError, match=r"uint8 \(0-255\) or float in \[0, 1\]; got int64"):
        image_rates(np.zeros((2, 8, 8), dtype=np.int64), cfg)
    with pytest.raises(ValueError, match=r"a batch \[n, ...\] of n images; got shape \(8,\)"):
        image_rates(np.zeros(8, dtype=np.uint8), cfg)
    for levels in (0.5, [0, None], "01"):
        with pytest.raises(ValueError, match="levels must be a list of conductance levels"):
            STDPConfig(levels=levels)
    assert levels_for_bits(2.0, 1.0) == levels_for_bits(2, 1.0)  # an integral float, as check_grid takes


def test_an_interrupted_run_resumes_to_the_result_it_would_have_had(tmp_path, monkeypatch):
    # Ctrl-C lost every finished training block: weights.npz was written only at the very end.
    from nsnn.stdp import resume_experiment, runio

    cfg = tiny(chunk=4, prune=0.5, prune_every=8, bits=2)
    images, labels = bars(16)
    data = ImageSet(torch.from_numpy(images), torch.from_numpy(labels))
    test = ImageSet(*(torch.from_numpy(a) for a in bars(8, offset=1)))
    whole = run_experiment(cfg, data, test, run_dir=tmp_path / "whole", n_label=12)
    assert not (tmp_path / "whole" / runio.PROGRESS).exists()  # a finished run keeps no progress files
    assert not (tmp_path / "whole" / runio.COUNTS).exists()

    saved = stop_after_saving(monkeypatch, 8)  # the block that ends with the first prune
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, data, test, run_dir=tmp_path / "cut", n_label=12)
    monkeypatch.setattr(runio, "save_progress", saved)
    with pytest.raises(ValueError, match="not the ones"):
        resume_experiment(tmp_path / "cut", ImageSet(data.images.flip(0), data.labels.flip(0)), test)
    with pytest.raises(ValueError, match="trains on 16 and tests on 8 examples"):
        resume_experiment(tmp_path / "cut", data.subset(slice(0, 12)), test)
    again = resume_experiment(tmp_path / "cut", data, test)
    for key in ("accuracy", "label_accuracy", "synapses", "compressions", "train_retried"):
        assert again[key] == whole[key], key
    one, two = load_run(tmp_path / "whole"), load_run(tmp_path / "cut")
    assert np.array_equal(one.state.w, two.state.w) and np.array_equal(one.assignments, two.assignments)
    timing = {"ms_per_example", "cpu_ms_per_example", "build_seconds"}

    def rows(run: str) -> list[dict[str, str]]:  # each block's row once, the same but for its timings
        kept = [r for r in read_csv(tmp_path / run / "metrics.csv") if r["phase"] in ("train", "compress")]
        return [{k: v for k, v in r.items() if k not in timing} for r in kept]

    assert rows("cut") == rows("whole") and len(rows("whole")) == 6
    with pytest.raises(ValueError, match="finished run"):
        resume_experiment(tmp_path / "cut", data, test)


def test_a_run_interrupted_after_training_resumes_to_the_metrics_of_the_whole_run(tmp_path, monkeypatch):
    # Resumed after its last training block, a run wrote its label, test and sweep rows a second time.
    from nsnn.stdp import experiment, resume_experiment

    cfg = tiny(chunk=2)
    data = ImageSet(*(torch.from_numpy(a) for a in bars(4)))
    test = ImageSet(*(torch.from_numpy(a) for a in bars(2, offset=1)))
    timing = {"ms_per_example", "cpu_ms_per_example", "build_seconds"}

    def rows() -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if k not in timing} for r in read_csv(tmp_path / "metrics.csv")]

    whole = []

    def stop(*args):  # the run has written every row by then: the metrics.csv of the whole run
        whole.extend(rows())
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "_sweep_outputs", stop)
    grid = {"sweep": True, "sweep_sparsities": (0.5,), "sweep_bits": (32,), "n_label": 2}
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, data, test, run_dir=tmp_path, **grid)
    monkeypatch.undo()
    assert [r["phase"] for r in whole] == ["train", "train", "label", "test", "sweep"]
    resume_experiment(tmp_path, data, test)
    assert rows() == whole


def test_training_progress_writes_only_each_new_block_of_responses(tmp_path):
    # train_state.npz held every response so far and each block rewrote all of them (~96 MB a block at
    # the end of a full-MNIST run of N = 400).
    from nsnn.io import atomic_savez
    from nsnn.stdp import runio
    from nsnn.stdp.pipeline import TrainProgress

    state = init_state(tiny())
    counts = np.arange(8 * 4, dtype=np.int32).reshape(8, 4)
    counts_file, progress_file = tmp_path / runio.COUNTS, tmp_path / runio.PROGRESS

    def save(examples: int, rows: np.ndarray | None = None) -> int:
        rows = counts[:examples] if rows is None else rows
        runio.save_progress(tmp_path, TrainProgress(examples, state, rows, False, [], 0, 1.0, 1.0, 0.0), "d")
        return progress_file.stat().st_size

    def loaded() -> np.ndarray:
        return runio.load_progress(tmp_path, state.delay_ms)[0].counts

    sizes = [save(2), save(4)]
    assert sizes[0] == sizes[1] and counts_file.stat().st_size == 4 * 4 * 4
    assert np.array_equal(loaded(), counts[:4])
    altered = counts[:4].copy()
    altered[:2] = -1
    altered.tofile(counts_file)  # committed rows are never written again: the next block keeps these
    with open(counts_file, "ab") as f:  # a crash after a block's rows, before its train_state.npz
        np.full((2, 4), 7, dtype=np.int32).tofile(f)
    assert np.array_equal(loaded(), altered)
    sizes.append(save(6))
    assert sizes[-1] == sizes[0] and np.array_equal(loaded(), np.concatenate([altered, counts[4:6]]))

    atomic_savez(progress_file, compress=False, **runio.load_npz(progress_file), counts=counts[:6])
    counts_file.unlink()  # the progress as written before train_counts.bin: still resumed
    assert np.array_equal(loaded(), counts[:6])
    save(8)
    assert np.array_equal(np.fromfile(counts_file, dtype=np.int32).reshape(8, 4), counts)
    with open(counts_file, "r+b") as f:
        f.truncate(5 * 4 * 4)
    with pytest.raises(ValueError, match="holds 5 of the 8 training responses"):
        loaded()
    save(8)
    save(3, counts[:3] + 100)  # fewer examples than committed (a new run in the folder): its own rows
    assert np.array_equal(loaded(), counts[:3] + 100)


def test_cli_resume_finishes_an_interrupted_run(tmp_path, monkeypatch, capsys):
    from nsnn.data import embedded_mnist_split
    from nsnn.stdp import runio

    train_split, test_split = embedded_mnist_split()
    cfg = STDPConfig(n_exc=2, target="numpy", chunk=2, t_present_ms=50.0, t_rest_ms=10.0, retry_max=0)
    saved = stop_after_saving(monkeypatch)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, train_split.subset(slice(0, 4)), test_split.subset(slice(0, 2)), run_dir=run)
    monkeypatch.setattr(runio, "save_progress", saved)
    for argv, message in (
        (["--resume", str(run), "--neurons", "3"], "drop --neurons"),
        (["--resume", str(tmp_path / "none")], "no readable STDP run config.json"),
    ):
        with pytest.raises(SystemExit):
            stdp_cli.main(argv)
        assert message in capsys.readouterr().err
    summary = stdp_cli.main(["--resume", str(run), "--json"])
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1])["run_dir"] == str(run.resolve())
    assert summary["n_train"] == 4 and (run / "summary.json").is_file()
    assert not (run / runio.PROGRESS).exists()
    with pytest.raises(SystemExit, match="finished run"):
        stdp_cli.main(["--resume", str(run)])


def test_a_ctrl_c_while_the_figures_are_drawn_leaves_a_run_that_resume_finishes(
    tmp_path, monkeypatch, capsys
):
    # summary.json was written before the figures and the removal of the progress files: interrupted
    # while drawing, the run was told to --resume, which refused it as finished; its figures were lost
    # and its progress files (~13 MB at N = 400) stayed.
    from nsnn.stdp import plots, resume_experiment, runio

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    data = image_set(*bars(4))
    monkeypatch.setattr(stdp_cli, "_config", lambda args: tiny(chunk=2))
    monkeypatch.setattr(stdp_cli, "load_data", lambda args: (data, data))
    plot_training = plots.plot_training
    monkeypatch.setattr(plots, "plot_training", stop)
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as interrupted:
        stdp_cli.main(["--target", "numpy", "--train", "4", "--test", "4", "--out", str(run)])
    assert interrupted.value.code == 130
    assert f"finish it with: python scripts/stdp_mnist.py --resume {run}" in capsys.readouterr().err
    assert not (run / "summary.json").exists() and (run / runio.PROGRESS).is_file()
    monkeypatch.setattr(plots, "plot_training", plot_training)
    timing = {"ms_per_example", "cpu_ms_per_example", "build_seconds"}

    def rows() -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if k not in timing} for r in read_csv(run / "metrics.csv")]

    before, weights = rows(), runio.load_npz(run / runio.WEIGHTS)
    (run / "summary.json").write_text("{}")  # as an nsnn that wrote it before the figures left it
    summary = stdp_cli.main(["--resume", str(run)])
    assert summary["n_train"] == 4 and json.loads((run / "summary.json").read_text())["n_train"] == 4
    assert rows() == before and [r["phase"] for r in before] == ["train", "train", "label", "test"]
    assert all(np.array_equal(v, runio.load_npz(run / runio.WEIGHTS)[k]) for k, v in weights.items())
    for name in ("receptive_fields.png", "weight_histogram.png", "training.png"):
        assert (run / name).is_file(), name
    assert not (run / runio.PROGRESS).exists() and not (run / runio.COUNTS).exists()
    with pytest.raises(ValueError, match="is a finished run"):
        resume_experiment(run, data, data)


def test_an_error_as_a_run_finishes_leaves_it_resumable_and_says_how(tmp_path, monkeypatch, capsys):
    # The progress files were removed before summary.json was written: a full disk there left a run that
    # could neither be resumed nor read as finished, and an error (unlike a Ctrl-C) printed no next step.
    import errno

    from nsnn.stdp import experiment, runio

    real = experiment.write_json

    def full_disk(path: Path, obj: Any) -> Path:
        if Path(path).name == "summary.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, obj)

    data = image_set(*bars(4))
    monkeypatch.setattr(stdp_cli, "_config", lambda args: tiny(chunk=2))
    monkeypatch.setattr(stdp_cli, "load_data", lambda args: (data, data))
    monkeypatch.setattr(experiment, "write_json", full_disk)
    run = tmp_path / "run"
    with pytest.raises(OSError, match="No space left on device"):
        stdp_cli.main(["--target", "numpy", "--train", "4", "--test", "4", "--out", str(run)])
    err = capsys.readouterr().err
    assert (
        f"{run} holds an unfinished run; finish it with: python scripts/stdp_mnist.py --resume {run}" in err
    )
    assert (run / runio.PROGRESS).is_file() and not (run / "summary.json").exists()
    monkeypatch.setattr(experiment, "write_json", real)
    # a --resume refused (its progress cut short) was told, before its error, to run that same --resume
    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    with open(damaged / runio.COUNTS, "r+b") as f:
        f.truncate(10)
    with pytest.raises(SystemExit, match="cannot be resumed"):
        stdp_cli.main(["--resume", str(damaged)])
    assert "finish it with" not in capsys.readouterr().err
    assert stdp_cli.main(["--resume", str(run)])["n_train"] == 4
    assert (run / "summary.json").is_file() and not (run / runio.PROGRESS).exists()


def test_an_interrupted_evaluation_with_finished_cells_says_to_delete_its_folder(
    tmp_path, monkeypatch, capsys
):
    # An interrupted --sweep --from-run with a finished cell was "an unfinished run (no summary.json)":
    # neither the same command (the folder holds files) nor --resume (an evaluation) could go on.
    from nsnn.stdp import pipeline

    source = tmp_path / "dense"
    write_config(source, tiny(), {"n_train": 4, "n_label": 4, "n_test": 4, "data": "embedded"})
    state = init_state(tiny())
    save_run(source, state, np.zeros(tiny().n_exc, dtype=np.int64), {"w_xe_dense": state.w})
    data = image_set(*bars(4))
    monkeypatch.setattr(stdp_cli, "load_data", lambda args: (data, data))
    cell = {"sparsity": 0.0, "bits": 32, "synapses": 256, "accuracy": 0.5, "label_accuracy": 0.5}

    def one_cell_then_stop(*args, log, **kwargs):
        log({**cell, "input_events_per_inference": 1.0})
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "sweep", one_cell_then_stop)
    out = tmp_path / "sweep"
    with pytest.raises(SystemExit):
        stdp_cli.main(["--from-run", str(source), "--sweep", "--out", str(out)])
    err = capsys.readouterr().err
    assert "an evaluation cannot be resumed" in err and f"delete {out} (or give another --out)" in err
    assert f"what it finished is in {out / 'metrics.csv'}" in err and "(no summary.json)" not in err
    assert [r["phase"] for r in read_csv(out / "metrics.csv")] == ["sweep"]  # kept


def test_an_unfinished_run_is_told_how_to_go_on_by_from_run_and_resume(tmp_path, monkeypatch):
    # --from-run of an interrupted training run asked "is it an STDP run directory?" (the visualizer
    # said to --resume it); --resume of a run killed (SIGTERM) before its first block said to start it
    # again, which the folder then refused as it holds files.
    from nsnn.stdp import resume_experiment, runio

    data = image_set(*bars(4))
    saved = stop_after_saving(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(tiny(chunk=2), data, data, run_dir=tmp_path / "cut")
    monkeypatch.setattr(runio, "save_progress", saved)
    cut = tmp_path / "cut"
    message = (
        f"{cut} is an STDP run that has not finished (no weights.npz yet); finish it with: "
        f"python scripts/stdp_mnist.py --resume {cut}"
    )
    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        load_run(cut)
    with pytest.raises(SystemExit, match=re.escape(message)):
        stdp_cli.main(["--from-run", str(cut), "--out", str(tmp_path / "never")])
    assert not (tmp_path / "never").exists()

    killed = tmp_path / "killed"  # what a run killed while its first block was built leaves
    write_config(
        killed, tiny(), {"n_train": 4, "n_label": 4, "n_test": 4, "data": "embedded", "sweep": False}
    )
    (killed / "brian").mkdir()
    (killed / "metrics.csv").write_text("phase,examples\n")
    told = f"{killed} stopped before its first training block ended: there is nothing to resume; delete "
    with pytest.raises(FileNotFoundError, match=re.escape(f"{told}{killed} (or give another --out)")):
        resume_experiment(killed, data, data)


def test_a_run_stopped_before_its_first_block_was_saved_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    # A Ctrl-C during the first block (the standalone build) left a folder with no train_state.npz: it
    # could not be resumed, and the same --out was refused because it held files.
    from nsnn.stdp import pipeline, runio

    argv = ["--target", "numpy", "--neurons", "2", "--train", "4", "--test", "2", "--chunk", "2"]
    real_train = pipeline.train

    def stop(error):
        def raise_it(*args, **kwargs):
            raise error

        return raise_it

    monkeypatch.setattr(pipeline, "train", stop(KeyboardInterrupt()))
    run, empty = tmp_path / "new" / "deeper" / "run", tmp_path / "empty"
    empty.mkdir()
    for folder, left in ((run, "removed"), (empty, "emptied")):
        with pytest.raises(SystemExit) as interrupted:
            stdp_cli.main([*argv, "--out", str(folder)])
        err = capsys.readouterr().err
        assert interrupted.value.code == 130 and f"nothing was kept ({folder} {left})" in err
        assert "run again" in err and "--resume" not in err
    # the parent folders made for --out go too (they were left behind), never one that was there before
    assert not (tmp_path / "new").exists() and empty.is_dir() and not any(empty.iterdir())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        stdp_cli.main(argv)  # no --out: runs/stdp-2-<time>, runs/ made for it
    assert "nothing was kept" in capsys.readouterr().err and not (tmp_path / "runs").exists()
    (tmp_path / "runs").mkdir()
    with pytest.raises(SystemExit):
        stdp_cli.main(argv)
    assert (tmp_path / "runs").is_dir() and not any((tmp_path / "runs").iterdir())  # it was there

    def file_beside_then_stop(*args, **kwargs):  # something else writes next to the run meanwhile
        (tmp_path / "new" / "theirs.txt").write_text("")
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "train", file_beside_then_stop)
    with pytest.raises(SystemExit):
        stdp_cli.main([*argv, "--out", str(run)])
    assert not (tmp_path / "new" / "deeper").exists() and (tmp_path / "new" / "theirs.txt").is_file()
    shutil.rmtree(tmp_path / "new")
    capsys.readouterr()
    monkeypatch.setattr(pipeline, "train", stop(ValueError("no synapse left")))
    with pytest.raises(ValueError, match="no synapse left"):
        stdp_cli.main([*argv, "--out", str(run)])
    err = capsys.readouterr().err  # an error keeps the folder (its message may point into the build)
    assert f"{run} holds no progress to resume; delete it" in err and (run / "config.json").is_file()
    shutil.rmtree(run)

    def row_then_stop(*args, **kwargs):  # a result row written (as an evaluation's finished cell)
        with open(run / "metrics.csv", "a") as f:
            f.write("train,1\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "train", row_then_stop)
    with pytest.raises(SystemExit):
        stdp_cli.main([*argv, "--out", str(run)])
    assert "nothing was kept" not in capsys.readouterr().err and (run / "metrics.csv").is_file()
    shutil.rmtree(run)

    monkeypatch.setattr(pipeline, "train", real_train)
    stop_after_saving(monkeypatch)
    with pytest.raises(SystemExit):
        stdp_cli.main([*argv, "--out", str(run)])  # after its first block: kept, to be resumed
    assert f"--resume {run}" in capsys.readouterr().err and (run / runio.PROGRESS).is_file()


def test_the_parent_folders_removed_after_an_early_ctrl_c_are_those_made_through_symlinks(
    tmp_path, monkeypatch, capsys
):
    # The folders made for --out were found with os.path.abspath, which drops `link/..` as text where
    # making them follows the link: the real one (under the link target's parent) stayed, and an
    # unrelated empty folder of that textual name could be removed instead.
    from nsnn.stdp import pipeline

    (tmp_path / "real" / "target").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real" / "target")
    out = tmp_path / "link" / ".." / "new" / "run"  # made as real/new/run
    assert stdp_cli._missing_folders(out.parent) == [(tmp_path / "real" / "new").resolve()]

    def theirs_then_stop(*args, **kwargs):  # an empty folder named as the textual path, made meanwhile
        (tmp_path / "new").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "train", theirs_then_stop)
    argv = ["--target", "numpy", "--neurons", "2", "--train", "4", "--test", "2", "--out", str(out)]
    with pytest.raises(SystemExit):
        stdp_cli.main(argv)
    assert "nothing was kept" in capsys.readouterr().err
    assert not (tmp_path / "real" / "new").exists() and (tmp_path / "new").is_dir()


def test_a_run_or_build_folder_in_use_by_another_process_is_refused(tmp_path, monkeypatch):
    # Two processes in one build folder overwrote each other's inputs: the binary read a deleted input
    # as defaults and returned wrong counts without an error; a --resume of a run still training ran
    # beside it, duplicating its metrics rows.
    import fcntl

    from nsnn.stdp import resume_experiment, runio

    def held_elsewhere(folder):  # a lock taken through another open file, as another process's would be
        fd = os.open(folder, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd

    build = tmp_path / "build"
    build.mkdir()
    fd = held_elsewhere(build)
    cfg = tiny(target="standalone")
    engine = StandaloneEngine(cfg, build)
    with pytest.raises(FileExistsError, match="is in use by another process"):
        engine.run(Phase(image_rates(bars(1)[0], cfg), init_state(cfg), plastic=True))
    engine.close()
    os.close(fd)

    cfg = tiny(chunk=4)
    images, labels = bars(8)
    data = ImageSet(torch.from_numpy(images), torch.from_numpy(labels))
    saved = stop_after_saving(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, data, data, run_dir=tmp_path / "run")
    monkeypatch.setattr(runio, "save_progress", saved)
    fd = held_elsewhere(tmp_path / "run")
    with pytest.raises(FileExistsError, match="is being written by another process"):
        resume_experiment(tmp_path / "run", data, data)
    os.close(fd)
    assert resume_experiment(tmp_path / "run", data, data)["n_train"] == 8  # once it is free
