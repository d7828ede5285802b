"""The objects of one BPTT run and its two passes: data, model, optimizer, schedule and loss
(:class:`Experiment`), one epoch of training (:meth:`Experiment.train_epoch`, built on
:func:`train_step`) and one evaluation (:meth:`Experiment.evaluate`). :func:`nsnn.training.fit`
drives them epoch by epoch; :func:`load_dataset` and :func:`dataset_record` are shared with testing::

    exp = Experiment(cfg, setup_runtime("cpu"))
    row = exp.train_epoch(0, on_step=None); test = exp.evaluate(exp.test_loader, "test")
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim import Optimizer
from tqdm.auto import tqdm

from nsnn.compress import attach_masks
from nsnn.training.checkpoint import capture_rng, make_checkpoint, restore_model, restore_rng
from nsnn.training.config import ConfigError, TrainConfig
from nsnn.training.evaluate import (
    effective_evaluation,
    evaluate,
    has_stochastic_neurons,
    normalization,
    to_sequence,
)
from nsnn.training.losses import LossFn, build_loss, get_regularizer
from nsnn.training.optim import build_optimizer, build_scheduler
from nsnn.training.runtime import (
    Runtime,
    all_reduce_sum,
    gather_objects,
    main_first,
    say,
    seed_everything,
    unwrap_model,
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
    update equals a single-process step on the union of all shards (mean-reduced loss). The model
    runs with its modules' own train/eval flags, as in any PyTorch loop: call ``model.train()`` first
    (``fit`` does each epoch; :func:`evaluate` restores the flags it changes).
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


def _shard(data: Any, rt: Runtime) -> Any:
    """A disjoint strided shard of an ImageSet for this rank (exact evaluation, no padding)."""
    if not rt.distributed:
        return data
    return data.subset(torch.arange(rt.rank, len(data), rt.world_size))


def rank_seed(seed: int, rt: Runtime) -> int:
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
    with a ``fingerprint`` of its contents (a hash of every image and label, train then test), checked
    on resuming, and a ``test_fingerprint`` of the test split alone, which testing checks without
    reading the training split."""
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
        "test_fingerprint": fingerprint(test.images, test.labels),
    }


def take_samples(data: Any, max_samples: int, seed: int) -> Any:
    """The samples of an ImageSet that a run with ``--max-samples max_samples`` and ``--seed seed``
    uses: at most ``max_samples`` chosen by a seeded permutation, all of them for 0."""
    if max_samples <= 0 or max_samples >= len(data):
        return data
    return data.subset(torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:max_samples])


def load_dataset(cfg: TrainConfig, data_dir: str | None = None, *, test_only: bool = False) -> Any:
    """The run's :class:`nsnn.data.DatasetBundle` (``cfg.max_samples`` applied to train and test by
    :func:`take_samples`); ``test_only``: the test split alone (``train`` None), the same test samples
    as the run's."""
    from nsnn.data import get_dataset

    bundle = get_dataset(
        cfg.dataset, data_dir or cfg.data_dir, cfg.download, progress=cfg.progress, test_only=test_only
    )
    if cfg.max_samples > 0:
        bundle = dataclasses.replace(
            bundle,
            train=None if test_only else take_samples(bundle.train, cfg.max_samples, cfg.seed),
            test=take_samples(bundle.test, cfg.max_samples, cfg.seed),
        )
    return bundle


class Experiment:
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
        seed_everything(rank_seed(cfg.seed, rt))

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
        """The data's description (:meth:`nsnn.data.DatasetBundle.describe`) naming the normalisation
        and training augmentation applied (``--encoding``; ``--augment``, ``--cutout``), not the
        dataset's defaults: a rate code (``--encoding poisson``) normalises nothing."""
        from nsnn.data import Augment

        rate_code = normalization(self.cfg.encoding) != {}
        normalise = f"none (--encoding {self.cfg.encoding}: a rate code of the raw intensities in [0, 1])"
        return dataclasses.replace(self.bundle, augment=self.augment or Augment()).describe(
            normalise if rate_code else None
        )

    def dataset_record(self) -> dict[str, Any]:
        """:func:`dataset_record` of the run's data (computed once)."""
        if self._dataset_record is None:
            self._dataset_record = dataset_record(self.bundle)
        return self._dataset_record

    def check_same_data(self, saved: dict[str, Any]) -> None:
        """Refuse to resume a run on other data than it was trained on (``saved``: its checkpoint record;
        one written before fingerprints were recorded is compared on the rest; ``fingerprint`` covers the
        test split's ``test_fingerprint`` too)."""
        now = self.dataset_record()
        shared = (saved.keys() & now.keys()) - {"test_fingerprint"}
        differ = sorted(k for k in shared if saved[k] != now[k])
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
        restore_model(self.net, ckpt)
        # a pruned checkpoint keeps its masks: the optimizer re-zeroes pruned weights after every step
        if any("mask" in entry for entry in (ckpt.get("compression") or {}).values()):
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
            say(
                self.rt,
                f"note: checkpoint has RNG states for {saved} process(es), this run has {now}; noise "
                f"streams are reseeded (resume is not bit-exact). The run trained with {saved} process(es), "
                f"global batch {m} × {saved} = {m * saved}; this resume has {now}, global batch {m * now}, "
                f"under the same learning-rate schedule (launch {saved} process(es) to keep the run's batch)",
            )
            seed_everything(rank_seed(self.cfg.seed, self.rt) + 7919 * int(ckpt["epoch"]))

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
