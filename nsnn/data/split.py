"""A validation split carved from the training set (the test set never selects a checkpoint).

The split is a pure function of ``(labels, fraction, seed, stratify)``, so a resumed or repeated run
gets the same validation images::

    train, val = train_val_split(bundle.train, val_fraction=0.1, seed=0)   # 10% held out, per class
"""

from __future__ import annotations

import math

import torch

from nsnn.data.base import ImageSet


def _class_quota(counts: torch.Tensor, n_val: int) -> torch.Tensor:
    """Per-class validation counts proportional to ``counts`` summing to ``n_val`` (largest remainder)."""
    exact = counts.double() * n_val / counts.sum()
    quota = exact.floor().long()
    short = n_val - int(quota.sum())
    order = torch.argsort(exact - quota, descending=True, stable=True)
    quota[order[:short]] += 1
    return quota


def split_indices(
    labels: torch.Tensor, val_fraction: float, seed: int = 0, stratify: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint sorted index tensors ``(train_idx, val_idx)`` covering ``range(len(labels))``.

    ``len(val_idx) = round(val_fraction · N)`` (at least 1, at most N − 1). With ``stratify`` each class
    contributes in proportion to its size (largest-remainder rounding), its members chosen by a seeded
    permutation; otherwise the first ``len(val_idx)`` of one seeded permutation of all indices.
    """
    n = int(labels.shape[0])
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if n < 2:
        raise ValueError(f"need at least 2 samples to split, got {n}")
    n_val = min(max(math.floor(val_fraction * n + 0.5), 1), n - 1)
    g = torch.Generator().manual_seed(seed)
    if not stratify:
        val = torch.randperm(n, generator=g)[:n_val]
    else:
        labels = labels.cpu()
        classes, counts = torch.unique(labels, return_counts=True)
        quota = _class_quota(counts, n_val)
        picks = []
        for c, k in zip(classes.tolist(), quota.tolist(), strict=True):
            members = torch.nonzero(labels == c).flatten()
            picks.append(members[torch.randperm(len(members), generator=g)[:k]])
        val = torch.cat(picks)
    is_val = torch.zeros(n, dtype=torch.bool)
    is_val[val] = True
    return torch.nonzero(~is_val).flatten(), torch.nonzero(is_val).flatten()


def train_val_split(
    data: ImageSet, val_fraction: float = 0.1, seed: int = 0, stratify: bool = True
) -> tuple[ImageSet, ImageSet]:
    """Split a training set into ``(train, val)`` by :func:`split_indices`."""
    train_idx, val_idx = split_indices(data.labels, val_fraction, seed, stratify)
    return data.subset(train_idx), data.subset(val_idx)
