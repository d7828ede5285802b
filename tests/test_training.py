"""nsnn.training: losses, regularizers, schedules, evaluation, checkpoints, exact resume, DDP.

Runs use a tiny ``mnist_convnet`` on a few hundred embedded MNIST images. The resume test kills a
training process with SIGKILL mid-epoch; the DDP test launches 2 CPU processes with torchrun.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nsnn
from nsnn.io import CsvLog, read_csv, read_json
from nsnn.training import (
    ConfigError,
    Perturbation,
    TrainConfig,
    build_loss,
    build_optimizer,
    build_scheduler,
    capture_rng,
    evaluate,
    fit,
    get_perturbation,
    gram_penalty,
    list_perturbations,
    load_model,
    mean_ce,
    neuron_eval_mode,
    per_step_ce,
    restore_rng,
    srip_penalty,
    tet_loss,
)
from nsnn.training.perturbations import PERTURBATIONS

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "dataset": "mnist",
    "model": "mnist_convnet",
    "arch": {"width": 4, "hidden": 16},
    "timestep": 2,
    "minibatch": 32,
    "max_samples": 240,
    "val_split": 0.2,
    "lr": 3e-3,
    "device": "cpu",
    "progress": False,
}


def _hand_ce(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Cross-entropy by the textbook formula, −log(e^{o_y} / Σ_c e^{o_c}), averaged with a Python loop."""
    total = 0.0
    for row, label in zip(logits.tolist(), y.tolist(), strict=True):
        total += -math.log(math.exp(row[label]) / sum(math.exp(v) for v in row))
    return total / len(y)


def test_losses_match_hand_computation():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 3, 4, 1])
    per_step = sum(_hand_ce(logits[t], y) for t in range(3)) / 3
    assert per_step_ce(logits, y).item() == pytest.approx(per_step, rel=1e-6)
    assert mean_ce(logits, y).item() == pytest.approx(_hand_ce(logits.mean(0), y), rel=1e-6)
    mse = sum((v - 1.0) ** 2 for v in logits.flatten().tolist()) / logits.numel()
    lam = 0.05
    assert tet_loss(logits, y, lam).item() == pytest.approx((1 - lam) * per_step + lam * mse, rel=1e-6)
    assert build_loss("tet", 0.3)(logits, y).item() == pytest.approx(0.7 * per_step + 0.3 * mse, rel=1e-6)
    assert build_loss("tet", 0.0)(logits, y).item() == pytest.approx(per_step, rel=1e-6)
    # build_loss("tet") has TET's own default weight (it was 0: plain per-step CE)
    assert build_loss("tet")(logits, y).item() == tet_loss(logits, y).item() != pytest.approx(per_step)
    # per-step CE differs from CE of the mean (Jensen): the two objectives really are different.
    assert per_step_ce(logits, y).item() > mean_ce(logits, y).item()


def test_loss_validation():
    with pytest.raises(ValueError, match="choose from"):
        build_loss("hinge")
    with pytest.raises(ValueError, match="lambda_tet"):
        build_loss("tet", 1.5)
    with pytest.raises(ValueError, match=r"\[T, B, classes\]"):
        per_step_ce(torch.zeros(4, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="target"):
        mean_ce(torch.zeros(2, 4, 5), torch.zeros(3, dtype=torch.long))


def test_gram_and_srip_regularizers():
    tall = nn.Linear(2, 3, bias=False)  # W [3, 2]: out > fan_in, so G = WᵀW
    conv = nn.Conv2d(2, 1, 1, bias=False)  # W [1, 2]: out ≤ fan_in, so G = W Wᵀ
    with torch.no_grad():
        tall.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]))
        conv.weight.copy_(torch.tensor([3.0, 4.0]).view(1, 2, 1, 1))
    net = nn.Sequential(conv, nn.BatchNorm2d(1), tall)
    # ‖diag(1, 4) − I‖_F = 3 and ‖[25] − 1‖_F = 24 (BatchNorm ignored).
    assert gram_penalty(net).item() == pytest.approx(27.0)
    # SRIP: G − I = diag(0, 3) → one power iteration gives the top eigenvalue exactly: 3² = 9; 24² = 576.
    assert srip_penalty(net, torch.Generator().manual_seed(0)).item() == pytest.approx(585.0, rel=1e-5)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the draws stay float32, like the weights they multiply
    try:
        penalty = srip_penalty(net, torch.Generator().manual_seed(0))
    finally:
        torch.set_default_dtype(default)
    assert penalty.dtype == torch.float32 and penalty.item() == pytest.approx(585.0, rel=1e-5)
    orthogonal = nn.Linear(4, 4, bias=False)
    nn.init.orthogonal_(orthogonal.weight)
    assert gram_penalty(orthogonal).item() < 1e-5
    # Gradients flow to the weights (the regularizer is trainable).
    gram_penalty(net).backward()
    assert tall.weight.grad is not None and tall.weight.grad.abs().sum() > 0


def test_optimizers_and_schedules():
    params = [nn.Parameter(torch.zeros(2))]
    for name in ("adam", "adamw", "radam", "sgdm"):
        assert build_optimizer(name, params, lr=0.1).param_groups[0]["lr"] == 0.1
    opt = build_optimizer("sgdm", params, lr=1.0)
    assert opt.param_groups[0]["momentum"] == 0.9
    sched = build_scheduler("cos", opt, epochs=4)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([(1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)])
    opt = build_optimizer("adam", params, lr=1.0)
    sched = build_scheduler("step", opt, epochs=8)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])
    with pytest.raises(ValueError, match="choose from"):
        build_optimizer("lbfgs", params, lr=0.1)
    with pytest.raises(ValueError, match="choose from"):
        build_scheduler("cyclic", opt, epochs=3)


def test_arch_help_and_error_name_the_keywords_arch_takes():
    # arch_kwargs lists num_classes/in_channels/image_size too, which the dataset sets: --arch's help and
    # its error say so (the help pointed at arch_kwargs alone, whose first keyword --arch then refused).
    from nsnn.training.config import build_train_parser
    from nsnn.training.recipes import RECIPES

    assert {"num_classes", "width", "hidden"} <= set(nsnn.models.arch_kwargs("mnist_convnet"))
    kept = r"\['hidden', 'width'\] \(its other arch_kwargs, num_classes, in_channels, image_size, are set"
    with pytest.raises(ConfigError, match=kept):
        TrainConfig(arch={"num_classes": 5})
    arch = next(a for a in build_train_parser("x", RECIPES["mnist"])._actions if a.dest == "arch")
    assert "arch_kwargs(name) less num_classes, in_channels, image_size" in arch.help


def test_config_validation_lists_choices():
    with pytest.raises(ConfigError, match=r"neuron must be one of.*NILIF"):
        TrainConfig(neuron="IF")
    with pytest.raises(ConfigError, match="epochs must be a positive integer"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="val_split"):
        TrainConfig(val_split=1.0)
    with pytest.raises(ConfigError, match="arch for 'mnist_convnet' takes keywords"):
        TrainConfig(arch={"depth": 3})
    with pytest.raises(ConfigError, match=r"got Linear \(a network of your own: .*register_model"):
        TrainConfig(model=nn.Linear(2, 2))  # fit takes zoo names; a user's network is registered first
    assert TrainConfig(tet=True).loss == "tet" and TrainConfig(tet=True) == TrainConfig(loss="tet")
    assert TrainConfig(scheduler="cos").scheduler == "cosine"
    with pytest.raises(ConfigError, match=r"seed must be an integer in \[0, 9223372036854775807\]"):
        TrainConfig(seed=2**63)  # torch.manual_seed overflowed with a raw traceback
    assert TrainConfig(seed=2**63 - 1).seed == 2**63 - 1
    cfg = TrainConfig(**TINY)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_rng_capture_restores_every_generator():
    state = capture_rng()
    first = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng(state)
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])
    assert first[2] == second[2]


