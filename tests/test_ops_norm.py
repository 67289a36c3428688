"""batch_norm: forward and running statistics against the textbook formula (PyTorch's
semantics), backward by gradcheck in training and eval modes, float32 kept."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minires.functional as F
import reference as ref
from minires import no_grad
from minires.backend import to_device, to_numpy
from opcheck import TIGHT, assert_close, check_float32, check_grad, given_settings, rng_for, tensor


@st.composite
def bn_cases(draw):
    """(N, C) or (N, C, H, W) inputs with at least 2 values per channel, and the options."""
    four_d = draw(st.booleans())
    c = draw(st.integers(1, 4))
    if four_d:
        shape = (draw(st.integers(1, 3)), c, draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    else:
        shape = (draw(st.integers(2, 8)), c)
    if shape[0] * int(np.prod(shape[2:], dtype=int)) < 2:  # training needs 2+ values per channel
        shape = (2,) + shape[1:]
    return dict(
        shape=shape,
        affine=draw(st.sampled_from(["both", "weight", "bias", "none"])),
        momentum=draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])),
        eps=draw(st.sampled_from([1e-5, 1e-3, 0.1])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def _arrays(case):
    rng = rng_for(case["seed"])
    shape, c = case["shape"], case["shape"][1]
    # A per-channel offset and scale, so that normalising is not a no-op.
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3, size=c).reshape((1, c) + (1,) * (len(shape) - 2))
    x += rng.standard_normal(c).reshape((1, c) + (1,) * (len(shape) - 2))
    w = rng.standard_normal(c) if case["affine"] in ("both", "weight") else None
    b = rng.standard_normal(c) if case["affine"] in ("both", "bias") else None
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2.0, size=c)
    return x, w, b, rm, rv


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@given(case=bn_cases())
@given_settings
def test_batch_norm_forward_and_running_stats_match_textbook(device, training, case):
    x, w, b, rm, rv = _arrays(case)
    rm_d, rv_d = to_device(rm.copy(), device), to_device(rv.copy(), device)
    y = F.batch_norm(tensor(x, device), rm_d, rv_d, None if w is None else tensor(w, device),
                     None if b is None else tensor(b, device), training=training, momentum=case["momentum"], eps=case["eps"])
    y_ref, rm_ref, rv_ref = ref.batch_norm(x, rm, rv, w, b, training, case["momentum"], case["eps"])
    assert_close(y, y_ref, rtol=1e-9, atol=1e-11)
    # Updated in place (training, unbiased variance, running = (1-m)*running + m*stat) or untouched (eval).
    assert_close(rm_d, rm_ref, **TIGHT)
    assert_close(rv_d, rv_ref, **TIGHT)
    if not training:
        np.testing.assert_array_equal(to_numpy(rm_d), rm)
        np.testing.assert_array_equal(to_numpy(rv_d), rv)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@given(case=bn_cases())
@given_settings
def test_batch_norm_gradcheck(device, training, case):
    x, w, b, rm, rv = _arrays(case)
    rm_d, rv_d = to_device(rm, device), to_device(rv, device)

    def fn(x, w, b):
        return F.batch_norm(x, rm_d, rv_d, w, b, training=training, momentum=case["momentum"], eps=case["eps"])

    check_grad(fn, [x, w, b], device)


def test_batch_norm_training_without_running_stats(device):
    rng = rng_for(5)
    x, w, b = rng.standard_normal((4, 3, 2, 2)), rng.standard_normal(3), rng.standard_normal(3)
    y = F.batch_norm(tensor(x, device), None, None, tensor(w, device), tensor(b, device), training=True)
    assert_close(y, ref.batch_norm(x, None, None, w, b, True)[0], rtol=1e-9, atol=1e-11)
    check_grad(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [x, w, b], device)


def test_batch_norm_updates_tensor_running_stats_in_place(device):
    """Running statistics given as Tensors (as a module's buffers would be) are updated in place."""
    rng = rng_for(6)
    x = rng.standard_normal((5, 2)) * 3 + 1
    rm, rv = tensor(np.zeros(2), device), tensor(np.ones(2), device)
    data_before = rm.data
    F.batch_norm(tensor(x, device), rm, rv, training=True, momentum=0.25)
    _, rm_ref, rv_ref = ref.batch_norm(x, np.zeros(2), np.ones(2), training=True, momentum=0.25)
    assert rm.data is data_before
    assert_close(rm, rm_ref, **TIGHT)
    assert_close(rv, rv_ref, **TIGHT)


def test_batch_norm_updates_running_stats_under_no_grad(device):
    """As in PyTorch, training-mode statistics are tracked whether or not a graph is recorded."""
    rng = rng_for(7)
    x = rng.standard_normal((4, 3))
    rm, rv = to_device(np.zeros(3), device), to_device(np.ones(3), device)
    with no_grad():
        F.batch_norm(tensor(x, device, requires_grad=True), rm, rv, training=True)
    _, rm_ref, rv_ref = ref.batch_norm(x, np.zeros(3), np.ones(3), training=True)
    assert_close(rm, rm_ref, **TIGHT)
    assert_close(rv, rv_ref, **TIGHT)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm_float32_stays_float32(device, training):
    rng = rng_for(8)
    x, w, b = rng.standard_normal((3, 4, 3, 2)), rng.standard_normal(4), rng.standard_normal(4)
    stats = {}

    def fn(x, w, b):
        dt = x.dtype
        rm = to_device(np.full(4, 0.2, dtype=dt), device)
        rv = to_device(np.full(4, 1.5, dtype=dt), device)
        stats[np.dtype(dt).name] = (rm, rv)
        return F.batch_norm(x, rm, rv, w, b, training=training)

    check_float32(fn, [x, w, b], device)
    rm32, rv32 = stats["float32"]
    assert rm32.dtype == np.float32 and rv32.dtype == np.float32  # updated in place, still float32
    assert_close(rm32, to_numpy(stats["float64"][0]), rtol=1e-5, atol=1e-6)
    assert_close(rv32, to_numpy(stats["float64"][1]), rtol=1e-5, atol=1e-6)
