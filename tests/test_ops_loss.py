"""log_softmax and cross_entropy: forward by the definition (in decimal arithmetic, exact
even for logits of +-1000), backward by gradcheck, every reduction, stability, float32."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minires.functional as F
import reference as ref
from minires import Tensor
from minires.backend import to_device, to_numpy
from opcheck import TIGHT, assert_close, check_float32, check_grad, given_settings, rng_for, tensor

REDUCTIONS = ["mean", "sum", "none"]


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), data=st.data(), seed=st.integers(0, 2**32 - 1))
@given_settings
def test_log_softmax_forward_and_gradcheck(device, shape, data, seed):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    x = rng_for(seed).standard_normal(shape) * 3
    assert_close(F.log_softmax(tensor(x, device), dim), ref.log_softmax(x, dim), **TIGHT)
    check_grad(lambda x: F.log_softmax(x, dim), [x], device)


@st.composite
def ce_cases(draw):
    n, c = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = rng_for(seed)
    return rng.standard_normal((n, c)) * 2, rng.integers(0, c, size=n)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(case=ce_cases())
@given_settings
def test_cross_entropy_forward_and_gradcheck(device, reduction, case):
    logits, target = case
    target_d = to_device(target, device)
    got = F.cross_entropy(tensor(logits, device), target_d, reduction=reduction)
    assert_close(got, ref.cross_entropy(logits, target, reduction), **TIGHT)
    check_grad(lambda x: F.cross_entropy(x, target_d, reduction=reduction), [logits], device)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_with_huge_logits_is_finite_and_exact(device, reduction):
    """Logits of +-1000 overflow a naive exp; loss and gradient must stay finite and exact."""
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -999.0], [1000.0, 1000.0, 999.5], [3.0, -1000.0, 1000.0]])
    target = np.array([1, 2, 0, 0])
    x = tensor(logits, device, requires_grad=True)
    loss = F.cross_entropy(x, to_device(target, device), reduction=reduction)
    expected = ref.cross_entropy(logits, target, reduction)
    assert np.all(np.isfinite(loss.numpy()))
    assert_close(loss, expected, rtol=1e-12, atol=1e-9)
    assert ref.cross_entropy(logits, target, "none").max() > 1000  # really in overflow territory
    g = rng_for(13).standard_normal(loss.shape)
    loss.backward(to_device(g, device))
    assert np.all(np.isfinite(to_numpy(x.grad)))
    assert_close(x.grad, ref.cross_entropy_grad(logits, target, g, reduction), rtol=1e-9, atol=1e-12)


def test_log_softmax_with_huge_logits_is_finite_and_exact(device):
    logits = np.array([[1000.0, -1000.0, 0.0, 999.0], [-1000.0, -1000.0, -1000.0, -999.0]])
    for dim in (0, 1):
        y = F.log_softmax(tensor(logits, device), dim)
        assert np.all(np.isfinite(y.numpy()))
        assert_close(y, ref.log_softmax(logits, dim), rtol=1e-12, atol=1e-9)
    # The gradient at huge logits, checked numerically and finite.
    check_grad(lambda x: F.log_softmax(x, 1), [logits], device)
    x = tensor(logits, device, requires_grad=True)
    F.log_softmax(x, 1).backward(to_device(rng_for(14).standard_normal(logits.shape), device))
    assert np.all(np.isfinite(to_numpy(x.grad)))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_gradcheck_at_huge_logits(device, reduction):
    logits = np.array([[1000.0, -1000.0, 999.0], [-1000.0, -999.5, -1000.0]])
    target_d = to_device(np.array([0, 2]), device)
    check_grad(lambda x: F.cross_entropy(x, target_d, reduction=reduction), [logits], device)


@pytest.mark.parametrize("target_kind", ["list", "tensor", "int32"])
def test_cross_entropy_target_forms(device, target_kind):
    """Targets may be a list, an integer Tensor, or any integer dtype."""
    logits = rng_for(15).standard_normal((3, 4))
    target = np.array([3, 0, 3])
    t = {"list": [3, 0, 3], "tensor": Tensor(to_device(target, device)), "int32": to_device(target.astype(np.int32), device)}
    if target_kind == "list" and device != "cpu":
        pytest.skip("a Python list is a CPU target")
    assert_close(F.cross_entropy(tensor(logits, device), t[target_kind]), ref.cross_entropy(logits, target), **TIGHT)


@pytest.mark.parametrize(
    "fn",
    [lambda x: F.log_softmax(x, 1), lambda x: F.log_softmax(x, 0)]
    + [lambda x, r=r: F.cross_entropy(x, to_device(np.array([0, 3, 1, 1, 2]), x.device), reduction=r) for r in REDUCTIONS],
    ids=["log_softmax1", "log_softmax0", "ce_mean", "ce_sum", "ce_none"],
)
def test_loss_float32_stays_float32(device, fn):
    check_float32(fn, [rng_for(16).standard_normal((5, 4)) * 3], device)
