"""A complete STDP experiment into one run directory: train → compress → label → test (→ sweep).

Writes ``config.json``, ``metrics.csv`` (one row per training block, compression, label/test pass and
sweep cell), ``weights.npz`` (see :mod:`nsnn.stdp.runio`), ``assignments.csv``, figures
(``receptive_fields.png``, ``weight_histogram.png``, ``training.png``; with a sweep: ``sweep.csv`` and
``sweep.png``) and, after all of them, ``summary.json``; its training progress files go only then, so a run
stopped before (Ctrl-C, an error, a kill) can be resumed (:func:`resume_experiment`), figures included.
Standalone C++ projects are built under ``run_dir/brian``.

``bits`` of metrics.csv's compress rows is the precision training transmits from that point on (``bits``,
or 32: full precision, also with ``levels``, which are applied at deployment only). ``bits`` (metrics.csv's
label/test rows, summary.json) is the bits per deployed weight,
:func:`nsnn.stdp.pipeline.weight_bits`: with explicit device ``levels`` ⌈log₂(distinct levels)⌉, and
summary.json's ``levels`` gives their number (None without them). ``input_events_per_inference`` counts
events through the synapses that transmit (alive with a nonzero deployed weight).

Evaluations of a saved run (:func:`sweep_run`, :func:`retest_run`) write a folder of their own: its
``config.json`` holds the configuration evaluated (the saved run's network with the compression applied,
or for a grid its dense network) and a ``run`` record naming the run evaluated (``sweep_of``, absolute),
the data, the label and test counts and the grid. Run folders are recorded absolute in summary.json.

    summary = run_experiment(STDPConfig(n_exc=400), train_set, test_set, run_dir="runs/stdp-400")
    rows = sweep_run("runs/stdp-400", train_set, test_set, run_dir="runs/stdp-400-sweep")
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nsnn.io import (
    CsvLog,
    atomic_write_text,
    check_new_run_dir,
    hold_run_dir,
    read_csv,
    read_json,
    release_run_dir,
    write_json,
)
from nsnn.stdp.classify import check_labels
from nsnn.stdp.config import FULL_PRECISION_BITS, STDPConfig, check_grid, check_images_fit
from nsnn.stdp.runio import CONFIG, StdpRun, load_run, save_run, write_config
from nsnn.stdp.state import NetworkState, init_state

if TYPE_CHECKING:
    from nsnn.stdp.pipeline import TrainProgress

METRICS = [
    "phase",
    "examples",
    "synapses",
    "sparsity",
    "bits",
    "spikes_per_example",
    "silent_fraction",
    "retried",
    "running_accuracy",
    "accuracy",
    "label_accuracy",
    "ms_per_example",
    "cpu_ms_per_example",
    "build_seconds",
    "input_events_per_inference",
]
TRAINING_PHASES = ("train", "compress")  # metrics.csv rows a training block writes with its progress
SPARSITIES = (0.0, 0.5, 0.75, 0.9)
BITS = (32, 8, 4, 2)


def _arrays(data: Any, config: STDPConfig, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` as numpy from anything with ``.images`` / ``.labels`` (tensors or arrays),
    checked against ``config`` before any simulation (or any file written): one label per image, each
    image ``config.n_input`` pixels, labels in [0, n_classes)."""
    images, labels = data.images, data.labels
    images = images.numpy() if hasattr(images, "numpy") else np.asarray(images)
    labels = labels.numpy() if hasattr(labels, "numpy") else np.asarray(labels)
    if images.ndim < 2 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{name}: need images [N, ...] and labels [N], got shapes {images.shape} and {labels.shape}"
        )
    try:
        check_images_fit(config, int(np.prod(images.shape[1:])))
        check_labels(labels, config.n_classes)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    return images, labels.astype(np.int64)


