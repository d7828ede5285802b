r"""Command line of the STDP experiment (``scripts/stdp_mnist.py``): train, compress, label and test, or
evaluate a saved run.

    python scripts/stdp_mnist.py --neurons 400 --train 8000 --test 2000 \
        --prune 0.75 --prune-every 2000 --bits 4 --out runs/stdp-400-p75-b4 --json
    python scripts/stdp_mnist.py --neurons 400 --sweep --out runs/stdp-400
    python scripts/stdp_mnist.py --sweep --from-run runs/stdp-400 --out runs/stdp-400-sweep
    python scripts/stdp_mnist.py --from-run runs/stdp-400 --prune 0.75 --bits 4 --json
    python scripts/stdp_mnist.py --data-dir ~/data/mnist --train 60000 --test 10000 --out runs/stdp-full
    python scripts/stdp_mnist.py --from-run runs/stdp-full --prune 0.9 --bits 2 --test 10000
    python scripts/stdp_mnist.py --resume runs/stdp-full      # finish a run a Ctrl-C stopped

Data: the embedded MNIST split (8,000 train / 2,000 test) unless ``--data-dir`` points at the four
MNIST idx files. ``--from-run`` labels and tests on the saved run's own data (its --data-dir, --train,
--label and --test) unless those flags are given; a --train given alone labels on all of it. ``--resume``
finishes an interrupted training run: after every block of examples (``--chunk``) it keeps its
progress in ``train_state.npz`` and ``train_counts.bin``, from which training goes on exactly as if it
had not stopped, also when it stopped while evaluating or drawing its figures (summary.json is written
last); a run interrupted before its first block was saved removes what it wrote and the folders it made
(nothing to resume), so the same command can be run again. An interrupted --from-run evaluation cannot be
resumed: delete its folder (what it finished is in its metrics.csv) or give another --out. The embedded
split is part of the official MNIST test set: a run trained on it and tested on a --data-dir is warned
when its test images include ones it trained on (with their count).

``--from-run RUN`` evaluates a saved run without training: its dense weights compressed at
--prune (or --prune-threshold) and --bits (or with ``--sweep`` at every pair of a grid), relabelled and
tested. A run compressed during training (``--prune-every``) kept no dense weights: it is evaluated as
saved (its own sparsity and bits), e.g. on other data.

Outputs (run directory): config.json, metrics.csv, weights.npz, assignments.csv, summary.json,
receptive_fields.png, weight_histogram.png, training.png (+ sweep.csv/png). With ``--json`` the last
output line is one JSON object: run_dir, accuracy, ms_per_example_train, synapses, nonzero_synapses
(those whose deployed weight is not 0), bits (per deployed weight: ``--bits``, or with ``--levels``
⌈log₂(distinct levels)⌉) and, after a sweep, ``sweep`` (one row per cell); the human-readable lines go
to stderr. For ``--from-run`` the keys describe the cell evaluated (with ``--sweep``: the saved run's
own figures), ms_per_example_train is the saved run's, and ``sparsity`` and ``sweep`` (its one row,
without ``--sweep``) come too. Progress bars (stderr) are drawn only when
stderr is a terminal unless ``--progress`` / ``--no-progress`` say otherwise, so a log piped to a file
holds no bars: it gets plain lines instead (each phase's start and end, each saved training block, each
sweep cell; none with ``--no-progress``).
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from nsnn.io import json_text, make_run_dir
from nsnn.stdp.config import METHODS, PRUNE_SCOPES, TARGETS, STDPConfig
from nsnn.training.cli import explicit_dests
from nsnn.training.config import HelpFormatter

if TYPE_CHECKING:
    from nsnn.data import ImageSet
    from nsnn.stdp.runio import StdpRun

# A new run's data sizes when not given; --from-run takes the saved run's own instead.
NEW_RUN_DATA = {"train": 8000, "test": 2000}

# Training/network flags a --from-run evaluation cannot apply: it uses the saved run's configuration.
FROM_RUN_FIXED = (
    "neurons",
    "prune_every",
    "prune_scope",
    "levels",
    "intensity",
    "retry_max",
    "train_retry",
    "target",
    "method",
    "chunk",
    "seed",
)
# Keys of the --json line besides a sweep's rows.
JSON_KEYS = ("run_dir", "accuracy", "ms_per_example_train", "synapses", "nonzero_synapses", "bits")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """The BPTT scripts' help (each flag's ``(default: ...)``) under this module's docstring as written."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (its description is this module's docstring)."""
    p = argparse.ArgumentParser(prog="stdp_mnist.py", description=__doc__, formatter_class=_HelpFormatter)
    p.add_argument("--neurons", type=int, default=400, help="excitatory (= inhibitory) neurons N")
    p.add_argument(
        "--train",
        type=int,
        default=None,
        help="training examples (one pass, in order; default: 8000, with --from-run the saved run's)",
    )
    p.add_argument(
        "--test",
        type=int,
        default=None,
        help="test examples (default: 2000, with --from-run the saved run's)",
    )
    p.add_argument(
        "--label", type=int, default=None, help="training examples used to assign labels (default: all)"
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="RUN",
        help="finish an interrupted run (its folder) with its own configuration and data, training on after "
        "its last completed block (only --data-dir, --json and --progress may be given with it)",
    )
    p.add_argument("--prune", type=float, default=0.0, help="fraction of X->Ae synapses removed, in [0, 1)")
    p.add_argument(
        "--prune-threshold",
        type=float,
        default=None,
        metavar="W",
        help="instead of --prune: remove the X->Ae synapses whose weight is <= W (in [0, w_max)), at the"
        " same points (with --from-run: from the saved run's dense weights)",
    )
    p.add_argument(
        "--prune-every",
        type=int,
        default=0,
        help="compress every K training examples and at the end: prune (the sparsity growing linearly"
        " with the examples seen up to --prune) and with --bits transmit quantized weights from then on;"
        " 0 = once after training",
    )
    p.add_argument(
        "--prune-scope",
        choices=PRUNE_SCOPES,
        default="neuron",
        help="rank weights per neuron (equal fan-in) or over the whole matrix",
    )
    p.add_argument(
        "--bits", type=int, default=32, help="weight bits 1-16 (2**bits levels over [0, w_max]); 32 = float"
    )
    p.add_argument(
        "--levels",
        type=float,
        nargs="+",
        default=None,
        help="explicit device conductance levels in [0, w_max], instead of --bits, applied when the weights"
        " are deployed (training transmits full precision)",
    )
    p.add_argument("--intensity", type=float, default=2.0, help="input intensity (max rate = 31.875 Hz x it)")
    p.add_argument("--retry-max", type=int, default=3, help="re-presentations of a silent example")
    p.add_argument(
        "--train-retry",
        action=argparse.BooleanOptionalAction,
        default=STDPConfig.train_retry,
        help="also retry silent training examples (at the end of each block; label/test always retry)",
    )
    p.add_argument(
        "--sweep",
        action="store_true",
        help="also compress the trained dense net at sparsity {0,50,75,90}%% x bits {32,8,4,2}",
    )
    p.add_argument(
        "--from-run",
        default=None,
        help="instead of training, evaluate this saved run (its own config): its dense weights compressed"
        " at --prune (or --prune-threshold) and --bits, or with --sweep at every pair; a run compressed"
        " during training as saved. The new folder holds the evaluation (no weights.npz: a training run"
        " given --prune/--bits saves its compressed weights)",
    )
    p.add_argument(
        "--target",
        choices=TARGETS,
        default="standalone",
        help="Brian2 execution target (standalone builds C++ with make and g++ or $CXX; numpy needs no"
        " compiler)",
    )
    p.add_argument("--method", choices=METHODS, default="exponential_euler", help="integration of Ae")
    p.add_argument(
        "--chunk",
        type=int,
        default=500,
        help="examples per network run (a compiled standalone run; a training block, after which the"
        " progress is saved): w and θ carry over, membranes, conductances and traces restart, so results"
        " depend on it, alike on every target",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every random stream of the run")
    p.add_argument("--data-dir", default=None, help="folder with the MNIST idx files (default: embedded)")
    p.add_argument(
        "--download",
        action="store_true",
        help="fetch the full MNIST into --data-dir first (md5-checked; files already valid are kept)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="run directory (default: runs/stdp-<neurons>-<time>; with --from-run runs/stdp-compress-<time>, "
        "with --from-run --sweep runs/stdp-sweep-<time>)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr (default: only when it is a terminal; else plain progress lines)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parsed and checked flags; ``inherited`` (a set) names the data flags taken from a --from-run run."""
    p = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    given = explicit_dests(p, argv)
    if args.resume is not None:
        others = sorted(given - {"resume", "data_dir", "json", "progress"})
        if others:
            flags = ", ".join("--" + n.replace("_", "-") for n in others)
            p.error(f"--resume finishes the run with its own configuration and data; drop {flags}")
    if args.neurons < 1:
        p.error(f"--neurons must be >= 1, got {args.neurons}")
    prunes = args.prune > 0 or args.prune_threshold is not None
    if args.prune_every > 0 and not prunes and args.bits >= 32 and not args.from_run:
        p.error(
            "--prune-every K compresses every K training examples: give --prune > 0 (or --prune-threshold)"
            " or --bits < 32 as well (--levels are applied at deployment only)"
        )
    if args.download and not args.data_dir:
        p.error("--download fetches the full MNIST into --data-dir: give --data-dir too")
    if args.label is not None and args.label < 1:
        p.error(f"--label must be >= 1 (default: all training examples), got {args.label}")
    if args.levels is not None and "bits" in given:
        p.error("--levels gives the deployed levels and --bits uniform ones: give one of them")
    args.compression_given = bool({"prune", "prune_threshold", "bits", "levels"} & given)
    if args.from_run:
        fixed = [n for n in FROM_RUN_FIXED if n in given]
        if fixed:
            flags = ", ".join("--" + n.replace("_", "-") for n in fixed)
            p.error(f"--from-run evaluates the saved run with its own configuration; drop {flags}")
    if args.sweep and (prunes or args.bits != 32 or args.levels):
        p.error(
            "--sweep runs its own sparsity x bits grid on the dense network; "
            "drop --prune, --prune-threshold, --bits and --levels"
        )
    _fill_data_flags(args, p)
    return args


