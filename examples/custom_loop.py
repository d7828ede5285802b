"""A hand-written training loop from nsnn's parts, plus a custom evaluation perturbation.

    python examples/custom_loop.py [--epochs 2]

Uses the same building blocks as ``nsnn.training.fit`` (dataset bundle and on-device loader, model
zoo, loss registry, ``train_step``) but keeps the loop in view. Then registers a
``Perturbation`` (additive Gaussian noise on the normalised input) and evaluates robustness with it:
subclassing is all it takes to make it available by name (``get_perturbation``) in any process that
imports its definition (the testing scripts, which do not, list only the built-in ones).
"""

import argparse

import torch

from nsnn.data import get_dataset
from nsnn.models import create
from nsnn.training import Perturbation, build_loss, evaluate, get_perturbation, train_step


class InputGaussian(Perturbation):
    """x + strength · N(0, 1) on the normalised input batch (the reference's ``add_gaussian``)."""

    name = "input_gaussian"

    def perturb_input(self, x, y, forward):
        return x + self.strength * torch.randn_like(x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    torch.manual_seed(0)

    bundle = get_dataset("mnist")
    train, val = bundle.train_val_split(0.1, seed=0)
    loader = bundle.loader(train, 64, train=True, seed=0, drop_last=True)
    model = create("mnist_convnet", num_classes=10, neuron="NILIF", noise="logistic", sigma=0.3)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = build_loss("tet", lambda_tet=0.05)
    for epoch in range(args.epochs):
        loader.set_epoch(epoch)
        model.train()
        for x, y in loader:
            loss, _, _ = train_step(model, x, y, optimizer, loss_fn, timestep=4)
        val_scores = evaluate(model, bundle.loader(val, 500, train=False), timestep=4)
        print(
            f"epoch {epoch + 1}: last batch loss {loss.item():.4f}, val accuracy {val_scores['accuracy']:.4f}"
        )

    test = bundle.loader(bundle.test, 500, train=False)
    for strength in (0.0, 0.5, 1.0):
        scores = evaluate(model, test, timestep=4, perturbation=get_perturbation("input_gaussian", strength))
        print(f"input noise σ={strength}: test accuracy {scores['accuracy']:.4f}")


if __name__ == "__main__":
    main()
