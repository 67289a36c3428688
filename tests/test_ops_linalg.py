"""matmul (batched, broadcasting leading dimensions) and linear (with and without bias)."""
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import minires.functional as F
import reference as ref
from opcheck import TIGHT, assert_close, check_float32, check_grad, given_settings, rng_for, tensor


@given(
    batch=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3),
    m=st.integers(1, 3), k=st.integers(1, 4), n=st.integers(1, 3), seed=st.integers(0, 2**32 - 1),
)
@given_settings
def test_matmul_batched_broadcasting(device, batch, m, k, n, seed):
    rng = rng_for(seed)
    sa, sb = batch.input_shapes
    a, b = rng.standard_normal(sa + (m, k)), rng.standard_normal(sb + (k, n))
    assert_close(F.matmul(tensor(a, device), tensor(b, device)), ref.matmul(a, b), **TIGHT)
    assert_close(tensor(a, device) @ tensor(b, device), ref.matmul(a, b), **TIGHT)
    check_grad(F.matmul, [a, b], device)


@given(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2), fin=st.integers(1, 5), fout=st.integers(1, 4),
    bias=st.booleans(), seed=st.integers(0, 2**32 - 1),
)
@given_settings
def test_linear_forward_and_gradcheck(device, lead, fin, fout, bias, seed):
    rng = rng_for(seed)
    x, w = rng.standard_normal(tuple(lead) + (fin,)), rng.standard_normal((fout, fin))
    b = rng.standard_normal(fout) if bias else None
    got = F.linear(tensor(x, device), tensor(w, device), None if b is None else tensor(b, device))
    assert_close(got, ref.linear(x, w, b), **TIGHT)
    check_grad(F.linear, [x, w, b], device)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_float32_stays_float32(device, bias):
    rng = rng_for(23)
    arrays = [rng.standard_normal((4, 5)), rng.standard_normal((3, 5))] + ([rng.standard_normal(3)] if bias else [])
    check_float32(F.linear, arrays, device)


def test_matmul_float32_stays_float32(device):
    rng = rng_for(24)
    check_float32(F.matmul, [rng.standard_normal((2, 1, 3, 4)), rng.standard_normal((3, 4, 2))], device)
