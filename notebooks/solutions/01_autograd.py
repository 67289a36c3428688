# Reference solutions for the exercises of notebooks/01_autograd.ipynb.
# Each block below replaces the exercise cell of the same name (tests/notebook_tools.py);
# it runs after the notebook's earlier cells, so it uses their imports (minires, np, ...).
# Try the exercise first: the check cell under it tells you what is wrong, and where.

# %% exercise: tanh
from minires.backend import get_array_module


class Tanh(minires.Function):
    """y = tanh(x);  dx = dy * (1 - y**2)."""

    def forward(self, x):
        xp = get_array_module(x)
        self.y = xp.tanh(x)  # backward needs only the output, as for the sigmoid
        return self.y

    def backward(self, gy):
        return (gy * (1 - self.y ** 2),)

# %% exercise: topological_order
def topological_order(root):
    """Tensors of root's graph that require grad, each once, every tensor after its inputs."""
    order, visited = [], set()
    stack = [(root, False)]  # (tensor, its inputs are already in `order`)
    while stack:
        t, inputs_done = stack.pop()
        if inputs_done:
            order.append(t)  # post-order: after all of its inputs
            continue
        if id(t) in visited:
            continue
        visited.add(id(t))
        stack.append((t, True))
        if t._ctx is not None:
            for inp in t._ctx.inputs:
                if inp is not None and inp.requires_grad and id(inp) not in visited:
                    stack.append((inp, False))
    return order