def _saved_data(args: argparse.Namespace, p: argparse.ArgumentParser) -> dict[str, Any]:
    """The data flags of the trained run ``--from-run`` (or ``--resume``) names (its config.json's ``run``
    record)."""
    from nsnn.io import read_json
    from nsnn.stdp.runio import CONFIG

    flag, folder = ("--resume", args.resume) if args.resume else ("--from-run", args.from_run)
    try:
        saved = read_json(Path(folder) / CONFIG)
    except (OSError, ValueError) as e:
        p.error(f"{flag} {folder}: no readable STDP run {CONFIG} ({e})")
    if not isinstance(saved.get("run"), dict):
        p.error(
            f"{flag} {folder} is not an STDP run: its {CONFIG} has no 'run' section "
            "(a BPTT run? test those with scripts/testing_*.py)"
        )
    run = saved["run"]
    if "n_train" not in run:  # the folder of a --from-run or --sweep evaluation, not of a training
        origin = f"; give the run it evaluated: --from-run {run['sweep_of']}" if "sweep_of" in run else ""
        p.error(f"{flag} {folder} holds an evaluation of another run, not a trained run{origin}")
    data = run.get("data", "embedded")
    return {
        "train": run["n_train"],
        "test": run["n_test"],
        "label": run.get("n_label"),
        "data_dir": None if data == "embedded" else data,
    }


