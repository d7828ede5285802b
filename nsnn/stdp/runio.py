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

An unfinished run also holds its training progress (:func:`save_progress`, :func:`load_progress`):
``train_state.npz`` and ``train_counts.bin``, removed when the run is done, right after it writes
``summary.json``, its last output (:func:`finish_hint` says how to finish it).
"""

from __future__ import annotations

import json
import os
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
COUNTS = "train_counts.bin"  # its training responses, block by block (PROGRESS says how many are final)


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
        if (run_dir / PROGRESS).is_file():
            raise FileNotFoundError(
                f"{run_dir} is an STDP run that has not finished (no {WEIGHTS} yet); {finish_hint(run_dir)}"
            )
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


def finish_hint(run_dir: str | Path) -> str:
    """The next step for the unfinished run in ``run_dir`` (it holds ``train_state.npz``): the command
    that finishes it."""
    return f"finish it with: python scripts/stdp_mnist.py --resume {run_dir}"


def save_progress(run_dir: str | Path, progress: TrainProgress, data_digest: str) -> Path:
    """Commit the :class:`~nsnn.stdp.pipeline.TrainProgress` of an unfinished run after a block.

    The responses go to ``train_counts.bin`` (raw little-endian int32, row-major ``[rows, n_exc]``): only
    the rows after those already committed are written, at their place, and the file is fsynced. Then
    ``train_state.npz`` is replaced atomically: the state, ``data_digest`` (the training data's
    fingerprint, checked on resuming) and ``examples``, the rows of the counts file that are final (a
    crash between the two writes leaves rows after them, which are ignored and overwritten). So a block
    costs its own rows and the state, however many blocks came before. The input delays are left out:
    they never change from the run's initial state (:func:`load_progress`).
    """
    run_dir = Path(run_dir)
    counts = np.ascontiguousarray(progress.counts, dtype="<i4")
    row_bytes = counts.shape[1] * counts.itemsize
    fd = os.open(run_dir / COUNTS, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
    with os.fdopen(fd, "r+b") as f:
        committed = _committed_examples(run_dir)  # more than examples: not this run's rows, all rewritten
        start = min(committed, os.fstat(fd).st_size // row_bytes) if committed <= progress.examples else 0
        f.seek(start * row_bytes)
        f.write(memoryview(counts[start:]))
        f.truncate()
        f.flush()
        os.fsync(fd)
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
        run_dir / PROGRESS,
        compress=False,  # written after every block: speed first
        w=state.w,
        mask=state.mask,
        theta=state.theta,
        meta=np.array(json.dumps(meta)),
    )


def _committed_examples(run_dir: Path) -> int:
    """The training examples whose progress ``run_dir``'s ``train_state.npz`` holds (0 without one)."""
    path = run_dir / PROGRESS
    if not path.is_file():
        return 0
    with np.load(path, allow_pickle=False) as npz:  # only the meta member is read
        return int(json.loads(str(npz["meta"]))["examples"])


def load_progress(run_dir: str | Path, delay_ms: np.ndarray) -> tuple[TrainProgress, str]:
    """The :class:`~nsnn.stdp.pipeline.TrainProgress` :func:`save_progress` committed, and its data digest;
    ``delay_ms``: the run's input delays (those of its initial state, ``init_state(config)``). Reads the
    responses from ``train_counts.bin`` (from ``train_state.npz`` itself as written before that file
    existed); ValueError when the file lacks committed rows."""
    from nsnn.stdp.pipeline import TrainProgress

    run_dir = Path(run_dir)
    arrays = load_npz(run_dir / PROGRESS)
    meta = json.loads(str(arrays["meta"]))
    examples, n_exc = meta["examples"], arrays["theta"].shape[0]
    counts = arrays["counts"] if "counts" in arrays else _read_counts(run_dir / COUNTS, examples, n_exc)
    state = NetworkState(w=arrays["w"], mask=arrays["mask"], delay_ms=delay_ms, theta=arrays["theta"])
    sim, cpu, build = meta["seconds"]
    progress = TrainProgress(
        examples,
        state,
        counts,
        meta["compressed"],
        meta["compressions"],
        meta["retried"],
        sim,
        cpu,
        build,
    )
    return progress, meta["data_digest"]


def _read_counts(path: Path, rows: int, n_exc: int) -> np.ndarray:
    """The first ``rows`` rows ``[rows, n_exc]`` int32 of a ``train_counts.bin``."""
    size = path.stat().st_size if path.is_file() else 0
    if size < rows * n_exc * 4:
        raise ValueError(
            f"{path} holds {size // (n_exc * 4)} of the {rows} training responses {PROGRESS} committed "
            "(missing or cut short): this run cannot be resumed; start it again"
        )
    counts = np.fromfile(path, dtype="<i4", count=rows * n_exc)
    return counts.reshape(rows, n_exc).astype(np.int32, copy=False)
