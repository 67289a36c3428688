"""Checks for notebook 01 (the autograd engine): a ``Tanh`` op and the topological order.

``check_tanh(Tanh)``: the learner's ``Tanh(minires.Function)`` must compute tanh forward and
``dx = dy * (1 - y**2)`` backward, for a random upstream gradient ``dy``, and pass ``gradcheck``.

``check_topological_order(topological_order)``: the learner's ``topological_order(root)`` must
list every tensor of root's graph that requires grad, once each, every tensor after all of its
inputs (what ``Tensor.backward`` walks in reverse), on graphs with a residual fan-out.
"""
import numpy as np

from ..engine import Tensor, _topological_order
from ..gradcheck import GradcheckError, gradcheck
from .check import ExerciseFailed, check, compare, matches, name_of, returned


def _tanh_hint(got, dy, x, y):
    """The hint for the backward the learner wrote, recognised among the usual mistakes."""
    from_x = "you used the input x; the derivative is in terms of the output: 1 - y**2 with y = tanh(x)"
    from_gy = ("you wrote the derivative with the upstream gradient gy in place of the output y: the local "
               "derivative is 1 - y**2, with y = tanh(x) saved on self in forward; then dx = gy * (1 - y**2)")
    usual = [
        (dy * (1 - y), "you used 1 - y; the derivative of tanh is 1 - tanh(x)**2 = 1 - y**2"),
        (dy * (1 - x ** 2), from_x),
        (1 - x ** 2, from_x + ", and multiply by the upstream gradient: dx = gy * (1 - y**2)"),
        (1 - y ** 2, "multiply by the upstream gradient gy (the chain rule): dx = gy * (1 - y**2)"),
        (dy * (1 - dy ** 2), from_gy),
        (1 - dy ** 2, from_gy),
        (dy * y * (1 - y), "that is the sigmoid's derivative, y * (1 - y); tanh's is 1 - y**2"),
        (dy, "backward returned gy unchanged; it must multiply by the local derivative 1 - y**2"),
    ]
    for candidate, hint in usual:
        if matches(got, candidate):
            return hint
    return "dx = gy * (1 - y**2), with y = tanh(x) saved on self in forward"


def _watched(op_class):
    """A subclass of the learner's op that keeps what its forward and backward returned, as
    written (the engine wraps forward's result in a Tensor and a bare dx in a tuple)."""
    seen = {}

    def forward(self, *arrays):
        seen["forward"] = op_class.forward(self, *arrays)
        return seen["forward"]

    def backward(self, grad_output):
        seen["backward"] = op_class.backward(self, grad_output)
        return seen["backward"]

    return type(op_class.__name__, (op_class,), {"forward": forward, "backward": backward}), seen


def check_tanh(Tanh):
    """Check a ``Tanh`` op written as a ``minires.Function`` subclass.

    Forward on a float64 (4, 5) input in [-2.5, 2.5] against ``np.tanh``; backward with a random
    upstream gradient against ``dy * (1 - tanh(x)**2)`` (the worst element named, and the usual
    mistake recognised: ``1 - y``, ``1 - x**2``, no ``dy``, the sigmoid's ``y * (1 - y)``);
    then ``minires.gradcheck`` on a fresh input, the independent check.
    """
    def run():
        rng = np.random.default_rng(0)
        x = rng.uniform(-2.5, 2.5, (4, 5))
        y_ref = np.tanh(x)
        xt = Tensor(x.copy(), requires_grad=True)
        op, seen = _watched(Tanh)
        y = op()(xt)
        if not isinstance(seen["forward"], np.ndarray):
            raise returned(f"{name_of(Tanh)}.forward", seen["forward"], f"y = tanh(x), an array of shape {x.shape}")
        compare("forward: Tanh()(x)", y, y_ref,
                hint="y = xp.tanh(x), with xp = get_array_module(x) (or write it with xp.exp)")
        dy = rng.standard_normal(x.shape)
        y.backward(dy)
        grads = seen["backward"] if isinstance(seen["backward"], (tuple, list)) else (seen["backward"],)
        if len(grads) != 1 or not isinstance(grads[0], np.ndarray):  # a bare dx will do: the engine takes it
            raise returned(f"{name_of(Tanh)}.backward", seen["backward"],
                           f"a tuple with one gradient, (dx,), dx an array of shape {x.shape}")
        compare("backward: the gradient dx for a random upstream gradient dy", xt.grad, dy * (1 - y_ref ** 2),
                hint=_tanh_hint(xt.grad, dy, x, y_ref))
        try:
            gradcheck(lambda t: Tanh()(t), (Tensor(rng.uniform(-2, 2, (3, 4)), requires_grad=True),))
        except GradcheckError as exc:
            raise ExerciseFailed(f"gradcheck: {exc}") from None
        return "forward matches np.tanh, backward matches dy * (1 - y**2), and gradcheck passes"

    return check("Tanh", run)