class _Noisy(nn.Module):
    """Logits drawn from the global RNG at every call (stands in for a stochastic SNN)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.randn(x.shape[0], x.shape[1], 3) + self.w


def test_evaluate_averages_ensembles_and_applies_perturbations():
    x, y = torch.zeros(6, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    loader = [(x[:4], y[:4]), (x[4:], y[4:])]
    model = _Noisy()
    torch.manual_seed(5)
    result = evaluate(model, loader, timestep=2, n_ensembles=4, eval_mode="deterministic")
    assert model.calls == 8 and result["n"] == 6
    torch.manual_seed(5)
    correct, losses = 0, []
    for xb, yb in loader:
        logits = sum(torch.randn(2, xb.shape[0], 3) for _ in range(4)) / 4
        correct += int((logits.mean(0).argmax(-1) == yb).sum())
        losses.append(F.cross_entropy(logits.mean(0), yb, reduction="sum").item())
    assert result["accuracy"] == pytest.approx(correct / 6)
    assert result["loss"] == pytest.approx(sum(losses) / 6, rel=1e-6)
    assert model.training  # train flag restored

    class _Scale(Perturbation):
        name = "test_scale"

        def perturb_input(self, x, y, forward):
            assert forward(x).shape == (2, x.shape[0], 3)
            return x * self.strength

    try:
        assert "clean" in list_perturbations() and "test_scale" in list_perturbations()
        seen = []
        model.forward = lambda inp: seen.append(inp.clone()) or torch.zeros(inp.shape[0], inp.shape[1], 3)
        evaluate(
            model,
            [(torch.ones(2, 1, 2, 2), torch.tensor([0, 1]))],
            timestep=2,
            perturbation=get_perturbation("test_scale", 3.0),
        )
        assert torch.equal(seen[-1], torch.full((2, 2, 1, 2, 2), 3.0))
        cached = torch.tensor([[[2.0, 0.0, 0.0]]])  # a model that returns one stored tensor
        model.forward = lambda inp: cached
        batch = [(torch.ones(1, 1, 2, 2), torch.tensor([0]))]
        again = evaluate(model, batch, timestep=1, n_ensembles=3)
        assert torch.equal(cached, torch.tensor([[[2.0, 0.0, 0.0]]]))  # the ensemble sum left it alone
        assert again["loss"] == pytest.approx(F.cross_entropy(cached[0], torch.tensor([0])).item())
        with pytest.raises(ValueError, match="choose from"):
            get_perturbation("bogus")
    finally:
        PERTURBATIONS.pop("test_scale", None)


def test_evaluate_keeps_each_neurons_own_eval_mode_unless_given_one():
    # evaluate's default "stochastic" replaced the deterministic mode load_model had given the neurons
    from nsnn.models import create

    net = create("mnist_mlp", hidden=8, neuron="NILIF")
    nsnn.set_eval_mode(net, "deterministic")
    batch = [(torch.rand(5, 1, 28, 28), torch.arange(5))]
    runs = [evaluate(net, batch, timestep=3)["loss"] for _ in range(3)]
    assert len(set(runs)) == 1  # deterministic: no noise drawn
    torch.manual_seed(0)
    noisy = {evaluate(net, batch, timestep=3, eval_mode="stochastic")["loss"] for _ in range(3)}
    assert len(noisy) > 1 and {m.eval_mode for m in net.modules() if hasattr(m, "eval_mode")} == {
        "deterministic"
    }


def test_neuron_eval_mode_is_restored():
    from nsnn.models import create
    from nsnn.neurons import SpikingNeuron

    net = create("mnist_convnet", width=4, hidden=8, neuron="NILIF")
    with neuron_eval_mode(net, "expected"):
        assert {m.eval_mode for m in net.modules() if isinstance(m, SpikingNeuron)} == {"expected"}
    assert {m.eval_mode for m in net.modules() if isinstance(m, SpikingNeuron)} == {"stochastic"}
    with pytest.raises(ValueError, match="eval_mode must be one of"), neuron_eval_mode(net, "mean"):
        pass
    assert neuron_eval_mode is nsnn.neuron_eval_mode  # one implementation, nsnn.layers'
    lif = create("mnist_convnet", width=4, hidden=8, neuron="LIF")  # deterministic: eval_mode is unused
    with neuron_eval_mode(lif, "expected"):
        assert {m.eval_mode for m in lif.modules() if isinstance(m, SpikingNeuron)} == {"stochastic"}


def test_evaluate_restores_every_modules_own_train_flag():
    # a model training with frozen BatchNorm (its BN layers in eval mode) keeps them frozen
    from nsnn.models import create

    net = create("mnist_convnet", width=4, hidden=8, neuron="LIF").train()
    frozen = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert frozen
    for bn in frozen:
        bn.eval()
    batches = [(torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,)))]
    evaluate(net, batches, timestep=2, progress=False)
    assert net.training and not any(bn.training for bn in frozen)


def _torch_load_strict(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_fit_learns_mnist_digits(tmp_path):
    # 480 real digits, 3 epochs: 44-46 % test accuracy over seeds 0-2 (chance 10 %). Training on
    # shuffled labels or without optimizer steps stays near chance (12 % measured).
    result = fit(TrainConfig(**{**TINY, "max_samples": 600, "epochs": 3, "out": str(tmp_path / "run")}))
    losses = [float(r["train_loss"]) for r in read_csv(Path(result["run_dir"]) / "metrics.csv")]
    assert losses[-1] < losses[0] - 0.1, losses
    assert result["test_accuracy"] > 0.3, result


def test_fit_writes_run_dir_and_loadable_checkpoints(tmp_path):
    cfg = TrainConfig(**TINY, epochs=2, out=str(tmp_path / "run"), reg="gram", lambda1=1e-4)
    result = fit(cfg)
    run = Path(result["run_dir"])
    for name in ("config.json", "metrics.csv", "last.pt", "best.pt", "curves.png", "summary.json"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    rows = read_csv(run / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds"):
        assert math.isfinite(float(rows[0][key])), key
    assert float(rows[0]["train_reg"]) > 0
    assert 0.0 <= result["test_accuracy"] <= 1.0 and 0.0 <= result["best_val_accuracy"] <= 1.0
    assert read_json(run / "summary.json")["test_accuracy"] == result["test_accuracy"]
    assert read_json(run / "config.json")["model"] == "mnist_convnet"

    ckpt = _torch_load_strict(run / "last.pt")  # weights_only=True, no custom globals
    assert ckpt["format"] == "nsnn-checkpoint-1" and ckpt["epoch"] == 2
    assert ckpt["model_name"] == "mnist_convnet" and ckpt["model_kwargs"]["width"] == 4
    assert not [k for k in ckpt["model"] if k.startswith(("module.", "_orig_mod."))]
    for key in ("optimizer", "scheduler", "scaler", "rng", "config", "metrics"):
        assert key in ckpt, key
    assert isinstance(ckpt["rng"][0]["torch"], torch.Tensor)
    json.dumps(ckpt["model_kwargs"])
    json.dumps(ckpt["config"])

    model, best = load_model(run)  # a run dir means best.pt
    assert not model.training and best["epoch"] == result["best_epoch"]
    for key, value in _torch_load_strict(run / "best.pt")["model"].items():
        assert torch.equal(model.state_dict()[key], value)
    torch.manual_seed(0)
    x = torch.rand(3, 1, 28, 28)
    with neuron_eval_mode(model, "deterministic"):
        out = model(x.unsqueeze(0).repeat(2, 1, 1, 1, 1))
    assert out.shape == (2, 3, 10)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nowhere")

    # Resuming a finished run trains nothing more: its training time stays that of its epochs (it was
    # the resumed session's time alone), and the seeded test pass gives the same figures again.
    assert ckpt["metrics"]["train_seconds"] == result["train_seconds"] > 0
    again = fit(TrainConfig(resume=str(run), progress=False))
    assert again["train_seconds"] == result["train_seconds"]
    assert (again["test_accuracy"], again["test_loss"]) == (result["test_accuracy"], result["test_loss"])


def test_new_run_refuses_a_used_folder_and_amp_resume_crosses_devices(tmp_path, monkeypatch, capsys):
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match=r"already holds files \(notes.txt\); choose a new folder$"):
        fit(TrainConfig(**TINY, epochs=1, out=str(used)))  # no run there: no hint to --resume it
    assert [p.name for p in used.iterdir()] == ["notes.txt"]
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match=r"is a file, not a folder$"):
        fit(TrainConfig(**TINY, epochs=1, out=str(tmp_path / "afile")))
    killed = tmp_path / "killed-in-first-save"  # only the temp file of a save cut off by a SIGKILL
    killed.mkdir()
    (killed / ".last.pt.a1b2c3d4.tmp").write_bytes(b"PK")
    fit(TrainConfig(**TINY, epochs=1, out=str(killed)))
    assert not (killed / ".last.pt.a1b2c3d4.tmp").exists() and (killed / "last.pt").is_file()
    with pytest.raises(ConfigError, match="--cutout 29 is larger than mnist's 28-pixel images"):
        fit(TrainConfig(**TINY, epochs=1, cutout=29, out=str(tmp_path / "blank")))
    assert not (tmp_path / "blank").exists()

    # A CPU --amp run (its disabled GradScaler saves {}) resumes where the scaler is enabled (CUDA fp16).
    run = tmp_path / "amp"
    settings = {**TINY, "max_samples": 120, "amp": True, "epochs": 2}

    def stop(epoch: int, step: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(**settings, out=str(run)), on_step=stop)
    assert _torch_load_strict(run / "last.pt")["scaler"] == {}
    from nsnn.training.runtime import Runtime

    monkeypatch.setattr(Runtime, "grad_scaler", lambda self: torch.amp.GradScaler("cpu", enabled=True))
    result = fit(TrainConfig(**settings, resume=str(run)))
    last = _torch_load_strict(run / "last.pt")
    assert last["epoch"] == 2 and last["scaler"]["scale"] > 0
    # The testing tool evaluates an --amp run under AMP unless told otherwise (the run's own setting), so
    # it reproduces the test figures the run reported.
    from nsnn.training.cli import test_main

    monkeypatch.undo()
    assert test_main(["--snapshot", str(run), "--json", "--out", str(tmp_path / "amp-evals")]) == 0
    tested = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (tested["accuracy"], tested["loss"]) == (result["test_accuracy"], result["test_loss"])


@contextlib.contextmanager
def _killed_before_saving(name: str, epoch: int) -> Iterator[None]:
    """Training is interrupted (KeyboardInterrupt) just before it saves checkpoint ``name`` of ``epoch``."""
    import nsnn.training.trainer as trainer

    real = trainer.save_checkpoint

    def save(state: dict, path: Path) -> Path:
        if path.name == name and state["epoch"] == epoch:
            raise KeyboardInterrupt
        return real(state, path)

    trainer.save_checkpoint = save
    try:
        yield
    finally:
        trainer.save_checkpoint = real


def test_kill_between_last_and_best_checkpoint_is_completed_on_resume(tmp_path):
    """An improved epoch saves last.pt, then best.pt; killed in between, best.pt still holds an older
    model, so resume copies last.pt (that epoch's model) to best.pt before going on."""
    settings = {**TINY, "epochs": 2, "val_split": 0.0}  # no validation: every epoch is the best so far
    straight = fit(TrainConfig(**settings, out=str(tmp_path / "straight")))
    run = tmp_path / "run"
    with _killed_before_saving("best.pt", 2), pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(**settings, out=str(run)))
    assert (
        _torch_load_strict(run / "last.pt")["epoch"] == 2
        and _torch_load_strict(run / "best.pt")["epoch"] == 1
    )
    resumed = fit(TrainConfig(**settings, resume=str(run)))
    best = _torch_load_strict(run / "best.pt")
    assert best["epoch"] == resumed["best_epoch"] == 2
    for key, value in _torch_load_strict(tmp_path / "straight" / "best.pt")["model"].items():
        assert torch.equal(best["model"][key], value), key
    assert resumed["test_accuracy"] == straight["test_accuracy"]
    with pytest.raises(ConfigError, match="resume continues in the run's own folder"):
        fit(TrainConfig(**settings, resume=str(run), out=str(tmp_path / "elsewhere")))


def test_final_test_uses_the_eager_net_as_the_testing_script_does(tmp_path, monkeypatch, capsys):
    """With --compile the trained model is a compiled wrapper whose random numbers differ from the eager
    net's; the test pass that ends training evaluates the eager net, as testing_*.py does, so the two
    report the same figures. A wrapper that halves the logits stands in for the compiled model here."""
    import nsnn.training.experiment as experiment
    from nsnn.training.cli import main

    class Halved(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x) * 0.5

    real = experiment.wrap_model
    monkeypatch.setattr(experiment, "wrap_model", lambda net, rt, compile: Halved(real(net, rt, compile)))
    result = fit(TrainConfig(**TINY, epochs=1, out=str(tmp_path / "run")))
    monkeypatch.undo()
    assert main(["test", "--snapshot", str(tmp_path / "run"), "--json"]) == 0
    tested = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (tested["accuracy"], tested["loss"]) == (result["test_accuracy"], result["test_loss"])