def _write_table(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _sweep_logger(log: CsvLog):
    keys = ("sparsity", "bits", "synapses", "accuracy", "label_accuracy", "input_events_per_inference")
    return lambda row: log.append({"phase": "sweep", **{k: row[k] for k in keys}})


def _log_evaluation(log: CsvLog, ev: Any, state: NetworkState, bits: int) -> None:
    for name, responses, key, value in (
        ("label", ev.label, "label_accuracy", ev.label_accuracy),
        ("test", ev.test, "accuracy", ev.accuracy),
    ):
        n = max(len(responses.counts), 1)
        log.append(
            {
                "phase": name,
                "examples": len(responses.counts),
                "synapses": state.synapses,
                "sparsity": round(state.sparsity, 6),
                "bits": bits,
                key: round(value, 4),
                "spikes_per_example": round(float(responses.counts.sum(1).mean()), 3),
                "silent_fraction": round(responses.silent / n, 4),
                "ms_per_example": round(responses.ms_per_example, 3),
                "build_seconds": round(responses.build_seconds, 2),
            }
        )


def warn_if_quantization_silences(synapses: int, nonzero: int, config: STDPConfig, when: str = "") -> bool:
    """Warn (``UserWarning``) when the deployed levels round most of the ``synapses`` kept to 0 (only
    ``nonzero`` still transmit): trained weights sit far below ``w_max``, so a coarse level grid over
    [0, w_max] silences them, which is pruning the user did not ask for. ``when`` (e.g. " after 100 of
    200 training examples") follows the counts in the message. Returns whether it warned."""
    levels = config.weight_levels()
    if levels is None or synapses == 0 or nonzero >= synapses / 2:
        return False
    lowest = min((v for v in levels if v > 0), default=0.0)
    warnings.warn(
        f"quantization to {weight_bits_label(config)} left {nonzero:,} of the {synapses:,} kept synapses "
        f"nonzero{when}: trained weights below {lowest / 2:.3g} (half the lowest level above 0) round to "
        "0. Use more bits or explicit levels that cover the trained weights",
        UserWarning,
        stacklevel=2,
    )
    return True


def weight_bits_label(config: STDPConfig) -> str:
    """The deployed weights' precision in words: "4 bits", "5 levels" or "full precision"."""
    if config.levels is not None:
        return f"{len(set(config.levels))} levels"
    if config.bits >= FULL_PRECISION_BITS:
        return "full precision"
    return f"{config.bits} bit" + ("s" if config.bits > 1 else "")


def _label_count(n_label: int | None, n_train: int) -> int:
    """Training examples used to assign labels: ``n_label`` (≥ 1) capped at ``n_train``; None = all."""
    if n_label is None:
        return n_train
    if n_label < 1:
        raise ValueError(f"n_label must be >= 1 (or None for all training examples), got {n_label}")
    return min(n_label, n_train)


def run_experiment(
    config: STDPConfig,
    train_set: Any,
    test_set: Any,
    *,
    run_dir: str | Path,
    n_label: int | None = None,
    sweep: bool = False,
    sweep_sparsities: tuple[float, ...] = SPARSITIES,
    sweep_bits: tuple[int, ...] = BITS,
    progress: bool | None = None,
    build_dir: str | Path | None = None,
    data: str = "embedded",
) -> dict[str, Any]:
    """Train on ``train_set`` (``.images`` / ``.labels``), label on its first ``n_label`` examples
    (default all), test on ``test_set``; returns the summary also written to summary.json.
    ``run_dir`` must be missing or empty (``FileExistsError`` otherwise: a run never overwrites another).

    ``sweep``: also evaluate the trained network compressed after training at every sparsity × bits
    pair (needs a dense, full-precision config: the sweep does the compressing). ``progress``: bars
    on/off, None only when stderr is a terminal (:func:`nsnn.stdp.pipeline.show_progress`), else plain
    progress lines (:func:`nsnn.stdp.pipeline.progress_lines`).
    """
    from nsnn.stdp import pipeline as pl
    from nsnn.stdp.engine import require_build_tools

    if sweep and config.compressed:
        raise ValueError(
            "sweep compresses the trained dense network itself; use prune=0 (no prune_threshold) and bits=32 "
            "with it"
        )
    if sweep:
        check_grid(sweep_sparsities, sweep_bits)
    started = time.perf_counter()
    x_train, y_train = _arrays(train_set, config, "train_set")
    x_test, y_test = _arrays(test_set, config, "test_set")
    if len(x_train) == 0 or len(x_test) == 0:
        raise ValueError(
            f"an experiment needs training and test examples; got {len(x_train)} and {len(x_test)}"
        )
    pl.check_prune_schedule(config, len(x_train))
    n_label = _label_count(n_label, len(x_train))
    run_dir = check_new_run_dir(run_dir)
    require_build_tools(config, ", or use target='numpy', which needs neither")
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "n_train": len(x_train),
        "n_label": n_label,
        "n_test": len(x_test),
        "data": data,
        "sweep": sweep,
    }
    if sweep:
        record.update(sweep_sparsities=list(sweep_sparsities), sweep_bits=list(sweep_bits))
    write_config(run_dir, config, record)
    grid = (tuple(sweep_sparsities), tuple(sweep_bits)) if sweep else None
    data = (x_train, y_train), (x_test, y_test)
    with _writing(run_dir):
        return _experiment(config, *data, run_dir.resolve(), n_label, grid, progress, build_dir, started)


