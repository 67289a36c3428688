"""Naive reference implementations that the op tests compare minires against.

Every function here is written straight from the definition, with explicit loops over
output positions and no vectorised tricks (no im2col, no strided windows), and shares no
code with minires (it does not import it). They are slow, so tests keep inputs small.
All take and return NumPy float64 arrays.

log_softmax and cross_entropy are evaluated with Python's ``decimal`` module: exp(1000)
is an ordinary Decimal, so the definition log(exp(x_i) / sum_j exp(x_j)) can be used as it
stands, without the max-subtraction trick the library relies on for stability.
"""
import decimal
import math

import numpy as np


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _zero_pad_hw(x, ph, pw, value=0.0):
    """x (N, C, H, W) inside a (N, C, H+2ph, W+2pw) array filled with ``value``, by loops."""
    n, c, h, w = x.shape
    out = np.full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=np.float64)
    for i in range(h):
        for j in range(w):
            out[:, :, ph + i, pw + j] = x[:, :, i, j]
    return out


def _window_starts(padded_size, kernel, stride):
    """Start offsets of every window that fits entirely inside the padded axis."""
    starts, s = [], 0
    while s + kernel <= padded_size:
        starts.append(s)
        s += stride
    return starts


# ----------------------------------------------------------------------------- conv / pool
def conv2d(x, weight, bias=None, stride=1, padding=0):
    """Cross-correlation: y[n, o, i, j] = b[o] + sum_{c,u,v} w[o, c, u, v] * xpad[n, c, i*sh + u, j*sw + v]."""
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    n, c, _, _ = x.shape
    o, c2, kh, kw = weight.shape
    assert c == c2
    xpad = _zero_pad_hw(x, ph, pw)
    rows = _window_starts(xpad.shape[2], kh, sh)
    cols = _window_starts(xpad.shape[3], kw, sw)
    out = np.zeros((n, o, len(rows), len(cols)))
    for b in range(n):
        for oc in range(o):
            for i, r in enumerate(rows):
                for j, s in enumerate(cols):
                    acc = 0.0 if bias is None else float(bias[oc])
                    for ic in range(c):
                        for u in range(kh):
                            for v in range(kw):
                                acc += xpad[b, ic, r + u, s + v] * weight[oc, ic, u, v]
                    out[b, oc, i, j] = acc
    return out


def _pool(x, kernel_size, stride, padding, pad_value, reduce):
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    xpad = _zero_pad_hw(x, ph, pw, pad_value)
    rows = _window_starts(xpad.shape[2], kh, sh)
    cols = _window_starts(xpad.shape[3], kw, sw)
    n, c = x.shape[:2]
    out = np.zeros((n, c, len(rows), len(cols)))
    for b in range(n):
        for ch in range(c):
            for i, r in enumerate(rows):
                for j, s in enumerate(cols):
                    window = [xpad[b, ch, r + u, s + v] for u in range(kh) for v in range(kw)]
                    out[b, ch, i, j] = reduce(window)
    return out


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max over each window; padding never wins (PyTorch pads max pooling with -inf)."""
    return _pool(x, kernel_size, stride, padding, -math.inf, max)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over each window with zero padding counted (PyTorch's count_include_pad=True)."""
    return _pool(x, kernel_size, stride, padding, 0.0, lambda w: math.fsum(w) / len(w))


def global_avg_pool2d(x):
    """(N, C, H, W) -> (N, C): mean of each feature map."""
    n, c = x.shape[:2]
    out = np.zeros((n, c))
    for b in range(n):
        for ch in range(c):
            out[b, ch] = math.fsum(x[b, ch].ravel()) / x[b, ch].size
    return out


