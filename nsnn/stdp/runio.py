"""STDP run directories: write and read back ``config.json`` + ``weights.npz`` (+ ``summary.json``).

``weights.npz`` (the contract shared with the visualizer):

* ``w_xe`` float64 ``[n_input, n_exc]``: deployed X→Ae weights (quantized when ``bits`` < 32), 0 where pruned
* ``mask`` bool ``[n_input, n_exc]``: True = synapse alive
* ``theta`` float64 ``[n_exc]``: adaptive thresholds in volts;  ``assignments`` int64 ``[n_exc]`` (−1: silent)
* ``delay_xe_ms`` float64 ``[n_input, n_exc]``: input delays
* (the network state is stored exactly as simulated, so a loaded run re-simulates bit for bit and its
  quantized weights lie exactly on the levels)
* ``w_xe_initial`` float64: weights before training; ``w_xe_dense`` float64: trained full-precision
  weights before compression (only when training itself was dense), else ``w_xe_shadow`` (the
  full-precision shadow weights of a network pruned/quantized during training)

    write_config(run_dir, config, {"n_train": 8000})  # config.json: the config + a "run" record
    save_run(run_dir, state, assignments, extra_weights={"w_xe_initial": w0, "w_xe_dense": w_trained})
    run = load_run(run_dir); run.state.w.shape; run.assignments
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nsnn.io import atomic_savez, load_npz, read_json, write_json
from nsnn.stdp.config import STDPConfig
from nsnn.stdp.state import NetworkState

if TYPE_CHECKING:
    from nsnn.stdp.pipeline import TrainProgress

WEIGHTS = "weights.npz"
CONFIG = "config.json"
SUMMARY = "summary.json"
PROGRESS = "train_state.npz"  # an unfinished run's training so far (removed when the run is done)


@dataclass(frozen=True)
class StdpRun:
    """A saved run: its config, deployed ``state``, ``assignments`` and optional extra weights/summary."""

    config: STDPConfig
    state: NetworkState
    assignments: np.ndarray
    run_dir: Path
    extra_weights: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def write_config(run_dir: str | Path, config: STDPConfig, run_info: dict[str, Any]) -> Path:
    """``config.json``: every STDPConfig field at top level (n_input, n_exc, w_max, ...) + ``run`` info."""
    return write_json(Path(run_dir) / CONFIG, {**config.to_dict(), "run": run_info})


def save_run(
    run_dir: str | Path,
    state: NetworkState,
    assignments: np.ndarray,
    extra_weights: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write ``weights.npz`` atomically (keys in the module docstring)."""
    arrays = {
        "w_xe": np.where(state.mask, state.w, 0.0).astype(np.float64),
        "mask": state.mask.astype(bool),
        "theta": state.theta.astype(np.float64),
        "assignments": np.asarray(assignments, dtype=np.int64),
        "delay_xe_ms": state.delay_ms.astype(np.float64),
    }
    for key, value in (extra_weights or {}).items():
        if not key.startswith("w_xe_"):  # load_run reads back only these, and never a core array
            raise ValueError(f"extra_weights keys must start with 'w_xe_' (e.g. w_xe_dense), got {key!r}")
        arrays[key] = np.asarray(value, dtype=np.float64)
    return atomic_savez(Path(run_dir) / WEIGHTS, **arrays)


def load_run(run_dir: str | Path) -> StdpRun:
    """Read a run directory written by :func:`nsnn.stdp.run_experiment` (or by :func:`write_config`
    and :func:`save_run`)."""
    run_dir = Path(run_dir)
    path = run_dir / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"no {WEIGHTS} in {run_dir}; is it an STDP run directory?")
    data = read_json(run_dir / CONFIG)
    config = STDPConfig.from_dict({k: v for k, v in data.items() if k != "run"})
    arrays = load_npz(path)
    missing = [k for k in ("w_xe", "mask", "theta", "assignments", "delay_xe_ms") if k not in arrays]
    if missing:
        raise ValueError(f"{path} lacks {missing}; found {sorted(arrays)}")
    state = NetworkState(
        w=arrays["w_xe"].astype(np.float64),
        mask=arrays["mask"].astype(bool),
        delay_ms=arrays["delay_xe_ms"].astype(np.float64),
        theta=arrays["theta"].astype(np.float64),
    )
    if state.w.shape != (config.n_input, config.n_exc):
        raise ValueError(
            f"{path}: w_xe is {list(state.w.shape)} but config says [{config.n_input}, {config.n_exc}]"
        )
    extra = {k: v for k, v in arrays.items() if k.startswith("w_xe_")}
    summary = read_json(run_dir / SUMMARY) if (run_dir / SUMMARY).is_file() else {}
    return StdpRun(
        config=config,
        state=state,
        assignments=arrays["assignments"].astype(np.int64),
        run_dir=run_dir,
        extra_weights=extra,
        summary=summary,
    )


def save_progress(run_dir: str | Path, progress: TrainProgress, data_digest: str) -> Path:
    """Write ``train_state.npz`` atomically: the :class:`~nsnn.stdp.pipeline.TrainProgress` of an
    unfinished run and ``data_digest``, the training data's fingerprint, checked on resuming. The input
    delays are left out: they never change from the run's initial state (:func:`load_progress`)."""
    meta = {
        "examples": progress.examples,
        "compressed": progress.compressed,
        "compressions": progress.compressions,
        "retried": progress.retried,
        "seconds": [progress.sim_seconds, progress.cpu_seconds, progress.build_seconds],
        "data_digest": data_digest,
    }
    state = progress.state
    return atomic_savez(
        Path(run_dir) / PROGRESS,
        compress=False,  # written after every block: speed first
        w=state.w,
        mask=state.mask,
        theta=state.theta,
        counts=progress.counts,
        meta=np.array(json.dumps(meta)),
    )


def load_progress(run_dir: str | Path, delay_ms: np.ndarray) -> tuple[TrainProgress, str]:
    """The :class:`~nsnn.stdp.pipeline.TrainProgress` :func:`save_progress` wrote, and its data digest;
    ``delay_ms``: the run's input delays (those of its initial state, ``init_state(config)``)."""
    from nsnn.stdp.pipeline import TrainProgress

    arrays = load_npz(Path(run_dir) / PROGRESS)
    meta = json.loads(str(arrays["meta"]))
    state = NetworkState(w=arrays["w"], mask=arrays["mask"], delay_ms=delay_ms, theta=arrays["theta"])
    sim, cpu, build = meta["seconds"]
    progress = TrainProgress(
        meta["examples"],
        state,
        arrays["counts"],
        meta["compressed"],
        meta["compressions"],
        meta["retried"],
        sim,
        cpu,
        build,
    )
    return progress, meta["data_digest"]
