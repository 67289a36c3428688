"""2-D convolution by im2col / col2im: three readable steps, one matrix product.

Forward, for x (N, C, H, W) and weight (O, C, kh, kw), one chunk of n images at a time::

    padded  (C, n, Hp, Wp)              channel-major copy of the chunk with zero borders
    cols    (C*kh*kw, n*OH*OW)          im2col: a strided *view* of every window, then one copy
    out     (O, n*OH*OW) = W (O, C*kh*kw) @ cols          one BLAS matmul, into the output's columns
    y       (N, O, OH, OW)              a transposed view of out (O, N*OH*OW), no copy

Backward, for dy (N, O, OH, OW), chunk by chunk::

    dy2     (O, n*OH*OW)                a slice of dy's memory: free when dy is channel-major, as ours are
    cols    im2col of x again           recomputed, not saved (see "Memory" below)
    dW     += dy2 @ cols^T              one matmul (computed as its transpose, cols @ dy2^T)
    dcols   = W^T @ dy2                 one matmul
    dx      = col2im(dcols)             kh*kw strided slice-adds into a zero (C, n, Hp, Wp) buffer, cropped

Why channel-major (C, N, H, W) memory behind an NCHW view: the matmul naturally produces
(O, N*OH*OW); keeping that memory order means the output needs no transpose copy, the next
conv's im2col reads whole contiguous rows, and dy2 is a free reshape in backward.
Every op in minires is layout-agnostic (NumPy/CuPy ufuncs follow their inputs' memory
order), so users only ever see ordinary NCHW tensors.

Why chunks of the batch (NumPy only): the column matrix is kh*kw times the input, 75 MB for
a 16-channel 32x32 conv at batch 128. Built for the whole batch it goes out to main memory
and back, and an allocation that large comes fresh from the OS (page faults) on every call.
Chunks of about ``CHUNK_BYTES`` of columns stay in cache and reuse their memory: forward +
backward 1.7x faster than the whole batch at once on the 16-channel 32x32 shape, 1.5x at
32 channels 16x16, 1.04x at 64 channels 8x8 (benchmarks/README.md). On the GPU the whole
batch is one chunk: a GPU wants big kernels, and CuPy's memory pool makes allocations cheap.

Threads (NumPy only): the chunks are independent, so ``get_num_threads()`` worker threads
each take whole chunks end to end (pad, im2col, matmul, col2im) with BLAS at one thread; NumPy
releases the GIL inside all four, so the copies, single-threaded before, use every core too.

A second algorithm, Winograd F(2x2, 3x3), lives in ``winograd.py``; ``conv2d(...,
algorithm="auto")`` (the default) uses it for the 3x3 stride-1 shapes where it measured
faster, and this file everywhere else.

Memory: backward needs the columns again. Saving them would keep kh*kw = 9 copies of every
conv's input alive until backward (about 0.8 GB for ResNet-20 at batch 128, eight times its
conv inputs); recomputing them from x, which the graph keeps anyway, costs one more im2col
per chunk, 13-20% of a conv's forward + backward time on ResNet-20's shapes. We recompute.
"""
import contextlib

import numpy as np

from .._checks import pair
from ..backend import get_array_module
from ..threads import get_num_threads, parallel_map
from ..engine import Function, as_tensor

# Size of one chunk's column matrix on the CPU: 8 MB is 14 images of a 16-channel 32x32 3x3
# conv. Measured best among 1..16 MB on ResNet-20's shapes at 1 and 2 threads; 16 MB and the
# whole batch were 10-40% slower (benchmarks/README.md).
CHUNK_BYTES = 8 * 2**20


