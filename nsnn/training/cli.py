"""Command-line entry points behind every script: ``train_main`` and ``test_main``.

``scripts/main_<dataset>.py`` call ``train_main(dataset=...)``; ``scripts/testing_<dataset>.py`` call
``test_main(dataset=...)``; ``python -m nsnn.training {train,test} ...`` reaches both for any
dataset. With ``--json`` the last line printed is one JSON object with the key results (accuracies as
fractions). Bad flag values exit with status 2 and a message naming the valid choices::

    python scripts/main_mnist.py --epochs 3 --json
    python scripts/testing_mnist.py --snapshot runs/mnist-.../best.pt --eval-mode expected --json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nsnn.io import CsvLog, json_text, read_csv, write_json
from nsnn.training.config import (
    EVAL_MODES,
    MAX_SEED,
    RUNTIME_FIELDS,
    TEST_SEED,
    ConfigError,
    HelpFormatter,
    TrainConfig,
    build_train_parser,
    config_from_args,
    parse_bool,
)
from nsnn.training.monitor import plot_evaluations
from nsnn.training.recipes import RECIPES


def explicit_dests(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """Destinations of the flags actually given on the command line, even at their default value
    (defaults suppressed; abbreviated flags count, as argparse reads them)."""
    bare = copy.deepcopy(parser)
    for action in bare._actions:
        action.default = argparse.SUPPRESS
    bare._defaults.clear()  # parser-level defaults (set_defaults) are not flags either
    return set(vars(bare.parse_args(argv)))


SCRIPTS_DIR = Path(__file__).resolve().parents[2] / "scripts"
"""The checkout's ``scripts/`` folder (absent where nsnn is installed without it)."""


def command_hint(command: str, dataset: str, flags: str) -> str:
    """The command line that runs ``command`` (``"train"`` or ``"test"``) with ``flags`` on a run of
    ``dataset``: the dataset's own script (``scripts/main_<dataset>.py`` or ``testing_<dataset>.py``, ``-``
    as ``_``) where :data:`SCRIPTS_DIR` holds it, shown relative to the working folder when inside it,
    and in any case the general ``python -m nsnn.training`` form (which needs no scripts folder)."""
    general = f"python -m nsnn.training {command} {flags}"
    prefix = "main" if command == "train" else "testing"
    script = SCRIPTS_DIR / f"{prefix}_{dataset.replace('-', '_')}.py"
    if not script.is_file():
        return general
    cwd = Path.cwd().resolve()
    shown = script.relative_to(cwd) if script.is_relative_to(cwd) else script
    return f"python {shown} {flags} (or, from any folder, {general})"


def _check_resume_flags(cfg: TrainConfig, explicit: set[str], dataset: str | None) -> dict[str, Any]:
    """On --resume, flags that change the experiment must match the checkpoint's config, and so must
    ``dataset`` (the script's, or ``--dataset``; None: take the run's). Returns that config (a dict)."""
    from nsnn.training.checkpoint import load_checkpoint
    from nsnn.training.trainer import resume_path

    path = resume_path(cfg.resume)
    if "out" in explicit and Path(cfg.out).resolve() != path.parent.resolve():
        raise ConfigError(f"--resume continues in the run's own folder {path.parent}; drop --out {cfg.out}")
    # normalized as the resumed run will be (an older checkpoint's tet=True is loss "tet")
    saved = TrainConfig.from_dict(load_checkpoint(path)["config"]).to_dict()
    if dataset is not None and saved["dataset"] != dataset:
        raise ConfigError(
            f"{path} is a {saved['dataset']} run, not {dataset}; resume it with "
            f"{command_hint('train', saved['dataset'], f'--resume {cfg.resume}')}"
        )
    if "tet" in explicit:  # --tet is --loss tet (TrainConfig has already made it so)
        explicit = (explicit - {"tet"}) | {"loss"}
    clash = sorted(
        name for name in explicit - RUNTIME_FIELDS if name in saved and saved[name] != getattr(cfg, name)
    )
    if clash:
        details = ", ".join(f"--{n} {getattr(cfg, n)!r} (run: {saved[n]!r})" for n in clash)
        raise ConfigError(f"--resume continues the run's own configuration; these flags differ: {details}")
    return saved


