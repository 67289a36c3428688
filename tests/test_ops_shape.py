"""Shape ops: reshape, flatten, transpose, permute, getitem (basic, strided and integer-array
indexing with repeats) and constant padding, incl. option A's shortcut (subsample + pad channels)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minires.functional as F
import reference as ref
from minires.backend import to_device
from opcheck import TIGHT, assert_close, check_float32, check_grad, given_settings, rng_for, tensor

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)
seeds = st.integers(0, 2**32 - 1)


@given(shape=shapes, data=st.data(), seed=seeds)
@given_settings
def test_reshape(device, shape, data, seed):
    x = rng_for(seed).standard_normal(shape)
    size = x.size
    divisors = [d for d in range(1, size + 1) if size % d == 0]
    a = data.draw(st.sampled_from(divisors), label="a")
    new = data.draw(st.sampled_from([(a, size // a), (a, -1), (-1,), (size // a, 1, a)]), label="new shape")
    expected = x.reshape(new)
    assert_close(F.reshape(tensor(x, device), new), expected, **TIGHT)
    assert_close(tensor(x, device).reshape(*new), expected, **TIGHT)
    assert_close(tensor(x, device).view(new), expected, **TIGHT)
    check_grad(lambda t: F.reshape(t, new), [x], device)


@given(shape=shapes, data=st.data(), seed=seeds)
@given_settings
def test_flatten(device, shape, data, seed):
    nd = len(shape)
    start = data.draw(st.integers(-nd, nd - 1), label="start")
    end = data.draw(st.integers(start % nd, nd - 1), label="end")
    if data.draw(st.booleans(), label="negative end"):
        end -= nd
    x = rng_for(seed).standard_normal(shape)
    s, e = start % nd, end % nd
    expected = x.reshape(x.shape[:s] + (-1,) + x.shape[e + 1:])
    assert_close(F.flatten(tensor(x, device), start, end), expected, **TIGHT)
    assert_close(tensor(x, device).flatten(start, end), expected, **TIGHT)
    check_grad(lambda t: F.flatten(t, start, end), [x], device)


@given(shape=shapes, data=st.data(), seed=seeds)
@given_settings
def test_permute_and_transpose(device, shape, data, seed):
    nd = len(shape)
    dims = tuple(data.draw(st.permutations(range(nd)), label="dims"))
    d0, d1 = data.draw(st.integers(-nd, nd - 1), label="d0"), data.draw(st.integers(-nd, nd - 1), label="d1")
    x = rng_for(seed).standard_normal(shape)
    assert_close(F.permute(tensor(x, device), dims), np.transpose(x, dims), **TIGHT)
    assert_close(tensor(x, device).permute(*dims), np.transpose(x, dims), **TIGHT)
    assert_close(F.transpose(tensor(x, device), d0, d1), np.swapaxes(x, d0, d1), **TIGHT)
    assert_close(tensor(x, device).T, x.T, **TIGHT)
    check_grad(lambda t: F.permute(t, dims), [x], device)
    check_grad(lambda t: F.transpose(t, d0, d1), [x], device)


INDEXES = {
    "int": 1,
    "negative int": -1,
    "slice": slice(1, 3),
    "option A stride": (slice(None), slice(None), slice(None, None, 2), slice(None, None, 2)),
    "strided offset": (Ellipsis, slice(1, None, 3)),
    "None and int": (None, 0, slice(None), 2),
    "int array with repeats": np.array([0, 2, 0, 0, 1]),
    "2-D int array": np.array([[1, 1], [0, 2]]),
    "mixed slice and array": (slice(None), np.array([3, 3, 0])),
    "two arrays": (np.array([0, 1, 1]), np.array([2, 2, 0])),
    "bool mask": np.array([True, False, True]),
}


@pytest.mark.parametrize("name", list(INDEXES))
def test_getitem(device, name):
    x = rng_for(25).standard_normal((3, 4, 5, 4))
    index = INDEXES[name]
    dev_index = tuple(to_device(p, device) if isinstance(p, np.ndarray) else p for p in index) if isinstance(index, tuple) \
        else (to_device(index, device) if isinstance(index, np.ndarray) else index)
    assert_close(F.getitem(tensor(x, device), dev_index), x[index], **TIGHT)
    assert_close(tensor(x, device)[dev_index], x[index], **TIGHT)
    check_grad(lambda t: t[dev_index], [x], device)


def test_getitem_repeated_indices_add_up(device):
    """x[[0, 0, 0]] reads x[0] three times: its gradient is the sum of the three."""
    x = tensor(np.arange(3.0), device, requires_grad=True)
    x[to_device(np.array([0, 0, 2, 0]), device)].backward(tensor(np.array([1.0, 10.0, 100.0, 1000.0]), device))
    assert_close(x.grad, np.array([1011.0, 0.0, 100.0]), **TIGHT)


@given(shape=shapes, data=st.data(), seed=seeds)
@given_settings
def test_pad(device, shape, data, seed):
    npairs = data.draw(st.integers(1, len(shape)), label="padded dims")
    widths = tuple(data.draw(st.lists(st.integers(0, 2), min_size=2 * npairs, max_size=2 * npairs), label="widths"))
    value = data.draw(st.sampled_from([0.0, 1.5]), label="value")
    x = rng_for(seed).standard_normal(shape)
    assert_close(F.pad(tensor(x, device), widths, value), ref.pad(x, widths, value), **TIGHT)
    check_grad(lambda t: F.pad(t, widths, value), [x], device)


def test_option_a_shortcut(device):
    """He et al.'s option A shortcut: subsample by 2 and zero-pad the channels,
    F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p))."""
    x = rng_for(26).standard_normal((2, 3, 5, 4))

    def shortcut(t):
        return F.pad(t[:, :, ::2, ::2], (0, 0, 0, 0, 2, 1))

    y = shortcut(tensor(x, device))
    assert y.shape == (2, 6, 3, 2)
    expected = np.zeros((2, 6, 3, 2))
    for c in range(3):
        for i in range(3):
            for j in range(2):
                expected[:, c + 2, i, j] = x[:, c, 2 * i, 2 * j]
    assert_close(y, expected, **TIGHT)
    check_grad(shortcut, [x], device)


@pytest.mark.parametrize(
    "fn",
    [
        lambda t: F.reshape(t, (4, -1)),
        lambda t: F.flatten(t, 1),
        lambda t: F.transpose(t, 0, 2),
        lambda t: F.permute(t, (2, 0, 1)),
        lambda t: t[:, ::2, 1:],
        lambda t: t[to_device(np.array([1, 1, 0]), t.device)],
        lambda t: F.pad(t, (1, 2, 0, 0, 3, 0)),
    ],
    ids=["reshape", "flatten", "transpose", "permute", "slice", "int array", "pad"],
)
def test_shape_op_float32_stays_float32(device, fn):
    check_float32(fn, [rng_for(27).standard_normal((2, 4, 3))], device)