def conv_output_size(size, kernel, stride, padding):
    """Output length along one axis: floor((size + 2*padding - kernel) / stride) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def pad_channel_major(x, ph, pw):
    """x (N, C, H, W) -> zero-padded (C, N, H + 2*ph, W + 2*pw).

    Without padding this is just a transposed view (im2col reads any strides); with padding,
    a new C-contiguous array.
    """
    xp = get_array_module(x)
    xc = x.transpose(1, 0, 2, 3)
    if ph == 0 and pw == 0:
        return xc
    n, c, h, w = x.shape
    out = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    out[:, :, ph:ph + h, pw:pw + w] = xc
    return out


def im2col(padded, kh, kw, sh, sw, oh, ow):
    """Channel-major padded input (C, N, Hp, Wp) -> columns (C*kh*kw, N*OH*OW).

    Row (c, i, j) holds, for every output pixel (n, y, x), the input value
    padded[c, n, y*sh + i, x*sw + j]: the windows are a strided view, copied once.
    """
    xp = get_array_module(padded)
    c, n = padded.shape[:2]
    s_c, s_n, s_h, s_w = padded.strides
    windows = xp.lib.stride_tricks.as_strided(
        padded, shape=(c, kh, kw, n, oh, ow), strides=(s_c, s_h, s_w, s_n, s_h * sh, s_w * sw)
    )
    return windows.reshape(c * kh * kw, n * oh * ow)


def col2im(cols, padded_shape, kh, kw, sh, sw, oh, ow):
    """Columns (C*kh*kw, N*OH*OW) -> summed back into a (C, N, Hp, Wp) buffer.

    The adjoint of im2col: each kernel offset (i, j) adds its slice with one strided
    slice-add, so overlapping windows accumulate (kh*kw vectorised adds, never np.add.at).
    """
    xp = get_array_module(cols)
    c, n = padded_shape[:2]
    cols = cols.reshape(c, kh, kw, n, oh, ow)
    out = xp.zeros(padded_shape, dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += cols[:, i, j]
    return out


def batch_chunks(x, rows, pixels_per_image, chunk_bytes=None):
    """Split the batch of x into (images, columns) slice pairs, each with about ``chunk_bytes``
    (default CHUNK_BYTES) of columns.

    ``rows`` is the column matrix's height (C*kh*kw); ``images`` slices the batch axis and
    ``columns`` the matching columns of an (O, N*OH*OW) matrix (each image owns
    ``pixels_per_image`` = OH*OW consecutive columns). On the CPU the number of chunks is rounded
    up towards a multiple of the thread count (fewer when images run out), so the worker threads
    get about equal shares; on the GPU the whole batch is one chunk.
    """
    n = x.shape[0]
    if n == 0:
        return [(slice(0, 0), slice(0, 0))]  # an empty batch: one empty chunk (zero weight gradients)
    step = n
    if get_array_module(x) is np:
        threads = get_num_threads()
        chunks = -(-n * rows * pixels_per_image * x.dtype.itemsize // (chunk_bytes or CHUNK_BYTES))
        chunks = min(n, -(-chunks // threads) * threads)
        step = -(-n // chunks)
    return [(slice(a, min(a + step, n)), slice(a * pixels_per_image, min(a + step, n) * pixels_per_image))
            for a in range(0, n, step)]


def for_each_chunk(fn, chunks, xp):
    """``[fn(chunk) for chunk in chunks]``: on NumPy data on ``get_num_threads()`` threads at
    once (each takes whole chunks end to end; NumPy releases the GIL inside copies, adds and
    BLAS), on CuPy data in order (the GPU runs its kernels in parallel by itself)."""
    if xp is np:
        return parallel_map(fn, chunks)
    return [fn(chunk) for chunk in chunks]


class Conv2d(Function):
    """y[n, o] = sum_{c,i,j} W[o, c, i, j] * x_pad[n, c, s*y + i, s*x + j] + b[o]   (cross-correlation)

    dW = dy2 @ cols^T,   db = sum of dy over N, OH, OW,   dx = col2im(W^T @ dy2), cropped.
    """

    def __init__(self, stride, padding):
        self.stride, self.padding = stride, padding

    def forward(self, x, weight, bias):
        xp = get_array_module(x)
        n, c, h, w = x.shape
        o, _, kh, kw = weight.shape
        (sh, sw), (ph, pw) = self.stride, self.padding
        oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
        w2 = weight.reshape(o, -1)
        out = xp.empty((o, n * oh * ow), dtype=x.dtype)

        def chunk_forward(chunk):
            images, columns = chunk
            cols = im2col(pad_channel_major(x[images], ph, pw), kh, kw, sh, sw, oh, ow)
            xp.matmul(w2, cols, out=out[:, columns])

        for_each_chunk(chunk_forward, batch_chunks(x, c * kh * kw, oh * ow), xp)
        if bias is not None:
            out += bias[:, None]
        self.x, self.weight = x, weight  # x is kept alive by the graph anyway: saving it is free
        self.geometry = (kh, kw, sh, sw, oh, ow)
        return out.reshape(o, n, oh, ow).transpose(1, 0, 2, 3)

    def backward(self, gy):
        xp = get_array_module(gy)
        x, weight = self.x, self.weight
        kh, kw, sh, sw, oh, ow = self.geometry
        (ph, pw) = self.padding
        n, c, h, w = x.shape
        o = weight.shape[0]
        w2 = weight.reshape(o, -1)
        gy2 = gy.transpose(1, 0, 2, 3).reshape(o, -1)  # a view when gy is channel-major, else one copy
        needs = self.needs_input_grad
        gx = xp.empty((c, n, h, w), dtype=x.dtype) if needs[0] else None  # channel-major, like x

        def chunk_backward(chunk):  # returns this chunk's share of dW^T (C*kh*kw, O)
            images, columns = chunk
            g = gy2[:, columns]
            nb = images.stop - images.start
            gw_t = None
            if needs[1]:
                cols = im2col(pad_channel_major(x[images], ph, pw), kh, kw, sh, sw, oh, ow)
                gw_t = cols @ g.T  # dW^T = cols @ dy2^T: OpenBLAS runs it 1.2-1.6x faster than dy2 @ cols^T
            if needs[0]:
                gpad = col2im(w2.T @ g, (c, nb, h + 2 * ph, w + 2 * pw), kh, kw, sh, sw, oh, ow)
                gx[:, images] = gpad[:, :, ph:ph + h, pw:pw + w]
            return gw_t

        shares = for_each_chunk(chunk_backward, batch_chunks(x, c * kh * kw, oh * ow), xp)
        gw_t = sum(shares[1:], shares[0]) if needs[1] else None
        gb = gy2.sum(axis=1) if needs[2] else None
        return (None if gx is None else gx.transpose(1, 0, 2, 3),
                None if gw_t is None else gw_t.T.reshape(weight.shape), gb)


ALGORITHMS = ("auto", "im2col", "winograd")
default_algorithm = "auto"  # what conv2d(..., algorithm=None) uses; set_default_algorithm changes it


def set_default_algorithm(name):
    """Make ``name`` ("auto", "im2col" or "winograd") the algorithm of every conv2d call that does
    not name one (nn.Conv2d's included), e.g. ``set_default_algorithm("im2col")`` to run only
    the reference implementation."""
    global default_algorithm
    default_algorithm = _check_algorithm("set_default_algorithm", name)


@contextlib.contextmanager
def use_algorithm(name):
    """``with use_algorithm("im2col"): ...``: ``set_default_algorithm(name)`` inside the block only."""
    previous = default_algorithm
    set_default_algorithm(name)
    try:
        yield
    finally:
        set_default_algorithm(previous)


def _check_algorithm(fname, name):
    if name not in ALGORITHMS:
        raise ValueError(f"{fname}: algorithm must be one of {ALGORITHMS}, got {name!r}")
    return name


def choose_algorithm(x, weight, stride, padding):
    """"winograd" where it applies and measured faster than im2col, else "im2col" (what "auto" runs).

    Measured (1 thread, forward + backward, batch 128, benchmarks/README.md): Winograd is 1.3-2x
    faster for 8 to 64 input channels at 8 px and more (every stride-1 conv of a CIFAR ResNet
    but the first), slower for the 3-channel stem (0.3x: its dx is not needed, and Winograd's dy
    transform costs more than im2col's small dW product) and at 128 channels on 8 px (0.84x:
    the products dominate, and the 16 small ones run slower than im2col's one large one).
    On the GPU im2col is the only path.
    """
    from .winograd import winograd_applies
    if get_array_module(x) is not np or not winograd_applies(weight.shape, stride):
        return "im2col"
    channels, (h, w) = x.shape[1], x.shape[2:]
    oh, ow = h + 2 * padding[0] - 2, w + 2 * padding[1] - 2
    return "winograd" if 8 <= channels <= 64 and min(oh, ow) >= 8 else "im2col"


def conv2d(x, weight, bias=None, stride=1, padding=0, algorithm=None):
    """2-D convolution (cross-correlation) as ``torch.nn.functional.conv2d``.

    x (N, C, H, W), weight (O, C, kh, kw), bias (O,) or None; stride and padding are ints
    or (h, w) pairs. Returns (N, O, OH, OW) with OH = (H + 2*pad - kh) // stride + 1.

    ``algorithm``: "im2col" (this file, any shape), "winograd" (``winograd.py``: 3x3 kernels
    at stride 1, NumPy data only), "auto" (Winograd on NumPy data where it
    applies and measured faster, else im2col), or None for ``default_algorithm``.
    """
    x, weight = as_tensor(x), as_tensor(weight)
    bias = None if bias is None else as_tensor(bias)
    stride = pair("conv2d", "stride", stride, 1)
    padding = pair("conv2d", "padding", padding, 0)
    if x.ndim != 4:
        raise ValueError(f"conv2d: input x must be 4-D (N, C, H, W), got shape {x.shape}")
    if weight.ndim != 4:
        raise ValueError(f"conv2d: weight must be 4-D (out_channels, in_channels, kh, kw), got shape {weight.shape}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"conv2d: input x has {x.shape[1]} channels (shape {x.shape}) but weight expects "
            f"{weight.shape[1]} (weight shape {weight.shape})"
        )
    kh, kw = weight.shape[2:]
    hp, wp = x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1]
    if kh > hp or kw > wp:
        raise ValueError(
            f"conv2d: kernel {kh}x{kw} is larger than the padded input {hp}x{wp} "
            f"(x shape {x.shape}, padding {padding})"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"conv2d: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != x.dtype:
            raise TypeError(f"conv2d: {name} has dtype {t.dtype} but x has {x.dtype}")
    algorithm = _check_algorithm("conv2d", default_algorithm if algorithm is None else algorithm)
    if algorithm == "auto":
        algorithm = choose_algorithm(x.data, weight.data, stride, padding)
    if algorithm == "winograd":
        from .winograd import Winograd2d, winograd_applies  # winograd.py builds on this file's helpers
        if get_array_module(x.data) is not np:
            raise ValueError("conv2d: algorithm 'winograd' runs on NumPy (CPU) data only; use 'im2col' or 'auto' on the GPU")
        if not winograd_applies(weight.shape, stride):
            raise ValueError(
                f"conv2d: algorithm 'winograd' needs a 3x3 kernel and stride 1, got weight shape "
                f"{weight.shape} and stride {stride} (use 'im2col' or 'auto')"
            )
        return Winograd2d(padding)(x, weight, bias)
    return Conv2d(stride, padding)(x, weight, bias)