# ----------------------------------------------------------------------------- batch norm
def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Textbook batch norm over axis 1. Returns (y, new_running_mean, new_running_var).

    Training: per channel, mean and *biased* variance of the m = x.size / C values
    normalise; the running statistics move as PyTorch's do,
    running = (1 - momentum) * running + momentum * stat, with the *unbiased* variance.
    Eval: the running statistics normalise and are returned unchanged.
    """
    ch = x.shape[1]
    y = np.empty_like(x, dtype=np.float64)
    rm = None if running_mean is None else np.array(running_mean, dtype=np.float64)
    rv = None if running_var is None else np.array(running_var, dtype=np.float64)
    for c in range(ch):
        values = [float(v) for v in np.take(x, c, axis=1).ravel()]
        m = len(values)
        if training:
            mean = math.fsum(values) / m
            ss = math.fsum((v - mean) ** 2 for v in values)
            var = ss / m
            if rm is not None:
                rm[c] = (1 - momentum) * rm[c] + momentum * mean
                rv[c] = (1 - momentum) * rv[c] + momentum * ss / (m - 1)
        else:
            mean, var = float(running_mean[c]), float(running_var[c])
        gamma = 1.0 if weight is None else float(weight[c])
        beta = 0.0 if bias is None else float(bias[c])
        index = (slice(None), c)
        y[index] = gamma * (x[index] - mean) / math.sqrt(var + eps) + beta
    return y, rm, rv


# ----------------------------------------------------------------------------- linalg
def matmul(a, b):
    """Batched matrix product; leading (batch) dimensions broadcast as in NumPy."""
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.broadcast_to(a, batch + a.shape[-2:])
    b = np.broadcast_to(b, batch + b.shape[-2:])
    m, k = a.shape[-2:]
    n = b.shape[-1]
    out = np.zeros(batch + (m, n))
    for idx in np.ndindex(*batch):
        for i in range(m):
            for j in range(n):
                out[idx + (i, j)] = math.fsum(a[idx + (i, t)] * b[idx + (t, j)] for t in range(k))
    return out


def linear(x, weight, bias=None):
    """y[..., o] = sum_i x[..., i] * W[o, i] + b[o]."""
    out_f, in_f = weight.shape
    out = np.zeros(x.shape[:-1] + (out_f,))
    for idx in np.ndindex(*x.shape[:-1]):
        for o in range(out_f):
            acc = math.fsum(x[idx + (i,)] * weight[o, i] for i in range(in_f))
            out[idx + (o,)] = acc + (0.0 if bias is None else bias[o])
    return out


# ----------------------------------------------------------------------------- shape
def pad(x, widths, value=0.0):
    """Constant padding; ``widths`` in PyTorch's order: (before, after) pairs from the LAST dim."""
    per_dim = [(0, 0)] * x.ndim
    for i in range(len(widths) // 2):
        per_dim[x.ndim - 1 - i] = (widths[2 * i], widths[2 * i + 1])
    out_shape = tuple(n + a + b for n, (a, b) in zip(x.shape, per_dim))
    out = np.empty(out_shape)
    for idx in np.ndindex(*out_shape):
        src = tuple(i - a for i, (a, _) in zip(idx, per_dim))
        inside = all(0 <= s < n for s, n in zip(src, x.shape))
        out[idx] = x[src] if inside else value
    return out


def sum_to_shape(grad, shape):
    """The gradient of a broadcast: add each element of ``grad`` into the input position it
    was read from (leading dims dropped, size-1 dims read at index 0)."""
    out = np.zeros(shape)
    lead = grad.ndim - len(shape)
    for idx in np.ndindex(*grad.shape):
        src = tuple(0 if n == 1 else i for i, n in zip(idx[lead:], shape))
        out[src] += grad[idx]
    return out


# ----------------------------------------------------------------------------- softmax / loss
def _softmax_row(row):
    """exp(x_i) / sum_j exp(x_j) for one row, in 50-digit decimal arithmetic (no overflow)."""
    with decimal.localcontext() as ctx:
        ctx.prec = 50
        exps = [decimal.Decimal(float(v)).exp() for v in row]
        total = sum(exps, decimal.Decimal(0))
        return [e / total for e in exps]


def _along(x, dim, row_fn):
    moved = np.moveaxis(np.asarray(x, dtype=np.float64), dim, -1)
    out = np.empty_like(moved)
    for idx in np.ndindex(*moved.shape[:-1]):
        out[idx] = row_fn(moved[idx])
    return np.moveaxis(out, -1, dim)


def log_softmax(x, dim):
    """log(exp(x_i) / sum_j exp(x_j)) along ``dim``, straight from the definition
    (exact for logits of +-1000, where float64 exp overflows)."""
    def row_fn(row):
        with decimal.localcontext() as ctx:
            ctx.prec = 50
            return [float(p.ln()) for p in _softmax_row(row)]
    return _along(x, dim, row_fn)


def softmax(x, dim):
    """exp(x_i) / sum_j exp(x_j) along ``dim``, by the definition, in decimal arithmetic."""
    return _along(x, dim, lambda row: [float(p) for p in _softmax_row(row)])


def cross_entropy(logits, target, reduction="mean"):
    """-log softmax(logits)[n, target[n]], then mean over n, sum, or one value per sample."""
    logp = log_softmax(logits, 1)
    losses = np.array([-logp[n, int(target[n])] for n in range(logits.shape[0])])
    if reduction == "none":
        return losses
    total = math.fsum(losses)
    return np.array(total / len(losses) if reduction == "mean" else total)


def cross_entropy_grad(logits, target, upstream, reduction="mean"):
    """d(loss)/d(logits) for upstream gradient ``upstream``: (softmax - onehot) times the upstream
    gradient of each sample's loss (divided by N for 'mean')."""
    n, c = logits.shape
    p = softmax(logits, 1)
    grad = np.zeros((n, c))
    for i in range(n):
        if reduction == "none":
            scale = float(upstream[i])
        else:
            scale = float(upstream) / (n if reduction == "mean" else 1)
        for j in range(c):
            grad[i, j] = (p[i, j] - (1.0 if j == int(target[i]) else 0.0)) * scale
    return grad
