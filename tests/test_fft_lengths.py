"""Fast FFT lengths are looked up, not searched for: choosing a method costs O(axes x log length),
and a transform that could never be allocated is refused (or avoided by ``"auto"``) at once."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_backend
from hypothesis import given
from hypothesis import strategies as st

import polyconv as pc
from polyconv._plan.fft import MAX_FFT_LENGTH, _fast_lengths, next_fast_length
from polyconv._spec import normalize
from polyconv.backends._cost import choose_method

RADICES = {True: (2, 3, 5), False: (2, 3, 5, 7, 11)}


def is_fast(n: int, real: bool) -> bool:
    for p in RADICES[real]:
        while n % p == 0:
            n //= p
    return n == 1


@given(st.integers(1, 200_000), st.booleans())
def test_next_fast_length_is_the_smallest_fast_length_at_least_the_target(
    target: int, real: bool
) -> None:
    n = next_fast_length(target, real)
    assert n >= target and is_fast(n, real)
    assert not any(is_fast(m, real) for m in range(target, n))


@pytest.mark.parametrize("real", [True, False])
def test_fast_lengths_are_every_fast_length_up_to_the_limit(real: bool) -> None:
    limit = 20_000
    assert _fast_lengths(limit, real) == tuple(n for n in range(1, limit + 1) if is_fast(n, real))


def test_next_fast_length_of_a_huge_target_answers() -> None:
    assert next_fast_length(10**12 - 1) == 10**12  # 2^12 5^12
    with pytest.raises(ValueError, match=str(MAX_FFT_LENGTH + 1)):
        next_fast_length(MAX_FFT_LENGTH + 1)


HUGE = {"dilation": 10**12, "stride": 10**12, "padding": "full"}


def test_auto_chooses_direct_when_the_transform_could_never_be_allocated() -> None:
    assert choose_method(normalize((1, 1, 5), (1, 1, 3), **HUGE)) == "direct"


def test_fft_on_a_transform_that_could_never_be_allocated_is_a_value_error_naming_its_size() -> (
    None
):
    with pytest.raises(ValueError, match="4000000000005 samples"):
        pc.correlate(np.ones((1, 1, 5)), np.ones((1, 1, 3)), method="fft", **HUGE)


def test_numpy_direct_padding_that_could_never_be_allocated_is_a_value_error_naming_its_size() -> (
    None
):
    with pytest.raises(ValueError, match="4000000000005 samples"):
        pc.correlate(np.ones((1, 1, 5)), np.ones((1, 1, 3)), backend="numpy", **HUGE)


def test_torch_computes_a_huge_dilation_directly() -> None:
    require_backend("torch")
    import torch

    y = pc.correlate(torch.ones((1, 1, 5)), torch.ones((1, 1, 3)), **HUGE)
    np.testing.assert_array_equal(y.numpy(), [[[1.0, 1.0, 1.0]]])
