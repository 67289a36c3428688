"""2-D convolution by im2col / col2im: three readable steps, one matrix product.

Forward, for x (N, C, H, W) and weight (O, C, kh, kw)::

    padded  (C, N, Hp, Wp)              channel-major copy of x with zero borders
    cols    (C*kh*kw, N*OH*OW)          im2col: a strided *view* of every window, then one copy
    out     (O, N*OH*OW) = W (O, C*kh*kw) @ cols          one BLAS matmul
    y       (N, O, OH, OW)              a transposed view of out, no copy

Backward, for dy (N, O, OH, OW)::

    dy2     (O, N*OH*OW)                free when dy is channel-major, as our outputs are
    dW      = dy2 @ cols^T              one matmul
    dcols   = W^T @ dy2                 one matmul
    dx      = col2im(dcols)             kh*kw strided slice-adds into a zero (C, N, Hp, Wp) buffer

Why channel-major (C, N, H, W) memory behind an NCHW view: the matmul naturally produces
(O, N*OH*OW); keeping that memory order means the output needs no transpose copy, the next
conv's im2col reads whole contiguous rows, and dy2 is a free reshape in backward.
Every op in minires is layout-agnostic (NumPy/CuPy ufuncs follow their inputs' memory
order), so users only ever see ordinary NCHW tensors.
"""
from ..backend import get_array_module
from ..engine import Function, as_tensor


def conv_output_size(size, kernel, stride, padding):
    """Output length along one axis: floor((size + 2*padding - kernel) / stride) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def pad_channel_major(x, ph, pw):
    """x (N, C, H, W) -> zero-padded (C, N, H + 2*ph, W + 2*pw), C-contiguous."""
    xp = get_array_module(x)
    xc = x.transpose(1, 0, 2, 3)
    if ph == 0 and pw == 0 and xc.flags.c_contiguous:
        return xc  # already channel-major: no copy at all
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


class Conv2d(Function):
    """y[n, o] = sum_{c,i,j} W[o, c, i, j] * x_pad[n, c, s*y + i, s*x + j] + b[o]   (cross-correlation)

    dW = dy2 @ cols^T,   db = sum of dy over N, OH, OW,   dx = col2im(W^T @ dy2), cropped.
    """

    def __init__(self, stride, padding):
        self.stride, self.padding = stride, padding

    def forward(self, x, weight, bias):
        n, c, h, w = x.shape
        o, _, kh, kw = weight.shape
        (sh, sw), (ph, pw) = self.stride, self.padding
        oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
        padded = pad_channel_major(x, ph, pw)
        cols = im2col(padded, kh, kw, sh, sw, oh, ow)
        out = weight.reshape(o, -1) @ cols
        if bias is not None:
            out += bias[:, None]
        self.cols, self.weight = cols, weight
        self.geometry = (padded.shape, (h, w), (kh, kw, sh, sw, oh, ow))
        return out.reshape(o, n, oh, ow).transpose(1, 0, 2, 3)

    def backward(self, gy):
        weight, cols = self.weight, self.cols
        padded_shape, (h, w), (kh, kw, sh, sw, oh, ow) = self.geometry
        o = weight.shape[0]
        gy2 = gy.transpose(1, 0, 2, 3).reshape(o, -1)
        needs = [t is not None and t.requires_grad for t in self.inputs]
        gx = gw = gb = None
        if needs[0]:
            gcols = weight.reshape(o, -1).T @ gy2
            gpad = col2im(gcols, padded_shape, kh, kw, sh, sw, oh, ow)
            ph, pw = self.padding
            gx = gpad[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3)
        if needs[1]:
            gw = (gy2 @ cols.T).reshape(weight.shape)
        if needs[2]:
            gb = gy2.sum(axis=1)
        return gx, gw, gb


def _pair(name, arg, value, minimum):
    """An int or a pair of ints as a pair, each at least ``minimum``."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise TypeError(f"{name}: {arg} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name}: {arg} must be >= {minimum}, got {value!r}")
    return pair


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D convolution (cross-correlation) as ``torch.nn.functional.conv2d``.

    x (N, C, H, W), weight (O, C, kh, kw), bias (O,) or None; stride and padding are ints
    or (h, w) pairs. Returns (N, O, OH, OW) with OH = (H + 2*pad - kh) // stride + 1.
    """
    x, weight = as_tensor(x), as_tensor(weight)
    bias = None if bias is None else as_tensor(bias)
    stride = _pair("conv2d", "stride", stride, 1)
    padding = _pair("conv2d", "padding", padding, 0)
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
    return Conv2d(stride, padding)(x, weight, bias)
