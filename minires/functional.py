"""``minires.functional``: every op under PyTorch's name and signature.

Usage mirrors ``torch.nn.functional``::

    import minires.functional as F
    y = F.relu(F.batch_norm(F.conv2d(x, w, padding=1), rm, rv, gamma, beta, training=True))

Each op lives with its forward, backward and formulas in ``minires/ops/``.
"""
from .ops.conv import conv2d
from .ops.elementwise import add, div, exp, log, mul, neg, pow, relu, sub
from .ops.linalg import linear, matmul
from .ops.loss import cross_entropy, log_softmax
from .ops.norm import batch_norm
from .ops.pool import adaptive_avg_pool2d, avg_pool2d, global_avg_pool2d, max_pool2d
from .ops.reduce import mean, sum
from .ops.shape import flatten, getitem, pad, permute, reshape, transpose

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "relu",
    "sum", "mean", "reshape", "flatten", "transpose", "permute", "getitem", "pad",
    "matmul", "linear", "conv2d", "batch_norm",
    "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "global_avg_pool2d",
    "log_softmax", "cross_entropy",
]


def setup_tensor_methods():
    """Give ``Tensor`` its operators and methods, each a call of the op above (DeZero's
    ``setup_variable``). Called once, from ``minires/__init__.py``: the engine defines
    ``Tensor`` without importing the ops built on top of it, so there is no import loop."""
    from .engine import Tensor

    def _shape_args(args):  # x.reshape(2, 3) and x.reshape((2, 3)) alike, as in PyTorch
        return args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args

    Tensor.__add__ = add
    Tensor.__radd__ = lambda self, other: add(other, self)
    Tensor.__sub__ = sub
    Tensor.__rsub__ = lambda self, other: sub(other, self)
    Tensor.__mul__ = mul
    Tensor.__rmul__ = lambda self, other: mul(other, self)
    Tensor.__truediv__ = div
    Tensor.__rtruediv__ = lambda self, other: div(other, self)
    Tensor.__neg__ = neg
    Tensor.__pow__ = pow
    Tensor.__rpow__ = lambda self, other: pow(other, self)
    Tensor.__matmul__ = matmul
    Tensor.__rmatmul__ = lambda self, other: matmul(other, self)
    Tensor.__getitem__ = getitem
    Tensor.T = property(lambda self: permute(self, tuple(reversed(range(self.ndim)))))
    Tensor.sum = lambda self, dim=None, keepdim=False: sum(self, dim, keepdim)
    Tensor.mean = lambda self, dim=None, keepdim=False: mean(self, dim, keepdim)
    Tensor.reshape = Tensor.view = lambda self, *shape: reshape(self, _shape_args(shape))
    Tensor.flatten = lambda self, start_dim=0, end_dim=-1: flatten(self, start_dim, end_dim)
    Tensor.transpose = transpose
    Tensor.permute = lambda self, *dims: permute(self, _shape_args(dims))
    Tensor.exp = exp
    Tensor.log = log
    Tensor.relu = relu
