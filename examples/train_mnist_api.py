"""Train, reload and evaluate a noisy spiking network through the nsnn.training API (CPU, minutes).

    python examples/train_mnist_api.py [--epochs 3] [--out runs/api-demo]

1. ``fit`` trains ``mnist_convnet`` (NILIF neurons, T=4) on the embedded MNIST 8k/2k split and writes
   a run directory (config.json, metrics.csv, curves.png, last.pt, best.pt, summary.json): ``--out``,
   by default ``runs/mnist-mnist_convnet-<date>-<time>`` under the current folder.
2. ``load_model`` rebuilds the best network from its checkpoint alone.
3. ``evaluate`` scores it with stochastic spikes (K = 1 and 8 samples), deterministic spikes
   (the noise-free network) and expected spikes (firing probabilities propagated).
"""

import argparse

from nsnn.data import get_dataset
from nsnn.training import TrainConfig, evaluate, fit, load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", help="run directory to create (default: a new one under ./runs)")
    args = p.parse_args()
    if args.epochs < 1:
        p.error(f"--epochs must be at least 1, got {args.epochs}")

    result = fit(
        TrainConfig(
            dataset="mnist",
            model="mnist_convnet",
            neuron="NILIF",
            sigma=0.3,
            timestep=4,
            epochs=args.epochs,
            minibatch=64,
            lr=2e-3,
            device="cpu",
            out=args.out,
        )
    )
    print(f"run dir {result['run_dir']}: test accuracy {result['test_accuracy']:.4f}")

    model, ckpt = load_model(result["run_dir"])
    bundle = get_dataset(ckpt["config"]["dataset"])
    loader = bundle.loader(bundle.test, 500, train=False)
    for mode, k in [("stochastic", 1), ("stochastic", 8), ("deterministic", 1), ("expected", 1)]:
        scores = evaluate(model, loader, timestep=ckpt["config"]["timestep"], eval_mode=mode, n_ensembles=k)
        print(f"{mode:13s} K={k}: accuracy {scores['accuracy']:.4f}  loss {scores['loss']:.4f}")


if __name__ == "__main__":
    main()
