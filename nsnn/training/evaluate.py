"""Evaluation of spiking classifiers: eval modes, stochastic ensembles, and perturbation hooks.

A noisy network is a random classifier. :func:`evaluate` sets every neuron's ``eval_mode``:

* ``"stochastic"``: spikes ~ Bernoulli(CDF(u − θ)), as in training (NSNN's inference);
* ``"deterministic"``: spikes = H(u − θ) (the noise-free network);
* ``"expected"``: the firing probability CDF(u − θ) itself propagates (mean-field);

and averages the logits of ``n_ensembles`` passes per batch (K stochastic samples), so the
prediction is the argmax of (1/K)·Σ_k (1/T)·Σ_t o_t^(k)::

    result = evaluate(model, test_loader, timestep=4, eval_mode="stochastic", n_ensembles=8)
    result["accuracy"]        # fraction in [0, 1]
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from nsnn.layers import evaluating, neuron_eval_mode
from nsnn.training.losses import LossFn, mean_ce
from nsnn.training.perturbations import Perturbation
from nsnn.training.runtime import Runtime, all_reduce_sum


def to_sequence(x: Tensor, timestep: int | None, encoding: str = "direct") -> Tensor:
    """Model input ``[T, B, ...]`` from a loader batch.

    Event frames ``[B, T, C, H, W]`` (rank 5) are made time-first; static images ``[B, C, H, W]`` are
    encoded with :func:`nsnn.models.encode` (``encoding`` "direct" or "poisson", ``timestep`` steps).
    """
    if x.dim() == 5:
        if timestep is not None and x.shape[1] != timestep:
            raise ValueError(f"event frames have T={x.shape[1]} steps but timestep={timestep} was requested")
        return x.transpose(0, 1)
    if timestep is None:
        raise ValueError("timestep is required to encode static images [B, C, H, W]")
    from nsnn.models import encode

    return encode(x, timestep, encoding)


def normalization(encoding: str) -> dict[str, None]:
    """Loader keyword arguments for batches fed to ``encoding``: none for ``"direct"`` (the dataset's
    mean/std apply), ``mean=None, std=None`` for a rate code, whose spike probability is the raw
    intensity in [0, 1]::

        loader = bundle.loader(bundle.test, 64, train=False, **normalization(cfg.encoding))
    """
    return {} if encoding == "direct" else {"mean": None, "std": None}


def has_stochastic_neurons(model: nn.Module) -> bool:
    """Whether any neuron of ``model`` fires stochastically (NILIF, NIPLIF): the only ones ``eval_mode``
    acts on."""
    return any(getattr(m, "stochastic", False) for m in model.modules())


def effective_evaluation(
    model: nn.Module, eval_mode: str, n_ensembles: int, *, random_input: bool
) -> tuple[str, int]:
    """``(eval_mode, n_ensembles)`` as :func:`evaluate` really acts with them on ``model``: a network
    without stochastic neurons (LIF, PLIF) fires deterministically in every mode, and K passes of a
    deterministic firing (that, or the deterministic and expected modes) repeat one result unless the
    input is random (``random_input``: Poisson encoding, a perturbation)::

        effective_evaluation(lif_net, "stochastic", 8, random_input=False)     # ("deterministic", 1)
        effective_evaluation(nilif_net, "expected", 8, random_input=False)     # ("expected", 1)
    """
    stochastic = has_stochastic_neurons(model)
    if stochastic and eval_mode == "stochastic":
        return eval_mode, n_ensembles
    return eval_mode if stochastic else "deterministic", n_ensembles if random_input else 1


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    *,
    timestep: int | None = None,
    encoding: str = "direct",
    eval_mode: str | None = None,
    n_ensembles: int = 1,
    criterion: LossFn = mean_ce,
    perturbation: Perturbation | None = None,
    runtime: Runtime | None = None,
    progress: bool | None = False,
    desc: str = "eval",
) -> dict[str, float]:
    """Loss and accuracy of ``model`` over ``loader`` (batches ``(x, y)``), in eval mode.

    ``eval_mode`` (stochastic | deterministic | expected) sets every stochastic neuron's mode for this
    pass; None keeps each neuron's own (:func:`~nsnn.training.load_model` gives them the run's).
    ``criterion`` is applied to the ensemble-averaged logits ``[T, B, classes]`` (default: CE of the
    time mean; ``fit`` reports its validation and test loss with the run's training loss instead).
    Under DDP pass ``runtime``: each process evaluates its shard and the sums are all-reduced. Every
    module's train/eval flag and the neuron modes are restored afterwards.

    Returns ``{"loss": mean loss per sample, "accuracy": fraction correct, "n": samples}``.
    """
    if isinstance(n_ensembles, bool) or not isinstance(n_ensembles, int) or n_ensembles < 1:
        raise ValueError(f"n_ensembles must be a positive integer, got {n_ensembles!r}")
    from nsnn.models import predict

    device = next(model.parameters()).device
    perturbation = perturbation or Perturbation()
    forward: Callable[[Tensor], Tensor] = lambda inp: model(to_sequence(inp, timestep, encoding))  # noqa: E731
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    autocast = runtime.autocast if runtime is not None else contextlib.nullcontext
    show = progress if runtime is None or runtime.is_main else False
    modes = contextlib.nullcontext() if eval_mode is None else neuron_eval_mode(model, eval_mode)
    with evaluating(model), modes:  # every module's own flag restored after
        for x, y in tqdm(loader, desc=desc, disable=None if show is None else not show, leave=False):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.enable_grad():
                x = perturbation.perturb_input(x, y, forward)
            with torch.no_grad(), perturbation.patch(model), autocast():
                logits = sum(forward(x).float() for _ in range(n_ensembles)) / n_ensembles
            sums[0] += criterion(logits, y).double() * y.numel()
            sums[1] += (predict(logits) == y).sum()
            sums[2] += y.numel()
    if runtime is not None:
        sums = all_reduce_sum(sums, runtime)
    loss_sum, correct, n = sums.tolist()
    if n == 0:
        raise ValueError("evaluate: the loader yielded no samples")
    return {"loss": loss_sum / n, "accuracy": correct / n, "n": int(n)}