def _fill_data_flags(args: argparse.Namespace, p: argparse.ArgumentParser) -> None:
    """Data flags not given: a new run's defaults, or with --from-run the saved run's own data (its
    label count only with its own --train); ``--data-dir`` made absolute."""
    source: dict[str, Any] = dict(NEW_RUN_DATA)
    args.inherited = set()
    if args.from_run or args.resume:
        source = _saved_data(args, p)
        if args.train is not None:  # labels drawn from the --train given: all of it unless --label
            source["label"] = None
        args.inherited = {name for name, value in source.items() if getattr(args, name) is None and value}
    for name, value in source.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.label is not None and args.label > args.train:
        p.error(f"--label {args.label} exceeds the {args.train} training examples it is taken from")
    if args.data_dir:  # recorded absolute, so --from-run finds the data from any working directory
        args.data_dir = str(Path(args.data_dir).expanduser().resolve())


def load_data(args: argparse.Namespace) -> tuple[ImageSet, ImageSet]:
    """The first ``--train`` / ``--test`` examples of the embedded split or of ``--data-dir``."""
    from nsnn.data import (
        DatasetError,
        download_mnist,
        embedded_mnist_hint,
        embedded_mnist_split,
        load_mnist_folder,
    )

    if args.data_dir:
        try:
            if args.download:
                download_mnist(args.data_dir, progress=args.progress)
            train, test = load_mnist_folder(args.data_dir, "train"), load_mnist_folder(args.data_dir, "test")
        except DatasetError as e:
            flags = "--data-dir and --download" if args.download else "--data-dir"
            raise SystemExit(f"error: {e}\n{embedded_mnist_hint(flags)}") from None
    else:
        train, test = embedded_mnist_split()
    where = args.data_dir or "the embedded MNIST split"
    for name, n, available in (("train", args.train, len(train)), ("test", args.test, len(test))):
        if not 1 <= n <= available:
            origin = f" (the saved run's; give --{name} to choose)" if name in args.inherited else ""
            raise SystemExit(
                f"error: --{name} {n}{origin} must be in [1, {available}]: the {name} examples of {where}"
            )
    return train.subset(slice(0, args.train)), test.subset(slice(0, args.test))


