"""Noise families: CDF/PDF consistency, sampling, numerical stability, validation, extensibility."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import nsnn
from nsnn.noise import NOISES, Noise, get_noise, list_noises

FAMILIES = ["gaussian", "logistic", "triangular", "uniform"]


def test_registry_lists_the_four_families():
    assert set(FAMILIES) <= set(list_noises())
    for name in FAMILIES:
        assert get_noise(name, 0.3).name == name


@pytest.mark.parametrize("name", FAMILIES)
def test_pdf_is_derivative_of_cdf(name):
    noise = get_noise(name, 0.37)
    x = torch.linspace(-1.5, 1.5, 2001, dtype=torch.float64)
    x = x[(x.abs() - 0.37).abs() > 1e-3]  # kinks of the uniform/triangular pdf
    eps = 1e-6
    fd = (noise.cdf(x + eps) - noise.cdf(x - eps)) / (2 * eps)
    torch.testing.assert_close(noise.pdf(x), fd, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_cdf_is_a_symmetric_distribution_function(name):
    noise = get_noise(name, 0.5)
    x = torch.linspace(-20, 20, 4001, dtype=torch.float64)
    c = noise.cdf(x)
    assert torch.all(c[1:] >= c[:-1])
    assert c[0] < 1e-6 and c[-1] > 1 - 1e-6
    torch.testing.assert_close(c + noise.cdf(-x), torch.ones_like(c), atol=1e-12, rtol=0)
    # total mass of the pdf is 1 (trapezoid rule on a fine grid)
    grid = torch.linspace(-12, 12, 200001, dtype=torch.float64)
    assert torch.trapezoid(noise.pdf(grid), grid).item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_samples_follow_the_cdf(name):
    noise = get_noise(name, 0.3)
    g = torch.Generator().manual_seed(1)
    n = 200_000
    s = noise.sample((n,), generator=g, dtype=torch.float64)
    assert s.shape == (n,) and s.dtype == torch.float64
    for q in (-0.4, -0.2, -0.05, 0.0, 0.1, 0.25):
        p = noise.cdf(torch.tensor(q, dtype=torch.float64)).item()
        freq = (s <= q).double().mean().item()
        bound = 5 * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-9
        assert abs(freq - p) <= bound, (q, freq, p)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_precision_samples_follow_the_cdf_into_the_tails(name: str, dtype: torch.dtype):
    """Empirical CDF of a large bf16/fp16 sample vs the family's CDF, from the 1e-4 to the 1 − 1e-4
    quantile: within 5 binomial standard deviations, plus the mass the cast to ``dtype`` can move
    across ``q`` (values within a relative half-ulp ``u`` of it)."""
    noise = get_noise(name, 0.3)
    n = 1 << 21
    s = noise.sample((n,), generator=torch.Generator().manual_seed(2), dtype=dtype)
    assert s.shape == (n,) and s.dtype == dtype and torch.isfinite(s).all()
    s = s.double()
    u = torch.finfo(dtype).eps / 2
    for p in (1e-4, 1e-3, 0.02, 0.2, 0.5, 0.8, 0.98, 0.999, 1 - 1e-4):
        q = noise.sigma * noise._icdf(torch.tensor(p, dtype=torch.float64)).item()
        # a sample x lands at or below q after rounding only if x <= q·(1 + 2u) (q > 0) or q·(1 − 2u) (q < 0)
        lo, hi = (noise.cdf(torch.tensor(q * (1 + k * 2 * u), dtype=torch.float64)).item() for k in (-1, 1))
        lo, hi = min(lo, hi), max(lo, hi)
        freq = (s <= q).double().mean().item()
        binomial = 5 * math.sqrt(p * (1 - p) / n) + 1 / n
        assert lo - binomial <= freq <= hi + binomial, (p, q, freq, lo, hi)


def test_sample_seeded_device_dtype():
    noise = get_noise("logistic", 0.2)
    a = noise.sample((3, 4), generator=torch.Generator().manual_seed(5), dtype=torch.bfloat16)
    b = noise.sample((3, 4), generator=torch.Generator().manual_seed(5), dtype=torch.bfloat16)
    assert a.dtype == torch.bfloat16 and a.device.type == "cpu"
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_finite_for_any_finite_input(name, dtype):
    noise = get_noise(name, 0.04)
    big = torch.finfo(dtype).max
    x = torch.tensor([-big, -1e4, -50.0, -1.0, 0.0, 1e-3, 1.0, 50.0, 1e4, big], dtype=dtype)
    c, p = noise.cdf(x), noise.pdf(x)
    assert c.dtype == dtype and p.dtype == dtype
    assert torch.isfinite(c).all() and torch.isfinite(p).all()
    assert (c >= 0).all() and (c <= 1).all() and (p >= 0).all()


def test_integer_input_gives_float_probabilities():
    noise = get_noise("gaussian", 0.3)
    c, p = noise.cdf(torch.tensor([0, 1])), noise.pdf(torch.tensor([False, True]))
    assert c.dtype == torch.float32 and p.dtype == torch.float32
    torch.testing.assert_close(c, noise.cdf(torch.tensor([0.0, 1.0])))
    torch.testing.assert_close(p, noise.pdf(torch.tensor([0.0, 1.0])))


def test_logistic_backward_does_not_overflow():
    # the reference computed exp(-z)/(1+exp(-z))^2, which is NaN for very negative z
    p = get_noise("logistic", 0.04).pdf(torch.tensor([-100.0, -10.0, 10.0, 100.0]))
    assert torch.isfinite(p).all() and (p >= 0).all()


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), 1e-40])
def test_bad_sigma_raises(bad):
    with pytest.raises(ValueError, match="valid"):
        get_noise("gaussian", bad)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_smallest_sigma_keeps_every_formula_finite_in_float32(family):
    noise = get_noise(family, torch.finfo(torch.float32).tiny)
    x = torch.tensor([0.0, 1e-38, -1e-38, 1.0, -1.0, 3e38, -3e38])
    assert torch.isfinite(noise.cdf(x)).all() and torch.isfinite(noise.pdf(x)).all()
    assert noise.pdf(torch.zeros(1)).item() > 1e37


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match=r"gaussian.*logistic.*triangular.*uniform"):
        get_noise("cauchyish", 0.3)


def test_a_fifth_family_is_one_class():
    class Laplace(Noise):
        name = "Test-Laplace"  # names are looked up case-insensitively

        @staticmethod
        def _cdf(z):
            return torch.where(z < 0, 0.5 * torch.exp(z), 1 - 0.5 * torch.exp(-z))

        @staticmethod
        def _pdf(z):
            return 0.5 * torch.exp(-z.abs())

        @staticmethod
        def _icdf(p):
            return torch.where(p < 0.5, torch.log(2 * p), -torch.log(2 * (1 - p)))

    try:
        noise = get_noise("Test-Laplace", 0.3)
        assert isinstance(noise, Laplace) and isinstance(get_noise("test-laplace", 0.3), Laplace)
        neuron = nsnn.NILIF(noise="test-laplace", sigma=0.3)
        n = 40_000
        x = torch.full((1, n), 0.9, requires_grad=True)
        s = neuron(x)
        # one step from rest: P(spike) = F(0.9 - 1.0); gradient = f(0.9 - 1.0)
        p = noise.cdf(torch.tensor(-0.1)).item()
        assert abs(s.mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)
        s.sum().backward()
        torch.testing.assert_close(x.grad, noise.pdf(torch.full((1, n), -0.1)))
        lif = nsnn.LIF(surrogate="test-laplace", sigma=0.3)
        assert lif.noise == noise
    finally:
        NOISES.pop("test-laplace", None)


def test_a_family_that_takes_a_builtin_name_warns_and_an_abstract_one_is_not_registered():
    builtin = NOISES["gaussian"]

    def define_gaussian() -> type[Noise]:
        class Impostor(Noise):
            name = "gaussian"
            _cdf, _pdf, _icdf = builtin._cdf, builtin._pdf, builtin._icdf

        return Impostor

    try:
        with pytest.warns(UserWarning, match="replaces nsnn.noise.Gaussian"):
            define_gaussian()
        assert NOISES["gaussian"].__qualname__.endswith("Impostor")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            define_gaussian()  # the same class defined again (a re-run notebook cell): no warning
    finally:
        NOISES["gaussian"] = builtin

    class Unfinished(Noise):  # no _cdf/_pdf/_icdf yet: an abstract base for other families
        name = "test-unfinished"

    assert "test-unfinished" not in NOISES


def test_equality_depends_on_sigma():
    assert get_noise("gaussian", 0.3) == get_noise("gaussian", 0.3)
    assert get_noise("gaussian", 0.3) != get_noise("gaussian", 0.5)
    assert get_noise("gaussian", 0.3) != get_noise("logistic", 0.3)


@pytest.mark.parametrize("name", list_noises())
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_cdf_and_pdf_are_computed_in_float32(name: str, dtype: torch.dtype):
    noise = get_noise(name, 0.3)
    x = torch.linspace(-1, 1, 201).to(dtype)
    assert torch.equal(noise.cdf(x), noise.cdf(x.float()).to(dtype))
    assert torch.equal(noise.pdf(x), noise.pdf(x.float()).to(dtype))


def test_get_noise_takes_a_family_class():
    from nsnn.noise import Gaussian, Uniform

    assert get_noise(Gaussian, 0.2) == Gaussian(0.2) and get_noise(Uniform, 0.5).sigma == 0.5
    with pytest.raises(ValueError, match="valid choices: gaussian"):
        get_noise(Noise)  # abstract: no family
    with pytest.raises(ValueError, match="noise 'gaussian'"):
        get_noise(Gaussian, -1.0)
