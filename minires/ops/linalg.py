"""Matrix products: matmul and linear (fully connected)."""
from ..engine import Function, as_tensor
from .elementwise import _binary_inputs, unbroadcast


class MatMul(Function):
    """Y = A @ B (batched over leading dims);   dA = dY @ B^T,  dB = A^T @ dY."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, gy):
        (a, b), (na, nb) = (self.a, self.b), self.needs_input_grad
        ga = unbroadcast(gy @ b.swapaxes(-1, -2), a.shape) if na else None
        gb = unbroadcast(a.swapaxes(-1, -2) @ gy, b.shape) if nb else None
        return ga, gb


class Linear(Function):
    """y = x W^T + b   with W of shape (out, in), as ``torch.nn.functional.linear``;
    dx = dy W,   dW = dy^T x (summed over all leading dims),   db = dy summed over them."""

    def forward(self, x, weight, bias):
        self.x, self.weight = x, weight
        y = x @ weight.T
        if bias is not None:
            y += bias
        return y

    def backward(self, gy):
        x, w = self.x, self.weight
        needs = self.needs_input_grad
        gy2 = gy.reshape(-1, gy.shape[-1])
        gx = gy @ w if needs[0] else None
        gw = gy2.T @ x.reshape(-1, x.shape[-1]) if needs[1] else None
        gb = gy2.sum(axis=0) if needs[2] else None
        return gx, gw, gb


def matmul(a, b):
    """Matrix product of tensors with at least 2 dimensions (leading dimensions broadcast)."""
    a, b = _binary_inputs("matmul", a, b)
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(
            f"matmul: both operands need at least 2 dimensions in minires, got shapes {a.shape} and {b.shape} "
            "(reshape a vector to (1, n) or (n, 1))"
        )
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align ({a.shape[-1]} != {b.shape[-2]})")
    return MatMul()(a, b)


def linear(x, weight, bias=None):
    """y = x @ weight.T + bias, with weight (out_features, in_features), as in PyTorch."""
    x, weight = as_tensor(x), as_tensor(weight)
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input x has {x.shape[-1] if x.ndim else 0} features (shape {x.shape}) but weight expects "
            f"{weight.shape[1]} (weight shape {weight.shape})"
        )
    if bias is not None:
        bias = as_tensor(bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != x.dtype:
            raise TypeError(f"linear: {name} has dtype {t.dtype} but x has {x.dtype}")
    return Linear()(x, weight, bias)