def _config(args: argparse.Namespace) -> STDPConfig:
    try:
        return STDPConfig(
            n_exc=args.neurons,
            prune=args.prune,
            prune_threshold=args.prune_threshold,
            prune_every=args.prune_every,
            prune_scope=args.prune_scope,
            bits=args.bits,
            levels=args.levels,
            intensity=args.intensity,
            retry_max=args.retry_max,
            train_retry=args.train_retry,
            target=args.target,
            method=args.method,
            chunk=args.chunk,
            seed=args.seed,
        )
    except ValueError as e:
        raise SystemExit(f"invalid configuration: {e}") from e


def _source_run(args: argparse.Namespace) -> StdpRun:
    """The ``--from-run`` run, checked before any folder is made: one compressed during training
    cannot be compressed afresh, and a ``--prune-threshold`` must leave some of its synapses."""
    from nsnn.stdp import load_run

    try:
        run = load_run(args.from_run)
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: --from-run {args.from_run}: {e}") from None
    if "w_xe_dense" not in run.extra_weights and (args.sweep or args.compression_given):
        asked = "--sweep" if args.sweep else "--prune/--prune-threshold/--bits"  # --levels: refused before
        raise SystemExit(
            f"error: --from-run {args.from_run} was compressed during training (prune_every "
            f"{run.config.prune_every}) and keeps no dense weights to compress afresh; drop {asked} to "
            "evaluate its saved network"
        )
    if args.prune_threshold is not None:  # checked as a training run's (a weight below its w_max)
        from nsnn.stdp.experiment import check_prune_threshold

        try:
            run.config.replace(prune=args.prune, prune_threshold=args.prune_threshold)
        except ValueError as e:
            raise SystemExit(f"invalid configuration: {e}") from None
        try:  # and on the run's dense weights, which it must not all prune
            check_prune_threshold(run, args.prune_threshold)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
    return run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the summary it reports."""
    args = parse_args(argv)
    if args.resume is not None:
        return _resume(args)
    config = _config(args)
    source_run = _source_run(args) if args.from_run else None
    _require_build_tools(config if source_run is None else source_run.config, new_run=source_run is None)
    train, test = load_data(args)
    if source_run is None and train is not None:
        from nsnn.stdp.pipeline import check_prune_schedule

        try:  # before the run folder is made
            check_prune_schedule(config, len(train.labels))
        except ValueError as e:
            raise SystemExit(f"invalid configuration: {e}") from None
    out = sys.stderr if args.json else sys.stdout
    prefix = f"stdp-{args.neurons}"
    if args.from_run:
        prefix = "stdp-sweep" if args.sweep else "stdp-compress"
    created = args.out is None or not Path(args.out).exists()  # else an empty folder, kept as it was
    root = Path("runs")  # of a run without --out
    parents = _missing_folders(Path(args.out).parent if args.out is not None else root)
    try:
        run_dir = make_run_dir(args.out, prefix, root)
    except FileExistsError as e:
        raise SystemExit(str(e)) from None
    except OSError as e:  # a read-only place, a file in the path
        raise SystemExit(f"error: --out {args.out}: cannot make the run folder ({e.strerror or e})") from None
    if source_run is not None:
        return _guarded(
            run_dir, lambda: _evaluate(args, train, test, run_dir, source_run, out), created, parents
        )
    return _guarded(run_dir, lambda: _train(args, config, train, test, run_dir, out), created, parents)


def _missing_folders(path: Path) -> list[Path]:
    """``path`` and those of its parent folders that do not exist yet, deepest first: the folders making
    it creates. Resolved as making them goes (``Path.resolve``): the symlinks of the existing part
    followed before a ``..`` after them is applied, as ``link/..`` is the link target's parent."""
    path = path.resolve()
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _require_build_tools(config: STDPConfig, *, new_run: bool) -> None:
    """Exit with one line, before any folder is made, when ``config``'s standalone target cannot build
    (no make or C++ compiler); a new run is told of ``--target numpy``, which needs neither."""
    from nsnn.stdp.engine import require_build_tools

    try:
        require_build_tools(config, ", or give --target numpy, which needs neither" if new_run else "")
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None


