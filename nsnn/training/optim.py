"""Optimizers and learning-rate schedules by name (the reference's ``--optim`` / ``--scheduler`` values).

Optimizers (:data:`OPTIMIZERS`): ``adam``, ``adamw``, ``radam`` and ``sgdm`` (SGD, momentum 0.9), all
with ``weight_decay`` on every parameter, as in NSNN. Schedules (:data:`SCHEDULERS`), stepped once
per epoch:

* ``cosine`` (alias ``cos``): lr_e = lr·(1 + cos(π·e/E))/2, E = epochs (CosineAnnealingLR);
* ``step``: lr × 0.1 after epoch max(1, ⌊E/2⌋) and again after max(1, ⌊3E/4⌋) (MultiStepLR): 50 % and
  75 % of the epochs, rounded down; for E ≤ 2 the two coincide and the lr drops once;
* ``none``: constant lr.

    opt = build_optimizer("adam", net.parameters(), lr=3e-3)
    sched = build_scheduler("cosine", opt, epochs=300)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LRScheduler, MultiStepLR

OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "adam": lambda params, lr, weight_decay: torch.optim.Adam(params, lr=lr, weight_decay=weight_decay),
    "adamw": lambda params, lr, weight_decay: torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay),
    "radam": lambda params, lr, weight_decay: torch.optim.RAdam(params, lr=lr, weight_decay=weight_decay),
    "sgdm": lambda params, lr, weight_decay: torch.optim.SGD(
        params, lr=lr, momentum=0.9, weight_decay=weight_decay
    ),
}

SCHEDULERS: dict[str, Callable[[Optimizer, int], LRScheduler]] = {
    "cosine": lambda opt, epochs: CosineAnnealingLR(opt, T_max=epochs),
    "step": lambda opt, epochs: MultiStepLR(
        opt, milestones=sorted({max(1, epochs // 2), max(1, 3 * epochs // 4)})
    ),
    "none": lambda opt, epochs: ConstantLR(opt, factor=1.0, total_iters=0),
}

SCHEDULER_ALIASES = {"cos": "cosine", "constant": "none"}


def build_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0
) -> Optimizer:
    """Optimizer ``name`` (see :data:`OPTIMIZERS`) over ``params``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {sorted(OPTIMIZERS)}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    return OPTIMIZERS[name](params, lr, weight_decay)


def scheduler_name(name: str) -> str:
    """Canonical schedule name (``cos`` → ``cosine``); ValueError listing the choices if unknown."""
    canonical = SCHEDULER_ALIASES.get(name, name)
    if canonical not in SCHEDULERS:
        raise ValueError(
            f"unknown scheduler {name!r}; choose from {sorted(SCHEDULERS)} (aliases {SCHEDULER_ALIASES})"
        )
    return canonical


def build_scheduler(name: str, optimizer: Optimizer, epochs: int) -> LRScheduler:
    """Per-epoch learning-rate schedule ``name`` (see :data:`SCHEDULERS`) over ``epochs`` epochs."""
    return SCHEDULERS[scheduler_name(name)](optimizer, epochs)
