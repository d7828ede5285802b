"""One training configuration (:class:`TrainConfig`) and the one argparse builder every script shares.

Flags keep the NSNN reference names (``--neuron --noise --model --epochs --minibatch --timestep --seed
--lr --sigma --tau --threshold --optim --scheduler --reg --lambda1 --tet --lambda_tet``) plus nsnn's
(``--data-dir --download --out --resume --device --amp --compile --workers --val-split --weight-decay
--clip-grad --encoding --loss --eval-mode --n_ensembles --json``). Scripts differ only in the dataset
and the defaults they pass (:mod:`nsnn.training.recipes`)::

    parser = build_train_parser("Train on MNIST", defaults=RECIPES["mnist"])
    config = config_from_args(parser.parse_args(["--epochs", "3"]))
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from nsnn.neurons.base import EVAL_MODES as _FIRE_MODE_OF
from nsnn.training.losses import LOSSES, REGULARIZERS
from nsnn.training.optim import OPTIMIZERS, SCHEDULERS, scheduler_name

EVAL_MODES = tuple(_FIRE_MODE_OF)  # "stochastic", "deterministic", "expected"
# Noise seed of a test pass: the one that ends training and the testing scripts' default (--seed), so
# that `testing_*.py --snapshot best.pt` reproduces the test accuracy a single-process run reported.
TEST_SEED = 0
# Largest seed: torch.manual_seed and the derived per-process seeds take signed 64-bit integers.
MAX_SEED = 2**63 - 1
ENCODINGS = ("direct", "poisson")
# Architecture keywords of every model that the dataset sets (not --arch): nsnn.models.arch_kwargs less these.
DATASET_ARCH_KWARGS = ("num_classes", "in_channels", "image_size")

# Fields that may differ between a run and its --resume (they change how, not what, is computed).
RUNTIME_FIELDS = frozenset({"device", "workers", "data_dir", "download", "json", "resume", "out", "progress"})


class ConfigError(ValueError):
    """A configuration value (flag) is invalid or inconsistent with the data or checkpoint."""


_PATH_FIELDS = ("data_dir", "out", "resume")


def _plain(name: str, value: Any) -> Any:
    """A JSON value of plain Python types: numpy scalars become ints/floats/bools, tuples lists."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, np.bool_):  # not a numbers.Integral
        return bool(value)
    if isinstance(value, list | tuple):
        return [_plain(name, v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(name, v) for k, v in value.items()}
    raise ConfigError(f"{name} must hold numbers, strings, lists and dicts only, got {value!r}")


def _plain_field(name: str, kind: str, value: Any) -> Any:
    """``value`` of the TrainConfig field ``name`` (annotation ``kind``) as the plain type it declares:
    numbers of the right kind (numpy scalars included; an integral float for an int), True/False for
    flags, str for paths (``~`` expanded); else ConfigError naming the field."""
    if kind == "str":  # a choice: validate() names the valid ones (and how to register a model)
        return value
    value = _plain(name, str(value) if isinstance(value, os.PathLike) else value)
    if value is None and kind.endswith("| None"):
        return None
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if kind == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return value
    if kind.startswith("bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if name in _PATH_FIELDS:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a path, got {value!r}")
        return os.path.expanduser(value)
    return value


@dataclass
class TrainConfig:
    """Everything a BPTT run needs; ``asdict(config)`` is stored in ``config.json`` and every checkpoint.

    Model: ``model`` (a :func:`nsnn.models.list_models` name) with extra architecture keywords
    ``arch`` (e.g. ``{"width": 32}``), ``neuron`` (NILIF | LIF | PLIF | NIPLIF), ``noise`` (a
    :func:`nsnn.noise.list_noises` family in any case, kept lower-case; the LIF surrogate's family
    too), ``sigma``, ``tau``, ``threshold``; input: ``timestep`` T and ``encoding``. Objective:
    ``loss`` (see :mod:`nsnn.training.losses`; ``tet=True`` selects ``"tet"``), ``lambda_tet``,
    ``reg`` and its weight ``lambda1``. Optimization: ``optim``, ``lr``, ``scheduler``, ``weight_decay``,
    ``clip_grad`` (max global grad norm, 0 = off), ``epochs``, ``minibatch`` (per process).
    Evaluation: ``eval_mode`` and ``n_ensembles`` for validation and test. ``val_split``: fraction of
    the training set held out for model selection (0 = none; ``best.pt`` is then the last epoch).
    ``augment``: the dataset's standard training augmentation; ``cutout``: add a cutout square;
    ``max_samples``: use a seeded subset of at most that many training and test samples (0 = all).
    """

    dataset: str = "mnist"
    model: str = "mnist_convnet"
    arch: dict[str, Any] = field(default_factory=dict)
    neuron: str = "NILIF"
    noise: str = "gaussian"
    sigma: float = 0.3
    tau: float = 2.0
    threshold: float = 1.0
    timestep: int = 4
    encoding: str = "direct"
    augment: bool = False
    cutout: int = 0
    loss: str = "per_step_ce"
    tet: bool = False
    lambda_tet: float = 0.05
    reg: str = "no"
    lambda1: float = 1e-4
    optim: str = "adam"
    lr: float = 1e-3
    scheduler: str = "cosine"
    weight_decay: float = 0.0
    clip_grad: float = 0.0
    epochs: int = 10
    minibatch: int = 128
    val_split: float = 0.1
    max_samples: int = 0
    seed: int = 1
    eval_mode: str = "stochastic"
    n_ensembles: int = 1
    device: str = "auto"
    amp: bool = False
    compile: bool = False
    workers: int = 0
    data_dir: str | None = None
    download: bool = False
    out: str | None = None
    resume: str | None = None
    json: bool = False
    progress: bool | None = None

    def __post_init__(self) -> None:
        for f in fields(self):  # plain Python values, so that the config saves (JSON, weights_only)
            setattr(self, f.name, _plain_field(f.name, f.type, getattr(self, f.name)))
        if isinstance(self.noise, str):  # looked up in any case, as get_noise does: one spelling kept
            self.noise = self.noise.lower()
        if self.tet:  # an alias of loss="tet", normalized away so both spellings are one experiment
            if self.loss not in ("per_step_ce", "tet"):  # the default, or the same choice spelled twice
                raise ConfigError(f"--tet means --loss tet, which conflicts with --loss {self.loss}")
            self.loss, self.tet = "tet", False
        try:
            self.scheduler = scheduler_name(self.scheduler)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` (a ValueError) naming the field, the bad value and the valid range."""
        from nsnn.data import list_datasets
        from nsnn.models import list_models
        from nsnn.models.registry import OWN_MODEL_HINT
        from nsnn.neurons import NEURONS
        from nsnn.noise import OWN_NOISE_HINT, list_noises

        choices = {
            "dataset": list_datasets(),
            "model": list_models(),
            "neuron": list(NEURONS),
            "noise": list_noises(),
            "encoding": ENCODINGS,
            "loss": sorted(LOSSES),
            "reg": sorted(REGULARIZERS),
            "optim": sorted(OPTIMIZERS),
            "scheduler": sorted(SCHEDULERS),
            "eval_mode": EVAL_MODES,
        }
        for name, valid in choices.items():
            value = getattr(self, name)
            if not isinstance(value, str) or value not in valid:
                hint = {"model": OWN_MODEL_HINT, "noise": OWN_NOISE_HINT}.get(name, "")
                shown = repr(value) if isinstance(value, str | int | float | None) else type(value).__name__
                raise ConfigError(f"{name} must be one of {list(valid)}, got {shown}{hint}")
        positive_int = ("timestep", "epochs", "minibatch", "n_ensembles")
        for name in positive_int:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("sigma", "lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("weight_decay", "clip_grad", "lambda1"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        if not 0.0 <= self.lambda_tet <= 1.0:
            raise ConfigError(f"lambda_tet must be in [0, 1], got {self.lambda_tet!r}")
        if not 0.0 <= self.val_split < 1.0:
            raise ConfigError(f"val_split must be in [0, 1), got {self.val_split!r}")
        if not (math.isfinite(self.tau) and self.tau >= 1):
            raise ConfigError(f"tau must be a finite number >= 1 (leak 1 - 1/tau), got {self.tau!r}")
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise ConfigError(f"threshold must be a finite number > 0, got {self.threshold!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be an integer in [0, {MAX_SEED}], got {self.seed!r}")
        if self.val_split > 0 and 0 < self.max_samples < 2:
            raise ConfigError(
                f"max_samples must leave >= 2 samples to split off validation, got {self.max_samples}"
            )
        from nsnn.models import arch_kwargs

        allowed = sorted(set(arch_kwargs(self.model)) - set(DATASET_ARCH_KWARGS))
        if not isinstance(self.arch, dict) or set(self.arch) - set(allowed):
            raise ConfigError(
                f"arch for {self.model!r} takes keywords {allowed} (its other arch_kwargs, "
                f"{', '.join(DATASET_ARCH_KWARGS)}, are set from the dataset), got {self.arch!r}"
            )
        if self.max_samples < 0:
            raise ConfigError(f"max_samples must be >= 0 (0 = all), got {self.max_samples}")
        if self.cutout < 0:
            raise ConfigError(f"cutout must be >= 0 (square side in pixels, 0 = off), got {self.cutout}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0 (0 = torch's default thread count), got {self.workers}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict` output or a run's ``config.json`` (whose ``world_size`` records
        the run, not its configuration); unknown keys raise ConfigError."""
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k != "world_size"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s) {unknown}; valid: {sorted(known)}")
        return cls(**data)

    def model_kwargs(self, num_classes: int, in_channels: int, image_size: int) -> dict[str, Any]:
        """Keywords for :func:`nsnn.models.create` (besides the model name)."""
        return {
            **self.arch,
            "num_classes": num_classes,
            "in_channels": in_channels,
            "image_size": image_size,
            "neuron": self.neuron,
            "noise": self.noise,
            "sigma": self.sigma,
            "tau": self.tau,
            "threshold": self.threshold,
        }


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that ends with each flag's ``(default: ...)``, unless the flag has none (None, required) or
    its help already says what the default is (e.g. "default: the run's own")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.required or "(default" in text or "default:" in text:
            return text
        return super()._get_help_string(action)


def parse_bool(text: str) -> bool:
    """A command-line boolean: 1/true/yes/on or 0/false/no/off (any case); anything else is refused."""
    lowered = text.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {text!r}")


def _json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"width\": 32}}': {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"width\": 32}}', got {text!r}")
    return value


def build_train_parser(
    description: str, defaults: dict[str, Any] | None = None, prog: str | None = None
) -> argparse.ArgumentParser:
    """The argparse parser shared by every training script; ``defaults`` override TrainConfig's."""
    d = {
        f.name: f.default_factory() if callable(f.default_factory) else f.default for f in fields(TrainConfig)
    }
    d.update(defaults or {})
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=HelpFormatter,
        allow_abbrev=False,  # run_training.sh reads --out/--resume by their full names
    )
    g = p.add_argument_group("model")
    g.add_argument("--model", default=d["model"], help="zoo network (nsnn.models.list_models())")
    g.add_argument(
        "--arch",
        type=_json_dict,
        default=d["arch"],
        help="extra architecture keywords of --model as JSON, e.g. '{\"width\": 32}' for mnist_convnet "
        f"(each model's: nsnn.models.arch_kwargs(name) less {', '.join(DATASET_ARCH_KWARGS)}, which are "
        "set from the dataset)",
    )
    g.add_argument("--neuron", default=d["neuron"], help="spiking neuron: NILIF, LIF, PLIF, NIPLIF")
    g.add_argument(
        "--noise", default=d["noise"], help="noise family, any case (NILIF noise, LIF/PLIF surrogate)"
    )
    g.add_argument("--sigma", type=float, default=d["sigma"], help="noise scale σ")
    g.add_argument("--tau", type=float, default=d["tau"], help="membrane time constant τ (leak 1/τ)")
    g.add_argument("--threshold", type=float, default=d["threshold"], help="firing threshold θ")
    g.add_argument("--timestep", "-T", type=int, default=d["timestep"], help="time steps T")
    g.add_argument("--encoding", default=d["encoding"], help=f"input encoding: {', '.join(ENCODINGS)}")
    g = p.add_argument_group("objective")
    g.add_argument("--loss", default=d["loss"], help=f"loss: {', '.join(sorted(LOSSES))}")
    g.add_argument("--tet", action="store_true", default=d["tet"], help="use the TET loss (= --loss tet)")
    g.add_argument(
        "--lambda_tet", type=float, default=d["lambda_tet"], help="TET's MSE weight λ in [0, 1] (with --tet)"
    )
    g.add_argument(
        "--reg", default=d["reg"], help=f"orthogonality regularizer: {', '.join(sorted(REGULARIZERS))}"
    )
    g.add_argument(
        "--lambda1", type=float, default=d["lambda1"], help="regularizer weight (with --reg gram or srip)"
    )
    g = p.add_argument_group("optimization")
    g.add_argument("--optim", default=d["optim"], help=f"optimizer: {', '.join(sorted(OPTIMIZERS))}")
    g.add_argument("--lr", type=float, default=d["lr"], help="learning rate")
    g.add_argument(
        "--scheduler", default=d["scheduler"], help=f"per-epoch lr schedule: {', '.join(sorted(SCHEDULERS))}"
    )
    g.add_argument(
        "--weight-decay",
        "--weight_decay",
        dest="weight_decay",
        type=float,
        default=d["weight_decay"],
        help="weight decay (L2) on all parameters",
    )
    g.add_argument(
        "--clip-grad",
        "--clip_grad",
        dest="clip_grad",
        type=float,
        default=d["clip_grad"],
        help="max global gradient norm (0 = no clipping)",
    )
    g.add_argument("--epochs", type=int, default=d["epochs"], help="training epochs")
    g.add_argument("--minibatch", "-b", type=int, default=d["minibatch"], help="batch size per process")
    g.add_argument("--seed", type=int, default=d["seed"], help="random seed (model init, data order, noise)")
    g = p.add_argument_group("data")
    g.add_argument(
        "--data-dir",
        "--data_dir",
        dest="data_dir",
        default=d["data_dir"],
        help="dataset folder (default $NSNN_DATA_DIR or ./data; MNIST without --data-dir or --download:"
        " the embedded set, whatever $NSNN_DATA_DIR says)",
    )
    g.add_argument(
        "--download",
        action="store_true",
        default=d["download"],
        help="download the dataset if missing (MNIST, CIFAR; DVS-CIFAR10 has no download)",
    )
    g.add_argument(
        "--val-split",
        "--val_split",
        dest="val_split",
        type=float,
        default=d["val_split"],
        help="fraction of the training set held out for validation / best.pt (0 = none)",
    )
    g.add_argument(
        "--max-samples",
        "--max_samples",
        dest="max_samples",
        type=int,
        default=d["max_samples"],
        help="use at most N training and N test samples, a seeded subset (0 = all; quick checks)",
    )
    g.add_argument(
        "--augment",
        type=parse_bool,
        default=d["augment"],
        help="dataset's standard augmentation (CIFAR: crop+flip; DVS: flip+roll; MNIST has none): true/false",
    )
    g.add_argument("--cutout", type=int, default=d["cutout"], help="cutout square side in pixels (0 = off)")
    g = p.add_argument_group("evaluation")
    g.add_argument(
        "--eval-mode",
        "--eval_mode",
        dest="eval_mode",
        default=d["eval_mode"],
        help=f"neuron mode at evaluation: {', '.join(EVAL_MODES)}",
    )
    g.add_argument(
        "--n_ensembles",
        "--n-ensembles",
        dest="n_ensembles",
        type=int,
        default=d["n_ensembles"],
        help="average the time-mean logits of K stochastic passes",
    )
    g = p.add_argument_group("run")
    g.add_argument("--out", default=d["out"], help="run directory (default runs/<dataset>-<model>-<time>)")
    g.add_argument(
        "--resume",
        default=d["resume"],
        help="continue a run: its directory or a last.pt; other flags must match the run's",
    )
    g.add_argument(
        "--device", default=d["device"], help="auto, cpu, cuda or cuda:N (torchrun: cuda:LOCAL_RANK)"
    )
    g.add_argument(
        "--amp",
        action="store_true",
        default=d["amp"],
        help="mixed precision: bf16 autocast on CPU, fp16 autocast + GradScaler on CUDA",
    )
    g.add_argument("--compile", action="store_true", default=d["compile"], help="torch.compile the model")
    g.add_argument(
        "--workers", type=int, default=d["workers"], help="CPU threads for torch (0 = torch default)"
    )
    g.add_argument(
        "--progress",
        type=parse_bool,
        default=d["progress"],
        help="progress bars: true/false (default: only on a terminal)",
    )
    g.add_argument(
        "--json",
        action="store_true",
        default=d["json"],
        help="print one JSON object with the key results as the last output line",
    )
    p.set_defaults(dataset=d["dataset"])
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A validated :class:`TrainConfig` from parsed flags (ValueError on a bad value)."""
    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