def _check_flags_used(explicit: set[str], config: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` for flags given on the command line (``explicit``; a default is no flag
    given) that the run's configuration ``config`` (a TrainConfig dict: the new run's, or on --resume
    the run's own) never reads."""
    from nsnn.data import downloadable

    loss, dataset = config["loss"], config["dataset"]
    checks = {  # flag: (whether this run never reads it, why)
        "lambda_tet": (
            loss != "tet",
            f"weights the TET loss's MSE term, and the loss is {loss}; add --tet (--loss tet) or drop it",
        ),
        "lambda1": (
            config["reg"] == "no",
            "weights the regularizer, which --reg no turns off; add --reg gram (or srip) or drop it",
        ),
        "download": (
            not downloadable(dataset),
            f"does nothing for {dataset}, which has no download (its files are prepared by hand, as "
            "its missing-data error describes); drop it",
        ),
    }
    unused = [f"--{name} {why}" for name, (idle, why) in checks.items() if idle and name in explicit]
    if unused:
        raise ConfigError("; ".join(unused))


def _note_idle_eval_flags(args: argparse.Namespace, explicit: set[str], run: TrainConfig) -> None:
    """Print the testing scripts' note (:func:`_evaluation_of`) when ``--eval-mode`` or ``--n_ensembles``,
    given (``explicit``), has no effect on the validation and test passes of ``run`` (the run's
    configuration): a network of deterministic neurons, or K passes in a deterministic mode. Its
    neurons are judged by one built from ``run``'s neuron flags, as every spiking layer is."""
    from nsnn.models import NeuronSpec

    try:
        neuron = NeuronSpec(run.neuron, run.noise, run.sigma, run.tau, run.threshold).build()
    except (ValueError, TypeError):  # flags no neuron takes (PLIF with tau=1): fit reports them
        return
    given = argparse.Namespace(
        eval_mode=args.eval_mode if "eval_mode" in explicit else None,
        n_ensembles=args.n_ensembles if "n_ensembles" in explicit else None,
        perturbation="clean",
    )
    _evaluation_of(neuron, run, given)


def _emit_json(result: dict[str, Any]) -> None:
    print(json_text(result), flush=True)


def train_main(
    argv: Sequence[str] | None = None,
    *,
    dataset: str,
    description: str | None = None,
    prog: str | None = None,
    resume_any_dataset: bool = False,
) -> int:
    """Parse training flags (defaults from :data:`RECIPES` ``[dataset]``), run :func:`fit`, report.

    ``--resume`` must name a run of ``dataset``, unless ``resume_any_dataset`` (the generic CLI
    without ``--dataset``), which resumes whatever dataset the run was trained on.
    """
    from nsnn.data import DatasetError
    from nsnn.training.trainer import fit

    argv = list(sys.argv[1:] if argv is None else argv)
    defaults = RECIPES.get(dataset, {"dataset": dataset})
    description = description or f"Train a spiking network on {dataset} (nsnn BPTT)."
    parser = build_train_parser(description, defaults, prog)
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        explicit = explicit_dests(parser, argv)
        if cfg.resume is None:
            _check_flags_used(explicit, cfg.to_dict())
        else:
            saved = _check_resume_flags(cfg, explicit, None if resume_any_dataset else dataset)
            _check_flags_used(explicit, saved)
            # the experiment is the run's (the flags given were checked against it): fit gets the runtime
            # flags alone, not the recipe's defaults for the rest
            cfg = TrainConfig(**{name: getattr(cfg, name) for name in RUNTIME_FIELDS})
    except (ConfigError, FileNotFoundError) as e:
        parser.error(str(e))
    if _is_main_process():
        _note_idle_eval_flags(args, explicit, TrainConfig.from_dict(saved) if cfg.resume else cfg)
    try:
        result = fit(cfg)
    except ConfigError as e:
        parser.error(str(e))
    except (DatasetError, OSError) as e:  # missing data, an --out that cannot be written, a full disk
        print(f"error: {e}", file=sys.stderr)
        if getattr(e, "run_dir", None) is not None:  # failed while training: what last.pt holds
            print(_interrupted_message(e.run_dir, "stopped"), file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        where = getattr(e, "run_dir", None) or cfg.resume or cfg.out  # RunInterrupted names the folder
        print(f"\n{_interrupted_message(where)}", file=sys.stderr)
        return 130
    if cfg.json and _is_main_process():
        _emit_json(result)
    return 0


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _interrupted_message(where: str | Path | None, event: str = "interrupted") -> str:
    """What a Ctrl-C (or an error: ``event="stopped"``) left: resume advice only where a ``last.pt`` was
    written, naming its epoch (``where``: the run folder, or a checkpoint in it; None: before the run
    had a folder)."""
    if where is None:
        return f"{event} before the run folder was made: nothing was saved"
    folder = Path(where).parent if Path(where).suffix == ".pt" else Path(where)
    if not (folder / "last.pt").is_file():
        return f"{event} before the first checkpoint: nothing was saved in {folder}; start the run again"
    from nsnn.training.checkpoint import CheckpointError, load_checkpoint

    try:
        epoch = load_checkpoint(folder / "last.pt").get("epoch")
        held = f"epoch {epoch}" if epoch else "the initial weights (no epoch had finished)"
    except (CheckpointError, OSError, RuntimeError, ValueError):
        held = "the last finished epoch"
    return f"{event}: last.pt in {folder} holds {held} (written atomically); continue with --resume {folder}"


def build_test_parser(description: str, prog: str | None = None) -> argparse.ArgumentParser:
    """Flags of the testing scripts (the model and data settings come from the checkpoint)."""
    from nsnn.training.perturbations import list_perturbations

    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=HelpFormatter,
        allow_abbrev=False,  # run_training.sh reads --out/--resume by their full names
    )
    p.add_argument("--snapshot", required=True, help="checkpoint file (best.pt / last.pt) or a run directory")
    p.add_argument(
        "--eval-mode",
        "--eval_mode",
        dest="eval_mode",
        default=None,
        help=f"neuron mode at evaluation: {', '.join(EVAL_MODES)} (default: the run's own), or all: each "
        "mode with K=1 and stochastic with --n_ensembles K, as many as give different results",
    )
    p.add_argument(
        "--n_ensembles",
        "--n-ensembles",
        dest="n_ensembles",
        type=int,
        default=None,
        help="average the time-mean logits of K passes (stochastic mode; default: the run's own)",
    )
    p.add_argument("--perturbation", default="clean", help=f"perturbation: {', '.join(list_perturbations())}")
    p.add_argument("--strength", type=float, default=0.0, help="perturbation strength")
    p.add_argument(
        "--minibatch", "-b", type=int, default=None, help="evaluation batch size (default: the run's own)"
    )
    p.add_argument(
        "--max-samples",
        "--max_samples",
        dest="max_samples",
        type=int,
        default=None,
        help="evaluate a seeded subset of at most this many test samples, 0 = the whole test set "
        "(default: the run's own --max-samples)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=TEST_SEED,
        help=f"seed of the stochastic neurons' noise (default {TEST_SEED}, as in the test ending training)",
    )
    p.add_argument(
        "--data-dir",
        "--data_dir",
        dest="data_dir",
        default=None,
        help="dataset folder (default: the run's, else $NSNN_DATA_DIR or ./data)",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="download the run's dataset into its data folder if missing (not for the embedded MNIST split, "
        "nor DVS-CIFAR10, which has no download)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mixed precision (bf16 on CPU, fp16 on CUDA; default: as the run was trained)",
    )
    p.add_argument("--workers", type=int, default=0, help="CPU threads for torch (0 = torch default)")
    p.add_argument("--out", default=None, help="folder for the result files (default: the snapshot's folder)")
    p.add_argument(
        "--progress",
        type=parse_bool,
        default=None,
        help="progress bars: true/false (default: only on a terminal)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object with the results as the last line ({"evaluations": [...]} for '
        "--eval-mode all)",
    )
    return p


def run_test(args: argparse.Namespace, dataset: str | None = None) -> list[dict[str, Any]]:
    """Evaluate ``args.snapshot`` on its dataset's test set; write ``eval-*.json`` and ``evaluations.csv``.
    One result per evaluation: one, or with ``--eval-mode all`` those of :func:`_evaluations_of`. A
    result names the data evaluated: ``data`` (the folder read, or ``"embedded"``), ``data_fingerprint``
    (a hash of the samples evaluated) and ``same_data_as_run`` (whether they are the run's test data)."""
    from nsnn.models import count_parameters
    from nsnn.training.checkpoint import load_model, resolve_checkpoint
    from nsnn.training.evaluate import evaluate, normalization
    from nsnn.training.experiment import fingerprint, load_dataset, take_samples
    from nsnn.training.losses import build_loss
    from nsnn.training.perturbations import get_perturbation
    from nsnn.training.runtime import seed_everything, setup_runtime, sigint_deferred, warn_cpu_amp

    if args.eval_mode is not None and args.eval_mode not in (*EVAL_MODES, "all"):
        raise ConfigError(f"eval_mode must be one of {[*EVAL_MODES, 'all']}, got {args.eval_mode!r}")
    for name in ("n_ensembles", "minibatch"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(args, name)}")
    if args.workers < 0:
        raise ConfigError(f"workers must be >= 0 (0 = torch's default), got {args.workers}")
    if args.max_samples is not None and args.max_samples < 0:
        raise ConfigError(f"max_samples must be >= 0 (0 = the whole test set), got {args.max_samples}")
    if not 0 <= args.seed <= MAX_SEED:
        raise ConfigError(f"seed must be in [0, {MAX_SEED}], got {args.seed}")
    try:
        perturbation = get_perturbation(args.perturbation, args.strength)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    try:
        path = resolve_checkpoint(args.snapshot)
    except FileNotFoundError as e:
        raise ConfigError(f"--snapshot: {e}") from None
    out = Path(args.out) if args.out is not None else path.parent
    try:  # before the evaluation, whose result would otherwise be lost
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot make that folder ({e.strerror or e})") from None
    if not os.access(out, os.W_OK):
        raise ConfigError(f"--out {out}: the folder is not writable")
    rt = setup_runtime(args.device, False, args.workers)  # AMP: the run's unless given, set below
    model, ckpt = load_model(path, map_location=rt.device)
    cfg = TrainConfig.from_dict({**ckpt["config"], "resume": None})
    args = copy.copy(args)  # what is not given is the run's own
    args.minibatch = cfg.minibatch if args.minibatch is None else args.minibatch  # the same noise draws
    args.amp = cfg.amp if args.amp is None else args.amp
    rt = dataclasses.replace(rt, amp=args.amp)
    if dataset is not None and cfg.dataset != dataset:
        raise ConfigError(
            f"{path} was trained on {cfg.dataset!r}, not {dataset!r}; "
            f"evaluate it with: {command_hint('test', cfg.dataset, f'--snapshot {path}')}"
        )
    if args.download and ckpt["dataset"].get("embedded"):
        raise ConfigError(
            f"--download: {path} was trained on the embedded MNIST split, which ships with nsnn and is "
            "what testing reads by default; drop --download (full MNIST is not this run's data)"
        )
    if args.download:
        _check_flags_used({"download"}, cfg.to_dict())
    warn_cpu_amp(rt)
    n_params = count_parameters(model)
    print(
        f"{path}: {cfg.model} ({n_params:,} parameters), {cfg.neuron} σ={cfg.sigma:g} T={cfg.timestep}, "
        f"epoch {ckpt['epoch']}",
        flush=True,
    )
    evaluations = _evaluations_of(model, cfg, args)
    cfg.download, cfg.progress = args.download, args.progress
    # The whole test split (the training split is not read): the run's samples of it are checked to be
    # the run's test set whatever this evaluation's --max-samples, which picks the samples evaluated.
    whole = load_dataset(dataclasses.replace(cfg, max_samples=0), args.data_dir, test_only=True)
    _check_test_data(whole, cfg, ckpt["dataset"], path)
    same_data = _same_data_as_run(
        take_samples(whole.test, cfg.max_samples, cfg.seed),
        ckpt["dataset"],
        path,
        lambda: load_dataset(cfg, args.data_dir),
    )
    if args.max_samples is not None:
        cfg.max_samples = args.max_samples
    bundle = dataclasses.replace(whole, test=take_samples(whole.test, cfg.max_samples, cfg.seed))
    # which data are evaluated: evaluations.csv tells evaluations on other data from the run's own by them
    data = {
        "data": "embedded" if bundle.embedded else bundle.source,
        "data_fingerprint": fingerprint(bundle.test.images, bundle.test.labels),
    }
    if same_data is False:
        print(
            f"warning: the data read from {bundle.source} differ from the test data of this run "
            f"(another copy or version of {cfg.dataset}); the accuracy below is not the run's "
            "test figure (give the run's --data-dir to reproduce it)",
            file=sys.stderr,
            flush=True,
        )
    if ckpt["dataset"].get("embedded") and not bundle.embedded:
        print(
            "warning: this model was trained on the embedded MNIST split, whose training images are part "
            f"of the official MNIST test set; the accuracy on {bundle.source} is not a held-out figure",
            file=sys.stderr,
            flush=True,
        )
    loader = bundle.loader(
        bundle.test, args.minibatch, train=False, device=rt.device, **normalization(cfg.encoding)
    )
    criterion = build_loss(cfg.loss, cfg.lambda_tet)
    results = []
    for args.eval_mode, args.n_ensembles in evaluations:
        seed_everything(args.seed)
        tick = time.perf_counter()
        metrics = evaluate(
            model,
            loader,
            timestep=cfg.timestep,
            encoding=cfg.encoding,
            eval_mode=args.eval_mode,
            n_ensembles=args.n_ensembles,
            criterion=criterion,
            perturbation=perturbation,
            runtime=rt,
            progress=args.progress,
            desc="test",
        )
        result = {
            "snapshot": str(path.resolve()),
            "dataset": cfg.dataset,
            **data,
            "model": cfg.model,
            "parameters": n_params,
            "epoch": int(ckpt["epoch"]),
            "eval_mode": args.eval_mode,
            "n_ensembles": args.n_ensembles,
            "minibatch": args.minibatch,
            "amp": args.amp,
            "perturbation": args.perturbation,
            "strength": args.strength,
            "seed": args.seed,
            "accuracy": metrics["accuracy"],
            "loss": metrics["loss"],
            "n": metrics["n"],
            "same_data_as_run": same_data,
            "seconds": time.perf_counter() - tick,
        }
        tag = f"{path.stem}-{args.eval_mode}-k{args.n_ensembles}-n{metrics['n']}-seed{args.seed}"
        if args.perturbation != "clean":
            tag += f"-{args.perturbation}-{args.strength:g}"
        if args.minibatch != cfg.minibatch:  # other batches draw other noise: another result
            tag += f"-b{args.minibatch}"
        if args.amp != cfg.amp:
            tag += "-amp" if args.amp else "-fp32"
        # Ctrl-C: the result files are written whole, or not at all, and a written one is printed
        with sigint_deferred():
            result["result_file"] = str(write_json(_unused(out / f"eval-{tag}.json"), result))
            row = {k: v for k, v in result.items() if k != "result_file"}
            CsvLog(out / "evaluations.csv", list(row)).append(row)
            plot_evaluations(read_csv(out / "evaluations.csv"), out / "evaluations.png")
            print(
                f"test accuracy {100 * metrics['accuracy']:.2f}% (loss {metrics['loss']:.4f}, "
                f"n={metrics['n']}, {args.eval_mode}, K={args.n_ensembles}) -> {result['result_file']}",
                flush=True,
            )
        results.append(result)
    return results


def _random_input(cfg: TrainConfig, args: argparse.Namespace) -> bool:
    """Whether the evaluation's input is random (Poisson encoding, a perturbation): then even a network
    of deterministic neurons gives K passes that differ."""
    return cfg.encoding != "direct" or args.perturbation != "clean"


def _evaluations_of(model: Any, cfg: TrainConfig, args: argparse.Namespace) -> list[tuple[str, int]]:
    """The ``(eval_mode, n_ensembles)`` pairs that ``args`` asks for, as they act on ``model``: one
    (:func:`_evaluation_of`), or for ``--eval-mode all`` stochastic, deterministic and expected with
    K = 1 and stochastic with the K given (or the run's), less those that repeat another's result (a
    network of deterministic neurons has one, or two when its input is random)."""
    from nsnn.training.evaluate import effective_evaluation

    if args.eval_mode != "all":
        return [_evaluation_of(model, cfg, args)]
    k = cfg.n_ensembles if args.n_ensembles is None else args.n_ensembles
    wanted = [(mode, 1) for mode in EVAL_MODES] + ([("stochastic", k)] if k > 1 else [])
    random_input = _random_input(cfg, args)
    plan = list(
        dict.fromkeys(effective_evaluation(model, m, n, random_input=random_input) for m, n in wanted)
    )
    if len(plan) < len(wanted):
        print(
            f"note: this run's {cfg.neuron} neurons fire deterministically, so --eval-mode all evaluates "
            + " and ".join(f"{mode}, K={n}" for mode, n in plan),
            file=sys.stderr,
            flush=True,
        )
    return plan


def _evaluation_of(model: Any, cfg: TrainConfig, args: argparse.Namespace) -> tuple[str, int]:
    """The ``(eval_mode, n_ensembles)`` that evaluate and label ``model``: the flags given, else the
    run's (``cfg``), as they act on it (:func:`~nsnn.training.evaluate.effective_evaluation`); a note
    names the flags given that do nothing (to a network of deterministic neurons, or K in a deterministic
    mode)."""
    from nsnn.training.evaluate import effective_evaluation, has_stochastic_neurons

    mode = cfg.eval_mode if args.eval_mode is None else args.eval_mode
    k = cfg.n_ensembles if args.n_ensembles is None else args.n_ensembles
    mode, k = effective_evaluation(model, mode, k, random_input=_random_input(cfg, args))
    ignored = [
        f"{flag} {given}"
        for flag, given, used in (
            ("--eval-mode", args.eval_mode, mode),
            ("--n_ensembles", args.n_ensembles, k),
        )
        if given is not None and given != used
    ]
    if ignored:
        why = (
            f"the {mode} mode gives the same output on every pass"
            if has_stochastic_neurons(model)
            else f"this run's {cfg.neuron} neurons fire deterministically"
        )
        print(
            f"note: {why}, so {' and '.join(ignored)} "
            f"{'has' if len(ignored) == 1 else 'have'} no effect (evaluated as {mode}, K={k})",
            file=sys.stderr,
            flush=True,
        )
    return mode, k


def _unused(path: Path) -> Path:
    """``path``, or ``<stem>-2<suffix>``, ``-3``, ... if taken: one evaluation never replaces another's."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def _same_data_as_run(
    test: Any, trained: dict[str, Any], path: Path, whole: Callable[[], Any]
) -> bool | None:
    """Whether ``test`` (the run's samples of the test split read: :func:`take_samples` with the run's
    ``--max-samples`` and seed, whatever the evaluation's) holds the very test images and labels of the
    run of checkpoint ``path`` (``trained``: its data record, whose ``test_fingerprint`` hashes them). A
    checkpoint of an older nsnn hashed its training and test data together: there the whole dataset
    (``whole()``, the bundle read as the run read it) is hashed as it was; if its training split cannot
    be read, only the test set's size is compared (False if it differs; else None, with a note that the
    data are not checked)."""
    from nsnn.data import DatasetError
    from nsnn.training.experiment import dataset_record, fingerprint

    if "test_fingerprint" in trained:
        return fingerprint(test.images, test.labels) == trained["test_fingerprint"]
    if "test_size" in trained and trained["test_size"] != len(test):
        return False
    if "fingerprint" in trained:
        try:
            return dataset_record(whole())["fingerprint"] == trained["fingerprint"]
        except (DatasetError, FileNotFoundError):
            pass
    print(
        f"note: {path} records no hash of its test data alone (a checkpoint of an older nsnn), and its "
        "data could not be hashed as the run hashed them, so the test data read are not checked to be "
        "the run's (same_data_as_run: null)",
        file=sys.stderr,
        flush=True,
    )
    return None


def _check_test_data(bundle: Any, cfg: TrainConfig, trained: dict[str, Any], path: Path) -> None:
    """Raise :class:`ConfigError` when the loaded data cannot feed the model of checkpoint ``path``:
    another number of classes, channels, image size (``trained``: the checkpoint's data record) or
    event frames per sample than ``cfg.timestep``."""
    loaded = {
        "num_classes": bundle.num_classes,
        "in_channels": bundle.in_channels,
        "image_size": bundle.image_size,
    }
    differ = [
        f"{k} {v!r} (run: {trained[k]!r})" for k, v in loaded.items() if k in trained and trained[k] != v
    ]
    if bundle.time_steps is not None and bundle.time_steps != cfg.timestep:
        differ.append(f"time steps {bundle.time_steps} (run: {cfg.timestep})")
    if differ:
        raise ConfigError(
            f"{path} was trained on other data than {bundle.source} holds: {', '.join(differ)}; "
            "give the --data-dir of data shaped like the run's"
        )


def test_main(
    argv: Sequence[str] | None = None,
    *,
    dataset: str | None = None,
    description: str | None = None,
    prog: str | None = None,
) -> int:
    """Parse testing flags, evaluate the snapshot, print (and with ``--json`` emit) the result."""
    from nsnn.data import DatasetError

    parser = build_test_parser(
        description or f"Evaluate a trained nsnn checkpoint on the {dataset or 'run'} test set.", prog
    )
    args = parser.parse_args(argv)
    try:
        results = run_test(args, dataset)
    except ConfigError as e:
        parser.error(str(e))
    except (DatasetError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the evaluation stopped; the results printed above (if any) were written, "
            "the one in progress was not",
            file=sys.stderr,
        )
        return 130
    if args.json:  # one evaluation's result, or for --eval-mode all each of them
        _emit_json(results[0] if args.eval_mode != "all" else {"evaluations": results})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nsnn.training train --dataset NAME [flags]`` or ``... test --snapshot PATH [flags]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train", "test"}
    if not argv or argv[0] not in commands:
        usage = "usage: python -m nsnn.training {train,test} [--dataset NAME] [flags]  (see '<command> -h')"
        asked = bool(argv) and argv[0] in ("-h", "--help")
        print(usage, file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    command, rest = argv[0], argv[1:]
    if command == "test":
        return test_main(rest, prog="python -m nsnn.training test")
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--dataset", default=None)
    known, remaining = pre.parse_known_args(rest)
    from nsnn.data import list_datasets

    dataset = known.dataset or "mnist"
    description = f"Train a spiking network on --dataset {dataset} (choices: {', '.join(list_datasets())})."
    return train_main(
        remaining,
        dataset=dataset,
        description=description,
        prog="python -m nsnn.training train",
        resume_any_dataset=known.dataset is None,
    )
