"""The scripts in examples/ run from a fresh checkout and do what their docstrings say (one epoch each,
on the embedded MNIST split)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_example(name: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / name), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_train_mnist_api_trains_reloads_and_evaluates_every_mode(tmp_path):
    out = tmp_path / "run"
    stdout = run_example("train_mnist_api.py", "--epochs", "1", "--out", str(out), cwd=tmp_path)
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "metrics.csv", "last.pt", "best.pt", "summary.json"} <= files
    scores = dict(re.findall(r"^(\w+ +K=\d+): accuracy ([\d.]+)", stdout, flags=re.M))
    assert set(scores) == {"stochastic    K=1", "stochastic    K=8", "deterministic K=1", "expected      K=1"}
    assert all(float(a) > 0.85 for a in scores.values()), scores  # one epoch on real digits: about 0.95


def test_custom_loop_trains_and_its_perturbation_hurts_accuracy(tmp_path):
    stdout = run_example("custom_loop.py", "--epochs", "1", cwd=tmp_path)
    val = float(re.search(r"val accuracy ([\d.]+)", stdout).group(1))
    noisy = [float(a) for a in re.findall(r"input noise σ=[\d.]+: test accuracy ([\d.]+)", stdout)]
    assert val > 0.85 and len(noisy) == 3, stdout
    assert noisy[0] > 0.85 and noisy[2] < noisy[0] - 0.2, noisy  # σ = 1 on the normalised input hurts
    assert list(tmp_path.iterdir()) == []  # the hand-written loop writes no run folder