def _guarded(
    run_dir: Path,
    work: Callable[[], dict[str, Any]],
    created: bool | None = None,
    parents: Sequence[Path] = (),
) -> dict[str, Any]:
    """``work()``, its Python warnings printed plainly as they come (one issued during training lets the
    user stop the run early) and a Ctrl-C told how to go on from it (``--resume``, or why it cannot:
    :func:`~nsnn.stdp.experiment.resume_refusal`), as is an error that left a resumable run.

    ``created``: None for a run resumed in ``run_dir``, else whether this command made the folder (False:
    it was empty); ``parents``: the folders above it that it made too, deepest first. A new run
    interrupted before its first training block was saved has nothing to resume: what it wrote is
    removed (:func:`_discard_unsaved`), so the same command can be run again. One stopped by an error
    keeps its folder (the error may point into its build) and says so.
    """
    from nsnn.stdp.experiment import resume_refusal
    from nsnn.stdp.runio import finish_hint

    # Brian2 routes Python warnings into its log on import (logging.captureWarnings): imported first (as
    # nsnn imports it, keeping an ignored SIGINT ignored), it does so before the block below, which then
    # prints ours plainly.
    importlib.import_module("nsnn.stdp._brian")
    with warnings.catch_warnings():
        warnings.showwarning = _print_warning
        try:
            return work()
        except KeyboardInterrupt:
            if created is not None and _discard_unsaved(run_dir, created, "interrupted", parents):
                raise SystemExit(130) from None
            refusal = resume_refusal(run_dir)
            how = f"{run_dir} holds an unfinished run; {finish_hint(run_dir)}" if refusal is None else refusal
            print(f"\ninterrupted: {how}", file=sys.stderr)
            raise SystemExit(130) from None
        except BaseException as e:
            # an error keeps the folder (its message may point into the build) and says what to do
            if isinstance(e, SystemExit) and e.code in (0, None):
                raise
            if created is not None and _nothing_saved(run_dir):
                again = "delete it (or give another --out) to run again"
                print(f"\n{run_dir} holds no progress to resume; {again}", file=sys.stderr)
            elif not isinstance(e, SystemExit):  # an error (a full disk), not a refusal that says why
                refusal = resume_refusal(run_dir)
                how = (
                    f"{run_dir} holds an unfinished run; {finish_hint(run_dir)}"
                    if refusal is None
                    else refusal
                )
                print(f"\n{how}", file=sys.stderr)
            raise