def resume_experiment(
    run_dir: str | Path,
    train_set: Any,
    test_set: Any,
    *,
    progress: bool | None = None,
    build_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Finish the run :func:`run_experiment` left in ``run_dir`` (interrupted): training goes on after
    the last block it completed (``train_state.npz``), with the run's own configuration, and gives the
    result and metrics.csv rows the uninterrupted run would have (an evaluation it was in is run
    again). ``train_set``/``test_set`` must be the run's data (its counts and, for training, its
    fingerprint are checked)."""
    from nsnn.stdp.runio import SUMMARY, load_progress

    run_dir = Path(run_dir)
    refusal = resume_refusal(run_dir)
    if refusal is not None:
        raise ValueError(refusal) if (run_dir / SUMMARY).is_file() else FileNotFoundError(refusal)
    saved = read_json(run_dir / CONFIG)
    record = saved.get("run", {})
    config = STDPConfig.from_dict({k: v for k, v in saved.items() if k != "run"})
    x_train, y_train = _arrays(train_set, config, "train_set")
    x_test, y_test = _arrays(test_set, config, "test_set")
    if (len(x_train), len(x_test)) != (record.get("n_train"), record.get("n_test")):
        raise ValueError(
            f"{run_dir} trains on {record.get('n_train')} and tests on {record.get('n_test')} examples; "
            f"got {len(x_train)} and {len(x_test)}"
        )
    resume, digest = load_progress(run_dir, init_state(config).delay_ms)
    if digest != _digest(x_train, y_train):
        raise ValueError(f"these training examples are not the ones {run_dir} was training on")
    grid = (tuple(record["sweep_sparsities"]), tuple(record["sweep_bits"])) if record.get("sweep") else None
    data, started = ((x_train, y_train), (x_test, y_test)), time.perf_counter()
    with _writing(run_dir):
        (run_dir / SUMMARY).unlink(missing_ok=True)  # written before the progress files went, or the figures
        return _experiment(
            config, *data, run_dir.resolve(), record["n_label"], grid, progress, build_dir, started, resume
        )


def resume_refusal(run_dir: str | Path) -> str | None:
    """Why :func:`resume_experiment` cannot finish the run in ``run_dir``, with what to do instead; None
    when it can: the folder holds a training run's progress (``train_state.npz``). A run writes its
    summary.json after every other output and only then removes its progress files: a folder holding both
    (stopped just before that removal, or while drawing its figures by an nsnn that wrote summary.json
    first) is resumed too."""
    from nsnn.stdp.runio import PROGRESS, SUMMARY

    run_dir = Path(run_dir)
    if (run_dir / PROGRESS).is_file():
        return None
    if (run_dir / SUMMARY).is_file():
        return f"{run_dir} is a finished run (it has {SUMMARY}); there is nothing to resume"
    try:
        saved = read_json(run_dir / CONFIG)
    except (OSError, ValueError):
        saved = None
    record = saved.get("run") if isinstance(saved, dict) else None
    if not isinstance(record, dict):
        return f"no {PROGRESS} in {run_dir}: not an STDP run"
    again = f"delete {run_dir} (or give another --out) to run it again"
    if "n_train" not in record:  # the folder of an evaluation (sweep_run, retest_run)
        of = f" of {record['sweep_of']}" if "sweep_of" in record else ""
        return (
            f"{run_dir} holds an unfinished evaluation{of}, and an evaluation cannot be resumed; {again} "
            f"(what it finished is in {run_dir / 'metrics.csv'})"
        )
    return f"{run_dir} stopped before its first training block ended: there is nothing to resume; {again}"


@contextlib.contextmanager
def _writing(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock (:func:`nsnn.io.hold_run_dir`) while a run writes it: a resume of a run
    still training elsewhere is refused, as two processes would write one run."""
    busy = f"{run_dir} is being written by another process (a run still training?); wait for it to end"
    taken = hold_run_dir(run_dir, busy=busy)
    try:
        yield
    finally:
        if taken:
            release_run_dir(run_dir)


