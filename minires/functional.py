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
