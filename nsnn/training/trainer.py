"""The one BPTT training loop of nsnn: data → model → epochs → checkpoints → test.

:func:`fit` runs a whole experiment from a :class:`TrainConfig` and returns its key results; every
script is a thin wrapper around it. Per epoch: shuffle (a pure function of seed and epoch), train,
step the schedule, validate, log a ``metrics.csv`` row, write ``last.pt`` (and ``best.pt`` when the
validation accuracy improves). Finally the best checkpoint is evaluated on the test set and
``summary.json`` written::

    result = fit(TrainConfig(dataset="mnist", model="mnist_convnet", epochs=3, timestep=4))
    result["test_accuracy"], result["run_dir"]

The state carried by ``last.pt`` (model, optimizer, schedule, AMP scaler, every RNG; the data order
needs none) makes ``--resume`` bit-exact: a run killed at any instant and resumed ends with the same
weights as one never interrupted (same device, same world size). The run's objects and its epoch and
evaluation passes are :class:`nsnn.training.experiment.Experiment`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch.distributed as dist

from nsnn.io import (
    check_new_run_dir,
    hold_run_dir,
    make_run_dir,
    release_run_dir,
    remove_stale_temps,
    write_json,
)
from nsnn.training.checkpoint import (
    load_checkpoint,
    resolve_checkpoint,
    restore_model,
    save_checkpoint,
)
from nsnn.training.config import RUNTIME_FIELDS, TEST_SEED, ConfigError, TrainConfig
from nsnn.training.experiment import Experiment, StepHook, rank_seed
from nsnn.training.monitor import RunLogger
from nsnn.training.runtime import (
    Runtime,
    broadcast_object,
    say,
    seed_everything,
    setup_runtime,
    sigint_deferred,
    teardown_runtime,
    warn_cpu_amp,
)


def resume_path(resume: str | Path) -> Path:
    """The ``last.pt`` a ``--resume`` names (the file, or the run folder holding it); any other
    checkpoint is refused: resuming from ``best.pt`` would rewind the run and drop the epochs after it."""
    path = resolve_checkpoint(resume, "last.pt")
    if path.name != "last.pt":
        raise ConfigError(f"resume continues from a run's last.pt (or its folder); got {path}")
    return path


def _resume_source(cfg: TrainConfig) -> tuple[TrainConfig, dict[str, Any] | None, Path | None]:
    """``(config, checkpoint, run_dir)``: the checkpoint's config (runtime fields from ``cfg``) on resume;
    ``cfg``'s other fields must be their defaults or the run's values."""
    if cfg.resume is None:
        return cfg, None, None
    path = resume_path(cfg.resume)
    ckpt = load_checkpoint(path)
    saved = dict(ckpt["config"])
    # A field set to neither its default nor the run's value asks for another experiment: refused, as
    # the command line refuses such a flag (which hands fit the runtime fields alone).
    run, default = TrainConfig.from_dict(saved), TrainConfig()
    clash = [
        f.name
        for f in dataclasses.fields(TrainConfig)
        if f.name not in RUNTIME_FIELDS
        and getattr(cfg, f.name) != getattr(default, f.name)
        and getattr(cfg, f.name) != getattr(run, f.name)
    ]
    if clash:
        details = ", ".join(f"{n} {getattr(cfg, n)!r} (run: {getattr(run, n)!r})" for n in clash)
        raise ConfigError(f"resume continues the run's own configuration; these fields differ: {details}")
    if cfg.out is not None and Path(cfg.out).resolve() != path.parent.resolve():
        raise ConfigError(f"resume continues in the run's own folder {path.parent}; out {cfg.out!r} differs")
    # The data folder may have moved (--data-dir), but an omitted --data-dir keeps the run's; so does an
    # omitted --workers (0): another thread count sums in another order, and the resumed run would not
    # repeat the uninterrupted one bit for bit.
    kept = {"data_dir": cfg.data_dir is None, "workers": cfg.workers == 0}
    saved.update({k: getattr(cfg, k) for k in RUNTIME_FIELDS if not kept.get(k, False)})
    if saved.get("workers", 0) != run.workers:
        print(
            f"note: --workers {saved['workers']} differs from the run's {run.workers}: the resumed epochs "
            "will not repeat an uninterrupted run's arithmetic bit for bit",
            file=sys.stderr,
            flush=True,
        )
    return TrainConfig.from_dict(saved), ckpt, path.parent


def _record_data_dir(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with ``data_dir`` absolute, as the run's config records it: a given folder resolved
    against the working directory, or without ``--data-dir`` the default data folder the dataset is
    read from (``$NSNN_DATA_DIR`` or ``./data``; not for the embedded MNIST split, which reads none).
    Testing and ``--resume`` (where ``download`` is a runtime flag and not saved) then load the same
    data from any working directory; without it MNIST would fall back to the embedded split."""
    from nsnn.data import default_data_dir, reads_data_folder

    if cfg.data_dir is not None:
        return dataclasses.replace(cfg, data_dir=str(Path(cfg.data_dir).expanduser().resolve()))
    if not reads_data_folder(cfg.dataset, None, cfg.download):
        return cfg
    return dataclasses.replace(cfg, data_dir=str(default_data_dir().resolve()))


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or another KeyboardInterrupt) during :func:`fit`, naming the run folder it left."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir


