"""Run logging: ``metrics.csv`` (one row per epoch), TensorBoard (when installed), ``curves.png``, and
the ``evaluations.png`` summary of the testing scripts.

Only the main process logs. Every write is atomic or fsynced, and on ``--resume`` rows after the
checkpoint's epoch are dropped (and TensorBoard purged from there), so a killed-and-resumed run has
one row per epoch::

    log = RunLogger(run_dir, start_epoch=0)
    log.epoch({"epoch": 1, "train_loss": 0.4, ...})
    log.close()
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nsnn.io import CsvLog, atomic_write, read_csv

METRIC_FIELDS = (
    "epoch",
    "train_loss",
    "train_reg",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "epoch_seconds",
    "images_per_second",
)


def _tensorboard_writer(run_dir: Path, purge_step: int) -> Any:
    """A SummaryWriter in ``run_dir/tensorboard``, or None when TensorBoard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge_step)


def plot_curves(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Loss, accuracy and learning rate per epoch from ``metrics.csv`` rows, saved as a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    def column(name: str) -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for row in rows:
            value = row.get(name, "")
            if value not in ("", None) and math.isfinite(float(value)):
                xs.append(float(row["epoch"]))
                ys.append(float(value))
        return xs, ys

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = (
        ("loss", ("train_loss", "val_loss")),
        ("accuracy", ("train_accuracy", "val_accuracy")),
        ("lr", ("lr",)),
    )
    for ax, (title, names) in zip(axes, panels, strict=True):
        for name in names:
            xs, ys = column(name)
            if xs:
                ax.plot(xs, ys, marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


# evaluations.csv columns an evaluation gives, rather than asks for (see distinct_evaluations)
_OUTCOME = frozenset({"accuracy", "loss", "seconds", "same_data_as_run"})
# evaluations.csv columns naming the data evaluated, told apart by data_key rather than compared as read
_DATA = frozenset({"data", "data_fingerprint"})


def data_key(row: Mapping[str, Any]) -> str:
    """Which data the ``evaluations.csv`` row ``row`` was evaluated on: ``"run's data"`` for the run's own
    test data (``same_data_as_run`` true), whatever folder held them; else ``"other data"`` (false) or
    ``"unchecked data"`` (null) with the hash of the samples evaluated (``data_fingerprint``), or the
    folder read (``data``) where a row has no hash (rows of an older nsnn have neither)."""
    checked = str(row.get("same_data_as_run"))
    if checked == "True":
        return "run's data"
    which = "other data" if checked == "False" else "unchecked data"
    return f"{which} {row.get('data_fingerprint') or row.get('data') or ''}".rstrip()


def distinct_evaluations(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One row per distinct evaluation of ``rows`` (``evaluations.csv``): rows that agree on every column
    but the outcome (accuracy, loss, seconds, same_data_as_run), and on the data evaluated
    (:func:`data_key`), repeat one seeded evaluation, e.g. a testing script run twice (the testing
    scripts record the snapshot's absolute path, however it was given); the latest such
    row is kept, in the place of the first. An evaluation on other data than the run's is another
    evaluation, never one that replaces the run's own."""
    latest: dict[tuple[tuple[str, str], ...], Mapping[str, Any]] = {}
    for row in rows:
        asked = sorted((k, str(v)) for k, v in row.items() if k not in _OUTCOME | _DATA)
        latest[(*asked, ("data", data_key(row)))] = row
    return list(latest.values())


def evaluation_label(row: Mapping[str, Any], name_seed: bool = False) -> str:
    """The y-axis label of an ``evaluations.csv`` row's bar: snapshot, mode, K, n, the perturbation if
    any, the seed with ``name_seed``, and the data when they are not the run's own (``other data:`` and
    the last two parts of the folder read, or ``data not checked:`` where a checkpoint of an older nsnn
    could not be checked)."""
    label = f"{Path(str(row['snapshot'])).stem}: {row['eval_mode']} K={row['n_ensembles']} n={row['n']}"
    if row.get("perturbation", "clean") != "clean":
        label += f", {row['perturbation']} {float(row['strength']):g}"
    if name_seed:
        label += f", seed {row.get('seed')}"
    folder = "/".join(Path(str(row.get("data") or "")).parts[-2:])
    checked = str(row.get("same_data_as_run"))
    if checked == "False":
        label += f", other data: {folder}" if folder else ", other data"
    elif checked != "True" and folder:
        label += f", data not checked: {folder}"
    return label


def plot_evaluations(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Horizontal bars of test accuracy, one per distinct evaluation (:func:`distinct_evaluations` of
    the ``evaluations.csv`` rows: snapshot, mode, K, n, ...), labelled on the y axis so that long labels
    never overlap (:func:`evaluation_label`); the seed is named when the evaluations have several, and
    evaluations on other data than the run's are labelled so and drawn in orange."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = distinct_evaluations(rows)
    seeds = {str(row.get("seed")) for row in rows}
    labels = [evaluation_label(row, name_seed=len(seeds) > 1) for row in rows]
    values = [100 * float(row["accuracy"]) for row in rows]
    colors = ["tab:orange" if str(row.get("same_data_as_run")) == "False" else "tab:blue" for row in rows]
    fig, ax = plt.subplots(figsize=(7.5, max(2.2, 0.42 * len(rows) + 1.2)))
    bars = ax.barh(range(len(values)), values, color=colors)
    ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
    ax.set_yticks(range(len(values)), labels, fontsize=8)
    ax.invert_yaxis()  # the first evaluation on top, as in evaluations.csv
    ax.set_xlabel("test accuracy (%)")
    low = min(values, default=0.0)
    ax.set_xlim(max(0.0, low - 5), 100)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


class RunLogger:
    """Per-epoch metrics for one run directory (a no-op object on non-main processes).

    Args:
        run_dir: the run directory.
        start_epoch: epochs already completed (on resume; later rows are dropped).
        enabled: False on non-main DDP ranks.
        tensorboard: write TensorBoard scalars if TensorBoard is installed.
    """

    def __init__(
        self, run_dir: str | Path, start_epoch: int = 0, enabled: bool = True, tensorboard: bool = True
    ):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        self.csv = CsvLog(self.run_dir / "metrics.csv", METRIC_FIELDS)
        self.csv.truncate_after("epoch", start_epoch)
        if tensorboard:
            # Epoch e is logged at step e: drop what a killed run wrote after its last checkpoint.
            self.writer = _tensorboard_writer(self.run_dir, purge_step=start_epoch + 1)

    def epoch(self, row: Mapping[str, Any]) -> None:
        """Append one epoch's metrics (keys from :data:`METRIC_FIELDS`), then redraw ``curves.png``."""
        if not self.enabled:
            return
        self.csv.append(row)
        if self.writer is not None:
            step = int(row["epoch"])
            for key, value in row.items():
                if key != "epoch" and value is not None and value != "":
                    self.writer.add_scalar(key.replace("_", "/", 1), float(value), step)
            self.writer.flush()
        plot_curves(read_csv(self.csv.path), self.run_dir / "curves.png")

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """Extra TensorBoard scalars (e.g. final test metrics)."""
        if self.enabled and self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, float(value), step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
