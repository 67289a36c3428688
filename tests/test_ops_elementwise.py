"""Elementwise ops: add, sub, mul, div, pow (broadcasting, both operands differentiated),
neg, exp, log, relu, and Python-number operands; forward against NumPy, backward by
gradcheck, float32 kept."""
import operator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import minires.functional as F
from opcheck import TIGHT, assert_close, away_from_zero, check_float32, check_grad, given_settings, rng_for, tensor

broadcastable_pairs = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=3)


def _operands(name, shapes, seed):
    """Inputs in each op's smooth domain: divisors away from 0, powers of positive bases."""
    rng = rng_for(seed)
    a, b = (rng.standard_normal(s) for s in shapes)
    if name == "div":
        b = away_from_zero(rng, shapes[1], margin=0.5)
    if name == "pow":
        a, b = rng.uniform(0.5, 2.0, size=shapes[0]), rng.uniform(-2.0, 2.0, size=shapes[1])
    return np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)


BINARY = {
    "add": (F.add, operator.add, np.add),
    "sub": (F.sub, operator.sub, np.subtract),
    "mul": (F.mul, operator.mul, np.multiply),
    "div": (F.div, operator.truediv, np.divide),
    "pow": (F.pow, operator.pow, np.power),
}


@pytest.mark.parametrize("name", list(BINARY))
@given(shapes=broadcastable_pairs, seed=st.integers(0, 2**32 - 1))
@given_settings
def test_binary_op_broadcasting_forward_and_gradcheck(device, name, shapes, seed):
    fn, op, np_fn = BINARY[name]
    a, b = _operands(name, shapes.input_shapes, seed)
    expected = np_fn(a, b)
    assert_close(fn(tensor(a, device), tensor(b, device)), expected, **TIGHT)
    assert_close(op(tensor(a, device), tensor(b, device)), expected, **TIGHT)  # the Tensor operator
    check_grad(fn, [a, b], device)


UNARY = {
    "neg": (F.neg, np.negative, lambda rng, s: rng.standard_normal(s)),
    "exp": (F.exp, np.exp, lambda rng, s: rng.uniform(-3, 3, size=s)),
    "log": (F.log, np.log, lambda rng, s: rng.uniform(0.1, 5, size=s)),  # positive inputs
    "relu": (F.relu, lambda x: np.maximum(x, 0), lambda rng, s: away_from_zero(rng, s, margin=0.05)),
}


@pytest.mark.parametrize("name", list(UNARY))
@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=4), seed=st.integers(0, 2**32 - 1))
@given_settings
def test_unary_op_forward_and_gradcheck(device, name, shape, seed):
    fn, np_fn, draw = UNARY[name]
    x = np.asarray(draw(rng_for(seed), tuple(shape)), dtype=np.float64)
    assert_close(fn(tensor(x, device)), np_fn(x), **TIGHT)
    check_grad(fn, [x], device)


def test_relu_gradient_is_the_step_function(device):
    x = np.array([-2.0, -0.5, 0.5, 3.0])
    t = tensor(x, device, requires_grad=True)
    F.relu(t).backward(tensor(np.array([1.0, 2.0, 3.0, 4.0]), device))
    assert_close(t.grad, np.array([0.0, 0.0, 3.0, 4.0]), **TIGHT)


@pytest.mark.parametrize("exponent", [2, 3, 0.5, -1.5, 0])
def test_pow_with_number_exponent(device, exponent):
    x = rng_for(17).uniform(0.5, 2.0, size=(3, 4))
    assert_close(tensor(x, device) ** exponent, x**exponent, **TIGHT)
    check_grad(lambda t: t**exponent, [x], device)


SCALAR_OPS = {
    "x+2.5": lambda x: x + 2.5,
    "2.5+x": lambda x: 2.5 + x,
    "x-3": lambda x: x - 3,
    "3-x": lambda x: 3 - x,
    "x*-1.5": lambda x: x * -1.5,
    "-1.5*x": lambda x: -1.5 * x,
    "x/4": lambda x: x / 4,
    "2/x": lambda x: 2.0 / x,
    "x**2": lambda x: x**2,
    "2**x": lambda x: 2.0**x,
    "-x": lambda x: -x,
}


@pytest.mark.parametrize("name", list(SCALAR_OPS))
def test_python_number_operands(device, name):
    fn = SCALAR_OPS[name]
    x = rng_for(18).uniform(0.5, 2.0, size=(2, 3))
    assert_close(fn(tensor(x, device)), fn(x), **TIGHT)
    check_grad(fn, [x], device)
    check_float32(fn, [x], device)


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_op_float32_stays_float32(device, name):
    a, b = _operands(name, [(2, 1, 3), (4, 1)], seed=19)
    check_float32(BINARY[name][0], [a, b], device)


@pytest.mark.parametrize("name", list(UNARY))
def test_unary_op_float32_stays_float32(device, name):
    fn, _, draw = UNARY[name]
    check_float32(fn, [draw(rng_for(20), (3, 4))], device)


def test_same_tensor_as_both_operands(device):
    """x * x and x + x: one tensor used twice by one op gets both gradients."""
    x = rng_for(21).standard_normal((3,))
    check_grad(lambda t: t * t, [x], device)
    check_grad(lambda t: t + t, [x], device)
    check_grad(lambda t: t / t, [x + 3], device)
