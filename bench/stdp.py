"""Diehl & Cook STDP training speed, side by side in one process: the classic loop vs nsnn.

    python bench/stdp.py [--neurons 400] [--classic 20] [--examples 300] [--prune 0.75] [--floor 0.99]
                         [--repeats 3]

Same network, same N, same MNIST images (the embedded split's first training examples; the classic
loop, slow, is timed on the first ``--classic`` of the ``--examples`` images nsnn trains on):

* ``classic``: the Brian2 ports' loop (runtime mode, Cython): per example, normalise weights in numpy,
  set rates, ``run(350 ms)``, ``run(150 ms)`` at rate 0; silent examples are not presented again, as
  nsnn's engine here does not retry them either (both sides simulate one presentation per example);
* ``nsnn``: :class:`nsnn.stdp.engine.StandaloneEngine`, one compiled ``cpp_standalone`` run per chunk
  of examples, dense;
* ``nsnn pruned``: the same after magnitude pruning to ``1 − prune`` of the X→Ae synapses (per neuron);
* ``nsnn floor``: pruned to ``1 − floor`` of the synapses, to measure the cost that does not scale with
  synapses (neuron updates, input generation, per-step overhead).

Times are wall-clock ms per training example without code generation/compilation (reported apart),
plus CPU ms per example (the simulating process); each nsnn row keeps the run (of ``--repeats``, same
seed, so the same spikes) with the median CPU time, after one untimed run right after the build (the
compiler's jobs may still be winding down); the classic row is one run, the mean over its examples. On
shared machines compare ratios, and see the printed load average. ``events/ex`` counts X→Ae synaptic
events (input spikes × surviving out-degree). ``vs classic`` compares the dense rows only (a pruned row
against the dense classic loop would mix the gain of pruning with that of the engine); a last line adds
the build to the dense run and gives the run length from which it still is 20× faster (each change of
the synapses, e.g. every ``--prune-every`` block, is a new build).
The three nsnn rows fit ``time = fixed + c · events``; the pruned row's time above that fixed cost is
compared with its share of the dense events. Target: nsnn ≥ 20× faster than classic at N = 400;
pruned time ∝ synapses left.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--neurons", type=int, default=400)
    p.add_argument("--classic", type=int, default=20, help="examples for the classic loop")
    p.add_argument("--examples", type=int, default=300, help="examples for nsnn (dense and pruned)")
    p.add_argument("--prune", type=float, default=0.75, help="fraction of X->Ae synapses removed")
    p.add_argument("--floor", type=float, default=0.99, help="pruning of the fixed-cost row")
    p.add_argument("--repeats", type=int, default=3, help="runs per nsnn row (the median CPU time is kept)")
    p.add_argument("--chunk", type=int, default=100, help="examples per compiled run")
    args = p.parse_args()
    counts = {"--neurons": args.neurons, "--classic": args.classic, "--examples": args.examples}
    counts.update({"--repeats": args.repeats, "--chunk": args.chunk})
    bad = [f"{flag} {value}" for flag, value in counts.items() if value < 1]
    if bad:
        p.error(f"counts must be >= 1; got {', '.join(bad)}")
    if not (0 <= args.prune < 1 and 0 < args.floor < 1):
        p.error(
            f"--prune must lie in [0, 1) and --floor in (0, 1) (the fixed cost is fitted between the dense "
            f"and the floor row); got {args.prune} and {args.floor}"
        )

    from nsnn.data import embedded_mnist_split
    from nsnn.stdp import STDPConfig, init_state
    from nsnn.stdp.classic import classic_train
    from nsnn.stdp.engine import Phase, StandaloneEngine
    from nsnn.stdp.pipeline import compress_state
    from nsnn.stdp.state import image_rates

    train, _ = embedded_mnist_split()
    images = train.images[: max(args.classic, args.examples)].numpy()
    config = STDPConfig(n_exc=args.neurons, chunk=args.chunk)
    state = init_state(config)
    print(f"N = {args.neurons}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at start")

    t0 = time.perf_counter()
    classic = classic_train(config, images[: args.classic], state, target="cython", retry=False)
    classic_ms = classic.ms_per_example
    classic_cpu = 1e3 * classic.cpu_seconds / args.classic
    setup = time.perf_counter() - t0 - classic.seconds
    print(
        f"classic: {args.classic} examples, setup+codegen {setup:.1f} s, "
        f"{classic.counts.sum(1).mean():.1f} spikes/example"
    )

    rows = [("classic loop (runtime, 2 runs/example)", state.synapses, None, classic_ms, classic_cpu, setup)]
    rates = image_rates(images[: args.examples], config)
    with (
        tempfile.TemporaryDirectory(prefix="nsnn-bench-stdp-") as build_dir,
        StandaloneEngine(config, build_dir) as engine,
    ):
        for name, start in (
            ("nsnn standalone, dense", state),
            *(
                (f"nsnn standalone, {100 * (1 - prune):.0f} % synapses", compress_state(state, prune, config))
                for prune in (args.prune, args.floor)
            ),
        ):
            runs = [engine.run(Phase(rates, start, plastic=True, seed=1)) for _ in range(args.repeats + 1)]
            result = sorted(runs[1:], key=lambda r: r.cpu_seconds)[(args.repeats - 1) // 2]
            events = float(result.input_spikes @ start.mask.sum(axis=1)) / args.examples
            rows.append(
                (
                    name,
                    start.synapses,
                    events,
                    result.ms_per_example,
                    1e3 * result.cpu_seconds / args.examples,
                    runs[0].build_seconds,
                )
            )

    print(
        f"\n{'path':<40} {'synapses':>9} {'events/ex':>10} {'ms/example':>11} {'CPU ms/ex':>10} "
        f"{'build s':>8} {'vs classic':>10}"
    )
    for k, (name, synapses, events, ms, cpu, build) in enumerate(rows):
        counted = "-" if events is None else f"{events:.0f}"
        versus = f"{classic_ms / ms:.1f}x" if k == 1 else "-"
        print(f"{name:<40} {synapses:>9d} {counted:>10} {ms:>11.1f} {cpu:>10.1f} {build:>8.1f} {versus:>10}")
    dense, pruned, floor = rows[1], rows[2], rows[3]
    print(
        f"\nnsnn vs classic: {classic_ms / dense[3]:.1f}x wall, {classic_cpu / dense[4]:.1f}x CPU "
        "(target >= 20x; builds excluded on both sides)"
    )
    with_build = dense[3] + 1e3 * dense[5] / args.examples
    margin = classic_ms / 20 - dense[3]
    from_length = f"{math.ceil(1e3 * dense[5] / margin)} examples" if margin > 0 else "no run length"
    print(
        f"with its {dense[5]:.1f} s build: {with_build:.1f} ms/example over these {args.examples} examples "
        f"({classic_ms / with_build:.1f}x); 20x from runs of {from_length} on one network structure"
    )
    print(
        f"pruned vs dense: synapses {pruned[1] / dense[1]:.2f}, events {pruned[2] / dense[2]:.2f}, "
        f"time {pruned[3] / dense[3]:.2f} wall, {pruned[4] / dense[4]:.2f} CPU"
    )
    if dense[2] == floor[2]:
        print("CPU time not split into fixed + per event: the floor row had as many events as the dense one")
    else:
        per_event = (dense[4] - floor[4]) / (dense[2] - floor[2])
        fixed = floor[4] - per_event * floor[2]
        print(
            f"CPU time = {fixed:.1f} ms fixed + {1e6 * per_event:.2f} ns x events; pruned time above the "
            f"fixed cost: {(pruned[4] - fixed) / (dense[4] - fixed):.2f} of dense "
            f"(events {pruned[2] / dense[2]:.2f})"
        )
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
