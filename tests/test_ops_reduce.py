"""sum and mean over drawn dimensions, with and without keepdim."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minires.functional as F
from opcheck import TIGHT, assert_close, check_float32, check_grad, given_settings, rng_for, tensor


def _loop_reduce(x, dims, keepdim, mean):
    """sum/mean over ``dims`` by visiting every element once (no NumPy reduction)."""
    dims = sorted(d % x.ndim for d in dims)
    kept = tuple(1 if i in dims else n for i, n in enumerate(x.shape))
    out = [[] for _ in range(int(np.prod(kept, dtype=int)))]
    for idx in np.ndindex(*x.shape):
        key = tuple(0 if i in dims else v for i, v in enumerate(idx))
        out[np.ravel_multi_index(key, kept)].append(float(x[idx]))
    vals = np.array([math.fsum(v) / (len(v) if mean else 1) for v in out]).reshape(kept)
    return vals if keepdim else vals.reshape(tuple(n for i, n in enumerate(x.shape) if i not in dims))


@st.composite
def reduce_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    nd = len(shape)
    dims = draw(st.one_of(
        st.none(),
        st.integers(-nd, nd - 1),
        st.lists(st.integers(0, nd - 1), unique=True, min_size=1, max_size=nd).map(
            lambda ds: tuple(d - nd if i % 2 else d for i, d in enumerate(ds))  # mix negative dims in
        ),
    ))
    return shape, dims, draw(st.booleans()), draw(st.integers(0, 2**32 - 1))


@pytest.mark.parametrize("name", ["sum", "mean"])
@given(case=reduce_cases())
@given_settings
def test_reduction_forward_and_gradcheck(device, name, case):
    shape, dim, keepdim, seed = case
    x = rng_for(seed).standard_normal(shape)
    fn = getattr(F, name)
    dims = range(len(shape)) if dim is None else ((dim,) if isinstance(dim, int) else dim)
    expected = _loop_reduce(x, dims, keepdim, mean=name == "mean")
    assert_close(fn(tensor(x, device), dim, keepdim), expected, **TIGHT)
    assert_close(getattr(tensor(x, device), name)(dim=dim, keepdim=keepdim), expected, **TIGHT)  # method form
    check_grad(lambda t: fn(t, dim, keepdim), [x], device)


@pytest.mark.parametrize("name", ["sum", "mean"])
@pytest.mark.parametrize("dim,keepdim", [(None, False), (1, True), ((0, 2), False)])
def test_reduction_float32_stays_float32(device, name, dim, keepdim):
    check_float32(lambda t: getattr(F, name)(t, dim, keepdim), [rng_for(22).standard_normal((3, 4, 5))], device)
