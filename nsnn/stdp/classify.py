"""Label assignment and prediction from spike counts (Diehl & Cook 2015, §2.5), numpy only.

* **Assignment** (from the *label* set — training images with frozen weights, never the test set):
  neuron j → the class c with the highest mean response ``mean_{k: y_k = c} counts[k, j]``; a neuron
  that never fired on the label set gets −1.
* **Prediction**: the class whose assigned neurons have the highest *mean* spike count; an example
  that makes no assigned neuron fire is predicted −1 (counted wrong, not guessed).

    assignments = assign_labels(label_counts, label_targets, n_classes=10)   # [n_exc]
    accuracy = (predict(test_counts, assignments, 10) == test_targets).mean()
"""

from __future__ import annotations

import numpy as np


def check_labels(labels: np.ndarray, n_classes: int) -> None:
    """ValueError unless ``labels`` are integers in [0, n_classes)."""
    labels = np.asarray(labels)
    integers = np.issubdtype(labels.dtype, np.integer)
    if not integers or (labels.size and (labels.min() < 0 or labels.max() >= n_classes)):
        shown = f"values in [{labels.min()}, {labels.max()}]" if labels.size else "no values"
        raise ValueError(f"labels must be integers in [0, n_classes={n_classes}), got {labels.dtype} {shown}")


def class_rates(counts: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean count of each neuron per class, ``[n_classes, n_neurons]`` (0 for absent classes)."""
    counts = np.asarray(counts, dtype=np.float64)
    labels = np.asarray(labels)
    if counts.ndim != 2 or labels.shape != (counts.shape[0],):
        raise ValueError(
            f"counts must be [n, n_neurons] and labels [n]; got {counts.shape} and {labels.shape}"
        )
    check_labels(labels, n_classes)  # before any cast: a label 2.9 is refused, not read as class 2
    labels = labels.astype(np.int64)
    sums = np.zeros((n_classes, counts.shape[1]))
    np.add.at(sums, labels, counts)
    per_class = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return sums / np.maximum(per_class, 1.0)[:, None]


def assign_labels(counts: np.ndarray, labels: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """Class of each neuron ``[n_neurons]`` (int64), −1 for neurons silent on every label example."""
    rates = class_rates(counts, labels, n_classes)
    assignments = rates.argmax(axis=0).astype(np.int64)
    assignments[rates.max(axis=0) <= 0] = -1
    return assignments


def class_scores(counts: np.ndarray, assignments: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """Mean count of each class's assigned neurons per example, ``[n, n_classes]`` (−inf: no neuron)."""
    counts = np.asarray(counts, dtype=np.float64)
    assignments = np.asarray(assignments, dtype=np.int64)
    if counts.ndim != 2 or assignments.shape != (counts.shape[1],):
        raise ValueError(
            f"counts must be [n, n_neurons] and assignments [n_neurons]; "
            f"got {counts.shape} and {assignments.shape}"
        )
    scores = np.full((counts.shape[0], n_classes), -np.inf)
    for c in range(n_classes):
        members = assignments == c
        if members.any():
            scores[:, c] = counts[:, members].mean(axis=1)
    return scores


def predict(counts: np.ndarray, assignments: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """Predicted class per example ``[n]`` (int64): the highest mean count over a class's neurons, a tie
    going to the lowest class index (Diehl & Cook's ranking took the highest); −1 where no assigned
    neuron fired."""
    scores = class_scores(counts, assignments, n_classes)
    prediction = scores.argmax(axis=1).astype(np.int64)
    prediction[~(scores.max(axis=1) > 0)] = -1
    return prediction


def accuracy(counts: np.ndarray, labels: np.ndarray, assignments: np.ndarray, n_classes: int = 10) -> float:
    """Fraction of examples whose prediction equals the label (silent examples count as wrong)."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        return float("nan")
    return float((predict(counts, assignments, n_classes) == labels).mean())
