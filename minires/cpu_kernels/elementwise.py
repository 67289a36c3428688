"""ReLU and the residual add on the worker threads, each thread on a stretch of memory.

``threads.for_each_piece`` cuts arrays that share one dense memory layout (an op's output made by
``empty_like`` shares its input's) into one 1-D stretch per thread; arrays under 256 KB, or
with differing layouts, run as one piece (benchmarks/README.md, "Round three", item 2). Inside a
ResNet-20 step (batch 128) these passes are bound by memory bandwidth: a second thread buys ReLU
1.04-1.07x (its per-op profile). ReLU's dx is written in y's layout so that gradients keep
the activations' layout (channels-last, from the CPU convs): that removes a copy per block and a single-threaded pass, though measured alone the
step time moved within the noise (0.97-1.03x; "Round three", item 6).
"""
import numpy as np

from ..threads import for_each_piece

# NumPy 2.4's maximum against the scalar 0 runs a loop without SIMD: 0.69 ms per 8 MB here, against
# 0.31 ms for the same maximum against a contiguous row of zeros. So 1-D memory is read as rows.
_ROW = 1024


def _relu_into(out, x):
    """out = max(x, 0), the contiguous 1-D case as rows against one row of zeros."""
    if x.ndim == 1 and x.size >= _ROW:
        rows = x.size - x.size % _ROW
        np.maximum(x[:rows].reshape(-1, _ROW), np.zeros(_ROW, x.dtype), out=out[:rows].reshape(-1, _ROW))
        x, out = x[rows:], out[rows:]
    np.maximum(x, 0, out=out)


def relu(x):
    """max(x, 0), laid out as x."""
    y = np.empty_like(x)
    for_each_piece(_relu_into, y, x)
    return y


def relu_backward(gy, y):
    """dy * [y > 0], laid out as y whatever dy's layout: the gradients flowing back through the
    blocks then keep the activations' layout (the pooling's broadcast dy would
    otherwise turn every residual gradient NCHW, and each batch norm would copy it back)."""
    gx = np.empty_like(y)
    for_each_piece(lambda gx, gy, y: np.multiply(gy, y > 0, out=gx), gx, gy, y)
    return gx


def add(a, b):
    """a + b for equally shaped arrays, laid out as a."""
    out = np.empty_like(a)
    for_each_piece(lambda out, a, b: np.add(a, b, out=out), out, a, b)
    return out
