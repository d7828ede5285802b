"""BPTT training of spiking networks: one loop, one checkpoint format, one CLI for every script.

* :func:`fit` runs an experiment from a :class:`TrainConfig` (data, model, epochs, validation,
  ``last.pt``/``best.pt``, ``metrics.csv``, ``curves.png``, TensorBoard, test) on CPU, CUDA, AMP,
  ``torch.compile`` or ``torchrun`` DDP, and resumes bit-exactly;
* :func:`evaluate` scores a model in ``stochastic``/``deterministic``/``expected`` mode with
  K-sample ensembles and an optional :class:`Perturbation`;
* :func:`load_model` rebuilds any checkpoint's network, :func:`save_model` saves it again (e.g.
  compressed);
* losses (:data:`LOSSES`), regularizers (:data:`REGULARIZERS`), optimizers and schedules by name.

    from nsnn.training import TrainConfig, fit, load_model
    result = fit(TrainConfig(dataset="mnist", model="mnist_convnet", timestep=4, epochs=3))
    model, ckpt = load_model(result["run_dir"])
"""

from nsnn.training.checkpoint import (
    FORMAT,
    CheckpointError,
    capture_rng,
    load_checkpoint,
    load_model,
    restore_rng,
    save_model,
)
from nsnn.training.config import ConfigError, TrainConfig, build_train_parser, config_from_args
from nsnn.training.evaluate import evaluate, neuron_eval_mode, normalization, to_sequence
from nsnn.training.experiment import train_step
from nsnn.training.losses import (
    LOSSES,
    REGULARIZERS,
    build_loss,
    get_regularizer,
    gram_penalty,
    mean_ce,
    per_step_ce,
    srip_penalty,
    tet_loss,
)
from nsnn.training.optim import OPTIMIZERS, SCHEDULERS, build_optimizer, build_scheduler
from nsnn.training.perturbations import PERTURBATIONS, Perturbation, get_perturbation, list_perturbations
from nsnn.training.recipes import RECIPES
from nsnn.training.runtime import Runtime, setup_runtime, unwrap_model
from nsnn.training.trainer import RunInterrupted, fit

__all__ = [
    "FORMAT",
    "LOSSES",
    "OPTIMIZERS",
    "PERTURBATIONS",
    "RECIPES",
    "REGULARIZERS",
    "SCHEDULERS",
    "CheckpointError",
    "ConfigError",
    "Perturbation",
    "RunInterrupted",
    "Runtime",
    "TrainConfig",
    "build_loss",
    "build_optimizer",
    "build_scheduler",
    "build_train_parser",
    "capture_rng",
    "config_from_args",
    "evaluate",
    "fit",
    "get_perturbation",
    "get_regularizer",
    "gram_penalty",
    "list_perturbations",
    "load_checkpoint",
    "load_model",
    "mean_ce",
    "neuron_eval_mode",
    "normalization",
    "per_step_ce",
    "restore_rng",
    "save_model",
    "setup_runtime",
    "srip_penalty",
    "tet_loss",
    "to_sequence",
    "train_step",
    "unwrap_model",
]
