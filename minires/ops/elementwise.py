"""Elementwise ops: add, sub, mul, div, neg, pow, exp, log, relu.

Binary ops broadcast like NumPy (and PyTorch). Backward then has to *undo* the
broadcast: an input of shape (C, 1, 1) added to an (N, C, H, W) tensor received the
same value at N*H*W places, so its gradient is the upstream gradient summed over them
(``unbroadcast``).
"""
import numpy as np

from .. import gpu_kernels
from ..backend import get_array_module
from ..cpu_kernels import elementwise as kernels
from ..engine import Function, Tensor, as_tensor


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: over leading axes NumPy added, and over size-1 axes."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape) if n == 1 and grad.shape[i + lead] != 1)
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


def _binary_inputs(name, a, b):
    """Both operands as Tensors of one dtype; Python numbers take the other operand's dtype."""
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError(f"{name}: expected at least one Tensor, got {type(a).__name__} and {type(b).__name__}")
    a = as_tensor(a, like=b if isinstance(b, Tensor) else None)
    b = as_tensor(b, like=a)
    if a.dtype != b.dtype:
        raise TypeError(
            f"{name}: dtypes differ ({a.dtype} with shape {a.shape} and {b.dtype} with shape {b.shape}); "
            "minires does not upcast silently, convert one operand first (e.g. .float())"
        )
    if name != "matmul":
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(f"{name}: shapes {a.shape} and {b.shape} cannot be broadcast together") from None
    return a, b


class Add(Function):
    """y = a + b;   da = dy,  db = dy   (each unbroadcast to its input's shape)."""

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, gy):
        (sa, sb), (na, nb) = self.shapes, self.needs_input_grad
        return unbroadcast(gy, sa) if na else None, unbroadcast(gy, sb) if nb else None

    def forward_cpu(self, a, b):  # the residual add (equal shapes): on the worker threads
        self.shapes = a.shape, b.shape
        return kernels.add(a, b) if a.shape == b.shape else a + b

    def forward_gpu(self, a, b):  # the residual add (equal shapes): laid out as a
        self.shapes = a.shape, b.shape
        return gpu_kernels.add(a, b) if a.shape == b.shape else a + b


class Sub(Function):
    """y = a - b;   da = dy,  db = -dy."""

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, gy):
        (sa, sb), (na, nb) = self.shapes, self.needs_input_grad
        return unbroadcast(gy, sa) if na else None, unbroadcast(-gy, sb) if nb else None


class Mul(Function):
    """y = a * b;   da = dy * b,  db = dy * a."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        na, nb = self.needs_input_grad
        return (unbroadcast(gy * self.b, self.a.shape) if na else None,
                unbroadcast(gy * self.a, self.b.shape) if nb else None)


class Div(Function):
    """y = a / b;   da = dy / b,  db = -dy * a / b^2 = -dy * y / b."""

    def forward(self, a, b):
        self.b = b
        self.y = a / b
        self.a_shape = a.shape
        return self.y

    def backward(self, gy):
        na, nb = self.needs_input_grad
        ga = gy / self.b
        return unbroadcast(ga, self.a_shape) if na else None, unbroadcast(-ga * self.y, self.b.shape) if nb else None


class Neg(Function):
    """y = -x;   dx = -dy."""

    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Pow(Function):
    """y = a ** b;   da = dy * b * a^(b-1),  db = dy * y * log(a)   (db only where needed)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        self.y = a**b
        return self.y

    def backward(self, gy):
        xp = get_array_module(gy)
        a, b = self.a, self.b
        na, nb = self.needs_input_grad
        ga = unbroadcast(gy * b * a ** (b - 1), a.shape) if na else None
        # d/db needs log(a), NaN for a <= 0 (as in PyTorch): only computed when asked for.
        gb = unbroadcast(gy * self.y * xp.log(a), b.shape) if nb else None
        return ga, gb


class Exp(Function):
    """y = exp(x);   dx = dy * y."""

    def forward(self, x):
        self.y = get_array_module(x).exp(x)
        return self.y

    def backward(self, gy):
        return gy * self.y


class Log(Function):
    """y = log(x);   dx = dy / x."""

    def forward(self, x):
        self.x = x
        return get_array_module(x).log(x)

    def backward(self, gy):
        return gy / self.x


class ReLU(Function):
    """y = max(x, 0);   dx = dy * [x > 0]   (the subgradient 0 is taken at x = 0, as PyTorch).

    Saves y, not the mask y > 0: the next op keeps y alive anyway, a mask would cost another
    byte per element; recomputing y > 0 in backward is one cheap pass. On NumPy data both run on
    the worker threads (``minires/cpu_kernels/elementwise.py``); on CuPy data backward is one
    fused kernel.
    """

    def forward(self, x):
        self.y = get_array_module(x).maximum(x, 0)
        return self.y

    def backward(self, gy):
        return gy * (self.y > 0)

    def forward_cpu(self, x):
        self.y = kernels.relu(x)
        return self.y

    def backward_cpu(self, gy):
        return kernels.relu_backward(gy, self.y)

    def forward_gpu(self, x):
        self.y = gpu_kernels.relu(x)
        return self.y

    def backward_gpu(self, gy):
        return gpu_kernels.relu_backward(gy, self.y)


def add(a, b):
    """a + b with broadcasting."""
    return Add()(*_binary_inputs("add", a, b))


def sub(a, b):
    """a - b with broadcasting."""
    return Sub()(*_binary_inputs("sub", a, b))


def mul(a, b):
    """a * b (elementwise) with broadcasting."""
    return Mul()(*_binary_inputs("mul", a, b))


def div(a, b):
    """a / b (true division) with broadcasting."""
    return Div()(*_binary_inputs("div", a, b))


def neg(x):
    return Neg()(as_tensor(x))


def pow(a, b):
    """a ** b; the exponent may be a number or a Tensor."""
    return Pow()(*_binary_inputs("pow", a, b))


def exp(x):
    return Exp()(as_tensor(x))


def log(x):
    return Log()(as_tensor(x))


def relu(x):
    """max(x, 0) elementwise."""
    return ReLU()(as_tensor(x))
