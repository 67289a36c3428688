"""2-D convolution by im2col / col2im: three readable steps, one matrix product.

Forward, for x (N, C, H, W) and weight (O, C, kh, kw), the whole batch at once::

    padded  (C, N, Hp, Wp)              pad_channel_major: a channel-major copy with zero borders
    cols    (C*kh*kw, N*OH*OW)          im2col: a strided *view* of every window, then one copy
    out     (O, N*OH*OW) = W (O, C*kh*kw) @ cols          one matmul
    y       (N, O, OH, OW)              a transposed view of out, no copy

Backward, for dy (N, O, OH, OW)::

    dy2     (O, N*OH*OW)                a reshape of dy (free when dy is channel-major, as ours are)
    dW      = dy2 @ cols^T              one matmul, cols recomputed from x (x is kept anyway; the
                                        columns would be kh*kw times its memory)
    dcols   = W^T @ dy2                 one matmul
    dx      = col2im(dcols)             kh*kw strided slice-adds into a zero (C, N, Hp, Wp) buffer, cropped

The three steps are in ``im2col.py``; every op in minires is layout-agnostic (NumPy/CuPy ufuncs
follow their inputs' memory order), so users only ever see ordinary NCHW tensors.

This is the reference, and what runs on the GPU (a GPU wants big kernels). On NumPy data the
engine runs the CPU kernels instead (``forward_cpu``): the same steps on cache-sized chunks of
the batch on the worker threads (``minires/cpu_kernels/conv.py``; the chunks alone are 1.04-1.7x
faster on ResNet-20's shapes, ``chunks.py``), or, for the 3x3 stride-1 convs where it measured
faster, Winograd's F(2x2, 3x3) (``minires/cpu_kernels/winograd.py``); ``conv2d(..., algorithm=...)``
chooses between the two.
"""
import contextlib

from .._checks import pair
from ..backend import device_of
from ..cpu_kernels import conv as im2col_kernels, winograd as winograd_kernels
from ..engine import Function, as_tensor
from .im2col import col2im, conv_output_size, im2col, pad_channel_major


class Conv2d(Function):
    """y[n, o] = sum_{c,i,j} W[o, c, i, j] * x_pad[n, c, s*y + i, s*x + j] + b[o]   (cross-correlation)

    dW = dy2 @ cols^T,   db = sum of dy over N, OH, OW,   dx = col2im(W^T @ dy2), cropped.

    ``algorithm`` ("im2col" or "winograd", as ``conv2d`` resolved it) picks the CPU kernel.
    """

    def __init__(self, stride, padding, algorithm="im2col"):
        self.stride, self.padding, self.algorithm = stride, padding, algorithm

    def forward(self, x, weight, bias):
        n, c, h, w = x.shape
        o, _, kh, kw = weight.shape
        (sh, sw), (ph, pw) = self.stride, self.padding
        oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
        cols = im2col(pad_channel_major(x, ph, pw), kh, kw, sh, sw, oh, ow)  # (C*kh*kw, N*OH*OW)
        out = weight.reshape(o, -1) @ cols                                     # (O, N*OH*OW)
        if bias is not None:
            out += bias[:, None]
        self.x, self.weight = x, weight  # x is kept alive by the graph anyway: saving it is free
        return out.reshape(o, n, oh, ow).transpose(1, 0, 2, 3)

    def backward(self, gy):
        x, weight = self.x, self.weight
        n, c, h, w = x.shape
        o, _, kh, kw = weight.shape
        (sh, sw), (ph, pw) = self.stride, self.padding
        oh, ow = gy.shape[2:]
        gy2 = gy.transpose(1, 0, 2, 3).reshape(o, -1)  # (O, N*OH*OW)
        need_x, need_w, need_b = self.needs_input_grad
        gx = gw = gb = None
        if need_w:
            cols = im2col(pad_channel_major(x, ph, pw), kh, kw, sh, sw, oh, ow)
            gw = (gy2 @ cols.T).reshape(weight.shape)
        if need_x:
            gpad = col2im(weight.reshape(o, -1).T @ gy2, (c, n, h + 2 * ph, w + 2 * pw), kh, kw, sh, sw, oh, ow)
            gx = gpad[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3)
        if need_b:
            gb = gy2.sum(axis=1)
        return gx, gw, gb

    # --- NumPy: the kernels of minires/cpu_kernels (chunks on threads, or Winograd)

    def forward_cpu(self, x, weight, bias):
        self.x, self.weight = x, weight
        if self.algorithm == "winograd":
            y, self.u = winograd_kernels.winograd_forward(x, weight, bias, self.padding)
            return y
        return im2col_kernels.conv2d_forward(x, weight, bias, self.stride, self.padding)

    def backward_cpu(self, gy):
        if self.algorithm == "winograd":
            return winograd_kernels.winograd_backward(self.x, self.u, gy, self.padding, self.needs_input_grad)
        return im2col_kernels.conv2d_backward(self.x, self.weight, gy, self.stride, self.padding,
                                              self.needs_input_grad)