def _digest(images: np.ndarray, labels: np.ndarray) -> str:
    """A fingerprint of the training data (sha256 of images and labels)."""
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    digest.update(np.asarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _experiment(
    config: STDPConfig,
    train_xy: tuple[np.ndarray, np.ndarray],
    test_xy: tuple[np.ndarray, np.ndarray],
    run_dir: Path,
    n_label: int,
    grid: tuple[tuple[float, ...], tuple[int, ...]] | None,
    progress: bool | None,
    build_dir: str | Path | None,
    started: float,
    resume: TrainProgress | None = None,
) -> dict[str, Any]:
    """Train (from ``resume`` if given; ``train_state.npz`` after every block), label, test and with
    ``grid`` sweep into ``run_dir``, whose config.json is written; the summary of :func:`run_experiment`.
    A resumed run first drops the metrics.csv rows written after ``resume``'s block (label, test and
    sweep rows of an interrupted evaluation, a block whose progress a crash cut off), which it writes
    again. Callers hold ``run_dir``'s lock meanwhile (:func:`_writing`)."""
    from nsnn.stdp import pipeline as pl
    from nsnn.stdp.engine import make_engine
    from nsnn.stdp.runio import COUNTS, PROGRESS, SUMMARY, save_progress

    (x_train, y_train), (x_test, y_test) = train_xy, test_xy
    digest = _digest(x_train, y_train)
    log = CsvLog(run_dir / "metrics.csv", METRICS)
    if resume is not None:  # the rows of the blocks it resumes after; the rest are written again
        log.keep(lambda row: row["phase"] in TRAINING_PHASES and int(row["examples"]) <= resume.examples)
    initial = init_state(config)
    sweep_rows: list[dict[str, Any]] = []
    with make_engine(config, build_dir or run_dir / "brian") as engine:
        trained = pl.train(
            engine,
            initial,
            x_train,
            y_train,
            config,
            progress=progress,
            log=log.append,
            resume=resume,
            checkpoint=lambda done: save_progress(run_dir, done, digest),
        )
        final = pl.deployed(trained.state, config)
        label_set, test_xy = (x_train[:n_label], y_train[:n_label]), (x_test, y_test)
        ev = pl.evaluate(engine, final, *label_set, *test_xy, config, progress=progress)
        _log_evaluation(log, ev, final, pl.weight_bits(config))
        dense = pl.trains_dense(config, len(x_train))
        extra = {"w_xe_initial": initial.w, ("w_xe_dense" if dense else "w_xe_shadow"): trained.state.w}
        save_run(run_dir, final, ev.assignments, extra_weights=extra)  # before the sweep: kept if it fails
        if grid is not None:
            sweep_rows = pl.sweep(
                engine,
                trained.state,
                *label_set,
                *test_xy,
                config,
                sparsities=grid[0],
                bits=grid[1],
                progress=progress,
                log=_sweep_logger(log),
            )

    nonzero = int(pl.transmitting(final).sum())
    if not trained.silenced:  # training said so already, when it first transmitted the levels
        warn_if_quantization_silences(final.synapses, nonzero, config)
    _write_table(
        run_dir / "assignments.csv",
        [
            {
                "neuron": j,
                "class": int(ev.assignments[j]),
                "theta_mv": round(1e3 * final.theta[j], 4),
                "fan_in": int(final.mask[:, j].sum()),
            }
            for j in range(config.n_exc)
        ],
    )
    summary = {
        "run_dir": str(run_dir),
        **ev.summary(),
        "n_train": len(x_train),
        "n_label": n_label,
        "n_test": len(x_test),
        "n_exc": config.n_exc,
        "synapses": final.synapses,
        "nonzero_synapses": nonzero,
        "synapses_total": final.mask.size,
        "sparsity": final.sparsity,
        "bits": pl.weight_bits(config),
        "levels": None if config.levels is None else len(set(config.levels)),
        "ms_per_example_train": trained.ms_per_example,
        "cpu_ms_per_example_train": 1e3 * trained.cpu_seconds / max(len(x_train), 1),
        "build_seconds": trained.build_seconds + ev.label.build_seconds + ev.test.build_seconds,
        "train_silent_fraction": float((trained.counts.sum(1) < config.retry_min_spikes).mean()),
        "train_retried": trained.retried,
        "compressions": trained.compressions,
        "target": config.target,
        "seed": config.seed,
    }
    if sweep_rows:
        summary["sweep"] = _sweep_outputs(run_dir, sweep_rows)
    summary["wall_seconds"] = time.perf_counter() - started
    _figures(run_dir, config, trained.state.w, final, dense)
    write_json(run_dir / SUMMARY, summary)  # after every other output: a folder with one holds the whole run
    (run_dir / PROGRESS).unlink(missing_ok=True)  # then the progress goes: until it has, resumable
    (run_dir / COUNTS).unlink(missing_ok=True)
    return summary


def _sweep_outputs(run_dir: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from nsnn.stdp import plots

    _write_table(run_dir / "sweep.csv", rows)
    plots.plot_sweep(rows, run_dir / "sweep.png")
    return rows


def _figures(
    run_dir: Path, config: STDPConfig, w_trained: np.ndarray, final: NetworkState, dense: bool
) -> None:
    """receptive_fields.png, weight_histogram.png (``w_trained``: dense, or with ``dense`` False the
    shadow weights of a network compressed during training) and training.png."""
    from nsnn.stdp import plots

    plots.plot_receptive_fields(final.w, run_dir / "receptive_fields.png")
    after = f"deployed ({100 * (1 - final.sparsity):.0f} % synapses, {weight_bits_label(config)})"
    plots.plot_weight_histogram(
        w_trained,
        final.w,
        final.mask,
        run_dir / "weight_histogram.png",
        labels=("trained, full precision" + ("" if dense else " (compressed during training)"), after),
    )
    plots.plot_training(read_csv(run_dir / "metrics.csv"), run_dir / "training.png")


def dense_weights(run: StdpRun) -> np.ndarray:
    """The run's trained dense X→Ae weights (``w_xe_dense``) in float64; ValueError if it kept none."""
    if "w_xe_dense" not in run.extra_weights:
        raise ValueError(
            f"{run.run_dir} was compressed during training (prune_every {run.config.prune_every}) and "
            "keeps no dense weights to compress afresh; only its saved network can be evaluated "
            "(retest_run)"
        )
    return run.extra_weights["w_xe_dense"].astype(np.float64)


_DENSE: dict[str, Any] = {  # a run's configuration changed to nothing pruned or quantized: its dense weights
    "prune": 0.0,
    "prune_threshold": None,
    "prune_every": 0,
    "bits": FULL_PRECISION_BITS,
    "levels": None,
}


def _dense_state(run: StdpRun) -> NetworkState:
    """The run's trained network with its dense weights (:func:`dense_weights`), every synapse alive."""
    w = dense_weights(run)
    return NetworkState(
        w=w, mask=np.ones(w.shape, dtype=bool), delay_ms=run.state.delay_ms, theta=run.state.theta
    )


def check_prune_threshold(run: StdpRun, prune_threshold: float) -> None:
    """ValueError when ``prune_threshold`` (a weight below ``w_max``) is at or above every one of ``run``'s
    dense weights: it would prune every X→Ae synapse, leaving nothing to simulate (training's message,
    :func:`~nsnn.stdp.pipeline.check_synapses_left`). :func:`sweep_run` refuses it before writing anything,
    the command line before making its folder."""
    from nsnn.stdp import pipeline as pl

    state = _dense_state(run)
    config = run.config.replace(**{**_DENSE, "prune_threshold": prune_threshold})
    pruned = pl.compress_state(state, 0.0, config)
    pl.check_synapses_left(pruned, state, config, f" of the dense network of {run.run_dir}")


def _evaluation_setup(
    run: StdpRun | str | Path,
    train_set: Any,
    test_set: Any,
    run_dir: str | Path,
    n_label: int | None,
    data: str | None,
) -> tuple[StdpRun, Path, tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], int]:
    """The loaded ``run``, the checked new ``run_dir``, ``(images, labels)`` of the label set (the
    first ``n_label`` training examples) and of the test set, and ``n_label``. Warns when ``data`` (None:
    the run's own) is not the embedded split a run was trained on (:func:`_warn_if_trained_on`).
    ``FileNotFoundError`` when the run's standalone target cannot build (no make or C++ compiler)."""
    from nsnn.stdp.engine import require_build_tools

    run = run if isinstance(run, StdpRun) else load_run(run)
    x_train, y_train = _arrays(train_set, run.config, "train_set")
    x_test, y_test = _arrays(test_set, run.config, "test_set")
    if len(x_train) == 0 or len(x_test) == 0:
        raise ValueError(
            f"an evaluation needs label (training) and test examples; got {len(x_train)} and {len(x_test)}"
        )
    n_label = _label_count(n_label, len(x_train))
    run_dir = check_new_run_dir(run_dir)
    require_build_tools(run.config)
    if data is not None and data != "embedded":
        trained = _training_record(run.run_dir)
        if trained is not None and trained.get("data", "embedded") == "embedded":
            _warn_if_trained_on(x_test, data, trained["n_train"])
    return run, run_dir, (x_train[:n_label], y_train[:n_label]), (x_test, y_test), n_label


def _training_record(run_dir: Path) -> dict[str, Any] | None:
    """The ``run`` record (config.json) of the training whose network the run in ``run_dir`` holds: its
    own (a training run's record has ``n_train``), else that of the run it evaluated (``sweep_of``);
    None when that run is gone."""
    record = read_json(run_dir / CONFIG).get("run", {})
    if "n_train" in record:
        return record
    source = record.get("sweep_of")
    return _training_record(Path(source)) if source and Path(source, CONFIG).is_file() else None


def _warn_if_trained_on(x_test: np.ndarray, data: str, n_train: int) -> None:
    """Warn that a network trained on the first ``n_train`` training images of the embedded split (as
    a run records them: one pass in order; its labelling examples are the first of those) is tested
    on ``data``, whose test images hold some of them (the embedded set is the official MNIST test
    set), and how many; no warning when none of the test images is one of them. Test images other
    than uint8 cannot be compared: the warning then says they may hold some."""
    from nsnn.data import embedded_mnist_split

    trained = embedded_mnist_split()[0].images[:n_train].numpy()
    seen = {row.tobytes() for row in trained.reshape(len(trained), -1)}
    flat = x_test.reshape(len(x_test), -1)
    overlap = sum(row.tobytes() in seen for row in flat) if flat.dtype == np.uint8 else None
    if overlap == 0:
        return
    images = f"the {n_train:,} images of the embedded MNIST split it trained on"
    found = (
        f"the test images of {data} may include some of {images}, so the accuracy may not be"
        if overlap is None
        else f"{overlap:,} of the {len(flat):,} test images of {data} are among {images}, so the accuracy "
        "is not"
    )
    warnings.warn(
        f"the embedded MNIST split is part of the official MNIST test set: {found} a held-out figure "
        "(test it on the embedded split's own test images, or train on --data-dir)",
        stacklevel=3,
    )


def _evaluation_record(run: StdpRun, n_label: int, n_test: int, data: str | None) -> dict[str, Any]:
    """config.json's ``run`` record of an evaluation of ``run``: the run evaluated (absolute), the data
    (``data``; None: the run's own) and the label/test counts. No ``n_train``: that marks a training."""
    if data is None:
        data = read_json(run.run_dir / CONFIG).get("run", {}).get("data", "embedded")
    return {"sweep_of": str(run.run_dir.resolve()), "data": data, "n_label": n_label, "n_test": n_test}


def sweep_run(
    run: StdpRun | str | Path,
    train_set: Any,
    test_set: Any,
    *,
    run_dir: str | Path,
    n_label: int | None = None,
    sparsities: tuple[float, ...] | None = None,
    bits: tuple[int, ...] = BITS,
    prune_threshold: float | None = None,
    progress: bool | None = None,
    build_dir: str | Path | None = None,
    data: str | None = None,
) -> list[dict[str, Any]]:
    """Sweep sparsity × bits on a saved run's trained dense weights (``w_xe_dense``) without retraining;
    writes config.json, metrics.csv, sweep.csv, sweep.png and summary.json into ``run_dir`` (missing or
    empty, as for :func:`run_experiment`). ``data`` names the data set in config.json (None: the run's).
    For a single cell summary.json also holds its row's keys (``accuracy``, ``sparsity``, ``bits``, ...),
    ``n_label`` and ``n_test`` at top level, as a training run's does.

    ``sparsities``: the fractions pruned by magnitude (the run's ``prune_scope``; None: :data:`SPARSITIES`).
    ``prune_threshold``, instead of them, prunes every synapse whose weight is at most it, as a training
    run's ``prune_threshold`` does: one pruning, whose rows give the sparsity it left; one that would
    leave no synapse is refused before anything is written (:func:`check_prune_threshold`).

    config.json's top level is the configuration evaluated: the run's network compressed to the one
    cell for a single sparsity (or threshold) and bit width, else dense (the grid is in its ``run``
    record).
    """
    from nsnn.stdp import pipeline as pl
    from nsnn.stdp.engine import make_engine

    if prune_threshold is not None and sparsities is not None:
        raise ValueError("give sparsities (fractions) or prune_threshold (a weight), not both")
    if sparsities is None:  # with a threshold, one pruning: the sparsity compress_state is given is unused
        sparsities = SPARSITIES if prune_threshold is None else (0.0,)
    check_grid(sparsities, bits)
    run, run_dir, label_set, test_xy, n_label = _evaluation_setup(
        run, train_set, test_set, run_dir, n_label, data
    )
    if prune_threshold is not None:  # before anything is written
        check_prune_threshold(run, prune_threshold)
    state = _dense_state(run)
    dense = dict(_DENSE)
    # how the cells prune: not by the saved run's own prune_threshold (which pruned every cell alike)
    pruning = run.config.replace(**{**dense, "prune_threshold": prune_threshold})
    single = len(sparsities) == len(bits) == 1
    if single:
        dense.update(prune=sparsities[0], prune_threshold=prune_threshold, bits=bits[0])
    evaluated = run.config.replace(**dense)
    record = _evaluation_record(run, n_label, len(test_xy[1]), data)
    if prune_threshold is None:
        record["sparsities"] = list(sparsities)
    else:
        record["prune_threshold"] = prune_threshold
    record["bits"] = list(bits)
    write_config(run_dir, evaluated, record)
    log = CsvLog(run_dir / "metrics.csv", METRICS)
    started = time.perf_counter()
    with make_engine(run.config, build_dir or run_dir / "brian") as engine:
        rows = pl.sweep(
            engine,
            state,
            *label_set,
            *test_xy,
            pruning,
            sparsities=sparsities,
            bits=bits,
            progress=progress,
            log=_sweep_logger(log),
        )
    cell: dict[str, Any] = {}  # one cell: its figures at top level too, as a training run's summary
    if single:  # a cell quantized to mostly 0 was warned of as it was done (pl.sweep)
        cell = {**rows[0], "n_label": n_label, "n_test": len(test_xy[1])}
    write_json(
        run_dir / "summary.json",
        {
            "run_dir": str(run_dir.resolve()),
            "sweep_of": record["sweep_of"],
            **cell,
            "sweep": _sweep_outputs(run_dir, rows),
            "wall_seconds": time.perf_counter() - started,
        },
    )
    return rows


def retest_run(
    run: StdpRun | str | Path,
    train_set: Any,
    test_set: Any,
    *,
    run_dir: str | Path,
    n_label: int | None = None,
    progress: bool | None = None,
    build_dir: str | Path | None = None,
    data: str | None = None,
) -> dict[str, Any]:
    """Label and test a saved run's network exactly as saved (deployed: pruned and quantized as it
    was), e.g. a run compressed during training on other data; writes config.json (the run's own
    configuration), metrics.csv, assignments.csv and summary.json into ``run_dir``. Returns one row
    with :func:`sweep_run`'s keys (its sparsity and bits are the run's)."""
    from nsnn.stdp import pipeline as pl
    from nsnn.stdp.engine import make_engine

    run, run_dir, label_set, test_xy, n_label = _evaluation_setup(
        run, train_set, test_set, run_dir, n_label, data
    )
    record = _evaluation_record(run, n_label, len(test_xy[1]), data)
    write_config(run_dir, run.config, record)
    log = CsvLog(run_dir / "metrics.csv", METRICS)
    started = time.perf_counter()
    with make_engine(run.config, build_dir or run_dir / "brian") as engine:
        ev = pl.evaluate(engine, run.state, *label_set, *test_xy, run.config, progress=progress)
    bits = pl.weight_bits(run.config)
    nonzero = int(pl.transmitting(run.state).sum())
    warn_if_quantization_silences(run.state.synapses, nonzero, run.config)
    _log_evaluation(log, ev, run.state, bits)
    _write_table(
        run_dir / "assignments.csv",
        [{"neuron": j, "class": int(c)} for j, c in enumerate(ev.assignments)],
    )
    row = {
        "sparsity": run.state.sparsity,
        "bits": bits,
        "synapses": run.state.synapses,
        "nonzero_synapses": nonzero,
        "accuracy": ev.accuracy,
        "label_accuracy": ev.label_accuracy,
        "ms_per_example_test": ev.test.ms_per_example,
        "input_events_per_inference": ev.events["input_events_per_inference"],
    }
    write_json(
        run_dir / "summary.json",
        {
            "run_dir": str(run_dir.resolve()),
            "sweep_of": record["sweep_of"],
            **row,
            "n_label": n_label,
            "n_test": len(test_xy[1]),
            "wall_seconds": time.perf_counter() - started,
        },
    )
    return row


def evaluate_run(
    run: StdpRun | str | Path,
    test_set: Any,
    *,
    build_dir: str | Path | None = None,
    target: str | None = None,
    progress: bool | None = False,
) -> dict[str, Any]:
    """Re-simulate a saved run's frozen network on ``test_set`` with its saved assignments (with the run's
    own test set this reproduces its test accuracy: the same seed as the run's test pass)."""
    from nsnn.stdp import pipeline as pl
    from nsnn.stdp.classify import accuracy
    from nsnn.stdp.engine import make_engine

    run = run if isinstance(run, StdpRun) else load_run(run)
    config = run.config if target is None else run.config.replace(target=target)
    images, labels = _arrays(test_set, config, "test_set")
    with make_engine(config, build_dir or run.run_dir / "brian") as engine:
        responses = pl.respond(
            engine,
            run.state,
            images,
            config,
            seed=pl.phase_seed(config, pl.TEST),
            desc="test",
            progress=progress,
        )
    return {
        "accuracy": accuracy(responses.counts, labels, run.assignments, config.n_classes),
        "input_events_per_inference": pl.synaptic_events(responses.input_spikes, pl.transmitting(run.state))
        / max(len(images), 1),
        "n_test": len(images),
        "ms_per_example_test": responses.ms_per_example,
    }
