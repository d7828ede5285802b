"""Turn what the user points at (a module, a checkpoint, a BPTT or STDP run folder) into a typed source.

Accepted inputs and what they become::

    load_source(model)                  # nn.Module                          -> ModuleSource
    load_source("runs/bptt-1/best.pt")  # nsnn checkpoint file               -> ModuleSource
    load_source("runs/bptt-1")          # BPTT run dir (best.pt, else last.pt) -> ModuleSource
    load_source("runs/stdp-1")          # STDP run dir (weights.npz)         -> StdpRun
    load_source("runs/stdp-1/weights.npz")

A missing path raises ``FileNotFoundError``; a corrupt or inconsistent file, or an unsupported object,
raises ``ValueError`` naming the path and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from nsnn.compress import level_bits
from nsnn.io import load_npz, read_json
from nsnn.stdp.config import FULL_PRECISION_BITS
from nsnn.stdp.runio import PROGRESS, finish_hint

STDP_WEIGHTS = "weights.npz"
CHECKPOINT_NAMES = ("best.pt", "last.pt")
# Weights "before compression", best first: trained dense weights, the full-precision shadow of a net
# compressed during training, the initial weights.
_BEFORE_KEYS = ("w_xe_dense", "w_xe_shadow", "w_xe_initial")


@dataclass(frozen=True)
class StdpRun:
    """Weights of a Diehl & Cook STDP network (input X → excitatory Ae ↔ inhibitory Ai).

    ``w_xe`` and ``mask`` are ``[n_input, n_exc]`` (mask True = synapse alive); ``theta`` and
    ``assignments`` are ``[n_exc]`` (assignment −1: never fired). ``w_before`` is the dense weight
    matrix before compression when the run saved one (``before_key`` says which array).
    """

    w_xe: np.ndarray
    mask: np.ndarray
    assignments: np.ndarray
    theta: np.ndarray | None = None
    w_before: np.ndarray | None = None
    before_key: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None

    @property
    def n_input(self) -> int:
        return int(self.w_xe.shape[0])

    @property
    def n_exc(self) -> int:
        return int(self.w_xe.shape[1])

    @property
    def metrics(self) -> Path | None:
        return _metrics_in(self.run_dir)

    @property
    def configured_bits(self) -> int | None:
        """Bits per deployed weight from ``config.json``, as :func:`nsnn.stdp.pipeline.weight_bits`
        reports them: ⌈log₂(distinct levels)⌉ with explicit ``levels``, else ``bits`` below full
        precision; None when the run configured no quantization (or has no config)."""
        levels = self.config.get("levels")
        if levels:
            return level_bits(levels)
        bits = self.config.get("bits")
        if bits is not None and int(bits) < FULL_PRECISION_BITS:
            return int(bits)
        return None


@dataclass(frozen=True)
class ModuleSource:
    """A model to trace; ``checkpoint``/``run_dir`` are set when it was loaded from disk."""

    model: nn.Module
    checkpoint: dict[str, Any] | None = None
    path: Path | None = None
    run_dir: Path | None = None

    @property
    def metrics(self) -> Path | None:
        return _metrics_in(self.run_dir)

    def hint(self, *keys: str) -> Any:
        """First value found for ``keys`` in the checkpoint's ``model_kwargs`` then ``config``, then in
        the keywords an ``nsnn.models.create`` model keeps (``model.config["kwargs"]``)."""
        tables = []
        if self.checkpoint:
            tables += [self.checkpoint.get("model_kwargs") or {}, self.checkpoint.get("config") or {}]
        config = getattr(self.model, "config", None)
        if isinstance(config, dict) and isinstance(config.get("kwargs"), dict):
            tables.append(config["kwargs"])
        for table in tables:
            for key in keys:
                if table.get(key) is not None:
                    return table[key]
        return None


Source = StdpRun | ModuleSource


def _metrics_in(run_dir: Path | None) -> Path | None:
    if run_dir is None:
        return None
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return None
    try:
        with open(path, newline="") as f:
            next(f, None)  # the header
            return path if any(line.strip() for line in f) else None  # (a run in its first epoch: none)
    except UnicodeDecodeError:
        return path  # the curves figure names the unreadable file


def _evaluated_run(path: Path) -> str | None:
    """The run an STDP evaluation folder ``path`` evaluated (its config.json's ``run.sweep_of``), or None."""
    try:
        record = read_json(path / "config.json").get("run")
    except (OSError, ValueError, AttributeError):
        return None
    return record.get("sweep_of") if isinstance(record, dict) else None


def load_source(obj: Any) -> Source:
    """Resolve ``obj`` (``nn.Module``, path or an already loaded source) into a :data:`Source`."""
    if isinstance(obj, StdpRun | ModuleSource):
        return obj
    if isinstance(obj, nn.Module):
        return ModuleSource(obj)
    if not isinstance(obj, str | Path):
        raise ValueError(
            f"cannot visualize a {type(obj).__name__}; expected an nn.Module, an nsnn checkpoint (.pt), "
            "a BPTT run directory (best.pt/last.pt) or an STDP run directory (weights.npz)"
        )
    path = Path(obj).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    if path.is_dir():
        if (path / STDP_WEIGHTS).is_file():
            return load_stdp_run(path / STDP_WEIGHTS)
        checkpoint = next((path / n for n in CHECKPOINT_NAMES if (path / n).is_file()), None)
        if checkpoint is not None:
            return _load_checkpoint(checkpoint, run_dir=path)
        if (path / PROGRESS).is_file():
            raise ValueError(
                f"{path} is an STDP run that has not finished (no {STDP_WEIGHTS} yet); {finish_hint(path)}"
            )
        evaluated = _evaluated_run(path)
        if evaluated is not None:
            raise ValueError(
                f"{path} is an evaluation of the STDP run {evaluated} (--from-run), which keeps no weights; "
                f"give that run's folder instead: {evaluated}"
            )
        raise ValueError(
            f"{path} is neither an STDP run ({STDP_WEIGHTS}) nor a BPTT run ({' or '.join(CHECKPOINT_NAMES)})"
        )
    if path.suffix == ".npz":
        return load_stdp_run(path)
    if path.suffix in {".pt", ".pth"}:
        return _load_checkpoint(path, run_dir=path.parent)
    raise ValueError(
        f"unsupported file {path}: expected an nsnn checkpoint (.pt/.pth) or STDP weights (.npz)"
    )


def _load_checkpoint(path: Path, run_dir: Path) -> ModuleSource:
    try:
        from nsnn.training import load_model
    except ImportError as e:
        raise ValueError(
            f"reading the checkpoint {path} needs nsnn.training, which failed to import: {e}"
        ) from e
    try:
        model, checkpoint = load_model(path, map_location="cpu")
    except (KeyError, TypeError, RuntimeError, AttributeError) as e:  # a record of the wrong type, too
        lines = [line.strip() for line in str(e).strip().splitlines()]  # load_state_dict: one per tensor
        detail = " ".join(lines[:2]) + (f" (and {len(lines) - 2} more)" if len(lines) > 2 else "")
        raise ValueError(f"{path} is not a usable nsnn checkpoint: {type(e).__name__}: {detail}") from e
    return ModuleSource(model, checkpoint=checkpoint, path=path, run_dir=run_dir)


def load_stdp_run(path: str | Path) -> StdpRun:
    """Read and validate an STDP ``weights.npz`` (and the ``config.json`` beside it, if any)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such STDP weights file: {path}")
    arrays = load_npz(path)
    missing = [k for k in ("w_xe", "mask", "assignments") if k not in arrays]
    if missing:
        raise ValueError(
            f"{path} lacks {missing}; an STDP weights file holds w_xe, mask, assignments "
            f"(and optionally theta, {', '.join(_BEFORE_KEYS)}); found {sorted(arrays)}"
        )
    w_xe = np.asarray(arrays["w_xe"], dtype=np.float64)
    mask = np.asarray(arrays["mask"])
    if w_xe.ndim != 2 or mask.shape != w_xe.shape:
        raise ValueError(
            f"{path}: w_xe must be [n_input, n_exc] and mask the same shape; "
            f"got w_xe {list(w_xe.shape)}, mask {list(mask.shape)}"
        )
    if mask.dtype != np.bool_:
        raise ValueError(f"{path}: mask must be bool (True = synapse alive), got {mask.dtype}")
    n_exc = w_xe.shape[1]
    assignments = np.asarray(arrays["assignments"]).astype(np.int64)
    theta = arrays.get("theta")
    for name, arr in (("assignments", assignments), ("theta", theta)):
        if arr is not None and arr.shape != (n_exc,):
            raise ValueError(
                f"{path}: {name} must have shape [{n_exc}] (one per excitatory neuron), got {list(arr.shape)}"
            )
    before_key = next((k for k in _BEFORE_KEYS if k in arrays), "")
    w_before = np.asarray(arrays[before_key], dtype=np.float64) if before_key else None
    if w_before is not None and w_before.shape != w_xe.shape:
        raise ValueError(f"{path}: {before_key} has shape {list(w_before.shape)}, w_xe {list(w_xe.shape)}")
    config_path = path.parent / "config.json"
    config = read_json(config_path) if config_path.is_file() else {}
    if not isinstance(config, dict):
        raise ValueError(f"{config_path} must hold a JSON object, got a {type(config).__name__}")
    for key, size in (("n_input", w_xe.shape[0]), ("n_exc", n_exc)):
        if key in config and int(config[key]) != size:
            raise ValueError(f"{config_path}: {key}={config[key]} disagrees with {path} ({size})")
    return StdpRun(
        w_xe=w_xe,
        mask=mask,
        assignments=assignments,
        theta=None if theta is None else np.asarray(theta, dtype=np.float64),
        w_before=w_before,
        before_key=before_key,
        config=config,
        run_dir=path.parent,
    )
