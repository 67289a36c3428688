"""Pooling: max and average against direct loops, backward by gradcheck (inputs drawn
without ties so max pooling is differentiable), global/adaptive average pooling, float32."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minires.functional as F
import reference as ref
from opcheck import TIGHT, assert_close, check_float32, check_grad, distinct, given_settings, rng_for, tensor

POOLS = {"max": (F.max_pool2d, ref.max_pool2d), "avg": (F.avg_pool2d, ref.avg_pool2d)}


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))  # PyTorch: padding <= kernel/2
    stride = draw(st.one_of(st.none(), st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    kernel = draw(st.sampled_from([(kh, kw), kh])) if kh == kw else (kh, kw)
    padding = draw(st.sampled_from([(ph, pw), ph])) if ph == pw else (ph, pw)
    h = draw(st.integers(max(1, kh - 2 * ph), max(1, kh - 2 * ph) + 6))
    w = draw(st.integers(max(1, kw - 2 * pw), max(1, kw - 2 * pw) + 6))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)
    return dict(shape=shape, kernel=kernel, stride=stride, padding=padding, seed=draw(st.integers(0, 2**32 - 1)))


@pytest.mark.parametrize("kind", ["max", "avg"])
@given(case=pool_cases())
@given_settings
def test_pool_forward_matches_loops(device, kind, case):
    ours, theirs = POOLS[kind]
    x = distinct(rng_for(case["seed"]), case["shape"])
    got = ours(tensor(x, device), case["kernel"], case["stride"], case["padding"])
    assert_close(got, theirs(x, case["kernel"], case["stride"], case["padding"]), **TIGHT)


@pytest.mark.parametrize("kind", ["max", "avg"])
@given(case=pool_cases())
@given_settings
def test_pool_gradcheck(device, kind, case):
    ours, _ = POOLS[kind]
    # Distinct values at least 0.1 apart: no ties, and eps = 1e-6 never changes a window's argmax.
    x = distinct(rng_for(case["seed"]), case["shape"])
    check_grad(lambda x: ours(x, case["kernel"], case["stride"], case["padding"]), [x], device)


def test_max_pool2d_routes_gradient_to_the_maximum(device):
    """An explicit case: overlapping 3x3 windows, stride 1; each output's gradient goes to
    its window's maximum, and a value that is the maximum of several windows sums them."""
    x = distinct(rng_for(9), (1, 1, 4, 4))
    t = tensor(x, device, requires_grad=True)
    y = F.max_pool2d(t, 3, stride=1)
    assert y.shape == (1, 1, 2, 2)
    g = rng_for(10).standard_normal((2, 2))
    y.backward(tensor(g.reshape(y.shape), device))
    expected = x * 0
    for i in range(2):
        for j in range(2):
            win = x[0, 0, i:i + 3, j:j + 3]
            u, v = divmod(int(win.argmax()), 3)
            expected[0, 0, i + u, j + v] += g[i, j]
    assert_close(t.grad, expected, **TIGHT)


@pytest.mark.parametrize("fn", [F.global_avg_pool2d, lambda x: F.adaptive_avg_pool2d(x, 1)], ids=["global", "adaptive"])
def test_global_average_pooling(device, fn):
    x = rng_for(11).standard_normal((2, 3, 4, 5))
    y = fn(tensor(x, device))
    expected = ref.global_avg_pool2d(x)
    assert_close(y, expected if y.ndim == 2 else expected[:, :, None, None], **TIGHT)
    check_grad(fn, [x], device)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: F.max_pool2d(x, 3, 2, 1),
        lambda x: F.avg_pool2d(x, (3, 2), (1, 2), (1, 1)),
        F.global_avg_pool2d,
        lambda x: F.adaptive_avg_pool2d(x, (1, 1)),
    ],
    ids=["max", "avg", "global", "adaptive"],
)
def test_pool_float32_stays_float32(device, fn):
    check_float32(fn, [distinct(rng_for(12), (2, 3, 5, 6))], device)