def test_ctrl_c_waits_for_the_epochs_bookkeeping():
    from nsnn.training.runtime import sigint_deferred

    done, before = [], signal.getsignal(signal.SIGINT)  # brian2, once imported, installs its own
    with pytest.raises(KeyboardInterrupt), sigint_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the signal is handled in the meantime
        done.append("saved")
    assert done == ["saved"]
    assert signal.getsignal(signal.SIGINT) is before


def test_resume_from_a_first_epoch_checkpoint_rewrites_tensorboard_steps_once(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    with _killed_before_saving("last.pt", 1), pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(**TINY, epochs=2, out=str(run)))  # epoch 1 is logged, last.pt still epoch 0
    fit(TrainConfig(**TINY, epochs=2, resume=str(run)))
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]
    assert [r["epoch"] for r in read_csv(run / "metrics.csv")] == ["1", "2"]


def test_config_json_keeps_the_runs_folder_through_a_resume_from_elsewhere(tmp_path, monkeypatch):
    # A resume rewrote config.json with "out": null and "resume": the path as typed, relative to the
    # folder the resume was started from.
    monkeypatch.chdir(tmp_path)
    with _killed_before_saving("last.pt", 1), pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(**TINY, epochs=1, out="run"))
    run = (tmp_path / "run").resolve()
    assert (read_json(run / "config.json")["out"], read_json(run / "config.json")["resume"]) == (
        str(run),
        None,
    )
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    fit(TrainConfig(**TINY, epochs=1, resume="../run"))
    config = read_json(run / "config.json")
    assert (config["out"], config["resume"], config["epochs"]) == (str(run), None, 1)


def _mnist_folder(folder: Path, n: int, n_test: int | None = None) -> Path:
    """A full-MNIST folder (the four idx files): the first ``n`` embedded images are the training split,
    the first ``n_test`` (default ``n``) the test split."""
    from nsnn.data import load_embedded_mnist

    data = load_embedded_mnist()
    folder.mkdir()
    for prefix, size in (("train", n), ("t10k", n if n_test is None else n_test)):
        for stem, tensor in (("images-idx3", data.images[:size]), ("labels-idx1", data.labels[:size])):
            array = tensor.numpy()
            dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
            payload = bytes([0, 0, 8, array.ndim]) + dims + array.astype(np.uint8).tobytes()
            (folder / f"{prefix}-{stem}-ubyte").write_bytes(payload)
    return folder


def test_run_stopped_in_its_first_epoch_resumes_exactly_and_only_on_its_own_data(tmp_path):
    settings = {**TINY, "epochs": 1, "seed": 3}
    fit(TrainConfig(**settings, out=str(tmp_path / "straight")))

    def stop(epoch: int, step: int) -> None:
        if step == 2:
            raise KeyboardInterrupt

    stopped = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(**settings, out=str(stopped)), on_step=stop)
    assert _torch_load_strict(stopped / "last.pt")["epoch"] == 0
    folder = _mnist_folder(tmp_path / "mnist", 300)
    with pytest.raises(ConfigError, match=r"embedded False \(run: True\)"):
        fit(TrainConfig(**settings, resume=str(stopped), data_dir=str(folder)))
    # The API refuses another experiment on resume, as the command line does (a field set to neither its
    # default nor the run's value); the run's own values and defaults pass.
    with pytest.raises(ConfigError, match=r"these fields differ: lr 0\.5 \(run: 0\.003\)"):
        fit(TrainConfig(**{**settings, "lr": 0.5}, resume=str(stopped)))
    fit(TrainConfig(**settings, resume=str(stopped)))
    a, b = _torch_load_strict(tmp_path / "straight" / "last.pt"), _torch_load_strict(stopped / "last.pt")
    assert b["epoch"] == 1
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key

    # A run on a data folder, resumed without --data-dir, stays on that folder.
    on_folder = tmp_path / "on-folder"
    with pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(**settings, out=str(on_folder), data_dir=str(folder)), on_step=stop)
    # ... and refuses a folder of other data with the same sizes (here: the labels shifted by one).
    other = _mnist_folder(tmp_path / "other", 300)
    labels = other / "train-labels-idx1-ubyte"
    header, payload = labels.read_bytes()[:8], np.frombuffer(labels.read_bytes()[8:], np.uint8)
    labels.write_bytes(header + ((payload + 1) % 10).astype(np.uint8).tobytes())
    with pytest.raises(ConfigError, match="other images or labels of the same sizes"):
        fit(TrainConfig(**settings, resume=str(on_folder), data_dir=str(other)))
    fit(TrainConfig(**settings, resume=str(on_folder)))
    assert read_json(on_folder / "config.json")["data_dir"] == str(folder)
    assert _torch_load_strict(on_folder / "last.pt")["dataset"]["embedded"] is False


def test_a_relative_data_dir_is_recorded_absolute(tmp_path, monkeypatch):
    """The run's config names the data folder absolutely, so testing and --resume started from another
    working directory load the same data."""
    _mnist_folder(tmp_path / "mnist", 300)
    monkeypatch.chdir(tmp_path)

    def stop(epoch: int, step: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(**TINY, epochs=1, out=str(tmp_path / "run"), data_dir="mnist"), on_step=stop)
    assert read_json(tmp_path / "run" / "config.json")["data_dir"] == str(tmp_path / "mnist")


def test_json_files_and_lines_are_strict_json(tmp_path):
    """NaN and ±inf (a diverged loss) are written as null, which every JSON parser reads; Python's
    default would write the non-standard NaN / Infinity."""
    from nsnn.io import json_text, write_json

    data = {"loss": float("nan"), "best": np.float32(np.inf), "curve": torch.tensor([0.5, -np.inf]), "n": 3}

    def refuse(word: str) -> None:
        raise ValueError(f"non-standard JSON constant {word}")

    write_json(tmp_path / "summary.json", data)
    for text in ((tmp_path / "summary.json").read_text(), json_text(data)):
        read = json.loads(text, parse_constant=refuse)
        assert read == {"loss": None, "best": None, "curve": [0.5, None], "n": 3}


