"""The exercise of notebook 10 (the SGD step): its check says "failed" on planted wrong solutions,
with the hint for that mistake (the contract, skeleton and solution: tests/test_exercises.py)."""
import pytest

from minires.exercises.recipe import check_sgd_step
from notebook_tools import run_source

# Planted mistakes: (source, a phrase of the hint the check must give)
WRONG = {
    "decay after momentum": ("""
def sgd_step(w, grad, v, lr, momentum, weight_decay):
    v = momentum * v + grad
    return w - lr * (v + weight_decay * w), v
""", "*before* the momentum buffer"),
    "Sutskever's form": ("""
def sgd_step(w, grad, v, lr, momentum, weight_decay):
    v = momentum * v + lr * (grad + weight_decay * w)
    return w - v, v
""", "Sutskever"),
    "dampened average": ("""
def sgd_step(w, grad, v, lr, momentum, weight_decay):
    g = grad + weight_decay * w
    v = momentum * v + (1 - momentum) * g
    return w - lr * v, v
""", "dampening"),
    "no weight decay": ("""
def sgd_step(w, grad, v, lr, momentum, weight_decay):
    v = momentum * v + grad
    return w - lr * v, v
""", "weight decay is missing"),
    "Nesterov": ("""
def sgd_step(w, grad, v, lr, momentum, weight_decay):
    g = grad + weight_decay * w
    v = momentum * v + g
    return w - lr * (g + momentum * v), v
""", "Nesterov"),
    "returns only w": ("""
def sgd_step(w, grad, v, lr, momentum, weight_decay):
    g = grad + weight_decay * w
    v = momentum * v + g
    return w - lr * v
""", "must return a tuple"),
    "updates in place, returns nothing": ("""
def sgd_step(w, grad, v, lr, momentum, weight_decay):
    v *= momentum
    v += grad + weight_decay * w
    w -= lr * v
""", "sgd_step returned None; it must return a tuple (w_new, v_new)"),
}


@pytest.mark.parametrize("mistake", sorted(WRONG))
def test_planted_mistake_fails_with_its_hint(mistake):
    source, hint = WRONG[mistake]
    result = check_sgd_step(run_source(source)["sgd_step"])
    assert result.status == "failed", result
    assert hint in result.message, result.message


def test_sutskever_is_caught_in_the_weights_too():
    """Sutskever's steps equal PyTorch's while lr is constant; with the buffer left out of the
    comparison, the weights still differ after the check's first lr drop (step 4)."""
    source = """
def sgd_step(w, grad, v, lr, momentum, weight_decay):
    g = grad + weight_decay * w
    u = momentum * lr_before[0] * v + lr * g   # Sutskever's velocity (u = lr * v while lr is constant)
    lr_before[0] = lr
    return w - u, momentum * v + g             # the buffer PyTorch's way: only the weights can differ
lr_before = [0.0]
"""
    result = check_sgd_step(run_source(source)["sgd_step"])
    assert result.status == "failed" and "step 4" in result.message and "weights" in result.message, result
