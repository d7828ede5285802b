"""Command line: every figure and graph file that applies to a run, checkpoint or STDP weights file.

    python -m visualizer runs/stdp-1 --out figs/                       # topology, fields, hist, curves
    python -m visualizer runs/bptt-1/best.pt --out figs/ --what topology rates --format png svg
    python -m visualizer runs/bptt-1 --out figs/ --what raster --batch x.pt --export none

Files are named ``<prefix><what>.<format>`` (and ``<prefix>topology.<graphml|gexf|json>``) inside
``--out`` itself; names that are not plain file names (a ``--prefix`` holding a path separator:
``sub/``, ``../``, absolute) or that would resolve outside it (symlinks) are refused, so nothing is
written anywhere else. An existing file is replaced only if the visualizer wrote it (it carries
:data:`visualizer.render.WRITER_MARK`): anything else, e.g. the trainer's own ``curves.png`` when
``--out`` is the run folder, is refused before any work unless ``--overwrite`` is given. Exit status 0
on success, 2 on a bad input or a failure while making the figures (one-line message on stderr).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from nsnn.training.cli import explicit_dests
from visualizer.api import FIGURES, Session, refuse_foreign
from visualizer.export import GRAPH_FORMATS, export
from visualizer.render import IMAGE_FORMATS, safe_output, save_figure, written_by_visualizer
from visualizer.sources import StdpRun
from visualizer.stdp_graph import INHIBITION

# Flags only one kind of source reads: given for the other kind, they are refused (not silently unused).
BPTT_ONLY = frozenset({"batch", "batch_raw", "batch_size"})
STDP_ONLY = frozenset({"top_k", "patch", "inhibition"})


def build_parser() -> argparse.ArgumentParser:
    what_help = "; ".join(f"{name}: {spec.help}" for name, spec in FIGURES.items())
    p = argparse.ArgumentParser(
        prog="python -m visualizer",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="STDP run dir or weights.npz, BPTT run dir, or nsnn checkpoint (.pt)")
    p.add_argument("--out", required=True, help="output folder (created); nothing is written outside it")
    p.add_argument(
        "--what",
        nargs="+",
        action="extend",
        choices=list(FIGURES),
        metavar="WHAT",
        help=f"figures to make (repeatable; default: all that apply). {what_help}",
    )
    p.add_argument(
        "--format",
        nargs="+",
        action="extend",
        choices=IMAGE_FORMATS,
        dest="formats",
        help="image formats (default: png)",
    )
    p.add_argument(
        "--export",
        nargs="+",
        action="extend",
        choices=[*GRAPH_FORMATS, "none"],
        dest="exports",
        help="graph files written with the topology (default: graphml json)",
    )
    p.add_argument(
        "--batch",
        help="input batch for BPTT rasters/rates/topology, a .pt tensor or .npy: images of the static-image "
        "dataset the checkpoint's run names ([B, C, H, W], [B, H, W] or [B, C*H*W]; uint8 in [0, 255] or "
        "float in [0, 1]) are preprocessed as its test images (normalised, encoded over T as in training), "
        "and such a uint8 file holding only 0 and 1 is refused as ambiguous (use --batch-raw for spikes); "
        "anything else (every file of an event-frame run, DVS) is model input as stored: [T, B, ...], or "
        "[B, C, H, W] / [B, F] repeated over T (as stored for a model that takes no time axis); uint8 "
        "model input only as 0/1 spikes; an empty file is refused (default: the run's test set, else "
        "uniform noise)",
    )
    p.add_argument(
        "--batch-raw",
        action="store_true",
        help="use the --batch file as model input as stored, even when it is shaped like the run's "
        "images (e.g. images already normalised, or 0/1 spikes stored as uint8)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="images taken from the run's test set")
    p.add_argument("--before", help="checkpoint before compression, for the BPTT weight histogram")
    p.add_argument(
        "--inhibition",
        choices=INHIBITION,
        default="summary",
        help="STDP graph: summarize the all-but-self inhibition, or store its every synapse",
    )
    p.add_argument("--top-k", type=int, default=3, help="STDP drawing: strongest input patches per neuron")
    p.add_argument("--patch", type=int, default=None, help="STDP drawing: pixel patch side (default: auto)")
    p.add_argument(
        "--prefix",
        default="",
        help="prepended to every file name, e.g. stdp_ -> stdp_topology.png (no path separator: files go "
        "in --out itself)",
    )
    p.add_argument("--dpi", type=int, default=150, help="PNG resolution")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing files the visualizer did not write (by default they are refused)",
    )
    return p


def _check_flags_used(given: set[str], wanted: list[str], exports: list[str]) -> None:
    """ValueError for a flag typed on the command line that none of the ``wanted`` figures reads."""
    unused = {
        "exports": (  # --export none asks for nothing, which it gets
            "topology" not in wanted and bool(exports),
            "writes the topology's graph files; add --what topology",
        ),
        "inhibition": (
            "topology" not in wanted or not exports,
            "shapes the STDP topology's graph files; add --what topology and an --export format",
        ),
        "top_k": ("topology" not in wanted, "is read by the STDP topology drawing; add --what topology"),
        "patch": ("topology" not in wanted, "is read by the STDP topology drawing; add --what topology"),
        "batch": (
            not {"raster", "rates", "topology"} & set(wanted),
            "feeds the raster, rates and topology figures; add one of them to --what",
        ),
        "batch_raw": ("batch" not in given, "says how to read a --batch file; add one"),
        "batch_size": ("batch" in given, "takes images from the run's test set; a --batch brings its own"),
    }
    for name, (idle, why) in unused.items():
        if name in given and idle:
            flag = "--export" if name == "exports" else "--" + name.replace("_", "-")
            raise ValueError(f"{flag} {why}")


def run(args: argparse.Namespace) -> list[Path]:
    """Make the requested figures; returns the files written. ``args.given`` (optional): the flags
    typed on the command line, checked against the kind of source."""
    for name in ("batch_size", "dpi", "top_k"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if "none" in (args.exports or []) and len(set(args.exports)) > 1:
        raise ValueError(
            f"--export none writes no graph files; drop it or {sorted(set(args.exports) - {'none'})}"
        )
    formats = list(dict.fromkeys(args.formats or ["png"]))
    exports = (
        [] if "none" in (args.exports or []) else list(dict.fromkeys(args.exports or ["graphml", "json"]))
    )
    draw_options = {"stdp": {"top_k": args.top_k, "patch": args.patch}}
    session = Session(
        args.source,
        batch=args.batch,
        batch_raw=args.batch_raw,
        batch_size=args.batch_size,
        before=args.before,
        inhibition=args.inhibition,
        draw_options=draw_options,
    )
    stdp = isinstance(session.source, StdpRun)
    foreign_flags = sorted(getattr(args, "given", set()) & (BPTT_ONLY if stdp else STDP_ONLY))
    refuse_foreign(args.source, stdp, ["--" + name.replace("_", "-") for name in foreign_flags])
    applicable = [name for name, spec in FIGURES.items() if spec.applies(session.source)]
    wanted = list(dict.fromkeys(args.what or applicable))
    refused = [name for name in wanted if name not in applicable]
    if refused:
        raise ValueError(f"{refused} do not apply to {args.source}; this input supports {applicable}")
    if args.before is not None and "hist" not in wanted:
        raise ValueError("--before is read by the hist figure only; add --what hist")
    _check_flags_used(getattr(args, "given", set()), wanted, exports)
    # Every target is resolved before any work, so a symlink out of --out fails first.
    out.mkdir(parents=True, exist_ok=True)
    targets = {name: [safe_output(out, f"{args.prefix}{name}.{fmt}") for fmt in formats] for name in wanted}
    graph_targets = (
        [safe_output(out, f"{args.prefix}topology.{fmt}") for fmt in exports] if "topology" in wanted else []
    )
    foreign = [
        path
        for path in [*(p for paths in targets.values() for p in paths), *graph_targets]
        if path.exists() and not written_by_visualizer(path)
    ]
    if foreign and not args.overwrite:
        raise ValueError(
            f"refusing to overwrite {', '.join(p.name for p in foreign)} in {out.resolve()}: "
            "not written by the visualizer (e.g. a trainer's own curves.png); choose another --out "
            "or a --prefix, or pass --overwrite"
        )
    written: list[Path] = []
    for name in wanted:
        fig = FIGURES[name].make(session)
        for path in targets[name]:
            written.append(save_figure(fig, path, dpi=args.dpi))
            print(f"[visualizer] wrote {path}")
        if name == "topology":  # the graph files with their drawing, so a later figure's error keeps them
            for path in graph_targets:
                written.append(export(session.graph, path))
                print(f"[visualizer] wrote {path}")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.given = explicit_dests(parser, argv)
    try:
        run(args)
    except (OSError, ValueError) as e:  # OSError: also an --out that is a file, or under one
        print(f"python -m visualizer: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # e.g. raised inside a model's forward or by torch while recording spikes
        lines = str(e).strip().splitlines()
        print(f"python -m visualizer: error: RuntimeError: {lines[0] if lines else ''}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
