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
weights as one never interrupted (same device, same world size).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim import Optimizer
from tqdm.auto import tqdm

from nsnn.compress import attach_masks, restore_compression
from nsnn.io import (
    check_new_run_dir,
    hold_run_dir,
    make_run_dir,
    release_run_dir,
    remove_stale_temps,
    write_json,
)
from nsnn.training.checkpoint import (
    capture_rng,
    load_checkpoint,
    make_checkpoint,
    resolve_checkpoint,
    restore_rng,
    save_checkpoint,
)
from nsnn.training.config import RUNTIME_FIELDS, TEST_SEED, ConfigError, TrainConfig
from nsnn.training.evaluate import (
    effective_evaluation,
    evaluate,
    has_stochastic_neurons,
    normalization,
    to_sequence,
)
from nsnn.training.losses import LossFn, build_loss, get_regularizer
from nsnn.training.monitor import RunLogger
from nsnn.training.optim import build_optimizer, build_scheduler
from nsnn.training.runtime import (
    Runtime,
    all_reduce_sum,
    broadcast_object,
    gather_objects,
    main_first,
    seed_everything,
    setup_runtime,
    sigint_deferred,
    teardown_runtime,
    unwrap_model,
    warn_cpu_amp,
    wrap_model,
)

StepHook = Callable[[int, int], None]


def train_step(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    optimizer: Optimizer,
    criterion: LossFn,
    *,
    timestep: int | None,
    encoding: str = "direct",
    rt: Runtime | None = None,
    scaler: torch.amp.GradScaler | None = None,
    regularizer: Callable[[nn.Module], Tensor] | None = None,
    lambda1: float = 0.0,
    clip_grad: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """One optimizer step on batch ``(x [B, ...], y [B])``; returns detached ``(loss, reg, logits)``.

    Objective: ``criterion(model(seq), y) + lambda1 · regularizer(model)`` with ``seq`` the
    ``[T, B, ...]`` encoding of ``x``. Under DDP the gradients are averaged over processes, so the
    update equals a single-process step on the union of all shards (mean-reduced loss).
    """
    optimizer.zero_grad(set_to_none=True)
    autocast = rt.autocast() if rt is not None else torch.autocast("cpu", enabled=False)
    with autocast:
        logits = model(to_sequence(x, timestep, encoding))
        loss = criterion(logits, y)
    reg = torch.zeros((), device=loss.device)
    if regularizer is not None and lambda1 > 0:
        reg = regularizer(unwrap_model(model)).to(loss.device)
    total = loss + lambda1 * reg
    if scaler is not None and scaler.is_enabled():
        scaler.scale(total).backward()
        if clip_grad > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        scaler.step(optimizer)
        scaler.update()
    else:
        total.backward()
        if clip_grad > 0:
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        optimizer.step()
    return loss.detach(), reg.detach(), logits.detach()


def _say(rt: Runtime, *parts: object) -> None:
    if rt.is_main:
        print(*parts, flush=True)


def _shard(data: Any, rt: Runtime) -> Any:
    """A disjoint strided shard of an ImageSet for this rank (exact evaluation, no padding)."""
    if not rt.distributed:
        return data
    return data.subset(torch.arange(rt.rank, len(data), rt.world_size))


def _rank_seed(seed: int, rt: Runtime) -> int:
    """``seed`` for rank 0, and a distinct seed for each other rank (their noise streams must differ)."""
    return seed + 1_000_003 * rt.rank


def fingerprint(*tensors: Tensor) -> str:
    """A hash (BLAKE2b, 128 bits) of the tensors' dtypes, shapes and bytes, in order."""
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype} {tuple(t.shape)};".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def dataset_record(bundle: Any) -> dict[str, Any]:
    """What a checkpoint records of a run's data (sizes after ``max_samples``, before the val split),
    with a ``fingerprint`` of its contents (a hash of every image and label, train then test)."""
    train, test = bundle.train, bundle.test
    return {
        "name": bundle.name,
        "num_classes": bundle.num_classes,
        "in_channels": bundle.in_channels,
        "image_size": bundle.image_size,
        "embedded": bundle.embedded,
        "train_size": len(train),
        "test_size": len(test),
        "fingerprint": fingerprint(train.images, train.labels, test.images, test.labels),
    }


def _subset(data: Any, n: int, seed: int) -> Any:
    """At most ``n`` samples of an ImageSet, chosen by a seeded permutation."""
    if n >= len(data):
        return data
    return data.subset(torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n])


