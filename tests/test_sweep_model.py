"""The drift check's tolerance ratio: max |Δ| / (atol + rtol·|ref|) is ≤ 1 exactly when torch.allclose holds."""

from __future__ import annotations

import math

import pytest
import torch

from tpplan.sweep.model import tolerance_ratio


def test_ratio_is_one_at_the_bound_and_over_it_one_ulp_past():
    ref = torch.tensor([0.0, 1.0, -100.0, 5.0])
    bound = 1e-2 + (1e-2 * ref).abs()  # what allclose allows each element, in fp32 as ATen computes it
    half = ref + 0.5 * bound * torch.tensor([1.0, -1.0, 1.0, -1.0])
    assert tolerance_ratio(half, ref, atol=1e-2, rtol=1e-2) == pytest.approx(0.5, rel=1e-5)
    assert torch.allclose(half, ref, rtol=1e-2, atol=1e-2)
    # The element with the smallest bound (ref 0: atol alone) at its bound, then one fp32 ulp past it.
    at = ref.clone()
    at[0] = bound[0]
    assert tolerance_ratio(at, ref, atol=1e-2, rtol=1e-2) == 1.0 and torch.allclose(
        at, ref, rtol=1e-2, atol=1e-2
    )
    at[0] = torch.nextafter(bound[0], torch.tensor(1.0))
    assert tolerance_ratio(at, ref, atol=1e-2, rtol=1e-2) > 1.0 and not torch.allclose(
        at, ref, rtol=1e-2, atol=1e-2
    )


def test_relative_drift_on_a_near_zero_logit_is_not_a_failure():
    """The old max_rel (|Δ| / max(|ref|, atol)) reads 3 here against rtol 0.01, yet allclose holds: the
    near-zero logit is inside atol. The ratio says what allclose says."""
    ref = torch.tensor([1e-2, 20.0])
    got = torch.tensor([4e-2, 20.1])
    max_rel = ((got - ref).abs() / ref.abs().clamp_min(1e-2)).max().item()
    assert max_rel == pytest.approx(3.0, rel=1e-5) and torch.allclose(got, ref, rtol=1e-2, atol=5e-2)
    assert tolerance_ratio(got, ref, atol=5e-2, rtol=1e-2) == pytest.approx(3e-2 / (5e-2 + 1e-4), rel=1e-5)


def test_zero_bound_with_a_difference_is_infinitely_over_and_identical_is_zero():
    ref = torch.tensor([0.0, 2.0])
    assert tolerance_ratio(ref.clone(), ref, atol=0.0, rtol=0.0) == 0.0
    assert math.isinf(tolerance_ratio(torch.tensor([1e-30, 2.0]), ref, atol=0.0, rtol=1e-2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_allclose_iff_ratio_at_most_one_on_random_pairs(dtype):
    g = torch.Generator().manual_seed(0)
    seen = set()
    for i in range(400):
        scale = 10.0 ** torch.randint(-4, 3, (1,), generator=g).item()
        ref = (torch.randn(64, generator=g) * scale).to(dtype)
        noise = torch.randn(64, generator=g) * 10.0 ** torch.randint(-5, 0, (1,), generator=g).item()
        got = (ref.float() + noise).to(dtype)
        atol, rtol = [(1e-2, 1e-2), (1e-3, 1e-3), (0.0, 1e-2), (1e-5, 0.0)][i % 4]
        close = torch.allclose(got, ref, rtol=rtol, atol=atol)
        assert (tolerance_ratio(got, ref, atol=atol, rtol=rtol) <= 1) == close, (i, atol, rtol)
        seen.add(close)
    assert seen == {True, False}  # both sides of the bound were exercised
