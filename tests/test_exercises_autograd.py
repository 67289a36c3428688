"""Notebook 01's exercises: each check says "failed" on planted wrong solutions, with the hint for
that mistake, and passes right answers written differently (the contract: tests/test_exercises.py)."""
import pytest

from exercise_tools import grade
from minires.exercises.autograd import check_tanh, check_topological_order

TANH = '''
class Tanh(minires.Function):
    def forward(self, x):
        xp = get_array_module(x)
        self.x = x
        self.y = {forward}
        return self.y

    def backward(self, gy):
        y, x = self.y, self.x
        return ({backward},)
'''

WRONG_TANH = [  # (forward, backward, what the report must say)
    ("xp.tanh(x)", "gy * (1 - y)", "you used 1 - y"),
    ("xp.tanh(x)", "gy * (1 - x ** 2)", "in terms of the output"),
    ("xp.tanh(x)", "1 - y ** 2", "upstream gradient gy"),
    ("xp.tanh(x)", "gy * y * (1 - y)", "sigmoid's derivative"),
    ("xp.tanh(x)", "gy * (1 + y ** 2)", "dx = gy * (1 - y**2)"),  # no usual mistake: the generic hint
    ("1 / (1 + xp.exp(-x))", "gy * y * (1 - y)", "forward: Tanh()(x)"),
    ("xp.tanh(x)", "gy * (1 - y_out ** 2)", "your code raised NameError"),
    ("xp.tanh(x)", "1 - x ** 2", "you used the input x"),                  # from x, and no gy
    ("xp.tanh(x)", "gy * (1 - gy ** 2)", "upstream gradient gy in place of the output y"),
    ("xp.tanh(x)", "1 - gy ** 2", "upstream gradient gy in place of the output y"),
]


@pytest.mark.parametrize("forward, backward, says", WRONG_TANH)
def test_wrong_tanh_fails_with_its_hint(forward, backward, says):
    result = grade(TANH.format(forward=forward, backward=backward), "Tanh", check_tanh)
    assert result.status == "failed", str(result)
    assert says in result.message, str(result)


@pytest.mark.parametrize("cut, says", [
    ("        return self.y\n", "Tanh.forward returned None; it must return y = tanh(x)"),
    ("        return ({backward},)\n", "Tanh.backward returned None; it must return a tuple with one gradient"),
])
def test_tanh_returning_nothing_is_told_which_method(cut, says):
    source = TANH.replace(cut, "").format(forward="xp.tanh(x)", backward="gy * (1 - y ** 2)")
    result = grade(source, "Tanh", check_tanh)
    assert result.status == "failed", str(result)
    assert says in result.message and "without a return statement" in result.message, str(result)


def test_right_tanh_written_differently_passes():
    result = grade(TANH.format(forward="(xp.exp(x) - xp.exp(-x)) / (xp.exp(x) + xp.exp(-x))",
                               backward="gy * (1 - y) * (1 + y)"), "Tanh", check_tanh)
    assert result.passed, str(result)


BREADTH_FIRST = '''
def topological_order(root):
    order, seen, queue = [], set(), [root]
    while queue:
        t = queue.pop(0)
        if id(t) in seen:
            continue
        seen.add(id(t))
        order.append(t)
        if t._ctx is not None:
            queue.extend(i for i in t._ctx.inputs if i is not None and i.requires_grad)
    return order[::-1]
'''

NO_VISITED_SET = '''
def topological_order(root):
    order = []
    def visit(t):
        if t._ctx is not None:
            for i in t._ctx.inputs:
                if i is not None and i.requires_grad:
                    visit(i)
        order.append(t)
    visit(root)
    return order
'''

LEAVES_ONLY = '''
def topological_order(root):
    order, stack = [], [root]
    while stack:
        t = stack.pop()
        if t._ctx is None:
            order.append(t)
        else:
            stack.extend(i for i in t._ctx.inputs if i is not None and i.requires_grad)
    return order + [root]
'''

RECURSIVE_RIGHT = '''
def topological_order(root):
    order, seen = [], set()
    def visit(t):
        if id(t) in seen:
            return
        seen.add(id(t))
        if t._ctx is not None:
            for i in t._ctx.inputs:
                if i is not None:
                    visit(i)
        order.append(t)   # constants included: the check allows them
    visit(root)
    return order
'''


@pytest.mark.parametrize("source, says", [
    (BREADTH_FIRST, "breadth-first"),
    (NO_VISITED_SET, "listed twice"),
    (LEAVES_ONLY, "missing"),
])
def test_wrong_topological_order_fails_with_its_hint(source, says):
    result = grade(source, "topological_order", check_topological_order)
    assert result.status == "failed", str(result)
    assert says in result.message, str(result)


def test_breadth_first_order_is_caught_at_the_fan_out():
    """The first graph is a chain (any order that reverses a walk is right there); the residual fan-out is where
    a breadth-first order breaks, and the report names that graph."""
    result = grade(BREADTH_FIRST, "topological_order", check_topological_order)
    assert "on the fan-out" in result.message, str(result)


def test_recursive_order_with_constants_passes():
    result = grade(RECURSIVE_RIGHT, "topological_order", check_topological_order)
    assert result.passed, str(result)


def test_topological_order_returning_nothing_is_told_so():
    source = RECURSIVE_RIGHT.replace("    return order\n", "")
    result = grade(source, "topological_order", check_topological_order)
    assert result.status == "failed", str(result)
    assert "topological_order returned None; it must return a list of tensors" in result.message, str(result)
