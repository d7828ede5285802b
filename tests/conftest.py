"""Checks shared by several test modules, offered as fixtures."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import nsnn


def _compiled_matches_eager(neuron: str, device: str, atol: float) -> None:
    """A small SNN compiled with ``fullgraph=True`` (fails on any graph break) gives the eager run's
    spikes and gradients for the same seed (inductor draws random numbers as eager does only with
    ``fallback_random``)."""
    with torch._inductor.config.patch(fallback_random=True):
        _compare_compiled(neuron, device, atol)


def _compare_compiled(neuron: str, device: str, atol: float) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(nsnn.SeqToANN(torch.nn.Linear(20, 30)), nsnn.build_neuron(neuron, sigma=0.3))
    net = net.to(device)
    compiled = torch.compile(net, fullgraph=True)
    x = torch.randn(4, 3, 20, device=device) + 0.5
    results = []
    for model in (net, compiled):
        xi = x.clone().requires_grad_(True)
        torch.manual_seed(1)
        out = model(xi)
        out.sum().backward()
        results.append((out.detach(), xi.grad, [p.grad.clone() for p in net.parameters()]))
        net.zero_grad()
    (a, ga, pa), (b, gb, pb) = results
    assert 0.0 < a.mean().item() < 1.0
    assert torch.equal(a, b) and torch.allclose(ga, gb, atol=atol)
    for p, q in zip(pa, pb, strict=True):
        assert torch.allclose(p, q, atol=atol)


@pytest.fixture
def compiled_matches_eager() -> Callable[[str, str, float], None]:
    return _compiled_matches_eager