def fit(config: TrainConfig, *, on_step: StepHook | None = None) -> dict[str, Any]:
    """Train, validate, checkpoint and test as configured; returns the run's key results.

    ``on_step(epoch, step)`` (0-based) is called after every optimizer step, e.g. for custom logging;
    an exception it raises aborts ``fit`` there (last.pt keeps the last finished epoch; no test pass).
    Returns ``{"run_dir", "best_val_accuracy", "best_epoch", "test_accuracy", "test_loss",
    "eval_mode", "n_ensembles", "epochs", "parameters", "train_seconds"}`` (accuracies are fractions;
    ``best_val_accuracy`` is None without a validation split; ``train_seconds`` is the wall time of
    the epochs kept, summed over every session of a resumed run).

    With ``resume``, the run's own configuration continues: the runtime fields (device, data folder,
    output, ...) come from ``config``, and any other field set to neither its default nor the run's
    value raises :class:`ConfigError`. A KeyboardInterrupt once the run folder exists is raised as
    :class:`RunInterrupted` (a KeyboardInterrupt) naming it; an ``OSError`` then (a full disk) carries
    the folder as its ``run_dir`` attribute.
    """
    cfg, ckpt, run_dir = _resume_source(config)
    cfg = _record_data_dir(cfg)
    if ckpt is None and cfg.out is not None:
        try:
            check_new_run_dir(cfg.out)
        except FileExistsError as e:
            hint = " (or --resume it, to continue that run)" if (Path(cfg.out) / "last.pt").is_file() else ""
            raise ConfigError(f"{e}{hint}") from None
    rt = setup_runtime(cfg.device, cfg.amp, cfg.workers)
    warn_cpu_amp(rt)
    try:
        exp, run_dir = _open_run(cfg, rt, ckpt, run_dir)
        try:
            result = _fit(cfg, rt, exp, ckpt, run_dir, on_step)
        except KeyboardInterrupt as e:
            raise RunInterrupted(run_dir) from e
        except OSError as e:  # e.g. a full disk: the CLI tells what the run folder kept
            e.run_dir = run_dir  # type: ignore[attr-defined]
            raise
        finally:  # finished, failed or interrupted: another process may now --resume the run
            release_run_dir(run_dir)
    except BaseException:
        teardown_runtime(rt, failed=True)
        raise
    teardown_runtime(rt)
    return result


