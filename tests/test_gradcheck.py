"""The gradient checker itself: it passes correct backwards, catches wrong ones (including
a bug that an all-ones upstream gradient would hide), names the culprit, and refuses
inputs it cannot check. Every op's own gradcheck lives in tests/test_ops_*.py."""
import numpy as np
import pytest

import minires.functional as F
from minires import Function, GradcheckError, Tensor, gradcheck
from minires.backend import get_array_module, to_numpy
from opcheck import rng_for, tensor


class _Scaled(Function):
    """y = a * x + b; backward's factor for x is ``dx_factor`` (a: right when equal to a)."""

    def __init__(self, a, dx_factor, db_factor=1.0):
        self.a, self.dx_factor, self.db_factor = a, dx_factor, db_factor

    def forward(self, x, b):
        return self.a * x + b

    def backward(self, gy):
        return self.dx_factor * gy, self.db_factor * gy


class _Softmax(Function):
    """softmax along the last axis; with ``forget=True`` backward returns zeros. The sum of
    a softmax is constant, so an all-ones upstream gradient (d sum / dx = 0) cannot tell."""

    def __init__(self, forget):
        self.forget = forget

    def forward(self, x):
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=-1, keepdims=True))
        self.y = e / e.sum(axis=-1, keepdims=True)
        return self.y

    def backward(self, gy):
        if self.forget:
            return gy * 0
        return self.y * (gy - (gy * self.y).sum(axis=-1, keepdims=True))


def _inputs(device, *shapes, requires_grad=True):
    rng = rng_for(30)
    return [tensor(rng.standard_normal(s), device, requires_grad=requires_grad) for s in shapes]


def test_passes_a_correct_backward(device):
    x, b = _inputs(device, (3, 4), (3, 4))
    assert gradcheck(lambda x, b: _Scaled(2.0, 2.0)(x, b), [x, b]) is True
    assert gradcheck(lambda x: _Softmax(False)(x), [x]) is True


def test_catches_a_wrong_backward_and_names_the_input(device):
    x, b = _inputs(device, (3, 4), (3, 4))
    with pytest.raises(GradcheckError, match=r"gradcheck failed for input 0 \(shape \(3, 4\)\): 12 of 12 elements disagree"):
        gradcheck(lambda x, b: _Scaled(2.0, 2.1)(x, b), [x, b])
    msg = r"input 1 \(shape \(3, 4\)\).*\n  worst element \(\d+, \d+\): analytic .*, numeric "
    with pytest.raises(GradcheckError, match=msg):
        gradcheck(lambda x, b: _Scaled(2.0, 2.0, db_factor=-1.0)(x, b), [x, b])


def test_catches_a_bug_that_an_all_ones_upstream_gradient_hides(device):
    (x,) = _inputs(device, (2, 5))
    # With upstream ones the true gradient of sum(softmax(x)) is 0, which the buggy backward returns ...
    y = _Softmax(True)(x)
    y.backward(get_array_module(x.data).ones(y.shape))
    np.testing.assert_allclose(to_numpy(x.grad), 0.0)
    # ... but gradcheck's random upstream gradient catches it.
    with pytest.raises(GradcheckError, match="input 0"):
        gradcheck(lambda x: _Softmax(True)(x), [x])


def test_catches_a_small_error_in_one_element(device):
    """A gradient off by 1e-3 in a single element is reported as 1 of N elements."""

    class _Square(Function):
        def forward(self, x):
            self.x = x
            return x * x

        def backward(self, gy):
            g = 2 * self.x * gy
            g.reshape(-1)[3] += 1e-2
            return g

    (x,) = _inputs(device, (2, 4))
    with pytest.raises(GradcheckError, match=r"1 of 8 elements disagree.*\n  worst element \(0, 3\)"):
        gradcheck(lambda x: _Square()(x), [x])


def test_checks_only_inputs_that_require_grad_and_restores_them(device):
    x, c = _inputs(device, (2, 3), (2, 3))
    c.requires_grad = False
    before_x, before_c = to_numpy(x.data).copy(), to_numpy(c.data).copy()
    # c's gradient would be wrong (db_factor=5), but c does not require grad, so it is not checked.
    assert gradcheck(lambda x, c: _Scaled(3.0, 3.0, db_factor=5.0)(x, c), [x, c])
    np.testing.assert_array_equal(to_numpy(x.data), before_x)  # perturbations undone
    np.testing.assert_array_equal(to_numpy(c.data), before_c)
    assert c.grad is None


def test_non_contiguous_input(device):
    """A transposed (non-contiguous) input is perturbed correctly, element by element."""
    x = tensor(rng_for(31).standard_normal((3, 4)), device)
    xt = Tensor(x.data.T, requires_grad=True)
    assert not xt.data.flags.c_contiguous
    assert gradcheck(lambda t: F.exp(t) * t, [xt])


def test_single_input_tensor_and_passthrough_arguments(device):
    (x,) = _inputs(device, (2, 2))
    assert gradcheck(lambda t: t * 2.0, x)  # a bare Tensor, not a list
    assert gradcheck(lambda t, k: t**k, [x, 3])  # non-Tensor arguments pass through


def test_refuses_float32_inputs(device):
    x = tensor(np.ones((2, 2), np.float32), device, requires_grad=True)
    with pytest.raises(TypeError, match="gradcheck: input 0 has dtype float32; finite differences need float64"):
        gradcheck(lambda t: t * 2.0, [x])


def test_refuses_inputs_without_requires_grad(device):
    (x,) = _inputs(device, (2,), requires_grad=False)
    with pytest.raises(ValueError, match="gradcheck: no input requires grad"):
        gradcheck(lambda t: t * 2.0, [x])


def test_refuses_functions_that_do_not_return_a_tensor(device):
    (x,) = _inputs(device, (2,))
    with pytest.raises(TypeError, match="gradcheck: fn must return a Tensor, got ndarray"):
        gradcheck(lambda t: to_numpy(t.data), [x])