def test_download_run_records_its_data_folder_for_testing_and_resume(tmp_path, monkeypatch, capsys):
    """--download without --data-dir trains on full MNIST in the default folder; the run's config must
    name that folder, or testing and --resume rebuild the embedded split."""
    from nsnn.training.cli import main

    folder = _mnist_folder(tmp_path / "default-data", 300, n_test=50)
    monkeypatch.setenv("NSNN_DATA_DIR", str(folder))  # found there, so nothing is downloaded
    settings = {**TINY, "epochs": 1}
    run = tmp_path / "run"

    def stop(epoch: int, step: int) -> None:
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(**settings, out=str(run), download=True), on_step=stop)
    assert read_json(run / "config.json")["data_dir"] == str(folder.resolve())
    assert _torch_load_strict(run / "last.pt")["config"]["data_dir"] == str(folder.resolve())
    # --download with --data-dir records the folder given, not the default one.
    given = _mnist_folder(tmp_path / "given-data", 300, n_test=50)
    explicit = tmp_path / "explicit"
    with pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(**settings, out=str(explicit), download=True, data_dir=str(given)), on_step=stop)
    assert read_json(explicit / "config.json")["data_dir"] == str(given)
    assert _torch_load_strict(explicit / "last.pt")["config"]["data_dir"] == str(given)

    monkeypatch.delenv("NSNN_DATA_DIR")  # testing and resuming no longer depend on the default folder
    fit(TrainConfig(**settings, resume=str(run)))
    assert _torch_load_strict(run / "last.pt")["dataset"]["test_size"] == 50
    assert main(["test", "--snapshot", str(run), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out.strip().splitlines()[-1])["n"] == 50 and "warning" not in err


def _dvs_folder(folder: Path, shape: tuple[int, int, int, int], n: int = 8) -> Path:
    """Stacked DVS-CIFAR10 splits ``train.pt`` / ``test.pt``, each ``n`` random frames of ``shape``."""
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        data = {"frames": torch.rand((n, *shape), generator=g), "labels": torch.arange(n) % 10}
        torch.save(data, folder / f"{split}.pt")
    return folder


@pytest.mark.parametrize(
    ("shape", "problem"),
    [((4, 2, 8, 8), "time steps 4 (run: 3)"), ((3, 2, 6, 6), "image_size 6 (run: 8)")],
)
def test_testing_on_dvs_frames_of_another_shape_is_a_flag_error(tmp_path, capsys, shape, problem):
    from nsnn.training.cli import main

    dvs = _dvs_folder(tmp_path / "dvs", (3, 2, 8, 8))
    settings = {**TINY, "dataset": "dvs-cifar10", "model": "mnist_mlp", "arch": {"hidden": 8}, "timestep": 3}
    settings.update(minibatch=4, val_split=0.0, epochs=1, data_dir=str(dvs), out=str(tmp_path / "run"))
    fit(TrainConfig(**settings))
    other = _dvs_folder(tmp_path / "other", shape)
    with pytest.raises(SystemExit) as exited:
        main(["test", "--snapshot", str(tmp_path / "run"), "--data-dir", str(other)])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "Traceback" not in err
    assert f"was trained on other data than {other} holds: {problem}" in err


def test_default_data_folder_is_recorded_and_testing_flags_other_data(tmp_path, monkeypatch, capsys):
    """A dataset read from the default folder ($NSNN_DATA_DIR or ./data) without --data-dir: the run's config
    names that folder, so testing from elsewhere reads the same data; other data (--data-dir) are tested
    with a warning and ``same_data_as_run`` false."""
    from nsnn.training.cli import main

    dvs = _dvs_folder(tmp_path / "dvs", (3, 2, 8, 8))
    monkeypatch.setenv("NSNN_DATA_DIR", str(dvs))
    settings = {**TINY, "dataset": "dvs-cifar10", "model": "mnist_mlp", "arch": {"hidden": 8}, "timestep": 3}
    settings.update(minibatch=4, val_split=0.0, epochs=1, out=str(tmp_path / "run"))
    fit(TrainConfig(**settings))
    assert read_json(tmp_path / "run" / "config.json")["data_dir"] == str(dvs.resolve())

    other = tmp_path / "other"
    shutil.copytree(dvs, other)
    test_set = torch.load(other / "test.pt")
    torch.save({**test_set, "labels": (test_set["labels"] + 1) % 10}, other / "test.pt")
    monkeypatch.setenv("NSNN_DATA_DIR", str(other))  # another default folder now: the run's is still read
    assert main(["test", "--snapshot", str(tmp_path / "run"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out.strip().splitlines()[-1])["same_data_as_run"] is True and "warning" not in err
    assert main(["test", "--snapshot", str(tmp_path / "run"), "--data-dir", str(other), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out.strip().splitlines()[-1])["same_data_as_run"] is False
    assert f"warning: the data read from {other}" in err and "not the run's test figure" in err


def _cifar10_folder(folder: Path, per_file: int = 6) -> Path:
    """A CIFAR-10 python folder: five training batches, ``test_batch`` and ``batches.meta``, each batch
    ``per_file`` random images."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (per_file, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, per_file).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"c%d" % i for i in range(10)]}))
    return folder


def test_testing_reads_the_test_split_alone_and_checks_it_is_the_runs(tmp_path, capsys):
    """Testing read the training split too (to hash it with the test split): a CIFAR-10 folder holding
    only ``test_batch``, or a DVS folder holding only its test split, failed, and DVS testing held every
    training frame in memory. The checkpoint now records a hash of the test split alone."""
    from nsnn.training.cli import test_main

    full = _cifar10_folder(tmp_path / "full" / "cifar-10-batches-py")
    settings = {**TINY, "dataset": "cifar10", "model": "mnist_mlp", "arch": {"hidden": 8}}
    settings.update(max_samples=0, minibatch=8, val_split=0.0, epochs=1, data_dir=str(full.parent))
    fit(TrainConfig(**settings, out=str(tmp_path / "run")))
    alone = tmp_path / "test-only" / "cifar-10-batches-py"
    alone.mkdir(parents=True)
    shutil.copy(full / "test_batch", alone / "test_batch")
    argv = ["--snapshot", str(tmp_path / "run"), "--data-dir", str(alone.parent), "--json"]
    assert test_main(argv, dataset="cifar10") == 0
    out, err = capsys.readouterr()
    tested = json.loads(out.strip().splitlines()[-1])
    assert tested["same_data_as_run"] is True and tested["n"] == 6 and "warning" not in err
    assert tested["accuracy"] == read_json(tmp_path / "run" / "summary.json")["test_accuracy"]
    # other test images in a test-only folder are still told from the run's
    batch = pickle.loads((alone / "test_batch").read_bytes())
    batch[b"labels"] = [(label + 1) % 10 for label in batch[b"labels"]]
    (alone / "test_batch").write_bytes(pickle.dumps(batch))
    assert test_main(argv, dataset="cifar10") == 0
    out, err = capsys.readouterr()
    assert json.loads(out.strip().splitlines()[-1])["same_data_as_run"] is False
    assert f"warning: the data read from {alone}" in err

    dvs = _dvs_folder(tmp_path / "dvs", (3, 2, 8, 8))
    settings.update(dataset="dvs-cifar10", timestep=3, minibatch=4, data_dir=str(dvs))
    fit(TrainConfig(**settings, out=str(tmp_path / "dvs-run")))
    dvs_alone = tmp_path / "dvs-test-only"
    dvs_alone.mkdir()
    shutil.copy(dvs / "test.pt", dvs_alone / "test.pt")
    argv = ["--snapshot", str(tmp_path / "dvs-run"), "--data-dir", str(dvs_alone), "--json"]
    assert test_main(argv, dataset="dvs-cifar10") == 0
    out, err = capsys.readouterr()
    assert json.loads(out.strip().splitlines()[-1])["same_data_as_run"] is True and "warning" not in err
    # DVS-CIFAR10 has no download: --download, which did nothing, is refused
    with pytest.raises(SystemExit) as exited:
        test_main([*argv, "--download"], dataset="dvs-cifar10")
    assert exited.value.code == 2 and "--download does nothing for dvs-cifar10" in capsys.readouterr().err


def test_testing_a_checkpoint_without_a_test_hash_checks_its_data_as_it_was_hashed(tmp_path, capsys):
    """A checkpoint of an older nsnn hashed its training and test data together: testing, which reads the
    test split alone, hashes the whole dataset as the run did when its training split can be read (other
    data of the same sizes were told from the run's before test_fingerprint, and must still be), else
    compares the test set's size and says the data are not checked."""
    from nsnn.training.cli import test_main

    full = _cifar10_folder(tmp_path / "full" / "cifar-10-batches-py")
    settings = {**TINY, "dataset": "cifar10", "model": "mnist_mlp", "arch": {"hidden": 8}}
    settings.update(max_samples=0, minibatch=8, val_split=0.0, epochs=1, data_dir=str(full.parent))
    run = tmp_path / "run"
    fit(TrainConfig(**settings, out=str(run)))
    ckpt = _torch_load_strict(run / "best.pt")
    del ckpt["dataset"]["test_fingerprint"]
    torch.save(ckpt, run / "best.pt")

    def tested(data_dir: Path) -> tuple[bool | None, str]:
        argv = ["--snapshot", str(run), "--data-dir", str(data_dir), "--json"]
        assert test_main(argv, dataset="cifar10") == 0
        out, err = capsys.readouterr()
        return json.loads(out.strip().splitlines()[-1])["same_data_as_run"], err

    assert tested(full.parent) == (True, "")
    other = _cifar10_folder(tmp_path / "other" / "cifar-10-batches-py")  # same sizes, other training labels
    batch = pickle.loads((other / "data_batch_1").read_bytes())
    batch[b"labels"] = [(label + 1) % 10 for label in batch[b"labels"]]
    (other / "data_batch_1").write_bytes(pickle.dumps(batch))
    same, err = tested(other.parent)
    assert same is False and f"warning: the data read from {other}" in err
    alone = tmp_path / "test-only" / "cifar-10-batches-py"
    alone.mkdir(parents=True)
    shutil.copy(full / "test_batch", alone / "test_batch")
    same, err = tested(alone.parent)
    assert same is None and "records no hash of its test data alone" in err and "warning" not in err
    ckpt["dataset"]["test_size"] += 1  # a test set of another size is not the run's
    torch.save(ckpt, run / "best.pt")
    same, err = tested(alone.parent)
    assert same is False and "warning: the data read from" in err


def test_testing_checks_the_data_are_the_runs_whatever_its_max_samples(tmp_path, capsys):
    """Testing skipped the data check (same_data_as_run null, no warning) whenever --max-samples differed
    from the run's, README's --max-samples 0 included: the run's hash covers its seeded subset of the test
    split, which is now taken from the test split read whatever the evaluation's --max-samples."""
    from nsnn.training.cli import test_main

    full = _cifar10_folder(tmp_path / "full" / "cifar-10-batches-py", per_file=10)
    settings = {**TINY, "dataset": "cifar10", "model": "mnist_mlp", "arch": {"hidden": 8}}
    settings.update(max_samples=8, minibatch=4, val_split=0.0, epochs=1, data_dir=str(full.parent))
    run = tmp_path / "run"
    fit(TrainConfig(**settings, out=str(run)))
    other = _cifar10_folder(tmp_path / "other" / "cifar-10-batches-py", per_file=10)
    batch = pickle.loads((other / "test_batch").read_bytes())
    batch[b"labels"] = [(label + 1) % 10 for label in batch[b"labels"]]
    (other / "test_batch").write_bytes(pickle.dumps(batch))

    def tested(data_dir: Path, max_samples: str | None) -> tuple[dict, str]:
        argv = ["--snapshot", str(run), "--data-dir", str(data_dir), "--json"]
        assert (
            test_main([*argv, *(["--max-samples", max_samples] if max_samples else [])], dataset="cifar10")
            == 0
        )
        out, err = capsys.readouterr()
        return json.loads(out.strip().splitlines()[-1]), err

    for max_samples, n in ((None, 8), ("0", 10), ("5", 5), ("30", 10)):
        result, err = tested(full.parent, max_samples)
        assert (result["same_data_as_run"], result["n"]) == (True, n) and "warning" not in err
        result, err = tested(other.parent, max_samples)
        assert (result["same_data_as_run"], result["n"]) == (False, n), max_samples
        assert f"warning: the data read from {other}" in err
    # a checkpoint of an older nsnn (no test_fingerprint) is checked by its whole-dataset hash, as the
    # run read it, also for another --max-samples
    ckpt = _torch_load_strict(run / "best.pt")
    del ckpt["dataset"]["test_fingerprint"]
    torch.save(ckpt, run / "best.pt")
    assert tested(full.parent, "0")[0]["same_data_as_run"] is True
    assert tested(other.parent, "0")[0]["same_data_as_run"] is False


def test_evaluations_plot_shows_a_repeated_evaluation_once(tmp_path):
    # Testing a run again (or resuming a finished run) appends the same seeded evaluations to
    # evaluations.csv, and evaluations.png drew every row: 9 bars for 4 distinct evaluations.
    import matplotlib.image

    from nsnn.training.monitor import distinct_evaluations, plot_evaluations

    def row(mode: str, k: int, accuracy: float, seed: int = 0) -> dict[str, object]:
        return {
            "snapshot": "run/best.pt",
            "eval_mode": mode,
            "n_ensembles": k,
            "n": 2000,
            "seed": seed,
            "perturbation": "clean",
            "strength": 0.0,
            "accuracy": accuracy,
            "seconds": accuracy,
        }

    first = [row("stochastic", 1, 0.95), row("deterministic", 1, 0.96), row("expected", 1, 0.97)]
    rows = [
        *first,
        row("stochastic", 8, 0.955),
        *first,
        row("stochastic", 1, 0.951),
        row("stochastic", 1, 0.9, 1),
    ]
    distinct = distinct_evaluations(rows)
    assert [(r["eval_mode"], r["n_ensembles"], r["seed"]) for r in distinct] == [
        ("stochastic", 1, 0),
        ("deterministic", 1, 0),
        ("expected", 1, 0),
        ("stochastic", 8, 0),
        ("stochastic", 1, 1),
    ]
    assert distinct[0]["accuracy"] == 0.951  # the latest of a repeated evaluation, in the first's place
    height = matplotlib.image.imread(plot_evaluations(rows, tmp_path / "e.png")).shape[0]
    assert height == round((0.42 * 5 + 1.2) * 110)  # five bars, not nine


def test_evaluations_on_other_data_are_kept_apart_from_the_runs_own(tmp_path, capsys, monkeypatch):
    """An evaluation on other data differed from the run's own only in its outcome columns (accuracy,
    loss, same_data_as_run): evaluations.png drew it in place of the run's own result. Rows now name
    the data evaluated, which tell evaluations apart; rows of an older nsnn, without them, still read."""
    from nsnn.training.cli import test_main
    from nsnn.training.monitor import distinct_evaluations, evaluation_label

    full = _cifar10_folder(tmp_path / "full" / "cifar-10-batches-py")
    settings = {**TINY, "dataset": "cifar10", "model": "mnist_mlp", "arch": {"hidden": 8}}
    settings.update(max_samples=0, minibatch=6, val_split=0.0, epochs=1, data_dir=str(full.parent))
    run = tmp_path / "run"
    fit(TrainConfig(**settings, out=str(run)))
    copy = tmp_path / "copy" / "cifar-10-batches-py"
    shutil.copytree(full, copy)
    other = _cifar10_folder(tmp_path / "other" / "cifar-10-batches-py")
    batch = pickle.loads((other / "test_batch").read_bytes())
    batch[b"labels"] = [(label + 1) % 10 for label in batch[b"labels"]]
    (other / "test_batch").write_bytes(pickle.dumps(batch))
    results = []
    for folder in (full, full, other, copy, other):
        argv = ["--snapshot", str(run), "--data-dir", str(folder.parent), "--eval-mode", "deterministic"]
        assert test_main([*argv, "--json"], dataset="cifar10") == 0
        results.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
        if len(results) == 1:  # as an older nsnn wrote it: the row without the data columns
            (row,) = read_csv(run / "evaluations.csv")
            old = {k: v for k, v in row.items() if k not in ("data", "data_fingerprint")}
            (run / "evaluations.csv").unlink()
            CsvLog(run / "evaluations.csv", list(old)).append(old)
    assert [r["data"] for r in results] == [str(full), str(full), str(other), str(copy), str(other)]
    assert results[0]["data_fingerprint"] == results[3]["data_fingerprint"] != results[2]["data_fingerprint"]
    rows = read_csv(run / "evaluations.csv")
    assert len(rows) == 5 and rows[0]["data"] == "" and rows[1]["data"] == str(full)
    distinct = distinct_evaluations(rows)
    # the old row and the run's data read from two folders are one evaluation; the other data another
    assert [(r["data"], r["same_data_as_run"]) for r in distinct] == [
        (str(copy), "True"),
        (str(other), "False"),
    ]
    assert float(distinct[0]["accuracy"]) == results[0]["accuracy"]
    assert evaluation_label(distinct[0]) == "best: deterministic K=1 n=6"
    assert evaluation_label(distinct[1]) == (
        "best: deterministic K=1 n=6, other data: other/cifar-10-batches-py"
    )
    # two other data sets read from one folder, one after the other, are two evaluations
    swapped = {**distinct[1], "data_fingerprint": "0" * 32}
    assert len(distinct_evaluations([*rows, swapped])) == 3
    assert (run / "evaluations.png").is_file()
    # relative paths from another folder: the same evaluation, recorded with absolute paths (each way of
    # writing the snapshot or the data folder was a bar of its own)
    monkeypatch.chdir(run)
    argv = ["--snapshot", ".", "--data-dir", "../other", "--eval-mode", "deterministic", "--json"]
    assert test_main(argv, dataset="cifar10") == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (last["snapshot"], last["data"]) == (str((run / "best.pt").resolve()), str(other.resolve()))
    assert len(distinct_evaluations(read_csv(run / "evaluations.csv"))) == 2
    # two runs' best.pt evaluated into one --out folder are two evaluations (keyed by file name, they
    # were one bar)
    twin = tmp_path / "twin"
    shutil.copytree(run, twin, ignore=shutil.ignore_patterns("evaluations.*", "eval-*"))
    shared = tmp_path / "shared"
    for snapshot in (run, twin):
        argv = ["--snapshot", str(snapshot), "--out", str(shared), "--eval-mode", "deterministic"]
        assert test_main([*argv, "--data-dir", str(full.parent)], dataset="cifar10") == 0
    assert len(distinct_evaluations(read_csv(shared / "evaluations.csv"))) == 2


_KILLER = textwrap.dedent(
    """
    import json, os, signal, sys
    from nsnn.training import TrainConfig, fit

    def hook(epoch, step):
        if epoch == 1 and step == 2:          # mid-epoch 2, after epoch 1's checkpoint was written
            os.kill(os.getpid(), signal.SIGKILL)

    fit(TrainConfig(**json.loads(sys.argv[1])), on_step=hook)
    """
)


def test_resume_after_sigkill_is_bit_exact(tmp_path):
    settings = {**TINY, "epochs": 3, "cutout": 6, "seed": 7}
    reference = fit(TrainConfig(**settings, out=str(tmp_path / "straight")))

    killed = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, json.dumps({**settings, "out": str(killed)})],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert _torch_load_strict(killed / "last.pt")["epoch"] == 1
    (killed / ".last.pt.k1ll3d_x.tmp").write_bytes(b"PK")  # what a kill during a save leaves
    resumed = fit(TrainConfig(**settings, resume=str(killed)))
    assert resumed["run_dir"] == str(killed) and not (killed / ".last.pt.k1ll3d_x.tmp").exists()

    a, b = _torch_load_strict(tmp_path / "straight" / "last.pt"), _torch_load_strict(killed / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    rows_a, rows_b = read_csv(tmp_path / "straight" / "metrics.csv"), read_csv(killed / "metrics.csv")
    assert [r["epoch"] for r in rows_b] == ["1", "2", "3"]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
            assert ra[key] == rb[key], key
    assert resumed["test_accuracy"] == reference["test_accuracy"]


_DDP_WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    from nsnn.data import TensorLoader
    from nsnn.models import create
    from nsnn.training import TrainConfig, build_loss, fit, setup_runtime, train_step
    from nsnn.training.runtime import teardown_runtime, wrap_model

    out = sys.argv[1]
    rt = setup_runtime("cpu")
    g = torch.Generator().manual_seed(123)
    images = torch.randint(0, 256, (16, 1, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (16,), generator=g)
    loader = TensorLoader(images, labels, 4, shuffle=True, seed=3, rank=rt.rank, world_size=rt.world_size,
                          mean=(0.1307,), std=(0.3081,))
    torch.manual_seed(0)
    net = create("mnist_mlp", hidden=16, neuron="LIF")
    model = wrap_model(net, rt)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    x, y = next(iter(loader))
    train_step(model, x, y, opt, build_loss("per_step_ce"), timestep=3, rt=rt)
    shard = {"x": x, "y": y, "idx": loader.indices()[:4], "state": net.state_dict()}
    torch.save(shard, f"{out}/rank{rt.rank}.pt")

    result = fit(TrainConfig(**json.loads(sys.argv[2])))
    if rt.is_main:
        print("RESULT", json.dumps(result))
    teardown_runtime(rt)
    """
)


def test_torchrun_ddp_equals_single_process_on_union_batch(tmp_path):
    run_cfg = {**TINY, "epochs": 1, "out": str(tmp_path / "ddp_run"), "minibatch": 16}
    worker = tmp_path / "worker.py"
    worker.write_text(_DDP_WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(worker),
            str(tmp_path),
            json.dumps(run_cfg),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert not set(r0["idx"].tolist()) & set(r1["idx"].tolist())  # disjoint shards
    for key in r0["state"]:
        assert torch.equal(r0["state"][key], r1["state"][key]), key  # replicas stay identical

    from nsnn.models import create
    from nsnn.training import train_step

    torch.manual_seed(0)
    net = create("mnist_mlp", hidden=16, neuron="LIF")
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    x, y = torch.cat([r0["x"], r1["x"]]), torch.cat([r0["y"], r1["y"]])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    train_step(net, x, y, opt, build_loss("per_step_ce"), timestep=3)
    assert any(not torch.equal(v, before[k]) for k, v in net.state_dict().items())  # the step moved weights
    for key, value in net.state_dict().items():
        torch.testing.assert_close(r0["state"][key], value, rtol=1e-5, atol=1e-6)

    # The whole fit() ran under DDP too: rank 0 wrote one run dir with every file.
    result = json.loads(proc.stdout.split("RESULT", 1)[1].strip().splitlines()[0])
    run = Path(result["run_dir"])
    assert read_json(run / "config.json")["world_size"] == 2
    assert len(_torch_load_strict(run / "last.pt")["rng"]) == 2
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert len(read_csv(run / "metrics.csv")) == 1


def test_checkpoint_format_prefixes_and_atomic_writes(tmp_path):
    from nsnn.io import atomic_write
    from nsnn.training.checkpoint import load_checkpoint, make_checkpoint

    torch.save({"a": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="is not an nsnn"):
        load_checkpoint(tmp_path / "foreign.pt")
    from nsnn.models import create

    net = create("mnist_mlp", hidden=4)
    wrapped = nn.Module()  # a DistributedDataParallel-style wrapper
    wrapped.module, wrapped.config = net, net.config
    with pytest.raises(ValueError, match="wrapper prefix"):
        make_checkpoint(wrapped, epoch=0, config={})
    target = tmp_path / "file.bin"
    atomic_write(target, lambda f: f.write(b"old"))

    def torn(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, torn)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [
        "foreign.pt",
        "file.bin",
    ]


def test_runs_started_together_never_share_a_default_run_dir(tmp_path, monkeypatch):
    from nsnn.io import make_run_dir

    # Both runs look before either creates its folder (the race a check-then-mkdir loses).
    monkeypatch.setattr(Path, "exists", lambda self: False)
    first, second = (make_run_dir(None, "mnist-net", root=tmp_path) for _ in range(2))
    assert first != second and first.is_dir() and second.is_dir()


def _not_a_checkpoint(kind: str, folder: Path) -> Path:
    """A file that is not an nsnn checkpoint: ``kind`` says what it holds."""
    from nsnn.models import create
    from nsnn.training.checkpoint import FORMAT, make_checkpoint, save_checkpoint

    path = folder / kind / "last.pt"  # a last.pt: --resume takes no other checkpoint
    path.parent.mkdir()
    if kind == "json":
        path.write_text(json.dumps({"dataset": "mnist", "epochs": 3}))
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "state_dict":  # torch.save(model.state_dict()): weights without the model's configuration
        torch.save(create("mnist_mlp", hidden=4).state_dict(), path)
    elif kind == "pickled-object":  # refused by weights_only=True, whatever its "format" says
        torch.save({"format": FORMAT, "config": argparse.Namespace(epochs=1)}, path)
    else:
        full = save_checkpoint(make_checkpoint(create("mnist_mlp", hidden=4), epoch=0, config={}), path)
        data = full.read_bytes()
        full.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("kind", ["json", "random", "tensor", "state_dict", "pickled-object", "truncated"])
def test_a_file_that_is_not_a_checkpoint_is_a_clear_flag_error(kind, tmp_path, capsys):
    from nsnn.training import CheckpointError, load_checkpoint
    from nsnn.training.cli import main

    path = _not_a_checkpoint(kind, tmp_path)
    expected = f"{path} is not an nsnn checkpoint"
    with pytest.raises(CheckpointError, match=re.escape(expected)) as raised:
        load_checkpoint(path)
    assert isinstance(raised.value, ConfigError) and raised.value.__cause__ is None
    assert "weights_only" not in str(raised.value)
    if kind == "pickled-object":  # the object weights_only refused is named
        assert "it holds an object of type argparse.Namespace" in str(raised.value)
    if kind == "state_dict":  # what to do with it instead
        assert "holds a state_dict" in str(raised.value) and "load_state_dict" in str(raised.value)
    for argv in (["test", "--snapshot", str(path)], ["train", "--resume", str(path), "--epochs", "1"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        err = capsys.readouterr().err
        assert exited.value.code == 2, (argv, err)
        assert f"error: {expected}" in err and "weights_only" not in err and "Traceback" not in err


def test_csv_log_appends_only_under_its_own_header(tmp_path):
    path = tmp_path / "metrics.csv"
    CsvLog(path, ["epoch", "loss"]).append({"epoch": 1, "loss": 0.5})
    CsvLog(path, ["epoch", "loss"]).append({"epoch": 2, "loss": 0.25})  # same header: appended
    assert read_csv(path) == [{"epoch": "1", "loss": "0.5"}, {"epoch": "2", "loss": "0.25"}]
    with pytest.raises(ValueError, match=r"columns \['epoch', 'loss'\], not \['epoch', 'acc'\]"):
        CsvLog(path, ["epoch", "acc"])
    assert path.read_text().splitlines() == ["epoch,loss", "1,0.5", "2,0.25"]  # untouched
    # A file of an earlier version with fewer columns gets the new ones, empty in its rows.
    CsvLog(path, ["epoch", "acc", "loss"]).append({"epoch": 3, "acc": 0.9, "loss": 0.125})
    assert path.read_text().splitlines() == ["epoch,acc,loss", "1,,0.5", "2,,0.25", "3,0.9,0.125"]
    # The same names in another order are another header too: the new rows would swap their values.
    swapped = tmp_path / "swapped.csv"
    swapped.write_text("loss,epoch\n0.5,1\n")
    with pytest.raises(ValueError, match=r"columns \['loss', 'epoch'\], not \['epoch', 'loss'\]"):
        CsvLog(swapped, ["epoch", "loss"])
    assert swapped.read_text() == "loss,epoch\n0.5,1\n"  # untouched


def test_csv_log_drops_a_last_row_torn_by_a_kill(tmp_path):
    # A kill mid-append leaves part of a row without its newline; the next row used to be glued onto it.
    path = tmp_path / "evaluations.csv"
    CsvLog(path, ["run", "acc"]).append({"run": "a", "acc": 0.5})
    with open(path, "a") as f:
        f.write("b,0.2")  # cut before its newline
    CsvLog(path, ["run", "acc"]).append({"run": "c", "acc": 0.75})
    assert path.read_text().splitlines() == ["run,acc", "a,0.5", "c,0.75"]
    # a row cut after its first field: on resume it is neither kept nor compared as an epoch
    metrics = tmp_path / "metrics.csv"
    log = CsvLog(metrics, ["epoch", "loss"])
    for epoch in (9, 10):
        log.append({"epoch": epoch, "loss": 0.5})
    metrics.write_text(metrics.read_text() + "1")
    resumed = CsvLog(metrics, ["epoch", "loss"])
    resumed.truncate_after("epoch", 9)
    resumed.append({"epoch": 10, "loss": 0.25})
    assert metrics.read_text().splitlines() == ["epoch,loss", "9,0.5", "10,0.25"]


def test_a_new_run_folder_is_held_by_one_process_at_a_time(tmp_path):
    from nsnn.io import make_run_dir

    take = [
        sys.executable,
        "-c",
        "import sys; from nsnn.io import make_run_dir; make_run_dir(sys.argv[1], 'p')",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = tmp_path / "run"
    # a process that took the folder and ended without writing leaves it usable (the lock went with it)
    subprocess.run([*take, str(out)], env=env, check=True)
    assert make_run_dir(out, "p") == out
    # while this process holds it, another one started at the same instant is refused, even though
    # the folder is still empty (it used to get the folder too, and delete this run's temp files)
    other = subprocess.run([*take, str(out)], env=env, capture_output=True, text=True)
    assert other.returncode == 1 and "is being written by another run" in other.stderr
    assert make_run_dir(out, "p") == out  # this process may retry a run that failed before writing


def test_a_run_is_held_while_it_trains_and_a_resume_of_it_meanwhile_is_refused(tmp_path):
    from nsnn.io import make_run_dir, release_run_dir

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    hold = "import sys; import nsnn.io as io; io.hold_run_dir(sys.argv[1]); print('held', flush=True)"
    # a run folder named by the run itself is held too (a --resume of it while it trains used to append
    # a second copy of every epoch's rows to its metrics.csv), and given back once the run is complete
    auto = make_run_dir(None, "p", root=tmp_path)
    other = subprocess.run([sys.executable, "-c", hold, str(auto)], env=env, capture_output=True, text=True)
    assert other.returncode == 1 and "is being written by another run" in other.stderr
    release_run_dir(auto)
    other = subprocess.run([sys.executable, "-c", hold, str(auto)], env=env, capture_output=True, text=True)
    assert other.returncode == 0 and other.stdout.strip() == "held"

    settings = {**TINY, "max_samples": 120, "epochs": 1}

    def stop(epoch: int, step: int) -> None:
        raise KeyboardInterrupt

    stopped = tmp_path / "stopped"  # given back when interrupted too (a notebook may live on)
    with pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(**settings, out=str(stopped)), on_step=stop)
    taken = subprocess.run([sys.executable, "-c", hold, str(stopped)], env=env, capture_output=True)
    assert taken.returncode == 0 and (stopped / "last.pt").is_file()

    run = tmp_path / "run"
    fit(TrainConfig(**settings, out=str(run)))  # complete: the folder is given back
    holder = subprocess.Popen(
        [sys.executable, "-c", hold + "; sys.stdin.read()", str(run)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = (run / "metrics.csv").read_text()
        with pytest.raises(ConfigError, match="being written by another process"):
            fit(TrainConfig(**settings, resume=str(run)))
        assert (run / "metrics.csv").read_text() == before
    finally:
        holder.communicate("")
    assert fit(TrainConfig(**settings, resume=str(run)))["epochs"] == 1  # once that process has ended


def test_load_torch_checks_the_zip_checksums(tmp_path):
    from nsnn.io import TorchFileError, atomic_save_torch, load_torch

    path = atomic_save_torch({"a": torch.arange(1000.0)}, tmp_path / "ck.pt")
    data = bytearray(path.read_bytes())
    data[data.index(torch.arange(1000.0).numpy().tobytes()[2000:2016]) + 3] ^= 0xFF  # one tensor byte
    path.write_bytes(bytes(data))
    # torch.load itself returns the damaged tensor without a word
    assert not torch.equal(torch.load(path, weights_only=True)["a"], torch.arange(1000.0))
    with pytest.raises(TorchFileError, match=r"corrupt: archive/data/0 fails its CRC-32 check"):
        load_torch(path)


@pytest.mark.parametrize("damage", ["truncated", "empty", "flipped", "random", "pickled"])
def test_load_npz_names_a_damaged_file(damage, tmp_path):
    from nsnn.io import atomic_savez, load_npz

    path = atomic_savez(tmp_path / "weights.npz", w=np.arange(4000.0))
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "flipped":
        plain = tmp_path / "plain.npz"
        np.savez(plain, w=np.arange(4000.0))  # stored, not deflated: the flip hits the array's bytes
        raw = bytearray(plain.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        with path.open("wb") as f:
            np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    expected = {"random": "another file type", "pickled": "it holds object arrays, which are never unpickled"}
    expected = re.escape(expected.get(damage, "truncated or corrupt"))
    with pytest.raises(
        ValueError, match=rf"weights\.npz is not a readable \.npz file of arrays \({expected}"
    ) as e:
        load_npz(path)
    assert "allow_pickle" not in str(e.value)


def test_a_checkpoint_write_that_fails_raises_the_oserror_naming_its_file(tmp_path):
    # torch's zip writer turns a failed write (a full disk) into "RuntimeError: [enforce fail at
    # inline_container.cc] unexpected pos": no file named, and not the OSError the CLI reports.
    import resource

    from nsnn.io import atomic_save_torch

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))  # writes past 200 kB fail with EFBIG
    try:
        with pytest.raises(OSError, match=r"\[Errno 27\] File too large: '.*last\.pt'"):
            atomic_save_torch({"w": torch.zeros(100_000)}, tmp_path / "last.pt")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert list(tmp_path.iterdir()) == []  # no torn file, no temp file


def test_atomic_writes_give_open_permissions_without_touching_the_umask(tmp_path, monkeypatch):
    from nsnn.io import atomic_write_text

    umask = os.umask(0o027)
    try:
        # another thread creating a file while the umask was briefly 0 got a world-writable file
        monkeypatch.setattr(os, "umask", lambda mask: pytest.fail("the process umask was changed"))
        path = atomic_write_text(tmp_path / "config.json", "{}")
    finally:
        monkeypatch.undo()
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o640


def test_evaluation_records_name_batch_size_and_amp(tmp_path, capsys):
    """Another batch size or AMP setting draws other noise: its result file, JSON and CSV row say so."""
    from nsnn.training.cli import main

    fit(TrainConfig(**TINY, epochs=1, out=str(tmp_path / "run")))
    capsys.readouterr()
    for argv in ([], ["--minibatch", "7"], ["--amp"]):
        assert main(["test", "--snapshot", str(tmp_path / "run"), "--json", *argv]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [(r["minibatch"], r["amp"]) for r in results] == [(32, False), (7, False), (32, True)]
    names = [Path(r["result_file"]).name for r in results]
    assert names[0].endswith("-seed0.json") and names[1].endswith("-seed0-b7.json")
    assert names[2].endswith("-seed0-amp.json")
    rows = read_csv(tmp_path / "run" / "evaluations.csv")
    assert [(r["minibatch"], r["amp"]) for r in rows] == [("32", "False"), ("7", "False"), ("32", "True")]


def test_load_torch_names_a_pickled_object_and_hides_torchs_error(tmp_path):
    from nsnn.io import TorchFileError, load_torch

    path = tmp_path / "namespace.pt"
    torch.save({"config": argparse.Namespace(epochs=1)}, path)
    with pytest.raises(TorchFileError, match=r"it holds an object of type argparse\.Namespace") as raised:
        load_torch(path)
    # Raised from None: torch's error, which advises weights_only=False, is neither chained nor printed.
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    shown = "".join(traceback.format_exception(raised.value))
    assert "weights_only" not in str(raised.value) and "weights_only" not in shown


def test_an_evaluation_set_smaller_than_the_process_count_is_a_config_error(monkeypatch):
    # With 4 processes a 3-sample validation set leaves one rank an empty shard, whose loader used to
    # fail with a bare shape error; the check comes before the model (and DDP) is built, so rank 3 of
    # 4 is simulated here with the barrier around data loading made a no-op.
    import contextlib

    from nsnn.training import experiment
    from nsnn.training.runtime import Runtime

    monkeypatch.setattr(experiment, "main_first", lambda rt: contextlib.nullcontext())
    cfg = TrainConfig(**{**TINY, "max_samples": 30, "val_split": 0.1, "minibatch": 2, "progress": False})
    with pytest.raises(ConfigError, match="validation set has 3 sample"):
        experiment.Experiment(cfg, Runtime(device=torch.device("cpu"), rank=3, world_size=4))


def test_resume_with_another_world_size_says_the_global_batch_changes(capsys):
    from nsnn.training import experiment
    from nsnn.training.runtime import Runtime

    cfg = TrainConfig(**{**TINY, "max_samples": 40, "minibatch": 4, "progress": False})
    exp = experiment.Experiment(cfg, Runtime(device=torch.device("cpu")))
    ckpt = exp.checkpoint(1, {})
    capsys.readouterr()
    exp.restore(ckpt)  # the same world size: nothing to say
    assert capsys.readouterr().out == ""
    ckpt["loader"]["world_size"], ckpt["rng"] = 2, ckpt["rng"] * 2  # as a 2-process run saves it
    exp.restore(ckpt)
    said = capsys.readouterr().out
    assert "trained with 2 process(es), global batch 4 × 2 = 8; this resume has 1, global batch 4" in said
    assert "checkpoint has RNG states for 2 process(es), this run has 1" in said


def test_load_model_gives_the_neurons_the_runs_eval_mode(tmp_path):
    from nsnn.models import create
    from nsnn.neurons import SpikingNeuron
    from nsnn.training.checkpoint import make_checkpoint, save_checkpoint

    net = create("mnist_convnet", width=4, hidden=8)
    for mode in ("deterministic", "expected"):
        save_checkpoint(
            make_checkpoint(net, epoch=1, config={"eval_mode": mode}), tmp_path / mode / "best.pt"
        )
        model, _ = load_model(tmp_path / mode)
        neurons = [m for m in model.modules() if isinstance(m, SpikingNeuron)]
        assert neurons and all(n.eval_mode == mode for n in neurons)


def test_neuron_settings_changed_after_load_model_survive_save_model(tmp_path):
    # neuron.sigma / .threshold / .tau set on a loaded model were lost by save_model (the checkpoint rebuilds
    # the model from its constructor config and these were not in the state_dict), and the saved model kept
    # the run's best figures as if unchanged
    from nsnn.models import create
    from nsnn.neurons import SpikingNeuron
    from nsnn.training import load_checkpoint, save_model
    from nsnn.training.checkpoint import make_checkpoint, save_checkpoint

    metrics = {"best_val_accuracy": 0.5, "best_epoch": 1}
    ckpt = make_checkpoint(
        create("mnist_convnet", width=4, hidden=8),
        epoch=1,
        config={"eval_mode": "deterministic"},
        metrics=metrics,
    )
    old = {k: v for k, v in ckpt.items() if k != "neurons"}
    save_checkpoint(ckpt, tmp_path / "run" / "best.pt")
    save_checkpoint(old, tmp_path / "old" / "best.pt")  # saved before neurons kept their settings
    for run in ("run", "old"):
        model, loaded = load_model(tmp_path / run)
        save_model(model, loaded, tmp_path / run / "unchanged.pt")  # the same model keeps its best figures
        assert load_checkpoint(tmp_path / run / "unchanged.pt")["metrics"] == metrics, run
        neurons = [m for m in model.modules() if isinstance(m, SpikingNeuron)]
        assert neurons and all(n.eval_mode == "deterministic" for n in neurons)
        for m in neurons:
            m.sigma, m.threshold, m.tau = 0.05, 0.7, 4.0
        save_model(model, loaded, tmp_path / run / "changed.pt")
        again, saved = load_model(tmp_path / run / "changed.pt")
        settings = [(m.sigma, m.threshold, m.tau) for m in again.modules() if isinstance(m, SpikingNeuron)]
        assert settings == [(0.05, 0.7, 4.0)] * len(neurons), run
        assert (saved["metrics"]["best_val_accuracy"], saved["metrics"]["best_epoch"]) == (None, 0), run


def test_perturbation_strength_and_name_are_checked():
    for strength in ("abc", None, -1, math.inf, True, "0.5"):
        with pytest.raises(ValueError, match="perturbation strength must be a finite number >= 0"):
            Perturbation(strength)

    class _Gain(Perturbation):
        name = "test_gain"

    try:
        assert _Gain(np.float32(0.25)).strength == 0.25 and _Gain(2).strength == 2.0
        # the clean evaluation takes none: it used to be recorded as "clean, strength 0.5" unperturbed
        assert Perturbation(0).strength == 0.0
        with pytest.raises(ValueError, match=r"clean evaluation takes no strength \(got 0.5\).*test_gain"):
            get_perturbation("clean", 0.5)
    finally:
        PERTURBATIONS.pop("test_gain")
    with pytest.raises(ValueError, match=r"none is registered yet \(subclass .*Perturbation\)"):
        get_perturbation("clean", 0.5)  # it listed an empty []
    with pytest.raises(ValueError, match="must set its own name"):

        class _Unnamed(Perturbation):
            pass

    assert "_Unnamed" not in {cls.__name__ for cls in PERTURBATIONS.values()}


def test_a_compressed_model_saved_with_save_model_reloads_tests_and_resumes_compressed(tmp_path):
    # Masks and bits are non-persistent buffers: a state_dict alone forgot them, so a reloaded pruned
    # model reported 32 bits and --resume trained its pruned weights back (0 % sparsity after it).
    from nsnn.compress import compression_report, magnitude_prune, quantize
    from nsnn.training import load_checkpoint, load_model, save_model

    run = tmp_path / "run"
    with _killed_before_saving("last.pt", 2), pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(**TINY, epochs=2, out=str(run)))  # last.pt holds epoch 1
    model, ckpt = load_model(run / "last.pt")
    magnitude_prune(model, sparsity=0.6, scope="global")
    quantize(model, bits=4)
    before = compression_report(model)
    save_model(model, ckpt, run / "last.pt")

    again, saved = load_model(run / "last.pt")
    after = compression_report(again)
    assert [(s.name, s.alive, s.bits) for s in after.layers] == [
        (s.name, s.alive, s.bits) for s in before.layers
    ]
    assert after.sparsity == pytest.approx(before.sparsity) and after.sparsity >= 0.6
    # the rest of the checkpoint is kept
    assert saved["dataset"] == ckpt["dataset"] and saved["epoch"] == 1 and saved["config"] == ckpt["config"]
    assert saved["optimizer"]["param_groups"] == ckpt["optimizer"]["param_groups"]
    for p, q in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(p, q)

    fit(TrainConfig(**TINY, epochs=2, resume=str(run)))  # one more epoch on the pruned network
    trained = load_checkpoint(run / "last.pt")
    for name, old in nsnn.compress.prunable_layers(again):
        dead, weight = ~old.weight_mask, trained["model"][f"{name}.weight"]  # as trained, not as reloaded
        assert torch.equal(trained["compression"][name]["mask"], old.weight_mask), name
        assert dead.any() and (weight[dead] == 0).all(), name  # pruned weights stayed exactly 0
        assert not torch.equal(weight, old.weight), name  # while the live ones trained


def test_a_compressed_checkpoint_tracks_its_own_best_model_when_fine_tuned(tmp_path):
    # save_model copied the dense run's best epoch and validation accuracy into the pruned model's
    # checkpoint: fine-tuning it never replaced best.pt (no epoch beat the dense figure) and the summary
    # reported the dense model's best epoch and accuracy for the pruned one.
    from nsnn.compress import magnitude_prune
    from nsnn.training import load_checkpoint, save_model

    dense = tmp_path / "dense"
    with _killed_before_saving("last.pt", 2), pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(**TINY, epochs=2, out=str(dense)))  # last.pt and best.pt hold epoch 1
    model, ckpt = load_model(dense / "last.pt")
    assert ckpt["metrics"]["best_epoch"] == 1 and ckpt["metrics"]["best_val_accuracy"] is not None
    save_model(model, ckpt, tmp_path / "unchanged.pt")  # the same model keeps its best-tracking
    assert load_checkpoint(tmp_path / "unchanged.pt")["metrics"] == ckpt["metrics"]

    magnitude_prune(model, sparsity=0.9, scope="global")
    pruned = tmp_path / "pruned"
    pruned.mkdir()
    save_model(model, ckpt, pruned / "last.pt")
    metrics = load_checkpoint(pruned / "last.pt")["metrics"]
    assert (metrics["best_epoch"], metrics["best_val_accuracy"]) == (0, None)

    result = fit(TrainConfig(**TINY, epochs=2, resume=str(pruned)))  # one epoch of fine-tuning
    fine_tuned = read_csv(pruned / "metrics.csv")[-1]
    assert load_checkpoint(pruned / "best.pt")["epoch"] == result["best_epoch"] == 2
    assert result["best_val_accuracy"] == float(fine_tuned["val_accuracy"])
    summary = read_json(pruned / "summary.json")
    assert (summary["best_epoch"], summary["best_val_accuracy"]) == (2, result["best_val_accuracy"])
    # a compressed model with no epoch left: resuming it said "resuming after epoch 2/2", then crashed
    # on the missing best.pt
    model, ckpt = load_model(pruned / "last.pt")
    magnitude_prune(model, sparsity=0.95, scope="global")
    done = tmp_path / "done"
    done.mkdir()
    save_model(model, ckpt, done / "last.pt")
    with pytest.raises(ConfigError, match="nothing is left to train; test it with"):
        fit(TrainConfig(**TINY, epochs=2, resume=str(done)))


def test_train_config_takes_numpy_values_and_paths_as_plain_values_and_refuses_strings_for_flags(tmp_path):
    # numpy values and a Path were stored as they were: the run trained, then its own checkpoints were
    # refused ("not an nsnn checkpoint") at the test pass and by load_model and --resume
    run = tmp_path / "run"
    numpy_values = {
        "arch": {"width": np.int64(4), "hidden": np.int64(16)},
        "lr": np.float64(3e-3),
        "sigma": np.float32(0.25),
        "max_samples": np.int64(TINY["max_samples"]),
    }
    cfg = TrainConfig(**{**TINY, **numpy_values}, epochs=1, out=run)
    assert type(cfg.lr) is float and type(cfg.arch["hidden"]) is int and cfg.out == str(run)
    assert fit(cfg)["test_accuracy"] is not None
    _, ckpt = load_model(run / "best.pt")
    assert ckpt["config"]["sigma"] == pytest.approx(0.25)
    assert TrainConfig.from_dict(read_json(run / "config.json")) == TrainConfig.from_dict(ckpt["config"])
    assert TrainConfig(max_samples=300.0).max_samples == 300
    assert TrainConfig(out="~/runs/x").out == str(Path.home() / "runs" / "x")
    for bad, match in (
        ({"amp": "false"}, "amp must be true or false, got 'false'"),  # was True: bf16 autocast on
        ({"progress": "no"}, "progress must be true or false"),
        ({"workers": 1.5}, "workers must be an integer, got 1.5"),
        ({"lr": "0.01"}, "lr must be a number"),
        ({"sigma": None}, "sigma must be a number"),
        ({"arch": {"hidden": object()}}, "arch must hold numbers, strings, lists and dicts only"),
    ):
        with pytest.raises(ConfigError, match=match):
            TrainConfig(**bad)


@pytest.mark.parametrize(
    ("augment", "cutout", "applied"),
    [
        (False, 0, "none"),
        (False, 3, "cutout (3×3)"),
        (True, 3, "random roll (±5 px) + horizontal flip (p=0.5) + cutout (3×3)"),
    ],
)
def test_the_train_augmentation_line_names_the_augmentation_applied(
    tmp_path, capsys, augment, cutout, applied
):
    # It printed the dataset's default (DVS: roll + flip) under --augment false, and left --cutout out.
    dvs = _dvs_folder(tmp_path / "dvs", (3, 2, 8, 8))
    settings = {**TINY, "dataset": "dvs-cifar10", "model": "mnist_mlp", "arch": {"hidden": 8}, "timestep": 3}
    settings.update(minibatch=4, val_split=0.0, epochs=1, data_dir=str(dvs), out=str(tmp_path / "run"))
    fit(TrainConfig(**settings, augment=augment, cutout=cutout))
    assert f"\n  train augmentation: {applied}\n" in capsys.readouterr().out


def test_the_normalise_line_names_the_normalisation_applied():
    # Under --encoding poisson the loaders normalise nothing (the intensities are the spike
    # probabilities), yet the data summary printed MNIST's mean (0.1307,), std (0.3081,).
    from nsnn.training import experiment
    from nsnn.training.runtime import Runtime

    def normalise(encoding: str) -> str:
        cfg = TrainConfig(**{**TINY, "max_samples": 40, "minibatch": 4, "encoding": encoding})
        exp = experiment.Experiment(cfg, Runtime(device=torch.device("cpu")))
        (line,) = [line for line in exp.describe_data().splitlines() if line.startswith("  normalise: ")]
        return line.removeprefix("  normalise: ")

    assert normalise("direct") == "mean (0.1307,), std (0.3081,)"
    assert normalise("poisson") == "none (--encoding poisson: a rate code of the raw intensities in [0, 1])"


def test_augment_on_a_dataset_without_one_is_refused_yet_an_old_run_with_it_resumes(tmp_path):
    # --augment true on MNIST, which has no standard augmentation, trained without any, silently.
    with pytest.raises(ConfigError, match="--augment true: mnist has no standard training augmentation"):
        fit(TrainConfig(**TINY, epochs=1, augment=True, out=str(tmp_path / "new")))
    assert not (tmp_path / "new").exists()
    # a run trained so before the check continues as it was trained: without augmentation
    from nsnn.training.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "old"
    with _killed_before_saving("last.pt", 2), pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(**TINY, epochs=2, out=str(run)))
    ckpt = load_checkpoint(run / "last.pt")
    save_checkpoint({**ckpt, "config": {**ckpt["config"], "augment": True}}, run / "last.pt")
    assert fit(TrainConfig(resume=str(run), progress=False))["epochs"] == 2


def test_evaluation_of_a_deterministic_network_is_labelled_as_it_acts():
    from nsnn.models import create
    from nsnn.training.evaluate import effective_evaluation

    lif, nilif = (create("mnist_convnet", width=4, hidden=8, neuron=n) for n in ("LIF", "NILIF"))
    assert effective_evaluation(lif, "stochastic", 8, random_input=False) == ("deterministic", 1)
    assert effective_evaluation(lif, "expected", 8, random_input=True) == ("deterministic", 8)  # Poisson
    # K passes of a deterministic mode repeat one result (it ran K identical passes, labelled K=8)
    assert effective_evaluation(nilif, "expected", 8, random_input=False) == ("expected", 1)
    assert effective_evaluation(nilif, "deterministic", 8, random_input=True) == ("deterministic", 8)
    assert effective_evaluation(nilif, "stochastic", 8, random_input=False) == ("stochastic", 8)


def test_load_model_names_model_kwargs_its_weights_do_not_fit(tmp_path):
    # load_state_dict's RuntimeError escaped as a traceback from the testing scripts.
    from nsnn.models import create
    from nsnn.training import CheckpointError
    from nsnn.training.checkpoint import make_checkpoint, save_checkpoint
    from nsnn.training.cli import main

    ckpt = make_checkpoint(create("mnist_convnet", width=4, hidden=8), epoch=1, config={})
    ckpt["model_kwargs"]["width"] = 8
    save_checkpoint(ckpt, tmp_path / "run" / "best.pt")
    with pytest.raises(
        CheckpointError, match=r"best\.pt: cannot rebuild its 'mnist_convnet' network .*size mis"
    ):
        load_model(tmp_path / "run")
    with pytest.raises(SystemExit) as exited:
        main(["test", "--snapshot", str(tmp_path / "run")])
    assert exited.value.code == 2


def test_load_model_says_how_to_make_a_runs_own_noise_family_available(tmp_path, capsys):
    # A run trained with a family of the user's own failed in the testing scripts and the visualizer
    # with "unknown noise 'test-laplace'; valid choices: ...": nothing said it must be imported first.
    from nsnn.models import create
    from nsnn.noise import NOISES, Noise
    from nsnn.training import CheckpointError
    from nsnn.training.checkpoint import make_checkpoint, save_checkpoint
    from nsnn.training.cli import main

    class Laplace(Noise):
        name = "test-laplace"
        _cdf = _pdf = _icdf = staticmethod(torch.sigmoid)  # only its name matters here

    try:
        model = create("mnist_mlp", hidden=8, noise="test-laplace")
        save_checkpoint(make_checkpoint(model, epoch=1, config={}), tmp_path / "best.pt")
    finally:
        NOISES.pop("test-laplace")
    own = r"which is not registered in this process \(registered: gaussian.*\) \(a noise family of your own: "
    with pytest.raises(
        CheckpointError, match=r"best\.pt: the run used the noise family 'test-laplace', " + own
    ):
        load_model(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["test", "--snapshot", str(tmp_path)])
    assert exited.value.code == 2 and "test_main" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"got 'test-laplace' \(a noise family of your own: "):
        TrainConfig(noise="test-laplace")  # e.g. --resume of that run
    NOISES["test-laplace"] = Laplace  # imported: the run loads
    try:
        assert load_model(tmp_path)[0].config["kwargs"]["noise"] == "test-laplace"
    finally:
        NOISES.pop("test-laplace")


def test_amp_without_cuda_is_warned_about(capsys):
    from nsnn.training.runtime import Runtime, warn_cpu_amp

    warn_cpu_amp(Runtime(device=torch.device("cpu"), amp=False))
    assert capsys.readouterr().err == ""
    warn_cpu_amp(Runtime(device=torch.device("cpu"), amp=True))
    err = capsys.readouterr().err
    assert err.startswith("warning: mixed precision (--amp) on the CPU") and err.count("\n") == 1


def test_workers_sets_torchs_thread_count_for_the_run_only(tmp_path):
    # fit(workers=1) left torch at 1 thread for the rest of the process, also for a later workers=0 run
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        fit(TrainConfig(**TINY, epochs=1, workers=1, out=str(tmp_path / "run")))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_resume_keeps_the_runs_thread_count_unless_given(tmp_path, capsys):
    # A run trained with --workers 1 and resumed with a plain --resume took torch's default thread count,
    # which sums in another order: 14 of 16 weight tensors differed from the uninterrupted run.
    from nsnn.training.trainer import _resume_source

    run = tmp_path / "run"
    fit(TrainConfig(**{**TINY, "epochs": 1}, workers=1, out=str(run)))
    capsys.readouterr()
    assert _resume_source(TrainConfig(resume=str(run)))[0].workers == 1
    assert "note:" not in capsys.readouterr().err
    assert _resume_source(TrainConfig(resume=str(run), workers=2))[0].workers == 2
    assert "note: --workers 2 differs from the run's 1" in capsys.readouterr().err


def test_load_model_leaves_the_callers_random_state(tmp_path):
    # Building the network drew its (overwritten) initial weights from the caller's RNG, so two
    # visualizer calls on a Poisson run saw different input spikes.
    from nsnn.models import create
    from nsnn.training.checkpoint import make_checkpoint, save_checkpoint

    save_checkpoint(make_checkpoint(create("mnist_mlp", hidden=8), epoch=1, config={}), tmp_path / "best.pt")
    torch.manual_seed(3)
    before = torch.get_rng_state()
    load_model(tmp_path)
    assert torch.equal(before, torch.get_rng_state())