def _open_run(
    cfg: TrainConfig, rt: Runtime, ckpt: dict[str, Any] | None, run_dir: Path | None
) -> tuple[Experiment, Path]:
    """The experiment (data, model, optimizer) and its run folder, held by rank 0 while the run trains
    (:func:`nsnn.io.hold_run_dir`): a new folder, or on resume the run's own, refused while another
    process still writes it."""
    exp = Experiment(cfg, rt, resumed=ckpt is not None)
    if run_dir is None:
        return exp, Path(
            broadcast_object(
                str(make_run_dir(cfg.out, f"{cfg.dataset}-{cfg.model}")) if rt.is_main else None, rt
            )
        )
    if rt.is_main:
        try:
            busy = f"{run_dir} is being written by another process (still training?); resume it later"
            hold_run_dir(run_dir, busy=busy)
        except FileExistsError as e:
            raise ConfigError(str(e)) from None
    return exp, run_dir


def _fit(
    cfg: TrainConfig,
    rt: Runtime,
    exp: Experiment,
    ckpt: dict[str, Any] | None,
    run_dir: Path,
    on_step: StepHook | None,
) -> dict[str, Any]:
    start, best_acc, best_epoch, prior_seconds = 0, None, 0, 0.0
    if ckpt is not None:
        exp.check_same_data(ckpt["dataset"])
        exp.restore(ckpt)
        start = int(ckpt["epoch"])
        best_acc, best_epoch = ckpt["metrics"].get("best_val_accuracy"), ckpt["metrics"].get("best_epoch", 0)
        prior_seconds = float(ckpt["metrics"].get("train_seconds", 0.0))  # the saved epochs' time
        if rt.is_main:
            remove_stale_temps(run_dir)  # what a kill during an atomic save left
            _complete_best(run_dir, ckpt, rt)
        if start >= cfg.epochs and not (run_dir / "best.pt").is_file():
            raise ConfigError(
                f"{run_dir}: its checkpoint has done all {cfg.epochs} epochs and there is no best.pt (a "
                "model saved with save_model, never validated): nothing is left to train; test it with "
                f"python -m nsnn.training test --snapshot {run_dir / 'last.pt'}"
            )
        say(rt, f"resuming {run_dir} after epoch {start}/{cfg.epochs}")
    else:
        # An epoch-0 last.pt: a run stopped during its first epoch can be resumed (exactly) from the start.
        state = exp.checkpoint(0, {"best_val_accuracy": None, "best_epoch": 0})
        if rt.is_main:
            save_checkpoint(state, run_dir / "last.pt")
    if rt.is_main:
        # the run's own configuration, however this session was started (--resume from any folder)
        record = {**cfg.to_dict(), "out": str(run_dir.resolve()), "resume": None, "world_size": rt.world_size}
        write_json(run_dir / "config.json", record)
    say(rt, exp.describe_data())
    say(
        rt,
        f"model {cfg.model}: {exp.n_params:,} parameters | {cfg.neuron} ({cfg.noise} "
        f"{'noise' if exp.stochastic else 'surrogate'}, σ={cfg.sigma:g}) "
        f"T={cfg.timestep} | device {rt.device} × {rt.world_size} | run dir {run_dir}",
    )
    log = RunLogger(run_dir, start_epoch=start, enabled=rt.is_main)
    t_start, train_seconds = time.perf_counter(), prior_seconds
    try:
        for epoch in range(start, cfg.epochs):
            tick = time.perf_counter()
            lr = exp.optimizer.param_groups[0]["lr"]
            train = exp.train_epoch(epoch, on_step)
            epoch_train_seconds = time.perf_counter() - tick
            exp.scheduler.step()
            val = exp.evaluate(exp.val_loader, "val") if exp.val_loader is not None else None
            row = {
                "epoch": epoch + 1,
                "train_loss": train["train_loss"],
                "train_reg": train["train_reg"],
                "train_accuracy": train["train_accuracy"],
                "val_loss": "" if val is None else val["loss"],
                "val_accuracy": "" if val is None else val["accuracy"],
                "lr": lr,
                "epoch_seconds": time.perf_counter() - tick,
                "images_per_second": train["n"] / epoch_train_seconds,
            }
            improved = val is None or best_acc is None or val["accuracy"] > best_acc
            if improved:
                best_epoch = epoch + 1
                best_acc = None if val is None else val["accuracy"]
            # train_seconds: wall time of the epochs kept so far, over every session of a resumed run
            train_seconds = prior_seconds + time.perf_counter() - t_start
            metrics = {
                "best_val_accuracy": best_acc,
                "best_epoch": best_epoch,
                "last": row,
                "train_seconds": train_seconds,
            }
            state = exp.checkpoint(epoch + 1, metrics)
            if rt.is_main:
                # An epoch's results are kept whole: Ctrl-C waits for them. A kill at any instant: before
                # last.pt, resume redoes the epoch (the row is dropped); between last.pt and best.pt,
                # resume copies last.pt (that best model) to best.pt (_complete_best).
                with sigint_deferred():
                    log.epoch(row)
                    save_checkpoint(state, run_dir / "last.pt")
                    if improved:
                        save_checkpoint(state, run_dir / "best.pt")
            say(rt, _epoch_line(row, cfg.epochs, improved and val is not None))
        test = _test_best(exp, run_dir)
        result = {
            "run_dir": str(run_dir.resolve()),  # absolute, as the STDP runs': valid from any folder
            "best_val_accuracy": best_acc,
            "best_epoch": best_epoch,
            "test_accuracy": test["accuracy"],
            "test_loss": test["loss"],
            "eval_mode": exp.eval_mode,
            "n_ensembles": exp.n_ensembles,
            "epochs": cfg.epochs,
            "parameters": exp.n_params,
            "train_seconds": train_seconds,
        }
        if rt.is_main:
            write_json(run_dir / "summary.json", result)
            log.scalars({"test/accuracy": test["accuracy"], "test/loss": test["loss"]}, best_epoch)
        say(
            rt,
            f"best epoch {best_epoch}: val accuracy {_pct(best_acc)} | "
            f"test accuracy {_pct(test['accuracy'])} "
            + (f"({exp.eval_mode}, K={exp.n_ensembles}) " if exp.stochastic else "")
            + f"| results in {run_dir}",
        )
        return result
    finally:
        log.close()


