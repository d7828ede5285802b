"""nsnn.stdp: Diehl & Cook STDP on Brian2 — real behaviour on tiny networks (runtime numpy target) plus
one standalone build end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nsnn.data import ImageSet
from nsnn.stdp import (
    STDPConfig,
    accuracy,
    assign_labels,
    evaluate_run,
    init_state,
    load_run,
    predict,
    run_experiment,
    sweep_run,
)
from nsnn.stdp.engine import Phase, RuntimeEngine, StandaloneEngine
from nsnn.stdp.pipeline import compress_state, deployed, evaluate, respond, train
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


def test_config_validation_and_round_trip():
    for bad in (
        {"intensity": -1.0},
        {"rate_per_intensity_hz": -5.0},
        {"n_exc": 0},
        {"n_input": 0},
        {"bits": 0},
        {"prune": 1.0},
        {"prune": -0.1},
        {"prune_every": -1},
        {"target": "gpu"},
        {"method": "magic"},
        {"chunk": 0},
        {"t_present_ms": 0.3},
        {"levels": (0.5, 2.0)},
    ):
        with pytest.raises(ValueError):
            STDPConfig(**bad)
    cfg = STDPConfig(n_exc=100, prune=0.75, prune_every=2000, bits=4)
    assert STDPConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.weight_levels() == tuple(k / 15 for k in range(16))
    assert STDPConfig().weight_levels() is None


def test_rates_follow_pixels_and_intensity():
    cfg = STDPConfig()
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    images[0, 0, 0] = 255
    rates = image_rates(images, cfg)
    assert rates.shape == (2, 784) and rates[0, 0] == pytest.approx(63.75) and rates[1].sum() == 0
    assert image_rates(images, cfg, intensity=3)[0, 0] == pytest.approx(95.625)
    with pytest.raises(ValueError):
        image_rates(np.zeros((1, 10, 10), dtype=np.uint8), cfg)


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


def test_pruned_synapses_stay_dead_through_training():
    from nsnn.stdp.network import build_network

    cfg = tiny(prune=0.6, prune_every=4, bits=2)
    images, labels = bars(12)
    result = train(RuntimeEngine(cfg), init_state(cfg), images, labels, cfg)
    assert [c["examples"] for c in result.compressions] == [4, 8]
    alive = [c["synapses"] for c in result.compressions]
    assert alive == [64 * 4 - 4 * round(0.3 * 64), 64 * 4 - 4 * round(0.6 * 64)]
    state = result.state
    assert state.synapses == alive[-1] and (state.w[~state.mask] == 0).all()
    assert (state.mask.sum(axis=0) == 64 - round(0.6 * 64)).all()

    pruned = compress_state(init_state(cfg), 0.5, cfg)
    net = build_network(cfg, pruned, plastic=True, n_examples=1)
    assert len(net.Sxe) == pruned.synapses == 128
    again = RuntimeEngine(cfg).run(Phase(image_rates(images, cfg), pruned, plastic=True))
    assert (again.state.mask == pruned.mask).all() and (again.state.w[~pruned.mask] == 0).all()
    assert not np.allclose(again.state.w[pruned.mask], pruned.w[pruned.mask])


def test_quantized_weights_take_only_allowed_levels():
    cfg = tiny(prune=0.5, bits=2)
    state = init_state(cfg)
    out = deployed(state, cfg)
    assert set(np.unique(out.w[out.mask]).tolist()) <= set(cfg.weight_levels())
    assert (out.w[~out.mask] == 0).all() and out.sparsity == 0.5
    device = (0.0, 0.05, 0.2, 0.6)
    out = deployed(state, cfg.replace(levels=device))
    assert set(np.unique(out.w[out.mask]).tolist()) <= set(device)


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


def test_retry_rule_re_presents_silent_examples():
    cfg = tiny(retry_max=2)
    images = np.zeros((3, 8, 8), dtype=np.uint8)
    out = respond(RuntimeEngine(cfg), init_state(cfg), images, cfg)
    assert (out.retried, out.silent) == (3, 3) and out.input_spikes.sum() == 0


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
        assert npz["w_xe"].dtype == np.float32 and npz["w_xe"].shape == (64, 4)
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
    np.testing.assert_allclose(run.state.theta, np.load(tmp_path / "weights.npz")["theta"], rtol=1e-6)
    again = evaluate_run(run, test_set)
    assert again["n_test"] == 4 and 0.0 <= again["accuracy"] <= 1.0
    rows = sweep_run(
        run, train_set, test_set, run_dir=tmp_path / "sweep", sparsities=(0.75,), bits=(1,), progress=False
    )
    assert [(r["synapses"], r["bits"]) for r in rows] == [(64, 1)]
    assert (tmp_path / "sweep" / "sweep.csv").is_file()


def test_cli_rejects_bad_config():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "stdp_mnist.py"), "--prune", "1.5"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "prune" in proc.stderr


@pytest.mark.slow
def test_standalone_build_runs_end_to_end(tmp_path):
    import brian2 as b2

    cfg = tiny(target="standalone", chunk=3)
    images, labels = bars(5)
    state0 = init_state(cfg)
    rates = image_rates(images, cfg)
    with StandaloneEngine(cfg, tmp_path / "build") as engine:
        first = engine.run(Phase(rates, state0, plastic=True, seed=3))
        repeat = engine.run(Phase(rates, state0, plastic=True, seed=3))
        other = engine.run(Phase(rates, state0, plastic=True, seed=4))
        assert first.build_seconds > 0 and repeat.build_seconds == 0
        frozen = respond(engine, first.state, images, cfg)
    assert b2.get_device() is b2.all_devices["runtime"]
    assert first.counts.shape == (5, 4) and first.counts.sum() > 0
    assert (first.counts == repeat.counts).all() and not (first.counts == other.counts).all()
    assert np.abs(first.state.w.sum(axis=0) - cfg.w_sum).max() < 0.05 * cfg.w_sum
    assert not np.allclose(first.state.w, state0.w) and (first.state.theta > state0.theta).any()
    assert frozen.counts.shape == (5, 4) and frozen.counts.sum() > 0
    assert accuracy(frozen.counts, labels, assign_labels(frozen.counts, labels, 4), 4) > 0.25