ALGORITHMS = ("auto", "im2col", "winograd")
default_algorithm = "auto"  # what conv2d(..., algorithm=None) uses; set_default_algorithm changes it


def set_default_algorithm(name):
    """Make ``name`` ("auto", "im2col" or "winograd") the algorithm of every conv2d call that does
    not name one (nn.Conv2d's included), e.g. ``set_default_algorithm("im2col")`` to run no Winograd.
    (``minires.use_reference()`` runs the reference im2col of this file alone, whatever the algorithm.)"""
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
    if device_of(x) == "gpu" or not winograd_kernels.winograd_applies(weight.shape, stride):
        return "im2col"
    channels, (h, w) = x.shape[1], x.shape[2:]
    oh, ow = h + 2 * padding[0] - 2, w + 2 * padding[1] - 2
    return "winograd" if 8 <= channels <= 64 and min(oh, ow) >= 8 else "im2col"


def _check_inputs(x, weight, bias, padding):
    """conv2d's checks of shapes and dtypes, with the shapes in the message."""
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


def _resolve_algorithm(algorithm, x, weight, stride, padding):
    """The CPU kernel to run: "auto" and None resolved, "winograd" checked where it applies."""
    algorithm = _check_algorithm("conv2d", default_algorithm if algorithm is None else algorithm)
    if algorithm == "auto":
        return choose_algorithm(x.data, weight.data, stride, padding)
    if algorithm == "winograd":
        if device_of(x.data) == "gpu":
            raise ValueError("conv2d: algorithm 'winograd' runs on NumPy (CPU) data only; use 'im2col' or 'auto' on the GPU")
        if not winograd_kernels.winograd_applies(weight.shape, stride):
            raise ValueError(
                f"conv2d: algorithm 'winograd' needs a 3x3 kernel and stride 1, got weight shape "
                f"{weight.shape} and stride {stride} (use 'im2col' or 'auto')"
            )
    return algorithm


def conv2d(x, weight, bias=None, stride=1, padding=0, algorithm=None):
    """2-D convolution (cross-correlation) as ``torch.nn.functional.conv2d``.

    x (N, C, H, W), weight (O, C, kh, kw), bias (O,) or None; stride and padding are ints
    or (h, w) pairs. Returns (N, O, OH, OW) with OH = (H + 2*pad - kh) // stride + 1.

    ``algorithm`` (minires only) picks the CPU kernel: "im2col" (any shape), "winograd"
    (3x3 kernels at stride 1, NumPy data only), "auto" (Winograd on NumPy data where it applies
    and measured faster, else im2col), or None for ``default_algorithm``. All give the
    reference's numbers up to float rounding.
    """
    x, weight = as_tensor(x), as_tensor(weight)
    bias = None if bias is None else as_tensor(bias)
    stride = pair("conv2d", "stride", stride, 1)
    padding = pair("conv2d", "padding", padding, 0)
    _check_inputs(x, weight, bias, padding)
    algorithm = _resolve_algorithm(algorithm, x, weight, stride, padding)
    return Conv2d(stride, padding, algorithm)(x, weight, bias)