def _complete_best(run_dir: Path, ckpt: dict[str, Any], rt: Runtime) -> None:
    """Make ``best.pt`` the model ``ckpt`` (the ``last.pt`` resumed from) names as best: a kill between
    the two saves of an improved epoch left the previous best there, and ``last.pt`` holds that model."""
    best_epoch = ckpt["metrics"].get("best_epoch")
    if best_epoch != ckpt["epoch"] or best_epoch == 0:
        return
    best = run_dir / "best.pt"
    if best.is_file() and load_checkpoint(best).get("epoch") == best_epoch:
        return
    save_checkpoint(ckpt, best)
    say(rt, f"best.pt completed from last.pt (epoch {best_epoch})")


def _test_best(exp: Experiment, run_dir: Path) -> dict[str, float]:
    """Load ``best.pt`` into the net (rank 0 reads it, the others receive it); evaluate the test set
    with the noise seeded by :data:`TEST_SEED` and the eager net, as the testing scripts do by default
    (so a single-process run's test accuracy is what ``testing_*.py --snapshot best.pt`` reports, with
    ``--compile`` too)."""
    rt = exp.rt
    if rt.is_main:
        restore_model(exp.net, load_checkpoint(run_dir / "best.pt", map_location=rt.device))
    if rt.distributed:
        for tensor in exp.net.state_dict().values():
            dist.broadcast(tensor, src=0)
    seed_everything(rank_seed(TEST_SEED, rt))
    return exp.evaluate(exp.test_loader, "test", eager=True)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _epoch_line(row: dict[str, Any], epochs: int, best: bool) -> str:
    val = (
        ""
        if row["val_accuracy"] == ""
        else f" | val loss {row['val_loss']:.4f} acc {_pct(row['val_accuracy'])}"
    )
    return (
        f"epoch {row['epoch']:>3}/{epochs} | train loss {row['train_loss']:.4f} "
        f"acc {_pct(row['train_accuracy'])}"
        f"{val} | lr {row['lr']:.3g} | {row['epoch_seconds']:.1f} s ({row['images_per_second']:.0f} img/s)"
        + (" *" if best else "")
    )