def load_dataset(cfg: TrainConfig, data_dir: str | None = None) -> Any:
    """The run's :class:`nsnn.data.DatasetBundle` (``cfg.max_samples`` applied to train and test)."""
    from nsnn.data import get_dataset

    bundle = get_dataset(cfg.dataset, data_dir or cfg.data_dir, cfg.download, progress=cfg.progress)
    if cfg.max_samples > 0:
        bundle = dataclasses.replace(
            bundle,
            train=_subset(bundle.train, cfg.max_samples, cfg.seed),
            test=_subset(bundle.test, cfg.max_samples, cfg.seed),
        )
    return bundle


class _Experiment:
    """The objects of one run (built once, used by :func:`fit`); ``resumed``: the run continues from its
    checkpoint (its configuration is kept as it was trained)."""

    def __init__(self, cfg: TrainConfig, rt: Runtime, *, resumed: bool = False) -> None:
        from nsnn.data import Augment
        from nsnn.models import count_parameters, create

        self.cfg, self.rt = cfg, rt
        self._dataset_record: dict[str, Any] | None = None
        with main_first(rt):
            bundle = load_dataset(cfg)
        self.bundle = bundle
        if bundle.time_steps is not None:
            if cfg.timestep != bundle.time_steps:
                raise ConfigError(
                    f"{bundle.name} samples have {bundle.time_steps} event frames; "
                    f"use --timestep {bundle.time_steps}"
                )
            if cfg.encoding != "direct":
                raise ConfigError(f"{bundle.name} is already a spike-frame sequence; use --encoding direct")
        if cfg.val_split > 0:
            try:
                train, val = bundle.train_val_split(cfg.val_split, seed=cfg.seed)
            except ValueError as e:
                raise ConfigError(f"--val-split {cfg.val_split}: {e}") from None
        else:
            train, val = bundle.train, None
        norm = normalization(cfg.encoding)
        if cfg.augment and bundle.augment == Augment() and not resumed:
            raise ConfigError(
                f"--augment true: {bundle.name} has no standard training augmentation (only CIFAR-10/100: "
                "random crop + flip, and DVS-CIFAR10: roll + flip, have one); drop it, or add cutout "
                "squares alone with --cutout N"
            )
        if cfg.cutout > bundle.image_size:
            raise ConfigError(
                f"--cutout {cfg.cutout} is larger than {bundle.name}'s {bundle.image_size}-pixel images "
                "(it would blank most of every image); use at most the image side, e.g. half of it"
            )
        augment = dataclasses.replace(bundle.augment if cfg.augment else Augment(), cutout=cfg.cutout)
        # the training augmentation applied (None: none): the dataset's with --augment, and --cutout
        self.augment = None if augment == Augment() else augment
        common = {"device": rt.device, **norm}
        self.train_loader = bundle.loader(
            train,
            cfg.minibatch,
            train=True,
            seed=cfg.seed,
            augment=self.augment,
            drop_last=True,
            rank=rt.rank,
            world_size=rt.world_size,
            **common,
        )
        if len(self.train_loader) == 0:
            raise ConfigError(
                f"--minibatch {cfg.minibatch} × {rt.world_size} process(es) exceeds the "
                f"{len(train)} training samples"
            )
        for what, data in (("validation", val), ("test", bundle.test)):
            if data is not None and len(data) < rt.world_size:
                raise ConfigError(
                    f"the {what} set has {len(data)} sample(s), fewer than the {rt.world_size} processes "
                    "that each evaluate a shard of it; use more samples (--max-samples, --val-split) or "
                    "fewer processes"
                )
        self.val_loader = (
            None if val is None else bundle.loader(_shard(val, rt), cfg.minibatch, train=False, **common)
        )
        self.test_loader = bundle.loader(_shard(bundle.test, rt), cfg.minibatch, train=False, **common)

        seed_everything(cfg.seed)
        kwargs = cfg.model_kwargs(bundle.num_classes, bundle.in_channels, bundle.image_size)
        try:
            self.net = create(cfg.model, **kwargs).to(rt.device)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.n_params = count_parameters(self.net)
        self.stochastic = has_stochastic_neurons(self.net)
        # validation and test as they act on the net: once, deterministic, for LIF/PLIF on direct input
        self.eval_mode, self.n_ensembles = effective_evaluation(
            self.net, cfg.eval_mode, cfg.n_ensembles, random_input=cfg.encoding != "direct"
        )
        if rt.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.model = wrap_model(self.net, rt, compile=cfg.compile)
        # DDP forwards are collectives; shards may have unequal batch counts, so evaluate the bare net.
        self.eval_model = self.net if rt.distributed else self.model
        self.optimizer = build_optimizer(cfg.optim, self.net.parameters(), cfg.lr, cfg.weight_decay)
        self.scheduler = build_scheduler(cfg.scheduler, self.optimizer, cfg.epochs)
        self.scaler = rt.grad_scaler()
        self.criterion = build_loss(cfg.loss, cfg.lambda_tet)
        self.regularizer = get_regularizer(cfg.reg)
        # Model init is identical on every rank; the noise streams must differ between ranks.
        seed_everything(_rank_seed(cfg.seed, rt))

    def checkpoint(self, epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
        rng = gather_objects(capture_rng(), self.rt)
        return make_checkpoint(
            self.net,
            epoch=epoch,
            config=self.cfg.to_dict(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            rng=rng,
            # Data order and augmentation are pure functions of (seed, epoch, rank): this is their state.
            loader={"seed": self.cfg.seed, "next_epoch": epoch, "world_size": self.rt.world_size},
            metrics=metrics,
            dataset=self.dataset_record(),
        )

    def describe_data(self) -> str:
        """The data's description (:meth:`nsnn.data.DatasetBundle.describe`) naming the training
        augmentation applied (``--augment``, ``--cutout``), not the dataset's default one."""
        from nsnn.data import Augment

        return dataclasses.replace(self.bundle, augment=self.augment or Augment()).describe()

    def dataset_record(self) -> dict[str, Any]:
        """:func:`dataset_record` of the run's data (computed once)."""
        if self._dataset_record is None:
            self._dataset_record = dataset_record(self.bundle)
        return self._dataset_record

    def check_same_data(self, saved: dict[str, Any]) -> None:
        """Refuse to resume a run on other data than it was trained on (``saved``: its checkpoint record;
        one written before fingerprints were recorded is compared on the rest)."""
        now = self.dataset_record()
        differ = sorted(k for k in saved.keys() & now.keys() if saved[k] != now[k])
        if differ:
            details = ", ".join(
                "other images or labels of the same sizes"
                if k == "fingerprint"
                else f"{k} {now[k]!r} (run: {saved[k]!r})"
                for k in differ
            )
            raise ConfigError(
                f"--resume must continue on the run's own data, but the data loaded now differ: {details}; "
                "give the run's --data-dir (none for the embedded MNIST split)"
            )

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.net.load_state_dict(ckpt["model"])
        # a pruned checkpoint keeps its masks: the optimizer re-zeroes pruned weights after every step
        record = ckpt.get("compression") or {}
        restore_compression(self.net, record)
        if any("mask" in entry for entry in record.values()):
            attach_masks(self.net, self.optimizer)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt["scaler"] and self.scaler.is_enabled():  # a disabled scaler (CPU) saves {}
            self.scaler.load_state_dict(ckpt["scaler"])
        states = ckpt["rng"]  # one RNG state per process of the run
        if len(states) == self.rt.world_size:
            restore_rng(states[self.rt.rank])
        else:
            saved, now, m = len(states), self.rt.world_size, self.cfg.minibatch
            _say(
                self.rt,
                f"note: checkpoint has RNG states for {saved} process(es), this run has {now}; noise "
                f"streams are reseeded (resume is not bit-exact). The run trained with {saved} process(es), "
                f"global batch {m} × {saved} = {m * saved}; this resume has {now}, global batch {m * now}, "
                f"under the same learning-rate schedule (launch {saved} process(es) to keep the run's batch)",
            )
            seed_everything(_rank_seed(self.cfg.seed, self.rt) + 7919 * int(ckpt["epoch"]))

    def evaluate(self, loader: Any, desc: str, *, eager: bool = False) -> dict[str, float]:
        """Evaluate on this rank's shard (BatchNorm statistics taken from rank 0), sums all-reduced;
        ``eager``: with the uncompiled net (a compiled one draws other random numbers)."""
        cfg = self.cfg
        if self.rt.distributed:
            for buffer in self.net.buffers():
                dist.broadcast(buffer, src=0)
        return evaluate(
            self.net if eager else self.eval_model,
            loader,
            timestep=cfg.timestep,
            encoding=cfg.encoding,
            eval_mode=self.eval_mode,
            n_ensembles=self.n_ensembles,
            criterion=self.criterion,
            runtime=self.rt,
            progress=cfg.progress,
            desc=desc,
        )

    def train_epoch(self, epoch: int, on_step: StepHook | None) -> dict[str, float]:
        cfg, rt = self.cfg, self.rt
        self.model.train()
        self.train_loader.set_epoch(epoch)
        sums = torch.zeros(4, dtype=torch.float64, device=rt.device)
        show = cfg.progress if rt.is_main else False
        bar = tqdm(
            self.train_loader,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=None if show is None else not show,
            dynamic_ncols=True,
        )
        from nsnn.models import predict

        for step, (x, y) in enumerate(bar):
            loss, reg, logits = train_step(
                self.model,
                x,
                y,
                self.optimizer,
                self.criterion,
                timestep=cfg.timestep,
                encoding=cfg.encoding,
                rt=rt,
                scaler=self.scaler,
                regularizer=self.regularizer,
                lambda1=cfg.lambda1,
                clip_grad=cfg.clip_grad,
            )
            n = y.numel()
            sums[0] += loss.double() * n
            sums[1] += reg.double() * n
            sums[2] += (predict(logits.float()) == y).sum()
            sums[3] += n
            if step % 20 == 0 and not bar.disable:
                bar.set_postfix(
                    loss=f"{sums[0].item() / sums[3].item():.4f}",
                    acc=f"{sums[2].item() / sums[3].item():.4f}",
                )
            if on_step is not None:
                on_step(epoch, step)
        bar.close()
        loss_sum, reg_sum, correct, n = all_reduce_sum(sums, rt).tolist()
        return {"train_loss": loss_sum / n, "train_reg": reg_sum / n, "train_accuracy": correct / n, "n": n}


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
    # The data folder may have moved (--data-dir), but an omitted --data-dir keeps the run's.
    saved.update({k: getattr(cfg, k) for k in RUNTIME_FIELDS if k != "data_dir" or cfg.data_dir is not None})
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

    ``on_step(epoch, step)`` (0-based) is called after every optimizer step, e.g. for custom logging
    or to stop a run. Returns ``{"run_dir", "best_val_accuracy", "best_epoch", "test_accuracy",
    "test_loss", "epochs", "parameters", "train_seconds"}`` (accuracies are fractions;
    ``best_val_accuracy`` is None without a validation split; ``train_seconds`` is the wall time of
    the epochs kept, summed over every session of a resumed run).

    With ``resume``, the run's own configuration continues: the runtime fields (device, data folder,
    output, ...) come from ``config``, and any other field set to neither its default nor the run's
    value raises :class:`ConfigError`. A KeyboardInterrupt once the run folder exists is raised as
    :class:`RunInterrupted` (a KeyboardInterrupt) naming it.
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
        finally:  # finished, failed or interrupted: another process may now --resume the run
            release_run_dir(run_dir)
    except BaseException:
        teardown_runtime(rt, failed=True)
        raise
    teardown_runtime(rt)
    return result


def _open_run(
    cfg: TrainConfig, rt: Runtime, ckpt: dict[str, Any] | None, run_dir: Path | None
) -> tuple[_Experiment, Path]:
    """The experiment (data, model, optimizer) and its run folder, held by rank 0 while the run trains
    (:func:`nsnn.io.hold_run_dir`): a new folder, or on resume the run's own, refused while another
    process still writes it."""
    exp = _Experiment(cfg, rt, resumed=ckpt is not None)
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
    exp: _Experiment,
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
        _say(rt, f"resuming {run_dir} after epoch {start}/{cfg.epochs}")
    else:
        # An epoch-0 last.pt: a run stopped during its first epoch can be resumed (exactly) from the start.
        state = exp.checkpoint(0, {"best_val_accuracy": None, "best_epoch": 0})
        if rt.is_main:
            save_checkpoint(state, run_dir / "last.pt")
    if rt.is_main:
        write_json(run_dir / "config.json", {**cfg.to_dict(), "world_size": rt.world_size})
    _say(rt, exp.describe_data())
    _say(
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
            _say(rt, _epoch_line(row, cfg.epochs, improved and val is not None))
        test = _test_best(exp, run_dir)
        result = {
            "run_dir": str(run_dir),
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
        _say(
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
    _say(rt, f"best.pt completed from last.pt (epoch {best_epoch})")


def _test_best(exp: _Experiment, run_dir: Path) -> dict[str, float]:
    """Load ``best.pt`` into the net (rank 0 reads it, the others receive it); evaluate the test set
    with the noise seeded by :data:`TEST_SEED` and the eager net, as the testing scripts do by default
    (so a single-process run's test accuracy is what ``testing_*.py --snapshot best.pt`` reports, with
    ``--compile`` too)."""
    rt = exp.rt
    if rt.is_main:
        exp.net.load_state_dict(load_checkpoint(run_dir / "best.pt", map_location=rt.device)["model"])
    if rt.distributed:
        for tensor in exp.net.state_dict().values():
            dist.broadcast(tensor, src=0)
    seed_everything(_rank_seed(TEST_SEED, rt))
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