def _print_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` of the command line: one plain line on stderr (above any progress bar)."""
    from tqdm import tqdm

    kind = "" if category is UserWarning else f" ({category.__name__})"
    tqdm.write(f"warning{kind}: {message}", file=sys.stderr)


def _nothing_saved(run_dir: Path) -> bool:
    """Whether the new run in ``run_dir`` saved nothing to go on from or to read: no training progress
    (``train_state.npz``), no ``summary.json`` and no row in ``metrics.csv`` (an evaluation's finished
    cells count)."""
    from nsnn.io import read_csv
    from nsnn.stdp.runio import PROGRESS, SUMMARY

    if not run_dir.is_dir() or (run_dir / PROGRESS).is_file() or (run_dir / SUMMARY).is_file():
        return False
    return not ((run_dir / "metrics.csv").is_file() and read_csv(run_dir / "metrics.csv"))


def _discard_unsaved(run_dir: Path, created: bool, how: str, parents: Sequence[Path] = ()) -> bool:
    """Remove what a new run wrote into ``run_dir`` (and the folder itself if ``created``, then each of
    ``parents``, the folders made for it, deepest first, while empty) when it was ``how``
    (interrupted) before saving anything (:func:`_nothing_saved`). Says so in one line on stderr; False
    (nothing removed) otherwise, or when the folder cannot be cleared."""
    from nsnn.io import release_run_dir

    if not _nothing_saved(run_dir):
        return False
    try:
        for entry in run_dir.iterdir():  # all written by this run: the folder was new or empty
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        if created:
            run_dir.rmdir()  # before the lock is released: no other run can have taken the folder
        release_run_dir(run_dir)
    except OSError as e:
        print(f"\n{how}: could not remove the unfinished {run_dir} ({e})", file=sys.stderr)
        return False
    for folder in parents:
        try:
            folder.rmdir()
        except OSError:  # no longer empty (something else was put there): it and those above stay
            break
    where = f"{run_dir} removed" if created else f"{run_dir} emptied"
    print(
        f"\n{how} before any progress was saved: nothing was kept ({where}); the same command can be run "
        "again",
        file=sys.stderr,
    )
    return True


def _resume(args: argparse.Namespace) -> dict[str, Any]:
    """``--resume RUN``: finish the run on its own data (:func:`nsnn.stdp.resume_experiment`)."""
    from nsnn.stdp import resume_experiment

    train, test = load_data(args)
    run_dir = Path(args.resume)
    out = sys.stderr if args.json else sys.stdout

    def work() -> dict[str, Any]:
        try:
            summary = resume_experiment(run_dir, train, test, progress=args.progress)
        except (OSError, ValueError) as e:
            raise SystemExit(f"error: --resume {run_dir}: {e}") from None
        return _report(args, summary, run_dir, out)

    return _guarded(run_dir, work)


def _print_rows(rows: list[dict[str, Any]], out: TextIO) -> None:
    for row in rows:
        print(
            f"sparsity {100 * row['sparsity']:4.0f} %  bits {row['bits']:2d}: "
            f"accuracy {100 * row['accuracy']:.2f} %  ({row['nonzero_synapses']:,} of "
            f"{row['synapses']:,} synapses nonzero)",
            file=out,
        )


def _evaluate(
    args: argparse.Namespace,
    train: ImageSet,
    test: ImageSet,
    run_dir: Path,
    source_run: StdpRun,
    out: TextIO,
) -> dict[str, Any]:
    """Compress (or, for a run compressed during training, take as saved) and evaluate ``source_run``
    into ``run_dir``; print the result to ``out`` (and the ``--json`` line) and return it."""
    from nsnn.stdp import retest_run, sweep_run
    from nsnn.stdp.experiment import weight_bits_label

    kwargs = {"run_dir": run_dir, "n_label": args.label, "progress": args.progress}
    kwargs["data"] = args.data_dir or "embedded"
    if "w_xe_dense" not in source_run.extra_weights:
        print(
            f"note: {args.from_run} was compressed during training: evaluating its saved network "
            f"(sparsity {100 * source_run.state.sparsity:.0f} %, {weight_bits_label(source_run.config)})",
            file=out,
        )
        rows = [retest_run(source_run, train, test, **kwargs)]
    else:
        if not (args.sweep or args.compression_given) and source_run.config.compressed:
            print(
                "note: --from-run evaluates the run's dense weights as they were before compression unless "
                "--prune / --prune-threshold / --bits are given",
                file=out,
            )
        cells: dict[str, Any] = {}
        if args.prune_threshold is not None:
            cells = {"prune_threshold": args.prune_threshold, "bits": (args.bits,)}
        elif not args.sweep:
            cells = {"sparsities": (args.prune,), "bits": (args.bits,)}
        try:
            rows = sweep_run(source_run, train, test, **kwargs, **cells)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
    _print_rows(rows, out)
    source = source_run.summary
    result: dict[str, Any] = {
        "run_dir": str(run_dir.resolve()),
        "sweep": rows,
        "ms_per_example_train": source.get("ms_per_example_train"),
        **{k: source.get(k) for k in ("accuracy", "synapses", "nonzero_synapses", "bits")},
    }
    if not args.sweep:
        (row,) = rows
        result.update({k: row[k] for k in ("accuracy", "synapses", "nonzero_synapses", "bits", "sparsity")})
    if args.json:
        print(json_text(result))
    return result


def _train(
    args: argparse.Namespace, config: STDPConfig, train: ImageSet, test: ImageSet, run_dir: Path, out: TextIO
) -> dict[str, Any]:
    """Train and evaluate into ``run_dir``; print the result to ``out`` (and the ``--json`` line) and
    return the summary."""
    from nsnn.stdp import run_experiment

    summary = run_experiment(
        config,
        train,
        test,
        run_dir=run_dir,
        n_label=args.label,
        sweep=args.sweep,
        progress=args.progress,
        data=args.data_dir or "embedded",
    )
    return _report(args, summary, run_dir, out)


def _report(args: argparse.Namespace, summary: dict[str, Any], run_dir: Path, out: TextIO) -> dict[str, Any]:
    """Print a trained run's result to ``out`` (and the ``--json`` line); returns ``summary``."""
    print(
        f"test accuracy {100 * summary['accuracy']:.2f} % "
        f"(on its labelling examples {100 * summary['label_accuracy']:.2f} %),"
        f" {summary['synapses']:,} X->Ae synapses ({summary['nonzero_synapses']:,} nonzero),"
        f" {summary['ms_per_example_train']:.1f} ms/example training, run dir {run_dir}",
        file=out,
    )
    if summary.get("sweep"):
        print("compressed after training:", file=out)
        _print_rows(summary["sweep"], out)
    if args.json:
        result = {k: summary[k] for k in JSON_KEYS}
        if summary.get("sweep"):
            result["sweep"] = summary["sweep"]
        print(json_text(result))
    return summary