# --------------------------------------------------------------------------- topological order

def _describe(t, position=None):
    made = f"made by {type(t._ctx).__name__}" if t._ctx is not None else "a leaf"
    at = f" at position {position}" if position is not None else ""
    return f"the tensor of shape {t.shape} {made}{at}"


def _example_graphs():
    """(name, root) pairs: a small expression, a residual fan-out with paths of unequal length,
    and two stacked toy blocks (a tensor used by ops at very different depths)."""
    rng = np.random.default_rng(1)
    w = Tensor(rng.standard_normal(3), requires_grad=True)
    b = Tensor(np.array(0.1), requires_grad=True)
    x = Tensor(np.array([1.0, -2.0, 3.0]))
    loss = ((w * x).sum() + b).relu() ** 2

    xs = Tensor(rng.standard_normal(4), requires_grad=True)
    fan_out = (xs * 0.5).relu() + xs  # xs feeds the branch (two ops deep) and the shortcut

    h = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    w1 = Tensor(rng.standard_normal((3, 3)), requires_grad=True)
    w2 = Tensor(rng.standard_normal((3, 3)), requires_grad=True)
    for _ in range(2):
        h = ((h @ w1).relu() @ w2 + h).relu()
    return [("the one-neuron loss ((w*x).sum() + b).relu() ** 2", loss),
            ("the fan-out (x * 0.5).relu() + x", fan_out),
            ("two stacked toy residual blocks", h.sum())]


_ORDER_HINT = ("a tensor must come after *all* of its inputs; a breadth-first walk from the output breaks this "
               "when a tensor is reached by two paths of different lengths (the block input: branch and "
               "shortcut). Use a depth-first post-order: append a tensor only after all of its inputs")


def _check_order(name, root, order, function="topological_order"):
    if not isinstance(order, (list, tuple)):
        raise returned(function, order, "a list of tensors", where=f"on {name}")
    order = [t for t in order if isinstance(t, Tensor) and t.requires_grad]  # constants may be listed or not
    expected = _topological_order(root)
    position = {}
    for k, t in enumerate(order):
        if id(t) in position:
            raise ExerciseFailed(f"on {name}: {_describe(t)} is listed twice (positions {position[id(t)]} and {k})\n"
                                 "  hint: keep a set of visited tensors (by id) and add each tensor once")
        position[id(t)] = k
    missing = [t for t in expected if id(t) not in position]
    if missing:
        raise ExerciseFailed(f"on {name}: {len(missing)} of the {len(expected)} tensors that require grad are "
                             f"missing, e.g. {_describe(missing[0])}\n"
                             "  hint: follow t._ctx.inputs from every tensor, down to the leaves (t._ctx is None)")
    wanted = {id(t) for t in expected}
    extra = [t for t in order if id(t) not in wanted]
    if extra:
        raise ExerciseFailed(f"on {name}: {_describe(extra[0])} is not part of the graph")
    if order[-1] is not root:
        raise ExerciseFailed(f"on {name}: the root (the output) must come last, "
                             f"got {_describe(order[-1], len(order) - 1)}"
                             f"\n  hint: {_ORDER_HINT}")
    for k, t in enumerate(order):
        for inp in (t._ctx.inputs if t._ctx is not None else ()):
            if inp is not None and inp.requires_grad and position[id(inp)] > k:
                raise ExerciseFailed(f"on {name}: {_describe(t, k)} comes before its input, "
                                     f"{_describe(inp, position[id(inp)])}\n  hint: {_ORDER_HINT}")


def check_topological_order(topological_order):
    """Check the learner's ``topological_order(root)`` on three graphs (see ``_example_graphs``).

    The list must hold every tensor of the graph that requires grad (constants may be left out
    or listed), each once, the root last, and every tensor after all of its inputs. A failure
    names the graph, the first offending tensor (its shape and the op that made it) and its
    position; the usual mistake, a breadth-first order, gets its own hint.
    """
    def run():
        for name, root in _example_graphs():
            _check_order(name, root, topological_order(root), name_of(topological_order))
        return "a valid order on all three graphs: backward() could walk it in reverse"

    return check("topological_order", run)
