"""The thin scripts: --help, --json output, a testing script on a checkpoint, and flag errors.

One training script runs as a real subprocess (``python scripts/main_mnist.py ... --json``); the
others run in-process through ``runpy`` to keep the suite fast.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nsnn.io import read_csv, read_json

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
TRAIN_SCRIPTS = ["main_mnist.py", "main_cifar10.py", "main_cifar100.py", "main_dvs_cifar10.py"]
TEST_SCRIPTS = ["testing_mnist.py", "testing_cifar10.py", "testing_cifar100.py", "testing_dvs_cifar10.py"]
REFERENCE_FLAGS = (
    "--neuron --noise --model --epochs --minibatch --timestep --seed --lr --sigma --tau --threshold --optim "
    "--scheduler --reg --lambda1 --tet --lambda_tet --data-dir --download --out --resume --device --amp "
    "--compile --workers --val-split --weight-decay --clip-grad --encoding --json"
)
TINY_FLAGS = [
    "--epochs",
    "1",
    "--max-samples",
    "200",
    "--arch",
    '{"width": 4, "hidden": 16}',
    "--timestep",
    "2",
    "--minibatch",
    "32",
    "--device",
    "cpu",
    "--progress",
    "false",
]


def run_script(name: str, argv: list[str], monkeypatch) -> int:
    """Run ``scripts/<name>`` as ``__main__`` in this process; return its exit status."""
    monkeypatch.setattr(sys, "argv", [str(SCRIPTS / name), *argv])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(SCRIPTS / name), run_name="__main__")
    return exc.value.code


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_command_hint_names_the_datasets_script_and_the_general_form(tmp_path, monkeypatch):
    # A run of another dataset is pointed to its own script (dashes as underscores), relative to the
    # working folder inside the checkout, and always to python -m nsnn.training, which needs no scripts.
    from nsnn.training import cli

    monkeypatch.setattr(cli, "SCRIPTS_DIR", SCRIPTS)
    monkeypatch.chdir(REPO)
    assert cli.command_hint("test", "mnist", "--snapshot r") == (
        "python scripts/testing_mnist.py --snapshot r (or, from any folder, "
        "python -m nsnn.training test --snapshot r)"
    )
    assert cli.command_hint("train", "dvs-cifar10", "--resume r").startswith(
        "python scripts/main_dvs_cifar10.py --resume r (or"
    )
    monkeypatch.chdir(tmp_path)
    assert cli.command_hint("train", "cifar10", "--resume r").startswith(
        f"python {SCRIPTS / 'main_cifar10.py'} --resume r (or"
    )
    monkeypatch.setattr(cli, "SCRIPTS_DIR", tmp_path / "no-scripts")
    assert cli.command_hint("test", "mnist", "--snapshot r") == "python -m nsnn.training test --snapshot r"


@pytest.mark.parametrize("name", TRAIN_SCRIPTS + TEST_SCRIPTS)
def test_help_documents_flags(name, monkeypatch, capsys):
    assert run_script(name, ["--help"], monkeypatch) == 0
    text = capsys.readouterr().out
    if name in TRAIN_SCRIPTS:
        for flag in REFERENCE_FLAGS.split():
            assert flag in text, flag
    else:
        for flag in ("--snapshot", "--eval-mode", "--n_ensembles", "--json", "--out"):
            assert flag in text, flag


def test_script_defaults_follow_the_recipes(monkeypatch, capsys):
    run_script("main_cifar10.py", ["--help"], monkeypatch)
    text = capsys.readouterr().out
    assert "spiking_resnet18" in text and "0.003" in text
    run_script("main_dvs_cifar10.py", ["--help"], monkeypatch)
    assert "vggsnn" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--neuron", "IF"], "neuron must be one of"),
        (["--optim", "lbfgs"], "optim must be one of"),
        (["--epochs", "0"], "epochs must be a positive integer"),
        (["--val-split", "1.5"], "val_split must be in"),
        (["--scheduler", "cyclic"], "unknown scheduler"),
        (["--model", "resnet50"], "model must be one of"),
        (["--arch", "[1]"], "expected a JSON object"),
        (["--lr", "abc"], "invalid float value"),
        (["--device", "quantum"], "bad device"),
        (["--tau", "0.5"], "tau must be a finite number >= 1"),
        (["--threshold", "-1"], "threshold must be a finite number > 0"),
        (["--seed", "-1"], "seed must be an integer in [0, "),
        (["--max-samples", "1"], "max_samples must leave >= 2 samples"),
        (
            ["--arch", '{"width": 0}', "--max-samples", "100", "--minibatch", "8"],
            "width of MNISTConvNet must be >= 1",
        ),
        (["--loss", "mean_ce", "--tet"], "--tet means --loss tet, which conflicts with --loss mean_ce"),
        (["--lambda_tet", "0.1"], "--lambda_tet weights the TET loss's MSE term, and the loss is per_step"),
        (["--reg", "no", "--lambda1", "0.01"], "--lambda1 weights the regularizer, which --reg no turns off"),
    ],
)
def test_bad_training_flags_exit_2_with_message(argv, message, monkeypatch, capsys):
    assert run_script("main_mnist.py", argv, monkeypatch) == 2
    assert message in capsys.readouterr().err


def test_train_script_json_then_testing_script(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "main_mnist.py"), *TINY_FLAGS, "--out", "run", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "parameters" in proc.stdout  # the parameter count is printed
    result = last_json(proc.stdout)
    assert result["run_dir"] == str(run.resolve())  # absolute (--out was relative), as the STDP runs' are
    for key in ("best_val_accuracy", "test_accuracy"):
        assert 0.0 <= result[key] <= 1.0, key
    assert (run / "best.pt").is_file() and (run / "curves.png").is_file()

    # With its defaults (the run's eval mode and batch size, noise seed 0) the testing script reproduces
    # the test figures of the stochastic pass that ended training, to the last bit.
    summary = read_json(run / "summary.json")
    assert summary["eval_mode"] == "stochastic"
    assert run_script("testing_mnist.py", ["--snapshot", str(run), "--json"], monkeypatch) == 0
    again = last_json(capsys.readouterr().out)
    assert (again["accuracy"], again["loss"]) == (summary["test_accuracy"], summary["test_loss"])

    argv = [
        "--snapshot",
        str(run / "best.pt"),
        "--eval-mode",
        "deterministic",
        "--n_ensembles",
        "2",
        "--device",
        "cpu",
        "--json",
    ]
    assert run_script("testing_mnist.py", argv, monkeypatch) == 0
    out, err = capsys.readouterr()
    tested = last_json(out)
    assert 0.0 <= tested["accuracy"] <= 1.0 and tested["n"] == 200
    # K deterministic passes repeat one result: run once, labelled K=1 (it ran 2 passes as "K=2")
    assert tested["eval_mode"] == "deterministic" and tested["n_ensembles"] == 1
    assert (
        "note: the deterministic mode gives the same output on every pass, so --n_ensembles 2 has no effect"
        in err
    )
    assert "parameters" in out
    saved = read_json(tested["result_file"])
    assert saved["accuracy"] == tested["accuracy"]
    assert read_csv(run / "evaluations.csv")[-1]["eval_mode"] == "deterministic"

    # A run directory works as --snapshot (its best.pt); results can go elsewhere with --out.
    argv = ["--snapshot", str(run), "--eval-mode", "expected", "--out", str(tmp_path / "evals"), "--json"]
    assert run_script("testing_mnist.py", argv, monkeypatch) == 0
    assert 0.0 <= last_json(capsys.readouterr().out)["accuracy"] <= 1.0
    assert (tmp_path / "evals" / "evaluations.csv").is_file()

    # The run used a 200-sample test subset; --max-samples 0 evaluates the whole test split, in its own
    # result file (same mode and K: only n tells the two apart), and a negative count is a flag error.
    argv = ["--snapshot", str(run), "--eval-mode", "deterministic", "--n_ensembles", "2"]
    assert run_script("testing_mnist.py", [*argv, "--max-samples", "0", "--json"], monkeypatch) == 0
    full = last_json(capsys.readouterr().out)
    assert (full["eval_mode"], full["n_ensembles"]) == (tested["eval_mode"], tested["n_ensembles"])
    assert full["n"] == 2000 and full["result_file"] != tested["result_file"]
    assert read_json(tested["result_file"])["n"] == 200
    # The same evaluation again (e.g. another snapshot of that name into one --out) keeps both files.
    assert run_script("testing_mnist.py", [*argv, "--max-samples", "0", "--json"], monkeypatch) == 0
    again = last_json(capsys.readouterr().out)
    assert again["result_file"] != full["result_file"]
    assert read_json(full["result_file"])["seconds"] == full["seconds"]
    assert run_script("testing_mnist.py", [*argv, "--progress", "maybe"], monkeypatch) == 2
    assert "expected a boolean" in capsys.readouterr().err
    assert run_script("testing_mnist.py", ["--snapshot", str(run), "--max-samples", "-1"], monkeypatch) == 2
    assert "max_samples must be >= 0" in capsys.readouterr().err

    # Wrong dataset for the script, bad eval mode, missing snapshot.
    assert run_script("testing_cifar10.py", ["--snapshot", str(run)], monkeypatch) == 2
    err = capsys.readouterr().err
    assert "was trained on 'mnist'" in err and "testing_mnist.py --snapshot" in err
    assert "python -m nsnn.training test --snapshot" in err
    assert run_script("testing_mnist.py", ["--snapshot", str(run), "--eval-mode", "mean"], monkeypatch) == 2
    assert "eval_mode must be one of" in capsys.readouterr().err
    missing = ["--snapshot", str(tmp_path / "none.pt")]
    assert run_script("testing_mnist.py", missing, monkeypatch) == 2  # a flag error, as --resume nowhere
    assert "no checkpoint" in capsys.readouterr().err

    # --resume refuses flags that would change the experiment, another dataset's script and a new --out;
    # the generic CLI takes the run's dataset (no --dataset given: not a clash).
    assert run_script("main_mnist.py", ["--resume", str(run), "--lr", "0.5"], monkeypatch) == 2
    assert "flags differ: --lr 0.5 (run: " in capsys.readouterr().err
    assert run_script("main_mnist.py", ["--resume", str(run), "--tet"], monkeypatch) == 2  # = --loss tet
    assert "flags differ: --loss 'tet' (run: 'per_step_ce')" in capsys.readouterr().err
    assert run_script("main_cifar10.py", ["--resume", str(run)], monkeypatch) == 2
    err = capsys.readouterr().err
    assert "is a mnist run, not cifar10" in err and f"main_mnist.py --resume {run}" in err
    assert f"python -m nsnn.training train --resume {run}" in err
    assert run_script("main_mnist.py", ["--resume", str(run), "--out", str(tmp_path / "x")], monkeypatch) == 2
    assert "drop --out" in capsys.readouterr().err
    from nsnn.training.cli import main

    assert main(["--help"]) == 0 and "usage: python -m nsnn.training" in capsys.readouterr().out
    assert main(["fit"]) == 2 and "usage" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(run), "--lr", "0.5"])
    err = capsys.readouterr().err
    assert "flags differ: --lr 0.5" in err and "--dataset" not in err

    # An --out that cannot be made is one line, not a traceback; for testing, before the evaluation.
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert run_script("main_mnist.py", [*TINY_FLAGS, "--out", str(blocked / "run")], monkeypatch) == 1
    assert "error: " in capsys.readouterr().err
    assert run_script("testing_mnist.py", ["--snapshot", str(run), "--out", str(blocked)], monkeypatch) == 2
    captured = capsys.readouterr()
    assert f"--out {blocked}: cannot make that folder" in captured.err and "test accuracy" not in captured.out
    assert run_script("testing_mnist.py", ["--snapshot", str(run), "--workers", "-1"], monkeypatch) == 2
    assert "workers must be >= 0" in capsys.readouterr().err

    # A new run never reuses a folder that holds files.
    before = (run / "metrics.csv").read_text()
    assert run_script("main_mnist.py", [*TINY_FLAGS, "--out", str(run)], monkeypatch) == 2
    err = capsys.readouterr().err
    assert "already holds files" in err and "or --resume it, to continue that run" in err  # a run is there
    assert (run / "metrics.csv").read_text() == before

    # An embedded-MNIST model tested on a full MNIST folder is warned about: its training images are
    # in the official test set.
    full = tmp_path / "full"
    full.mkdir()
    embedded = REPO / "nsnn" / "data" / "embedded"
    for split in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            (full / f"{split}-{kind}-ubyte.gz").write_bytes((embedded / f"t10k-{kind}-ubyte.gz").read_bytes())
    argv = ["--snapshot", str(run), "--data-dir", str(full), "--out", str(tmp_path / "evals_full")]
    assert run_script("testing_mnist.py", argv, monkeypatch) == 0
    assert "not a held-out figure" in capsys.readouterr().err


def test_ctrl_c_in_training_says_how_to_resume(tmp_path, monkeypatch, capsys):
    from nsnn.models import create
    from nsnn.training.checkpoint import make_checkpoint, save_checkpoint
    from nsnn.training.trainer import RunInterrupted

    named = tmp_path / "runs" / "mnist-named"  # the folder a run without --out names itself

    def interrupted(cfg, **_):
        epoch = {"run": 3, "first": 0}.get(Path(cfg.out or named).name)
        if epoch is not None:  # interrupted after a checkpoint: epoch 0 is the one written at the start
            ckpt = make_checkpoint(create("mnist_mlp", hidden=4), epoch=epoch, config={})
            save_checkpoint(ckpt, Path(cfg.out or named) / "last.pt")
        raise RunInterrupted(Path(cfg.out or named))

    monkeypatch.setattr("nsnn.training.trainer.fit", interrupted)
    run = tmp_path / "run"
    assert run_script("main_mnist.py", [*TINY_FLAGS, "--out", str(run)], monkeypatch) == 130
    err = capsys.readouterr().err
    assert f"last.pt in {run} holds epoch 3" in err and f"--resume {run}" in err
    first = tmp_path / "first"  # Ctrl-C in the first epoch: last.pt holds the weights it started from
    assert run_script("main_mnist.py", [*TINY_FLAGS, "--out", str(first)], monkeypatch) == 130
    assert "holds the initial weights (no epoch had finished)" in capsys.readouterr().err
    # before any checkpoint there is nothing to resume (it used to advise a --resume that then failed)
    early = tmp_path / "early"
    assert run_script("main_mnist.py", [*TINY_FLAGS, "--out", str(early)], monkeypatch) == 130
    err = capsys.readouterr().err
    assert f"nothing was saved in {early}" in err and "--resume" not in err
    named.mkdir(parents=True)  # without --out, the folder the run made is named
    save_checkpoint(make_checkpoint(create("mnist_mlp", hidden=4), epoch=2, config={}), named / "last.pt")
    assert run_script("main_mnist.py", TINY_FLAGS, monkeypatch) == 130
    assert f"last.pt in {named} holds epoch 2" in capsys.readouterr().err


def test_a_full_disk_in_training_names_the_file_and_what_last_pt_holds(tmp_path, monkeypatch, capsys):
    # "error: [Errno 28] No space left on device" named neither the file nor the run to resume
    import errno

    import torch

    real = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == 2:  # epoch 2's last.pt, its first checkpoint
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    run = tmp_path / "run"
    flags = [*TINY_FLAGS, "--epochs", "2", "--out", str(run)]
    assert run_script("main_mnist.py", flags, monkeypatch) == 1
    err = capsys.readouterr().err
    assert f"No space left on device: '{run / 'last.pt'}'" in err
    assert (
        f"stopped: last.pt in {run} holds epoch 1 (written atomically); continue with --resume {run}" in err
    )
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    ("script", "argv", "problem"),
    [
        ("main_mnist.py", ["--resume", "RUN/best.pt"], r"resume continues from a run's last\.pt"),
        ("main_mnist.py", ["--ou", "x"], "unrecognized arguments: --ou x"),  # run_training.sh reads --out
        ("main_mnist.py", ["--resum", "x"], "unrecognized arguments: --resum x"),
        ("main_mnist.py", ["--seed", str(2**64)], r"seed must be an integer in \[0, 9223372036854775807\]"),
        ("testing_mnist.py", ["--snapshot", "nowhere"], "--snapshot: "),
        ("testing_mnist.py", ["--snapshot", "x", "--seed", "-1"], r"seed must be in \[0, 92233720\d+\]"),
        ("testing_mnist.py", ["--snapshot", "x", "--seed", str(2**64)], r"seed must be in \[0, "),
        ("testing_mnist.py", ["--snap", "x"], "the following arguments are required: --snapshot"),
    ],
)
def test_bad_training_and_testing_flags_exit_2_naming_the_flag(
    script, argv, problem, tmp_path, monkeypatch, capsys
):
    if "RUN/best.pt" in argv:  # a real run's best.pt: resuming from it would rewind the run
        run = tmp_path / "run"
        run.mkdir()
        (run / "best.pt").write_bytes(b"")
        argv = [str(run / "best.pt") if a == "RUN/best.pt" else a for a in argv]
    assert run_script(script, argv, monkeypatch) == 2
    assert re.search(problem, capsys.readouterr().err)


def test_run_training_recipe_keeps_a_given_out_or_resumed_run():
    # PYTHON=echo prints the commands the mnist recipe would run.
    def commands(*extra: str) -> list[str]:
        env = {"PATH": "/usr/bin:/bin", "PYTHON": "echo"}
        proc = subprocess.run(
            ["bash", str(REPO / "run_training.sh"), "mnist", *extra], capture_output=True, text=True, env=env
        )
        assert proc.returncode == 0, proc.stderr
        return [line for line in proc.stdout.splitlines() if line.startswith(f"{REPO}/scripts/")]

    train, *tests = commands("--epochs", "1")
    assert "--out runs/mnist-nilif-" in train and train.endswith("--epochs 1")
    run = train.split("--out ")[1].split()[0]
    assert tests == [
        f"{REPO}/scripts/testing_mnist.py --snapshot {run}/best.pt --eval-mode all --n_ensembles 8"
    ]
    train, *tests = commands("--resume", "runs/old/last.pt")
    assert "--out" not in train and all("--snapshot runs/old/best.pt" in t for t in tests)
    # a resumed run keeps its own configuration: none of the recipe's flags (the script would refuse a
    # --timestep 4 for a run trained with --timestep 2)
    assert train == f"{REPO}/scripts/main_mnist.py --resume runs/old/last.pt"
    train, *tests = commands("--out", "/tmp/elsewhere")
    assert train.count("--out") == 1 and all("--snapshot /tmp/elsewhere/best.pt" in t for t in tests)


def test_run_training_leaves_relative_paths_to_the_callers_folder(tmp_path):
    python = tmp_path / "python"  # prints the folder it runs in, then its arguments
    python.write_text('#!/bin/sh\necho "$(pwd) $*"\n')
    python.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(python)}
    proc = subprocess.run(
        ["bash", str(REPO / "run_training.sh"), "cifar10", "--data-dir", "data", "--out", "runs/mine"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{tmp_path} {REPO}/scripts/main_cifar10.py ")
    assert proc.stdout.rstrip().endswith("--data-dir data --out runs/mine")
    for recipe, script in (
        ("cifar10", "main_cifar10"),
        ("dvs", "main_dvs_cifar10"),
        ("cifarnet", "main_cifar10"),
    ):
        proc = subprocess.run(
            ["bash", str(REPO / "run_training.sh"), recipe, "--resume=runs/mine"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        assert proc.stdout.strip() == f"{tmp_path} {REPO}/scripts/{script}.py --resume=runs/mine", proc.stderr


def test_run_training_flags_without_a_recipe_go_to_the_mnist_recipe():
    # PYTHON=echo prints the commands a recipe would run, instead of training.
    def run(*argv: str) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/bin:/bin", "PYTHON": "echo"}
        return subprocess.run(
            ["bash", str(REPO / "run_training.sh"), *argv], capture_output=True, text=True, env=env
        )

    flags = ("--epochs", "1", "--out", "runs/given")
    implicit, explicit = run(*flags), run("mnist", *flags)
    assert implicit.returncode == 0, implicit.stderr
    assert "unknown recipe" not in implicit.stderr
    assert implicit.stdout == explicit.stdout
    train = next(line for line in implicit.stdout.splitlines() if "/scripts/" in line)
    assert train.startswith(f"{REPO}/scripts/main_mnist.py ")
    assert train.endswith("--epochs 1 --out runs/given")
    for asked in ("--help", "-h"):
        shown = run(asked, "--epochs", "1")
        assert shown.returncode == 0 and shown.stdout.startswith("nsnn training recipes.")
        assert "main_mnist.py" not in shown.stdout  # the help, not the recipe
        # the recipe's script help, alone: nothing trained, and no test of a run that was never made
        for argv in (("mnist", asked), ("--epochs", "2", asked)):
            shown = run(*argv)
            assert shown.returncode == 0, shown.stderr
            assert shown.stdout.strip() == f"{REPO}/scripts/main_mnist.py --help"


def test_run_training_runs_without_the_builtins_bash_3_2_lacks(tmp_path):
    # macOS's /bin/bash 3.2 has no mapfile: every recipe stopped at "mapfile: command not found". Here
    # bash runs the script with its bash-4 builtins disabled (BASH_ENV is read before the script).
    without = tmp_path / "bash-3.2-builtins.sh"
    without.write_text("enable -n mapfile readarray\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHON": "echo", "BASH_ENV": str(without)}
    cifar = "--reg no --model spiking_resnet18 --epochs 300 --minibatch 256 --timestep 2 --seed 1 --lr 0.003"
    cifar += " --sigma 0.3"
    cifarnet = "--reg no --model cifarnet --epochs 300 --minibatch 128 --timestep 4 --seed 1 --lr 0.001"
    cifarnet += " --sigma 0.3 --cutout 8"
    expected = {  # the arguments, and the training command they run
        "mnist --epochs 1 --out runs/x": "main_mnist.py --neuron NILIF --model mnist_convnet --timestep 4 "
        "--epochs 1 --out runs/x",
        "--resume runs/x": "main_mnist.py --resume runs/x",  # no recipe flags and no --out: empty arrays
        "cifar10": f"main_cifar10.py --neuron NILIF {cifar}",
        "cifar10-lif --data-dir d": f"main_cifar10.py --neuron LIF {cifar} --data-dir d",
        "cifar100": f"main_cifar100.py --neuron NILIF {cifar}",
        "dvs": "main_dvs_cifar10.py --neuron NILIF --reg no --model vggsnn --epochs 210 --minibatch 32 "
        "--timestep 10 --seed 1 --lr 0.0003 --sigma 0.2",
        "cifarnet --cutout 4": f"main_cifar10.py --neuron NILIF {cifarnet} --cutout 4",
        "cifarnet --resume=runs/x": "main_cifar10.py --resume=runs/x",
    }
    for argv, command in expected.items():
        proc = subprocess.run(
            ["bash", str(REPO / "run_training.sh"), *argv.split()], capture_output=True, text=True, env=env
        )
        assert proc.returncode == 0 and proc.stderr == "", (argv, proc.stderr)
        lines = [line for line in proc.stdout.splitlines() if line.startswith(f"{REPO}/scripts/")]
        assert lines[0] == f"{REPO}/scripts/{command}", argv


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_install_gives_a_venv_without_pip_pip_and_keeps_its_torch(tmp_path):
    # A venv without pip (`uv venv`, `python3 -m venv --without-pip`) was cleared by `python3 -m venv
    # --clear`, the user's CUDA torch with it. A stand-in torch shows what is kept; pip reaches no index
    # (PIP_NO_INDEX, no pip.conf), so make stops at the first install and never downloads anything.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    (site / "torch").mkdir()
    (site / "torch" / "__init__.py").write_text('__version__ = "9.9.9+mine"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run(
        ["make", "-C", str(REPO), "install", f"VENV={venv}", f"PYTHON={sys.executable}"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert "[nsnn] keeping installed torch 9.9.9+mine" in proc.stdout, proc.stdout + proc.stderr
    assert (site / "torch" / "__init__.py").is_file()
    assert (
        subprocess.run([venv / "bin" / "python", "-m", "pip", "--version"], capture_output=True).returncode
        == 0
    )


def test_help_states_each_default_once(monkeypatch, capsys):
    # ArgumentDefaultsHelpFormatter appended "(default: None)" to helps that state their default.
    for name, stated in (
        ("main_mnist.py", "the embedded set, whatever $NSNN_DATA_DIR says) --download"),
        ("testing_mnist.py", "as many as give different results --n_ensembles"),
    ):
        assert run_script(name, ["--help"], monkeypatch) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "(default: None)" not in text and stated in text
        assert "CPU threads for torch (0 = torch default) (default: 0)" in text  # a default not yet stated


@pytest.fixture(scope="module")
def lif_run(tmp_path_factory) -> Path:
    """A tiny run of deterministic LIF neurons on the embedded MNIST split."""
    from nsnn.training.cli import train_main

    run = tmp_path_factory.mktemp("lif") / "run"
    assert train_main([*TINY_FLAGS, "--neuron", "LIF", "--out", str(run)], dataset="mnist") == 0
    return run


def test_flags_the_run_never_reads_are_refused_when_given_and_defaults_pass(
    lif_run, tmp_path, monkeypatch, capsys
):
    # --lambda_tet without the TET loss, --lambda1 with --reg no and --download for DVS data were recorded
    # in the run's config and did nothing.
    from nsnn.training.checkpoint import load_checkpoint, save_checkpoint

    old_tet = tmp_path / "old-tet"  # an older nsnn recorded --tet as tet=True, loss per_step_ce
    ckpt = load_checkpoint(lif_run / "last.pt")
    ckpt["config"].update(tet=True, loss="per_step_ce")
    save_checkpoint(ckpt, old_tet / "last.pt")
    trained = []
    monkeypatch.setattr("nsnn.training.trainer.fit", lambda cfg: trained.append(cfg) or {})
    for script, argv in (
        ("main_mnist.py", ["--tet", "--lambda_tet", "0.1"]),
        ("main_mnist.py", ["--loss", "tet", "--reg", "gram", "--lambda1", "0.01", "--lambda_tet", "0.1"]),
        ("main_cifar10.py", ["--download"]),
        ("main_dvs_cifar10.py", []),  # the defaults of flags it does not read are no flags given
        ("main_mnist.py", ["--resume", str(lif_run)]),
        ("main_mnist.py", ["--resume", str(old_tet), "--lambda_tet", "0.05"]),  # its loss is TET
        ("main_mnist.py", ["--resume", str(old_tet), "--loss", "tet"]),
    ):
        assert run_script(script, argv, monkeypatch) == 0, capsys.readouterr().err
    assert len(trained) == 7 and trained[1].lambda1 == 0.01 and trained[2].download
    for script, argv, problem in (
        ("main_dvs_cifar10.py", ["--download"], "--download does nothing for dvs-cifar10, which has no"),
        # resumed: the run's own configuration (--reg no) decides
        ("main_mnist.py", ["--resume", str(lif_run), "--lambda1", "0.0001"], "which --reg no turns off"),
        (
            "main_mnist.py",
            ["--lambda1", "0.01", "--lambda_tet", "0.1"],
            "--lambda_tet weights the TET loss's MSE term, and the loss is per_step_ce; add --tet (--loss "
            "tet) or drop it; --lambda1 weights the regularizer",
        ),
    ):
        assert run_script(script, argv, monkeypatch) == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]  # one line, after the usage
        assert error.startswith(f"{script}: error: ") and problem in error, error
    assert len(trained) == 7


def test_testing_a_deterministic_network_notes_idle_flags_and_labels_it_deterministic(
    lif_run, monkeypatch, capsys
):
    # An LIF run took --eval-mode stochastic --n_ensembles 2, ignored both and labelled its result
    # "stochastic, K=2" (printed, in eval-*.json and evaluations.csv); summary.json said "stochastic".
    summary = read_json(lif_run / "summary.json")
    assert (summary["eval_mode"], summary["n_ensembles"]) == ("deterministic", 1)
    argv = ["--snapshot", str(lif_run), "--eval-mode", "stochastic", "--n_ensembles", "2", "--json"]
    assert run_script("testing_mnist.py", argv, monkeypatch) == 0
    out, err = capsys.readouterr()
    assert (
        "note: this run's LIF neurons fire deterministically, so --eval-mode stochastic and "
        "--n_ensembles 2 have no effect (evaluated as deterministic, K=1)\n"
    ) in err
    tested = last_json(out)
    assert (tested["eval_mode"], tested["n_ensembles"]) == ("deterministic", 1)
    assert "deterministic, K=1)" in out and "-deterministic-k1-" in Path(tested["result_file"]).name
    assert read_json(tested["result_file"])["eval_mode"] == "deterministic"
    row = read_csv(lif_run / "evaluations.csv")[-1]
    assert (row["eval_mode"], row["n_ensembles"]) == ("deterministic", "1")
    assert tested["accuracy"] == summary["test_accuracy"]
    # the run's own settings, or flags that say what happens: no note
    for argv in ([], ["--eval-mode", "deterministic", "--n_ensembles", "1"]):
        assert run_script("testing_mnist.py", ["--snapshot", str(lif_run), *argv, "--json"], monkeypatch) == 0
        out, err = capsys.readouterr()
        assert "note:" not in err and last_json(out)["eval_mode"] == "deterministic"


def test_training_notes_eval_flags_without_effect_as_testing_does(lif_run, monkeypatch, capsys):
    # main_mnist.py --neuron LIF --eval-mode expected --n_ensembles 4 trained silently and recorded
    # deterministic, K=1; the testing scripts' note is printed before training (fit is not needed here).
    import nsnn.training.trainer as trainer

    monkeypatch.setattr(trainer, "fit", lambda cfg: {"run_dir": "x"})
    lif = ["--neuron", "LIF", "--eval-mode", "expected", "--n_ensembles", "4"]
    assert run_script("main_mnist.py", lif, monkeypatch) == 0
    assert (
        "note: this run's LIF neurons fire deterministically, so --eval-mode expected and "
        "--n_ensembles 4 have no effect (evaluated as deterministic, K=1)\n"
    ) in capsys.readouterr().err
    assert run_script("main_mnist.py", ["--eval-mode", "expected", "--n_ensembles", "4"], monkeypatch) == 0
    assert (
        "note: the expected mode gives the same output on every pass, so --n_ensembles 4 has no effect"
    ) in capsys.readouterr().err
    # on --resume the run's own neurons decide (the flags match its configuration)
    assert (
        run_script("main_mnist.py", ["--resume", str(lif_run), "--eval-mode", "stochastic"], monkeypatch) == 0
    )
    assert (
        "LIF neurons fire deterministically, so --eval-mode stochastic has no effect"
        in capsys.readouterr().err
    )
    # flags that act (noisy neurons, stochastic K=4; Poisson input to LIF), or none given: no note
    for argv in (
        ["--n_ensembles", "4"],
        ["--neuron", "LIF", "--encoding", "poisson", "--n_ensembles", "4"],
        [],
    ):
        assert run_script("main_mnist.py", argv, monkeypatch) == 0
        assert "note:" not in capsys.readouterr().err
    # flags no neuron takes (PLIF needs tau > 1) are left to training to refuse: the note raised them
    assert run_script("main_mnist.py", ["--neuron", "PLIF", "--tau", "1"], monkeypatch) == 0


def test_offline_mnist_download_hint_names_download_not_data_dir(tmp_path, monkeypatch, capsys):
    # main_mnist.py --download (no --data-dir), offline, said "omit --data-dir to use the embedded set".
    import urllib.error

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NSNN_DATA_DIR", raising=False)
    assert run_script("main_mnist.py", ["--download", "--device", "cpu"], monkeypatch) == 1
    err = capsys.readouterr().err
    assert "(omit --download, and --data-dir if given, to use the embedded MNIST test set" in err


def test_eval_mode_all_evaluates_each_distinct_mode_once(lif_run, tmp_path, monkeypatch, capsys):
    # run_training.sh tested an LIF run four times (three modes and K=8), four identical results.
    argv = ["--snapshot", str(lif_run), "--eval-mode", "all", "--n_ensembles", "8", "--out", str(tmp_path)]
    assert run_script("testing_mnist.py", [*argv, "--json"], monkeypatch) == 0
    out, err = capsys.readouterr()
    assert "--eval-mode all evaluates deterministic, K=1\n" in err
    (only,) = last_json(out)["evaluations"]
    assert (only["eval_mode"], only["n_ensembles"]) == ("deterministic", 1)
    assert [row["eval_mode"] for row in read_csv(tmp_path / "evaluations.csv")] == ["deterministic"]


def test_eval_mode_all_on_noisy_neurons_matches_each_mode_alone(tmp_path, monkeypatch, capsys):
    from nsnn.training.cli import train_main

    run = tmp_path / "run"
    assert train_main([*TINY_FLAGS, "--out", str(run)], dataset="mnist") == 0
    capsys.readouterr()
    argv = ["--snapshot", str(run), "--n_ensembles", "3", "--out", str(tmp_path / "evals")]
    assert run_script("testing_mnist.py", [*argv, "--eval-mode", "all", "--json"], monkeypatch) == 0
    together = last_json(capsys.readouterr().out)["evaluations"]
    expected = [("stochastic", 1), ("deterministic", 1), ("expected", 1), ("stochastic", 3)]
    assert [(r["eval_mode"], r["n_ensembles"]) for r in together] == expected
    for result, (mode, k) in zip(together, expected, strict=True):  # each as its own call gives
        alone = [
            "--snapshot",
            str(run),
            "--eval-mode",
            mode,
            "--n_ensembles",
            str(k),
            "--out",
            str(tmp_path / mode),
        ]
        assert run_script("testing_mnist.py", [*alone, "--json"], monkeypatch) == 0
        single = last_json(capsys.readouterr().out)
        assert (single["accuracy"], single["loss"]) == (result["accuracy"], result["loss"])
    assert len(read_csv(tmp_path / "evals" / "evaluations.csv")) == 4


def test_testing_refuses_download_for_a_run_on_the_embedded_split(lif_run, tmp_path, monkeypatch, capsys):
    # --download switched the run's embedded MNIST split to full MNIST, downloading it to ./data (and
    # leaving ./data/MNIST behind when the download failed).
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NSNN_DATA_DIR", raising=False)
    assert run_script("testing_mnist.py", ["--snapshot", str(lif_run), "--download"], monkeypatch) == 2
    err = capsys.readouterr().err
    assert "--download: " in err and "was trained on the embedded MNIST split" in err
    assert not (tmp_path / "data").exists()


def test_ctrl_c_in_testing_exits_130_with_one_line(monkeypatch, capsys):
    def interrupted(args, dataset=None):
        raise KeyboardInterrupt

    monkeypatch.setattr("nsnn.training.cli.run_test", interrupted)
    try:
        code = run_script("testing_mnist.py", ["--snapshot", "run"], monkeypatch)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped testing_mnist.py as a traceback")
    err = capsys.readouterr().err
    assert code == 130 and err.strip() == (
        "interrupted: the evaluation stopped; the results printed above (if any) were written, "
        "the one in progress was not"
    )


def test_run_training_banner_names_what_the_mnist_recipe_runs():
    # The banner read "mnist_convnet (NILIF, T=4) on the embedded MNIST set" whatever the flags.
    def banner(*extra: str) -> str:
        env = {"PATH": "/usr/bin:/bin", "PYTHON": "echo"}
        proc = subprocess.run(
            ["bash", str(REPO / "run_training.sh"), "mnist", *extra], capture_output=True, text=True, env=env
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()[0]

    assert banner("--neuron", "LIF", "--data-dir", "data", "--out", "runs/lif") == (
        "[nsnn] training (mnist recipe, flags: --neuron NILIF --model mnist_convnet --timestep 4 "
        "--neuron LIF --data-dir data --out runs/lif) -> runs/lif"
    )
    assert banner("--resume", "runs/old/last.pt") == (
        "[nsnn] resuming runs/old (the run's own configuration; flags: --resume runs/old/last.pt)"
    )
